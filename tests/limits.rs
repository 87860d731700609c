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
    proc_status_bytes(pid, "VmRSS:")
}

/// The most resident memory a process ever had.
fn peak_rss_bytes(pid: u32) -> u64 {
    proc_status_bytes(pid, "VmHWM:")
}

fn proc_status_bytes(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field))
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

/// Sends `bytes` as a ProduceRequest as they are (the generated client
/// would need the records decoded in this process first).
fn produce_raw(c: &Clients, bytes: Vec<u8>, token: Option<&str>) -> RpcStatusCode {
    #[allow(clippy::ptr_arg)] // the marshaller's signature
    fn ser(b: &Vec<u8>, out: &mut grpcio::GrpcSlice) -> grpcio::Result<()> {
        *out = grpcio::GrpcSlice::from(b.clone());
        Ok(())
    }
    let method: grpcio::Method<Vec<u8>, pb::ProduceResponse> = grpcio::Method {
        ty: grpcio::MethodType::Unary,
        name: "/streamhouse.v1.ProducerService/Produce",
        req_mar: grpcio::Marshaller {
            ser,
            de: |_| unreachable!("requests are not decoded here"),
        },
        resp_mar: grpcio::Marshaller {
            ser: grpcio::pb_ser,
            de: grpcio::pb_de,
        },
    };
    let mut opt = grpcio::CallOption::default();
    if let Some(t) = token {
        let mut m = grpcio::MetadataBuilder::new();
        m.add_str("authorization", &format!("Bearer {t}")).unwrap();
        opt = opt.headers(m.build());
    }
    let client = grpcio::Client::new(c.channel.clone());
    code(client.unary_call(&method, &bytes, opt))
}

#[test]
fn a_maximal_request_of_empty_records_costs_little_memory_before_authentication() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start_in(dir.path(), &["--auth-token", "s3cret"]);
    let c = s.clients();
    let mut m = grpcio::MetadataBuilder::new();
    m.add_str("authorization", "Bearer s3cret").unwrap();
    let opt = grpcio::CallOption::default().headers(m.build());
    let mut req = pb::CreateTopicRequest::new();
    req.set_name("t".into());
    req.set_partitions(1);
    c.admin.create_topic_opt(&req, opt).unwrap();
    // 64 MiB of empty records (field 3, length 0): 33.5 million records
    // that decoded cost 3.8 GB before the token was looked at.
    let empty_records = || -> Vec<u8> {
        let mut b = vec![0x0a, 0x01, b't', 0x10, 0x00];
        b.extend(std::iter::repeat_n([0x1a, 0x00], 32 << 20).flatten());
        b
    };
    let before = peak_rss_bytes(s.child.id());
    assert_eq!(
        produce_raw(&c, empty_records(), None),
        RpcStatusCode::UNAUTHENTICATED
    );
    assert_eq!(
        produce_raw(&c, empty_records(), Some("s3cret")),
        RpcStatusCode::INVALID_ARGUMENT
    );
    // One empty header too many in a single record.
    let mut headers = vec![0x0a, 0x01, b't', 0x1a];
    let inner: Vec<u8> = std::iter::repeat_n([0x2a, 0x00], 300_000)
        .flatten()
        .collect();
    let mut len = inner.len();
    while len >= 0x80 {
        headers.push((len as u8) | 0x80);
        len >>= 7;
    }
    headers.push(len as u8);
    headers.extend_from_slice(&inner);
    assert_eq!(
        produce_raw(&c, headers, Some("s3cret")),
        RpcStatusCode::INVALID_ARGUMENT
    );
    let growth = peak_rss_bytes(s.child.id()).saturating_sub(before);
    println!("peak growth {} MB", growth >> 20);
    assert!(growth < 256 << 20, "peak grew by {} MB", growth >> 20);
    // Still serving.
    let mut m = grpcio::MetadataBuilder::new();
    m.add_str("authorization", "Bearer s3cret").unwrap();
    let opt = grpcio::CallOption::default().headers(m.build());
    let mut req = pb::ProduceRequest::new();
    req.set_topic("t".into());
    req.set_records(vec![record(b"", b"fine", &[])].into());
    c.producer.produce_opt(&req, opt).unwrap();
}

fn metric(url: &str, name: &str) -> u64 {
    let body = common::http_get(url);
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics"))
}

#[test]
fn a_connection_flood_near_the_open_files_limit_leaves_partitions_sealing() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start_with_open_files_limit(
        dir.path(),
        200,
        &[
            "--segment-max-bytes",
            "2KiB",
            "--metrics-listen",
            "127.0.0.1:0",
        ],
    );
    let c = s.clients();
    create(&c, "t", 1);
    let batch = |i: usize| -> Vec<pb::Record> {
        (0..10)
            .map(|j| {
                record(
                    b"",
                    format!("{i:03}-{j}-{}", "v".repeat(90)).as_bytes(),
                    &[],
                )
            })
            .collect()
    };
    produce(&c, "t", Some(0), batch(0)).unwrap();
    // Connections that only send the HTTP/2 preface, far past the limit.
    let flood: Vec<std::net::TcpStream> = (0..400)
        .filter_map(|_| {
            let mut t = std::net::TcpStream::connect(&s.addr).ok()?;
            t.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").ok()?;
            Some(t)
        })
        .collect();
    assert!(flood.len() > 200, "{} connections opened", flood.len());
    // Every batch seals a segment or two: each seal creates a WAL file.
    for i in 1..40 {
        produce(&c, "t", Some(0), batch(i))
            .unwrap_or_else(|e| panic!("batch {i} under the flood: {e:?}"));
    }
    drop(flood);
    produce(&c, "t", Some(0), batch(40)).unwrap();
    assert_eq!(common::grpc::fetch_all(&c, "t", 0, 0).len(), 410);
    let url = s.metrics_url.clone().unwrap();
    assert!(metric(&url, "streamhouse_grpc_connections_refused_total") > 0);
    // A new client connects once the flood is gone.
    let fresh = common::clients_for(&s.addr);
    assert_eq!(high_watermark(&fresh, "t", 0), 410);
}

