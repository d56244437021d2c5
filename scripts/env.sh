# Sourced by the other scripts, with what they need as arguments (see scripts/lib/setup.sh):
# installs what is missing before anything compiles, and sets the shared target directory.
# RocksDB's bindings are generated with libclang, and its C++ build takes about 17 minutes on
# 2 cores, so the target directory lives outside the clone and is reused between clones.

set -euo pipefail
# shellcheck source=lib/setup.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/setup.sh"
setup_require "$@"

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/cairn-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
