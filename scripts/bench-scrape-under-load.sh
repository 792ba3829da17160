#!/usr/bin/env bash
# Ingest while scraping: 100k Envoy-like series loaded first, then 200k lines/s of one-line
# datagrams for 4 s while curl scrapes /metrics back to back; prints scrapes done, lines
# counted and kernel drops. Gateway on core 0, generator and curl on core 1.
set -u
cd "$(dirname "$0")/.."
cargo build --release -p statsgate -p statsgate-loadgen >&2
GW=target/release/statsgate; LG=target/release/statsgate-loadgen
old_rmem=$(sysctl -n net.core.rmem_max)
trap 'sysctl -qw net.core.rmem_max="$old_rmem"' EXIT
sysctl -qw net.core.rmem_max=26214400 || echo "note: cannot raise net.core.rmem_max (not root?)" >&2
for profile in statsd envoy; do
taskset -c 0 $GW --statsd.udp-sockets=1 --statsd.listen-tcp= --web.listen-address=127.0.0.1:9102 --statsd.listen-udp=127.0.0.1:9125 --statsd.read-buffer=26214400 --log.level=warn --profile=$profile >/dev/null 2>&1 &
pid=$!; sleep 1
# 100k series present first
taskset -c 1 $LG --gateway-pid $pid --names tests/data/envoy-stat-names.txt --series 100000 --packed --rate 400000 --duration 2 --settle-ms 500 >/dev/null 2>&1
# scrape continuously on core 1 while loading
( end=$((SECONDS+5)); n=0; while [ $SECONDS -lt $end ]; do curl -s -o /dev/null http://127.0.0.1:9102/metrics; n=$((n+1)); done; echo "scrapes=$n" > /tmp/scrapes.txt ) &
spid=$!
out=$(taskset -c 1 $LG --gateway-pid $pid --series 10000 --rate 200000 --duration 4 --scrape "" 2>/dev/null | tail -1)
wait $spid
lines=$(curl -s http://127.0.0.1:9102/metrics | awk '/^statsd_exporter_lines_total /{print $2}')
drops=$(curl -s http://127.0.0.1:9102/metrics | awk '/^statsd_exporter_udp_packet_drops_total /{print $2}')
echo "$profile: $(cat /tmp/scrapes.txt) lines_total=$lines drops=$drops :: $out"
kill $pid; wait $pid; sleep 1
done
