"""Consumer groups with confluent-kafka (librdkafka) against the real
streamhoused: subscribe(), rebalances on join, clean leave and kill -9,
static membership, and a server restart under an active group.

Each consumer is a process of its own (this file, run as `worker`), so
that it can be killed -9 without a LeaveGroup. It commits synchronously
after every batch and reports, as JSON lines on stdout, what it was
assigned, what it read and what each commit covered. The checks:

- after each rebalance the group is Stable on the server, every partition
  has exactly one owner, and each live consumer holds what the server
  says it holds;
- every acknowledged record is read at least once;
- a record read more than once is read at most once by a consumer that
  then committed past it: every other read lies in the at-least-once
  window (read, and the commit that would have covered it failed or never
  happened: a rebalance, a kill, a restart). The counts are printed.

Run by scripts/kafka-clients.sh (STREAMHOUSED names the binary).
"""
import json
import os
import signal
import subprocess
import sys
import threading
import time

from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

PARTITIONS = 6
SESSION_MS = 6000
# Each batch is "processed" this long between being read and committed:
# the at-least-once window a kill can land in.
PROCESS_S = 0.1


def worker(addr, topic, group, instance):
    """A subscribed consumer; SIGTERM closes it cleanly (LeaveGroup)."""
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))

    def emit(ev, **kw):
        print(json.dumps({"ev": ev, "t": time.time(), **kw}), flush=True)

    conf = {"bootstrap.servers": addr, "group.id": group,
            "session.timeout.ms": SESSION_MS, "heartbeat.interval.ms": 500,
            "enable.auto.commit": False, "auto.offset.reset": "earliest"}
    if instance:
        conf["group.instance.id"] = instance
    c = Consumer(conf)
    c.subscribe([topic],
                on_assign=lambda c, ps: emit("assign", parts=sorted(p.partition for p in ps),
                                              member=c.memberid()),
                on_revoke=lambda c, ps: emit("revoke", parts=sorted(p.partition for p in ps)))
    while not stop:
        msgs = [m for m in c.consume(num_messages=200, timeout=0.2) if not m.error()]
        if not msgs:
            continue
        emit("recs", r=[[m.partition(), m.offset()] for m in msgs])
        time.sleep(PROCESS_S)
        try:
            done = c.commit(asynchronous=False)
            emit("commit", c={tp.partition: tp.offset for tp in done if not tp.error})
        except KafkaException as e:
            emit("commit_err", e=str(e))
    c.close()
    emit("closed")


class Worker:
    """A consumer process and what it reported."""

    def __init__(self, addr, topic, group, name, instance=None):
        self.name = name
        self.events = []
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "worker", addr, topic, group, instance or ""],
            stdout=subprocess.PIPE, text=True)
        self.started = time.time()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.events.append(json.loads(line))

    def assignment(self):
        """(member id, partitions) as of its last assign/revoke."""
        member, parts = None, set()
        for e in list(self.events):
            if e["ev"] == "assign":
                member, parts = e["member"], set(e["parts"])
            elif e["ev"] == "revoke":
                parts = set()
        return member, parts

    def alive(self):
        return self.proc.poll() is None

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def leave(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=30)


class Producing:
    """An idempotent producer writing real records (flights) until stopped;
    `acked` holds the (partition, offset) of every acknowledged record."""

    def __init__(self, addr, topic, data):
        self.acked, self.errors, self.stop = [], [], False
        with open(os.path.join(data, "flights-200k.jsonl"), "rb") as f:
            self.lines = [next(f).rstrip(b"\n") for _ in range(20000)]
        self.p = Producer({"bootstrap.servers": addr, "acks": "all",
                           "enable.idempotence": True, "linger.ms": 5,
                           "message.timeout.ms": 120000})
        self.topic = topic
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _delivered(self, err, m):
        if err:
            self.errors.append(err)
        else:
            self.acked.append((m.partition(), m.offset()))

    def _run(self):
        i = 0
        while not self.stop:
            for _ in range(20):
                self.p.produce(self.topic, key=str(i).encode(),
                               value=self.lines[i % len(self.lines)], on_delivery=self._delivered)
                i += 1
            self.p.poll(0)
            time.sleep(0.02)  # about 1,000 records a second
        assert self.p.flush(120) == 0, "undelivered records"

    def finish(self):
        self.stop = True
        self.thread.join()
        assert not self.errors, self.errors[:3]
        return set(self.acked)


