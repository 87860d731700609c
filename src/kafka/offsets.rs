//! ListOffsets, FindCoordinator, OffsetCommit and OffsetFetch. Committed
//! offsets live where gRPC's do (metadata and the bucket checkpoint; etcd
//! in a cluster), so `streamctl group get` sees a Kafka client's commits
//! and the reverse. A commit is checked against the group's membership
//! first (generation, member id, static instance), as Kafka's coordinator
//! checks it, on the group's coordinator only; any node answers a fetch.

use super::api::{sb, Answer};
use super::convert::{code, error_code};
use super::coordinator::COORDINATOR_NOT_AVAILABLE;
use super::group::Caller;
use super::metadata::LEADER_EPOCH;
use super::Face;
use crate::engine::{GroupHome, OffsetCommit};
use crate::error::{Error, Result};
use crate::read::FetchRequest as EngineFetch;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// ListOffsets' special timestamps.
const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;

pub fn list_offsets(
    face: &Arc<Face>,
    req: ListOffsetsRequest,
    version: i16,
) -> Answer<ListOffsetsResponse> {
    // The field exists from v4; kafka-protocol refuses it set before.
    let epoch = if version >= 4 { LEADER_EPOCH } else { -1 };
    let face = Arc::clone(face);
    Answer::Later(Box::new(move || {
        let topics = req
            .topics
            .into_iter()
            .map(|t| {
                let name = t.name.0.to_string();
                let partitions = t
                    .partitions
                    .into_iter()
                    .map(|p| {
                        let r = ListOffsetsPartitionResponse::default()
                            .with_partition_index(p.partition_index)
                            .with_leader_epoch(epoch);
                        match offset_for(&face, &name, p.partition_index, p.timestamp) {
                            Ok((offset, timestamp)) => {
                                r.with_offset(offset).with_timestamp(timestamp)
                            }
                            Err(e) => r
                                .with_error_code(error_code(&e))
                                .with_offset(-1)
                                .with_timestamp(-1),
                        }
                    })
                    .collect();
                ListOffsetsTopicResponse::default()
                    .with_name(TopicName(sb(name)))
                    .with_partitions(partitions)
            })
            .collect();
        ListOffsetsResponse::default().with_topics(topics)
    }))
}

/// (offset, timestamp) for one partition: -1/-2 give the high / low
/// watermark (timestamp -1); -3 the last record; a time the first record
/// at or after it, with its timestamp, or (-1, -1) when there is none.
fn offset_for(face: &Face, topic: &str, partition: i32, timestamp: i64) -> Result<(i64, i64)> {
    let partition = u32::try_from(partition)
        .map_err(|_| Error::NotFound(format!("partition {partition} of {topic}")))?;
    let engine = &face.engine;
    match timestamp {
        LATEST | EARLIEST => Ok((engine.list_offsets_sync(topic, partition, timestamp)?, -1)),
        MAX_TIMESTAMP => {
            let high = engine.list_offsets_sync(topic, partition, LATEST)?;
            let low = engine.list_offsets_sync(topic, partition, EARLIEST)?;
            if high <= low {
                return Ok((-1, -1));
            }
            record_at(face, topic, partition, high - 1)
        }
        t if t >= 0 => {
            let offset = engine.list_offsets_sync(topic, partition, t)?;
            let high = engine.list_offsets_sync(topic, partition, LATEST)?;
            if offset >= high {
                return Ok((-1, -1));
            }
            record_at(face, topic, partition, offset)
        }
        other => Err(Error::InvalidArgument(format!(
            "timestamp {other}: -1 (latest), -2 (earliest), -3 (max timestamp) or a time in ms"
        ))),
    }
}

/// The offset and timestamp of the record at `offset` (or the next one).
fn record_at(face: &Face, topic: &str, partition: u32, offset: i64) -> Result<(i64, i64)> {
    let req = EngineFetch {
        offset,
        max_records: 1,
        max_bytes: 1,
        max_wait: Duration::ZERO,
    };
    let got = face.engine.fetch_sync(topic, partition, req)?;
    Ok(got
        .records
        .first()
        .map_or((-1, -1), |r| (r.offset, r.timestamp_ms)))
}

/// Kafka's NOT_COORDINATOR: the client finds the coordinator again.
const NOT_COORDINATOR: i16 = 16;

