//! Engine counters, cheap enough to bump on every request; a stats endpoint
//! or `/metrics` reads them through [`Metrics::snapshot`].

use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    ($($name:ident: $doc:literal),* $(,)?) => {
        /// Monotonic counters (relaxed atomics).
        #[derive(Debug, Default)]
        pub struct Metrics {
            $(#[doc = $doc] pub $name: AtomicU64,)*
        }

        /// A copy of every counter at one moment.
        #[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
        pub struct MetricsSnapshot {
            $(#[doc = $doc] pub $name: u64,)*
        }

        impl Metrics {
            pub fn snapshot(&self) -> MetricsSnapshot {
                MetricsSnapshot {
                    $($name: self.$name.load(Ordering::Relaxed),)*
                }
            }
        }

        impl MetricsSnapshot {
            /// (name, help, value) for exposition.
            pub fn pairs(&self) -> Vec<(&'static str, &'static str, u64)> {
                vec![$((stringify!($name), $doc, self.$name),)*]
            }
        }
    };
}

counters! {
    records_in: "Records appended (acknowledged or not yet).",
    bytes_in: "Key + value + header bytes appended.",
    records_out: "Records returned by fetches.",
    bytes_out: "Key + value + header bytes returned by fetches.",
    wal_fsyncs: "WAL fsyncs (one per group commit).",
    wal_bytes: "Bytes written to WAL files.",
    puts: "Objects uploaded: segments and their producer tables.",
    put_bytes: "Bytes of segment objects uploaded.",
    gets: "Ranged GETs (footers and blocks).",
    get_bytes: "Bytes fetched by ranged GETs.",
    upload_retries: "Upload or commit attempts that failed and were retried by the uploader.",
    store_retries: "Object-store calls (reads, lists, deletes) retried after a transient error.",
    cache_hits: "Block-cache hits.",
    cache_misses: "Block-cache misses.",
    prefetches: "Blocks fetched ahead by sequential prefetch.",
    backpressure_rejections: "Produce requests refused with backpressure.",
    segments_sealed: "Segments sealed by partition writers.",
    segments_dropped: "Segments dropped by retention.",
    duplicate_batches: "Idempotent batches sent again and answered with their original offsets.",
    wal_disk_full: "Produce requests refused (RESOURCE_EXHAUSTED) because the WAL's disk was full.",
    etcd_commits: "Cluster mode: segment commits made in etcd.",
    etcd_commit_batches: "Cluster mode: batches of commits sent to etcd (one transaction each unless one of its partitions was fenced).",
}

impl Metrics {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// Upper bounds (seconds) of the latency histogram buckets: fine between
/// 0.1 and 25 ms, where the latency goals are.
pub const LATENCY_BUCKETS: [f64; 21] = [
    0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.003, 0.004, 0.005, 0.0075, 0.01,
    0.015, 0.02, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// A latency histogram with Prometheus-style cumulative buckets.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, d: std::time::Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = LATENCY_BUCKETS.iter().position(|&b| secs <= b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }

    /// The exposition lines for `name` (a `_seconds` histogram).
    pub fn render(&self, name: &str, help: &str) -> String {
        let mut s = format!("# HELP {name} {help}\n# TYPE {name} histogram\n");
        let mut cumulative = 0;
        for (b, c) in LATENCY_BUCKETS.iter().zip(&self.buckets) {
            cumulative += c.load(Ordering::Relaxed);
            s.push_str(&format!("{name}_bucket{{le=\"{b}\"}} {cumulative}\n"));
        }
        let count = self.count.load(Ordering::Relaxed);
        s.push_str(&format!("{name}_bucket{{le=\"+Inf\"}} {count}\n"));
        s.push_str(&format!(
            "{name}_sum {}\n{name}_count {count}\n",
            self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6
        ));
        s
    }
}

/// Where the time of a produce and of a subscriber's wake-up goes, stage
/// by stage (issue: latency under load). Each is a histogram in
/// `/metrics`; `scripts/bench-grpc.sh` prints them for its runs.
#[derive(Debug, Default)]
pub struct Stages {
    /// A produce request accepted by the engine → its partition writer
    /// takes it (queueing behind the group being written).
    pub produce_queue: Histogram,
    /// One group commit's WAL append (write calls).
    pub wal_write: Histogram,
    /// One group commit's fsync.
    pub wal_fsync: Histogram,
    /// A seal in the writer thread (sync, the next WAL file created and
    /// its directory fsynced): requests queue behind it.
    pub seal: Histogram,
    /// A sealed segment's encoding, in the uploader.
    pub upload_encode: Histogram,
    /// Its PUTs (the producer table and the segment), retries included.
    pub upload_put: Histogram,
    /// The owner check and the metadata commit after the PUTs.
    pub upload_commit: Histogram,
    /// A produce request accepted → acknowledged by the writer (acks=wal
    /// and none; the handler then sends the reply).
    pub produce_ack: Histogram,
    /// A fetch parked in a long poll, woken by an append → its records
    /// ready to send (reader-pool queue and the read of the tail).
    pub fetch_wake: Histogram,
}

impl Stages {
    pub fn render(&self) -> String {
        [
            (
                &self.produce_queue,
                "produce_queue",
                "Produce accepted by the engine to taken by the partition writer.",
            ),
            (
                &self.wal_write,
                "wal_write",
                "One group commit's WAL write.",
            ),
            (
                &self.wal_fsync,
                "wal_fsync",
                "One group commit's WAL fsync.",
            ),
            (
                &self.seal,
                "seal",
                "A segment seal in the writer thread (the next WAL file created).",
            ),
            (
                &self.upload_encode,
                "upload_encode",
                "A sealed segment's encoding in the uploader.",
            ),
            (
                &self.upload_put,
                "upload_put",
                "A sealed segment's PUTs (its producer table and the segment), retries included.",
            ),
            (
                &self.upload_commit,
                "upload_commit",
                "The owner check and metadata commit after a segment's PUTs.",
            ),
            (
                &self.produce_ack,
                "produce_ack",
                "Produce accepted by the engine to acknowledged by the writer (acks=wal/none).",
            ),
            (
                &self.fetch_wake,
                "fetch_wake",
                "A long-polling fetch woken by an append to its records ready.",
            ),
        ]
        .iter()
        .map(|(h, name, help)| h.render(&format!("streamhouse_stage_{name}_seconds"), help))
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(50));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(10));
        let text = h.render("x_seconds", "test");
        assert!(
            text.contains("x_seconds_bucket{le=\"0.0001\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("x_seconds_bucket{le=\"0.005\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("x_seconds_bucket{le=\"5\"} 2\n"), "{text}");
        assert!(text.contains("x_seconds_bucket{le=\"+Inf\"} 3\n"), "{text}");
        assert!(text.contains("x_seconds_count 3\n"));
    }
}
