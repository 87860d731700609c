//! Upload group commit: `acks=uploaded` requests that arrive while the
//! partition's previous segment is uploading share the next segment, so a
//! slow store means bigger objects, not a queue of one small object per
//! linger.

mod common;

use common::engine::{config, topic};
use std::sync::Arc;
use std::time::{Duration, Instant};
use streamhouse::object_store::{Faults, MemoryStore};
use streamhouse::{Acks, Engine, Record};

#[test]
fn uploaded_acks_that_arrive_during_an_upload_share_the_next_segment() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(MemoryStore::new());
    let mut c = config(dir.path());
    c.segment_max_age = Duration::from_secs(3600); // only the linger seals
    let engine = Engine::open(c, store.clone()).unwrap();
    engine.create_topic(&topic("t", 1)).unwrap();
    // Every store call now takes 50 ms: an upload (a PUT, the owner check)
    // takes at least 100 ms, twenty lingers.
    store.set_faults(Faults {
        latency: Duration::from_millis(50),
        ..Faults::default()
    });
    // A request every 2 ms for 0.6 s, each waiting for its upload.
    let started = Instant::now();
    let mut pending = Vec::new();
    for i in 0..300 {
        let r = Record {
            offset: 0,
            timestamp_ms: 0,
            key: None,
            value: format!("r{i}").into_bytes(),
            headers: vec![],
        };
        pending.push(engine.produce("t", 0, vec![r], Acks::Uploaded).unwrap());
        std::thread::sleep(Duration::from_millis(2));
    }
    for rx in pending {
        futures::executor::block_on(rx).unwrap().unwrap();
    }
    let elapsed = started.elapsed();
    let sealed = engine.metrics().segments_sealed;
    // One segment per upload cycle (>= 100 ms), not one per 5 ms linger.
    let cycles = elapsed.as_millis() as u64 / 100 + 1;
    eprintln!("300 requests in {elapsed:?}: {sealed} segments (bound {cycles})");
    assert!(sealed <= cycles, "{sealed} segments in {elapsed:?}");
    assert!(sealed < 30, "requests shared segments");
    store.set_faults(Faults::default());
    engine.shutdown(Duration::from_secs(5));
}
