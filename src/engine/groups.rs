//! Consumer-group offsets: kept in metadata, and checkpointed to the bucket
//! (a base `groups/offsets` and a delta `groups/offsets-delta`, see
//! `bucket::groups`) every [`CHECKPOINT_INTERVAL`] when they changed, and
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
use crate::object_store::{ObjectStore, StoreError};
use crate::partition::{fenced_error, Status};
use crate::util::clock::now_ms;
use crate::util::sync::lock;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

/// Longest metadata string a committed offset may carry (Kafka's
/// `offset.metadata.max.bytes` default).
pub const MAX_COMMIT_METADATA: usize = 4096;

/// How often changed group offsets are written to the bucket.
pub(super) const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(5);

/// A group none of whose offsets changed for this long is removed, as
/// Kafka's `offsets.retention.minutes` (7 days) does.
pub const GROUP_EXPIRY: Duration = Duration::from_secs(7 * 24 * 3600);

/// One offset of a commit: the next offset to read, and the client's
/// metadata string.
#[derive(Clone, Debug)]
pub struct OffsetCommit {
    pub topic: String,
    pub partition: u32,
    pub offset: i64,
    pub metadata: String,
}

/// An offset that is negative, or metadata past its limit.
fn check_commit_args(offset: i64, metadata: &str) -> Result<()> {
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
    Ok(())
}

/// A committed offset's identity: group, topic, partition.
type OffsetKey = (String, String, u32);

/// Which commits the bucket has seen.
#[derive(Debug, Default)]
pub(super) struct GroupCheckpoint {
    /// Commits (and removals) so far.
    changes: AtomicU64,
    /// Offsets changed since the base in the bucket was read from
    /// metadata, and whether a row was removed since (a delta cannot say
    /// so: the next checkpoint writes a base).
    since_base: Mutex<SinceBase>,
    /// The checkpoints written; the lock also keeps two from racing.
    written: Mutex<Written>,
}

#[derive(Debug, Default)]
struct SinceBase {
    /// Each changed offset with the change count of its latest commit.
    keys: HashMap<OffsetKey, u64>,
    removals: u64,
}

#[derive(Debug, Default)]
struct Written {
    /// `changes` as of the last checkpoint written.
    changes: u64,
    /// The base this node wrote (its stamp and size), if any yet.
    base: Option<(CheckpointStamp, usize)>,
    /// `SinceBase::removals` that base covers.
    removals: u64,
}

impl GroupCheckpoint {
    fn changed(&self, key: OffsetKey) {
        let mut since = lock(&self.since_base);
        let n = self.changes.fetch_add(1, Ordering::SeqCst) + 1;
        since.keys.insert(key, n);
    }

