//! The storage engine: topics and partitions over the WAL, the object store
//! and the metadata store. A library API; the gRPC server sits on top.
//!
//! Calls never block on I/O: `produce`, `fetch` and `list_offsets` hand the
//! work to a partition writer or the reader pool and return a `futures`
//! oneshot receiver that a gRPC handler can await. Topic administration and
//! group offsets are quick SQLite calls and are synchronous.

use crate::config::{topic_prefix, validate_topic_name, EngineConfig};
use crate::error::{Error, Result};
use crate::meta::{now_ms, GroupOffset, MetaStore, TopicRow};
use crate::metrics::{Metrics, MetricsSnapshot};
use crate::object_store::{ObjectStore, RetryingStore};
use crate::partition::{open_partition, AckReceiver, Acks, AppendRequest, Partition, Status};
use crate::read::{FetchReceiver, FetchRequest, OffsetReceiver, ReaderPool};
use crate::record::Record;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

/// What every engine thread shares.
pub(crate) struct EngineCtx {
    pub config: EngineConfig,
    pub store: Arc<RetryingStore>,
    pub meta: MetaStore,
    pub metrics: Metrics,
    /// Bytes accepted but not yet uploaded, all partitions.
    pub backlog_bytes: AtomicU64,
}

/// A topic to create.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: u32,
    /// 0 = keep forever.
    pub retention_ms: i64,
    /// Per partition; 0 = unlimited.
    pub retention_bytes: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionInfo {
    pub partition: u32,
    pub low_watermark: i64,
    pub high_watermark: i64,
    /// Sealed segment objects in the store (the WAL is not counted).
    pub segment_count: i64,
    pub stored_bytes: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicInfo {
    pub name: String,
    pub partitions: u32,
    pub retention_ms: i64,
    pub retention_bytes: i64,
    pub created_at_ms: i64,
    pub partition_info: Vec<PartitionInfo>,
}

struct Topic {
    row: TopicRow,
    partitions: Vec<Arc<Partition>>,
}

/// Upper bound on partitions per topic: each is two threads and a WAL file.
pub const MAX_PARTITIONS: u32 = 1024;
/// Upper bound on the record bytes of one produce call (one WAL entry).
pub const MAX_PRODUCE_BYTES: u64 = 256 << 20;

fn remove_dir(dir: &std::path::Path) -> Result<()> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(format!("remove {}", dir.display()), e)),
    }
}

/// WAL directories of topics that metadata no longer knows (a crash during
/// a deletion) hold nothing anyone may read: remove them.
fn remove_stale_wal_dirs(config: &EngineConfig, topics: &[TopicRow]) -> Result<()> {
    let root = config.data_dir.join("wal");
    let Ok(entries) = std::fs::read_dir(&root) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !topics.iter().any(|t| t.name == name) {
            log::info!("removing the WAL of deleted topic {name:?}");
            remove_dir(&entry.path())?;
        }
    }
    Ok(())
}

