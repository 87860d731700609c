//! At every start the bucket is the source of truth, and local metadata is
//! reconciled with it before any partition opens:
//!
//! 1. list `topics/` once; never hand out an incarnation seen there;
//! 2. finish the deletions whose tombstone is in the bucket;
//! 3. adopt every live topic's manifest that local metadata lacks (an
//!    empty data dir, a SQLite file older than the bucket), and write the
//!    manifest of a local topic the bucket lacks (created before manifests);
//! 4. per partition, drop rows whose objects retention already removed, and
//!    commit the bucket's segments beyond the local committed offset,
//!    described by their footers (read in parallel), with the producer table put beside the newest adopted segment;
//! 5. bring back consumer-group offsets from the bucket's checkpoint when
//!    they are newer than the local ones;
//! 6. (`producers::restore_producers`) named producers' epochs and the
//!    next producer id from `producers/`.
//!
//! Nothing here deletes an object the bucket does not mark as garbage.

use super::topics::finish_deletion;
use crate::bucket::{self, BucketTopics, ListedSegment, PartitionHistory, TopicId};
use crate::context::Context;
use crate::error::{Error, Result};
use crate::layout;
use crate::meta::{SegmentRow, TopicRow};
use crate::object_store::ObjectStore;
use crate::producer;
use crate::read::source::{read_footer, StoredObject};
use crate::util::clock::now_ms;
use crate::util::fs::remove_dir_all_if_exists;
use crate::util::thread::map_parallel;
use crate::wal::{scan_wal, ScanError, WalDir};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

/// Footer reads in flight at once during a rebuild.
const FOOTER_READERS: usize = 16;

/// What a reconciliation changed, for the log.
#[derive(Debug, Default)]
pub(super) struct Reconciled {
    pub topics_adopted: usize,
    pub deletions_finished: usize,
    pub segments_adopted: usize,
    pub group_offsets_restored: usize,
    /// Partitions whose history stops at an object that could not be read
    /// (or offsets no object holds): (topic, partition) -> why. They open
    /// for reads below that point only.
    pub blocked: HashMap<(String, u32), String>,
}

pub(super) fn reconcile(ctx: &Context) -> Result<Reconciled> {
    let started = Instant::now();
    let listed = bucket::list_topics(&ctx.store)?;
    ctx.meta.raise_incarnation_counter(listed.max_incarnation)?;
    let mut done = Reconciled::default();
    for id in &listed.tombstones {
        if finish_tombstoned(ctx, &listed, id)? {
            done.deletions_finished += 1;
        }
    }
    for id in listed.live() {
        if adopt_topic(ctx, id)? {
            done.topics_adopted += 1;
        }
    }
    for t in ctx.meta.topics()? {
        let id = (t.name.clone(), t.incarnation);
        if !listed.manifests.contains(&id) && !listed.tombstones.contains(&id) {
            // Created before topics had manifests: describe it now.
            let key = layout::topic_manifest_key(&t.name, t.incarnation);
            ctx.store.put(&key, &bucket::encode_manifest(&t))?;
        }
        for p in 0..t.partitions {
            let key = (t.name.clone(), t.incarnation, p);
            let segs = listed.segments.get(&key).map_or(&[][..], Vec::as_slice);
            let history = listed.history.get(&key).cloned().unwrap_or_default();
            let (adopted, blocked) = reconcile_partition(ctx, &t, p, segs, &history)?;
            done.segments_adopted += adopted;
            if let Some(why) = blocked {
                done.blocked.insert((t.name.clone(), p), why);
            }
            if let Some(orphans) = listed.orphan_states.get(&key) {
                mark_orphan_states(ctx, &t, p, orphans)?;
            }
        }
    }
    done.group_offsets_restored = super::groups::restore_group_offsets(ctx)?;
    log::info!(
        "reconciled with the bucket in {:?}: {} topics adopted, {} deletions finished, {} segments adopted, {} group offsets restored",
        started.elapsed(),
        done.topics_adopted,
        done.deletions_finished,
        done.segments_adopted,
        done.group_offsets_restored
    );
    Ok(done)
}

