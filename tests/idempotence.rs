//! Exactly-once produce with the real binaries: a batch sent again is
//! answered with its original offsets (`duplicate`), before and after
//! kill -9, after its segment is uploaded and its WAL trimmed, and on a
//! node rebuilt from the bucket; fenced epochs, gaps and unknown ids get
//! their status codes; a client that retries every failure while the
//! server is killed again and again writes every record once, in order.

mod common;

use common::grpc::{code, create, fetch_all, record};
use common::s3::{self, Bucket};
use common::{clients_for, Clients, TestServer};
use grpcio::RpcStatusCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use streamhouse::proto as pb;

fn init(c: &Clients, name: &str) -> (u64, u32) {
    let mut req = pb::InitProducerRequest::new();
    req.set_producer_name(name.into());
    let r = c.producer.init_producer(&req).unwrap();
    (r.get_producer_id(), r.get_epoch())
}

/// A batch of `n` records `{tag}-{seq}` for sequence numbers `seq..seq + n`.
fn batch(
    topic: &str,
    partition: u32,
    (id, epoch): (u64, u32),
    seq: i64,
    n: i64,
    acks: pb::Acks,
) -> pb::ProduceRequest {
    let mut req = pb::ProduceRequest::new();
    req.set_topic(topic.into());
    req.set_partition(partition);
    req.set_producer_id(id);
    req.set_producer_epoch(epoch);
    req.set_first_sequence(seq);
    req.set_acks(acks);
    for s in seq..seq + n {
        req.mut_records()
            .push(record(b"k", format!("r{s}").as_bytes(), &[("h", b"v")]));
    }
    req
}

/// Sends `req`; returns (base offset, count, duplicate).
fn send(c: &Clients, req: &pb::ProduceRequest) -> grpcio::Result<(i64, i64, bool)> {
    let r = c.producer.produce(req)?;
    assert!(r.get_errors().is_empty(), "{:?}", r.get_errors());
    let a = &r.get_acks()[0];
    Ok((a.get_base_offset(), a.get_count(), a.get_duplicate()))
}

fn values(c: &Clients, topic: &str, partition: u32) -> Vec<String> {
    fetch_all(c, topic, partition, 0)
        .iter()
        .map(|r| {
            assert_eq!(r.get_headers().len(), 1, "headers kept");
            String::from_utf8(r.get_value().to_vec()).unwrap()
        })
        .collect()
}

fn kill_9(mut s: TestServer) -> (std::path::PathBuf, Vec<String>) {
    s.child.kill().unwrap();
    s.child.wait().unwrap();
    (s.dir.clone(), s.extra.clone())
}

#[test]
fn a_retried_batch_is_written_once_before_and_after_kill_9_and_wal_trimming() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start_in(dir.path(), &[]);
    let c = s.clients();
    create(&c, "t", 1);
    let p = init(&c, "");
    let (wal, up) = (pb::Acks::ACKS_WAL, pb::Acks::ACKS_UPLOADED);
    let a = batch("t", 0, p, 0, 10, wal);
    assert_eq!(send(&c, &a).unwrap(), (0, 10, false));
    assert_eq!(
        send(&c, &a).unwrap(),
        (0, 10, true),
        "a retry, same offsets"
    );
    // Uploaded and committed: its WAL file is trimmed, the producer state
    // lives on in the segment's metadata.
    let b = batch("t", 0, p, 10, 10, up);
    assert_eq!(send(&c, &b).unwrap(), (10, 10, false));
    assert_eq!(send(&c, &b).unwrap(), (10, 10, true));
    // Only in the WAL.
    let wal_only = batch("t", 0, p, 20, 5, wal);
    assert_eq!(send(&c, &wal_only).unwrap(), (20, 5, false));

    let (d, _) = kill_9(s);
    let s = TestServer::start_in(&d, &[]);
    let c = s.clients();
    assert_eq!(send(&c, &wal_only).unwrap(), (20, 5, true), "from the WAL");
    assert_eq!(send(&c, &b).unwrap(), (10, 10, true), "from metadata");
    assert_eq!(send(&c, &a).unwrap(), (0, 10, true));
    // An acks=uploaded retry of a batch committed long ago is answered.
    assert_eq!(
        send(&c, &batch("t", 0, p, 10, 10, up)).unwrap(),
        (10, 10, true)
    );
    let next = batch("t", 0, p, 25, 3, up);
    assert_eq!(send(&c, &next).unwrap(), (25, 3, false));
    // Restart again, with the whole state committed and the WAL trimmed.
    let s = s.restart();
    let c = s.clients();
    assert_eq!(send(&c, &next).unwrap(), (25, 3, true));
    assert_eq!(send(&c, &wal_only).unwrap(), (20, 5, true));
    let want: Vec<String> = (0..28).map(|s| format!("r{s}")).collect();
    assert_eq!(values(&c, "t", 0), want, "every record once, in order");
}

