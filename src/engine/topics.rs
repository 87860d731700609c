//! Topic administration: create, describe, list, delete.

use super::{Engine, Topic};
use crate::bucket;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::layout;
use crate::meta::{MetaError, TopicRow};
use crate::object_store::ObjectStore;
use crate::partition::{open_partition, Partition, Status};
use crate::util::clock::now_ms;
use crate::util::fs::remove_dir_all_if_exists;
use crate::util::sync::{self, lock};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A topic to create.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: u32,
    /// 0 = keep forever.
    pub retention_ms: i64,
    /// Per partition; 0 = unlimited.
    pub retention_bytes: i64,
}

/// This node, for `streamctl cluster`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeInfo {
    pub node_id: String,
    pub epoch: u64,
    pub store: String,
    pub fenced: bool,
}

/// What AlterTopic changes (`None`: unchanged).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TopicChange {
    pub partitions: Option<u32>,
    pub retention_ms: Option<i64>,
    pub retention_bytes: Option<i64>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionInfo {
    pub partition: u32,
    pub low_watermark: i64,
    pub high_watermark: i64,
    /// Sealed segment objects in the store (the WAL is not counted).
    pub segment_count: i64,
    pub stored_bytes: i64,
    /// Acknowledged records not in the store yet (the WAL's).
    pub wal_records: i64,
    pub wal_bytes: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicInfo {
    pub name: String,
    pub partitions: u32,
    pub retention_ms: i64,
    pub retention_bytes: i64,
    pub created_at_ms: i64,
    pub partition_info: Vec<PartitionInfo>,
}

/// Upper bound on partitions per topic: each is two threads and a WAL file.
pub const MAX_PARTITIONS: u32 = 1024;

/// Topic names: 1–249 characters of `[A-Za-z0-9._-]`, not `.` or `..`
/// (they become object keys and directory names).
fn validate_topic_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 249 {
        return Err(format!(
            "topic name must be 1-249 characters, got {}",
            name.len()
        ));
    }
    if name == "." || name == ".." {
        return Err("topic name cannot be '.' or '..'".to_string());
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "topic name {name:?} contains {c:?}; allowed are A-Z a-z 0-9 . _ -"
        ));
    }
    Ok(())
}

/// A topic's row after `change`: partitions are only added.
pub(super) fn altered_row(old: &TopicRow, change: &TopicChange) -> Result<TopicRow> {
    let row = TopicRow {
        partitions: change.partitions.unwrap_or(old.partitions),
        retention_ms: change.retention_ms.unwrap_or(old.retention_ms),
        retention_bytes: change.retention_bytes.unwrap_or(old.retention_bytes),
        ..old.clone()
    };
    if row.partitions < old.partitions {
        return Err(Error::InvalidArgument(format!(
            "topic {:?} has {} partitions; partitions can be added, not removed",
            old.name, old.partitions
        )));
    }
    validate_spec(&TopicSpec {
        name: row.name.clone(),
        partitions: row.partitions,
        retention_ms: row.retention_ms,
        retention_bytes: row.retention_bytes,
    })?;
    Ok(row)
}

/// What CreateTopic checks before it changes anything (Kafka's
/// `validate_only` asks for just this).
pub fn validate_spec(spec: &TopicSpec) -> Result<()> {
    validate_topic_name(&spec.name).map_err(Error::InvalidArgument)?;
    if spec.partitions == 0 || spec.partitions > MAX_PARTITIONS {
        return Err(Error::InvalidArgument(format!(
            "partitions must be 1..={MAX_PARTITIONS}, got {}",
            spec.partitions
        )));
    }
    if spec.retention_ms < 0 || spec.retention_bytes < 0 {
        return Err(Error::InvalidArgument(
            "retention_ms and retention_bytes must be >= 0 (0 = unlimited)".to_string(),
        ));
    }
    Ok(())
}

