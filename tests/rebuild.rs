//! The bucket is the source of truth (real binaries, the S3 test server):
//! a node whose disk is lost rebuilds from the bucket; a SQLite file older
//! than the bucket, or one from elsewhere, is reconciled with it; nothing in
//! the bucket is deleted on a guess.

mod common;

use common::grpc::{create, fetch_all, produce, record, uploaded};
use common::s3::{self, Bucket};
use common::Clients;
use std::collections::BTreeMap;
use streamhouse::proto as pb;

/// What a test acknowledged, by (topic, partition): offset -> value.
type Acked = BTreeMap<(String, u32), BTreeMap<i64, String>>;

fn produce_round(c: &Clients, round: u32, acked: &mut Acked) {
    for (topic, partitions) in [("orders", 2u32), ("audit", 1)] {
        for p in 0..partitions {
            let values: Vec<String> = (0..25)
                .map(|i| format!("{topic}-{p}-r{round}-{i}"))
                .collect();
            let (base, count) = uploaded(c, topic, p, &values);
            assert_eq!(count, 25);
            let m = acked.entry((topic.to_string(), p)).or_default();
            for (i, v) in values.into_iter().enumerate() {
                assert!(m.insert(base + i as i64, v).is_none(), "offset reused");
            }
        }
    }
}

fn check_all_acked(c: &Clients, acked: &Acked) {
    for ((topic, p), want) in acked {
        let got: BTreeMap<i64, String> = fetch_all(c, topic, *p, 0)
            .into_iter()
            .map(|r| {
                assert_eq!(r.get_headers().len(), 1, "headers kept");
                (
                    r.get_offset(),
                    String::from_utf8(r.get_value().to_vec()).unwrap(),
                )
            })
            .collect();
        assert_eq!(&got, want, "{topic}/{p}");
    }
}

fn commit(c: &Clients, group: &str, topic: &str, p: u32, offset: i64) {
    let mut req = pb::CommitOffsetRequest::new();
    req.set_group(group.into());
    req.set_topic(topic.into());
    req.set_partition(p);
    req.set_offset(offset);
    req.set_metadata("tab\tand newline\n".into());
    c.consumer.commit_offset(&req).unwrap();
}

fn committed(c: &Clients, group: &str, topic: &str, p: u32) -> Option<(i64, String)> {
    let mut req = pb::GetCommittedOffsetRequest::new();
    req.set_group(group.into());
    req.set_topic(topic.into());
    req.set_partition(p);
    let r = c.consumer.get_committed_offset(&req).unwrap();
    r.get_found()
        .then(|| (r.get_offset(), r.get_metadata().to_string()))
}

/// Produce continues exactly at the old high watermark.
fn next_offset_continues(c: &Clients, acked: &Acked) {
    for ((topic, p), m) in acked {
        let high = m.keys().last().unwrap() + 1;
        let r = produce(c, topic, Some(*p), vec![record(b"", b"after", &[])]).unwrap();
        assert_eq!(r.get_acks()[0].get_base_offset(), high, "{topic}/{p}");
    }
}

const SEGMENT_FLAGS: &[&str] = &["--segment-max-bytes", "2KiB"];

#[test]
fn a_node_with_an_empty_data_dir_rebuilds_everything_from_the_bucket() {
    let Some(endpoint) = s3::endpoint() else {
        return;
    };
    let bucket = Bucket::new(&endpoint, "kill-the-disk");
    let disk = tempfile::tempdir().unwrap();
    let mut acked = Acked::new();
    {
        let s = bucket.start(disk.path(), SEGMENT_FLAGS);
        let c = s.clients();
        create(&c, "orders", 2);
        create(&c, "audit", 1);
        for round in 0..4 {
            produce_round(&c, round, &mut acked);
        }
        commit(&c, "billing", "orders", 1, 42);
        let mut s = s;
        assert!(s.sigterm_and_wait().success());
    }
    let before = bucket.keys();
    assert!(before.iter().filter(|k| k.ends_with(".seg")).count() >= 12);
    drop(disk); // the disk is gone

    let fresh = tempfile::tempdir().unwrap();
    let s = bucket.start(fresh.path(), SEGMENT_FLAGS);
    let c = s.clients();
    let mut list = c.admin.list_topics(&pb::ListTopicsRequest::new()).unwrap();
    let mut names: Vec<String> = list
        .take_topics()
        .into_iter()
        .map(|t| t.get_name().to_string())
        .collect();
    names.sort();
    assert_eq!(names, vec!["audit", "orders"]);
    check_all_acked(&c, &acked);
    assert_eq!(
        committed(&c, "billing", "orders", 1),
        Some((42, "tab\tand newline\n".to_string())),
        "group offsets come back"
    );
    next_offset_continues(&c, &acked);
    let after = bucket.keys();
    assert!(before.iter().all(|k| after.contains(k)), "nothing deleted");
    eprintln!(
        "empty data dir: {} objects in the bucket before the rebuild, {} after",
        before.len(),
        after.len()
    );
}

