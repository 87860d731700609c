//! Produce and InitProducerId. Each partition's batches are decoded,
//! checked and queued into its writer while the request is read; the
//! answer waits for the acknowledgements (on the connection's responder).
//!
//! acks: 0 writes and answers nothing; 1 waits for the WAL fsync; -1 (all)
//! for the WAL too, or for the bucket with `--kafka-acks-all uploaded`.
//! Idempotent batches (a producer id) go through the same per-partition
//! producer tables as gRPC's: a resent batch answers its first offsets.

use super::api::{sb, Answer};
use super::convert::{code, error_code, produce_error_code, to_record};
use super::record_batch::{decode_batches, Limits, RecordBatch};
use super::Face;
use crate::engine::MAX_PRODUCE_BYTES;
use crate::error::Error;
use crate::partition::{AckReceiver, Acks};
use crate::producer::ProducerBatch;
use crate::record::Record;
use crate::server::request::MAX_BATCH_RECORDS;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{
    InitProducerIdRequest, InitProducerIdResponse, ProduceRequest, ProduceResponse, ProducerId,
};
use std::sync::Arc;

/// One batch inflated may reach this many bytes.
const MAX_INFLATED_BATCH: usize = 64 << 20;

/// One partition of the request: queued, or refused with a code.
struct Part {
    index: i32,
    outcome: Result<AckReceiver, (i16, String)>,
}

pub fn produce(face: &Arc<Face>, req: ProduceRequest, _version: i16) -> Answer<ProduceResponse> {
    let acks = match req.acks {
        0 | 1 => Some(Acks::Wal),
        -1 if face.config.acks_all_uploaded => Some(Acks::Uploaded),
        -1 => Some(Acks::Wal),
        _ => None,
    };
    // Inflated bytes left for this request's batches.
    let mut budget = MAX_PRODUCE_BYTES as usize;
    let mut topics = Vec::with_capacity(req.topic_data.len());
    for t in req.topic_data {
        let name = t.name.0.to_string();
        let parts: Vec<Part> = t
            .partition_data
            .into_iter()
            .map(|p| {
                let outcome = match (&req.transactional_id, acks) {
                    (Some(_), _) => Err((
                        code::TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
                        "transactions are not supported by StreamHouse".to_string(),
                    )),
                    (None, None) => Err((
                        code::INVALID_REQUIRED_ACKS,
                        format!("acks {} is not 0, 1 or -1", req.acks),
                    )),
                    (None, Some(acks)) => {
                        submit(face, &name, p.index, p.records, acks, &mut budget)
                    }
                };
                Part {
                    index: p.index,
                    outcome,
                }
            })
            .collect();
        topics.push((name, parts));
    }
    if req.acks == 0 {
        return Answer::Nothing;
    }
    Answer::Later(Box::new(move || answer(topics)))
}

/// Decodes one partition's records and queues them.
fn submit(
    face: &Face,
    topic: &str,
    index: i32,
    records: Option<bytes::Bytes>,
    acks: Acks,
    budget: &mut usize,
) -> Result<AckReceiver, (i16, String)> {
    let refuse = |e: Error| (error_code(&e), e.to_string());
    let count = face.engine.partition_count(topic).map_err(refuse)?;
    let partition = u32::try_from(index)
        .ok()
        .filter(|p| *p < count)
        .ok_or_else(|| {
            (
                code::UNKNOWN_TOPIC_OR_PARTITION,
                format!("{topic} has {count} partitions; there is no partition {index}"),
            )
        })?;
    let limits = Limits {
        max_records: MAX_BATCH_RECORDS,
        max_batch_bytes: MAX_INFLATED_BATCH.min(*budget),
    };
    let batches = decode_batches(records.as_deref().unwrap_or_default(), limits)
        .map_err(|e| (e.kafka_code(), e.to_string()))?;
    let (records, producer) = flatten(batches)?;
    let bytes: usize = records.iter().map(Record::accounted_len).sum();
    *budget = budget.saturating_sub(bytes);
    let sent = match producer {
        Some(p) => face
            .engine
            .produce_idempotent(topic, partition, records, acks, p),
        None => face.engine.produce(topic, partition, records, acks),
    };
    sent.map_err(|e| (produce_error_code(&e), e.to_string()))
}