impl Engine {
    pub fn create_topic(&self, spec: &TopicSpec) -> Result<TopicInfo> {
        validate_spec(spec)?;
        self.reserve_name(&spec.name, false)?;
        let created = self.create_reserved(spec);
        lock(&self.pending).remove(&spec.name);
        let topic = created?;
        self.info(&topic)
    }

    /// Adds partitions and changes retention: the manifest in the bucket
    /// first (a node rebuilt from it opens every partition), then
    /// metadata, then the new partitions open. Partitions are only added.
    pub fn alter_topic(&self, name: &str, change: &TopicChange) -> Result<TopicInfo> {
        self.reserve_name(name, true)?;
        let altered = self.alter_reserved(name, change);
        lock(&self.pending).remove(name);
        self.info(&*altered?)
    }

    fn alter_reserved(&self, name: &str, change: &TopicChange) -> Result<Arc<Topic>> {
        let old = self.topic(name)?;
        let row = altered_row(&old.row, change)?;
        if self.ctx.cluster.is_some() {
            return self.alter_in_cluster(&old, row);
        }
        self.confirm_owner_now()?;
        let manifest = layout::topic_manifest_key(&row.name, row.incarnation);
        self.ctx
            .store
            .put(&manifest, &bucket::encode_manifest(&row))?;
        self.ctx.meta.alter_topic(&row)?;
        let mut partitions = old.partitions.clone();
        for p in old.row.partitions..row.partitions {
            partitions.push(Arc::new(open_partition(
                &self.ctx,
                &self.uploads,
                name,
                p,
                0,
            )?));
        }
        if row.partitions > old.row.partitions {
            log::info!(
                "topic {name:?}: partitions {} -> {}",
                old.row.partitions,
                row.partitions
            );
        }
        let topic = Arc::new(Topic { row, partitions });
        sync::write(&self.topics).insert(name.to_string(), Arc::clone(&topic));
        Ok(topic)
    }

    /// Claims `name` for a creation (it must not exist) or a deletion (it
    /// must), so no other creation or deletion of it runs meanwhile; the
    /// slow steps then run without the topics lock.
    fn reserve_name(&self, name: &str, exists: bool) -> Result<()> {
        let topics = sync::read(&self.topics);
        let mut pending = lock(&self.pending);
        if pending.contains(name) {
            return Err(Error::AlreadyExists(format!(
                "topic {name:?} is being created or deleted; retry in a moment"
            )));
        }
        match (topics.contains_key(name), exists) {
            (true, false) => Err(Error::AlreadyExists(format!(
                "topic {name:?} already exists"
            ))),
            (false, true) => Err(Error::NotFound(format!("topic {name:?} does not exist"))),
            _ => {
                pending.insert(name.to_string());
                Ok(())
            }
        }
    }

    /// The steps of a creation, in order: a new incarnation, the manifest
    /// in the bucket (so a node rebuilt from the bucket knows the topic),
    /// metadata, the partitions.
    fn create_reserved(&self, spec: &TopicSpec) -> Result<Arc<Topic>> {
        if self.ctx.cluster.is_some() {
            return self.create_in_cluster(spec);
        }
        self.confirm_owner_now()?;
        let topic_wal = layout::topic_wal_dir(&self.ctx.config.data_dir, &spec.name);
        // A WAL left by an earlier topic of this name (a crash during its
        // deletion) must not become this topic's data.
        remove_dir_all_if_exists(&topic_wal)?;
        let row = self.new_topic_row(spec)?;
        let manifest = layout::topic_manifest_key(&row.name, row.incarnation);
        self.ctx
            .store
            .put(&manifest, &bucket::encode_manifest(&row))?;
        self.ctx.meta.create_topic(&row)?;
        let opened = (0..row.partitions)
            .map(|p| open_partition(&self.ctx, &self.uploads, &row.name, p, 0).map(Arc::new))
            .collect::<Result<Vec<_>>>();
        let partitions = match opened {
            Ok(p) => p,
            Err(e) => {
                // Leave nothing half-created behind, and mark the manifest
                // dead so a rebuild does not bring the topic back.
                let tombstone = layout::topic_tombstone_key(&row.name, row.incarnation);
                let _ = self
                    .ctx
                    .store
                    .put(&tombstone, &bucket::encode_tombstone(now_ms()));
                let _ = self.ctx.meta.delete_topic(&row.name);
                let _ = remove_dir_all_if_exists(&topic_wal);
                return Err(e);
            }
        };
        let topic = Arc::new(Topic { row, partitions });
        sync::write(&self.topics).insert(spec.name.clone(), Arc::clone(&topic));
        Ok(topic)
    }

