# Shared by pg_space.sh and pg_wal.sh (sourced, not run): a PostgreSQL 15 server in $D on
# $PORT, archiving every WAL segment through one archive_command into pgBackRest's repository
# ($D/pgbr) and the cairn repositories named in $CAIRN_REPOS ($D/cairn-NAME), each call timed
# (elapsed seconds and peak RSS in KiB, one line per call, in $D/push-pgbr.times and
# $D/push-NAME.times). Needs BIN, D, PORT and CAIRN_REPOS set, and $D/cairn and $D/password.

as_pg() { su postgres -c "$*"; }
cairn_() { local r=$1; shift; as_pg "$D/cairn --repo $D/cairn-$r --cache-dir $D/cache-$r --password-file $D/password $*"; }
psql_() { as_pg "$BIN/psql -h $D -p ${2:-$PORT} -d postgres -qAt -c \"$1\""; }
# Bytes of the files a directory holds (directories are not data: an object store has none).
size() { find "$1" -type f -printf '%s\n' | awk '{ s += $1 } END { print s + 0 }'; }

# Writes pgBackRest's config and the archive command, runs initdb, starts the server, and
# creates pgBackRest's stanza. Extra postgresql.conf lines come as arguments.
start_archiving_server() {
  cat >"$D/pgbackrest.conf" <<EOF
[global]
repo1-path=$D/pgbr
compress-type=zst
compress-level=3
repo1-retention-full=99
start-fast=y
archive-check=y
log-level-console=error
log-level-file=off
lock-path=$D/pgbr-lock
spool-path=$D/pgbr-spool

[bench]
pg1-path=$D/data
pg1-port=$PORT
pg1-socket-path=$D
EOF
  # pgBackRest insists that the archive command's name contains "pgbackrest".
  cat >"$D/pgbackrest-then-cairn.sh" <<EOF
#!/bin/sh
set -e
/usr/bin/time -f "%e %M" -a -o $D/push-pgbr.times pgbackrest --config=$D/pgbackrest.conf --stanza=bench archive-push "\$1"
for r in $CAIRN_REPOS; do
  /usr/bin/time -f "%e %M" -a -o $D/push-\$r.times $D/cairn --repo $D/cairn-\$r --cache-dir $D/cache-\$r --password-file $D/password pg archive-wal "\$1" "\$2"
done
EOF
  chmod +x "$D/pgbackrest-then-cairn.sh"
  chown postgres "$D"/*.sh "$D"/*.conf
  as_pg "$BIN/initdb -D $D/data -A trust" >/dev/null
  {
    echo "port = $PORT"
    echo "listen_addresses = '127.0.0.1'"
    echo "unix_socket_directories = '$D'"
    echo "wal_level = replica"
    echo "archive_mode = on"
    echo "archive_command = '$D/pgbackrest-then-cairn.sh %p %f'"
    for line in "$@"; do echo "$line"; done
  } >>"$D/data/postgresql.conf"
  as_pg "$BIN/pg_ctl -D $D/data -l $D/pg.log -w start" >/dev/null
  as_pg "pgbackrest --config=$D/pgbackrest.conf --stanza=bench stanza-create" >/dev/null
}

# Waits until the server has handed every finished WAL segment to every tool.
wait_archived() {
  for _ in $(seq 3600); do
    [ -z "$(find "$D/data/pg_wal/archive_status" -name '*.ready')" ] && return
    sleep 0.5
  done
  echo "archiving did not catch up" >&2
  exit 1
}
