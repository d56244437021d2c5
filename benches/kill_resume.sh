#!/usr/bin/env bash
# A backup killed with SIGKILL at a random point, then run again: how much the second run
# uploads again of what the first had already uploaded. Per size, TRIALS trials: a source of
# random (incompressible) data, a fresh repository, a kill after a random share of a full
# backup's time, then the next backup. Uploaded again = (packs the killed run left) + (what the
# next run adds) - (what one uninterrupted backup adds): the killed run's packs that no index
# file lists. It must stay within 10% of the source plus what the first run read in the two
# seconds before the kill (at the full backup's rate); `check --read-data` must pass.
# Usage: ./benches/kill_resume.sh [TRIALS] [SIZES_MIB...]   (default 10; 256 512 2048).
# Prints a Markdown table; exits 1 if a trial breaks the allowance or the check.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh bc
cargo build --release -p cairn-cli
CAIRN="$CARGO_TARGET_DIR/release/cairn"
TRIALS="${1:-10}"
shift || true
SIZES=("${@:-256 512 2048}")
# shellcheck disable=SC2206
SIZES=(${SIZES[*]})

work=$(mktemp -d /var/tmp/cairn-kill.XXXXXX)
trap 'rm -rf "$work"' EXIT
export CAIRN_REPO="$work/repo" CAIRN_CACHE_DIR="$work/cache" CAIRN_PASSWORD=bench
json_field() { python3 -c "import json,sys; print(json.loads(sys.stdin.read().splitlines()[-1])['$1'])"; }

echo "| source | trial | killed at | stored before the kill | uploaded again | allowance | check |"
echo "|---|---|---|---|---|---|---|"
failed=0
for mib in "${SIZES[@]}"; do
    src="$work/src-$mib"
    mkdir -p "$src"
    # Several files, so that kills land between files as well as inside them.
    for i in 0 1 2 3; do head -c $((mib / 4))M /dev/urandom >"$src/part-$i"; done
    bytes=$((mib << 20))
    # The full backup's time on this machine, for the rate and the kill points.
    rm -rf "$CAIRN_REPO" "$CAIRN_CACHE_DIR"
    "$CAIRN" init >/dev/null
    t0=$(date +%s.%N)
    full_added=$("$CAIRN" backup --json "$src" | json_field bytes_added)
    full=$(echo "$(date +%s.%N) - $t0" | bc -l)
    rate=$(echo "$bytes / $full" | bc -l)
    for trial in $(seq 1 "$TRIALS"); do
        rm -rf "$CAIRN_REPO" "$CAIRN_CACHE_DIR"
        "$CAIRN" init >/dev/null
        share=$(python3 -c "import random; print(round(random.uniform(0.05, 0.95), 2))")
        delay=$(echo "$full * $share" | bc -l)
        "$CAIRN" backup --json "$src" >/dev/null 2>&1 &
        pid=$!
        sleep "$delay"
        kill -9 "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        before=$(du -sb "$CAIRN_REPO" | cut -f1)
        added=$("$CAIRN" backup --json "$src" 2>/dev/null | json_field bytes_added)
        again=$((before + added - full_added))
        [ "$again" -lt 0 ] && again=0
        allowance=$(echo "$bytes / 10 + 2 * $rate" | bc -l | cut -d. -f1)
        if "$CAIRN" check --read-data >/dev/null 2>&1; then check=ok; else check=FAILED; failed=1; fi
        verdict=""
        if [ "$again" -gt "$allowance" ]; then verdict=" (over)"; failed=1; fi
        printf '| %d MiB | %d | %.0f%% (%.1f s) | %.1f MiB | %.1f MiB%s | %.1f MiB | %s |\n' "$mib" \
            "$trial" "$(echo "$share * 100" | bc -l)" "$delay" "$(echo "$before / 1048576" | bc -l)" \
            "$(echo "$again / 1048576" | bc -l)" "$verdict" "$(echo "$allowance / 1048576" | bc -l)" \
            "$check"
    done
    rm -rf "$src"
done
exit "$failed"
