#!/usr/bin/env bash
# The end-to-end flow in well under a minute, for someone watching: start
# streamhoused on a temporary data dir, create a topic, produce the movies
# data set with keys, consume with offsets and keys, consume as a group and
# show its lag, kill -9 the server, restart it on the same data dir and show
# that everything is still there, run a short perf-produce, stop.
#
#   scripts/demo.sh                  # as fast as it goes
#   DEMO_PAUSE=2 scripts/demo.sh     # 2 s pause after each step's heading
#
# Uses built binaries, the first pair found of: $DEMO_BIN (a directory),
# streamhoused and streamctl on PATH, ./target/release (the README's
# `cargo build --release`), then $CARGO_TARGET_DIR (default
# ~/.cache/streamhouse/target, where the scripts build) release and debug.
# It never builds, and says where it looked when it finds none.
# Data: ../shared/data/movies.jsonl from the repository root (DEMO_DATA).
set -euo pipefail
# A free port for the Kafka listener: a Kafka already on 9092 does not stop the demo.
export STREAMHOUSE_KAFKA_LISTEN="${STREAMHOUSE_KAFKA_LISTEN:-127.0.0.1:0}"
root="$(cd "$(dirname "$0")/.." && pwd)"
target="${CARGO_TARGET_DIR:-$HOME/.cache/streamhouse/target}"
pause="${DEMO_PAUSE:-0}"
data="${DEMO_DATA:-$root/../shared/data/movies.jsonl}"

die() { echo "demo: $*" >&2; exit 1; }

candidates=()
[ -n "${DEMO_BIN:-}" ] && candidates+=("$DEMO_BIN")
if on_path="$(command -v streamhoused 2>/dev/null)"; then
  candidates+=("$(dirname "$on_path")")
fi
candidates+=("$root/target/release" "$target/release" "$root/target/debug" "$target/debug")
BIN=""
for dir in "${candidates[@]}"; do
  if [ -x "$dir/streamhoused" ] && [ -x "$dir/streamctl" ]; then BIN="$dir"; break; fi
done
if [ -z "$BIN" ]; then
  echo "demo: no streamhoused and streamctl found; looked in:" >&2
  printf '  %s\n' "${candidates[@]}" >&2
  die "build them first: cargo build --release --locked --bins (or set DEMO_BIN)"
fi
profile="$(basename "$BIN")"
[ -r "$data" ] || die "cannot read $data (set DEMO_DATA)"

work="$(mktemp -d "${TMPDIR:-/tmp}/streamhouse-demo.XXXXXX")"
server_pid=""
cleanup() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The commands read as a user would type them.
streamctl() { "$BIN/streamctl" "$@"; }

bold="" plain=""
if [ -t 1 ]; then bold=$'\033[1m' plain=$'\033[0m'; fi
n=0
step() {
  n=$((n + 1))
  printf '\n%s== %d. %s%s\n' "$bold" "$n" "$*" "$plain"
  [ "$pause" = 0 ] || sleep "$pause"
}
show() { printf '+ %s\n' "$*"; }
run() { show "$*"; "$@"; }

# Starts the server on the demo's data dir and waits for its address.
start_server() {
  show "streamhoused --listen 127.0.0.1:0 --data-dir $work/data &"
  # The binary itself in the background (not a function: $! must be the
  # server's pid, for kill -9).
  "$BIN/streamhoused" --listen 127.0.0.1:0 --data-dir "$work/data" \
    > "$work/server.out" 2> "$work/server.err" &
  server_pid=$!
  for _ in $(seq 1 100); do
    grep -q "listening on" "$work/server.out" 2>/dev/null && break
    if ! kill -0 "$server_pid" 2>/dev/null; then
      cat "$work/server.err" >&2
      die "the server exited at start"
    fi
    sleep 0.1
  done
  grep -q "listening on" "$work/server.out" || die "the server did not start in 10 s"
  STREAMHOUSE_ADDR="$(awk '/listening on/ {print $4}' "$work/server.out")"
  export STREAMHOUSE_ADDR
  echo "streamhoused (pid $server_pid) listening on $STREAMHOUSE_ADDR"
}

high_watermarks() {
  streamctl --format json topic describe movies | grep -o '"high_watermark":[0-9]*' | cut -d: -f2 | tr '\n' ' '
}

started=$SECONDS
echo "StreamHouse demo: $profile binaries from $BIN; data dir $work/data"

step "Start a server on an empty data dir (embedded object store, port 0 picks a free port)"
start_server

step "Create a topic with 3 partitions"
run streamctl topic create movies --partitions 3

step "Produce $(wc -l < "$data" | tr -d ' ') movies, keyed by genre (a key always goes to the same partition)"
show "awk '(each line prefixed with its \"Major Genre\" and a tab)' $(basename "$data") | streamctl produce movies --key-separator \$'\\t'"
awk '{ g = "unknown"
       if (match($0, /"Major Genre":"[^"]*"/)) g = substr($0, RSTART + 15, RLENGTH - 16)
       print g "\t" $0 }' "$data" |
  streamctl produce movies --key-separator $'\t'

step "Consume some back, with partition:offset and key (values cut to 110 characters)"
show "streamctl consume movies --partition 1 --offset 100 --limit 5 --print-offset --print-key | cut -c1-110"
streamctl consume movies --partition 1 --offset 100 --limit 5 --print-offset --print-key | cut -c1-110

step "Consume 2,000 records as group 'dashboard': it commits as it goes"
show "streamctl consume movies --group dashboard --offset-reset earliest --limit 2000 > /dev/null"
streamctl consume movies --group dashboard --offset-reset earliest --limit 2000 > /dev/null
echo "(--offset-reset earliest: a new group starts at the beginning; Kafka's default, and ours, is the end)"
run streamctl group get dashboard
echo "(a partition the group has not read from yet shows no offset, and all its records as lag)"

step "What the topic holds before the crash"
run streamctl topic describe movies
before="$(high_watermarks)"

step "kill -9 the server: no clean shutdown; what is not uploaded yet is only in the WAL"
show "kill -9 $server_pid"
{ kill -KILL "$server_pid"; wait "$server_pid"; } 2>/dev/null || true
server_pid=""

step "Restart on the same data dir: the WAL is replayed"
start_server
grep -E "recovered offsets|owns the prefix" "$work/server.err" | sed 's/^[0-9.]* *INFO *[a-z_:]*: /  log: /' || true

step "Everything is still there"
run streamctl topic describe movies
after="$(high_watermarks)"
echo "high watermarks before the crash: $before"
echo "high watermarks after the restart: $after"
[ "$before" = "$after" ] || die "the high watermarks changed across kill -9"
echo "equal: every acknowledged record survived"
run streamctl group get dashboard
show "streamctl consume movies --group dashboard --limit 3 --print-offset --print-key | cut -c1-110"
streamctl consume movies --group dashboard --limit 3 --print-offset --print-key | cut -c1-110

step "A short load test: 500,000 records of 100 bytes to one partition"
run streamctl topic create perf --partitions 1
run streamctl perf-produce --topic perf --records 500000 --record-size 100

step "Stop the server cleanly (SIGTERM)"
show "kill -TERM $server_pid"
kill -TERM "$server_pid"
rc=0
wait "$server_pid" || rc=$?
server_pid=""
[ "$rc" = 0 ] || die "the server exited $rc on SIGTERM"
echo "streamhoused exited 0"

printf '\n%sDone in %d s.%s\n' "$bold" "$((SECONDS - started))" "$plain"