/// Why this node does not handle `group`'s requests (NOT_COORDINATOR, or
/// COORDINATOR_NOT_AVAILABLE during a failover); `None` when it does. A
/// single node coordinates every group; in a cluster, the leader of the
/// group's slot does, and its state from an earlier epoch is dropped.
pub(super) fn not_coordinator(face: &Face, group: &str) -> Option<i16> {
    match face.engine.group_home(group) {
        GroupHome::Here { epoch } => {
            face.groups.fence(group, epoch);
            None
        }
        GroupHome::At { .. } => Some(NOT_COORDINATOR),
        GroupHome::Nowhere => Some(COORDINATOR_NOT_AVAILABLE),
    }
}

/// A coordinator as FindCoordinator names it.
struct Found {
    error: i16,
    message: Option<StrBytes>,
    node_id: i32,
    host: String,
    port: i32,
}

fn coordinator_of(face: &Face, key: &str, key_type: i8) -> Found {
    const TRANSACTION: i8 = 1;
    let here = |error, message: Option<&str>| Found {
        error,
        message: message.map(sb),
        node_id: face.broker_id,
        host: face.host.clone(),
        port: face.port,
    };
    if key_type == TRANSACTION {
        return here(
            code::TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
            Some("transactions are not supported by StreamHouse"),
        );
    }
    let nowhere = |why: &str| Found {
        error: COORDINATOR_NOT_AVAILABLE,
        message: Some(sb(why.to_string())),
        node_id: -1,
        host: String::new(),
        port: -1,
    };
    match face.engine.group_home(key) {
        GroupHome::Here { .. } => here(code::NONE, None),
        GroupHome::At { node, kafka_addr } => match super::split_host_port(&kafka_addr) {
            Ok((host, port)) => Found {
                error: code::NONE,
                message: None,
                node_id: super::broker_id(&node),
                host,
                port,
            },
            Err(_) => nowhere("the group's coordinator has no Kafka listener"),
        },
        GroupHome::Nowhere => nowhere("no node coordinates the group at the moment; retry"),
    }
}

/// This node, another node of its cluster, or none during a failover;
/// transactions have no coordinator.
pub fn find_coordinator(
    face: &Arc<Face>,
    req: FindCoordinatorRequest,
    version: i16,
) -> Answer<FindCoordinatorResponse> {
    let r = FindCoordinatorResponse::default();
    if version >= 4 {
        let coordinators = req
            .coordinator_keys
            .into_iter()
            .map(|key| {
                let f = coordinator_of(face, key.as_str(), req.key_type);
                Coordinator::default()
                    .with_key(key)
                    .with_node_id(BrokerId(f.node_id))
                    .with_host(sb(f.host))
                    .with_port(f.port)
                    .with_error_code(f.error)
                    .with_error_message(f.message)
            })
            .collect();
        return Answer::Now(r.with_coordinators(coordinators));
    }
    let f = coordinator_of(face, req.key.as_str(), req.key_type);
    Answer::Now(
        r.with_error_code(f.error)
            .with_error_message(f.message)
            .with_node_id(BrokerId(f.node_id))
            .with_host(sb(f.host))
            .with_port(f.port),
    )
}

pub fn offset_commit(
    face: &Arc<Face>,
    req: OffsetCommitRequest,
    _v: i16,
) -> Answer<OffsetCommitResponse> {
    let group = req.group_id.0.to_string();
    let instance = req.group_instance_id.as_ref().map(|s| s.as_str());
    let caller = Caller::new(req.member_id.as_str(), instance);
    // v2–v8 carry the generation; -1 is a consumer outside group management.
    let refused = not_coordinator(face, &group).unwrap_or_else(|| {
        face.groups
            .check_commit(&group, caller, req.generation_id_or_member_epoch)
    });
    // Every partition's commit in one engine call (one etcd transaction
    // in a cluster); a negative partition index is answered on its own.
    let mut commits = Vec::new();
    for t in &req.topics {
        for p in &t.partitions {
            if let (code::NONE, Ok(partition)) = (refused, u32::try_from(p.partition_index)) {
                commits.push(OffsetCommit {
                    topic: t.name.0.to_string(),
                    partition,
                    offset: p.committed_offset,
                    metadata: p
                        .committed_metadata
                        .as_ref()
                        .map_or("", |m| m.as_str())
                        .to_string(),
                });
            }
        }
    }
    let mut results = face.engine.commit_offsets(&group, commits).into_iter();
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let partitions = t
                .partitions
                .into_iter()
                .map(|p| {
                    let code = match (refused, p.partition_index >= 0) {
                        (code::NONE, true) => match results.next() {
                            Some(Ok(())) => code::NONE,
                            Some(Err(Error::InvalidArgument(m))) if m.contains("group") => {
                                code::INVALID_GROUP_ID
                            }
                            Some(Err(e)) => offsets_error_code(&e),
                            None => code::UNKNOWN_SERVER_ERROR,
                        },
                        (code::NONE, false) => code::UNKNOWN_TOPIC_OR_PARTITION,
                        (refused, _) => refused,
                    };
                    OffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(code)
                })
                .collect();
            OffsetCommitResponseTopic::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    Answer::Now(OffsetCommitResponse::default().with_topics(topics))
}

