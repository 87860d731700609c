#!/usr/bin/env python3
"""StreamHouse from Python: idempotent produce, then consume as a group.

    python streamhouse_example.py --topic movies --file ../../../shared/data/movies.jsonl \
        --count 1000 --key-field Title

1. Creates the topic (an existing one is fine).
2. Takes a producer id (InitProducer) and sends the first --count lines of
   the file as records, keyed by a JSON field, in batches numbered per
   partition; a batch that failed with UNAVAILABLE or DEADLINE_EXCEEDED is
   sent again unchanged, and the server writes it once either way.
3. Sends one acknowledged batch again on purpose: the server answers
   `duplicate` with the original offsets and writes nothing.
4. Consumes as group --group: per partition, from the group's committed
   offset to the end, committing the next offset after each batch.
Any failure exits non-zero with a message. Run ./generate.sh first.
"""
import argparse
import json
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "gen"))
try:
    import grpc
    from streamhouse.v1 import streamhouse_pb2 as pb
    from streamhouse.v1 import streamhouse_pb2_grpc as rpc
except ImportError as e:
    sys.exit(f"error: {e} (pip install -r requirements.txt, then ./generate.sh)")

# A call that failed with one of these may or may not have happened; every
# call here is safe to repeat (an idempotent batch is written once).
RETRYABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


class Failure(Exception):
    """An error worth a clear message and a non-zero exit."""

    def __init__(self, message, code=None):
        super().__init__(message)
        self.code = code  # the grpc.StatusCode, for a failed call


def call(method, request, attempts=8, timeout_s=10.0):
    """Calls an RPC, retrying the same request with backoff on RETRYABLE."""
    name = type(request).__name__.removesuffix("Request")
    for attempt in range(attempts):
        try:
            return method(request, timeout=timeout_s)
        except grpc.RpcError as e:
            if e.code() not in RETRYABLE or attempt == attempts - 1:
                raise Failure(f"{name}: {e.code().name}: {e.details()}", e.code()) from None
            time.sleep(min(2.0, 0.05 * 2**attempt))


def murmur2(data: bytes) -> int:
    """Kafka's murmur2, as the server's partitioner uses (unsigned 32 bits)."""
    m, mask = 0x5BD1E995, 0xFFFFFFFF
    h = 0x9747B28C ^ len(data)
    whole = len(data) - len(data) % 4
    for i in range(0, whole, 4):
        k = int.from_bytes(data[i : i + 4], "little") * m & mask
        k = (k ^ (k >> 24)) * m & mask
        h = (h * m & mask) ^ k
    tail = data[whole:]
    for i in reversed(range(len(tail))):
        h ^= tail[i] << (8 * i)
    if tail:
        h = h * m & mask
    h = (h ^ (h >> 13)) * m & mask
    return h ^ (h >> 15)


def read_records(path, count, key_field):
    """The first `count` JSON lines of `path` as records keyed by `key_field`."""
    records = []
    with open(path, "rb") as f:
        for lineno, line in zip(range(1, count + 1), f):
            try:
                key = json.loads(line).get(key_field)
            except (ValueError, AttributeError) as e:
                raise Failure(f"{path}:{lineno}: not a JSON object: {e}") from None
            key = b"" if key is None else str(key).encode()  # null: no key
            records.append(pb.Record(key=key, value=line.rstrip(b"\n")))
    if not records:
        raise Failure(f"{path}: no records")
    return records


def produce(channel, topic, partitions, records, batch_size):
    """Sends `records` idempotently; returns {partition: [values in offset order]}."""
    producer = rpc.ProducerServiceStub(channel)
    session = call(producer.InitProducer, pb.InitProducerRequest())  # "" = anonymous
    print(f"producer id {session.producer_id}, epoch {session.epoch}")
    # With a producer id a request names one partition, so the client picks
    # it: keyed records as the server would, keyless ones round-robin.
    by_partition = defaultdict(list)
    for i, r in enumerate(records):
        p = (murmur2(r.key) & 0x7FFFFFFF if r.key else i) % partitions
        by_partition[p].append(r)
    written, next_sequence, last = {}, defaultdict(int), None
    for p, recs in sorted(by_partition.items()):
        for start in range(0, len(recs), batch_size):
            batch = recs[start : start + batch_size]
            req = pb.ProduceRequest(
                topic=topic, partition=p, records=batch, producer_id=session.producer_id,
                producer_epoch=session.epoch, first_sequence=next_sequence[p])
            next_sequence[p] += len(batch)  # the next batch's first sequence
            try:
                ack = send(producer, req)  # a `duplicate` ack (after a retry) is success too
            except Failure as e:
                if not state_lost(e, req.first_sequence):
                    raise
                # The partition forgot this producer (expired there, or rebuilt
                # without its state). Every earlier batch was answered, so this
                # one was not written: go on as a new producer, from sequence 0.
                session = call(producer.InitProducer, pb.InitProducerRequest())
                print(f"partition {p} lost this producer's state; now producer {session.producer_id}")
                next_sequence.clear()
                req.producer_id, req.producer_epoch, req.first_sequence = session.producer_id, session.epoch, 0
                next_sequence[p] = len(batch)
                ack = send(producer, req)
            last = (req, ack)
        written[p] = [r.value for r in recs]
        print(f"  partition {p}: {len(recs)} records, sequences 0..{next_sequence[p] - 1}, "
              f"last batch at offsets {span(ack)}")
    print(f"produced {len(records)} records")

    # Idempotence, shown: the last batch again, as a retry after a lost answer
    # would send it. The server keeps each partition's last 5 batches.
    req, ack = last
    again = send(producer, req)
    print(f"resent batch (partition {req.partition}, first sequence {req.first_sequence}): "
          f"duplicate={again.duplicate}, offsets {span(again)}, originally {span(ack)}")
    if not again.duplicate or (again.base_offset, again.count) != (ack.base_offset, ack.count):
        raise Failure("the resent batch was not answered as a duplicate with its original offsets")
    print("duplicate detected: the server kept the original offsets and wrote nothing")
    return written