#[test]
fn connections_past_max_connections_are_closed_and_the_rest_served() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start_in(dir.path(), &["--max-connections", "4"]);
    let c = s.clients();
    create(&c, "t", 1);
    // The client's own connection is one of the four.
    let idle: Vec<std::net::TcpStream> = (0..10)
        .map(|_| std::net::TcpStream::connect(&s.addr).unwrap())
        .collect();
    // grpc greets an admitted connection with its SETTINGS; a refused one
    // is closed at once.
    let closed = idle
        .iter()
        .filter(|t| {
            t.set_read_timeout(Some(std::time::Duration::from_secs(2)))
                .unwrap();
            match Read::read(&mut &**t, &mut [0u8; 64]) {
                Ok(0) => true,
                Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
                Ok(_) => false,
            }
        })
        .count();
    assert_eq!(closed, 7, "of 10 idle connections beside the client's own");
    produce(&c, "t", Some(0), vec![record(b"", b"still served", &[])]).unwrap();
}

#[test]
fn a_client_trickling_a_metrics_request_cannot_hold_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = TestServer::start_in(dir.path(), &["--metrics-listen", "127.0.0.1:0"]);
    let url = s.metrics_url.clone().unwrap();
    let hostport = url
        .trim_start_matches("http://")
        .trim_end_matches("/metrics")
        .to_string();
    // One byte every 500 ms: each read is quick, the request never ends.
    let trickle = std::thread::spawn(move || {
        let mut sock = std::net::TcpStream::connect(&hostport).unwrap();
        for b in b"GET /metrics HTTP/1.1\r\nX-Slow: "
            .iter()
            .chain([b'a'; 60].iter())
        {
            if sock.write_all(&[*b]).is_err() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
    });
    std::thread::sleep(std::time::Duration::from_secs(1));
    let started = std::time::Instant::now();
    let status = s.sigterm_and_wait();
    let took = started.elapsed();
    assert!(status.success(), "{status:?}");
    // The deadline is 5 s for the whole request; SIGTERM waited for it.
    assert!(
        took < std::time::Duration::from_secs(15),
        "SIGTERM took {took:?}"
    );
    trickle.join().unwrap();
}

fn subscribe(c: &Clients, topic: &str) -> grpcio::ClientSStreamReceiver<pb::FetchResponse> {
    let mut req = pb::SubscribeRequest::new();
    req.set_topic(topic.into());
    c.consumer.subscribe(&req).unwrap()
}

/// The first message or status of a stream, waiting at most 5 s.
fn first_of(
    stream: &mut grpcio::ClientSStreamReceiver<pb::FetchResponse>,
) -> Option<grpcio::Result<pb::FetchResponse>> {
    use futures::StreamExt;
    let next = futures::executor::block_on(futures::future::select(
        stream.next(),
        futures_timer(std::time::Duration::from_secs(5)),
    ));
    match next {
        futures::future::Either::Left((item, _)) => item,
        futures::future::Either::Right(_) => None,
    }
}

/// A future ready after `d` (a thread sleeps, no timer crate).
fn futures_timer(d: std::time::Duration) -> futures::channel::oneshot::Receiver<()> {
    let (tx, rx) = futures::channel::oneshot::channel();
    std::thread::spawn(move || {
        std::thread::sleep(d);
        let _ = tx.send(());
    });
    rx
}

#[test]
fn subscribe_streams_are_capped_and_end_when_their_clients_leave() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start_in(
        dir.path(),
        &["--max-streams", "150", "--metrics-listen", "127.0.0.1:0"],
    );
    let url = s.metrics_url.clone().unwrap();
    create(&s.clients(), "t", 1);
    // Two connections: 100 streams fill the first, 50 the node.
    let (a, b) = (s.clients(), s.clients());
    let open_streams = || metric(&url, "streamhouse_subscribe_streams");
    let until_open = |n: u64| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while open_streams() != n {
            assert!(
                std::time::Instant::now() < deadline,
                "{} streams open, not {n}",
                open_streams()
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    };
    let on_a: Vec<_> = (0..100).map(|_| subscribe(&a, "t")).collect();
    // Calls start in any order: the next one only once these hold slots.
    until_open(100);
    let mut over = subscribe(&a, "t");
    match first_of(&mut over) {
        Some(Err(e)) => assert_eq!(code::<()>(Err(e)), RpcStatusCode::RESOURCE_EXHAUSTED),
        other => panic!("the 101st stream on a connection: {other:?}"),
    }
    let on_b: Vec<_> = (0..50).map(|_| subscribe(&b, "t")).collect();
    until_open(150);
    let mut over = subscribe(&b, "t");
    match first_of(&mut over) {
        Some(Err(e)) => assert_eq!(code::<()>(Err(e)), RpcStatusCode::RESOURCE_EXHAUSTED),
        other => panic!("the 151st stream on the node: {other:?}"),
    }
    assert_eq!(open_streams(), 150);
    // The clients leave without a record ever arriving: every stream ends
    // (it used to poll on until a record came).
    drop((on_a, on_b, over, a, b));
    until_open(0);
    // Room again, and a stream delivers.
    let c = s.clients();
    let mut fresh = subscribe(&c, "t");
    produce(&c, "t", Some(0), vec![record(b"", b"hello", &[])]).unwrap();
    let got = first_of(&mut fresh).expect("a message").unwrap();
    assert_eq!(got.get_records()[0].get_value(), b"hello");
}
