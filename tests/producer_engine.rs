//! Idempotent producers through the engine as a library: an id survives a
//! restart before it has written anything; a producer idle for longer than
//! the expiry is forgotten (its id answers NOT_FOUND), in the registry and
//! in the partition's table, across a restart too; a segment is never in
//! the bucket without its producer table, and a segment uploaded but not
//! committed before a crash is adopted with it; an `acks=uploaded` retry
//! of a committed batch leaves the writer idle.

mod common;

use common::engine::{config, topic};
use common::store::HookedStore;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;
use streamhouse::engine::ProducerBatch;
use streamhouse::object_store::{MemoryStore, ObjectStore};
use streamhouse::{Acks, Engine, EngineConfig, Error, Record};

fn records(n: usize) -> Vec<Record> {
    (0..n)
        .map(|i| Record {
            offset: 0,
            timestamp_ms: 0,
            key: None,
            value: Some(format!("v{i}").into_bytes()),
            headers: vec![],
        })
        .collect()
}

fn send(engine: &Engine, id: (u64, u32), seq: i64, n: usize) -> Result<(i64, bool), Error> {
    send_with(engine, id, seq, n, Acks::Wal)
}

fn send_with(
    engine: &Engine,
    id: (u64, u32),
    seq: i64,
    n: usize,
    acks: Acks,
) -> Result<(i64, bool), Error> {
    send_to(engine, "t", id, seq, n, acks)
}

fn send_to(
    engine: &Engine,
    topic: &str,
    id: (u64, u32),
    seq: i64,
    n: usize,
    acks: Acks,
) -> Result<(i64, bool), Error> {
    let b = ProducerBatch {
        producer_id: id.0,
        epoch: id.1,
        first_sequence: seq,
    };
    let rx = engine.produce_idempotent(topic, 0, records(n), acks, b)?;
    let ack = futures::executor::block_on(rx).expect("answered")?;
    Ok((ack.base_offset, ack.duplicate))
}

fn short_expiry(dir: &std::path::Path) -> EngineConfig {
    let mut c = config(dir);
    c.producer_expiry = Duration::from_millis(1_000);
    c.retention_interval = Duration::from_millis(50);
    c.segment_max_age = Duration::from_millis(50);
    c
}

#[test]
fn an_id_is_known_after_a_restart_before_it_writes() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(MemoryStore::new());
    let engine = Engine::open(config(dir.path()), store.clone()).unwrap();
    engine.create_topic(&topic("t", 1)).unwrap();
    let id = engine.init_producer("").unwrap();
    engine.shutdown(Duration::from_secs(5));
    drop(engine);
    let engine = Engine::open(config(dir.path()), store).unwrap();
    assert_eq!(send(&engine, id, 0, 2).unwrap(), (0, false));
    assert_eq!(send(&engine, id, 0, 2).unwrap(), (0, true));
    engine.shutdown(Duration::from_secs(5));
}

#[test]
fn an_idle_producer_expires_and_its_id_answers_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(MemoryStore::new());
    let engine = Engine::open(short_expiry(dir.path()), store.clone()).unwrap();
    engine.create_topic(&topic("t", 1)).unwrap();
    let idle = engine.init_producer("").unwrap();
    let busy = engine.init_producer("").unwrap();
    assert_eq!(send(&engine, idle, 0, 3).unwrap(), (0, false));
    // `busy` keeps writing (and sealing segments) while `idle` does not.
    let mut seq = 0;
    for _ in 0..25 {
        std::thread::sleep(Duration::from_millis(60));
        send(&engine, busy, seq, 1).unwrap();
        seq += 1;
    }
    let err = send(&engine, idle, 0, 3).unwrap_err();
    assert!(
        matches!(&err, Error::NotFound(m) if m.contains("unknown producer id")),
        "{err:?}"
    );
    assert!(!send(&engine, busy, seq, 1).unwrap().1, "a new batch");
    engine.shutdown(Duration::from_secs(5));
    drop(engine);
    // Gone after a restart too (its metadata row and its partition entry
    // expired); the active producer is still known.
    let engine = Engine::open(short_expiry(dir.path()), store).unwrap();
    assert!(matches!(send(&engine, idle, 3, 1), Err(Error::NotFound(_))));
    assert!(send(&engine, busy, seq, 1).unwrap().1, "a retry of it");
    engine.shutdown(Duration::from_secs(5));
}

