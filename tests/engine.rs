//! Engine-level tests: the library API over a real WAL, metadata and object
//! store (local directory or the fault-injecting memory store).

mod common;

use common::engine::{config, fetch_all, segment_objects, topic, wait_uploaded};
use std::sync::Arc;
use std::time::Duration;
use streamhouse::object_store::{Faults, LocalFsStore, MemoryStore, ObjectStore};
use streamhouse::{Acks, Engine, Error, FetchRequest, Header, Record, TopicSpec};

fn value(i: usize) -> Vec<u8> {
    format!("{{\"n\":{i},\"payload\":\"{}\"}}", "p".repeat(i % 50)).into_bytes()
}

fn records(from: usize, n: usize) -> Vec<Record> {
    (from..from + n)
        .map(|i| Record {
            offset: 0,
            timestamp_ms: 0,
            key: (i % 3 != 0).then(|| format!("key-{}", i % 7).into_bytes()),
            value: Some(value(i)),
            headers: if i % 5 == 0 {
                vec![Header {
                    key: "seq".into(),
                    value: Some(i.to_le_bytes().to_vec()),
                }]
            } else {
                vec![]
            },
        })
        .collect()
}

fn check_content(got: &[Record], from: usize) {
    let expected = records(from, got.len());
    for (g, e) in got.iter().zip(&expected) {
        assert_eq!(g.value, e.value, "offset {}", g.offset);
        assert_eq!(g.key, e.key);
        assert_eq!(g.headers, e.headers);
        assert!(g.timestamp_ms > 0, "server time assigned");
    }
}

#[test]
fn acknowledged_records_are_readable_at_once_from_the_tail() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(MemoryStore::new());
    let mut c = config(dir.path());
    c.segment_max_age = Duration::from_secs(3600);
    let engine = Engine::open(c, store.clone()).unwrap();
    engine.create_topic(&topic("t", 2)).unwrap();
    let ack = engine
        .produce_sync("t", 1, records(0, 10), Acks::Wal)
        .unwrap();
    assert_eq!((ack.base_offset, ack.count), (0, 10));
    let ack = engine
        .produce_sync("t", 1, records(10, 5), Acks::Wal)
        .unwrap();
    assert_eq!((ack.base_offset, ack.count), (10, 5));
    assert!(
        segment_objects(store.as_ref()).is_empty(),
        "nothing uploaded yet"
    );
    let got = fetch_all(&engine, "t", 1, 0);
    assert_eq!(got.len(), 15);
    check_content(&got, 0);
    // Mid-tail reads and limits.
    let r = engine
        .fetch_sync(
            "t",
            1,
            FetchRequest {
                offset: 7,
                max_records: 2,
                max_bytes: 0,
                max_wait: Duration::ZERO,
            },
        )
        .unwrap();
    assert_eq!(
        r.records.iter().map(|r| r.offset).collect::<Vec<_>>(),
        vec![7, 8]
    );
    assert_eq!(
        (r.next_offset, r.high_watermark, r.low_watermark),
        (9, 15, 0)
    );
    // max_bytes smaller than one record still returns that record.
    let r = engine
        .fetch_sync(
            "t",
            1,
            FetchRequest {
                offset: 3,
                max_records: 0,
                max_bytes: 1,
                max_wait: Duration::ZERO,
            },
        )
        .unwrap();
    assert_eq!(r.records.len(), 1);
    // Partition 0 is untouched.
    assert!(fetch_all(&engine, "t", 0, 0).is_empty());
}

