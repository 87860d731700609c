#!/usr/bin/env bash
# The benchmark report: builds the release binaries and the null server,
# starts the S3 test server, runs the segment codec bench (compression
# against the LZ4 bound per data set), scripts/bench-kafka.sh (Kafka clients
# beside gRPC), scripts/bench-latency.sh (the ack latency tail beside the
# null server) and scripts/bench_report.py (produce,
# latency at half load, fetch, restart, rebuild, memory, PUTs/GETs per GB;
# medians of three, on ../shared/data; Redis Streams as a peer on the same
# machine), and writes docs/BENCHMARKS.md with SVG plots in docs/. About 5
# minutes on 2 cores (with the builds warm).
#
#   scripts/bench.sh                  the report
#   scripts/bench.sh cargo [ARGS]     every `cargo bench` (ARGS: e.g. --bench engine)
#
# COVERAGE_SUMMARY=FILE adds the TOTAL line of scripts/coverage.sh's output.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/streamhouse/target}"
scripts/setup.sh
scripts/s3-server.sh start
trap 'scripts/s3-server.sh stop' EXIT
eval "$(scripts/s3-server.sh env --test)"
if [ "${1:-}" = cargo ]; then
  shift
  exec cargo bench --locked "$@"
fi
# The peer measured beside us: Redis Streams (Debian's redis-server).
if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-benchmark >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq redis-server redis-tools >/dev/null
fi
# The release binaries and the null server of this checkout.
unset STREAMHOUSE_BIN_DIR
# shellcheck source=scripts/bench-bins.sh
. scripts/bench-bins.sh
null=$NULL
codec=$(mktemp)
STREAMHOUSE_BENCH_ROUNDS=3 cargo bench --locked --bench segment_codec > "$codec"
kafka=$(mktemp)
STREAMHOUSE_BIN_DIR="$CARGO_TARGET_DIR/release" scripts/bench-kafka.sh > "$kafka"
# The ack latency tail beside the null server; BEFORE_BIN_DIR=DIR (with
# streamhoused, streamctl and null_server of an earlier build, BEFORE=its
# commit) measures that build first, for a before/after in one sitting.
latency=$(mktemp)
args=(--null "$null" --codec "$codec" --kafka "$kafka" --latency "$latency")
if [ -n "${BEFORE_BIN_DIR:-}" ]; then
  latency_before=$(mktemp)
  STREAMHOUSE_BIN_DIR="$BEFORE_BIN_DIR" scripts/bench-latency.sh > "$latency_before"
  args+=(--latency-before "$latency_before" --before "${BEFORE:-an earlier build}")
fi
scripts/bench-latency.sh > "$latency"
[ -n "${COVERAGE_SUMMARY:-}" ] && args+=(--coverage "$COVERAGE_SUMMARY")
python3 scripts/bench_report.py "${args[@]}"
rm -f "$codec" "$kafka" "$latency" "${latency_before:-}"
