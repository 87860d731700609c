//! Integration tests against the real `streamhoused` binary on a free
//! loopback port, through the Rust client generated from the proto.

use grpcio::{CallOption, MetadataBuilder, RpcStatusCode};
use std::io::{Read, Write};
use std::process::Command;
use std::time::{Duration, Instant};
use streamhouse::proto::{self as pb};
use streamhouse::server::partitioner::partition_for_key;

mod common;
use common::grpc::{code, create, fetch, produce, record};
use common::TestServer;

#[test]
fn every_rpc_round_trips_keys_headers_and_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start_in(dir.path(), &[]);
    let c = s.clients();
    let info = create(&c, "orders", 3);
    assert_eq!(
        (
            info.get_name(),
            info.get_partitions(),
            info.get_partition_info().len()
        ),
        ("orders", 3, 3)
    );

    // Explicit partition, with keys (empty = none) and headers (empty and binary values).
    let resp = produce(
        &c,
        "orders",
        Some(1),
        vec![
            record(b"k1", b"v1", &[("trace", b"\x00\xff\x01"), ("empty", b"")]),
            record(b"", b"no key", &[]),
        ],
    )
    .unwrap();
    assert_eq!(resp.get_acks().len(), 1);
    let ack = &resp.get_acks()[0];
    assert_eq!(
        (ack.get_partition(), ack.get_base_offset(), ack.get_count()),
        (1, 0, 2)
    );
    let f = fetch(&c, "orders", 1, 0).unwrap();
    assert_eq!(f.get_records().len(), 2);
    let r0 = &f.get_records()[0];
    assert_eq!(
        (r0.get_offset(), r0.get_key(), r0.get_value()),
        (0, &b"k1"[..], &b"v1"[..])
    );
    assert_eq!(r0.get_headers().len(), 2);
    assert_eq!(r0.get_headers()[0].get_value(), b"\x00\xff\x01");
    assert_eq!(r0.get_headers()[1].get_value(), b"");
    assert!(r0.get_timestamp_ms() > 0, "server time for timestamp 0");
    assert_eq!(f.get_records()[1].get_key(), b"");
    assert_eq!(
        (
            f.get_next_offset(),
            f.get_high_watermark(),
            f.get_low_watermark()
        ),
        (2, 2, 0)
    );

    // Keyed records go where Kafka's partitioner sends them, in request order.
    let keys: Vec<String> = (0..30).map(|i| format!("user-{i}")).collect();
    let recs = keys
        .iter()
        .map(|k| record(k.as_bytes(), k.as_bytes(), &[]))
        .collect();
    let resp = produce(&c, "orders", None, recs).unwrap();
    let total: i64 = resp.get_acks().iter().map(|a| a.get_count()).sum();
    assert_eq!(total, 30);
    for p in 0..3u32 {
        let expected: Vec<&String> = keys
            .iter()
            .filter(|k| partition_for_key(k.as_bytes(), 3) == p)
            .collect();
        let got: Vec<String> = fetch(&c, "orders", p, if p == 1 { 2 } else { 0 })
            .unwrap()
            .get_records()
            .iter()
            .map(|r| String::from_utf8(r.get_key().to_vec()).unwrap())
            .collect();
        assert_eq!(got.iter().collect::<Vec<_>>(), expected, "partition {p}");
    }
    // Keyless records spread round-robin.
    let resp = produce(
        &c,
        "orders",
        None,
        (0..9)
            .map(|i| record(b"", format!("{i}").as_bytes(), &[]))
            .collect(),
    )
    .unwrap();
    assert_eq!(resp.get_acks().len(), 3);
    assert!(resp.get_acks().iter().all(|a| a.get_count() == 3));

    // ListOffsets.
    let lo = |t: i64| {
        let mut req = pb::ListOffsetsRequest::new();
        req.set_topic("orders".into());
        req.set_partition(1);
        req.set_timestamp_ms(t);
        c.consumer.list_offsets(&req)
    };
    assert_eq!(lo(-2).unwrap().get_offset(), 0);
    let high = fetch(&c, "orders", 1, 0).unwrap().get_high_watermark();
    assert_eq!(lo(-1).unwrap().get_offset(), high);
    assert_eq!(lo(0).unwrap().get_offset(), 0);
    assert_eq!(lo(i64::MAX).unwrap().get_offset(), high);
    assert_eq!(code(lo(-3)), RpcStatusCode::INVALID_ARGUMENT);

    // Group offsets.
    let mut commit = pb::CommitOffsetRequest::new();
    commit.set_group("billing".into());
    commit.set_topic("orders".into());
    commit.set_partition(2);
    commit.set_offset(5);
    commit.set_metadata("m".into());
    c.consumer.commit_offset(&commit).unwrap();
    let mut get = pb::GetCommittedOffsetRequest::new();
    get.set_group("billing".into());
    get.set_topic("orders".into());
    get.set_partition(2);
    let g = c.consumer.get_committed_offset(&get).unwrap();
    assert!(g.get_found());
    assert_eq!((g.get_offset(), g.get_metadata()), (5, "m"));
    get.set_partition(0);
    assert!(!c.consumer.get_committed_offset(&get).unwrap().get_found());

    // Subscribe: existing records, then new ones as they arrive.
    let mut sub = pb::SubscribeRequest::new();
    sub.set_topic("orders".into());
    sub.set_partition(1);
    sub.set_offset(0);
    let mut stream = c.consumer.subscribe(&sub).unwrap();
    let mut seen = 0;
    let mut produced_more = false;
    while seen < high + 5 {
        let msg = futures::executor::block_on(futures::StreamExt::next(&mut stream))
            .unwrap()
            .unwrap();
        seen += msg.get_records().len() as i64;
        if !produced_more {
            produce(
                &c,
                "orders",
                Some(1),
                (0..5).map(|_| record(b"", b"late", &[])).collect(),
            )
            .unwrap();
            produced_more = true;
        }
    }
    assert_eq!(seen, high + 5);
    drop(stream);

    // List, describe, delete.
    create(&c, "other", 1);
    let names: Vec<String> = c
        .admin
        .list_topics(&pb::ListTopicsRequest::new())
        .unwrap()
        .get_topics()
        .iter()
        .map(|t| t.get_name().to_string())
        .collect();
    assert_eq!(names, vec!["orders", "other"]);
    let mut d = pb::DescribeTopicRequest::new();
    d.set_name("orders".into());
    let desc = c.admin.describe_topic(&d).unwrap();
    assert_eq!(desc.get_partition_info()[1].get_high_watermark(), high + 5);
    let mut del = pb::DeleteTopicRequest::new();
    del.set_name("other".into());
    c.admin.delete_topic(&del).unwrap();
    assert_eq!(code(c.admin.delete_topic(&del)), RpcStatusCode::NOT_FOUND);

    // Health.
    let resp = c
        .health
        .check(&grpcio_health::proto::HealthCheckRequest::default())
        .unwrap();
    assert_eq!(resp.status, grpcio_health::ServingStatus::Serving);
}

