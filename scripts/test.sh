#!/usr/bin/env bash
# Runs every check CI runs: formatting, lints, and the whole test suite (unit, property,
# end-to-end and frozen-fixture tests). One command on a fresh Debian machine.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

cargo fmt --all -- --check
cargo clippy --release --workspace --all-targets -- -D warnings
cargo test --release --workspace --all-targets
cargo test --release --workspace --doc
echo "all tests passed"
