#!/usr/bin/env bash
# WAL at the server's pace: cairn against pgBackRest on a real PostgreSQL, side by side in one
# run. One server archives every WAL segment through one archive_command into pgBackRest
# (`archive-push`), an unencrypted cairn repository and an encrypted one (`pg archive-wal`),
# each call timed on its own; then each tool restores its base backup to the same LSN and
# PostgreSQL replays every segment through that tool's restore_command (`archive-get`,
# `pg fetch-wal`), one restored server at a time.
#
#   ./benches/pg_wal.sh [segments] [scale] [clients]   (default 200 segments, scale 20, 2)
#
# 1. pgbench -i at the scale; a base backup by each tool.
# 2. pgbench (initialisations at the scale and 10 s runs with the clients, in turn) until the
#    server has written the segments' worth of WAL; the LSN then is the recovery target;
#    pg_switch_wal(); every segment handed to every tool.
# 3. Each tool restores to that LSN (recovery_target_action = promote), the server starts, and
#    the time from `pg_ctl start` to the end of recovery (pg_is_in_recovery() false) is taken.
# Both compress with zstd level 3. pgBackRest is Debian's, archiving and fetching one segment
# per call (its defaults: no archive-async). cairn runs at its defaults; its encrypted
# repository's key uses Argon2id with 8 MiB (`init --kdf-memory 8MiB`), the setting for a
# key that archive_command opens for every call (the default key costs 64 MiB and 0.2 s).
# Prints a Markdown table; copy it into benches/SPACE.md with the machine's details.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh /usr/lib/postgresql/15/bin/postgres:postgresql-15 pgbackrest /usr/bin/time:time
cargo build --release -p cairn-cli
CAIRN="$CARGO_TARGET_DIR/release/cairn"
SEGMENTS=${1:-200}
SCALE=${2:-20}
CLIENTS=${3:-2}
BIN=/usr/lib/postgresql/15/bin
PORT=${PG_WAL_PORT:-55442}

D=$(mktemp -d /tmp/cairn-pgwal.XXXXXX)
chmod 755 "$D"
cleanup() {
  for d in data r-pgbr r-plain r-enc; do
    su postgres -c "$BIN/pg_ctl -D $D/$d -m immediate stop" >/dev/null 2>&1 || true
  done
  rm -rf "$D"
}
trap cleanup EXIT
cp "$CAIRN" "$D/cairn"
echo "bench password" >"$D/password"
chown -R postgres "$D"
CAIRN_REPOS="plain enc"
source benches/pg_common.sh
start_archiving_server "max_wal_size = 1GB"
cairn_ plain init --encryption none >/dev/null
cairn_ enc init --kdf-memory 8MiB >/dev/null

as_pg "$BIN/pgbench -h $D -p $PORT -i -s $SCALE -q postgres" >/dev/null 2>&1
psql_ "checkpoint"
as_pg "pgbackrest --config=$D/pgbackrest.conf --stanza=bench --type=full backup"
for r in plain enc; do
  cairn_ $r pg backup --pgdata $D/data --host $D --port $PORT --user postgres --dbname postgres >/dev/null
done
wait_archived
for f in push-pgbr push-plain push-enc; do : >"$D/$f.times"; done
wal0=$(size "$D/pgbr/archive") plain0=$(size "$D/cairn-plain") enc0=$(size "$D/cairn-enc")

start=$(psql_ "select pg_current_wal_lsn()")
want=$((SEGMENTS * 16 * 1024 * 1024))
t0=$(date +%s.%N)
while :; do
  done_bytes=$(psql_ "select pg_wal_lsn_diff(pg_current_wal_lsn(), '$start')::bigint")
  [ "$done_bytes" -ge "$want" ] && break
  # pgbench's own initialisation (COPY, index builds) writes WAL fastest; its transactions
  # the WAL of a running server. Half and half.
  as_pg "$BIN/pgbench -h $D -p $PORT -i -s $SCALE -q postgres" >/dev/null 2>&1
  as_pg "$BIN/pgbench -h $D -p $PORT -c $CLIENTS -T 10 postgres" >/dev/null 2>&1
done
target=$(psql_ "select pg_current_wal_lsn()")
t1=$(date +%s.%N)
psql_ "select pg_switch_wal()" >/dev/null
wait_archived
t2=$(date +%s.%N)
as_pg "$BIN/pg_ctl -D $D/data -m fast stop" >/dev/null

# Restores, each replaying to the same LSN through its own tool's restore_command (timed).
as_pg "pgbackrest --config=$D/pgbackrest.conf --stanza=bench --pg1-path=$D/r-pgbr --type=lsn --target=$target --target-action=promote restore"
for r in plain enc; do
  cairn_ $r pg restore --lsn "$target" --target "$D/r-$r" >/dev/null