#[test]
fn status_codes_follow_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start_in(dir.path(), &["--max-record-bytes", "1KiB"]);
    let c = s.clients();
    create(&c, "t", 2);
    let mut req = pb::CreateTopicRequest::new();
    for (name, parts) in [("bad/name", 1), ("..", 1), ("", 1), ("ok", 0)] {
        req.set_name(name.into());
        req.set_partitions(parts);
        assert_eq!(
            code(c.admin.create_topic(&req)),
            RpcStatusCode::INVALID_ARGUMENT,
            "{name} {parts}"
        );
    }
    req.set_name("t".into());
    req.set_partitions(1);
    assert_eq!(
        code(c.admin.create_topic(&req)),
        RpcStatusCode::ALREADY_EXISTS
    );
    assert_eq!(
        code(produce(&c, "t", Some(0), vec![])),
        RpcStatusCode::INVALID_ARGUMENT
    );
    assert_eq!(
        code(produce(
            &c,
            "t",
            Some(0),
            vec![record(b"", &[1; 1025], &[])]
        )),
        RpcStatusCode::INVALID_ARGUMENT
    );
    assert_eq!(
        code(produce(&c, "nope", None, vec![record(b"", b"x", &[])])),
        RpcStatusCode::NOT_FOUND
    );
    assert_eq!(
        code(produce(&c, "t", Some(7), vec![record(b"", b"x", &[])])),
        RpcStatusCode::NOT_FOUND
    );
    produce(&c, "t", Some(0), vec![record(b"", b"x", &[])]).unwrap();
    assert_eq!(code(fetch(&c, "t", 0, -1)), RpcStatusCode::OUT_OF_RANGE);
    assert_eq!(code(fetch(&c, "t", 0, 2)), RpcStatusCode::OUT_OF_RANGE);
    assert_eq!(code(fetch(&c, "t", 9, 0)), RpcStatusCode::NOT_FOUND);
    assert_eq!(code(fetch(&c, "nope", 0, 0)), RpcStatusCode::NOT_FOUND);
    let mut commit = pb::CommitOffsetRequest::new();
    commit.set_topic("t".into());
    commit.set_group(String::new());
    assert_eq!(
        code(c.consumer.commit_offset(&commit)),
        RpcStatusCode::INVALID_ARGUMENT
    );
    commit.set_group("g\u{7}".into());
    assert_eq!(
        code(c.consumer.commit_offset(&commit)),
        RpcStatusCode::INVALID_ARGUMENT
    );
    // A message beyond the gRPC limit gets a status, not a dropped connection.
    let huge: Vec<pb::Record> = (0..70).map(|_| record(b"", &[7; 1_000_000], &[])).collect();
    let st = code(produce(&c, "t", Some(0), huge));
    assert!(
        matches!(
            st,
            RpcStatusCode::RESOURCE_EXHAUSTED | RpcStatusCode::INVALID_ARGUMENT
        ),
        "{st:?}"
    );
    // The server is still fine.
    produce(&c, "t", Some(0), vec![record(b"", b"y", &[])]).unwrap();
}

