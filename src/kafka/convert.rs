//! Between Kafka's terms and the engine's: error codes, and records both
//! ways.

use super::record_batch::{put_record, write_batch, KafkaRecord, RecordBatch};
use crate::error::Error;
use crate::record::{Header, Record};

/// Kafka's error codes that this face answers with (names as Kafka's
/// `Errors` enum has them).
pub mod code {
    pub const NONE: i16 = 0;
    pub const UNKNOWN_SERVER_ERROR: i16 = -1;
    pub const OFFSET_OUT_OF_RANGE: i16 = 1;
    pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
    pub const LEADER_NOT_AVAILABLE: i16 = 5;
    pub const NOT_LEADER_OR_FOLLOWER: i16 = 6;
    pub const REQUEST_TIMED_OUT: i16 = 7;
    pub const INVALID_TOPIC_EXCEPTION: i16 = 17;
    pub const INVALID_REQUIRED_ACKS: i16 = 21;
    pub const INVALID_GROUP_ID: i16 = 24;
    pub const UNSUPPORTED_VERSION: i16 = 35;
    pub const TOPIC_ALREADY_EXISTS: i16 = 36;
    pub const INVALID_PARTITIONS: i16 = 37;
    pub const INVALID_REPLICATION_FACTOR: i16 = 38;
    pub const INVALID_REPLICA_ASSIGNMENT: i16 = 39;
    pub const INVALID_CONFIG: i16 = 40;
    pub const INVALID_REQUEST: i16 = 42;
    pub const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;
    pub const DUPLICATE_SEQUENCE_NUMBER: i16 = 46;
    pub const INVALID_PRODUCER_EPOCH: i16 = 47;
    pub const TRANSACTIONAL_ID_AUTHORIZATION_FAILED: i16 = 53;
    pub const KAFKA_STORAGE_ERROR: i16 = 56;
    pub const UNKNOWN_PRODUCER_ID: i16 = 59;
    pub const INVALID_RECORD: i16 = 87;
}

/// The Kafka code for an engine error outside a produce (see
/// [`produce_error_code`]).
pub fn error_code(e: &Error) -> i16 {
    match e {
        Error::InvalidArgument(_) => code::INVALID_REQUEST,
        Error::NotFound(_) => code::UNKNOWN_TOPIC_OR_PARTITION,
        Error::AlreadyExists(_) => code::TOPIC_ALREADY_EXISTS,
        Error::OutOfRange(_) => code::OFFSET_OUT_OF_RANGE,
        // Retriable: the client backs off and tries again.
        Error::Backpressure(_) => code::REQUEST_TIMED_OUT,
        // Shutting down, or another node owns the prefix: the client
        // refreshes its metadata and retries.
        Error::Unavailable(_) | Error::NotLeader { .. } => code::NOT_LEADER_OR_FOLLOWER,
        Error::FailedPrecondition(_) => code::OUT_OF_ORDER_SEQUENCE_NUMBER,
        Error::Aborted(_) => code::INVALID_PRODUCER_EPOCH,
        Error::DataLoss(_)
        | Error::Corruption { .. }
        | Error::Malformed { .. }
        | Error::Store(_)
        | Error::Meta(_)
        | Error::Io { .. } => code::KAFKA_STORAGE_ERROR,
        Error::Config(_) => code::UNKNOWN_SERVER_ERROR,
    }
}

/// The Kafka code for an error of an (idempotent) produce: the topic and
/// partition were checked before, so NOT_FOUND is an unknown producer id
/// and ALREADY_EXISTS a batch older than the ones kept.
pub fn produce_error_code(e: &Error) -> i16 {
    match e {
        Error::NotFound(_) => code::UNKNOWN_PRODUCER_ID,
        Error::AlreadyExists(_) => code::DUPLICATE_SEQUENCE_NUMBER,
        Error::InvalidArgument(_) => code::INVALID_RECORD,
        other => error_code(other),
    }
}

/// A Kafka record as the engine stores it: null keys, values and header
/// values stay null (the WAL and segments keep them apart from empty ones).
pub fn to_record(r: KafkaRecord) -> Record {
    Record {
        offset: 0,
        // Kafka's "no timestamp" (-1) and anything before 1970 get the
        // server's time (the engine reads 0 as "now").
        timestamp_ms: r.timestamp_ms.max(0),
        key: r.key,
        value: r.value,
        headers: r
            .headers
            .into_iter()
            .map(|(key, value)| Header { key, value })
            .collect(),
    }
}

