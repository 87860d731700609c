//! Metadata in SQLite: topics, partitions and their watermarks, committed
//! segments, consumer-group offsets.
//!
//! One writer connection (behind a mutex) and a small pool of reader
//! connections; WAL journal mode lets readers run while the writer commits.
//! `synchronous = FULL`: a segment commit is the point after which the
//! engine trims its WAL, so it must survive power loss, not only a crash.

mod schema;

pub use schema::{current_version as schema_version, MIGRATIONS};

use rusqlite::{
    params, Connection, OpenFlags, OptionalExtension, Row, Transaction, TransactionBehavior,
};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Debug)]
pub enum MetaError {
    Sqlite {
        context: &'static str,
        source: rusqlite::Error,
    },
    NotFound(String),
    AlreadyExists(String),
    /// A write would break an invariant (e.g. a segment that does not start at
    /// the partition's committed high watermark).
    Conflict(String),
    /// The database was written by a newer build.
    SchemaTooNew {
        found: i64,
        supported: i64,
    },
}

impl fmt::Display for MetaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MetaError::Sqlite { context, source } => write!(f, "sqlite ({context}): {source}"),
            MetaError::NotFound(m) | MetaError::AlreadyExists(m) | MetaError::Conflict(m) => {
                f.write_str(m)
            }
            MetaError::SchemaTooNew { found, supported } => write!(
                f,
                "metadata schema version {found} is newer than this build supports ({supported}); upgrade streamhoused"
            ),
        }
    }
}

