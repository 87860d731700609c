//! The state of one partition that its writer, its uploader, the reader
//! pool and the engine share: what readers see (segments, the tail,
//! watermarks), parked long polls, pending `acks=uploaded` replies, and the
//! backlog.

use super::backlog::Backlog;
use super::{AckSender, AppendAck};
use crate::error::Error;
use crate::record::Record;
use crate::util::sync::{self, lock};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Records appended together: contiguous offsets, never empty.
#[derive(Debug)]
pub struct TailBatch {
    pub records: Vec<Record>,
    pub bytes: u64,
}

impl TailBatch {
    pub fn last_offset(&self) -> i64 {
        self.records[self.records.len() - 1].offset
    }
}

/// A committed segment, as readers need it.
#[derive(Clone, Debug)]
pub struct SegmentRef {
    pub base_offset: i64,
    pub last_offset: i64,
    pub key: Arc<str>,
    pub size_bytes: u64,
    pub max_timestamp_ms: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    Open,
    /// The topic was deleted; every call answers NOT_FOUND.
    Deleted,
    /// A local write or fsync failed: the on-disk state is unknown, so the
    /// partition refuses writes until a restart replays its WAL.
    Failed(String),
    /// Its WAL is damaged in the middle (not a torn tail): reads up to the
    /// damage go on, writes answer DATA_LOSS until an operator accepts the
    /// loss (`--repair-wal`); nothing is cut or renumbered meanwhile.
    Damaged(String),
    /// It could not be opened at start (the node serves the others): reads
    /// and writes answer UNAVAILABLE with the reason.
    NotOpened(String),
    /// Cluster mode: another node leads the partition (or none does yet):
    /// reads and writes answer UNAVAILABLE naming the leader, if known.
    NotLeader(String),
}

/// What readers see of a partition. Offsets `low..committed_next` are in
/// `segments`, `committed_next..high` in `tail` (records in the WAL, some of
/// them in sealed segments still being uploaded).
#[derive(Debug)]
pub struct PartitionView {
    pub low_watermark: i64,
    pub committed_next: i64,
    pub high_watermark: i64,
    pub segments: VecDeque<SegmentRef>,
    pub tail: VecDeque<Arc<TailBatch>>,
    pub status: Status,
}

impl PartitionView {
    /// A partition with no records yet, in `status`.
    pub fn empty(status: Status) -> Self {
        PartitionView {
            low_watermark: 0,
            committed_next: 0,
            high_watermark: 0,
            segments: Default::default(),
            tail: Default::default(),
            status,
        }
    }

    /// The offset readers may read up to: the high watermark, or on a
    /// fenced node only what it committed to the bucket (its WAL's records
    /// after that are not part of the new owner's history).
    pub fn readable_end(&self, fenced: bool) -> i64 {
        if fenced {
            self.committed_next
        } else {
            self.high_watermark
        }
    }

    /// Index of the tail batch holding `offset` (which must be in
    /// `committed_next..high`).
    pub fn tail_position(&self, offset: i64) -> usize {
        self.tail.partition_point(|b| b.last_offset() < offset)
    }
}

/// Something parked until the partition's next append (a long poll).
pub trait Waiter: Send + Sync {
    /// Called once after records are appended (or the topic is deleted).
    fn wake(&self);
    /// True once the waiter has been answered some other way (timed out).
    fn is_done(&self) -> bool;
}

/// `acks=uploaded` replies waiting for their records to be committed.
#[derive(Default)]
struct UploadedAcks {
    pending: Vec<PendingUploadedAck>,
    /// Set when the partition's uploads ended (stopped, failed, fenced):
    /// why, for a reply that would otherwise be parked forever.
    ended: Option<String>,
}

pub(crate) struct PendingUploadedAck {
    pub last_offset: i64,
    pub ack: AppendAck,
    pub reply: AckSender,
}

/// The state of a partition shared between its writer, its uploader, the
/// reader pool and the engine.
pub struct PartitionShared {
    pub topic: Arc<str>,
    /// The topic's incarnation: part of its object keys.
    pub incarnation: i64,
    pub partition: u32,
    view: RwLock<PartitionView>,
    waiters: Mutex<Vec<Arc<dyn Waiter>>>,
    uploaded_acks: Mutex<UploadedAcks>,
    /// Bytes of records in the tail (accepted, not yet committed).
    pub(crate) backlog: Backlog,
    /// Appends so far; a long poll parks against the count it saw, so an
    /// append between its look and its parking is not missed.
    appends: AtomicU64,
    /// Cluster mode: the epoch in which this node leads the partition (its
    /// segment keys carry it, its commits are conditioned on it). 0: one
    /// node owns the prefix, and the owner epoch is used.
    pub cluster_epoch: u64,
}

impl PartitionShared {
    pub(crate) fn new(
        topic: &str,
        incarnation: i64,
        partition: u32,
        view: PartitionView,
        backlog: Backlog,
    ) -> Self {
        PartitionShared {
            topic: Arc::from(topic),
            incarnation,
            partition,
            view: RwLock::new(view),
            waiters: Mutex::new(Vec::new()),
            uploaded_acks: Mutex::default(),
            backlog,
            appends: AtomicU64::new(0),
            cluster_epoch: 0,
        }
    }

    /// The partition as led in cluster epoch `epoch`.
    pub(crate) fn in_epoch(mut self, epoch: u64) -> Self {
        self.cluster_epoch = epoch;
        self
    }

