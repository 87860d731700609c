//! Objects that metadata positively marks as garbage (segments past
//! retention, ...). Collection deletes exactly these, never an object
//! merely because local metadata does not know it.

use super::{MetaResult, MetaStore};
use crate::util::clock::now_ms;
use rusqlite::{params, Transaction};

/// Marks `key` for deletion, inside the caller's transaction.
pub(super) fn mark_garbage(tx: &Transaction<'_>, key: &str, reason: &str) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO garbage (object_key, reason, marked_at_ms) VALUES (?1, ?2, ?3)
         ON CONFLICT (object_key) DO NOTHING",
    )?
    .execute(params![key, reason, now_ms()])?;
    Ok(())
}

impl MetaStore {
    /// Marks objects as garbage (superseded segments found by a rebuild).
    pub fn mark_garbage(&self, keys: &[String], reason: &str) -> MetaResult<()> {
        self.write(|tx| {
            for k in keys {
                mark_garbage(tx, k, reason)?;
            }
            Ok(())
        })
    }

    /// Keys marked as garbage and not yet collected, oldest first.
    pub fn garbage(&self, limit: usize) -> MetaResult<Vec<String>> {
        self.read(|c| {
            c.prepare_cached("SELECT object_key FROM garbage ORDER BY marked_at_ms LIMIT ?1")?
                .query_map([limit as i64], |r| r.get(0))?
                .collect()
        })
    }

    /// Forgets garbage that has been deleted.
    pub fn forget_garbage(&self, keys: &[String]) -> MetaResult<()> {
        self.write(|tx| {
            let mut stmt = tx.prepare_cached("DELETE FROM garbage WHERE object_key = ?1")?;
            for k in keys {
                stmt.execute([k])?;
            }
            Ok(())
        })
    }
}
