//! Engine configuration: every tunable in one place, with the defaults a
//! user gets and why.

use crate::object_store::RetryPolicy;
use crate::wal::{OsWalFs, WalFs};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Holds `meta.sqlite`, `wal/` and, for the local store, `objects/`.
    pub data_dir: PathBuf,
    /// Seal the active segment once its records hold this many bytes
    /// (key + value + headers). 64 MiB: ~16 PUTs per GB ingested, and
    /// segments big enough that a consumer reads many 1 MiB blocks per
    /// footer, small enough to upload in well under a second.
    pub segment_max_bytes: u64,
    /// Seal the active segment this long after its first record, however
    /// small. 30 s bounds how long data lives only on local disk at low
    /// throughput while keeping idle partitions to ~2 PUTs a minute.
    pub segment_max_age: Duration,
    /// An `acks=uploaded` request makes the writer seal after this linger,
    /// so requests arriving together share one upload.
    pub uploaded_ack_linger: Duration,
    /// Bytes accepted but not yet uploaded, across all partitions, beyond
    /// which produce answers with backpressure (RESOURCE_EXHAUSTED). 1 GiB.
    pub max_backlog_bytes: u64,
    /// Block cache size (decoded blocks of sealed segments). 256 MiB.
    pub cache_bytes: u64,
    /// Reader pool threads. They block on object-store GETs, so more than
    /// cores; 8.
    pub reader_threads: usize,
    /// Upload pool threads, shared by every partition (a partition's
    /// segments commit one at a time, in order). They block on PUTs; 8.
    pub upload_threads: usize,
    /// Segments of one partition whose PUTs may run at once (they still
    /// commit in offset order; capped at `upload_threads`). More than one
    /// hides a store's PUT latency from `acks=uploaded` requests; each in
    /// flight holds its encoded segment in memory. 2.
    pub uploads_per_partition: usize,
    /// Largest key + value + headers of one record (with the per-record
    /// and per-header overhead, see `record::RECORD_OVERHEAD`). 1 MiB.
    pub max_record_bytes: usize,
    /// Most bytes one fetch returns, whatever it asks for (the first record
    /// is returned even if larger). 8 MiB: far under the message limit; a
    /// reply in flight costs the server about four times its size (records,
    /// protobuf, gRPC buffers), so four greedy fetches at once add ~130 MB
    /// (16 MiB measured ~230 MB).
    pub max_fetch_bytes: usize,
    /// Most records one fetch returns, whatever it asks for. 50,000.
    pub max_fetch_records: usize,
    /// How often retention runs.
    pub retention_interval: Duration,
    /// Retry policy for object-store calls (uploads retry until they
    /// succeed or the node stops; their records stay in the WAL).
    pub retry: RetryPolicy,
    /// The file system under the WAL; tests swap in one that fails.
    pub wal_fs: Arc<dyn WalFs>,
    /// Take the bucket prefix from the node that holds it (raising the
    /// owner epoch, which fences that node). For when it is gone.
    pub take_over: bool,
    /// With `take_over` on a store that ignores conditional writes: the
    /// operator says the old owner is stopped for good.
    pub old_owner_is_dead: bool,
    /// Partitions (`topic/partition`) whose damaged WAL the operator accepts
    /// to lose: offsets go on past anything the damage could hide.
    pub repair_wal: Vec<String>,
    /// An idempotent producer that has not written for this long is
    /// forgotten (its batches can no longer be recognised as duplicates,
    /// and its id answers NOT_FOUND). 7 days, as Kafka's transactional ids.
    pub producer_expiry: Duration,
    /// Most groups with committed offsets; a commit that would add one more
    /// answers RESOURCE_EXHAUSTED.
    pub max_groups: usize,
    /// Cluster mode (`--etcd`): partitions are led by one node of several,
    /// coordinated by etcd. `None`: one node owns the prefix.
    pub cluster: Option<ClusterConfig>,
}

/// How this node takes part in a cluster.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// etcd's client URLs, comma-separated (`http://host:port,...`).
    pub etcd: String,
    /// The cluster's name: the prefix of its keys in etcd.
    pub name: String,
    /// The lease's TTL: how long a dead node holds its partitions. 5 s.
    pub ttl: Duration,
    /// The gRPC address other nodes and clients reach this node at
    /// (filled from the bound address when not given).
    pub grpc_addr: String,
    /// The Kafka address clients reach this node at (empty: none).
    pub kafka_addr: String,
}

impl ClusterConfig {
    pub const DEFAULT_TTL: Duration = Duration::from_secs(5);
}

impl EngineConfig {
    /// [`EngineConfig::producer_expiry`] in ms, saturating (a huge flag
    /// value must not wrap into a cutoff in the future, which would expire
    /// every producer).
    pub fn producer_expiry_ms(&self) -> i64 {
        i64::try_from(self.producer_expiry.as_millis()).unwrap_or(i64::MAX)
    }

    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        EngineConfig {
            data_dir: data_dir.into(),
            segment_max_bytes: 64 << 20,
            segment_max_age: Duration::from_secs(30),
            uploaded_ack_linger: Duration::from_millis(5),
            max_backlog_bytes: 1 << 30,
            cache_bytes: 256 << 20,
            reader_threads: 8,
            upload_threads: 8,
            uploads_per_partition: 2,
            max_record_bytes: 1 << 20,
            max_fetch_bytes: 8 << 20,
            max_fetch_records: 50_000,
            retention_interval: Duration::from_secs(30),
            retry: RetryPolicy::default(),
            wal_fs: Arc::new(OsWalFs),
            take_over: false,
            old_owner_is_dead: false,
            repair_wal: Vec::new(),
            producer_expiry: Duration::from_secs(7 * 24 * 3600),
            max_groups: 10_000,
            cluster: None,
        }
    }
}
