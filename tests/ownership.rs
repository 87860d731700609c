//! One node per bucket prefix (real binaries, the S3 test server): a second
//! node refuses to start; `--take-over` raises the epoch and the old node is
//! fenced at its next segment commit; after kill -9 a new node takes over
//! and serves everything that was acknowledged as uploaded.

mod common;

use common::grpc::{
    create, fetch_all, produce, record, record_values, tagged, tagged_records, uploaded, NO_SEAL,
};
use common::s3::{self, Bucket};
use grpcio::RpcStatusCode;
use std::process::Command;
use streamhouse::proto as pb;

/// A node on `disk` that creates topic t (one partition), uploads
/// `uploaded_n` records `{tag}-up-i`, writes `wal_n` more `{tag}-wal-i`
/// with acks=wal only, and is killed -9 (the prefix stays held).
fn crash_with_wal_only(
    bucket: &Bucket,
    disk: &std::path::Path,
    tag: &str,
    uploaded_n: usize,
    wal_n: usize,
) {
    let mut a = bucket.start(disk, &NO_SEAL);
    let c = a.clients();
    create(&c, "t", 1);
    uploaded(&c, "t", 0, &tagged(&format!("{tag}-up"), uploaded_n));
    produce(
        &c,
        "t",
        Some(0),
        tagged_records(&format!("{tag}-wal"), wal_n),
    )
    .unwrap();
    a.child.kill().unwrap();
    a.child.wait().unwrap();
}

/// streamhoused on `disk` against `endpoint`/`prefix` with no flag, run to
/// its exit (a start that is refused).
fn refused_start(disk: &std::path::Path, endpoint: &str, prefix: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_streamhoused"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--kafka-listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(disk)
        .args(s3::flags(endpoint, prefix))
        .env("STREAMHOUSE_LOG", "off")
        .output()
        .unwrap()
}

