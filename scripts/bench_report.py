#!/usr/bin/env python3
"""Runs the end-to-end benchmarks on real data and writes docs/BENCHMARKS.md
with SVG plots (scripts/bench.sh starts the S3 test server and calls this).

Every figure is the median of three runs made in this invocation, beside a
baseline measured in the same invocation where there is one (the null
server: the same gRPC stack answering Produce without storing). Records are
the lines of ../shared/data/flights-200k.jsonl (JSON, ~45 B each).

    scripts/bench_report.py --null PATH_TO_NULL_SERVER [--codec FILE] [--out docs/BENCHMARKS.md]
"""
import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", Path.home() / ".cache/streamhouse/target"))
BIN = TARGET / "release"
DATA = ROOT.parent / "shared" / "data"
FLIGHTS = DATA / "flights-200k.jsonl"
RUNS = int(os.environ.get("STREAMHOUSE_BENCH_RUNS", "3"))
# Divides every record count (a quick check of the script itself).
SCALE = int(os.environ.get("STREAMHOUSE_BENCH_SCALE", "1"))
WORK = Path(tempfile.mkdtemp(prefix="bench-report-"))


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def pct(sorted_xs, q):
    if not sorted_xs:
        return float("nan")
    i = min(len(sorted_xs), max(1, int(-(-q * len(sorted_xs) // 1)))) - 1
    return sorted_xs[i]


class Server:
    """streamhoused (or the null server) on a port of its own."""

    def __init__(self, store, data_dir=None, extra=(), null=None, prefix=None):
        self.store, self.null = store, null
        self.data_dir = data_dir or Path(tempfile.mkdtemp(dir=WORK))
        self.prefix = prefix or f"bench-{os.getpid()}-{time.time_ns()}"
        self.extra = list(extra)
        self.start()

    def flags(self):
        f = ["--listen", "127.0.0.1:0", "--data-dir", str(self.data_dir),
             "--metrics-listen", "127.0.0.1:0"] + self.extra
        if self.store == "s3":
            f += ["--s3-endpoint", os.environ["STREAMHOUSE_TEST_S3_ENDPOINT"],
                  "--s3-bucket", os.environ["STREAMHOUSE_TEST_S3_BUCKET"],
                  "--s3-prefix", self.prefix, "--s3-path-style"]
        return f

    def start(self):
        self.out = open(WORK / f"server-{time.time_ns()}.out", "w+")
        cmd = [self.null, "--listen", "127.0.0.1:0"] if self.null else [str(BIN / "streamhoused")] + self.flags()
        self.started = time.monotonic()
        self.proc = subprocess.Popen(cmd, stdout=self.out, stderr=subprocess.DEVNULL,
                                     env={**os.environ, "STREAMHOUSE_LOG": "warn"})
        self.addr = self.metrics = None
        while time.monotonic() - self.started < 120:
            self.out.seek(0)
            text = self.out.read()
            m = re.search(r"listening on (\S+)", text)
            if m:
                self.addr = m.group(1)
            m = re.search(r"metrics on http://(\S+)/metrics", text)
            if m:
                self.metrics = m.group(1)
            if self.addr and (self.null or self.metrics):
                return
            if self.proc.poll() is not None:
                raise SystemExit(f"server exited: {text}")
            time.sleep(0.01)
        raise SystemExit("server did not start")

    def ready_seconds(self):
        """Seconds from spawn until it answers a call."""
        while ctl(self, "topic", "list", check=False).returncode != 0:
            time.sleep(0.005)
        return time.monotonic() - self.started

    def scrape(self):
        import urllib.request
        text = urllib.request.urlopen(f"http://{self.metrics}/metrics", timeout=10).read().decode()
        values = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, v = line.rpartition(" ")
                values[name] = float(v)
        return values

    def drain(self):
        """Waits until everything accepted is uploaded (each phase starts alike)."""
        for _ in range(3000):
            if self.scrape().get("streamhouse_backlog_bytes", 0) == 0:
                return
            time.sleep(0.1)

    def peak_rss_mib(self):
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def kill9(self):
        self.proc.kill()
        self.proc.wait()

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=60)


def ctl(server, *args, check=True, **kw):
    r = subprocess.run([str(BIN / "streamctl"), "--server", server.addr, *args],
                       capture_output=True, text=True, **kw)
    if check and r.returncode != 0:
        raise SystemExit(f"streamctl {' '.join(args)}: {r.stderr}")
    return r


def perf_produce(server, topic, records, partitions="0", acks="wal", throughput=None,
                 samples=None, stamp=False):
    args = ["--format", "json", "perf-produce", "--topic", topic, "--records", str(records),
            "--batch", "1000", "--inflight", "8", "--payload-file", str(FLIGHTS),
            "--partition", partitions, "--acks", acks]
    if throughput:
        args += ["--throughput", str(int(throughput))]
    if samples:
        args += ["--samples", str(samples)]
    if stamp:
        args.append("--stamp")
    return ctl_json(server, args)


def ctl_json(server, args):
    import json
    out = ctl(server, *args).stdout.strip().splitlines()
    return json.loads(out[0])


def parallel_produce(server, topic, producers, records_each, acks):
    """`producers` perf-produce processes at once on a topic of 2x as many
    partitions (each takes two): total records/s over the wall time."""
    import json
    procs, t0 = [], time.monotonic()
    for k in range(producers):
        parts = f"{k},{k + producers}"
        args = [str(BIN / "streamctl"), "--server", server.addr, "--format", "json", "perf-produce",
                "--topic", topic, "--records", str(records_each), "--batch", "1000", "--inflight", "8",
                "--payload-file", str(FLIGHTS), "--partition", parts, "--acks", acks]
        procs.append(subprocess.Popen(args, stdout=subprocess.PIPE, text=True))
    results = [json.loads(p.communicate()[0].splitlines()[0]) for p in procs]
    secs = time.monotonic() - t0
    total = producers * records_each
    mb = sum(r["mb_per_sec"] * r["seconds"] for r in results)
    return {"records_per_sec": total / secs, "mb_per_sec": mb / secs,
            "p99": max(r["latency_ms"]["p99"] for r in results)}


# ------------------------------------------------------------------ phases

def produce_phase(store, null_path, rows, plots):
    n1, n8 = 2_000_000 // SCALE, 500_000 // SCALE
    null = Server(store, null=null_path)
    base1 = [perf_produce(null, "t", n1)["records_per_sec"] for _ in range(RUNS)]
    base8 = [parallel_produce(null, "t", 4, n8, "wal")["records_per_sec"] for _ in range(RUNS)]
    null.stop()

    s = Server(store, extra=["--segment-max-bytes", "16MiB", "--segment-max-age-ms", "2000"])
    ctl(s, "topic", "create", "one", "--partitions", "1")
    ctl(s, "topic", "create", "eight", "--partitions", "8")
    for acks in ["wal", "uploaded"]:
        s.drain()
        m0 = s.scrape()
        one, eight = [], []
        for i in range(RUNS):
            s.drain()
            one.append(perf_produce(s, "one", n1, acks=acks))
            s.drain()
            eight.append(parallel_produce(s, "eight", 4, n8, acks))
        rate1 = median([r["records_per_sec"] for r in one])
        rate8 = median([r["records_per_sec"] for r in eight])
        rows.append((f"produce, 1 partition, acks={acks} ({store})",
                     f"{rate1:,.0f} rec/s, {median([r['mb_per_sec'] for r in one]):.1f} MB/s; "
                     f"p99 {median([r['latency_ms']['p99'] for r in one]):.1f} ms"
                     + (f"; null server {median(base1):,.0f} rec/s ({100 * rate1 / median(base1):.0f}%)" if acks == "wal" else ""),
                     "≥ 50,000 rec/s; ≥ 80% of the null server" if acks == "wal" else "≥ 50,000 rec/s"))
        rows.append((f"produce, 8 partitions, 4 producers, acks={acks} ({store})",
                     f"{rate8:,.0f} rec/s, {median([r['mb_per_sec'] for r in eight]):.1f} MB/s; "
                     f"worst p99 {median([r['p99'] for r in eight]):.1f} ms"
                     + (f"; null server {median(base8):,.0f} rec/s ({100 * rate8 / median(base8):.0f}%)" if acks == "wal" else ""),
                     "≥ 50,000 rec/s" + ("; ≥ 80% of the null server" if acks == "wal" else "")))
        if acks == "wal":
            half = rate1 / 2
            # Throughput over time: one run of about 10 s at the maximum rate.
            s.drain()
            samples = WORK / f"{store}-max.samples"
            perf_produce(s, "one", min(int(rate1 * 10), 30_000_000) // SCALE, samples=samples)
            plots[f"{store}-throughput"] = throughput_series(samples)
        s.drain()
        m1 = s.scrape()
        puts = m1["streamhouse_puts_total"] - m0["streamhouse_puts_total"]
        gb_in = (m1["streamhouse_bytes_in_total"] - m0["streamhouse_bytes_in_total"]) / 1e9
        rows.append((f"PUTs per GB produced, the acks={acks} runs above ({store})",
                     f"{puts / gb_in:,.0f} ({puts:,.0f} PUTs, segments and producer tables, for {gb_in:.2f} GB)",
                     "≤ 100 with acks=uploaded (issue 11)" if acks == "uploaded" else "—"))
    half_load(s, store, half, rows, plots)
    rows.append((f"peak server memory under the load above ({store})",
                 f"{s.peak_rss_mib():,.0f} MiB (VmHWM)", "≤ 1 GiB with the default cache (256 MiB) (ours)"))
    s.stop()
    fetch_phase(s, store, rows)
    return s


def half_load(s, store, rate, rows, plots):
    secs = 5
    acks, e2es = [], []
    for i in range(RUNS):
        s.drain()
        n = int(rate * secs)
        sub_file = WORK / f"{store}-half-{i}.sub"
        sub = subprocess.Popen([str(BIN / "streamctl"), "--server", s.addr, "perf-consume", "--topic", "one",
                                "--records", str(n), "--subscribe", "--samples", str(sub_file)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1)
        prod_file = WORK / f"{store}-half-{i}.samples"
        perf_produce(s, "one", n, throughput=rate, samples=prod_file, stamp=True)
        sub.wait(timeout=120)
        acks.append(sorted(float(l.split()[1]) for l in prod_file.read_text().splitlines()))
        e2es.append(sorted(float(l.split()[1]) for l in sub_file.read_text().splitlines()))
    med = lambda runs, q: median([pct(r, q) for r in runs])
    rows.append((f"ack latency at half load, {rate:,.0f} rec/s ({store})",
                 f"p50 {med(acks, .5):.2f} ms, p99 {med(acks, .99):.2f} ms", "p99 ≤ 3 ms (issue 11)"))
    rows.append((f"produce → subscriber latency at half load ({store})",
                 f"p50 {med(e2es, .5):.2f} ms, p99 {med(e2es, .99):.2f} ms", "p99 ≤ 5 ms (issue 11)"))
    plots[f"{store}-latency"] = {"ack": acks[RUNS // 2], "produce → subscriber": e2es[RUNS // 2]}


def fetch_phase(stopped, store, rows):
    """Restarts on the same data: the first pass reads from the store, the
    second from the block cache."""
    n = 1_000_000 // SCALE
    cold, warm, hit = [], [], []
    for _ in range(RUNS):
        s = Server(store, data_dir=stopped.data_dir, prefix=stopped.prefix, extra=stopped.extra)
        m0 = s.scrape()
        cold.append(ctl_json(s, ["--format", "json", "perf-consume", "--topic", "one", "--records", str(n),
                                 "--fetch-records", "1000"]))
        m1 = s.scrape()
        warm.append(ctl_json(s, ["--format", "json", "perf-consume", "--topic", "one", "--records", str(n),
                                 "--fetch-records", "1000"]))
        hits = m1["streamhouse_cache_hits_total"] - m0["streamhouse_cache_hits_total"]
        misses = m1["streamhouse_cache_misses_total"] - m0["streamhouse_cache_misses_total"]
        hit.append(hits / max(1, hits + misses))
        gets = m1["streamhouse_gets_total"] - m0["streamhouse_gets_total"]
        gb_out = (m1["streamhouse_bytes_out_total"] - m0["streamhouse_bytes_out_total"]) / 1e9
        s.stop()
    for name, runs in [("uncached (from the store, after a restart)", cold), ("cached (second pass)", warm)]:
        rows.append((f"fetch {name}, 1,000 records a fetch ({store})",
                     f"{median([r['records_per_sec'] for r in runs]):,.0f} rec/s, "
                     f"{median([r['mb_per_sec'] for r in runs]):.1f} MB/s; fetch p50 "
                     f"{median([r['fetch_ms']['p50'] for r in runs]):.2f} ms, p99 "
                     f"{median([r['fetch_ms']['p99'] for r in runs]):.2f} ms", "—"))
    rows.append((f"sequential cache hit rate, first pass ({store})",
                 f"{100 * median(hit):.1f}% (prefetch reads ahead)", "≥ 90% (ours)"))
    rows.append((f"GETs per GB read, first pass ({store})", f"{gets / gb_out:,.0f}", "—"))


def restart_phase(rows):
    """kill -9 with 1M records only in the WAL; start to first answer."""
    times = []
    s = Server("local", extra=["--segment-max-bytes", "1GiB", "--segment-max-age-ms", "3600000"])
    ctl(s, "topic", "create", "wal", "--partitions", "1")
    r = perf_produce(s, "wal", 1_000_000 // SCALE)
    mb = r["mb_per_sec"] * r["seconds"]
    for _ in range(RUNS):
        s.kill9()
        s.start()
        times.append(s.ready_seconds())
    hw = ctl(s, "topic", "describe", "wal").stdout
    s.kill9()
    assert str(1_000_000 // SCALE) in hw, hw
    rows.append((f"restart after kill -9 with {1_000_000 // SCALE:,} records ({mb:.0f} MB of values) in the WAL (local)",
                 f"{median(times):.2f} s to the first answer (runs: {', '.join(f'{t:.2f}' for t in times)})",
                 "≤ 10 s (ours)"))


def rebuild_phase(stopped, rows):
    """A node on an empty data dir rebuilding from the bucket (the prefix
    was released by the clean stop)."""
    times, segs = [], 0
    for _ in range(RUNS):
        s = Server("s3", data_dir=Path(tempfile.mkdtemp(dir=WORK)), prefix=stopped.prefix, extra=stopped.extra)
        times.append(s.ready_seconds())
        described = ctl(s, "topic", "describe", "one").stdout + ctl(s, "topic", "describe", "eight").stdout
        segs = sum(int(x) for x in re.findall(r"^\d+\s+\d+\s+\d+\s+(\d+)", described, re.M))
        s.stop()
    rows.append((f"rebuild from the bucket on an empty data dir (S3 test server, 9 partitions, {segs} segments)",
                 f"{median(times):.2f} s to the first answer (runs: {', '.join(f'{t:.2f}' for t in times)})",
                 "≤ 60 s (ours)"))


def peer_phase(rows):
    """Redis Streams on the same machine, as durable per acknowledgement as
    acks=wal (AOF, fsync before replying): XADD of one flights line, 8
    connections with 1,000 commands pipelined (our 8 requests of 1,000)."""
    if not shutil.which("redis-server") or not shutil.which("redis-benchmark"):
        rows.append(("peer: Redis Streams", "not run (redis-server not installed)", "—"))
        return
    value = FLIGHTS.read_text().splitlines()[0]
    port = 26379
    rates = []
    for _ in range(RUNS):
        d = Path(tempfile.mkdtemp(dir=WORK))
        redis = subprocess.Popen(["redis-server", "--port", str(port), "--dir", str(d), "--save", "",
                                  "--appendonly", "yes", "--appendfsync", "always"],
                                 stdout=subprocess.DEVNULL)
        time.sleep(0.5)
        out = subprocess.run(["redis-benchmark", "-p", str(port), "-n", str(2_000_000 // SCALE), "-c", "8",
                              "-P", "1000", "-q", "XADD", "bench", "*", "v", value],
                             capture_output=True, text=True).stdout
        redis.terminate()
        redis.wait()
        m = re.findall(r"([\d.]+) requests per second", out)
        rates.append(float(m[-1]) if m else float("nan"))
    rows.append(("peer: Redis 7 Streams, XADD with AOF fsync always, 8 connections x 1,000 pipelined (local disk)",
                 f"{median(rates):,.0f} rec/s (runs: {', '.join(f'{r:,.0f}' for r in rates)})",
                 "— (compare with produce, 1 partition, acks=wal, local)"))


def codec_rows(path, rows):
    text = Path(path).read_text()
    for m in re.finditer(r"^(\S+\.jsonl): (\d+) records, (\d+) value bytes.*?\nsize: segment (\d+) B = ([\d.]+)% saved; "
                         r"bare-value LZ4 (\d+) B = ([\d.]+)% saved; format cost ([\d.-]+) points", text, re.M | re.S):
        name, _, raw, seg, saved, lz4, lz4saved, cost = m.groups()
        rows.append((f"compression, {name}",
                     f"{int(raw) / int(seg):.2f}x ({saved}% saved) vs the LZ4 bound {int(raw) / int(lz4):.2f}x "
                     f"({lz4saved}% saved): {cost} points for offsets, timestamps and framing",
                     "within 5 points of bare LZ4 (ours)"))


# ------------------------------------------------------------------ plots

def throughput_series(samples):
    """Acknowledged records/s in 100 ms buckets of send time."""
    buckets = {}
    for line in samples.read_text().splitlines():
        at, _, n = line.split()
        b = int(float(at) // 100)
        buckets[b] = buckets.get(b, 0) + int(n)
    return [(b / 10, n * 10) for b, n in sorted(buckets.items())]


def nice_ticks(top):
    """0 and round steps (1, 2 or 5 times a power of ten) up to past `top`."""
    import math
    raw = top / 5 or 1
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    return [step * i for i in range(int(top / step) + 2)]


def label(v):
    for div, unit in ((1e6, "M"), (1e3, "k")):
        if abs(v) >= div:
            return f"{v / div:g}{unit}"
    return f"{v:g}"


def svg(path, title, xlabel, ylabel, series, logx=False, ymax=None):
    w, h, l, r, t, b = 720, 360, 80, 170, 40, 50
    xs = [x for pts in series.values() for x, _ in pts]
    ys = [y for pts in series.values() for _, y in pts]
    fx = (lambda v: __import__("math").log10(max(v, 1e-3))) if logx else (lambda v: v)
    x0, x1 = fx(min(xs)), fx(max(xs))
    yticks = nice_ticks(ymax or max(ys))
    y0, y1 = 0, ymax or yticks[-1]
    yticks = [v for v in yticks if v <= y1]
    px = lambda v: l + (fx(v) - x0) / ((x1 - x0) or 1) * (w - l - r)
    py = lambda v: h - b - (v - y0) / ((y1 - y0) or 1) * (h - t - b)
    colors = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"]
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">',
           f'<rect width="{w}" height="{h}" fill="white"/>',
           f'<text x="{w / 2}" y="22" text-anchor="middle" font-size="15">{title}</text>',
           f'<line x1="{l}" y1="{h - b}" x2="{w - r}" y2="{h - b}" stroke="black"/>',
           f'<line x1="{l}" y1="{t}" x2="{l}" y2="{h - b}" stroke="black"/>',
           f'<text x="{(l + w - r) / 2}" y="{h - 12}" text-anchor="middle">{xlabel}</text>',
           f'<text x="18" y="{(t + h - b) / 2}" text-anchor="middle" transform="rotate(-90 18 {(t + h - b) / 2})">{ylabel}</text>']
    for yv in yticks:
        out.append(f'<line x1="{l - 4}" y1="{py(yv):.1f}" x2="{w - r}" y2="{py(yv):.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{l - 6}" y="{py(yv) + 4:.1f}" text-anchor="end">{label(yv)}</text>')
    if logx:
        ticks = [m * 10 ** e for e in range(-2, 5) for m in (1, 2, 5) if min(xs) <= m * 10 ** e <= max(xs)]
    else:
        ticks = [v for v in nice_ticks(max(xs)) if min(xs) <= v <= max(xs)]
    for xv in ticks:
        out.append(f'<text x="{px(xv):.1f}" y="{h - b + 16}" text-anchor="middle">{label(xv)}</text>')
    for i, (name, pts) in enumerate(series.items()):
        c = colors[i % len(colors)]
        d = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in pts)
        out.append(f'<polyline fill="none" stroke="{c}" stroke-width="1.6" points="{d}"/>')
        out.append(f'<rect x="{w - r + 12}" y="{t + 18 * i}" width="12" height="3" fill="{c}"/>')
        out.append(f'<text x="{w - r + 30}" y="{t + 18 * i + 5}">{name}</text>')
    out.append("</svg>")
    Path(path).write_text("\n".join(out))


def cdf(sorted_ms):
    n = len(sorted_ms)
    step = max(1, n // 400)
    pts = [(sorted_ms[i], 100 * (i + 1) / n) for i in range(0, n, step)]
    return pts + [(sorted_ms[-1], 100.0)]


# ------------------------------------------------------------------ report

def machine():
    cpu = next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                if l.startswith("model name")), "?")
    mem = int(Path("/proc/meminfo").read_text().split()[1]) // 1024 // 1024
    return f"{os.cpu_count()} cores ({cpu}), {mem} GiB, shared and noisy; server, clients and the S3 test server on the same cores"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--null", required=True)
    ap.add_argument("--codec")
    ap.add_argument("--coverage", help="a file whose last TOTAL line has the line coverage")
    ap.add_argument("--kafka", help="scripts/bench-kafka.sh's output (its section between <!-- kafka --> lines)")
    ap.add_argument("--latency", help="scripts/bench-latency.sh's output, this build")
    ap.add_argument("--latency-before", help="scripts/bench-latency.sh's output, the build named by --before")
    ap.add_argument("--before", help="what the --latency-before build is (a commit)")
    ap.add_argument("--out", default=str(ROOT / "docs" / "BENCHMARKS.md"))
    a = ap.parse_args()
    rows, plots = [], {}
    started = time.time()
    try:
        for store in ["local", "s3"]:
            stopped = produce_phase(store, a.null, rows, plots)
            if store == "s3":
                rebuild_phase(stopped, rows)
        restart_phase(rows)
        peer_phase(rows)
        if a.codec:
            codec_rows(a.codec, rows)
    finally:
        shutil.rmtree(WORK, ignore_errors=True)
    docs = Path(a.out).parent
    for store in ["local", "s3"]:
        svg(docs / f"bench-latency-{store}.svg", f"Latency at half load, {store} store (CDF)", "ms (log scale)",
            "% of requests / records", {k: cdf(v) for k, v in plots[f"{store}-latency"].items()}, logx=True,
            ymax=100)
        svg(docs / f"bench-throughput-{store}.svg", f"Produce at the maximum rate for 10 s, {store} store",
            "seconds", "records/s acknowledged (100 ms buckets)",
            {"1 partition, acks=wal": plots[f"{store}-throughput"]})
    write_report(a, rows, time.time() - started)


def latency_section(a):
    """scripts/bench-latency.sh's tables and stage histograms, for this
    build and, when given, an earlier one measured in the same invocation."""
    if not a.latency:
        return []
    out = ["## Ack latency under offered load, beside the null server", "",
           "`scripts/bench-latency.sh` (run by `scripts/bench.sh`): the release server, local store, "
           "1 partition, 100 B pseudo-random values, batches of 1,000, 8 in flight, 64 MiB segments sealed "
           "at most 2 s after their first record; the null server and streamhoused alternate at each "
           "offered rate, 5 s a run, each real run after the previous runs' uploads have drained. "
           "The stage histograms are the server's own (`/metrics`) over its second 300K run.", ""]
    runs = [("This build", a.latency)]
    if a.latency_before:
        runs.insert(0, (f"Before (`{a.before or '?'}`), measured first in the same invocation",
                        a.latency_before))
    for title, path in runs:
        text = Path(path).read_text().rstrip()
        out += [f"### {title}", "", "```", text, "```", ""]
    return out


def write_report(a, rows, secs):
    lines = ["# Benchmarks", "",
             f"Written by `scripts/bench.sh` on {time.strftime('%Y-%m-%d')} in {secs / 60:.0f} minutes. "
             f"Machine: {machine()}.", "",
             "Each figure is the median of three runs in that invocation; p99 is the median of the three runs' p99. "
             "Records are the lines of `../shared/data/flights-200k.jsonl` (real JSON, ~45 B), batches of 1,000, "
             "8 requests in flight per producer. The null server (`benches/null_server.rs`: the same gRPC stack and "
             "proto, answering Produce without storing) is the baseline measured in the same run. "
             "Targets marked (ours) are not in an issue: they are what we hold ourselves to.", "",
             "| metric | measured | target |", "|---|---|---|"]
    lines += [f"| {m} | {v} | {t} |" for m, v, t in rows]
    lines += ["", "## Pictures", "",
              "![latency, local](bench-latency-local.svg)", "", "![latency, S3](bench-latency-s3.svg)", "",
              "![throughput, local](bench-throughput-local.svg)", "", "![throughput, S3](bench-throughput-s3.svg)", ""]
    if a.kafka:
        parts = Path(a.kafka).read_text().split("<!-- kafka -->")
        if len(parts) >= 3:
            lines += [parts[1].strip(), ""]
    lines += latency_section(a)
    if a.coverage:
        total = [l for l in Path(a.coverage).read_text().splitlines() if l.startswith("TOTAL")]
        if total:
            f = total[-1].split()
            lines += ["## Coverage", "",
                      f"Line coverage of `src/` by the whole test suite (`scripts/coverage.sh`, cargo-llvm-cov): "
                      f"**{f[9]}** ({int(f[7]) - int(f[8]):,} of {int(f[7]):,} lines; regions {f[3]}, functions {f[6]}).", ""]
    extra = Path(a.out).with_name("BENCHMARKS-notes.md")
    if extra.exists():
        lines += [extra.read_text()]
    Path(a.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
