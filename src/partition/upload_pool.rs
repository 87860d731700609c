//! Uploads share a fixed pool of threads instead of one thread per
//! partition (10,000 partitions would otherwise be 10,000 idle threads).
//! Each partition has an [`UploadQueue`]: its sealed segments, uploaded one
//! at a time and in order (a segment commits only after the one before it).
//! A partition with work is handed to the pool; a worker uploads its oldest
//! segment, then puts the partition back at the end of the line if more
//! remain, so one busy partition cannot starve the others.

use super::uploader::Uploader;
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
    state: Mutex<QueueState>,
    /// Signalled when the queue goes idle (nothing queued, nothing in
    /// flight) or stops.
    idle: Condvar,
    pool: Sender<Option<Arc<UploadQueue>>>,
    /// The partition's writer, told when the queue goes idle (it holds
    /// back `acks=uploaded` seals while an upload is in flight).
    writer: Mutex<Weak<Sender<WriterMsg>>>,
}

#[derive(Default)]
struct QueueState {
    segments: VecDeque<SealedSegment>,
    /// In the pool's line or being uploaded.
    scheduled: bool,
    /// No more uploads (told to stop, or failed): the WAL keeps the rest.
    stopped: bool,
}

impl UploadQueue {
    pub fn notify_when_idle(&self, writer: Weak<Sender<WriterMsg>>) {
        *lock(&self.writer) = writer;
    }

    /// Whether a segment is queued or being uploaded.
    pub fn busy(&self) -> bool {
        let st = lock(&self.state);
        st.scheduled || (!st.stopped && !st.segments.is_empty())
    }

    /// Wakes waiters and the writer: nothing is queued or in flight.
    fn went_idle(&self) {
        self.idle.notify_all();
        if let Some(tx) = lock(&self.writer).upgrade() {
            let _ = tx.send(WriterMsg::UploadsIdle);
        }
    }

    /// Queues a sealed segment; it is uploaded after those before it.
    pub fn push(self: &Arc<Self>, seg: SealedSegment) {
        let mut st = lock(&self.state);
        if st.stopped {
            return; // the WAL keeps it for the next start
        }
        st.segments.push_back(seg);
        if !st.scheduled {
            st.scheduled = true;
            let _ = self.pool.send(Some(Arc::clone(self)));
        }
    }

    /// Uploads the oldest segment; back in line if more remain.
    fn work(self: &Arc<Self>) {
        let seg = {
            let mut st = lock(&self.state);
            match (st.stopped, st.segments.pop_front()) {
                (false, Some(seg)) => seg,
                _ => {
                    st.scheduled = false;
                    drop(st);
                    self.went_idle();
                    return;
                }
            }
        };
        let result = self.uploader.upload(seg);
        let mut st = lock(&self.state);
        if let Err(why) = result {
            st.stopped = true;
            st.segments.clear();
            drop(st);
            self.uploader.stopped(why);
            lock(&self.state).scheduled = false;
            self.went_idle();
            return;
        }
        if st.segments.is_empty() || st.stopped {
            st.scheduled = false;
            drop(st);
            self.went_idle();
        } else {
            let _ = self.pool.send(Some(Arc::clone(self)));
        }
    }

    /// Waits until nothing is queued or in flight, or `deadline`; true if
    /// idle.
    pub fn wait_idle(&self, deadline: Instant) -> bool {
        let mut st = lock(&self.state);
        while st.scheduled || (!st.stopped && !st.segments.is_empty()) {
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

    /// No more uploads: the one in flight ends its retries, queued ones
    /// stay in the WAL for the next start.
    pub fn stop(&self) {
        lock(&self.state).stopped = true;
        self.uploader.stop.raise();
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
