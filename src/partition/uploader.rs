//! The uploader thread of one partition: encodes sealed segments, uploads
//! them, commits them in metadata, then trims the WAL. In that order: the
//! metadata commit is the segment's commit point, and the WAL file goes only
//! after it.

use super::writer::{SealedSegment, UploadMsg};
use super::{PartitionShared, SegmentRef};
use crate::config::segment_key;
use crate::engine::EngineCtx;
use crate::meta::{now_ms, MetaError, SegmentRow};
use crate::metrics::Metrics;
use crate::object_store::ObjectStore;
use crate::segment::{SegmentWriter, DEFAULT_BLOCK_BYTES};
use crate::wal::WalDir;
use crossbeam_channel::Receiver;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

const MAX_BACKOFF: Duration = Duration::from_secs(5);

pub(crate) struct Uploader {
    pub shared: Arc<PartitionShared>,
    pub ctx: Arc<EngineCtx>,
    pub wal_dir: WalDir,
    pub stop: Arc<AtomicBool>,
}

impl Uploader {
    pub fn run(self, rx: Receiver<UploadMsg>) {
        lower_thread_priority();
        while let Ok(msg) = rx.recv() {
            match msg {
                UploadMsg::Upload(seg) => {
                    if !self.upload(seg) {
                        return; // stopped: the WAL keeps the rest for the next start
                    }
                }
                UploadMsg::Shutdown => return,
            }
        }
    }

    /// Sleeps for the backoff, or returns false if asked to stop.
    fn backoff(&self, attempt: u32) -> bool {
        let delay =
            Duration::from_millis(50u64.saturating_mul(1 << attempt.min(7))).min(MAX_BACKOFF);
        let step = Duration::from_millis(20);
        let mut slept = Duration::ZERO;
        while slept < delay {
            if self.stop.load(Ordering::SeqCst) {
                return false;
            }
            std::thread::sleep(step);
            slept += step;
        }
        !self.stop.load(Ordering::SeqCst)
    }

    /// Returns false if the uploader was told to stop before finishing.
    fn upload(&self, seg: SealedSegment) -> bool {
        let name = self.shared.name();
        let mut writer = SegmentWriter::new(DEFAULT_BLOCK_BYTES);
        for batch in &seg.batches {
            for r in &batch.records {
                if let Err(e) = writer.push(r) {
                    // Offsets come from our own writer: this is a bug, and
                    // uploading a wrong segment would be worse than stopping.
                    log::error!(
                        "partition {name}: cannot encode segment {}: {e}",
                        seg.base_offset
                    );
                    return false;
                }
            }
        }
        let (bytes, summary) = match writer.finish() {
            Ok(x) => x,
            Err(e) => {
                log::error!(
                    "partition {name}: cannot encode segment {}: {e}",
                    seg.base_offset
                );
                return false;
            }
        };
        let key = segment_key(
            &self.shared.topic,
            self.shared.incarnation,
            self.shared.partition,
            seg.base_offset,
        );

        let mut attempt = 0;
        loop {
            if self.shared.view().status == super::Status::Deleted {
                return false;
            }
            match self.ctx.store.put(&key, &bytes) {
                Ok(()) => break,
                Err(e) => {
                    Metrics::add(&self.ctx.metrics.upload_retries, 1);
                    log::warn!(
                        "partition {name}: upload of {key} failed (attempt {}): {e}",
                        attempt + 1
                    );
                    if !self.backoff(attempt) {
                        return false;
                    }
                    attempt += 1;
                }
            }
        }
        Metrics::add(&self.ctx.metrics.puts, 1);
        Metrics::add(&self.ctx.metrics.put_bytes, bytes.len() as u64);

        let row = SegmentRow {
            topic: self.shared.topic.to_string(),
            partition: self.shared.partition,
            base_offset: summary.base_offset,
            last_offset: summary.last_offset,
            record_count: summary.record_count as i64,
            size_bytes: summary.size_bytes as i64,
            min_timestamp_ms: summary.min_timestamp_ms,
            max_timestamp_ms: summary.max_timestamp_ms,
            object_key: key.clone(),
            created_at_ms: now_ms(),
        };
        let mut attempt = 0;
        loop {
            match self.ctx.meta.commit_segment(&row) {
                Ok(()) => break,
                Err(MetaError::Conflict(m)) => {
                    // A retried commit whose first attempt went through
                    // after all: the row is ours.
                    let ours = self
                        .ctx
                        .meta
                        .segment_for_offset(&row.topic, row.partition, row.base_offset)
                        .ok()
                        .flatten()
                        .is_some_and(|s| {
                            s.object_key == row.object_key && s.last_offset == row.last_offset
                        });
                    if ours {
                        break;
                    }
                    log::error!("partition {name}: metadata refused segment {key}: {m}");
                    return false;
                }
                Err(MetaError::NotFound(_)) => return false, // topic deleted meanwhile
                Err(e) => {
                    Metrics::add(&self.ctx.metrics.upload_retries, 1);
                    log::warn!("partition {name}: metadata commit of {key} failed: {e}");
                    if !self.backoff(attempt) {
                        return false;
                    }
                    attempt += 1;
                }
            }
        }

        // Committed: readers now find these offsets in the store.
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
                base_offset: summary.base_offset,
                last_offset: summary.last_offset,
                key: Arc::from(key.as_str()),
                size_bytes: summary.size_bytes,
                min_timestamp_ms: summary.min_timestamp_ms,
                max_timestamp_ms: summary.max_timestamp_ms,
            });
        }
        self.ctx
            .backlog_bytes
            .fetch_sub(seg.bytes, Ordering::Relaxed);
        self.shared
            .backlog_bytes
            .fetch_sub(seg.bytes, Ordering::Relaxed);
        self.shared.resolve_uploaded_acks(seg.last_offset);
        if let Err(e) = self.wal_dir.remove(&seg.wal_path) {
            // Harmless: recovery deletes WAL files that are fully committed.
            log::warn!("partition {name}: {e}");
        }
        log::debug!(
            "partition {name}: committed segment {}..={} ({} bytes)",
            seg.base_offset,
            seg.last_offset,
            bytes.len()
        );
        true
    }
}

/// Encoding a 64 MiB segment takes ~100 ms of CPU; on a small machine that
/// competes with the writer threads whose fsync-and-ack path is the
/// latency users see. Uploads are throughput work: run them at nice 10 so
/// the scheduler prefers writers and request handlers.
#[allow(unsafe_code)]
fn lower_thread_priority() {
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
