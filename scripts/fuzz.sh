#!/usr/bin/env bash
# Runs every cargo-fuzz target in turn for SECONDS each (default 900) and prints, per target,
# the executions, libFuzzer's coverage (`cov:` of its last stats line) and the crashes
# (files in fuzz/artifacts/TARGET). One target at a time: the machine's cores are shared.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#
# Corpora live in fuzz/corpus/TARGET (not in git); the mapping target is seeded with the
# repository's mapping files. Logs: fuzz/logs/TARGET.log.
set -euo pipefail

secs="${1:-900}"
shift || true
cd "$(dirname "$0")/../fuzz"

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(parse_line mapping_config go_float datagram_to_exposition summary_estimators)
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi
export RUSTC_BOOTSTRAP=1

mkdir -p logs corpus/mapping_config
cp ../tests/data/*.yml corpus/mapping_config/ 2>/dev/null || true

for t in "${targets[@]}"; do
    cargo fuzz build "$t"
done

summary=()
status=0
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t" "artifacts/$t"
    before=$(find "artifacts/$t" -type f | wc -l)
    start=$(date +%s)
    echo "== $t: ${secs}s (cargo fuzz run $t -- -max_total_time=$secs)"
    if ! cargo fuzz run "$t" -- -max_total_time="$secs" -print_final_stats=1 >"logs/$t.log" 2>&1; then
        status=1
    fi
    took=$(( $(date +%s) - start ))
    last=$(grep -E '^#[0-9]+' "logs/$t.log" | tail -1 || true)
    execs=$(grep -E '^stat::number_of_executed_units:' "logs/$t.log" | awk '{print $2}' || true)
    [ -n "$execs" ] || execs=$(echo "$last" | sed -E 's/^#([0-9]+).*/\1/')
    cov=$(echo "$last" | grep -oE 'cov: [0-9]+' | awk '{print $2}' || true)
    ft=$(echo "$last" | grep -oE 'ft: [0-9]+' | awk '{print $2}' || true)
    corp=$(echo "$last" | grep -oE 'corp: [0-9]+' | awk '{print $2}' || true)
    crashes=$(( $(find "artifacts/$t" -type f | wc -l) - before ))
    line="$t: ${took}s, ${execs:-?} execs, cov ${cov:-?}, ft ${ft:-?}, corpus ${corp:-?}, new crashes $crashes"
    echo "$line"
    summary+=("$line")
    if [ "$crashes" -gt 0 ]; then
        status=1
        ls -t "artifacts/$t" | head -n "$crashes"
    fi
done

echo
echo "== summary (${secs}s per target)"
printf '%s\n' "${summary[@]}"
exit $status
