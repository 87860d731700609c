//! Cluster mode in the engine (`--etcd`): which partitions this node
//! leads, and what leading one means. The control plane (`crate::cluster`)
//! decides who leads what; here, through [`Leadership`]:
//!
//! - **won** ([`Engine::lead`]): the epoch's start is written in the bucket
//!   at the commit point etcd holds (so objects an earlier leader uploads
//!   late, from there on, are never part of the log); this node's own WAL
//!   of the partition from an earlier epoch is set aside (its records past
//!   the commit point were never committed, and others may have written
//!   those offsets since); the partition's segments and producer table up
//!   to the commit point are adopted from the bucket; then the partition
//!   opens for writes in the new epoch.
//! - **lost**: the partition answers UNAVAILABLE naming the leader at once,
//!   then stops. What it took and did not commit is not part of the log.
//! - **hand_over**: the partition stops taking writes, seals, and its
//!   uploads finish and commit; then the control plane releases the lead.
//!
//! Topics are kept once per cluster, in etcd (`cluster_topics`); every
//! node follows them from there. Every other node's partitions are
//! placeholders that answer with the leader's address.

use super::cluster_groups::{is_slot, slots};
use super::cluster_topics::{cluster_topics, sync_topics};
use super::topics::forget_topic;
use super::{Engine, Topic};
use crate::bucket;
use crate::cluster::control::{Control, ControlConfig, Leadership};
use crate::cluster::registry::{CommitPoint, NodeInfo, PartitionId};
use crate::config::ClusterConfig;
use crate::context::Context;
use crate::error::{Error, LeaderAt, Result};
use crate::layout;
use crate::meta::TopicRow;
use crate::object_store::ObjectStore;
use crate::partition::{
    open_blocked, open_partition, Backlog, Partition, PartitionShared, PartitionView, Status,
};
use crate::util::clock::now_ms;
use crate::util::sync::{self, lock};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// How long a hand-over waits for the partition's uploads at one ask.
const HAND_OVER_WAIT: Duration = Duration::from_secs(5);

/// How often a node reads the cluster even when no watch fired.
const POLL: Duration = Duration::from_secs(1);

/// This node's membership.
#[derive(Default)]
pub(super) struct Member {
    pub(super) control: Mutex<Option<Control>>,
    /// Partitions being handed over: stopped, their uploads finishing.
    handing: Mutex<HashMap<PartitionId, Arc<Partition>>>,
    /// When the control plane last asked for each hand-over.
    asked: Mutex<HashMap<PartitionId, Instant>>,
    /// Topics created, changed or deleted by this node: a listing of etcd
    /// read before one of them is not applied (it would undo it).
    pub(super) topic_changes: AtomicU64,
    /// Read-only views of the partitions this node does not lead.
    pub(super) followers: super::follower::Followers,
    /// Groups known to have a key in etcd (saves a read per commit).
    pub(super) known_groups: Mutex<HashSet<String>>,
}

impl Member {
    /// Leaves the cluster (the lease is revoked: the others take this
    /// node's partitions at once).
    pub fn leave(&self) {
        // Out of the lock first: requests look at it while this waits.
        let control = lock(&self.control).take();
        if let Some(c) = control {
            c.stop();
        }
    }
}

/// The engine as the control plane sees it. Weak: the control thread must
/// not keep a stopped engine alive.
struct Leading(Weak<Engine>);

impl Leading {
    /// The engine, unless it is stopping (it takes no new partitions).
    fn running(&self) -> Option<Arc<Engine>> {
        self.0
            .upgrade()
            .filter(|e| !e.shut_down.load(Ordering::SeqCst))
    }
}

impl Leadership for Leading {
    fn partitions(&self) -> Vec<PartitionId> {
        self.running()
            .map_or_else(Vec::new, |e| e.cluster_partitions())
    }

    // A coordinator slot holds nothing to open or hand over: the Kafka
    // coordinator checks the slot's epoch at every request (`group_home`).
    fn won(&self, p: &PartitionId, epoch: i64, committed: Option<CommitPoint>) -> bool {
        if is_slot(p) {
            log::info!(
                "coordinating the groups of slot {} in epoch {epoch}",
                p.partition
            );
            return self.running().is_some();
        }
        self.running().is_some_and(|e| e.lead(p, epoch, committed))
    }

    fn lost(&self, p: &PartitionId) {
        if is_slot(p) {
            return;
        }
        if let Some(e) = self.0.upgrade() {
            e.step_down(p);
        }
    }

    fn hand_over(&self, p: &PartitionId) -> bool {
        is_slot(p) || self.0.upgrade().is_none_or(|e| e.hand_over(p))
    }
}

