//! The flag table: flag, environment variable, value, default, help.
//! Parsing (`super::parse`) and `--help` both read it, so each default is
//! written once.

use super::{
    DEFAULT_DATA_DIR, DEFAULT_KAFKA_LISTEN, DEFAULT_KAFKA_MAX_CONNECTIONS, DEFAULT_LISTEN,
    DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_STREAMS, DEFAULT_REGION,
};
use crate::config::EngineConfig;
use crate::kafka::KafkaConfig;

/// One flag of the table.
pub struct Flag {
    pub name: &'static str,
    pub env: &'static str,
    /// Placeholder for the value in `--help`; empty for a switch.
    pub value: &'static str,
    /// The default as `--help` shows it (`None`: unset).
    pub(super) default: fn(&EngineConfig) -> Option<String>,
    pub help: &'static str,
}

fn none(_: &EngineConfig) -> Option<String> {
    None
}

/// A size as people write it: the largest unit that divides it.
pub(super) fn show_size(n: u64) -> String {
    match n {
        0 => "0".to_string(),
        n if n % (1 << 30) == 0 => format!("{}GiB", n >> 30),
        n if n % (1 << 20) == 0 => format!("{}MiB", n >> 20),
        n if n % (1 << 10) == 0 => format!("{}KiB", n >> 10),
        n => n.to_string(),
    }
}

