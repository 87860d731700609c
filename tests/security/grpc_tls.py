"""A Python gRPC client (grpcio) over TLS and mutual TLS against the real
streamhoused. Run by scripts/security.sh, which makes the certificates
and starts the servers. Every check asserts; the first failure exits
non-zero. Requests and answers are encoded by hand (the messages used are
tiny), so no generated stubs are needed.

  grpc_tls.py tls ADDR CA TOKEN                 server TLS, token, health
  grpc_tls.py reload ADDR CA TOKEN PID METRICS NEW_CERT NEW_KEY CERT KEY SERIAL
  grpc_tls.py mtls ADDR CA CLIENT_CERT CLIENT_KEY FOREIGN_CERT FOREIGN_KEY
"""
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request

import grpc

HEALTH_NAMES = ["", "streamhouse.v1.AdminService", "streamhouse.v1.ProducerService",
                "streamhouse.v1.ConsumerService"]


def read(path):
    with open(path, "rb") as f:
        return f.read()


def channel(addr, ca, cert=None, key=None):
    creds = grpc.ssl_channel_credentials(
        root_certificates=read(ca),
        private_key=read(key) if key else None,
        certificate_chain=read(cert) if cert else None)
    return grpc.secure_channel(addr, creds)


def raw(ch, method):
    return ch.unary_unary(method, request_serializer=lambda b: b,
                          response_deserializer=lambda b: b)


def health(ch, name):
    """The status of `name`: 1 SERVING (HealthCheckResponse's field 1)."""
    req = b"\x0a" + bytes([len(name)]) + name.encode() if name else b""
    resp = raw(ch, "/grpc.health.v1.Health/Check")(req, timeout=10)
    assert resp[:1] == b"\x08", resp
    return resp[1]


def list_topics(ch, token):
    md = [("authorization", f"Bearer {token}")] if token else None
    return raw(ch, "/streamhouse.v1.AdminService/ListTopics")(b"", timeout=10, metadata=md)


def code_of(call):
    try:
        call()
    except grpc.RpcError as e:
        return e.code()
    return grpc.StatusCode.OK


def tls(addr, ca, token):
    ch = channel(addr, ca)
    for name in HEALTH_NAMES:
        assert health(ch, name) == 1, f"{name!r} is not SERVING"
    assert code_of(lambda: health(ch, "streamhouse.v1.NoSuchService")) == grpc.StatusCode.NOT_FOUND
    print("PASS grpc over TLS: health answers SERVING for \"\" and each of the three services, NOT_FOUND for another")
    list_topics(ch, token)
    assert code_of(lambda: list_topics(ch, None)) == grpc.StatusCode.UNAUTHENTICATED
    print("PASS grpc over TLS: the token is required and accepted")
    # A client that does not trust the server's CA gets nothing.
    other = grpc.secure_channel(addr, grpc.ssl_channel_credentials())
    assert code_of(lambda: list_topics(other, token)) == grpc.StatusCode.UNAVAILABLE
    # A client without TLS gets nothing either.
    plain = grpc.insecure_channel(addr)
    assert code_of(lambda: list_topics(plain, token)) == grpc.StatusCode.UNAVAILABLE
    list_topics(ch, token)
    print("PASS grpc over TLS: clients without TLS or trusting another CA are refused; the server keeps serving")


def handshakes(metrics):
    text = urllib.request.urlopen(metrics, timeout=10).read().decode()
    for line in text.splitlines():
        if line.startswith('streamhouse_tls_handshakes_total{listener="grpc"}'):
            return int(line.split()[-1])
    raise AssertionError("no grpc handshake counter")


def served_serial(addr):
    pem = subprocess.run(
        ["openssl", "s_client", "-connect", addr, "-servername", "localhost"],
        input=b"", capture_output=True, timeout=20).stdout
    out = subprocess.run(["openssl", "x509", "-noout", "-serial"], input=pem,
                         capture_output=True, timeout=20).stdout.decode()
    return out.strip().split("=")[-1]


def reload(addr, ca, token, pid, metrics, new_cert, new_key, cert, key, serial):
    ch = channel(addr, ca)
    list_topics(ch, token)
    before = handshakes(metrics)
    shutil.copyfile(new_cert, cert + ".tmp")
    shutil.copyfile(new_key, key + ".tmp")
    os.replace(key + ".tmp", key)
    os.replace(cert + ".tmp", cert)
    os.kill(int(pid), signal.SIGHUP)
    deadline = time.time() + 10
    while served_serial(addr) != serial:
        assert time.time() < deadline, f"still serving the old certificate after SIGHUP"
        time.sleep(0.2)
    probes = handshakes(metrics) - before
    # The channel opened before the reload still answers, on the same
    # connection: no handshake beyond the probes.
    for _ in range(5):
        list_topics(ch, token)
    assert handshakes(metrics) - before == probes, "the open connection was dropped by the reload"
    print(f"PASS SIGHUP: new connections get the renewed certificate (serial 0x{serial}); a connection open before keeps working ({probes} probe handshakes, no other)")


def mtls(addr, ca, cert, key, foreign_cert, foreign_key):
    ok = channel(addr, ca, cert, key)
    for name in HEALTH_NAMES:
        assert health(ok, name) == 1
    list_topics(ok, None)
    print("PASS grpc over mutual TLS: a client certificate of the trusted CA is served")
    for what, c in [("no client certificate", channel(addr, ca)),
                    ("a certificate from another CA", channel(addr, ca, foreign_cert, foreign_key))]:
        got = code_of(lambda: list_topics(c, None))
        assert got == grpc.StatusCode.UNAVAILABLE, f"{what}: {got}"
        print(f"PASS grpc over mutual TLS: {what} is refused ({got.name})")
    list_topics(ok, None)


if __name__ == "__main__":
    mode, args = sys.argv[1], sys.argv[2:]
    {"tls": tls, "reload": reload, "mtls": mtls}[mode](*args)
