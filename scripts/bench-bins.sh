# Sourced by the benchmark scripts: sets BIN (streamhoused, streamctl) and
# NULL (the null server, benches/null_server.rs), built in release, or
# taken from STREAMHOUSE_BIN_DIR (to compare two builds in one sitting).
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/streamhouse/target}"
if [ -n "${STREAMHOUSE_BIN_DIR:-}" ]; then
  BIN="$STREAMHOUSE_BIN_DIR"
  NULL="$BIN/null_server"
else
  cargo build --release --locked --bins
  BIN="$CARGO_TARGET_DIR/release"
  NULL=$(cargo bench --locked --no-run --bench null_server --message-format=json 2>/dev/null |
    python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("executable") and "null_server" in m["executable"]:
        print(m["executable"])')
fi
