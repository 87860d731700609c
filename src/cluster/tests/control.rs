//! Three nodes' control planes in one process, on the in-memory store and
//! on a real etcd: started one by one they end where rendezvous hashing
//! puts each partition; a crashed node's partitions go to the others, in
//! new epochs; at every look no partition has two leaders.

use super::*;
use crate::cluster::control::{Control, ControlConfig, Leadership};
use crate::cluster::placement;
use crate::cluster::registry::{CommitPoint, NodeInfo, PartitionId};
use crate::util::sync::lock;
use std::collections::BTreeMap;
use std::sync::Mutex;

/// A node's engine as the control plane sees it: the partitions, and
/// what it was told.
#[derive(Default)]
struct Recorder {
    partitions: Vec<PartitionId>,
    /// What this node believes it leads, with the epoch.
    leads: Mutex<BTreeMap<PartitionId, i64>>,
    events: Mutex<Vec<String>>,
}

impl Leadership for Recorder {
    fn partitions(&self) -> Vec<PartitionId> {
        self.partitions.clone()
    }
    fn won(&self, p: &PartitionId, epoch: i64, _: Option<CommitPoint>) -> bool {
        let before = lock(&self.leads).insert(p.clone(), epoch);
        assert_eq!(before, None, "won {p:?} twice without losing it");
        lock(&self.events).push(format!("won {}/{} {epoch}", p.topic, p.partition));
        true
    }
    fn lost(&self, p: &PartitionId) {
        assert!(
            lock(&self.leads).remove(p).is_some(),
            "lost {p:?}, never won"
        );
        lock(&self.events).push(format!("lost {}/{}", p.topic, p.partition));
    }
    fn hand_over(&self, _: &PartitionId) -> bool {
        true
    }
}

fn partitions() -> Vec<PartitionId> {
    (0..12)
        .map(|i| PartitionId {
            topic: "orders".into(),
            partition: i,
        })
        .collect()
}

fn start(
    coord: &Arc<dyn Coordination>,
    cluster: &str,
    id: &str,
    ttl: Duration,
) -> (Control, Arc<Recorder>) {
    let rec = Arc::new(Recorder {
        partitions: partitions(),
        ..Recorder::default()
    });
    let config = ControlConfig {
        node: NodeInfo {
            id: id.into(),
            grpc_addr: format!("{id}:1"),
            kafka_addr: String::new(),
        },
        cluster: cluster.into(),
        ttl,
        // Longer than the failovers measured: changes are seen through
        // the watches, the interval only settles new nodes.
        poll: Duration::from_millis(500),
    };
    let control = Control::start(Arc::clone(coord), config, rec.clone()).unwrap();
    (control, rec)
}

