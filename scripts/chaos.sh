#!/usr/bin/env bash
# Long reliability runs against the real binaries (the quick cases of the
# same failures are tests in tests/). Each scenario produces real records
# (../shared/data/flights-200k.jsonl, numbered per producer), breaks
# something, then reads every partition back and checks that each
# acknowledged record is there exactly once, in order, at one offset.
#
#   scripts/chaos.sh [kill9-local] [kill9-s3] [outage] [disk-full]   (default: all)
#
#   kill9-*    CHAOS_PRODUCERS producers (streamctl produce: idempotent, retrying)
#              while streamhoused is killed -9 and restarted CHAOS_ROUNDS times
#   outage     the S3 test server paused (SIGSTOP) for CHAOS_OUTAGE_S seconds
#              under load: produce goes on from the WAL up to --max-backlog-bytes,
#              then RESOURCE_EXHAUSTED; after SIGCONT the same streamhoused drains
#   disk-full  the data dir on a small tmpfs, filled up under load (needs root
#              for mount; skipped with a message otherwise)
#
# Env: CHAOS_ROUNDS (20), CHAOS_PRODUCERS (4), CHAOS_LINES per producer
# (200000), CHAOS_BATCH records per request in the kill -9 runs (10: many
# requests, so many in flight when the kill comes), CHAOS_OUTAGE_S (30).
set -euo pipefail
cd "$(dirname "$0")/.."
# A free port for the Kafka listener, so that runs side by side never collide.
export STREAMHOUSE_KAFKA_LISTEN="${STREAMHOUSE_KAFKA_LISTEN:-127.0.0.1:0}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/streamhouse/target}"
ROUNDS="${CHAOS_ROUNDS:-20}"
PRODUCERS="${CHAOS_PRODUCERS:-4}"
LINES="${CHAOS_LINES:-200000}"
BATCH="${CHAOS_BATCH:-10}"
OUTAGE_S="${CHAOS_OUTAGE_S:-30}"
DATA="$(cd .. && pwd)/shared/data/flights-200k.jsonl"
scenarios=("$@")
[ ${#scenarios[@]} -gt 0 ] || scenarios=(kill9-local kill9-s3 outage disk-full)

cargo build --release --locked --bins
BIN="$CARGO_TARGET_DIR/release"
work=$(mktemp -d)
server_pid=""
started_s3=0
mounted=""
cleanup() {
  [ -n "$server_pid" ] && kill -9 "$server_pid" 2>/dev/null || true
  jobs -p | xargs -r kill 2>/dev/null || true
  [ -n "$mounted" ] && umount "$mounted" 2>/dev/null || true
  [ "$started_s3" = 1 ] && scripts/s3-server.sh stop || true
  rm -rf "$work"
}
trap cleanup EXIT

say() { echo "[$(date +%H:%M:%S)] $*"; }
fail() { say "FAIL: $*"; exit 1; }
now_ms() { date +%s%3N; }

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

ensure_s3() {
  if [ -z "${STREAMHOUSE_TEST_S3_ENDPOINT:-}" ]; then
    scripts/s3-server.sh start
    started_s3=1
    eval "$(scripts/s3-server.sh env --test)"
  fi
}

# start_server DATA_DIR PORT [FLAGS...]: starts streamhoused and waits for it.
start_server() {
  local dir=$1 port=$2
  shift 2
  STREAMHOUSE_LOG=warn "$BIN/streamhoused" --listen "127.0.0.1:$port" --data-dir "$dir" "$@" \
    >> "$work/server.out" 2>> "$work/server.err" &
  server_pid=$!
  for _ in $(seq 1 200); do
    if "$BIN/streamctl" --server "127.0.0.1:$port" topic list >/dev/null 2>&1; then return; fi
    kill -0 "$server_pid" 2>/dev/null || { tail -5 "$work/server.err"; fail "streamhoused exited"; }
    sleep 0.05
  done
  fail "streamhoused did not answer on port $port"
}

kill_server() {
  kill -9 "$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
  server_pid=""
}

# make_inputs N_PRODUCERS: one file per producer, "p{k}<TAB>p{k}-{i} {flight}":
# one key per producer, so each producer's records stay in one partition in
# order; the number makes each record unique.
make_inputs() {
  for k in $(seq 0 $(($1 - 1))); do
    # The file again and again if more lines are asked for than it has.
    while cat "$DATA"; do :; done 2>/dev/null | head -n "$LINES" | awk -v k="$k" '{printf "p%d\tp%d-%07d %s\n", k, k, NR - 1, $0}' > "$work/in-$k"
  done
}

# verify ADDR TOPIC N_PRODUCERS: every partition read back; each producer's
# records exactly once, numbered 0..LINES-1 in order, offsets contiguous.
verify() {
  "$BIN/streamctl" --server "$1" consume "$2" --print-key --print-offset > "$work/out"
  python3 - "$work/out" "$3" "$LINES" <<'PY'
import sys, collections
path, producers, lines = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
seen = collections.defaultdict(list)
last_offset = {}
for row in open(path, encoding="utf-8"):
    at, key, value = row.rstrip("\n").split("\t", 2)
    part, off = map(int, at.split(":"))
    if part in last_offset and off != last_offset[part] + 1:
        sys.exit(f"partition {part}: offset {off} after {last_offset[part]}")
    last_offset[part] = off
    seen[key].append(int(value.split(" ", 1)[0].split("-")[1]))
bad = []
for k in range(producers):
    got = seen.get(f"p{k}", [])
    if got != list(range(lines)):
        dup = len(got) - len(set(got))
        bad.append(f"p{k}: {len(got)} records ({dup} duplicates), first out of order at "
                   f"{next((i for i, v in enumerate(got) if v != i), None)}")
if bad:
    sys.exit("; ".join(bad))
print(f"verified: {producers} producers x {lines} records, each once, in order")
PY
}

kill9() { # local|s3
  say "== kill -9: $PRODUCERS producers, $ROUNDS rounds, $1 store"
  local dir="$work/kill9-$1" port; port=$(free_port)
  local flags=(--segment-max-bytes 2MiB --segment-max-age-ms 200)
  if [ "$1" = s3 ]; then
    ensure_s3
    flags+=(--s3-endpoint "$STREAMHOUSE_TEST_S3_ENDPOINT" --s3-bucket "$STREAMHOUSE_TEST_S3_BUCKET"
      --s3-prefix "chaos-$$-$(date +%s)" --s3-path-style)
  fi
  make_inputs "$PRODUCERS"
  start_server "$dir" "$port" "${flags[@]}"
  local addr="127.0.0.1:$port"
  "$BIN/streamctl" --server "$addr" topic create chaos --partitions 4 >/dev/null
  local pids=()
  for k in $(seq 0 $((PRODUCERS - 1))); do
    "$BIN/streamctl" --server "$addr" produce chaos --file "$work/in-$k" --key-separator $'\t' \
      --batch "$BATCH" --retries 40 > "$work/prod-$k.out" 2> "$work/prod-$k.err" &
    pids+=($!)
  done
  local round=0
  alive() { for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && return 0; done; return 1; }
  while [ "$round" -lt "$ROUNDS" ] && alive; do
    sleep "$(python3 -c 'import random; print(round(random.uniform(0.3, 1.5), 2))')"
    kill_server
    round=$((round + 1))
    start_server "$dir" "$port" "${flags[@]}"
    local hw; hw=$("$BIN/streamctl" --server "$addr" topic describe chaos --format json |
      python3 -c 'import sys,json; print(sum(p["high_watermark"] for p in json.load(sys.stdin)["partition_info"]))')
    say "round $round: killed -9 and restarted; $hw records stored"
  done
  local failed=0
  for i in "${!pids[@]}"; do
    wait "${pids[$i]}" || { failed=1; say "producer $i failed: $(tail -1 "$work/prod-$i.err")"; }
  done
  [ "$failed" = 0 ] || fail "a producer gave up"
  [ "$round" -ge "$ROUNDS" ] || say "note: the producers finished after $round rounds (raise CHAOS_LINES or lower CHAOS_BATCH for more)"
  say "producers done: $(grep -h -c . "$work"/prod-*.err | paste -sd+ | bc) lines of retry messages"
  verify "$addr" chaos "$PRODUCERS"
  # Once more after a last kill -9: what was verified is what a restart finds.
  kill_server
  start_server "$dir" "$port" "${flags[@]}"
  verify "$addr" chaos "$PRODUCERS"
  kill_server
}

# produce_chunks ADDR TOPIC LOG: sends in-0 in requests of 2,000 records
# (one request each: all or nothing), sending a refused one again after
# 0.5 s; about 15,000 records/s; logs "ms ok|refused".
produce_chunks() {
  split -l 2000 -d -a 4 "$work/in-0" "$work/chunk-"
  for c in "$work"/chunk-*; do
    while true; do
      if "$BIN/streamctl" --server "$1" produce "$2" --file "$c" --key-separator $'\t' \
        --batch 2000 --no-idempotence > /dev/null 2> "$work/chunk.err"; then
        echo "$(now_ms) ok" >> "$3"
        # Paced below what uploads take, so the backlog is near empty when
        # the trouble starts and what the WAL absorbs shows.
        sleep 0.1
        break
      fi
      grep -q "RESOURCE_EXHAUSTED\|resource exhausted\|retry later\|no space\|backlog" "$work/chunk.err" ||
        fail "produce failed otherwise: $(cat "$work/chunk.err")"
      echo "$(now_ms) refused $(head -c 200 "$work/chunk.err" | tr '\n' ' ')" >> "$3"
      sleep 0.5
    done
  done
}

backlog_bytes() {
  curl -s "http://$1/metrics" | awk '/^streamhouse_backlog_bytes /{print $2}'
}

outage() {
  say "== S3 test server paused ${OUTAGE_S}s under load"
  ensure_s3
  local dir="$work/outage" port mport; port=$(free_port); mport=$(free_port)
  LINES=$((LINES * 2)) make_inputs 1
  local total=$((LINES * 2))
  start_server "$dir" "$port" --segment-max-bytes 2MiB --segment-max-age-ms 200 \
    --max-backlog-bytes 8MiB --metrics-listen "127.0.0.1:$mport" \
    --s3-endpoint "$STREAMHOUSE_TEST_S3_ENDPOINT" --s3-bucket "$STREAMHOUSE_TEST_S3_BUCKET" \
    --s3-prefix "chaos-outage-$$-$(date +%s)" --s3-path-style
  local addr="127.0.0.1:$port" log="$work/outage.log"
  "$BIN/streamctl" --server "$addr" topic create chaos --partitions 2 >/dev/null
  produce_chunks "$addr" chaos "$log" &
  local producer=$!
  sleep 1
  local paused; paused=$(now_ms)
  scripts/s3-server.sh pause
  sleep "$OUTAGE_S"
  local resumed; resumed=$(now_ms)
  scripts/s3-server.sh resume
  wait "$producer" || fail "the producer failed"
  local drained=""
  for _ in $(seq 1 600); do
    [ "$(backlog_bytes "127.0.0.1:$mport")" = 0 ] && { drained=$(now_ms); break; }
    sleep 0.1
  done
  [ -n "$drained" ] || fail "the backlog did not drain within 60 s of the end"
  python3 - "$log" "$paused" "$resumed" <<'PY'
import sys
rows = [l.rstrip("\n").split(" ", 2) for l in open(sys.argv[1])]
paused, resumed = int(sys.argv[2]), int(sys.argv[3])
during = [r for r in rows if paused <= int(r[0]) < resumed]
ok = sum(1 for r in during if r[1] == "ok")
refused = [int(r[0]) for r in during if r[1] == "refused"]
first = (min(refused) - paused) / 1000 if refused else None
after = [int(r[0]) for r in rows if int(r[0]) >= resumed and r[1] == "ok"]
print(f"during the outage: {ok * 2000} records acknowledged from the WAL, "
      f"first RESOURCE_EXHAUSTED {first} s after the pause, {len(refused)} refusals")
if not refused:
    sys.exit("no RESOURCE_EXHAUSTED during the outage: the bound was never reached")
if after:
    print(f"first acknowledgement after the resume: {(min(after) - resumed) / 1000} s")
PY
  say "backlog drained $(( (drained - resumed) / 1000 )) s after the resume, without a restart"
  LINES=$total verify "$addr" chaos 1
  kill_server
}

disk_full() {
  say "== full disk (tmpfs data dir)"
  local mnt="$work/disk"
  mkdir -p "$mnt"
  if ! mount -t tmpfs -o size=96m tmpfs "$mnt" 2>/dev/null; then
    say "SKIPPED: cannot mount a tmpfs here (needs root)"
    return
  fi
  mounted="$mnt"
  local port; port=$(free_port)
  LINES=$((LINES * 4)) make_inputs 1
  local total=$((LINES * 4))
  start_server "$mnt/data" "$port" --segment-max-bytes 4MiB --segment-max-age-ms 200
  local addr="127.0.0.1:$port" log="$work/disk.log"
  "$BIN/streamctl" --server "$addr" topic create chaos --partitions 1 >/dev/null
  # Leave about 1 MiB free, then produce: it fills the rest.
  local free_kb; free_kb=$(df -k --output=avail "$mnt" | tail -1)
  dd if=/dev/zero of="$mnt/filler" bs=1M count=$(( free_kb / 1024 - 1 )) status=none
  produce_chunks "$addr" chaos "$log" &
  local producer=$!
  for _ in $(seq 1 600); do
    grep -q refused "$log" 2>/dev/null && break
    sleep 0.1
  done
  grep -q refused "$log" || { df -h "$mnt"; tail -5 "$work/server.err"; fail "no RESOURCE_EXHAUSTED while the disk was full"; }
  say "refused while full: $(grep -m1 refused "$log" | cut -d' ' -f3- | head -c 160)"
  kill -0 "$server_pid" || fail "streamhoused died on a full disk"
  sleep 3
  rm -f "$mnt/filler"
  say "space freed"
  wait "$producer" || fail "the producer failed"
  say "$(grep -c refused "$log") refusals while the disk was full; all chunks acknowledged after"
  LINES=$total verify "$addr" chaos 1
  kill_server
  start_server "$mnt/data" "$port"
  LINES=$total verify "$addr" chaos 1
  kill_server
}

for s in "${scenarios[@]}"; do
  case "$s" in
    kill9-local) kill9 local ;;
    kill9-s3) kill9 s3 ;;
    outage) outage ;;
    disk-full) disk_full ;;
    *) fail "unknown scenario $s" ;;
  esac
done
say "chaos: all scenarios passed (${scenarios[*]})"