/// Completes a deletion recorded by a tombstone if anything of it remains
/// (objects, or local metadata of that incarnation). True if it did work.
fn finish_tombstoned(ctx: &Context, listed: &BucketTopics, id: &TopicId) -> Result<bool> {
    let (name, incarnation) = (id.0.as_str(), id.1);
    let local = ctx
        .meta
        .topic(name)?
        .is_some_and(|t| t.incarnation == incarnation);
    let has_history = listed
        .history
        .keys()
        .any(|(name, inc, _)| (name, *inc) == (&id.0, id.1));
    if !local && !listed.manifests.contains(id) && listed.segments_of(id).is_empty() && !has_history
    {
        return Ok(false);
    }
    log::info!("finishing the deletion of topic {name:?} (incarnation {incarnation})");
    finish_deletion(ctx, name, incarnation)?;
    Ok(true)
}

/// Makes local metadata hold the live incarnation `id`. True if it had to.
fn adopt_topic(ctx: &Context, id: &TopicId) -> Result<bool> {
    let (name, incarnation) = (id.0.as_str(), id.1);
    match ctx.meta.topic(name)? {
        Some(t) if t.incarnation >= incarnation => return Ok(false),
        Some(old) => {
            // Local metadata knows an older incarnation that the bucket has
            // replaced: its rows and WAL describe a topic that is gone.
            log::warn!(
                "topic {name:?}: local incarnation {} is older than the bucket's {incarnation}; taking the bucket's",
                old.incarnation
            );
            ctx.meta.delete_topic(name)?;
            remove_dir_all_if_exists(&layout::topic_wal_dir(&ctx.config.data_dir, name))?;
        }
        None => {}
    }
    let key = layout::topic_manifest_key(name, incarnation);
    let bytes = ctx.store.get(&key)?;
    let row = bucket::decode_manifest(&bytes).map_err(|reason| Error::Malformed {
        object: key.clone(),
        reason,
    })?;
    if (row.name.as_str(), row.incarnation) != (name, incarnation) {
        return Err(Error::Malformed {
            object: key,
            reason: format!(
                "describes {}/{}, not the topic its key names",
                row.name, row.incarnation
            ),
        });
    }
    ctx.meta.create_topic(&row)?;
    log::info!("topic {name:?} adopted from the bucket (incarnation {incarnation})");
    Ok(true)
}

/// Brings one partition's committed segments in line with the bucket.
/// Returns how many segments were adopted, and why the partition's history
/// stops short, if it does (see [`Walk`]).
pub(super) fn reconcile_partition(
    ctx: &Context,
    t: &TopicRow,
    p: u32,
    listed: &[ListedSegment],
    history: &PartitionHistory,
) -> Result<(usize, Option<String>)> {
    let mut garbage = Garbage::default();
    apply_low_watermark(ctx, t, p, listed, history, &mut garbage)?;
    if history.low_watermark().is_none() {
        drop_rows_retention_removed(ctx, t, p, listed)?;
    }
    let (adopted, blocked) = adopt_segments(ctx, t, p, listed, history, &mut garbage)?;
    if let Some(row) = ctx.meta.partition(&t.name, p)? {
        mark_superseded(ctx, t, p, listed, row.next_offset, &mut garbage)?;
    }
    garbage.mark(ctx)?;
    Ok((adopted, blocked))
}

/// Objects a reconciliation found to be garbage, by reason; marked at the
/// end of the partition's reconciliation.
#[derive(Default)]
struct Garbage {
    fenced: Vec<String>,
    retention: Vec<String>,
    superseded: Vec<String>,
}