    /// The row of a topic being created: a new incarnation, created now.
    pub(super) fn new_topic_row(&self, spec: &TopicSpec) -> Result<TopicRow> {
        Ok(TopicRow {
            name: spec.name.clone(),
            partitions: spec.partitions,
            retention_ms: spec.retention_ms,
            retention_bytes: spec.retention_bytes,
            created_at_ms: now_ms(),
            incarnation: self.ctx.meta.next_incarnation()?,
        })
    }

    fn info(&self, t: &Topic) -> Result<TopicInfo> {
        let mut partition_info = Vec::with_capacity(t.partitions.len());
        for p in &t.partitions {
            let usage = self
                .ctx
                .meta
                .partition_usage(&t.row.name, p.shared.partition)?;
            let view = p.shared.view();
            partition_info.push(PartitionInfo {
                partition: p.shared.partition,
                low_watermark: view.low_watermark,
                high_watermark: view.high_watermark,
                segment_count: usage.segment_count,
                stored_bytes: usage.stored_bytes,
                wal_records: view.high_watermark - view.committed_next,
                wal_bytes: view.tail.iter().map(|b| b.bytes as i64).sum(),
            });
        }
        Ok(TopicInfo {
            name: t.row.name.clone(),
            partitions: t.row.partitions,
            retention_ms: t.row.retention_ms,
            retention_bytes: t.row.retention_bytes,
            created_at_ms: t.row.created_at_ms,
            partition_info,
        })
    }

    pub fn describe_topic(&self, name: &str) -> Result<TopicInfo> {
        let t = self.topic(name)?;
        self.info(&t)
    }

    pub fn list_topics(&self) -> Result<Vec<TopicInfo>> {
        let mut topics = self.snapshot();
        topics.sort_by(|a, b| a.row.name.cmp(&b.row.name));
        topics.iter().map(|t| self.info(t)).collect()
    }

