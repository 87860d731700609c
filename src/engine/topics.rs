//! Topic administration: create, describe, list, delete.

use super::{Engine, Topic};
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

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionInfo {
    pub partition: u32,
    pub low_watermark: i64,
    pub high_watermark: i64,
    /// Sealed segment objects in the store (the WAL is not counted).
    pub segment_count: i64,
    pub stored_bytes: i64,
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

fn validate_spec(spec: &TopicSpec) -> Result<()> {
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
        let mut topics = sync::write(&self.topics);
        // Under the topics lock, so a deletion cannot start removing this
        // name's objects and WAL after the check.
        if lock(&self.deleting).contains(&spec.name) {
            return Err(Error::AlreadyExists(format!(
                "topic {:?} is still being deleted; retry in a moment",
                spec.name
            )));
        }
        if topics.contains_key(&spec.name) {
            return Err(Error::AlreadyExists(format!(
                "topic {:?} already exists",
                spec.name
            )));
        }
        let topic_wal = layout::topic_wal_dir(&self.ctx.config.data_dir, &spec.name);
        // A WAL left by an earlier topic of this name (a crash during its
        // deletion) must not become this topic's data.
        remove_dir_all_if_exists(&topic_wal)?;
        let row = self.ctx.meta.create_topic(&TopicRow {
            name: spec.name.clone(),
            partitions: spec.partitions,
            retention_ms: spec.retention_ms,
            retention_bytes: spec.retention_bytes,
            created_at_ms: now_ms(),
            incarnation: 0, // metadata assigns it
        })?;
        let opened = (0..row.partitions)
            .map(|p| open_partition(&self.ctx, &row.name, p).map(Arc::new))
            .collect::<Result<Vec<_>>>();
        let partitions = match opened {
            Ok(p) => p,
            Err(e) => {
                // Leave nothing half-created behind.
                let _ = self.ctx.meta.delete_topic(&row.name);
                let _ = remove_dir_all_if_exists(&topic_wal);
                return Err(e);
            }
        };
        let topic = Arc::new(Topic { row, partitions });
        topics.insert(spec.name.clone(), Arc::clone(&topic));
        drop(topics);
        self.info(&topic)
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

    pub fn partition_count(&self, topic: &str) -> Result<u32> {
        Ok(self.topic(topic)?.row.partitions)
    }

    /// Deletes a topic: its partitions stop, pending waits end with
    /// NOT_FOUND, then metadata, objects and WAL go. Blocks while objects
    /// are deleted; run it off latency-sensitive threads.
    pub fn delete_topic(&self, name: &str) -> Result<()> {
        let topic = {
            let mut topics = sync::write(&self.topics);
            let t = topics
                .remove(name)
                .ok_or_else(|| Error::NotFound(format!("topic {name:?} does not exist")))?;
            lock(&self.deleting).insert(name.to_string());
            t
        };
        let result = self.remove_topic(&topic);
        lock(&self.deleting).remove(name);
        result
    }

    fn remove_topic(&self, topic: &Topic) -> Result<()> {
        let name = &topic.row.name;
        for p in &topic.partitions {
            close_deleted(p, name);
        }
        // Metadata first: from here the objects are orphans, which the next
        // start collects if we crash before deleting them, and a WAL left
        // behind is removed at the next start or the next create.
        match self.ctx.meta.delete_topic(name) {
            Ok(_) | Err(MetaError::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
        remove_dir_all_if_exists(&layout::topic_wal_dir(&self.ctx.config.data_dir, name))?;
        for obj in self.ctx.store.list(&layout::topic_prefix(name))? {
            self.ctx.store.delete(&obj.key)?;
        }
        log::info!("deleted topic {name:?}");
        Ok(())
    }
}

/// Ends everything a partition of a deleted topic was doing: long polls
/// and `acks=uploaded` waits answer NOT_FOUND, the threads stop, its
/// backlog is released.
fn close_deleted(p: &Partition, topic: &str) {
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
