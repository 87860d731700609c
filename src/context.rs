//! What every engine thread shares: the configuration, the object store
//! behind the retry layer, metadata, counters, the node's backlog, and the
//! stop signal raised at shutdown. The engine opens it; the partition and
//! read layers use it; it knows nothing of either.

use crate::bucket::Ownership;
use crate::config::EngineConfig;
use crate::error::{Error, Result};
use crate::layout;
use crate::meta::MetaStore;
use crate::metrics::{Metrics, Stages};
use crate::object_store::{ObjectStore, RetryingStore};
use crate::producer::Registry;
use crate::util::fs::{FileLock, LockError};
use crate::util::sync::{lock, StopSignal};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

pub(crate) struct Context {
    pub config: EngineConfig,
    pub store: RetryingStore,
    pub meta: MetaStore,
    pub metrics: Metrics,
    /// Per-stage latency histograms of the produce and subscribe paths.
    pub stages: Stages,
    /// Bytes accepted but not yet uploaded, all partitions (the bound of
    /// `max_backlog_bytes`); each partition's share is its `Backlog`.
    pub backlog_bytes: Arc<AtomicU64>,
    /// Raised when the node stops: retries end, uploads give up (their
    /// records stay in the WAL).
    pub stop: StopSignal,
    /// This process's exclusive hold on the data directory.
    dir_lock: Mutex<Option<FileLock>>,
    /// This node's claim on the bucket prefix (one owner per prefix).
    pub owner: Ownership,
    /// Producer ids and their current epochs (InitProducer, and every
    /// partition's producer table as it opens).
    pub producers: Registry,
    /// Cluster mode: the cluster's keys in etcd (leaders, commit points,
    /// topics). `None`: one node owns the prefix (`owner`).
    pub cluster: Option<crate::cluster::registry::Registry>,
    /// Cluster mode: moves commit points in etcd, batched across
    /// partitions.
    pub committer: Option<crate::cluster::committer::Committer>,
}

impl Context {
    /// Creates the data directory, locks it (before anything in it is read
    /// or written), and opens (migrating) the metadata.
    pub fn open(config: EngineConfig, store: Arc<dyn ObjectStore>) -> Result<Arc<Context>> {
        std::fs::create_dir_all(&config.data_dir).map_err(|e| {
            Error::io(
                format!("create data directory {}", config.data_dir.display()),
                e,
            )
        })?;
        let dir_lock = lock_data_dir(&config.data_dir)?;
        let meta = MetaStore::open(layout::meta_path(&config.data_dir))?;
        let owner = Ownership::unconfirmed(&node_id(&config.data_dir, &meta)?);
        let stop = StopSignal::new();
        let store = RetryingStore::new(store, config.retry.clone(), stop.clone());
        let cluster = match &config.cluster {
            Some(c) => {
                let coord = crate::cluster::connect(&c.etcd)
                    .map_err(|e| Error::Config(format!("--etcd: {e}")))?;
                Some(crate::cluster::registry::Registry::new(coord, &c.name))
            }
            None => None,
        };
        let committer = match &cluster {
            Some(registry) => Some(
                crate::cluster::committer::Committer::start(registry.clone())
                    .map_err(|e| Error::io("start the etcd committer", e))?,
            ),
            None => None,
        };
        Ok(Arc::new(Context {
            config,
            store,
            meta,
            metrics: Metrics::default(),
            stages: Stages::default(),
            backlog_bytes: Arc::new(AtomicU64::new(0)),
            stop,
            dir_lock: Mutex::new(Some(dir_lock)),
            owner,
            producers: Registry::default(),
            cluster,
            committer,
        }))
    }

    /// Lets another process use the data directory (after shutdown).
    pub fn release_data_dir(&self) {
        lock(&self.dir_lock).take();
    }
}

/// This data directory's node id, made at its first start: a node rebuilt
/// on a new disk is a new node. Kept in `NODE_ID` (and in the metadata, where
/// older builds kept it): a metadata file lost and rebuilt from the bucket
/// must not make the node a stranger to its own WAL.
fn node_id(data_dir: &std::path::Path, meta: &MetaStore) -> Result<String> {
    let path = layout::node_id_path(data_dir);
    let io = |what: &str, e| Error::io(format!("{what} {}", path.display()), e);
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => return Ok(id.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io("read", e)),
    }
    let id = match meta.setting("node_id")? {
        Some(id) => id,
        None => {
            use std::hash::{BuildHasher, Hasher};
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u128(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos()),
            );
            h.write_u32(std::process::id());
            format!("{:016x}", h.finish())
        }
    };
    crate::util::fs::write_durably(&path, format!("{id}\n").as_bytes())
        .map_err(|e| io("write", e))?;
    meta.set_setting("node_id", &id)?;
    Ok(id)
}

fn lock_data_dir(data_dir: &std::path::Path) -> Result<FileLock> {
    FileLock::try_acquire(&layout::lock_path(data_dir)).map_err(|e| match e {
        LockError::Held { pid, .. } => Error::Unavailable(format!(
            "data directory {} is in use by another streamhoused{}; stop it first or choose another --data-dir",
            data_dir.display(),
            pid.map_or(String::new(), |p| format!(" (pid {p})"))
        )),
        LockError::Io(e) => e.into(),
    })
}
