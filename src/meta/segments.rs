//! Committed segments: the commit point of an upload, lookups, retention.

use super::garbage::mark_garbage;
use super::{MetaError, MetaResult, MetaStore};
use crate::layout::producer_state_key;
use rusqlite::{params, OptionalExtension, Row, Transaction};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentRow {
    pub topic: String,
    pub partition: u32,
    pub base_offset: i64,
    pub last_offset: i64,
    pub record_count: i64,
    pub size_bytes: i64,
    pub min_timestamp_ms: i64,
    pub max_timestamp_ms: i64,
    pub object_key: String,
    pub created_at_ms: i64,
}

pub(super) const SEGMENT_COLUMNS: &str =
    "topic, partition, base_offset, last_offset, record_count, size_bytes, \
     min_timestamp_ms, max_timestamp_ms, object_key, created_at_ms";

pub(super) fn segment_from_row(r: &Row<'_>) -> rusqlite::Result<SegmentRow> {
    Ok(SegmentRow {
        topic: r.get(0)?,
        partition: r.get(1)?,
        base_offset: r.get(2)?,
        last_offset: r.get(3)?,
        record_count: r.get(4)?,
        size_bytes: r.get(5)?,
        min_timestamp_ms: r.get(6)?,
        max_timestamp_ms: r.get(7)?,
        object_key: r.get(8)?,
        created_at_ms: r.get(9)?,
    })
}

fn commit_in(
    tx: &Transaction<'_>,
    seg: &SegmentRow,
    producer_state: Option<&[u8]>,
) -> MetaResult<()> {
    let next: Option<i64> = tx
        .prepare_cached("SELECT next_offset FROM partitions WHERE topic = ?1 AND partition = ?2")?
        .query_row(params![seg.topic, seg.partition], |r| r.get(0))
        .optional()?;
    let Some(next) = next else {
        return Err(MetaError::NotFound(format!(
            "partition {} of topic {:?} does not exist",
            seg.partition, seg.topic
        )));
    };
    if seg.base_offset != next || seg.last_offset < seg.base_offset {
        return Err(MetaError::Conflict(format!(
            "segment {}..={} of {}/{} does not start at the committed high watermark {next}",
            seg.base_offset, seg.last_offset, seg.topic, seg.partition
        )));
    }
    tx.prepare_cached(&format!(
        "INSERT INTO segments ({SEGMENT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
    ))?
    .execute(params![
        seg.topic,
        seg.partition,
        seg.base_offset,
        seg.last_offset,
        seg.record_count,
        seg.size_bytes,
        seg.min_timestamp_ms,
        seg.max_timestamp_ms,
        seg.object_key,
        seg.created_at_ms
    ])?;
    match producer_state {
        Some(state) => tx
            .prepare_cached(
                "UPDATE partitions SET next_offset = ?3, producer_state = ?4
                 WHERE topic = ?1 AND partition = ?2",
            )?
            .execute(params![
                seg.topic,
                seg.partition,
                seg.last_offset + 1,
                state
            ])?,
        None => tx
            .prepare_cached(
                "UPDATE partitions SET next_offset = ?3 WHERE topic = ?1 AND partition = ?2",
            )?
            .execute(params![seg.topic, seg.partition, seg.last_offset + 1])?,
    };
    Ok(())
}

impl MetaStore {
    /// Records a sealed, uploaded segment and advances the partition's
    /// committed high watermark to `last_offset + 1`, in one transaction.
    /// The segment must start exactly at the current committed high
    /// watermark: a gap or an overlap is a `Conflict`, never written.
    /// `producer_state` (the partition's producer table as of the segment's
    /// end, `producer::snapshot` bytes; empty for none) replaces the
    /// partition's in the same transaction; `None` leaves it.
    pub fn commit_segment(
        &self,
        seg: &SegmentRow,
        producer_state: Option<&[u8]>,
    ) -> MetaResult<()> {
        self.write(|tx| commit_in(tx, seg, producer_state))
    }

    /// [`MetaStore::commit_segment`] for several segments in offset order,
    /// in one transaction (a rebuild from the bucket); `producer_state` is
    /// the table as of the last one.
    pub fn commit_segments(
        &self,
        segs: &[SegmentRow],
        producer_state: Option<&[u8]>,
    ) -> MetaResult<()> {
        self.write(|tx| {
            for (i, s) in segs.iter().enumerate() {
                let last = i + 1 == segs.len();
                commit_in(tx, s, producer_state.filter(|_| last))?;
            }
            Ok(())
        })
    }

    /// Starts a partition that holds no segment at `offset` (its first
    /// segment in the bucket, the ones before it gone by retention).
    pub fn start_empty_partition_at(
        &self,
        topic: &str,
        partition: u32,
        offset: i64,
    ) -> MetaResult<()> {
        self.write(|tx| {
            let changed = tx.execute(
                "UPDATE partitions SET low_watermark = ?3, next_offset = ?3
                 WHERE topic = ?1 AND partition = ?2 AND next_offset <= ?3
                   AND NOT EXISTS (SELECT 1 FROM segments WHERE topic = ?1 AND partition = ?2)",
                params![topic, partition, offset],
            )?;
            if changed == 0 {
                return Err(MetaError::Conflict(format!(
                    "{topic}/{partition} cannot start at {offset}: it has segments or is past it"
                )));
            }
            Ok(())
        })
    }

