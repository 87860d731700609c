//! Metadata in SQLite: topics, partitions and their watermarks, committed
//! segments, consumer-group offsets.
//!
//! One writer connection (behind a mutex) and a small pool of reader
//! connections; WAL journal mode lets readers run while the writer commits.
//! `synchronous = FULL`: a segment commit is the point after which the
//! engine trims its WAL, so it must survive power loss, not only a crash.
//!
//! One file per table family: [`topics`] (topics, partitions, the
//! incarnation counter), [`segments`], [`groups`], [`garbage`],
//! [`producers`]; [`schema`] holds the migrations.

mod error;
mod garbage;
mod groups;
mod producers;
mod schema;
mod segments;
mod topics;

pub use error::{MetaError, MetaResult};
pub use groups::GroupOffset;
pub use producers::ProducerRow;
#[cfg(test)]
use schema::{current_version as schema_version, MIGRATIONS};
pub use segments::SegmentRow;
pub use topics::{PartitionRow, PartitionUsage, TopicRow};

use crate::util::sync::lock;
use rusqlite::{Connection, OpenFlags, OptionalExtension, Transaction, TransactionBehavior};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

const READER_POOL_MAX: usize = 8;

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

    /// Runs `f` on a pooled read-only connection.
    /// A setting of the data directory, if set.
    pub fn setting(&self, name: &str) -> MetaResult<Option<String>> {
        self.read(|c| {
            c.prepare_cached("SELECT value FROM settings WHERE name = ?1")?
                .query_row([name], |r| r.get(0))
                .optional()
        })
    }

    pub fn set_setting(&self, name: &str, value: &str) -> MetaResult<()> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO settings (name, value) VALUES (?1, ?2)
                 ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                [name, value],
            )?;
            Ok(())
        })
    }

    pub(crate) fn read<T>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> MetaResult<T> {
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
    pub(crate) fn write<T>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> MetaResult<T>,
    ) -> MetaResult<T> {
        let mut conn = lock(&self.writer);
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let value = f(&tx)?;
        tx.commit().map_err(|source| MetaError::Sqlite {
            context: "commit",
            source,
        })?;
        Ok(value)
    }
}

#[cfg(test)]
mod tests;