/// An offset API's error: where the offsets are kept (etcd, in a
/// cluster) not answering is the coordinator's, which clients retry.
fn offsets_error_code(e: &Error) -> i16 {
    match e {
        Error::Unavailable(_) => COORDINATOR_NOT_AVAILABLE,
        e => error_code(e),
    }
}

/// One partition's committed offset as OffsetFetch answers it.
struct Committed {
    partition: i32,
    offset: i64,
    metadata: String,
    error: i16,
}

/// One group's committed offsets by topic,
/// for the asked partitions or (`None`) all of them. A partition without
/// a commit answers offset -1.
fn committed(
    face: &Face,
    group: &str,
    asked: Option<Vec<(String, Vec<i32>)>>,
) -> Result<BTreeMap<String, Vec<Committed>>> {
    let mut out: BTreeMap<String, Vec<Committed>> = BTreeMap::new();
    let found = |partition, offset, metadata, error| Committed {
        partition,
        offset,
        metadata,
        error,
    };
    match asked {
        None => {
            for o in face.engine.group_offsets(group)? {
                out.entry(o.topic).or_default().push(found(
                    o.partition as i32,
                    o.offset,
                    o.metadata,
                    code::NONE,
                ));
            }
        }
        Some(topics) => {
            for (topic, parts) in topics {
                let entry = out.entry(topic.clone()).or_default();
                for p in parts {
                    let got = u32::try_from(p)
                        .map_err(|_| Error::NotFound(format!("partition {p}")))
                        .and_then(|part| face.engine.committed_offset(group, &topic, part));
                    entry.push(match got {
                        Ok(Some(o)) => found(p, o.offset, o.metadata, code::NONE),
                        Ok(None) => found(p, -1, String::new(), code::NONE),
                        Err(e) => found(p, -1, String::new(), offsets_error_code(&e)),
                    });
                }
            }
        }
    }
    Ok(out)
}

pub fn offset_fetch(
    face: &Arc<Face>,
    req: OffsetFetchRequest,
    version: i16,
) -> Answer<OffsetFetchResponse> {
    if version >= 8 {
        let groups = req
            .groups
            .into_iter()
            .map(|g| {
                let asked = g.topics.map(|ts| {
                    ts.into_iter()
                        .map(|t| (t.name.0.to_string(), t.partition_indexes))
                        .collect()
                });
                let r = OffsetFetchResponseGroup::default().with_group_id(g.group_id.clone());
                match committed(face, g.group_id.0.as_str(), asked) {
                    Ok(map) => r.with_topics(
                        map.into_iter()
                            .map(|(topic, parts)| {
                                OffsetFetchResponseTopics::default()
                                    .with_name(TopicName(sb(topic)))
                                    .with_partitions(
                                        parts
                                            .into_iter()
                                            .map(|c| {
                                                OffsetFetchResponsePartitions::default()
                                                    .with_partition_index(c.partition)
                                                    .with_committed_offset(c.offset)
                                                    .with_metadata(Some(sb(c.metadata)))
                                                    .with_error_code(c.error)
                                            })
                                            .collect(),
                                    )
                            })
                            .collect(),
                    ),
                    Err(e) => r.with_error_code(offsets_error_code(&e)),
                }
            })
            .collect();
        return Answer::Now(OffsetFetchResponse::default().with_groups(groups));
    }
    let asked = req.topics.map(|ts| {
        ts.into_iter()
            .map(|t| (t.name.0.to_string(), t.partition_indexes))
            .collect()
    });
    let r = OffsetFetchResponse::default();
    Answer::Now(match committed(face, req.group_id.0.as_str(), asked) {
        Ok(map) => r.with_topics(
            map.into_iter()
                .map(|(topic, parts)| {
                    OffsetFetchResponseTopic::default()
                        .with_name(TopicName(sb(topic)))
                        .with_partitions(
                            parts
                                .into_iter()
                                .map(|c| {
                                    OffsetFetchResponsePartition::default()
                                        .with_partition_index(c.partition)
                                        .with_committed_offset(c.offset)
                                        .with_metadata(Some(sb(c.metadata)))
                                        .with_error_code(c.error)
                                })
                                .collect(),
                        )
                })
                .collect(),
        ),
        Err(e) => r.with_error_code(offsets_error_code(&e)),
    })
}
