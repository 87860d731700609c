//! The read path: a fixed pool of reader threads serving fetches and offset
//! lookups from the in-memory tail (records not yet uploaded) and from
//! sealed segments through the block cache, with sequential prefetch and
//! long polls woken by the writer.
//!
//! A fetch at the high watermark with time left parks itself on the
//! partition (no thread waits); the writer's next append or the timer,
//! whichever comes first, puts it back on the pool's queue.

mod cache;
mod timer;

pub use cache::BlockCache;

use crate::engine::EngineCtx;
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::object_store::StoreError;
use crate::partition::{PartitionShared, SegmentRef, Status, Waiter};
use crate::record::Record;
use crate::segment::{read_block, DecodedBlock, Footer, InStore, ReadAt, RecordRef};
use crossbeam_channel::{Receiver, Sender, TryRecvError};
use futures::channel::oneshot;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use timer::Timer;

/// Server defaults when a fetch asks for 0 records or 0 bytes.
pub const DEFAULT_MAX_RECORDS: usize = 500;
pub const DEFAULT_MAX_BYTES: usize = 1 << 20;

#[derive(Clone, Debug)]
pub struct FetchRequest {
    pub offset: i64,
    /// 0 = [`DEFAULT_MAX_RECORDS`].
    pub max_records: usize,
    /// 0 = [`DEFAULT_MAX_BYTES`]; the first record is returned even if larger.
    pub max_bytes: usize,
    /// Long poll: how long to wait at the high watermark for records.
    pub max_wait: Duration,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FetchResult {
    pub records: Vec<Record>,
    pub next_offset: i64,
    pub high_watermark: i64,
    pub low_watermark: i64,
}

pub type FetchReceiver = oneshot::Receiver<Result<FetchResult>>;
pub type OffsetReceiver = oneshot::Receiver<Result<i64>>;

struct FetchTask {
    partition: Arc<PartitionShared>,
    req: FetchRequest,
    deadline: Instant,
    reply: oneshot::Sender<Result<FetchResult>>,
}

enum ReadTask {
    Fetch(FetchTask),
    ListOffsets {
        partition: Arc<PartitionShared>,
        timestamp_ms: i64,
        reply: oneshot::Sender<Result<i64>>,
    },
    Stop,
}

struct Prefetch {
    segment: SegmentRef,
    block: u32,
}

/// The reader pool. Dropping it (or [`ReaderPool::shutdown`]) stops it.
pub struct ReaderPool {
    inner: Arc<PoolInner>,
    threads: Vec<JoinHandle<()>>,
}

struct PoolInner {
    ctx: Arc<EngineCtx>,
    cache: BlockCache,
    timer: Mutex<Option<Timer>>,
    tx: Sender<ReadTask>,
    prefetch_tx: Sender<Prefetch>,
    prefetching: Mutex<HashSet<(Arc<str>, u32)>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Bound on queued read tasks; past it a fetch gets backpressure.
const QUEUE: usize = 65_536;

impl ReaderPool {
    pub(crate) fn start(ctx: Arc<EngineCtx>) -> Result<Self> {
        let (tx, rx) = crossbeam_channel::bounded(QUEUE);
        let (prefetch_tx, prefetch_rx) = crossbeam_channel::bounded(1024);
        let timer = Timer::start().map_err(|e| Error::io("start the long-poll timer", e))?;
        let threads_n = ctx.config.reader_threads.max(1);
        let inner = Arc::new(PoolInner {
            cache: BlockCache::new(ctx.config.cache_bytes),
            ctx,
            timer: Mutex::new(Some(timer)),
            tx,
            prefetch_tx,
            prefetching: Mutex::new(HashSet::new()),
        });
        let mut threads = Vec::with_capacity(threads_n);
        for i in 0..threads_n {
            let inner = Arc::clone(&inner);
            let rx: Receiver<ReadTask> = rx.clone();
            let prx: Receiver<Prefetch> = prefetch_rx.clone();
            let t = std::thread::Builder::new()
                .name(format!("reader-{i}"))
                .spawn(move || inner.run(rx, prx))
                .map_err(|e| Error::io("spawn reader thread", e))?;
            threads.push(t);
        }
        Ok(ReaderPool { inner, threads })
    }

