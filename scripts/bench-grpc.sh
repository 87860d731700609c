#!/usr/bin/env bash
# End-to-end benchmarks over gRPC with the release binaries and streamctl's
# perf tools, against the local store and the S3 test server:
# - the null server (benches/null_server.rs: the same gRPC stack and proto,
#   answering Produce without storing) and the real server, 3 runs each of
#   2,000,000 records of 100 B, batches of 1,000, 8 in flight, 1 partition;
# - idempotent produce against plain produce, in alternating runs;
# - at half the real server's median rate, with a subscriber: ack latency,
#   produce -> subscriber latency, and where the time goes (per-stage
#   histograms scraped from /metrics before and after the run);
# - fetch latency of 100 records (first pass from the store, second cached);
# - acks=uploaded from 4 producers at once, and objects written per GB.
# Prints a summary table at the end of each store's section.
#   scripts/bench-grpc.sh [local|s3|both]   (default both)
# STREAMHOUSE_BIN_DIR=DIR runs the streamhoused/streamctl/null_server found
# in DIR instead of building them (to compare two builds in one sitting).
set -euo pipefail
cd "$(dirname "$0")/.."
# A free port for the Kafka listener, so that runs side by side never collide.
export STREAMHOUSE_KAFKA_LISTEN="${STREAMHOUSE_KAFKA_LISTEN:-127.0.0.1:0}"
# shellcheck source=scripts/bench-bins.sh
. scripts/bench-bins.sh
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
ctl="$BIN/streamctl"

median() { printf '%s\n' "$@" | sort -n | sed -n "$(( ($# + 1) / 2 ))p"; }
rate_of() { awk '{print int($4)}' <<< "$1"; }   # perf-produce's records/sec
field() { sed -n "s/.* \([0-9.]*\) ms $1.*/\1/p" <<< "$2"; } # field 99th LINE: that percentile

wait_for() { # file pattern
  for _ in $(seq 1 100); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
  echo "timed out waiting for '$2' in $1" >&2; return 1
}

max_runs() { # extra-perf-flags... ; prints lines, sets $runs
  runs=()
  for _ in 1 2 3; do
    [ -n "${METRICS:-}" ] && drain
    line=$($ctl perf-produce --topic bench --records 2000000 --record-size 100 --batch 1000 --inflight 8 "$@" | head -1)
    echo "   $line"
    runs+=("$(rate_of "$line")")
  done
}

scrape() { curl -s "http://$METRICS/metrics" > "$1"; }

# Waits (up to 3 minutes) until everything produced is uploaded (the
# active segment seals by age within 2 s), so that each section starts from
# the same state: on a store slower than produce (the S3 test server on
# this machine) the backlog would otherwise reach its bound and later
# sections would measure backpressure, and uploads left over from one
# section would slow the next.
drain() {
  for _ in $(seq 1 1800); do
    local b
    b=$(curl -s "http://$METRICS/metrics" | awk '$1 == "streamhouse_backlog_bytes" {print $2}')
    [ "${b:-0}" -eq 0 ] && return 0
    sleep 0.1
  done
  echo "   (backlog still $b bytes after 3 minutes)"
}