#[test]
fn a_second_node_refuses_a_held_prefix_and_take_over_fences_the_first() {
    let Some(endpoint) = s3::endpoint() else {
        return;
    };
    let bucket = Bucket::new(&endpoint, "owner");
    let (disk_a, disk_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = bucket.start(disk_a.path(), &[]);
    let ca = a.clients();
    create(&ca, "t", 1);
    let before = tagged("before", 30);
    uploaded(&ca, "t", 0, &before);

    // B without --take-over: refused, naming the owner.
    let out = Command::new(env!("CARGO_BIN_EXE_streamhoused"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--kafka-listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(disk_b.path())
        .args(s3::flags(&endpoint, &bucket.prefix))
        .env("STREAMHOUSE_LOG", "off")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("is owned by node") && err.contains("--take-over"),
        "{err}"
    );

    // B with --take-over: rebuilt from the bucket, serving what A uploaded.
    let b = bucket.start(disk_b.path(), &["--take-over"]);
    let cb = b.clients();
    assert_eq!(record_values(&fetch_all(&cb, "t", 0, 0)), before);

    // A learns at its next segment commit: the acks=uploaded request is
    // refused, naming the new owner, and so is every produce after it.
    let mut req = pb::ProduceRequest::new();
    req.set_topic("t".into());
    req.set_partition(0);
    req.set_acks(pb::Acks::ACKS_UPLOADED);
    req.mut_records().push(record(b"", b"from-a", &[]));
    match ca.producer.produce(&req) {
        Err(grpcio::Error::RpcFailure(st)) => {
            assert_eq!(st.code(), RpcStatusCode::UNAVAILABLE, "{}", st.message());
            assert!(st.message().contains("owned by node"), "{}", st.message());
        }
        other => panic!("the fenced node acknowledged: {other:?}"),
    }
    match produce(&ca, "t", Some(0), vec![record(b"", b"again", &[])]) {
        Err(grpcio::Error::RpcFailure(st)) => assert_eq!(st.code(), RpcStatusCode::UNAVAILABLE),
        other => panic!("the fenced node acknowledged: {other:?}"),
    }

    // B goes on at the offset after A's acknowledged records; A's late
    // upload (under its old epoch's key) changed nothing B serves.
    let after = tagged("after", 10);
    let (base, _) = uploaded(&cb, "t", 0, &after);
    assert_eq!(base, before.len() as i64);
    let all = record_values(&fetch_all(&cb, "t", 0, 0));
    assert_eq!(all, [before, after].concat());

    // Two objects now start at that offset (A's, epoch 1; B's, epoch 2):
    // a restart of B keeps B's, and marks A's as superseded garbage.
    let at_base: Vec<String> = bucket
        .keys()
        .into_iter()
        .filter(|k| k.contains(&format!("/{base:020}-")) && k.ends_with(".seg"))
        .collect();
    assert_eq!(at_base.len(), 2, "{at_base:?}");
    drop(cb);
    let b = b.restart();
    let cb = b.clients();
    assert_eq!(record_values(&fetch_all(&cb, "t", 0, 0)), all);
    let left: Vec<String> = bucket
        .keys()
        .into_iter()
        .filter(|k| k.contains(&format!("/{base:020}-")) && k.ends_with(".seg"))
        .collect();
    assert_eq!(
        left.len(),
        1,
        "the superseded object was collected: {left:?}"
    );
    assert!(!left[0].ends_with("-1.seg"), "{left:?}");
}

#[test]
fn after_kill_9_a_new_node_takes_over_with_everything_uploaded() {
    let Some(endpoint) = s3::endpoint() else {
        return;
    };
    let bucket = Bucket::new(&endpoint, "kill9-owner");
    let disk = tempfile::tempdir().unwrap();
    let mut acked = Vec::new();
    {
        let mut a = bucket.start(disk.path(), &["--segment-max-bytes", "1KiB"]);
        let c = a.clients();
        create(&c, "t", 2);
        for round in 0..5 {
            for p in 0..2 {
                let v = tagged(&format!("r{round}-p{p}"), 20);
                let (base, _) = uploaded(&c, "t", p, &v);
                acked.push((p, base, v));
            }
        }
        a.child.kill().unwrap(); // kill -9: the prefix stays held
        a.child.wait().unwrap();
    }
    let fresh = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_streamhoused"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--kafka-listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(fresh.path())
        .args(s3::flags(&endpoint, &bucket.prefix))
        .env("STREAMHOUSE_LOG", "off")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "a held prefix is not taken silently"
    );
    let b = bucket.start(fresh.path(), &["--take-over"]);
    let c = b.clients();
    for p in 0..2 {
        let got = fetch_all(&c, "t", p, 0);
        for (_, base, v) in acked.iter().filter(|(q, _, _)| *q == p) {
            let at = &got[*base as usize..*base as usize + v.len()];
            assert_eq!(&record_values(at), v, "partition {p} at {base}");
        }
    }
}

#[test]
fn a_node_whose_prefix_was_taken_over_sets_its_wal_aside_instead_of_replaying_it() {
    let Some(endpoint) = s3::endpoint() else {
        return;
    };
    let bucket = Bucket::new(&endpoint, "superseded");
    let (disk_a, disk_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // A: 100 records uploaded, 50 more only in its WAL; then kill -9.
    crash_with_wal_only(&bucket, disk_a.path(), "a", 100, 50);
    // B takes over (A's 50 are lost with A), writes 30 at 100..130, and
    // stops cleanly: the prefix is released.
    let mut b = bucket.start(disk_b.path(), &["--take-over"]);
    let cb = b.clients();
    let (base, _) = uploaded(&cb, "t", 0, &tagged("b", 30));
    assert_eq!(base, 100);
    drop(cb);
    assert!(b.sigterm_and_wait().success());

    // A again, on its old data dir, no flag: it serves B's history, not
    // its own WAL's records after B's (they would take offsets 130..150).
    let a = bucket.start(disk_a.path(), &NO_SEAL);
    let c = a.clients();
    let want = [tagged("a-up", 100), tagged("b", 30)].concat();
    assert_eq!(record_values(&fetch_all(&c, "t", 0, 0)), want);
    let (next, _) = uploaded(&c, "t", 0, &tagged("a-again", 1));
    assert_eq!(next, 130);
    // Set aside, not deleted: the bytes are there for a person.
    assert_eq!(superseded_dirs(disk_a.path()), 1);
}

/// WAL directories set aside because another node's history superseded them.
fn superseded_dirs(disk: &std::path::Path) -> usize {
    std::fs::read_dir(disk)
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("wal.superseded")
        })
        .count()
}

