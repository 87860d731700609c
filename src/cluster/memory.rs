//! [`Coordination`] in memory, with etcd's semantics where cluster mode
//! relies on them: one revision per writing transaction, create revisions
//! that change when a key is created again, leases that delete their keys
//! when they expire. Time is the real clock plus what a test
//! [`advance`](MemoryCoordination::advance)s it by; an outage switch makes
//! every call [`CoordError::Unavailable`].

use super::{
    Compare, CoordError, CoordResult, Coordination, KeyValue, LeaseId, Op, TxnOutcome, Watch,
};
use crate::util::sync::lock;
use crossbeam_channel::Sender;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// etcd's default `--max-txn-ops`.
const MAX_TXN_OPS: usize = 128;

#[derive(Debug, Default)]
pub struct MemoryCoordination {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    keys: BTreeMap<Vec<u8>, KeyValue>,
    revision: i64,
    leases: HashMap<LeaseId, Lease>,
    next_lease: LeaseId,
    /// Added to the real clock.
    skew: Duration,
    down: bool,
    /// Watches: their prefixes and where to tell them.
    watchers: Vec<(Vec<u8>, Sender<i64>)>,
}

#[derive(Debug)]
struct Lease {
    ttl: Duration,
    expires: Instant,
}

impl Default for State {
    fn default() -> Self {
        State {
            keys: BTreeMap::new(),
            // etcd's first revision is 1.
            revision: 1,
            leases: HashMap::new(),
            next_lease: 0x7a11,
            skew: Duration::ZERO,
            down: false,
            watchers: Vec::new(),
        }
    }
}

impl MemoryCoordination {
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves this store's clock on (leases expire as if that much time
    /// had passed).
    pub fn advance(&self, by: Duration) {
        lock(&self.state).skew += by;
    }

    /// Makes every call fail as unavailable (`false`) or work again.
    pub fn set_available(&self, up: bool) {
        lock(&self.state).down = !up;
    }

    /// Runs `f` on the state after expiring due leases, unless down.
    fn with<T>(&self, f: impl FnOnce(&mut State) -> CoordResult<T>) -> CoordResult<T> {
        let mut s = lock(&self.state);
        if s.down {
            return Err(CoordError::Unavailable(
                "the in-memory store is down".into(),
            ));
        }
        s.expire_leases();
        f(&mut s)
    }
}

impl State {
    fn now(&self) -> Instant {
        Instant::now() + self.skew
    }

    fn expire_leases(&mut self) {
        let now = self.now();
        let expired: Vec<LeaseId> = self
            .leases
            .iter()
            .filter(|(_, l)| l.expires <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            self.drop_lease(id);
        }
    }

    /// Forgets the lease and deletes its keys (one revision, as etcd).
    fn drop_lease(&mut self, id: LeaseId) {
        self.leases.remove(&id);
        let gone: Vec<Vec<u8>> = self
            .keys
            .values()
            .filter(|kv| kv.lease == id)
            .map(|kv| kv.key.clone())
            .collect();
        if !gone.is_empty() {
            self.keys.retain(|_, kv| kv.lease != id);
            self.revision += 1;
            self.notify(&gone);
        }
    }

    /// Tells every watch on a prefix of a changed key (and forgets the
    /// ones whose receiver is gone).
    fn notify(&mut self, changed: &[Vec<u8>]) {
        let revision = self.revision;
        self.watchers.retain(|(prefix, tx)| {
            !changed.iter().any(|k| k.starts_with(prefix)) || tx.send(revision).is_ok()
        });
    }

    fn holds(&self, c: &Compare) -> bool {
        match c {
            Compare::CreateRevision(k, r) => {
                self.keys.get(k).map_or(0, |kv| kv.create_revision) == *r
            }
            Compare::ModRevision(k, r) => self.keys.get(k).map_or(0, |kv| kv.mod_revision) == *r,
            Compare::Value(k, v) => self.keys.get(k).is_some_and(|kv| &kv.value == v),
        }
    }

