//! The cluster's keys, on the in-memory store and on a real etcd: one
//! registration per node id, one leader per partition with a new epoch
//! each time, and commits that only the current epoch can make.

use super::*;
use crate::cluster::registry::{Claim, CommitPoint, Leader, NodeInfo, PartitionId, Registry};

/// The in-memory store and, when configured, etcd; each with a cluster
/// name no other test (or earlier run) uses.
fn registries(test: &str) -> Vec<(Arc<dyn Coordination>, Registry)> {
    let mut stores: Vec<Arc<dyn Coordination>> = vec![Arc::new(MemoryCoordination::new())];
    if let Some(e) = etcd() {
        stores.push(Arc::new(e));
    }
    stores
        .into_iter()
        .map(|c| {
            let name = String::from_utf8(prefix(test)).unwrap().replace('/', "-");
            (Arc::clone(&c), Registry::new(c, &name))
        })
        .collect()
}

fn node(id: &str) -> NodeInfo {
    NodeInfo {
        id: id.into(),
        grpc_addr: format!("{id}.example:50051"),
        kafka_addr: format!("{id}.example:9092"),
    }
}

fn part(topic: &str, partition: u32) -> PartitionId {
    PartitionId {
        topic: topic.into(),
        partition,
    }
}

fn lease(c: &dyn Coordination) -> LeaseId {
    c.grant(Duration::from_secs(60)).unwrap().0
}

#[test]
fn one_live_process_per_node_id_and_a_node_goes_with_its_lease() {
    for (c, reg) in registries("register") {
        let (la, lb) = (lease(&*c), lease(&*c));
        reg.register(&node("a"), la).unwrap();
        reg.register(&node("b"), lb).unwrap();
        // Again under the same lease: fine (a retry after a hiccup).
        reg.register(&node("a"), la).unwrap();
        assert_eq!(reg.nodes().unwrap(), vec![node("a"), node("b")]);
        // Another process with a's id while a lives: refused.
        let other = lease(&*c);
        let refused = reg.register(&node("a"), other).unwrap_err();
        assert!(
            matches!(&refused, CoordError::Refused(m) if m.contains("unique")),
            "{refused}"
        );
        // a's lease ends: a is gone, and its id is free again.
        c.revoke(la).unwrap();
        assert_eq!(reg.nodes().unwrap(), vec![node("b")]);
        reg.register(&node("a"), other).unwrap();
        for l in [lb, other] {
            c.revoke(l).unwrap();
        }
        assert_eq!(reg.nodes().unwrap(), vec![]);
    }
}

#[test]
fn a_partition_has_one_leader_and_each_leadership_a_larger_epoch() {
    for (c, reg) in registries("claim") {
        let (la, lb) = (lease(&*c), lease(&*c));
        let p = part("orders", 0);
        let Claim::Won {
            epoch: e1,
            committed,
        } = reg.claim(&p, "a", la).unwrap()
        else {
            panic!("the first claim lost")
        };
        assert_eq!(committed, None);
        assert_eq!(
            reg.claim(&p, "b", lb).unwrap(),
            Claim::Held(Leader {
                node: "a".into(),
                epoch: e1
            })
        );
        let at_100 = CommitPoint {
            next_offset: 100,
            epoch: e1,
        };
        assert_eq!(reg.commit(&[(p.clone(), at_100)]).unwrap(), vec![true]);
        // a's lease expires (revoked here): b takes over, with a larger
        // epoch and a's commit point to continue from.
        c.revoke(la).unwrap();
        let Claim::Won {
            epoch: e2,
            committed,
        } = reg.claim(&p, "b", lb).unwrap()
        else {
            panic!("b did not take over")
        };
        assert!(e2 > e1);
        assert_eq!(committed, Some(at_100));
        // a, paused past its lease and awake again, cannot commit.
        let late = CommitPoint {
            next_offset: 180,
            epoch: e1,
        };
        assert_eq!(reg.commit(&[(p.clone(), late)]).unwrap(), vec![false]);
        assert_eq!(reg.committed(&p).unwrap(), Some(at_100));
        let at_150 = CommitPoint {
            next_offset: 150,
            epoch: e2,
        };
        assert_eq!(reg.commit(&[(p.clone(), at_150)]).unwrap(), vec![true]);
        assert_eq!(reg.committed(&p).unwrap(), Some(at_150));
        // A release by an old epoch does nothing; by the current one, the
        // partition is free.
        assert!(!reg.release(&p, e1).unwrap());
        assert!(reg.release(&p, e2).unwrap());
        assert!(reg.leaders().unwrap().is_empty());
        c.revoke(lb).unwrap();
    }
}

#[test]
fn batched_commits_find_exactly_the_fenced_partitions() {
    for (c, reg) in registries("batch") {
        let (la, lb) = (lease(&*c), lease(&*c));
        // More partitions than one transaction takes.
        let parts: Vec<PartitionId> = (0..150).map(|i| part("wide", i)).collect();
        let mut epochs = Vec::new();
        for p in &parts {
            match reg.claim(p, "a", la).unwrap() {
                Claim::Won { epoch, .. } => epochs.push(epoch),
                held => panic!("{p:?}: {held:?}"),
            }
        }
        let leaders = reg.leaders().unwrap();
        assert_eq!(leaders.len(), 150);
        assert!(leaders.values().all(|l| l.node == "a"));
        let commits = |next: i64| -> Vec<(PartitionId, CommitPoint)> {
            parts
                .iter()
                .zip(&epochs)
                .map(|(p, &epoch)| {
                    let point = CommitPoint {
                        next_offset: next,
                        epoch,
                    };
                    (p.clone(), point)
                })
                .collect()
        };
        assert!(reg.commit(&commits(10)).unwrap().iter().all(|&m| m));
        // Partition 70 (in the second batch) changes hands.
        assert!(reg.release(&parts[70], epochs[70]).unwrap());
        assert!(matches!(
            reg.claim(&parts[70], "b", lb).unwrap(),
            Claim::Won { .. }
        ));
        let made = reg.commit(&commits(20)).unwrap();
        let fenced: Vec<usize> = (0..150).filter(|&i| !made[i]).collect();
        assert_eq!(fenced, vec![70]);
        assert_eq!(reg.committed(&parts[69]).unwrap().unwrap().next_offset, 20);
        assert_eq!(reg.committed(&parts[70]).unwrap().unwrap().next_offset, 10);
        for l in [la, lb] {
            c.revoke(l).unwrap();
        }
        assert!(
            reg.leaders().unwrap().is_empty(),
            "leader keys outlived the leases"
        );
    }
}
