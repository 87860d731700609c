//! The writer thread of one partition: assigns offsets, group-commits the
//! WAL, makes records visible, acknowledges, and seals segments.
//!
//! One group commit, in steps: [`Writer::refuse_if_closed`] →
//! [`Writer::stage`] (backlog, offsets, WAL bytes) → [`Writer::write_wal`]
//! (append, one fsync) → [`Writer::publish`] (visible to readers) →
//! [`Writer::acknowledge`].

use super::state::PendingUploadedAck;
use super::upload_pool::UploadQueue;
use super::{
    AckSender, Acks, AppendAck, AppendRequest, PartitionShared, Status, TailBatch, WriterMsg,
};
use crate::context::Context;
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::producer::{ProducerEntry, ProducerTable, SequenceError, Verdict};
use crate::util::clock::now_ms;
use crate::wal::{encode_entry, is_disk_full, is_out_of_descriptors, WalDir, WalWriter};
use crossbeam_channel::{Receiver, RecvTimeoutError};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

/// At most this many bytes of requests go into one group commit, so one
/// fsync's batch stays bounded in memory and latency.
const MAX_GROUP_BYTES: u64 = 32 << 20;
/// The WAL encoding buffer keeps at most this much capacity between group
/// commits (one large group must not pin its size in memory, per partition,
/// forever).
const RETAINED_BUFFER_BYTES: usize = 1 << 20;

/// A sealed segment on its way to the object store.
pub(crate) struct SealedSegment {
    pub base_offset: i64,
    pub last_offset: i64,
    pub batches: Vec<Arc<TailBatch>>,
    pub bytes: u64,
    pub wal_path: PathBuf,
    /// The partition's producer table as of `last_offset`: committed with
    /// the segment.
    pub producers: ProducerTable,
}

/// The segment being filled: its records are in the WAL file `wal`.
pub(crate) struct ActiveSegment {
    /// First offset of the active (unsealed) segment.
    pub base: i64,
    pub batches: Vec<Arc<TailBatch>>,
    pub bytes: u64,
    /// When its first record arrived (for the age bound).
    pub since: Option<Instant>,
}

pub(crate) struct Writer {
    pub shared: Arc<PartitionShared>,
    pub ctx: Arc<Context>,
    pub wal_dir: WalDir,
    pub wal: WalWriter,
    pub active: ActiveSegment,
    /// When the oldest `acks=uploaded` request still waiting for a seal came.
    pub uploaded_waiting_since: Option<Instant>,
    pub next_offset: i64,
    pub uploads: Arc<UploadQueue>,
    /// The group's WAL entries, reused between groups.
    pub buf: Vec<u8>,
    /// Idempotent producers' recent batches in this partition; only this
    /// thread reads or changes it (it assigns the offsets it records).
    pub producers: ProducerTable,
    /// When a full disk was last logged.
    pub disk_full_logged: Option<Instant>,
    /// A seal that found no room for the next WAL file is tried again then.
    pub seal_retry_at: Option<Instant>,
}

/// A request whose records have offsets and are in `buf`.
struct Accepted {
    reply: AckSender,
    acks: Acks,
    ack: AppendAck,
    received: Instant,
}

/// What became of a seal.
enum Sealing {
    Done,
    /// The next WAL file could not be created (why); tried again later.
    Postponed(&'static str),
}

/// What became of a group's WAL write.
enum Written {
    /// Durable: these requests are still to answer.
    Durable(Vec<Accepted>),
    /// The disk is full; nothing was written and nobody answered yet.
    DiskFull(Vec<Accepted>, String),
    /// Another failure: everyone answered, the partition stopped.
    Failed,
}

/// A full disk is logged at most this often per partition (every refused
/// request counts in `streamhouse_wal_disk_full_total`).
const DISK_FULL_LOG_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// How long a seal that found no room for the next WAL file waits.
const SEAL_RETRY: std::time::Duration = std::time::Duration::from_secs(1);

/// What [`Writer::stage`] made of a group.
#[derive(Default)]
struct Staged {
    accepted: Vec<Accepted>,
    batches: Vec<Arc<TailBatch>>,
    /// The writer's state before staging, to take the group back when the
    /// disk is full: the next offset, and each producer entry it changed.
    next_offset_before: i64,
    producers_before: Vec<(u64, Option<ProducerEntry>)>,
}

impl Writer {
    pub fn run(mut self, rx: Receiver<WriterMsg>) {
        while let Some((group, stopping)) = self.next_group(&rx) {
            if !group.is_empty() {
                self.commit_group(group);
            }
            self.maybe_seal(stopping);
            if stopping {
                break;
            }
        }
        // Requests still queued behind the shutdown are refused, not dropped.
        while let Ok(msg) = rx.try_recv() {
            if let WriterMsg::Append(r) = msg {
                self.shared.backlog.release(r.bytes);
                let _ = r.reply.send(Err(Error::shutting_down()));
            }
        }
    }

