#!/usr/bin/env bash
# What TLS costs on produce, same machine, same run, release build, local
# store, 1 partition, values = 100-byte cuts of real flight records
# (../shared/data/flights-200k.jsonl). Two servers side by side: one plain,
# one with TLS on both listeners and SASL for Kafka (SCRAM-SHA-512);
# every measurement alternates between them, ROUNDS rounds (default 5),
# medians; the server's own CPU per record (user + system time of that
# streamhoused over the run) shows the cost apart from the clients':
# - gRPC: streamctl perf-produce, N records (batches of 1,000, 8 in flight):
#   records/s and the p99 of a batch's acknowledgement; then the same at
#   LAT_RATE records/s, where the p50/p99 are the latency without queueing;
# - Kafka: KAFKA_PROCS confluent-kafka producer processes, N records
#   (linger.ms=5, batch.size 1 MiB, acks=all): records/s; then produce ->
#   consume p50/p99 at LAT_RATE records/s (10 s each).
#   scripts/bench-tls.sh   (N, default 1000000; LAT_RATE, default 20000)
# STREAMHOUSE_BIN_DIR=DIR uses the binaries in DIR instead of building.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/streamhouse/target}"
N="${N:-1000000}"
ROUNDS="${ROUNDS:-5}"
LAT_RATE="${LAT_RATE:-20000}"
PROCS="${KAFKA_PROCS:-2}"
if [ -n "${STREAMHOUSE_BIN_DIR:-}" ]; then
  BIN="$STREAMHOUSE_BIN_DIR"
else
  cargo build --release --locked --bins
  BIN="$CARGO_TARGET_DIR/release"
fi
scripts/kafka-clients.sh install
PY="$HOME/.cache/streamhouse/kafka-venv/bin/python"
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
median() { printf '%s\n' "$@" | sort -n | sed -n "$(( ($# + 1) / 2 ))p"; }
cut -c1-100 "$(cd .. && pwd)/shared/data/flights-200k.jsonl" > "$work/payload"

c="$work/certs"; mkdir -p "$c"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -keyout "$c/ca.key" -out "$c/ca.crt" -subj "/CN=bench CA" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
  -keyout "$c/server.key" -out "$c/server.csr" -subj "/CN=localhost" 2>/dev/null
openssl x509 -req -in "$c/server.csr" -CA "$c/ca.crt" -CAkey "$c/ca.key" -set_serial 1 -days 2 \
  -extfile <(printf 'subjectAltName=IP:127.0.0.1\n') -out "$c/server.crt" 2>/dev/null
printf 'bench-secret\n' | "$BIN/streamctl" user add bench --users-file "$work/users" 2>/dev/null

declare -A pid_of
start() { # NAME FLAGS...
  local name=$1; shift
  STREAMHOUSE_LOG=warn "$BIN/streamhoused" --listen 127.0.0.1:0 --kafka-listen 127.0.0.1:0 \
    --data-dir "$work/$name" "$@" > "$work/$name.out" 2> "$work/$name.err" &
  pids+=($!); pid_of[$name]=$!
  for _ in $(seq 100); do grep -q '^streamhoused kafka on' "$work/$name.out" && break; sleep 0.1; done
}
start plain
start tls --tls-cert "$c/server.crt" --tls-key "$c/server.key" --kafka-sasl-users "$work/users"
grpc_of() { sed -n 's/^streamhoused listening on //p' "$work/$1.out"; }
kafka_of() { sed -n 's/^streamhoused kafka on //p' "$work/$1.out"; }
ctl_plain=("$BIN/streamctl" --server "$(grpc_of plain)")
ctl_tls=("$BIN/streamctl" --server "$(grpc_of tls)" --tls-ca "$c/ca.crt")
SASL_CONF="{\"security.protocol\": \"SASL_SSL\", \"ssl.ca.location\": \"$c/ca.crt\", \"sasl.mechanism\": \"SCRAM-SHA-512\", \"sasl.username\": \"bench\", \"sasl.password\": \"bench-secret\"}"
echo "machine: $(nproc) cores; $N records of 100 B per run; kafka: $PROCS producer processes" | tee "$work/raw"

