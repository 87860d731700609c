//! Opening a partition: replay the WAL beyond the last committed segment,
//! rebuild the in-memory tail, continue offsets exactly, and queue segments
//! that were sealed but not committed for upload again.

use super::uploader::Uploader;
use super::writer::{SealedSegment, UploadMsg, Writer};
use super::{Partition, PartitionShared, PartitionView, SegmentRef, Status, TailBatch};
use crate::engine::EngineCtx;
use crate::error::{Error, Result};
use crate::wal::{replay_file, WalDir};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Records of one WAL file that are not yet committed.
struct Pending {
    first_offset: i64,
    path: std::path::PathBuf,
    good_len: u64,
    batch: Option<Arc<TailBatch>>,
}

pub(crate) fn open_partition(
    ctx: &Arc<EngineCtx>,
    topic: &str,
    partition: u32,
) -> Result<Partition> {
    let name = format!("{topic}/{partition}");
    let row = ctx
        .meta
        .partition(topic, partition)?
        .ok_or_else(|| Error::NotFound(format!("partition {name} has no metadata")))?;
    let segments: VecDeque<SegmentRef> = ctx
        .meta
        .segments(topic, partition)?
        .into_iter()
        .map(|s| SegmentRef {
            base_offset: s.base_offset,
            last_offset: s.last_offset,
            key: Arc::from(s.object_key.as_str()),
            size_bytes: s.size_bytes as u64,
            min_timestamp_ms: s.min_timestamp_ms,
            max_timestamp_ms: s.max_timestamp_ms,
        })
        .collect();
    let committed = row.next_offset;
    let incarnation = ctx
        .meta
        .topic(topic)?
        .map(|t| t.created_at_ms)
        .ok_or_else(|| Error::NotFound(format!("topic {topic:?} has no metadata")))?;

    let wal_dir = WalDir::open(ctx.config.wal_dir(topic, partition))?;
    let mut pending: Vec<Pending> = Vec::new();
    let mut expected = committed;
    let mut broken = false;
    for file in wal_dir.files()? {
        if broken {
            // Everything after a cut: offsets would not be contiguous.
            let aside = file.path.with_extension("wal.discarded");
            log::error!(
                "partition {name}: discarding WAL file {} after an earlier corrupt file (kept as {})",
                file.path.display(),
                aside.display()
            );
            std::fs::rename(&file.path, &aside)
                .map_err(|e| Error::io(format!("rename {}", file.path.display()), e))?;
            continue;
        }
        let replay = replay_file(&file.path, file.first_offset)?;
        if let Some(why) = &replay.cut {
            log::warn!(
                "partition {name}: WAL {} cut at byte {}: {why}",
                file.path.display(),
                replay.good_len
            );
            broken = true;
        }
        let records: Vec<_> = replay
            .records
            .into_iter()
            .filter(|r| r.offset >= committed)
            .collect();
        if records.is_empty() && file.first_offset < committed {
            // Fully committed; its trim was lost in a crash.
            wal_dir.remove(&file.path)?;
            broken = false; // a cut in a committed file loses nothing
            continue;
        }
        if let Some(first) = records.first() {
            if first.offset != expected {
                return Err(Error::Unavailable(format!(
                    "partition {name}: WAL resumes at offset {} but {expected} is the next expected; \
                     offsets {expected}..{} are missing",
                    first.offset, first.offset
                )));
            }
            expected = records[records.len() - 1].offset + 1;
        }
        let bytes = records.iter().map(|r| r.payload_len() as u64).sum();
        pending.push(Pending {
            first_offset: file.first_offset.max(committed),
            path: file.path,
            good_len: replay.good_len,
            batch: (!records.is_empty()).then(|| Arc::new(TailBatch { records, bytes })),
        });
    }
    // Empty files before the last one carry nothing.
    while pending.len() > 1 && pending[0].batch.is_none() {
        let p = pending.remove(0);
        wal_dir.remove(&p.path)?;
    }

    let high = expected;
    let active = match pending.pop() {
        Some(last)
            if last.first_offset == last.batch.as_ref().map_or(high, |b| b.base_offset()) =>
        {
            Some(last)
        }
        Some(last) => {
            pending.push(last);
            None
        }
        None => None,
    };
    // Files that hold nothing uncommitted and are not the active one.
    for p in pending.iter().filter(|p| p.batch.is_none()) {
        wal_dir.remove(&p.path)?;
    }
    pending.retain(|p| p.batch.is_some());
    let mut tail = VecDeque::new();
    let mut backlog = 0u64;
    for p in pending.iter().chain(active.iter()) {
        if let Some(b) = &p.batch {
            backlog += b.bytes;
            tail.push_back(Arc::clone(b));
        }
    }
    let shared = Arc::new(PartitionShared::new(
        topic,
        incarnation,
        partition,
        PartitionView {
            low_watermark: row.low_watermark,
            committed_next: committed,
            high_watermark: high,
            segments,
            tail,
            status: Status::Open,
        },
    ));
    shared.backlog_bytes.store(backlog, Ordering::Relaxed);
    ctx.backlog_bytes.fetch_add(backlog, Ordering::Relaxed);

    // The active WAL file: the last one, reopened after its good prefix, or
    // a new one at the high watermark.
    let (wal, active_base, active_batches, active_bytes) = match active {
        Some(a) => {
            let file = crate::wal::WalFileRef {
                first_offset: a.first_offset,
                path: a.path.clone(),
            };
            let w = wal_dir.reopen(&file, a.good_len)?;
            let bytes = a.batch.as_ref().map_or(0, |b| b.bytes);
            (w, a.first_offset, a.batch.into_iter().collect(), bytes)
        }
        None => (wal_dir.create(high)?, high, Vec::new(), 0),
    };

    let (upload_tx, upload_rx) = crossbeam_channel::unbounded();
    let mut requeued = 0;
    for p in pending {
        if let Some(batch) = p.batch {
            requeued += 1;
            let _ = upload_tx.send(UploadMsg::Upload(SealedSegment {
                base_offset: batch.base_offset(),
                last_offset: batch.last_offset(),
                bytes: batch.bytes,
                batches: vec![batch],
                wal_path: p.path,
            }));
        }
    }
    if high > committed {
        log::info!(
            "partition {name}: recovered offsets {committed}..{high} from the WAL ({requeued} sealed segments to upload again)"
        );
    }

    let stop = Arc::new(AtomicBool::new(false));
    let uploader = Uploader {
        shared: Arc::clone(&shared),
        ctx: Arc::clone(ctx),
        wal_dir: WalDir::open(ctx.config.wal_dir(topic, partition))?,
        stop: Arc::clone(&stop),
    };
    let active_since = (!active_batches.is_empty()).then(std::time::Instant::now);
    let writer = Writer {
        shared: Arc::clone(&shared),
        ctx: Arc::clone(ctx),
        wal_dir,
        wal,
        active_base,
        active_batches,
        active_bytes,
        active_since,
        uploaded_waiting_since: None,
        next_offset: high,
        upload_tx,
        buf: Vec::new(),
    };
    let (writer_tx, writer_rx) = crossbeam_channel::bounded(ctx.config.writer_queue);
    let spawn_err = |e| Error::io(format!("spawn threads for {name}"), e);
    let uploader_handle = std::thread::Builder::new()
        .name(format!("upload-{name}"))
        .spawn(move || uploader.run(upload_rx))
        .map_err(spawn_err)?;
    let writer_handle = std::thread::Builder::new()
        .name(format!("writer-{name}"))
        .spawn(move || writer.run(writer_rx))
        .map_err(spawn_err)?;
    Ok(Partition {
        shared,
        writer_tx,
        writer: Mutex::new(Some(writer_handle)),
        uploader: Mutex::new(Some(uploader_handle)),
        upload_stop: stop,
    })
}
