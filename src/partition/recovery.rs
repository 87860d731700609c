//! Opening a partition, in steps: [`load_committed`] (what metadata says
//! is in the store, and the producer table as of it) → `scan_wal` (what
//! the WAL holds beyond it; a pure function in `src/wal/scan.rs`) →
//! [`apply_scan`] (delete what is committed, set aside what follows a cut)
//! → [`replay_into_tail`] (the in-memory tail and backlog, the producer
//! table replayed through each WAL file) → [`start`] (the active WAL file,
//! sealed segments queued for upload again, the writer and uploader
//! threads). Offsets continue exactly where the WAL ends.

use super::backlog::Backlog;
use super::upload_pool::UploadPool;
use super::uploader::Uploader;
use super::writer::{ActiveSegment, SealedSegment, Writer};
use super::{Partition, PartitionShared, PartitionView, SegmentRef, Status, TailBatch};
use crate::context::Context;
use crate::error::{Error, Result};
use crate::layout;
use crate::meta::PartitionRow;
use crate::producer::{snapshot, ProducerTable};
use crate::util::sync::StopSignal;
use crate::util::thread;
use crate::wal::{scan_wal, Damage, ProducerWrite, Recovered, RecoveredFile, WalDir};
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// What metadata says a partition has committed.
struct Committed {
    row: PartitionRow,
    incarnation: i64,
    segments: VecDeque<SegmentRef>,
    /// Idempotent producers' state as of `row.next_offset`.
    producers: ProducerTable,
}

/// Opens a partition for writes: `cluster_epoch` is the epoch in which
/// this node leads it (0: not in cluster mode).
pub(crate) fn open_partition(
    ctx: &Arc<Context>,
    uploads: &UploadPool,
    topic: &str,
    partition: u32,
    cluster_epoch: u64,
) -> Result<Partition> {
    let name = format!("{topic}/{partition}");
    let committed = load_committed(ctx, topic, partition)?;
    let wal_dir = WalDir::open(
        layout::partition_wal_dir(&ctx.config.data_dir, topic, partition),
        Arc::clone(&ctx.config.wal_fs),
    )?;
    let mut recovered = scan_wal(committed.row.next_offset, wal_dir.read_all()?)?;
    if let Some(damage) = recovered.damage.clone() {
        if ctx.config.repair_wal.contains(&name) {
            let next = wal_dir.accept_loss(&damage)?;
            log::warn!(
                "partition {name}: the loss of offsets {}..{next} was accepted (--repair-wal); offsets go on at {next}, the damaged bytes are kept beside {}",
                damage.first_lost,
                damage.path.display()
            );
            recovered = scan_wal(committed.row.next_offset, wal_dir.read_all()?)?;
        }
    }
    apply_scan(&wal_dir, &recovered, &name)?;
    let backlog = Backlog::new(Arc::clone(&ctx.backlog_bytes));
    let replayed = replay_into_tail(&mut recovered, &backlog, committed.producers);
    for (id, epoch, last_write_ms) in replayed.producers.producers() {
        ctx.producers.observe(id, epoch, last_write_ms);
    }
    let high = recovered.next_offset;
    if high > committed.row.next_offset {
        log::info!(
            "partition {name}: recovered offsets {}..{high} from the WAL ({} sealed segments to upload again)",
            committed.row.next_offset,
            recovered.sealed.len()
        );
    }
    let shared = Arc::new(
        PartitionShared::new(
            topic,
            committed.incarnation,
            partition,
            PartitionView {
                low_watermark: committed.row.low_watermark,
                committed_next: committed.row.next_offset,
                high_watermark: high,
                segments: committed.segments,
                tail: replayed.tail(),
                status: recovered
                    .damage
                    .as_ref()
                    .map_or(Status::Open, |d| Status::Damaged(damaged(&name, d))),
            },
            backlog,
        )
        .in_epoch(cluster_epoch),
    );
    start(ctx, uploads, shared, wal_dir, recovered, replayed)
}

