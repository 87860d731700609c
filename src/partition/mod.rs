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
mod upload_pool;
mod uploader;
mod writer;

pub(crate) use recovery::{open_blocked, open_partition};
pub use state::{PartitionShared, PartitionView, SegmentRef, Status, TailBatch, Waiter};
pub use upload_pool::UploadPool;

use crate::error::{Error, Result};
use crate::producer::ProducerBatch;
use crate::record::Record;
use crate::util::sync::lock;
use crate::util::thread::Worker;
pub(crate) use backlog::Backlog;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use upload_pool::UploadQueue;
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
    /// An idempotent batch written before: these are its original offsets
    /// and nothing was written again.
    pub duplicate: bool,
}

pub type AckReceiver = futures::channel::oneshot::Receiver<Result<AppendAck>>;
pub(crate) type AckSender = futures::channel::oneshot::Sender<Result<AppendAck>>;

pub(crate) struct AppendRequest {
    /// Offsets are assigned by the writer; `timestamp_ms == 0` means "now".
    pub records: Vec<Record>,
    pub acks: Acks,
    pub reply: AckSender,
    pub bytes: u64,
    /// The idempotent batch these records are, if they are one.
    pub producer: Option<ProducerBatch>,
    /// When the engine accepted it (for the stage histograms).
    pub received: Instant,
}

pub(crate) enum WriterMsg {
    Append(AppendRequest),
    /// An upload slot of the partition freed up: a seal held back while
    /// they were all taken can happen now.
    UploadSlotFree,
    Shutdown,
}

/// A running partition: the handle the engine routes requests through.
pub struct Partition {
    pub shared: Arc<PartitionShared>,
    /// Shared (weakly) with the upload queue, which tells the writer when
    /// an upload slot frees; dropping the partition still disconnects the
    /// writer.
    writer_tx: Arc<crossbeam_channel::Sender<WriterMsg>>,
    writer: Mutex<Option<Worker>>,
    /// Its sealed segments, committed in order by the shared pool (`None`
    /// for a partition that did not open).
    uploads: Option<Arc<UploadQueue>>,
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

    /// Asks the writer to stop once it has written everything queued (and
    /// handed its sealed segments to the uploads).
    pub(crate) fn ask_writer_to_stop(&self) {
        let _ = self.writer_tx.send(WriterMsg::Shutdown);
    }

    /// Waits for the writer asked to stop, until `deadline`; false if it
    /// had not stopped by then (it is left running: the process is
    /// stopping, and what it accepted is in its WAL).
    pub(crate) fn join_writer(&self, deadline: Instant) -> bool {
        match lock(&self.writer).take() {
            Some(w) => w.join_until(deadline),
            None => true,
        }
    }

    /// Like [`Partition::join_writer`], but a writer still running at
    /// `deadline` is kept, so that a later call asks again (a hand-over
    /// must not take a timed-out join for a stopped writer).
    pub(crate) fn writer_stopped_by(&self, deadline: Instant) -> bool {
        let mut writer = lock(&self.writer);
        match writer.as_ref() {
            Some(w) if !w.wait_until(deadline) => false,
            Some(_) => writer.take().is_none_or(|w| w.join_until(deadline)),
            None => true,
        }
    }

    /// Waits until `deadline` for the uploads queued so far to finish; true
    /// if they did.
    pub(crate) fn wait_uploads(&self, deadline: Instant) -> bool {
        self.uploads.as_ref().is_none_or(|u| u.wait_idle(deadline))
    }

    /// Ends the uploads: the one in flight stops retrying, queued ones stay
    /// in the WAL for the next start.
    pub(crate) fn abandon_uploads(&self) {
        if let Some(u) = &self.uploads {
            u.stop();
        }
    }

    /// Stops the partition: the writer, then its uploads, waiting for the
    /// one in flight until `deadline`.
    pub(crate) fn stop_now(&self, deadline: Instant) {
        self.ask_writer_to_stop();
        if !self.join_writer(deadline) {
            log::error!(
                "partition {}: its writer did not stop in time",
                self.shared.name()
            );
        }
        self.abandon_uploads();
        self.wait_uploads(deadline);
    }

    /// A partition that could not be opened: it refuses reads and writes
    /// with `why`, and the node serves the others.
    pub(crate) fn not_opened(
        backlog: Arc<std::sync::atomic::AtomicU64>,
        topic: &str,
        incarnation: i64,
        partition: u32,
        why: String,
    ) -> Partition {
        let view = PartitionView::empty(Status::NotOpened(why));
        let shared =
            PartitionShared::new(topic, incarnation, partition, view, Backlog::new(backlog));
        Partition::without_writer(shared)
    }

    /// A partition with no writer and no uploads: the view is all it has.
    pub(crate) fn without_writer(shared: PartitionShared) -> Partition {
        let (writer_tx, _) = crossbeam_channel::unbounded();
        Partition {
            shared: Arc::new(shared),
            writer_tx: Arc::new(writer_tx),
            writer: Mutex::new(None),
            uploads: None,
        }
    }
}
