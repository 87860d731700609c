#!/usr/bin/env bash
# Real Kafka clients against the real streamhoused (tests/kafka/):
#   1. kcat (Debian's package): -L, produce from a file with keys and
#      duplicate headers, consume from the beginning and from a timestamp;
#   2. kafkajs (npm, pinned): admin create/list/delete, produce acks=-1,
#      fetch by partition;
#   3. confluent-kafka (PyPI, pinned; it bundles librdkafka): every codec
#      with acks=all and idempotence, assign() and committed offsets,
#      admin, and kill -9 twice under an idempotent producer;
#   4. consumer groups: kafkajs (two members, auto-commit, a restart) and
#      confluent-kafka (rebalances on join, leave and kill -9, static
#      membership, a server restart under an active group);
#   5. a three-node cluster (tests/kafka/cluster.py): kcat -L, and
#      confluent-kafka through the kill -9 of a partition leader.
# Clients are installed once into ~/.cache/streamhouse (outside the clone)
# and reused. Expects the binaries built (CARGO_TARGET_DIR) or builds them.
#   scripts/kafka-clients.sh           install what is missing, run the tests
#   scripts/kafka-clients.sh install   only install (scripts/bench-kafka.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/streamhouse/target}"
BIN="$CARGO_TARGET_DIR/debug"
CACHE="$HOME/.cache/streamhouse"
VENV="$CACHE/kafka-venv"
JS="$CACHE/kafkajs"
CONFLUENT_KAFKA=2.6.1
KAFKAJS=2.2.4
began=$(date +%s)
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"

need=()
command -v kcat >/dev/null 2>&1 || need+=(kcat)
command -v node >/dev/null 2>&1 || need+=(nodejs npm)
if [ ${#need[@]} -gt 0 ]; then
  echo "kafka-clients: installing ${need[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
if ! "$VENV/bin/python" -c "import confluent_kafka as c; assert c.version()[0] == '$CONFLUENT_KAFKA'" 2>/dev/null; then
  rm -rf "$VENV"
  python3 -m venv "$VENV" >&2 || {
    $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-venv >/dev/null
    rm -rf "$VENV"; python3 -m venv "$VENV" >&2; }
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "confluent-kafka==$CONFLUENT_KAFKA"
fi
if [ "$(cd "$JS" 2>/dev/null && node -p "require('kafkajs/package.json').version" 2>/dev/null)" != "$KAFKAJS" ]; then
  rm -rf "$JS"; mkdir -p "$JS"
  (cd "$JS" && npm init -y >/dev/null && npm install --silent --no-audit --no-fund "kafkajs@$KAFKAJS" >/dev/null)
fi

[ "${1:-}" = install ] && exit 0
[ -x "$BIN/streamhoused" ] || cargo build --locked --bins

work=$(mktemp -d)
server_pid=""
cleanup() {
  [ -n "$server_pid" ] && kill -9 "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "FAIL $*" >&2; echo "--- server log" >&2; tail -20 "$work/server.log" >&2; exit 1; }

# A server for kcat and kafkajs, on free ports (read from its stdout).
STREAMHOUSE_LOG=warn "$BIN/streamhoused" --listen 127.0.0.1:0 --kafka-listen 127.0.0.1:0 \
  --data-dir "$work/data" >"$work/out" 2>"$work/server.log" &
server_pid=$!
for _ in $(seq 100); do grep -q '^streamhoused kafka on' "$work/out" && break; sleep 0.1; done
ADDR=$(sed -n 's/^streamhoused kafka on //p' "$work/out")
[ -n "$ADDR" ] || fail "streamhoused did not start"

# kcat: metadata, produce with keys and headers, consume two ways.
kcat -b "$ADDR" -L | grep -q "broker 0 at $ADDR" || fail "kcat -L does not list the broker"
printf 'alpha\tfirst\nbeta\tsecond\n\tno key here\n' > "$work/in.txt"
kcat -b "$ADDR" -P -t kcat-t -K '\t' -H src=file -H src=kcat -l "$work/in.txt"
sleep 1.1
cut=$(( $(date +%s%3N) ))
sleep 0.1
printf 'gamma\tlater\n' | kcat -b "$ADDR" -P -t kcat-t -K '\t'
kcat -b "$ADDR" -L -t kcat-t | grep -q 'partition 0, leader 0' || fail "kcat-t has no partition 0"
got=$(kcat -b "$ADDR" -C -t kcat-t -o beginning -e -q -f '%o|%k|%s|%h\n')
want=$'0|alpha|first|src=file,src=kcat\n1|beta|second|src=file,src=kcat\n2||no key here|src=file,src=kcat\n3|gamma|later|'
[ "$got" = "$want" ] || fail "kcat from the beginning: got [$got], want [$want]"
got=$(kcat -b "$ADDR" -C -t kcat-t -o "s@$cut" -e -q -f '%o|%k|%s\n')
[ "$got" = "3|gamma|later" ] || fail "kcat from timestamp $cut: got [$got]"
echo "PASS kcat: -L, produce with keys and duplicate headers, consume from the beginning and from a timestamp"

KAFKA_ADDR="$ADDR" NODE_PATH="$JS/node_modules" KAFKAJS_NO_PARTITIONER_WARNING=1 \
  node tests/kafka/kafkajs.js || fail "kafkajs"
KAFKA_ADDR="$ADDR" NODE_PATH="$JS/node_modules" STREAMHOUSE_DATA="${STREAMHOUSE_DATA_DIR:-$(cd .. && pwd)/shared/data}" \
  node tests/kafka/kafkajs-group.js || fail "kafkajs group"

kill "$server_pid"; wait "$server_pid" 2>/dev/null || true; server_pid=""

STREAMHOUSED="$BIN/streamhoused" STREAMHOUSE_DATA="${STREAMHOUSE_DATA_DIR:-$(cd .. && pwd)/shared/data}" \
  "$VENV/bin/python" tests/kafka/clients.py
STREAMHOUSED="$BIN/streamhoused" STREAMHOUSE_DATA="${STREAMHOUSE_DATA_DIR:-$(cd .. && pwd)/shared/data}" \
  "$VENV/bin/python" tests/kafka/groups.py 2> >(grep -v '^%[3-7]|' >&2)
# Three nodes in cluster mode, a leader killed under an idempotent
# producer (needs the S3 test server and etcd, which scripts/test.sh
# starts; skipped without them unless STREAMHOUSE_REQUIRE_ETCD=1).
STREAMHOUSED="$BIN/streamhoused" \
  "$VENV/bin/python" tests/kafka/cluster.py 2> >(grep -v '^%[3-7]|' >&2)
echo "kafka clients: all passed in $(( $(date +%s) - began )) s"
