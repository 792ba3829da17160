#!/usr/bin/env bash
# Bounded under abuse, measured on the release binary (figures in BENCHMARKS.md):
#  1. flood: 10M distinct names (packed UDP) against --statsd.max-series=100000, with a
#     control counter sent over TCP alongside; prints the control's value against what was
#     sent, the drop count, the series held, the gateway's RSS and per-thread CPU.
#  2. ttl: 2.6M families with a 10 min TTL, then probes with a 2 s TTL; prints when each
#     probe expired (from the maintenance thread's debug log) and how long the passes took.
# Gateway on core 0, generator on core 1 (NOPIN=1: unpinned, for a machine whose core 0 is
# busy with other work). Usage: scripts/bench-limits.sh [flood|ttl|all]
set -u
cd "$(dirname "$0")/.."
what=${1:-all}
cargo build --release -p statsgate -p statsgate-loadgen >&2
GW=target/release/statsgate; LG=target/release/statsgate-loadgen
old_rmem=$(sysctl -n net.core.rmem_max)
tmp=$(mktemp -d)
trap 'sysctl -qw net.core.rmem_max="$old_rmem"; rm -rf "$tmp"' EXIT
sysctl -qw net.core.rmem_max=26214400 || echo "note: cannot raise net.core.rmem_max (not root?)" >&2
COMMON=(--statsd.udp-sockets=1 --web.listen-address=127.0.0.1:9102 --statsd.listen-udp=127.0.0.1:9125
        --statsd.listen-tcp=127.0.0.1:9125 --statsd.read-buffer=26214400)

if [ -n "${NOPIN:-}" ]; then CORE0=(); CORE1=(); else CORE0=(taskset -c 0); CORE1=(taskset -c 1); fi
# The gateway just started must be the one answering on the ports.
started() { sleep 1; kill -0 "$1" 2>/dev/null || { echo "the gateway did not start (ports 9102/9125 busy?)" >&2; exit 1; }; }
# One scrape, then metric() reads values from it (a scrape of millions of series is slow).
scrape() { curl -s http://127.0.0.1:9102/metrics >"$tmp/scrape.txt"; }
metric() { awk -v m="$1" '$1==m {print $2}' "$tmp/scrape.txt"; }
rss_mib() { awk '/^VmRSS/ {printf "%.0f", $2/1024}' "/proc/$1/status"; }
# CPU seconds used so far by each of the gateway's threads, by thread name.
thread_cpu() {
  local tck; tck=$(getconf CLK_TCK)
  for t in /proc/"$1"/task/*; do
    local name; name=$(cat "$t/comm")
    # Fields after the parenthesised name: utime and stime are the 12th and 13th.
    awk -v n="$name" -v hz="$tck" '{sub(/.*\) /, ""); printf "%s=%.1fs ", n, ($12+$13)/hz}' "$t/stat"
  done
  echo
}

if [ "$what" = flood ] || [ "$what" = all ]; then
  "${CORE0[@]}" $GW "${COMMON[@]}" --statsd.max-series=100000 --log.level=warn >/dev/null 2>&1 &
  pid=$!; started $pid
  exec 3<>/dev/tcp/127.0.0.1/9125
  printf 'control.counter:1|c\n' >&3; sent=1
  "${CORE1[@]}" $LG --gateway-pid $pid --series 10000000 --packed --rate 40000 --duration 252 \
    --settle-ms 1000 >"$tmp/flood.txt" 2>&1 &
  lg=$!
  while kill -0 $lg 2>/dev/null; do printf 'control.counter:1|c\n' >&3; sent=$((sent+1)); sleep 0.01; done
  exec 3>&-
  sleep 2
  scrape
  echo "flood: control_counter=$(metric control_counter) sent=$sent" \
       "dropped{max_series}=$(metric 'statsgate_events_dropped_total{reason="max_series"}')" \
       "statsgate_series=$(metric statsgate_series) lines_total=$(metric statsd_exporter_lines_total)" \
       "kernel_drops=$(metric statsd_exporter_udp_packet_drops_total) rss=$(rss_mib $pid)MiB"
  echo "flood: thread CPU: $(thread_cpu $pid)"
  tail -n 12 "$tmp/flood.txt"
  kill $pid; wait $pid 2>/dev/null; sleep 1
fi

if [ "$what" = ttl ] || [ "$what" = all ]; then
  cat >"$tmp/ttl.yml" <<'EOF'
defaults:
  ttl: 10m
mappings:
- match: "probe.*"
  name: "probe_${1}"
  ttl: 2s
EOF
  "${CORE0[@]}" $GW "${COMMON[@]}" --statsd.max-series=0 --statsd.max-series-per-metric=0 \
    --statsd.mapping-config="$tmp/ttl.yml" --log.level=debug 2>"$tmp/ttl.log" >/dev/null &
  pid=$!; started $pid
  "${CORE1[@]}" $LG --gateway-pid $pid --series 2600000 --packed --rate 40000 --duration 65.5 \
    --settle-ms 2000 --scrape "" >"$tmp/fill.txt" 2>&1
  scrape
  echo "ttl: families=$(metric 'statsd_exporter_metrics_total{type="counter"}')+$(metric 'statsd_exporter_metrics_total{type="gauge"}')+$(metric 'statsd_exporter_metrics_total{type="summary"}')" \
       "series=$(metric statsgate_series) rss=$(rss_mib $pid)MiB"
  echo "ttl: thread CPU after filling: $(thread_cpu $pid)"
  for i in 1 2 3 4 5; do
    seen=$(wc -l <"$tmp/ttl.log")
    sent=$(date +%s.%N)
    printf 'probe.p%s:1|c' "$i" >/dev/udp/127.0.0.1/9125
    line=""
    for _ in $(seq 100); do
      sleep 0.1
      line=$(tail -n +$((seen + 1)) "$tmp/ttl.log" | grep 'TTL expiry pass' | grep -E 'expired=1( |$)' | tail -n 1)
      [ -n "$line" ] && break
    done
    at=$(date -d "$(sed -E 's/.*time=([^ ]+).*/\1/' <<<"$line")" +%s.%N)
    echo "ttl: probe $i expired after $(awk -v a="$at" -v s="$sent" 'BEGIN {printf "%.2f", a - s}') s" \
         "($(grep -oE '(shards_walked|families_checked|took_ms)=[0-9]+' <<<"$line" | tr '\n' ' '))"
    sleep 1
  done
  echo "ttl: thread CPU at the end: $(thread_cpu $pid)"
  kill $pid; wait $pid 2>/dev/null
fi
