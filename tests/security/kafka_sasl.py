"""confluent-kafka (librdkafka) over SASL_SSL against the real streamhoused.

Run by scripts/security.sh, which makes the certificates and the users and
starts the server (TLS and SASL). Environment: KAFKA_ADDR, CA, TOPIC,
USER, PASSWORD. Every check asserts; the first failure exits non-zero.
"""
import os
import sys
import time
import uuid

from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import AdminClient

ADDR = os.environ["KAFKA_ADDR"]
CA = os.environ["CA"]
TOPIC = os.environ["TOPIC"]
USER = os.environ["USER_NAME"]
PASSWORD = os.environ["PASSWORD"]
DATA = os.environ["MOVIES"]


def conf(mechanism, password=PASSWORD, **extra):
    c = {
        "bootstrap.servers": ADDR,
        "security.protocol": "SASL_SSL",
        "ssl.ca.location": CA,
        "sasl.mechanism": mechanism,
        "sasl.username": USER,
        "sasl.password": password,
    }
    c.update(extra)
    return c


def movies(n):
    with open(DATA) as f:
        return [line.rstrip("\n").encode() for _, line in zip(range(n), f)]


def produce_and_consume(mechanism, values):
    p = Producer(conf(mechanism, **{"enable.idempotence": True, "acks": "all"}))
    errors = []
    for i, v in enumerate(values):
        p.produce(TOPIC, key=f"{mechanism}-{i}".encode(), value=v, partition=0,
                  on_delivery=lambda e, m: e and errors.append(e))
    assert p.flush(30) == 0, "records left unsent"
    assert not errors, errors
    c = Consumer(conf(mechanism, **{"group.id": f"sec-{uuid.uuid4()}",
                                    "auto.offset.reset": "earliest",
                                    "enable.auto.commit": False}))
    c.subscribe([TOPIC])
    got = []
    deadline = time.time() + 30
    while time.time() < deadline:
        m = c.poll(0.5)
        if m is None:
            continue
        assert m.error() is None, m.error()
        if (m.key() or b"").decode().startswith(f"{mechanism}-"):
            got.append(m.value())
        if len(got) == len(values):
            break
    c.close()
    assert got == values, f"{mechanism}: read {len(got)} of {len(values)} back, or out of order"
    print(f"PASS confluent-kafka SASL_SSL {mechanism}: {len(values)} movies produced (idempotent, acks=all) and consumed in order")


def wrong_password(mechanism):
    errors = []
    a = AdminClient(conf(mechanism, password=PASSWORD + "x",
                         **{"error_cb": lambda e: errors.append(e)}))
    try:
        a.list_topics(timeout=5)
        raise AssertionError(f"{mechanism}: metadata with a wrong password")
    except KafkaException as e:
        refused = str(e)
    a.poll(1)  # delivers the error callbacks
    said = [e.str() for e in errors] + [refused]
    assert any("Authentication failed" in s for s in said), said
    print(f"PASS confluent-kafka {mechanism}: a wrong password is refused (Authentication failed)")


values = movies(200)
for mech in ["PLAIN", "SCRAM-SHA-512", "SCRAM-SHA-256"]:
    produce_and_consume(mech, values)
for mech in ["PLAIN", "SCRAM-SHA-512"]:
    wrong_password(mech)
sys.exit(0)
