#!/usr/bin/env bash
# cairn against restic and borg on the same database-like data (see benches/src/bin/compare.rs).
# Usage: ./benches/compare.sh [GiB] [rounds]   (default 2 GiB, 3 rounds of restores).
# Writes its tables into benches/RESULTS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh restic borg:borgbackup /usr/bin/time:time
cargo build --release -p cairn-cli -p cairn-benches
"$CARGO_TARGET_DIR/release/compare" "${1:-2}" "${2:-3}"