/// A partition whose history in the bucket stops at an object the rebuild
/// could not read (`why` names it): it serves what metadata committed below
/// it and refuses writes with DATA_LOSS, which would otherwise reuse
/// offsets the bucket may hold. No writer, no uploads; its WAL, if any, is
/// left as it is for the next start.
pub(crate) fn open_blocked(
    ctx: &Arc<Context>,
    topic: &str,
    partition: u32,
    why: String,
) -> Result<Partition> {
    let committed = load_committed(ctx, topic, partition)?;
    let next = committed.row.next_offset;
    let view = PartitionView {
        low_watermark: committed.row.low_watermark,
        committed_next: next,
        high_watermark: next,
        segments: committed.segments,
        tail: Default::default(),
        status: Status::Damaged(why),
    };
    let backlog = Backlog::new(Arc::clone(&ctx.backlog_bytes));
    Ok(Partition::without_writer(PartitionShared::new(
        topic,
        committed.incarnation,
        partition,
        view,
        backlog,
    )))
}

fn load_committed(ctx: &Context, topic: &str, partition: u32) -> Result<Committed> {
    let row = ctx
        .meta
        .partition(topic, partition)?
        .ok_or_else(|| Error::NotFound(format!("partition {topic}/{partition} has no metadata")))?;
    let incarnation = ctx
        .meta
        .topic(topic)?
        .map(|t| t.incarnation)
        .ok_or_else(|| Error::NotFound(format!("topic {topic:?} has no metadata")))?;
    let segments = ctx
        .meta
        .segments(topic, partition)?
        .into_iter()
        .map(|s| SegmentRef {
            base_offset: s.base_offset,
            last_offset: s.last_offset,
            key: Arc::from(s.object_key.as_str()),
            size_bytes: s.size_bytes as u64,
            max_timestamp_ms: s.max_timestamp_ms,
        })
        .collect();
    let producers = match ctx.meta.producer_state(topic, partition)? {
        None => ProducerTable::default(),
        Some(bytes) => {
            snapshot::decode(&bytes)
                .map_err(|e| Error::Malformed {
                    object: format!("the producer state of {topic}/{partition} in metadata"),
                    reason: e.to_string(),
                })?
                .0
        }
    };
    Ok(Committed {
        row,
        incarnation,
        segments,
        producers,
    })
}

/// What produce answers on a partition whose WAL is damaged, and what the
/// log says.
fn damaged(name: &str, d: &Damage) -> String {
    format!(
        "partition {name}: its write-ahead log {} is damaged at byte {} ({}); offsets from {} on cannot be read, reads before them go on. To accept the loss and write again, restart with --repair-wal {name} (offsets go on past anything the damage could hide; the damaged bytes are kept)",
        d.path.display(),
        d.at,
        d.why,
        d.first_lost
    )
}

/// Deletes WAL files that hold nothing uncommitted, and says where the log
/// was cut or is damaged.
fn apply_scan(wal_dir: &WalDir, recovered: &Recovered, name: &str) -> Result<()> {
    if let Some(d) = &recovered.damage {
        log::error!("{}", damaged(name, d));
    } else {
        for cut in &recovered.cuts {
            log::warn!(
                "partition {name}: WAL {} cut at byte {} (a torn tail): {}",
                cut.path.display(),
                cut.at,
                cut.why
            );
        }
    }
    for path in &recovered.obsolete {
        wal_dir.remove(path)?;
    }
    Ok(())
}

/// The uncommitted records as tail batches: one per sealed file (to
/// upload again) and one for the active file.
struct Replayed {
    /// (WAL file, the first offset its segment covers, its records, the
    /// producer table as of its end).
    sealed: Vec<(PathBuf, i64, Arc<TailBatch>, ProducerTable)>,
    active: Option<Arc<TailBatch>>,
    /// The producer table as of the end of the WAL: the writer's.
    producers: ProducerTable,
}

impl Replayed {
    /// What readers see beyond the committed offset.
    fn tail(&self) -> VecDeque<Arc<TailBatch>> {
        let sealed = self.sealed.iter().map(|(_, _, b, _)| Arc::clone(b));
        sealed.chain(self.active.iter().cloned()).collect()
    }
}

