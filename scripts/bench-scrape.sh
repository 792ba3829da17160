#!/usr/bin/env bash
# Scrape time at 100k Envoy-like series, plain and gzip, for one or more gateway binaries run
# one after the other in the same invocation (so old and new meet the same machine):
#   scripts/bench-scrape.sh [BINARY ...]   (default: target/release/statsgate)
# Each binary: a fresh gateway pinned to core 0 is loaded with 100k series by the load
# generator on core 1, then curl (core 1) times ROUNDS plain scrapes and ROUNDS scrapes with
# `Accept-Encoding: gzip`, as Prometheus asks. Prints the median and the body size.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-7}
SERIES=${SERIES:-100000}
LG=${LG:-target/release/statsgate-loadgen}
[ -x "$LG" ] || cargo build --release -p statsgate-loadgen >&2
[ "$#" -gt 0 ] || { cargo build --release -p statsgate >&2; set -- target/release/statsgate; }
median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
for gw in "$@"; do
  taskset -c "${GW_CPUS:-0}" "$gw" --statsd.listen-udp=127.0.0.1:9125 --statsd.listen-tcp= \
    --web.listen-address=127.0.0.1:9102 --log.level=warn >/dev/null 2>&1 &
  pid=$!
  trap 'kill $pid 2>/dev/null' EXIT
  for _ in $(seq 50); do curl -sf -o /dev/null http://127.0.0.1:9102/-/ready && break; sleep 0.1; done
  taskset -c 1 "$LG" --gateway-pid "$pid" --names tests/data/envoy-stat-names.txt \
    --series "$SERIES" --packed --rate "${RATE:-400000}" --duration "${DURATION:-2}" --settle-ms 500 --scrape "" >/dev/null 2>&1
  series=$(curl -s http://127.0.0.1:9102/metrics | awk '/^statsgate_series /{ print $2 }')
  for enc in identity gzip; do
    times=$(for _ in $(seq "$ROUNDS"); do
      taskset -c "${CURL_CPUS:-1}" curl -s -o /dev/null -H "Accept-Encoding: $enc" \
        -w '%{time_total} %{size_download}\n' http://127.0.0.1:9102/metrics
    done)
    t=$(echo "$times" | awk '{ print $1 * 1000 }' | median)
    size=$(echo "$times" | awk '{ print $2 }' | median)
    echo "$gw series=$series $enc: median ${t} ms over $ROUNDS scrapes, ${size} bytes"
  done
  kill "$pid"; wait "$pid" 2>/dev/null || true
  trap - EXIT
done
