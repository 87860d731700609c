//! Consumer-group offsets: kept in metadata, and checkpointed to the bucket
//! (`groups/offsets`) every [`CHECKPOINT_INTERVAL`] when they changed, and
//! at shutdown, so a node rebuilt from the bucket gets them back. A node
//! that dies loses at most the commits of the last interval. Each
//! checkpoint is stamped with the writer's owner epoch and a sequence; a
//! rebuild restores a checkpoint's offsets over local ones only when its
//! stamp is newer than the last one this node wrote or restored, and
//! clamps every offset to its partition's log once the partitions are open.

use super::{Engine, Topic};
use crate::bucket::{self, CheckpointStamp};
use crate::context::Context;
use crate::error::{Error, Result};
use crate::layout;
use crate::meta::GroupOffset;
use crate::object_store::ObjectStore;
use crate::partition::{fenced_error, Status};
use crate::util::clock::now_ms;
use crate::util::sync::lock;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
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
        if let Some(owner) = self.ctx.owner.fenced() {
            return Err(fenced_error(&owner));
        }
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

    /// Committed offsets past their partition's log (commits of records
    /// that only a lost WAL held) would make the group skip the records
    /// written next: each is brought down to the high watermark, and the
    /// log says so. Partitions that are not open are left alone (their log
    /// may be longer than what this start could read).
    pub(super) fn clamp_group_offsets(&self, topics: &HashMap<String, Arc<Topic>>) -> Result<()> {
        for o in self.ctx.meta.all_group_offsets()? {
            let Some(p) = topics
                .get(&o.topic)
                .and_then(|t| t.partitions.get(o.partition as usize))
            else {
                continue;
            };
            let high = {
                let view = p.shared.view();
                if view.status != Status::Open || o.offset <= view.high_watermark {
                    continue;
                }
                view.high_watermark
            };
            log::warn!(
                "group {:?}: committed offset {} of {}/{} is past the partition's log, which ends at {high} \
                 (records only a lost write-ahead log held); the group resumes at {high}",
                o.group,
                o.offset,
                o.topic,
                o.partition
            );
            self.ctx.meta.commit_group_offset(&GroupOffset {
                offset: high,
                updated_at_ms: now_ms(),
                ..o
            })?;
            self.groups.changes.fetch_add(1, Ordering::SeqCst);
        }
        Ok(())
    }
}

/// Metadata setting: the stamp of the last checkpoint this node wrote or
/// restored.
pub(super) const STAMP_SETTING: &str = "group_checkpoint_stamp";

pub(super) fn local_stamp(ctx: &Context) -> Result<Option<CheckpointStamp>> {
    Ok(ctx
        .meta
        .setting(STAMP_SETTING)?
        .as_deref()
        .and_then(CheckpointStamp::from_setting))
}

/// See [`Engine::checkpoint_groups`]; also run at shutdown on a thread of
/// its own, so a store that hangs cannot hold the shutdown.
pub(super) fn checkpoint(ctx: &Context, state: &GroupCheckpoint) {
    let mut written = lock(&state.written);
    let changes = state.changes.load(Ordering::SeqCst);
    if changes == *written {
        return;
    }
    // A node that no longer owns the prefix must not replace the new
    // owner's checkpoint.
    if let Err(e) = ctx.owner.confirm_recent(&ctx.store) {
        log::warn!("group offsets not checkpointed to the bucket: {e:?}");
        return;
    }
    let result = (|| -> Result<()> {
        let all = ctx.meta.all_group_offsets()?;
        let stamp = CheckpointStamp {
            epoch: ctx.owner.epoch(),
            seq: local_stamp(ctx)?.map_or(0, |s| s.seq) + 1,
        };
        let bytes = bucket::encode_group_offsets(&all, stamp, now_ms());
        ctx.store.put(layout::GROUP_OFFSETS_KEY, &bytes)?;
        Ok(ctx.meta.set_setting(STAMP_SETTING, &stamp.to_setting())?)
    })();
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
