//! Helpers for tests that drive the engine as a library.

use std::time::{Duration, Instant};
use streamhouse::{Engine, EngineConfig, FetchRequest, Record, TopicSpec};

/// Settings for tests: young segments seal quickly so uploads drain fast,
/// few reader threads, retries that give up quickly.
pub fn config(dir: &std::path::Path) -> EngineConfig {
    let mut c = EngineConfig::new(dir);
    c.segment_max_age = Duration::from_millis(100);
    c.reader_threads = 4;
    c.retention_interval = Duration::from_secs(3600);
    c.retry.base_delay = Duration::from_millis(1);
    c.retry.max_delay = Duration::from_millis(10);
    c.retry.max_attempts = 3;
    c
}

pub fn topic(name: &str, partitions: u32) -> TopicSpec {
    TopicSpec {
        name: name.to_string(),
        partitions,
        retention_ms: 0,
        retention_bytes: 0,
    }
}

/// Every record of a partition from `from` to the high watermark, checking
/// that offsets are contiguous.
pub fn fetch_all(engine: &Engine, topic: &str, partition: u32, from: i64) -> Vec<Record> {
    let mut out = Vec::new();
    let mut next = from;
    loop {
        let r = engine
            .fetch_sync(
                topic,
                partition,
                FetchRequest {
                    offset: next,
                    max_records: 333,
                    max_bytes: 0,
                    max_wait: Duration::ZERO,
                },
            )
            .unwrap();
        if r.records.is_empty() {
            assert_eq!(next, r.high_watermark);
            return out;
        }
        for (i, rec) in r.records.iter().enumerate() {
            assert_eq!(
                rec.offset,
                next + i as i64,
                "contiguous offsets in {topic}/{partition}"
            );
        }
        next = r.next_offset;
        out.extend(r.records);
    }
}

/// Polls (in the test only) until uploads have drained.
pub fn wait_uploaded(engine: &Engine) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while engine.backlog_bytes() > 0 {
        assert!(
            Instant::now() < deadline,
            "uploads did not drain: {} bytes left",
            engine.backlog_bytes()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Segment objects in a store (manifests and tombstones not counted).
pub fn segment_objects(store: &dyn streamhouse::object_store::ObjectStore) -> Vec<String> {
    store
        .list("topics/")
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .filter(|k| k.ends_with(".seg"))
        .collect()
}