#[test]
fn a_clean_stop_uploads_what_it_accepted_and_releases_the_prefix_only_then() {
    let Some(endpoint) = s3::endpoint() else {
        return;
    };
    let no_seal = NO_SEAL;
    // A clean stop with the store up: the active segments are sealed and
    // uploaded, so a node on an empty data dir starts without a flag and
    // has every acks=wal record.
    let bucket = Bucket::new(&endpoint, "clean-stop");
    let disk_a = tempfile::tempdir().unwrap();
    let mut a = bucket.start(disk_a.path(), &no_seal);
    let c = a.clients();
    create(&c, "t", 2);
    produce(&c, "t", Some(0), tagged_records("p0", 40)).unwrap();
    produce(&c, "t", Some(1), tagged_records("p1", 30)).unwrap();
    drop(c);
    assert!(a.sigterm_and_wait().success());
    let disk_b = tempfile::tempdir().unwrap();
    let mut b = bucket.start(disk_b.path(), &no_seal);
    let c = b.clients();
    assert_eq!(record_values(&fetch_all(&c, "t", 0, 0)), tagged("p0", 40));
    assert_eq!(record_values(&fetch_all(&c, "t", 1, 0)), tagged("p1", 30));
    drop(c);
    assert!(b.sigterm_and_wait().success());

    // The store down at the stop: the records stay in the WAL and the
    // prefix stays held, so a node elsewhere cannot start without
    // --take-over (it would not have them); the same data dir uploads them.
    let proxy = s3::Proxy::start(&endpoint);
    let bucket = Bucket::new(&proxy.endpoint(), "held-stop");
    let disk_a = tempfile::tempdir().unwrap();
    let mut a = bucket.start(disk_a.path(), &no_seal);
    let c = a.clients();
    create(&c, "t", 1);
    produce(&c, "t", Some(0), tagged_records("held", 25)).unwrap();
    drop(c);
    proxy.set_up(false);
    assert!(a.sigterm_and_wait().success());
    proxy.set_up(true);
    let elsewhere = tempfile::tempdir().unwrap();
    let out = refused_start(elsewhere.path(), &proxy.endpoint(), &bucket.prefix);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is owned by node"), "{err}");
    assert!(!err.contains("cannot read the bucket"), "{err}");
    let a = bucket.start(disk_a.path(), &no_seal);
    let c = a.clients();
    assert_eq!(record_values(&fetch_all(&c, "t", 0, 0)), tagged("held", 25));
}

