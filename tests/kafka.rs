//! The Kafka listener of the real `streamhoused`, through requests that
//! kafka-protocol encodes: every API at every advertised version, Kafka's
//! error answers, bad input, pipelining, and records crossing between the
//! gRPC and Kafka faces byte for byte. (Real clients: scripts/kafka-clients.sh.)

mod common;

use common::kafka::KafkaConn;
use common::{grpc, TestServer};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use std::io::Write;
use streamhouse::kafka::api::SUPPORTED;
use streamhouse::kafka::record_batch::{
    decode_batches, encode_batch, KafkaRecord, Limits, RecordBatch,
};

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn topic(v: &str) -> TopicName {
    TopicName(s(v))
}

fn server() -> (tempfile::TempDir, TestServer, String) {
    let dir = tempfile::tempdir().unwrap();
    let srv = TestServer::start_in(dir.path(), &[]);
    let addr = srv.kafka_addr.clone().expect("kafka listener");
    (dir, srv, addr)
}

/// An uncompressed batch of `values` (keys k0, k1, ...; timestamps from
/// `ts`), for producer `pid` at sequence `seq` (-1: not idempotent).
fn batch(values: &[&[u8]], ts: i64, pid: i64, seq: i32) -> bytes::Bytes {
    let records = values
        .iter()
        .enumerate()
        .map(|(i, v)| KafkaRecord {
            timestamp_ms: ts + i as i64,
            offset_delta: i as i32,
            key: Some(format!("k{i}").into_bytes()),
            value: Some(v.to_vec()),
            headers: vec![
                ("h".into(), Some(b"x".to_vec())),
                ("h".into(), Some(vec![])),
            ],
        })
        .collect();
    encode_batch(&RecordBatch {
        base_offset: 0,
        partition_leader_epoch: -1,
        attributes: 0,
        last_offset_delta: values.len() as i32 - 1,
        base_timestamp: ts,
        max_timestamp: ts + values.len() as i64 - 1,
        producer_id: pid,
        producer_epoch: if pid >= 0 { 0 } else { -1 },
        base_sequence: seq,
        records,
    })
    .into()
}

fn produce_req(t: &str, records: bytes::Bytes, acks: i16) -> ProduceRequest {
    use produce_request::{PartitionProduceData, TopicProduceData};
    ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic(t))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(records))])])
}

/// The partition answer of a one-partition produce: (error, base offset).
fn produced(r: &ProduceResponse) -> (i16, i64) {
    let p = &r.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

fn fetch_req(t: &str, offset: i64) -> FetchRequest {
    use fetch_request::{FetchPartition, FetchTopic};
    FetchRequest::default()
        .with_max_wait_ms(0)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic(t))
            .with_partitions(vec![FetchPartition::default()
                .with_fetch_offset(offset)
                .with_partition_max_bytes(1 << 20)])])
}

fn metadata_req(t: &str) -> MetadataRequest {
    MetadataRequest::default().with_topics(Some(vec![
        metadata_request::MetadataRequestTopic::default().with_name(Some(topic(t))),
    ]))
}

fn list_offsets_req(t: &str, timestamp: i64) -> ListOffsetsRequest {
    use list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(topic(t))
            .with_partitions(vec![
                ListOffsetsPartition::default().with_timestamp(timestamp)
            ])])
}