#[test]
fn a_stale_or_foreign_sqlite_file_is_reconciled_and_deletes_nothing() {
    let Some(endpoint) = s3::endpoint() else {
        return;
    };
    let bucket = Bucket::new(&endpoint, "stale");
    let disk = tempfile::tempdir().unwrap();
    let backup = tempfile::tempdir().unwrap();
    let mut acked = Acked::new();
    {
        let s = bucket.start(disk.path(), SEGMENT_FLAGS);
        let c = s.clients();
        create(&c, "orders", 2);
        create(&c, "audit", 1);
        produce_round(&c, 0, &mut acked);
        let mut s = s;
        assert!(s.sigterm_and_wait().success());
    }
    // Last week's backup of the metadata (the WAL is empty: all uploaded).
    std::fs::copy(
        disk.path().join("meta.sqlite"),
        backup.path().join("meta.sqlite"),
    )
    .unwrap();
    {
        let s = bucket.start(disk.path(), SEGMENT_FLAGS);
        let c = s.clients();
        for round in 1..3 {
            produce_round(&c, round, &mut acked);
        }
        commit(&c, "g", "audit", 0, 7);
        let mut s = s;
        assert!(s.sigterm_and_wait().success());
    }
    let before = bucket.keys();

    // The backup comes back: the bucket wins.
    let restored = tempfile::tempdir().unwrap();
    std::fs::copy(
        backup.path().join("meta.sqlite"),
        restored.path().join("meta.sqlite"),
    )
    .unwrap();
    {
        let s = bucket.start(restored.path(), SEGMENT_FLAGS);
        let c = s.clients();
        check_all_acked(&c, &acked);
        assert_eq!(committed(&c, "g", "audit", 0).map(|x| x.0), Some(7));
        let mut s = s;
        assert!(s.sigterm_and_wait().success());
    }
    // It deleted nothing (it may add marks of its own epoch's history).
    let after = bucket.keys();
    let gone: Vec<&String> = before.iter().filter(|k| !after.contains(k)).collect();
    assert!(gone.is_empty(), "the stale file deleted {gone:?}");
    eprintln!(
        "stale SQLite: {} objects before, {} after",
        before.len(),
        bucket.keys().len()
    );

    let before = bucket.keys();
    // A data directory from another prefix, with a topic of its own: it
    // belongs to that store, so the node refuses to mix the two.
    let foreign_disk = tempfile::tempdir().unwrap();
    let other = Bucket::new(&endpoint, "foreign");
    {
        let s = other.start(foreign_disk.path(), &[]);
        let c = s.clients();
        create(&c, "elsewhere", 1);
        uploaded(&c, "elsewhere", 0, &["x".to_string()]);
        let mut s = s;
        assert!(s.sigterm_and_wait().success());
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_streamhoused"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--kafka-listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(foreign_disk.path())
        .args(s3::flags(&endpoint, &bucket.prefix))
        .env("STREAMHOUSE_LOG", "warn")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&other.prefix) && err.contains("belongs to"),
        "{err}"
    );
    assert_eq!(bucket.keys(), before, "the foreign file deleted nothing");
    eprintln!(
        "foreign SQLite: {} objects before, {} after",
        before.len(),
        bucket.keys().len()
    );
    // The other bucket still has its topic.
    let s = other.start(foreign_disk.path(), &[]);
    assert_eq!(fetch_all(&s.clients(), "elsewhere", 0, 0).len(), 1);
}
