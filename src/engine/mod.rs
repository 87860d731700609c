//! The storage engine: topics and partitions over the WAL, the object store
//! and the metadata store. A library API; the gRPC server sits on top.
//!
//! Calls never block on I/O: `produce`, `fetch` and `list_offsets` hand the
//! work to a partition writer or the reader pool and return a `futures`
//! oneshot receiver that a gRPC handler can await. Topic administration and
//! group offsets are quick SQLite calls and are synchronous.
//!
//! - [`topics`]: create, describe, list, delete;
//! - [`rebuild`]: reconciliation with the bucket at start (a node rebuilt
//!   from the bucket alone);
//! - [`retention`]: the retention pass;
//! - [`gc`]: garbage collection, on evidence only;
//! - [`groups`]: consumer-group offsets and their checkpoint in the bucket;
//! - [`ownership`]: taking the prefix at start, confirming it before bucket
//!   changes;
//! - [`producers`]: InitProducer, the producer registry, expiry.

mod cluster;
mod cluster_groups;
mod cluster_topics;
mod epochs;
mod follower;
mod gc;
mod groups;
mod ownership;
mod producers;
mod rebuild;
mod retention;
mod topics;

pub use cluster_groups::{GroupHome, GROUP_SLOTS};
pub use groups::OffsetCommit;
pub use producers::{MAX_PRODUCERS, MAX_PRODUCER_NAME};
pub use topics::{
    validate_spec as validate_topic_spec, NodeInfo, PartitionInfo, TopicChange, TopicInfo,
    TopicSpec, MAX_PARTITIONS,
};

use crate::config::EngineConfig;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::layout;
use crate::meta::TopicRow;
use crate::metrics::Metrics;
use crate::metrics::{MetricsSnapshot, Stages};
use crate::object_store::ObjectStore;
use crate::partition::{
    open_blocked, open_partition, AckReceiver, Acks, AppendAck, AppendRequest, Backlog, Partition,
    Status, UploadPool,
};
pub use crate::producer::ProducerBatch;
use crate::read::{FetchReceiver, FetchRequest, FetchResult, OffsetReceiver, ReaderPool};
use crate::record::{Record, HEADER_OVERHEAD, MAX_HEADERS, RECORD_OVERHEAD};
use crate::util::sync::{self, lock, StopSignal};
use crate::util::thread::{self, Worker};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// Upper bound on the record bytes of one produce call (one WAL entry).
pub const MAX_PRODUCE_BYTES: u64 = 256 << 20;

/// How long shutdown waits, past the upload grace, for threads that may be
/// stuck in a call to a store that does not answer.
const STOP_MARGIN: Duration = Duration::from_secs(1);

/// How long shutdown waits for the partition writers to flush and seal.
const WRITER_STOP: Duration = Duration::from_secs(10);

struct Topic {
    row: TopicRow,
    partitions: Vec<Arc<Partition>>,
}

pub struct Engine {
    ctx: Arc<Context>,
    /// The threads that run every partition's uploads.
    uploads: UploadPool,
    topics: RwLock<HashMap<String, Arc<Topic>>>,
    /// Names being created or deleted: no other creation or deletion of
    /// them may start.
    pending: Mutex<HashSet<String>>,
    readers: Mutex<Option<ReaderPool>>,
    retention_stop: StopSignal,
    retention: Mutex<Option<Worker>>,
    groups: Arc<groups::GroupCheckpoint>,
    /// Producer ids this node may hand out without claiming a new block.
    producer_ids: Arc<Mutex<producers::IdBlock>>,
    /// Set by the first shutdown; later calls (Drop) do nothing.
    shut_down: std::sync::atomic::AtomicBool,
    /// Cluster mode: this node's membership (unused otherwise).
    member: cluster::Member,
}