#[test]
fn reads_cross_segment_boundaries_and_reach_the_tail() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.segment_max_bytes = 2_000;
    let store = Arc::new(MemoryStore::new());
    let engine = Engine::open(c, store.clone()).unwrap();
    engine.create_topic(&topic("t", 1)).unwrap();
    for b in 0..40 {
        engine
            .produce_sync("t", 0, records(b * 25, 25), Acks::Wal)
            .unwrap();
    }
    wait_uploaded(&engine);
    engine
        .produce_sync("t", 0, records(1000, 7), Acks::Wal)
        .unwrap(); // in the tail for ~100 ms
    let info = engine.describe_topic("t").unwrap();
    assert!(info.partition_info[0].segment_count >= 10, "{info:?}");
    let got = fetch_all(&engine, "t", 0, 0);
    assert_eq!(got.len(), 1007);
    check_content(&got, 0);
    // Start in the middle of a segment.
    let from_mid = fetch_all(&engine, "t", 0, 517);
    assert_eq!(from_mid.len(), 1007 - 517);
    assert_eq!(from_mid[0].offset, 517);
    let m = engine.metrics();
    assert!(m.gets > 0 && m.puts >= 10, "{m:?}");
}

#[test]
fn offsets_out_of_range_and_missing_partitions_are_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(config(dir.path()), Arc::new(MemoryStore::new())).unwrap();
    engine.create_topic(&topic("t", 1)).unwrap();
    engine
        .produce_sync("t", 0, records(0, 3), Acks::Wal)
        .unwrap();
    for offset in [-1, 4, 1000] {
        let e = engine
            .fetch_sync(
                "t",
                0,
                FetchRequest {
                    offset,
                    max_records: 0,
                    max_bytes: 0,
                    max_wait: Duration::ZERO,
                },
            )
            .unwrap_err();
        assert!(matches!(e, Error::OutOfRange(_)), "{offset}: {e}");
    }
    assert!(matches!(
        engine.fetch(
            "t",
            1,
            FetchRequest {
                offset: 0,
                max_records: 0,
                max_bytes: 0,
                max_wait: Duration::ZERO
            }
        ),
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        engine.produce("nope", 0, records(0, 1), Acks::Wal),
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        engine.produce("t", 0, vec![], Acks::Wal),
        Err(Error::InvalidArgument(_))
    ));
    let mut big = records(0, 1);
    big[0].value = Some(vec![7; (1 << 20) + 1]);
    assert!(matches!(
        engine.produce("t", 0, big, Acks::Wal),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        engine.create_topic(&topic("t", 1)),
        Err(Error::AlreadyExists(_))
    ));
    for bad in [
        topic("a/b", 1),
        topic("..", 1),
        topic("ok", 0),
        topic("", 1),
    ] {
        assert!(
            matches!(engine.create_topic(&bad), Err(Error::InvalidArgument(_))),
            "{bad:?}"
        );
    }
    assert!(matches!(
        engine.list_offsets("t", 0, -3),
        Err(Error::InvalidArgument(_))
    ));
}

#[test]
fn long_poll_wakes_on_append_and_times_out_empty() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(config(dir.path()), Arc::new(MemoryStore::new())).unwrap();
    engine.create_topic(&topic("t", 1)).unwrap();
    engine
        .produce_sync("t", 0, records(0, 2), Acks::Wal)
        .unwrap();

    // Nothing arrives: an empty answer at the high watermark.
    let r = engine
        .fetch_sync(
            "t",
            0,
            FetchRequest {
                offset: 2,
                max_records: 0,
                max_bytes: 0,
                max_wait: Duration::from_millis(100),
            },
        )
        .unwrap();
    assert!(r.records.is_empty());
    assert_eq!((r.next_offset, r.high_watermark), (2, 2));

    // A 60 s poll answered by an append: it returns the record, not a timeout.
    let rx = engine
        .fetch(
            "t",
            0,
            FetchRequest {
                offset: 2,
                max_records: 0,
                max_bytes: 0,
                max_wait: Duration::from_secs(60),
            },
        )
        .unwrap();
    let producer = {
        let engine = Arc::clone(&engine);
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            engine
                .produce_sync("t", 0, records(2, 1), Acks::Wal)
                .unwrap()
        })
    };
    let r = futures::executor::block_on(rx).unwrap().unwrap();
    assert_eq!(r.records.len(), 1);
    assert_eq!(r.records[0].offset, 2);
    producer.join().unwrap();

    // Many pollers on one partition are all woken by one append.
    let rxs: Vec<_> = (0..20)
        .map(|_| {
            engine
                .fetch(
                    "t",
                    0,
                    FetchRequest {
                        offset: 3,
                        max_records: 0,
                        max_bytes: 0,
                        max_wait: Duration::from_secs(60),
                    },
                )
                .unwrap()
        })
        .collect();
    std::thread::sleep(Duration::from_millis(20));
    engine
        .produce_sync("t", 0, records(3, 1), Acks::Wal)
        .unwrap();
    for rx in rxs {
        assert_eq!(
            futures::executor::block_on(rx).unwrap().unwrap().records[0].offset,
            3
        );
    }
}

