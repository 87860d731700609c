#!/usr/bin/env bash
# Runs every fuzz target (fuzz/fuzz_targets) for SECONDS each (default 600)
# and prints executions and crashes per target; exits non-zero if any target
# crashed (the input is saved under fuzz/artifacts/TARGET/).
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#
# cargo fuzz needs nightly features; RUSTC_BOOTSTRAP=1 allows them on the
# stable toolchain. Corpora are kept outside the clone between runs and
# seeded from ../shared/data.
#
# Runs of a minute or less (CI's 10 s) use the dev profile: the targets
# build in about a third of the release build's time (same sanitizer and
# coverage instrumentation, debug assertions on), and a short run is bound
# by its build, not by executions per second. Longer runs use -O.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-600}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(segment_block segment_footer segment_object wal_file produce_request producer_snapshot kafka_record_batch kafka_request)

export CARGO_TARGET_DIR="${STREAMHOUSE_FUZZ_TARGET_DIR:-$HOME/.cache/streamhouse/fuzz-target}"
export RUSTC_BOOTSTRAP=1
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz"
  cargo install cargo-fuzz --version 0.13.1 --locked
fi
corpora="${STREAMHOUSE_FUZZ_CORPUS:-$HOME/.cache/streamhouse/fuzz-corpus}"
data="$(cd .. && pwd)/shared/data"
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT

# Seeds: real records, as the inputs each target expects (see
# src/fuzzing.rs): segment_object's mode byte 1 + four "no damage" bytes
# + lines; the WAL's offset + entries split at 0xA5.
seed() {
  local dir="$corpora/$1"
  mkdir -p "$dir"
  [ -f "$data/flights-200k.jsonl" ] || return 0
  case "$1" in
    segment_object)
      { printf '\001\000\000\000\000'; head -n 40 "$data/flights-200k.jsonl"; } > "$dir/seed-flights"
      { printf '\001\000\000\000\000'; head -n 10 "$data/movies.jsonl"; } > "$dir/seed-movies" ;;
    segment_block | wal_file | produce_request)
      head -c 2000 "$data/movies.jsonl" > "$dir/seed-movies" ;;
    kafka_record_batch)
      # Mode byte 1 (fix the CRC), then one batch laid out by hand from
      # Kafka's message-format page: key "k", value "v", header ("h", null).
      printf '\001\000\000\000\000\000\000\000\005\000\000\000\075\000\000\000\000\002\205\245\046\324\000\000\000\000\000\000\000\000\000\000\000\000\003\350\000\000\000\000\000\000\003\352\377\377\377\377\377\377\377\377\377\377\377\377\377\377\000\000\000\001\026\000\004\000\002\153\002\166\002\002\150\001' > "$dir/seed-batch" ;;
    kafka_request)
      # Metadata (index 3 of the served table) v1 asking for topic
      # "movies"; Produce (index 0) v3 with no topics.
      printf '\003\001\000\000\000\001\000\006movies' > "$dir/seed-metadata"
      printf '\000\000\377\377\377\377\000\000\023\210\000\000\000\000' > "$dir/seed-produce" ;;
  esac
}

profile=(-O)
[ "$secs" -le 60 ] && profile=(--dev)
(cd fuzz && cargo fuzz build "${profile[@]}")
failed=0
printf '%-18s %12s %8s\n' TARGET EXECUTIONS CRASHES
for t in "${targets[@]}"; do
  seed "$t"
  log="$logs/$t.log"
  status=0
  (cd fuzz && cargo fuzz run "${profile[@]}" "$t" "$corpora/$t" -- -max_total_time="$secs" -print_final_stats=1) > "$log" 2>&1 || status=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  crashes=0
  if [ "$status" -ne 0 ]; then
    crashes=1
    failed=1
  fi
  printf '%-18s %12s %8s\n' "$t" "${runs:-?}" "$crashes"
  if [ "$status" -ne 0 ]; then
    grep -E "panicked|ERROR|SUMMARY|Test unit written|artifact_prefix" "$log" | head -n 20 >&2 || tail -n 30 "$log" >&2
  fi
done
exit "$failed"
