#!/usr/bin/env bash
# Runs every benchmark, with the S3 test server up so the S3 rows run too.
# Extra arguments are passed to `cargo bench` (e.g. `--bench engine`).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/streamhouse/target}"
scripts/setup.sh
scripts/s3-server.sh start
trap 'scripts/s3-server.sh stop' EXIT
eval "$(scripts/s3-server.sh env)"
cargo bench --locked "$@"
