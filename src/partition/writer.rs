//! The writer thread of one partition: assigns offsets, group-commits the
//! WAL, makes records visible, acknowledges, and seals segments.

use super::{
    Acks, AppendAck, AppendRequest, PartitionShared, PendingUploadedAck, Status, TailBatch,
    WriterMsg,
};
use crate::engine::EngineCtx;
use crate::error::{Error, Result};
use crate::meta::now_ms;
use crate::metrics::Metrics;
use crate::wal::{encode_entry, WalDir, WalWriter};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

/// At most this many bytes of requests go into one group commit, so one
/// fsync's batch stays bounded in memory and latency.
const MAX_GROUP_BYTES: u64 = 32 << 20;

/// A sealed segment on its way to the object store.
pub(crate) struct SealedSegment {
    pub base_offset: i64,
    pub last_offset: i64,
    pub batches: Vec<Arc<TailBatch>>,
    pub bytes: u64,
    pub wal_path: PathBuf,
}

pub(crate) enum UploadMsg {
    Upload(SealedSegment),
    Shutdown,
}

pub(crate) struct Writer {
    pub shared: Arc<PartitionShared>,
    pub ctx: Arc<EngineCtx>,
    pub wal_dir: WalDir,
    pub wal: WalWriter,
    /// First offset of the active (unsealed) segment.
    pub active_base: i64,
    pub active_batches: Vec<Arc<TailBatch>>,
    pub active_bytes: u64,
    pub active_since: Option<Instant>,
    pub uploaded_waiting_since: Option<Instant>,
    pub next_offset: i64,
    pub upload_tx: Sender<UploadMsg>,
    pub buf: Vec<u8>,
}

struct Accepted {
    reply: super::AckSender,
    acks: Acks,
    ack: AppendAck,
}