impl Garbage {
    fn mark(self, ctx: &Context) -> Result<()> {
        for (keys, reason) in [
            (
                self.fenced,
                "written by a fenced epoch past the next epoch's start",
            ),
            (self.retention, "below the retention low watermark"),
            (self.superseded, "superseded"),
        ] {
            if !keys.is_empty() {
                ctx.meta.mark_garbage(&keys, reason)?;
            }
        }
        Ok(())
    }
}

/// Retention's mark in the bucket says every offset below it was removed
/// on purpose: local rows below it go (their objects are garbage), objects
/// below it are garbage, and a partition with nothing left continues at it.
fn apply_low_watermark(
    ctx: &Context,
    t: &TopicRow,
    p: u32,
    listed: &[ListedSegment],
    history: &PartitionHistory,
    garbage: &mut Garbage,
) -> Result<()> {
    garbage.retention.extend(history.stale_lows());
    let (Some(low), Some(row)) = (history.low_watermark(), ctx.meta.partition(&t.name, p)?) else {
        return Ok(());
    };
    if low > row.low_watermark {
        ctx.meta
            .drop_segments_before(&t.name, p, low.min(row.next_offset))?;
        if low > row.next_offset {
            ctx.meta.start_empty_partition_at(&t.name, p, low)?;
        }
        log::info!(
            "partition {}/{p}: retention removed every offset below {low} (the bucket's low watermark)",
            t.name
        );
    }
    let committed: HashSet<String> = ctx
        .meta
        .segments(&t.name, p)?
        .into_iter()
        .map(|r| r.object_key)
        .collect();
    for s in listed.iter().filter(|s| s.base_offset < low) {
        if !committed.contains(&s.key) {
            garbage.retention.extend(s.keys());
        }
    }
    Ok(())
}

/// Commits the bucket's segments that continue the local committed offset,
/// in one transaction. Returns how many, and why the history stops short
/// of the last object listed, if it does.
///
/// Only objects that belong to the log are candidates: one of epoch `e`
/// is not if a later epoch started at or before its offsets (a fenced
/// node's late upload; garbage). At each offset the newest epoch's object
/// is taken. The walk never continues below an object it could not read,
/// or across offsets that no object holds: the partition then stops there
/// (see [`Walk`]), and nothing from there on is marked as garbage.
fn adopt_segments(
    ctx: &Context,
    t: &TopicRow,
    p: u32,
    listed: &[ListedSegment],
    history: &PartitionHistory,
    garbage: &mut Garbage,
) -> Result<(usize, Option<String>)> {
    let name = format!("{}/{p}", t.name);
    let Some(row) = ctx.meta.partition(&t.name, p)? else {
        return Ok((0, None));
    };
    let mut next = row.next_offset;
    let mut candidates: Vec<&ListedSegment> = Vec::new();
    for s in listed.iter().filter(|s| s.base_offset >= next) {
        match history.end_of_epoch(s.epoch) {
            Some(end) if s.base_offset >= end => garbage.fenced.extend(s.keys()),
            _ => candidates.push(s),
        }
    }
    let Some(first) = candidates.first() else {
        return Ok((0, None));
    };
    let last_base = candidates.last().map_or(next, |s| s.base_offset);
    if first.base_offset > next
        && history.low_watermark().is_none()
        && ctx.meta.segments(&t.name, p)?.is_empty()
        && !local_wal_reaches(ctx, &t.name, p, next, first.base_offset)?
    {
        // A bucket from before low-watermark marks: everything before its
        // first segment was removed by retention.
        ctx.meta
            .start_empty_partition_at(&t.name, p, first.base_offset)?;
        next = first.base_offset;
    }
    let described = describe_segments(ctx, t, p, &candidates)?;
    let walk = walk_chain(&candidates, &described, history, next, garbage);
    let mut blocked = walk.blocked;
    if blocked.is_some() && local_wal_reaches(ctx, &t.name, p, walk.next, last_base + 1)? {
        // A later segment's PUT finished before an earlier one's (they
        // run side by side), or an upload of ours was damaged, and the
        // node stopped: the records are in the local WAL, uploaded again
        // after recovery.
        log::info!(
            "partition {name}: the bucket's objects from offset {} wait for the records in the local WAL",
            walk.next
        );
        blocked = None;
    }
    let blocked = blocked.map(|why| {
        format!(
            "partition {name}: the bucket's history cannot be read from offset {}: {why}. Offsets \
             below it are served; writes are refused (they would reuse offsets the bucket may \
             hold) until a restart finds the object readable; nothing from there on is deleted",
            walk.next
        )
    });
    if let Some(why) = &blocked {
        log::error!("{why}");
    }
    let Some(last) = walk.chain.last() else {
        return Ok((0, blocked));
    };
    // The producer table as of the newest segment, read before anything is
    // committed: the segments and the table go in one transaction, so a
    // failed read or a crash cannot leave adopted segments beside an older
    // table (which nothing would correct later).
    let listed = candidates.iter().find(|s| s.key == last.object_key);
    let state = producer_state_at(ctx, last, listed.and_then(|s| s.producer_state.as_deref()))?;
    ctx.meta.commit_segments(&walk.chain, Some(&state))?;
    log::info!(
        "partition {name}: adopted {} segments from the bucket, committed up to {}",
        walk.chain.len(),
        walk.next
    );
    Ok((walk.chain.len(), blocked))
}