done
recover() {
  local dir=$1 times=$2 port=$3
  : >"$times"
  printf '#!/bin/sh\nexec /usr/bin/time -f "%%e %%M" -a -o %s "$@"\n' "$times" >"$times.sh"
  chmod +x "$times.sh"
  # Wrap the restore_command the tool wrote with the timer.
  local conf="$dir/postgresql.auto.conf"
  python3 - "$conf" "$times" <<'PY'
import re, sys
conf, times = sys.argv[1], sys.argv[2]
text = open(conf).read()
def wrap(m):
    cmd = m.group(2).replace("''", "'")
    # A script: PostgreSQL would take the timer's own % signs for its placeholders.
    cmd = f"{times}.sh {cmd}"
    return m.group(1) + "'" + cmd.replace("'", "''") + "'"
text, n = re.subn(r"^(restore_command\s*=\s*)'((?:[^']|'')*)'", wrap, text, flags=re.M)
assert n >= 1, "no restore_command in " + conf
open(conf, "w").write(text)
PY
  cat >>"$dir/postgresql.conf" <<EOF
port = $port
unix_socket_directories = '$D'
archive_mode = off
EOF
  chown -R postgres "$dir" "$times" "$times.sh"
  local s e
  s=$(date +%s.%N)
  as_pg "$BIN/pg_ctl -D $dir -l $dir.log start" >/dev/null
  for _ in $(seq 36000); do
    [ "$(psql_ "select pg_is_in_recovery()" "$port" 2>/dev/null)" = "f" ] && break
    sleep 0.05
  done
  e=$(date +%s.%N)
  [ "$(psql_ "select pg_is_in_recovery()" "$port")" = "f" ]
  as_pg "$BIN/pg_ctl -D $dir -m fast stop" >/dev/null
  awk -v s="$s" -v e="$e" 'BEGIN { printf "%.1f", e - s }'
}
rec_pgbr=$(recover "$D/r-pgbr" "$D/get-pgbr.times" $((PORT + 1)))
rec_plain=$(recover "$D/r-plain" "$D/get-plain.times" $((PORT + 2)))
rec_enc=$(recover "$D/r-enc" "$D/get-enc.times" $((PORT + 3)))

# Timing lines only: /usr/bin/time adds a line of its own for a non-zero exit (the last
# restore_command call, past the end of the archive, exits 1).
calls() { awk '$1 ~ /^[0-9.]+$/ { t += $1; if ($2 + 0 > m) m = $2 + 0; n++ } END { printf "%.3f s, %d MB", t / n, m / 1024 }' "$1"; }
total() { awk '$1 ~ /^[0-9.]+$/ { t += $1 } END { printf "%.1f", t }' "$1"; }
per_segment() { awk -v n="$SEGMENTS" '$1 ~ /^[0-9.]+$/ { t += $1 } END { printf "%.3f", t / n }' "$1"; }
count() { awk '$1 ~ /^[0-9.]+$/ { n++ } END { print n + 0 }' "$1"; }
mb() { awk -v b="$1" 'BEGIN { printf "%.1f MB", b / 1e6 }'; }
echo
echo "pgbench scale $SCALE, $CLIENTS clients, until $SEGMENTS segments of WAL were written" \
  "($(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", b - a }') s; archiving caught up" \
  "$(awk -v a="$t1" -v b="$t2" 'BEGIN { printf "%.0f", b - a }') s after); recovery to $target"
echo
echo "| | pgBackRest | cairn, unencrypted | cairn, encrypted |"
echo "|---|---|---|---|"
echo "| archive calls | $(count "$D/push-pgbr.times") | $(count "$D/push-plain.times") | $(count "$D/push-enc.times") |"
echo "| archiving, in all (s) | $(total "$D/push-pgbr.times") | $(total "$D/push-plain.times") | $(total "$D/push-enc.times") |"
echo "| archiving per segment (s) | $(per_segment "$D/push-pgbr.times") | $(per_segment "$D/push-plain.times") | $(per_segment "$D/push-enc.times") |"
echo "| archive call: mean, peak RSS | $(calls "$D/push-pgbr.times") | $(calls "$D/push-plain.times") | $(calls "$D/push-enc.times") |"
echo "| WAL stored | $(mb $(($(size "$D/pgbr/archive") - wal0))) | $(mb $(($(size "$D/cairn-plain") - plain0))) | $(mb $(($(size "$D/cairn-enc") - enc0))) |"
echo "| start to end of recovery (s) | $rec_pgbr | $rec_plain | $rec_enc |"
echo "| restore_command calls | $(count "$D/get-pgbr.times") | $(count "$D/get-plain.times") | $(count "$D/get-enc.times") |"
echo "| restore_command: mean, peak RSS | $(calls "$D/get-pgbr.times") | $(calls "$D/get-plain.times") | $(calls "$D/get-enc.times") |"
