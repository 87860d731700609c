#!/usr/bin/env bash
# Ack latency under offered load, the server's share of it: the null server
# (benches/null_server.rs: the same gRPC stack, answering Produce without
# storing) and streamhoused side by side, alternating at each offered rate,
# with the same client (streamctl perf-produce: 1 partition, 100 B records,
# batches of 1,000, 8 in flight). Local store, 64 MiB segments sealed at
# the latest 2 s after their first record (so that drains end).
#   - the max rate, best of 3 (the null server's and ours);
#   - at 100K, 300K and half of our max: 2 alternating pairs of 5 s runs,
#     ack p50 / p99 each (the goal: ours <= the null server's p99 + 2 ms);
#   - the stage histograms of the real server during its 300K runs;
#   - produce -> subscriber p50 / p99 at half the max rate.
# Run on a quiet machine; compare only figures from one run of this script.
#   scripts/bench-latency.sh            (builds the release binaries)
# STREAMHOUSE_BIN_DIR=DIR uses the streamhoused/streamctl/null_server in DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
export STREAMHOUSE_KAFKA_LISTEN="${STREAMHOUSE_KAFKA_LISTEN:-127.0.0.1:0}"
# shellcheck source=scripts/bench-bins.sh
. scripts/bench-bins.sh
SECONDS_PER_RUN="${SECONDS_PER_RUN:-5}"
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
ctl="$BIN/streamctl"
field() { sed -n "s/.* \([0-9.]*\) ms $1.*/\1/p" <<< "$2"; }
rate_of() { awk '{print int($4)}' <<< "$1"; }
wait_for() {
  for _ in $(seq 1 100); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
  echo "timed out waiting for '$2' in $1" >&2; return 1
}

"$NULL" --listen 127.0.0.1:0 > "$work/null" &
pids+=($!)
wait_for "$work/null" "listening on"
NULL_ADDR=$(awk '/listening on/ {print $5}' "$work/null")
# SERVER_FLAGS: more flags for streamhoused (to attribute the tail, e.g.
# --segment-max-bytes 1GiB --segment-max-age-ms 600000: no seal in a run).
# shellcheck disable=SC2086
STREAMHOUSE_LOG=warn "$BIN/streamhoused" --listen 127.0.0.1:0 --data-dir "$work/data" \
  --metrics-listen 127.0.0.1:0 --segment-max-age-ms 2000 ${SERVER_FLAGS:-} > "$work/out" 2> "$work/err" &
pids+=($!)
wait_for "$work/out" "metrics on"
REAL_ADDR=$(awk '/listening on/ {print $4}' "$work/out")
METRICS=$(awk '/metrics on/ {print $NF}' "$work/out" | sed 's|^http://||; s|/metrics$||')
STREAMHOUSE_ADDR=$REAL_ADDR $ctl topic create bench --partitions 1 >/dev/null

# Waits (up to 3 minutes) until everything produced is uploaded, so that
# no run pays for the uploads of the one before it.
drain() {
  [ -n "${NO_DRAIN:-}" ] && return 0
  for _ in $(seq 1 1800); do
    b=$(curl -s "http://$METRICS/metrics" | awk '$1 == "streamhouse_backlog_bytes" {print $2}')
    [ "${b:-0}" -eq 0 ] && return 0
    sleep 0.1
  done
}

# perf-produce against ADDR; extra flags after it.
produce() { local addr=$1; shift; STREAMHOUSE_ADDR=$addr $ctl perf-produce --topic bench --record-size 100 --batch 1000 "$@" | head -1; }

echo "### ack latency under offered load ($(nproc) cores, shared), $(date -u +%F)"
echo "-- max rate, 2,000,000 records, 8 in flight, alternating (null / streamhoused):"
nmax=0; rmax=0
for _ in 1 2 3; do
  n=$(rate_of "$(produce "$NULL_ADDR" --records 2000000 --inflight 8)")
  r=$(rate_of "$(produce "$REAL_ADDR" --records 2000000 --inflight 8)")
  echo "   null $n, streamhoused $r records/s"
  [ "$n" -gt "$nmax" ] && nmax=$n; [ "$r" -gt "$rmax" ] && rmax=$r
done
half=$((rmax / 2))
rows=()
for rate in ${RATES:-100000 300000 $half}; do
  records=$((rate * SECONDS_PER_RUN))
  for pair in 1 2; do
    drain
    n=$(produce "$NULL_ADDR" --records "$records" --throughput "$rate")
    curl -s "http://$METRICS/metrics" > "$work/m0-$pair"
    r=$(produce "$REAL_ADDR" --records "$records" --throughput "$rate")
    curl -s "http://$METRICS/metrics" > "$work/m1-$pair"
    # A run with a stall: where it was.
    if awk -v p="$(field 99th "$r")" 'BEGIN {exit !(p > 20)}'; then
      echo "   (ack p99 over 20 ms at $rate, pair $pair; its stages:)"
      python3 scripts/stage-table.py "$work/m0-$pair" "$work/m1-$pair" | sed 's/^/   /'
    fi
    [ "$rate" = 300000 ] && cp "$work/m0-$pair" "$work/s0-$pair" && cp "$work/m1-$pair" "$work/s1-$pair"
    row="| $rate | $pair | $(field 50th "$n") / $(field 99th "$n") | $(field 50th "$r") / $(field 99th "$r") | $(awk -v a="$(field 99th "$r")" -v b="$(field 99th "$n")" 'BEGIN {printf "%+.2f", a - b}') |"
    rows+=("$row"); echo "   $row"
  done
done
echo "-- stages of streamhoused during its second 300K run:"
python3 scripts/stage-table.py "$work/s0-2" "$work/s1-2"
drain
echo "-- produce -> subscriber at half the max rate ($half records/s) for $SECONDS_PER_RUN s:"
STREAMHOUSE_ADDR=$REAL_ADDR $ctl perf-consume --topic bench --records $((half * SECONDS_PER_RUN)) --subscribe > "$work/sub" &
sub=$!
sleep 1
ack=$(produce "$REAL_ADDR" --records $((half * SECONDS_PER_RUN)) --throughput "$half" --stamp)
wait $sub
e2e=$(tail -1 "$work/sub")
echo "   $ack"; echo "   $e2e"

echo
echo "| offered records/s | pair | null server ack p50 / p99, ms | streamhoused ack p50 / p99, ms | p99 difference, ms (goal <= +2) |"
echo "|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
echo
echo "| max rate, best of 3 | null server $nmax rec/s | streamhoused $rmax rec/s |"
echo "| produce -> subscriber p50 / p99 at $half rec/s | $(field 50th "$e2e") / $(field 99th "$e2e") ms | goal p99 <= 5 ms |"