#[test]
fn the_auth_token_is_required_except_for_health() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start_in(dir.path(), &["--auth-token", "s3cret"]);
    let c = s.clients();
    assert_eq!(
        code(c.admin.list_topics(&pb::ListTopicsRequest::new())),
        RpcStatusCode::UNAUTHENTICATED
    );
    let with = |token: &str| {
        let mut m = MetadataBuilder::new();
        m.add_str("authorization", &format!("Bearer {token}"))
            .unwrap();
        CallOption::default().headers(m.build())
    };
    assert_eq!(
        code(
            c.admin
                .list_topics_opt(&pb::ListTopicsRequest::new(), with("wrong"))
        ),
        RpcStatusCode::UNAUTHENTICATED
    );
    assert_eq!(code(fetch(&c, "t", 0, 0)), RpcStatusCode::UNAUTHENTICATED);
    c.admin
        .list_topics_opt(&pb::ListTopicsRequest::new(), with("s3cret"))
        .unwrap();
    c.health
        .check(&grpcio_health::proto::HealthCheckRequest::default())
        .unwrap();
}

#[test]
fn restart_keeps_data_and_group_offsets_and_sigterm_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start_in(dir.path(), &["--segment-max-bytes", "2KiB"]);
    let c = s.clients();
    create(&c, "t", 1);
    for i in 0..20 {
        produce(
            &c,
            "t",
            Some(0),
            (0..10)
                .map(|j| record(b"", format!("{i}-{j}").as_bytes(), &[]))
                .collect(),
        )
        .unwrap();
    }
    let mut commit = pb::CommitOffsetRequest::new();
    commit.set_group("g".into());
    commit.set_topic("t".into());
    commit.set_offset(150);
    c.consumer.commit_offset(&commit).unwrap();
    // A stream open across SIGTERM ends with UNAVAILABLE.
    let mut sub = pb::SubscribeRequest::new();
    sub.set_topic("t".into());
    sub.set_offset(200);
    let mut stream = c.consumer.subscribe(&sub).unwrap();
    let mut s = s;
    let pid = s.child.id().to_string();
    let t = Instant::now();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let end = futures::executor::block_on(futures::StreamExt::next(&mut stream));
    match end {
        Some(Err(grpcio::Error::RpcFailure(st))) => {
            assert_eq!(st.code(), RpcStatusCode::UNAVAILABLE)
        }
        other => panic!("stream ended with {other:?}"),
    }
    let status = s.child.wait().unwrap();
    assert!(status.success(), "SIGTERM exits 0: {status:?}");
    eprintln!("SIGTERM to exit: {:?}", t.elapsed());
    drop(c);
    let s = TestServer::start_in(dir.path(), &["--segment-max-bytes", "2KiB"]);
    let c = s.clients();
    let mut all = Vec::new();
    let mut next = 0;
    loop {
        let f = fetch(&c, "t", 0, next).unwrap();
        if f.get_records().is_empty() {
            break;
        }
        next = f.get_next_offset();
        all.extend(
            f.get_records()
                .iter()
                .map(|r| String::from_utf8(r.get_value().to_vec()).unwrap()),
        );
    }
    let expected: Vec<String> = (0..20)
        .flat_map(|i| (0..10).map(move |j| format!("{i}-{j}")))
        .collect();
    assert_eq!(all, expected);
    let mut get = pb::GetCommittedOffsetRequest::new();
    get.set_group("g".into());
    get.set_topic("t".into());
    assert_eq!(
        c.consumer.get_committed_offset(&get).unwrap().get_offset(),
        150
    );
    let s = s.restart();
    let c = s.clients();
    assert_eq!(
        produce(&c, "t", Some(0), vec![record(b"", b"after", &[])])
            .unwrap()
            .get_acks()[0]
            .get_base_offset(),
        200
    );
}

