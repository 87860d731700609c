#!/usr/bin/env bash
# The etcd test server for cluster mode: Debian's etcd-server package, one
# member on a free loopback port, its data on a tmpfs (/dev/shm) when there
# is one with room (512 MiB free), else under the state directory.
#
#   scripts/etcd-server.sh start    install if missing, start on 127.0.0.1, wait until healthy
#   scripts/etcd-server.sh stop     stop it and remove its data
#   scripts/etcd-server.sh env      print STREAMHOUSE_TEST_ETCD=http://127.0.0.1:PORT as an `export` line
#   scripts/etcd-server.sh pause    SIGSTOP it (tests: etcd stops answering)
#   scripts/etcd-server.sh resume   SIGCONT it
#
# State lives in $STREAMHOUSE_ETCD_STATE (default ~/.cache/streamhouse/etcd-test).
set -euo pipefail

STATE="${STREAMHOUSE_ETCD_STATE:-$HOME/.cache/streamhouse/etcd-test}"

log() { echo "etcd-server: $*" >&2; }
die() { log "$*"; exit 1; }

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

running() {
  [ -f "$STATE/pid" ] && kill -0 "$(cat "$STATE/pid")" 2>/dev/null
}

# Debian installs the binaries in /usr/bin; its package starts a system
# etcd on the default ports, which is stopped (we run our own).
install_if_missing() {
  command -v etcd >/dev/null 2>&1 && return
  log "installing etcd (Debian packages etcd-server, etcd-client)"
  local SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  # policy-rc.d 101: do not start the packaged service during the install.
  local rc=/usr/sbin/policy-rc.d had_rc=1
  [ -e "$rc" ] || { had_rc=0; printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$rc" >/dev/null; $SUDO chmod +x "$rc"; }
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq etcd-server etcd-client >/dev/null
  [ "$had_rc" = 0 ] && $SUDO rm -f "$rc"
  hash -r
  command -v etcd >/dev/null 2>&1 || die "etcd is missing after installing etcd-server"
}

start() {
  if running; then
    log "already running (pid $(cat "$STATE/pid"))"
    return
  fi
  install_if_missing
  stop_quietly
  mkdir -p "$STATE"
  # etcd preallocates 64 MiB WAL files: a small /dev/shm (a container's
  # default is 64 MiB) cannot hold them, and the disk is used instead.
  local data="$STATE/data" shm_free
  shm_free=$(df -Pk /dev/shm 2>/dev/null | awk 'NR == 2 {print $4}')
  if [ -w /dev/shm ] && [ "${shm_free:-0}" -ge $((512 * 1024)) ]; then
    data=$(mktemp -d /dev/shm/streamhouse-etcd.XXXXXX)
  fi
  echo "$data" > "$STATE/datadir"
  local port peer; port=$(free_port); peer=$(free_port)
  echo "$port" > "$STATE/port"
  nohup etcd --name streamhouse-test --data-dir "$data" \
    --listen-client-urls "http://127.0.0.1:$port" --advertise-client-urls "http://127.0.0.1:$port" \
    --listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
    --initial-cluster "streamhouse-test=http://127.0.0.1:$peer" \
    > "$STATE/server.log" 2>&1 &
  echo $! > "$STATE/pid"
  local deadline=$((SECONDS + 60))
  while [ $SECONDS -lt $deadline ]; do
    running || { tail -20 "$STATE/server.log" >&2 || true; die "etcd exited during start-up"; }
    if curl -s --max-time 2 "http://127.0.0.1:$port/health" | grep -q '"health":"true"'; then
      log "etcd $(etcd --version | awk '/etcd Version/ {print $3}') ready on 127.0.0.1:$port (pid $(cat "$STATE/pid"))"
      return
    fi
    sleep 0.2
  done
  tail -20 "$STATE/server.log" >&2 || true
  die "etcd did not become healthy on 127.0.0.1:$port"
}

stop_quietly() {
  if running; then
    local pid; pid=$(cat "$STATE/pid")
    kill -CONT "$pid" 2>/dev/null || true
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    log "stopped (pid $pid)"
  fi
  [ -f "$STATE/datadir" ] && rm -rf "$(cat "$STATE/datadir")"
  rm -rf "$STATE"
}

env_lines() {
  running || die "not running; run: scripts/etcd-server.sh start"
  echo "export STREAMHOUSE_TEST_ETCD=http://127.0.0.1:$(cat "$STATE/port")"
}

signal_server() {
  running || die "not running"
  kill "-$1" "$(cat "$STATE/pid")"
  log "$2 (pid $(cat "$STATE/pid"))"
}

case "${1:-}" in
  start) start ;;
  stop) stop_quietly ;;
  env) env_lines ;;
  pause) signal_server STOP paused ;;
  resume) signal_server CONT resumed ;;
  *) echo "usage: $0 start|stop|env|pause|resume" >&2; exit 2 ;;
esac
