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
}

impl UploadQueue {
    pub fn notify_when_idle(&self, writer: Weak<Sender<WriterMsg>>) {
        *lock(&self.writer) = writer;
    }

    /// Whether another segment would have to wait for an upload slot: the
    /// writer then holds back `acks=uploaded` seals, so that requests
    /// arriving meanwhile share one segment (group commit for uploads).
    pub fn full(&self) -> bool {
        let st = lock(&self.state);
        !st.waiting.is_empty() || st.started.len() >= self.parallel
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
            let free = st.started.len() < self.parallel;
            match st.waiting.pop_front().filter(|_| free && !st.stopped) {
                Some(seg) => {
                    st.started.push_back((seg.base_offset, None));
                    Some(seg)
                }
                None => None,
            }
        };
        if let Some(seg) = seg {
            let base = seg.base_offset;
            let result = self.uploader.put(seg);
            let mut st = lock(&self.state);
            let position = st.started.iter().position(|(b, _)| *b == base);
            match (result, position) {
                (Ok(put), Some(i)) if !st.stopped => st.started[i].1 = Some(put),
                (result, position) => {
                    // Stopped meanwhile, or this PUT failed: it is not
                    // committed (its WAL file stays for the next start).
                    if let Some(i) = position {
                        st.started.remove(i);
                    }
                    drop(st);
                    if let Err(why) = result {
                        return self.stop_after(why);
                    }
                    return self.settle();
                }
            }
        }
        if let Err(why) = self.commit_ready() {
            return self.stop_after(why);
        }
        self.settle();
    }

    /// Commits, in order, the segments at the head whose PUTs are done.
    /// One worker at a time does this; the others leave theirs for it.
    fn commit_ready(&self) -> Result<(), Stopped> {
        {
            let mut st = lock(&self.state);
            if st.committing {
                return Ok(());
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
                        if st.stopped {
                            // Told to stop: what was PUT is not committed
                            // now; the WAL keeps it for the next start.
                            st.started.retain(|(_, p)| p.is_none());
                        }
                        st.committing = false;
                        return Ok(());
                    }
                }
            };
            let result = self.uploader.commit(next);
            let mut st = lock(&self.state);
            st.started.pop_front();
            if let Err(why) = result {
                st.committing = false;
                return Err(why);
            }
        }
    }

    /// After a dispatch: start what may start, and say so when idle or
    /// when a slot is free for the writer.
    fn settle(self: &Arc<Self>) {
        let (idle, free) = {
            let mut st = lock(&self.state);
            self.dispatch(&mut st);
            (
                !st.busy(),
                st.waiting.is_empty() && st.started.len() < self.parallel,
            )
        };
        if idle {
            self.idle.notify_all();
        }
        if free {
            if let Some(tx) = lock(&self.writer).upgrade() {
                let _ = tx.send(WriterMsg::UploadsIdle);
            }
        }
    }

    /// An upload failed or was told to stop: nothing more starts or
    /// commits (the WAL keeps every segment not committed), the waiting
    /// `acks=uploaded` requests are answered, waiters are woken.
    fn stop_after(self: &Arc<Self>, why: Stopped) {
        let first = {
            let mut st = lock(&self.state);
            let first = !st.reported;
            st.reported = true;
            st.stopped = true;
            st.waiting.clear();
            first
        };
        // PUTs still running beside it end their retries.
        self.uploader.stop.raise();
        if first {
            self.uploader.stopped(why);
        }
        // Segments whose PUT ran beside the failed one are dropped (their
        // WAL files stay); a PUT still running finds the queue stopped and
        // drops its own.
        lock(&self.state).started.retain(|(_, p)| p.is_none());
        self.settle();
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
        let mut st = lock(&self.state);
        st.stopped = true;
        if !st.committing {
            st.started.retain(|(_, p)| p.is_none());
        }
        drop(st);
        self.uploader.stop.raise();
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
            parallel: uploader.ctx.config.uploads_per_partition.max(1),
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