impl Writer {
    pub fn run(mut self, rx: Receiver<WriterMsg>) {
        let mut stopping = false;
        while !stopping {
            let first = match self.deadline() {
                Some(d) => match rx.recv_deadline(d) {
                    Ok(m) => m,
                    Err(RecvTimeoutError::Timeout) => {
                        self.maybe_seal();
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => break,
                },
                None => match rx.recv() {
                    Ok(m) => m,
                    Err(_) => break,
                },
            };
            let mut group = Vec::new();
            let mut group_bytes = 0;
            match first {
                WriterMsg::Append(r) => {
                    group_bytes += r.bytes;
                    group.push(r);
                }
                WriterMsg::Shutdown => stopping = true,
            }
            // Group commit: everything already queued shares this fsync.
            while !stopping && group_bytes < MAX_GROUP_BYTES {
                match rx.try_recv() {
                    Ok(WriterMsg::Append(r)) => {
                        group_bytes += r.bytes;
                        group.push(r);
                    }
                    Ok(WriterMsg::Shutdown) => stopping = true,
                    Err(_) => break,
                }
            }
            if !group.is_empty() {
                self.commit_group(group);
            }
            self.maybe_seal();
        }
        // Requests still queued behind the shutdown are refused, not dropped.
        while let Ok(msg) = rx.try_recv() {
            if let WriterMsg::Append(r) = msg {
                let _ = r.reply.send(Err(Error::Unavailable(
                    "the server is shutting down".to_string(),
                )));
            }
        }
        let _ = self.upload_tx.send(UploadMsg::Shutdown);
    }

    /// When the writer must wake up to seal even without requests.
    fn deadline(&self) -> Option<Instant> {
        let age = self
            .active_since
            .map(|t| t + self.ctx.config.segment_max_age);
        let linger = self
            .uploaded_waiting_since
            .map(|t| t + self.ctx.config.uploaded_ack_linger);
        match (age, linger) {
            (Some(a), Some(l)) => Some(a.min(l)),
            (a, l) => a.or(l),
        }
    }

    /// Stops the partition after a local I/O failure: no more writes, and
    /// no more sealing (which would otherwise retry at every wake-up).
    fn fail(&mut self, why: String) {
        log::error!(
            "partition {} stopped accepting writes: {why}",
            self.shared.name()
        );
        self.shared.view_mut().status = Status::Failed(why);
        self.active_since = None;
        self.uploaded_waiting_since = None;
    }

    fn commit_group(&mut self, group: Vec<AppendRequest>) {
        let status = self.shared.view().status.clone();
        if status != Status::Open {
            let err = match status {
                Status::Deleted => Error::NotFound(format!("topic {:?} was deleted", self.shared.topic)),
                Status::Failed(why) => Error::Unavailable(format!(
                    "partition {} is unavailable after a local I/O failure ({why}); restart the server",
                    self.shared.name()
                )),
                Status::Open => unreachable!("checked above"),
            };
            for r in group {
                let _ = r.reply.send(Err(clone_err(&err)));
            }
            return;
        }

        let now = now_ms();
        let metrics = &self.ctx.metrics;
        let mut accepted: Vec<Accepted> = Vec::with_capacity(group.len());
        let mut batches: Vec<Arc<TailBatch>> = Vec::with_capacity(group.len());
        let mut sync_needed = false;
        self.buf.clear();
        for mut req in group {
            let max = self.ctx.config.max_backlog_bytes;
            let backlog = self.ctx.backlog_bytes.load(Ordering::Relaxed);
            if backlog + req.bytes > max {
                Metrics::add(&metrics.backpressure_rejections, 1);
                let _ = req.reply.send(Err(Error::Backpressure(format!(
                    "{backlog} bytes are waiting for upload (limit {max}); the object store may be slow or down, retry later"
                ))));
                continue;
            }
            self.ctx
                .backlog_bytes
                .fetch_add(req.bytes, Ordering::Relaxed);
            self.shared
                .backlog_bytes
                .fetch_add(req.bytes, Ordering::Relaxed);
            let base = self.next_offset;
            for (i, r) in req.records.iter_mut().enumerate() {
                r.offset = base + i as i64;
                if r.timestamp_ms == 0 {
                    r.timestamp_ms = now;
                }
            }
            let count = req.records.len() as i64;
            self.next_offset += count;
            encode_entry(&mut self.buf, base, &req.records);
            sync_needed |= req.acks != Acks::None;
            batches.push(Arc::new(TailBatch {
                records: std::mem::take(&mut req.records),
                bytes: req.bytes,
            }));
            accepted.push(Accepted {
                reply: req.reply,
                acks: req.acks,
                ack: AppendAck {
                    base_offset: base,
                    count,
                },
            });
        }
        if accepted.is_empty() {
            return;
        }

        let written = self.wal.append(&self.buf);
        // acks=none answers before the fsync (benchmarks only).
        let mut waiting = Vec::with_capacity(accepted.len());
        for a in accepted {
            if a.acks == Acks::None && written.is_ok() {
                let _ = a.reply.send(Ok(a.ack));
            } else {
                waiting.push(a);
            }
        }
        let durable = written.and_then(|()| {
            if sync_needed {
                Metrics::add(&metrics.wal_fsyncs, 1);
                self.wal.sync()
            } else {
                Ok(())
            }
        });
        if let Err(e) = durable {
            // Nothing of this group will be uploaded: give its bytes back.
            let group_bytes: u64 = batches.iter().map(|b| b.bytes).sum();
            self.ctx
                .backlog_bytes
                .fetch_sub(group_bytes, Ordering::Relaxed);
            self.shared
                .backlog_bytes
                .fetch_sub(group_bytes, Ordering::Relaxed);
            // The records may or may not be on disk: the offsets stay used
            // (never reused), the callers hear of the failure, and the
            // partition stops until a restart replays what the WAL holds.
            self.fail(e.to_string());
            for a in waiting {
                let _ = a.reply.send(Err(Error::Unavailable(format!(
                    "write-ahead log failure on {}: {e}",
                    self.shared.name()
                ))));
            }
            return;
        }
        Metrics::add(&metrics.wal_bytes, self.buf.len() as u64);

        // Visible only once durable: a reader never sees a record that a
        // crash could take back.
        let mut appended_records = 0u64;
        let mut appended_bytes = 0u64;
        {
            let mut view = self.shared.view_mut();
            for b in &batches {
                appended_records += b.records.len() as u64;
                appended_bytes += b.bytes;
                view.tail.push_back(Arc::clone(b));
            }
            view.high_watermark = self.next_offset;
            self.shared.note_append();
        }
        Metrics::add(&metrics.records_in, appended_records);
        Metrics::add(&metrics.bytes_in, appended_bytes);
        self.shared.wake_all();

        self.active_since.get_or_insert_with(Instant::now);
        for b in batches {
            self.active_bytes += b.bytes;
            self.active_batches.push(b);
        }
        for a in waiting {
            match a.acks {
                Acks::Uploaded => {
                    self.shared.add_uploaded_ack(PendingUploadedAck {
                        last_offset: a.ack.base_offset + a.ack.count - 1,
                        ack: a.ack,
                        reply: a.reply,
                    });
                    self.uploaded_waiting_since.get_or_insert_with(Instant::now);
                }
                Acks::Wal | Acks::None => {
                    let _ = a.reply.send(Ok(a.ack));
                }
            }
        }
    }

    fn maybe_seal(&mut self) {
        if self.active_batches.is_empty() || self.shared.view().status != Status::Open {
            return;
        }
        let config = &self.ctx.config;
        let full = self.active_bytes >= config.segment_max_bytes;
        let old = self
            .active_since
            .is_some_and(|t| t.elapsed() >= config.segment_max_age);
        let lingered = self
            .uploaded_waiting_since
            .is_some_and(|t| t.elapsed() >= config.uploaded_ack_linger);
        if full || old || lingered {
            if let Err(e) = self.seal() {
                self.fail(e.to_string());
            }
        }
    }

    /// Hands the active segment to the uploader and starts a new WAL file.
    fn seal(&mut self) -> Result<()> {
        // acks=none groups skip the fsync; the sealed file must be whole on
        // disk before a later file exists, or a power cut could tear it and
        // take the later (acknowledged) records with it on replay.
        self.wal.sync()?;
        let new_wal = self.wal_dir.create(self.next_offset)?;
        let old_wal = std::mem::replace(&mut self.wal, new_wal);
        let sealed = SealedSegment {
            base_offset: self.active_base,
            last_offset: self.next_offset - 1,
            batches: std::mem::take(&mut self.active_batches),
            bytes: std::mem::take(&mut self.active_bytes),
            wal_path: old_wal.path().to_path_buf(),
        };
        self.active_base = self.next_offset;
        self.active_since = None;
        self.uploaded_waiting_since = None;
        Metrics::add(&self.ctx.metrics.segments_sealed, 1);
        // The uploader outlives the writer (it exits on our Shutdown), so a
        // send can only fail if it panicked; the WAL still has the records.
        if self.upload_tx.send(UploadMsg::Upload(sealed)).is_err() {
            return Err(Error::Unavailable(
                "the uploader thread is gone".to_string(),
            ));
        }
        Ok(())
    }
}

/// Errors are not `Clone` (they may hold an `io::Error`); the writer only
/// fans out the simple kinds.
fn clone_err(e: &Error) -> Error {
    match e {
        Error::NotFound(m) => Error::NotFound(m.clone()),
        Error::Unavailable(m) => Error::Unavailable(m.clone()),
        other => Error::Unavailable(other.to_string()),
    }
}
