//! Calls on a [`Clients`] that many tests make.

use super::Clients;
use grpcio::RpcStatusCode;
use streamhouse::proto as pb;

pub fn code<T: std::fmt::Debug>(r: grpcio::Result<T>) -> RpcStatusCode {
    match r {
        Err(grpcio::Error::RpcFailure(s)) => s.code(),
        other => panic!("expected an RPC failure, got {other:?}"),
    }
}

pub fn create(c: &Clients, name: &str, partitions: u32) -> pb::TopicInfo {
    let mut req = pb::CreateTopicRequest::new();
    req.set_name(name.into());
    req.set_partitions(partitions);
    c.admin.create_topic(&req).unwrap()
}

pub fn record(key: &[u8], value: &[u8], headers: &[(&str, &[u8])]) -> pb::Record {
    let mut r = pb::Record::new();
    r.set_key(key.to_vec());
    r.set_value(value.to_vec());
    for (k, v) in headers {
        let mut h = pb::Header::new();
        h.set_key(k.to_string());
        h.set_value(v.to_vec());
        r.mut_headers().push(h);
    }
    r
}

pub fn produce(
    c: &Clients,
    topic: &str,
    partition: Option<u32>,
    records: Vec<pb::Record>,
) -> grpcio::Result<pb::ProduceResponse> {
    let mut req = pb::ProduceRequest::new();
    req.set_topic(topic.into());
    if let Some(p) = partition {
        req.set_partition(p);
    }
    for r in records {
        req.mut_records().push(r);
    }
    c.producer.produce(&req)
}

pub fn fetch(
    c: &Clients,
    topic: &str,
    partition: u32,
    offset: i64,
) -> grpcio::Result<pb::FetchResponse> {
    let mut req = pb::FetchRequest::new();
    req.set_topic(topic.into());
    req.set_partition(partition);
    req.set_offset(offset);
    c.consumer.fetch(&req)
}

/// Every record of a partition from `from` to the high watermark, checking
/// that offsets are contiguous.
pub fn fetch_all(c: &Clients, topic: &str, partition: u32, from: i64) -> Vec<pb::Record> {
    let mut out: Vec<pb::Record> = Vec::new();
    let mut next = from;
    loop {
        let f = fetch(c, topic, partition, next).unwrap();
        if f.get_records().is_empty() {
            assert_eq!(next, f.get_high_watermark(), "{topic}/{partition}");
            return out;
        }
        for (i, r) in f.get_records().iter().enumerate() {
            assert_eq!(r.get_offset(), next + i as i64, "contiguous offsets");
        }
        next = f.get_next_offset();
        out.extend(f.get_records().iter().cloned());
    }
}

/// Produces `values` with `acks=uploaded`; returns (base offset, count).
pub fn uploaded(c: &Clients, topic: &str, partition: u32, values: &[String]) -> (i64, i64) {
    let mut req = pb::ProduceRequest::new();
    req.set_topic(topic.into());
    req.set_partition(partition);
    req.set_acks(pb::Acks::ACKS_UPLOADED);
    for v in values {
        req.mut_records()
            .push(record(b"", v.as_bytes(), &[("h", b"1")]));
    }
    let resp = c.producer.produce(&req).unwrap();
    let ack = &resp.get_acks()[0];
    (ack.get_base_offset(), ack.get_count())
}

/// `n` values `{tag}-{i}`.
pub fn tagged(tag: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{tag}-{i}")).collect()
}

/// `n` records whose values are `{tag}-{i}`, as a produce request carries them.
pub fn tagged_records(tag: &str, n: usize) -> Vec<pb::Record> {
    tagged(tag, n)
        .iter()
        .map(|v| record(b"", v.as_bytes(), &[]))
        .collect()
}

/// The records' values as text.
pub fn record_values(records: &[pb::Record]) -> Vec<String> {
    records
        .iter()
        .map(|r| String::from_utf8_lossy(r.get_value()).into_owned())
        .collect()
}

/// Flags under which segments never seal by age: what is not uploaded
/// stays in the WAL.
pub const NO_SEAL: [&str; 2] = ["--segment-max-age-ms", "600000"];
