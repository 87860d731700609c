//! One node per bucket prefix: the owner record (`owner`) names the node
//! that owns the prefix and its epoch. A node takes it when it is absent or
//! released (a clean shutdown releases it), and refuses to start when
//! another node holds it, unless told to take over, which raises the epoch.
//! A node checks the record before every segment commit, before every other
//! change it makes to the bucket (or within [`OWNERSHIP_PERIOD`] of it),
//! and every few seconds when idle; if its epoch is no longer the owner's
//! it is fenced: it stops acknowledging writes and changes nothing more.
//!
//! Every change is a conditional write (`If-None-Match` / `If-Match`), so two
//! nodes racing for the record cannot both win. Whether the store honours
//! conditions is probed first; on one that ignores them the record still
//! fences a replaced node, but two nodes starting at the same moment could
//! both believe they took it (docs/OPERATIONS.md).

use super::{field, parse_fields};
use crate::layout::{owner_probe_key, OWNER_KEY};
use crate::object_store::{Expect, ObjectStore, StoreError, StoreResult};
use crate::util::clock::now_ms;
use crate::util::sync::lock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How old a confirmation of ownership may be when a node changes the
/// bucket: past it, the node reads the owner record again first.
pub(crate) const OWNERSHIP_PERIOD: Duration = Duration::from_secs(10);

const KIND: &str = "streamhouse-owner";

/// The record as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct OwnerRecord {
    pub node_id: String,
    pub epoch: u64,
    /// False once the owner shut down cleanly: the next node may adopt it.
    pub held: bool,
    pub since_ms: i64,
}

impl OwnerRecord {
    fn encode(&self) -> Vec<u8> {
        format!(
            "{KIND} 1\nnode_id={}\nepoch={}\nheld={}\nsince_ms={}\n",
            self.node_id, self.epoch, self.held, self.since_ms
        )
        .into_bytes()
    }

    fn decode(bytes: &[u8]) -> Result<OwnerRecord, String> {
        let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8".to_string())?;
        let f = parse_fields(text, KIND, 1)?;
        Ok(OwnerRecord {
            node_id: field(&f, "node_id")?,
            epoch: field(&f, "epoch")?,
            held: field(&f, "held")?,
            since_ms: field(&f, "since_ms")?,
        })
    }

    pub fn describe(&self) -> String {
        format!("node {} (epoch {})", self.node_id, self.epoch)
    }
}

/// Why ownership was not taken or kept.
#[derive(Debug)]
pub(crate) enum OwnershipError {
    /// Another node holds the prefix.
    HeldBy(OwnerRecord),
    /// A take-over on a store that ignores conditional writes, without the
    /// operator's word that the old owner is dead: it could not be fenced.
    Unfenceable(OwnerRecord),
    /// This node's epoch is no longer the owner's; says who owns it now.
    Fenced(String),
    Malformed(String),
    Store(StoreError),
}

impl From<StoreError> for OwnershipError {
    fn from(e: StoreError) -> Self {
        OwnershipError::Store(e)
    }
}

/// This node's claim on the prefix.
#[derive(Debug)]
pub(crate) struct Ownership {
    node_id: String,
    /// The epoch this node owns the prefix at; 0 until it took it.
    epoch: AtomicU64,
    /// Set once fenced: who owns the prefix now.
    fenced: Mutex<Option<String>>,
    /// `fenced` is set (read on every fetch, without the lock).
    is_fenced: AtomicBool,
    /// The record this node replaced when it took the prefix, if it named
    /// another node: that node's history continued after this data dir's.
    replaced: Mutex<Option<OwnerRecord>>,
    /// Whether [`Ownership::acquire`] found the record absent or naming
    /// another node: this epoch then starts a new stretch of every
    /// partition's history (see `bucket::history`).
    new_hands: AtomicBool,
    /// When the record last named this node at its epoch.
    confirmed_at: Mutex<Option<Instant>>,
    /// Whether the store honours conditional writes (probed at acquire).
    conditional: AtomicBool,
}

