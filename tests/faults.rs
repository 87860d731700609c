//! Fault injection below the engine: a WAL write or fsync that fails (through
//! the WAL's file-I/O seam), and an object store that hangs at shutdown.
//! Each checks the status callers get, that nothing acknowledged is lost,
//! and that no caller waits forever.

mod common;

use common::engine::{config, fetch_all, topic};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use streamhouse::object_store::{Faults, MemoryStore};
use streamhouse::wal::FaultyWalFs;
use streamhouse::{Acks, Engine, EngineConfig, Error, Record};

fn batch(tag: &str, n: usize) -> Vec<Record> {
    (0..n)
        .map(|i| Record {
            value: Some(format!("{tag}-{i}").into_bytes()),
            ..Default::default()
        })
        .collect()
}

fn values(records: &[Record]) -> Vec<String> {
    records
        .iter()
        .map(|r| String::from_utf8_lossy(r.value_bytes()).into_owned())
        .collect()
}

fn faulty(dir: &std::path::Path) -> (EngineConfig, FaultyWalFs) {
    let fs = FaultyWalFs::default();
    let mut c = config(dir);
    c.wal_fs = Arc::new(fs.clone());
    // No seal unless a test asks for one.
    c.segment_max_age = Duration::from_secs(3600);
    (c, fs)
}

fn unavailable_mentioning(e: Error, needle: &str) {
    match e {
        Error::Unavailable(m) => assert!(m.contains(needle), "{m}"),
        other => panic!("expected UNAVAILABLE, got {other:?}"),
    }
}

#[test]
fn a_failed_wal_write_stops_the_partition_and_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let (c, fs) = faulty(dir.path());
    let store = Arc::new(MemoryStore::new());
    let engine = Engine::open(c.clone(), store.clone()).unwrap();
    engine.create_topic(&topic("t", 2)).unwrap();
    let first = engine
        .produce_sync("t", 0, batch("a", 5), Acks::Wal)
        .unwrap();
    assert_eq!((first.base_offset, first.count), (0, 5));

    fs.faults.fail_writes.store(1, Ordering::SeqCst);
    let failed = engine
        .produce_sync("t", 0, batch("b", 5), Acks::Wal)
        .unwrap_err();
    unavailable_mentioning(failed, "write-ahead log failure");
    // The partition refuses writes from now on, saying why and what to do;
    // the other partition and reads go on.
    let refused = engine
        .produce_sync("t", 0, batch("c", 1), Acks::Wal)
        .unwrap_err();
    unavailable_mentioning(refused, "restart the server");
    engine
        .produce_sync("t", 1, batch("other", 3), Acks::Wal)
        .unwrap();
    assert_eq!(
        values(&fetch_all(&engine, "t", 0, 0)),
        values(&batch("a", 5))
    );
    drop(engine);

    // After a restart the acknowledged records are there, the torn half
    // entry is cut, and offsets go on from the last acknowledged record.
    fs.faults.clear();
    let engine = Engine::open(c, store).unwrap();
    assert_eq!(
        values(&fetch_all(&engine, "t", 0, 0)),
        values(&batch("a", 5))
    );
    let next = engine
        .produce_sync("t", 0, batch("d", 2), Acks::Wal)
        .unwrap();
    assert_eq!(next.base_offset, 5);
    assert_eq!(fetch_all(&engine, "t", 1, 0).len(), 3);
}

/// An idempotent batch through the engine, waiting for its answer.
fn idempotent(
    engine: &Engine,
    (id, epoch): (u64, u32),
    seq: i64,
    records: Vec<Record>,
) -> Result<streamhouse::AppendAck, Error> {
    let producer = streamhouse::engine::ProducerBatch {
        producer_id: id,
        epoch,
        first_sequence: seq,
    };
    let rx = engine.produce_idempotent("t", 0, records, Acks::Wal, producer)?;
    futures::executor::block_on(rx).expect("answered")
}

fn backpressure_mentioning(e: Error, needle: &str) {
    match e {
        Error::Backpressure(m) => assert!(m.contains(needle), "{m}"),
        other => panic!("expected RESOURCE_EXHAUSTED, got {other:?}"),
    }
}

