//! Topics in cluster mode: etcd's `topics/{name}` is the cluster's list
//! (`cluster::topics`), and every node follows it at each poll.
//!
//! - **Create**: a new incarnation from etcd, then the name "create if
//!   absent" in etcd (a name taken there is taken), then the manifest in
//!   the bucket for rebuilds.
//! - **Alter**: the new manifest in etcd, on the revision this node read
//!   (a change it did not see refuses it), then in the bucket. Nodes add
//!   the new partitions (led wherever placement puts them) and take the
//!   new retention at their next poll.
//! - **Delete**: the tombstone in the bucket, then one etcd transaction
//!   removes the name with its partitions' leader keys (so no leader can
//!   commit there again) and commit points; then the topic's group
//!   offsets, and its objects, by the deleting node only. Every node drops
//!   the topic at its next poll: its led partitions stop; its metadata and
//!   WAL go. An upload in flight when its leader stopped may land after
//!   the objects were listed: a second sweep runs [`SWEEP_AFTER`] TTLs
//!   later. A paused leader can upload later still; such an object is
//!   garbage no one adopts (its incarnation is tombstoned), left behind.

use super::cluster::placeholder;
use super::topics::{close_deleted, delete_topic_objects, forget_topic};
use super::{Engine, Topic};
use crate::bucket;
use crate::cluster::registry::Registry;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::layout;
use crate::meta::TopicRow;
use crate::object_store::ObjectStore;
use crate::util::clock::now_ms;
use crate::util::sync::{self, lock};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// The second sweep of a deleted topic's objects, in lease TTLs.
const SWEEP_AFTER: u32 = 3;

fn registry(ctx: &Context) -> Result<&Registry> {
    ctx.cluster
        .as_ref()
        .ok_or_else(|| Error::FailedPrecondition("not in cluster mode".into()))
}

fn unavailable(e: crate::cluster::CoordError) -> Error {
    Error::Unavailable(format!("the cluster's topics are in etcd: {e}"))
}

/// The topics etcd lists: name -> manifest.
pub(super) fn cluster_topics(ctx: &Context) -> Result<BTreeMap<String, Vec<u8>>> {
    registry(ctx)?.topics().map_err(unavailable)
}

fn decode(name: &str, manifest: &[u8]) -> Result<TopicRow> {
    bucket::decode_manifest(manifest).map_err(|reason| Error::Malformed {
        object: format!("etcd topics/{name}"),
        reason,
    })
}

/// Whether etcd still lists this incarnation of the topic.
pub(super) fn still_listed(ctx: &Context, row: &TopicRow) -> Result<bool> {
    match registry(ctx)?.topic(&row.name).map_err(unavailable)? {
        Some(kv) => Ok(decode(&row.name, &kv.value)?.incarnation == row.incarnation),
        None => Ok(false),
    }
}

/// Brings `topics` in line with what etcd lists, for the names listed:
/// new topics are adopted (metadata, placeholder partitions), changed
/// ones take their new row (partitions are only added), and a name
/// listed with another incarnation replaces the one held. Returns the
/// topics taken out of `topics`, for the caller to close.
pub(super) fn sync_topics(
    ctx: &Context,
    listed: BTreeMap<String, Vec<u8>>,
    topics: &mut HashMap<String, Arc<Topic>>,
) -> Result<Vec<Arc<Topic>>> {
    let mut replaced = Vec::new();
    for (name, manifest) in listed {
        let row = decode(&name, &manifest)?;
        let mut partitions = Vec::new();
        match topics.get(&name) {
            Some(held) if held.row == row => continue,
            Some(held) if held.row.incarnation == row.incarnation => {
                if row.partitions < held.row.partitions {
                    continue; // never fewer partitions
                }
                ctx.meta.alter_topic(&row)?;
                partitions = held.partitions.clone();
            }
            // Closed first: adopted at the next poll.
            Some(_) => {
                replaced.extend(topics.remove(&name));
                continue;
            }
            None => {}
        }
        if partitions.is_empty() {
            match ctx.meta.topic(&name)? {
                Some(local) if local.incarnation == row.incarnation => {
                    ctx.meta.alter_topic(&row)?;
                }
                Some(local) => {
                    forget_topic(ctx, &name, local.incarnation)?;
                    ctx.meta.create_topic(&row)?;
                }
                None => ctx.meta.create_topic(&row)?,
            }
        }
        for p in partitions.len() as u32..row.partitions {
            partitions.push(Arc::new(placeholder(ctx, &row, p, "no node leads it yet")));
        }
        topics.insert(name, Arc::new(Topic { row, partitions }));
    }
    Ok(replaced)
}

