//! Nothing waits forever (real binary): a segment object that is missing or
//! shorter than its metadata says answers DATA_LOSS naming the object; a
//! partition that cannot be opened answers UNAVAILABLE while the node serves
//! the others; `acks=uploaded` requests still waiting when uploads stop are
//! answered.

mod common;

use common::grpc::{create, fetch, produce, record, uploaded};
use common::{local_segments, TestServer};
use grpcio::{RpcStatus, RpcStatusCode};
use std::time::Duration;
use streamhouse::proto as pb;

fn failure<T: std::fmt::Debug>(r: grpcio::Result<T>) -> RpcStatus {
    match r {
        Err(grpcio::Error::RpcFailure(st)) => st,
        other => panic!("expected an RPC failure, got {other:?}"),
    }
}

#[test]
fn a_missing_or_short_segment_object_is_data_loss_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start_in(
        dir.path(),
        &["--segment-max-bytes", "1KiB", "--segment-max-age-ms", "50"],
    );
    let c = s.clients();
    create(&c, "t", 1);
    for i in 0..10 {
        let values: Vec<String> = (0..10)
            .map(|j| format!("value-{i}-{j}-padding-padding"))
            .collect();
        uploaded(&c, "t", 0, &values);
    }
    let segs = local_segments(dir.path(), "t", 0);
    assert!(segs.len() >= 4, "{segs:?}");
    let (missing_base, missing) = &segs[1];
    let (short_base, short) = &segs[2];
    std::fs::remove_file(missing).unwrap();
    let len = std::fs::metadata(short).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(short)
        .unwrap()
        .set_len(len / 2)
        .unwrap();

    for (base, path, what) in [
        (missing_base, missing, "is missing"),
        (short_base, short, "is shorter than its metadata says"),
    ] {
        let st = failure(fetch(&c, "t", 0, *base));
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        assert_eq!(st.code(), RpcStatusCode::DATA_LOSS, "{}", st.message());
        assert!(st.message().contains(&name), "{}", st.message());
        assert!(st.message().contains(what), "{}", st.message());
    }
    // What comes before the damage is answered, ending where it starts; the
    // rest of the partition is still served, and so are writes.
    let first = fetch(&c, "t", 0, 0).unwrap();
    assert_eq!(first.get_records().len() as i64, *missing_base);
    assert_eq!(first.get_next_offset(), *missing_base);
    let (last_base, _) = segs.last().unwrap();
    assert!(!fetch(&c, "t", 0, *last_base)
        .unwrap()
        .get_records()
        .is_empty());
    produce(&c, "t", Some(0), vec![record(b"", b"still serving", &[])]).unwrap();
}

#[test]
fn a_partition_that_cannot_open_is_isolated_and_the_node_serves_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = TestServer::start_in(dir.path(), &[]);
    let c = s.clients();
    create(&c, "t", 3);
    for p in 0..3 {
        let v = format!("before-{p}");
        produce(&c, "t", Some(p), vec![record(b"", v.as_bytes(), &[])]).unwrap();
    }
    drop(c);
    assert!(s.sigterm_and_wait().success());
    // Partition 1's WAL directory is replaced by a file: it cannot be opened
    // (permissions would not stop a test running as root).
    let wal = dir.path().join("wal/t/1");
    assert!(wal.is_dir(), "{wal:?}");
    std::fs::remove_dir_all(&wal).unwrap();
    std::fs::write(&wal, b"not a directory").unwrap();

    let s = s.restart();
    let c = s.clients();
    for r in [
        produce(&c, "t", Some(1), vec![record(b"", b"x", &[])]).map(|_| ()),
        fetch(&c, "t", 1, 0).map(|_| ()),
    ] {
        let st = failure(r);
        assert_eq!(st.code(), RpcStatusCode::UNAVAILABLE, "{}", st.message());
        assert!(
            st.message().contains("t/1 could not be opened"),
            "{}",
            st.message()
        );
    }
    // A keyed request spread over all three partitions is refused whole:
    // nothing reaches partitions 0 and 2 either.
    let keyed: Vec<_> = (0..30)
        .map(|i| record(format!("key-{i}").as_bytes(), b"spread", &[]))
        .collect();
    let st = failure(produce(&c, "t", None, keyed));
    assert_eq!(st.code(), RpcStatusCode::UNAVAILABLE, "{}", st.message());
    for p in [0, 2] {
        assert_eq!(fetch(&c, "t", p, 0).unwrap().get_high_watermark(), 1);
    }
    for p in [0, 2] {
        let v = format!("after-{p}");
        produce(&c, "t", Some(p), vec![record(b"", v.as_bytes(), &[])]).unwrap();
        let got: Vec<_> = fetch(&c, "t", p, 0)
            .unwrap()
            .get_records()
            .iter()
            .map(|r| String::from_utf8_lossy(r.get_value()).to_string())
            .collect();
        assert_eq!(got, [format!("before-{p}"), format!("after-{p}")]);
    }
    // Other topics are unaffected.
    create(&c, "other", 1);
    produce(&c, "other", Some(0), vec![record(b"", b"y", &[])]).unwrap();
}

