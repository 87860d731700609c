//! Topics and their partitions (watermarks), and the incarnation counter.

use super::segments::{segment_from_row, SegmentRow, SEGMENT_COLUMNS};
use super::{MetaError, MetaResult, MetaStore};
use rusqlite::{params, OptionalExtension, Row};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicRow {
    pub name: String,
    pub partitions: u32,
    /// 0 = keep forever.
    pub retention_ms: i64,
    /// Per partition; 0 = unlimited.
    pub retention_bytes: i64,
    pub created_at_ms: i64,
    /// Handed out by metadata once per creation; part of the topic's
    /// object keys, so a re-created topic never reuses old keys.
    pub incarnation: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionRow {
    pub topic: String,
    pub partition: u32,
    pub low_watermark: i64,
    /// Committed high watermark: one past the last committed segment.
    pub next_offset: i64,
}

/// Segment count and bytes of one partition's committed segments.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PartitionUsage {
    pub segment_count: i64,
    pub stored_bytes: i64,
}

fn topic_from_row(r: &Row<'_>) -> rusqlite::Result<TopicRow> {
    Ok(TopicRow {
        name: r.get(0)?,
        partitions: r.get(1)?,
        retention_ms: r.get(2)?,
        retention_bytes: r.get(3)?,
        created_at_ms: r.get(4)?,
        incarnation: r.get(5)?,
    })
}

fn partition_from_row(r: &Row<'_>) -> rusqlite::Result<PartitionRow> {
    Ok(PartitionRow {
        topic: r.get(0)?,
        partition: r.get(1)?,
        low_watermark: r.get(2)?,
        next_offset: r.get(3)?,
    })
}

impl MetaStore {
    /// Takes the next topic incarnation from the counter (never handed
    /// out twice, whatever the clock does).
    pub fn next_incarnation(&self) -> MetaResult<i64> {
        self.write(|tx| {
            Ok(tx.query_row(
                "UPDATE counters SET value = value + 1 WHERE name = 'topic_incarnation' RETURNING value",
                [],
                |r| r.get(0),
            )?)
        })
    }

    /// Makes sure the counter never hands out `seen` or less (incarnations
    /// found in the bucket).
    pub fn raise_incarnation_counter(&self, seen: i64) -> MetaResult<()> {
        self.write(|tx| {
            tx.execute(
                "UPDATE counters SET value = MAX(value, ?1) WHERE name = 'topic_incarnation'",
                [seen],
            )?;
            Ok(())
        })
    }

    /// Creates a topic (with the incarnation it was given) and its
    /// partitions (low = next = 0) in one transaction.
    pub fn create_topic(&self, topic: &TopicRow) -> MetaResult<()> {
        self.write(|tx| {
            let inserted = tx.execute(
                "INSERT INTO topics (name, partitions, retention_ms, retention_bytes, created_at_ms, incarnation)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT(name) DO NOTHING",
                params![
                    topic.name,
                    topic.partitions,
                    topic.retention_ms,
                    topic.retention_bytes,
                    topic.created_at_ms,
                    topic.incarnation
                ],
            )?;
            if inserted == 0 {
                return Err(MetaError::AlreadyExists(format!(
                    "topic {:?} already exists",
                    topic.name
                )));
            }
            let mut stmt =
                tx.prepare("INSERT INTO partitions (topic, partition) VALUES (?1, ?2)")?;
            for p in 0..topic.partitions {
                stmt.execute(params![topic.name, p])?;
            }
            Ok(())
        })
    }

    /// Changes a topic's partition count (up only: the new partitions'
    /// rows are added) and retention.
    pub fn alter_topic(&self, topic: &TopicRow) -> MetaResult<()> {
        self.write(|tx| {
            let before: u32 = tx
                .query_row(
                    "SELECT partitions FROM topics WHERE name = ?1",
                    [&topic.name],
                    |r| r.get(0),
                )
                .optional()?
                .ok_or_else(|| MetaError::NotFound(format!("topic {:?} does not exist", topic.name)))?;
            tx.execute(
                "UPDATE topics SET partitions = ?2, retention_ms = ?3, retention_bytes = ?4 WHERE name = ?1",
                params![topic.name, topic.partitions, topic.retention_ms, topic.retention_bytes],
            )?;
            let mut stmt =
                tx.prepare("INSERT INTO partitions (topic, partition) VALUES (?1, ?2)")?;
            for p in before..topic.partitions {
                stmt.execute(params![topic.name, p])?;
            }
            Ok(())
        })
    }

    pub fn topic(&self, name: &str) -> MetaResult<Option<TopicRow>> {
        self.read(|c| {
            c.prepare_cached(
                "SELECT name, partitions, retention_ms, retention_bytes, created_at_ms, incarnation
                 FROM topics WHERE name = ?1",
            )?
            .query_row([name], topic_from_row)
            .optional()
        })
    }

    pub fn topics(&self) -> MetaResult<Vec<TopicRow>> {
        self.read(|c| {
            c.prepare_cached(
                "SELECT name, partitions, retention_ms, retention_bytes, created_at_ms, incarnation
                 FROM topics ORDER BY name",
            )?
            .query_map([], topic_from_row)?
            .collect()
        })
    }

    /// Deletes a topic with its partitions, segment rows and group offsets;
    /// returns the segment rows so the caller can delete their objects
    /// (an object left behind by a crash is an orphan that recovery collects).
    pub fn delete_topic(&self, name: &str) -> MetaResult<Vec<SegmentRow>> {
        self.write(|tx| {
            let segments = tx
                .prepare_cached(&format!(
                    "SELECT {SEGMENT_COLUMNS} FROM segments WHERE topic = ?1 ORDER BY partition, base_offset"
                ))?
                .query_map([name], segment_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let deleted = tx.execute("DELETE FROM topics WHERE name = ?1", [name])?;
            if deleted == 0 {
                return Err(MetaError::NotFound(format!("topic {name:?} does not exist")));
            }
            Ok(segments)
        })
    }

    pub fn partition(&self, topic: &str, partition: u32) -> MetaResult<Option<PartitionRow>> {
        self.read(|c| {
            c.prepare_cached(
                "SELECT topic, partition, low_watermark, next_offset
                 FROM partitions WHERE topic = ?1 AND partition = ?2",
            )?
            .query_row(params![topic, partition], partition_from_row)
            .optional()
        })
    }

    pub fn partition_usage(&self, topic: &str, partition: u32) -> MetaResult<PartitionUsage> {
        self.read(|c| {
            c.prepare_cached(
                "SELECT COUNT(*), COALESCE(SUM(size_bytes), 0)
                 FROM segments WHERE topic = ?1 AND partition = ?2",
            )?
            .query_row(params![topic, partition], |r| {
                Ok(PartitionUsage {
                    segment_count: r.get(0)?,
                    stored_bytes: r.get(1)?,
                })
            })
        })
    }
}
