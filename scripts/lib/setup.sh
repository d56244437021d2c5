# Set-up functions, sourced by scripts/env.sh and by the set-up tests (scripts/tests/setup.sh).
#
# Everything a fresh Debian machine lacks is found first, installed in one apt-get call (and
# one pip call), then looked for again. Any failure is one line on stderr, "cairn set-up: ...",
# naming what could not be installed and the command that installs it by hand, and a non-zero
# status: the caller has not compiled anything yet.

setup_fail() {
  echo "cairn set-up: $*" >&2
  exit 1
}

# libclang, as bindgen loads it at build time (clang-sys's runtime search): a file named
# libclang.so, libclang-*.so, libclang.so.* or libclang-*.so.* but not libclang-cpp.* (that is
# LLVM's C++ library, which a fresh Debian machine has and which bindgen cannot use). bindgen
# also needs clang's own headers (stddef.h and friends, from libclang-common-N-dev), which a
# bare libclang1-N package does not bring.
#
# Reads one path a line on stdin: candidate libraries and headers. Succeeds when the list holds
# both a loadable libclang and clang's stddef.h.
libclang_usable() {
  local path name lib=0 headers=0
  while IFS= read -r path; do
    name="${path##*/}"
    case "$name" in
      libclang-cpp.*|*-cpp.so*) ;;
      libclang.so|libclang-*.so|libclang.so.*|libclang-*.so.*) lib=1 ;;
    esac
    case "$path" in
      */clang/*/include/stddef.h) headers=1 ;;
    esac
  done
  [ "$lib" -eq 1 ] && [ "$headers" -eq 1 ]
}

# Prints the candidates on this machine, from the places clang-sys searches: only
# LIBCLANG_PATH when it is set (a directory, or a library file), else llvm-config's prefix,
# LD_LIBRARY_PATH, LIBRARY_PATH and the system library directories. Headers are looked for in
# clang's resource directory beside each library directory.
libclang_candidates() {
  local dirs=() d f
  if [ -n "${LIBCLANG_PATH:-}" ]; then
    if [ -f "$LIBCLANG_PATH" ]; then
      echo "$LIBCLANG_PATH"
      dirs=("$(dirname "$LIBCLANG_PATH")")
    else
      dirs=("$LIBCLANG_PATH")
    fi
  else
    if command -v llvm-config >/dev/null 2>&1; then
      local prefix
      prefix="$(llvm-config --prefix 2>/dev/null || true)"
      [ -n "$prefix" ] && dirs+=("$prefix/bin" "$prefix/lib" "$prefix/lib64")
    fi
    local IFS=:
    # shellcheck disable=SC2206
    dirs+=(${LD_LIBRARY_PATH:-} ${LIBRARY_PATH:-})
    unset IFS
    dirs+=(/usr/local/llvm*/lib* /usr/local/lib*/*/* /usr/local/lib*/* /usr/local/lib* /usr/lib*/*/* /usr/lib*/* /usr/lib*)
  fi
  for d in "${dirs[@]}"; do
    [ -d "$d" ] || continue
    for f in "$d"/libclang.so "$d"/libclang-*.so "$d"/libclang.so.* "$d"/libclang-*.so.*; do
      [ -e "$f" ] && echo "$f"
    done
    for f in "$d"/clang/*/include/stddef.h; do
      [ -e "$f" ] && echo "$f"
    done
    # A library found through a symlink (/usr/lib/x86_64-linux-gnu/libclang-14.so.1) takes its
    # headers from beside the file it points to (/usr/lib/llvm-14/lib/clang/14.0.6/include).
    for f in "$d"/libclang*.so*; do
      [ -L "$f" ] || continue
      local real
      real="$(dirname "$(readlink -f "$f")")"
      for h in "$real"/clang/*/include/stddef.h; do
        [ -e "$h" ] && echo "$h"
      done
    done
  done
  return 0
}