#[test]
fn named_producers_expire_too_and_long_names_fit_a_local_store() {
    let dir = tempfile::tempdir().unwrap();
    let objects = tempfile::tempdir().unwrap();
    // A local directory store: a 255-byte name used to fail with "File
    // name too long" there.
    let store = Arc::new(
        streamhouse::object_store::LocalFsStore::open(objects.path().to_path_buf()).unwrap(),
    );
    let engine = Engine::open(short_expiry(dir.path()), store.clone()).unwrap();
    engine.create_topic(&topic("t", 1)).unwrap();
    let long = "n".repeat(255);
    let names: Vec<String> = (0..20)
        .map(|i| format!("job-{i}"))
        .chain([long.clone()])
        .collect();
    let first: Vec<(u64, u32)> = names
        .iter()
        .map(|n| engine.init_producer(n).unwrap())
        .collect();
    // A name keeps its id while it is in use: a second InitProducer bumps
    // the epoch.
    let again = engine.init_producer(&long).unwrap();
    assert_eq!((again.0, again.1), (first[20].0, first[20].1 + 1));
    let named_objects = || {
        store
            .list("producers/names/")
            .unwrap()
            .into_iter()
            .filter(|o| !o.key.ends_with('/'))
            .count()
    };
    assert_eq!(named_objects(), 21);
    // Idle past the expiry: the objects go, and a name starts over.
    std::thread::sleep(Duration::from_millis(2_500));
    assert_eq!(
        named_objects(),
        0,
        "idle named producers left their objects"
    );
    let fresh = engine.init_producer(&long).unwrap();
    assert_eq!(fresh.1, 0, "a new epoch 0 for an expired name");
    assert_ne!(fresh.0, first[20].0, "and a new id");
    assert!(matches!(
        send(&engine, again, 0, 1),
        Err(Error::NotFound(_))
    ));
    assert_eq!(send(&engine, fresh, 0, 1).unwrap(), (0, false));
    engine.shutdown(Duration::from_secs(5));
}

#[test]
fn a_segment_is_never_in_the_bucket_before_its_producer_table() {
    let dir = tempfile::tempdir().unwrap();
    let puts = Arc::new(Mutex::new(Vec::new()));
    let store = Arc::new(HookedStore::new({
        let puts = Arc::clone(&puts);
        move |key| puts.lock().unwrap().push(key.to_string())
    }));
    let engine = Engine::open(config(dir.path()), store.clone()).unwrap();
    engine.create_topic(&topic("t", 1)).unwrap();
    let id = engine.init_producer("").unwrap();
    for i in 0..3 {
        send_with(&engine, id, i * 2, 2, Acks::Uploaded).unwrap();
    }
    engine.shutdown(Duration::from_secs(5));
    let puts = puts.lock().unwrap().clone();
    let segments: Vec<&String> = puts.iter().filter(|k| k.ends_with(".seg")).collect();
    assert!(segments.len() >= 3, "{puts:?}");
    for seg in segments {
        let table = seg.replace(".seg", ".producers");
        let (t, s) = (
            puts.iter().position(|k| *k == table),
            puts.iter().position(|k| k == seg),
        );
        assert!(t.is_some() && t < s, "{table} before {seg}: {puts:?}");
    }
}

/// Copies a stopped engine's data directory (a disk image at that moment).
fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

#[test]
fn a_segment_uploaded_but_not_committed_before_a_crash_is_adopted_with_its_table() {
    let dir = tempfile::tempdir().unwrap();
    let image = tempfile::tempdir().unwrap();
    let store = Arc::new(MemoryStore::new());
    let slow_seal = |d: &std::path::Path| {
        let mut c = config(d);
        c.segment_max_age = Duration::from_secs(3600);
        c
    };
    // The batch is in the WAL only; the disk as it is now is kept.
    let engine = Engine::open(slow_seal(dir.path()), store.clone()).unwrap();
    engine.create_topic(&topic("t", 1)).unwrap();
    let id = engine.init_producer("").unwrap();
    assert_eq!(send(&engine, id, 0, 4).unwrap(), (0, false));
    engine.shutdown(Duration::from_secs(5));
    drop(engine);
    copy_dir(dir.path(), image.path());
    // The segment and its table go up and are committed...
    let engine = Engine::open(config(dir.path()), store.clone()).unwrap();
    assert_eq!(
        send_with(&engine, id, 0, 4, Acks::Uploaded).unwrap(),
        (0, true)
    );
    engine.shutdown(Duration::from_secs(5));
    drop(engine);
    // ... but the disk comes back as it was before the commit (a crash
    // between the upload and the metadata commit): the start adopts the
    // bucket's segment, and its table, so the WAL's copy is not needed.
    let engine = Engine::open(config(image.path()), store).unwrap();
    assert_eq!(
        send(&engine, id, 0, 4).unwrap(),
        (0, true),
        "still a duplicate"
    );
    assert_eq!(send(&engine, id, 4, 1).unwrap(), (4, false));
    engine.shutdown(Duration::from_secs(5));
}

