#!/usr/bin/env bash
# cairn against restic and borg on the same database-like data (see benches/src/bin/compare.rs),
# then on a real SQLite database (benches/src/bin/sqlite_space.rs, first backups at zstd level 3
# and a second after 1% of rows changed), all at zstd level 3.
# Usage: ./benches/compare.sh [GiB] [rounds] [SQLite MB]   (default 2 GiB, 3 rounds of restores,
# 200 MB). Writes its tables into benches/RESULTS.md and prints the SQLite table.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh restic borg:borgbackup sqlite3 /usr/bin/time:time
cargo build --release -p cairn-cli -p cairn-benches
"$CARGO_TARGET_DIR/release/compare" "${1:-2}" "${2:-3}"
CAIRN="$CARGO_TARGET_DIR/release/cairn" "$CARGO_TARGET_DIR/release/sqlite_space" "${3:-200}"
