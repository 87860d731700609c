//! Uploads share a fixed pool of threads instead of one thread per
//! partition (10,000 partitions would otherwise be 10,000 idle threads).
//! Each partition has an [`UploadQueue`]: its sealed segments, whose PUTs
//! may run a few at a time (`uploads_per_partition`), and whose commits
//! happen one at a time in offset order (a segment commits only after the
//! one before it; metadata refuses anything else). The queue is handed to
//! the pool once per segment that may start; a worker PUTs it, then
//! commits every segment at the head whose PUT is done, so one busy
//! partition cannot starve the others.

use super::uploader::{PutSegment, Stopped, Uploader};
use super::writer::SealedSegment;
use super::WriterMsg;
use crate::util::sync::lock;
use crate::util::thread::{self, Worker};
use crossbeam_channel::{Receiver, Sender};
use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::Instant;

/// One partition's uploads.
pub(crate) struct UploadQueue {
    uploader: Uploader,
    /// PUTs of this partition that may be in flight at once.
    parallel: usize,
    state: Mutex<QueueState>,
    /// Signalled when the queue goes idle (nothing queued, nothing in
    /// flight) or stops.
    idle: Condvar,
    pool: Sender<Option<Arc<UploadQueue>>>,
    /// The partition's writer, told when an upload slot frees up (it holds
    /// back `acks=uploaded` seals while the slots are taken).
    writer: Mutex<Weak<Sender<WriterMsg>>>,
}

#[derive(Default)]
struct QueueState {
    /// Sealed, not started.
    waiting: VecDeque<SealedSegment>,
    /// Started and not yet committed, by base offset, in offset order:
    /// `None` while its PUT runs, then the segment waiting for its turn.
    started: VecDeque<(i64, Option<PutSegment>)>,
    /// Pool dispatches in line or running for this queue.
    dispatched: usize,
    /// A worker is committing (commits are one at a time, in order).
    committing: bool,
    /// No more uploads (told to stop, or failed): the WAL keeps the rest.
    stopped: bool,
    /// Why the uploads ended has been acted on (once, however many PUTs
    /// in flight end with it).
    reported: bool,
}

impl QueueState {
    fn busy(&self) -> bool {
        !self.started.is_empty() || (!self.stopped && !self.waiting.is_empty())
    }

    /// Every slot is taken or promised: a segment sealed now would wait.
    /// (A segment moving from `waiting` to `started` leaves this as it is,
    /// so only commits and drops free a slot, and they tell the writer.)
    fn full(&self, parallel: usize) -> bool {
        self.waiting.len() + self.started.len() >= parallel
    }

    /// Ends the uploads (under the lock, in the same step that found the
    /// failure, so no other worker starts or commits in between). True
    /// the first time, when the reason is to be acted on.
    fn stop(&mut self) -> bool {
        self.stopped = true;
        self.waiting.clear();
        // What was PUT and not committed stays in the WAL; entries whose
        // PUT runs are dropped by their workers, the head being committed
        // by its committer.
        if !self.committing {
            self.started.retain(|(_, p)| p.is_none());
        }
        !std::mem::replace(&mut self.reported, true)
    }
}

impl UploadQueue {
    pub fn notify_writer(&self, writer: Weak<Sender<WriterMsg>>) {
        *lock(&self.writer) = writer;
    }

    /// Whether another segment would have to wait for an upload slot: the
    /// writer then holds back `acks=uploaded` seals, so that requests
    /// arriving meanwhile share one segment (group commit for uploads).
    pub fn full(&self) -> bool {
        lock(&self.state).full(self.parallel)
    }

    /// Queues a sealed segment; it is committed after those before it.
    pub fn push(self: &Arc<Self>, seg: SealedSegment) {
        let mut st = lock(&self.state);
        if st.stopped {
            return; // the WAL keeps it for the next start
        }
        st.waiting.push_back(seg);
        self.dispatch(&mut st);
    }

    /// Hands the queue to the pool once per segment that may start now.
    fn dispatch(self: &Arc<Self>, st: &mut QueueState) {
        let slots = self.parallel.saturating_sub(st.started.len());
        while !st.stopped && st.dispatched < st.waiting.len().min(slots) {
            st.dispatched += 1;
            let _ = self.pool.send(Some(Arc::clone(self)));
        }
    }

    /// One pool dispatch: PUT the next waiting segment, then commit every
    /// segment whose turn has come.
    fn work(self: &Arc<Self>) {
        let seg = {
            let mut st = lock(&self.state);
            st.dispatched -= 1;
            // `dispatch` promises a slot to every dispatch in line.
            let free = st.started.len() < self.parallel;
            debug_assert!(free || st.waiting.is_empty() || st.stopped);
            if free && !st.stopped {
                st.waiting.pop_front().inspect(|seg| {
                    st.started.push_back((seg.base_offset, None));
                })
            } else {
                None
            }
        };
        if let Some(seg) = seg {
            self.put(seg);
        }
        self.commit_ready();
        self.settle();
    }

    /// PUTs one segment and marks it ready for its turn. If the PUT failed,
    /// or the uploads stopped meanwhile, it is dropped (its WAL file stays
    /// for the next start) and the uploads stop, in the same step, so no
    /// other worker starts or commits in between.
    fn put(&self, seg: SealedSegment) {
        let base = seg.base_offset;
        let result = self.guard(|| self.uploader.put(seg));
        let mut st = lock(&self.state);
        let i = st.started.iter().position(|(b, _)| *b == base);
        match (result, i) {
            (Ok(put), Some(i)) if !st.stopped => st.started[i].1 = Some(put),
            (result, i) => {
                if let Some(i) = i {
                    st.started.remove(i);
                }
                if st.stop() {
                    drop(st);
                    self.report(result.err().unwrap_or(Stopped::Asked));
                }
            }
        }
    }

