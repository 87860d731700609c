#!/usr/bin/env bash
# End-to-end benchmarks over gRPC with the release binaries and streamctl's
# perf tools: produce throughput (1 partition, 100 B records, batches of
# 1,000, acks=wal), ack latency at half the measured maximum, produce ->
# subscriber latency, fetch latency of 100 records (first pass from the
# store, second from the cache), and the cost of idempotent produce against
# plain produce (alternating runs). Runs once on the local store and once on the
# S3 test server.
#   scripts/bench-grpc.sh [local|s3|both]   (default both)
# STREAMHOUSE_BIN_DIR=DIR runs the streamhoused/streamctl found in DIR
# instead of building them (to compare two builds in one sitting).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/streamhouse/target}"
if [ -n "${STREAMHOUSE_BIN_DIR:-}" ]; then
  BIN="$STREAMHOUSE_BIN_DIR"
else
  cargo build --release --locked --bins
  BIN="$CARGO_TARGET_DIR/release"
fi
mode="${1:-both}"
work=$(mktemp -d)
pid=""
started_s3=0
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  rm -rf "$work"
  [ "$started_s3" = 1 ] && scripts/s3-server.sh stop || true
}
trap cleanup EXIT

run_on() { # local|s3
  local store=$1 extra=()
  if [ "$store" = s3 ]; then
    if [ -z "${STREAMHOUSE_TEST_S3_ENDPOINT:-}" ]; then
      scripts/s3-server.sh start; started_s3=1; eval "$(scripts/s3-server.sh env)"
    fi
    extra=(--s3-endpoint "$STREAMHOUSE_TEST_S3_ENDPOINT" --s3-bucket "$STREAMHOUSE_TEST_S3_BUCKET"
           --s3-prefix "bench-$$-$(date +%s)" --s3-path-style)
  fi
  rm -rf "$work/data"
  STREAMHOUSE_LOG=warn "$BIN/streamhoused" --listen 127.0.0.1:0 --data-dir "$work/data" \
    --segment-max-bytes 16MiB --segment-max-age-ms 2000 "${extra[@]}" > "$work/out" 2> "$work/err" &
  pid=$!
  for _ in $(seq 1 100); do grep -q "listening on" "$work/out" 2>/dev/null && break; sleep 0.1; done
  export STREAMHOUSE_ADDR=$(awk '/listening on/ {print $4}' "$work/out")
  local ctl="$BIN/streamctl"
  echo "### $store store (server $STREAMHOUSE_ADDR, $(nproc) cores)"
  $ctl topic create bench --partitions 1 >/dev/null
  echo "-- max throughput, 3 runs of 2,000,000 records:"
  best=0
  for i in 1 2 3; do
    line=$($ctl perf-produce --topic bench --records 2000000 --record-size 100 --batch 1000 --inflight 8)
    echo "   $line"
    rate=$(echo "$line" | awk '{print int($4)}')
    [ "$rate" -gt "$best" ] && best=$rate
  done
  echo "-- idempotent producer vs plain, 3 alternating pairs of 2,000,000 records:"
  plain=(); idem=()
  for i in 1 2 3; do
    line=$($ctl perf-produce --topic bench --records 2000000 --record-size 100 --batch 1000 --inflight 8)
    plain+=("$(echo "$line" | awk '{print int($4)}')")
    echo "   plain:      $line"
    line=$($ctl perf-produce --topic bench --records 2000000 --record-size 100 --batch 1000 --inflight 8 --idempotent)
    idem+=("$(echo "$line" | head -1 | awk '{print int($4)}')")
    echo "   idempotent: $(echo "$line" | tr '\n' ' ')"
  done
  median() { printf '%s\n' "$@" | sort -n | sed -n 2p; }
  pm=$(median "${plain[@]}"); im=$(median "${idem[@]}")
  echo "   medians: plain $pm, idempotent $im records/s; idempotent/plain = $(awk -v a="$im" -v b="$pm" 'BEGIN {printf "%.3f", a / b}')"
  half=$((best / 2))
  echo "-- ack latency at half the best rate ($half records/s), with a subscriber measuring produce -> subscriber:"
  $ctl perf-consume --topic bench --records $((half * 5)) --subscribe > "$work/sub" &
  sub=$!
  sleep 1
  echo "   $($ctl perf-produce --topic bench --records $((half * 5)) --record-size 100 --batch 1000 --throughput $half --stamp)"
  wait $sub
  echo "   $(cat "$work/sub")"
  sleep 3 # let the last segments seal and upload
  echo "-- fetch of 100 records, 3000 fetches from the start (pass 1: store/cache cold, pass 2: cached):"
  echo "   $($ctl perf-consume --topic bench --records 300000 --fetch-records 100)"
  echo "   $($ctl perf-consume --topic bench --records 300000 --fetch-records 100)"
  kill -TERM $pid; wait $pid; pid=""
}

case "$mode" in
  local) run_on local ;;
  s3) run_on s3 ;;
  both) run_on local; run_on s3 ;;
  *) echo "usage: $0 [local|s3|both]" >&2; exit 2 ;;
esac
