use super::*;
use crate::layout::producer_state_key;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

fn topic(name: &str, partitions: u32) -> TopicRow {
    TopicRow {
        name: name.to_string(),
        partitions,
        retention_ms: 0,
        retention_bytes: 0,
        created_at_ms: 1_700_000_000_000,
        incarnation: 0,
    }
}

fn segment(topic: &str, partition: u32, base: i64, count: i64, max_ts: i64) -> SegmentRow {
    SegmentRow {
        topic: topic.to_string(),
        partition,
        base_offset: base,
        last_offset: base + count - 1,
        record_count: count,
        size_bytes: 1000,
        min_timestamp_ms: max_ts - 10,
        max_timestamp_ms: max_ts,
        object_key: format!("{topic}/{partition}/{base:020}.seg"),
        created_at_ms: max_ts,
    }
}

fn open_temp() -> (tempfile::TempDir, MetaStore) {
    let dir = tempfile::tempdir().unwrap();
    let meta = MetaStore::open(dir.path().join("meta.sqlite")).unwrap();
    (dir, meta)
}

#[test]
fn migrates_an_empty_file_and_reopen_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta.sqlite");
    {
        let meta = MetaStore::open(&path).unwrap();
        meta.create_topic(&topic("orders", 3)).unwrap();
        meta.commit_segment(&segment("orders", 1, 0, 100, 5_000), None)
            .unwrap();
        meta.commit_group_offset(&GroupOffset {
            group: "billing".into(),
            topic: "orders".into(),
            partition: 1,
            offset: 42,
            metadata: "m".into(),
            updated_at_ms: 7,
        })
        .unwrap();
    }
    let meta = MetaStore::open(&path).unwrap();
    let conn = Connection::open(&path).unwrap();
    assert_eq!(schema::user_version(&conn).unwrap(), schema_version());
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");

    assert_eq!(meta.topic("orders").unwrap().unwrap(), topic("orders", 3));
    let p = meta.partition("orders", 1).unwrap().unwrap();
    assert_eq!((p.low_watermark, p.next_offset), (0, 100));
    assert!(meta.partition("orders", 2).unwrap().is_some());
    assert!(meta.partition("orders", 3).unwrap().is_none());
    assert_eq!(
        meta.segments("orders", 1).unwrap(),
        vec![segment("orders", 1, 0, 100, 5_000)]
    );
    let g = meta.group_offset("billing", "orders", 1).unwrap().unwrap();
    assert_eq!((g.offset, g.metadata.as_str()), (42, "m"));
}

#[test]
fn a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta.sqlite");
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch("PRAGMA user_version = 99").unwrap();
    }
    match MetaStore::open(&path) {
        Err(MetaError::SchemaTooNew { found: 99, .. }) => {}
        other => panic!("expected SchemaTooNew, got {other:?}"),
    }
}

#[test]
fn duplicate_topic_and_missing_topic_are_typed_errors() {
    let (_d, meta) = open_temp();
    meta.create_topic(&topic("a", 1)).unwrap();
    assert!(matches!(
        meta.create_topic(&topic("a", 2)),
        Err(MetaError::AlreadyExists(_))
    ));
    assert!(
        meta.partition("a", 1).unwrap().is_none(),
        "no partial create"
    );
    assert!(matches!(
        meta.delete_topic("zz"),
        Err(MetaError::NotFound(_))
    ));
    assert!(meta.topic("zz").unwrap().is_none());
}

#[test]
fn segments_must_be_contiguous_with_the_committed_watermark() {
    let (_d, meta) = open_temp();
    meta.create_topic(&topic("t", 1)).unwrap();
    meta.commit_segment(&segment("t", 0, 0, 10, 100), None)
        .unwrap();
    // A gap, an overlap and a replay of the same segment are all refused.
    for bad in [
        segment("t", 0, 11, 5, 200),
        segment("t", 0, 5, 10, 200),
        segment("t", 0, 0, 10, 100),
    ] {
        assert!(
            matches!(meta.commit_segment(&bad, None), Err(MetaError::Conflict(_))),
            "{bad:?}"
        );
    }
    assert_eq!(meta.partition("t", 0).unwrap().unwrap().next_offset, 10);
    assert!(matches!(
        meta.commit_segment(&segment("t", 7, 0, 1, 1), None),
        Err(MetaError::NotFound(_))
    ));
    meta.commit_segment(&segment("t", 0, 10, 5, 200), None)
        .unwrap();
    assert_eq!(meta.partition("t", 0).unwrap().unwrap().next_offset, 15);
}