/// Where a walk along the candidates ended.
struct Walk {
    chain: Vec<SegmentRow>,
    /// The offset after the chain.
    next: i64,
    /// Why it ended before the last candidate: an object it could not
    /// read, or offsets no object holds.
    blocked: Option<String>,
}

/// Follows the candidates (offset order, the newest epoch first at each
/// offset; `described[i]` is candidate i's footer) from `next`.
fn walk_chain(
    candidates: &[&ListedSegment],
    described: &[Result<SegmentRow>],
    history: &PartitionHistory,
    mut next: i64,
    garbage: &mut Garbage,
) -> Walk {
    let mut chain = Vec::new();
    let mut i = 0;
    let blocked = loop {
        // Other epochs' copies inside the chain are superseded (marked later).
        while candidates.get(i).is_some_and(|c| c.base_offset < next) {
            i += 1;
        }
        let Some(c) = candidates.get(i) else {
            break None;
        };
        if c.base_offset > next {
            break Some(format!(
                "no object holds offsets {next}..{} (the next one is {})",
                c.base_offset, c.key
            ));
        }
        match &described[i] {
            Err(e) => break Some(format!("{} cannot be read ({e})", c.key)),
            // It runs into a later epoch's offsets: not part of the log.
            Ok(row)
                if history
                    .end_of_epoch(c.epoch)
                    .is_some_and(|end| row.last_offset >= end) =>
            {
                garbage.fenced.extend(c.keys());
            }
            Ok(row) => {
                next = row.last_offset + 1;
                chain.push(row.clone());
            }
        }
        i += 1;
    };
    // An epoch that started past the end found had those offsets in the
    // bucket when it started: objects are missing.
    let blocked = blocked.or_else(|| {
        let latest = history.latest_start().filter(|s| s.start > next)?;
        Some(format!(
            "epoch {} started at offset {} ({}), but no object holds offsets {next}..{}",
            latest.epoch, latest.start, latest.key, latest.start
        ))
    });
    Walk {
        chain,
        next,
        blocked,
    }
}

