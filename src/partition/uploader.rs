//! The uploads of one partition, run by the shared upload pool
//! (`upload_pool.rs`). For each sealed segment, [`Uploader::put`] (several
//! segments of a partition at once): [`encode_segment`] →
//! [`Uploader::put_object`] (under a key that carries this node's owner
//! epoch; the producer table beside it first, if the partition has
//! idempotent producers); then [`Uploader::commit`], in offset order:
//! [`Uploader::confirm_owner`] →
//! [`Uploader::commit_segment`] (the segment's commit point, with the
//! producer table in the same transaction) →
//! [`Uploader::publish_segment`] (readers switch from the tail to the
//! object, `acks=uploaded` answered) → [`Uploader::trim_wal`]. The WAL file
//! goes only after the commit.

use super::writer::SealedSegment;
use super::{PartitionShared, SegmentRef, Status};
use crate::bucket::OwnershipError;
use crate::context::Context;
use crate::error::Error;
use crate::layout::{producer_state_key, segment_key, segment_key_by};
use crate::meta::{MetaError, SegmentRow};
use crate::metrics::Metrics;
use crate::object_store::{retry, RetryPolicy};
use crate::producer::snapshot;
use crate::segment::{SegmentSummary, SegmentWriter, DEFAULT_BLOCK_BYTES};
use crate::util::clock::now_ms;
use crate::util::sync::StopSignal;
use crate::wal::WalDir;
use std::sync::Arc;
use std::time::Instant;

pub(crate) struct Uploader {
    pub shared: Arc<PartitionShared>,
    pub ctx: Arc<Context>,
    pub wal_dir: WalDir,
    /// Raised to end retries: the topic is gone or the node is stopping.
    pub stop: StopSignal,
}

/// A segment whose objects are in the store, waiting for its turn to be
/// committed (segments commit in offset order).
pub(crate) struct PutSegment {
    seg: SealedSegment,
    key: String,
    summary: SegmentSummary,
    producers: Option<Vec<u8>>,
}

/// Why an upload did not finish.
pub(crate) enum Stopped {
    /// Told to stop, or the topic is gone: the WAL keeps the records.
    Asked,
    /// Something that retrying cannot fix (logged).
    Failed,
    /// Another node owns the prefix now: nothing more is committed here.
    Fenced,
}

impl Uploader {
    /// After uploads stopped: nobody waits forever. A failure that retrying
    /// cannot fix stops the partition's writes too; either way the
    /// `acks=uploaded` requests still waiting are answered (the records are
    /// in the WAL, uploaded after a restart).
    pub fn stopped(&self, why: Stopped) {
        let name = self.shared.name();
        let reason = match why {
            Stopped::Fenced => return, // answered when it was found
            Stopped::Asked => format!(
                "partition {name}: uploads stopped (the node is stopping or the topic is gone)"
            ),
            Stopped::Failed => {
                let why = format!("partition {name}: its uploads failed and cannot be retried (see the log); restart the server");
                let mut view = self.shared.view_mut();
                // A deleted or damaged partition keeps saying so.
                if view.status == Status::Open {
                    view.status = Status::Failed(why.clone());
                }
                why
            }
        };
        let then = match self.ctx.cluster {
            // Its next leader continues at the commit point.
            Some(_) => "records not yet uploaded are not part of the cluster's log",
            None => "the records are in the write-ahead log and will be uploaded after a restart",
        };
        self.shared.end_uploads(format!("{reason}; {then}"));
    }

    /// The first half of an upload, which may run beside other segments'
    /// of the partition: encode, then the PUTs.
    pub fn put(&self, seg: SealedSegment) -> Result<PutSegment, Stopped> {
        let name = self.shared.name();
        let stages = &self.ctx.stages;
        let started = Instant::now();
        let (bytes, summary) = encode_segment(&seg).map_err(|e| {
            // Offsets come from our own writer: this is a bug, and
            // uploading a wrong segment would be worse than stopping.
            log::error!(
                "partition {name}: cannot encode segment {}: {e}",
                seg.base_offset
            );
            Stopped::Failed
        })?;
        let (topic, inc, p) = (
            &self.shared.topic,
            self.shared.incarnation,
            self.shared.partition,
        );
        let epoch = match self.shared.cluster_epoch {
            0 => self.ctx.owner.epoch(),
            cluster_epoch => cluster_epoch,
        };
        let key = match self.ctx.owner.segment_writer() {
            Some(writer) => segment_key_by(topic, inc, p, seg.base_offset, epoch, writer),
            None => segment_key(topic, inc, p, seg.base_offset, epoch),
        };
        // The producer table before the segment: a start adopts any
        // segment it finds in the bucket (ours too, uploaded but not yet
        // committed when we crashed), and must find its table beside it. A
        // table whose segment never arrived is ignored (and marked as
        // garbage by the next start).
        let producers = (!seg.producers.is_empty())
            .then(|| snapshot::encode(&seg.producers, seg.last_offset + 1));
        let encoded = Instant::now();
        stages.upload_encode.observe(encoded - started);
        if let Some(state) = &producers {
            self.put_object(&producer_state_key(&key), state)?;
        }
        self.put_object(&key, &bytes)?;
        stages.upload_put.observe(encoded.elapsed());
        Ok(PutSegment {
            seg,
            key,
            summary,
            producers,
        })
    }

