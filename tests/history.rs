//! The bucket's history stays append-only (real binaries, the S3 test
//! server): five sequences that used to lose or rewrite acknowledged
//! records. A rebuild never continues below an object it could not read;
//! retention leaves the next offset in the bucket; a fenced node's late
//! upload never enters the log, and a fenced node changes nothing in the
//! bucket; group offsets restored by a rebuild never point past its log.

mod common;

use common::grpc::{
    create, fetch_all, produce, record_values, tagged, tagged_records, uploaded, NO_SEAL,
};
use common::s3::{self, Bucket};
use common::TestServer;
use grpcio::RpcStatusCode;
use std::process::Command;
use std::time::{Duration, Instant};
use streamhouse::object_store::ObjectStore;
use streamhouse::proto as pb;

/// The segment objects in the bucket, in key (offset) order.
fn segment_keys(bucket: &Bucket) -> Vec<String> {
    let mut keys: Vec<String> = bucket
        .keys()
        .into_iter()
        .filter(|k| k.ends_with(".seg"))
        .collect();
    keys.sort();
    keys
}

fn failure<T: std::fmt::Debug>(r: grpcio::Result<T>) -> (RpcStatusCode, String) {
    match r {
        Err(grpcio::Error::RpcFailure(st)) => (st.code(), st.message().to_string()),
        other => panic!("expected an RPC failure, got {other:?}"),
    }
}

fn signal(server: &TestServer, sig: &str) {
    let pid = server.child.id().to_string();
    assert!(Command::new("kill")
        .args([sig, &pid])
        .status()
        .unwrap()
        .success());
}

fn kill_9(server: &mut TestServer) {
    server.child.kill().unwrap();
    server.child.wait().unwrap();
}

