"""Kafka clients against the real streamhoused: confluent-kafka (librdkafka).

Run by scripts/kafka-clients.sh, which installs the client and builds the
server. The script starts its own server (STREAMHOUSED, a fresh data dir,
a free Kafka port) so that it can kill -9 and restart it at the same
address. Every check asserts; the first failure ends the run non-zero.
"""
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

from confluent_kafka import (OFFSET_BEGINNING, Consumer, KafkaException,
                             Producer, TopicPartition)
from confluent_kafka.admin import AdminClient, NewTopic

STREAMHOUSED = os.environ["STREAMHOUSED"]
DATA = os.environ.get("STREAMHOUSE_DATA", "../shared/data")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Server:
    """streamhoused on a fixed Kafka port, restartable on the same data."""

    def __init__(self, flags=()):
        self.dir = tempfile.mkdtemp(prefix="sh-kafka-")
        self.port = free_port()
        self.addr = f"127.0.0.1:{self.port}"
        self.flags = list(flags)
        self.proc = None
        self.start()

    def start(self):
        log = open(os.path.join(self.dir, "server.log"), "a")
        self.proc = subprocess.Popen(
            [STREAMHOUSED, "--listen", "127.0.0.1:0", "--kafka-listen", self.addr,
             "--data-dir", os.path.join(self.dir, "data"), *self.flags],
            stdout=subprocess.PIPE, stderr=log, text=True,
            env={**os.environ, "STREAMHOUSE_LOG": os.environ.get("NODE_LOG", "warn")})
        for _ in range(3):
            line = self.proc.stdout.readline()
            if line.startswith("streamhoused kafka on"):
                return
        raise RuntimeError("streamhoused did not report its kafka address")

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=30)


def movies(n):
    """n real records: (key, value) from the movies dataset."""
    out = []
    with open(os.path.join(DATA, "movies.jsonl"), "rb") as f:
        for line in f:
            rec = json.loads(line)
            key = str(rec.get("title", "")).encode()
            out.append((key, line.rstrip(b"\n")))
            if len(out) == n:
                break
    assert len(out) == n, f"only {len(out)} movies"
    return out


def consume_all(addr, topic, partitions, expected, group=None):
    """Reads `expected` records from the beginning of every partition with
    assign(); returns them in arrival order."""
    conf = {"bootstrap.servers": addr, "group.id": group or f"reader-{time.time()}",
            "enable.auto.commit": False, "auto.offset.reset": "error"}
    c = Consumer(conf)
    c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    got = []
    deadline = time.time() + 60
    while len(got) < expected and time.time() < deadline:
        for m in c.consume(num_messages=1000, timeout=0.5):
            if m.error():
                raise KafkaException(m.error())
            got.append(m)
    c.close()
    assert len(got) == expected, f"{topic}: read {len(got)} of {expected}"
    return got


def produce(addr, topic, records, **conf):
    errors = []
    p = Producer({"bootstrap.servers": addr, **conf})
    for i, (k, v, h, ts) in enumerate(records):
        p.produce(topic, key=k, value=v, headers=h, timestamp=ts,
                  on_delivery=lambda e, m: e and errors.append(e))
        if i % 1000 == 0:
            p.poll(0)
    left = p.flush(60)
    assert left == 0 and not errors, f"undelivered {left}, errors {errors[:3]}"


def check_compression_and_records(addr):
    """acks=all, idempotence, each codec: keys (null, empty, bytes), values
    (null tombstones, empty, bytes), duplicate header keys and null header
    values, timestamps come back exactly."""
    base = movies(2000)
    for codec in ["gzip", "snappy", "lz4", "zstd", "none"]:
        topic = f"movies-{codec}"
        recs = []
        for i, (k, v) in enumerate(base):
            key = None if i % 7 == 0 else (b"" if i % 11 == 0 else k)
            value = None if i % 13 == 0 else (b"" if i % 17 == 0 else v)
            headers = [("src", b"movies"), ("src", str(i).encode()), ("empty", b"")]
            if i % 5 == 0:
                headers.append(("null", None))
            recs.append((key, value, headers, 1_600_000_000_000 + i))
        produce(addr, topic, recs, **{"acks": "all", "enable.idempotence": True,
                                      "compression.type": codec, "linger.ms": 5})
        got = consume_all(addr, topic, 1, len(recs))
        for i, m in enumerate(got):
            key, value, headers, ts = recs[i]
            assert m.offset() == i, (codec, i, m.offset())
            assert m.key() == key, (codec, i, m.key(), key)
            assert m.value() == value, (codec, i)
            assert m.headers() == headers, (codec, i, m.headers())
            assert m.timestamp()[1] == ts, (codec, i, m.timestamp())
        print(f"PASS {codec}: {len(recs)} records round-trip (null/empty keys and values, headers, timestamps)")


