//! Admin APIs: CreateTopics, DeleteTopics, DescribeConfigs, DescribeGroups,
//! ListGroups, DescribeCluster. Topic configs: `retention.ms` and
//! `retention.bytes` are honoured (-1 = unlimited), `cleanup.policy=delete`
//! is accepted; anything else is INVALID_CONFIG rather than ignored.

use super::api::{sb, Answer};
use super::convert::{code, error_code};
use super::metadata::NO_OPERATIONS;
use super::Face;
use crate::engine::{TopicInfo, TopicSpec};
use crate::error::Error;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use kafka_protocol::messages::*;
use std::sync::Arc;

/// DescribeConfigs resource types.
const TOPIC: i8 = 2;
const BROKER: i8 = 4;
/// Config sources: set on the topic, the broker's command line, a default.
const TOPIC_CONFIG: i8 = 1;
const STATIC_BROKER_CONFIG: i8 = 4;
const DEFAULT_CONFIG: i8 = 5;

pub fn create_topics(
    face: &Arc<Face>,
    req: CreateTopicsRequest,
    _v: i16,
) -> Answer<CreateTopicsResponse> {
    let face = Arc::clone(face);
    Answer::Later(Box::new(move || {
        let topics = req
            .topics
            .into_iter()
            .map(|t| create_one(&face, t, req.validate_only))
            .collect();
        CreateTopicsResponse::default().with_topics(topics)
    }))
}

fn create_one(face: &Face, t: CreatableTopic, validate_only: bool) -> CreatableTopicResult {
    let name = t.name.0.to_string();
    let r = CreatableTopicResult::default().with_name(t.name.clone());
    let fail = |c: i16, m: String| r.clone().with_error_code(c).with_error_message(Some(sb(m)));
    let partitions = match t.num_partitions {
        -1 => face.config.default_partitions,
        n => match u32::try_from(n) {
            Ok(n) if n > 0 => n,
            _ => return fail(code::INVALID_PARTITIONS, format!("{n} partitions")),
        },
    };
    if !(t.replication_factor == -1 || t.replication_factor >= 1) {
        return fail(
            code::INVALID_REPLICATION_FACTOR,
            format!("replication factor {}", t.replication_factor),
        );
    }
    if !t.assignments.is_empty() {
        return fail(
            code::INVALID_REPLICA_ASSIGNMENT,
            "replica assignments are not supported: every partition lives on this node and in the bucket".into(),
        );
    }
    let mut spec = TopicSpec {
        name,
        partitions,
        retention_ms: 0,
        retention_bytes: 0,
    };
    for c in &t.configs {
        if let Err(m) = apply_config(
            &mut spec,
            c.name.as_str(),
            c.value.as_ref().map(|v| v.as_str()),
        ) {
            return fail(code::INVALID_CONFIG, m);
        }
    }
    let created = if validate_only {
        crate::engine::validate_topic_spec(&spec).map(|()| spec.clone())
    } else {
        face.engine.create_topic(&spec).map(|_| spec.clone())
    };
    match created {
        Ok(s) => r
            .with_num_partitions(s.partitions as i32)
            .with_replication_factor(1),
        Err(Error::InvalidArgument(m)) if m.contains("topic name") => {
            fail(code::INVALID_TOPIC_EXCEPTION, m)
        }
        Err(Error::InvalidArgument(m)) if m.contains("partitions") => {
            fail(code::INVALID_PARTITIONS, m)
        }
        Err(e) => fail(error_code(&e), e.to_string()),
    }
}

/// One `name=value` of CreateTopics onto the spec.
fn apply_config(spec: &mut TopicSpec, name: &str, value: Option<&str>) -> Result<(), String> {
    let millis_or_bytes = |v: Option<&str>| -> Result<i64, String> {
        let v = v.ok_or_else(|| format!("{name} needs a value"))?;
        match v.trim().parse::<i64>() {
            Ok(-1) => Ok(0),
            Ok(n) if n > 0 => Ok(n),
            _ => Err(format!(
                "{name}={v}: a positive number, or -1 for unlimited"
            )),
        }
    };
    match name {
        "retention.ms" => spec.retention_ms = millis_or_bytes(value)?,
        "retention.bytes" => spec.retention_bytes = millis_or_bytes(value)?,
        "cleanup.policy" if value == Some("delete") => {}
        "cleanup.policy" => {
            return Err(format!(
                "cleanup.policy={}: only delete (compaction is not supported)",
                value.unwrap_or("null")
            ))
        }
        other => return Err(format!("topic config {other:?} is not supported (retention.ms, retention.bytes, cleanup.policy=delete are)")),
    }
    Ok(())
}

pub fn delete_topics(
    face: &Arc<Face>,
    req: DeleteTopicsRequest,
    _v: i16,
) -> Answer<DeleteTopicsResponse> {
    let face = Arc::clone(face);
    Answer::Later(Box::new(move || {
        let names = req
            .topic_names
            .into_iter()
            .chain(req.topics.into_iter().filter_map(|t| t.name));
        let responses = names
            .map(|n| {
                let r = DeletableTopicResult::default().with_name(Some(n.clone()));
                match face.engine.delete_topic(n.0.as_str()) {
                    Ok(()) => r,
                    Err(e) => r
                        .with_error_code(error_code(&e))
                        .with_error_message(Some(sb(e.to_string()))),
                }
            })
            .collect();
        DeleteTopicsResponse::default().with_responses(responses)
    }))
}

