//! One node's commit points, moved in etcd by one thread for all its
//! partitions, batched: while a transaction is in flight the commits that
//! arrive wait, and go together in the next one (a group commit, as the
//! WAL's fsync is). A node with many partitions uploading at once sends
//! one transaction per round trip instead of one per segment; a node with
//! one adds no wait (a lone commit goes at once).

use super::registry::{CommitPoint, PartitionId, Registry};
use super::CoordResult;
use crate::util::thread::{self, Worker};
use crossbeam_channel::{bounded, unbounded, Receiver, Sender};

/// Commits per transaction (`Registry::commit` makes one transaction of
/// up to this many).
const MAX_BATCH: usize = 64;

/// What a commit did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Committed {
    /// The commit point moved (false: the partition's epoch was fenced).
    pub made: bool,
    /// This commit was the first of its batch: counting these counts the
    /// batches (`/metrics`).
    pub opened_batch: bool,
}

struct Request {
    partition: PartitionId,
    point: CommitPoint,
    reply: Sender<CoordResult<Committed>>,
}

/// The committing thread and the way to it.
pub struct Committer {
    // Dropped first: the thread ends when the channel closes.
    requests: Option<Sender<Request>>,
    worker: Option<Worker>,
}

impl std::fmt::Debug for Committer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Committer").finish_non_exhaustive()
    }
}

impl Committer {
    pub fn start(registry: Registry) -> std::io::Result<Committer> {
        let (tx, rx) = unbounded();
        let worker = thread::spawn("etcd-committer", move || run(&registry, &rx))?;
        Ok(Committer {
            requests: Some(tx),
            worker: Some(worker),
        })
    }

    /// Moves `partition`'s commit point to `point` if the partition is
    /// still led in `point.epoch`; blocks until etcd answered. An error is
    /// etcd's (unreachable: the caller retries).
    pub fn commit(&self, partition: PartitionId, point: CommitPoint) -> CoordResult<Committed> {
        let stopped = || super::CoordError::Unavailable("the node is stopping".into());
        let (reply, answer) = bounded(1);
        let request = Request {
            partition,
            point,
            reply,
        };
        self.requests
            .as_ref()
            .ok_or_else(stopped)?
            .send(request)
            .map_err(|_| stopped())?;
        answer.recv().map_err(|_| stopped())?
    }
}

impl Drop for Committer {
    fn drop(&mut self) {
        self.requests.take();
        if let Some(w) = self.worker.take() {
            w.join_until(std::time::Instant::now() + std::time::Duration::from_secs(10));
        }
    }
}

fn run(registry: &Registry, requests: &Receiver<Request>) {
    // A second commit of a partition already in the batch waits for the
    // next one: etcd refuses a transaction that puts one key twice.
    let mut carried: Vec<Request> = Vec::new();
    loop {
        let mut batch: Vec<Request> = Vec::new();
        let mut later: Vec<Request> = Vec::new();
        for r in std::mem::take(&mut carried) {
            add_or_defer(&mut batch, &mut later, r);
        }
        if batch.is_empty() {
            match requests.recv() {
                Ok(r) => batch.push(r),
                Err(_) => return,
            }
        }
        while batch.len() < MAX_BATCH {
            let Ok(r) = requests.try_recv() else { break };
            add_or_defer(&mut batch, &mut later, r);
        }
        carried = later;
        let commits: Vec<(PartitionId, CommitPoint)> = batch
            .iter()
            .map(|r| (r.partition.clone(), r.point))
            .collect();
        match registry.commit(&commits) {
            Ok(made) => {
                for (i, (r, made)) in batch.into_iter().zip(made).enumerate() {
                    let opened_batch = i == 0;
                    let _ = r.reply.send(Ok(Committed { made, opened_batch }));
                }
            }
            Err(e) => {
                for r in batch {
                    let _ = r.reply.send(Err(e.clone()));
                }
            }
        }
    }
}

