//! Idempotent producers: the ids and epochs InitProducer handed out, and
//! each partition's committed producer table (`partitions.producer_state`,
//! written with every segment commit, see `segments`).

use super::{MetaResult, MetaStore};
use rusqlite::{params, OptionalExtension};

/// A producer id InitProducer handed out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProducerRow {
    pub id: u64,
    pub name: Option<String>,
    pub epoch: u32,
    pub issued_at_ms: i64,
}

impl MetaStore {
    /// Records an id and epoch handed out (a named producer's row is
    /// replaced by its new epoch).
    pub fn issue_producer(&self, row: &ProducerRow) -> MetaResult<()> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO producers (id, name, epoch, issued_at_ms) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (id) DO UPDATE SET epoch = MAX(epoch, excluded.epoch),
                     issued_at_ms = excluded.issued_at_ms",
                params![row.id as i64, row.name, row.epoch, row.issued_at_ms],
            )?;
            Ok(())
        })
    }

    pub fn named_producer(&self, name: &str) -> MetaResult<Option<ProducerRow>> {
        self.read(|c| {
            c.prepare_cached("SELECT id, name, epoch, issued_at_ms FROM producers WHERE name = ?1")?
                .query_row([name], producer_from_row)
                .optional()
        })
    }

    /// Every named producer, and every anonymous id handed out at or after
    /// `since_ms`.
    pub fn producers_issued_since(&self, since_ms: i64) -> MetaResult<Vec<ProducerRow>> {
        self.read(|c| {
            c.prepare_cached(
                "SELECT id, name, epoch, issued_at_ms FROM producers
                 WHERE name IS NOT NULL OR issued_at_ms >= ?1",
            )?
            .query_map([since_ms], producer_from_row)?
            .collect()
        })
    }

    /// The highest id ever recorded (0 if none).
    pub fn max_producer_id(&self) -> MetaResult<u64> {
        self.read(|c| {
            c.query_row("SELECT COALESCE(MAX(id), 0) FROM producers", [], |r| {
                r.get::<_, i64>(0)
            })
        })
        .map(|v| v as u64)
    }

    /// Named producers whose last InitProducer was before `cutoff_ms`.
    pub fn named_producers_issued_before(&self, cutoff_ms: i64) -> MetaResult<Vec<ProducerRow>> {
        self.read(|c| {
            c.prepare_cached(
                "SELECT id, name, epoch, issued_at_ms FROM producers
                 WHERE name IS NOT NULL AND issued_at_ms < ?1",
            )?
            .query_map([cutoff_ms], producer_from_row)?
            .collect()
        })
    }

    /// Forgets one producer id (an expired named producer).
    pub fn forget_producer(&self, id: u64) -> MetaResult<()> {
        self.write(|tx| {
            tx.execute("DELETE FROM producers WHERE id = ?1", [id as i64])?;
            Ok(())
        })
    }

    /// Forgets anonymous ids issued before `cutoff_ms` (named rows stay:
    /// the name keeps its id). Returns how many.
    pub fn forget_anonymous_producers(&self, cutoff_ms: i64) -> MetaResult<usize> {
        self.write(|tx| {
            Ok(tx.execute(
                "DELETE FROM producers WHERE name IS NULL AND issued_at_ms < ?1",
                [cutoff_ms],
            )?)
        })
    }

    /// The partition's committed producer table (`producer::snapshot`
    /// bytes), if it has one.
    pub fn producer_state(&self, topic: &str, partition: u32) -> MetaResult<Option<Vec<u8>>> {
        self.read(|c| {
            c.prepare_cached(
                "SELECT producer_state FROM partitions WHERE topic = ?1 AND partition = ?2",
            )?
            .query_row(params![topic, partition], |r| {
                r.get::<_, Option<Vec<u8>>>(0)
            })
            .optional()
            // Empty bytes: committed with no producers.
            .map(|state| state.flatten().filter(|b| !b.is_empty()))
        })
    }
}

fn producer_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ProducerRow> {
    Ok(ProducerRow {
        id: r.get::<_, i64>(0)? as u64,
        name: r.get(1)?,
        epoch: r.get(2)?,
        issued_at_ms: r.get(3)?,
    })
}
