//! Metadata: this node is the only broker and leads every partition;
//! topics a client asks for are created when `--kafka-auto-create-topics`
//! is on and the client allows it.

use super::api::{sb, Answer};
use super::convert::{code, error_code};
use super::{Face, BROKER_ID};
use crate::engine::TopicSpec;
use crate::error::Error;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use std::sync::Arc;

/// Kafka's "not asked for" value of the authorized-operations fields.
pub const NO_OPERATIONS: i32 = i32::MIN;
/// The leader epoch every partition reports (one node, no elections).
pub const LEADER_EPOCH: i32 = 0;

pub fn metadata(face: &Arc<Face>, req: MetadataRequest, version: i16) -> Answer<MetadataResponse> {
    // Before v4 a request could not say, and brokers created topics.
    let may_create =
        face.config.auto_create_topics && (version < 4 || req.allow_auto_topic_creation);
    let topics = match req.topics {
        // Null (or, before v1, empty): every topic.
        None => all_topics(face),
        Some(t) if t.is_empty() && version == 0 => all_topics(face),
        Some(asked) => asked
            .into_iter()
            .map(|t| {
                let name = t.name.map(|n| n.0.to_string()).unwrap_or_default();
                topic(face, &name, may_create)
            })
            .collect(),
    };
    Answer::Now(
        MetadataResponse::default()
            .with_brokers(vec![broker(face)])
            .with_cluster_id(Some(sb(face.cluster_id.clone())))
            .with_controller_id(BrokerId(BROKER_ID))
            .with_topics(topics),
    )
}

pub fn broker(face: &Face) -> MetadataResponseBroker {
    MetadataResponseBroker::default()
        .with_node_id(BrokerId(BROKER_ID))
        .with_host(sb(face.host.clone()))
        .with_port(face.port)
}

fn all_topics(face: &Face) -> Vec<MetadataResponseTopic> {
    match face.engine.list_topics() {
        Ok(list) => list
            .into_iter()
            .map(|t| described(&t.name, Ok(t.partitions)))
            .collect(),
        Err(e) => {
            log::warn!("kafka: cannot list topics: {e}");
            Vec::new()
        }
    }
}

/// One asked-for topic, created first when allowed and missing.
fn topic(face: &Face, name: &str, may_create: bool) -> MetadataResponseTopic {
    let count = match face.engine.partition_count(name) {
        Err(Error::NotFound(_)) if may_create => {
            let spec = TopicSpec {
                name: name.to_string(),
                partitions: face.config.default_partitions,
                retention_ms: 0,
                retention_bytes: 0,
            };
            match face.engine.create_topic(&spec) {
                Ok(t) => {
                    log::info!(
                        "kafka: created topic {name:?} ({} partitions)",
                        t.partitions
                    );
                    Ok(t.partitions)
                }
                // Created by another request meanwhile.
                Err(Error::AlreadyExists(_)) => face.engine.partition_count(name),
                Err(e) => Err(e),
            }
        }
        other => other,
    };
    described(name, count)
}

fn described(name: &str, count: Result<u32, Error>) -> MetadataResponseTopic {
    let t = MetadataResponseTopic::default()
        .with_name(Some(TopicName(sb(name))))
        .with_topic_authorized_operations(NO_OPERATIONS);
    match count {
        Ok(n) => t.with_partitions(
            (0..n as i32)
                .map(|p| {
                    MetadataResponsePartition::default()
                        .with_partition_index(p)
                        .with_leader_id(BrokerId(BROKER_ID))
                        .with_leader_epoch(LEADER_EPOCH)
                        .with_replica_nodes(vec![BrokerId(BROKER_ID)])
                        .with_isr_nodes(vec![BrokerId(BROKER_ID)])
                })
                .collect(),
        ),
        Err(Error::InvalidArgument(_)) => t.with_error_code(code::INVALID_TOPIC_EXCEPTION),
        Err(e) => t.with_error_code(error_code(&e)),
    }
}