/// Whether the partition's local WAL holds records from the committed
/// offset `from` on, continuously, up to `to` (the bucket's next segment):
/// then the gap before that segment is in the WAL, not retention's doing.
/// A scan, as recovery does it, not a guess from file names (a file left
/// behind by a failed trim would be taken for evidence and keep the
/// partition from opening). Read errors are errors.
fn local_wal_reaches(ctx: &Context, topic: &str, p: u32, from: i64, to: i64) -> Result<bool> {
    let dir = layout::partition_wal_dir(&ctx.config.data_dir, topic, p);
    if !dir.exists() {
        return Ok(false);
    }
    let wal = WalDir::open(dir, Arc::clone(&ctx.config.wal_fs))?;
    let files = wal.read_all()?;
    let reaches = match scan_wal(from, files) {
        Ok(scanned) => scanned.next_offset >= to,
        Err(ScanError::Read(e)) => return Err(e.into()),
        // Not continuous from the committed offset: no evidence (recovery
        // reports the gap).
        Err(ScanError::Gap { .. }) => false,
    };
    Ok(reaches)
}

/// The partition's producer table as of the newest adopted segment
/// (`snapshot` bytes; empty for none): the one put beside it, which is put
/// before the segment, so none beside it means the partition had none. A
/// table that does not decode, or describes other offsets, is not adopted
/// (logged): the partition then starts with no producer state: a producer
/// that goes on there at a later sequence is refused (FAILED_PRECONDITION,
/// expected 0) and must take a new id (streamctl does), and a retry that
/// spans this rebuild is not recognised as a duplicate.
fn producer_state_at(ctx: &Context, last: &SegmentRow, key: Option<&str>) -> Result<Vec<u8>> {
    let Some(key) = key else {
        return Ok(Vec::new());
    };
    let bytes = ctx.store.get(key)?;
    match producer::snapshot::decode(&bytes) {
        Ok((_, next)) if next == last.last_offset + 1 => Ok(bytes),
        Ok((_, next)) => {
            log::error!(
                "{key}: producer state through offset {next}, expected {}; not adopted",
                last.last_offset + 1
            );
            Ok(Vec::new())
        }
        Err(e) => {
            log::error!("{key}: producer state unreadable ({e}); not adopted");
            Ok(Vec::new())
        }
    }
}

/// Producer tables whose segment never arrived, below the committed offset:
/// the committed segment at that offset has another key (and its own
/// table), so they can never be read. Marked as garbage; ones at or beyond
/// the committed offset are left alone (no evidence yet).
fn mark_orphan_states(
    ctx: &Context,
    t: &TopicRow,
    p: u32,
    orphans: &[(i64, String)],
) -> Result<()> {
    let Some(row) = ctx.meta.partition(&t.name, p)? else {
        return Ok(());
    };
    let garbage: Vec<String> = orphans
        .iter()
        .filter(|(base, _)| *base < row.next_offset)
        .map(|(_, key)| key.clone())
        .collect();
    if !garbage.is_empty() {
        ctx.meta.mark_garbage(&garbage, "orphan producer state")?;
    }
    Ok(())
}

/// Objects inside the committed range that are not the committed segments
/// there (a fenced owner's late upload, an older upload of the same base
/// offset) can never be read: the committed chain is the truth for those
/// offsets. That is positive evidence; they are marked as garbage, but
/// only once their footer was read: an object that cannot be read is
/// never garbage (a person may need it).
fn mark_superseded(
    ctx: &Context,
    t: &TopicRow,
    p: u32,
    listed: &[ListedSegment],
    committed_next: i64,
    garbage: &mut Garbage,
) -> Result<()> {
    let rows = ctx.meta.segments(&t.name, p)?;
    let Some(low) = rows.first().map(|r| r.base_offset) else {
        return Ok(());
    };
    let superseded: Vec<&ListedSegment> = listed
        .iter()
        .filter(|s| s.base_offset >= low && s.base_offset < committed_next)
        .filter(|s| !rows.iter().any(|r| r.object_key == s.key))
        .filter(|s| !garbage.fenced.contains(&s.key))
        .collect();
    if superseded.is_empty() {
        return Ok(());
    }
    let described = describe_segments(ctx, t, p, &superseded)?;
    for (s, row) in superseded.iter().zip(described) {
        match row {
            Ok(_) => garbage.superseded.extend(s.keys()),
            Err(e) => log::warn!(
                "partition {}/{p}: {} is superseded but cannot be read ({e}); kept",
                t.name,
                s.key
            ),
        }
    }
    log::info!(
        "partition {}/{p}: {} superseded objects marked as garbage",
        t.name,
        garbage.superseded.len()
    );
    Ok(())
}