# What each argument asks for, and the package that brings it:
#   CMD              a command on PATH, from the Debian package of the same name
#   CMD:PKG          a command on PATH, from Debian package PKG
#   /PATH:PKG        a file, from Debian package PKG
#   pip:CMD:PKG      a command on PATH, from the PyPI package PKG (pip3 itself from python3-pip)
#   libclang         libclang and clang's headers for bindgen, from libclang-dev
# Succeeds when it is there.
setup_present() {
  local spec="$1"
  case "$spec" in
    libclang) libclang_candidates | libclang_usable ;;
    pip:*) local rest="${spec#pip:}"; command -v "${rest%%:*}" >/dev/null 2>&1 ;;
    /*) [ -e "${spec%%:*}" ] ;;
    *) command -v "${spec%%:*}" >/dev/null 2>&1 ;;
  esac
}

setup_apt_package() {
  local spec="$1"
  case "$spec" in
    libclang) echo libclang-dev ;;
    pip:*) echo python3-pip ;;
    *:*) echo "${spec#*:}" ;;
    *) echo "$spec" ;;
  esac
}

# The first error line of a tool's output, for the one-line message.
setup_reason() {
  local line
  line="$(grep -m1 -E '^(E:|ERROR:|error:)' "$1" 2>/dev/null || tail -n1 "$1" 2>/dev/null || true)"
  line="$(printf '%s' "$line" | tr -s '[:space:]' ' ')"
  [ ${#line} -gt 200 ] && line="${line:0:200}..."
  printf '%s' "${line:-no output}"
}

# Installs what the arguments ask for and is missing, then checks again.
setup_require() {
  command -v cargo >/dev/null 2>&1 \
    || setup_fail "no Rust toolchain: cargo is not on PATH; install one with rustup (https://rustup.rs) and run again"

  local specs=(libclang "$@") spec apt=() pip=() pkg
  for spec in "${specs[@]}"; do
    setup_present "$spec" && continue
    case "$spec" in
      pip:*)
        pip+=("${spec##*:}")
        command -v pip3 >/dev/null 2>&1 || apt+=(python3-pip)
        ;;
      *) apt+=("$(setup_apt_package "$spec")") ;;
    esac
  done

  local log
  log="$(mktemp "${TMPDIR:-/tmp}/cairn-setup.XXXXXX")"
  if [ ${#apt[@]} -gt 0 ]; then
    # De-duplicate, keeping order.
    mapfile -t apt < <(printf '%s\n' "${apt[@]}" | awk '!seen[$0]++')
    echo "cairn set-up: installing ${apt[*]} with apt-get" >&2
    local sudo=()
    if [ "$(id -u)" -ne 0 ]; then
      command -v sudo >/dev/null 2>&1 \
        || { rm -f "$log"; setup_fail "${apt[*]} missing and not root (no sudo): install by hand with: apt-get install ${apt[*]}"; }
      sudo=(sudo)
    fi
    "${sudo[@]}" apt-get update -qq >"$log" 2>&1 || true
    if ! DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${apt[@]}" >>"$log" 2>&1; then
      local reason
      reason="$(setup_reason "$log")"
      rm -f "$log"
      setup_fail "could not install ${apt[*]} ($reason); install by hand with: apt-get install ${apt[*]}"
    fi
  fi
  if [ ${#pip[@]} -gt 0 ]; then
    echo "cairn set-up: installing ${pip[*]} with pip3" >&2
    hash -r
    if ! { pip3 install -q "${pip[@]}" >"$log" 2>&1 \
        || pip3 install -q --break-system-packages "${pip[@]}" >>"$log" 2>&1; }; then
      local reason
      reason="$(setup_reason "$log")"
      rm -f "$log"
      setup_fail "could not install ${pip[*]} with pip3 ($reason); install by hand with: pip3 install ${pip[*]}"
    fi
  fi
  rm -f "$log"
  hash -r
  for spec in "${specs[@]}"; do
    setup_present "$spec" && continue
    case "$spec" in
      libclang) setup_fail "libclang-dev is installed but bindgen's libclang or clang's stddef.h is still missing; install by hand with: apt-get install --reinstall libclang-dev, or set LIBCLANG_PATH to a libclang" ;;
      pip:*) setup_fail "pip3 installed ${spec##*:} but ${spec#pip:} is still not on PATH; add pip's bin directory to PATH, or install by hand with: pip3 install ${spec##*:}" ;;
      *) pkg="$(setup_apt_package "$spec")"; setup_fail "apt-get installed $pkg but ${spec%%:*} is still missing; install by hand with: apt-get install --reinstall $pkg" ;;
    esac
  done
}