/// The records of a partition's batches, and the idempotent producer's
/// batch if it is one (then it must be the only batch, as clients send).
fn flatten(
    batches: Vec<RecordBatch>,
) -> Result<(Vec<Record>, Option<ProducerBatch>), (i16, String)> {
    let invalid = |why: String| (code::INVALID_RECORD, why);
    if batches.is_empty() {
        return Err(invalid("a produce with no record batch".into()));
    }
    let producer = match batches.first() {
        Some(b) if b.producer_id >= 0 => {
            if batches.len() > 1 {
                return Err(invalid(
                    "an idempotent producer sent several batches for one partition".into(),
                ));
            }
            let epoch = u32::try_from(b.producer_epoch)
                .map_err(|_| invalid(format!("producer epoch {} is negative", b.producer_epoch)))?;
            let first_sequence = i64::from(b.base_sequence);
            if first_sequence < 0 {
                return Err((
                    code::OUT_OF_ORDER_SEQUENCE_NUMBER,
                    format!("base sequence {first_sequence} is negative"),
                ));
            }
            Some(ProducerBatch {
                producer_id: b.producer_id as u64,
                epoch,
                first_sequence,
            })
        }
        _ => None,
    };
    let total: usize = batches.iter().map(|b| b.records.len()).sum();
    let mut records = Vec::with_capacity(total);
    for b in batches {
        if b.producer_id >= 0 && producer.is_none() {
            return Err(invalid(
                "idempotent and plain batches mixed in one partition".into(),
            ));
        }
        for r in b.records {
            records.push(to_record(r));
        }
    }
    if records.is_empty() {
        return Err(invalid("a record batch with no records".into()));
    }
    Ok((records, producer))
}

/// Waits for every queued partition and builds the answer.
fn answer(topics: Vec<(String, Vec<Part>)>) -> ProduceResponse {
    let responses = topics
        .into_iter()
        .map(|(name, parts)| {
            let partition_responses = parts
                .into_iter()
                .map(|p| {
                    let r = PartitionProduceResponse::default().with_index(p.index);
                    let acked = p.outcome.and_then(|rx| {
                        futures::executor::block_on(rx)
                            .unwrap_or_else(|_| Err(Error::shutting_down()))
                            .map_err(|e| (produce_error_code(&e), e.to_string()))
                    });
                    match acked {
                        Ok(ack) => r.with_base_offset(ack.base_offset),
                        Err((c, msg)) => {
                            log::debug!("kafka: produce to {name}/{} answered {c}: {msg}", p.index);
                            r.with_error_code(c)
                                .with_base_offset(-1)
                                .with_error_message(Some(sb(msg)))
                        }
                    }
                })
                .collect();
            TopicProduceResponse::default()
                .with_name(kafka_protocol::messages::TopicName(sb(name)))
                .with_partition_responses(partition_responses)
        })
        .collect();
    ProduceResponse::default().with_responses(responses)
}

/// InitProducerId: a fresh producer id at epoch 0 for an idempotent
/// producer (as Kafka does when there is no transactional id, also for
/// the KIP-360 re-initialisation with the old id and epoch); a
/// transactional id is refused (no transactions here).
pub fn init_producer_id(
    face: &Arc<Face>,
    req: InitProducerIdRequest,
    _version: i16,
) -> Answer<InitProducerIdResponse> {
    if req
        .transactional_id
        .as_ref()
        .is_some_and(|t| !t.0.is_empty())
    {
        return Answer::Now(
            InitProducerIdResponse::default()
                .with_error_code(code::TRANSACTIONAL_ID_AUTHORIZATION_FAILED)
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1),
        );
    }
    let face = Arc::clone(face);
    Answer::Later(Box::new(move || {
        let r = InitProducerIdResponse::default();
        match face.engine.init_producer("") {
            Ok((id, epoch)) => match (i64::try_from(id), i16::try_from(epoch)) {
                (Ok(id), Ok(epoch)) => r
                    .with_producer_id(ProducerId(id))
                    .with_producer_epoch(epoch),
                _ => r
                    .with_error_code(code::UNKNOWN_SERVER_ERROR)
                    .with_producer_id(ProducerId(-1))
                    .with_producer_epoch(-1),
            },
            Err(e) => r
                .with_error_code(error_code(&e))
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1),
        }
    }))
}
