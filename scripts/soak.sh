#!/usr/bin/env bash
# Soak and abuse run (issue 8): the release build for SECONDS (default 600, 10 minutes)
# under mixed valid and malformed statsd traffic, a flood of new names against
# --statsd.max-series, TCP clients that vanish mid-line, slow and non-reading HTTP clients,
# a scrape every second and a mapping reload every 30 s. Loopback only, ephemeral ports,
# bounded in time; the gateway is killed at the end. It is tests/soak.rs, the same test CI
# runs for 40 s in the debug build: it asserts zero loss of control lines, no failed or
# slow scrape, and RSS flat after the warm-up, and prints one summary line (`soak: ...`).
# Needs promtool (Debian's `prometheus` package), as the test suite does.
# Usage: scripts/soak.sh [SECONDS]; STATSGATE_SOAK_RATE sets the background lines per second
# (default here 200000; the release build keeps up with it beside everything else on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-600}
export STATSGATE_SOAK_SECS="$secs"
export STATSGATE_SOAK_RATE="${STATSGATE_SOAK_RATE:-200000}"
cargo test --release --test soak --no-run >&2
echo "soak.sh: $(date -u +%FT%TZ), ${secs}s at ${STATSGATE_SOAK_RATE} background lines/s," \
     "$(nproc) CPUs, load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
status=0
cargo test --release --test soak -- --nocapture || status=$?
echo "soak.sh: load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
exit $status
