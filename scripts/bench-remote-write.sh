#!/usr/bin/env bash
# Ingest with and without remote_write (issue 9): 100k series (the load generator's
# synthetic Envoy-like names: counters, gauges and timers, which the default profile makes
# summaries) pushed every second to a local VictoriaMetrics, while the generator offers a
# fixed rate of packed lines. At each rate the run without --remote-write.url and the run
# with it alternate, so that other work on the machine hits both alike. Gateway pinned to
# core 0; generator and VictoriaMetrics to core 1. On a machine shared with other work,
# NICE=-10 (as root) gives the three of them the larger share of their cores; the push
# thread stays 10 levels below the gateway's receive thread either way. Prints a
# Markdown table.
#
#   RATES="500000 1000000" DUR=4 scripts/bench-remote-write.sh
set -euo pipefail
cd "$(dirname "$0")/.."

DUR=${DUR:-4}                                   # seconds per measured run
RATES=${RATES:-"500000 750000 1000000 1250000"} # offered lines/s
SERIES=${SERIES:-100000}
INTERVAL=${INTERVAL:-1s}
PORT_UDP=${PORT_UDP:-19125}
PORT_WEB=${PORT_WEB:-19102}
PORT_VM=${PORT_VM:-18428}
NICE=${NICE:-0}
BUF=26214400
cpu_gw=0; cpu_other=1
if [ "$(nproc)" -lt 2 ]; then cpu_other=0; echo "warning: one core only" >&2; fi
command -v victoria-metrics >/dev/null || { echo "victoria-metrics missing: apt-get install victoria-metrics" >&2; exit 1; }

cargo build --release --bins >&2
TD=${CARGO_TARGET_DIR:-target}
GW="$TD/release/statsgate"
LG="$TD/release/statsgate-loadgen"

work=$(mktemp -d)
gw_pid=""; vm_pid=""; rmem_restore=""
stop_gw() {
  if [ -n "$gw_pid" ]; then kill "$gw_pid" 2>/dev/null || true; wait "$gw_pid" 2>/dev/null || true; gw_pid=""; fi
}
cleanup() {
  stop_gw
  if [ -n "$vm_pid" ]; then kill "$vm_pid" 2>/dev/null || true; wait "$vm_pid" 2>/dev/null || true; fi
  if [ -n "$rmem_restore" ]; then sysctl -qw net.core.rmem_max="$rmem_restore" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

rmem_max=$(sysctl -n net.core.rmem_max 2>/dev/null || echo 0)
if [ "$rmem_max" -lt "$BUF" ] && sysctl -qw net.core.rmem_max="$BUF" 2>/dev/null; then
  rmem_restore=$rmem_max
fi

nice -n "$NICE" taskset -c $cpu_other victoria-metrics -storageDataPath="$work/vm" -httpListenAddr=127.0.0.1:$PORT_VM \
  -loggerLevel=ERROR >/dev/null 2>&1 &
vm_pid=$!
for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$PORT_VM/health" && break; sleep 0.1; done

start_gw() { # extra gateway flags
  stop_gw
  nice -n "$NICE" taskset -c $cpu_gw "$GW" --statsd.udp-sockets=1 --statsd.listen-tcp= \
    --web.listen-address=127.0.0.1:$PORT_WEB --statsd.listen-udp=127.0.0.1:$PORT_UDP \
    --statsd.read-buffer=$BUF --log.level=warn "$@" >/dev/null 2>&1 &
  gw_pid=$!
  for _ in $(seq 50); do
    curl -sf -o /dev/null "http://127.0.0.1:$PORT_WEB/metrics" && return 0
    sleep 0.1
  done
  echo "gateway did not come up" >&2; exit 1
}

metric() { # sum of a family's samples in a scrape
  curl -s "http://127.0.0.1:$PORT_WEB/metrics" | awk -v n="$1" '$1 == n || index($1, n "{") == 1 { s += $NF } END { printf "%.0f", s }'
}

metric_f() {
  curl -s "http://127.0.0.1:$PORT_WEB/metrics" | awk -v n="$1" '$1 == n || index($1, n "{") == 1 { s += $NF } END { printf "%.3f", s }'
}

run_lg() { # extra loadgen flags; prints the JSON line
  nice -n "$NICE" taskset -c $cpu_other "$LG" --target 127.0.0.1:$PORT_UDP --scrape "http://127.0.0.1:$PORT_WEB/metrics" \
    --gateway-pid "$gw_pid" --json "$@" 2>/dev/null | tail -1
}

j() { sed -E "s/.*\"$2\":(null|[-0-9.e+]+).*/\1/" <<<"$1"; }

echo "| offered lines/s | remote_write | sent lines/s | counted | loss % | kernel drops | gateway CPU % | samples pushed (run) | bytes/sample | failed | last snapshot s |"
echo "|---|---|---|---|---|---|---|---|---|---|---|"
for rate in $RATES; do
  for mode in off on; do
    if [ "$mode" = on ]; then
      start_gw --remote-write.url="http://127.0.0.1:$PORT_VM/api/v1/write" --remote-write.interval="$INTERVAL"
    else
      start_gw
    fi
    # Every series exists before measuring, and a few pushes have run.
    run_lg --series "$SERIES" --packed --rate 400000 --duration 1 --settle-ms 200 >/dev/null
    sleep 2
    pushed0=$(metric statsgate_remote_write_samples_total)
    bytes0=$(metric statsgate_remote_write_sent_bytes_total)
    # A long settle: lines still queued in the socket buffer at the end are counted, not lost.
    r=$(run_lg --series "$SERIES" --packed --rate "$rate" --duration "$DUR" --settle-ms 3000)
    pushed1=$(metric statsgate_remote_write_samples_total)
    bytes1=$(metric statsgate_remote_write_sent_bytes_total)
    failed=$(metric statsgate_remote_write_failed_samples_total)
    snap=$(metric_f statsgate_remote_write_snapshot_seconds)
    stop_gw
    per=$(awk -v b=$((bytes1 - bytes0)) -v n=$((pushed1 - pushed0)) 'BEGIN { if (n > 0) printf "%.1f", b / n; else print "-" }')
    printf '| %s | %s | %.0f | %.0f | %s | %s | %.0f | %s | %s | %s | %s |\n' "$rate" "$mode" \
      "$(j "$r" send_rate)" "$(j "$r" lines_counted)" "$(j "$r" loss_pct)" "$(j "$r" kernel_drops)" \
      "$(j "$r" gateway_cpu_pct)" "$((pushed1 - pushed0))" "$per" "$failed" "$snap"
  done
done
