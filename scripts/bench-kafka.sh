#!/usr/bin/env bash
# Kafka clients against the gRPC path, same machine, same run, release
# build, local store, 1 partition, values = 100-byte cuts of real flight
# records (../shared/data/flights-200k.jsonl), 2,000,000 records a run:
# - produce: streamctl perf-produce over gRPC (batches of 1,000, 8 in
#   flight) and KAFKA_PROCS confluent-kafka producer processes (linger.ms=5,
#   batch.size=1 MiB, acks=all), alternating, 3 rounds each; medians;
# - consume: one confluent-kafka consumer from the beginning
#   (queued.min.messages=1,000,000) and kcat, beside streamctl perf-consume
#   (fetches of 10,000);
# - produce -> consume latency at LAT_RATE records/s: perf-produce --stamp
#   with a perf-consume --subscribe, and a confluent-kafka producer
#   (linger.ms=1) with a consumer (fetch.wait.max.ms=100).
#   scripts/bench-kafka.sh   (KAFKA_PROCS, default 2; LAT_RATE, default 50000)
# STREAMHOUSE_BIN_DIR=DIR uses the binaries in DIR instead of building.
# The raw lines go to stdout as they come; a markdown section for
# docs/BENCHMARKS.md (scripts/bench.sh passes it to bench_report.py) ends
# the output, between "<!-- kafka -->" lines.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/streamhouse/target}"
PROCS="${KAFKA_PROCS:-2}"
LAT_RATE="${LAT_RATE:-50000}"
N=2000000
if [ -n "${STREAMHOUSE_BIN_DIR:-}" ]; then
  BIN="$STREAMHOUSE_BIN_DIR"
else
  cargo build --release --locked --bins
  BIN="$CARGO_TARGET_DIR/release"
fi
scripts/kafka-clients.sh install
PY="$HOME/.cache/streamhouse/kafka-venv/bin/python"
work=$(mktemp -d)
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
median() { printf '%s\n' "$@" | sort -n | sed -n "$(( ($# + 1) / 2 ))p"; }

cut -c1-100 "$(cd .. && pwd)/shared/data/flights-200k.jsonl" > "$work/payload"
STREAMHOUSE_LOG=warn "$BIN/streamhoused" --listen 127.0.0.1:0 --kafka-listen 127.0.0.1:0 \
  --data-dir "$work/data" > "$work/out" 2> "$work/err" &
pid=$!
for _ in $(seq 100); do grep -q '^streamhoused kafka on' "$work/out" && break; sleep 0.1; done
export STREAMHOUSE_ADDR=$(sed -n 's/^streamhoused listening on //p' "$work/out")
KAFKA=$(sed -n 's/^streamhoused kafka on //p' "$work/out")
ctl="$BIN/streamctl"
echo "machine: $(nproc) cores; $N records of 100 B per run; kafka: $PROCS producer processes" | tee "$work/raw"

# Server CPU (user + system ticks of streamhoused) around a command.
ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
hz=$(getconf CLK_TCK)
us_per_record() { python3 -c "print(f'{($2 - $1) / $hz / $N * 1e6:.2f}')"; }
for _ in $(seq 10); do cat "$work/payload"; done | head -n $N > "$work/lines"

grpc=(); kafka=(); kcat=(); gcpu=(); kcpu=(); ccpu=()
for round in 1 2 3; do
  for t in g k c; do "$ctl" topic create "$t$round" --partitions 1 > /dev/null; done
  a=$(ticks)
  line=$("$ctl" perf-produce --topic "g$round" --records $N --payload-file "$work/payload" --batch 1000 --inflight 8 | head -1)
  b=$(ticks); gcpu+=("$(us_per_record "$a" "$b")")
  echo "  grpc   $line" | tee -a "$work/raw"; grpc+=("$(awk '{print int($4)}' <<< "$line")")
  a=$(ticks)
  line=$("$PY" scripts/kafka_bench.py produce "$KAFKA" "k$round" $N "$work/payload" "$PROCS")
  b=$(ticks); kcpu+=("$(us_per_record "$a" "$b")")
  echo "  $line" | tee -a "$work/raw"; kafka+=("$(sed -n 's/.*= \([0-9]*\) records\/s.*/\1/p' <<< "$line")")
  # kcat (librdkafka in C, one process): the wall time of the whole command.
  a=$(ticks); t0=$(date +%s.%N)
  kcat -b "$KAFKA" -P -t "c$round" -l -X linger.ms=5 -X batch.size=1048576 -X acks=all \
    -X queue.buffering.max.messages=1000000 "$work/lines"
  t1=$(date +%s.%N); b=$(ticks); ccpu+=("$(us_per_record "$a" "$b")")
  r=$(python3 -c "print(int($N / ($t1 - $t0)))")
  echo "  kcat produce: $N records in $(python3 -c "print(f'{$t1 - $t0:.2f}')") s = $r records/s" | tee -a "$work/raw"; kcat+=("$r")