    /// Rows went (a group or topic deleted, groups expired).
    pub(super) fn removed(&self) {
        lock(&self.since_base).removals += 1;
        self.changes.fetch_add(1, Ordering::SeqCst);
    }
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
        let commit = OffsetCommit {
            topic: topic.to_string(),
            partition,
            offset,
            metadata: metadata.to_string(),
        };
        let mut results = self.commit_offsets(group, vec![commit]);
        results.pop().unwrap_or(Ok(()))
    }

    /// Commits of one group, each answered on its own, in order (a Kafka
    /// OffsetCommit names many partitions). In a cluster they go to etcd
    /// together.
    pub fn commit_offsets(&self, group: &str, commits: Vec<OffsetCommit>) -> Vec<Result<()>> {
        if let Err(e) = validate_group(group) {
            return commits.iter().map(|_| Err(e.clone_simple())).collect();
        }
        let now = now_ms();
        let checked = commits.into_iter().map(|c| {
            check_commit_args(c.offset, &c.metadata)?;
            Ok(GroupOffset {
                group: group.to_string(),
                topic: c.topic,
                partition: c.partition,
                offset: c.offset,
                metadata: c.metadata,
                updated_at_ms: now,
            })
        });
        let max_groups = self.ctx.config.max_groups;
        if let Some(registry) = &self.ctx.cluster {
            return self.commit_in_cluster(registry, group, checked.collect(), max_groups);
        }
        checked
            .map(|c| c.and_then(|o| self.commit_on_this_node(o, max_groups)))
            .collect()
    }

    /// One commit into this node's metadata (the bucket's checkpoint
    /// follows).
    fn commit_on_this_node(&self, commit: GroupOffset, max_groups: usize) -> Result<()> {
        let (group, topic, partition, offset) = (
            &commit.group,
            &commit.topic,
            commit.partition,
            commit.offset,
        );
        let p = self.partition(topic, partition)?;
        if let Some(owner) = self.ctx.owner.fenced() {
            return Err(fenced_error(&owner));
        }
        // Past the log, every later read of the group would be out of
        // range (or skip what is written next).
        let high = p.shared.view().high_watermark;
        if offset > high {
            return Err(Error::OutOfRange(format!(
                "offset {offset} is past the end of {topic}/{partition}, whose next offset is {high}; \
                 commit at most {high}"
            )));
        }
        if !self.ctx.meta.group_exists(group)? && self.ctx.meta.group_count()? >= max_groups {
            return Err(Error::Backpressure(format!(
                "{max_groups} groups have committed offsets on this node; delete unused ones \
                 (streamctl group delete) or let them expire ({} days without a commit)",
                GROUP_EXPIRY.as_secs() / 86_400
            )));
        }
        self.ctx.meta.commit_group_offset(&commit)?;
        self.groups
            .changed((group.to_string(), topic.to_string(), partition));
        Ok(())
    }

    /// Removes every committed offset of `group`; returns how many.
    pub fn delete_group(&self, group: &str) -> Result<usize> {
        validate_group(group)?;
        if let Some(registry) = &self.ctx.cluster {
            return self.delete_group_in_cluster(registry, group);
        }
        if let Some(owner) = self.ctx.owner.fenced() {
            return Err(fenced_error(&owner));
        }
        let n = self.ctx.meta.delete_group(group)?;
        if n == 0 {
            return Err(Error::NotFound(format!(
                "group {group:?} has no committed offsets"
            )));
        }
        self.groups.removed();
        Ok(n)
    }

    /// Removes groups without a commit for [`GROUP_EXPIRY`].
    pub(super) fn expire_groups(&self) {
        let cutoff = now_ms().saturating_sub(GROUP_EXPIRY.as_millis() as i64);
        match self.ctx.meta.expire_groups(cutoff) {
            Ok(gone) if !gone.is_empty() => {
                log::info!(
                    "{} groups without a commit for {} days removed",
                    gone.len(),
                    GROUP_EXPIRY.as_secs() / 86_400
                );
                self.groups.removed();
            }
            Ok(_) => {}
            Err(e) => log::warn!("could not expire idle groups: {e}"),
        }
    }

    pub fn committed_offset(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
    ) -> Result<Option<GroupOffset>> {
        validate_group(group)?;
        if let Some(registry) = &self.ctx.cluster {
            return self.committed_in_cluster(registry, group, topic, partition);
        }
        self.partition(topic, partition)?;
        Ok(self.ctx.meta.group_offset(group, topic, partition)?)
    }

    pub fn group_offsets(&self, group: &str) -> Result<Vec<GroupOffset>> {
        validate_group(group)?;
        if let Some(registry) = &self.ctx.cluster {
            return self.group_offsets_in_cluster(registry, group);
        }
        Ok(self.ctx.meta.group_offsets(group)?)
    }

    pub fn groups(&self) -> Result<Vec<String>> {
        if let Some(registry) = &self.ctx.cluster {
            return self.groups_in_cluster(registry);
        }
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
            let key = (o.group.clone(), o.topic.clone(), o.partition);
            self.ctx.meta.commit_group_offset(&GroupOffset {
                offset: high,
                updated_at_ms: now_ms(),
                ..o
            })?;
            self.groups.changed(key);
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
    if changes == written.changes {
        return;
    }
    // A node that no longer owns the prefix must not replace the new
    // owner's checkpoint.
    if let Err(e) = ctx.owner.confirm_recent(&ctx.store) {
        log::warn!("group offsets not checkpointed to the bucket: {e:?}");
        return;
    }
    match write_checkpoint(ctx, state, &mut written) {
        Ok(()) => written.changes = changes,
        Err(e) => log::warn!("group offsets not checkpointed to the bucket: {e}"),
    }
}

