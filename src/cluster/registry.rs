//! What one cluster keeps in etcd, under `/streamhouse/{cluster}/`:
//!
//! | key | value | attached to |
//! |---|---|---|
//! | `nodes/{node}` | the node's addresses | the node's lease |
//! | `leaders/{topic}/{partition}` | the leading node's id | the leader's lease |
//! | `commits/{topic}/{partition}` | the committed next offset and its epoch | nothing |
//! | `topics/{topic}` | the topic's manifest (as in the bucket) | nothing |
//! | `producer-names/{hex name}` | a named producer's id and epoch | nothing |
//! | `incarnations` | topic incarnations below this were handed out (`next=N`) | nothing |
//! | `producer-ids` | ids below this were handed out (`next_id=N`) | nothing |
//! | `groups/{group}` | when the group last committed (ms) | nothing |
//! | `offsets/{group}/{topic}/{partition}` | a committed offset (see `offsets`) | nothing |
//!
//! Group names are escaped in keys (`%` and `/` as `%25` and `%2F`), so a
//! group's prefix never covers another group's keys.
//!
//! A partition's **epoch** is the create revision of its leader key: etcd
//! gives every creation a new, larger revision, so a partition led again
//! (after its leader's lease expired) has a larger epoch than any before,
//! and two leaderships never share one. Every commit is a transaction
//! that holds only while the leader key still has the committing node's
//! epoch: a node that lost its leadership, however late it wakes up,
//! cannot move a partition's commit point.

use super::{Compare, CoordError, CoordResult, Coordination, KeyValue, LeaseId, Op, Watch};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Commits per transaction: etcd refuses more than `--max-txn-ops`
/// operations (default 128) in one, and a commit is a compare and a put.
const COMMITS_PER_TXN: usize = 64;

/// Times a register or claim is tried when the key vanishes between its
/// compare and its read.
const RACES: usize = 3;

fn contended(what: &str) -> CoordError {
    CoordError::Unavailable(format!(
        "{what} changed hands {RACES} times in a row; try again"
    ))
}

/// A node as it registered itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeInfo {
    pub id: String,
    /// Where clients and other nodes reach its gRPC API.
    pub grpc_addr: String,
    /// Its Kafka listener as clients reach it (empty: none).
    pub kafka_addr: String,
}

/// A partition's place in the cluster's keys.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PartitionId {
    pub topic: String,
    pub partition: u32,
}

/// Who leads a partition, since which epoch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Leader {
    pub node: String,
    pub epoch: i64,
}

/// A partition's commit point.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CommitPoint {
    /// One past the last committed offset.
    pub next_offset: i64,
    /// The epoch of the leader that committed it.
    pub epoch: i64,
}

/// What a claim found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claim {
    /// This node leads the partition now, in this epoch, and the
    /// partition's commit point is this (none yet: a new partition).
    Won {
        epoch: i64,
        committed: Option<CommitPoint>,
    },
    /// Another node (or this one, under an older lease) leads it.
    Held(Leader),
}

/// The cluster's keys, read and written through a [`Coordination`].
#[derive(Clone, Debug)]
pub struct Registry {
    coord: Arc<dyn Coordination>,
    root: String,
}

impl Registry {
    /// The keys of cluster `name`.
    pub fn new(coord: Arc<dyn Coordination>, name: &str) -> Self {
        Registry {
            coord,
            root: format!("/streamhouse/{name}/"),
        }
    }

    /// The store the keys live in.
    pub fn coordination(&self) -> Arc<dyn Coordination> {
        Arc::clone(&self.coord)
    }

    pub(super) fn coord(&self) -> &dyn Coordination {
        self.coord.as_ref()
    }

    pub(super) fn key(&self, kind: &str, rest: &str) -> Vec<u8> {
        format!("{}{kind}/{rest}", self.root).into_bytes()
    }

    fn partition_key(&self, kind: &str, p: &PartitionId) -> Vec<u8> {
        self.key(kind, &format!("{}/{}", p.topic, p.partition))
    }