pub struct Engine {
    ctx: Arc<EngineCtx>,
    topics: RwLock<HashMap<String, Arc<Topic>>>,
    /// Names whose deletion is still removing objects: not re-creatable yet.
    deleting: Mutex<HashSet<String>>,
    readers: Mutex<Option<ReaderPool>>,
    retention_stop: Mutex<Option<crossbeam_channel::Sender<()>>>,
    retention: Mutex<Option<JoinHandle<()>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Engine {
    /// Opens the engine: metadata, orphan collection, every partition's
    /// recovery, the reader pool and the retention thread.
    pub fn open(config: EngineConfig, store: Arc<dyn ObjectStore>) -> Result<Arc<Engine>> {
        std::fs::create_dir_all(&config.data_dir).map_err(|e| {
            Error::io(
                format!("create data directory {}", config.data_dir.display()),
                e,
            )
        })?;
        let meta = MetaStore::open(config.meta_path())?;
        let store = Arc::new(RetryingStore::new(store, config.retry.clone()));
        let ctx = Arc::new(EngineCtx {
            config,
            store,
            meta,
            metrics: Metrics::default(),
            backlog_bytes: AtomicU64::new(0),
        });
        // Before any uploader starts: an object without a row is then
        // garbage, never an upload about to be committed. Best effort: a
        // store that is down must not stop the server from taking writes.
        if let Err(e) = collect_orphans(&ctx) {
            log::warn!("orphan collection skipped (the object store did not answer): {e}");
        }

        let rows = ctx.meta.topics()?;
        remove_stale_wal_dirs(&ctx.config, &rows)?;
        let mut topics = HashMap::new();
        for row in rows {
            let partitions = (0..row.partitions)
                .map(|p| open_partition(&ctx, &row.name, p).map(Arc::new))
                .collect::<Result<Vec<_>>>()?;
            topics.insert(row.name.clone(), Arc::new(Topic { row, partitions }));
        }
        let readers = ReaderPool::start(Arc::clone(&ctx))?;
        let engine = Arc::new(Engine {
            ctx,
            topics: RwLock::new(topics),
            deleting: Mutex::new(HashSet::new()),
            readers: Mutex::new(Some(readers)),
            retention_stop: Mutex::new(None),
            retention: Mutex::new(None),
        });
        let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(1);
        let weak = Arc::downgrade(&engine);
        let interval = engine.ctx.config.retention_interval;
        let handle = std::thread::Builder::new()
            .name("retention".into())
            .spawn(move || loop {
                match stop_rx.recv_timeout(interval) {
                    Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                    _ => return,
                }
                let Some(engine) = weak.upgrade() else { return };
                engine.run_retention();
            })
            .map_err(|e| Error::io("spawn retention thread", e))?;
        *lock(&engine.retention_stop) = Some(stop_tx);
        *lock(&engine.retention) = Some(handle);
        Ok(engine)
    }

    pub fn config(&self) -> &EngineConfig {
        &self.ctx.config
    }

    pub fn metrics(&self) -> MetricsSnapshot {
        let mut m = self.ctx.metrics.snapshot();
        // Transient failures the retry layer absorbed, under the uploader.
        m.upload_retries += self.ctx.store.retry_count();
        m
    }

    /// Bytes accepted and not yet uploaded, across partitions.
    pub fn backlog_bytes(&self) -> u64 {
        self.ctx.backlog_bytes.load(Ordering::Relaxed)
    }

    /// Bytes of decoded blocks in the cache.
    pub fn cache_bytes(&self) -> u64 {
        lock(&self.readers)
            .as_ref()
            .map_or(0, |r| r.cache().bytes())
    }

    /// The open topics at this moment.
    fn snapshot(&self) -> Vec<Arc<Topic>> {
        self.topics
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    fn topic(&self, name: &str) -> Result<Arc<Topic>> {
        self.topics
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
            .ok_or_else(|| Error::NotFound(format!("topic {name:?} does not exist")))
    }

    fn partition(&self, topic: &str, partition: u32) -> Result<Arc<Partition>> {
        let t = self.topic(topic)?;
        t.partitions
            .get(partition as usize)
            .cloned()
            .ok_or_else(|| {
                Error::NotFound(format!(
                "partition {partition} of topic {topic:?} does not exist (it has partitions 0..{})",
                t.partitions.len()
            ))
            })
    }

    // ---------------------------------------------------------------- topics

    pub fn create_topic(&self, spec: &TopicSpec) -> Result<TopicInfo> {
        validate_topic_name(&spec.name).map_err(Error::InvalidArgument)?;
        if spec.partitions == 0 || spec.partitions > MAX_PARTITIONS {
            return Err(Error::InvalidArgument(format!(
                "partitions must be 1..={MAX_PARTITIONS}, got {}",
                spec.partitions
            )));
        }
        if spec.retention_ms < 0 || spec.retention_bytes < 0 {
            return Err(Error::InvalidArgument(
                "retention_ms and retention_bytes must be >= 0 (0 = unlimited)".to_string(),
            ));
        }
        let mut topics = self.topics.write().unwrap_or_else(|p| p.into_inner());
        // Under the topics lock, so a deletion cannot start removing this
        // name's objects and WAL after the check.
        if lock(&self.deleting).contains(&spec.name) {
            return Err(Error::AlreadyExists(format!(
                "topic {:?} is still being deleted; retry in a moment",
                spec.name
            )));
        }
        if topics.contains_key(&spec.name) {
            return Err(Error::AlreadyExists(format!(
                "topic {:?} already exists",
                spec.name
            )));
        }
        let row = TopicRow {
            name: spec.name.clone(),
            partitions: spec.partitions,
            retention_ms: spec.retention_ms,
            retention_bytes: spec.retention_bytes,
            created_at_ms: now_ms(),
        };
        // A WAL left by an earlier topic of this name (a crash during its
        // deletion) must not become this topic's data.
        remove_dir(&self.ctx.config.topic_wal_dir(&row.name))?;
        self.ctx.meta.create_topic(&row)?;
        let opened = (0..row.partitions)
            .map(|p| open_partition(&self.ctx, &row.name, p).map(Arc::new))
            .collect::<Result<Vec<_>>>();
        let partitions = match opened {
            Ok(p) => p,
            Err(e) => {
                // Leave nothing half-created behind.
                let _ = self.ctx.meta.delete_topic(&row.name);
                let _ = remove_dir(&self.ctx.config.topic_wal_dir(&row.name));
                return Err(e);
            }
        };
        let topic = Arc::new(Topic { row, partitions });
        topics.insert(spec.name.clone(), Arc::clone(&topic));
        drop(topics);
        self.info(&topic)
    }

    fn info(&self, t: &Topic) -> Result<TopicInfo> {
        let mut partition_info = Vec::with_capacity(t.partitions.len());
        for p in &t.partitions {
            let usage = self
                .ctx
                .meta
                .partition_usage(&t.row.name, p.shared.partition)?;
            let view = p.shared.view();
            partition_info.push(PartitionInfo {
                partition: p.shared.partition,
                low_watermark: view.low_watermark,
                high_watermark: view.high_watermark,
                segment_count: usage.segment_count,
                stored_bytes: usage.stored_bytes,
            });
        }
        Ok(TopicInfo {
            name: t.row.name.clone(),
            partitions: t.row.partitions,
            retention_ms: t.row.retention_ms,
            retention_bytes: t.row.retention_bytes,
            created_at_ms: t.row.created_at_ms,
            partition_info,
        })
    }

    pub fn describe_topic(&self, name: &str) -> Result<TopicInfo> {
        let t = self.topic(name)?;
        self.info(&t)
    }

    pub fn list_topics(&self) -> Result<Vec<TopicInfo>> {
        let mut topics = self.snapshot();
        topics.sort_by(|a, b| a.row.name.cmp(&b.row.name));
        topics.iter().map(|t| self.info(t)).collect()
    }

    pub fn partition_count(&self, topic: &str) -> Result<u32> {
        Ok(self.topic(topic)?.row.partitions)
    }

    /// Deletes a topic: its partitions stop, pending waits end with
    /// NOT_FOUND, then metadata, objects and WAL go. Blocks while objects
    /// are deleted; run it off latency-sensitive threads.
    pub fn delete_topic(&self, name: &str) -> Result<()> {
        let topic = {
            let mut topics = self.topics.write().unwrap_or_else(|p| p.into_inner());
            let t = topics
                .remove(name)
                .ok_or_else(|| Error::NotFound(format!("topic {name:?} does not exist")))?;
            lock(&self.deleting).insert(name.to_string());
            t
        };
        let result = self.remove_topic(&topic);
        lock(&self.deleting).remove(name);
        result
    }

    fn remove_topic(&self, topic: &Topic) -> Result<()> {
        let name = &topic.row.name;
        for p in &topic.partitions {
            {
                let mut view = p.shared.view_mut();
                view.status = Status::Deleted;
                p.shared.note_append();
            }
            p.shared.wake_all();
            p.shared
                .fail_uploaded_acks(&format!("topic {name:?} was deleted"));
            p.stop(true);
            let left = p.shared.backlog_bytes.swap(0, Ordering::Relaxed);
            self.ctx.backlog_bytes.fetch_sub(left, Ordering::Relaxed);
        }
        // Metadata first: from here the objects are orphans, which the next
        // start collects if we crash before deleting them, and a WAL left
        // behind is removed at the next start or the next create.
        match self.ctx.meta.delete_topic(name) {
            Ok(_) | Err(crate::meta::MetaError::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
        remove_dir(&self.ctx.config.topic_wal_dir(name))?;
        for obj in self.ctx.store.list(&topic_prefix(name))? {
            self.ctx.store.delete(&obj.key)?;
        }
        log::info!("deleted topic {name:?}");
        Ok(())
    }

    // ---------------------------------------------------------------- produce

    /// Appends `records` (offsets are assigned; a `timestamp_ms` of 0 means
    /// server time) to one partition. Errors that need no I/O come back at
    /// once; the acknowledgement comes on the receiver.
    pub fn produce(
        &self,
        topic: &str,
        partition: u32,
        records: Vec<Record>,
        acks: Acks,
    ) -> Result<AckReceiver> {
        if records.is_empty() {
            return Err(Error::InvalidArgument(
                "a produce request needs at least one record".to_string(),
            ));
        }
        let max = self.ctx.config.max_record_bytes;
        let mut bytes = 0u64;
        for (i, r) in records.iter().enumerate() {
            let len = r.payload_len();
            if len > max {
                return Err(Error::InvalidArgument(format!(
                    "record {i} is {len} bytes (key + value + headers); the limit is {max} bytes"
                )));
            }
            if r.timestamp_ms < 0 {
                return Err(Error::InvalidArgument(format!(
                    "record {i} has a negative timestamp {}; use 0 for server time",
                    r.timestamp_ms
                )));
            }
            bytes += len as u64;
        }
        if bytes > MAX_PRODUCE_BYTES {
            return Err(Error::InvalidArgument(format!(
                "a produce request carries {bytes} bytes; the limit is {MAX_PRODUCE_BYTES}"
            )));
        }
        let p = self.partition(topic, partition)?;
        let (reply, rx) = futures::channel::oneshot::channel();
        p.submit(AppendRequest {
            records,
            acks,
            reply,
            bytes,
        })?;
        Ok(rx)
    }

    /// `produce` and wait for the acknowledgement (tests, tools).
    pub fn produce_sync(
        &self,
        topic: &str,
        partition: u32,
        records: Vec<Record>,
        acks: Acks,
    ) -> Result<crate::partition::AppendAck> {
        let rx = self.produce(topic, partition, records, acks)?;
        wait(rx)
    }

    // ---------------------------------------------------------------- consume

    pub fn fetch(&self, topic: &str, partition: u32, req: FetchRequest) -> Result<FetchReceiver> {
        let p = self.partition(topic, partition)?;
        match lock(&self.readers).as_ref() {
            Some(r) => r.fetch(Arc::clone(&p.shared), req),
            None => Err(Error::Unavailable(
                "the server is shutting down".to_string(),
            )),
        }
    }

    pub fn fetch_sync(
        &self,
        topic: &str,
        partition: u32,
        req: FetchRequest,
    ) -> Result<crate::read::FetchResult> {
        let rx = self.fetch(topic, partition, req)?;
        wait(rx)
    }

    /// -2: the low watermark; -1: the high watermark; t >= 0: the first
    /// offset whose timestamp is >= t (the high watermark if none).
    pub fn list_offsets(
        &self,
        topic: &str,
        partition: u32,
        timestamp_ms: i64,
    ) -> Result<OffsetReceiver> {
        if timestamp_ms < -2 {
            return Err(Error::InvalidArgument(format!(
                "timestamp {timestamp_ms} is invalid: use -2 (earliest), -1 (latest) or a time in ms >= 0"
            )));
        }
        let p = self.partition(topic, partition)?;
        match lock(&self.readers).as_ref() {
            Some(r) => r.list_offsets(Arc::clone(&p.shared), timestamp_ms),
            None => Err(Error::Unavailable(
                "the server is shutting down".to_string(),
            )),
        }
    }

    pub fn list_offsets_sync(&self, topic: &str, partition: u32, timestamp_ms: i64) -> Result<i64> {
        let rx = self.list_offsets(topic, partition, timestamp_ms)?;
        wait(rx)
    }

    // ---------------------------------------------------------------- groups

    pub fn commit_offset(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
        offset: i64,
        metadata: &str,
    ) -> Result<()> {
        validate_group(group)?;
        self.partition(topic, partition)?;
        if offset < 0 {
            return Err(Error::InvalidArgument(format!(
                "offset {offset} is negative; commit the next offset to read (>= 0)"
            )));
        }
        self.ctx.meta.commit_group_offset(&GroupOffset {
            group: group.to_string(),
            topic: topic.to_string(),
            partition,
            offset,
            metadata: metadata.to_string(),
            updated_at_ms: now_ms(),
        })?;
        Ok(())
    }

    pub fn committed_offset(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
    ) -> Result<Option<GroupOffset>> {
        validate_group(group)?;
        self.partition(topic, partition)?;
        Ok(self.ctx.meta.group_offset(group, topic, partition)?)
    }

    pub fn group_offsets(&self, group: &str) -> Result<Vec<GroupOffset>> {
        validate_group(group)?;
        Ok(self.ctx.meta.group_offsets(group)?)
    }

    pub fn groups(&self) -> Result<Vec<String>> {
        Ok(self.ctx.meta.groups()?)
    }

    // ---------------------------------------------------------------- retention

    /// Drops segments past each topic's retention, oldest first: metadata
    /// row and low watermark first, then the object (a crash in between
    /// leaves an orphan that the next start collects).
    pub fn run_retention(&self) {
        let topics = self.snapshot();
        let now = now_ms();
        for t in topics {
            if t.row.retention_ms == 0 && t.row.retention_bytes == 0 {
                continue;
            }
            for p in &t.partitions {
                if let Err(e) = self.retain_partition(&t.row.name, p, now) {
                    log::warn!("retention of {}/{}: {e}", t.row.name, p.shared.partition);
                }
            }
        }
    }

    fn retain_partition(&self, topic: &str, p: &Partition, now: i64) -> Result<()> {
        let id = p.shared.partition;
        // Only segments the readers already see: one the uploader committed
        // a moment ago waits for the next pass.
        let visible_end = p.shared.view().committed_next;
        let mut expired = self.ctx.meta.segments_beyond_retention(topic, id, now)?;
        expired.retain(|s| s.last_offset < visible_end);
        let Some(last) = expired.last() else {
            return Ok(());
        };
        let new_low = last.last_offset + 1;
        let dropped = self.ctx.meta.drop_segments_before(topic, id, new_low)?;
        {
            let mut view = p.shared.view_mut();
            view.low_watermark = view.low_watermark.max(new_low);
            while view
                .segments
                .front()
                .is_some_and(|s| s.last_offset < new_low)
            {
                view.segments.pop_front();
            }
        }
        Metrics::add(&self.ctx.metrics.segments_dropped, dropped.len() as u64);
        for s in &dropped {
            if let Err(e) = self.ctx.store.delete(&s.object_key) {
                log::warn!("retention: {} stays as an orphan: {e}", s.object_key);
            }
        }
        log::info!(
            "retention: {topic}/{id} dropped {} segments, low watermark now {new_low}",
            dropped.len()
        );
        Ok(())
    }

    // ---------------------------------------------------------------- shutdown

    /// Stops everything: writers finish what is queued (fsynced), uploads
    /// still queued are left to the WAL for the next start if they cannot
    /// finish within `upload_grace`, long polls are answered.
    pub fn shutdown(&self, upload_grace: Duration) {
        if let Some(tx) = lock(&self.retention_stop).take() {
            let _ = tx.send(());
        }
        if let Some(h) = lock(&self.retention).take() {
            // The last handle can be dropped on the retention thread itself.
            if h.thread().id() != std::thread::current().id() {
                let _ = h.join();
            }
        }
        let topics: Vec<Arc<Topic>> = self
            .topics
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
            .map(|(_, t)| t)
            .collect();
        let partitions: Vec<Arc<Partition>> = topics
            .iter()
            .flat_map(|t| t.partitions.iter().cloned())
            .collect();
        // Past the grace period, uploads give up (their WAL files stay).
        let abandon = {
            let partitions = partitions.clone();
            std::thread::spawn(move || {
                std::thread::sleep(upload_grace);
                for p in partitions {
                    p.abandon_uploads();
                }
            })
        };
        for p in &partitions {
            p.stop(false);
        }
        drop(abandon); // detached; it only flips flags
        if let Some(mut r) = lock(&self.readers).take() {
            r.shutdown();
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.shutdown(Duration::from_secs(0));
    }
}

/// Blocks on an engine reply (the `_sync` helpers; never on grpcio threads).
fn wait<T>(rx: futures::channel::oneshot::Receiver<Result<T>>) -> Result<T> {
    futures::executor::block_on(rx).unwrap_or_else(|_| {
        Err(Error::Unavailable(
            "the engine stopped before answering".to_string(),
        ))
    })
}

/// Group names: 1-255 bytes of UTF-8 without control characters.
pub fn validate_group(group: &str) -> Result<()> {
    if group.is_empty() || group.len() > 255 {
        return Err(Error::InvalidArgument(format!(
            "group name must be 1-255 bytes, got {}",
            group.len()
        )));
    }
    if group.chars().any(char::is_control) {
        return Err(Error::InvalidArgument(
            "group name must not contain control characters".to_string(),
        ));
    }
    Ok(())
}

/// Deletes objects under `topics/` that no metadata row names: left by a
/// crash between upload and commit, or by retention or topic deletion.
fn collect_orphans(ctx: &EngineCtx) -> Result<()> {
    let known: HashSet<String> = ctx.meta.all_segment_keys()?.into_iter().collect();
    // One attempt per call (no retry loop): start-up should not wait out a
    // dead store; the next start tries again.
    let store = ctx.store.inner();
    let mut removed = 0;
    for obj in store.list("topics/")? {
        if !known.contains(&obj.key) {
            store.delete(&obj.key)?;
            removed += 1;
        }
    }
    if removed > 0 {
        log::info!("removed {removed} orphan objects");
    }
    Ok(())
}
