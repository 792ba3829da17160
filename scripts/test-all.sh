#!/usr/bin/env bash
# Runs every check statsgate has, on a fresh Debian machine as on a developer's:
# installs what the tests need (Debian's `prometheus` package: promtool and a real
# Prometheus server; `curl` and `openssl`, the real clients of the TLS tests), then
# formatting, lints, docs, that the fuzz targets build, and the whole test suite of the
# workspace (the gateway and tools/loadgen).
set -euo pipefail
cd "$(dirname "$0")/.."

need_install=0
for tool in promtool prometheus curl openssl; do
  command -v "$tool" >/dev/null 2>&1 || need_install=1
done
if [ "$need_install" = 1 ]; then
  echo "==> installing Debian's prometheus, curl and openssl packages for the tests"
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    prometheus curl openssl ca-certificates >/dev/null
fi
promtool --version | head -1
prometheus --version 2>&1 | head -1
curl --version | head -1
openssl version

echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets --quiet -- -D warnings
echo "==> cargo doc --workspace (broken intra-doc links fail)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --quiet
# fuzz/ is a workspace of its own, so nothing above builds it. A plain `cargo check` on stable
# is enough to know the targets compile (no cargo-fuzz, no RUSTC_BOOTSTRAP: that is only for
# `cargo fuzz run`, which adds sanitizer flags); --locked fails when fuzz/Cargo.lock is stale.
# Sharing the target directory reuses what clippy already checked.
echo "==> fuzz targets build (cd fuzz && cargo check --locked)"
(cd fuzz && CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/../target}" cargo check --locked --quiet)
echo "==> cargo test --workspace --all-targets (unit, corpus, end-to-end; benches run once as smoke tests)"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --workspace --all-targets 2>&1 | tee "$log"
# One closing line for the whole suite (cargo prints one per test binary).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "%d passed, %d failed\n", p, f }' "$log"
