#!/usr/bin/env bash
# Tests of the set-up (scripts/lib/setup.sh): which machines get libclang-dev installed, and the
# one-line failure when apt-get or pip cannot reach their archives. Run by scripts/test.sh.
set -uo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=../lib/setup.sh
source scripts/lib/setup.sh

passed=0 failed=0
ok() { passed=$((passed + 1)); echo "ok: $1"; }
not_ok() { failed=$((failed + 1)); echo "FAILED: $1" >&2; }
expect() { # expect NAME yes|no: libclang_usable on stdin
  local name="$1" want="$2" got=no
  libclang_usable && got=yes
  if [ "$got" = "$want" ]; then ok "$name"; else not_ok "$name: usable=$got, expected $want"; fi
}

# A fresh Debian 12 machine of this project's kind: LLVM's C++ library only. A name-prefix test
# (libclang[-.]) takes libclang-cpp.so.14 for libclang; bindgen skips it, so install.
expect "fresh machine (libclang-cpp.so.14 only) installs" no <<'EOF'
/usr/lib/llvm-14/lib/libclang-cpp.so.14
/usr/lib/x86_64-linux-gnu/libclang-cpp.so.14
EOF

# The same machine after `apt-get install libclang-dev`: no second install.
expect "libclang-14.so.1 with clang's headers does not install" yes <<'EOF'
/usr/lib/llvm-14/lib/libclang-cpp.so.14
/usr/lib/x86_64-linux-gnu/libclang-cpp.so.14
/usr/lib/llvm-14/lib/libclang-14.so.1
/usr/lib/llvm-14/lib/libclang.so.1
/usr/lib/x86_64-linux-gnu/libclang-14.so.1
/usr/lib/x86_64-linux-gnu/libclang-14.so.13
/usr/lib/x86_64-linux-gnu/libclang-14.so.14.0.6
/usr/lib/llvm-14/lib/clang/14.0.6/include/stddef.h
EOF

expect "a development symlink alone (libclang.so) with headers does not install" yes <<'EOF'
/usr/lib/llvm-16/lib/libclang.so
/usr/lib/llvm-16/lib/clang/16/include/stddef.h
EOF

# libclang1-14 brings the library without clang's stddef.h; bindgen then fails on RocksDB's
# c.h, so this machine still needs libclang-dev.
expect "libclang1-14 without clang's headers installs" no <<'EOF'
/usr/lib/llvm-14/lib/libclang-14.so.1
/usr/lib/x86_64-linux-gnu/libclang-14.so.1
EOF

expect "an empty list installs" no </dev/null

# LIBCLANG_PATH: only that place counts, as in bindgen.
tmp="$(mktemp -d "${TMPDIR:-/tmp}/cairn-setup-test.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/good/clang/17/include" "$tmp/cpp-only"
touch "$tmp/good/libclang-17.so.1" "$tmp/good/clang/17/include/stddef.h" "$tmp/cpp-only/libclang-cpp.so.17"
expect "LIBCLANG_PATH naming a directory with libclang" yes < <(LIBCLANG_PATH="$tmp/good" libclang_candidates)
expect "LIBCLANG_PATH naming the library file" yes < <(LIBCLANG_PATH="$tmp/good/libclang-17.so.1" libclang_candidates)
expect "LIBCLANG_PATH naming a directory with only libclang-cpp" no < <(LIBCLANG_PATH="$tmp/cpp-only" libclang_candidates)

# A set-up that cannot install: apt-get with its archive unreachable (a proxy on a closed
# loopback port, an empty download cache), asked for a package this machine lacks. It stops
# before the caller compiles anything, with one line naming the package and the command.
probe_pkg=hello
if dpkg -s "$probe_pkg" >/dev/null 2>&1; then
  not_ok "offline apt-get: the probe package $probe_pkg is installed here; remove it (apt-get purge $probe_pkg)"
else
  mkdir -p "$tmp/archives/partial"
  cat >"$tmp/apt.conf" <<EOF
Acquire::http::Proxy "http://127.0.0.1:9/";
Acquire::https::Proxy "http://127.0.0.1:9/";
Acquire::Retries "0";
Dir::Cache::archives "$tmp/archives/";
EOF
  LIBCLANG_PATH="$tmp/good" APT_CONFIG="$tmp/apt.conf" bash -c \
    "source scripts/env.sh cairn-setup-probe-command:$probe_pkg; echo COMPILING" \
    >"$tmp/out" 2>"$tmp/err"
  status=$?
  last="$(tail -n1 "$tmp/err")"
  if [ "$status" -ne 0 ] && ! grep -q COMPILING "$tmp/out" \
      && [ "$(grep -c '^cairn set-up: could not' "$tmp/err")" -eq 1 ] \
      && [ "$(wc -l <"$tmp/err")" -le 2 ] \
      && [[ "$last" == "cairn set-up: could not install $probe_pkg ("*"); install by hand with: apt-get install $probe_pkg" ]]; then
    ok "offline apt-get stops before compiling: $last"
  else
    not_ok "offline apt-get: status $status, stdout $(cat "$tmp/out"), stderr: $(cat "$tmp/err")"
  fi
fi

# The same with pip and its index unreachable.
probe_pip=cowsay
if pip3 show "$probe_pip" >/dev/null 2>&1; then
  not_ok "offline pip: the probe package $probe_pip is installed here; remove it (pip3 uninstall $probe_pip)"
else
  LIBCLANG_PATH="$tmp/good" PIP_INDEX_URL="http://127.0.0.1:9/simple" PIP_FIND_LINKS="" PIP_NO_CACHE_DIR=1 PIP_RETRIES=0 \
    PIP_DEFAULT_TIMEOUT=5 bash -c \
    "source scripts/env.sh pip:cairn-setup-probe-command:$probe_pip; echo COMPILING" \
    >"$tmp/out" 2>"$tmp/err"
  status=$?
  last="$(tail -n1 "$tmp/err")"
  if [ "$status" -ne 0 ] && ! grep -q COMPILING "$tmp/out" \
      && [ "$(wc -l <"$tmp/err")" -le 2 ] \
      && [[ "$last" == "cairn set-up: could not install $probe_pip with pip3 ("*"); install by hand with: pip3 install $probe_pip" ]]; then
    ok "offline pip stops before compiling: $last"
  else
    not_ok "offline pip: status $status, stdout $(cat "$tmp/out"), stderr: $(cat "$tmp/err")"
  fi
fi

echo "setup: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