/// Into the batch, unless its partition is there already (or full).
fn add_or_defer(batch: &mut Vec<Request>, later: &mut Vec<Request>, r: Request) {
    if batch.len() < MAX_BATCH && !batch.iter().any(|b| b.partition == r.partition) {
        batch.push(r);
    } else {
        later.push(r);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::registry::Claim;
    use crate::cluster::{Compare, Coordination, KeyValue, LeaseId, MemoryCoordination, Op};
    use crate::cluster::{TxnOutcome, Watch};
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    /// The in-memory store, each transaction taking 20 ms (etcd's round
    /// trip and fsync, exaggerated), counted.
    #[derive(Debug)]
    struct Slow {
        inner: MemoryCoordination,
        txns: AtomicU64,
    }

    impl Coordination for Slow {
        fn get(&self, key: &[u8]) -> CoordResult<Option<KeyValue>> {
            self.inner.get(key)
        }
        fn list(&self, prefix: &[u8]) -> CoordResult<(Vec<KeyValue>, i64)> {
            self.inner.list(prefix)
        }
        fn txn(&self, when: &[Compare], then: &[Op], otherwise: &[Op]) -> CoordResult<TxnOutcome> {
            self.txns.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(20));
            self.inner.txn(when, then, otherwise)
        }
        fn grant(&self, ttl: Duration) -> CoordResult<(LeaseId, Duration)> {
            self.inner.grant(ttl)
        }
        fn keep_alive(&self, lease: LeaseId) -> CoordResult<Duration> {
            self.inner.keep_alive(lease)
        }
        fn revoke(&self, lease: LeaseId) -> CoordResult<()> {
            self.inner.revoke(lease)
        }
        fn watch(&self, prefix: &[u8]) -> CoordResult<Watch> {
            self.inner.watch(prefix)
        }
    }

    fn partition(n: u32) -> PartitionId {
        PartitionId {
            topic: "t".into(),
            partition: n,
        }
    }

    #[test]
    fn concurrent_commits_share_transactions_and_a_fenced_one_is_told_alone() {
        let slow = Arc::new(Slow {
            inner: MemoryCoordination::new(),
            txns: AtomicU64::new(0),
        });
        let registry = Registry::new(slow.clone(), "c");
        let lease = slow.grant(Duration::from_secs(60)).unwrap().0;
        let mut epochs = Vec::new();
        for n in 0..16 {
            match registry.claim(&partition(n), "n1", lease).unwrap() {
                Claim::Won { epoch, .. } => epochs.push(epoch),
                held => panic!("{held:?}"),
            }
        }
        let committer = Arc::new(Committer::start(registry.clone()).unwrap());
        let before = slow.txns.load(Ordering::SeqCst);
        let threads: Vec<_> = (0..16u32)
            .map(|n| {
                let committer = Arc::clone(&committer);
                // Partition 5 commits in an epoch that is not its leader's.
                let epoch = epochs[n as usize] + i64::from(n == 5);
                std::thread::spawn(move || {
                    let point = CommitPoint {
                        next_offset: 10 + i64::from(n),
                        epoch,
                    };
                    (n, committer.commit(partition(n), point).unwrap())
                })
            })
            .collect();
        let results: Vec<(u32, Committed)> =
            threads.into_iter().map(|t| t.join().unwrap()).collect();
        let txns = slow.txns.load(Ordering::SeqCst) - before;
        let batches = results.iter().filter(|(_, c)| c.opened_batch).count();
        for (n, c) in &results {
            assert_eq!(c.made, *n != 5, "partition {n}");
            let point = registry.committed(&partition(*n)).unwrap();
            assert_eq!(
                point.map(|p| p.next_offset),
                (*n != 5).then_some(10 + i64::from(*n))
            );
        }
        // Sixteen commits one by one would be sixteen transactions; a
        // failed batch costs one more per commit in it (to find which).
        assert!(batches < 16, "{batches} batches");
        println!("16 commits: {batches} batches, {txns} transactions");
    }

    #[test]
    fn two_commits_of_one_partition_never_share_a_transaction() {
        // Slow: the commits pile up behind the first transaction, and the
        // store refuses a key put twice in one, as etcd does.
        let coord = Arc::new(Slow {
            inner: MemoryCoordination::new(),
            txns: AtomicU64::new(0),
        });
        let registry = Registry::new(coord.clone(), "c");
        let lease = coord.grant(Duration::from_secs(60)).unwrap().0;
        let Claim::Won { epoch, .. } = registry.claim(&partition(0), "n1", lease).unwrap() else {
            panic!("not won");
        };
        let committer = Arc::new(Committer::start(registry.clone()).unwrap());
        let before = coord.txns.load(Ordering::SeqCst);
        let threads: Vec<_> = (0..8i64)
            .map(|i| {
                let committer = Arc::clone(&committer);
                std::thread::spawn(move || {
                    let point = CommitPoint {
                        next_offset: i,
                        epoch,
                    };
                    committer.commit(partition(0), point).unwrap().made
                })
            })
            .collect();
        for t in threads {
            assert!(t.join().unwrap());
        }
        // Each went alone (8 transactions at least), none refused.
        assert!(coord.txns.load(Ordering::SeqCst) - before >= 8);
    }
}
