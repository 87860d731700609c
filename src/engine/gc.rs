//! Garbage collection on evidence only: objects that metadata positively
//! marks as garbage (segments past retention), and the objects of topics
//! whose tombstone is in the bucket (see `rebuild`). An object is never
//! deleted because local metadata does not know it.

use crate::context::Context;
use crate::error::Result;
use crate::layout;
use crate::meta::TopicRow;
use crate::object_store::ObjectStore;
use crate::util::fs::remove_dir_all_if_exists;

/// How many marked objects one pass deletes before forgetting them.
const BATCH: usize = 1000;

/// Deletes the objects marked as garbage. A delete that fails leaves its
/// key marked for the next pass.
pub(super) fn collect_garbage(ctx: &Context) -> Result<usize> {
    let mut removed = 0;
    loop {
        let keys = ctx.meta.garbage(BATCH)?;
        if keys.is_empty() {
            return Ok(removed);
        }
        // A fenced node's metadata may be stale: it deletes nothing (one
        // read of the owner record per batch). In a cluster what is marked
        // stays garbage whoever leads: segments retention dropped by their
        // leader, and objects an adoption found fenced or superseded.
        if ctx.cluster.is_none() {
            ctx.owner
                .confirm(&ctx.store)
                .map_err(super::ownership::ownership_refusal)?;
        }
        for key in &keys {
            ctx.store.delete(key)?;
        }
        ctx.meta.forget_garbage(&keys)?;
        removed += keys.len();
        if keys.len() < BATCH {
            return Ok(removed);
        }
    }
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