    /// Waits for requests (or a seal deadline) and takes everything queued
    /// up to [`MAX_GROUP_BYTES`]: they share one fsync. `None` when the
    /// channel is gone; the flag says a shutdown came.
    fn next_group(&mut self, rx: &Receiver<WriterMsg>) -> Option<(Vec<AppendRequest>, bool)> {
        let first = loop {
            let msg = match self.deadline() {
                Some(d) => rx.recv_deadline(d),
                None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
            };
            match msg {
                Ok(m) => break m,
                Err(RecvTimeoutError::Timeout) => self.maybe_seal(false),
                Err(RecvTimeoutError::Disconnected) => return None,
            }
        };
        let mut group = Vec::new();
        let mut group_bytes = 0;
        let mut stopping = false;
        let mut next = Some(first);
        while let Some(msg) = next.take() {
            match msg {
                WriterMsg::Append(r) => {
                    group_bytes += r.bytes;
                    group.push(r);
                }
                // Returning is enough: `run` looks for a seal to make.
                WriterMsg::UploadSlotFree => {}
                WriterMsg::Shutdown => stopping = true,
            }
            if !stopping && group_bytes < MAX_GROUP_BYTES {
                next = rx.try_recv().ok();
            }
        }
        Some((group, stopping))
    }

    /// When the writer must wake up to seal even without requests. While
    /// every upload slot is taken the linger does not count: a slot freeing
    /// up wakes the writer instead.
    fn deadline(&self) -> Option<Instant> {
        let age = self
            .active
            .since
            .map(|t| t + self.ctx.config.segment_max_age);
        let linger = self
            .uploaded_waiting_since
            .filter(|_| !self.uploads.full())
            .map(|t| t + self.ctx.config.uploaded_ack_linger);
        let due = match (age, linger) {
            (Some(a), Some(l)) => Some(a.min(l)),
            (a, l) => a.or(l),
        };
        // A seal postponed by a full disk is not due before its retry.
        match (due, self.seal_retry_at) {
            (Some(d), Some(r)) => Some(d.max(r)),
            (d, _) => d,
        }
    }

    /// Stops the partition after a local I/O failure: no more writes, no
    /// more sealing (which would otherwise retry at every wake-up), and the
    /// `acks=uploaded` requests waiting on the active segment are answered:
    /// it will not be uploaded before a restart replays the WAL.
    fn fail(&mut self, why: String) {
        log::error!(
            "partition {} stopped accepting writes: {why}",
            self.shared.name()
        );
        self.shared.view_mut().status = Status::Failed(why.clone());
        self.active.since = None;
        self.uploaded_waiting_since = None;
        let name = self.shared.name();
        self.shared.fail_uploaded_acks(self.active.base, || {
            Error::Unavailable(format!(
                "partition {name} stopped after a local I/O failure ({why}); the records are in \
                 its write-ahead log and will be uploaded after a restart"
            ))
        });
    }

    fn commit_group(&mut self, group: Vec<AppendRequest>) {
        let taken = Instant::now();
        for r in &group {
            self.ctx
                .stages
                .produce_queue
                .observe(taken.saturating_duration_since(r.received));
        }
        let Some(group) = self.refuse_if_closed(group) else {
            return;
        };
        let staged = self.stage(group);
        if staged.accepted.is_empty() {
            return;
        }
        let Staged {
            accepted,
            batches,
            next_offset_before,
            producers_before,
        } = staged;
        match self.write_wal(accepted, &batches) {
            Written::Durable(waiting) => {
                self.publish(batches);
                self.acknowledge(waiting);
            }
            Written::DiskFull(refused, e) => {
                self.take_back(refused, next_offset_before, producers_before, &e);
            }
            Written::Failed => {}
        }
    }

    /// Answers the whole group with an error if the partition is deleted
    /// or failed, or the node was fenced by a new owner of the prefix;
    /// otherwise hands it back.
    fn refuse_if_closed(&self, group: Vec<AppendRequest>) -> Option<Vec<AppendRequest>> {
        let Some(err) = self.shared.refusal(self.ctx.owner.fenced()) else {
            return Some(group);
        };
        for r in group {
            self.shared.backlog.release(r.bytes);
            let _ = r.reply.send(Err(err.clone_simple()));
        }
        None
    }

