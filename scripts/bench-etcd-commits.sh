#!/usr/bin/env bash
# How many segment commits share an etcd transaction (the committer of
# src/cluster/committer.rs), and what acks=uploaded costs, on one cluster
# node (SeaweedFS and etcd on this machine) leading every partition of a
# topic: a topic of 6 partitions (the baseline) and one of 48, in turn, in
# one sitting. Records are the lines of ../shared/data/flights-200k.jsonl,
# batches of 100, acks=uploaded, one request in flight per partition, so
# that many partitions upload and commit at the same time. Prints per run
# the commits, the batches (transactions) that carried them, and the
# produce latency percentiles streamctl perf-produce reports.
#   scripts/bench-etcd-commits.sh
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/bench-bins.sh
. scripts/bench-bins.sh
RUNS="${RUNS:-2}"
RECORDS="${RECORDS:-200000}"
DATA="${STREAMHOUSE_DATA_DIR:-$(cd .. && pwd)/shared/data}/flights-200k.jsonl"
ctl="$BIN/streamctl"
work=$(mktemp -d)
pid=""
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

scripts/s3-server.sh start >/dev/null
scripts/etcd-server.sh start >/dev/null
eval "$(scripts/s3-server.sh env --test)"
eval "$(scripts/etcd-server.sh env)"

metric() { curl -s "http://$metrics/metrics" | awk -v m="streamhouse_$1_total" '$1 == m {print $2}'; }

# run PARTITIONS: one fresh node and cluster, one perf-produce.
run() {
  local parts=$1 name="etcd-commits-$$-$RANDOM"
  metrics="127.0.0.1:$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
  STREAMHOUSE_LOG=warn "$BIN/streamhoused" --listen 127.0.0.1:0 --kafka-listen off \
    --data-dir "$work/$name" --s3-endpoint "$STREAMHOUSE_TEST_S3_ENDPOINT" \
    --s3-bucket "$STREAMHOUSE_TEST_S3_BUCKET" --s3-path-style --s3-prefix "$name" \
    --etcd "$STREAMHOUSE_TEST_ETCD" --cluster "$name" --metrics-listen "$metrics" \
    >"$work/$name.out" 2>"$work/$name.log" &
  pid=$!
  for _ in $(seq 100); do grep -q '^streamhoused listening on' "$work/$name.out" && break; sleep 0.1; done
  local addr
  addr=$(sed -n 's/^streamhoused listening on //p' "$work/$name.out")
  "$ctl" --server "$addr" topic create bench --partitions "$parts" >/dev/null
  local led=0
  for _ in $(seq 100); do
    led=$("$ctl" --server "$addr" cluster --format json |
      python3 -c 'import json,sys; print(sum(1 for l in json.load(sys.stdin).get("leaders", []) if l.get("topic") == "bench"))')
    [ "$led" = "$parts" ] && break
    sleep 0.2
  done
  local list
  list=$(seq -s, 0 $((parts - 1)))
  local out
  out=$("$ctl" --server "$addr" perf-produce --topic bench --records "$RECORDS" \
    --payload-file "$DATA" --batch 100 --inflight "$parts" --acks uploaded --partition "$list")
  local commits batches
  commits=$(metric etcd_commits)
  batches=$(metric etcd_commit_batches)
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  pid=""
  echo "partitions=$parts commits=$commits batches=$batches commits_per_batch=$(python3 -c "print(round($commits / max($batches, 1), 2))")"
  echo "  $out" | head -2
}

for i in $(seq "$RUNS"); do
  echo "== run $i"
  run 6
  run 48
done