/// Stops a topic that is gone from the cluster and forgets it here.
fn close_topic(ctx: &Context, t: &Topic) {
    for p in &t.partitions {
        close_deleted(p, &t.row.name);
    }
    if let Err(e) = forget_topic(ctx, &t.row.name, t.row.incarnation) {
        log::warn!(
            "topic {:?}: deleted in the cluster; cannot remove it here: {e}",
            t.row.name
        );
    }
}

impl Engine {
    /// One poll's follow-up of etcd's topics: adopts new and changed
    /// ones, and drops those deleted.
    pub(super) fn follow_cluster_topics(&self) {
        let seen = self.member.topic_changes.load(Ordering::SeqCst);
        // etcd is read outside the topics lock: produce calls look up
        // their partition under it.
        let listed = match cluster_topics(&self.ctx) {
            Ok(l) => l,
            Err(e) => return log::warn!("cannot read the cluster's topics: {e}"),
        };
        let closing = {
            let mut topics = sync::write(&self.topics);
            // A change this node made since the listing would be undone.
            if self.member.topic_changes.load(Ordering::SeqCst) != seen {
                return;
            }
            let pending = lock(&self.pending).clone();
            let gone: Vec<String> = topics
                .keys()
                .filter(|n| !listed.contains_key(*n) && !pending.contains(*n))
                .cloned()
                .collect();
            let listed = listed
                .into_iter()
                .filter(|(n, _)| !pending.contains(n))
                .collect();
            let mut closing: Vec<Arc<Topic>> =
                gone.iter().filter_map(|n| topics.remove(n)).collect();
            match sync_topics(&self.ctx, listed, &mut topics) {
                Ok(replaced) => closing.extend(replaced),
                Err(e) => log::warn!("cannot follow the cluster's topics: {e}"),
            }
            closing
        };
        for t in closing {
            log::info!(
                "topic {:?} (incarnation {}) is gone from the cluster",
                t.row.name,
                t.row.incarnation
            );
            close_topic(&self.ctx, &t);
        }
    }

    /// Creates a topic once in the cluster: etcd decides (a name taken
    /// there is taken), then the manifest goes to the bucket for rebuilds.
    /// Its partitions are led wherever the cluster places them.
    pub(super) fn create_in_cluster(&self, spec: &super::TopicSpec) -> Result<Arc<Topic>> {
        let registry = registry(&self.ctx)?;
        let mut row = self.new_topic_row(spec)?;
        row.incarnation = registry
            .claim_incarnation(row.incarnation)
            .map_err(unavailable)?;
        self.ctx.meta.raise_incarnation_counter(row.incarnation)?;
        let manifest = bucket::encode_manifest(&row);
        let created = registry
            .create_topic(&row.name, &manifest)
            .map_err(unavailable)?;
        if !created {
            return Err(Error::AlreadyExists(format!(
                "topic {:?} already exists in the cluster",
                row.name
            )));
        }
        let key = layout::topic_manifest_key(&row.name, row.incarnation);
        self.ctx.store.put(&key, &manifest)?;
        let mut topics = sync::write(&self.topics);
        self.member.topic_changes.fetch_add(1, Ordering::SeqCst);
        let name = row.name.clone();
        sync_topics(
            &self.ctx,
            BTreeMap::from([(name.clone(), manifest)]),
            &mut topics,
        )?;
        topics
            .get(&name)
            .cloned()
            .ok_or_else(|| Error::Unavailable(format!("topic {name:?} was not adopted")))
    }

    /// The key etcd holds for `held`, if it is still the one this node
    /// knows (else UNAVAILABLE: this node has not seen a change yet).
    fn cluster_key_of(&self, held: &Topic) -> Result<crate::cluster::KeyValue> {
        let name = &held.row.name;
        let kv = registry(&self.ctx)?
            .topic(name)
            .map_err(unavailable)?
            .ok_or_else(|| {
                Error::NotFound(format!("topic {name:?} does not exist in the cluster"))
            })?;
        if decode(name, &kv.value)? != held.row {
            return Err(Error::Unavailable(format!(
                "topic {name:?} was changed by another node a moment ago; retry"
            )));
        }
        Ok(kv)
    }