/// Every API at every version it is advertised at: the request decodes,
/// the answer encodes at that version and says no error.
#[test]
fn every_api_answers_at_every_advertised_version() {
    let (_d, _srv, addr) = server();
    let mut k = KafkaConn::connect(&addr);
    // The topic every request below uses, created through Metadata.
    let md = k.call(12, &metadata_req("t"));
    assert_eq!(md.topics[0].error_code, 0);
    assert_eq!(md.topics[0].partitions.len(), 1);
    let versions = |key: ApiKey| {
        let (_, lo, hi) = SUPPORTED.iter().find(|(k, ..)| *k == key).unwrap();
        *lo..=*hi
    };
    for v in versions(ApiKey::ApiVersions) {
        let r = k.call(v, &ApiVersionsRequest::default());
        assert_eq!(
            (r.error_code, r.api_keys.len()),
            (0, SUPPORTED.len()),
            "v{v}"
        );
    }
    for v in versions(ApiKey::Metadata) {
        let r = k.call(v, &metadata_req("t"));
        assert_eq!(r.topics[0].error_code, 0, "Metadata v{v}");
        assert_eq!(r.brokers.len(), 1, "Metadata v{v}");
    }
    for v in versions(ApiKey::Produce) {
        let r = k.call(v, &produce_req("t", batch(&[b"a", b"b"], 1000, -1, -1), -1));
        assert_eq!(produced(&r).0, 0, "Produce v{v}");
    }
    for v in versions(ApiKey::Fetch) {
        let r = k.call(v, &fetch_req("t", 0));
        let p = &r.responses[0].partitions[0];
        assert_eq!(p.error_code, 0, "Fetch v{v}");
        assert!(!p.records.as_ref().unwrap().is_empty(), "Fetch v{v}");
    }
    for v in versions(ApiKey::ListOffsets) {
        let r = k.call(v, &list_offsets_req("t", -1));
        let p = &r.topics[0].partitions[0];
        assert_eq!(p.error_code, 0, "ListOffsets v{v}");
        assert!(p.offset > 0, "ListOffsets v{v}");
    }
    for v in versions(ApiKey::FindCoordinator) {
        let req = FindCoordinatorRequest::default();
        let req = if v >= 4 {
            req.with_coordinator_keys(vec![s("g")])
        } else {
            req.with_key(s("g"))
        };
        let r = k.call(v, &req);
        let err = r
            .coordinators
            .first()
            .map_or(r.error_code, |c| c.error_code);
        assert_eq!(err, 0, "FindCoordinator v{v}");
    }
    for v in versions(ApiKey::OffsetCommit) {
        use offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
        let req = OffsetCommitRequest::default()
            .with_group_id(GroupId(s("g")))
            .with_generation_id_or_member_epoch(-1)
            .with_topics(vec![OffsetCommitRequestTopic::default()
                .with_name(topic("t"))
                .with_partitions(vec![
                    OffsetCommitRequestPartition::default().with_committed_offset(i64::from(v))
                ])]);
        let r = k.call(v, &req);
        assert_eq!(r.topics[0].partitions[0].error_code, 0, "OffsetCommit v{v}");
    }
    for v in versions(ApiKey::OffsetFetch) {
        offset_fetch_at(&mut k, v, 9);
    }
    for v in versions(ApiKey::InitProducerId) {
        let r = k.call(
            v,
            &InitProducerIdRequest::default().with_transaction_timeout_ms(60_000),
        );
        assert_eq!(r.error_code, 0, "InitProducerId v{v}");
        assert!(r.producer_id.0 >= 0, "InitProducerId v{v}");
    }
    for v in versions(ApiKey::CreateTopics) {
        use create_topics_request::CreatableTopic;
        let req = CreateTopicsRequest::default()
            .with_timeout_ms(5000)
            .with_topics(vec![CreatableTopic::default()
                .with_name(topic(&format!("c{v}")))
                .with_num_partitions(2)
                .with_replication_factor(-1)]);
        let r = k.call(v, &req);
        assert_eq!(r.topics[0].error_code, 0, "CreateTopics v{v}");
    }
    for v in versions(ApiKey::DeleteTopics) {
        let name = format!("c{}", v + 2);
        let req = DeleteTopicsRequest::default()
            .with_timeout_ms(5000)
            .with_topic_names(vec![topic(&name)]);
        let r = k.call(v, &req);
        assert_eq!(r.responses[0].error_code, 0, "DeleteTopics v{v}");
    }
    for v in versions(ApiKey::DescribeConfigs) {
        use describe_configs_request::DescribeConfigsResource;
        let req = DescribeConfigsRequest::default().with_resources(vec![
            DescribeConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(s("t"))
                .with_configuration_keys(None),
        ]);
        let r = k.call(v, &req);
        assert_eq!(r.results[0].error_code, 0, "DescribeConfigs v{v}");
        assert!(r.results[0]
            .configs
            .iter()
            .any(|c| c.name.as_str() == "retention.ms"));
    }
    for v in versions(ApiKey::DescribeGroups) {
        let r = k.call(
            v,
            &DescribeGroupsRequest::default().with_groups(vec![GroupId(s("g"))]),
        );
        assert_eq!(
            r.groups[0].group_state.as_str(),
            "Empty",
            "DescribeGroups v{v}"
        );
    }
    for v in versions(ApiKey::ListGroups) {
        let r = k.call(v, &ListGroupsRequest::default());
        assert!(
            r.groups.iter().any(|g| g.group_id.0.as_str() == "g"),
            "ListGroups v{v}"
        );
    }
    for v in versions(ApiKey::DescribeCluster) {
        let r = k.call(v, &DescribeClusterRequest::default());
        assert_eq!(
            (r.error_code, r.brokers.len()),
            (0, 1),
            "DescribeCluster v{v}"
        );
    }
}

