//! The read path: a fixed pool of reader threads serving fetches and offset
//! lookups from the in-memory tail (records not yet uploaded) and from
//! sealed segments through the block cache, with sequential prefetch and
//! long polls woken by the writer.
//!
//! A fetch at the high watermark with time left parks itself on the
//! partition (no thread waits); the writer's next append or the timer,
//! whichever comes first, puts it back on the pool's queue.
//!
//! - [`fetch`]: one fetch, from the tail or the segments, and parking;
//! - [`blocks`]: footers and blocks through the cache, and prefetch;
//! - [`offsets`]: offset lookups by time;
//! - [`source`]: ranged reads of an object;
//! - [`cache`], [`timer`]: the block cache and the long-poll timer.

mod blocks;
mod cache;
mod fetch;
mod offsets;
pub(crate) mod source;
mod timer;

pub use cache::BlockCache;

use crate::context::Context;
use crate::error::{Error, Result};
use crate::partition::{PartitionShared, SegmentRef};
use crate::record::Record;
use crate::util::sync::lock;
use crate::util::thread::{self, Worker};
use crossbeam_channel::{Receiver, Sender, TryRecvError};
use futures::channel::oneshot;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
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
    /// When an append woke it from a long poll (for the stage histogram).
    woken: Option<Instant>,
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
    threads: Vec<Worker>,
}

struct PoolInner {
    ctx: Arc<Context>,
    cache: BlockCache,
    timer: Mutex<Option<Timer>>,
    tx: Sender<ReadTask>,
    prefetch_tx: Sender<Prefetch>,
    prefetching: Mutex<HashSet<(Arc<str>, u32)>>,
}

/// Bound on queued read tasks; past it a fetch gets backpressure.
const QUEUE: usize = 65_536;

impl ReaderPool {
    pub(crate) fn start(ctx: Arc<Context>) -> Result<Self> {
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
            let t = thread::spawn(format!("reader-{i}"), move || inner.run(rx, prx))
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
            woken: None,
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

    /// Answers parked long polls, stops the threads and joins them, each
    /// until `deadline` (a reader may be stuck in a GET to a store that
    /// does not answer).
    pub fn shutdown(&mut self, deadline: Instant) {
        // Timer first: it resubmits parked fetches, which then answer.
        let timer = lock(&self.inner.timer).take();
        drop(timer);
        for _ in &self.threads {
            let _ = self.inner.tx.send(ReadTask::Stop);
        }
        for t in self.threads.drain(..) {
            t.join_until(deadline);
        }
    }
}

impl Drop for ReaderPool {
    fn drop(&mut self) {
        self.shutdown(Instant::now() + Duration::from_secs(1));
    }
}

impl PoolInner {
    fn submit(&self, task: ReadTask) -> Result<()> {
        use crossbeam_channel::TrySendError;
        match self.tx.try_send(task) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => Err(Error::Backpressure(
                "too many reads are queued; retry later".to_string(),
            )),
            Err(TrySendError::Disconnected(_)) => Err(Error::shutting_down()),
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
                TrySendError::Disconnected(t) => (t, Error::shutting_down()),
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
}