#[test]
fn deleting_a_topic_ends_long_polls_and_removes_everything() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.segment_max_bytes = 1_000;
    let store = Arc::new(MemoryStore::new());
    let engine = Engine::open(c.clone(), store.clone()).unwrap();
    engine.create_topic(&topic("gone", 2)).unwrap();
    engine.create_topic(&topic("kept", 1)).unwrap();
    for i in 0..10 {
        engine
            .produce_sync("gone", i % 2, records(i as usize * 20, 20), Acks::Wal)
            .unwrap();
    }
    engine
        .produce_sync("kept", 0, records(0, 50), Acks::Wal)
        .unwrap();
    wait_uploaded(&engine);
    assert!(store.list("topics/gone/").unwrap().len() > 2);
    let rx = engine
        .fetch(
            "gone",
            0,
            FetchRequest {
                offset: 100,
                max_records: 0,
                max_bytes: 0,
                max_wait: Duration::from_secs(60),
            },
        )
        .unwrap();
    engine.delete_topic("gone").unwrap();
    let e = futures::executor::block_on(rx).unwrap().unwrap_err();
    assert!(matches!(e, Error::NotFound(_)), "{e}");
    // Only the tombstone stays: the evidence that the topic is gone.
    let left: Vec<String> = store
        .list("topics/gone/")
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(left[0].ends_with("/deleted"), "{left:?}");
    assert!(!streamhouse::layout::topic_wal_dir(&c.data_dir, "gone").exists());
    assert!(matches!(
        engine.describe_topic("gone"),
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        engine.delete_topic("gone"),
        Err(Error::NotFound(_))
    ));
    assert_eq!(fetch_all(&engine, "kept", 0, 0).len(), 50);
    // The name can be used again, from offset 0.
    engine.create_topic(&topic("gone", 1)).unwrap();
    assert_eq!(
        engine
            .produce_sync("gone", 0, records(0, 1), Acks::Wal)
            .unwrap()
            .base_offset,
        0
    );
}

#[test]
fn restart_keeps_data_and_continues_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.segment_max_bytes = 3_000;
    let store = Arc::new(LocalFsStore::open(dir.path().join("objects")).unwrap());
    {
        let engine = Engine::open(c.clone(), store.clone()).unwrap();
        engine.create_topic(&topic("t", 1)).unwrap();
        for b in 0..10 {
            engine
                .produce_sync("t", 0, records(b * 30, 30), Acks::Wal)
                .unwrap();
        }
        engine.commit_offset("g", "t", 0, 42, "meta").unwrap();
    } // dropped: shutdown
    let engine = Engine::open(c.clone(), store.clone()).unwrap();
    let ack = engine
        .produce_sync("t", 0, records(300, 5), Acks::Wal)
        .unwrap();
    assert_eq!(ack.base_offset, 300, "offsets continue, never reused");
    let got = fetch_all(&engine, "t", 0, 0);
    assert_eq!(got.len(), 305);
    check_content(&got, 0);
    let g = engine.committed_offset("g", "t", 0).unwrap().unwrap();
    assert_eq!((g.offset, g.metadata.as_str()), (42, "meta"));
}