/// OffsetFetch at `v` of group g, topic t, partition 0: the commit there.
fn offset_fetch_at(k: &mut KafkaConn, v: i16, want: i64) {
    let committed = if v >= 8 {
        use offset_fetch_request::{OffsetFetchRequestGroup, OffsetFetchRequestTopics};
        let req =
            OffsetFetchRequest::default().with_groups(vec![OffsetFetchRequestGroup::default()
                .with_group_id(GroupId(s("g")))
                .with_topics(Some(vec![OffsetFetchRequestTopics::default()
                    .with_name(topic("t"))
                    .with_partition_indexes(vec![0])]))]);
        k.call(v, &req).groups[0].topics[0].partitions[0].committed_offset
    } else {
        use offset_fetch_request::OffsetFetchRequestTopic;
        let req = OffsetFetchRequest::default()
            .with_group_id(GroupId(s("g")))
            .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                .with_name(topic("t"))
                .with_partition_indexes(vec![0])]));
        k.call(v, &req).topics[0].partitions[0].committed_offset
    };
    assert_eq!(committed, want, "OffsetFetch v{v}");
}

#[test]
fn an_unknown_api_versions_version_gets_a_v0_answer_with_the_list() {
    let (_d, _srv, addr) = server();
    let mut k = KafkaConn::connect(&addr);
    // v4 exists in Kafka; this node advertises 0-3.
    let id = k.send(4, &ApiVersionsRequest::default());
    let (got, r) = k.receive::<ApiVersionsRequest>(0);
    assert_eq!((got, r.error_code), (id, 35));
    let listed: Vec<_> = r
        .api_keys
        .iter()
        .map(|a| (a.api_key, a.min_version, a.max_version))
        .collect();
    let table: Vec<_> = SUPPORTED
        .iter()
        .map(|(k, lo, hi)| (*k as i16, *lo, *hi))
        .collect();
    assert_eq!(listed, table);
    // The connection goes on.
    assert_eq!(k.call(3, &ApiVersionsRequest::default()).error_code, 0);
}

#[test]
fn bad_input_is_answered_or_closed_and_other_connections_keep_working() {
    let dir = tempfile::tempdir().unwrap();
    let srv = TestServer::start_in(dir.path(), &["--metrics-listen", "127.0.0.1:0"]);
    let addr = srv.kafka_addr.clone().unwrap();
    let mut good = KafkaConn::connect(&addr);
    assert_eq!(good.call(12, &metadata_req("t")).topics[0].error_code, 0);
    let raw = |bytes: &[u8]| {
        let mut c = KafkaConn::connect(&addr);
        c.stream.write_all(bytes).unwrap();
        c.stream.shutdown(std::net::Shutdown::Write).unwrap();
        c
    };
    // A truncated frame, an oversized one, an unknown API, and a Metadata
    // v1 declaring 2^31 - 1 topics in 14 bytes: closed, nothing answered.
    let mut truncated = 100i32.to_be_bytes().to_vec();
    truncated.extend_from_slice(&[0, 3, 0, 1, 0, 0, 0, 1, 0xff, 0xff]);
    let oversized = (200i32 << 20).to_be_bytes();
    let mut unknown = 10i32.to_be_bytes().to_vec();
    unknown.extend_from_slice(&[0x03, 0xe7, 0, 0, 0, 0, 0, 9, 0xff, 0xff]);
    let mut forged = 14i32.to_be_bytes().to_vec();
    forged.extend_from_slice(&[0, 3, 0, 1, 0, 0, 0, 2, 0xff, 0xff, 0x7f, 0xff, 0xff, 0xff]);
    for bytes in [&truncated[..], &oversized[..], &unknown[..], &forged[..]] {
        let mut c = raw(bytes);
        assert!(c.read_frame().is_none(), "answered {bytes:?}");
    }
    // A batch with a flipped bit: CORRUPT_MESSAGE, the connection stays.
    let mut corrupt = batch(&[b"v"], 1, -1, -1).to_vec();
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0x01;
    let r = good.call(9, &produce_req("t", corrupt.into(), -1));
    assert_eq!(produced(&r).0, 2);
    // A gzip batch inflating to 80 MiB: MESSAGE_TOO_LARGE, nothing written.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&vec![0u8; 80 << 20]).unwrap();
    let bomb = gzip_batch(&gz.finish().unwrap());
    let r = good.call(9, &produce_req("t", bomb, -1));
    assert_eq!(produced(&r).0, 10);
    // Still serving, and nothing was written by any of it.
    let r = good.call(7, &list_offsets_req("t", -1));
    assert_eq!(r.topics[0].partitions[0].offset, 0);
    // /metrics counted the four closed connections and the requests.
    let m = common::http_get(srv.metrics_url.as_ref().unwrap());
    let value = |name: &str| -> u64 {
        m.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} in /metrics"))
    };
    assert_eq!(value("streamhouse_kafka_closed_bad_total"), 4);
    assert_eq!(
        value("streamhouse_kafka_requests_total{api=\"Produce\"}"),
        2
    );
    assert!(value("streamhouse_kafka_connections_accepted_total") >= 5);
}

