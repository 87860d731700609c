//! Fetch: every asked partition is read at once (the reader pool serves
//! them in parallel); when that finds fewer than `min_bytes` and the
//! client allows a wait, every partition long-polls and the first to get
//! records answers. Records go back as one uncompressed batch per
//! partition; `max_bytes` and each partition's max are honoured, but the
//! first partition with records returns at least one record whatever its
//! size (so a large record never blocks a consumer). No transactions: the
//! last stable offset is the high watermark.

use super::api::{sb, Answer};
use super::convert::{encode_fetched, error_code};
use super::Face;
use crate::error::Error;
use crate::read::{FetchReceiver, FetchRequest as EngineFetch, FetchResult};
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{BrokerId, FetchRequest, FetchResponse, TopicName};
use std::sync::Arc;
use std::time::Duration;

/// Longest wait a fetch may ask for.
const MAX_WAIT: Duration = Duration::from_secs(60);

/// One asked-for partition.
struct Want {
    topic: String,
    partition: i32,
    offset: i64,
    max_bytes: usize,
}

pub fn fetch(face: &Arc<Face>, req: FetchRequest, _version: i16) -> Answer<FetchResponse> {
    let wants: Vec<Want> = req
        .topics
        .into_iter()
        .flat_map(|t| {
            let topic = t.topic.0.to_string();
            t.partitions.into_iter().map(move |p| Want {
                topic: topic.clone(),
                partition: p.partition,
                offset: p.fetch_offset,
                max_bytes: usize::try_from(p.partition_max_bytes).unwrap_or(0),
            })
        })
        .collect();
    let wait = Duration::from_millis(u64::try_from(req.max_wait_ms).unwrap_or(0)).min(MAX_WAIT);
    let min_bytes = usize::try_from(req.min_bytes).unwrap_or(0).max(1);
    let max_bytes = usize::try_from(req.max_bytes).unwrap_or(usize::MAX);
    let face = Arc::clone(face);
    Answer::Later(Box::new(move || {
        let mut got = read_all(&face, &wants, Duration::ZERO, max_bytes);
        let found: usize = got.iter().map(|g| g.as_ref().map_or(0, |r| r.1)).sum();
        let failed = got.iter().any(Result::is_err);
        if found < min_bytes && !failed && !wait.is_zero() && !wants.is_empty() {
            first_to_answer(&face, &wants, wait, max_bytes, &mut got);
        }
        respond(&wants, got)
    }))
}

/// A partition's answer: its read and the bytes of its records.
type Got = Result<(FetchResult, usize), Error>;

/// Reads every partition, each with the bytes left of `max_bytes` (the
/// first with records gets at least one).
fn read_all(face: &Face, wants: &[Want], wait: Duration, max_bytes: usize) -> Vec<Got> {
    let pending: Vec<_> = wants
        .iter()
        .map(|w| start(face, w, wait, max_bytes))
        .collect();
    let mut left = max_bytes;
    pending
        .into_iter()
        .map(|rx| {
            let got = finish(rx?)?;
            let (result, bytes) = got;
            if left == 0 && !result.records.is_empty() {
                // Over the response's budget: the client asks again.
                let next = result.records[0].offset;
                return Ok((empty_at(next, &result), 0));
            }
            left = left.saturating_sub(bytes);
            Ok((result, bytes))
        })
        .collect()
}

/// Long-polls every partition; the first to return replaces its slot of
/// `got` (the others keep their first, empty, read; their polls end on
/// their own).
fn first_to_answer(face: &Face, wants: &[Want], wait: Duration, max_bytes: usize, got: &mut [Got]) {
    let mut receivers = Vec::with_capacity(wants.len());
    let mut index = Vec::with_capacity(wants.len());
    for (i, w) in wants.iter().enumerate() {
        let offset = match &got[i] {
            Ok((r, _)) => r.next_offset,
            Err(_) => continue,
        };
        let w = Want {
            topic: w.topic.clone(),
            partition: w.partition,
            offset,
            max_bytes: w.max_bytes,
        };
        if let Ok(rx) = start(face, &w, wait, max_bytes) {
            receivers.push(rx);
            index.push(i);
        }
    }
    if receivers.is_empty() {
        return;
    }
    let (first, at, _rest) = futures::executor::block_on(futures::future::select_all(receivers));
    got[index[at]] = first
        .unwrap_or_else(|_| Err(Error::shutting_down()))
        .map(|r| {
            let bytes = bytes_of(&r);
            (r, bytes)
        });
}

fn start(face: &Face, w: &Want, wait: Duration, max_bytes: usize) -> Result<FetchReceiver, Error> {
    let partition = u32::try_from(w.partition)
        .map_err(|_| Error::NotFound(format!("partition {} of {}", w.partition, w.topic)))?;
    face.engine.fetch(
        &w.topic,
        partition,
        EngineFetch {
            offset: w.offset,
            max_records: face.engine.config().max_fetch_records,
            // 0 would mean the engine's default: at least one byte.
            max_bytes: w.max_bytes.min(max_bytes).max(1),
            max_wait: wait,
        },
    )
}

fn finish(rx: FetchReceiver) -> Got {
    let r = futures::executor::block_on(rx).unwrap_or_else(|_| Err(Error::shutting_down()))?;
    let bytes = bytes_of(&r);
    Ok((r, bytes))
}

fn bytes_of(r: &FetchResult) -> usize {
    r.records
        .iter()
        .map(crate::record::Record::accounted_len)
        .sum()
}

fn empty_at(offset: i64, r: &FetchResult) -> FetchResult {
    FetchResult {
        records: Vec::new(),
        next_offset: offset,
        high_watermark: r.high_watermark,
        low_watermark: r.low_watermark,
    }
}

fn respond(wants: &[Want], got: Vec<Got>) -> FetchResponse {
    let mut topics: Vec<FetchableTopicResponse> = Vec::new();
    for (w, g) in wants.iter().zip(got) {
        let data = PartitionData::default()
            .with_partition_index(w.partition)
            .with_preferred_read_replica(BrokerId(-1))
            .with_aborted_transactions(Some(Vec::new()));
        let data = match g {
            Ok((r, _)) => {
                let records = encode_fetched(&r.records);
                data.with_high_watermark(r.high_watermark)
                    .with_last_stable_offset(r.high_watermark)
                    .with_log_start_offset(r.low_watermark)
                    .with_records(Some(records.into()))
            }
            Err(e) => data
                .with_error_code(error_code(&e))
                .with_high_watermark(-1)
                .with_last_stable_offset(-1)
                .with_log_start_offset(-1)
                .with_records(Some(bytes::Bytes::new())),
        };
        match topics.last_mut() {
            Some(t) if t.topic.0.as_str() == w.topic => t.partitions.push(data),
            _ => topics.push(
                FetchableTopicResponse::default()
                    .with_topic(TopicName(sb(w.topic.clone())))
                    .with_partitions(vec![data]),
            ),
        }
    }
    FetchResponse::default().with_responses(topics)
}