impl std::error::Error for MetaError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            MetaError::Sqlite { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl From<rusqlite::Error> for MetaError {
    fn from(source: rusqlite::Error) -> Self {
        MetaError::Sqlite {
            context: "query",
            source,
        }
    }
}

pub type MetaResult<T> = Result<T, MetaError>;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicRow {
    pub name: String,
    pub partitions: u32,
    /// 0 = keep forever.
    pub retention_ms: i64,
    /// Per partition; 0 = unlimited.
    pub retention_bytes: i64,
    pub created_at_ms: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionRow {
    pub topic: String,
    pub partition: u32,
    pub low_watermark: i64,
    /// Committed high watermark: one past the last committed segment.
    pub next_offset: i64,
}

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

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupOffset {
    pub group: String,
    pub topic: String,
    pub partition: u32,
    pub offset: i64,
    pub metadata: String,
    pub updated_at_ms: i64,
}

/// Segment count and bytes of one partition's committed segments.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PartitionUsage {
    pub segment_count: i64,
    pub stored_bytes: i64,
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

const READER_POOL_MAX: usize = 8;
const SEGMENT_COLUMNS: &str =
    "topic, partition, base_offset, last_offset, record_count, size_bytes, \
     min_timestamp_ms, max_timestamp_ms, object_key, created_at_ms";

fn segment_from_row(r: &Row<'_>) -> rusqlite::Result<SegmentRow> {
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

fn topic_from_row(r: &Row<'_>) -> rusqlite::Result<TopicRow> {
    Ok(TopicRow {
        name: r.get(0)?,
        partitions: r.get(1)?,
        retention_ms: r.get(2)?,
        retention_bytes: r.get(3)?,
        created_at_ms: r.get(4)?,
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

fn group_from_row(r: &Row<'_>) -> rusqlite::Result<GroupOffset> {
    Ok(GroupOffset {
        group: r.get(0)?,
        topic: r.get(1)?,
        partition: r.get(2)?,
        offset: r.get(3)?,
        metadata: r.get(4)?,
        updated_at_ms: r.get(5)?,
    })
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every write runs inside a transaction that rolls back on drop, so a
    // panic under the lock cannot leave the database half-updated.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The metadata store. Safe to share between threads.
pub struct MetaStore {
    path: PathBuf,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
}

impl fmt::Debug for MetaStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MetaStore({})", self.path.display())
    }
}

fn configure(conn: &Connection) -> MetaResult<()> {
    let ctx = |source| MetaError::Sqlite {
        context: "configure connection",
        source,
    };
    conn.busy_timeout(Duration::from_secs(10)).map_err(ctx)?;
    conn.pragma_update(None, "foreign_keys", "ON")
        .map_err(ctx)?;
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(ctx)?;
    Ok(())
}

impl MetaStore {
    /// Opens (creating and migrating if needed) the database at `path`.
    pub fn open(path: impl AsRef<Path>) -> MetaResult<Self> {
        let path = path.as_ref().to_path_buf();
        let mut conn = Connection::open(&path).map_err(|source| MetaError::Sqlite {
            context: "open database",
            source,
        })?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(|source| MetaError::Sqlite {
                context: "enable WAL journal mode",
                source,
            })?;
        if !mode.eq_ignore_ascii_case("wal") {
            log::warn!("metadata: journal mode is {mode}, not WAL");
        }
        configure(&conn)?;
        let (from, to) = schema::migrate(&mut conn)?;
        if from != to {
            log::info!("metadata schema migrated from version {from} to {to}");
        }
        Ok(MetaStore {
            path,
            writer: Mutex::new(conn),
            readers: Mutex::new(Vec::new()),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` on a pooled read-only connection.
    fn read<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> MetaResult<T> {
        let pooled = lock(&self.readers).pop();
        let conn = match pooled {
            Some(c) => c,
            None => {
                let c = Connection::open_with_flags(
                    &self.path,
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )
                .map_err(|source| MetaError::Sqlite {
                    context: "open reader",
                    source,
                })?;
                configure(&c)?;
                c
            }
        };
        let result = f(&conn);
        let mut pool = lock(&self.readers);
        if pool.len() < READER_POOL_MAX {
            pool.push(conn);
        }
        Ok(result?)
    }

    /// Runs `f` in an IMMEDIATE transaction on the writer connection and
    /// commits if it returns Ok.
    fn write<T>(&self, f: impl FnOnce(&Transaction<'_>) -> MetaResult<T>) -> MetaResult<T> {
        let mut conn = lock(&self.writer);
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let value = f(&tx)?;
        tx.commit().map_err(|source| MetaError::Sqlite {
            context: "commit",
            source,
        })?;
        Ok(value)
    }

    // ---------------------------------------------------------------- topics

    /// Creates a topic and its partitions (low = next = 0) in one transaction.
    pub fn create_topic(&self, topic: &TopicRow) -> MetaResult<()> {
        self.write(|tx| {
            let inserted = tx.execute(
                "INSERT INTO topics (name, partitions, retention_ms, retention_bytes, created_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT(name) DO NOTHING",
                params![
                    topic.name,
                    topic.partitions,
                    topic.retention_ms,
                    topic.retention_bytes,
                    topic.created_at_ms
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

    pub fn topic(&self, name: &str) -> MetaResult<Option<TopicRow>> {
        self.read(|c| {
            c.prepare_cached(
                "SELECT name, partitions, retention_ms, retention_bytes, created_at_ms
                 FROM topics WHERE name = ?1",
            )?
            .query_row([name], topic_from_row)
            .optional()
        })
    }

    pub fn topics(&self) -> MetaResult<Vec<TopicRow>> {
        self.read(|c| {
            c.prepare_cached(
                "SELECT name, partitions, retention_ms, retention_bytes, created_at_ms
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

    // ---------------------------------------------------------------- partitions

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

    pub fn partitions(&self, topic: &str) -> MetaResult<Vec<PartitionRow>> {
        self.read(|c| {
            c.prepare_cached(
                "SELECT topic, partition, low_watermark, next_offset
                 FROM partitions WHERE topic = ?1 ORDER BY partition",
            )?
            .query_map([topic], partition_from_row)?
            .collect()
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

    // ---------------------------------------------------------------- segments

    /// Records a sealed, uploaded segment and advances the partition's
    /// committed high watermark to `last_offset + 1`, in one transaction.
    /// The segment must start exactly at the current committed high
    /// watermark: a gap or an overlap is a `Conflict`, never written.
    pub fn commit_segment(&self, seg: &SegmentRow) -> MetaResult<()> {
        self.write(|tx| {
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
            tx.prepare_cached(
                "UPDATE partitions SET next_offset = ?3 WHERE topic = ?1 AND partition = ?2",
            )?
            .execute(params![seg.topic, seg.partition, seg.last_offset + 1])?;
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

    /// The first segment (by offset) at or after `offset`: for reads that
    /// start in a gap left by retention.
    pub fn segment_at_or_after(
        &self,
        topic: &str,
        partition: u32,
        offset: i64,
    ) -> MetaResult<Option<SegmentRow>> {
        self.read(|c| {
            c.prepare_cached(&format!(
                "SELECT {SEGMENT_COLUMNS} FROM segments
                 WHERE topic = ?1 AND partition = ?2 AND last_offset >= ?3
                 ORDER BY base_offset LIMIT 1"
            ))?
            .query_row(params![topic, partition, offset], segment_from_row)
            .optional()
        })
    }

    /// The first segment whose max timestamp is >= `timestamp_ms`.
    pub fn segment_for_timestamp(
        &self,
        topic: &str,
        partition: u32,
        timestamp_ms: i64,
    ) -> MetaResult<Option<SegmentRow>> {
        self.read(|c| {
            c.prepare_cached(&format!(
                "SELECT {SEGMENT_COLUMNS} FROM segments
                 WHERE topic = ?1 AND partition = ?2 AND max_timestamp_ms >= ?3
                 ORDER BY base_offset LIMIT 1"
            ))?
            .query_row(params![topic, partition, timestamp_ms], segment_from_row)
            .optional()
        })
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

    /// Removes the segment rows wholly below `new_low` and raises the low
    /// watermark to `new_low`, in one transaction. Returns the rows removed.
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
            tx.prepare_cached(
                "UPDATE partitions SET low_watermark = MAX(low_watermark, ?3)
                 WHERE topic = ?1 AND partition = ?2",
            )?
            .execute(params![topic, partition, new_low])?;
            Ok(dropped)
        })
    }

    // ---------------------------------------------------------------- groups

    pub fn commit_group_offset(&self, o: &GroupOffset) -> MetaResult<()> {
        self.write(|tx| {
            let result = tx
                .prepare_cached(
                    r#"INSERT INTO consumer_offsets (group_name, topic, partition, "offset", metadata, updated_at_ms)
                       VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                       ON CONFLICT (group_name, topic, partition) DO UPDATE SET
                         "offset" = excluded."offset", metadata = excluded.metadata,
                         updated_at_ms = excluded.updated_at_ms"#,
                )?
                .execute(params![o.group, o.topic, o.partition, o.offset, o.metadata, o.updated_at_ms]);
            match result {
                Ok(_) => Ok(()),
                Err(rusqlite::Error::SqliteFailure(e, _))
                    if e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY =>
                {
                    Err(MetaError::NotFound(format!(
                        "partition {} of topic {:?} does not exist",
                        o.partition, o.topic
                    )))
                }
                Err(e) => Err(e.into()),
            }
        })
    }

    pub fn group_offset(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
    ) -> MetaResult<Option<GroupOffset>> {
        self.read(|c| {
            c.prepare_cached(
                r#"SELECT group_name, topic, partition, "offset", metadata, updated_at_ms
                   FROM consumer_offsets WHERE group_name = ?1 AND topic = ?2 AND partition = ?3"#,
            )?
            .query_row(params![group, topic, partition], group_from_row)
            .optional()
        })
    }

    /// Every committed offset of a group, by topic and partition.
    pub fn group_offsets(&self, group: &str) -> MetaResult<Vec<GroupOffset>> {
        self.read(|c| {
            c.prepare_cached(
                r#"SELECT group_name, topic, partition, "offset", metadata, updated_at_ms
                   FROM consumer_offsets WHERE group_name = ?1 ORDER BY topic, partition"#,
            )?
            .query_map([group], group_from_row)?
            .collect()
        })
    }

    /// Names of all groups with at least one committed offset.
    pub fn groups(&self) -> MetaResult<Vec<String>> {
        self.read(|c| {
            c.prepare_cached(
                "SELECT DISTINCT group_name FROM consumer_offsets ORDER BY group_name",
            )?
            .query_map([], |r| r.get(0))?
            .collect()
        })
    }
}

#[cfg(test)]
mod tests;
