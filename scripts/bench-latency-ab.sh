#!/usr/bin/env bash
# Two builds of streamhoused side by side, for one lever at a time: both
# servers run at once (each idle while the other is measured), and at each
# offered rate the same client (streamctl perf-produce from build A: 1
# partition, 100 B records, batches of 1,000) alternates between them,
# PAIRS times, each run preceded by a drain of both servers' uploads. On a
# noisy machine only such pairs are comparable; the medians are printed.
#   scripts/bench-latency-ab.sh DIR_A DIR_B     (each holds streamhoused, streamctl)
# RATES (default "300000 600000"), PAIRS (default 5), SECONDS_PER_RUN (5).
# B_OBJECTS_DIR=DIR puts B's local objects in DIR (a tmpfs, say: the same
# build twice then tells how much of the tail the object writes make).
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -eq 2 ] || { echo "usage: $0 DIR_A DIR_B" >&2; exit 2; }
export STREAMHOUSE_KAFKA_LISTEN="${STREAMHOUSE_KAFKA_LISTEN:-127.0.0.1:0}"
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
ctl="$1/streamctl"
field() { sed -n "s/.* \([0-9.]*\) ms $1.*/\1/p" <<< "$2"; }
median() { printf '%s\n' "$@" | sort -n | sed -n "$(( ($# + 1) / 2 ))p"; }

declare -A ADDR METRICS
for side in A B; do
  dir=$1; [ "$side" = B ] && dir=$2
  if [ "$side" = B ] && [ -n "${B_OBJECTS_DIR:-}" ]; then
    mkdir -p "$work/data-B" "$B_OBJECTS_DIR" && ln -s "$B_OBJECTS_DIR" "$work/data-B/objects"
  fi
  STREAMHOUSE_LOG=warn "$dir/streamhoused" --listen 127.0.0.1:0 --data-dir "$work/data-$side" \
    --metrics-listen 127.0.0.1:0 --segment-max-age-ms 2000 > "$work/out-$side" 2> "$work/err-$side" &
  pids+=($!)
  for _ in $(seq 1 100); do grep -q "metrics on" "$work/out-$side" 2>/dev/null && break; sleep 0.1; done
  ADDR[$side]=$(awk '/listening on/ {print $4}' "$work/out-$side")
  METRICS[$side]=$(awk '/metrics on/ {print $NF}' "$work/out-$side" | sed 's|^http://||; s|/metrics$||')
  STREAMHOUSE_ADDR=${ADDR[$side]} $ctl topic create bench --partitions 1 >/dev/null
done
drain() {
  local s b
  for s in A B; do
    for _ in $(seq 1 1800); do
      b=$(curl -s "http://${METRICS[$s]}/metrics" | awk '$1 == "streamhouse_backlog_bytes" {print $2}')
      [ "${b:-0}" -eq 0 ] && break
      sleep 0.1
    done
  done
}

echo "### A = $1, B = $2 ($(nproc) cores, shared), $(date -u '+%F %H:%M')"
for rate in ${RATES:-300000 600000}; do
  a99=(); b99=(); a50=(); b50=()
  for pair in $(seq 1 "${PAIRS:-5}"); do
    for side in A B; do
      drain
      line=$(STREAMHOUSE_ADDR=${ADDR[$side]} $ctl perf-produce --topic bench --record-size 100 --batch 1000 \
        --records $((rate * ${SECONDS_PER_RUN:-5})) --throughput "$rate" | head -1)
      if [ "$side" = A ]; then a50+=("$(field 50th "$line")"); a99+=("$(field 99th "$line")")
      else b50+=("$(field 50th "$line")"); b99+=("$(field 99th "$line")"); fi
    done
    echo "   $rate rec/s pair $pair: A p50/p99 ${a50[$((pair - 1))]:-?} / ${a99[$((pair - 1))]:-?} ms, B ${b50[$((pair - 1))]:-?} / ${b99[$((pair - 1))]:-?} ms"
  done
  echo "| $rate | A p50 / p99 median $(median "${a50[@]}") / $(median "${a99[@]}") ms | B $(median "${b50[@]}") / $(median "${b99[@]}") ms |"
done