#[test]
fn acks_uploaded_waits_for_the_segment_commit() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(MemoryStore::new());
    let engine = Engine::open(config(dir.path()), store.clone()).unwrap();
    engine.create_topic(&topic("t", 1)).unwrap();
    let ack = engine
        .produce_sync("t", 0, records(0, 10), Acks::Uploaded)
        .unwrap();
    assert_eq!(ack.base_offset, 0);
    let info = engine.describe_topic("t").unwrap();
    assert_eq!(
        info.partition_info[0].segment_count, 1,
        "committed before the ack"
    );
    assert!(info.partition_info[0].stored_bytes > 0);
    assert_eq!(segment_objects(store.as_ref()).len(), 1);
}

#[test]
fn list_offsets_by_timestamp_across_segments_and_tail() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.segment_max_bytes = 500;
    let engine = Engine::open(c, Arc::new(MemoryStore::new())).unwrap();
    engine.create_topic(&topic("t", 1)).unwrap();
    // Timestamps 1000, 1010, ... with one going backwards.
    let recs: Vec<Record> = (0..60)
        .map(|i| Record {
            timestamp_ms: if i == 30 { 5 } else { 1000 + 10 * i },
            value: Some(value(i as usize)),
            ..Default::default()
        })
        .collect();
    for chunk in recs.chunks(6) {
        engine
            .produce_sync("t", 0, chunk.to_vec(), Acks::Wal)
            .unwrap();
    }
    wait_uploaded(&engine);
    engine
        .produce_sync(
            "t",
            0,
            vec![Record {
                timestamp_ms: 5000,
                value: Some(b"tail".to_vec()),
                ..Default::default()
            }],
            Acks::Wal,
        )
        .unwrap();
    let lo = |t| engine.list_offsets_sync("t", 0, t).unwrap();
    assert_eq!(lo(-2), 0);
    assert_eq!(lo(-1), 61);
    assert_eq!(lo(0), 0);
    assert_eq!(lo(1000), 0);
    assert_eq!(lo(1001), 1);
    assert_eq!(lo(1295), 31, "offset 30 went back to ts 5; 31 has 1310");
    assert_eq!(
        lo(6),
        0,
        "the first offset by offset order, not the smallest timestamp"
    );
    assert_eq!(lo(1500), 50);
    assert_eq!(lo(4000), 60, "only the tail record qualifies");
    assert_eq!(lo(9999), 61, "later than every record: the high watermark");
}

#[test]
fn retention_moves_the_low_watermark_and_old_offsets_go_out_of_range() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.segment_max_bytes = 1_000;
    let store = Arc::new(MemoryStore::new());
    let engine = Engine::open(c, store.clone()).unwrap();
    engine
        .create_topic(&TopicSpec {
            retention_bytes: 3_000,
            ..topic("t", 1)
        })
        .unwrap();
    for b in 0..20 {
        engine
            .produce_sync("t", 0, records(b * 20, 20), Acks::Wal)
            .unwrap();
    }
    wait_uploaded(&engine);
    let before = store.list("topics/t/").unwrap().len();
    engine.run_retention();
    let info = engine.describe_topic("t").unwrap().partition_info[0].clone();
    assert!(info.low_watermark > 0, "{info:?}");
    assert!(info.stored_bytes <= 3_000, "{info:?}");
    assert!(
        store.list("topics/t/").unwrap().len() < before,
        "objects deleted"
    );
    let e = engine
        .fetch_sync(
            "t",
            0,
            FetchRequest {
                offset: 0,
                max_records: 0,
                max_bytes: 0,
                max_wait: Duration::ZERO,
            },
        )
        .unwrap_err();
    assert!(matches!(e, Error::OutOfRange(_)), "{e}");
    assert_eq!(
        engine.list_offsets_sync("t", 0, -2).unwrap(),
        info.low_watermark
    );
    let rest = fetch_all(&engine, "t", 0, info.low_watermark);
    assert_eq!(rest.len() as i64, 400 - info.low_watermark);
    check_content(&rest, info.low_watermark as usize);
}