    /// Registers `node` under `lease`. Refused if a node of the same id is
    /// registered under another lease that is still alive (two processes
    /// with one id would fence each other's partitions).
    pub fn register(&self, node: &NodeInfo, lease: LeaseId) -> CoordResult<()> {
        let key = self.key("nodes", &node.id);
        let value = format!("grpc={}\nkafka={}\n", node.grpc_addr, node.kafka_addr).into_bytes();
        let put = Op::Put {
            key: key.clone(),
            value,
            lease,
        };
        for _ in 0..RACES {
            let out = self.coord.txn(
                &[Compare::CreateRevision(key.clone(), 0)],
                std::slice::from_ref(&put),
                &[Op::Get(key.clone())],
            )?;
            if out.succeeded {
                return Ok(());
            }
            match out.gets.into_iter().next().flatten() {
                // Ours already (registering again after a hiccup): refresh.
                Some(kv) if kv.lease == lease => {
                    return self.coord.txn(&[], &[put], &[]).map(|_| ())
                }
                Some(kv) => {
                    return Err(CoordError::Refused(format!(
                        "node id {:?} is registered by another live process (lease {:x}); node ids must be unique in a cluster",
                        node.id, kv.lease
                    )))
                }
                // Gone between the compare and the read: again.
                None => {}
            }
        }
        Err(contended(&node.id))
    }

    /// The registered (live) nodes, by id.
    pub fn nodes(&self) -> CoordResult<Vec<NodeInfo>> {
        let prefix = self.key("nodes", "");
        let (kvs, _) = self.coord.list(&prefix)?;
        Ok(kvs
            .iter()
            .filter_map(|kv| parse_node(&kv.key[prefix.len()..], &kv.value))
            .collect())
    }

    /// Changes of the registered nodes.
    pub fn watch_nodes(&self) -> CoordResult<Watch> {
        self.coord.watch(&self.key("nodes", ""))
    }

    /// Changes of the partitions' leaders.
    pub fn watch_leaders(&self) -> CoordResult<Watch> {
        self.coord.watch(&self.key("leaders", ""))
    }

    /// Every partition's leader.
    pub fn leaders(&self) -> CoordResult<BTreeMap<PartitionId, Leader>> {
        let prefix = self.key("leaders", "");
        let (kvs, _) = self.coord.list(&prefix)?;
        Ok(kvs
            .iter()
            .filter_map(|kv| {
                let p = parse_partition(&kv.key[prefix.len()..])?;
                Some((p, leader_of(kv)?))
            })
            .collect())
    }

    /// Takes the lead of `p` for `node` under `lease`, if nobody leads it;
    /// the key's create revision is the new epoch.
    pub fn claim(&self, p: &PartitionId, node: &str, lease: LeaseId) -> CoordResult<Claim> {
        let key = self.partition_key("leaders", p);
        let commit = self.partition_key("commits", p);
        for _ in 0..RACES {
            let out = self.coord.txn(
                &[Compare::CreateRevision(key.clone(), 0)],
                &[
                    Op::Put {
                        key: key.clone(),
                        value: node.as_bytes().to_vec(),
                        lease,
                    },
                    Op::Get(commit.clone()),
                ],
                &[Op::Get(key.clone())],
            )?;
            let found = out.gets.into_iter().next().flatten();
            if out.succeeded {
                let committed = match found {
                    Some(kv) => Some(parse_commit(&kv.value).ok_or_else(|| {
                        CoordError::Refused(format!("the commit point of {p:?} does not parse"))
                    })?),
                    None => None,
                };
                return Ok(Claim::Won {
                    epoch: out.revision,
                    committed,
                });
            }
            if let Some(l) = found.as_ref().and_then(leader_of) {
                return Ok(Claim::Held(l));
            }
            // Released between the compare and the read: again.
        }
        Err(contended(&format!("{}/{}", p.topic, p.partition)))
    }

    /// Gives up the lead of `p`, if it is still `epoch`'s.
    pub fn release(&self, p: &PartitionId, epoch: i64) -> CoordResult<bool> {
        let key = self.partition_key("leaders", p);
        let out = self.coord.txn(
            &[Compare::CreateRevision(key.clone(), epoch)],
            &[Op::Delete(key)],
            &[],
        )?;
        Ok(out.succeeded)
    }

