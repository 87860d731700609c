//! One partition: its writer thread (offsets, WAL group commit, sealing),
//! its uploader thread (segment upload, metadata commit, WAL trim), recovery
//! on open, and the state readers see.
//!
//! ```text
//!  produce ──► writer thread ──► WAL (group-commit fsync) ──► ack
//!                  │  records become visible in the tail, waiters woken
//!                  │  seal by size / age / acks=uploaded linger
//!                  ▼
//!            uploader thread ──► PUT segment ──► metadata commit ──► trim WAL
//!                                 (tail batches move to the segment list)
//! ```

mod backlog;
mod recovery;
mod state;
mod uploader;
mod writer;

pub(crate) use recovery::open_partition;
pub use state::{PartitionShared, PartitionView, SegmentRef, Status, TailBatch, Waiter};

use crate::error::{Error, Result};
use crate::record::Record;
use crate::util::sync::{lock, StopSignal};
use crate::util::thread::Worker;
pub(crate) use backlog::Backlog;
use std::sync::{Arc, Mutex};
use std::time::Instant;
pub(crate) use uploader::fenced_error;

/// When a produce is acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Acks {
    /// After the WAL fsync (default).
    Wal,
    /// After the segment holding the records is uploaded and committed.
    Uploaded,
    /// Before the fsync; for benchmarks only.
    None,
}

/// Where a produce landed: offsets `base_offset .. base_offset + count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppendAck {
    pub base_offset: i64,
    pub count: i64,
}

pub type AckReceiver = futures::channel::oneshot::Receiver<Result<AppendAck>>;
pub(crate) type AckSender = futures::channel::oneshot::Sender<Result<AppendAck>>;

pub(crate) struct AppendRequest {
    /// Offsets are assigned by the writer; `timestamp_ms == 0` means "now".
    pub records: Vec<Record>,
    pub acks: Acks,
    pub reply: AckSender,
    pub bytes: u64,
}

pub(crate) enum WriterMsg {
    Append(AppendRequest),
    Shutdown,
}

/// A running partition: the handle the engine routes requests through.
pub struct Partition {
    pub shared: Arc<PartitionShared>,
    writer_tx: crossbeam_channel::Sender<WriterMsg>,
    writer: Mutex<Option<Worker>>,
    uploader: Mutex<Option<Worker>>,
    /// Ends the uploader's retries (topic deleted, or the node stopping).
    upload_stop: StopSignal,
}

impl Partition {
    /// Queues an append whose bytes the caller reserved on the node's
    /// backlog; the partition takes its share. The queue is bounded by those
    /// bytes, not by a count. The reply arrives on `reply` after the WAL
    /// fsync (or the upload, for `Acks::Uploaded`).
    pub(crate) fn submit(&self, req: AppendRequest) -> Result<()> {
        self.shared.backlog.take_share(req.bytes);
        let bytes = req.bytes;
        self.writer_tx.send(WriterMsg::Append(req)).map_err(|_| {
            self.shared.backlog.release(bytes);
            Error::shutting_down()
        })
    }

    /// Stops the writer after it has written everything queued (and sent
    /// the uploader its last segment and a shutdown).
    pub(crate) fn stop_writer(&self) {
        let _ = self.writer_tx.send(WriterMsg::Shutdown);
        if let Some(w) = lock(&self.writer).take() {
            w.join();
        }
    }

    /// Waits until `deadline` for the uploader to finish the uploads queued
    /// before the writer stopped; true if it did.
    pub(crate) fn wait_uploads(&self, deadline: Instant) -> bool {
        lock(&self.uploader)
            .as_ref()
            .is_none_or(|u| u.wait_until(deadline))
    }

    /// Ends the uploader's retries (the store is down and we are exiting,
    /// or the topic is gone).
    pub(crate) fn abandon_uploads(&self) {
        self.upload_stop.raise();
    }

    /// Joins the uploader, until `deadline` only: it may be stuck in a call
    /// to a store that does not answer, and its records are safe in the WAL.
    pub(crate) fn join_uploader(&self, deadline: Instant) {
        if let Some(u) = lock(&self.uploader).take() {
            u.join_until(deadline);
        }
    }

    /// Stops the partition: the writer, then the uploader, which gives up
    /// its retries at once.
    pub(crate) fn stop_now(&self, deadline: Instant) {
        self.stop_writer();
        self.abandon_uploads();
        self.join_uploader(deadline);
    }
}
