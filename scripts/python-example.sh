#!/usr/bin/env bash
# The Python client example (examples/python) against the real server, on
# the embedded local store: a venv with the pinned grpcio (kept outside the
# clone, reused), stubs generated from the proto, then
#   1. the example: idempotent produce of real records, one batch resent on
#      purpose (answered `duplicate`), consumed back as a group;
#   2. the consumer part again with the same group: nothing new;
#   3. kill -9 and a restart on the same data dir, then 2 again: the group's
#      committed offsets survived;
#   4. the example again on the restarted server: the group resumes at its
#      offsets and reads exactly the new records.
# Expects the binaries built (CARGO_TARGET_DIR), as scripts/integration.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
# A free port for the Kafka listener, so that runs side by side never collide.
export STREAMHOUSE_KAFKA_LISTEN="${STREAMHOUSE_KAFKA_LISTEN:-127.0.0.1:0}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/streamhouse/target}"
BIN="$CARGO_TARGET_DIR/debug"
DATA="${STREAMHOUSE_DATA_DIR:-$(cd .. && pwd)/shared/data}"
VENV="${STREAMHOUSE_PY_VENV:-$HOME/.cache/streamhouse/pyenv}"
EX=examples/python
COUNT=2000
began=$(date +%s)
[ -x "$BIN/streamhoused" ] || cargo build --locked --bins

work=$(mktemp -d)
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then
    kill -9 "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# The venv: made once, reused while its python runs; python3-venv is
# installed when Debian's python3 lacks it (as scripts/s3-server.sh does).
if ! "$VENV/bin/python" -c 'import sys' 2>/dev/null; then
  rm -rf "$VENV"
  if ! python3 -m venv "$VENV" >&2; then
    echo "python3 -m venv failed; installing python3-venv" >&2
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-venv >/dev/null
    rm -rf "$VENV"
    python3 -m venv "$VENV" >&2
  fi
fi
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$EX/requirements.txt"
PYTHON="$VENV/bin/python" "$EX/generate.sh"

start_server() {
  "$BIN/streamhoused" --listen 127.0.0.1:0 --data-dir "$work/data" \
    > "$work/server.out" 2> "$work/server.err" &
  server_pid=$!
  for _ in $(seq 1 100); do
    if grep -q "listening on" "$work/server.out" 2>/dev/null; then break; fi
    kill -0 "$server_pid" 2>/dev/null || { cat "$work/server.err" >&2; echo "FAIL: server exited" >&2; exit 1; }
    sleep 0.1
  done
  STREAMHOUSE_ADDR=$(awk '/listening on/ {print $4}' "$work/server.out")
  [ -n "$STREAMHOUSE_ADDR" ] || { echo "FAIL: no 'listening on' line from the server" >&2; exit 1; }
  export STREAMHOUSE_ADDR
}
kill9_server() {
  kill -9 "$server_pid"
  wait "$server_pid" 2>/dev/null || true
  server_pid=""
}
# Runs the example (its output kept in $work/NAME.out and shown); a non-zero
# exit fails the script.
example() {
  local name=$1; shift
  echo "-- example: $name"
  if ! "$VENV/bin/python" "$EX/streamhouse_example.py" --topic movies --group ci "$@" > "$work/$name.out" 2>&1; then
    cat "$work/$name.out"
    echo "FAIL: the example exited non-zero ($name)" >&2
    exit 1
  fi
  cat "$work/$name.out"
}
# One field of the example's summary line, e.g. `summary produce1 consumed`.
summary() { sed -n "s/^summary:.* $2=\([0-9]*\).*/\1/p" "$work/$1.out"; }
# The sum of the topic's high watermarks: what the server holds.
stored() { "$BIN/streamctl" --format json topic describe movies | grep -o '"high_watermark":[0-9]*' | cut -d: -f2 | awk '{ s += $1 } END { print s + 0 }'; }
check() { if "$@"; then echo "ok: $CHECK_NAME"; passed=$((passed + 1)); else echo "FAILED: $CHECK_NAME"; failed=$((failed + 1)); fi; }
passed=0
failed=0

start_server
example produce1 --file "$DATA/movies.jsonl" --count "$COUNT" --key-field Title
p=$(summary produce1 produced); c=$(summary produce1 consumed)
CHECK_NAME="produced $p of $COUNT records" check test "${p:-0}" -eq "$COUNT"
CHECK_NAME="consumed $c = produced $p" check test "${c:--1}" -eq "$p"
CHECK_NAME="the resent batch was answered duplicate with its original offsets" \
  check grep -q "^duplicate detected" "$work/produce1.out"
s=$(stored)
CHECK_NAME="the server holds $s records: the resend wrote nothing" check test "$s" -eq "$COUNT"

example again1 --consume-only
c=$(summary again1 consumed)
CHECK_NAME="the same group again consumes ${c:-?} new records (0: offsets committed)" check test "${c:--1}" -eq 0

kill9_server
start_server
example again2 --consume-only
c=$(summary again2 consumed)
CHECK_NAME="after kill -9 and a restart the group consumes ${c:-?} records (0: offsets survived)" \
  check test "${c:--1}" -eq 0
CHECK_NAME="after the restart the group resumes at its committed offsets" \
  check grep -q "from offset [1-9][0-9]* (committed)" "$work/again2.out"

example produce2 --file "$DATA/movies.jsonl" --count "$COUNT" --key-field Title
p=$(summary produce2 produced); c=$(summary produce2 consumed)
CHECK_NAME="second run after the restart: consumed $c = produced $p (only the new records)" \
  check test "${c:--1}" -eq "${p:-0}" -a "${p:-0}" -eq "$COUNT"
s=$(stored)
CHECK_NAME="the server holds $s records: both runs, once each" check test "$s" -eq $((2 * COUNT))

echo "python example: $passed passed, $failed failed in $(($(date +%s) - began))s"
[ "$failed" -eq 0 ]