fn read(store: &dyn ObjectStore) -> Result<Option<(OwnerRecord, String)>, OwnershipError> {
    match store.get_versioned(OWNER_KEY) {
        Ok(v) => {
            let rec = OwnerRecord::decode(&v.data).map_err(OwnershipError::Malformed)?;
            Ok(Some((rec, v.etag)))
        }
        Err(StoreError::NotFound { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Does the store refuse a conditional write whose condition fails, for
/// both conditions the owner record uses? Writes a probe object, then again
/// with `If-None-Match: *` (it exists) and with `If-Match` on an ETag it
/// does not have, then removes it. Some stores honour one and silently
/// ignore the other.
fn probe_conditional_writes(store: &dyn ObjectStore, node_id: &str) -> StoreResult<bool> {
    let key = owner_probe_key(node_id);
    store.delete(&key)?;
    store.put_if(&key, b"probe", Expect::Absent)?;
    let refused = |result: StoreResult<()>| match result {
        Err(StoreError::PreconditionFailed { .. }) => Ok(true),
        Ok(()) => Ok(false),
        Err(e) => Err(e),
    };
    let if_none_match = refused(store.put_if(&key, b"probe again", Expect::Absent))?;
    let stale = "\"00000000000000000000000000000000\"";
    let if_match = refused(store.put_if(&key, b"probe stale", Expect::Version(stale)))?;
    store.delete(&key)?;
    if if_none_match != if_match {
        log::warn!(
            "the object store honours {} but ignores {}",
            if if_none_match {
                "If-None-Match"
            } else {
                "If-Match"
            },
            if if_none_match {
                "If-Match"
            } else {
                "If-None-Match"
            }
        );
    }
    Ok(if_none_match && if_match)
}

impl Ownership {
    /// A claim not yet made ([`Ownership::acquire`] makes it).
    pub fn unconfirmed(node_id: &str) -> Ownership {
        Ownership {
            node_id: node_id.to_string(),
            epoch: AtomicU64::new(0),
            fenced: Mutex::new(None),
            is_fenced: AtomicBool::new(false),
            replaced: Mutex::new(None),
            new_hands: AtomicBool::new(false),
            confirmed_at: Mutex::new(None),
            conditional: AtomicBool::new(true),
        }
    }

    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// The epoch this node owns the prefix at (0: not taken).
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    /// Whether this node was fenced (cheap: no lock).
    pub fn is_fenced(&self) -> bool {
        self.is_fenced.load(Ordering::SeqCst)
    }

    /// Who owns the prefix now, if this node was fenced.
    pub fn fenced(&self) -> Option<String> {
        lock(&self.fenced).clone()
    }

    /// Another node's record that [`Ownership::acquire`] replaced: the
    /// prefix had another owner since this node last held it (or ever).
    pub fn replaced_other_node(&self) -> Option<OwnerRecord> {
        lock(&self.replaced).clone()
    }

    /// Whether this node took the prefix from another node (or found no
    /// record): its epoch's starts must be written before it writes.
    pub fn took_from_another(&self) -> bool {
        self.new_hands.load(Ordering::SeqCst)
    }

    /// What this node puts in the keys of the segments it writes, beside
    /// its epoch: its id on a store that ignores conditional writes, where
    /// two nodes could both believe they hold one epoch and must still
    /// never write the same key; nothing otherwise.
    pub fn segment_writer(&self) -> Option<&str> {
        (!self.conditional.load(Ordering::SeqCst)).then_some(self.node_id.as_str())
    }

    /// The owner record as it is now, if it names another node.
    pub fn other_owner(
        &self,
        store: &dyn ObjectStore,
    ) -> Result<Option<OwnerRecord>, OwnershipError> {
        Ok(read(store)?
            .map(|(rec, _)| rec)
            .filter(|rec| rec.node_id != self.node_id))
    }

    /// Takes the prefix: when the record is absent, released, or this
    /// node's own; from another node only with `take_over`. Raises the
    /// epoch every time, so any earlier process of the prefix is fenced.
    ///
    /// On a store that ignores conditional writes a take-over cannot fence
    /// a node that still runs (both could write the record and believe they
    /// own the prefix): it is refused unless `old_owner_is_dead`.
    pub fn acquire(
        &self,
        store: &dyn ObjectStore,
        take_over: bool,
        old_owner_is_dead: bool,
    ) -> Result<u64, OwnershipError> {
        let honoured = probe_conditional_writes(store, &self.node_id)?;
        self.conditional.store(honoured, Ordering::SeqCst);
        if !honoured {
            log::warn!(
                "the object store ignores conditional writes: the owner record is not atomic, and this node puts its id in its segment keys (see docs/OPERATIONS.md)"
            );
        }
        for _ in 0..10 {
            let current = read(store)?;
            let (next_epoch, expect) = match &current {
                None => (1, Expect::Absent),
                Some((rec, _)) if rec.held && rec.node_id != self.node_id && !take_over => {
                    return Err(OwnershipError::HeldBy(rec.clone()))
                }
                Some((rec, _))
                    if rec.held
                        && rec.node_id != self.node_id
                        && !honoured
                        && !old_owner_is_dead =>
                {
                    return Err(OwnershipError::Unfenceable(rec.clone()))
                }
                Some((rec, etag)) => (rec.epoch + 1, Expect::Version(etag.as_str())),
            };
            let mine = OwnerRecord {
                node_id: self.node_id.clone(),
                epoch: next_epoch,
                held: true,
                since_ms: now_ms(),
            };
            match store.put_if(OWNER_KEY, &mine.encode(), expect) {
                Ok(()) => {}
                // Someone else changed it, or a retried write of ours went
                // through the first time: read again and see.
                Err(StoreError::PreconditionFailed { .. }) => {
                    if !matches!(read(store)?, Some((r, _)) if r == mine) {
                        continue;
                    }
                }
                Err(e) => return Err(e.into()),
            }
            self.epoch.store(next_epoch, Ordering::SeqCst);
            *lock(&self.fenced) = None;
            self.is_fenced.store(false, Ordering::SeqCst);
            *lock(&self.confirmed_at) = Some(Instant::now());
            let new_hands = current
                .as_ref()
                .is_none_or(|(r, _)| r.node_id != self.node_id);
            self.new_hands.store(new_hands, Ordering::SeqCst);
            let other = current.filter(|(r, _)| r.node_id != self.node_id);
            if let Some((prev, _)) = &other {
                if prev.held {
                    log::warn!("took the prefix over from {}", prev.describe());
                }
            }
            *lock(&self.replaced) = other.map(|(r, _)| r);
            log::info!("this node owns the prefix: {}", mine.describe());
            return Ok(next_epoch);
        }
        Err(OwnershipError::Fenced(
            "the owner record kept changing while this node tried to take it".into(),
        ))
    }

    /// Confirms this node still owns the prefix (before a segment commit).
    pub fn confirm(&self, store: &dyn ObjectStore) -> Result<(), OwnershipError> {
        if let Some(owner) = self.fenced() {
            return Err(OwnershipError::Fenced(owner));
        }
        let epoch = self.epoch();
        if epoch == 0 {
            return Err(OwnershipError::Fenced(
                "nobody: this node never took the prefix".into(),
            ));
        }
        let asked = Instant::now();
        match read(store)? {
            Some((rec, _)) if rec.node_id == self.node_id && rec.epoch == epoch && rec.held => {
                *lock(&self.confirmed_at) = Some(asked);
                Ok(())
            }
            Some((rec, _)) => Err(self.fence(rec.describe())),
            None => Err(self.fence("nobody (the owner record was removed)".into())),
        }
    }

    /// Confirms this node still owns the prefix, reading the record only
    /// if the last confirmation is older than [`OWNERSHIP_PERIOD`]: call it
    /// before any change to the bucket.
    pub fn confirm_recent(&self, store: &dyn ObjectStore) -> Result<(), OwnershipError> {
        if let Some(owner) = self.fenced() {
            return Err(OwnershipError::Fenced(owner));
        }
        let fresh = lock(&self.confirmed_at).is_some_and(|t| t.elapsed() < OWNERSHIP_PERIOD);
        if fresh {
            return Ok(());
        }
        self.confirm(store)
    }

    fn fence(&self, owner: String) -> OwnershipError {
        log::error!(
            "fenced: the prefix is now owned by {owner}; this node stops acknowledging writes"
        );
        *lock(&self.fenced) = Some(owner.clone());
        self.is_fenced.store(true, Ordering::SeqCst);
        OwnershipError::Fenced(owner)
    }

    /// Releases the prefix at a clean shutdown, if this node still owns it.
    pub fn release(&self, store: &dyn ObjectStore) {
        let epoch = self.epoch();
        if epoch == 0 || self.fenced().is_some() {
            return;
        }
        let result = read(store).and_then(|current| match current {
            Some((rec, etag)) if rec.node_id == self.node_id && rec.epoch == epoch => {
                let released = OwnerRecord {
                    held: false,
                    since_ms: now_ms(),
                    ..rec
                };
                Ok(store.put_if(OWNER_KEY, &released.encode(), Expect::Version(&etag))?)
            }
            _ => Ok(()),
        });
        match result {
            Ok(()) => log::info!("released the prefix (epoch {epoch})"),
            Err(e) => log::warn!("could not release the prefix: {e:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object_store::MemoryStore;

    #[test]
    fn records_round_trip() {
        let r = OwnerRecord {
            node_id: "n1".into(),
            epoch: 9,
            held: true,
            since_ms: 5,
        };
        assert_eq!(OwnerRecord::decode(&r.encode()).unwrap(), r);
        assert!(OwnerRecord::decode(b"streamhouse-owner 1\nnode_id=x\n").is_err());
    }

    #[test]
    fn one_owner_a_take_over_fences_the_old_one_and_release_lets_the_next_adopt() {
        let store = MemoryStore::new();
        let a = Ownership::unconfirmed("a");
        assert!(probe_conditional_writes(&store, "a").unwrap());
        assert_eq!(a.acquire(&store, false, false).unwrap(), 1);
        a.confirm(&store).unwrap();

        let b = Ownership::unconfirmed("b");
        match b.acquire(&store, false, false) {
            Err(OwnershipError::HeldBy(r)) => assert_eq!((r.node_id.as_str(), r.epoch), ("a", 1)),
            other => panic!("expected HeldBy, got {other:?}"),
        }
        assert_eq!(b.acquire(&store, true, false).unwrap(), 2);
        match a.confirm(&store) {
            Err(OwnershipError::Fenced(owner)) => assert!(owner.contains("node b"), "{owner}"),
            other => panic!("expected Fenced, got {other:?}"),
        }
        assert!(a.fenced().is_some());
        a.release(&store); // a fenced node releases nothing
        b.confirm(&store).unwrap();

        b.release(&store);
        let c = Ownership::unconfirmed("c");
        assert_eq!(
            c.acquire(&store, false, false).unwrap(),
            3,
            "a released prefix is adopted"
        );
        // A node restarting with its own record held takes it back.
        let c_again = Ownership::unconfirmed("c");
        assert_eq!(c_again.acquire(&store, false, false).unwrap(), 4);
        assert!(store.get("owner-probe/c").is_err(), "the probe is removed");
    }

    #[test]
    fn a_store_that_ignores_either_condition_fails_the_probe_and_a_take_over_needs_the_operators_word(
    ) {
        for (none_match, match_) in [(true, false), (false, true), (true, true)] {
            let store = MemoryStore::new();
            store.set_faults(crate::object_store::Faults {
                ignore_if_none_match: none_match,
                ignore_if_match: match_,
                ..Default::default()
            });
            assert!(!probe_conditional_writes(&store, "a").unwrap());
            let a = Ownership::unconfirmed("a");
            assert_eq!(a.acquire(&store, false, false).unwrap(), 1);
            assert_eq!(a.segment_writer(), Some("a"), "its id goes in its keys");
            let b = Ownership::unconfirmed("b");
            match b.acquire(&store, true, false) {
                Err(OwnershipError::Unfenceable(r)) => assert_eq!(r.node_id, "a"),
                other => panic!("expected Unfenceable, got {other:?}"),
            }
            assert_eq!(b.acquire(&store, true, true).unwrap(), 2);
            // A node restarting on its own record needs no word.
            let b_again = Ownership::unconfirmed("b");
            assert_eq!(b_again.acquire(&store, false, false).unwrap(), 3);
        }
        let honest = MemoryStore::new();
        let a = Ownership::unconfirmed("a");
        a.acquire(&honest, false, false).unwrap();
        assert_eq!(a.segment_writer(), None, "keys as before");
    }
}
