#!/usr/bin/env bash
# Runs every check statsgate has, on a fresh Debian machine as on a developer's:
# installs what the tests need (Debian's `prometheus` package: promtool and a real
# Prometheus server; `victoria-metrics`, a second remote_write receiver; `openssl` and
# `curl` for the TLS tests; `chromium`, run headless, for the status page), then formatting,
# lints, docs, that the fuzz targets build, and the whole test suite of the workspace (the
# gateway and tools/loadgen).
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian package → a command it provides that the tests run.
packages=(prometheus:promtool prometheus:prometheus victoria-metrics:victoria-metrics openssl:openssl curl:curl chromium:chromium)
missing=()
for p in "${packages[@]}"; do
  command -v "${p#*:}" >/dev/null 2>&1 || missing+=("${p%%:*}")
done
if [ "${#missing[@]}" -gt 0 ]; then
  # Each package once, in order.
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | awk '!seen[$0]++')
  echo "==> installing Debian packages the tests need: ${missing[*]}"
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
for p in "${packages[@]}"; do
  command -v "${p#*:}" >/dev/null 2>&1 || { echo "error: ${p#*:} (Debian package ${p%%:*}) is still missing" >&2; exit 1; }
done
promtool --version | head -1
prometheus --version 2>&1 | head -1
curl --version | head -1
openssl version
chromium --version 2>/dev/null | head -1
# Debian's victoria-metrics build prints no version of its own.
echo "victoria-metrics $(dpkg-query -W -f '${Version}' victoria-metrics 2>/dev/null || echo '(not from a Debian package)')"

# Incremental caches would add gigabytes to a one-off build; the free disk is printed so that a
# "No space left on device" further down is easy to place.
export CARGO_INCREMENTAL=0
df -h . | awk 'NR == 2 { print "disk: " $4 " free of " $2 " on " $6 }'

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