    /// The second half, in offset order: the owner check, the commit point,
    /// readers switched to the object, the WAL file removed.
    pub fn commit(&self, p: PutSegment) -> Result<(), Stopped> {
        let started = Instant::now();
        match &self.ctx.committer {
            Some(committer) => self.commit_to_cluster(committer, &p.seg)?,
            None => self.confirm_owner()?,
        }
        self.commit_segment(&p.seg, &p.key, &p.summary, p.producers.as_deref())?;
        self.ctx.stages.upload_commit.observe(started.elapsed());
        self.publish_segment(&p.seg, &p.key, &p.summary);
        self.trim_wal(&p.seg);
        log::debug!(
            "partition {}: committed segment {}..={} ({} bytes)",
            self.shared.name(),
            p.seg.base_offset,
            p.seg.last_offset,
            p.summary.size_bytes
        );
        Ok(())
    }

    /// Checks the owner record before a commit: a node whose epoch is no
    /// longer the owner's commits nothing more, and the `acks=uploaded`
    /// requests waiting here are answered UNAVAILABLE naming the owner.
    fn confirm_owner(&self) -> Result<(), Stopped> {
        let name = self.shared.name();
        let result = retry(
            &RetryPolicy::forever(),
            &self.stop,
            |e| matches!(e, OwnershipError::Store(_)),
            |_, e, _| log::warn!("partition {name}: cannot read the owner record: {e:?}"),
            || self.ctx.owner.confirm(&self.ctx.store),
        );
        match result {
            Ok(()) => Ok(()),
            Err(OwnershipError::Fenced(owner)) => {
                self.shared.end_uploads(fenced_error(&owner).to_string());
                Err(Stopped::Fenced)
            }
            Err(e) => {
                log::warn!("partition {name}: upload stopped: {e:?}");
                Err(Stopped::Asked)
            }
        }
    }

    /// Cluster mode: moves the partition's commit point in etcd, only
    /// while this node still leads it in its epoch (etcd's transaction is
    /// the fence). Retried while etcd is unreachable; a failed condition
    /// means another node leads now: nothing more is committed here, and
    /// the `acks=uploaded` requests waiting are answered UNAVAILABLE.
    fn commit_to_cluster(
        &self,
        committer: &crate::cluster::committer::Committer,
        seg: &SealedSegment,
    ) -> Result<(), Stopped> {
        use crate::cluster::registry::{CommitPoint, PartitionId};
        let name = self.shared.name();
        let partition = PartitionId {
            topic: self.shared.topic.to_string(),
            partition: self.shared.partition,
        };
        let point = CommitPoint {
            next_offset: seg.last_offset + 1,
            epoch: self.shared.cluster_epoch as i64,
        };
        let result = retry(
            &RetryPolicy::forever(),
            &self.stop,
            |e| matches!(e, crate::cluster::CoordError::Unavailable(_)),
            |n, e, _| log::warn!("partition {name}: commit in etcd failed (attempt {n}): {e}"),
            || committer.commit(partition.clone(), point),
        );
        if let Ok(c) = &result {
            let m = &self.ctx.metrics;
            Metrics::add(&m.etcd_commits, u64::from(c.made));
            Metrics::add(&m.etcd_commit_batches, u64::from(c.opened_batch));
        }
        match result {
            Ok(c) if c.made => Ok(()),
            Ok(_) => {
                let why = format!(
                    "partition {name}: this node no longer leads it (epoch {} was fenced); the \
                     client should ask the cluster for the leader and retry there",
                    self.shared.cluster_epoch
                );
                log::warn!("{why}");
                self.shared.view_mut().status = Status::NotLeader(why.clone());
                self.shared.end_uploads(why);
                Err(Stopped::Fenced)
            }
            Err(e) => {
                log::warn!("partition {name}: upload stopped: {e}");
                Err(Stopped::Asked)
            }
        }
    }

    fn deleted(&self) -> bool {
        self.shared.view().status == Status::Deleted
    }

    /// Retries until the store takes the object, or until stopped: every
    /// error is retried (a 403 may be fixed by an operator; the records
    /// wait in the WAL, and backpressure bounds how many).
    fn put_object(&self, key: &str, bytes: &[u8]) -> Result<(), Stopped> {
        let name = self.shared.name();
        let metrics = &self.ctx.metrics;
        if self.deleted() {
            return Err(Stopped::Asked);
        }
        retry(
            &RetryPolicy::forever(),
            &self.stop,
            |_| !self.deleted(),
            |n, e, _| {
                Metrics::add(&metrics.upload_retries, 1);
                log::warn!("partition {name}: upload of {key} failed (attempt {n}): {e}");
            },
            || self.ctx.store.inner().put(key, bytes),
        )
        .map_err(|_| Stopped::Asked)?;
        Metrics::add(&metrics.puts, 1);
        Metrics::add(&metrics.put_bytes, bytes.len() as u64);
        Ok(())
    }