    pub fn view(&self) -> RwLockReadGuard<'_, PartitionView> {
        sync::read(&self.view)
    }

    pub(crate) fn view_mut(&self) -> RwLockWriteGuard<'_, PartitionView> {
        sync::write(&self.view)
    }

    pub fn name(&self) -> String {
        format!("{}/{}", self.topic, self.partition)
    }

    /// Why the partition refuses writes now, if it does: deleted, failed,
    /// damaged, or (`fenced`) the node lost its prefix to `fenced`'s owner.
    pub(crate) fn refusal(&self, fenced: Option<String>) -> Option<Error> {
        match &self.view().status {
            Status::Open => fenced.map(|owner| super::fenced_error(&owner)),
            Status::Deleted => Some(Error::NotFound(format!(
                "topic {:?} was deleted",
                self.topic
            ))),
            Status::Failed(why) => Some(Error::Unavailable(format!(
                "partition {} is unavailable after a local I/O failure ({why}); restart the server",
                self.name()
            ))),
            Status::Damaged(why) => Some(Error::DataLoss(why.clone())),
            Status::NotOpened(why) | Status::NotLeader(why) => {
                Some(Error::Unavailable(why.clone()))
            }
        }
    }

    /// Why reads are refused, if they are: the topic is gone, or the
    /// partition never opened.
    pub(crate) fn read_refusal(&self) -> Option<Error> {
        match &self.view().status {
            Status::Deleted => Some(Error::NotFound(format!(
                "topic {:?} was deleted",
                self.topic
            ))),
            Status::NotOpened(why) | Status::NotLeader(why) => {
                Some(Error::Unavailable(why.clone()))
            }
            _ => None,
        }
    }

    /// The number of appends so far (read it under the view lock, together
    /// with the watermark it explains).
    pub fn appends(&self) -> u64 {
        self.appends.load(Ordering::SeqCst)
    }

    /// Parks `waiter` until the first append after `seen_appends`; if one
    /// already happened, wakes it at once.
    pub fn park(&self, waiter: Arc<dyn Waiter>, seen_appends: u64) {
        {
            let mut w = lock(&self.waiters);
            w.retain(|x| !x.is_done());
            w.push(Arc::clone(&waiter));
        }
        if self.appends() != seen_appends {
            waiter.wake();
        }
    }

    /// Counts an append (call under the view write lock, with the new high
    /// watermark) ...
    pub(crate) fn note_append(&self) {
        self.appends.fetch_add(1, Ordering::SeqCst);
    }

    /// ... then wakes every parked waiter (also used on deletion).
    pub(crate) fn wake_all(&self) {
        let waiters = std::mem::take(&mut *lock(&self.waiters));
        for w in waiters {
            w.wake();
        }
    }

    /// Parks an `acks=uploaded` reply until its records are committed
    /// (true), or answers it now if they are (a duplicate batch written
    /// long ago) or never will be (the uploads ended). The committed offset
    /// is read under the acks lock: the uploader raises it before it takes
    /// that lock to resolve, so a reply parked here is never missed; the
    /// end of the uploads is recorded under that lock too.
    pub(crate) fn add_uploaded_ack(&self, pending: PendingUploadedAck) -> bool {
        let mut acks = lock(&self.uploaded_acks);
        let answer = if pending.last_offset < self.view().committed_next {
            Ok(pending.ack)
        } else if let Some(why) = &acks.ended {
            Err(Error::Unavailable(why.clone()))
        } else if let Some(e) = self.refusal(None) {
            Err(e)
        } else {
            acks.pending.push(pending);
            return true;
        };
        drop(acks);
        let _ = pending.reply.send(answer);
        false
    }

    /// The partition's uploads ended: every waiting `acks=uploaded` reply,
    /// and every one parked later, is answered UNAVAILABLE with `why`.
    pub(crate) fn end_uploads(&self, why: String) {
        let failed = {
            let mut acks = lock(&self.uploaded_acks);
            acks.ended.get_or_insert(why.clone());
            std::mem::take(&mut acks.pending)
        };
        for a in failed {
            let _ = a.reply.send(Err(Error::Unavailable(why.clone())));
        }
    }

    /// Answers the `acks=uploaded` requests whose records are now committed.
    pub(crate) fn resolve_uploaded_acks(&self, committed_through: i64) {
        let ready: Vec<PendingUploadedAck> = {
            let mut acks = lock(&self.uploaded_acks);
            let (ready, waiting) = std::mem::take(&mut acks.pending)
                .into_iter()
                .partition(|a| a.last_offset <= committed_through);
            acks.pending = waiting;
            ready
        };
        for a in ready {
            let _ = a.reply.send(Ok(a.ack));
        }
    }

    /// Fails the pending `acks=uploaded` requests whose records reach
    /// `from_offset` or beyond (all of them for 0), with `err()`.
    pub(crate) fn fail_uploaded_acks(&self, from_offset: i64, err: impl Fn() -> Error) {
        let failed: Vec<PendingUploadedAck> = {
            let mut acks = lock(&self.uploaded_acks);
            let (failed, waiting) = std::mem::take(&mut acks.pending)
                .into_iter()
                .partition(|a| a.last_offset >= from_offset);
            acks.pending = waiting;
            failed
        };
        for a in failed {
            let _ = a.reply.send(Err(err()));
        }
    }
}
