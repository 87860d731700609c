//! Garbage collection at start-up: objects no metadata row names, and WAL
//! folders of topics metadata no longer knows.

use crate::context::Context;
use crate::error::Result;
use crate::layout;
use crate::meta::TopicRow;
use crate::util::fs::remove_dir_all_if_exists;
use std::collections::HashSet;

/// Deletes objects under `topics/` that no metadata row names: left by a
/// crash between upload and commit, or by retention or topic deletion.
/// Runs before any uploader starts, so an object without a row is garbage,
/// never an upload about to be committed.
pub(super) fn collect_orphans(ctx: &Context) -> Result<()> {
    let known: HashSet<String> = ctx.meta.all_segment_keys()?.into_iter().collect();
    // One attempt per call (no retry loop): start-up should not wait out a
    // dead store; the next start tries again.
    let store = ctx.store.inner();
    let mut removed = 0;
    for obj in store.list(layout::SEGMENTS_PREFIX)? {
        if !known.contains(&obj.key) {
            store.delete(&obj.key)?;
            removed += 1;
        }
    }
    if removed > 0 {
        log::info!("removed {removed} orphan objects");
    }
    Ok(())
}

/// WAL folders of topics that metadata no longer knows (a crash during a
/// deletion) hold nothing anyone may read: remove them.
pub(super) fn remove_stale_wal_dirs(ctx: &Context, topics: &[TopicRow]) -> Result<()> {
    let root = layout::wal_root(&ctx.config.data_dir);
    let Ok(entries) = std::fs::read_dir(&root) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !topics.iter().any(|t| t.name == name) {
            log::info!("removing the WAL of deleted topic {name:?}");
            remove_dir_all_if_exists(&entry.path())?;
        }
    }
    Ok(())
}