#[test]
fn fenced_epochs_gaps_and_unknown_ids_get_their_status_codes() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start_in(dir.path(), &[]);
    let c = s.clients();
    create(&c, "t", 2);
    let wal = pb::Acks::ACKS_WAL;
    let fail = |req: &pb::ProduceRequest| match c.producer.produce(req) {
        Err(grpcio::Error::RpcFailure(s)) => (s.code(), s.message().to_string()),
        other => panic!("expected a failure, got {other:?}"),
    };

    let (id, e0) = init(&c, "billing");
    assert_eq!(e0, 0);
    send(&c, &batch("t", 0, (id, 0), 0, 2, wal)).unwrap();
    let (again, e1) = init(&c, "billing");
    assert_eq!(
        (again, e1),
        (id, 1),
        "a name keeps its id; the epoch goes up"
    );
    // The old epoch is fenced on the partition the new one has not
    // written to yet (the node's registry) and on the one it has.
    let (st, msg) = fail(&batch("t", 1, (id, 0), 0, 1, wal));
    assert_eq!(st, RpcStatusCode::ABORTED, "{msg}");
    assert!(msg.contains("fenced"), "{msg}");
    send(&c, &batch("t", 0, (id, 1), 0, 1, wal)).unwrap();
    assert_eq!(
        fail(&batch("t", 0, (id, 0), 2, 1, wal)).0,
        RpcStatusCode::ABORTED
    );
    let (st, msg) = fail(&batch("t", 0, (id, 7), 1, 1, wal));
    assert_eq!(st, RpcStatusCode::INVALID_ARGUMENT, "{msg}");

    // A sequence that skips ahead. The first batch on a partition starts
    // at 0: one that overtook it in flight is refused, so the batch at 0
    // is then written rather than taken for written (which lost it).
    let p = init(&c, "");
    assert_ne!(p.0, id);
    let (st, msg) = fail(&batch("t", 1, p, 3, 1, wal));
    assert_eq!(st, RpcStatusCode::FAILED_PRECONDITION, "{msg}");
    assert!(msg.contains("expected is 0"), "{msg}");
    assert_eq!(
        send(&c, &batch("t", 1, p, 0, 3, wal)).unwrap(),
        (0, 3, false)
    );
    let (st, msg) = fail(&batch("t", 1, p, 5, 1, wal));
    assert_eq!(st, RpcStatusCode::FAILED_PRECONDITION, "{msg}");
    assert!(msg.contains("expected is 3"), "{msg}");
    // The same sequence with other records.
    assert_eq!(
        fail(&batch("t", 1, p, 0, 2, wal)).0,
        RpcStatusCode::FAILED_PRECONDITION
    );
    // Older than the five batches kept: written, offsets forgotten.
    for i in 0..5 {
        send(&c, &batch("t", 1, p, 3 + i, 1, wal)).unwrap();
    }
    let (st, msg) = fail(&batch("t", 1, p, 0, 3, wal));
    assert_eq!(st, RpcStatusCode::ALREADY_EXISTS, "{msg}");

    let (st, msg) = fail(&batch("t", 0, (987_654, 0), 0, 1, wal));
    assert_eq!(st, RpcStatusCode::NOT_FOUND, "{msg}");
    assert!(msg.contains("unknown producer id 987654"), "{msg}");
    let mut keyed = batch("t", 0, p, 8, 1, wal);
    keyed.clear_partition();
    assert_eq!(
        code(c.producer.produce(&keyed)),
        RpcStatusCode::INVALID_ARGUMENT
    );
    assert_eq!(
        fail(&batch("t", 0, p, -1, 1, wal)).0,
        RpcStatusCode::INVALID_ARGUMENT
    );
    let mut long = pb::InitProducerRequest::new();
    long.set_producer_name("x".repeat(300));
    assert_eq!(
        code(c.producer.init_producer(&long)),
        RpcStatusCode::INVALID_ARGUMENT
    );
    // Nothing refused was written: 2 + 1 on partition 0, 3 + 5 on 1.
    assert_eq!(values(&c, "t", 0).len(), 3);
    assert_eq!(values(&c, "t", 1).len(), 8);
}

/// The server's address, followed by a client across restarts.
struct Target {
    addr: Mutex<String>,
}

