//! Bounded under abuse (real binary): greedy fetches are clamped and the
//! server's memory stays bounded; every record and header is charged in
//! size accounting; a produce request is all or nothing; commit metadata and
//! the /metrics request are capped.

mod common;

use common::grpc::{code, create, produce, record};
use common::{Clients, TestServer};
use grpcio::RpcStatusCode;
use std::io::{Read, Write};
use streamhouse::proto as pb;

/// Resident memory of a process, from /proc.
fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb * 1024
}

fn high_watermark(c: &Clients, topic: &str, p: u32) -> i64 {
    let mut req = pb::ListOffsetsRequest::new();
    req.set_topic(topic.into());
    req.set_partition(p);
    req.set_timestamp_ms(-1);
    c.consumer.list_offsets(&req).unwrap().get_offset()
}

#[test]
fn greedy_fetches_are_clamped_and_memory_stays_bounded() {
    let dir = tempfile::tempdir().unwrap();
    // A small block cache, so what is measured is the fetches themselves
    // (the cache is bounded on its own, by --cache-bytes).
    let s = TestServer::start_in(
        dir.path(),
        &["--segment-max-bytes", "16MiB", "--cache-bytes", "32MiB"],
    );
    let c = s.clients();
    create(&c, "big", 1);
    // ~120 MiB of pseudo-random values (64 KiB each), so nothing compresses
    // away; batches of 8 MiB.
    for b in 0..15 {
        let batch = (0..128)
            .map(|i| record(b"", &common::noise(64 * 1024, b * 128 + i), &[]))
            .collect();
        produce(&c, "big", Some(0), batch).unwrap();
    }
    let total = high_watermark(&c, "big", 0);
    assert_eq!(total, 15 * 128);
    let pid = s.child.id();
    let before = rss_bytes(pid);
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(before));
    let addr = s.addr.clone();
    let fetchers: Vec<_> = (0..4)
        .map(|i| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                let c = common::clients_for(&addr);
                let mut next = (i * 300) as i64;
                let mut calls = 0;
                while next < total && calls < 6 {
                    let mut req = pb::FetchRequest::new();
                    req.set_topic("big".into());
                    req.set_partition(0);
                    req.set_offset(next);
                    req.set_max_records(u32::MAX);
                    req.set_max_bytes(u32::MAX);
                    let r = c
                        .consumer
                        .fetch(&req)
                        .expect("a greedy fetch is answered OK");
                    let bytes: usize = r.get_records().iter().map(|r| r.get_value().len()).sum();
                    assert!(
                        bytes <= (8 << 20) + (64 << 10),
                        "{bytes} bytes in one reply"
                    );
                    assert!(!r.get_records().is_empty());
                    assert!(r.get_next_offset() > next, "progress");
                    next = r.get_next_offset();
                    calls += 1;
                }
            })
        })
        .collect();
    let sampler = {
        let peak = std::sync::Arc::clone(&peak);
        std::thread::spawn(move || {
            for _ in 0..200 {
                peak.fetch_max(rss_bytes(pid), std::sync::atomic::Ordering::Relaxed);
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        })
    };
    for f in fetchers {
        f.join().unwrap();
    }
    sampler.join().unwrap();
    let grew = peak
        .load(std::sync::atomic::Ordering::Relaxed)
        .saturating_sub(before);
    eprintln!(
        "server RSS before the greedy fetches {:.0} MB, peak growth during them {:.0} MB",
        before as f64 / 1e6,
        grew as f64 / 1e6
    );
    assert!(grew < 200 << 20, "memory grew by {grew} bytes");
}