/// Moves the recovered records into tail batches, counted in the backlog,
/// and replays the idempotent batches of each file into `producers`.
fn replay_into_tail(
    recovered: &mut Recovered,
    backlog: &Backlog,
    mut producers: ProducerTable,
) -> Replayed {
    let mut replay = |writes: &[ProducerWrite]| {
        for w in writes {
            producers.record(&w.batch, w.count, w.base_offset, w.written_ms);
        }
        producers.clone()
    };
    let batch_of = |file: &mut RecoveredFile| {
        let records = std::mem::take(&mut file.records);
        (!records.is_empty()).then(|| {
            let bytes = records.iter().map(|r| r.accounted_len() as u64).sum();
            backlog.add(bytes);
            Arc::new(TailBatch { records, bytes })
        })
    };
    let mut sealed = Vec::new();
    for f in &mut recovered.sealed {
        let state = replay(&f.writes);
        if let Some(batch) = batch_of(f) {
            sealed.push((f.path.clone(), f.first_offset, batch, state));
        }
    }
    let active = recovered.active.as_mut().and_then(|f| {
        replay(&f.writes);
        batch_of(f)
    });
    Replayed {
        sealed,
        active,
        producers,
    }
}

/// Reopens the active WAL file (or creates one at the high watermark),
/// queues the sealed segments for upload again, and starts the threads.
fn start(
    ctx: &Arc<Context>,
    pool: &UploadPool,
    shared: Arc<PartitionShared>,
    wal_dir: WalDir,
    recovered: Recovered,
    replayed: Replayed,
) -> Result<Partition> {
    let name = shared.name();
    let high = recovered.next_offset;
    let stop = StopSignal::new();
    let uploads = pool.queue(Uploader {
        shared: Arc::clone(&shared),
        ctx: Arc::clone(ctx),
        wal_dir: wal_dir.clone(),
        stop: stop.clone(),
    });
    for (wal_path, base_offset, batch, producers) in replayed.sealed {
        uploads.push(SealedSegment {
            base_offset,
            last_offset: batch.last_offset(),
            bytes: batch.bytes,
            batches: vec![batch],
            wal_path,
            producers,
        });
    }
    let (wal, active) = match &recovered.active {
        Some(a) => {
            let batches: Vec<Arc<TailBatch>> = replayed.active.into_iter().collect();
            let bytes = batches.iter().map(|b| b.bytes).sum();
            let since = (!batches.is_empty()).then(Instant::now);
            let segment = ActiveSegment {
                base: a.first_offset,
                batches,
                bytes,
                since,
            };
            // A damaged file stays exactly as it is (nothing is appended
            // while the partition is damaged); any other is cut after its
            // good prefix.
            let keep = if recovered.damage.is_some() {
                a.len
            } else {
                a.good_len
            };
            let wal = wal_dir.reopen(&a.path, keep);
            (wal.inspect_err(|_| uploads.stop())?, segment)
        }
        None => (
            wal_dir.create(high).inspect_err(|_| uploads.stop())?,
            ActiveSegment {
                base: high,
                batches: Vec::new(),
                bytes: 0,
                since: None,
            },
        ),
    };
    let writer = Writer {
        shared: Arc::clone(&shared),
        ctx: Arc::clone(ctx),
        wal_dir,
        wal,
        active,
        uploaded_waiting_since: None,
        next_offset: high,
        uploads: Arc::clone(&uploads),
        buf: Vec::new(),
        producers: replayed.producers,
        disk_full_logged: None,
        seal_retry_at: None,
    };
    // Bounded by bytes (the backlog reservation made before a request is
    // queued), not by a count of requests.
    let (writer_tx, writer_rx) = crossbeam_channel::unbounded();
    let writer_tx = Arc::new(writer_tx);
    uploads.notify_writer(Arc::downgrade(&writer_tx));
    let writer =
        thread::spawn(format!("writer-{name}"), move || writer.run(writer_rx)).map_err(|e| {
            // The partition will not open: its queued uploads must not go
            // on without it (they are in the WAL for the next start).
            uploads.stop();
            Error::io(format!("spawn the writer thread of {name}"), e)
        })?;
    Ok(Partition {
        shared,
        writer_tx,
        writer: Mutex::new(Some(writer)),
        uploads: Some(uploads),
    })
}
