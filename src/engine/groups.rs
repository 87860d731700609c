//! Consumer-group offsets: kept in metadata, and checkpointed to the bucket
//! (`groups/offsets`) every [`CHECKPOINT_INTERVAL`] when they changed, and
//! at shutdown, so a node rebuilt from the bucket gets them back. A node
//! that dies loses at most the commits of the last interval.

use super::Engine;
use crate::bucket;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::layout;
use crate::meta::GroupOffset;
use crate::object_store::ObjectStore;
use crate::util::clock::now_ms;
use crate::util::sync::lock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Longest metadata string a committed offset may carry (Kafka's
/// `offset.metadata.max.bytes` default).
pub const MAX_COMMIT_METADATA: usize = 4096;

/// How often changed group offsets are written to the bucket.
pub(super) const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(5);

/// Which commits the bucket has seen.
#[derive(Debug, Default)]
pub(super) struct GroupCheckpoint {
    /// Commits so far.
    changes: AtomicU64,
    /// `changes` as of the last checkpoint written; the lock also keeps
    /// two checkpoints from racing.
    written: Mutex<u64>,
}

impl Engine {
    pub fn commit_offset(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
        offset: i64,
        metadata: &str,
    ) -> Result<()> {
        validate_group(group)?;
        self.partition(topic, partition)?;
        if offset < 0 {
            return Err(Error::InvalidArgument(format!(
                "offset {offset} is negative; commit the next offset to read (>= 0)"
            )));
        }
        if metadata.len() > MAX_COMMIT_METADATA {
            return Err(Error::InvalidArgument(format!(
                "commit metadata is {} bytes; the limit is {MAX_COMMIT_METADATA}",
                metadata.len()
            )));
        }
        self.ctx.meta.commit_group_offset(&GroupOffset {
            group: group.to_string(),
            topic: topic.to_string(),
            partition,
            offset,
            metadata: metadata.to_string(),
            updated_at_ms: now_ms(),
        })?;
        self.groups.changes.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    pub fn committed_offset(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
    ) -> Result<Option<GroupOffset>> {
        validate_group(group)?;
        self.partition(topic, partition)?;
        Ok(self.ctx.meta.group_offset(group, topic, partition)?)
    }

    pub fn group_offsets(&self, group: &str) -> Result<Vec<GroupOffset>> {
        validate_group(group)?;
        Ok(self.ctx.meta.group_offsets(group)?)
    }

    pub fn groups(&self) -> Result<Vec<String>> {
        Ok(self.ctx.meta.groups()?)
    }

    /// Writes every group offset to the bucket if any changed since the
    /// last checkpoint. Failures are logged; the next pass tries again.
    pub fn checkpoint_groups(&self) {
        checkpoint(&self.ctx, &self.groups);
    }
}

/// See [`Engine::checkpoint_groups`]; also run at shutdown on a thread of
/// its own, so a store that hangs cannot hold the shutdown.
pub(super) fn checkpoint(ctx: &Context, state: &GroupCheckpoint) {
    let mut written = lock(&state.written);
    let changes = state.changes.load(Ordering::SeqCst);
    if changes == *written {
        return;
    }
    let result = ctx
        .meta
        .all_group_offsets()
        .map_err(Error::from)
        .and_then(|all| {
            let bytes = bucket::encode_group_offsets(&all, now_ms());
            Ok(ctx.store.put(layout::GROUP_OFFSETS_KEY, &bytes)?)
        });
    match result {
        Ok(()) => *written = changes,
        Err(e) => log::warn!("group offsets not checkpointed to the bucket: {e}"),
    }
}

/// Group names: 1-255 bytes of UTF-8 without control characters.
fn validate_group(group: &str) -> Result<()> {
    if group.is_empty() || group.len() > 255 {
        return Err(Error::InvalidArgument(format!(
            "group name must be 1-255 bytes, got {}",
            group.len()
        )));
    }
    if group.chars().any(char::is_control) {
        return Err(Error::InvalidArgument(
            "group name must not contain control characters".to_string(),
        ));
    }
    Ok(())
}