run_on() { # local|s3
  local store=$1 extra=()
  if [ "$store" = s3 ]; then
    if [ -z "${STREAMHOUSE_TEST_S3_ENDPOINT:-}" ]; then
      scripts/s3-server.sh start; started_s3=1; eval "$(scripts/s3-server.sh env --test)"
    fi
    extra=(--s3-endpoint "$STREAMHOUSE_TEST_S3_ENDPOINT" --s3-bucket "$STREAMHOUSE_TEST_S3_BUCKET"
           --s3-prefix "bench-$$-$(date +%s)" --s3-path-style)
  fi
  echo "### $store store ($(nproc) cores, shared)"

  METRICS=""
  "$NULL" --listen 127.0.0.1:0 > "$work/null" &
  pid=$!
  wait_for "$work/null" "listening on"
  export STREAMHOUSE_ADDR=$(awk '/listening on/ {print $5}' "$work/null")
  echo "-- null server ($STREAMHOUSE_ADDR), 3 runs:"
  max_runs
  null_median=$(median "${runs[@]}")
  kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""

  rm -rf "$work/data"
  STREAMHOUSE_LOG=warn "$BIN/streamhoused" --listen 127.0.0.1:0 --data-dir "$work/data" \
    --metrics-listen 127.0.0.1:0 --segment-max-bytes 16MiB --segment-max-age-ms 2000 \
    "${extra[@]}" > "$work/out" 2> "$work/err" &
  pid=$!
  wait_for "$work/out" "metrics on"
  export STREAMHOUSE_ADDR=$(awk '/listening on/ {print $4}' "$work/out")
  METRICS=$(awk '/metrics on/ {print $NF}' "$work/out" | sed 's|^http://||; s|/metrics$||')
  $ctl topic create bench --partitions 1 >/dev/null
  echo "-- streamhoused ($STREAMHOUSE_ADDR), 3 runs:"
  max_runs
  real_median=$(median "${runs[@]}")

  echo "-- idempotent producer vs plain, 3 alternating pairs:"
  plain=(); idem=()
  for _ in 1 2 3; do
    drain
    line=$($ctl perf-produce --topic bench --records 2000000 --record-size 100 --batch 1000 --inflight 8)
    plain+=("$(rate_of "$line")"); echo "   plain:      $line"
    drain
    line=$($ctl perf-produce --topic bench --records 2000000 --record-size 100 --batch 1000 --inflight 8 --idempotent)
    idem+=("$(rate_of "$(head -1 <<< "$line")")"); echo "   idempotent: $(tr '\n' ' ' <<< "$line")"
  done
  pm=$(median "${plain[@]}"); im=$(median "${idem[@]}")

  half=$((real_median / 2))
  drain
  echo "-- at half the median rate ($half records/s) for 5 s, with a subscriber:"
  $ctl perf-consume --topic bench --records $((half * 5)) --subscribe > "$work/sub" &
  sub=$!
  sleep 1
  scrape "$work/m0"
  ack=$($ctl perf-produce --topic bench --records $((half * 5)) --record-size 100 --batch 1000 --throughput $half --stamp)
  wait $sub
  scrape "$work/m1"
  e2e=$(tail -1 "$work/sub")
  echo "   $ack"; echo "   $e2e"
  echo "   where the time goes (server-side stages during this run):"
  python3 scripts/stage-table.py "$work/m0" "$work/m1"
  sleep 3 # let the last segments seal and upload

  echo "-- fetch of 100 records, 3000 fetches from the start (pass 1: store/cache cold, pass 2: cached):"
  echo "   $($ctl perf-consume --topic bench --records 300000 --fetch-records 100)"
  echo "   $($ctl perf-consume --topic bench --records 300000 --fetch-records 100)"

  echo "-- acks=uploaded, 4 producers at once, 500,000 records each:"
  drain
  $ctl topic create up --partitions 1 >/dev/null
  scrape "$work/u0"
  local t0=$(date +%s.%N)
  local producers=()
  for i in 1 2 3 4; do
    $ctl perf-produce --topic up --records 500000 --record-size 100 --batch 1000 --inflight 8 --acks uploaded > "$work/up$i" &
    producers+=($!)
  done
  wait "${producers[@]}"
  local t1=$(date +%s.%N)
  scrape "$work/u1"
  for i in 1 2 3 4; do echo "   $(cat "$work/up$i")"; done
  up_rate=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.0f", 2000000 / (b - a)}')
  up_p99=$(for i in 1 2 3 4; do field 99th "$(cat "$work/up$i")"; done | sort -n | tail -1)
  counter() { awk -v n="streamhouse_$1_total" '$1 == n {print $2}' "$2"; }
  puts=$(( $(counter puts "$work/u1") - $(counter puts "$work/u0") ))
  bytes=$(( $(counter bytes_in "$work/u1") - $(counter bytes_in "$work/u0") ))
  per_gb=$(awk -v p="$puts" -v b="$bytes" 'BEGIN {printf "%.0f", p / (b / 1e9)}')
  python3 scripts/stage-table.py "$work/u0" "$work/u1" | grep -E "histogram|produce_latency|wal_fsync|upload_"

  echo
  echo "| $store store | measured | goal |"
  echo "|---|---|---|"
  echo "| max produce rate, median of 3 | $real_median rec/s = $(awk -v a="$real_median" -v b="$null_median" 'BEGIN {printf "%.0f%%", 100 * a / b}') of the null server ($null_median) | >= 80% |"
  echo "| idempotent / plain, medians of 3 alternating | $im / $pm = $(awk -v a="$im" -v b="$pm" 'BEGIN {printf "%.3f", a / b}') | >= 0.95 |"
  echo "| ack p50 / p99 at half rate | $(field 50th "$ack") / $(field 99th "$ack") ms | p99 <= 3 ms |"
  echo "| produce -> subscriber p50 / p99 | $(field 50th "$e2e") / $(field 99th "$e2e") ms | p99 <= 5 ms |"
  echo "| acks=uploaded, 4 producers | $up_rate rec/s, worst p99 $up_p99 ms | >= 1.2 M rec/s |"
  echo "| objects per GB, acks=uploaded | $per_gb ($puts PUTs for $bytes bytes) | <= 100 |"
  echo
  kill -TERM $pid; wait $pid; pid=""
}

case "$mode" in
  local) run_on local ;;
  s3) run_on s3 ;;
  both) run_on local; run_on s3 ;;
  *) echo "usage: $0 [local|s3|both]" >&2; exit 2 ;;
esac