#[test]
fn lookups_by_offset_and_usage() {
    let (_d, meta) = open_temp();
    meta.create_topic(&topic("t", 2)).unwrap();
    // Timestamps deliberately not monotonic across segments.
    let segs = [
        segment("t", 0, 0, 10, 1_000),
        segment("t", 0, 10, 10, 3_000),
        segment("t", 0, 20, 10, 2_000),
        segment("t", 0, 30, 10, 4_000),
    ];
    for s in &segs {
        meta.commit_segment(s, None).unwrap();
    }
    meta.commit_segment(&segment("t", 1, 0, 1000, 9_999), None)
        .unwrap();
    for offset in 0..40 {
        let s = meta.segment_for_offset("t", 0, offset).unwrap().unwrap();
        assert!(
            s.base_offset <= offset && offset <= s.last_offset,
            "offset {offset}"
        );
        assert_eq!(s.base_offset, offset / 10 * 10);
    }
    assert!(meta.segment_for_offset("t", 0, 40).unwrap().is_none());
    assert!(meta.segment_for_offset("t", 0, -1).unwrap().is_none());
    let usage = meta.partition_usage("t", 0).unwrap();
    assert_eq!((usage.segment_count, usage.stored_bytes), (4, 4000));
}

#[test]
fn retention_drops_only_a_prefix_and_moves_the_low_watermark() {
    let (_d, meta) = open_temp();
    let mut t = topic("t", 1);
    t.retention_ms = 1_000;
    meta.create_topic(&t).unwrap();
    for (i, ts) in [100, 200, 5_000, 300, 6_000].iter().enumerate() {
        meta.commit_segment(&segment("t", 0, i as i64 * 10, 10, *ts), None)
            .unwrap();
    }
    // At now = 4_500, segments with max_ts < 3_500 are expired, but the one
    // at ts 300 sits behind a live segment and must stay (prefix only).
    let expired = meta.segments_beyond_retention("t", 0, 4_500).unwrap();
    assert_eq!(
        expired.iter().map(|s| s.base_offset).collect::<Vec<_>>(),
        vec![0, 10]
    );
    let new_low = expired.last().unwrap().last_offset + 1;
    let dropped = meta.drop_segments_before("t", 0, new_low).unwrap();
    assert_eq!(dropped, expired);
    let p = meta.partition("t", 0).unwrap().unwrap();
    assert_eq!((p.low_watermark, p.next_offset), (20, 50));
    assert!(meta.segment_for_offset("t", 0, 5).unwrap().is_none());
    assert_eq!(meta.segments("t", 0).unwrap()[0].base_offset, 20);
    assert!(matches!(
        meta.drop_segments_before("t", 0, 51),
        Err(MetaError::Conflict(_))
    ));
}

#[test]
fn retention_by_bytes() {
    let (_d, meta) = open_temp();
    let mut t = topic("t", 1);
    t.retention_bytes = 2_500; // segments are 1000 bytes each
    meta.create_topic(&t).unwrap();
    for i in 0..5 {
        meta.commit_segment(&segment("t", 0, i * 10, 10, 100), None)
            .unwrap();
    }
    let expired = meta.segments_beyond_retention("t", 0, 200).unwrap();
    assert_eq!(
        expired.len(),
        3,
        "5000 bytes down to at most 2500 keeps 2 segments"
    );
}

#[test]
fn delete_topic_cascades_and_returns_segments() {
    let (_d, meta) = open_temp();
    meta.create_topic(&topic("t", 2)).unwrap();
    meta.create_topic(&topic("keep", 1)).unwrap();
    meta.commit_segment(&segment("t", 0, 0, 10, 100), None)
        .unwrap();
    meta.commit_segment(&segment("t", 1, 0, 10, 100), None)
        .unwrap();
    meta.commit_segment(&segment("keep", 0, 0, 10, 100), None)
        .unwrap();
    meta.commit_group_offset(&GroupOffset {
        group: "g".into(),
        topic: "t".into(),
        partition: 0,
        offset: 3,
        metadata: String::new(),
        updated_at_ms: 1,
    })
    .unwrap();
    let removed = meta.delete_topic("t").unwrap();
    assert_eq!(removed.len(), 2);
    assert!(meta.topic("t").unwrap().is_none());
    assert!(meta.partition("t", 0).unwrap().is_none());
    assert!(meta.segments("t", 0).unwrap().is_empty());
    assert!(meta.group_offsets("g").unwrap().is_empty());
    assert_eq!(meta.segments("keep", 0).unwrap().len(), 1);
    // The name can be reused, starting from offset 0 again.
    meta.create_topic(&topic("t", 1)).unwrap();
    assert_eq!(meta.partition("t", 0).unwrap().unwrap().next_offset, 0);
}