impl Engine {
    /// Opens the engine: metadata, orphan collection, every partition's
    /// recovery, the reader pool and the retention thread.
    pub fn open(config: EngineConfig, store: Arc<dyn ObjectStore>) -> Result<Arc<Engine>> {
        let ctx = Context::open(config, store)?;
        ownership::check_store_identity(&ctx)?;
        // The bucket is the source of truth: a node that cannot read it
        // cannot know whether its metadata is current, and serving from
        // stale metadata would hand out offsets the bucket already holds.
        let unreadable = |e: Error| {
            match e {
            // A 403, a 400, a bucket that does not exist: the store answers,
            // and will answer the same at every start.
            Error::Store(crate::object_store::StoreError::Permanent { .. }) => Error::Config(format!(
                "the object store refuses this node's requests ({e}); check the bucket, region, \
                 endpoint, --s3-path-style and the credentials (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)"
            )),
            e => Error::Unavailable(format!(
                "cannot read the bucket ({e}); a node reconciles with it before serving, so start again once the object store answers"
            )),
        }
        };
        let uploads = UploadPool::start(ctx.config.upload_threads)
            .map_err(|e| Error::io("start the upload threads", e))?;
        let (topics, producer_ids) = match &ctx.cluster {
            // Partitions open as this node comes to lead them.
            Some(_) => (
                cluster::prepare(&ctx).map_err(|e| match e {
                    Error::Store(_) => unreadable(e),
                    e => e,
                })?,
                producers::IdBlock::default(),
            ),
            None => open_single(&ctx, &uploads, unreadable)?,
        };
        let readers = ReaderPool::start(Arc::clone(&ctx))?;
        let engine = Arc::new(Engine {
            ctx,
            uploads,
            topics: RwLock::new(topics),
            pending: Mutex::new(HashSet::new()),
            readers: Mutex::new(Some(readers)),
            retention_stop: StopSignal::new(),
            retention: Mutex::new(None),
            groups: Arc::default(),
            producer_ids: Arc::new(Mutex::new(producer_ids)),
            shut_down: std::sync::atomic::AtomicBool::new(false),
            member: cluster::Member::default(),
        });
        if let Some(c) = &engine.ctx.config.cluster {
            cluster::join(&engine, &c.clone())?;
        }
        engine.expire_producers();
        engine.clamp_group_offsets(&sync::read(&engine.topics))?;
        let weak = Arc::downgrade(&engine);
        let interval = engine.ctx.config.retention_interval;
        let stop = engine.retention_stop.clone();
        let worker = thread::spawn("retention", move || {
            let mut last_retention = Instant::now();
            let mut last_checkpoint = Instant::now();
            while !stop.sleep(groups::CHECKPOINT_INTERVAL.min(interval)) {
                let Some(engine) = weak.upgrade() else { return };
                // The group checkpoint is one object per prefix: not
                // written in cluster mode (yet), nor is an owner record.
                let single = engine.ctx.cluster.is_none();
                if single && last_checkpoint.elapsed() >= groups::CHECKPOINT_INTERVAL {
                    // An idle node learns it was fenced without waiting for
                    // a produce (a store error is retried next time).
                    if let Err(e) = engine.ctx.owner.confirm(&engine.ctx.store) {
                        log::debug!("owner record not confirmed: {e:?}");
                    }
                    engine.checkpoint_groups();
                    last_checkpoint = Instant::now();
                }
                if last_retention.elapsed() >= interval {
                    engine.run_retention();
                    engine.expire_producers();
                    engine.expire_groups();
                    last_retention = Instant::now();
                }
            }
        })
        .map_err(|e| Error::io("spawn retention thread", e))?;
        *lock(&engine.retention) = Some(worker);
        Ok(engine)
    }

    pub fn config(&self) -> &EngineConfig {
        &self.ctx.config
    }

    /// Per-stage latency histograms (produce path, subscriber wake-ups).
    pub fn stages(&self) -> &Stages {
        &self.ctx.stages
    }

    pub fn metrics(&self) -> MetricsSnapshot {
        let mut m = self.ctx.metrics.snapshot();
        m.store_retries = self.ctx.store.retry_count();
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
        sync::read(&self.topics).values().cloned().collect()
    }

    fn topic(&self, name: &str) -> Result<Arc<Topic>> {
        sync::read(&self.topics)
            .get(name)
            .cloned()
            .ok_or_else(|| Error::NotFound(format!("topic {name:?} does not exist")))
    }

    fn partition(&self, topic: &str, partition: u32) -> Result<Arc<Partition>> {
        let t = self.topic(topic)?;
        let p = t
            .partitions
            .get(partition as usize)
            .cloned()
            .ok_or_else(|| {
                Error::NotFound(format!(
                    "partition {partition} of topic {topic:?} does not exist (it has partitions 0..{})",
                    t.partitions.len()
                ))
            })?;
        if matches!(p.shared.view().status, Status::NotLeader(_)) {
            return Err(self.leader_hint(topic, partition));
        }
        self.check_leading(topic, partition)?;
        Ok(p)
    }