#[test]
fn kill_9_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = TestServer::start_in(
        dir.path(),
        &["--segment-max-bytes", "4KiB", "--segment-max-age-ms", "50"],
    );
    let c = s.clients();
    create(&c, "t", 1);
    let mut acked = Vec::new();
    let t = Instant::now();
    while t.elapsed() < Duration::from_millis(500) {
        let n = acked.len();
        let resp = produce(
            &c,
            "t",
            Some(0),
            (0..7)
                .map(|j| record(b"", format!("{n}-{j}").as_bytes(), &[]))
                .collect(),
        )
        .unwrap();
        let a = &resp.get_acks()[0];
        for j in 0..7 {
            acked.push((a.get_base_offset() + j, format!("{n}-{j}")));
        }
    }
    s.child.kill().unwrap(); // SIGKILL
    s.child.wait().unwrap();
    let s = TestServer::start_in(dir.path(), &[]);
    let c = s.clients();
    for chunk in acked.chunks(500) {
        let f = fetch(&c, "t", 0, chunk[0].0).unwrap();
        for ((offset, value), r) in chunk.iter().zip(f.get_records()) {
            assert_eq!((r.get_offset(), r.get_value()), (*offset, value.as_bytes()));
        }
    }
    assert_eq!(
        fetch(&c, "t", 0, 0).unwrap().get_high_watermark(),
        acked.len() as i64
    );
}