#[test]
fn group_offsets_upsert_and_list() {
    let (_d, meta) = open_temp();
    meta.create_topic(&topic("a", 2)).unwrap();
    meta.create_topic(&topic("b", 1)).unwrap();
    let commit = |group: &str, t: &str, p: u32, offset: i64| {
        meta.commit_group_offset(&GroupOffset {
            group: group.into(),
            topic: t.into(),
            partition: p,
            offset,
            metadata: format!("at {offset}"),
            updated_at_ms: offset,
        })
    };
    commit("g1", "a", 0, 5).unwrap();
    commit("g1", "a", 0, 9).unwrap();
    commit("g1", "b", 0, 1).unwrap();
    commit("g2", "a", 1, 2).unwrap();
    assert!(matches!(
        commit("g1", "a", 9, 1),
        Err(MetaError::NotFound(_))
    ));
    assert!(matches!(
        commit("g1", "nope", 0, 1),
        Err(MetaError::NotFound(_))
    ));
    let g1 = meta.group_offsets("g1").unwrap();
    assert_eq!(
        g1.iter()
            .map(|o| (o.topic.as_str(), o.partition, o.offset))
            .collect::<Vec<_>>(),
        vec![("a", 0, 9), ("b", 0, 1)]
    );
    assert_eq!(g1[0].metadata, "at 9");
    assert_eq!(
        meta.groups().unwrap(),
        vec!["g1".to_string(), "g2".to_string()]
    );
    assert!(meta.group_offset("g3", "a", 0).unwrap().is_none());
}

/// One writer commits segments while readers check, on every read, that what
/// they see is a consistent snapshot: segments contiguous from 0 and ending
/// exactly at the partition's committed high watermark.
#[test]
fn one_writer_with_concurrent_readers() {
    let (_d, meta) = open_temp();
    let meta = Arc::new(meta);
    meta.create_topic(&topic("t", 1)).unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..3)
        .map(|_| {
            let meta = Arc::clone(&meta);
            let done = Arc::clone(&done);
            std::thread::spawn(move || {
                let mut reads = 0u64;
                let mut max_seen = 0;
                while !done.load(Ordering::Relaxed) {
                    // One snapshot: a single read transaction for both.
                    let (next, segs) = meta
                        .read(|c| {
                            let tx = c.unchecked_transaction()?;
                            let next: i64 = tx.query_row(
                                "SELECT next_offset FROM partitions WHERE topic='t'",
                                [],
                                |r| r.get(0),
                            )?;
                            let segs: Vec<(i64, i64)> = tx
                                .prepare("SELECT base_offset, last_offset FROM segments WHERE topic='t' ORDER BY base_offset")?
                                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                                .collect::<rusqlite::Result<_>>()?;
                            Ok((next, segs))
                        })
                        .unwrap();
                    let mut expect = 0;
                    for (base, last) in &segs {
                        assert_eq!(*base, expect, "gap or overlap seen by a reader");
                        expect = last + 1;
                    }
                    assert_eq!(expect, next, "watermark disagrees with segments");
                    assert!(next >= max_seen, "watermark went backwards");
                    max_seen = next;
                    reads += 1;
                }
                reads
            })
        })
        .collect();
    for i in 0..300 {
        meta.commit_segment(&segment("t", 0, i * 7, 7, i), None)
            .unwrap();
    }
    done.store(true, Ordering::Relaxed);
    for r in readers {
        assert!(r.join().unwrap() > 0, "every reader ran");
    }
    assert_eq!(meta.partition("t", 0).unwrap().unwrap().next_offset, 2100);
}