/// Waits (up to 20 s) until the nodes' beliefs are exactly `want`'s
/// placement, checking at every look that no partition has two leaders.
fn settle(nodes: &[(&str, &Arc<Recorder>)], want: &[&str]) -> BTreeMap<PartitionId, i64> {
    let live: Vec<String> = want.iter().map(|s| s.to_string()).collect();
    let target: BTreeMap<PartitionId, String> = partitions()
        .into_iter()
        .map(|p| {
            let l = placement::leader(&format!("orders/{}", p.partition), &live).unwrap();
            (p, l.to_string())
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut seen: BTreeMap<PartitionId, (String, i64)> = BTreeMap::new();
        for (id, rec) in nodes {
            for (p, epoch) in lock(&rec.leads).iter() {
                let twice = seen.insert(p.clone(), (id.to_string(), *epoch));
                assert!(twice.is_none(), "{p:?} led by {twice:?} and {id}");
            }
        }
        let now: BTreeMap<PartitionId, String> = seen
            .iter()
            .map(|(p, (n, _))| (p.clone(), n.clone()))
            .collect();
        if now == target {
            return seen.into_iter().map(|(p, (_, e))| (p, e)).collect();
        }
        assert!(
            Instant::now() < deadline,
            "not settled: {now:?}, want {target:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn scenario(coord: Arc<dyn Coordination>, ttl: Duration) {
    let cluster = String::from_utf8(prefix("control"))
        .unwrap()
        .replace('/', "-");
    let (a, ra) = start(&coord, &cluster, "a", ttl);
    // Alone, a leads everything.
    settle(&[("a", &ra)], &["a"]);
    let (b, rb) = start(&coord, &cluster, "b", ttl);
    let (c, rc) = start(&coord, &cluster, "c", ttl);
    let all = [("a", &ra), ("b", &rb), ("c", &rc)];
    let before = settle(&all, &["a", "b", "c"]);
    for p in partitions() {
        let leader = [(&a, "a"), (&b, "b"), (&c, "c")]
            .iter()
            .filter(|(ctl, _)| ctl.epoch(&p).is_some())
            .count();
        assert_eq!(leader, 1, "{p:?}: {leader} nodes say they may act on it");
    }
    assert_eq!(a.view().nodes.len(), 3);
    // b crashes: its lease runs out, a and c take its partitions, each in
    // a larger epoch than b's.
    let b_had: Vec<PartitionId> = lock(&rb.leads).keys().cloned().collect();
    assert!(!b_had.is_empty());
    // Measured from when b's renewals stop (the end of `crash`).
    b.crash();
    let crashed = Instant::now();
    let after = settle(&[("a", &ra), ("c", &rc)], &["a", "c"]);
    // A figure, not a check: the lease's TTL plus up to a poll.
    eprintln!(
        "control-plane failover: b's {} partitions led again {} ms after its crash (TTL {} s, watched, poll 500 ms)",
        b_had.len(),
        crashed.elapsed().as_millis(),
        ttl.as_secs()
    );
    for p in &b_had {
        assert!(
            after[p] > before[p],
            "{p:?}: epoch {} after {}",
            after[p],
            before[p]
        );
    }
    // Partitions that a and c kept did not move or change epoch.
    for (p, e) in &before {
        if !b_had.contains(p) {
            assert_eq!(after[p], *e, "{p:?} moved although its leader lived");
        }
    }
    a.stop();
    c.stop();
}

#[test]
fn partitions_end_where_placement_puts_them_and_a_crashed_nodes_move() {
    scenario(Arc::new(MemoryCoordination::new()), Duration::from_secs(1));
    if let Some(e) = etcd() {
        // etcd's shortest lease is about 2 s.
        scenario(Arc::new(e), Duration::from_secs(2));
    }
}

/// One node's view of the store, which a test can cut off (a network
/// partition, or the process paused: the node's calls fail, the others'
/// go on).
#[derive(Debug)]
struct Cuttable {
    inner: Arc<dyn Coordination>,
    cut: std::sync::atomic::AtomicBool,
}

impl Cuttable {
    fn check(&self) -> CoordResult<()> {
        if self.cut.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(CoordError::Unavailable("cut off by the test".into()));
        }
        Ok(())
    }
}

impl Coordination for Cuttable {
    fn get(&self, key: &[u8]) -> CoordResult<Option<KeyValue>> {
        self.check()?;
        self.inner.get(key)
    }
    fn list(&self, prefix: &[u8]) -> CoordResult<(Vec<KeyValue>, i64)> {
        self.check()?;
        self.inner.list(prefix)
    }
    fn txn(&self, when: &[Compare], then: &[Op], otherwise: &[Op]) -> CoordResult<TxnOutcome> {
        self.check()?;
        self.inner.txn(when, then, otherwise)
    }
    fn grant(&self, ttl: Duration) -> CoordResult<(LeaseId, Duration)> {
        self.check()?;
        self.inner.grant(ttl)
    }
    fn keep_alive(&self, lease: LeaseId) -> CoordResult<Duration> {
        self.check()?;
        self.inner.keep_alive(lease)
    }
    fn revoke(&self, lease: LeaseId) -> CoordResult<()> {
        self.check()?;
        self.inner.revoke(lease)
    }
    fn watch(&self, prefix: &[u8]) -> CoordResult<Watch> {
        self.check()?;
        self.inner.watch(prefix)
    }
}

#[test]
fn a_node_cut_off_past_its_lease_stops_first_and_rejoins_after() {
    let store: Arc<dyn Coordination> = Arc::new(MemoryCoordination::new());
    let ttl = Duration::from_secs(1);
    let cluster = String::from_utf8(prefix("cut")).unwrap().replace('/', "-");
    let a_view = Arc::new(Cuttable {
        inner: Arc::clone(&store),
        cut: false.into(),
    });
    let a_coord: Arc<dyn Coordination> = a_view.clone();
    let (a, ra) = start(&a_coord, &cluster, "a", ttl);
    let (b, rb) = start(&store, &cluster, "b", ttl);
    let both = [("a", &ra), ("b", &rb)];
    let before = settle(&both, &["a", "b"]);
    let a_had: Vec<PartitionId> = lock(&ra.leads).keys().cloned().collect();
    assert!(!a_had.is_empty());

    a_view.cut.store(true, std::sync::atomic::Ordering::SeqCst);
    // b takes a's partitions once a's lease has expired; `settle` checks
    // at every look that a has given each up before b leads it.
    let during = settle(&both, &["b"]);
    for p in &a_had {
        assert!(a.epoch(p).is_none());
        assert!(during[p] > before[p]);
    }
    a_view.cut.store(false, std::sync::atomic::Ordering::SeqCst);
    // Back: a joins again with a new lease and, once settled, gets its
    // partitions back by hand-over, each in a new epoch.
    let after = settle(&both, &["a", "b"]);
    for p in &a_had {
        assert!(after[p] > during[p]);
        assert_eq!(a.epoch(p), Some(after[p]));
    }
    a.stop();
    b.stop();
}