/// Local rows at the start of a partition whose objects are no longer in
/// the bucket were removed by retention after this metadata was written
/// (a restored backup): they go, and the low watermark moves past them.
/// A row missing further on is lost data; it stays, and reads of it answer
/// DATA_LOSS.
fn drop_rows_retention_removed(
    ctx: &Context,
    t: &TopicRow,
    p: u32,
    listed: &[ListedSegment],
) -> Result<()> {
    let rows = ctx.meta.segments(&t.name, p)?;
    let present = |r: &SegmentRow| listed.iter().any(|l| l.key == r.object_key);
    let gone = rows.iter().take_while(|r| !present(r)).count();
    if gone == 0 {
        return Ok(());
    }
    let new_low = rows[gone - 1].last_offset + 1;
    log::warn!(
        "partition {}/{p}: {gone} segments below offset {new_low} are gone from the bucket (retention); the low watermark moves there",
        t.name
    );
    ctx.meta.drop_segments_before(&t.name, p, new_low)?;
    for r in &rows[gone..] {
        if !present(r) {
            log::error!(
                "partition {}/{p}: segment {} is missing from the bucket; its offsets answer DATA_LOSS",
                t.name,
                r.object_key
            );
        }
    }
    Ok(())
}

/// Reads the footers of `segs` ([`FOOTER_READERS`] at a time) and turns
/// each into a metadata row, or the reason it could not be read.
fn describe_segments(
    ctx: &Context,
    t: &TopicRow,
    p: u32,
    segs: &[&ListedSegment],
) -> Result<Vec<Result<SegmentRow>>> {
    map_parallel(segs, FOOTER_READERS, "rebuild", |seg| {
        describe_segment(ctx, t, p, seg)
    })
    .map_err(|e| Error::io("spawn footer readers", e))
}