/// A batch header with gzip (codec 1) over `compressed` records, with its
/// CRC computed, claiming one record.
fn gzip_batch(compressed: &[u8]) -> bytes::Bytes {
    let mut b = Vec::new();
    b.extend_from_slice(&0i64.to_be_bytes());
    b.extend_from_slice(&((49 + compressed.len()) as i32).to_be_bytes());
    b.extend_from_slice(&(-1i32).to_be_bytes());
    b.push(2);
    b.extend_from_slice(&[0; 4]); // CRC, below
    b.extend_from_slice(&1i16.to_be_bytes());
    b.extend_from_slice(&0i32.to_be_bytes());
    b.extend_from_slice(&0i64.to_be_bytes());
    b.extend_from_slice(&0i64.to_be_bytes());
    b.extend_from_slice(&(-1i64).to_be_bytes());
    b.extend_from_slice(&(-1i16).to_be_bytes());
    b.extend_from_slice(&(-1i32).to_be_bytes());
    b.extend_from_slice(&1i32.to_be_bytes());
    b.extend_from_slice(compressed);
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b.into()
}

#[test]
fn pipelined_produces_answer_in_order_and_acks_0_answers_nothing() {
    let (_d, _srv, addr) = server();
    let mut k = KafkaConn::connect(&addr);
    k.call(12, &metadata_req("p"));
    let ids: Vec<i32> = (0..5)
        .map(|i| {
            k.send(
                9,
                &produce_req("p", batch(&[&b"x"[..]; 3], 1000 + i, -1, -1), -1),
            )
        })
        .collect();
    k.send(9, &produce_req("p", batch(&[b"quiet"], 5, -1, -1), 0));
    let last = k.send(3, &ApiVersionsRequest::default());
    for (n, id) in ids.iter().enumerate() {
        let (got, r) = k.receive::<ProduceRequest>(9);
        assert_eq!(got, *id);
        assert_eq!(produced(&r), (0, 3 * n as i64));
    }
    let (got, _) = k.receive::<ApiVersionsRequest>(3);
    assert_eq!(got, last, "the acks=0 produce got no answer");
    // ...but was written.
    let r = k.call(7, &list_offsets_req("p", -1));
    assert_eq!(r.topics[0].partitions[0].offset, 16);
}