#[test]
fn a_corrupt_segment_is_data_loss_and_junk_clients_do_not_hurt() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start_in(
        dir.path(),
        &[
            "--segment-max-bytes",
            "1KiB",
            "--segment-max-age-ms",
            "50",
            "--metrics-listen",
            "127.0.0.1:0",
        ],
    );
    let c = s.clients();
    create(&c, "t", 1);
    for i in 0..10 {
        let values: Vec<String> = (0..10)
            .map(|j| format!("value-{i}-{j}-padding-padding"))
            .collect();
        common::grpc::uploaded(&c, "t", 0, &values);
    }
    let (_, first) = common::local_segments(dir.path(), "t", 0).remove(0);
    let mut bytes = std::fs::read(&first).unwrap();
    bytes[30] ^= 0x20;
    std::fs::write(&first, &bytes).unwrap();
    let st = match fetch(&c, "t", 0, 0) {
        Err(grpcio::Error::RpcFailure(st)) => st,
        other => panic!("{other:?}"),
    };
    assert_eq!(st.code(), RpcStatusCode::DATA_LOSS);
    assert!(st.message().contains("block 0"), "{}", st.message());

    // Junk on the gRPC port, and a client that connects and vanishes.
    for junk in [&b"GET / HTTP/1.1\r\n\r\n"[..], &[0xffu8; 4096][..], b""] {
        let mut sock = std::net::TcpStream::connect(&s.addr).unwrap();
        let _ = sock.write_all(junk);
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut buf = [0u8; 64];
        let _ = sock.read(&mut buf);
    }
    produce(&c, "t", Some(0), vec![record(b"", b"still serving", &[])]).unwrap();
    c.admin.list_topics(&pb::ListTopicsRequest::new()).unwrap();

    // /metrics in the Prometheus text format.
    let url = s.metrics_url.clone().unwrap();
    let hostport = url
        .trim_start_matches("http://")
        .trim_end_matches("/metrics");
    let mut sock = std::net::TcpStream::connect(hostport).unwrap();
    sock.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut body = String::new();
    sock.read_to_string(&mut body).unwrap();
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    assert!(body.contains("streamhouse_records_in_total 101"), "{body}");
    assert!(
        body.contains("streamhouse_high_watermark{topic=\"t\",partition=\"0\"} 101"),
        "{body}"
    );
    assert!(body.contains("streamhouse_puts_total"));
    assert!(body.contains("# HELP streamhouse_puts_total Objects uploaded"));
    assert!(
        body.contains("streamhouse_partitions{state=\"open\"} 1\n"),
        "{body}"
    );
    assert!(body.contains("streamhouse_partitions{state=\"failed\"} 0\n"));
    assert!(body.contains("streamhouse_fenced 0\n"));
    assert!(
        body.contains("streamhouse_produce_latency_seconds_count 11\n"),
        "{body}"
    );
    assert!(
        body.contains("streamhouse_fetch_latency_seconds_bucket{le=\"+Inf\"}"),
        "{body}"
    );
}

#[test]
fn a_damaged_block_is_data_loss_for_that_block_only() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start_in(
        dir.path(),
        &[
            "--segment-max-bytes",
            "8MiB",
            "--segment-max-age-ms",
            "60000",
        ],
    );
    let c = s.clients();
    create(&c, "t", 2);
    // About 3 MiB of real records in one segment of 1 MiB blocks: the
    // acks=uploaded batch at the end seals it with everything before.
    let lines: Vec<String> =
        std::fs::read_to_string(common::project_path("../shared/data/flights-200k.jsonl"))
            .unwrap()
            .lines()
            .take(70_000)
            .map(str::to_string)
            .collect();
    for chunk in lines.chunks(5000) {
        let records = chunk
            .iter()
            .map(|l| record(b"", l.as_bytes(), &[]))
            .collect();
        produce(&c, "t", Some(0), records).unwrap();
    }
    common::grpc::uploaded(&c, "t", 0, &["last".to_string()]);
    common::grpc::uploaded(&c, "t", 1, &["other partition".to_string()]);
    let mut lines = lines;
    lines.push("last".to_string());
    let (_, path) = common::local_segments(dir.path(), "t", 0).remove(0);
    let mut bytes = std::fs::read(&path).unwrap();
    let blocks: Vec<_> = streamhouse::segment::SegmentBytes::open(&bytes)
        .unwrap()
        .footer()
        .entries()
        .to_vec();
    assert!(blocks.len() >= 3, "{} blocks", blocks.len());
    // A flipped bit in the middle of block 1's frame.
    let b1 = blocks[1];
    bytes[(b1.position + u64::from(b1.frame_len) / 2) as usize] ^= 0x04;
    std::fs::write(&path, &bytes).unwrap();

    let one = |offset: i64| {
        let mut req = pb::FetchRequest::new();
        req.set_topic("t".into());
        req.set_partition(0);
        req.set_offset(offset);
        req.set_max_records(10);
        c.consumer.fetch(&req)
    };
    match one(b1.first_offset + 5) {
        Err(grpcio::Error::RpcFailure(st)) => {
            assert_eq!(st.code(), RpcStatusCode::DATA_LOSS, "{}", st.message());
            assert!(st.message().contains("block 1"), "{}", st.message());
        }
        other => panic!("expected DATA_LOSS, got {other:?}"),
    }
    // Every other block, the other partition, and new writes are served.
    for b in [blocks[0], blocks[2], *blocks.last().unwrap()] {
        for offset in [b.first_offset, b.last_offset] {
            let f = one(offset).unwrap();
            assert_eq!(f.get_records()[0].get_offset(), offset);
            let want = &lines[offset as usize];
            assert_eq!(f.get_records()[0].get_value(), want.as_bytes());
        }
    }
    assert_eq!(common::grpc::fetch_all(&c, "t", 1, 0).len(), 1);
    produce(&c, "t", Some(0), vec![record(b"", b"after", &[])]).unwrap();
    // Again, from the block cache's point of view: still only block 1.
    assert!(one(b1.last_offset).is_err());
    assert!(one(blocks[0].first_offset).is_ok());
}