    /// The commit point of `p`, if anything was committed.
    pub fn committed(&self, p: &PartitionId) -> CoordResult<Option<CommitPoint>> {
        match self.coord.get(&self.partition_key("commits", p))? {
            Some(kv) => parse_commit(&kv.value).map(Some).ok_or_else(|| {
                CoordError::Refused(format!("the commit point of {p:?} does not parse"))
            }),
            None => Ok(None),
        }
    }

    /// Moves the commit points, each only if its partition is still led
    /// in that epoch. Batched: one transaction for up to
    /// [`COMMITS_PER_TXN`] partitions. When one is fenced the transaction
    /// fails as a whole; its other branch reads the leader keys, which
    /// tell the fenced ones apart, and the rest go again in one more.
    /// Returns, in order, whether each commit was made (`false`: fenced,
    /// that node no longer leads).
    pub fn commit(&self, commits: &[(PartitionId, CommitPoint)]) -> CoordResult<Vec<bool>> {
        let mut made = Vec::with_capacity(commits.len());
        for chunk in commits.chunks(COMMITS_PER_TXN) {
            let mut done = vec![false; chunk.len()];
            let mut pending: Vec<usize> = (0..chunk.len()).collect();
            while !pending.is_empty() {
                let (when, then): (Vec<Compare>, Vec<Op>) = pending
                    .iter()
                    .map(|&i| self.commit_ops(&chunk[i].0, &chunk[i].1))
                    .unzip();
                let leaders: Vec<Op> = pending
                    .iter()
                    .map(|&i| Op::Get(self.partition_key("leaders", &chunk[i].0)))
                    .collect();
                let out = self.coord.txn(&when, &then, &leaders)?;
                if out.succeeded {
                    pending.iter().for_each(|&i| done[i] = true);
                    break;
                }
                let still_led: Vec<usize> = pending
                    .iter()
                    .zip(&out.gets)
                    .filter(|(&i, kv)| {
                        kv.as_ref().map(|kv| kv.create_revision) == Some(chunk[i].1.epoch)
                    })
                    .map(|(&i, _)| i)
                    .collect();
                if still_led.len() == pending.len() {
                    // Nothing looks fenced, yet a compare failed: should
                    // not happen; nothing is made rather than loop.
                    break;
                }
                pending = still_led;
            }
            made.extend(done);
        }
        Ok(made)
    }

    /// Claims `count` producer ids for this node, cluster-wide: returns
    /// the first; ids `first..first + count` are this node's to hand out.
    /// Ids start at 1.
    pub fn claim_producer_ids(&self, count: u64) -> CoordResult<u64> {
        let count = i64::try_from(count)
            .map_err(|_| CoordError::Refused(format!("{count} producer ids at once")))?;
        let first = self.advance_counter("producer-ids", "next_id", |next| {
            let end = next
                .checked_add(count)
                .ok_or_else(|| CoordError::Refused("every producer id was handed out".into()))?;
            Ok((next, end))
        })?;
        Ok(first as u64)
    }

    fn producer_name_key(&self, name: &str) -> Vec<u8> {
        let hex: String = name.bytes().map(|b| format!("{b:02x}")).collect();
        self.key("producer-names", &hex)
    }

    /// A named producer's id and current epoch, with the revision of its
    /// key (for [`Registry::set_named_producer`]).
    pub fn named_producer(&self, name: &str) -> CoordResult<Option<(u64, u32, i64)>> {
        let Some(kv) = self.coord.get(&self.producer_name_key(name))? else {
            return Ok(None);
        };
        let f = fields(&kv.value);
        let id = f.get("id").and_then(|v| v.parse().ok());
        let epoch = f.get("epoch").and_then(|v| v.parse().ok());
        match (id, epoch) {
            (Some(id), Some(epoch)) => Ok(Some((id, epoch, kv.mod_revision))),
            _ => Err(CoordError::Refused(format!(
                "the key of producer {name:?} does not parse"
            ))),
        }
    }

    /// Every named producer's id and current epoch.
    pub fn named_producers(&self) -> CoordResult<Vec<(u64, u32)>> {
        let (kvs, _) = self.coord.list(&self.key("producer-names", ""))?;
        Ok(kvs
            .iter()
            .filter_map(|kv| {
                let f = fields(&kv.value);
                Some((f.get("id")?.parse().ok()?, f.get("epoch")?.parse().ok()?))
            })
            .collect())
    }