    /// The segment holding `offset`: one indexed query on the primary key
    /// (the last segment starting at or before the offset).
    pub fn segment_for_offset(
        &self,
        topic: &str,
        partition: u32,
        offset: i64,
    ) -> MetaResult<Option<SegmentRow>> {
        self.read(|c| {
            c.prepare_cached(&format!(
                "SELECT {SEGMENT_COLUMNS} FROM segments
                 WHERE topic = ?1 AND partition = ?2 AND base_offset <= ?3
                 ORDER BY base_offset DESC LIMIT 1"
            ))?
            .query_row(params![topic, partition, offset], segment_from_row)
            .optional()
        })
        .map(|s| s.filter(|s| s.last_offset >= offset))
    }

    /// The object key of every committed segment (orphan collection).
    pub fn all_segment_keys(&self) -> MetaResult<Vec<String>> {
        self.read(|c| {
            c.prepare_cached("SELECT object_key FROM segments")?
                .query_map([], |r| r.get(0))?
                .collect()
        })
    }

    /// All committed segments of a partition, in offset order.
    pub fn segments(&self, topic: &str, partition: u32) -> MetaResult<Vec<SegmentRow>> {
        self.read(|c| {
            c.prepare_cached(&format!(
                "SELECT {SEGMENT_COLUMNS} FROM segments
                 WHERE topic = ?1 AND partition = ?2 ORDER BY base_offset"
            ))?
            .query_map(params![topic, partition], segment_from_row)?
            .collect()
        })
    }

    /// The oldest segments that retention drops at `now_ms`: the longest
    /// prefix (by offset) of segments that are either older than
    /// `retention_ms` (max timestamp before `now_ms - retention_ms`) or
    /// needed to bring the partition's bytes down to `retention_bytes`.
    /// Only a prefix is ever dropped, so offsets below the low watermark are
    /// gone and everything above it stays readable.
    pub fn segments_beyond_retention(
        &self,
        topic: &str,
        partition: u32,
        now_ms: i64,
    ) -> MetaResult<Vec<SegmentRow>> {
        let Some(t) = self.topic(topic)? else {
            return Err(MetaError::NotFound(format!(
                "topic {topic:?} does not exist"
            )));
        };
        let segments = self.segments(topic, partition)?;
        let mut remaining: i64 = segments.iter().map(|s| s.size_bytes).sum();
        let mut dropped = Vec::new();
        for s in segments {
            let too_old =
                t.retention_ms > 0 && s.max_timestamp_ms < now_ms.saturating_sub(t.retention_ms);
            let too_big = t.retention_bytes > 0 && remaining > t.retention_bytes;
            if !(too_old || too_big) {
                break;
            }
            remaining -= s.size_bytes;
            dropped.push(s);
        }
        Ok(dropped)
    }

    /// Removes the segment rows wholly below `new_low`, marks their objects
    /// as garbage and raises the low watermark to `new_low`, in one
    /// transaction. Returns the rows removed.
    pub fn drop_segments_before(
        &self,
        topic: &str,
        partition: u32,
        new_low: i64,
    ) -> MetaResult<Vec<SegmentRow>> {
        self.write(|tx| {
            let next: Option<i64> = tx
                .prepare_cached(
                    "SELECT next_offset FROM partitions WHERE topic = ?1 AND partition = ?2",
                )?
                .query_row(params![topic, partition], |r| r.get(0))
                .optional()?;
            let Some(next) = next else {
                return Err(MetaError::NotFound(format!(
                    "partition {partition} of topic {topic:?} does not exist"
                )));
            };
            if new_low > next {
                return Err(MetaError::Conflict(format!(
                    "low watermark {new_low} would pass the committed high watermark {next}"
                )));
            }
            let dropped = tx
                .prepare_cached(&format!(
                    "SELECT {SEGMENT_COLUMNS} FROM segments
                     WHERE topic = ?1 AND partition = ?2 AND last_offset < ?3 ORDER BY base_offset"
                ))?
                .query_map(params![topic, partition, new_low], segment_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            tx.prepare_cached(
                "DELETE FROM segments WHERE topic = ?1 AND partition = ?2 AND last_offset < ?3",
            )?
            .execute(params![topic, partition, new_low])?;
            for s in &dropped {
                mark_garbage(tx, &s.object_key, "retention")?;
                // The producer table put beside it, if there is one.
                mark_garbage(tx, &producer_state_key(&s.object_key), "retention")?;
            }
            tx.prepare_cached(
                "UPDATE partitions SET low_watermark = MAX(low_watermark, ?3)
                 WHERE topic = ?1 AND partition = ?2",
            )?
            .execute(params![topic, partition, new_low])?;
            Ok(dropped)
        })
    }
}
