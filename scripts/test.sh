#!/usr/bin/env bash
# The whole test suite, from a fresh Debian machine: installs what is missing,
# starts the S3-compatible test server and etcd, runs fmt, clippy and every test, and
# stops the server again (also on failure).
#
# Dependency builds (the gRPC C core: about 4 minutes here) are kept in a
# persistent CARGO_TARGET_DIR outside the clone, so later runs take minutes.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/streamhouse/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# The gRPC C core without debug info (see the file): a fresh build is
# minutes shorter.
export CMAKE_TOOLCHAIN_FILE="${CMAKE_TOOLCHAIN_FILE:-$PWD/scripts/grpc-no-debuginfo.cmake}"
# Tests keep file:line in backtraces but not full debug info: each of the
# ~25 test binaries links gRPC and was over 200 MB with it.
export CARGO_PROFILE_DEV_DEBUG="${CARGO_PROFILE_DEV_DEBUG:-line-tables-only}"

step() { echo "== $* ($(date +%H:%M:%S))"; }

step "setup"
scripts/setup.sh

step "S3 test server"
scripts/s3-server.sh start
trap 'scripts/s3-server.sh stop; scripts/etcd-server.sh stop' EXIT
eval "$(scripts/s3-server.sh env --test)"
# S3 tests fail (never skip) when the server is not reachable.
export STREAMHOUSE_REQUIRE_S3=1

step "etcd test server (cluster mode)"
scripts/etcd-server.sh start
eval "$(scripts/etcd-server.sh env)"
export STREAMHOUSE_REQUIRE_ETCD=1

step "cargo fmt --check"
cargo fmt --check

step "cargo clippy"
cargo clippy --all-targets --locked -- -D warnings

step "no async runtime"
if cargo tree -e normal --locked | grep -i tokio; then
  echo "tokio is in the normal dependency tree; the design has no async runtime" >&2
  exit 1
fi

step "cargo test"
cargo test --locked

step "integration (streamctl against the S3 test server)"
scripts/integration.sh

step "python example"
scripts/python-example.sh

step "kafka clients (kcat, kafkajs, confluent-kafka)"
scripts/kafka-clients.sh

step "security (TLS on both listeners, SASL_SSL with kcat and confluent-kafka, gRPC over TLS and mutual TLS)"
scripts/security.sh

step "fuzz (5 s per target; scripts/fuzz.sh 600 for the long run)"
scripts/fuzz.sh 5
