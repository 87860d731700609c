//! Metadata: one node is the only broker and leads every partition; in a
//! cluster every live node with a Kafka listener is a broker, and each
//! partition names its leader (and the leader's epoch) as this node last
//! read them from etcd. Topics a client asks for are created when
//! `--kafka-auto-create-topics` is on and the client allows it.

use super::api::{sb, Answer};
use super::convert::{code, error_code};
use super::{broker_id, Face};
use crate::engine::TopicSpec;
use crate::error::Error;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use std::collections::HashMap;
use std::sync::Arc;

/// Kafka's "not asked for" value of the authorized-operations fields.
pub const NO_OPERATIONS: i32 = i32::MIN;
/// The leader epoch every partition reports (one node, no elections).
pub const LEADER_EPOCH: i32 = 0;

pub fn metadata(face: &Arc<Face>, req: MetadataRequest, version: i16) -> Answer<MetadataResponse> {
    // Before v4 a request could not say, and brokers created topics.
    let may_create =
        face.config.auto_create_topics && (version < 4 || req.allow_auto_topic_creation);
    let leaders = Leaders::now(face);
    let topics = match req.topics {
        // Null (or, before v1, empty): every topic.
        None => all_topics(face, &leaders),
        Some(t) if t.is_empty() && version == 0 => all_topics(face, &leaders),
        Some(asked) => asked
            .into_iter()
            .map(|t| {
                let name = t.name.map(|n| n.0.to_string()).unwrap_or_default();
                topic(face, &leaders, &name, may_create)
            })
            .collect(),
    };
    Answer::Now(
        MetadataResponse::default()
            .with_brokers(leaders.brokers)
            .with_cluster_id(Some(sb(face.cluster_id.clone())))
            .with_controller_id(BrokerId(face.broker_id))
            .with_topics(topics),
    )
}

/// The brokers, and who leads each partition.
struct Leaders {
    /// This node's broker id.
    me: i32,
    brokers: Vec<MetadataResponseBroker>,
    /// Cluster mode: (topic, partition) -> (leader's broker id, epoch).
    /// `None`: this node is the only broker and leads everything.
    cluster: Option<HashMap<(String, u32), (i32, i32)>>,
}

impl Leaders {
    fn now(face: &Face) -> Leaders {
        let Some(view) = face.engine.cluster_view() else {
            return Leaders {
                me: face.broker_id,
                brokers: vec![broker(face)],
                cluster: None,
            };
        };
        let mut brokers = Vec::new();
        for n in view.nodes.iter().filter(|n| !n.kafka_addr.is_empty()) {
            if let Ok((host, port)) = super::split_host_port(&n.kafka_addr) {
                brokers.push(
                    MetadataResponseBroker::default()
                        .with_node_id(BrokerId(broker_id(&n.id)))
                        .with_host(sb(host))
                        .with_port(port),
                );
            }
        }
        let cluster = view
            .leaders
            .into_iter()
            .map(|(p, l)| {
                let epoch = i32::try_from(l.epoch).unwrap_or(i32::MAX);
                ((p.topic, p.partition), (broker_id(&l.node), epoch))
            })
            .collect();
        Leaders {
            me: face.broker_id,
            brokers,
            cluster: Some(cluster),
        }
    }

    /// The partition's leader and epoch; `None`: it has none right now.
    fn of(&self, topic: &str, p: u32) -> Option<(i32, i32)> {
        match &self.cluster {
            None => Some((self.me, LEADER_EPOCH)),
            Some(c) => c.get(&(topic.to_string(), p)).copied(),
        }
    }
}

pub fn broker(face: &Face) -> MetadataResponseBroker {
    MetadataResponseBroker::default()
        .with_node_id(BrokerId(face.broker_id))
        .with_host(sb(face.host.clone()))
        .with_port(face.port)
}

fn all_topics(face: &Face, leaders: &Leaders) -> Vec<MetadataResponseTopic> {
    match face.engine.list_topics() {
        Ok(list) => list
            .into_iter()
            .map(|t| described(leaders, &t.name, Ok(t.partitions)))
            .collect(),
        Err(e) => {
            log::warn!("kafka: cannot list topics: {e}");
            Vec::new()
        }
    }
}

/// One asked-for topic, created first when allowed and missing.
fn topic(face: &Face, leaders: &Leaders, name: &str, may_create: bool) -> MetadataResponseTopic {
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
    described(leaders, name, count)
}

fn described(leaders: &Leaders, name: &str, count: Result<u32, Error>) -> MetadataResponseTopic {
    let t = MetadataResponseTopic::default()
        .with_name(Some(TopicName(sb(name))))
        .with_topic_authorized_operations(NO_OPERATIONS);
    match count {
        Ok(n) => t.with_partitions(
            (0..n)
                .map(|p| {
                    let part = MetadataResponsePartition::default().with_partition_index(p as i32);
                    match leaders.of(name, p) {
                        Some((leader, epoch)) => part
                            .with_leader_id(BrokerId(leader))
                            .with_leader_epoch(epoch)
                            .with_replica_nodes(vec![BrokerId(leader)])
                            .with_isr_nodes(vec![BrokerId(leader)]),
                        // A failover under way: the client asks again.
                        None => part
                            .with_error_code(code::LEADER_NOT_AVAILABLE)
                            .with_leader_id(BrokerId(-1))
                            .with_leader_epoch(-1),
                    }
                })
                .collect(),
        ),
        Err(Error::InvalidArgument(_)) => t.with_error_code(code::INVALID_TOPIC_EXCEPTION),
        Err(e) => t.with_error_code(error_code(&e)),
    }
}
