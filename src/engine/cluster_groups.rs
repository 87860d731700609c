//! Consumer groups in cluster mode, once per cluster:
//!
//! - **Offsets** live in etcd (`cluster::offsets`), not in one node's
//!   metadata: a commit answered is in etcd, and any node reads it, before
//!   and after the node that took it dies. Any node takes a gRPC commit.
//! - **Coordinators**: each group belongs to one of [`GROUP_SLOTS`] slots
//!   (a hash of its name), and a slot is led like a partition (a leader
//!   key under a lease, placed by rendezvous hashing, taken over when its
//!   node dies). The slot's leader coordinates the group's Kafka
//!   membership; the others answer NOT_COORDINATOR, and FindCoordinator
//!   names the leader. Slots appear among the leaders as `~groups/N` (`~`
//!   is not allowed in a topic name).

use super::Engine;
use crate::cluster::registry::{PartitionId, Registry};
use crate::error::{Error, Result};
use crate::meta::GroupOffset;
use crate::util::sync::{self, lock};
use std::collections::{HashMap, HashSet};

/// Coordinator slots. Offsets are stored by group, not by slot, so the
/// count may change between versions without moving any data.
pub const GROUP_SLOTS: u32 = 16;

/// The pseudo-topic coordinator slots are led under.
const SLOT_TOPIC: &str = "~groups";

/// Where a group's coordinator is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GroupHome {
    /// This node coordinates it, since `epoch` (0 outside a cluster): a
    /// coordinator holding state from another epoch must drop it.
    Here { epoch: i64 },
    /// Another node does; its Kafka address (`host:port`, empty if none).
    At { node: String, kafka_addr: String },
    /// No node at the moment (a failover is under way).
    Nowhere,
}

/// The slot that coordinates `group` (FNV-1a of its name).
fn slot_of(group: &str) -> PartitionId {
    let h = group.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    PartitionId {
        topic: SLOT_TOPIC.to_string(),
        partition: (h % u64::from(GROUP_SLOTS)) as u32,
    }
}

/// Whether `p` is a coordinator slot rather than a partition.
pub(super) fn is_slot(p: &PartitionId) -> bool {
    p.topic == SLOT_TOPIC
}

/// Every coordinator slot, for the control plane to place.
pub(super) fn slots() -> impl Iterator<Item = PartitionId> {
    (0..GROUP_SLOTS).map(|partition| PartitionId {
        topic: SLOT_TOPIC.to_string(),
        partition,
    })
}

fn unavailable(e: crate::cluster::CoordError) -> Error {
    Error::Unavailable(format!("group offsets are in etcd: {e}"))
}

impl Engine {
    /// Which node coordinates `group`.
    pub fn group_home(&self, group: &str) -> GroupHome {
        if self.ctx.cluster.is_none() {
            return GroupHome::Here { epoch: 0 };
        }
        let slot = slot_of(group);
        let control = lock(&self.member.control);
        let Some(c) = control.as_ref() else {
            return GroupHome::Nowhere;
        };
        if let Some(epoch) = c.epoch(&slot) {
            return GroupHome::Here { epoch };
        }
        let view = c.view();
        match view.leaders.get(&slot) {
            Some(l) if l.node != c.node().id => GroupHome::At {
                kafka_addr: view
                    .nodes
                    .iter()
                    .find(|n| n.id == l.node)
                    .map_or_else(String::new, |n| n.kafka_addr.clone()),
                node: l.node.clone(),
            },
            _ => GroupHome::Nowhere,
        }
    }

    /// [`Engine::commit_offsets`] in a cluster, arguments checked: each
    /// offset's own result, in order; the valid ones go to etcd together.
    pub(super) fn commit_in_cluster(
        &self,
        registry: &Registry,
        group: &str,
        commits: Vec<Result<GroupOffset>>,
        max_groups: usize,
    ) -> Vec<Result<()>> {
        let checked: Vec<Result<(GroupOffset, i64)>> = commits
            .into_iter()
            .map(|c| c.and_then(|o| self.check_cluster_commit(o)))
            .collect();
        // A partition named twice: the last commit wins (etcd refuses a
        // key put twice in one transaction).
        let mut latest: HashMap<(&str, u32), usize> = HashMap::new();
        for (i, c) in checked.iter().enumerate() {
            if let Ok((o, _)) = c {
                latest.insert((o.topic.as_str(), o.partition), i);
            }
        }
        let kept: HashSet<usize> = latest.into_values().collect();
        let batch: Vec<(GroupOffset, i64)> = checked
            .iter()
            .enumerate()
            .filter(|(i, _)| kept.contains(i))
            .filter_map(|(_, c)| c.as_ref().ok().cloned())
            .collect();
        let stored = match batch.is_empty() {
            true => Ok(()),
            false => self.store_commits(registry, group, &batch, max_groups),
        };
        checked
            .into_iter()
            .map(|c| match (c, &stored) {
                (Err(e), _) => Err(e),
                (Ok(_), Ok(())) => Ok(()),
                (Ok(_), Err(e)) => Err(e.clone_simple()),
            })
            .collect()
    }

