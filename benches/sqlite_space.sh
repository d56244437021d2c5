#!/usr/bin/env bash
# Space on a real SQLite database (see benches/src/bin/sqlite_space.rs): a second backup after
# 1% of rows changed, against the compressed size of the changed pages; the first backup
# against restic and borg at zstd level 3.
# Usage: ./benches/sqlite_space.sh [MB]   (default 200). Prints a Markdown table.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh sqlite3 restic borg:borgbackup
cargo build --release -p cairn-cli -p cairn-benches
CAIRN="$CARGO_TARGET_DIR/release/cairn" "$CARGO_TARGET_DIR/release/sqlite_space" "${1:-200}"
