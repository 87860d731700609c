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
    fn won(&self, p: &PartitionId, epoch: i64, _: Option<CommitPoint>) {
        let before = lock(&self.leads).insert(p.clone(), epoch);
        assert_eq!(before, None, "won {p:?} twice without losing it");
        lock(&self.events).push(format!("won {}/{} {epoch}", p.topic, p.partition));
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
        poll: Duration::from_millis(50),
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
    b.crash();
    let after = settle(&[("a", &ra), ("c", &rc)], &["a", "c"]);
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
