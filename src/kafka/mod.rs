//! The Kafka face: Kafka clients' wire protocol, converted to the same
//! engine calls the gRPC face (`server/`) makes. Nothing below the engine
//! knows Kafka.
//!
//! ```text
//! gate (server/gate.rs) ─► connection: reader thread ─► api::handle ─► engine
//!                                      responder thread ◄─ answers, in order
//! ```
//!
//! - [`wire`]: frames and request headers; [`guard`]: a request's shape
//!   checked before kafka-protocol decodes it;
//! - [`connection`]: one connection's two threads (requests are read and
//!   queued into the partition writers as they come; answers go back in
//!   order as each completes, so pipelined produces share fsyncs);
//! - [`api`]: dispatch and ApiVersions; one module per group of APIs
//!   ([`metadata`], [`produce`], [`fetch`], [`offsets`], [`admin`]);
//!   [`convert`]: records and error codes;
//! - [`coordinator`]: consumer groups in memory, each a [`group`] state
//!   machine, with the requests waiting on them; [`membership`]: the group
//!   APIs (JoinGroup, SyncGroup, Heartbeat, LeaveGroup, DescribeGroups,
//!   ListGroups);
//! - [`sasl`]: SaslHandshake and SaslAuthenticate, and which requests a
//!   connection may send before it has authenticated;
//! - [`record_batch`]: RecordBatch v2, decode and encode;
//!   [`compression`]: gzip, snappy, lz4 and zstd inflated within a bound.

mod admin;
pub mod api;
pub mod compression;
mod connection;
mod convert;
mod coordinator;
mod fetch;
mod group;
pub mod guard;
mod membership;
mod metadata;
mod offsets;
mod produce;
pub mod record_batch;
pub mod sasl;
pub mod wire;

pub use connection::{serve, serve_tcp, Connections, Socket};
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) use coordinator::consumer_assignment;
pub use coordinator::{Coordinator, Limits as GroupLimits};

use crate::engine::Engine;
use std::sync::Arc;
use std::time::Duration;

/// What the Kafka listener is told by the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KafkaConfig {
    /// `host:port` that Metadata gives clients; `None`: the bound address.
    pub advertised: Option<String>,
    /// Metadata creates topics clients ask for (`--kafka-auto-create-topics`).
    pub auto_create_topics: bool,
    /// Partitions of a topic created by Metadata or CreateTopics without a
    /// count.
    pub default_partitions: u32,
    /// `acks=-1` waits for the bucket (`--kafka-acks-all uploaded`)
    /// instead of the WAL.
    pub acks_all_uploaded: bool,
    /// Largest request frame (`--kafka-max-request-bytes`).
    pub max_request_bytes: usize,
    /// A connection with no request for this long is closed.
    pub idle_timeout: Duration,
    /// `None`: no authentication (`--kafka-sasl-users` unset).
    pub sasl: Option<sasl::SaslConfig>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            advertised: None,
            auto_create_topics: true,
            default_partitions: 1,
            acks_all_uploaded: false,
            max_request_bytes: 100 << 20,
            idle_timeout: Duration::from_secs(600),
            sasl: None,
        }
    }
}

/// This node as Kafka clients see it when it is the only one: one broker,
/// the leader of every partition.
pub const BROKER_ID: i32 = 0;

/// A cluster node's Kafka broker id: Kafka's ids are numbers and ours are
/// names, so a stable hash of the name (FNV-1a, 31 bits). Two nodes of a
/// cluster sharing one has a chance of about n²/2³² (1 in 10⁷ for 10 nodes).
pub fn broker_id(node_id: &str) -> i32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in node_id.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    (h & 0x7fff_ffff) as i32
}

/// What every connection shares.
pub struct Face {
    pub engine: Arc<Engine>,
    pub config: KafkaConfig,
    /// Where clients reach this node.
    pub host: String,
    pub port: i32,
    /// Stable for one bucket prefix (Kafka tools show it).
    pub cluster_id: String,
    /// Consumer groups' membership.
    pub groups: Arc<Coordinator>,
    /// This node's broker id: [`BROKER_ID`], or in a cluster [`broker_id`].
    pub broker_id: i32,
    pub sasl_stats: sasl::SaslStats,
}

impl Face {
    /// `bound` is the listener's address, advertised unless the config
    /// names another.
    pub fn new(
        engine: Arc<Engine>,
        config: KafkaConfig,
        bound: std::net::SocketAddr,
        groups: Arc<Coordinator>,
    ) -> Result<Face, String> {
        let (host, port) = match &config.advertised {
            Some(a) => split_host_port(a)?,
            None => (bound.ip().to_string(), i32::from(bound.port())),
        };
        let node = engine.node();
        let cluster_id = cluster_id(&node.store);
        let broker_id = match engine.config().cluster {
            Some(_) => broker_id(&node.node_id),
            None => BROKER_ID,
        };
        Ok(Face {
            engine,
            config,
            host,
            port,
            cluster_id,
            groups,
            broker_id,
            sasl_stats: sasl::SaslStats::default(),
        })
    }
}

/// `host:port` (or `[v6]:port`) split; the port must be 1..=65535.
pub fn split_host_port(addr: &str) -> Result<(String, i32), String> {
    let bad = || format!("{addr:?} is not HOST:PORT");
    let (host, port) = addr.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || port == 0 {
        return Err(bad());
    }
    Ok((host.to_string(), i32::from(port)))
}

/// A cluster id derived from where the data lives (FNV-1a of the store's
/// description), so that it survives restarts and differs between buckets.
fn cluster_id(store: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in store.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("streamhouse-{h:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advertised_addresses_split_and_bad_ones_are_refused() {
        assert_eq!(
            split_host_port("broker.example:9092").unwrap(),
            ("broker.example".to_string(), 9092)
        );
        assert_eq!(
            split_host_port("[::1]:19092").unwrap(),
            ("::1".to_string(), 19092)
        );
        for bad in ["nohost", ":9092", "h:0", "h:70000", "h:x"] {
            assert!(split_host_port(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cluster_ids_are_stable_and_differ_by_store() {
        assert_eq!(cluster_id("s3://a/p"), cluster_id("s3://a/p"));
        assert_ne!(cluster_id("s3://a/p"), cluster_id("s3://a/q"));
    }
}