#[test]
fn a_full_disk_is_backpressure_the_partition_stays_open_and_nothing_is_renumbered() {
    let dir = tempfile::tempdir().unwrap();
    let (c, fs) = faulty(dir.path());
    let store = Arc::new(MemoryStore::new());
    let engine = Engine::open(c.clone(), store.clone()).unwrap();
    engine.create_topic(&topic("t", 1)).unwrap();
    engine
        .produce_sync("t", 0, batch("a", 5), Acks::Wal)
        .unwrap();
    let p = engine.init_producer("").unwrap();
    let ack = idempotent(&engine, p, 0, batch("p0", 2)).unwrap();
    assert_eq!((ack.base_offset, ack.duplicate), (5, false));

    // The disk fills: each write leaves half its bytes and fails with ENOSPC.
    fs.faults.disk_full.store(true, Ordering::SeqCst);
    for acks in [Acks::Wal, Acks::None, Acks::Uploaded] {
        let e = engine
            .produce_sync("t", 0, batch("lost", 5), acks)
            .unwrap_err();
        backpressure_mentioning(e, "no space left");
    }
    let e = idempotent(&engine, p, 2, batch("p2", 1)).unwrap_err();
    backpressure_mentioning(e, "nothing of this request was written");

    // Space again: the partition never stopped; the refused idempotent
    // batch is new (not a duplicate) and takes the next offset; no offset
    // was used by what was refused.
    fs.faults.clear();
    let ack = idempotent(&engine, p, 2, batch("p2", 1)).unwrap();
    assert_eq!((ack.base_offset, ack.duplicate), (7, false));
    let next = engine
        .produce_sync("t", 0, batch("c", 3), Acks::Wal)
        .unwrap();
    assert_eq!(next.base_offset, 8);
    let expected: Vec<String> = [
        values(&batch("a", 5)),
        values(&batch("p0", 2)),
        values(&batch("p2", 1)),
        values(&batch("c", 3)),
    ]
    .concat();
    assert_eq!(values(&fetch_all(&engine, "t", 0, 0)), expected);
    drop(engine);

    // The WAL holds exactly that (the torn halves were cut back), and the
    // producer state agrees: the batch at 2 is a duplicate at offset 7.
    let engine = Engine::open(c, store).unwrap();
    let all = fetch_all(&engine, "t", 0, 0);
    assert_eq!(values(&all), expected);
    assert!(all.iter().enumerate().all(|(i, r)| r.offset == i as i64));
    let again = idempotent(&engine, p, 2, batch("p2", 1)).unwrap();
    assert_eq!((again.base_offset, again.duplicate), (7, true));
}

#[test]
fn a_seal_that_finds_no_room_for_the_next_wal_file_waits_instead_of_stopping_the_partition() {
    seal_waits_out(|fs| fs.faults.disk_full.store(true, Ordering::SeqCst));
}

#[test]
fn a_seal_that_finds_no_descriptor_for_the_next_wal_file_waits_too() {
    // EMFILE, as under a connection flood: the partition used to stop
    // until a restart.
    seal_waits_out(|fs| {
        fs.faults
            .creates_out_of_descriptors
            .store(u32::MAX, Ordering::SeqCst)
    });
}

fn seal_waits_out(fault: impl Fn(&FaultyWalFs)) {
    let dir = tempfile::tempdir().unwrap();
    let (mut c, fs) = faulty(dir.path());
    c.segment_max_age = Duration::from_millis(100);
    let store = Arc::new(MemoryStore::new());
    let engine = Engine::open(c, store).unwrap();
    engine.create_topic(&topic("t", 1)).unwrap();
    engine
        .produce_sync("t", 0, batch("a", 5), Acks::Wal)
        .unwrap();
    // The disk fills before the segment's age is up: the seal cannot
    // create the next WAL file.
    fault(&fs);
    std::thread::sleep(Duration::from_millis(400));
    fs.faults.clear();
    // Still open; the seal happens once there is room, and acks=uploaded
    // is answered when it is in the store.
    let b = engine
        .produce_sync("t", 0, batch("b", 3), Acks::Wal)
        .unwrap();
    assert_eq!(b.base_offset, 5);
    engine
        .produce_sync("t", 0, batch("c", 1), Acks::Uploaded)
        .unwrap();
    let want = [batch("a", 5), batch("b", 3), batch("c", 1)].concat();
    assert_eq!(values(&fetch_all(&engine, "t", 0, 0)), values(&want));
}

