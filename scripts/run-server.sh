#!/usr/bin/env bash
# Installs what is missing, builds, and starts streamhoused on the embedded
# default: 127.0.0.1:50051, data under ./streamhouse-data. Extra arguments go
# to streamhoused (see `streamhoused --help`).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/streamhouse/target}"
"$root/scripts/setup.sh"
cargo build --release --locked --manifest-path "$root/Cargo.toml" --bin streamhoused
exec "$CARGO_TARGET_DIR/release/streamhoused" "$@"