    fn apply(&mut self, ops: &[Op]) -> CoordResult<Vec<Option<KeyValue>>> {
        for op in ops {
            if let Op::Put { lease, .. } = op {
                if *lease != 0 && !self.leases.contains_key(lease) {
                    return Err(CoordError::LeaseNotFound);
                }
            }
        }
        // As etcd: "duplicate key given in txn request".
        let mut put = std::collections::HashSet::new();
        for op in ops {
            if let Op::Put { key, .. } | Op::Delete(key) = op {
                if !put.insert(key) {
                    return Err(CoordError::Refused(
                        "duplicate key given in txn request".into(),
                    ));
                }
            }
        }
        let writes = ops.iter().any(|op| !matches!(op, Op::Get(_)));
        let revision = self.revision + i64::from(writes);
        let mut gets = Vec::new();
        let mut changed = Vec::new();
        for op in ops {
            match op {
                Op::Put { key, value, lease } => {
                    let create_revision =
                        self.keys.get(key).map_or(revision, |kv| kv.create_revision);
                    self.keys.insert(
                        key.clone(),
                        KeyValue {
                            key: key.clone(),
                            value: value.clone(),
                            create_revision,
                            mod_revision: revision,
                            lease: *lease,
                        },
                    );
                    changed.push(key.clone());
                }
                Op::Delete(key) => {
                    if self.keys.remove(key).is_some() {
                        changed.push(key.clone());
                    }
                }
                Op::DeletePrefix(prefix) => {
                    let gone: Vec<Vec<u8>> = self
                        .keys
                        .keys()
                        .filter(|k| k.starts_with(prefix))
                        .cloned()
                        .collect();
                    for key in gone {
                        self.keys.remove(&key);
                        changed.push(key);
                    }
                }
                Op::Get(key) => gets.push(self.keys.get(key).cloned()),
            }
        }
        // etcd raises the revision only when something changed.
        if !changed.is_empty() {
            self.revision = revision;
            self.notify(&changed);
        }
        Ok(gets)
    }
}

impl Coordination for MemoryCoordination {
    fn get(&self, key: &[u8]) -> CoordResult<Option<KeyValue>> {
        self.with(|s| Ok(s.keys.get(key).cloned()))
    }

    fn list(&self, prefix: &[u8]) -> CoordResult<(Vec<KeyValue>, i64)> {
        self.with(|s| {
            let kvs = s
                .keys
                .range(prefix.to_vec()..)
                .take_while(|(k, _)| k.starts_with(prefix))
                .map(|(_, kv)| kv.clone())
                .collect();
            Ok((kvs, s.revision))
        })
    }

    fn txn(&self, when: &[Compare], then: &[Op], otherwise: &[Op]) -> CoordResult<TxnOutcome> {
        // As etcd with its default --max-txn-ops.
        if when.len().max(then.len()).max(otherwise.len()) > MAX_TXN_OPS {
            return Err(CoordError::Refused(
                "too many operations in txn request".into(),
            ));
        }
        self.with(|s| {
            let succeeded = when.iter().all(|c| s.holds(c));
            let gets = s.apply(if succeeded { then } else { otherwise })?;
            Ok(TxnOutcome {
                succeeded,
                revision: s.revision,
                gets,
            })
        })
    }

    fn grant(&self, ttl: Duration) -> CoordResult<(LeaseId, Duration)> {
        self.with(|s| {
            let ttl = Duration::from_secs(ttl.as_secs().max(1));
            s.next_lease += 1;
            let id = s.next_lease;
            let expires = s.now() + ttl;
            s.leases.insert(id, Lease { ttl, expires });
            Ok((id, ttl))
        })
    }

    fn keep_alive(&self, lease: LeaseId) -> CoordResult<Duration> {
        self.with(|s| {
            let now = s.now();
            let l = s.leases.get_mut(&lease).ok_or(CoordError::LeaseNotFound)?;
            l.expires = now + l.ttl;
            Ok(l.ttl)
        })
    }

    fn watch(&self, prefix: &[u8]) -> CoordResult<Watch> {
        self.with(|s| {
            let (tx, changes) = crossbeam_channel::unbounded();
            s.watchers.push((prefix.to_vec(), tx));
            Ok(Watch {
                changes,
                _end: None,
            })
        })
    }

    fn revoke(&self, lease: LeaseId) -> CoordResult<()> {
        self.with(|s| {
            if !s.leases.contains_key(&lease) {
                return Err(CoordError::LeaseNotFound);
            }
            s.drop_lease(lease);
            Ok(())
        })
    }
}