pub fn describe_configs(
    face: &Arc<Face>,
    req: DescribeConfigsRequest,
    _v: i16,
) -> Answer<DescribeConfigsResponse> {
    let results = req
        .resources
        .into_iter()
        .map(|res| {
            let r = DescribeConfigsResult::default()
                .with_resource_type(res.resource_type)
                .with_resource_name(res.resource_name.clone());
            let all = match res.resource_type {
                TOPIC => match face.engine.describe_topic(res.resource_name.as_str()) {
                    Ok(t) => topic_configs(face, &t),
                    Err(e) => {
                        return r
                            .with_error_code(error_code(&e))
                            .with_error_message(Some(sb(e.to_string())))
                    }
                },
                BROKER => broker_configs(face),
                other => {
                    return r
                        .with_error_code(code::INVALID_REQUEST)
                        .with_error_message(Some(sb(format!(
                            "resource type {other}: topics (2) and brokers (4) are described"
                        ))))
                }
            };
            // Null (or empty, as some clients send) asks for every config.
            let keys = res.configuration_keys.filter(|k| !k.is_empty());
            let configs = all
                .into_iter()
                .filter(|(name, ..)| {
                    keys.as_ref()
                        .is_none_or(|k| k.iter().any(|k| k.as_str() == *name))
                })
                .map(|(name, value, source, read_only)| {
                    DescribeConfigsResourceResult::default()
                        .with_name(sb(name))
                        .with_value(Some(sb(value)))
                        .with_config_source(source)
                        .with_read_only(read_only)
                })
                .collect();
            r.with_configs(configs)
        })
        .collect();
    Answer::Now(DescribeConfigsResponse::default().with_results(results))
}

/// (name, value, source, read only) of a topic.
fn topic_configs(face: &Face, t: &TopicInfo) -> Vec<(&'static str, String, i8, bool)> {
    let limit = |v: i64| {
        if v == 0 {
            (-1i64).to_string()
        } else {
            v.to_string()
        }
    };
    let source = |v: i64| if v == 0 { DEFAULT_CONFIG } else { TOPIC_CONFIG };
    let c = face.engine.config();
    vec![
        (
            "retention.ms",
            limit(t.retention_ms),
            source(t.retention_ms),
            false,
        ),
        (
            "retention.bytes",
            limit(t.retention_bytes),
            source(t.retention_bytes),
            false,
        ),
        ("cleanup.policy", "delete".into(), DEFAULT_CONFIG, true),
        (
            "segment.bytes",
            c.segment_max_bytes.to_string(),
            STATIC_BROKER_CONFIG,
            true,
        ),
        (
            "segment.ms",
            c.segment_max_age.as_millis().to_string(),
            STATIC_BROKER_CONFIG,
            true,
        ),
        (
            "max.message.bytes",
            c.max_record_bytes.to_string(),
            STATIC_BROKER_CONFIG,
            true,
        ),
        ("min.insync.replicas", "1".into(), DEFAULT_CONFIG, true),
        ("compression.type", "producer".into(), DEFAULT_CONFIG, true),
    ]
}

fn broker_configs(face: &Face) -> Vec<(&'static str, String, i8, bool)> {
    let c = face.engine.config();
    let k = &face.config;
    vec![
        (
            "auto.create.topics.enable",
            k.auto_create_topics.to_string(),
            STATIC_BROKER_CONFIG,
            true,
        ),
        (
            "num.partitions",
            k.default_partitions.to_string(),
            STATIC_BROKER_CONFIG,
            true,
        ),
        (
            "default.replication.factor",
            "1".into(),
            DEFAULT_CONFIG,
            true,
        ),
        (
            "log.segment.bytes",
            c.segment_max_bytes.to_string(),
            STATIC_BROKER_CONFIG,
            true,
        ),
        (
            "message.max.bytes",
            c.max_record_bytes.to_string(),
            STATIC_BROKER_CONFIG,
            true,
        ),
        (
            "socket.request.max.bytes",
            k.max_request_bytes.to_string(),
            STATIC_BROKER_CONFIG,
            true,
        ),
        ("log.retention.ms", "-1".into(), DEFAULT_CONFIG, true),
    ]
}

pub fn describe_cluster(
    face: &Arc<Face>,
    _req: DescribeClusterRequest,
    _v: i16,
) -> Answer<DescribeClusterResponse> {
    Answer::Now(
        DescribeClusterResponse::default()
            .with_cluster_id(sb(face.cluster_id.clone()))
            .with_controller_id(BrokerId(face.broker_id))
            .with_brokers(vec![DescribeClusterBroker::default()
                .with_broker_id(BrokerId(face.broker_id))
                .with_host(sb(face.host.clone()))
                .with_port(face.port)])
            .with_cluster_authorized_operations(NO_OPERATIONS),
    )
}
