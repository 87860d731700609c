//! Consumer-group offsets.

use super::{MetaError, MetaResult, MetaStore};
use rusqlite::{params, OptionalExtension, Row};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupOffset {
    pub group: String,
    pub topic: String,
    pub partition: u32,
    pub offset: i64,
    pub metadata: String,
    pub updated_at_ms: i64,
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

impl MetaStore {
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

    /// Every committed offset of every group (the bucket checkpoint).
    pub fn all_group_offsets(&self) -> MetaResult<Vec<GroupOffset>> {
        self.read(|c| {
            c.prepare_cached(
                r#"SELECT group_name, topic, partition, "offset", metadata, updated_at_ms
                   FROM consumer_offsets ORDER BY group_name, topic, partition"#,
            )?
            .query_map([], group_from_row)?
            .collect()
        })
    }

    /// Whether `group` has a committed offset.
    pub fn group_exists(&self, group: &str) -> MetaResult<bool> {
        self.read(|c| {
            c.prepare_cached("SELECT 1 FROM consumer_offsets WHERE group_name = ?1 LIMIT 1")?
                .query_row([group], |_| Ok(()))
                .optional()
                .map(|r| r.is_some())
        })
    }

    /// Groups with at least one committed offset.
    pub fn group_count(&self) -> MetaResult<usize> {
        self.read(|c| {
            c.query_row(
                "SELECT COUNT(DISTINCT group_name) FROM consumer_offsets",
                [],
                |r| r.get::<_, i64>(0),
            )
        })
        .map(|n| n as usize)
    }

    /// Removes every offset of `group`; returns how many there were.
    pub fn delete_group(&self, group: &str) -> MetaResult<usize> {
        self.write(|tx| {
            Ok(tx.execute(
                "DELETE FROM consumer_offsets WHERE group_name = ?1",
                [group],
            )?)
        })
    }

    /// Removes groups whose newest commit is older than `cutoff_ms`;
    /// returns their names.
    pub fn expire_groups(&self, cutoff_ms: i64) -> MetaResult<Vec<String>> {
        self.write(|tx| {
            let names: Vec<String> = tx
                .prepare_cached(
                    "SELECT group_name FROM consumer_offsets GROUP BY group_name
                     HAVING MAX(updated_at_ms) < ?1",
                )?
                .query_map([cutoff_ms], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            for g in &names {
                tx.execute("DELETE FROM consumer_offsets WHERE group_name = ?1", [g])?;
            }
            Ok(names)
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