#[test]
fn records_and_headers_are_charged_and_headers_are_capped() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start_in(dir.path(), &["--max-record-bytes", "1KiB"]);
    let c = s.clients();
    create(&c, "t", 1);
    let with_headers = |value: usize, headers: usize| {
        let mut r = record(b"", &vec![b'v'; value], &[]);
        for _ in 0..headers {
            r.mut_headers().push(pb::Header::new());
        }
        r
    };
    // 16 (record) + 1000 = 1016 <= 1024; 16 + 1010 > 1024.
    produce(&c, "t", Some(0), vec![with_headers(1000, 0)]).unwrap();
    assert_eq!(
        code(produce(&c, "t", Some(0), vec![with_headers(1010, 0)])),
        RpcStatusCode::INVALID_ARGUMENT
    );
    // Empty headers are not free: 16 + 100 + 100 * 8 fits, 200 do not.
    produce(&c, "t", Some(0), vec![with_headers(100, 100)]).unwrap();
    assert_eq!(
        code(produce(&c, "t", Some(0), vec![with_headers(100, 200)])),
        RpcStatusCode::INVALID_ARGUMENT
    );
    // At most 1,024 headers, whatever the size limit.
    let dir2 = tempfile::tempdir().unwrap();
    let s2 = TestServer::start_in(dir2.path(), &["--max-record-bytes", "64MiB"]);
    let c2 = s2.clients();
    create(&c2, "t", 1);
    match produce(&c2, "t", Some(0), vec![with_headers(0, 1025)]) {
        Err(grpcio::Error::RpcFailure(st)) => {
            assert_eq!(st.code(), RpcStatusCode::INVALID_ARGUMENT);
            assert!(st.message().contains("1025 headers"), "{}", st.message());
        }
        other => panic!("{other:?}"),
    }
    produce(&c2, "t", Some(0), vec![with_headers(0, 1024)]).unwrap();
    drop(s);
}

#[test]
fn a_refused_produce_writes_nothing_anywhere() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start_in(
        dir.path(),
        &["--max-record-bytes", "1KiB", "--max-backlog-bytes", "64KiB"],
    );
    let c = s.clients();
    create(&c, "t", 4);
    // Keyed records spread over the partitions; the last one is too big.
    let mut records: Vec<pb::Record> = (0..40)
        .map(|i| record(format!("k{i}").as_bytes(), b"ok", &[]))
        .collect();
    records.push(record(b"k-last", &[b'x'; 2000], &[]));
    assert_eq!(
        code(produce(&c, "t", None, records)),
        RpcStatusCode::INVALID_ARGUMENT
    );
    // A request over the backlog bound as a whole: refused whole.
    let big: Vec<pb::Record> = (0..100)
        .map(|i| record(format!("k{i}").as_bytes(), &[b'y'; 900], &[]))
        .collect();
    assert_eq!(
        code(produce(&c, "t", None, big)),
        RpcStatusCode::RESOURCE_EXHAUSTED
    );
    for p in 0..4 {
        assert_eq!(high_watermark(&c, "t", p), 0, "partition {p} got records");
    }
    // A partition that does not exist: nothing written either.
    let mut req = pb::ProduceRequest::new();
    req.set_topic("t".into());
    req.set_partition(9);
    req.mut_records().push(record(b"", b"x", &[]));
    assert_eq!(code(c.producer.produce(&req)), RpcStatusCode::NOT_FOUND);
}

#[test]
fn commit_metadata_and_the_metrics_request_are_capped() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start_in(dir.path(), &["--metrics-listen", "127.0.0.1:0"]);
    let c = s.clients();
    create(&c, "t", 1);
    let mut req = pb::CommitOffsetRequest::new();
    req.set_group("g".into());
    req.set_topic("t".into());
    req.set_offset(0);
    req.set_metadata("m".repeat(4097));
    assert_eq!(
        code(c.consumer.commit_offset(&req)),
        RpcStatusCode::INVALID_ARGUMENT
    );
    req.set_metadata("m".repeat(4096));
    c.consumer.commit_offset(&req).unwrap();

    // A request line of 4 MiB without a newline is not read whole: the
    // server answers (or closes) and /metrics keeps working.
    let url = s.metrics_url.clone().unwrap();
    let hostport = url
        .trim_start_matches("http://")
        .trim_end_matches("/metrics")
        .to_string();
    let mut junk = std::net::TcpStream::connect(&hostport).unwrap();
    let _ = junk.write_all(&vec![b'G'; 4 << 20]);
    drop(junk);
    let mut sock = std::net::TcpStream::connect(&hostport).unwrap();
    sock.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").unwrap();
    let mut body = String::new();
    sock.read_to_string(&mut body).unwrap();
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
}