#[test]
fn a_failed_fsync_answers_waiting_uploaded_acks_and_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let (mut c, fs) = faulty(dir.path());
    // acks=uploaded requests wait for a seal this long: the fault lands
    // while one is waiting.
    c.uploaded_ack_linger = Duration::from_secs(3600);
    let store = Arc::new(MemoryStore::new());
    let engine = Engine::open(c.clone(), store.clone()).unwrap();
    engine.create_topic(&topic("t", 1)).unwrap();
    let waiting = engine
        .produce("t", 0, batch("up", 4), Acks::Uploaded)
        .unwrap();
    // Durable in the WAL (visible), not yet uploaded.
    let deadline = Instant::now() + Duration::from_secs(10);
    while fetch_all(&engine, "t", 0, 0).len() < 4 {
        assert!(
            Instant::now() < deadline,
            "the uploaded batch never became visible"
        );
        std::thread::sleep(Duration::from_millis(5));
    }

    fs.faults.fail_syncs.store(1, Ordering::SeqCst);
    let failed = engine
        .produce_sync("t", 0, batch("w", 3), Acks::Wal)
        .unwrap_err();
    unavailable_mentioning(failed, "write-ahead log failure");
    // The waiting acks=uploaded request is answered, not left hanging: its
    // records are durable locally but will not be uploaded before a restart.
    let answer = futures::executor::block_on(waiting).expect("answered");
    unavailable_mentioning(answer.unwrap_err(), "uploaded after a restart");
    drop(engine);

    fs.faults.clear();
    let engine = Engine::open(c, store).unwrap();
    let got = fetch_all(&engine, "t", 0, 0);
    assert_eq!(
        &values(&got)[..4],
        &values(&batch("up", 4))[..],
        "the fsynced records survive"
    );
    // The failed group's records may or may not have reached the disk (the
    // write went through; only the fsync failed): either way they are at
    // the offsets they were given, never renumbered.
    assert!(got.len() == 4 || got.len() == 7, "{}", got.len());
    let next = engine
        .produce_sync("t", 0, batch("z", 1), Acks::Wal)
        .unwrap();
    assert_eq!(next.base_offset, got.len() as i64);
}

#[test]
fn a_failed_wal_file_create_at_seal_stops_the_partition_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let (mut c, fs) = faulty(dir.path());
    c.segment_max_bytes = 1; // every group seals
    let store = Arc::new(MemoryStore::new());
    let engine = Engine::open(c.clone(), store.clone()).unwrap();
    engine.create_topic(&topic("t", 1)).unwrap();
    fs.faults.fail_creates.store(1, Ordering::SeqCst);
    // Acknowledged (fsynced), then the seal cannot start a new WAL file.
    engine
        .produce_sync("t", 0, batch("a", 3), Acks::Wal)
        .unwrap();
    let refused = engine
        .produce_sync("t", 0, batch("b", 1), Acks::Wal)
        .unwrap_err();
    unavailable_mentioning(refused, "local I/O failure");
    drop(engine);
    fs.faults.clear();
    let engine = Engine::open(c, store).unwrap();
    assert_eq!(
        values(&fetch_all(&engine, "t", 0, 0)),
        values(&batch("a", 3))
    );
}