    /// Assigns offsets and server timestamps (the bytes were reserved
    /// before the request was queued), and encodes the WAL entries into
    /// `buf`. An idempotent batch is checked against the producer table
    /// first: a duplicate is answered with its original offsets (once this
    /// group is durable), a refused one at once.
    fn stage(&mut self, group: Vec<AppendRequest>) -> Staged {
        let now = now_ms();
        let mut staged = Staged {
            next_offset_before: self.next_offset,
            ..Staged::default()
        };
        self.buf.clear();
        for req in group {
            let count = req.records.len() as u32;
            let verdict = match &req.producer {
                Some(p) => self.producers.check(p, count),
                None => Ok(Verdict::Append),
            };
            match verdict {
                Ok(Verdict::Append) => self.stage_append(req, now, &mut staged),
                Ok(Verdict::Duplicate(w)) => {
                    self.shared.backlog.release(req.bytes);
                    Metrics::add(&self.ctx.metrics.duplicate_batches, 1);
                    staged.accepted.push(Accepted {
                        reply: req.reply,
                        acks: req.acks,
                        ack: AppendAck {
                            base_offset: w.base_offset,
                            count: i64::from(w.count),
                            duplicate: true,
                        },
                        received: req.received,
                    });
                }
                Err(e) => {
                    self.shared.backlog.release(req.bytes);
                    let id = req.producer.map_or(0, |p| p.producer_id);
                    let _ = req.reply.send(Err(self.sequence_error(id, e)));
                }
            }
        }
        staged
    }

    fn stage_append(&mut self, mut req: AppendRequest, now: i64, staged: &mut Staged) {
        let base = self.next_offset;
        for (i, r) in req.records.iter_mut().enumerate() {
            r.offset = base + i as i64;
            if r.timestamp_ms == 0 {
                r.timestamp_ms = now;
            }
        }
        let count = req.records.len() as i64;
        self.next_offset += count;
        if let Some(p) = &req.producer {
            let before = self.producers.entry(p.producer_id).cloned();
            staged.producers_before.push((p.producer_id, before));
            self.producers.record(p, count as u32, base, now);
        }
        encode_entry(
            &mut self.buf,
            base,
            &req.records,
            req.producer.as_ref().map(|p| (p, now)),
        );
        staged.batches.push(Arc::new(TailBatch {
            records: std::mem::take(&mut req.records),
            bytes: req.bytes,
        }));
        staged.accepted.push(Accepted {
            reply: req.reply,
            acks: req.acks,
            ack: AppendAck {
                base_offset: base,
                count,
                duplicate: false,
            },
            received: req.received,
        });
    }

    /// The status a refused idempotent batch answers: ABORTED for a fenced
    /// epoch, ALREADY_EXISTS for a batch older than the ones kept,
    /// FAILED_PRECONDITION for a gap or a changed batch.
    fn sequence_error(&self, producer_id: u64, e: SequenceError) -> Error {
        let msg = format!(
            "partition {}, producer {producer_id}: {e}",
            self.shared.name()
        );
        match e {
            SequenceError::Fenced { .. } => Error::Aborted(msg),
            SequenceError::TooOld { .. } => Error::AlreadyExists(msg),
            SequenceError::Gap { .. } | SequenceError::Mismatch { .. } => {
                Error::FailedPrecondition(msg)
            }
        }
    }

    /// Appends `buf` to the WAL and fsyncs it (once, for the whole group).
    /// `acks=none` requests are answered after the write, before the fsync,
    /// but their records, like every other, become visible only after it:
    /// a reader never sees a record that a crash could take back.
    /// Returns the requests still to answer; after a full disk, the whole
    /// group (nothing of it is in the WAL); after any other failure,
    /// nothing (everyone answered, the partition stopped).
    fn write_wal(&mut self, accepted: Vec<Accepted>, batches: &[Arc<TailBatch>]) -> Written {
        let started = Instant::now();
        let written = self.wal.append(&self.buf);
        let written_len = self.buf.len();
        self.buf.clear();
        self.buf.shrink_to(RETAINED_BUFFER_BYTES);
        let stages = &self.ctx.stages;
        stages.wal_write.observe(started.elapsed());
        if let Err(e) = &written {
            if is_disk_full(&e.source) {
                self.release(batches);
                return Written::DiskFull(accepted, e.to_string());
            }
        }
        let mut waiting = Vec::with_capacity(accepted.len());
        for a in accepted {
            if a.acks == Acks::None && written.is_ok() {
                stages.produce_ack.observe(a.received.elapsed());
                let _ = a.reply.send(Ok(a.ack));
            } else {
                waiting.push(a);
            }
        }
        let durable = written.and_then(|()| {
            Metrics::add(&self.ctx.metrics.wal_fsyncs, 1);
            let started = Instant::now();
            let synced = self.wal.sync();
            stages.wal_fsync.observe(started.elapsed());
            synced
        });
        let Err(e) = durable else {
            Metrics::add(&self.ctx.metrics.wal_bytes, written_len as u64);
            return Written::Durable(waiting);
        };
        // Nothing of this group will be uploaded: give its bytes back. The
        // records may or may not be on disk: the offsets stay used (never
        // reused while this process runs), the callers hear of the failure,
        // and the partition stops until a restart replays what the WAL holds.
        self.release(batches);
        self.fail(e.to_string());
        for a in waiting {
            let _ = a.reply.send(Err(Error::Unavailable(format!(
                "write-ahead log failure on {}: {e}",
                self.shared.name()
            ))));
        }
        Written::Failed
    }