    fn with_readers<T>(&self, f: impl FnOnce(&ReaderPool) -> Result<T>) -> Result<T> {
        match lock(&self.readers).as_ref() {
            Some(r) => f(r),
            None => Err(Error::shutting_down()),
        }
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
        let mut rx = self.produce_batch(topic, vec![(partition, records)], acks)?;
        Ok(rx.remove(0).1)
    }

    /// Appends records to several partitions of a topic, all or nothing up
    /// to the queue: the request is validated whole (the partitions, every
    /// record, the writability of each partition) and its bytes reserved
    /// against the backlog bound in one step, before any partition receives
    /// a record. A refused request writes nothing anywhere. Past that point
    /// only a local I/O failure (or a lost prefix) can fail a partition; the
    /// receivers say which.
    pub fn produce_batch(
        &self,
        topic: &str,
        parts: Vec<(u32, Vec<Record>)>,
        acks: Acks,
    ) -> Result<Vec<(u32, AckReceiver)>> {
        self.append(topic, parts, acks, None)
    }

    /// Appends an idempotent producer's batch to one partition: written
    /// once however often it is sent (the acknowledgement of a batch sent
    /// again carries its original offsets and `duplicate`). An unknown
    /// producer id answers NOT_FOUND, a fenced epoch ABORTED, a sequence
    /// that skips ahead FAILED_PRECONDITION.
    pub fn produce_idempotent(
        &self,
        topic: &str,
        partition: u32,
        records: Vec<Record>,
        acks: Acks,
        producer: ProducerBatch,
    ) -> Result<AckReceiver> {
        self.check_producer(&producer, records.len())?;
        let mut rx = self.append(topic, vec![(partition, records)], acks, Some(producer))?;
        Ok(rx.remove(0).1)
    }

    /// [`Engine::produce_batch`], with the producer of a one-partition
    /// idempotent batch.
    fn append(
        &self,
        topic: &str,
        parts: Vec<(u32, Vec<Record>)>,
        acks: Acks,
        producer: Option<ProducerBatch>,
    ) -> Result<Vec<(u32, AckReceiver)>> {
        let mut targets = Vec::with_capacity(parts.len());
        let mut total = 0u64;
        for (p, records) in &parts {
            let bytes = validate_records(records, self.ctx.config.max_record_bytes)?;
            let partition = self.partition(topic, *p)?;
            if let Some(e) = partition.shared.refusal(self.ctx.owner.fenced()) {
                return Err(e);
            }
            total += bytes;
            targets.push((partition, bytes));
        }
        if total > MAX_PRODUCE_BYTES {
            return Err(Error::InvalidArgument(format!(
                "a produce request carries {total} bytes; the limit is {MAX_PRODUCE_BYTES}"
            )));
        }
        let max = self.ctx.config.max_backlog_bytes;
        if let Err(backlog) = Backlog::reserve_node(&self.ctx.backlog_bytes, total, max) {
            Metrics::add(&self.ctx.metrics.backpressure_rejections, 1);
            return Err(Error::Backpressure(format!(
                "{backlog} bytes are waiting for upload (limit {max}); the object store may be slow or down, retry later"
            )));
        }
        let mut receivers = Vec::with_capacity(parts.len());
        for ((p, records), (partition, bytes)) in parts.into_iter().zip(targets) {
            let (reply, rx) = futures::channel::oneshot::channel();
            let req = AppendRequest {
                records,
                acks,
                reply,
                bytes,
                producer,
                received: Instant::now(),
            };
            // Fails only when shutting down; the receiver then answers so.
            let _ = partition.submit(req);
            receivers.push((p, rx));
        }
        Ok(receivers)
    }

    /// `produce` and wait for the acknowledgement (tests, tools).
    pub fn produce_sync(
        &self,
        topic: &str,
        partition: u32,
        records: Vec<Record>,
        acks: Acks,
    ) -> Result<AppendAck> {
        wait(self.produce(topic, partition, records, acks)?)
    }

    // ---------------------------------------------------------------- consume