    /// Sets a named producer's id and epoch, if its key is still at
    /// `revision` (0: if it is absent). False: another InitProducer of the
    /// name came first.
    pub fn set_named_producer(
        &self,
        name: &str,
        id: u64,
        epoch: u32,
        revision: i64,
    ) -> CoordResult<bool> {
        let key = self.producer_name_key(name);
        let when = match revision {
            0 => Compare::CreateRevision(key.clone(), 0),
            r => Compare::ModRevision(key.clone(), r),
        };
        let put = Op::Put {
            key,
            value: format!("id={id}\nepoch={epoch}\n").into_bytes(),
            lease: 0,
        };
        Ok(self.coord.txn(&[when], &[put], &[])?.succeeded)
    }

    /// Moves the counter at key `name` (`{field}=N`, 1 while absent) on by
    /// compare-and-swap: `step` gets its value and returns what it claims
    /// and the counter's next value. Returns the claim.
    pub(super) fn advance_counter(
        &self,
        name: &str,
        field: &str,
        step: impl Fn(i64) -> CoordResult<(i64, i64)>,
    ) -> CoordResult<i64> {
        let key = self.key(name, "");
        let key = key[..key.len() - 1].to_vec(); // no trailing '/'
        for _ in 0..RACES * 4 {
            let (next, when) = match self.coord.get(&key)? {
                None => (1, Compare::CreateRevision(key.clone(), 0)),
                Some(kv) => {
                    let next = fields(&kv.value)
                        .get(field)
                        .and_then(|v| v.parse::<i64>().ok())
                        .filter(|n| *n >= 0)
                        .ok_or_else(|| {
                            CoordError::Refused(format!("the {name} key does not parse"))
                        })?;
                    (next, Compare::ModRevision(key.clone(), kv.mod_revision))
                }
            };
            let (claimed, after) = step(next)?;
            let put = Op::Put {
                key: key.clone(),
                value: format!("{field}={after}\n").into_bytes(),
                lease: 0,
            };
            if self.coord.txn(&[when], &[put], &[])?.succeeded {
                return Ok(claimed);
            }
        }
        Err(contended(&format!("the {name} counter")))
    }

    fn commit_ops(&self, p: &PartitionId, c: &CommitPoint) -> (Compare, Op) {
        (
            Compare::CreateRevision(self.partition_key("leaders", p), c.epoch),
            Op::Put {
                key: self.partition_key("commits", p),
                value: format!("next_offset={}\nepoch={}\n", c.next_offset, c.epoch).into_bytes(),
                lease: 0,
            },
        )
    }
}

fn fields(value: &[u8]) -> BTreeMap<&str, &str> {
    std::str::from_utf8(value)
        .unwrap_or("")
        .lines()
        .filter_map(|l| l.split_once('='))
        .collect()
}

fn parse_node(id: &[u8], value: &[u8]) -> Option<NodeInfo> {
    let f = fields(value);
    Some(NodeInfo {
        id: std::str::from_utf8(id).ok()?.to_string(),
        grpc_addr: f.get("grpc")?.to_string(),
        kafka_addr: f.get("kafka").copied().unwrap_or("").to_string(),
    })
}

fn parse_commit(value: &[u8]) -> Option<CommitPoint> {
    let f = fields(value);
    Some(CommitPoint {
        next_offset: f.get("next_offset")?.parse().ok()?,
        epoch: f.get("epoch")?.parse().ok()?,
    })
}

/// `{topic}/{partition}`; topic names cannot hold `/`.
fn parse_partition(rest: &[u8]) -> Option<PartitionId> {
    let (topic, partition) = std::str::from_utf8(rest).ok()?.rsplit_once('/')?;
    Some(PartitionId {
        topic: topic.to_string(),
        partition: partition.parse().ok()?,
    })
}

fn leader_of(kv: &KeyValue) -> Option<Leader> {
    Some(Leader {
        node: String::from_utf8(kv.value.clone()).ok()?,
        epoch: kv.create_revision,
    })
}