/// Before a cluster node serves: the bucket prefix must not be a single
/// node's (its owner record), and the topics come from etcd.
pub(super) fn prepare(ctx: &Context) -> Result<HashMap<String, Arc<Topic>>> {
    // Owner epochs and etcd's revisions are different counters: a prefix
    // a single node wrote cannot be continued by a cluster.
    match ctx.store.get(layout::OWNER_KEY) {
        Ok(_) => {
            return Err(Error::Config(format!(
                "{} was served by a single node (it has an owner record); a cluster needs a prefix of its own",
                ctx.store.identity()
            )))
        }
        Err(crate::object_store::StoreError::NotFound { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    let listed = bucket::list_topics(&ctx.store)?;
    ctx.meta.raise_incarnation_counter(listed.max_incarnation)?;
    let mut topics = HashMap::new();
    let listed = cluster_topics(ctx)?;
    // Topics deleted while this node was away.
    for row in ctx.meta.topics()? {
        if !listed.contains_key(&row.name) {
            forget_topic(ctx, &row.name, row.incarnation)?;
        }
    }
    sync_topics(ctx, listed, &mut topics)?;
    Ok(topics)
}

/// A partition this node does not lead: it answers with `why`.
pub(super) fn placeholder(ctx: &Context, row: &TopicRow, p: u32, why: &str) -> Partition {
    let why = format!("partition {}/{p}: {why}", row.name);
    let shared = PartitionShared::new(
        &row.name,
        row.incarnation,
        p,
        PartitionView::empty(Status::NotLeader(why)),
        Backlog::new(Arc::clone(&ctx.backlog_bytes)),
    );
    Partition::without_writer(shared)
}

/// Starts this node's membership: registers, and from now on leads the
/// partitions the cluster gives it.
pub(super) fn join(engine: &Arc<Engine>, config: &ClusterConfig) -> Result<()> {
    let Some(registry) = &engine.ctx.cluster else {
        return Ok(());
    };
    let control = Control::start(
        registry.coordination(),
        ControlConfig {
            node: NodeInfo {
                id: engine.ctx.owner.node_id().to_string(),
                grpc_addr: config.grpc_addr.clone(),
                kafka_addr: config.kafka_addr.clone(),
            },
            cluster: config.name.clone(),
            ttl: config.ttl,
            poll: POLL,
        },
        Arc::new(Leading(Arc::downgrade(engine))),
    )
    .map_err(|e| Error::Unavailable(format!("cannot join cluster {:?}: {e}", config.name)))?;
    *lock(&engine.member.control) = Some(control);
    Ok(())
}

impl Engine {
    /// Every partition of every topic etcd knows (new topics adopted).
    fn cluster_partitions(&self) -> Vec<PartitionId> {
        self.resume_abandoned_hand_overs();
        self.follow_cluster_topics();
        self.follow_named_producers();
        let topics = sync::read(&self.topics);
        topics
            .values()
            .flat_map(|t| {
                (0..t.row.partitions).map(|p| PartitionId {
                    topic: t.row.name.clone(),
                    partition: p,
                })
            })
            .chain(slots())
            .collect()
    }

    /// Cluster mode: UNAVAILABLE (naming the leader) unless this node
    /// leads `topic/partition` and its lease is surely alive. Checked as a
    /// request comes in: a node paused past its lease (a zombie) takes
    /// nothing more, even before its control thread notices.
    pub(super) fn check_leading(&self, topic: &str, partition: u32) -> Result<()> {
        if self.ctx.cluster.is_none() {
            return Ok(());
        }
        let id = PartitionId {
            topic: topic.to_string(),
            partition,
        };
        let leading = lock(&self.member.control)
            .as_ref()
            .is_some_and(|c| c.epoch(&id).is_some());
        match leading {
            true => Ok(()),
            false => Err(self.leader_hint(topic, partition)),
        }
    }

    /// NOT_LEADER naming where the leader of `topic/partition` is, as this
    /// node last read it.
    pub(super) fn leader_hint(&self, topic: &str, partition: u32) -> Error {
        let control = lock(&self.member.control);
        let Some(view) = control.as_ref().map(Control::view) else {
            return Error::NotLeader {
                message: "this node is not in the cluster".into(),
                leader: None,
            };
        };
        let id = PartitionId {
            topic: topic.to_string(),
            partition,
        };
        let Some(l) = view.leaders.get(&id) else {
            return Error::NotLeader {
                message: format!(
                    "partition {topic}/{partition} has no leader at the moment (a failover is under way); retry shortly"
                ),
                leader: None,
            };
        };
        let addr = view
            .nodes
            .iter()
            .find(|n| n.id == l.node)
            .map(|n| n.grpc_addr.clone());
        Error::NotLeader {
            message: format!(
                "partition {topic}/{partition} is led by node {} at {} (epoch {}); send it there",
                l.node,
                addr.as_deref().unwrap_or("an address not yet known"),
                l.epoch
            ),
            leader: addr.map(|grpc_addr| LeaderAt {
                topic: topic.to_string(),
                partition,
                node_id: l.node.clone(),
                grpc_addr,
                epoch: l.epoch,
            }),
        }
    }

    /// The cluster as this node last read it (nodes, leaders, epochs).
    pub fn cluster_view(&self) -> Option<crate::cluster::control::ClusterView> {
        lock(&self.member.control).as_ref().map(Control::view)
    }

    /// This node leads `p` from now, in `epoch`; false if it could not
    /// take it up (the lead is then given back, and claimed again).
    fn lead(&self, p: &PartitionId, epoch: i64, committed: Option<CommitPoint>) -> bool {
        let started = Instant::now();
        let start = committed.map_or(0, |c| c.next_offset);
        match self.open_led(p, epoch as u64, start) {
            Ok(()) => {
                log::info!(
                    "partition {}/{}: leading in epoch {epoch} from offset {start} (opened in {:?})",
                    p.topic,
                    p.partition,
                    started.elapsed()
                );
                true
            }
            Err(e) => {
                log::error!(
                    "partition {}/{}: could not be taken up in epoch {epoch}: {e}; the lead is given back",
                    p.topic,
                    p.partition
                );
                false
            }
        }
    }

    /// The steps of [`Engine::lead`] that can fail.
    fn open_led(&self, p: &PartitionId, epoch: u64, start: i64) -> Result<()> {
        let ctx = &self.ctx;
        let t = self.topic(&p.topic)?;
        let (name, inc, part) = (&t.row.name, t.row.incarnation, p.partition);
        // The topic may have been deleted since this node listed it (its
        // leader keys with it): a claim made from that listing is given
        // back rather than served.
        if !super::cluster_topics::still_listed(ctx, &t.row)? {
            return Err(Error::NotFound(format!(
                "topic {name:?} (incarnation {inc}) is no longer in the cluster"
            )));
        }
        // Before anything is written in this epoch.
        let key = layout::epoch_start_key(name, inc, part, start, epoch);
        let body = bucket::encode_epoch_start(epoch, start, ctx.owner.node_id(), now_ms());
        ctx.store.put(&key, &body)?;
        set_aside_wal(ctx, name, part, epoch)?;
        let listed = bucket::list_partition(&ctx.store, name, inc, part)?;
        let id = (name.clone(), inc, part);
        let segs = listed.segments.get(&id).map_or(&[][..], Vec::as_slice);
        let history = listed.history.get(&id).cloned().unwrap_or_default();
        let (_, blocked) = super::rebuild::reconcile_partition(ctx, &t.row, part, segs, &history)?;
        let local = ctx.meta.partition(name, part)?.map_or(0, |r| r.next_offset);
        let opened = match blocked {
            Some(why) => open_blocked(ctx, name, part, why)?,
            // Either way offsets would be handed out again (or skipped).
            None if local != start => {
                return Err(Error::DataLoss(format!(
                    "the committed history adopted ends at offset {local}, but the cluster's commit point is {start}; refusing to lead it"
                )))
            }
            None => open_partition(ctx, &self.uploads, name, part, epoch)?,
        };
        let opened = Arc::new(opened);
        // Deleted (and maybe created again) while it opened: not this one.
        if self
            .replace_partition(name, Some(inc), part, Arc::clone(&opened))
            .is_none()
        {
            opened.stop_now(Instant::now() + Duration::from_secs(2));
            return Err(Error::NotFound(format!(
                "topic {name:?} (incarnation {inc}) was deleted while the partition opened"
            )));
        }
        Ok(())
    }

    /// Puts `partition` in place of the topic's `p`; returns the one it
    /// replaced.
    fn replace_partition(
        &self,
        topic: &str,
        incarnation: Option<i64>,
        p: u32,
        partition: Arc<Partition>,
    ) -> Option<Arc<Partition>> {
        let mut topics = sync::write(&self.topics);
        let t = topics
            .get(topic)
            .filter(|t| incarnation.is_none_or(|i| i == t.row.incarnation))?;
        let mut partitions = t.partitions.clone();
        let old = std::mem::replace(partitions.get_mut(p as usize)?, partition);
        let row = t.row.clone();
        topics.insert(topic.to_string(), Arc::new(Topic { row, partitions }));
        Some(old)
    }

    /// This node no longer leads `p`: it answers so at once, then stops it.
    fn step_down(&self, p: &PartitionId) {
        let Ok(t) = self.topic(&p.topic) else { return };
        let stand_in = placeholder(&self.ctx, &t.row, p.partition, "led by another node");
        if let Some(old) = self.replace_partition(&p.topic, None, p.partition, Arc::new(stand_in)) {
            old.shared.view_mut().status = Status::NotLeader(format!(
                "partition {}/{}: led by another node",
                p.topic, p.partition
            ));
            old.stop_now(Instant::now() + Duration::from_secs(2));
        }
        lock(&self.member.handing).remove(p);
        lock(&self.member.asked).remove(p);
    }

    /// Stops `p` taking writes and waits for its uploads; true once all it
    /// took is committed (the lead may then go).
    fn hand_over(&self, p: &PartitionId) -> bool {
        let stopping = lock(&self.member.handing).get(p).cloned();
        let partition = match stopping {
            Some(s) => s,
            None => {
                let Ok(t) = self.topic(&p.topic) else {
                    return true;
                };
                let stand_in = placeholder(&self.ctx, &t.row, p.partition, "being handed over");
                let Some(old) =
                    self.replace_partition(&p.topic, None, p.partition, Arc::new(stand_in))
                else {
                    return true;
                };
                old.ask_writer_to_stop();
                lock(&self.member.handing).insert(p.clone(), Arc::clone(&old));
                old
            }
        };
        lock(&self.member.asked).insert(p.clone(), Instant::now());
        let deadline = Instant::now() + HAND_OVER_WAIT;
        let stopped = partition.writer_stopped_by(deadline) && partition.wait_uploads(deadline);
        let view = partition.shared.view();
        let done = stopped && view.committed_next == view.high_watermark;
        drop(view);
        if done {
            lock(&self.member.handing).remove(p);
            lock(&self.member.asked).remove(p);
            log::info!("partition {}/{}: handed over", p.topic, p.partition);
        }
        done
    }

    /// Hand-overs the control plane stopped asking for (their target left
    /// before they finished): the partition opens again, in the epoch it
    /// is still led in, from its WAL.
    fn resume_abandoned_hand_overs(&self) {
        let stale: Vec<(PartitionId, Arc<Partition>)> = {
            let asked = lock(&self.member.asked);
            lock(&self.member.handing)
                .iter()
                .filter(|(p, _)| asked.get(*p).is_none_or(|t| t.elapsed() > 3 * POLL))
                .map(|(p, part)| (p.clone(), Arc::clone(part)))
                .collect()
        };
        for (p, old) in stale {
            let deadline = Instant::now() + HAND_OVER_WAIT;
            if !old.writer_stopped_by(deadline) {
                continue; // asked again at the next poll
            }
            old.abandon_uploads();
            old.wait_uploads(deadline);
            lock(&self.member.handing).remove(&p);
            lock(&self.member.asked).remove(&p);
            let (topic, epoch) = (&p.topic, old.shared.cluster_epoch);
            match open_partition(&self.ctx, &self.uploads, topic, p.partition, epoch) {
                Ok(opened) => {
                    self.replace_partition(topic, None, p.partition, Arc::new(opened));
                    log::info!(
                        "partition {topic}/{}: hand-over abandoned; leading it again",
                        p.partition
                    );
                }
                Err(e) => log::error!(
                    "partition {topic}/{}: cannot open it again: {e}",
                    p.partition
                ),
            }
        }
    }
}

/// This node's WAL of a partition it comes to lead: from an earlier epoch
/// of its own, its records past the commit point were never committed and
/// the offsets may be another leader's now. Set aside, not deleted.
fn set_aside_wal(ctx: &Context, topic: &str, p: u32, epoch: u64) -> Result<()> {
    let dir = layout::partition_wal_dir(&ctx.config.data_dir, topic, p);
    if !dir.exists() {
        return Ok(());
    }
    let aside = layout::superseded_wal_root(&ctx.config.data_dir, epoch, now_ms())
        .join(topic)
        .join(p.to_string());
    if let Some(parent) = aside.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| Error::io(format!("create {}", parent.display()), e))?;
    }
    std::fs::rename(&dir, &aside).map_err(|e| {
        Error::io(
            format!("set aside {} as {}", dir.display(), aside.display()),
            e,
        )
    })?;
    log::info!(
        "partition {topic}/{p}: this node's WAL from an earlier epoch set aside as {}",
        aside.display()
    );
    Ok(())
}