    /// How many partitions are in each state (open, failed, damaged, not
    /// opened, deleted, led by another node), for `/metrics`.
    pub fn partition_states(&self) -> [(&'static str, u64); 6] {
        let mut counts = [
            ("open", 0),
            ("failed", 0),
            ("damaged", 0),
            ("not_opened", 0),
            ("deleted", 0),
            ("not_leader", 0),
        ];
        for t in self.snapshot() {
            for p in &t.partitions {
                let i = match p.shared.view().status {
                    Status::Open => 0,
                    Status::Failed(_) => 1,
                    Status::Damaged(_) => 2,
                    Status::NotOpened(_) => 3,
                    Status::Deleted => 4,
                    Status::NotLeader(_) => 5,
                };
                counts[i].1 += 1;
            }
        }
        counts
    }

    /// Whether another node took the prefix over (this one refuses writes).
    pub fn is_fenced(&self) -> bool {
        self.ctx.owner.fenced().is_some()
    }

    pub fn topic_count(&self) -> usize {
        sync::read(&self.topics).len()
    }

    /// Who this node is and where its objects live.
    pub fn node(&self) -> NodeInfo {
        NodeInfo {
            node_id: self.ctx.owner.node_id().to_string(),
            epoch: self.ctx.owner.epoch(),
            store: self.ctx.store.identity(),
            fenced: self.is_fenced(),
        }
    }

    pub fn partition_count(&self, topic: &str) -> Result<u32> {
        Ok(self.topic(topic)?.row.partitions)
    }

    /// Deletes a topic: the deletion is recorded in the bucket first (a
    /// tombstone), then its partitions stop, pending waits end with
    /// NOT_FOUND, and metadata, WAL and objects go. Blocks while objects
    /// are deleted; run it off latency-sensitive threads.
    pub fn delete_topic(&self, name: &str) -> Result<()> {
        self.reserve_name(name, true)?;
        let result = self.delete_reserved(name);
        lock(&self.pending).remove(name);
        result
    }

    fn delete_reserved(&self, name: &str) -> Result<()> {
        if self.ctx.cluster.is_some() {
            return self.delete_in_cluster(name);
        }
        let incarnation = self.topic(name)?.row.incarnation;
        self.confirm_owner_now()?;
        let tombstone = layout::topic_tombstone_key(name, incarnation);
        // If this fails the topic is untouched, and the caller can retry.
        self.ctx
            .store
            .put(&tombstone, &bucket::encode_tombstone(now_ms()))?;
        let topic = sync::write(&self.topics)
            .remove(name)
            .ok_or_else(|| Error::NotFound(format!("topic {name:?} does not exist")))?;
        for p in &topic.partitions {
            close_deleted(p, name);
        }
        let finished = finish_deletion(&self.ctx, name, incarnation);
        // Its group offsets went with it (or go at the next start).
        self.groups.removed();
        finished?;
        log::info!("deleted topic {name:?}");
        Ok(())
    }
}

/// What follows a topic's tombstone, here or after a crash: its metadata,
/// its WAL, and every object of that incarnation but the tombstone, which
/// stays as the evidence that the topic is gone.
pub(super) fn finish_deletion(ctx: &Context, name: &str, incarnation: i64) -> Result<()> {
    forget_topic(ctx, name, incarnation)?;
    delete_topic_objects(ctx, name, incarnation)
}

/// This node's part of a deleted topic: its metadata and WAL, if they are
/// of that incarnation.
pub(super) fn forget_topic(ctx: &Context, name: &str, incarnation: i64) -> Result<()> {
    if ctx
        .meta
        .topic(name)?
        .is_some_and(|t| t.incarnation == incarnation)
    {
        match ctx.meta.delete_topic(name) {
            Ok(_) | Err(MetaError::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
        remove_dir_all_if_exists(&layout::topic_wal_dir(&ctx.config.data_dir, name))?;
    }
    Ok(())
}

/// Every object of a deleted incarnation but its tombstone.
pub(super) fn delete_topic_objects(ctx: &Context, name: &str, incarnation: i64) -> Result<()> {
    let tombstone = layout::topic_tombstone_key(name, incarnation);
    for obj in ctx
        .store
        .list(&layout::incarnation_prefix(name, incarnation))?
    {
        if obj.key != tombstone {
            ctx.store.delete(&obj.key)?;
        }
    }
    Ok(())
}

/// Ends everything a partition of a deleted topic was doing: long polls
/// and `acks=uploaded` waits answer NOT_FOUND, the threads stop, its
/// backlog is released.
pub(super) fn close_deleted(p: &Partition, topic: &str) {
    {
        let mut view = p.shared.view_mut();
        view.status = Status::Deleted;
        p.shared.note_append();
    }
    p.shared.wake_all();
    p.shared.fail_uploaded_acks(0, || {
        Error::NotFound(format!("topic {topic:?} was deleted"))
    });
    // Wait for an upload in flight, so it cannot land after the objects
    // are listed for deletion (past the bound it becomes an orphan).
    p.stop_now(Instant::now() + Duration::from_secs(60));
    p.shared.backlog.release_all();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names() {
        for good in ["a", "orders", "a.b_c-D9", &"x".repeat(249)] {
            assert!(validate_topic_name(good).is_ok(), "{good}");
        }
        for bad in ["", ".", "..", "a/b", "a b", "ü", &"x".repeat(250), "a\0"] {
            assert!(validate_topic_name(bad).is_err(), "{bad:?}");
        }
    }
}
