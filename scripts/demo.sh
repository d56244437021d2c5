#!/usr/bin/env bash
# The main job on the embedded default, a local repository: builds cairn, makes a sample
# database directory (SQLite databases with a few tables), backs it up, changes it, backs it
# up again, lists the snapshots, audits every byte of the repository, restores both, and
# checks the restores byte for byte.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh sqlite3

cargo build --release -p cairn-cli
cairn="$CARGO_TARGET_DIR/release/cairn"

work="$(mktemp -d "${TMPDIR:-/tmp}/cairn-demo.XXXXXX")"
trap 'rm -rf "$work"' EXIT
export CAIRN_REPO="$work/repo" CAIRN_CACHE_DIR="$work/cache"
# The repository is encrypted; its password is read from a file (never given on the command
# line, where `ps` would show it).
head -c 24 /dev/urandom | base64 > "$work/password"
export CAIRN_PASSWORD_FILE="$work/password"
data="$work/data"
mkdir -p "$data/db1" "$data/db2"

make_db() {
  sqlite3 "$1" <<SQL
PRAGMA page_size = 8192;
CREATE TABLE orders (id INTEGER PRIMARY KEY, customer TEXT, amount REAL, note TEXT);
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $2)
INSERT INTO orders SELECT i, 'customer-' || (i % 977), i * 1.25, hex(randomblob(24)) FROM n;
CREATE INDEX orders_customer ON orders(customer);
SQL
}
make_db "$data/db1/main.sqlite" 200000
make_db "$data/db2/main.sqlite" 50000
echo "sample data: $(du -sh "$data" | cut -f1) in $data"

"$cairn" init
"$cairn" backup --name first "$data"
sqlite3 "$data/db1/main.sqlite" "UPDATE orders SET amount = amount + 1 WHERE id BETWEEN 100000 AND 102000;"
"$cairn" backup --tag after-update "$data"
"$cairn" list
if grep -rqa "customer-" "$work/repo"; then
  echo "a row of the sample database is readable in the repository" >&2
  exit 1
fi
echo "no row of the sample database is readable in the repository's files"
"$cairn" ls latest db1
"$cairn" check --read-data

"$cairn" restore first --target "$work/restore-first"
"$cairn" restore latest --target "$work/restore-latest"
"$cairn" restore latest:db1 --target "$work/db1_restored"
diff -r "$data" "$work/restore-latest"
diff -r "$data/db1" "$work/db1_restored"
sqlite3 "$work/restore-latest/db1/main.sqlite" "PRAGMA integrity_check; SELECT count(*) FROM orders;"
echo "demo passed: restores are byte-identical"