#[test]
fn a_flaky_store_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.segment_max_bytes = 2_000;
    let store = Arc::new(MemoryStore::new());
    store.set_faults(Faults {
        fail_fraction: 0.3,
        latency: Duration::from_millis(2),
        lose_connection_fraction: 0.1,
        ..Faults::default()
    });
    let engine = Engine::open(c, store.clone()).unwrap();
    engine.create_topic(&topic("t", 2)).unwrap();
    for b in 0..30 {
        engine
            .produce_sync("t", b % 2, records(b as usize * 20, 20), Acks::Wal)
            .unwrap();
    }
    wait_uploaded(&engine);
    let (_, injected) = store.call_counts();
    assert!(injected > 0, "faults were injected");
    store.set_faults(Faults::default());
    let total: usize = (0..2).map(|p| fetch_all(&engine, "t", p, 0).len()).sum();
    assert_eq!(total, 600);
    assert!(engine.metrics().upload_retries > 0);
}

#[test]
fn a_down_store_means_backpressure_then_the_backlog_drains() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.segment_max_bytes = 1_000;
    c.max_backlog_bytes = 20_000;
    let store = Arc::new(MemoryStore::new());
    let engine = Engine::open(c, store.clone()).unwrap();
    engine.create_topic(&topic("t", 1)).unwrap();
    store.set_down(true);
    let mut acked = 0usize;
    let mut refused = false;
    for b in 0..200 {
        match engine.produce_sync("t", 0, records(acked, 10), Acks::Wal) {
            Ok(ack) => {
                assert_eq!(ack.base_offset as usize, acked);
                acked += 10;
            }
            Err(Error::Backpressure(_)) => {
                refused = true;
                break;
            }
            Err(e) => panic!("batch {b}: {e}"),
        }
    }
    assert!(refused, "the bound was reached");
    assert!(acked > 0);
    // Everything acknowledged is readable while the store is down.
    assert_eq!(fetch_all(&engine, "t", 0, 0).len(), acked);
    store.set_down(false);
    wait_uploaded(&engine);
    let got = fetch_all(&engine, "t", 0, 0);
    assert_eq!(got.len(), acked);
    check_content(&got, 0);
    engine
        .produce_sync("t", 0, records(acked, 10), Acks::Wal)
        .unwrap();
}

#[test]
fn segments_sealed_while_the_store_was_down_are_uploaded_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.segment_max_bytes = 1_000;
    let store = Arc::new(MemoryStore::new());
    {
        let engine = Engine::open(c.clone(), store.clone()).unwrap();
        engine.create_topic(&topic("t", 1)).unwrap();
        store.set_down(true);
        for b in 0..10 {
            engine
                .produce_sync("t", 0, records(b * 20, 20), Acks::Wal)
                .unwrap();
        }
    }
    store.set_down(false);
    let engine = Engine::open(c, store.clone()).unwrap();
    wait_uploaded(&engine);
    let info = engine.describe_topic("t").unwrap();
    assert!(info.partition_info[0].segment_count > 1);
    let got = fetch_all(&engine, "t", 0, 0);
    assert_eq!(got.len(), 200);
    check_content(&got, 0);
    assert_eq!(
        engine
            .produce_sync("t", 0, records(200, 1), Acks::Wal)
            .unwrap()
            .base_offset,
        200
    );
}

