#!/usr/bin/env python3
"""Per-stage latency table from two scrapes of streamhoused's /metrics.

    scripts/stage-table.py BEFORE AFTER

Takes every `*_seconds` histogram, subtracts BEFORE from AFTER (the run in
between), and prints count, mean, p50 and p99 per histogram. Percentiles are
interpolated linearly inside a bucket (as Prometheus' histogram_quantile),
so they are estimates within the bucket bounds (0.1, 0.25, 0.5, 0.75, 1,
1.5, 2, 3, 4, 5, 7.5, 10, 15, 20, 25, 50 ms ...).
"""
import re
import sys


def parse(path):
    hist = {}
    for line in open(path):
        m = re.match(r'(\w+)_seconds_bucket\{le="([^"]+)"\} (\d+)', line)
        if m:
            bound = float("inf") if m.group(2) == "+Inf" else float(m.group(2))
            hist.setdefault(m.group(1), {"b": [], "sum": 0.0})["b"].append((bound, int(m.group(3))))
            continue
        m = re.match(r"(\w+)_seconds_sum ([0-9.e+-]+)", line)
        if m:
            hist.setdefault(m.group(1), {"b": [], "sum": 0.0})["sum"] = float(m.group(2))
    return hist


def quantile(buckets, q):
    total = buckets[-1][1]
    if total == 0:
        return 0.0
    rank = q * total
    lower_bound, lower_count = 0.0, 0
    for bound, count in buckets:
        if count >= rank:
            if bound == float("inf"):
                return lower_bound
            width = count - lower_count
            frac = (rank - lower_count) / width if width else 1.0
            return lower_bound + (bound - lower_bound) * frac
        lower_bound, lower_count = bound, count
    return lower_bound


def main():
    before, after = parse(sys.argv[1]), parse(sys.argv[2])
    print(f"   {'histogram (ms)':<48} {'count':>8} {'mean':>8} {'p50':>8} {'p99':>8}")
    for name, h in after.items():
        b0 = dict(before.get(name, {"b": []})["b"])
        delta = [(bound, count - b0.get(bound, 0)) for bound, count in h["b"]]
        n = delta[-1][1] if delta else 0
        if n == 0:
            continue
        mean = (h["sum"] - before.get(name, {"sum": 0.0})["sum"]) / n * 1e3
        short = name.replace("streamhouse_", "")
        print(
            f"   {short:<48} {n:>8} {mean:>8.3f} {quantile(delta, 0.5) * 1e3:>8.3f} {quantile(delta, 0.99) * 1e3:>8.3f}"
        )


main()
