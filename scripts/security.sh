#!/usr/bin/env bash
# TLS and SASL against the real streamhoused, with real clients
# (tests/security/):
#   1. certificates made here with openssl (a CA, the server's, a client's,
#      and a client's from another CA; never checked in), users made with
#      `streamctl user add`;
#   2. one server with TLS on both listeners, SASL for Kafka and a gRPC
#      token: streamctl over TLS; kcat and confluent-kafka over SASL_SSL
#      with PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512; wrong passwords refused
#      and counted; a client without TLS on the TLS port gets nothing and
#      the server keeps serving; Python gRPC over TLS (health per service,
#      the token); certificates renewed and re-read on SIGHUP;
#   3. one server with mutual TLS: Python gRPC, streamctl and kcat with a
#      client certificate; none, or one from another CA, refused.
# Uses the clients scripts/kafka-clients.sh and scripts/python-example.sh
# install (installs them when missing). Expects the binaries built.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/streamhouse/target}"
BIN="$CARGO_TARGET_DIR/debug"
CACHE="$HOME/.cache/streamhouse"
KAFKA_PY="$CACHE/kafka-venv/bin/python"
GRPC_VENV="${STREAMHOUSE_PY_VENV:-$CACHE/pyenv}"
MOVIES="${STREAMHOUSE_DATA_DIR:-$(cd .. && pwd)/shared/data}/movies.jsonl"
began=$(date +%s)
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"

command -v openssl >/dev/null 2>&1 || {
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq openssl >/dev/null; }
command -v kcat >/dev/null 2>&1 && "$KAFKA_PY" -c 'import confluent_kafka' 2>/dev/null || scripts/kafka-clients.sh install
if ! "$GRPC_VENV/bin/python" -c 'import grpc' 2>/dev/null; then
  rm -rf "$GRPC_VENV"
  python3 -m venv "$GRPC_VENV" >&2
  "$GRPC_VENV/bin/pip" install --quiet --disable-pip-version-check -r examples/python/requirements.txt