def check_commit_and_resume(addr):
    topic, group = "resume", "resume-group"
    produce(addr, topic, [(None, f"r{i}".encode(), None, 0) for i in range(100)],
            acks="all")
    c = Consumer({"bootstrap.servers": addr, "group.id": group,
                  "enable.auto.commit": False})
    c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    got = []
    while len(got) < 40:
        got += [m for m in c.consume(num_messages=40 - len(got), timeout=1.0) if not m.error()]
    c.commit(offsets=[TopicPartition(topic, 0, 40)], asynchronous=False)
    c.close()
    c = Consumer({"bootstrap.servers": addr, "group.id": group,
                  "enable.auto.commit": False})
    committed = c.committed([TopicPartition(topic, 0)], timeout=10)
    assert committed[0].offset == 40, committed
    c.assign([TopicPartition(topic, 0)])  # no offset: the committed one
    m = None
    while m is None or m.error():
        m = c.poll(5)
    assert m.offset() == 40 and m.value() == b"r40", (m.offset(), m.value())
    c.close()
    print("PASS commit at 40 and resume from it with assign()")


def check_admin(addr):
    a = AdminClient({"bootstrap.servers": addr})
    fs = a.create_topics([NewTopic("admin-t", num_partitions=3, replication_factor=1,
                                   config={"retention.ms": "3600000"})])
    fs["admin-t"].result(30)
    md = a.list_topics(timeout=10)
    assert len(md.topics["admin-t"].partitions) == 3
    fs = a.create_topics([NewTopic("admin-t", num_partitions=1, replication_factor=1)])
    try:
        fs["admin-t"].result(30)
        raise AssertionError("a second create succeeded")
    except KafkaException as e:
        assert e.args[0].name() == "TOPIC_ALREADY_EXISTS", e
    a.delete_topics(["admin-t"])["admin-t"].result(30)
    assert "admin-t" not in a.list_topics(timeout=10).topics
    print("PASS admin create (3 partitions, retention.ms), exists error, delete")


def check_kill9_exactly_once(server):
    """The server is killed -9 twice while an idempotent producer writes;
    it retries; every record is stored exactly once, in order."""
    topic, n = "crash", 30000
    errors = []
    p = Producer({"bootstrap.servers": server.addr, "acks": "all",
                  "enable.idempotence": True, "linger.ms": 2,
                  "message.timeout.ms": 120000, "retry.backoff.ms": 100})
    kills = {n // 3, 2 * n // 3}
    for i in range(n):
        while True:
            try:
                p.produce(topic, key=str(i % 10).encode(), value=f"crash-{i}".encode(),
                          headers=[("i", str(i).encode())],
                          on_delivery=lambda e, m: e and errors.append(e))
                break
            except BufferError:
                p.poll(0.1)
        p.poll(0)
        if i in kills:
            time.sleep(0.05)
            server.kill9()
            server.start()
    left = p.flush(120)
    assert left == 0 and not errors, f"undelivered {left}, errors {errors[:3]}"
    got = consume_all(server.addr, topic, 1, n)
    values = [m.value() for m in got]
    assert values == [f"crash-{i}".encode() for i in range(n)], "lost, duplicated or reordered"
    assert [m.offset() for m in got] == list(range(n))
    print(f"PASS kill -9 twice under an idempotent producer: {n} records exactly once, in order")


def main():
    server = Server()
    try:
        check_compression_and_records(server.addr)
        check_commit_and_resume(server.addr)
        check_admin(server.addr)
        check_kill9_exactly_once(server)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