def describe(admin, group):
    """(state, {member id: partitions}, generation unknown to the client)."""
    d = admin.describe_consumer_groups([group])[group].result(10)
    owned = {m.member_id: {tp.partition for tp in m.assignment.topic_partitions}
             for m in d.members}
    return d.state.name, owned


def wait_stable(admin, group, workers, members, since, what):
    """Waits until the group is Stable with `members` members whose
    assignments partition the topic and match what each live consumer
    holds; prints and returns the seconds since `since`."""
    deadline = time.time() + 60
    last = None
    while time.time() < deadline:
        state, owned = describe(admin, group)
        held = {m: ps for m, ps in (w.assignment() for w in workers if w.alive()) if m}
        parts = [p for ps in owned.values() for p in ps]
        last = (state, owned, held)
        if (state == "STABLE" and len(owned) == members and sorted(parts) == list(range(PARTITIONS))
                and held == owned):
            took = time.time() - since
            print(f"  {what}: stable with {members} members after {took:.2f} s "
                  f"({sorted(len(ps) for ps in owned.values())} partitions each)")
            return took
        time.sleep(0.05)
    raise AssertionError(f"{what}: not stable in 60 s: {last}")


def check_reads(workers, acked, what):
    """Every acknowledged record read; duplicates only in the at-least-once
    window. Returns (reads, duplicates, reads not covered by a commit)."""
    reads = {}      # (p, o) -> number of reads
    committed = {}  # (p, o) -> reads followed by a commit past them
    for w in workers:
        pending = []  # reads not yet covered by a commit
        for e in w.events:
            if e["ev"] == "recs":
                pending += [tuple(r) for r in e["r"]]
            elif e["ev"] == "commit":
                done = {int(p): o for p, o in e["c"].items()}
                for p, o in pending:
                    if done.get(p, -1) > o:
                        committed[(p, o)] = committed.get((p, o), 0) + 1
                pending = []
            elif e["ev"] in ("commit_err", "revoke", "assign"):
                pending = []
        for e in w.events:
            if e["ev"] == "recs":
                for p, o in e["r"]:
                    reads[(p, o)] = reads.get((p, o), 0) + 1
    missing = acked - set(reads)
    assert not missing, f"{what}: {len(missing)} acknowledged records never read, e.g. {sorted(missing)[:5]}"
    twice = {k: n for k, n in committed.items() if n > 1}
    assert not twice, f"{what}: records read again after a commit past them: {sorted(twice)[:5]}"
    total = sum(reads.values())
    dups = total - len(reads)
    return total, dups, total - sum(committed.values())


def wait_read(workers, acked, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        seen = {tuple(r) for w in workers for e in list(w.events) if e["ev"] == "recs" for r in e["r"]}
        if acked <= seen:
            return
        time.sleep(0.2)


def topic_with_producer(addr, topic, data):
    """A new topic of PARTITIONS partitions and a producer writing to it."""
    admin = AdminClient({"bootstrap.servers": addr})
    admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS, replication_factor=1)])[topic].result(30)
    return admin, Producing(addr, topic, data)