/// Produces batches of 20 records `r{seq}` until `stop`, retrying every
/// failed call (any status) with the same batch until it is acknowledged.
/// Returns (records acknowledged, duplicates answered, retries).
fn produce_until_stopped(target: &Target, stop: &AtomicBool) -> (i64, u64, u64) {
    let mut clients: Option<(String, Clients)> = None;
    let mut producer = None;
    let (mut seq, mut dups, mut retries) = (0i64, 0u64, 0u64);
    while !stop.load(Ordering::SeqCst) {
        let addr = target.addr.lock().unwrap().clone();
        if clients.as_ref().is_none_or(|(a, _)| *a != addr) {
            clients = Some((addr.clone(), clients_for(&addr)));
        }
        let c = &clients.as_ref().unwrap().1;
        if producer.is_none() {
            let mut req = pb::InitProducerRequest::new();
            req.set_producer_name("looper".into());
            match c.producer.init_producer(&req) {
                Ok(r) => producer = Some((r.get_producer_id(), r.get_epoch())),
                Err(_) => {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                }
            }
        }
        let req = batch("t", 0, producer.unwrap(), seq, 20, pb::Acks::ACKS_WAL);
        let opt = grpcio::CallOption::default().timeout(Duration::from_secs(2));
        match c.producer.produce_opt(&req, opt) {
            Ok(r) => {
                let a = &r.get_acks()[0];
                assert_eq!(a.get_count(), 20);
                dups += u64::from(a.get_duplicate());
                seq += 20;
            }
            Err(_) => {
                retries += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
    (seq, dups, retries)
}

#[test]
fn a_retrying_client_writes_every_record_once_in_order_across_repeated_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let flags = ["--segment-max-bytes", "8KiB", "--segment-max-age-ms", "100"];
    let mut s = TestServer::start_in(dir.path(), &flags);
    create(&s.clients(), "t", 1);
    let target = Arc::new(Target {
        addr: Mutex::new(s.addr.clone()),
    });
    let stop = Arc::new(AtomicBool::new(false));
    let progress = Arc::new(AtomicU64::new(0));
    let client = {
        let (target, stop, _progress) = (target.clone(), stop.clone(), progress.clone());
        std::thread::spawn(move || produce_until_stopped(&target, &stop))
    };
    let kills = 5;
    for round in 0..kills {
        // Kill at a different moment of each round (mid-request, mid-upload).
        std::thread::sleep(Duration::from_millis(300 + 170 * round));
        let (d, _) = kill_9(s);
        s = TestServer::start_in(&d, &flags);
        *target.addr.lock().unwrap() = s.addr.clone();
    }
    let t = Instant::now();
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::SeqCst);
    let (acked, dups, retries) = client.join().unwrap();
    eprintln!(
        "{kills} kills: {acked} records acknowledged, {retries} failed calls retried, {dups} answered as duplicates ({:?} after the last restart)",
        t.elapsed()
    );
    assert!(acked >= 200, "the client made progress: {acked}");
    let got = values(&s.clients(), "t", 0);
    // Every acknowledged record exactly once, in order; a batch in flight
    // when the client stopped may be there too (written, never answered).
    assert!(got.len() as i64 >= acked, "{} < {acked}", got.len());
    assert!(got.len() as i64 <= acked + 20);
    for (i, v) in got.iter().enumerate() {
        assert_eq!(v, &format!("r{i}"), "offset {i}");
    }
}

#[test]
fn a_node_rebuilt_from_the_bucket_keeps_producer_state_names_and_ids() {
    let Some(endpoint) = s3::endpoint() else {
        return;
    };
    let bucket = Bucket::new(&endpoint, "idempotence-rebuild");
    let dir = tempfile::tempdir().unwrap();
    let s = bucket.start(dir.path(), &[]);
    let c = s.clients();
    create(&c, "t", 1);
    let up = pb::Acks::ACKS_UPLOADED;
    let anon = init(&c, "");
    let named = init(&c, "svc");
    let a = batch("t", 0, anon, 0, 5, up);
    let b = batch("t", 0, named, 0, 4, up);
    assert_eq!(send(&c, &a).unwrap(), (0, 5, false));
    assert_eq!(send(&c, &b).unwrap(), (5, 4, false));
    assert!(
        bucket.keys().iter().any(|k| k.ends_with(".producers")),
        "the producer table is beside the segment"
    );
    // The node and its disk are lost; a new one takes the prefix over.
    kill_9(s);
    let fresh = tempfile::tempdir().unwrap();
    let s = bucket.start(fresh.path(), &["--take-over"]);
    let c = s.clients();
    assert_eq!(send(&c, &a).unwrap(), (0, 5, true));
    assert_eq!(send(&c, &b).unwrap(), (5, 4, true));
    assert_eq!(
        send(&c, &batch("t", 0, anon, 5, 1, up)).unwrap(),
        (9, 1, false)
    );
    // The name keeps its id and its epoch goes on; new ids are new.
    let again = init(&c, "svc");
    assert_eq!(again, (named.0, named.1 + 1));
    let fresh_id = init(&c, "").0;
    assert!(
        fresh_id != anon.0 && fresh_id != named.0,
        "ids are never reused"
    );
    assert_eq!(
        code(c.producer.produce(&batch("t", 0, named, 4, 1, up))),
        RpcStatusCode::ABORTED
    );
    assert_eq!(values(&c, "t", 0).len(), 10);
}

/// A port nobody listens on now.
fn free_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

#[test]
fn streamctl_produce_retries_through_kill_9_and_writes_each_line_once() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let mut s = TestServer::start_at(dir.path(), &addr, &[]);
    create(&s.clients(), "t", 3);
    let mut ctl = s
        .ctl()
        .args(["produce", "t", "--key-separator", ",", "--batch", "100"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Lines arrive over ~2 s, from a thread of their own (a writer that
    // waited for the kills could fill the pipe while streamctl retries).
    let mut stdin = ctl.stdin.take().unwrap();
    let feeder = std::thread::spawn(move || {
        for chunk in 0..40 {
            let text: String = (chunk * 500..(chunk + 1) * 500)
                .map(|i| format!("k{},v{i}\n", i % 37))
                .collect();
            stdin.write_all(text.as_bytes()).unwrap();
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(400));
        assert!(
            ctl.try_wait().unwrap().is_none(),
            "killed while streamctl sends"
        );
        let (d, _) = kill_9(s);
        std::thread::sleep(Duration::from_millis(300));
        s = TestServer::start_at(&d, &addr, &[]);
    }
    feeder.join().unwrap();
    let out = ctl.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let c = s.clients();
    let mut seen = vec![0u32; 20_000];
    for p in 0..3u32 {
        let mut last_per_key = std::collections::HashMap::new();
        for r in fetch_all(&c, "t", p, 0) {
            let key = String::from_utf8(r.get_key().to_vec()).unwrap();
            let i: usize = std::str::from_utf8(&r.get_value()[1..])
                .unwrap()
                .parse()
                .unwrap();
            // Where the server's key hash would have put it, in order.
            assert_eq!(
                streamhouse::server::partitioner::partition_for_key(key.as_bytes(), 3),
                p
            );
            if let Some(prev) = last_per_key.insert(key, i) {
                assert!(prev < i, "per-key order: {prev} then {i}");
            }
            seen[i] += 1;
        }
    }
    let wrong: Vec<(usize, u32)> = seen
        .iter()
        .enumerate()
        .filter(|(_, n)| **n != 1)
        .map(|(i, n)| (i, *n))
        .take(10)
        .collect();
    assert!(
        wrong.is_empty(),
        "lines not written exactly once: {wrong:?}"
    );
}

#[test]
fn streamctl_produce_goes_on_as_a_new_producer_when_a_partition_forgot_it() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let extra = ["--producer-expiry-ms", "300", "--segment-max-age-ms", "50"];
    let s = TestServer::start_in(dir.path(), &extra);
    let c = s.clients();
    create(&c, "t", 1);
    let mut ctl = s
        .ctl()
        .args(["produce", "t", "--partition", "0", "--batch", "5"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = ctl.stdin.take().unwrap();
    let lines =
        |from: usize| -> String { (from..from + 10).map(|i| format!("line-{i}\n")).collect() };
    stdin.write_all(lines(0).as_bytes()).unwrap();
    stdin.flush().unwrap();
    // Idle past the expiry; another writer's record makes the partition
    // seal, and the seal forgets the idle producer.
    std::thread::sleep(Duration::from_millis(500));
    let mut other = pb::ProduceRequest::new();
    other.set_topic("t".into());
    other.set_partition(0);
    other.mut_records().push(record(b"", b"other", &[]));
    c.producer.produce(&other).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    stdin.write_all(lines(10).as_bytes()).unwrap();
    drop(stdin);
    let out = ctl.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("lost this producer's state"), "{err}");
    let got: Vec<String> = fetch_all(&c, "t", 0, 0)
        .iter()
        .map(|r| String::from_utf8_lossy(r.get_value()).into_owned())
        .collect();
    let mine: Vec<&String> = got.iter().filter(|v| v.starts_with("line-")).collect();
    let want: Vec<String> = (0..20).map(|i| format!("line-{i}")).collect();
    assert_eq!(
        mine,
        want.iter().collect::<Vec<_>>(),
        "each line once, in order"
    );
}
