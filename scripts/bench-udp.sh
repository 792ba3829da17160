#!/usr/bin/env bash
# UDP throughput of the real binary (issue 4): the gateway pinned to core 0, the load
# generator to core 1. Scenarios: {one line per datagram, packed} x {hot, 10k series} flat
# out; a rate sweep of one-line datagrams; each with and without a large receive buffer;
# then 100k Envoy-like series for RSS per series and the time of one scrape.
# Prints Markdown tables. Runs in about 3 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."

DUR=${DUR:-4}            # seconds per scenario
PORT_UDP=${PORT_UDP:-9125}
PORT_WEB=${PORT_WEB:-9102}
BIG_BUF=${BIG_BUF:-26214400}
cpu_gw=0; cpu_gen=1
if [ "$(nproc)" -lt 2 ]; then cpu_gen=0; echo "warning: one core only; gateway and generator share it" >&2; fi

# The gateway and the load generator (tools/loadgen), both into target/release.
cargo build --release -p statsgate -p statsgate-loadgen >&2
TD=${CARGO_TARGET_DIR:-target}
GW="$TD/release/statsgate"
LG="$TD/release/statsgate-loadgen"

gw_pid=""
stop_gw() {
  if [ -n "$gw_pid" ]; then kill "$gw_pid" 2>/dev/null || true; wait "$gw_pid" 2>/dev/null || true; gw_pid=""; fi
}
rmem_restore=""
cleanup() {
  stop_gw
  # Put the host's receive-buffer cap back as it was.
  if [ -n "$rmem_restore" ]; then sysctl -qw net.core.rmem_max="$rmem_restore" 2>/dev/null || true; fi
}
trap cleanup EXIT INT TERM

start_gw() { # $1 = read buffer bytes (0 = system default); more args go to the gateway
  stop_gw
  local buf=$1; shift
  taskset -c $cpu_gw "$GW" --statsd.udp-sockets=1 --statsd.listen-tcp= \
    --web.listen-address=127.0.0.1:$PORT_WEB --statsd.listen-udp=127.0.0.1:$PORT_UDP \
    --statsd.read-buffer="$buf" --log.level=warn "$@" >/dev/null 2>&1 &
  gw_pid=$!
  for _ in $(seq 50); do
    curl -sf -o /dev/null "http://127.0.0.1:$PORT_WEB/metrics" && return 0
    sleep 0.1
  done
  echo "gateway did not come up" >&2; exit 1
}

run_lg() { # extra loadgen flags; prints the JSON line
  taskset -c $cpu_gen "$LG" --target 127.0.0.1:$PORT_UDP --scrape "http://127.0.0.1:$PORT_WEB/metrics" \
    --gateway-pid "$gw_pid" --duration "$DUR" --json "$@" 2>/dev/null | tail -1
}

j() { # numeric field of the loadgen's one-line JSON report (serde_json: compact, no spaces)
  sed -E "s/.*\"$2\":(null|[-0-9.e+]+).*/\1/" <<<"$1"
}

row() { # label, json
  printf '| %s | %.0f | %.0f | %.0f | %s | %s | %.0f | %.1f |\n' "$1" \
    "$(j "$2" offered_rate)" "$(j "$2" send_rate)" "$(j "$2" lines_counted)" "$(j "$2" loss_pct)" \
    "$(j "$2" kernel_drops)" "$(j "$2" gateway_cpu_pct)" "$(awk "BEGIN{print $(j "$2" gateway_rss_bytes)/1048576}")"
}

rmem_max=$(sysctl -n net.core.rmem_max 2>/dev/null || echo "?")
if [ "$rmem_max" != "?" ] && [ "$rmem_max" -lt "$BIG_BUF" ]; then
  if sysctl -qw net.core.rmem_max="$BIG_BUF" 2>/dev/null; then
    rmem_restore=$rmem_max
    echo "raised net.core.rmem_max from $rmem_max to $BIG_BUF for this run (restored at exit)" >&2
  else
    echo "note: net.core.rmem_max=$rmem_max and not permitted to raise it; SO_RCVBUF is capped there" >&2
  fi
fi
echo "net.core.rmem_max = $(sysctl -n net.core.rmem_max 2>/dev/null || echo '?'); read buffer asked: 0 (default, net.core.rmem_default=$(sysctl -n net.core.rmem_default 2>/dev/null || echo '?')) or $BIG_BUF"
echo

header() {
  echo "| scenario | offered lines/s (0 = flat out) | sent lines/s | counted | loss % | kernel drops | gateway CPU % | RSS MiB |"
  echo "|---|---|---|---|---|---|---|---|"
}

for buf in 0 "$BIG_BUF"; do
  echo "### read buffer: $buf"
  echo
  header
  start_gw "$buf"
  row "single-line, hot" "$(run_lg --hot)"
  row "single-line, 10k series" "$(run_lg --series 10000)"
  row "packed, hot" "$(run_lg --hot --packed)"
  row "packed, 10k series" "$(run_lg --series 10000 --packed)"
  for rate in 50000 100000 200000; do
    row "single-line, 10k series, rate $rate" "$(run_lg --series 10000 --rate $rate)"
  done
  stop_gw
  echo
done

echo "### 100k Envoy-like series"
echo
echo "| profile | statsd series sent | exposition sample lines | lines loss % | RSS before | RSS after | bytes/series (RSS delta) | scrape s (1st, 2nd) | scrape bytes |"
echo "|---|---|---|---|---|---|---|---|---|"
src=(--names tests/data/envoy-stat-names.txt --series 100000)
for profile in statsd envoy; do
  start_gw "$BIG_BUF" --profile="$profile"
  rss0=$(awk '/VmRSS/{print $2*1024}' "/proc/$gw_pid/status")
  # Paced so no line is lost and every series exists before measuring.
  r=$(run_lg "${src[@]}" --packed --rate 400000 --settle-ms 1000)
  rss1=$(awk '/VmRSS/{print $2*1024}' "/proc/$gw_pid/status")
  series=$(j "$r" series)
  exported=$(j "$r" exported_series)
  t1=$(curl -s -o /dev/null -w '%{time_total}' "http://127.0.0.1:$PORT_WEB/metrics")
  t2=$(curl -s -o /dev/null -w '%{time_total}' "http://127.0.0.1:$PORT_WEB/metrics")
  size=$(curl -s "http://127.0.0.1:$PORT_WEB/metrics" | wc -c)
  stop_gw
  printf '| %s | %.0f | %.0f | %s | %.1f MiB | %.1f MiB | %.0f | %s, %s | %s |\n' "$profile" "$series" "$exported" "$(j "$r" loss_pct)" \
    "$(awk "BEGIN{print $rss0/1048576}")" "$(awk "BEGIN{print $rss1/1048576}")" \
    "$(awk "BEGIN{print ($rss1-$rss0)/$series}")" "$t1" "$t2" "$size"
done