/// Writes a delta over this node's base, or a new base when there is none
/// yet, a row was removed, or the delta would be half the base's size.
fn write_checkpoint(ctx: &Context, state: &GroupCheckpoint, written: &mut Written) -> Result<()> {
    let (keys, removals) = {
        let since = lock(&state.since_base);
        (since.keys.clone(), since.removals)
    };
    let stamp = CheckpointStamp {
        epoch: ctx.owner.epoch(),
        seq: local_stamp(ctx)?.map_or(0, |s| s.seq) + 1,
    };
    let delta_base = written
        .base
        .filter(|(b, _)| b.epoch == stamp.epoch && removals == written.removals);
    if let Some((base, base_len)) = delta_base {
        let mut rows = Vec::with_capacity(keys.len());
        for (g, t, p) in keys.keys() {
            rows.extend(ctx.meta.group_offset(g, t, *p)?);
        }
        let bytes = bucket::encode_group_offsets(&rows, stamp, Some(base), now_ms());
        if bytes.len() * 2 <= base_len {
            ctx.store.put(layout::GROUP_OFFSETS_DELTA_KEY, &bytes)?;
            return Ok(ctx.meta.set_setting(STAMP_SETTING, &stamp.to_setting())?);
        }
    }
    let all = ctx.meta.all_group_offsets()?;
    let bytes = bucket::encode_group_offsets(&all, stamp, None, now_ms());
    ctx.store.put(layout::GROUP_OFFSETS_KEY, &bytes)?;
    ctx.meta.set_setting(STAMP_SETTING, &stamp.to_setting())?;
    // An offset not committed again since the listing above is in the
    // base; one committed since stays for the next delta.
    lock(&state.since_base)
        .keys
        .retain(|k, n| keys.get(k) != Some(n));
    written.base = Some((stamp, bytes.len()));
    written.removals = removals;
    Ok(())
}

/// A checkpoint object, `None` when there is none.
fn read_group_checkpoint(
    ctx: &Context,
    key: &str,
) -> Result<Option<bucket::GroupCheckpointObject>> {
    let bytes = match ctx.store.get(key) {
        Ok(b) => b,
        Err(StoreError::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    bucket::decode_group_offsets(&bytes)
        .map(Some)
        .map_err(|reason| Error::Malformed {
            object: key.to_string(),
            reason,
        })
}

/// The base checkpoint with its delta applied (a delta over another base
/// is older than this base, and ignored).
fn latest_group_checkpoint(ctx: &Context) -> Result<Option<(CheckpointStamp, Vec<GroupOffset>)>> {
    let Some(base) = read_group_checkpoint(ctx, layout::GROUP_OFFSETS_KEY)? else {
        return Ok(None);
    };
    let delta = read_group_checkpoint(ctx, layout::GROUP_OFFSETS_DELTA_KEY)?
        .filter(|d| d.base == Some(base.stamp));
    let Some(delta) = delta else {
        return Ok(Some((base.stamp, base.offsets)));
    };
    let mut merged: BTreeMap<(String, String, u32), GroupOffset> = base
        .offsets
        .into_iter()
        .map(|o| ((o.group.clone(), o.topic.clone(), o.partition), o))
        .collect();
    for o in delta.offsets {
        merged.insert((o.group.clone(), o.topic.clone(), o.partition), o);
    }
    Ok(Some((delta.stamp, merged.into_values().collect())))
}

/// Group offsets from the bucket's checkpoint, for partitions that exist:
/// every one if the checkpoint's stamp is newer than the last this node
/// wrote or restored (another node went on after it), else only those
/// missing locally. Stamps, not clocks: nodes' clocks differ. Offsets past
/// a partition's log are clamped once the partitions are open.
pub(super) fn restore_group_offsets(ctx: &Context) -> Result<usize> {
    let Some((stamp, offsets)) = latest_group_checkpoint(ctx)? else {
        return Ok(0);
    };
    let newer = local_stamp(ctx)?.is_none_or(|local| stamp > local);
    let mut restored = 0;
    for o in offsets {
        if ctx.meta.partition(&o.topic, o.partition)?.is_none() {
            continue;
        }
        let local = ctx.meta.group_offset(&o.group, &o.topic, o.partition)?;
        if newer || local.is_none() {
            ctx.meta.commit_group_offset(&o)?;
            restored += 1;
        }
    }
    if newer {
        ctx.meta.set_setting(STAMP_SETTING, &stamp.to_setting())?;
    }
    Ok(restored)
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