fn describe_segment(
    ctx: &Context,
    t: &TopicRow,
    p: u32,
    seg: &ListedSegment,
) -> Result<SegmentRow> {
    let src = StoredObject {
        store: &ctx.store,
        key: &seg.key,
        metrics: &ctx.metrics,
    };
    let footer = read_footer(&src, seg.size)?;
    let entries = footer.entries();
    let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
        return Err(Error::Malformed {
            object: seg.key.clone(),
            reason: "segment has no blocks".into(),
        });
    };
    // A segment covers from its key's offset: its first record may come
    // later (offsets a repair skipped), never earlier.
    if first.first_offset < seg.base_offset {
        return Err(Error::Malformed {
            object: seg.key.clone(),
            reason: format!(
                "starts at offset {} but its key says {}",
                first.first_offset, seg.base_offset
            ),
        });
    }
    Ok(SegmentRow {
        topic: t.name.clone(),
        partition: p,
        base_offset: seg.base_offset,
        last_offset: last.last_offset,
        record_count: entries.iter().map(|e| i64::from(e.record_count)).sum(),
        size_bytes: seg.size as i64,
        min_timestamp_ms: entries
            .iter()
            .map(|e| e.min_timestamp_ms)
            .min()
            .unwrap_or(0),
        max_timestamp_ms: entries
            .iter()
            .map(|e| e.max_timestamp_ms)
            .max()
            .unwrap_or(0),
        object_key: seg.key.clone(),
        created_at_ms: now_ms(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bucket::EpochStart;

    fn listed(base: i64, epoch: u64) -> ListedSegment {
        ListedSegment::for_test(base, epoch, 1)
    }

    fn row(base: i64, last: i64, epoch: u64) -> Result<SegmentRow> {
        Ok(SegmentRow {
            topic: "t".into(),
            partition: 0,
            base_offset: base,
            last_offset: last,
            record_count: last - base + 1,
            size_bytes: 1,
            min_timestamp_ms: 0,
            max_timestamp_ms: 0,
            object_key: format!("{base}-{epoch}.seg"),
            created_at_ms: 0,
        })
    }

    fn walk(
        segs: &[ListedSegment],
        rows: Vec<Result<SegmentRow>>,
        history: &PartitionHistory,
    ) -> (Vec<i64>, i64, Option<String>, Vec<String>) {
        let candidates: Vec<&ListedSegment> = segs.iter().collect();
        let mut garbage = Garbage::default();
        let w = walk_chain(&candidates, &rows, history, 0, &mut garbage);
        let bases = w.chain.iter().map(|r| r.base_offset).collect();
        (bases, w.next, w.blocked, garbage.fenced)
    }

    #[test]
    fn the_walk_takes_the_newest_epoch_at_each_offset_and_stops_at_what_it_cannot_read() {
        let none = PartitionHistory::default();
        // A contiguous chain; at 10 the newest epoch wins, the older copy is
        // left for the superseded pass.
        let segs = [listed(0, 1), listed(10, 2), listed(10, 1), listed(20, 2)];
        let rows = vec![row(0, 9, 1), row(10, 19, 2), row(10, 19, 1), row(20, 29, 2)];
        assert_eq!(
            walk(&segs, rows, &none),
            (vec![0, 10, 20], 30, None, vec![])
        );

        // An unreadable object stops the walk before it, naming it.
        let segs = [listed(0, 1), listed(10, 1), listed(20, 1)];
        let rows = vec![
            row(0, 9, 1),
            Err(Error::Unavailable("403".into())),
            row(20, 29, 1),
        ];
        let (bases, next, blocked, _) = walk(&segs, rows, &none);
        assert_eq!((bases, next), (vec![0], 10));
        assert!(blocked.unwrap().contains("10-1.seg cannot be read"));

        // A gap: no object holds 10..20.
        let segs = [listed(0, 1), listed(20, 1)];
        let (bases, next, blocked, _) = walk(&segs, vec![row(0, 9, 1), row(20, 29, 1)], &none);
        assert_eq!((bases, next), (vec![0], 10));
        assert!(blocked.unwrap().contains("no object holds offsets 10..20"));
    }

    #[test]
    fn an_object_that_runs_into_a_later_epoch_is_not_part_of_the_log() {
        // Epoch 2 started at 15: epoch 1's object 10..=19 runs into it (a
        // fenced node's upload) and is garbage; epoch 2's own object at 10
        // is missing, so the history stops at 10 (blocked: 10..15 were in
        // the bucket when epoch 2 started).
        let history = PartitionHistory {
            starts: vec![EpochStart {
                epoch: 2,
                start: 15,
                key: "15-2.epoch".into(),
            }],
            lows: vec![],
        };
        let segs = [listed(0, 1), listed(10, 1)];
        let (bases, next, blocked, fenced) =
            walk(&segs, vec![row(0, 9, 1), row(10, 19, 1)], &history);
        assert_eq!((bases, next), (vec![0], 10));
        assert!(blocked.unwrap().contains("epoch 2 started at offset 15"));
        assert_eq!(fenced, vec!["10-1.seg".to_string()]);
        // With epoch 2's object at 10 beside it, that one is taken.
        let segs = [listed(0, 1), listed(10, 2), listed(10, 1)];
        let rows = vec![row(0, 9, 1), row(10, 24, 2), row(10, 19, 1)];
        let (bases, next, blocked, _) = walk(&segs, rows, &history);
        assert_eq!((bases, next, blocked), (vec![0, 10], 25, None));
    }
}