#[test]
fn idempotent_batches_get_kafkas_sequence_answers() {
    let (_d, _srv, addr) = server();
    let mut k = KafkaConn::connect(&addr);
    k.call(12, &metadata_req("i"));
    let pid = k.call(4, &InitProducerIdRequest::default()).producer_id.0;
    let send = |k: &mut KafkaConn, seq: i32, pid: i64| {
        produced(&k.call(9, &produce_req("i", batch(&[b"a", b"b"], 1, pid, seq), -1)))
    };
    assert_eq!(send(&mut k, 0, pid), (0, 0));
    assert_eq!(
        send(&mut k, 0, pid),
        (0, 0),
        "a resend answers its first offsets"
    );
    assert_eq!(
        send(&mut k, 4, pid).0,
        45,
        "a gap: OUT_OF_ORDER_SEQUENCE_NUMBER"
    );
    assert_eq!(send(&mut k, 0, 987_654_321).0, 59, "UNKNOWN_PRODUCER_ID");
    for n in 1..=5 {
        assert_eq!(send(&mut k, 2 * n, pid), (0, 2 * i64::from(n)));
    }
    assert_eq!(
        send(&mut k, 0, pid).0,
        46,
        "older than the kept batches: DUPLICATE_SEQUENCE_NUMBER"
    );
    let r = k.call(7, &list_offsets_req("i", -1));
    assert_eq!(
        r.topics[0].partitions[0].offset, 12,
        "each batch written once"
    );
    // A transactional producer is told no.
    let r = k.call(
        4,
        &InitProducerIdRequest::default().with_transactional_id(Some(TransactionalId(s("tx")))),
    );
    assert_eq!(r.error_code, 53);
}

#[test]
fn list_offsets_by_time_gives_the_record_and_its_timestamp() {
    let (_d, _srv, addr) = server();
    let mut k = KafkaConn::connect(&addr);
    k.call(12, &metadata_req("ts"));
    // Three records at 1000, 1001, 1002 ms.
    let r = k.call(
        9,
        &produce_req("ts", batch(&[b"a", b"b", b"c"], 1000, -1, -1), -1),
    );
    assert_eq!(produced(&r), (0, 0));
    let at = |k: &mut KafkaConn, t: i64| {
        let r = k.call(7, &list_offsets_req("ts", t));
        let p = &r.topics[0].partitions[0];
        (p.error_code, p.offset, p.timestamp)
    };
    assert_eq!(at(&mut k, 1001), (0, 1, 1001));
    assert_eq!(at(&mut k, 999), (0, 0, 1000));
    assert_eq!(at(&mut k, 5000), (0, -1, -1));
    assert_eq!(at(&mut k, -2), (0, 0, -1));
    assert_eq!(at(&mut k, -1), (0, 3, -1));
    assert_eq!(at(&mut k, -3), (0, 2, 1002));
}

#[test]
fn records_cross_between_grpc_and_kafka_byte_for_byte() {
    let (_d, srv, addr) = server();
    let c = srv.clients();
    grpc::create(&c, "x", 1);
    let binary: Vec<u8> = (0..=255u8).collect();
    let headers: [(&str, &[u8]); 3] = [("h", &binary), ("h", b""), ("z", &[0, 0xff])];
    let sent = vec![
        grpc::record(b"k\x00\xff", &binary, &headers),
        grpc::record(b"key2", b"", &[]),
    ];
    grpc::produce(&c, "x", Some(0), sent.clone()).unwrap();
    // gRPC -> Kafka.
    let mut k = KafkaConn::connect(&addr);
    let r = k.call(12, &fetch_req("x", 0));
    let bytes = r.responses[0].partitions[0].records.clone().unwrap();
    let limits = Limits {
        max_records: 100,
        max_batch_bytes: 1 << 20,
    };
    let got: Vec<KafkaRecord> = decode_batches(&bytes, limits)
        .unwrap()
        .into_iter()
        .flat_map(|b| b.records)
        .collect();
    assert_eq!(got.len(), 2);
    for (g, w) in got.iter().zip(&sent) {
        assert_eq!(g.key.as_deref(), Some(w.get_key()));
        assert_eq!(g.value.as_deref(), Some(w.get_value()));
        let wh: Vec<(String, Option<Vec<u8>>)> = w
            .get_headers()
            .iter()
            .map(|h| (h.get_key().to_string(), Some(h.get_value().to_vec())))
            .collect();
        assert_eq!(g.headers, wh);
    }
    // Kafka -> gRPC.
    let r = k.call(9, &produce_req("x", batch(&[&binary, b""], 77, -1, -1), -1));
    assert_eq!(produced(&r), (0, 2));
    let back = grpc::fetch_all(&c, "x", 0, 2);
    assert_eq!(back.len(), 2);
    assert_eq!(back[0].get_value(), &binary[..]);
    assert_eq!(back[0].get_key(), b"k0");
    assert_eq!(back[0].get_timestamp_ms(), 77);
    assert_eq!(back[1].get_value(), b"");
    let hs: Vec<(&str, &[u8])> = back[0]
        .get_headers()
        .iter()
        .map(|h| (h.get_key(), h.get_value()))
        .collect();
    assert_eq!(hs, vec![("h", &b"x"[..]), ("h", &b""[..])]);
}