/// CPU time used so far by this process's threads named `name` (tests of
/// one binary run in parallel, so the whole process's time would not do).
fn thread_cpu(name: &str) -> Duration {
    let mut ticks = 0;
    for task in std::fs::read_dir("/proc/self/task").unwrap() {
        let Ok(stat) = std::fs::read_to_string(task.unwrap().path().join("stat")) else {
            continue; // the thread ended
        };
        let (comm, rest) = stat.split_once(") ").unwrap();
        if comm.ends_with(&format!("({name}")) {
            let f: Vec<&str> = rest.split(' ').collect();
            ticks += f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
        }
    }
    Duration::from_millis(ticks * 10) // USER_HZ = 100 on Linux
}

#[test]
fn an_uploaded_retry_of_a_committed_batch_leaves_the_writer_idle() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(config(dir.path()), Arc::new(MemoryStore::new())).unwrap();
    engine.create_topic(&topic("idle", 1)).unwrap();
    let id = engine.init_producer("").unwrap();
    let up = Acks::Uploaded;
    assert_eq!(send_to(&engine, "idle", id, 0, 3, up).unwrap(), (0, false));
    // Answered at once: its offsets are committed, nothing is waiting.
    assert_eq!(send_to(&engine, "idle", id, 0, 3, up).unwrap(), (0, true));
    let before = thread_cpu("writer-idle/0");
    std::thread::sleep(Duration::from_millis(500));
    let used = thread_cpu("writer-idle/0") - before;
    // A writer waking for a seal it cannot make burns a core (~500 ms).
    assert!(
        used < Duration::from_millis(100),
        "{used:?} of CPU while idle"
    );
    engine.shutdown(Duration::from_secs(5));
}

#[test]
fn init_producer_answers_through_a_store_outage_while_the_ids_claimed_ahead_last() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(HookedStore::new(|_| {}));
    let mut c = config(dir.path());
    c.retry = streamhouse::object_store::RetryPolicy {
        max_attempts: 2,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(1),
        max_elapsed: Duration::from_millis(50),
    };
    let engine = Engine::open(c, store.clone()).unwrap();
    // Half a block in, the next block is claimed in the background.
    let mut last = 0;
    for _ in 0..600 {
        last = engine.init_producer("").unwrap().0;
    }
    let claimed =
        |store: &HookedStore| -> usize { store.inner.list("producers/ids/").unwrap().len() };
    // The next block is claimed, and the older claim then replaced (its
    // key deleted a moment after the new one is written), not kept.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let only_the_next_block = |store: &HookedStore| {
        let keys = store.inner.list("producers/ids/").unwrap();
        keys.len() == 1 && keys[0].key.ends_with("2001")
    };
    while !only_the_next_block(&store) {
        assert!(
            std::time::Instant::now() < deadline,
            "the next block was never claimed, or the older claim kept: {} claims",
            claimed(&store)
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // The store goes away: ids go on from the block claimed ahead, past the
    // first block's end, and never twice.
    store
        .refuse_puts
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let mut seen = std::collections::HashSet::new();
    for _ in 0..900 {
        let id = engine.init_producer("").unwrap().0;
        assert!(id > last && seen.insert(id), "id {id} after {last}");
        last = id;
    }
    assert!(last > 1000 && last <= 2000, "{last}");
    // Past the reserve, InitProducer needs the store and says so.
    let mut refused = None;
    for _ in 0..1000 {
        if let Err(e) = engine.init_producer("") {
            refused = Some(e);
            break;
        }
    }
    assert!(
        refused.is_some(),
        "ids were handed out without a claim in the bucket"
    );
}