#[test]
fn incarnations_come_from_a_counter_never_the_clock() {
    let (_d, meta) = open_temp();
    let seen: Vec<i64> = (0..3).map(|_| meta.next_incarnation().unwrap()).collect();
    assert_eq!(seen, vec![1, 2, 3]);
    // Incarnations found in the bucket are never handed out again.
    meta.raise_incarnation_counter(100).unwrap();
    meta.raise_incarnation_counter(50).unwrap();
    assert_eq!(meta.next_incarnation().unwrap(), 101);
}

#[test]
fn retention_marks_the_dropped_objects_as_garbage_until_forgotten() {
    let (_d, meta) = open_temp();
    meta.create_topic(&topic("t", 1)).unwrap();
    for i in 0..3 {
        meta.commit_segment(&segment("t", 0, i * 10, 10, 100), None)
            .unwrap();
    }
    let dropped = meta.drop_segments_before("t", 0, 20).unwrap();
    // Each segment, and the producer table that may sit beside it.
    let mut keys: Vec<String> = dropped
        .iter()
        .flat_map(|s| [s.object_key.clone(), producer_state_key(&s.object_key)])
        .collect();
    keys.sort();
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    assert_eq!(keys.len(), 4);
    assert_eq!(sorted(meta.garbage(100).unwrap()), keys);
    meta.forget_garbage(&keys[..1]).unwrap();
    assert_eq!(sorted(meta.garbage(100).unwrap()), keys[1..].to_vec());
}

#[test]
fn version_1_topics_keep_their_keys_and_new_incarnations_start_above_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta.sqlite");
    {
        // A database as version 1 left it: incarnation = creation time.
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(MIGRATIONS[0]).unwrap();
        conn.execute_batch(
            "INSERT INTO topics (name, partitions, created_at_ms) VALUES ('old', 1, 1700000000000);
             PRAGMA user_version = 1;",
        )
        .unwrap();
    }
    let meta = MetaStore::open(&path).unwrap();
    assert_eq!(
        meta.topic("old").unwrap().unwrap().incarnation,
        1_700_000_000_000,
        "existing object keys stay valid"
    );
    assert_eq!(meta.next_incarnation().unwrap(), 1_700_000_000_001);
}

#[test]
fn producer_ids_and_partition_producer_state_persist() {
    let (_d, meta) = open_temp();
    meta.create_topic(&topic("t", 1)).unwrap();
    assert_eq!(meta.producer_state("t", 0).unwrap(), None);
    meta.commit_segment(&segment("t", 0, 0, 10, 100), Some(b"state-1"))
        .unwrap();
    assert_eq!(
        meta.producer_state("t", 0).unwrap(),
        Some(b"state-1".to_vec())
    );
    // A commit without a table (a rebuild) leaves it; an empty one clears it.
    meta.commit_segments(&[segment("t", 0, 10, 10, 100)], None)
        .unwrap();
    assert_eq!(
        meta.producer_state("t", 0).unwrap(),
        Some(b"state-1".to_vec())
    );
    meta.commit_segment(&segment("t", 0, 20, 10, 100), Some(b""))
        .unwrap();
    assert_eq!(meta.producer_state("t", 0).unwrap(), None);

    let row = |id, name: Option<&str>, epoch, at| ProducerRow {
        id,
        name: name.map(str::to_string),
        epoch,
        issued_at_ms: at,
    };
    meta.issue_producer(&row(1, None, 0, 100)).unwrap();
    meta.issue_producer(&row(2, Some("billing"), 0, 100))
        .unwrap();
    meta.issue_producer(&row(2, Some("billing"), 1, 5_000))
        .unwrap();
    assert_eq!(
        meta.named_producer("billing").unwrap(),
        Some(row(2, Some("billing"), 1, 5_000))
    );
    assert_eq!(meta.max_producer_id().unwrap(), 2);
    // Anonymous ids expire; names keep their id.
    assert_eq!(meta.producers_issued_since(1_000).unwrap().len(), 1);
    assert_eq!(meta.forget_anonymous_producers(1_000).unwrap(), 1);
    meta.issue_producer(&row(2, Some("billing"), 2, 6_000))
        .unwrap();
    assert_eq!(
        meta.named_producer("billing").unwrap().map(|r| r.epoch),
        Some(2)
    );
    assert_eq!(meta.forget_anonymous_producers(i64::MAX).unwrap(), 0);
}