#[test]
fn fetch_defaults_long_poll_and_deletion_under_a_stream() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start_in(dir.path(), &[]);
    let c = s.clients();
    create(&c, "t", 1);
    produce(
        &c,
        "t",
        Some(0),
        (0..600)
            .map(|i| record(b"", format!("{i}").as_bytes(), &[]))
            .collect(),
    )
    .unwrap();
    // max_records = 0 and max_bytes = 0: the server defaults (500 records).
    assert_eq!(fetch(&c, "t", 0, 0).unwrap().get_records().len(), 500);
    // The first record comes back even when it alone exceeds max_bytes.
    let mut req = pb::FetchRequest::new();
    req.set_topic("t".into());
    req.set_offset(10);
    req.set_max_bytes(1);
    assert_eq!(c.consumer.fetch(&req).unwrap().get_records().len(), 1);
    // A long poll at the high watermark is answered by the next produce.
    let mut req = pb::FetchRequest::new();
    req.set_topic("t".into());
    req.set_offset(600);
    req.set_max_wait_ms(30_000);
    let pending = c.consumer.fetch_async(&req).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    produce(&c, "t", Some(0), vec![record(b"", b"wake", &[])]).unwrap();
    let r = futures::executor::block_on(pending).unwrap();
    assert_eq!(r.get_records()[0].get_value(), b"wake");
    // Deleting the topic ends an open stream with NOT_FOUND.
    let mut sub = pb::SubscribeRequest::new();
    sub.set_topic("t".into());
    sub.set_offset(601);
    let mut stream = c.consumer.subscribe(&sub).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let mut del = pb::DeleteTopicRequest::new();
    del.set_name("t".into());
    c.admin.delete_topic(&del).unwrap();
    match futures::executor::block_on(futures::StreamExt::next(&mut stream)) {
        Some(Err(grpcio::Error::RpcFailure(st))) => assert_eq!(st.code(), RpcStatusCode::NOT_FOUND),
        other => panic!("stream ended with {other:?}"),
    }
}

/// A server whose store is reached through `proxy` (to take it away), with
/// small, quickly sealed segments and a 64 KiB backlog bound.
fn behind_proxy(dir: &std::path::Path, proxy: &common::s3::Proxy, tag: &str) -> TestServer {
    common::s3::Bucket::new(&proxy.endpoint(), tag).start(
        dir,
        &[
            "--segment-max-bytes",
            "4KiB",
            "--segment-max-age-ms",
            "50",
            "--max-backlog-bytes",
            "64KiB",
        ],
    )
}

/// 50 records `{tag}-{i}` of about 90 bytes each.
fn batch(tag: &str) -> Vec<pb::Record> {
    (0..50)
        .map(|i| {
            record(
                b"",
                format!("{tag}-{i:03}-{}", "x".repeat(80)).as_bytes(),
                &[],
            )
        })
        .collect()
}

/// Produces batches round-robin over `partitions` (acks=wal) until one is
/// refused; returns the records acknowledged per partition and the refusal.
fn produce_until_refused(c: &common::Clients, partitions: u32) -> (Vec<i64>, grpcio::RpcStatus) {
    let mut acked = vec![0i64; partitions as usize];
    for n in 0..1000u32 {
        let p = n % partitions;
        match produce(c, "t", Some(p), batch(&format!("down{n}"))) {
            Ok(r) => acked[p as usize] += r.get_acks()[0].get_count(),
            Err(grpcio::Error::RpcFailure(st)) => return (acked, st),
            Err(e) => panic!("{e:?}"),
        }
    }
    panic!("backpressure never came");
}

