"""Kafka-client load for scripts/bench-kafka.sh (confluent-kafka, librdkafka).

  produce ADDR TOPIC RECORDS PAYLOAD_FILE PROCS   records/s of PROCS producers
  consume ADDR TOPIC RECORDS                      records/s of one consumer
  latency ADDR TOPIC RATE SECONDS PAYLOAD_FILE    produce -> consume latency

Values are the lines of PAYLOAD_FILE in turn (real records, the same file
streamctl perf-produce uses). Producers: linger.ms=5, batch.size=1 MiB,
acks=all, no compression. Prints one line per run. KAFKA_CONF (JSON) is
added to every client's configuration (scripts/bench-tls.sh: SASL_SSL).
"""
import json
import multiprocessing as mp
import os
import struct
import sys
import time

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition


def values(path):
    with open(path, "rb") as f:
        return [line.rstrip(b"\n") for line in f if line.strip()]


EXTRA = json.loads(os.environ.get("KAFKA_CONF", "{}"))


def producer(addr, **extra):
    conf = {"bootstrap.servers": addr, "linger.ms": 5, "batch.size": 1 << 20,
            "acks": "all", "queue.buffering.max.messages": 2_000_000,
            "queue.buffering.max.kbytes": 1 << 20}
    conf.update(extra)
    conf.update(EXTRA)
    return Producer(conf)


def produce_part(addr, topic, n, vals, start, out):
    p = producer(addr)
    failed = [0]
    start.wait()
    k = len(vals)
    for i in range(n):
        while True:
            try:
                p.produce(topic, vals[i % k], on_delivery=lambda e, m: e and failed.__setitem__(0, failed[0] + 1))
                break
            except BufferError:
                p.poll(0.001)
    p.flush(120)
    out.put((time.time(), failed[0]))


def produce(addr, topic, records, payload_file, procs):
    vals = values(payload_file)
    procs = int(procs)
    n = int(records) // procs
    start, out = mp.Event(), mp.Queue()
    workers = [mp.Process(target=produce_part, args=(addr, topic, n, vals, start, out))
               for _ in range(procs)]
    for w in workers:
        w.start()
    time.sleep(1.0)  # connected and metadata fetched before the clock starts
    t0 = time.time()
    start.set()
    ends = [out.get() for _ in workers]
    for w in workers:
        w.join()
    secs = max(e for e, _ in ends) - t0
    failed = sum(f for _, f in ends)
    total = n * procs
    print(f"kafka produce: {total} records in {secs:.2f} s = {total / secs:.0f} records/s "
          f"({procs} processes, {failed} failed)")


def consume(addr, topic, records):
    records = int(records)
    # librdkafka stops prefetching at queued.min.messages (default 100,000):
    # with the default this consumer measured 368K records/s here, waiting
    # on its own prefetch; 1,000,000 lets it keep fetching (1.5M).
    c = Consumer({"bootstrap.servers": addr, "group.id": "bench", "enable.auto.commit": False,
                  "fetch.max.bytes": 50 << 20, "max.partition.fetch.bytes": 8 << 20,
                  "queued.min.messages": 1_000_000, **EXTRA})
    c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    got = 0
    t0 = None
    while got < records:
        # consume() waits for all num_messages (or the timeout), and
        # librdkafka stops prefetching at queued.min.messages (100,000):
        # ask for fewer than that.
        batch = c.consume(num_messages=10_000, timeout=0.1)
        if batch and t0 is None:
            t0 = time.time()
        got += len(batch)
    secs = time.time() - t0
    c.close()
    print(f"kafka consume: {got} records in {secs:.2f} s = {got / secs:.0f} records/s")


def latency_consumer(addr, topic, expected, ready, out):
    c = Consumer({"bootstrap.servers": addr, "group.id": "lat", "enable.auto.commit": False,
                  "fetch.wait.max.ms": 100, "fetch.min.bytes": 1, **EXTRA})
    # From the current end, resolved before the producer starts.
    _, high = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
    c.assign([TopicPartition(topic, 0, high)])
    c.consume(num_messages=1, timeout=0.5)  # the fetcher is running
    ready.set()
    lat = []
    deadline = time.time() + 60
    while len(lat) < expected and time.time() < deadline:
        # poll() returns as soon as one record is there; then whatever else
        # is queued, without waiting (consume() with a timeout would wait
        # for all of num_messages and add that wait to every record).
        first = c.poll(0.2)
        batch = ([first] if first is not None else []) + c.consume(num_messages=10_000, timeout=0)
        now = time.time_ns() // 1000
        for m in batch:
            if m.error() or not m.headers():
                continue
            lat.append(now - struct.unpack("<q", m.headers()[0][1])[0])
    c.close()
    out.put(lat)


def latency(addr, topic, rate, seconds, payload_file):
    rate, seconds = int(rate), float(seconds)
    vals = values(payload_file)
    total = int(rate * seconds)
    ready, out = mp.Event(), mp.Queue()
    cons = mp.Process(target=latency_consumer, args=(addr, topic, total, ready, out))
    cons.start()
    ready.wait(30)
    p = producer(addr, **{"linger.ms": 1})
    # Paced by the millisecond, sleeping between: a spinning producer would
    # take a core from the server and the consumer on this 2-core machine.
    per_ms = max(1, rate // 1000)
    t0 = time.time()
    for i in range(0, total, per_ms):
        wait = t0 + i / rate - time.time()
        if wait > 0:
            time.sleep(wait)
        for j in range(i, min(i + per_ms, total)):
            stamp = struct.pack("<q", time.time_ns() // 1000)
            p.produce(topic, vals[j % len(vals)], headers=[("perf-ts", stamp)])
        p.poll(0)
    p.flush(60)
    lat = sorted(out.get())
    cons.join()
    if not lat:
        print("kafka latency: nothing received")
        return
    pct = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] / 1000
    print(f"kafka produce->consume at {rate} records/s: {len(lat)} records, "
          f"p50 {pct(0.5):.2f} ms, p99 {pct(0.99):.2f} ms, p99.9 {pct(0.999):.2f} ms")


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    {"produce": produce, "consume": consume, "latency": latency}[cmd](*args)
