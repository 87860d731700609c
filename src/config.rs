//! Engine configuration: every tunable in one place, with the defaults a
//! user gets and why.

use crate::object_store::RetryPolicy;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Holds `meta.sqlite`, `wal/` and, for the local store, `objects/`.
    pub data_dir: PathBuf,
    /// Seal the active segment once its records hold this many bytes
    /// (key + value + headers). 64 MiB: ~16 PUTs per GB ingested, and
    /// segments big enough that a consumer reads many 1 MiB blocks per
    /// footer, small enough to upload in well under a second.
    pub segment_max_bytes: u64,
    /// Seal the active segment this long after its first record, however
    /// small. 30 s bounds how long data lives only on local disk at low
    /// throughput while keeping idle partitions to ~2 PUTs a minute.
    pub segment_max_age: Duration,
    /// An `acks=uploaded` request makes the writer seal after this linger,
    /// so requests arriving together share one upload.
    pub uploaded_ack_linger: Duration,
    /// Bytes accepted but not yet uploaded, across all partitions, beyond
    /// which produce answers with backpressure (RESOURCE_EXHAUSTED). 1 GiB.
    pub max_backlog_bytes: u64,
    /// Block cache size (decoded blocks of sealed segments). 256 MiB.
    pub cache_bytes: u64,
    /// Reader pool threads. They block on object-store GETs, so more than
    /// cores; 8.
    pub reader_threads: usize,
    /// Largest key + value + headers of one record. 1 MiB.
    pub max_record_bytes: usize,
    /// Requests queued per partition writer before produce answers with
    /// backpressure.
    pub writer_queue: usize,
    /// How often retention runs.
    pub retention_interval: Duration,
    /// Retry policy for object-store calls.
    pub retry: RetryPolicy,
}

impl EngineConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        EngineConfig {
            data_dir: data_dir.into(),
            segment_max_bytes: 64 << 20,
            segment_max_age: Duration::from_secs(30),
            uploaded_ack_linger: Duration::from_millis(5),
            max_backlog_bytes: 1 << 30,
            cache_bytes: 256 << 20,
            reader_threads: 8,
            max_record_bytes: 1 << 20,
            writer_queue: 4096,
            retention_interval: Duration::from_secs(30),
            retry: RetryPolicy::default(),
        }
    }

    pub fn meta_path(&self) -> PathBuf {
        self.data_dir.join("meta.sqlite")
    }

    pub fn wal_dir(&self, topic: &str, partition: u32) -> PathBuf {
        self.data_dir
            .join("wal")
            .join(topic)
            .join(partition.to_string())
    }

    pub fn topic_wal_dir(&self, topic: &str) -> PathBuf {
        self.data_dir.join("wal").join(topic)
    }

    pub fn local_objects_dir(&self) -> PathBuf {
        self.data_dir.join("objects")
    }
}

/// Object keys of segments:
/// `topics/{topic}/{incarnation}/{partition}/{base:020}.seg`. Name order is
/// offset order; one topic's objects share a prefix; the incarnation (the
/// topic's creation time in ms) keeps a re-created topic from reusing, and
/// so colliding in caches with, the keys of a deleted one.
pub fn segment_key(topic: &str, incarnation: i64, partition: u32, base_offset: i64) -> String {
    format!("topics/{topic}/{incarnation}/{partition}/{base_offset:020}.seg")
}

pub fn topic_prefix(topic: &str) -> String {
    format!("topics/{topic}/")
}

/// Parses a segment key back into (topic, partition, base offset).
pub fn parse_segment_key(key: &str) -> Option<(&str, u32, i64)> {
    let rest = key.strip_prefix("topics/")?;
    let mut parts = rest.split('/');
    let topic = parts.next()?;
    let _incarnation: i64 = parts.next()?.parse().ok()?;
    let partition = parts.next()?.parse().ok()?;
    let base = parts.next()?.strip_suffix(".seg")?.parse().ok()?;
    parts.next().is_none().then_some((topic, partition, base))
}

/// Topic names: 1–249 characters of `[A-Za-z0-9._-]`, not `.` or `..`
/// (they become object keys and directory names).
pub fn validate_topic_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 249 {
        return Err(format!(
            "topic name must be 1-249 characters, got {}",
            name.len()
        ));
    }
    if name == "." || name == ".." {
        return Err("topic name cannot be '.' or '..'".to_string());
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "topic name {name:?} contains {c:?}; allowed are A-Z a-z 0-9 . _ -"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_keys_round_trip_and_sort_by_offset() {
        let k = segment_key("orders.v1", 1700, 3, 42);
        assert_eq!(k, "topics/orders.v1/1700/3/00000000000000000042.seg");
        assert_eq!(parse_segment_key(&k), Some(("orders.v1", 3, 42)));
        assert!(segment_key("t", 1, 0, 9) < segment_key("t", 1, 0, 10));
        assert_eq!(parse_segment_key("topics/t/1/0/x.seg"), None);
        assert_eq!(parse_segment_key("other/t/0/1.seg"), None);
    }

    #[test]
    fn topic_names() {
        for good in ["a", "orders", "a.b_c-D9", &"x".repeat(249)] {
            assert!(validate_topic_name(good).is_ok(), "{good}");
        }
        for bad in ["", ".", "..", "a/b", "a b", "ü", &"x".repeat(250), "a\0"] {
            assert!(validate_topic_name(bad).is_err(), "{bad:?}");
        }
    }
}
