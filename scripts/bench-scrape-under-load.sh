#!/usr/bin/env bash
# Ingest while scraping (issue 12): 100k Envoy-like series loaded first, then RATE lines/s of
# one-line datagrams for 4 s while SCRAPERS curl clients scrape /metrics back to back (with
# `Accept-Encoding: gzip`, as Prometheus asks, unless GZIP=0); prints scrapes done, lines
# counted, loss and kernel drops, for each profile.
#   scripts/bench-scrape-under-load.sh                      (RATE=100000 SCRAPERS=4)
#   GW_CPUS=0 OTHER_CPUS=1 READ_BUFFER=26214400 RATE=200000 SCRAPERS=1 scripts/...
# The gateway runs with its defaults (receive buffer: the largest the kernel allows up to
# 8 MiB) unless READ_BUFFER is set; GW_CPUS / OTHER_CPUS pin the gateway and the clients
# (default: both on every core, as on a real host).
set -u
cd "$(dirname "$0")/.."
cargo build --release -p statsgate -p statsgate-loadgen >&2
GW=${GW:-target/release/statsgate}; LG=target/release/statsgate-loadgen
RATE=${RATE:-100000}; SCRAPERS=${SCRAPERS:-4}; GZIP=${GZIP:-1}
GW_CPUS=${GW_CPUS:-0-$(($(nproc) - 1))}; OTHER_CPUS=${OTHER_CPUS:-$GW_CPUS}
buffer=(); [ -n "${READ_BUFFER:-}" ] && buffer=(--statsd.read-buffer="$READ_BUFFER")
enc=identity; [ "$GZIP" = 1 ] && enc=gzip
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
for profile in statsd envoy; do
  taskset -c "$GW_CPUS" "$GW" --statsd.udp-sockets=1 --statsd.listen-tcp= --web.listen-address=127.0.0.1:9102 \
    --statsd.listen-udp=127.0.0.1:9125 "${buffer[@]}" --log.level=warn --profile=$profile >/dev/null 2>&1 &
  pid=$!
  for _ in $(seq 50); do curl -sf -o /dev/null http://127.0.0.1:9102/-/ready && break; sleep 0.1; done
  # 100k series present first.
  taskset -c "$OTHER_CPUS" "$LG" --gateway-pid $pid --names tests/data/envoy-stat-names.txt --series 100000 \
    --packed --rate 400000 --duration 2 --settle-ms 500 >/dev/null 2>&1
  spids=()
  for c in $(seq "$SCRAPERS"); do
    ( end=$((SECONDS + 5)); n=0
      while [ $SECONDS -lt $end ]; do
        taskset -c "$OTHER_CPUS" curl -s -o /dev/null -H "Accept-Encoding: $enc" http://127.0.0.1:9102/metrics; n=$((n + 1))
      done; echo "$n" > "$tmp/scrapes.$c" ) &
    spids+=($!)
  done
  out=$(taskset -c "$OTHER_CPUS" "$LG" --gateway-pid $pid --series 10000 --rate "$RATE" --duration 4 2>/dev/null | tail -1)
  wait "${spids[@]}"
  scrapes=$(cat "$tmp"/scrapes.* | awk '{ s += $1 } END { print s }')
  echo "$profile: rate=$RATE scrapers=$SCRAPERS ($enc) scrapes=$scrapes :: $out"
  kill $pid; wait $pid 2>/dev/null; sleep 1
done