    pub fn fetch(&self, topic: &str, partition: u32, req: FetchRequest) -> Result<FetchReceiver> {
        let shared = match self.partition(topic, partition) {
            Ok(p) => Arc::clone(&p.shared),
            // Cluster mode: committed records are read through any node.
            Err(e @ Error::NotLeader { .. }) => {
                self.follower_view(topic, partition, req.offset, e)?
            }
            Err(e) => return Err(e),
        };
        self.with_readers(|r| r.fetch(shared, req))
    }

    pub fn fetch_sync(
        &self,
        topic: &str,
        partition: u32,
        req: FetchRequest,
    ) -> Result<FetchResult> {
        wait(self.fetch(topic, partition, req)?)
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
        self.with_readers(|r| r.list_offsets(Arc::clone(&p.shared), timestamp_ms))
    }

    pub fn list_offsets_sync(&self, topic: &str, partition: u32, timestamp_ms: i64) -> Result<i64> {
        wait(self.list_offsets(topic, partition, timestamp_ms)?)
    }

    // ---------------------------------------------------------------- shutdown

    /// Stops everything: writers finish what is queued (fsynced) and seal
    /// their active segments; uploads get `upload_grace` to finish, then
    /// give up (their records stay in the WAL for the next start); long
    /// polls are answered. The prefix is released only if everything
    /// accepted is in the bucket. Returns within about `upload_grace` + 2 s
    /// even when the store hangs. Only the first call does anything.
    pub fn shutdown(&self, upload_grace: Duration) {
        if self.shut_down.swap(true, Ordering::SeqCst) {
            return;
        }
        let grace_end = Instant::now() + upload_grace;
        let deadline = grace_end + STOP_MARGIN;
        self.retention_stop.raise();
        if let Some(w) = lock(&self.retention).take() {
            w.join_until(deadline);
        }
        let partitions: Vec<Arc<Partition>> = sync::write(&self.topics)
            .drain()
            .flat_map(|(_, t)| t.partitions.clone())
            .collect();
        // A partition that could not be opened, or whose WAL is damaged,
        // holds records nobody uploaded (and the backlog does not count).
        let stuck = partitions
            .iter()
            .filter(|p| {
                matches!(
                    p.shared.view().status,
                    Status::NotOpened(_) | Status::Damaged(_)
                )
            })
            .count();
        // Every writer at once: they flush and seal side by side. Bounded:
        // a writer stuck (a bug, a disk that hangs) must not hold the stop.
        for p in &partitions {
            p.ask_writer_to_stop();
        }
        let writers_end = Instant::now() + WRITER_STOP;
        let stuck_writers = partitions
            .iter()
            .filter(|p| !p.join_writer(writers_end))
            .count();
        if stuck_writers > 0 {
            log::error!(
                "{stuck_writers} partition writers did not stop within {WRITER_STOP:?}; what they \
                 accepted is in their WAL, replayed at the next start"
            );
        }
        for p in &partitions {
            p.wait_uploads(grace_end);
        }
        // Past the grace period: retries end everywhere.
        self.ctx.stop.raise();
        for p in &partitions {
            p.abandon_uploads();
        }
        self.uploads.shutdown(deadline);
        // Cluster mode: what was accepted is committed (or never will be
        // by this node); the lease goes, and the others lead at once.
        self.member.leave();
        // The last group offsets go to the bucket, and the prefix is
        // released for the next node, on a thread of their own (a store
        // that hangs cannot hold the shutdown; a prefix left held is taken
        // back by this node's next start, or with --take-over). Records
        // only in this node's WAL keep it held: a node started elsewhere
        // without --take-over would not have them.
        let (_, wal_bytes) = ownership::count_files(&layout::wal_root(&self.ctx.config.data_dir));
        let everything_uploaded =
            self.backlog_bytes() == 0 && wal_bytes == 0 && stuck == 0 && stuck_writers == 0;
        let final_writes = {
            let (ctx, groups) = (Arc::clone(&self.ctx), Arc::clone(&self.groups));
            thread::spawn("final-writes", move || {
                groups::checkpoint(&ctx, &groups);
                if everything_uploaded {
                    ctx.owner.release(&ctx.store);
                } else {
                    log::warn!(
                        "records are only in this node's WAL ({wal_bytes} bytes in WAL files; {stuck} \
                         partitions damaged or not opened): the prefix stays held; this data dir \
                         uploads them at its next start"
                    );
                }
            })
        };
        let margin = Instant::now() + STOP_MARGIN;
        // Readers were told nothing yet: give them their own margin.
        if let Some(mut r) = lock(&self.readers).take() {
            r.shutdown(margin);
        }
        match final_writes {
            Ok(w) => {
                w.join_until(margin);
            }
            Err(e) => log::warn!("cannot write the last group offsets and release the prefix: {e}"),
        }
        self.ctx.release_data_dir();
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.shutdown(Duration::from_secs(0));
    }
}

