#!/usr/bin/env bash
# cairn against pgBackRest on a real PostgreSQL, side by side in one run: space of two base
# backups and of the WAL archived between them, and the cost of archiving one WAL segment.
#
#   ./benches/pg_space.sh [scale] [seconds] [clients]     (default: pgbench scale 20, 30 s, 2)
#
# One server archives every segment into both repositories (archive_command runs pgBackRest's
# archive-push, then cairn's archive-wal, each timed on its own). Then:
#   1. pgbench -i at the scale; a base backup by each tool          -> "first base backup"
#   2. pgbench for the given time, then a checkpoint and a switch    -> "WAL archived between"
#   3. a second base backup by each tool                             -> "second base backup"
# Sizes are the bytes of the files each repository holds, measured after each step, once the
# server has handed every finished WAL segment to both tools.
# Both compress with zstd level 3; pgBackRest is Debian's, with its defaults otherwise (full
# backups, no block incremental, no encryption); cairn runs with its defaults, once encrypted
# (the default) and once with `--encryption none`, so that both comparisons are like for like.
# CAIRN_INIT_ARGS adds options to cairn's `init` (e.g. `--page-groups 0:8KiB,256MiB:32KiB`).
# Prints a Markdown table; append it to benches/RESULTS.md by hand with the machine's details.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh /usr/lib/postgresql/15/bin/postgres:postgresql-15 pgbackrest /usr/bin/time:time
cargo build --release -p cairn-cli
CAIRN="$CARGO_TARGET_DIR/release/cairn"
SCALE=${1:-20}
SECONDS_RUN=${2:-30}
CLIENTS=${3:-2}
BIN=/usr/lib/postgresql/15/bin
PORT=${PG_SPACE_PORT:-55432}

D=$(mktemp -d /tmp/cairn-pgspace.XXXXXX)
chmod 755 "$D"
cleanup() {
  su postgres -c "$BIN/pg_ctl -D $D/data -m immediate stop" >/dev/null 2>&1 || true
  rm -rf "$D"
}
trap cleanup EXIT
cp "$CAIRN" "$D/cairn"
echo "bench password" >"$D/password"
chown -R postgres "$D"

CAIRN_REPOS="enc plain"
source benches/pg_common.sh
start_archiving_server "max_wal_size = 4GB"
cairn_ enc init ${CAIRN_INIT_ARGS:-} >/dev/null
cairn_ plain init --encryption none ${CAIRN_INIT_ARGS:-} >/dev/null

pgbr_size() { echo $(( $(size "$D/pgbr/backup") + $(size "$D/pgbr/archive") )); }

backup_all() {
  as_pg "pgbackrest --config=$D/pgbackrest.conf --stanza=bench --type=full backup"
  for r in enc plain; do
    cairn_ $r pg backup --pgdata $D/data --host $D --port $PORT --user postgres --dbname postgres >/dev/null
  done
}
# Sizes once the server has handed every finished WAL segment to both tools.
sizes() {
  wait_archived
  echo "$(pgbr_size) $(size "$D/cairn-enc") $(size "$D/cairn-plain")"
}

as_pg "$BIN/pgbench -h $D -p $PORT -i -s $SCALE -q postgres" >/dev/null 2>&1
psql_ "checkpoint"
read -r p0 e0 n0 < <(sizes)
backup_all
read -r p1 e1 n1 < <(sizes)
as_pg "$BIN/pgbench -h $D -p $PORT -c $CLIENTS -T $SECONDS_RUN postgres" >/dev/null 2>&1
psql_ "checkpoint"
psql_ "select pg_switch_wal()" >/dev/null
read -r p2 e2 n2 < <(sizes)
backup_all
read -r p3 e3 n3 < <(sizes)

mb() { awk -v b="$1" 'BEGIN { printf "%.2f MB", b / 1e6 }'; }
per_segment() { awk '{ t += $1; if ($2 > m) m = $2; n++ } END { printf "%.3f s, %d MB RSS (%d segments)", t / n, m / 1024, n }' "$1"; }
echo
echo "pgbench scale $SCALE, then $SECONDS_RUN s of $CLIENTS clients; zstd level 3 everywhere"
echo
echo "| | pgBackRest | cairn, encrypted | cairn, unencrypted |"
echo "|---|---|---|---|"
echo "| first base backup, stored | $(mb $((p1 - p0))) | $(mb $((e1 - e0))) | $(mb $((n1 - n0))) |"
echo "| WAL archived between, stored | $(mb $((p2 - p1))) | $(mb $((e2 - e1))) | $(mb $((n2 - n1))) |"
echo "| second base backup, added | $(mb $((p3 - p2))) | $(mb $((e3 - e2))) | $(mb $((n3 - n2))) |"
echo "| repository in all | $(mb "$p3") | $(mb "$e3") | $(mb "$n3") |"
echo "| per WAL segment archived | $(per_segment "$D/push-pgbr.times") | $(per_segment "$D/push-enc.times") | $(per_segment "$D/push-plain.times") |"
