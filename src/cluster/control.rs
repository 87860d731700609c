//! One node's part in the cluster's control plane: it registers, keeps its
//! lease, and every poll reads who is alive and who leads what, and claims
//! the partitions nobody leads that it ranks first for among the live
//! nodes (rendezvous hashing, [`super::placement`]). When a node dies its
//! lease expires, its leader keys go with it, and each of its partitions
//! is claimed by the node that ranks next for it.
//!
//! A node that joins does not take partitions at once: only once it has
//! been seen alive for a whole TTL (so a node that flaps moves nothing)
//! does each partition it ranks first for move to it, by a hand-over: the
//! leader stops taking writes, commits what it has
//! ([`Leadership::hand_over`]), and releases the lead; the new node
//! claims it at its next poll. So partitions end where rendezvous hashing
//! puts them, however the nodes were started.
//!
//! What a node does with a partition it won or lost is the engine's
//! business, behind [`Leadership`]. The control plane only promises that
//! [`Control::epoch`] answers for a partition only while this node's
//! lease cannot have expired.

use super::lease::{LeaseKeeper, LeaseState};
use super::placement;
use super::registry::{Claim, CommitPoint, Leader, NodeInfo, PartitionId, Registry};
use super::{CoordError, CoordResult, Coordination, Watch};
use crate::util::sync::lock;
use crate::util::thread::{spawn, Worker};
use crossbeam_channel::{Receiver, Select, Sender};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the engine does when this node wins or loses a partition.
pub trait Leadership: Send + Sync {
    /// The partitions that exist (every topic's), to lead or not.
    fn partitions(&self) -> Vec<PartitionId>;
    /// This node leads `p` from now, in `epoch`, continuing after
    /// `committed` (none: nothing was ever committed). False: it could not
    /// take the partition up (its object store did not answer); the lead
    /// is given back at once, to be claimed again in a new epoch.
    fn won(&self, p: &PartitionId, epoch: i64, committed: Option<CommitPoint>) -> bool;
    /// This node no longer leads `p` (its lease was lost, the key is
    /// another epoch's now, or it was handed over).
    fn lost(&self, p: &PartitionId);
    /// `p` should move to another node: stop taking writes and commit
    /// what was taken. True once done (the lead is then released); false
    /// to be asked again at the next poll.
    fn hand_over(&self, p: &PartitionId) -> bool;
}

/// How a node takes part.
#[derive(Clone, Debug)]
pub struct ControlConfig {
    pub node: NodeInfo,
    /// The cluster's name (the prefix of its keys).
    pub cluster: String,
    /// The lease's TTL: how long a dead node holds its partitions.
    pub ttl: Duration,
    /// How often the node reads the cluster's state.
    pub poll: Duration,
}

/// What this node last read of the cluster.
#[derive(Clone, Debug, Default)]
pub struct ClusterView {
    pub nodes: Vec<NodeInfo>,
    pub leaders: BTreeMap<PartitionId, Leader>,
}

struct Shared {
    registry: Registry,
    config: ControlConfig,
    coord: Arc<dyn Coordination>,
    /// The current lease; replaced when one is lost and the node rejoins.
    keeper: Mutex<Arc<LeaseKeeper>>,
    leadership: Arc<dyn Leadership>,
    view: Mutex<ClusterView>,
    /// The partitions this node leads, with their epochs.
    mine: Mutex<BTreeMap<PartitionId, i64>>,
    /// When each live node was first seen alive (without a gap).
    first_seen: Mutex<HashMap<String, Instant>>,
    /// Partitions the engine could not take up: not claimed again before
    /// the instant, which doubles with each failure in a row (up to 64
    /// polls), so a partition that keeps failing does not spin claims
    /// (each one an etcd revision and an epoch mark in the bucket).
    backoff: Mutex<HashMap<PartitionId, (Instant, u32)>>,
}

/// A node's membership, running until [`Control::stop`].
pub struct Control {
    shared: Arc<Shared>,
    /// Dropped to stop the poll thread (its channel disconnects).
    stop: Option<Sender<()>>,
    worker: Option<Worker>,
}

impl Control {
    /// Grants the lease, registers the node and starts the poll thread
    /// (`cluster-control`). The first poll runs before this returns.
    pub fn start(
        coord: Arc<dyn Coordination>,
        config: ControlConfig,
        leadership: Arc<dyn Leadership>,
    ) -> CoordResult<Control> {
        let keeper = LeaseKeeper::start(Arc::clone(&coord), config.ttl)?;
        let registry = Registry::new(Arc::clone(&coord), &config.cluster);
        registry.register(&config.node, keeper.id())?;
        let shared = Arc::new(Shared {
            registry,
            config,
            coord,
            keeper: Mutex::new(Arc::new(keeper)),
            leadership,
            view: Mutex::default(),
            mine: Mutex::default(),
            first_seen: Mutex::default(),
            backoff: Mutex::default(),
        });
        poll(&shared)?;
        let (stop, stopped) = crossbeam_channel::bounded::<()>(0);
        let worker = {
            let shared = Arc::clone(&shared);
            spawn("cluster-control", move || run(&shared, &stopped)).map_err(|e| {
                CoordError::Unavailable(format!("cannot start the control thread: {e}"))
            })?
        };
        Ok(Control {
            shared,
            stop: Some(stop),
            worker: Some(worker),
        })
    }