    fn release(&self, batches: &[Arc<TailBatch>]) {
        self.shared
            .backlog
            .release(batches.iter().map(|b| b.bytes).sum());
    }

    /// The disk is full and the WAL was cut back: nothing of the group is
    /// in it. Offsets and producer state go back to before the group, so
    /// the partition stays open and a request sent again once there is
    /// space is written as if for the first time (an idempotent batch gets
    /// the offsets it would have had).
    fn take_back(
        &mut self,
        refused: Vec<Accepted>,
        next_offset_before: i64,
        producers_before: Vec<(u64, Option<ProducerEntry>)>,
        e: &str,
    ) {
        self.next_offset = next_offset_before;
        for (id, entry) in producers_before.into_iter().rev() {
            self.producers.restore(id, entry);
        }
        Metrics::add(&self.ctx.metrics.wal_disk_full, refused.len() as u64);
        if self
            .disk_full_logged
            .is_none_or(|t| t.elapsed() >= DISK_FULL_LOG_EVERY)
        {
            log::warn!(
                "partition {}: the disk is full; produce requests are refused until there is space ({e})",
                self.shared.name()
            );
            self.disk_full_logged = Some(Instant::now());
        }
        for a in refused {
            let _ = a.reply.send(Err(Error::Backpressure(format!(
                "no space left on the device of partition {}'s write-ahead log; nothing of this \
                 request was written: send it again once there is space ({e})",
                self.shared.name()
            ))));
        }
    }

    /// Makes durable records visible (a reader never sees a record that a
    /// crash could take back), wakes long polls, and adds the batches to
    /// the active segment.
    fn publish(&mut self, batches: Vec<Arc<TailBatch>>) {
        if batches.is_empty() {
            return; // only duplicates: nothing new to show
        }
        let mut records = 0u64;
        let mut bytes = 0u64;
        {
            let mut view = self.shared.view_mut();
            for b in &batches {
                records += b.records.len() as u64;
                bytes += b.bytes;
                view.tail.push_back(Arc::clone(b));
            }
            view.high_watermark = self.next_offset;
            self.shared.note_append();
        }
        Metrics::add(&self.ctx.metrics.records_in, records);
        Metrics::add(&self.ctx.metrics.bytes_in, bytes);
        self.shared.wake_all();
        self.active.since.get_or_insert_with(Instant::now);
        self.active.bytes += bytes;
        self.active.batches.extend(batches);
    }

    /// `acks=wal` (and failed-to-answer-early `acks=none`) requests get
    /// their offsets now; `acks=uploaded` ones wait for the upload.
    fn acknowledge(&mut self, waiting: Vec<Accepted>) {
        for a in waiting {
            match a.acks {
                Acks::Uploaded => {
                    let last_offset = a.ack.base_offset + a.ack.count - 1;
                    let parked = self.shared.add_uploaded_ack(PendingUploadedAck {
                        last_offset,
                        ack: a.ack,
                        reply: a.reply,
                    });
                    // Only records of the active segment need a seal (a
                    // duplicate's may be in one already sealed).
                    if parked && last_offset >= self.active.base {
                        self.uploaded_waiting_since.get_or_insert_with(Instant::now);
                    }
                }
                Acks::Wal | Acks::None => {
                    self.ctx.stages.produce_ack.observe(a.received.elapsed());
                    let _ = a.reply.send(Ok(a.ack));
                }
            }
        }
    }