fi
[ -x "$BIN/streamhoused" ] || cargo build --locked --bins

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "FAIL $*" >&2; for l in "$work"/*.log; do echo "--- $l" >&2; tail -15 "$l" >&2; done; exit 1; }
pass() { echo "PASS $*"; }

# --- 1. certificates and users
c="$work/certs"; mkdir -p "$c"
ca() { # NAME SUBJECT
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -keyout "$c/$1.key" -out "$c/$1.crt" -subj "/CN=$2" 2>/dev/null
}
issue() { # NAME CA SERIAL SUBJECT
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$c/$1.key" -out "$c/$1.csr" -subj "/CN=$4" 2>/dev/null
  openssl x509 -req -in "$c/$1.csr" -CA "$c/$2.crt" -CAkey "$c/$2.key" -set_serial "$3" -days 2 \
    -extfile <(printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n') -out "$c/$1.crt" 2>/dev/null
}
ca ca "StreamHouse test CA"
ca foreign-ca "Another CA"
issue server ca 4097 localhost
issue renewed ca 8193 localhost
issue client ca 12289 streamctl
issue foreign-client foreign-ca 12289 streamctl
chmod 600 "$c"/*.key
USERS="$work/users"
printf 'alice-secret\n' | "$BIN/streamctl" user add alice --users-file "$USERS" 2>/dev/null
printf 'bob-secret\n' | "$BIN/streamctl" user add bob --users-file "$USERS" 2>/dev/null
[ "$("$BIN/streamctl" user list --users-file "$USERS" | cut -f1 | tr '\n' ' ')" = "alice bob " ] || fail "user list"
grep -q 'alice-secret' "$USERS" && fail "a password is in the users file"
pass "certificates from openssl; users alice and bob from streamctl user add (no password in the file)"

start() { # NAME FLAGS...: sets ${NAME}_GRPC, ${NAME}_KAFKA, ${NAME}_METRICS, ${NAME}_PID
  local name=$1; shift
  STREAMHOUSE_LOG=info "$BIN/streamhoused" --listen 127.0.0.1:0 --kafka-listen 127.0.0.1:0 \
    --metrics-listen 127.0.0.1:0 --data-dir "$work/$name-data" "$@" >"$work/$name.out" 2>"$work/$name.log" &
  local pid=$!; pids+=("$pid")
  for _ in $(seq 100); do grep -q '^streamhoused kafka on' "$work/$name.out" && break; sleep 0.1; done
  printf -v "${name}_PID" '%s' "$pid"
  printf -v "${name}_GRPC" '%s' "$(sed -n 's/^streamhoused listening on //p' "$work/$name.out")"
  printf -v "${name}_KAFKA" '%s' "$(sed -n 's/^streamhoused kafka on //p' "$work/$name.out")"
  printf -v "${name}_METRICS" '%s' "$(sed -n 's/^streamhoused metrics on //p' "$work/$name.out")"
  [ -n "$(sed -n 's/^streamhoused kafka on //p' "$work/$name.out")" ] || fail "$name did not start"
}
metric() { curl -s "$1" | awk -v k="$2" '$1 == k { print $2 }'; }

# --- 2. TLS, SASL and a token
cp "$c/server.crt" "$c/live.crt"; cp "$c/server.key" "$c/live.key"
TOKEN=sekrit-token
start A --tls-cert "$c/live.crt" --tls-key "$c/live.key" --kafka-sasl-users "$USERS" --auth-token "$TOKEN"
ctl() { "$BIN/streamctl" --server "$A_GRPC" --tls-ca "$c/ca.crt" --token "$TOKEN" "$@"; }
ctl topic create sec --partitions 2 >/dev/null || fail "streamctl topic create over TLS"
printf 'one\ntwo\nthree\n' | ctl produce sec --partition 1 >/dev/null || fail "streamctl produce over TLS"
got=$(ctl consume sec --partition 1 --from-beginning --limit 3 | tr '\n' ' ')
[ "$got" = "one two three " ] || fail "streamctl consume over TLS: [$got]"
if "$BIN/streamctl" --server "$A_GRPC" --token "$TOKEN" topic list >/dev/null 2>&1; then fail "streamctl without TLS was served"; fi
if out=$("$BIN/streamctl" --server "$A_GRPC" --tls --token "$TOKEN" topic list 2>&1); then fail "an untrusted server certificate was accepted"; fi
echo "$out" | grep -q "certificate verify failed" || fail "no reason given: $out"
pass "streamctl over TLS: create, produce, consume; without TLS refused; an untrusted CA refused (\"${out:0:80}...\")"

K="-b $A_KAFKA -X security.protocol=SASL_SSL -X ssl.ca.location=$c/ca.crt -X sasl.username=alice"
printf 'k1\tv1\nk2\tv2\n' | kcat $K -X sasl.mechanisms=PLAIN -X sasl.password=alice-secret -P -t sec -p 0 -K '\t' \
  || fail "kcat produce over SASL_SSL PLAIN"
got=$(kcat $K -X sasl.mechanisms=SCRAM-SHA-512 -X sasl.password=alice-secret -C -t sec -p 0 -o beginning -e -q -f '%k=%s ')
[ "$got" = "k1=v1 k2=v2 " ] || fail "kcat consume over SASL_SSL SCRAM-SHA-512: [$got]"
pass "kcat over SASL_SSL: produce with PLAIN, consume with SCRAM-SHA-512"
failed_before=$(metric "$A_METRICS" 'streamhouse_kafka_sasl_authentications_total{result="failed"}')
for mech in PLAIN SCRAM-SHA-512; do
  if kcat $K -X sasl.mechanisms=$mech -X sasl.password=wrong -m 5 -L >"$work/kcat.out" 2>&1; then
    fail "kcat $mech with a wrong password got metadata"
  fi
  grep -q "Authentication failed" "$work/kcat.out" || fail "kcat $mech: no authentication error: $(head -3 "$work/kcat.out")"
done
failed_after=$(metric "$A_METRICS" 'streamhouse_kafka_sasl_authentications_total{result="failed"}')
[ "$failed_after" -gt "$failed_before" ] || fail "failed authentications not counted ($failed_before -> $failed_after)"
grep -q "closing .*: authentication failed" "$work/A.log" || fail "no closed connection logged"
pass "kcat with a wrong password (PLAIN, SCRAM-SHA-512): refused, the connection closed, counted ($failed_before -> $failed_after)"

hs_before=$(metric "$A_METRICS" 'streamhouse_tls_handshake_failures_total{listener="kafka"}')
python3 - "$A_KAFKA" <<'PY' || fail "a client without TLS was answered"
import socket, sys
host, port = sys.argv[1].rsplit(":", 1)
s = socket.create_connection((host, int(port)), timeout=15)
# ApiVersions v3 in clear text.
s.sendall(bytes.fromhex("0000001a00120003000000010006636c69656e74000000000000"))
got = b""
try:
    while True:
        b = s.recv(4096)
        if not b:
            break
        got += b
except ConnectionResetError:
    pass  # closed after the TLS alert
# Whatever came back is a TLS alert, never a Kafka answer (correlation id 1).
assert got[4:8] != b"\x00\x00\x00\x01", got
PY
hs_after=$(metric "$A_METRICS" 'streamhouse_tls_handshake_failures_total{listener="kafka"}')
[ "$hs_after" -gt "$hs_before" ] || fail "the failed handshake was not counted"
kcat $K -X sasl.mechanisms=SCRAM-SHA-256 -X sasl.password=alice-secret -L >/dev/null || fail "not serving after a plain client"
pass "a Kafka client without TLS on the TLS port gets nothing (handshake failures $hs_before -> $hs_after); the server keeps serving"

KAFKA_ADDR="$A_KAFKA" CA="$c/ca.crt" TOPIC=sec USER_NAME=bob PASSWORD=bob-secret MOVIES="$MOVIES" \
  "$KAFKA_PY" tests/security/kafka_sasl.py 2> >(grep -v '^%[3-7]|' >&2) || fail "confluent-kafka over SASL_SSL"
"$GRPC_VENV/bin/python" tests/security/grpc_tls.py tls "$A_GRPC" "$c/ca.crt" "$TOKEN" || fail "python grpc over TLS"
"$GRPC_VENV/bin/python" tests/security/grpc_tls.py reload "$A_GRPC" "$c/ca.crt" "$TOKEN" "$A_PID" "$A_METRICS" \
  "$c/renewed.crt" "$c/renewed.key" "$c/live.crt" "$c/live.key" 2001 || fail "certificates reloaded on SIGHUP"
grep -q "TLS certificates reloaded" "$work/A.log" || fail "the reload was not logged"

# --- 3. mutual TLS
start B --tls-cert "$c/server.crt" --tls-key "$c/server.key" --tls-client-ca "$c/ca.crt"
"$GRPC_VENV/bin/python" tests/security/grpc_tls.py mtls "$B_GRPC" "$c/ca.crt" "$c/client.crt" "$c/client.key" \
  "$c/foreign-client.crt" "$c/foreign-client.key" || fail "python grpc over mutual TLS"
mctl() { "$BIN/streamctl" --server "$B_GRPC" --tls-ca "$c/ca.crt" "$@"; }
mctl --tls-cert "$c/client.crt" --tls-key "$c/client.key" topic create m --partitions 1 >/dev/null \
  || fail "streamctl with a client certificate"
if mctl topic list >/dev/null 2>&1; then fail "streamctl without a client certificate was served"; fi
if mctl --tls-cert "$c/foreign-client.crt" --tls-key "$c/foreign-client.key" topic list >/dev/null 2>&1; then
  fail "streamctl with another CA's client certificate was served"
fi
pass "streamctl over mutual TLS: served with the CA's client certificate; refused without one or with another CA's"
M="-b $B_KAFKA -X security.protocol=SSL -X ssl.ca.location=$c/ca.crt"
printf 'mutual\n' | kcat $M -X ssl.certificate.location="$c/client.crt" -X ssl.key.location="$c/client.key" -P -t m -p 0 \
  || fail "kcat with a client certificate"
if kcat $M -X ssl.certificate.location="$c/foreign-client.crt" -X ssl.key.location="$c/foreign-client.key" -m 5 -L >/dev/null 2>&1; then
  fail "kcat with another CA's client certificate got metadata"
fi
pass "kcat over mutual TLS: produce with the CA's client certificate; another CA's refused"
echo "security: all passed in $(( $(date +%s) - began )) s"
