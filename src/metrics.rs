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
            /// (name, value) pairs, for exposition.
            pub fn pairs(&self) -> Vec<(&'static str, u64)> {
                vec![$((stringify!($name), self.$name),)*]
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
    puts: "Segment objects uploaded.",
    put_bytes: "Bytes of segment objects uploaded.",
    gets: "Ranged GETs (footers and blocks).",
    get_bytes: "Bytes fetched by ranged GETs.",
    upload_retries: "Upload or commit attempts that failed and were retried by the uploader.",
    cache_hits: "Block-cache hits.",
    cache_misses: "Block-cache misses.",
    prefetches: "Blocks fetched ahead by sequential prefetch.",
    backpressure_rejections: "Produce requests refused with backpressure.",
    segments_sealed: "Segments sealed by partition writers.",
    segments_dropped: "Segments dropped by retention.",
}

impl Metrics {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}