    /// Seals the active segment when it is full, old, lingered on by
    /// `acks=uploaded` requests, or the node is stopping (a clean stop
    /// uploads what it can, so a node that later starts on an empty data
    /// dir finds it in the bucket).
    fn maybe_seal(&mut self, stopping: bool) {
        if self.active.batches.is_empty() {
            // Nothing to seal, so nothing to wait for (or the deadline
            // would fire at once, again and again).
            self.uploaded_waiting_since = None;
            self.active.since = None;
            return;
        }
        if self.shared.view().status != Status::Open {
            // It will not seal again: no deadline may stay armed (it would
            // be in the past, and the writer would spin).
            self.active.since = None;
            self.uploaded_waiting_since = None;
            return;
        }
        let config = &self.ctx.config;
        let full = self.active.bytes >= config.segment_max_bytes;
        let old = self
            .active
            .since
            .is_some_and(|t| t.elapsed() >= config.segment_max_age);
        // Group commit for uploads: `acks=uploaded` requests that arrive
        // while every upload slot of the partition is taken wait for one
        // (a new segment would wait in line anyway), then share one
        // segment, so objects grow with load instead of one per linger.
        let lingered = self
            .uploaded_waiting_since
            .is_some_and(|t| t.elapsed() >= config.uploaded_ack_linger)
            && !self.uploads.full();
        let postponed = self.seal_retry_at.is_some_and(|t| Instant::now() < t);
        if (full || old || lingered || stopping) && (!postponed || stopping) {
            let started = Instant::now();
            match self.seal(stopping) {
                Ok(Sealing::Done) => self.seal_retry_at = None,
                Ok(Sealing::Postponed(why)) => self.postpone_seal(why),
                Err(e) => self.fail(e.to_string()),
            }
            self.ctx.stages.seal.observe(started.elapsed());
        }
    }

    /// The next WAL file could not be created for want of room or
    /// descriptors: try again in a second (the deadline waits for it, so
    /// the writer does not spin).
    fn postpone_seal(&mut self, why: &str) {
        self.seal_retry_at = Some(Instant::now() + SEAL_RETRY);
        if self
            .disk_full_logged
            .is_none_or(|t| t.elapsed() >= DISK_FULL_LOG_EVERY)
        {
            log::warn!(
                "partition {}: {why}; its segment is sealed once the next WAL file can be created",
                self.shared.name()
            );
            self.disk_full_logged = Some(Instant::now());
        }
    }

    /// Hands the active segment to the uploader (with the producer table
    /// as of its end, idle producers expired) and starts a new WAL file.
    fn seal(&mut self, last: bool) -> Result<Sealing> {
        // Every group was fsynced already. Finishing cuts off the zeros
        // written ahead and keeps the rule local: the sealed file is whole
        // on disk, ending with its last entry, before a later file exists,
        // or a power cut could tear it and take the later (acknowledged)
        // records with it on replay.
        self.wal.finish()?;
        // The last seal (the writer is stopping) starts no new file: with
        // thousands of partitions that would be thousands of creates and
        // directory fsyncs in the shutdown.
        let wal_path = self.wal.path().to_path_buf();
        if !last {
            match self.wal_dir.create(self.next_offset) {
                Ok(next) => self.wal = next,
                // No room or no descriptor for the next file: the segment
                // stays active (its file is whole and open) and the seal is
                // tried again later.
                Err(e) if is_disk_full(&e.source) => {
                    return Ok(Sealing::Postponed("the disk is full"))
                }
                Err(e) if is_out_of_descriptors(&e.source) => {
                    return Ok(Sealing::Postponed("the process is out of file descriptors"))
                }
                Err(e) => return Err(e.into()),
            }
        }
        let active = std::mem::replace(
            &mut self.active,
            ActiveSegment {
                base: self.next_offset,
                batches: Vec::new(),
                bytes: 0,
                since: None,
            },
        );
        let sealed = SealedSegment {
            base_offset: active.base,
            last_offset: self.next_offset - 1,
            batches: active.batches,
            bytes: active.bytes,
            wal_path,
            producers: self.expired_producers(),
        };
        self.uploaded_waiting_since = None;
        Metrics::add(&self.ctx.metrics.segments_sealed, 1);
        self.uploads.push(sealed);
        Ok(Sealing::Done)
    }

    /// The producer table after forgetting producers idle for longer than
    /// the expiry; a copy for the sealed segment.
    fn expired_producers(&mut self) -> ProducerTable {
        let expiry = self.ctx.config.producer_expiry_ms();
        let gone = self.producers.expire(now_ms().saturating_sub(expiry));
        if gone > 0 {
            log::info!(
                "partition {}: {gone} idle producers expired",
                self.shared.name()
            );
        }
        self.producers.clone()
    }
}