#[test]
fn a_torn_wal_tail_is_cut_and_the_rest_stays_readable() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    // The records must still be in the WAL when the engine stops (no seal
    // by age, however slow the machine).
    c.segment_max_age = Duration::from_secs(3600);
    let store = Arc::new(MemoryStore::new());
    {
        let engine = Engine::open(c.clone(), store.clone()).unwrap();
        engine.create_topic(&topic("t", 1)).unwrap();
        for b in 0..5 {
            engine
                .produce_sync("t", 0, records(b * 10, 10), Acks::Wal)
                .unwrap();
        }
        // The stop seals the segment: the store must not take it, or the
        // WAL file would be gone before the test tears it.
        store.set_faults(Faults {
            down: true,
            ..Faults::default()
        });
    }
    store.set_faults(Faults::default());
    let wal_dir = streamhouse::layout::partition_wal_dir(&c.data_dir, "t", 0);
    let file = std::fs::read_dir(&wal_dir)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    // A torn final write: half an entry header of garbage.
    let mut bytes = std::fs::read(&file).unwrap();
    bytes.extend_from_slice(&[0x13, 0x37, 0x00, 0x10, 0xff]);
    std::fs::write(&file, &bytes).unwrap();
    let engine = Engine::open(c.clone(), store.clone()).unwrap();
    let got = fetch_all(&engine, "t", 0, 0);
    assert_eq!(got.len(), 50);
    check_content(&got, 0);
    assert_eq!(
        engine
            .produce_sync("t", 0, records(50, 1), Acks::Wal)
            .unwrap()
            .base_offset,
        50
    );
    drop(engine);
    let engine = Engine::open(c, store).unwrap();
    assert_eq!(
        fetch_all(&engine, "t", 0, 0).len(),
        51,
        "appends after the cut survive"
    );
}

#[test]
fn a_corrupt_block_is_a_clear_error_and_other_data_stays_readable() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.segment_max_bytes = 1_000;
    let store = Arc::new(LocalFsStore::open(dir.path().join("objects")).unwrap());
    let engine = Engine::open(c, store.clone()).unwrap();
    engine.create_topic(&topic("t", 1)).unwrap();
    for b in 0..6 {
        engine
            .produce_sync("t", 0, records(b * 20, 20), Acks::Wal)
            .unwrap();
    }
    wait_uploaded(&engine);
    let objects = store.list("topics/t/").unwrap();
    assert!(objects.len() >= 2);
    // Flip a byte inside the first block of the second segment.
    let victim = &objects[1];
    let path = dir.path().join("objects").join(&victim.key);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[40] ^= 0x55;
    std::fs::write(&path, &bytes).unwrap();
    let second_base: i64 = victim
        .key
        .rsplit('/')
        .next()
        .unwrap()
        .split(['-', '.'])
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let e = engine
        .fetch_sync(
            "t",
            0,
            FetchRequest {
                offset: second_base,
                max_records: 0,
                max_bytes: 0,
                max_wait: Duration::ZERO,
            },
        )
        .unwrap_err();
    match &e {
        Error::Corruption { object, detail } => {
            assert_eq!(object, &victim.key);
            assert!(detail.to_string().contains("block 0"), "{detail}");
        }
        other => panic!("expected corruption, got {other}"),
    }
    // The first segment still reads.
    let r = engine
        .fetch_sync(
            "t",
            0,
            FetchRequest {
                offset: 0,
                max_records: second_base as usize,
                max_bytes: 0,
                max_wait: Duration::ZERO,
            },
        )
        .unwrap();
    assert_eq!(r.records.len() as i64, second_base);
    check_content(&r.records, 0);
}

#[test]
fn objects_local_metadata_does_not_know_are_never_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(MemoryStore::new());
    {
        let engine = Engine::open(config(dir.path()), store.clone()).unwrap();
        engine.create_topic(&topic("t", 1)).unwrap();
        engine
            .produce_sync("t", 0, records(0, 5), Acks::Uploaded)
            .unwrap();
    }
    // Objects no metadata row names: an upload whose commit crashed, or
    // another writer's. Absence from local metadata is not evidence.
    for key in [
        "topics/t/1/0/00000000000000099999.seg",
        "topics/other/3/0/00000000000000000000.seg",
        "unrelated/object",
    ] {
        store.put(key, b"not ours to judge").unwrap();
    }
    let keys = |s: &MemoryStore| -> Vec<String> {
        s.list("").unwrap().into_iter().map(|o| o.key).collect()
    };
    let before = keys(&store);
    let engine = Engine::open(config(dir.path()), store.clone()).unwrap();
    engine.run_retention();
    assert_eq!(keys(&store), before, "nothing deleted");
    assert_eq!(fetch_all(&engine, "t", 0, 0).len(), 5);
}