/// Null keys, values and header values, and empty ones, through Kafka:
/// read back from the WAL, from segments in the store after a restart,
/// and over gRPC (`empty_key`, `null_value`).
#[test]
fn nulls_and_empties_survive_the_wal_segments_and_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let flags = ["--segment-max-age-ms", "200"];
    let srv = TestServer::start_in(dir.path(), &flags);
    let addr = srv.kafka_addr.clone().unwrap();
    let sent = vec![
        KafkaRecord {
            timestamp_ms: 10,
            offset_delta: 0,
            key: Some(b"user-1".to_vec()),
            value: None,
            headers: vec![("n".into(), None), ("n".into(), Some(vec![]))],
        },
        KafkaRecord {
            timestamp_ms: 11,
            offset_delta: 1,
            key: Some(vec![]),
            value: Some(vec![]),
            headers: vec![],
        },
        KafkaRecord {
            timestamp_ms: 12,
            offset_delta: 2,
            key: None,
            value: Some(b"v".to_vec()),
            headers: vec![("e".into(), Some(vec![]))],
        },
    ];
    let bytes = encode_batch(&RecordBatch {
        base_offset: 0,
        partition_leader_epoch: -1,
        attributes: 0,
        last_offset_delta: 2,
        base_timestamp: 10,
        max_timestamp: 12,
        producer_id: -1,
        producer_epoch: -1,
        base_sequence: -1,
        records: sent.clone(),
    });
    let read = |addr: &str| -> Vec<KafkaRecord> {
        let mut k = KafkaConn::connect(addr);
        let r = k.call(12, &fetch_req("n", 0));
        let bytes = r.responses[0].partitions[0].records.clone().unwrap();
        let limits = Limits {
            max_records: 10,
            max_batch_bytes: 1 << 20,
        };
        decode_batches(&bytes, limits)
            .unwrap()
            .into_iter()
            .flat_map(|b| b.records)
            .collect()
    };
    let mut k = KafkaConn::connect(&addr);
    k.call(12, &metadata_req("n"));
    assert_eq!(
        produced(&k.call(9, &produce_req("n", bytes.into(), -1))),
        (0, 0)
    );
    assert_eq!(read(&addr), sent, "from the WAL");
    // Over gRPC: the distinctions as flags.
    let c = srv.clients();
    let g = grpc::fetch_all(&c, "n", 0, 0);
    assert!(g[0].get_null_value() && g[0].get_headers()[0].get_null_value());
    assert!(!g[0].get_headers()[1].get_null_value());
    assert!(g[1].get_empty_key() && !g[1].get_null_value());
    assert!(!g[2].get_empty_key() && g[2].get_key().is_empty());
    // Sealed by age and uploaded; a restart reads them from the segment.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let srv = srv.restart();
    let addr = srv.kafka_addr.clone().unwrap();
    assert_eq!(read(&addr), sent, "after a restart");
    let segments = common::local_segments(dir.path(), "n", 0);
    assert!(!segments.is_empty(), "uploaded to a segment");
}

