#!/usr/bin/env bash
# Ctrl-C (SIGINT) during a backup of one 1 GiB file, and of the same bytes from a
# --stdin-from-command producer, at 20%, 50% and 80% of a full backup's time: how long the
# backup takes to exit after the signal, its exit status, whether a snapshot was saved, what
# the next backup adds, and how much of that the interrupted run had already uploaded
# ((its packs) + (what the next adds) - (what one uninterrupted backup adds)).
# Usage: ./benches/interrupt.sh [MIB]   (default 1024). Prints a Markdown table; exits 1 if a
# run exits other than 130, takes over 1 s, saves a snapshot, or uploads again 30% or more.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh bc
cargo build --release -p cairn-cli
CAIRN="$CARGO_TARGET_DIR/release/cairn"
MIB="${1:-1024}"

work=$(mktemp -d /var/tmp/cairn-int.XXXXXX)
trap 'rm -rf "$work"' EXIT
export CAIRN_REPO="$work/repo" CAIRN_CACHE_DIR="$work/cache" CAIRN_PASSWORD=bench
json_field() { python3 -c "import json,sys; print(json.loads(sys.stdin.read().splitlines()[-1])['$1'])"; }
mkdir -p "$work/src"
head -c "${MIB}M" /dev/urandom >"$work/src/table"
bytes=$((MIB << 20))

fresh() { rm -rf "$CAIRN_REPO" "$CAIRN_CACHE_DIR"; "$CAIRN" init >/dev/null; }
run() { # the backup of $1: file or stream (exec: in the background, `$!` is then cairn)
    case "$1" in
        file) exec "$CAIRN" backup --json "$work/src" ;;
        stream) exec "$CAIRN" backup --json --stdin-from-command --stdin-name table -- cat "$work/src/table" ;;
    esac
}

echo "| source | signal at | exit | took to exit | snapshots | next adds | uploaded again |"
echo "|---|---|---|---|---|---|---|"
failed=0
for kind in file stream; do
    # The shorter of two full runs: the page cache warms up over the first.
    full=1000000
    for _ in 1 2; do
        fresh
        t0=$(date +%s.%N)
        full_added=$( (run "$kind") | json_field bytes_added)
        full=$(echo "t = $(date +%s.%N) - $t0; if (t < $full) t else $full" | bc -l)
    done
    for share in 20 50 80; do
        fresh
        (run "$kind") >/dev/null 2>&1 &
        pid=$!
        sleep "$(echo "$full * $share / 100" | bc -l)"
        kill -INT "$pid" 2>/dev/null || echo "(the backup at $share% ended before the signal)" >&2
        t1=$(date +%s.%N)
        status=0
        wait "$pid" || status=$?
        took=$(echo "$(date +%s.%N) - $t1" | bc -l)
        snaps=$( (find "$CAIRN_REPO/snapshots" -type f 2>/dev/null || true) | wc -l)
        before=$(du -sb "$CAIRN_REPO" | cut -f1)
        added=$( (run "$kind") 2>/dev/null | json_field bytes_added)
        pct=$(echo "$added * 100 / $bytes" | bc -l)
        again=$(echo "($before + $added - $full_added) * 100 / $bytes" | bc -l)
        bad=""
        if [ "$status" -ne 130 ] || [ "$snaps" -ne 0 ] || [ "$(echo "$took > 1" | bc)" = 1 ] \
            || [ "$(echo "$again >= 30" | bc)" = 1 ]; then
            bad=" (FAILED)"
            failed=1
        fi
        printf '| %s, %d MiB | %d%% (%.1f s) | %d | %.2f s | %d | %.1f%% | %.1f%%%s |\n' "$kind" \
            "$MIB" "$share" "$(echo "$full * $share / 100" | bc -l)" "$status" "$took" "$snaps" \
            "$pct" "$again" "$bad"
    done
done
exit "$failed"