#[test]
fn consumer_group_offsets_validate_their_input() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(config(dir.path()), Arc::new(MemoryStore::new())).unwrap();
    engine.create_topic(&topic("t", 2)).unwrap();
    engine
        .produce_sync("t", 1, records(0, 10), Acks::Wal)
        .unwrap();
    engine.commit_offset("g", "t", 1, 7, "").unwrap();
    assert_eq!(
        engine
            .committed_offset("g", "t", 1)
            .unwrap()
            .unwrap()
            .offset,
        7
    );
    assert!(engine.committed_offset("g", "t", 0).unwrap().is_none());
    for bad in ["", "a\nb", &"g".repeat(256)] {
        assert!(
            matches!(
                engine.commit_offset(bad, "t", 0, 1, ""),
                Err(Error::InvalidArgument(_))
            ),
            "{bad:?}"
        );
    }
    assert!(matches!(
        engine.commit_offset("g", "t", 5, 1, ""),
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        engine.commit_offset("g", "t", 0, -1, ""),
        Err(Error::InvalidArgument(_))
    ));
    // Past the log: every later read of the group would be out of range.
    assert!(matches!(
        engine.commit_offset("g", "t", 1, 11, ""),
        Err(Error::OutOfRange(m)) if m.contains("next offset is 10")
    ));
    engine.commit_offset("g", "t", 1, 10, "").unwrap();
    assert_eq!(engine.groups().unwrap(), vec!["g".to_string()]);
}

#[test]
fn a_recreated_topic_never_sees_the_old_ones_data() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.segment_max_bytes = 500;
    let store = Arc::new(MemoryStore::new());
    let engine = Engine::open(c.clone(), store.clone()).unwrap();
    engine.create_topic(&topic("t", 1)).unwrap();
    engine
        .produce_sync("t", 0, records(0, 30), Acks::Wal)
        .unwrap();
    wait_uploaded(&engine);
    assert_eq!(fetch_all(&engine, "t", 0, 0).len(), 30); // now in the block cache
    let old_keys: Vec<String> = store
        .list("topics/t/")
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert!(!old_keys.is_empty());
    // Deleted and created again at once, within the same millisecond or
    // not: the new topic gets a new incarnation, so new object keys.
    engine.delete_topic("t").unwrap();
    engine.create_topic(&topic("t", 1)).unwrap();
    let fresh: Vec<Record> = (0..30)
        .map(|i| Record {
            value: Some(format!("new-{i}").into_bytes()),
            ..Default::default()
        })
        .collect();
    engine.produce_sync("t", 0, fresh, Acks::Wal).unwrap();
    wait_uploaded(&engine);
    let got = fetch_all(&engine, "t", 0, 0);
    assert_eq!(got.len(), 30);
    assert!(
        got.iter().all(|r| r.value_bytes().starts_with(b"new-")),
        "stale data served"
    );
    let new_keys: Vec<String> = store
        .list("topics/t/")
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert!(!new_keys.is_empty());
    assert!(
        new_keys.iter().all(|k| !old_keys.contains(k)),
        "a key was reused: {old_keys:?} vs {new_keys:?}"
    );
    drop(engine);

    // A WAL left behind by a deletion that crashed is not replayed into a
    // new topic of the same name, nor kept for a topic metadata forgot.
    let stale = streamhouse::layout::partition_wal_dir(&c.data_dir, "ghost", 0);
    std::fs::create_dir_all(&stale).unwrap();
    std::fs::copy(
        std::fs::read_dir(streamhouse::layout::partition_wal_dir(&c.data_dir, "t", 0))
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path(),
        stale.join("00000000000000000000.wal"),
    )
    .unwrap();
    let engine = Engine::open(c.clone(), store).unwrap();
    assert!(
        !streamhouse::layout::topic_wal_dir(&c.data_dir, "ghost").exists(),
        "removed at open"
    );
    std::fs::create_dir_all(&stale).unwrap();
    engine.create_topic(&topic("ghost", 1)).unwrap();
    assert!(fetch_all(&engine, "ghost", 0, 0).is_empty());
}