/// One node owning the prefix: take it, reconcile with the bucket, open
/// every partition, and record this epoch's starts before serving.
fn open_single(
    ctx: &Arc<Context>,
    uploads: &UploadPool,
    unreadable: impl Fn(Error) -> Error + Copy,
) -> Result<(HashMap<String, Arc<Topic>>, producers::IdBlock)> {
    ownership::take_ownership(ctx, unreadable)?;
    let reconciled = rebuild::reconcile(ctx).map_err(unreadable)?;
    let producer_ids = producers::restore_producers(ctx).map_err(unreadable)?;
    if let Err(e) = gc::collect_garbage(ctx) {
        log::warn!("garbage collection skipped: {e}");
    }
    let rows = ctx.meta.topics()?;
    gc::remove_stale_wal_dirs(ctx, &rows)?;
    let topics = open_topics(ctx, uploads, rows, &reconciled.blocked);
    // Before the node serves: this epoch's starts, so that a node it
    // fenced cannot bring late uploads into the log.
    epochs::write_epoch_starts(ctx, &topics).map_err(unreadable)?;
    Ok((topics, producer_ids))
}

/// Opens every partition of every topic. A partition that fails to open is
/// kept as one that answers UNAVAILABLE with the reason; the node serves
/// the others.
///
/// A partition whose history in the bucket stops short (`blocked`: an
/// object the rebuild could not read) opens for reads below that point
/// only, and refuses writes with DATA_LOSS naming the object.
fn open_topics(
    ctx: &Arc<Context>,
    uploads: &UploadPool,
    rows: Vec<TopicRow>,
    blocked: &HashMap<(String, u32), String>,
) -> HashMap<String, Arc<Topic>> {
    let mut topics = HashMap::new();
    for row in rows {
        let partitions = (0..row.partitions)
            .map(|p| {
                let opened = match blocked.get(&(row.name.clone(), p)) {
                    Some(why) => open_blocked(ctx, &row.name, p, why.clone()),
                    None => open_partition(ctx, uploads, &row.name, p, 0),
                };
                let opened = opened.unwrap_or_else(|e| {
                    let why = format!("partition {}/{p} could not be opened: {e}", row.name);
                    log::error!("{why}");
                    Partition::not_opened(
                        Arc::clone(&ctx.backlog_bytes),
                        &row.name,
                        row.incarnation,
                        p,
                        why,
                    )
                });
                Arc::new(opened)
            })
            .collect();
        topics.insert(row.name.clone(), Arc::new(Topic { row, partitions }));
    }
    topics
}

/// Checks headers, sizes and timestamps; returns the records' charged
/// bytes. Public for the fuzz targets.
pub fn validate_records(records: &[Record], max_record_bytes: usize) -> Result<u64> {
    if records.is_empty() {
        return Err(Error::InvalidArgument(
            "a produce request needs at least one record".to_string(),
        ));
    }
    let max = max_record_bytes;
    let mut bytes = 0u64;
    for (i, r) in records.iter().enumerate() {
        if r.headers.len() > MAX_HEADERS {
            return Err(Error::InvalidArgument(format!(
                "record {i} has {} headers; the limit is {MAX_HEADERS}",
                r.headers.len()
            )));
        }
        let len = r.accounted_len();
        if len > max {
            return Err(Error::InvalidArgument(format!(
                "record {i} is {len} bytes (key + value + headers, and {RECORD_OVERHEAD} per record and {HEADER_OVERHEAD} per header); the limit is {max} bytes"
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
    Ok(bytes)
}

/// Blocks on an engine reply (the `_sync` helpers; never on grpcio threads).
fn wait<T>(rx: futures::channel::oneshot::Receiver<Result<T>>) -> Result<T> {
    futures::executor::block_on(rx).unwrap_or_else(|_| {
        Err(Error::Unavailable(
            "the engine stopped before answering".to_string(),
        ))
    })
}
