#!/usr/bin/env bash
# Produce throughput of a three-node cluster against one node, in one
# sitting, on the S3 test server (and etcd for the cluster):
# - baseline: one node (no --etcd), one streamctl perf-produce over the 6
#   partitions of a topic;
# - cluster: three nodes on this machine (they share its cores), one
#   perf-produce per node over the partitions that node leads, started
#   together; the cluster's rate is every record over the wall time from
#   the first start to the last finish (not the sum of the three rates,
#   which would count non-overlapping runs as parallel).
# Records are the lines of ../shared/data/flights-200k.jsonl (real JSON,
# about 300 B each), batches of 1,000, 8 in flight, acks=wal. Each setup
# runs RUNS times (default 3) in alternation; the medians are printed.
#   scripts/bench-cluster.sh
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/bench-bins.sh
. scripts/bench-bins.sh
RUNS="${RUNS:-3}"
RECORDS="${RECORDS:-6000000}"
DATA="${STREAMHOUSE_DATA_DIR:-$(cd .. && pwd)/shared/data}/flights-200k.jsonl"
ctl="$BIN/streamctl"
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

scripts/s3-server.sh start >/dev/null
scripts/etcd-server.sh start >/dev/null
eval "$(scripts/s3-server.sh env --test)"
eval "$(scripts/etcd-server.sh env)"

# start NAME PREFIX [FLAGS...]: a node on free ports; prints its gRPC address.
start() {
  local name=$1 prefix=$2; shift 2
  STREAMHOUSE_LOG=warn "$BIN/streamhoused" --listen 127.0.0.1:0 --kafka-listen off \
    --data-dir "$work/$name" --s3-endpoint "$STREAMHOUSE_TEST_S3_ENDPOINT" \
    --s3-bucket "$STREAMHOUSE_TEST_S3_BUCKET" --s3-path-style --s3-prefix "$prefix" "$@" \
    >"$work/$name.out" 2>"$work/$name.log" &
  pids+=($!)
  for _ in $(seq 100); do grep -q '^streamhoused listening on' "$work/$name.out" && break; sleep 0.1; done
  sed -n 's/^streamhoused listening on //p' "$work/$name.out"
}
stop_all() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  pids=()
}
# perf ADDR PARTITIONS N: records/s of one perf-produce.
perf() {
  "$ctl" --server "$1" perf-produce --topic bench --records "$3" --payload-file "$DATA" \
    --batch 1000 --inflight 8 --partition "$2" | head -1 | awk '{print int($4)}'
}
median() { printf '%s\n' "$@" | sort -n | sed -n "$(( ($# + 1) / 2 ))p"; }

single=() cluster=()
for run in $(seq "$RUNS"); do
  tag="bench-cluster-$$-$run"
  addr=$(start "single-$run" "$tag-single")
  "$ctl" --server "$addr" topic create bench --partitions 6 >/dev/null
  single+=("$(perf "$addr" 0,1,2,3,4,5 "$RECORDS")")
  stop_all

  flags=(--etcd "$STREAMHOUSE_TEST_ETCD" --cluster "$tag" --cluster-ttl-ms 5000)
  addrs=()
  for i in 1 2 3; do addrs+=("$(start "n$i-$run" "$tag-cluster" "${flags[@]}")"); done
  "$ctl" --server "${addrs[0]}" topic create bench --partitions 6 >/dev/null
  # Wait until the 6 partitions are led and the nodes settled (a TTL).
  sleep 7
  info=$("$ctl" --server "${addrs[0]}" --format json cluster)
  rates=() perfs=() total=0
  t0=$(date +%s%N)
  for i in 0 1 2; do
    parts=$(python3 -c '
import json, sys
info = json.loads(sys.argv[1])
grpc = {n["node_id"]: n["grpc_addr"] for n in info["nodes"]}
print(",".join(str(l["partition"]) for l in info["leaders"] if grpc.get(l["node_id"]) == sys.argv[2]))
' "$info" "${addrs[$i]}")
    [ -z "$parts" ] && continue
    n=$(( RECORDS * $(tr ',' '\n' <<< "$parts" | wc -l) / 6 ))
    total=$((total + n))
    perf "${addrs[$i]}" "$parts" "$n" > "$work/rate-$i" &
    perfs+=($!)
    rates+=("$work/rate-$i:$parts")
  done
  wait "${perfs[@]}"
  t1=$(date +%s%N)
  rate=$(( total * 1000000000 / (t1 - t0) ))
  spread=""
  for r in "${rates[@]}"; do spread+=" partitions ${r#*:}: $(cat "${r%%:*}")/s;"; done
  cluster+=("$rate")
  echo "run $run: one node ${single[-1]} records/s; three nodes $rate records/s ($total records in $(( (t1 - t0) / 1000000 )) ms; each node's own rate:$spread)"
  stop_all
done
echo "median of $RUNS: one node $(median "${single[@]}") records/s, three nodes $(median "${cluster[@]}") records/s"
