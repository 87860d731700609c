#!/usr/bin/env bash
# Line coverage of src/ by the whole test suite (unit and integration tests,
# including the real binaries they start), with the S3 test server up so
# the S3 tests run. Installs what it needs: the llvm-tools component and
# cargo-llvm-cov. Prints the per-file table and the total; writes
# target-independent lcov to $COVERAGE_LCOV if set.
#
# The instrumented build lives in its own directory (a different RUSTFLAGS
# means a full build, gRPC C-core included: 15-20 minutes the first time).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${STREAMHOUSE_COVERAGE_TARGET_DIR:-$HOME/.cache/streamhouse/coverage-target}"
rustup component list --installed | grep -q '^llvm-tools' || rustup component add llvm-tools
command -v cargo-llvm-cov >/dev/null 2>&1 || cargo install cargo-llvm-cov --version 0.9.1 --locked
scripts/setup.sh
scripts/s3-server.sh start
trap 'scripts/s3-server.sh stop' EXIT
eval "$(scripts/s3-server.sh env --test)"
export STREAMHOUSE_REQUIRE_S3=1
# Only src/ counts: tests, benches, the thin bin/ mains and generated code
# are not what is measured.
ignore='(/tests/|/benches/|/bin/|/fuzz/|/out/|\.cargo/registry|/rustc/)'
cargo llvm-cov --locked --ignore-filename-regex "$ignore" --summary-only
if [ -n "${COVERAGE_LCOV:-}" ]; then
  cargo llvm-cov report --ignore-filename-regex "$ignore" --lcov --output-path "$COVERAGE_LCOV"
fi