    /// The topic's incarnation for a commit of `o`, after the checks that
    /// need the partition.
    fn check_cluster_commit(&self, o: GroupOffset) -> Result<(GroupOffset, i64)> {
        let incarnation = self.check_partition_exists(&o.topic, o.partition)?;
        // Led here, the log's end is known (elsewhere it is not checked,
        // as Kafka does not).
        if let Ok(p) = self.partition(&o.topic, o.partition) {
            let high = p.shared.view().high_watermark;
            if o.offset > high {
                return Err(Error::OutOfRange(format!(
                    "offset {} is past the end of {}/{}, whose next offset is {high}; commit at most {high}",
                    o.offset, o.topic, o.partition
                )));
            }
        }
        Ok((o, incarnation))
    }

    /// One group's checked commits into etcd, within the groups' bound.
    fn store_commits(
        &self,
        registry: &Registry,
        group: &str,
        batch: &[(GroupOffset, i64)],
        max_groups: usize,
    ) -> Result<()> {
        let known = lock(&self.member.known_groups).contains(group);
        let new_group = !known && !registry.group_exists(group).map_err(unavailable)?;
        if new_group && registry.groups().map_err(unavailable)?.len() >= max_groups {
            return Err(Error::Backpressure(format!(
                "{max_groups} groups have committed offsets in this cluster; delete unused ones (streamctl group delete)"
            )));
        }
        registry.commit_group_offsets(batch).map_err(unavailable)?;
        let mut cache = lock(&self.member.known_groups);
        // Only saves etcd reads: forgetting is always safe.
        if cache.len() >= 2 * max_groups {
            cache.clear();
        }
        cache.insert(group.to_string());
        Ok(())
    }

    pub(super) fn committed_in_cluster(
        &self,
        registry: &Registry,
        group: &str,
        topic: &str,
        partition: u32,
    ) -> Result<Option<GroupOffset>> {
        let incarnation = self.check_partition_exists(topic, partition)?;
        let got = registry
            .group_offset(group, topic, partition)
            .map_err(unavailable)?;
        // An offset of an earlier topic of that name is none of this one's.
        Ok(got.and_then(|(o, inc)| (inc == incarnation).then_some(o)))
    }

    pub(super) fn group_offsets_in_cluster(
        &self,
        registry: &Registry,
        group: &str,
    ) -> Result<Vec<GroupOffset>> {
        let offsets = registry.group_offsets(group).map_err(unavailable)?;
        let current: HashMap<String, i64> = sync::read(&self.topics)
            .values()
            .map(|t| (t.row.name.clone(), t.row.incarnation))
            .collect();
        Ok(offsets
            .into_iter()
            .filter(|(o, inc)| current.get(&o.topic) == Some(inc))
            .map(|(o, _)| o)
            .collect())
    }

    pub(super) fn groups_in_cluster(&self, registry: &Registry) -> Result<Vec<String>> {
        registry.groups().map_err(unavailable)
    }

    pub(super) fn delete_group_in_cluster(
        &self,
        registry: &Registry,
        group: &str,
    ) -> Result<usize> {
        if !registry.group_exists(group).map_err(unavailable)? {
            return Err(Error::NotFound(format!(
                "group {group:?} has no committed offsets"
            )));
        }
        let n = registry.delete_group(group).map_err(unavailable)?;
        lock(&self.member.known_groups).remove(group);
        Ok(n)
    }

    /// NOT_FOUND unless `topic` has a partition `partition` (wherever it
    /// is led); the topic's incarnation.
    fn check_partition_exists(&self, topic: &str, partition: u32) -> Result<i64> {
        let t = self.topic(topic)?;
        if partition as usize >= t.partitions.len() {
            return Err(Error::NotFound(format!(
                "partition {partition} of topic {topic:?} does not exist (it has partitions 0..{})",
                t.partitions.len()
            )));
        }
        Ok(t.row.incarnation)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_group_has_one_slot_and_slots_are_all_used() {
        let mut used = std::collections::BTreeSet::new();
        for i in 0..1000 {
            let g = format!("group-{i}");
            let s = slot_of(&g);
            assert!(is_slot(&s));
            assert_eq!(s, slot_of(&g));
            used.insert(s.partition);
        }
        assert_eq!(used.len(), GROUP_SLOTS as usize);
        assert_eq!(slots().count(), GROUP_SLOTS as usize);
    }
}