    /// Commits, in order, the segments at the head whose PUTs are done.
    /// One worker at a time does this; the others leave theirs for it.
    fn commit_ready(self: &Arc<Self>) {
        {
            let mut st = lock(&self.state);
            if st.committing {
                return;
            }
            st.committing = true;
        }
        loop {
            let next = {
                let mut st = lock(&self.state);
                let ready = !st.stopped && st.started.front().is_some_and(|(_, p)| p.is_some());
                match ready.then(|| st.started.front_mut().and_then(|(_, p)| p.take())) {
                    Some(Some(put)) => put,
                    _ => {
                        st.committing = false;
                        if st.stopped {
                            st.started.retain(|(_, p)| p.is_none());
                        }
                        return;
                    }
                }
            };
            let result = self.guard(|| self.uploader.commit(next));
            let mut st = lock(&self.state);
            st.started.pop_front();
            if let Err(why) = result {
                st.committing = false;
                if st.stop() {
                    drop(st);
                    self.report(why);
                }
                return; // `work` settles
            }
            // A slot freed: start the next PUT now, not after the loop.
            self.dispatch(&mut st);
            let free = !st.full(self.parallel);
            drop(st);
            if free {
                self.wake_writer();
            }
        }
    }

    fn wake_writer(&self) {
        if let Some(tx) = lock(&self.writer).upgrade() {
            let _ = tx.send(WriterMsg::UploadSlotFree);
        }
    }

    /// After a dispatch: start what may start, and say so when idle or
    /// when a slot is free for the writer.
    fn settle(self: &Arc<Self>) {
        let (idle, free) = {
            let mut st = lock(&self.state);
            self.dispatch(&mut st);
            (!st.busy(), !st.full(self.parallel))
        };
        if idle {
            self.idle.notify_all();
        }
        if free {
            self.wake_writer();
        }
    }

    /// Runs one half of an upload; a panic (a bug) ends the partition's
    /// uploads as a failure instead of leaving its entry in flight forever
    /// and taking a pool thread with it.
    fn guard<T>(&self, f: impl FnOnce() -> Result<T, Stopped>) -> Result<T, Stopped> {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|_| {
            log::error!(
                "partition {}: an upload panicked (a bug); its uploads stop until a restart",
                self.uploader.shared.name()
            );
            Err(Stopped::Failed)
        })
    }

    /// Acts on why the uploads ended (once): PUTs still running end their
    /// retries, the waiting `acks=uploaded` requests are answered.
    fn report(&self, why: Stopped) {
        self.uploader.stop.raise();
        self.uploader.stopped(why);
    }

    /// Waits until nothing is queued or in flight, or `deadline`; true if
    /// idle.
    pub fn wait_idle(&self, deadline: Instant) -> bool {
        let mut st = lock(&self.state);
        while st.busy() {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            st = self
                .idle
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        true
    }

    /// No more uploads: those in flight end their retries, queued ones
    /// stay in the WAL for the next start.
    pub fn stop(&self) {
        let first = lock(&self.state).stop();
        if first {
            self.report(Stopped::Asked);
        }
        self.idle.notify_all();
    }
}

/// The threads that run every partition's uploads.
pub struct UploadPool {
    /// `None` tells one worker to stop.
    tx: Sender<Option<Arc<UploadQueue>>>,
    workers: Mutex<Vec<Worker>>,
}

impl UploadPool {
    pub fn start(threads: usize) -> std::io::Result<UploadPool> {
        let (tx, rx) = crossbeam_channel::unbounded::<Option<Arc<UploadQueue>>>();
        let workers = (0..threads.max(1))
            .map(|i| {
                let rx: Receiver<Option<Arc<UploadQueue>>> = rx.clone();
                thread::spawn(format!("upload-{i}"), move || {
                    super::uploader::lower_thread_priority();
                    while let Ok(Some(queue)) = rx.recv() {
                        queue.work();
                    }
                })
            })
            .collect::<std::io::Result<Vec<_>>>()?;
        Ok(UploadPool {
            tx,
            workers: Mutex::new(workers),
        })
    }

    pub(crate) fn queue(&self, uploader: Uploader) -> Arc<UploadQueue> {
        Arc::new(UploadQueue {
            // No more slots than pool threads (one slow partition can still
            // hold them all when the two are equal).
            parallel: (uploader.ctx.config.uploads_per_partition)
                .min(uploader.ctx.config.upload_threads)
                .max(1),
            uploader,
            state: Mutex::new(QueueState::default()),
            idle: Condvar::new(),
            pool: self.tx.clone(),
            writer: Mutex::new(Weak::new()),
        })
    }

    /// Stops the workers (after the partitions' queues were stopped: what
    /// is still in line returns at once), each waited for until `deadline`
    /// (one may be stuck in a call to a store that does not answer).
    pub fn shutdown(&self, deadline: Instant) {
        let workers = std::mem::take(&mut *lock(&self.workers));
        for _ in &workers {
            let _ = self.tx.send(None);
        }
        for w in workers {
            w.join_until(deadline);
        }
    }
}

impl Drop for UploadPool {
    fn drop(&mut self) {
        self.shutdown(Instant::now() + std::time::Duration::from_secs(1));
    }
}