def state_lost(e, sequence):
    """The server no longer knows this producer on the partition: a gap that
    expects sequence 0 for a later batch, or an unknown (expired) id."""
    msg = str(e)
    if e.code == grpc.StatusCode.FAILED_PRECONDITION:
        return sequence != 0 and "expected is 0," in msg
    return e.code == grpc.StatusCode.NOT_FOUND and "unknown producer id" in msg


def span(ack):
    """An ack's offsets, first..last."""
    return f"{ack.base_offset}..{ack.base_offset + ack.count - 1}"


def send(producer, req):
    """Sends one single-partition batch until answered; returns its ack."""
    resp = call(producer.Produce, req)
    if resp.errors:
        e = resp.errors[0]
        raise Failure(f"Produce: partition {e.partition}: code {e.code}: {e.message}")
    return resp.acks[0]


def consume(channel, topic, group, partitions, show):
    """Reads every partition from the group's committed offset to the end,
    committing as it goes; returns {partition: [values]}."""
    consumer = rpc.ConsumerServiceStub(channel)
    consumed = {}
    for p in range(partitions):
        where = dict(group=group, topic=topic, partition=p)
        committed = call(consumer.GetCommittedOffset, pb.GetCommittedOffsetRequest(**where))
        if committed.found:
            offset = committed.offset
        else:  # a new group starts at the earliest offset (-2)
            offset = call(consumer.ListOffsets, pb.ListOffsetsRequest(
                topic=topic, partition=p, timestamp_ms=-2)).offset
        start, values = offset, []
        while True:
            resp = call(consumer.Fetch, pb.FetchRequest(topic=topic, partition=p, offset=offset))
            for r in resp.records:  # "processing": keeping them, printing a few
                values.append(r.value)
                if len(values) <= show:
                    key, value = r.key.decode(errors="replace"), r.value.decode(errors="replace")
                    print(f"  {p}@{r.offset} key={key!r} {value[:70]}")
            if resp.records:  # processed: the group resumes after them
                offset = resp.next_offset
                call(consumer.CommitOffset, pb.CommitOffsetRequest(
                    offset=offset, metadata="python example", **where))
            if not resp.records or offset >= resp.high_watermark:
                break
        consumed[p] = values
        print(f"group {group!r}, partition {p}: from offset {start} "
              f"({'committed' if committed.found else 'earliest'}), "
              f"consumed {len(values)}, committed {offset}")
    return consumed


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--addr", default=os.environ.get("STREAMHOUSE_ADDR", "127.0.0.1:50051"),
                    help="server host:port (default $STREAMHOUSE_ADDR or 127.0.0.1:50051)")
    ap.add_argument("--topic", required=True)
    ap.add_argument("--partitions", type=int, default=3, help="for a new topic")
    ap.add_argument("--file", help="JSON lines to produce (required unless --consume-only)")
    ap.add_argument("--count", type=int, default=1000, help="lines of --file to send")
    ap.add_argument("--key-field", default="Title", help="JSON field used as the record key")
    ap.add_argument("--batch-size", type=int, default=100)
    ap.add_argument("--group", default="python-example")
    ap.add_argument("--show", type=int, default=2, help="records to print per partition")
    ap.add_argument("--consume-only", action="store_true", help="skip producing")
    args = ap.parse_args()
    if not args.consume_only and not args.file:
        ap.error("--file is required unless --consume-only")

    records = [] if args.consume_only else read_records(args.file, args.count, args.key_field)
    with grpc.insecure_channel(args.addr) as channel:
        admin = rpc.AdminServiceStub(channel)
        try:
            call(admin.CreateTopic,
                 pb.CreateTopicRequest(name=args.topic, partitions=args.partitions))
        except Failure as e:
            if e.code != grpc.StatusCode.ALREADY_EXISTS:
                raise
        partitions = call(admin.DescribeTopic, pb.DescribeTopicRequest(name=args.topic)).partitions
        print(f"connected to {args.addr}: topic {args.topic!r}, {partitions} partitions")

        written = {}
        if records:
            written = produce(channel, args.topic, partitions, records, args.batch_size)
        consumed = consume(channel, args.topic, args.group, partitions, args.show)

    produced = sum(map(len, written.values()))
    total = sum(map(len, consumed.values()))
    print(f"summary: produced={produced} consumed={total}")
    # From its committed offsets the group sees exactly what this run wrote:
    # the same records in the same order, none twice (the resent batch too).
    if not args.consume_only and any(consumed[p] != written.get(p, []) for p in consumed):
        raise Failure(f"consumed {total} records, expected exactly this run's {produced} "
                      "(older records unread by this group? use a new topic or group)")


if __name__ == "__main__":
    try:
        main()
    except (Failure, OSError) as e:
        sys.exit(f"error: {e}")