#[test]
fn a_refused_start_has_already_set_aside_a_wal_that_another_node_superseded() {
    let Some(endpoint) = s3::endpoint() else {
        return;
    };
    let bucket = Bucket::new(&endpoint, "superseded-early");
    let (disk_a, disk_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    crash_with_wal_only(&bucket, disk_a.path(), "a", 10, 20);
    let mut b = bucket.start(disk_b.path(), &["--take-over"]);
    // A tries while B holds the prefix: refused, and its WAL is already
    // aside (a start that took the record and crashed before setting it
    // aside would otherwise find it next time, under its own name).
    let out = refused_start(disk_a.path(), &endpoint, &bucket.prefix);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(superseded_dirs(disk_a.path()), 1);
    let cb = b.clients();
    uploaded(&cb, "t", 0, &tagged("b", 5));
    drop(cb);
    assert!(b.sigterm_and_wait().success());
    let a = bucket.start(disk_a.path(), &NO_SEAL);
    let want = [tagged("a-up", 10), tagged("b", 5)].concat();
    assert_eq!(record_values(&fetch_all(&a.clients(), "t", 0, 0)), want);
}

#[test]
fn a_node_that_lost_its_metadata_file_keeps_its_name_and_replays_its_wal() {
    let Some(endpoint) = s3::endpoint() else {
        return;
    };
    let bucket = Bucket::new(&endpoint, "lost-meta");
    let disk = tempfile::tempdir().unwrap();
    crash_with_wal_only(&bucket, disk.path(), "a", 10, 20);
    // The metadata file is gone (rebuilt from the bucket); the WAL is not.
    for entry in std::fs::read_dir(disk.path()).unwrap().flatten() {
        if entry
            .file_name()
            .to_string_lossy()
            .starts_with("meta.sqlite")
        {
            std::fs::remove_file(entry.path()).unwrap();
        }
    }
    // Same node (NODE_ID): no --take-over, and the acks=wal records are back.
    let a = bucket.start(disk.path(), &NO_SEAL);
    let want = [tagged("a-up", 10), tagged("a-wal", 20)].concat();
    assert_eq!(record_values(&fetch_all(&a.clients(), "t", 0, 0)), want);
}

/// On a store that ignores conditional writes (a store mode of the memory
/// store: the headers are accepted and dropped) a take-over cannot fence a
/// node that still runs: it is refused until the operator says the old
/// owner is dead, and each node puts its id in its segment keys, so two
/// nodes that both believe they hold an epoch never write the same key.
#[test]
fn a_take_over_on_a_store_without_conditional_writes_needs_the_operators_word() {
    use common::engine::{config, topic, wait_uploaded};
    use streamhouse::object_store::{Faults, MemoryStore, ObjectStore};
    use streamhouse::{Acks, Engine, Error, Record};

    let store = std::sync::Arc::new(MemoryStore::new());
    store.set_faults(Faults {
        ignore_if_match: true,
        ..Default::default()
    });
    let (disk_a, disk_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = Engine::open(config(disk_a.path()), store.clone()).unwrap();
    a.create_topic(&topic("t", 1)).unwrap();
    let one = || {
        vec![Record {
            value: Some(b"v".to_vec()),
            ..Default::default()
        }]
    };
    a.produce_sync("t", 0, one(), Acks::Uploaded).unwrap();

    let mut c = config(disk_b.path());
    c.take_over = true;
    match Engine::open(c.clone(), store.clone()) {
        Err(Error::Unavailable(m)) => {
            assert!(m.contains("--old-owner-is-dead"), "{m}");
            assert!(m.contains("ignores conditional writes"), "{m}");
        }
        Err(e) => panic!("expected UNAVAILABLE, got {e:?}"),
        Ok(_) => panic!("a take-over on a store without conditional writes went ahead"),
    }
    c.old_owner_is_dead = true;
    let b = Engine::open(c, store.clone()).unwrap();
    b.produce_sync("t", 0, one(), Acks::Uploaded).unwrap();
    wait_uploaded(&b);
    let segments: Vec<String> = store
        .list("topics/")
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .filter(|k| k.ends_with(".seg"))
        .collect();
    assert_eq!(segments.len(), 2, "{segments:?}");
    let ids: Vec<String> = [&disk_a, &disk_b]
        .iter()
        .map(|d| {
            std::fs::read_to_string(d.path().join("NODE_ID"))
                .unwrap()
                .trim()
                .to_string()
        })
        .collect();
    for (key, id) in segments.iter().zip(&ids) {
        assert!(
            key.ends_with(&format!("-{id}.seg")),
            "{key} names its writer {id}"
        );
    }
    drop(a);
}