pub const FLAGS: &[Flag] = &[
    Flag {
        name: "--listen",
        env: "STREAMHOUSE_LISTEN",
        value: "ADDR",
        default: |_| Some(DEFAULT_LISTEN.into()),
        help: "gRPC address, HOST:PORT (port 0 picks a free port; the bound address is printed; a port another process holds is an error)",
    },
    Flag {
        name: "--max-streams",
        env: "STREAMHOUSE_MAX_STREAMS",
        value: "N",
        default: |_| Some(DEFAULT_MAX_STREAMS.to_string()),
        help: "Subscribe streams open at once on the node (and at most 100 per connection); more answer RESOURCE_EXHAUSTED",
    },
    Flag {
        name: "--max-connections",
        env: "STREAMHOUSE_MAX_CONNECTIONS",
        value: "N",
        default: |_| Some(DEFAULT_MAX_CONNECTIONS.to_string()),
        help: "gRPC connections open at once; more are closed at once, as are new ones when the node is near its open-files limit (descriptors are kept for the partitions)",
    },
    Flag {
        name: "--etcd",
        env: "STREAMHOUSE_ETCD",
        value: "URLS",
        default: none,
        help: "cluster mode: etcd's client URLs, comma-separated (http://host:port); partitions are led by one node of the cluster each (docs/OPERATIONS.md, running a cluster)",
    },
    Flag {
        name: "--cluster",
        env: "STREAMHOUSE_CLUSTER",
        value: "NAME",
        default: |_| Some("default".into()),
        help: "cluster mode: the cluster's name, the prefix of its keys in etcd",
    },
    Flag {
        name: "--advertise-addr",
        env: "STREAMHOUSE_ADVERTISE_ADDR",
        value: "HOST:PORT",
        default: none,
        help: "cluster mode: the gRPC address other nodes and clients reach this node at; default the bound address",
    },
    Flag {
        name: "--cluster-ttl-ms",
        env: "STREAMHOUSE_CLUSTER_TTL_MS",
        value: "MS",
        default: |_| Some(crate::config::ClusterConfig::DEFAULT_TTL.as_millis().to_string()),
        help: "cluster mode: the node's lease TTL, how long a node that died holds its partitions (1000 to 60000)",
    },
    Flag {
        name: "--kafka-listen",
        env: "STREAMHOUSE_KAFKA_LISTEN",
        value: "ADDR",
        default: |_| Some(DEFAULT_KAFKA_LISTEN.into()),
        help: "Kafka protocol address, HOST:PORT (port 0 picks a free port), or off",
    },
    Flag {
        name: "--kafka-advertised-addr",
        env: "STREAMHOUSE_KAFKA_ADVERTISED_ADDR",
        value: "HOST:PORT",
        default: none,
        help: "the address Kafka clients are told to connect to (Metadata); default the bound address",
    },
    Flag {
        name: "--kafka-max-connections",
        env: "STREAMHOUSE_KAFKA_MAX_CONNECTIONS",
        value: "N",
        default: |_| Some(DEFAULT_KAFKA_MAX_CONNECTIONS.to_string()),
        help: "Kafka connections open at once; more are closed at once",
    },
    Flag {
        name: "--kafka-max-request-bytes",
        env: "STREAMHOUSE_KAFKA_MAX_REQUEST_BYTES",
        value: "N",
        default: |_| Some(show_size(KafkaConfig::default().max_request_bytes as u64)),
        help: "largest Kafka request (Kafka's socket.request.max.bytes); a larger one closes its connection",
    },
    Flag {
        name: "--kafka-auto-create-topics",
        env: "STREAMHOUSE_KAFKA_AUTO_CREATE_TOPICS",
        value: "BOOL",
        default: |_| Some(KafkaConfig::default().auto_create_topics.to_string()),
        help: "Metadata creates the topics a client asks for, when the client allows it",
    },
    Flag {
        name: "--kafka-default-partitions",
        env: "STREAMHOUSE_KAFKA_DEFAULT_PARTITIONS",
        value: "N",
        default: |_| Some(KafkaConfig::default().default_partitions.to_string()),
        help: "partitions of a topic created by Metadata, or by CreateTopics without a count",
    },
    Flag {
        name: "--kafka-acks-all",
        env: "STREAMHOUSE_KAFKA_ACKS_ALL",
        value: "WHAT",
        default: |_| Some("wal".into()),
        help: "what Kafka acks=all waits for: wal (the WAL fsync) or uploaded (the segment in the bucket); uploaded by default in cluster mode (--etcd), so that an acknowledged record survives its node",
    },
    Flag {
        name: "--kafka-sasl-users",
        env: "STREAMHOUSE_KAFKA_SASL_USERS",
        value: "FILE",
        default: none,
        help: "require SASL on the Kafka listener, with the users of FILE (SCRAM credentials; streamctl user add|delete|list writes it; read at each authentication)",
    },
    Flag {
        name: "--kafka-sasl-mechanisms",
        env: "STREAMHOUSE_KAFKA_SASL_MECHANISMS",
        value: "LIST",
        default: |_| Some("SCRAM-SHA-256,SCRAM-SHA-512,PLAIN".into()),
        help: "the SASL mechanisms offered, comma-separated; PLAIN only over TLS unless --kafka-sasl-plain-without-tls",
    },
    Flag {
        name: "--kafka-sasl-plain-without-tls",
        env: "STREAMHOUSE_KAFKA_SASL_PLAIN_WITHOUT_TLS",
        value: "",
        default: none,
        help: "offer SASL PLAIN on a Kafka listener without TLS (the password then crosses the network in clear text)",
    },
    Flag {
        name: "--data-dir",
        env: "STREAMHOUSE_DATA_DIR",
        value: "DIR",
        default: |_| Some(DEFAULT_DATA_DIR.into()),
        help: "metadata, WAL and (without S3) the objects",
    },
    Flag {
        name: "--s3-endpoint",
        env: "STREAMHOUSE_S3_ENDPOINT",
        value: "URL",
        default: none,
        help: "S3 mode when set or a bucket is set",
    },
    Flag {
        name: "--s3-bucket",
        env: "STREAMHOUSE_S3_BUCKET",
        value: "NAME",
        default: none,
        help: "the bucket",
    },
    Flag {
        name: "--s3-region",
        env: "STREAMHOUSE_S3_REGION",
        value: "NAME",
        default: |_| Some(DEFAULT_REGION.into()),
        help: "the region",
    },
    Flag {
        name: "--s3-prefix",
        env: "STREAMHOUSE_S3_PREFIX",
        value: "PREFIX",
        default: none,
        help: "prepended to every object key",
    },
    Flag {
        name: "--s3-path-style",
        env: "STREAMHOUSE_S3_PATH_STYLE",
        value: "",
        default: none,
        help: "path-style URLs (MinIO, SeaweedFS)",
    },
    Flag {
        name: "--segment-max-bytes",
        env: "STREAMHOUSE_SEGMENT_MAX_BYTES",
        value: "N",
        default: |c| Some(show_size(c.segment_max_bytes)),
        help: "seal a segment at this many record bytes",
    },
    Flag {
        name: "--segment-max-age-ms",
        env: "STREAMHOUSE_SEGMENT_MAX_AGE_MS",
        value: "N",
        default: |c| Some(c.segment_max_age.as_millis().to_string()),
        help: "seal a segment this long after its first record",
    },
    Flag {
        name: "--producer-expiry-ms",
        env: "STREAMHOUSE_PRODUCER_EXPIRY_MS",
        value: "N",
        default: |c| Some(c.producer_expiry.as_millis().to_string()),
        help: "forget an idempotent producer that has not written for this long (its id then answers NOT_FOUND)",
    },
    Flag {
        name: "--retention-check-ms",
        env: "STREAMHOUSE_RETENTION_CHECK_MS",
        value: "N",
        default: |c| Some(c.retention_interval.as_millis().to_string()),
        help: "how often retention looks for segments past a topic's limits",
    },
    Flag {
        name: "--cache-bytes",
        env: "STREAMHOUSE_CACHE_BYTES",
        value: "N",
        default: |c| Some(show_size(c.cache_bytes)),
        help: "block cache size",
    },
    Flag {
        name: "--reader-threads",
        env: "STREAMHOUSE_READER_THREADS",
        value: "N",
        default: |c| Some(c.reader_threads.to_string()),
        help: "reader pool threads (1-256)",
    },
    Flag {
        name: "--upload-threads",
        env: "STREAMHOUSE_UPLOAD_THREADS",
        value: "N",
        default: |c| Some(c.upload_threads.to_string()),
        help: "upload pool threads, shared by every partition (1-256)",
    },
    Flag {
        name: "--uploads-per-partition",
        env: "STREAMHOUSE_UPLOADS_PER_PARTITION",
        value: "N",
        default: |c| Some(c.uploads_per_partition.to_string()),
        help: "segments of one partition whose PUTs may run at once (commits stay in order)",
    },
    Flag {
        name: "--max-record-bytes",
        env: "STREAMHOUSE_MAX_RECORD_BYTES",
        value: "N",
        default: |c| Some(show_size(c.max_record_bytes as u64)),
        help: "largest record (key + value + headers, 16 bytes a record and 8 a header)",
    },
    Flag {
        name: "--max-fetch-bytes",
        env: "STREAMHOUSE_MAX_FETCH_BYTES",
        value: "N",
        default: |c| Some(show_size(c.max_fetch_bytes as u64)),
        help: "most bytes one fetch returns, whatever it asks for",
    },
    Flag {
        name: "--max-fetch-records",
        env: "STREAMHOUSE_MAX_FETCH_RECORDS",
        value: "N",
        default: |c| Some(c.max_fetch_records.to_string()),
        help: "most records one fetch returns, whatever it asks for",
    },
    Flag {
        name: "--max-backlog-bytes",
        env: "STREAMHOUSE_MAX_BACKLOG_BYTES",
        value: "N",
        default: |c| Some(show_size(c.max_backlog_bytes)),
        help: "bytes accepted but not yet uploaded before produce is refused",
    },
    Flag {
        name: "--take-over",
        env: "STREAMHOUSE_TAKE_OVER",
        value: "",
        default: none,
        help: "take the bucket prefix from the node that owns it (it is fenced); only when that node is gone",
    },
    Flag {
        name: "--old-owner-is-dead",
        env: "STREAMHOUSE_OLD_OWNER_IS_DEAD",
        value: "",
        default: none,
        help: "with --take-over on a store that ignores conditional writes: the old owner is stopped for good (it cannot be fenced there)",
    },
    Flag {
        name: "--repair-wal",
        env: "STREAMHOUSE_REPAIR_WAL",
        value: "TOPIC/PARTITION,...",
        default: none,
        help: "accept losing what a damaged WAL hides for these partitions (offsets are never reused)",
    },
    Flag {
        name: "--auth-token",
        env: "STREAMHOUSE_AUTH_TOKEN",
        value: "TOKEN",
        default: none,
        help: "require `authorization: Bearer TOKEN` on every call",
    },
    Flag {
        name: "--tls-cert",
        env: "STREAMHOUSE_TLS_CERT",
        value: "FILE",
        default: none,
        help: "TLS on both listeners (gRPC and Kafka): this PEM certificate chain, leaf first (re-read on SIGHUP)",
    },
    Flag {
        name: "--tls-key",
        env: "STREAMHOUSE_TLS_KEY",
        value: "FILE",
        default: none,
        help: "the PEM private key of --tls-cert (re-read on SIGHUP)",
    },
    Flag {
        name: "--tls-client-ca",
        env: "STREAMHOUSE_TLS_CLIENT_CA",
        value: "FILE",
        default: none,
        help: "mutual TLS: clients of both listeners must present a certificate signed by a CA of this PEM file (re-read on SIGHUP)",
    },
    Flag {
        name: "--metrics-listen",
        env: "STREAMHOUSE_METRICS_LISTEN",
        value: "ADDR",
        default: none,
        help: "serve /metrics (Prometheus text) here",
    },
];
