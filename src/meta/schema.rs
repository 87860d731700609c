//! The metadata schema and its forward migrations.
//!
//! `PRAGMA user_version` holds the number of migrations applied. A migration
//! is appended, never edited: a database at version N runs `MIGRATIONS[N..]`,
//! each in its own transaction together with the version bump.

use rusqlite::Connection;

pub const MIGRATIONS: &[&str] = &[
    // 1: topics, partitions, segments, consumer-group offsets.
    r#"
    CREATE TABLE topics (
        name            TEXT    NOT NULL PRIMARY KEY,
        partitions      INTEGER NOT NULL CHECK (partitions > 0),
        retention_ms    INTEGER NOT NULL DEFAULT 0 CHECK (retention_ms >= 0),
        retention_bytes INTEGER NOT NULL DEFAULT 0 CHECK (retention_bytes >= 0),
        created_at_ms   INTEGER NOT NULL
    ) WITHOUT ROWID;

    -- next_offset is the committed high watermark: one past the last offset
    -- of the last committed segment. Records beyond it live in the WAL.
    CREATE TABLE partitions (
        topic         TEXT    NOT NULL REFERENCES topics(name) ON DELETE CASCADE,
        partition     INTEGER NOT NULL CHECK (partition >= 0),
        low_watermark INTEGER NOT NULL DEFAULT 0,
        next_offset   INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (topic, partition),
        CHECK (low_watermark <= next_offset)
    ) WITHOUT ROWID;

    CREATE TABLE segments (
        topic            TEXT    NOT NULL,
        partition        INTEGER NOT NULL,
        base_offset      INTEGER NOT NULL,
        last_offset      INTEGER NOT NULL,
        record_count     INTEGER NOT NULL CHECK (record_count > 0),
        size_bytes       INTEGER NOT NULL CHECK (size_bytes > 0),
        min_timestamp_ms INTEGER NOT NULL,
        max_timestamp_ms INTEGER NOT NULL,
        object_key       TEXT    NOT NULL UNIQUE,
        created_at_ms    INTEGER NOT NULL,
        PRIMARY KEY (topic, partition, base_offset),
        FOREIGN KEY (topic, partition) REFERENCES partitions(topic, partition) ON DELETE CASCADE,
        CHECK (base_offset <= last_offset)
    ) WITHOUT ROWID;

    CREATE TABLE consumer_offsets (
        group_name    TEXT    NOT NULL,
        topic         TEXT    NOT NULL,
        partition     INTEGER NOT NULL,
        "offset"      INTEGER NOT NULL,
        metadata      TEXT    NOT NULL DEFAULT '',
        updated_at_ms INTEGER NOT NULL,
        PRIMARY KEY (group_name, topic, partition),
        FOREIGN KEY (topic, partition) REFERENCES partitions(topic, partition) ON DELETE CASCADE
    ) WITHOUT ROWID;
    "#,
    // 2: topic incarnations from a counter instead of the creation time (a
    // topic re-created within the same millisecond, or after the clock
    // stepped back, reused its predecessor's object keys). Existing topics
    // keep the incarnation their keys already use (their creation time);
    // the counter starts above all of them.
    r#"
    ALTER TABLE topics ADD COLUMN incarnation INTEGER NOT NULL DEFAULT 0;
    UPDATE topics SET incarnation = created_at_ms;
    CREATE TABLE counters (
        name  TEXT    NOT NULL PRIMARY KEY,
        value INTEGER NOT NULL
    ) WITHOUT ROWID;
    INSERT INTO counters (name, value)
        SELECT 'topic_incarnation', COALESCE(MAX(incarnation), 0) FROM topics;
    "#,
    // 3: objects positively marked as garbage; collection deletes only
    // these (absence from this database is never evidence).
    r#"
    CREATE TABLE garbage (
        object_key   TEXT    NOT NULL PRIMARY KEY,
        reason       TEXT    NOT NULL,
        marked_at_ms INTEGER NOT NULL
    ) WITHOUT ROWID;
    "#,
    // 4: facts about the data directory itself (which store it belongs to).
    r#"
    CREATE TABLE settings (
        name  TEXT NOT NULL PRIMARY KEY,
        value TEXT NOT NULL
    ) WITHOUT ROWID;
    "#,
    // 5: idempotent producers: each partition's producer table as of its
    // committed offset (written with every segment commit), and the ids and
    // epochs InitProducer handed out.
    r#"
    ALTER TABLE partitions ADD COLUMN producer_state BLOB;
    CREATE TABLE producers (
        id           INTEGER NOT NULL PRIMARY KEY CHECK (id > 0),
        name         TEXT    UNIQUE,
        epoch        INTEGER NOT NULL CHECK (epoch >= 0),
        issued_at_ms INTEGER NOT NULL
    );
    "#,
];

/// The schema version this build writes.
pub fn current_version() -> i64 {
    MIGRATIONS.len() as i64
}

pub fn user_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("PRAGMA user_version", [], |r| r.get(0))
}

/// Applies the migrations `conn` has not seen yet. Returns the versions
/// before and after.
pub fn migrate(conn: &mut Connection) -> Result<(i64, i64), super::MetaError> {
    let found = user_version(conn)?;
    if found > current_version() {
        return Err(super::MetaError::SchemaTooNew {
            found,
            supported: current_version(),
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        // PRAGMA takes no bound parameters; the value is our own integer.
        tx.execute_batch(&format!("PRAGMA user_version = {}", i + 1))?;
        tx.commit()?;
    }
    Ok((found, user_version(conn)?))
}