#[test]
fn a_dead_object_store_means_resource_exhausted_not_lost_data() {
    let Some(endpoint) = common::s3::endpoint() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // The store goes away after the topic exists (creating one needs the
    // bucket: its manifest goes there first).
    let proxy = common::s3::Proxy::start(&endpoint);
    let s = behind_proxy(dir.path(), &proxy, "dead");
    let c = s.clients();
    create(&c, "t", 1);
    proxy.set_up(false);
    let (acked, exhausted) = produce_until_refused(&c, 1);
    let acked = acked[0];
    assert_eq!(
        exhausted.code(),
        RpcStatusCode::RESOURCE_EXHAUSTED,
        "{}",
        exhausted.message()
    );
    // Everything acknowledged is still readable, from the WAL-backed tail.
    let f = fetch(&c, "t", 0, 0).unwrap();
    assert_eq!(f.get_high_watermark(), acked);

    // SIGTERM while uploads retry against the unreachable store: the
    // process exits promptly (retries end at the stop signal) and the WAL
    // keeps every acknowledged record for the next start.
    drop(c);
    let mut s = s;
    let t = Instant::now();
    let status = s.sigterm_and_wait();
    let took = t.elapsed();
    assert!(status.success(), "{status:?}");
    assert!(
        took < Duration::from_secs(10),
        "SIGTERM to exit took {took:?}"
    );
    eprintln!("SIGTERM to exit with the store unreachable: {took:?}");
    // While the store is still unreachable the node will not start (it
    // reconciles with the bucket first), and says why.
    let extra: Vec<&str> = s.extra.iter().map(String::as_str).collect();
    let out = Command::new(env!("CARGO_BIN_EXE_streamhoused"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--kafka-listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(dir.path())
        .args(&extra)
        .env("STREAMHOUSE_LOG", "off")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read the bucket"));
    // The store is back: everything acknowledged is there, and the backlog
    // drains to the bucket.
    proxy.set_up(true);
    let s = TestServer::start_in(dir.path(), &extra);
    let c = s.clients();
    let mut seen = 0i64;
    while seen < acked {
        let f = fetch(&c, "t", 0, seen).unwrap();
        assert!(
            !f.get_records().is_empty(),
            "offsets {seen}..{acked} are missing"
        );
        seen = f.get_next_offset();
    }
    assert_eq!(fetch(&c, "t", 0, 0).unwrap().get_high_watermark(), acked);
}

#[test]
fn a_store_outage_under_load_drains_without_a_restart() {
    let Some(endpoint) = common::s3::endpoint() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let proxy = common::s3::Proxy::start(&endpoint);
    let s = behind_proxy(dir.path(), &proxy, "outage");
    let c = s.clients();
    create(&c, "t", 2);
    // Produce (acks=wal) goes on from the WAL while the store is down,
    // until the backlog bound; then RESOURCE_EXHAUSTED.
    proxy.set_up(false);
    let (mut acked, exhausted) = produce_until_refused(&c, 2);
    assert_eq!(exhausted.code(), RpcStatusCode::RESOURCE_EXHAUSTED);
    assert!(acked[0] > 0 && acked[1] > 0, "{acked:?}");

    // The store comes back: the same server drains its backlog (an
    // acks=uploaded produce is answered once every segment before it is
    // committed) and takes writes again.
    proxy.set_up(true);
    let back = Instant::now();
    for p in 0..2u32 {
        let mut req = pb::ProduceRequest::new();
        req.set_topic("t".into());
        req.set_partition(p);
        req.set_acks(pb::Acks::ACKS_UPLOADED);
        req.set_records(batch("after").into());
        let ack = loop {
            match c.producer.produce(&req) {
                Ok(r) => break r.get_acks()[0].clone(),
                Err(grpcio::Error::RpcFailure(st))
                    if st.code() == RpcStatusCode::RESOURCE_EXHAUSTED =>
                {
                    assert!(back.elapsed() < Duration::from_secs(60), "never drained");
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => panic!("{e:?}"),
            }
        };
        assert_eq!(ack.get_base_offset(), acked[p as usize]);
        acked[p as usize] += ack.get_count();
    }
    eprintln!("store back to backlog drained: {:?}", back.elapsed());
    // Everything acknowledged is there once, in order, and in the bucket.
    let info = c
        .admin
        .describe_topic(&{
            let mut r = pb::DescribeTopicRequest::new();
            r.set_name("t".into());
            r
        })
        .unwrap();
    for p in 0..2u32 {
        let mut seen = 0i64;
        let mut values = Vec::new();
        while seen < acked[p as usize] {
            let f = fetch(&c, "t", p, seen).unwrap();
            assert!(!f.get_records().is_empty(), "offsets {seen}.. are missing");
            for r in f.get_records() {
                assert_eq!(r.get_offset(), values.len() as i64);
                values.push(String::from_utf8_lossy(r.get_value()).into_owned());
            }
            seen = f.get_next_offset();
        }
        assert_eq!(values.len() as i64, acked[p as usize]);
        let mut unique = values.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), values.len(), "a record came back twice");
        let pi = &info.get_partition_info()[p as usize];
        assert_eq!(pi.get_high_watermark(), acked[p as usize]);
        assert!(pi.get_segment_count() > 0);
    }
}

#[test]
fn a_second_server_on_the_same_data_dir_exits_1_naming_the_holder() {
    let dir = tempfile::tempdir().unwrap();
    let first = TestServer::start_in(dir.path(), &[]);
    let out = Command::new(env!("CARGO_BIN_EXE_streamhoused"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--kafka-listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(dir.path())
        .env("STREAMHOUSE_LOG", "warn")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(err.contains(&dir.path().display().to_string()), "{err}");
    assert!(err.contains(&format!("pid {}", first.child.id())), "{err}");
    // The first one is untouched and serving.
    let c = first.clients();
    create(&c, "still-here", 1);
}

#[test]
fn a_second_server_on_a_held_port_exits_naming_the_address() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let first = TestServer::start_in(a.path(), &[]);
    let mut second = Command::new(env!("CARGO_BIN_EXE_streamhoused"))
        .args([
            "--listen",
            &first.addr,
            "--kafka-listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(b.path())
        .env("STREAMHOUSE_LOG", "off")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = second.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            second.kill().unwrap();
            panic!("a second server started on the held port {}", first.addr);
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(1), "{status:?}");
    let mut err = String::new();
    second
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(err.contains(&first.addr), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    // The first one still serves everyone.
    create(&first.clients(), "t", 1);
}

/// Runs streamhoused to its exit (it must not start): exit code, stderr.
fn refused_start(args: &[String], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_streamhoused"));
    cmd.args([
        "--listen",
        "127.0.0.1:0",
        "--kafka-listen",
        "127.0.0.1:0",
        "--data-dir",
    ])
    .arg(dir.path())
    .args(args)
    .env("STREAMHOUSE_LOG", "warn");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_configuration_no_restart_can_fix_exits_2_saying_what_to_check() {
    // Virtual-hosted style against an address cannot work.
    let (code, err) = refused_start(
        &["--s3-endpoint", "http://127.0.0.1:9", "--s3-bucket", "b"].map(String::from),
        &[],
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("add --s3-path-style"), "{err}");
    // A wrong secret: the store answers 403 at every start.
    let Some(endpoint) = common::s3::endpoint() else {
        return;
    };
    let prefix = common::s3::unique_prefix("wrong-secret");
    let (code, err) = refused_start(
        &common::s3::flags(&endpoint, &prefix),
        &[("AWS_SECRET_ACCESS_KEY", "not-the-secret")],
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("refuses this node's requests") && err.contains("credentials"),
        "{err}"
    );
    assert!(
        !err.contains("not-the-secret") && !err.contains("StringToSign"),
        "{err}"
    );
}

#[test]
fn listen_takes_a_host_name() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start_at(dir.path(), "localhost:0", &[]);
    create(&s.clients(), "t", 1);
}