done
g=$(median "${grpc[@]}"); k=$(median "${kafka[@]}"); kc=$(median "${kcat[@]}")
ratio=$(python3 -c "print(f'{$k/$g:.2f}')"); ratio_c=$(python3 -c "print(f'{$kc/$g:.2f}')")
echo "produce medians: grpc $g, confluent-kafka $k ($ratio), kcat $kc ($ratio_c) records/s" | tee -a "$work/raw"
echo "server cpu per record (us): grpc ${gcpu[*]}; confluent-kafka ${kcpu[*]}; kcat ${ccpu[*]}" | tee -a "$work/raw"

gc=$("$ctl" perf-consume --topic g1 --records $N --fetch-records 10000)
kcons=$("$PY" scripts/kafka_bench.py consume "$KAFKA" k1 $N)
t0=$(date +%s.%N)
kcat -b "$KAFKA" -C -t c1 -o beginning -e -q -f '%o\n' | tail -1 > /dev/null
t1=$(date +%s.%N)
kcatc=$(python3 -c "print(int($N / ($t1 - $t0)))")
printf 'consume:\n  grpc   %s\n  %s\n  kcat consume (printing offsets): %s records/s\n' "$gc" "$kcons" "$kcatc" | tee -a "$work/raw"

echo "produce -> consume at $LAT_RATE records/s (1 partition):"
"$ctl" topic create lat-g --partitions 1 > /dev/null
"$ctl" perf-consume --topic lat-g --records $((LAT_RATE * 5)) --subscribe > "$work/sub" &
sub=$!
sleep 1
"$ctl" perf-produce --topic lat-g --records $((LAT_RATE * 5)) --payload-file "$work/payload" --batch 1000 --throughput "$LAT_RATE" --stamp > /dev/null
wait "$sub" || true
gl=$(tail -1 "$work/sub")
"$ctl" topic create lat-k --partitions 1 > /dev/null
kl=$("$PY" scripts/kafka_bench.py latency "$KAFKA" lat-k "$LAT_RATE" 5 "$work/payload")
printf 'produce -> consume at %s records/s:\n  grpc   %s\n  %s\n' "$LAT_RATE" "$gl" "$kl" | tee -a "$work/raw"

pct() { sed -n "s/.* \([0-9.]*\) ms $1.*/\1/p" <<< "$2"; }   # perf-consume's percentiles
kpct() { sed -n "s/.*$1 \([0-9.]*\) ms.*/\1/p" <<< "$2"; }   # kafka_bench's
rate() { sed -n 's/.*= \([0-9]*\) records\/s.*/\1/p' <<< "$1"; }
echo "<!-- kafka -->"
cat <<MD
## Kafka clients

\`scripts/bench-kafka.sh\` (run by \`scripts/bench.sh\`): the release server, local store,
1 partition, values the first 100 bytes of each flight record, $N records a run,
alternating gRPC and Kafka runs, medians of 3. gRPC: \`streamctl perf-produce\`
(batches of 1,000, 8 in flight). Kafka: $PROCS confluent-kafka (librdkafka)
processes, and kcat (librdkafka in C, one process, the same records from a file),
\`linger.ms=5\`, \`batch.size\` 1 MiB, \`acks=all\`. The clients share the
machine's $(nproc) cores with the server; the server's own CPU per record
(user + system time of \`streamhoused\` over the run) shows its cost apart
from the clients'.

| metric | gRPC (streamctl) | Kafka: confluent-kafka | Kafka: kcat | target |
|---|---|---|---|---|
| produce, records/s (median of 3) | $g | $k ($ratio of gRPC) | $kc ($ratio_c of gRPC) | Kafka ≥ 0.80 of gRPC |
| server CPU per record produced, µs (3 runs) | ${gcpu[*]} | ${kcpu[*]} | ${ccpu[*]} | |
| consume from the start, records/s | $(awk '{print int($7)}' <<< "$gc") | $(rate "$kcons") | $kcatc (printing offsets) | |
| produce → consume p50 / p99 at $LAT_RATE records/s, ms | $(pct 50th "$gl") / $(pct 99th "$gl") | $(kpct p50 "$kl") / $(kpct p99 "$kl") | | Kafka p99 ≤ gRPC p99 + 2 ms |

Raw lines:

\`\`\`
$(cat "$work/raw")
\`\`\`
MD
echo "<!-- kafka -->"