/// Polls `cond` (in the test only) until it holds, for at most `secs`.
fn wait_for(what: &str, secs: u64, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn commit(c: &common::Clients, group: &str, offset: i64) -> grpcio::Result<()> {
    let mut req = pb::CommitOffsetRequest::new();
    req.set_group(group.into());
    req.set_topic("t".into());
    req.set_partition(0);
    req.set_offset(offset);
    c.consumer.commit_offset(&req).map(|_| ())
}

fn committed(c: &common::Clients, group: &str) -> Option<i64> {
    let mut req = pb::GetCommittedOffsetRequest::new();
    req.set_group(group.into());
    req.set_topic("t".into());
    req.set_partition(0);
    let r = c.consumer.get_committed_offset(&req).unwrap();
    r.get_found().then(|| r.get_offset())
}

/// Three segments of 20 records uploaded by a node that then stops
/// cleanly; returns their values in order.
fn three_segments(bucket: &Bucket) -> Vec<Vec<String>> {
    let disk = tempfile::tempdir().unwrap();
    let mut a = bucket.start(disk.path(), &[]);
    let c = a.clients();
    create(&c, "t", 1);
    let batches: Vec<Vec<String>> = (0..3).map(|i| tagged(&format!("s{i}"), 20)).collect();
    for b in &batches {
        uploaded(&c, "t", 0, b);
    }
    drop(c);
    assert!(a.sigterm_and_wait().success());
    assert_eq!(segment_keys(bucket).len(), 3, "{:?}", bucket.keys());
    batches
}

#[test]
fn a_segment_the_rebuild_cannot_read_stops_the_partition_there_and_is_never_collected() {
    let Some(endpoint) = s3::endpoint() else {
        return;
    };
    // The middle segment's footer damaged, or the object missing.
    for damage in ["footer", "missing"] {
        let bucket = Bucket::new(&endpoint, &format!("unreadable-{damage}"));
        let batches = three_segments(&bucket);
        let middle = segment_keys(&bucket)[1].clone();
        let original = bucket.store.get(&middle).unwrap();
        if damage == "footer" {
            let mut bytes = original.clone();
            let n = bytes.len();
            bytes[n - 20] ^= 0xff;
            bucket.store.put(&middle, &bytes).unwrap();
        } else {
            bucket.store.delete(&middle).unwrap();
        }

        // A node on an empty data dir serves what it could read, and
        // refuses writes that would take the unread segment's offsets.
        let disk = tempfile::tempdir().unwrap();
        let mut b = bucket.start(disk.path(), &[]);
        let c = b.clients();
        assert_eq!(record_values(&fetch_all(&c, "t", 0, 0)), batches[0]);
        let (code, message) = failure(produce(&c, "t", Some(0), tagged_records("new", 1)));
        assert_eq!(code, RpcStatusCode::DATA_LOSS, "{damage}: {message}");
        assert!(message.contains("offset 20"), "{damage}: {message}");
        if damage == "footer" {
            assert!(message.contains(&middle), "{message}");
        }
        drop(c);
        assert!(b.sigterm_and_wait().success());
        if damage == "footer" {
            assert!(
                bucket.keys().contains(&middle),
                "the unread object was deleted"
            );
        }

        // Readable again: a restart serves every acknowledged record and
        // goes on after them.
        bucket.store.put(&middle, &original).unwrap();
        let b = bucket.start(disk.path(), &[]);
        let c = b.clients();
        assert_eq!(
            record_values(&fetch_all(&c, "t", 0, 0)),
            batches.concat(),
            "{damage}"
        );
        let (base, _) = uploaded(&c, "t", 0, &tagged("after", 5));
        assert_eq!(base, 60, "{damage}");
    }
}

#[test]
fn retention_that_removes_every_segment_leaves_the_next_offset_in_the_bucket() {
    let Some(endpoint) = s3::endpoint() else {
        return;
    };
    let bucket = Bucket::new(&endpoint, "retention-all");
    let disk_a = tempfile::tempdir().unwrap();
    let mut a = bucket.start(disk_a.path(), &["--retention-check-ms", "200"]);
    let c = a.clients();
    let mut req = pb::CreateTopicRequest::new();
    req.set_name("t".into());
    req.set_partitions(1);
    req.set_retention_ms(1);
    c.admin.create_topic(&req).unwrap();
    uploaded(&c, "t", 0, &tagged("old", 20));
    commit(&c, "g", 20).unwrap();
    let describe = |c: &common::Clients| {
        let mut req = pb::DescribeTopicRequest::new();
        req.set_name("t".into());
        let info = c.admin.describe_topic(&req).unwrap();
        let p = &info.get_partition_info()[0];
        (
            p.get_low_watermark(),
            p.get_high_watermark(),
            p.get_segment_count(),
        )
    };
    wait_for("retention to remove every segment", 20, || {
        describe(&c) == (20, 20, 0)
    });
    drop(c);
    assert!(a.sigterm_and_wait().success());

    // A lost disk: a node on an empty data dir continues at 20, and the
    // group reads what is written next.
    let disk_b = tempfile::tempdir().unwrap();
    let b = bucket.start(disk_b.path(), &[]);
    let c = b.clients();
    assert_eq!(describe(&c), (20, 20, 0));
    let (base, _) = uploaded(&c, "t", 0, &tagged("new", 5));
    assert_eq!(base, 20, "offsets 0..20 were handed out again");
    assert_eq!(committed(&c, "g"), Some(20));
    assert_eq!(record_values(&fetch_all(&c, "t", 0, 20)), tagged("new", 5));
}

#[test]
fn a_fenced_nodes_late_upload_never_replaces_the_new_owners_records() {
    let Some(endpoint) = s3::endpoint() else {
        return;
    };
    let bucket = Bucket::new(&endpoint, "late-upload");
    let (disk_a, disk_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // A: 10 records uploaded, 5 more only in its WAL (its segment seals 2 s
    // after its first record); then A is paused before it seals.
    let mut a = bucket.start(disk_a.path(), &["--segment-max-age-ms", "2000"]);
    let ca = a.clients();
    create(&ca, "t", 1);
    uploaded(&ca, "t", 0, &tagged("a-up", 10));
    produce(&ca, "t", Some(0), tagged_records("a-wal", 5)).unwrap();
    signal(&a, "-STOP");

    // B takes over and acknowledges 7 records at 10..17 (only in its WAL).
    let mut b = bucket.start(disk_b.path(), &[&["--take-over"][..], &NO_SEAL].concat());
    let cb = b.clients();
    let ack = produce(&cb, "t", Some(0), tagged_records("b", 7)).unwrap();
    assert_eq!(ack.get_acks()[0].get_base_offset(), 10);

    // A resumes: it seals and uploads its segment at 10 under its old
    // epoch, then finds at the commit that it is fenced.
    signal(&a, "-CONT");
    let late = |bucket: &Bucket| {
        segment_keys(bucket)
            .into_iter()
            .filter(|k| k.contains(&format!("/{:020}-1.seg", 10)))
            .count()
    };
    wait_for("A's late upload", 30, || late(&bucket) == 1);
    drop(ca);
    kill_9(&mut a);

    // B crashes and restarts: it serves its own records, not A's.
    drop(cb);
    kill_9(&mut b);
    let b = bucket.start(disk_b.path(), &NO_SEAL);
    let cb = b.clients();
    let want = [tagged("a-up", 10), tagged("b", 7)].concat();
    assert_eq!(record_values(&fetch_all(&cb, "t", 0, 0)), want);
    assert_eq!(late(&bucket), 0, "the fenced epoch's object is collected");
    drop(cb);

    // And again from the bucket alone, once B's records are uploaded.
    let mut b = b.restart();
    assert!(b.sigterm_and_wait().success());
    let disk_c = tempfile::tempdir().unwrap();
    let c = bucket.start(disk_c.path(), &[]);
    assert_eq!(record_values(&fetch_all(&c.clients(), "t", 0, 0)), want);
}

#[test]
fn a_fenced_node_changes_nothing_in_the_bucket() {
    let Some(endpoint) = s3::endpoint() else {
        return;
    };
    let bucket = Bucket::new(&endpoint, "fenced-writes");
    let (disk_a, disk_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = bucket.start(disk_a.path(), &NO_SEAL);
    let ca = a.clients();
    create(&ca, "t", 1);
    uploaded(&ca, "t", 0, &tagged("a", 10));
    produce(&ca, "t", Some(0), tagged_records("a-wal", 3)).unwrap();
    assert_eq!(fetch_all(&ca, "t", 0, 0).len(), 13);
    let b = bucket.start(disk_b.path(), &["--take-over"]);
    let cb = b.clients();

    // A deletes nothing: the call is refused, naming the new owner.
    let mut req = pb::DeleteTopicRequest::new();
    req.set_name("t".into());
    let (code, message) = failure(ca.admin.delete_topic(&req));
    assert_eq!(code, RpcStatusCode::UNAVAILABLE, "{message}");
    assert!(message.contains("owned by node"), "{message}");
    assert_eq!(record_values(&fetch_all(&cb, "t", 0, 0)), tagged("a", 10));

    // Idle, A learns within a few seconds that it is fenced, and refuses
    // group commits (which it would write into the checkpoint) and topics.
    wait_for("A to learn it is fenced", 15, || {
        commit(&ca, "g", 5).is_err()
    });
    let (code, message) = failure(commit(&ca, "g", 5));
    assert_eq!(code, RpcStatusCode::UNAVAILABLE, "{message}");
    // It serves reads of what it committed, not of records only its WAL
    // holds (they are not part of the new owner's history).
    assert_eq!(record_values(&fetch_all(&ca, "t", 0, 0)), tagged("a", 10));
    let mut req = pb::CreateTopicRequest::new();
    req.set_name("u".into());
    req.set_partitions(1);
    assert_eq!(
        failure(ca.admin.create_topic(&req)).0,
        RpcStatusCode::UNAVAILABLE
    );
    // Long enough for a checkpoint A would have written.
    std::thread::sleep(Duration::from_secs(6));
    drop(ca);
    drop(a);

    // B after a restart: the topic and its records are there, and no
    // offset of A's reached the checkpoint.
    drop(cb);
    let b = b.restart();
    let cb = b.clients();
    assert_eq!(record_values(&fetch_all(&cb, "t", 0, 0)), tagged("a", 10));
    assert_eq!(committed(&cb, "g"), None);
    assert!(!bucket.keys().iter().any(|k| k.starts_with("topics/u/")));
}

#[test]
fn group_offsets_restored_by_a_rebuild_never_point_past_its_log() {
    let Some(endpoint) = s3::endpoint() else {
        return;
    };
    let bucket = Bucket::new(&endpoint, "clamped-offsets");
    let (disk_a, disk_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a = bucket.start(disk_a.path(), &NO_SEAL);
    let ca = a.clients();
    create(&ca, "t", 1);
    uploaded(&ca, "t", 0, &tagged("up", 10));
    produce(&ca, "t", Some(0), tagged_records("wal", 10)).unwrap();
    // The group read all 20 and committed; the checkpoint reaches the
    // bucket, the 10 acks=wal records never do.
    commit(&ca, "g", 20).unwrap();
    wait_for("the group checkpoint", 15, || {
        bucket
            .store
            .get("groups/offsets")
            .is_ok_and(|b| String::from_utf8_lossy(&b).contains("\tt\t0\t20\t"))
    });
    drop(ca);
    kill_9(&mut a);

    let b = bucket.start(disk_b.path(), &["--take-over"]);
    let c = b.clients();
    assert_eq!(committed(&c, "g"), Some(10), "clamped to the rebuilt log");
    let (base, _) = uploaded(&c, "t", 0, &tagged("new", 3));
    assert_eq!(base, 10);
    assert_eq!(record_values(&fetch_all(&c, "t", 0, 10)), tagged("new", 3));
}