    /// Changes a topic's partitions or retention cluster-wide.
    pub(super) fn alter_in_cluster(&self, old: &Topic, row: TopicRow) -> Result<Arc<Topic>> {
        let name = row.name.clone();
        let kv = self.cluster_key_of(old)?;
        let manifest = bucket::encode_manifest(&row);
        let changed = registry(&self.ctx)?
            .alter_topic(&name, kv.mod_revision, &manifest)
            .map_err(unavailable)?;
        if !changed {
            return Err(Error::Unavailable(format!(
                "topic {name:?} was changed by another node meanwhile; retry"
            )));
        }
        let key = layout::topic_manifest_key(&name, row.incarnation);
        self.ctx.store.put(&key, &manifest)?;
        let mut topics = sync::write(&self.topics);
        self.member.topic_changes.fetch_add(1, Ordering::SeqCst);
        sync_topics(
            &self.ctx,
            BTreeMap::from([(name.clone(), manifest)]),
            &mut topics,
        )?;
        log::info!(
            "topic {name:?}: changed in the cluster ({} partitions)",
            row.partitions
        );
        topics
            .get(&name)
            .cloned()
            .ok_or_else(|| Error::NotFound(format!("topic {name:?} does not exist")))
    }

    /// Deletes a topic cluster-wide (see the module's doc for the order).
    pub(super) fn delete_in_cluster(&self, name: &str) -> Result<()> {
        let registry = registry(&self.ctx)?;
        let held = self.topic(name)?;
        let kv = self.cluster_key_of(&held)?;
        let inc = held.row.incarnation;
        let tombstone = layout::topic_tombstone_key(name, inc);
        self.ctx
            .store
            .put(&tombstone, &bucket::encode_tombstone(now_ms()))?;
        let deleted = registry
            .delete_topic(name, kv.mod_revision)
            .map_err(unavailable)?;
        if !deleted {
            // Another change came first and the topic lives on: no
            // tombstone may say otherwise. (When etcd's answer is lost the
            // outcome is unknown and the tombstone stays; cluster nodes
            // read topics from etcd, and the caller retries.)
            if let Err(e) = self.ctx.store.delete(&tombstone) {
                log::warn!(
                    "topic {name:?}: the tombstone of a live topic stays at {tombstone}: {e}"
                );
            }
            return Err(Error::Unavailable(format!(
                "topic {name:?} was changed by another node meanwhile; retry"
            )));
        }
        let removed = {
            let mut topics = sync::write(&self.topics);
            self.member.topic_changes.fetch_add(1, Ordering::SeqCst);
            topics.remove(name)
        };
        if let Some(t) = removed {
            close_topic(&self.ctx, &t);
        }
        match registry.delete_topic_offsets(name) {
            Ok(n) if n > 0 => log::info!("topic {name:?}: {n} committed group offsets removed"),
            Ok(_) => {}
            Err(e) => log::warn!("topic {name:?}: its group offsets stay in etcd: {e}"),
        }
        delete_topic_objects(&self.ctx, name, inc)?;
        self.sweep_later(name, inc);
        log::info!("deleted topic {name:?} from the cluster");
        Ok(())
    }

    /// The second sweep of a deleted topic's objects, on a thread of its
    /// own (a deletion is rare).
    fn sweep_later(&self, name: &str, incarnation: i64) {
        let ttl = self
            .ctx
            .config
            .cluster
            .as_ref()
            .map_or(Duration::ZERO, |c| c.ttl);
        let ctx = Arc::clone(&self.ctx);
        let name = name.to_string();
        let spawned = crate::util::thread::spawn("topic-sweep", move || {
            std::thread::sleep(ttl * SWEEP_AFTER);
            if let Err(e) = delete_topic_objects(&ctx, &name, incarnation) {
                log::warn!("topic {name:?}: second sweep of its objects failed: {e}");
            }
        });
        if let Err(e) = spawned {
            log::warn!("no second sweep of a deleted topic's objects: {e}");
        }
    }
}