#[test]
fn shutdown_is_bounded_while_the_store_hangs_and_the_wal_keeps_the_data() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.segment_max_age = Duration::from_millis(20);
    let hung = MemoryStore::new();
    let engine = Engine::open(c.clone(), Arc::new(hung.clone())).unwrap();
    engine.create_topic(&topic("t", 1)).unwrap();
    // Every call now takes a minute: the seal's upload hangs in PUT.
    hung.set_faults(Faults {
        latency: Duration::from_secs(60),
        ..Faults::default()
    });
    let calls_before = hung.call_counts().0;
    engine
        .produce_sync("t", 0, batch("a", 10), Acks::Wal)
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while hung.call_counts().0 == calls_before {
        assert!(Instant::now() < deadline, "no upload started");
        std::thread::sleep(Duration::from_millis(5));
    }
    let start = Instant::now();
    engine.shutdown(Duration::from_millis(200));
    let took = start.elapsed();
    assert!(took < Duration::from_secs(10), "shutdown took {took:?}");
    assert!(
        took >= Duration::from_millis(200),
        "the upload in flight was given its grace period ({took:?})"
    );
    drop(engine);

    // The records are in the WAL: a new engine (a store that answers)
    // serves and uploads them.
    let engine = Engine::open(c, Arc::new(MemoryStore::new())).unwrap();
    assert_eq!(
        values(&fetch_all(&engine, "t", 0, 0)),
        values(&batch("a", 10))
    );
}

#[test]
fn a_write_failure_after_validation_says_which_partitions_were_written() {
    let dir = tempfile::tempdir().unwrap();
    let (c, fs) = faulty(dir.path());
    let engine = Engine::open(c, Arc::new(MemoryStore::new())).unwrap();
    engine.create_topic(&topic("t", 2)).unwrap();
    // The request passes validation; then the first WAL write on either
    // partition fails. One partition is written, the other is not, and
    // the answers say which.
    fs.faults.fail_writes.store(1, Ordering::SeqCst);
    let pending = engine
        .produce_batch(
            "t",
            vec![(0, batch("zero", 3)), (1, batch("one", 3))],
            Acks::Wal,
        )
        .unwrap();
    let answers: Vec<_> = pending
        .into_iter()
        .map(|(p, rx)| (p, futures::executor::block_on(rx).unwrap()))
        .collect();
    let written: Vec<u32> = answers
        .iter()
        .filter(|(_, a)| a.is_ok())
        .map(|(p, _)| *p)
        .collect();
    assert_eq!(written.len(), 1, "{answers:?}");
    for (p, answer) in answers {
        let stored = fetch_all(&engine, "t", p, 0);
        match answer {
            Ok(ack) => {
                assert_eq!((ack.base_offset, ack.count), (0, 3));
                assert_eq!(stored.len(), 3);
            }
            Err(e) => {
                unavailable_mentioning(e, "write-ahead log failure");
                assert!(stored.is_empty(), "partition {p} holds {stored:?}");
            }
        }
    }
}

#[test]
fn an_acks_none_record_becomes_visible_only_once_it_is_fsynced() {
    let dir = tempfile::tempdir().unwrap();
    let (c, fs) = faulty(dir.path());
    let engine = Engine::open(c, Arc::new(MemoryStore::new())).unwrap();
    engine.create_topic(&topic("t", 1)).unwrap();
    engine
        .produce_sync("t", 0, batch("durable", 3), Acks::Wal)
        .unwrap();
    // acks=none: the client does not wait, so it hears nothing of the
    // fsync; but a reader must not see a record a crash could take back.
    fs.faults.fail_syncs.store(1, Ordering::SeqCst);
    let ack = engine
        .produce_sync("t", 0, batch("none", 2), Acks::None)
        .unwrap();
    assert_eq!(ack.base_offset, 3);
    // The writer has finished with the group once the partition refuses
    // writes (the failed fsync stops it).
    let deadline = Instant::now() + Duration::from_secs(10);
    while engine
        .produce_sync("t", 0, batch("probe", 1), Acks::Wal)
        .is_ok()
    {
        assert!(Instant::now() < deadline, "the fsync failure was not seen");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(
        values(&fetch_all(&engine, "t", 0, 0)),
        values(&batch("durable", 3)),
        "a record whose fsync failed was shown to readers"
    );
}