/// Offsets committed through one face are the offsets the other reads;
/// CreateTopics' retention configs are the topic's; a fetch whose byte
/// limits are smaller than a record still returns it.
#[test]
fn offsets_and_topic_configs_are_shared_with_grpc_and_a_fetch_returns_at_least_a_record() {
    use create_topics_request::{CreatableTopic, CreatableTopicConfig};
    use streamhouse::proto as pb;
    let (_d, srv, addr) = server();
    let c = srv.clients();
    let mut k = KafkaConn::connect(&addr);
    let configs = [
        ("retention.ms", "3600000"),
        ("retention.bytes", "-1"),
        ("cleanup.policy", "delete"),
    ]
    .map(|(n, v)| {
        CreatableTopicConfig::default()
            .with_name(s(n))
            .with_value(Some(s(v)))
    })
    .to_vec();
    let req = CreateTopicsRequest::default()
        .with_timeout_ms(5000)
        .with_topics(vec![CreatableTopic::default()
            .with_name(topic("o"))
            .with_num_partitions(1)
            .with_replication_factor(1)
            .with_configs(configs)]);
    assert_eq!(k.call(7, &req).topics[0].error_code, 0);
    let mut d = pb::DescribeTopicRequest::new();
    d.set_name("o".into());
    let info = c.admin.describe_topic(&d).unwrap();
    assert_eq!(
        (info.get_retention_ms(), info.get_retention_bytes()),
        (3_600_000, 0)
    );
    // An unsupported config is refused, not ignored.
    let bad = CreateTopicsRequest::default().with_topics(vec![CreatableTopic::default()
        .with_name(topic("o2"))
        .with_num_partitions(1)
        .with_replication_factor(1)
        .with_configs(vec![CreatableTopicConfig::default()
            .with_name(s("cleanup.policy"))
            .with_value(Some(s("compact")))])]);
    assert_eq!(k.call(7, &bad).topics[0].error_code, 40);

    let values: Vec<Vec<u8>> = (0..10u8).map(|i| vec![i; 300]).collect();
    let refs: Vec<&[u8]> = values.iter().map(Vec::as_slice).collect();
    k.call(9, &produce_req("o", batch(&refs, 1, -1, -1), -1));
    // Kafka commits 7; gRPC reads 7. gRPC commits 9; Kafka reads 9.
    use offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
    let commit = OffsetCommitRequest::default()
        .with_group_id(GroupId(s("g")))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(topic("o"))
            .with_partitions(vec![
                OffsetCommitRequestPartition::default().with_committed_offset(7)
            ])]);
    assert_eq!(k.call(8, &commit).topics[0].partitions[0].error_code, 0);
    let mut get = pb::GetCommittedOffsetRequest::new();
    get.set_group("g".into());
    get.set_topic("o".into());
    assert_eq!(
        c.consumer.get_committed_offset(&get).unwrap().get_offset(),
        7
    );
    let mut put = pb::CommitOffsetRequest::new();
    put.set_group("g".into());
    put.set_topic("o".into());
    put.set_offset(9);
    c.consumer.commit_offset(&put).unwrap();
    {
        use offset_fetch_request::OffsetFetchRequestTopic;
        let req = OffsetFetchRequest::default()
            .with_group_id(GroupId(s("g")))
            .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                .with_name(topic("o"))
                .with_partition_indexes(vec![0])]));
        assert_eq!(k.call(7, &req).topics[0].partitions[0].committed_offset, 9);
    }
    // Partition max 1 byte: one 300-byte record anyway; 1,100: three (each
    // is charged 337 bytes: key, value, headers and the overheads).
    for (max, want) in [(1, 1), (1100, 3)] {
        let mut req = fetch_req("o", 2);
        req.topics[0].partitions[0].partition_max_bytes = max;
        let r = k.call(12, &req);
        let bytes = r.responses[0].partitions[0].records.clone().unwrap();
        let limits = Limits {
            max_records: 100,
            max_batch_bytes: 1 << 20,
        };
        let got: Vec<KafkaRecord> = decode_batches(&bytes, limits)
            .unwrap()
            .into_iter()
            .flat_map(|b| b.records)
            .collect();
        assert_eq!(got.len(), want, "partition max {max}");
        assert_eq!(got[0].value.as_deref(), Some(&values[2][..]));
    }
}

/// `--kafka-acks-all uploaded`: an acks=-1 produce is answered once its
/// segment is in the store.
#[test]
fn acks_all_can_wait_for_the_bucket() {
    let dir = tempfile::tempdir().unwrap();
    let srv = TestServer::start_in(dir.path(), &["--kafka-acks-all", "uploaded"]);
    let mut k = KafkaConn::connect(srv.kafka_addr.as_ref().unwrap());
    k.call(12, &metadata_req("u"));
    let r = k.call(9, &produce_req("u", batch(&[b"durable"], 1, -1, -1), -1));
    assert_eq!(produced(&r), (0, 0));
    assert_eq!(
        common::local_segments(dir.path(), "u", 0).len(),
        1,
        "in the store when answered"
    );
}