def check_rebalances(server, data):
    topic, group = "grp", "grp-consumers"
    addr = server.addr
    admin, producing = topic_with_producer(addr, topic, data)
    t0 = time.time()
    ws = [Worker(addr, topic, group, f"c{i}") for i in range(3)]
    wait_stable(admin, group, ws, 3, t0, "three consumers start")
    time.sleep(1)
    t = time.time()
    ws.append(Worker(addr, topic, group, "c3"))
    joined = wait_stable(admin, group, ws, 4, t, "a fourth joins")
    time.sleep(1)
    t = time.time()
    ws[0].leave()
    left = wait_stable(admin, group, ws, 3, t, "one leaves cleanly")
    time.sleep(1)
    # Killed between reading a batch and committing it.
    while not (ws[1].events and ws[1].events[-1]["ev"] == "recs"):
        time.sleep(0.002)
    ws[1].kill9()
    t = time.time()
    killed = wait_stable(admin, group, ws, 2, t, f"one killed -9 (session timeout {SESSION_MS} ms)")
    time.sleep(1)
    acked = producing.finish()
    wait_read(ws, acked)
    total, dups, uncovered = check_reads(ws, acked, "rebalances")
    tail = killed_tail(ws[1])
    reread = sum(1 for r in tail if any(r in reads_of(w) for w in ws if w is not ws[1]))
    assert tail and reread == len(tail), \
        f"the killed consumer's uncommitted reads were not all read again: {reread} of {len(tail)}"
    for w in ws:
        if w.alive():
            w.leave()
    print(f"PASS subscribe(): 3 consumers, a 4th joins ({joined:.2f} s), one leaves ({left:.2f} s), "
          f"one is killed ({killed:.2f} s); {len(acked)} records acknowledged, {total} reads, "
          f"{dups} duplicates, all in the at-least-once window ({uncovered} reads not covered by "
          f"a commit); the killed consumer read {len(tail)} after its last commit, {reread} of them "
          f"read again by the others")


def killed_tail(w):
    """What a consumer read after its last successful commit."""
    tail = []
    for e in w.events:
        if e["ev"] == "recs":
            tail += [tuple(r) for r in e["r"]]
        elif e["ev"] == "commit":
            tail = []
    return tail


def reads_of(w):
    return {tuple(r) for e in w.events if e["ev"] == "recs" for r in e["r"]}


def check_static_membership(server):
    topic, group = "grp", "grp-static"
    addr = server.addr
    admin = AdminClient({"bootstrap.servers": addr})
    a = Worker(addr, topic, group, "a", instance="host-a")
    b = Worker(addr, topic, group, "b", instance="host-b")
    wait_stable(admin, group, [a, b], 2, time.time(), "two static members start")
    _, before = describe(admin, group)
    a_parts = a.assignment()[1]
    b_events = len(b.events)
    a.kill9()
    t = time.time()
    a2 = Worker(addr, topic, group, "a2", instance="host-a")
    while not a2.assignment()[1] and time.time() < t + 30:
        time.sleep(0.05)
    took = time.time() - t
    state, after = describe(admin, group)
    assert a2.assignment()[1] == a_parts, (a_parts, a2.assignment())
    assert state == "STABLE" and sorted(map(sorted, after.values())) == sorted(map(sorted, before.values())), (before, after)
    seen_by_b = [e["ev"] for e in b.events[b_events:] if e["ev"] in ("assign", "revoke")]
    assert not seen_by_b, f"b saw a rebalance: {seen_by_b}"
    for w in (a2, b):
        w.leave()
    print(f"PASS static membership: a member killed -9 and restarted gets its partitions back "
          f"in {took:.2f} s; the other saw no rebalance")


def check_server_restart(server, data):
    topic, group = "grp-restart", "grp-restart-consumers"
    addr = server.addr
    admin, producing = topic_with_producer(addr, topic, data)
    ws = [Worker(addr, topic, group, f"r{i}") for i in range(2)]
    wait_stable(admin, group, ws, 2, time.time(), "two consumers start")
    time.sleep(2)
    server.kill9()
    t = time.time()
    server.start()
    admin = AdminClient({"bootstrap.servers": addr})
    took = wait_stable(admin, group, ws, 2, t, "server killed -9 and restarted")
    time.sleep(1)
    acked = producing.finish()
    wait_read(ws, acked)
    total, dups, _ = check_reads(ws, acked, "server restart")
    for w in ws:
        w.leave()
    print(f"PASS server killed -9 under an active group: members rejoin in {took:.2f} s and resume "
          f"from their commits; {len(acked)} records, none skipped, {dups} read twice")


def main():
    from clients import Server
    data = os.environ.get("STREAMHOUSE_DATA", "../shared/data")
    server = Server()
    try:
        check_rebalances(server, data)
        check_static_membership(server)
        check_server_restart(server, data)
    finally:
        server.stop()


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "worker":
        worker(*sys.argv[2:5], sys.argv[5] or None)
    else:
        main()