    /// Writes the segment's metadata row: the commit point. Retried until
    /// it succeeds; a conflict is fine only if the row is already ours (a
    /// retried commit whose first attempt went through after all).
    fn commit_segment(
        &self,
        seg: &SealedSegment,
        key: &str,
        summary: &SegmentSummary,
        producers: Option<&[u8]>,
    ) -> Result<(), Stopped> {
        if self.stop.is_raised() {
            // Shutting down: an upload that finished after its deadline is
            // left for the next start to redo (the WAL still has it).
            return Err(Stopped::Asked);
        }
        let name = self.shared.name();
        // The segment covers its WAL file's range: a repair's skip can put
        // offsets that hold no record at its head.
        let row = SegmentRow {
            topic: self.shared.topic.to_string(),
            partition: self.shared.partition,
            base_offset: seg.base_offset,
            last_offset: seg.last_offset,
            record_count: summary.record_count as i64,
            size_bytes: summary.size_bytes as i64,
            min_timestamp_ms: summary.min_timestamp_ms,
            max_timestamp_ms: summary.max_timestamp_ms,
            object_key: key.to_string(),
            created_at_ms: now_ms(),
        };
        let result = retry(
            &RetryPolicy::forever(),
            &self.stop,
            |e| !matches!(e, MetaError::Conflict(_) | MetaError::NotFound(_)),
            |_, e, _| {
                Metrics::add(&self.ctx.metrics.upload_retries, 1);
                log::warn!("partition {name}: metadata commit of {key} failed: {e}");
            },
            || {
                self.ctx
                    .meta
                    .commit_segment(&row, Some(producers.unwrap_or_default()))
            },
        );
        match result {
            Ok(()) => Ok(()),
            Err(MetaError::Conflict(m)) if self.already_committed(&row) => {
                log::debug!("partition {name}: {key} was committed already ({m})");
                Ok(())
            }
            Err(MetaError::Conflict(m)) => {
                log::error!("partition {name}: metadata refused segment {key}: {m}");
                Err(Stopped::Failed)
            }
            Err(MetaError::NotFound(_)) => Err(Stopped::Asked), // topic deleted meanwhile
            Err(_) => Err(Stopped::Asked),
        }
    }

    fn already_committed(&self, row: &SegmentRow) -> bool {
        self.ctx
            .meta
            .segment_for_offset(&row.topic, row.partition, row.base_offset)
            .ok()
            .flatten()
            .is_some_and(|s| s.object_key == row.object_key && s.last_offset == row.last_offset)
    }

    /// Committed: readers now find these offsets in the store. The tail
    /// batches go, the backlog shrinks, `acks=uploaded` requests are
    /// answered.
    fn publish_segment(&self, seg: &SealedSegment, key: &str, summary: &SegmentSummary) {
        {
            let mut view = self.shared.view_mut();
            while view
                .tail
                .front()
                .is_some_and(|b| b.last_offset() <= seg.last_offset)
            {
                view.tail.pop_front();
            }
            view.committed_next = seg.last_offset + 1;
            view.segments.push_back(SegmentRef {
                base_offset: seg.base_offset,
                last_offset: seg.last_offset,
                key: Arc::from(key),
                size_bytes: summary.size_bytes,
                max_timestamp_ms: summary.max_timestamp_ms,
            });
        }
        self.shared.backlog.release(seg.bytes);
        self.shared.resolve_uploaded_acks(seg.last_offset);
    }

    fn trim_wal(&self, seg: &SealedSegment) {
        if let Err(e) = self.wal_dir.remove(&seg.wal_path) {
            // Harmless: recovery deletes WAL files that are fully committed.
            log::warn!("partition {}: {e}", self.shared.name());
        }
    }
}

/// What produce and waiting `acks=uploaded` requests get on a fenced node.
pub(crate) fn fenced_error(owner: &str) -> Error {
    Error::Unavailable(format!(
        "this node no longer owns its bucket prefix: it is owned by {owner}; send requests there"
    ))
}

/// Encodes the sealed segment's records into a segment object.
fn encode_segment(
    seg: &SealedSegment,
) -> Result<(Vec<u8>, SegmentSummary), crate::segment::WriteError> {
    let mut writer = SegmentWriter::new(DEFAULT_BLOCK_BYTES);
    for batch in &seg.batches {
        for r in &batch.records {
            writer.push(r)?;
        }
    }
    writer.finish()
}

/// Encoding a 64 MiB segment takes ~100 ms of CPU; on a small machine that
/// competes with the writer threads whose fsync-and-ack path is the
/// latency users see. Uploads are throughput work: run them at nice 10 so
/// the scheduler prefers writers and request handlers.
#[allow(unsafe_code)]
pub(crate) fn lower_thread_priority() {
    // SAFETY: setpriority only reads its integer arguments. On Linux, `who`
    // = 0 with PRIO_PROCESS names the calling thread.
    let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 10) };
    if rc != 0 {
        log::debug!(
            "could not lower the uploader's priority: {}",
            std::io::Error::last_os_error()
        );
    }
}