#[test]
fn a_fetch_from_a_segment_stops_at_the_byte_limit_when_the_next_record_does_not_fit() {
    // 3,000-byte records do not divide the 1 MiB default: the record that
    // would pass the limit ends the reply (it used to be retried forever on
    // a reader thread).
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(config(dir.path()), Arc::new(MemoryStore::new())).unwrap();
    engine.create_topic(&topic("t", 1)).unwrap();
    let big: Vec<Record> = (0..1000)
        .map(|i| Record {
            value: Some(vec![i as u8; 3000]),
            ..Default::default()
        })
        .collect();
    engine.produce_sync("t", 0, big, Acks::Uploaded).unwrap();
    let mut next = 0;
    let mut calls = 0;
    while next < 1000 {
        let r = engine
            .fetch_sync(
                "t",
                0,
                FetchRequest {
                    offset: next,
                    max_records: 0,
                    max_bytes: 0,
                    max_wait: Duration::ZERO,
                },
            )
            .unwrap();
        let bytes: usize = r.records.iter().map(|r| r.value_bytes().len() + 16).sum();
        assert!(bytes <= 1 << 20, "{bytes}");
        assert_eq!(r.records[0].offset, next);
        next = r.next_offset;
        calls += 1;
    }
    assert_eq!(calls, 3, "349 + 349 + 302 records");
}

#[test]
fn alter_topic_adds_partitions_everywhere_and_never_removes_them() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(MemoryStore::new());
    let engine = Engine::open(config(dir.path()), store.clone()).unwrap();
    engine.create_topic(&topic("t", 1)).unwrap();
    engine
        .produce_sync("t", 0, records(0, 5), Acks::Uploaded)
        .unwrap();
    let change = streamhouse::engine::TopicChange {
        partitions: Some(3),
        retention_ms: Some(60_000),
        retention_bytes: None,
    };
    let info = engine.alter_topic("t", &change).unwrap();
    assert_eq!((info.partitions, info.retention_ms), (3, 60_000));
    assert_eq!(info.partition_info.len(), 3);
    engine
        .produce_sync("t", 2, records(0, 4), Acks::Uploaded)
        .unwrap();
    let fewer = streamhouse::engine::TopicChange {
        partitions: Some(2),
        ..Default::default()
    };
    assert!(
        matches!(engine.alter_topic("t", &fewer), Err(Error::InvalidArgument(m)) if m.contains("not removed"))
    );
    assert!(matches!(
        engine.alter_topic("nope", &change),
        Err(Error::NotFound(_))
    ));
    engine.shutdown(Duration::from_secs(5));
    drop(engine);
    // The same disk, and a new one rebuilt from the bucket.
    let fresh = tempfile::tempdir().unwrap();
    for data in [dir.path(), fresh.path()] {
        let engine = Engine::open(config(data), store.clone()).unwrap();
        let t = engine.describe_topic("t").unwrap();
        assert_eq!(
            (t.partitions, t.retention_ms),
            (3, 60_000),
            "{}",
            data.display()
        );
        assert_eq!(fetch_all(&engine, "t", 0, 0).len(), 5);
        assert_eq!(fetch_all(&engine, "t", 2, 0).len(), 4);
        engine.shutdown(Duration::from_secs(5));
    }
}