    /// The epoch in which this node leads `p`, while it may act on it.
    pub fn epoch(&self, p: &PartitionId) -> Option<i64> {
        if !self.shared.keeper().may_act() {
            return None;
        }
        lock(&self.shared.mine).get(p).copied()
    }

    /// Whether this node's lease is surely alive: past its deadline the
    /// node acknowledges nothing, whatever it believes it leads.
    pub fn may_act(&self) -> bool {
        self.shared.keeper().may_act()
    }

    /// What the last poll read.
    pub fn view(&self) -> ClusterView {
        lock(&self.shared.view).clone()
    }

    pub fn node(&self) -> &NodeInfo {
        &self.shared.config.node
    }

    /// Leaves the cluster: stops polling and revokes the lease, so that
    /// the other nodes take this node's partitions at their next poll.
    pub fn stop(mut self) {
        self.stop_polling();
        self.shared.keeper().stop();
    }

    /// As a crash looks to the others: polling and renewals stop, and
    /// nothing is revoked (the lease runs out its TTL). For tests.
    pub fn crash(mut self) {
        self.stop_polling();
        self.shared.keeper().abandon();
    }

    fn stop_polling(&mut self) {
        self.stop.take();
        if let Some(w) = self.worker.take() {
            w.join();
        }
    }
}

impl Drop for Control {
    fn drop(&mut self) {
        self.stop_polling();
    }
}

/// The poll thread: a look at the cluster whenever a node or a leader
/// key changes (watched), and every poll interval anyway (a watch can
/// break, and settling and lease deadlines are a matter of time).
fn run(s: &Shared, stopped: &Receiver<()>) {
    let mut watches: Option<[Watch; 2]> = None;
    loop {
        if watches.is_none() {
            watches = open_watches(s);
        }
        let broken = {
            let mut sel = Select::new();
            let stop = sel.recv(stopped);
            for watch in watches.iter().flatten() {
                sel.recv(&watch.changes);
            }
            match sel.select_timeout(s.config.poll) {
                Ok(op) if op.index() == stop => {
                    // A selected operation must be completed.
                    let _ = op.recv(stopped);
                    return;
                }
                Ok(op) => {
                    let i = op.index();
                    match watches.as_ref() {
                        Some(w) => op.recv(&w[i - 1].changes).is_err(),
                        None => false,
                    }
                }
                Err(_) => false, // the interval
            }
        };
        if broken {
            watches = None; // watch again next time
        }
        // One look covers every change so far.
        for w in watches.iter().flatten() {
            while w.changes.try_recv().is_ok() {}
        }
        if let Err(e) = poll(s) {
            log::warn!("cluster {}: {e}", s.config.cluster);
        }
    }
}

fn open_watches(s: &Shared) -> Option<[Watch; 2]> {
    let opened = s
        .registry
        .watch_nodes()
        .and_then(|nodes| Ok([nodes, s.registry.watch_leaders()?]));
    match opened {
        Ok(w) => Some(w),
        Err(e) => {
            log::debug!("cluster {}: no watch ({e}); polling", s.config.cluster);
            None
        }
    }
}

/// One look at the cluster: what it holds, what this node has lost, and
/// the claims this node should make.
fn poll(s: &Shared) -> CoordResult<()> {
    let keeper = match s.keeper().state() {
        LeaseState::Lost => rejoin(s)?,
        LeaseState::Held { .. } => s.keeper(),
    };
    if !keeper.may_act() {
        // Not renewed in time: the lease may expire any moment, and with
        // it every leadership. Give them up now; the keys this node still
        // holds are released at the next poll that can act.
        lose_all(s);
        return Err(CoordError::Unavailable(
            "the lease was not renewed in time".into(),
        ));
    }
    let nodes = s.registry.nodes()?;
    let mut leaders = s.registry.leaders()?;
    let me = s.config.node.id.as_str();
    release_stale(s, &mut leaders)?;
    // Lost: a partition this node led whose key is gone or another's.
    let lost: Vec<PartitionId> = lock(&s.mine)
        .iter()
        .filter(|(p, epoch)| {
            leaders
                .get(*p)
                .is_none_or(|l| l.node != me || l.epoch != **epoch)
        })
        .map(|(p, _)| p.clone())
        .collect();
    for p in lost {
        lock(&s.mine).remove(&p);
        s.leadership.lost(&p);
    }
    let live: Vec<String> = nodes.iter().map(|n| n.id.clone()).collect();
    let settled = settled_nodes(s, &live);
    hand_over(s, &live, &settled, &mut leaders)?;
    for p in s.leadership.partitions() {
        if leaders.contains_key(&p) {
            continue;
        }
        let item = item(&p);
        if placement::leader(&item, &live) != Some(me) {
            continue;
        }
        if lock(&s.backoff)
            .get(&p)
            .is_some_and(|(until, _)| Instant::now() < *until)
        {
            continue;
        }
        match s.registry.claim(&p, me, keeper.id())? {
            Claim::Won { epoch, committed } => {
                log::info!(
                    "cluster {}: leading {item} in epoch {epoch}",
                    s.config.cluster
                );
                lock(&s.mine).insert(p.clone(), epoch);
                if s.leadership.won(&p, epoch, committed) {
                    lock(&s.backoff).remove(&p);
                    let me = me.to_string();
                    leaders.insert(p, Leader { node: me, epoch });
                } else {
                    lock(&s.mine).remove(&p);
                    let mut backoff = lock(&s.backoff);
                    let failures = backoff.get(&p).map_or(0, |(_, n)| *n).saturating_add(1);
                    let wait = s.config.poll * (1 << failures.min(7)) / 2;
                    backoff.insert(p.clone(), (Instant::now() + wait, failures));
                    drop(backoff);
                    s.registry.release(&p, epoch)?;
                }
            }
            Claim::Held(l) => {
                leaders.insert(p, l);
            }
        }
    }
    *lock(&s.view) = ClusterView { nodes, leaders };
    Ok(())
}

