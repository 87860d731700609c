//! The Kafka listener's flags.

use super::{check_address, truthy, Values, DEFAULT_KAFKA_LISTEN, DEFAULT_KAFKA_MAX_CONNECTIONS};
use crate::engine::MAX_PARTITIONS;
use crate::kafka::{split_host_port, KafkaConfig};

/// The Kafka listener as the flags ask for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KafkaListener {
    pub listen: String,
    pub max_connections: usize,
    pub config: KafkaConfig,
}

/// `None` with `--kafka-listen off`.
pub(super) fn kafka_listener(v: &Values) -> Result<Option<KafkaListener>, String> {
    let listen = v
        .text("--kafka-listen")
        .unwrap_or_else(|| DEFAULT_KAFKA_LISTEN.into());
    if listen.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    check_address("--kafka-listen", &listen, DEFAULT_KAFKA_LISTEN)?;
    let mut config = KafkaConfig::default();
    if let Some(a) = v.text("--kafka-advertised-addr") {
        split_host_port(&a).map_err(|e| format!("--kafka-advertised-addr: {e}"))?;
        config.advertised = Some(a);
    }
    if let Some(n) = v.size("--kafka-max-request-bytes")? {
        if !(1024..=1 << 30).contains(&n) {
            return Err("--kafka-max-request-bytes must be from 1KiB to 1GiB".into());
        }
        config.max_request_bytes = n as usize;
    }
    if let Some(b) = v.text("--kafka-auto-create-topics") {
        config.auto_create_topics =
            truthy(&b).map_err(|e| format!("--kafka-auto-create-topics: {e}"))?;
    }
    if let Some(n) = v.count("--kafka-default-partitions", MAX_PARTITIONS as usize)? {
        config.default_partitions = n as u32;
    }
    config.acks_all_uploaded = match v.text("--kafka-acks-all").as_deref() {
        // In a cluster, acks=all means the record survives its node.
        None => v.0.contains_key("--etcd"),
        Some("wal") => false,
        Some("uploaded") => true,
        Some(other) => {
            return Err(format!(
                "--kafka-acks-all: {other:?} is not wal or uploaded"
            ))
        }
    };
    config.sasl = crate::kafka::sasl::SaslConfig::from_flags(
        v.text("--kafka-sasl-users"),
        v.text("--kafka-sasl-mechanisms"),
        v.0.contains_key("--kafka-sasl-plain-without-tls"),
    )?;
    let max_connections = v
        .count("--kafka-max-connections", 1 << 20)?
        .unwrap_or(DEFAULT_KAFKA_MAX_CONNECTIONS);
    Ok(Some(KafkaListener {
        listen,
        max_connections,
        config,
    }))
}
