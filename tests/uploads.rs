//! Uploads of a partition: `acks=uploaded` requests that arrive while its
//! upload slots are all taken share the next segment (group commit), so a
//! slow store means bigger objects, not a queue of one small object per
//! linger; several PUTs of a partition run at once and still commit in
//! offset order, whatever order they finish in.

mod common;

use common::engine::{config, fetch_all, topic};
use common::store::HookedStore;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use streamhouse::object_store::{Faults, MemoryStore, ObjectStore};
use streamhouse::{Acks, Engine, Record};

#[test]
fn uploaded_acks_that_arrive_during_an_upload_share_the_next_segment() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(MemoryStore::new());
    let mut c = config(dir.path());
    c.segment_max_age = Duration::from_secs(3600); // only the linger seals
    let slots = c.uploads_per_partition as u64;
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
            value: Some(format!("r{i}").into_bytes()),
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
    // One segment per upload slot per upload cycle (>= 100 ms), not one
    // per 5 ms linger.
    let cycles = slots * (elapsed.as_millis() as u64 / 100 + 1);
    eprintln!("300 requests in {elapsed:?}: {sealed} segments (bound {cycles})");
    assert!(sealed <= cycles, "{sealed} segments in {elapsed:?}");
    assert!(sealed < 30, "requests shared segments");
    store.set_faults(Faults::default());
    engine.shutdown(Duration::from_secs(5));
}

fn record(i: usize) -> Record {
    Record {
        offset: 0,
        timestamp_ms: 0,
        key: None,
        value: Some(format!("r{i}").into_bytes()),
        headers: vec![],
    }
}

#[test]
fn parallel_puts_that_finish_out_of_order_commit_in_offset_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(MemoryStore::new());
    let mut c = config(dir.path());
    c.uploads_per_partition = 4;
    c.retry.max_attempts = 1_000; // reads retry through the injected failures
    let engine = Engine::open(c.clone(), store.clone()).unwrap();
    engine.create_topic(&topic("t", 1)).unwrap();
    // A third of the calls fail and are retried with backoff: PUTs finish
    // in a shuffled order.
    store.set_faults(Faults {
        fail_fraction: 0.3,
        latency: Duration::from_millis(2),
        ..Faults::default()
    });
    let mut pending = Vec::new();
    for i in 0..200 {
        pending.push(
            engine
                .produce("t", 0, vec![record(i)], Acks::Uploaded)
                .unwrap(),
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    for (i, rx) in pending.into_iter().enumerate() {
        let ack = futures::executor::block_on(rx).unwrap().unwrap();
        assert_eq!(ack.base_offset, i as i64);
    }
    let sealed = engine.metrics().segments_sealed;
    assert!(sealed >= 4, "several segments ({sealed}) were in flight");
    store.set_faults(Faults::default());
    engine.shutdown(Duration::from_secs(5));
    drop(engine);
    // Every segment committed, in order: a restart finds nothing to upload
    // again, and reads every record from the store.
    let engine = Engine::open(c, store).unwrap();
    let got: Vec<Vec<u8>> = fetch_all(&engine, "t", 0, 0)
        .into_iter()
        .map(|r| r.value.unwrap())
        .collect();
    let want: Vec<Vec<u8>> = (0..200).map(|i| record(i).value.unwrap()).collect();
    assert_eq!(got, want);
    let info = engine.describe_topic("t").unwrap();
    assert_eq!(info.partition_info[0].segment_count as u64, sealed);
    engine.shutdown(Duration::from_secs(5));
}

#[test]
fn a_later_segment_in_the_bucket_before_an_earlier_one_loses_nothing_at_restart() {
    let dir = tempfile::tempdir().unwrap();
    // PUTs of the first segment's object (base offset 0) wait while held.
    let held = Arc::new(AtomicBool::new(true));
    let store = Arc::new(HookedStore::new({
        let held = Arc::clone(&held);
        move |key| {
            let t = Instant::now();
            while key.contains("/00000000000000000000-")
                && held.load(Ordering::SeqCst)
                && t.elapsed() < Duration::from_secs(10)
            {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }));
    let mut c = config(dir.path());
    c.uploads_per_partition = 2;
    c.segment_max_bytes = 64; // every produce below seals a segment
    c.segment_max_age = Duration::from_secs(3600);
    let engine = Engine::open(c.clone(), store.clone()).unwrap();
    engine.create_topic(&topic("t", 1)).unwrap();
    let batch = |from: usize| (from..from + 4).map(record).collect::<Vec<_>>();
    engine.produce_sync("t", 0, batch(0), Acks::Wal).unwrap();
    engine.produce_sync("t", 0, batch(4), Acks::Wal).unwrap();
    // The second segment's PUT finishes; the first one's hangs.
    let second = Instant::now();
    while !store
        .inner
        .list("")
        .unwrap()
        .iter()
        .any(|o| o.key.contains("/00000000000000000004-"))
    {
        assert!(
            second.elapsed() < Duration::from_secs(5),
            "second PUT never landed"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    engine.shutdown(Duration::from_millis(100));
    drop(engine);
    // The bucket has offsets 4.. but not 0..4, which are in the WAL: the
    // start must not take the gap for retention's doing. (The held PUT
    // stays held; the new engine uses the objects without the hook.)
    let keys: Vec<String> = store
        .inner
        .list("")
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert!(
        !keys.iter().any(|k| k.contains("/00000000000000000000-")),
        "{keys:?}"
    );
    let engine = Engine::open(c, Arc::new(store.inner.clone())).unwrap();
    let values: Vec<Vec<u8>> = fetch_all(&engine, "t", 0, 0)
        .into_iter()
        .map(|r| r.value.unwrap())
        .collect();
    assert_eq!(
        values,
        (0..8).map(|i| record(i).value.unwrap()).collect::<Vec<_>>()
    );
    engine.shutdown(Duration::from_secs(5));
    held.store(false, Ordering::SeqCst);
}

#[test]
fn a_panic_in_an_upload_stops_that_partition_and_answers_its_waiters() {
    let dir = tempfile::tempdir().unwrap();
    // The first PUT of a segment of topic "bad" panics.
    let panicked = Arc::new(AtomicBool::new(false));
    let store = Arc::new(HookedStore::new({
        let panicked = Arc::clone(&panicked);
        move |key| {
            if key.contains("topics/bad/")
                && key.ends_with(".seg")
                && !panicked.swap(true, Ordering::SeqCst)
            {
                panic!("injected upload panic");
            }
        }
    }));
    let engine = Engine::open(config(dir.path()), store).unwrap();
    engine.create_topic(&topic("bad", 1)).unwrap();
    engine.create_topic(&topic("good", 1)).unwrap();
    let err = engine
        .produce_sync("bad", 0, vec![record(0)], Acks::Uploaded)
        .unwrap_err();
    assert!(matches!(err, streamhouse::Error::Unavailable(_)), "{err:?}");
    assert!(panicked.load(Ordering::SeqCst));
    // The pool serves the other topic.
    engine
        .produce_sync("good", 0, vec![record(1)], Acks::Uploaded)
        .unwrap();
    engine.shutdown(Duration::from_secs(5));
}