impl Shared {
    fn keeper(&self) -> Arc<LeaseKeeper> {
        Arc::clone(&lock(&self.keeper))
    }
}

/// The lease was lost (etcd unreachable for longer than the TTL, or the
/// process paused past it): everything this node led may be another's by
/// now, so it is all given up first; then the node joins again with a
/// new lease, as a node that was never here (it settles for a TTL before
/// partitions are handed to it).
fn rejoin(s: &Shared) -> CoordResult<Arc<LeaseKeeper>> {
    lose_all(s);
    let keeper = Arc::new(LeaseKeeper::start(Arc::clone(&s.coord), s.config.ttl)?);
    if let Err(e) = s.registry.register(&s.config.node, keeper.id()) {
        keeper.stop();
        return Err(e);
    }
    log::warn!(
        "cluster {}: node {} lost its lease and joined again",
        s.config.cluster,
        s.config.node.id
    );
    *lock(&s.keeper) = Arc::clone(&keeper);
    Ok(keeper)
}

/// Leader keys of this node's that it does not act on (it gave them up
/// when its lease was late): released, so they are claimed afresh in a
/// new epoch rather than continued in one this node stopped serving.
fn release_stale(s: &Shared, leaders: &mut BTreeMap<PartitionId, Leader>) -> CoordResult<()> {
    let me = s.config.node.id.as_str();
    let stale: Vec<(PartitionId, i64)> = {
        let mine = lock(&s.mine);
        leaders
            .iter()
            .filter(|(p, l)| l.node == me && mine.get(*p) != Some(&l.epoch))
            .map(|(p, l)| (p.clone(), l.epoch))
            .collect()
    };
    for (p, epoch) in stale {
        s.registry.release(&p, epoch)?;
        leaders.remove(&p);
    }
    Ok(())
}

fn item(p: &PartitionId) -> String {
    format!("{}/{}", p.topic, p.partition)
}

/// The live nodes seen alive without a gap for at least a TTL.
fn settled_nodes(s: &Shared, live: &[String]) -> Vec<String> {
    let now = Instant::now();
    let mut seen = lock(&s.first_seen);
    seen.retain(|id, _| live.contains(id));
    for id in live {
        seen.entry(id.clone()).or_insert(now);
    }
    seen.iter()
        .filter(|(_, since)| now.duration_since(**since) >= s.config.ttl)
        .map(|(id, _)| id.clone())
        .collect()
}

/// Releases each partition this node leads that ranks a settled node
/// first, once the engine has handed it over.
fn hand_over(
    s: &Shared,
    live: &[String],
    settled: &[String],
    leaders: &mut BTreeMap<PartitionId, Leader>,
) -> CoordResult<()> {
    let me = s.config.node.id.as_str();
    let mine: Vec<(PartitionId, i64)> =
        lock(&s.mine).iter().map(|(p, e)| (p.clone(), *e)).collect();
    for (p, epoch) in mine {
        let Some(to) = placement::leader(&item(&p), live) else {
            continue;
        };
        if to == me || !settled.iter().any(|n| n == to) || !s.leadership.hand_over(&p) {
            continue;
        }
        s.registry.release(&p, epoch)?;
        log::info!(
            "cluster {}: {} handed over to {to}",
            s.config.cluster,
            item(&p)
        );
        lock(&s.mine).remove(&p);
        leaders.remove(&p);
        s.leadership.lost(&p);
    }
    Ok(())
}

fn lose_all(s: &Shared) {
    let mine = std::mem::take(&mut *lock(&s.mine));
    for p in mine.keys() {
        s.leadership.lost(p);
    }
}
