//! Proto messages ↔ the engine's plain Rust values. Nothing below the
//! server sees a proto type.

use crate::engine::TopicInfo;
use crate::partition::Acks;
use crate::proto as pb;
use crate::read::FetchResult;
use crate::record::{Header, Record};

pub(super) fn topic_info(t: TopicInfo) -> pb::TopicInfo {
    let mut out = pb::TopicInfo::new();
    out.set_name(t.name);
    out.set_partitions(t.partitions);
    out.set_retention_ms(t.retention_ms);
    out.set_retention_bytes(t.retention_bytes);
    out.set_created_at_ms(t.created_at_ms);
    for p in t.partition_info {
        let mut pi = pb::PartitionInfo::new();
        pi.set_partition(p.partition);
        pi.set_low_watermark(p.low_watermark);
        pi.set_high_watermark(p.high_watermark);
        pi.set_segment_count(p.segment_count);
        pi.set_stored_bytes(p.stored_bytes);
        pi.set_wal_records(p.wal_records);
        pi.set_wal_bytes(p.wal_bytes);
        out.mut_partition_info().push(pi);
    }
    out
}

pub(super) fn to_record(mut r: pb::Record) -> Record {
    let key = r.take_key();
    let value = r.take_value();
    Record {
        offset: 0,
        timestamp_ms: r.get_timestamp_ms(),
        key: (!key.is_empty() || r.get_empty_key()).then_some(key),
        // A null value with bytes is not null: the bytes win.
        value: (!r.get_null_value() || !value.is_empty()).then_some(value),
        headers: r
            .take_headers()
            .into_iter()
            .map(|mut h| {
                let value = h.take_value();
                Header {
                    key: h.take_key(),
                    value: (!h.get_null_value() || !value.is_empty()).then_some(value),
                }
            })
            .collect(),
    }
}

pub(super) fn to_proto(r: Record) -> pb::Record {
    let mut out = pb::Record::new();
    out.set_offset(r.offset);
    out.set_timestamp_ms(r.timestamp_ms);
    if let Some(k) = r.key {
        out.set_empty_key(k.is_empty());
        out.set_key(k);
    }
    match r.value {
        Some(v) => out.set_value(v),
        None => out.set_null_value(true),
    }
    for h in r.headers {
        let mut ph = pb::Header::new();
        ph.set_key(h.key);
        match h.value {
            Some(v) => ph.set_value(v),
            None => ph.set_null_value(true),
        }
        out.mut_headers().push(ph);
    }
    out
}

pub(super) fn acks_of(a: pb::Acks) -> Acks {
    match a {
        pb::Acks::ACKS_WAL => Acks::Wal,
        pb::Acks::ACKS_UPLOADED => Acks::Uploaded,
        pb::Acks::ACKS_NONE => Acks::None,
    }
}

pub(super) fn fetch_response(partition: u32, r: FetchResult) -> pb::FetchResponse {
    let mut out = pb::FetchResponse::new();
    out.set_partition(partition);
    out.set_next_offset(r.next_offset);
    out.set_high_watermark(r.high_watermark);
    out.set_low_watermark(r.low_watermark);
    for rec in r.records {
        out.mut_records().push(to_proto(rec));
    }
    out
}