#[test]
fn waiting_uploaded_acks_are_answered_when_uploads_stop() {
    let Some(endpoint) = common::s3::endpoint() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let proxy = common::s3::Proxy::start(&endpoint);
    let bucket = common::s3::Bucket::new(&proxy.endpoint(), "acks");
    let mut s = bucket.start(dir.path(), &["--segment-max-age-ms", "50"]);
    let c = s.clients();
    create(&c, "t", 1);
    proxy.set_up(false);
    let addr = s.addr.clone();
    let waiting = std::thread::spawn(move || {
        let c = common::clients_for(&addr);
        let mut req = pb::ProduceRequest::new();
        req.set_topic("t".into());
        req.set_partition(0);
        req.set_acks(pb::Acks::ACKS_UPLOADED);
        req.mut_records()
            .push(record(b"", b"waits for the store", &[]));
        c.producer.produce(&req)
    });
    // The request is in the WAL and waits for an upload that cannot happen.
    std::thread::sleep(Duration::from_millis(500));
    assert!(!waiting.is_finished(), "answered while the store is down");
    assert!(s.sigterm_and_wait().success());
    let st = failure(waiting.join().unwrap());
    assert_eq!(st.code(), RpcStatusCode::UNAVAILABLE, "{}", st.message());
    assert!(
        st.message().contains("uploads stopped"),
        "answered by the engine, not by a dropped connection: {}",
        st.message()
    );
    drop(c);
    // The record was in the WAL: it is there after a restart.
    proxy.set_up(true);
    let s = s.restart();
    let c = s.clients();
    let got = fetch(&c, "t", 0, 0).unwrap();
    assert_eq!(got.get_records().len(), 1);
    assert_eq!(got.get_records()[0].get_value(), b"waits for the store");
}

/// Long polls whose deadline has passed by the time they park (readers
/// backed up) are fired by the timer thread while they are still being
/// parked, and appends wake others at the same moment: every one is
/// answered, produce goes on, and the engine stops. (A lock-order cycle
/// between parking and firing once hung every reader, produce and SIGTERM.)
#[test]
fn long_polls_parked_and_fired_at_once_are_all_answered() {
    use common::engine::{config, topic};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use streamhouse::object_store::MemoryStore;
    use streamhouse::{Acks, Engine, FetchRequest, Record};

    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.reader_threads = 1;
    let engine = Engine::open(c, Arc::new(MemoryStore::new())).unwrap();
    engine.create_topic(&topic("t", 1)).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let producer = {
        let (engine, stop) = (Arc::clone(&engine), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                let r = vec![Record {
                    value: Some(b"x".to_vec()),
                    ..Default::default()
                }];
                engine.produce_sync("t", 0, r, Acks::None).unwrap();
                n += 1;
                std::thread::sleep(Duration::from_micros(200));
            }
            n
        })
    };
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let pollers = {
        let engine = Arc::clone(&engine);
        std::thread::spawn(move || {
            for _ in 0..20 {
                let high = engine.list_offsets_sync("t", 0, -1).unwrap();
                let waits: Vec<_> = (0..2_000)
                    .filter_map(|_| {
                        let req = FetchRequest {
                            offset: high,
                            max_records: 1,
                            max_bytes: 0,
                            max_wait: Duration::from_millis(1),
                        };
                        engine.fetch("t", 0, req).ok()
                    })
                    .collect();
                for w in waits {
                    let _ = futures::executor::block_on(w);
                }
            }
            let _ = done_tx.send(());
        })
    };
    let answered = done_rx.recv_timeout(Duration::from_secs(120)).is_ok();
    stop.store(true, Ordering::SeqCst);
    if !answered {
        // Hung: stopping the engine would hang too.
        std::mem::forget(engine);
        panic!("long polls were never answered (a deadlock between parking and firing)");
    }
    pollers.join().unwrap();
    assert!(producer.join().unwrap() > 0);
    engine.shutdown(Duration::from_secs(2));
}