/// Records read from a partition (consecutive offsets) as one
/// uncompressed batch, written straight from the records; empty for none.
pub fn encode_fetched(records: &[Record]) -> Vec<u8> {
    let (Some(first), Some(last)) = (records.first(), records.last()) else {
        return Vec::new();
    };
    let header = RecordBatch {
        base_offset: first.offset,
        partition_leader_epoch: 0,
        attributes: 0,
        last_offset_delta: (last.offset - first.offset) as i32,
        base_timestamp: first.timestamp_ms,
        max_timestamp: records.iter().map(|r| r.timestamp_ms).max().unwrap_or(0),
        producer_id: -1,
        producer_epoch: -1,
        base_sequence: -1,
        records: Vec::new(),
    };
    let bytes: usize = records.iter().map(Record::accounted_len).sum();
    let mut out = Vec::with_capacity(61 + bytes + 8 * records.len());
    write_batch(&mut out, &header, records.len(), |body| {
        for r in records {
            put_record(
                body,
                r.timestamp_ms.wrapping_sub(header.base_timestamp),
                (r.offset - first.offset) as i32,
                r.key.as_deref(),
                r.value.as_deref(),
                r.headers
                    .iter()
                    .map(|h| (h.key.as_str(), h.value.as_deref())),
            );
        }
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::record_batch::{decode_batches, Limits};

    #[test]
    fn records_read_back_as_the_batch_a_client_decodes() {
        let records: Vec<Record> = (0..3)
            .map(|i| Record {
                offset: 40 + i,
                timestamp_ms: 1_700_000_000_000 + i,
                key: (i != 1).then(|| vec![i as u8]),
                value: Some(vec![b'v'; i as usize]),
                headers: vec![
                    Header {
                        key: "h".into(),
                        value: Some(b"1".to_vec()),
                    },
                    Header {
                        key: "h".into(),
                        value: Some(vec![]),
                    },
                ],
            })
            .collect();
        let bytes = encode_fetched(&records);
        let limits = Limits {
            max_records: 10,
            max_batch_bytes: 1 << 20,
        };
        let back = decode_batches(&bytes, limits).unwrap();
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].base_offset, 40);
        let again: Vec<Record> = back[0]
            .records
            .iter()
            .cloned()
            .map(|r| {
                let offset = back[0].base_offset + i64::from(r.offset_delta);
                let mut rec = to_record(r);
                rec.offset = offset;
                rec
            })
            .collect();
        assert_eq!(again, records);
        assert!(encode_fetched(&[]).is_empty());
    }

    #[test]
    fn nulls_and_empties_stay_apart_both_ways() {
        let records: Vec<Record> = [
            (None, None, None),
            (Some(vec![]), Some(vec![]), Some(vec![])),
            (Some(b"k".to_vec()), None, Some(b"v".to_vec())),
        ]
        .into_iter()
        .enumerate()
        .map(|(i, (key, value, header))| Record {
            offset: i as i64,
            timestamp_ms: 5,
            key,
            value,
            headers: vec![Header {
                key: "h".into(),
                value: header,
            }],
        })
        .collect();
        let limits = Limits {
            max_records: 10,
            max_batch_bytes: 1 << 10,
        };
        let batches = decode_batches(&encode_fetched(&records), limits).unwrap();
        let back: Vec<Record> = batches
            .into_iter()
            .flat_map(|b| b.records)
            .map(|r| {
                let offset = i64::from(r.offset_delta);
                let mut rec = to_record(r);
                rec.offset = offset;
                rec
            })
            .collect();
        assert_eq!(back, records);
    }

    #[test]
    fn produce_errors_name_the_producer_cases() {
        assert_eq!(
            produce_error_code(&Error::NotFound("p".into())),
            code::UNKNOWN_PRODUCER_ID
        );
        assert_eq!(
            produce_error_code(&Error::AlreadyExists("s".into())),
            code::DUPLICATE_SEQUENCE_NUMBER
        );
        assert_eq!(
            produce_error_code(&Error::FailedPrecondition("gap".into())),
            code::OUT_OF_ORDER_SEQUENCE_NUMBER
        );
        assert_eq!(
            produce_error_code(&Error::Aborted("fenced".into())),
            code::INVALID_PRODUCER_EPOCH
        );
        assert_eq!(
            error_code(&Error::NotFound("t".into())),
            code::UNKNOWN_TOPIC_OR_PARTITION
        );
    }
}
