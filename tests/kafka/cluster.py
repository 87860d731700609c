"""confluent-kafka (librdkafka) and kcat against a three-node cluster.

Run by scripts/kafka-clients.sh when the S3 test server and etcd are up
(scripts/s3-server.sh env --test, scripts/etcd-server.sh env). Three
streamhoused nodes share a bucket prefix and an etcd cluster name. kcat -L
lists the three brokers; an idempotent producer (acks=all, which cluster
mode makes wait for the upload) writes numbered records over 6 partitions
while the leader of partition 0 is killed -9; every record is delivered,
and a consumer bootstrapped from the survivors reads each exactly once,
offsets contiguous per partition. Then a consumer group: one member
subscribes through the survivors, reads part of the topic and commits;
the group's coordinator (which DescribeGroups names) is killed -9; a new
member on the last node resumes exactly at the commits.
"""
import os
import subprocess
import sys
import time

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from clients import Server, consume_all

TOPIC, PARTITIONS, N = "cluster-t", 6, 20000


def leaders(bootstrap):
    """partition -> the leader's host:port, from Metadata."""
    md = AdminClient({"bootstrap.servers": bootstrap}).list_topics(TOPIC, timeout=10)
    brokers = {b.id: f"{b.host}:{b.port}" for b in md.brokers.values()}
    t = md.topics[TOPIC]
    return {p.id: brokers.get(p.leader) for p in t.partitions.values() if p.leader >= 0}


def wait_led(bootstrap, nodes):
    addrs = {n.addr for n in nodes}
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            led = leaders(bootstrap)
            if len(led) == PARTITIONS and set(led.values()) <= addrs:
                return led
        except KafkaException:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{TOPIC}: not every partition led after 30 s")


def main():
    endpoint = os.environ.get("STREAMHOUSE_TEST_S3_ENDPOINT")
    etcd = os.environ.get("STREAMHOUSE_TEST_ETCD")
    if not endpoint or not etcd:
        assert os.environ.get("STREAMHOUSE_REQUIRE_ETCD") != "1", "etcd and S3 are required"
        print("SKIP the cluster: no STREAMHOUSE_TEST_S3_ENDPOINT or STREAMHOUSE_TEST_ETCD")
        return
    prefix = f"kafka-cluster-{os.getpid()}-{int(time.time() * 1000)}"
    flags = ["--s3-endpoint", endpoint, "--s3-bucket",
             os.environ.get("STREAMHOUSE_TEST_S3_BUCKET", "streamhouse-test"),
             "--s3-prefix", prefix, "--s3-path-style",
             "--etcd", etcd, "--cluster", prefix, "--cluster-ttl-ms", "2000"]
    nodes = [Server(flags) for _ in range(3)]
    try:
        run(nodes)
    finally:
        for n in nodes:
            n.stop()


def run(nodes):
    bootstrap = ",".join(n.addr for n in nodes)
    listed = subprocess.run(["kcat", "-b", nodes[0].addr, "-L"], capture_output=True,
                            text=True, timeout=30).stdout
    for n in nodes:
        assert f"at {n.addr}" in listed, f"kcat -L does not list {n.addr}:\n{listed}"
    print("PASS kcat -L lists the three nodes as brokers")

    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(TOPIC, PARTITIONS)])[TOPIC].result(30)
    led = wait_led(bootstrap, nodes)

    errors = []
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
                  "linger.ms": 5, "message.timeout.ms": 120000, "retry.backoff.ms": 100})
    victim = next(n for n in nodes if n.addr == led[0])
    for i in range(N):
        while True:
            try:
                p.produce(TOPIC, key=str(i % 60).encode(), value=f"c-{i}".encode(),
                          on_delivery=lambda e, m: e and errors.append(e))
                break
            except BufferError:
                p.poll(0.1)
        p.poll(0)
        if i == N // 2:
            # Half acknowledged (so committed), more in flight: then the kill.
            assert p.flush(60) == 0 and not errors, f"first half: {errors[:3]}"
            delivered_before = N // 2
        if i == N // 2 + 2000:
            victim.kill9()
            killed_at = time.time()
    left = p.flush(120)
    assert left == 0 and not errors, f"undelivered {left}, errors {errors[:3]}"
    print(f"PASS {N} records delivered with acks=all; the leader of partition 0 "
          f"({victim.addr}) was killed -9 with {delivered_before} delivered and 2000 in flight "
          f"({time.time() - killed_at:.1f} s before the last was delivered)")

    survivors = [n for n in nodes if n is not victim]
    boot = ",".join(n.addr for n in survivors)
    wait_led(boot, survivors)
    got = consume_all(boot, TOPIC, PARTITIONS, N)
    values = sorted(int(m.value()[2:]) for m in got)
    assert values == list(range(N)), "lost or duplicated"
    for q in range(PARTITIONS):
        offsets = [m.offset() for m in got if m.partition() == q]
        assert offsets == list(range(len(offsets))), f"partition {q}: offsets not contiguous"
    print(f"PASS every record once from the survivors, offsets contiguous in {PARTITIONS} partitions")
    check_group_outlives_its_coordinator(survivors, {(m.partition(), m.offset()) for m in got})


def member(bootstrap, group):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                  "enable.auto.commit": False, "auto.offset.reset": "earliest",
                  "session.timeout.ms": 6000, "heartbeat.interval.ms": 500})
    c.subscribe([TOPIC])
    return c


def read(c, until, deadline_s=90):
    """(partition, offset) of what `c` reads, until `until` of them."""
    got = []
    deadline = time.time() + deadline_s
    while len(got) < until and time.time() < deadline:
        for m in c.consume(num_messages=1000, timeout=0.5):
            if m.error():
                raise KafkaException(m.error())
            got.append((m.partition(), m.offset()))
    return got


def check_group_outlives_its_coordinator(survivors, everything):
    group = "cluster-group"
    boot = ",".join(n.addr for n in survivors)
    first = member(boot, group)
    got = read(first, N // 3)
    first.commit(asynchronous=False)
    parts = [TopicPartition(TOPIC, q) for q in range(PARTITIONS)]
    committed = {tp.partition: max(tp.offset, 0)
                 for tp in first.committed(parts, timeout=10)}
    first.close()
    assert sum(committed.values()) >= N // 3, committed
    admin = AdminClient({"bootstrap.servers": boot})  # kept: its futures die with it
    coordinator = admin.describe_consumer_groups([group])[group].result(30).coordinator
    victim = next(n for n in survivors if n.addr == f"{coordinator.host}:{coordinator.port}")
    victim.kill9()
    last = next(n for n in survivors if n is not victim)
    second = member(last.addr, group)
    rest = read(second, N - sum(committed.values()))
    second.close()
    expected = sorted((q, o) for q, o in everything if o >= committed[q])
    assert sorted(rest) == expected, (
        f"after the coordinator died: read {len(rest)}, expected {len(expected)} "
        f"from the commits {committed}")
    print(f"PASS group {group}: {len(got)} read and committed through {boot}; its coordinator "
          f"({victim.addr}) killed -9; the next member resumed at the commits and read the "
          f"other {len(rest)} once")


if __name__ == "__main__":
    main()
    sys.exit(0)