field() { awk -v f="$2" '{ for (i = 1; i < NF; i++) if ($(i + 1) == f || $(i + 1) == f ",") print $i }' <<< "$1"; }
ticks() { awk '{print $14 + $15}' "/proc/${pid_of[$1]}/stat"; }
hz=$(getconf CLK_TCK)
us_per_record() { python3 -c "print(f'{($2 - $1) / $hz / $N * 1e6:.2f}')"; }
declare -A rate p99 krate gcpu kcpu
for round in $(seq "$ROUNDS"); do
  for mode in plain tls; do
    if [ $mode = plain ]; then ctl=("${ctl_plain[@]}"); conf='{}'; else ctl=("${ctl_tls[@]}"); conf="$SASL_CONF"; fi
    "${ctl[@]}" topic create "g$round" --partitions 1 > /dev/null
    "${ctl[@]}" topic create "k$round" --partitions 1 > /dev/null
    a=$(ticks $mode)
    line=$("${ctl[@]}" perf-produce --topic "g$round" --records "$N" --payload-file "$work/payload" --batch 1000 --inflight 8 | head -1)
    b=$(ticks $mode); cpu=$(us_per_record "$a" "$b"); gcpu[$mode]+="$cpu "
    echo "  $mode grpc   $line; server cpu $cpu us/record" | tee -a "$work/raw"
    rate[$mode]+="$(awk '{print int($4)}' <<< "$line") "
    p99[$mode]+="$(sed -n 's/.* \([0-9.]*\) ms 99th.*/\1/p' <<< "$line") "
    a=$(ticks $mode)
    line=$(KAFKA_CONF="$conf" "$PY" scripts/kafka_bench.py produce "$(kafka_of $mode)" "k$round" "$N" "$work/payload" "$PROCS")
    b=$(ticks $mode); cpu=$(us_per_record "$a" "$b"); kcpu[$mode]+="$cpu "
    echo "  $mode $line; server cpu $cpu us/record" | tee -a "$work/raw"
    krate[$mode]+="$(sed -n 's/.*= \([0-9]*\) records\/s.*/\1/p' <<< "$line") "
  done
done
declare -A glat klat
for mode in plain tls; do
  if [ $mode = plain ]; then ctl=("${ctl_plain[@]}"); conf='{}'; else ctl=("${ctl_tls[@]}"); conf="$SASL_CONF"; fi
  "${ctl[@]}" topic create lat-g --partitions 1 > /dev/null
  "${ctl[@]}" topic create lat-k --partitions 1 > /dev/null
  glat[$mode]=$("${ctl[@]}" perf-produce --topic lat-g --records $((LAT_RATE * 10)) --payload-file "$work/payload" --batch 100 --throughput "$LAT_RATE" | head -1)
  klat[$mode]=$(KAFKA_CONF="$conf" "$PY" scripts/kafka_bench.py latency "$(kafka_of $mode)" lat-k "$LAT_RATE" 10 "$work/payload")
  echo "  $mode grpc at $LAT_RATE/s: ${glat[$mode]}" | tee -a "$work/raw"
  echo "  $mode ${klat[$mode]}" | tee -a "$work/raw"
done

med() { median ${1}; }
ratio() { python3 -c "print(f'{$2/$1:.2f}')"; }
gp=$(med "${rate[plain]}"); gt=$(med "${rate[tls]}")
pp=$(med "${p99[plain]}"); pt=$(med "${p99[tls]}")
kp=$(med "${krate[plain]}"); kt=$(med "${krate[tls]}")
gpct() { sed -n "s/.* \([0-9.]*\) ms $1.*/\1/p" <<< "$2"; }
kpct() { sed -n "s/.*$1 \([0-9.]*\) ms.*/\1/p" <<< "$2"; }
cat <<MD

## TLS

\`scripts/bench-tls.sh\`: two release servers side by side on this $(nproc)-core machine,
local store, 1 partition, 100-byte cuts of real flight records, $N records a run;
one plain, one with TLS on both listeners (OpenSSL, TLS 1.3, ECDSA P-256) and
Kafka SASL (SCRAM-SHA-512); measurements alternate, medians of $ROUNDS. Server CPU:
user + system time of that \`streamhoused\` over the run, per record.

| metric | plain | TLS | TLS / plain |
|---|---|---|---|
| gRPC produce, records/s (perf-produce, batches of 1,000, 8 in flight) | $gp | $gt | $(ratio "$gp" "$gt") |
| gRPC produce, p99 of a batch's acknowledgement at full speed, ms | $pp | $pt | $(ratio "$pp" "$pt") |
| gRPC produce, server CPU per record, µs | $(med "${gcpu[plain]}") | $(med "${gcpu[tls]}") | $(ratio "$(med "${gcpu[plain]}")" "$(med "${gcpu[tls]}")") |
| gRPC produce at $LAT_RATE records/s (batches of 100), p50 / p99 ms | $(gpct 50th "${glat[plain]}") / $(gpct 99th "${glat[plain]}") | $(gpct 50th "${glat[tls]}") / $(gpct 99th "${glat[tls]}") | |
| Kafka produce, records/s ($PROCS confluent-kafka processes, acks=all) | $kp | $kt | $(ratio "$kp" "$kt") |
| Kafka produce, server CPU per record, µs | $(med "${kcpu[plain]}") | $(med "${kcpu[tls]}") | $(ratio "$(med "${kcpu[plain]}")" "$(med "${kcpu[tls]}")") |
| Kafka produce → consume at $LAT_RATE records/s, p50 / p99 ms | $(kpct p50 "${klat[plain]}") / $(kpct p99 "${klat[plain]}") | $(kpct p50 "${klat[tls]}") / $(kpct p99 "${klat[tls]}") | |

Raw lines:

\`\`\`
$(cat "$work/raw")
\`\`\`
MD