    pub fn cache(&self) -> &BlockCache {
        &self.inner.cache
    }

    pub(crate) fn fetch(
        &self,
        partition: Arc<PartitionShared>,
        req: FetchRequest,
    ) -> Result<FetchReceiver> {
        let (reply, rx) = oneshot::channel();
        let deadline = Instant::now() + req.max_wait;
        self.inner.submit(ReadTask::Fetch(FetchTask {
            partition,
            req,
            deadline,
            reply,
        }))?;
        Ok(rx)
    }

    pub(crate) fn list_offsets(
        &self,
        partition: Arc<PartitionShared>,
        timestamp_ms: i64,
    ) -> Result<OffsetReceiver> {
        let (reply, rx) = oneshot::channel();
        self.inner.submit(ReadTask::ListOffsets {
            partition,
            timestamp_ms,
            reply,
        })?;
        Ok(rx)
    }

    /// Answers parked long polls, stops the threads and joins them.
    pub fn shutdown(&mut self) {
        // Timer first: it resubmits parked fetches, which then answer.
        let timer = lock(&self.inner.timer).take();
        drop(timer);
        for _ in &self.threads {
            let _ = self.inner.tx.send(ReadTask::Stop);
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for ReaderPool {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// A fetch parked at the high watermark.
struct Parked {
    task: Mutex<Option<FetchTask>>,
    pool: std::sync::Weak<PoolInner>,
    done: AtomicBool,
}

impl Parked {
    fn fire(&self) {
        let Some(task) = lock(&self.task).take() else {
            return;
        };
        self.done.store(true, Ordering::SeqCst);
        match self.pool.upgrade() {
            Some(pool) => {
                pool.submit_fetch(task);
            }
            None => {
                let _ = task.reply.send(Err(Error::Unavailable(
                    "the server is shutting down".to_string(),
                )));
            }
        }
    }
}

impl Waiter for Parked {
    fn wake(&self) {
        self.fire();
    }
    fn is_done(&self) -> bool {
        self.done.load(Ordering::SeqCst)
    }
}

/// Accumulates a fetch's records within its limits.
struct Collector {
    records: Vec<Record>,
    bytes: usize,
    max_records: usize,
    max_bytes: usize,
    next: i64,
}

impl Collector {
    fn full(&self) -> bool {
        self.records.len() >= self.max_records || self.bytes >= self.max_bytes
    }

    /// Adds a record unless it would pass `max_bytes` (the first always fits).
    fn push(&mut self, r: RecordRef<'_>) -> bool {
        let len = r.payload_len();
        if !self.records.is_empty() && self.bytes + len > self.max_bytes {
            return false;
        }
        self.bytes += len;
        self.next = r.offset + 1;
        self.records.push(r.to_record());
        true
    }

    fn finish(&mut self, high: i64, low: i64) -> FetchResult {
        FetchResult {
            records: std::mem::take(&mut self.records),
            next_offset: self.next,
            high_watermark: high,
            low_watermark: low,
        }
    }

    fn push_owned(&mut self, r: &Record) -> bool {
        let len = r.payload_len();
        if !self.records.is_empty() && self.bytes + len > self.max_bytes {
            return false;
        }
        self.bytes += len;
        self.next = r.offset + 1;
        self.records.push(r.clone());
        true
    }
}

/// What one look at the partition decided.
enum Step {
    Done(Result<FetchResult>),
    /// Nothing to return yet: wait for the append after this count.
    Park(u64),
    Segment {
        seg: SegmentRef,
        next: Option<SegmentRef>,
    },
    Again,
}

impl PoolInner {
    fn submit(&self, task: ReadTask) -> Result<()> {
        use crossbeam_channel::TrySendError;
        match self.tx.try_send(task) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => Err(Error::Backpressure(
                "too many reads are queued; retry later".to_string(),
            )),
            Err(TrySendError::Disconnected(_)) => Err(Error::Unavailable(
                "the server is shutting down".to_string(),
            )),
        }
    }

    /// Queues a fetch; if the queue refuses it, the caller hears why
    /// instead of losing the reply.
    fn submit_fetch(&self, task: FetchTask) {
        use crossbeam_channel::TrySendError;
        if let Err(e) = self.tx.try_send(ReadTask::Fetch(task)) {
            let (task, err) = match e {
                TrySendError::Full(t) => (
                    t,
                    Error::Backpressure("too many reads are queued; retry later".into()),
                ),
                TrySendError::Disconnected(t) => {
                    (t, Error::Unavailable("the server is shutting down".into()))
                }
            };
            if let ReadTask::Fetch(t) = task {
                let _ = t.reply.send(Err(err));
            }
        }
    }

    fn run(self: Arc<Self>, rx: Receiver<ReadTask>, prefetch_rx: Receiver<Prefetch>) {
        loop {
            // Requests before prefetches.
            let task = match rx.try_recv() {
                Ok(t) => t,
                Err(TryRecvError::Disconnected) => return,
                Err(TryRecvError::Empty) => {
                    crossbeam_channel::select! {
                        recv(rx) -> t => match t { Ok(t) => t, Err(_) => return },
                        recv(prefetch_rx) -> p => {
                            if let Ok(p) = p { self.prefetch(p) }
                            continue;
                        }
                    }
                }
            };
            match task {
                ReadTask::Fetch(t) => self.fetch(t),
                ReadTask::ListOffsets {
                    partition,
                    timestamp_ms,
                    reply,
                } => {
                    let _ = reply.send(self.list_offsets(&partition, timestamp_ms));
                }
                ReadTask::Stop => return,
            }
        }
    }

    fn fetch(self: &Arc<Self>, task: FetchTask) {
        let default = |n: usize, d: usize| if n == 0 { d } else { n };
        let mut c = Collector {
            records: Vec::new(),
            bytes: 0,
            max_records: default(task.req.max_records, DEFAULT_MAX_RECORDS),
            max_bytes: default(task.req.max_bytes, DEFAULT_MAX_BYTES),
            next: task.req.offset,
        };
        let result = loop {
            match self.step(&task, &mut c) {
                Step::Done(r) => break r,
                Step::Park(seen) => return self.park(task, seen),
                Step::Again => continue,
                Step::Segment { seg, next } => {
                    if let Err(e) = self.read_segment(&task.partition, &seg, next.as_ref(), &mut c)
                    {
                        break Err(e);
                    }
                    if c.full() {
                        let view = task.partition.view();
                        break Ok(c.finish(view.high_watermark, view.low_watermark));
                    }
                }
            }
        };
        if let Ok(r) = &result {
            Metrics::add(&self.ctx.metrics.records_out, r.records.len() as u64);
            Metrics::add(&self.ctx.metrics.bytes_out, c.bytes as u64);
        }
        let _ = task.reply.send(result);
    }

    /// Parks a fetch until the partition's next append or its deadline.
    fn park(self: &Arc<Self>, task: FetchTask, seen_appends: u64) {
        let timer = lock(&self.timer);
        let Some(timer) = timer.as_ref() else {
            // Shutting down: no timer to end the wait.
            let _ = task.reply.send(Err(Error::Unavailable(
                "the server is shutting down".into(),
            )));
            return;
        };
        let deadline = task.deadline;
        let partition = Arc::clone(&task.partition);
        let parked = Arc::new(Parked {
            task: Mutex::new(Some(task)),
            pool: Arc::downgrade(self),
            done: AtomicBool::new(false),
        });
        let p = Arc::clone(&parked);
        timer.at(deadline, move || p.fire());
        partition.park(parked, seen_appends);
    }

    /// Looks at the partition once, under its read lock: serve from the
    /// tail, park, answer an error, or name the next segment to read.
    fn step(&self, t: &FetchTask, c: &mut Collector) -> Step {
        let p = &t.partition;
        let view = p.view();
        if view.status == Status::Deleted {
            return Step::Done(Err(Error::NotFound(format!(
                "topic {:?} was deleted",
                p.topic
            ))));
        }
        let offset = c.next;
        if !c.records.is_empty() && offset < view.low_watermark {
            // Retention moved past us mid-response: end it here rather than
            // skip offsets inside one answer.
            return Step::Done(Ok(c.finish(view.high_watermark, view.low_watermark)));
        }
        if c.records.is_empty() && (offset < view.low_watermark || offset > view.high_watermark) {
            return Step::Done(Err(Error::OutOfRange(format!(
                "offset {offset} is out of range for partition {}: valid offsets are {}..={} (low..high watermark)",
                p.name(),
                view.low_watermark,
                view.high_watermark
            ))));
        }
        if offset >= view.high_watermark {
            if c.records.is_empty() && Instant::now() < t.deadline {
                return Step::Park(p.appends());
            }
            return Step::Done(Ok(c.finish(view.high_watermark, view.low_watermark)));
        }
        if offset >= view.committed_next {
            // The unflushed tail: readable as soon as it is acknowledged.
            let mut i = view.tail_position(offset);
            'batches: while let Some(batch) = view.tail.get(i) {
                let start = batch.records.partition_point(|r| r.offset < c.next);
                for r in &batch.records[start..] {
                    if c.full() || !c.push_owned(r) {
                        break 'batches;
                    }
                }
                i += 1;
            }
            return Step::Done(Ok(c.finish(view.high_watermark, view.low_watermark)));
        }
        let i = view.segments.partition_point(|s| s.last_offset < offset);
        match view.segments.get(i) {
            Some(seg) => {
                // In a gap between segments the next one starts later.
                c.next = c.next.max(seg.base_offset);
                Step::Segment {
                    seg: seg.clone(),
                    next: view.segments.get(i + 1).cloned(),
                }
            }
            None => {
                c.next = view.committed_next;
                Step::Again
            }
        }
    }

    fn store_error(&self, partition: &PartitionShared, seg: &SegmentRef, e: Error) -> Error {
        if let Error::Store(StoreError::NotFound { .. }) = &e {
            let low = partition.view().low_watermark;
            if seg.last_offset < low {
                return Error::OutOfRange(format!(
                    "offsets up to {} of partition {} were removed by retention; the low watermark is {low}",
                    seg.last_offset,
                    partition.name()
                ));
            }
        }
        e
    }

    fn footer(&self, seg: &SegmentRef) -> Result<Arc<Footer>> {
        if let Some(f) = self.cache.footer(&seg.key) {
            return Ok(f);
        }
        let src = CountingSource {
            inner: InStore {
                store: self.ctx.store.as_ref(),
                key: &seg.key,
            },
            metrics: &self.ctx.metrics,
        };
        let footer = Arc::new(Footer::read(&src, seg.size_bytes)?);
        self.cache.insert_footer(&seg.key, Arc::clone(&footer));
        Ok(footer)
    }

    fn block(&self, seg: &SegmentRef, footer: &Footer, i: usize) -> Result<Arc<DecodedBlock>> {
        if let Some(b) = self.cache.block(&seg.key, i as u32) {
            Metrics::add(&self.ctx.metrics.cache_hits, 1);
            return Ok(b);
        }
        Metrics::add(&self.ctx.metrics.cache_misses, 1);
        self.load_block(seg, footer, i)
    }

    fn load_block(&self, seg: &SegmentRef, footer: &Footer, i: usize) -> Result<Arc<DecodedBlock>> {
        let src = CountingSource {
            inner: InStore {
                store: self.ctx.store.as_ref(),
                key: &seg.key,
            },
            metrics: &self.ctx.metrics,
        };
        let block = Arc::new(read_block(&src, footer, i)?);
        self.cache
            .insert_block(&seg.key, i as u32, Arc::clone(&block));
        Ok(block)
    }

    fn read_segment(
        &self,
        partition: &PartitionShared,
        seg: &SegmentRef,
        next_seg: Option<&SegmentRef>,
        c: &mut Collector,
    ) -> Result<()> {
        let footer = self
            .footer(seg)
            .map_err(|e| self.store_error(partition, seg, e))?;
        let blocks = footer.entries().len();
        let mut i = footer.block_for_offset(c.next);
        while let Some(bi) = i {
            let block = self
                .block(seg, &footer, bi)
                .map_err(|e| self.store_error(partition, seg, e))?;
            // Sequential readers will want what comes next.
            if bi + 1 < blocks {
                self.queue_prefetch(seg, (bi + 1) as u32);
            } else if let Some(n) = next_seg {
                self.queue_prefetch(n, 0);
            }
            let mut pos = block.position_of(c.next);
            while let Some(r) = block.get(pos) {
                if c.full() || !c.push(r) {
                    return Ok(());
                }
                pos += 1;
            }
            c.next = c.next.max(footer.entries()[bi].last_offset + 1);
            if c.full() {
                return Ok(());
            }
            i = (bi + 1 < blocks).then_some(bi + 1);
        }
        c.next = c.next.max(seg.last_offset + 1);
        Ok(())
    }

    fn queue_prefetch(&self, seg: &SegmentRef, block: u32) {
        if self.cache.contains_block(&seg.key, block) {
            return;
        }
        if !lock(&self.prefetching).insert((Arc::clone(&seg.key), block)) {
            return;
        }
        if self
            .prefetch_tx
            .try_send(Prefetch {
                segment: seg.clone(),
                block,
            })
            .is_err()
        {
            lock(&self.prefetching).remove(&(Arc::clone(&seg.key), block));
        }
    }

    fn prefetch(&self, p: Prefetch) {
        let key = (Arc::clone(&p.segment.key), p.block);
        if !self.cache.contains_block(&p.segment.key, p.block) {
            let loaded = self
                .footer(&p.segment)
                .and_then(|f| self.load_block(&p.segment, &f, p.block as usize));
            match loaded {
                Ok(_) => Metrics::add(&self.ctx.metrics.prefetches, 1),
                Err(e) => log::debug!(
                    "prefetch of {} block {} failed: {e}",
                    p.segment.key,
                    p.block
                ),
            }
        }
        lock(&self.prefetching).remove(&key);
    }

    fn list_offsets(&self, p: &PartitionShared, timestamp_ms: i64) -> Result<i64> {
        let (seg, high) = {
            let view = p.view();
            if view.status == Status::Deleted {
                return Err(Error::NotFound(format!("topic {:?} was deleted", p.topic)));
            }
            match timestamp_ms {
                -2 => return Ok(view.low_watermark),
                -1 => return Ok(view.high_watermark),
                t if t < 0 => {
                    return Err(Error::InvalidArgument(format!(
                    "timestamp {t} is invalid: use -2 (earliest), -1 (latest) or a time in ms >= 0"
                )))
                }
                _ => {}
            }
            match view
                .segments
                .iter()
                .find(|s| s.max_timestamp_ms >= timestamp_ms)
            {
                Some(s) => (s.clone(), view.high_watermark),
                None => {
                    let found = view
                        .tail
                        .iter()
                        .flat_map(|b| b.records.iter())
                        .find(|r| r.timestamp_ms >= timestamp_ms)
                        .map(|r| r.offset);
                    return Ok(found.unwrap_or(view.high_watermark));
                }
            }
        };
        let footer = self
            .footer(&seg)
            .map_err(|e| self.store_error(p, &seg, e))?;
        let Some(bi) = footer.block_for_timestamp(timestamp_ms) else {
            return Ok(high);
        };
        let block = self
            .block(&seg, &footer, bi)
            .map_err(|e| self.store_error(p, &seg, e))?;
        Ok(block
            .position_of_timestamp(timestamp_ms)
            .and_then(|i| block.get(i))
            .map_or(high, |r| r.offset))
    }
}

/// Counts the GETs the read path makes.
struct CountingSource<'a> {
    inner: InStore<'a>,
    metrics: &'a Metrics,
}

impl ReadAt for CountingSource<'_> {
    fn read_at(&self, range: std::ops::Range<u64>) -> Result<Vec<u8>> {
        let data = self.inner.read_at(range)?;
        Metrics::add(&self.metrics.gets, 1);
        Metrics::add(&self.metrics.get_bytes, data.len() as u64);
        Ok(data)
    }
    fn name(&self) -> &str {
        self.inner.name()
    }
}
