//! Cluster mode's coordination layer: what the nodes of one cluster agree
//! on through etcd (issue 22).
//!
//! This layer knows nothing of the engine: it names partitions but holds no
//! records. It is:
//! - [`Coordination`]: the few etcd operations cluster mode needs (a key,
//!   a prefix, a multi-key compare-and-swap transaction, leases), as a
//!   small synchronous trait;
//! - `etcd` ([`EtcdCoordination`]): that trait over etcd's v3 gRPC API
//!   through grpcio, no async runtime (`proto/etcd/etcdserverpb.proto`);
//! - [`memory`]: the same semantics in memory, for unit tests, with a
//!   clock that tests move and an outage switch;
//! - [`control`]: one node's part: registers, claims the partitions it
//!   ranks first for, hands over the ones a settled node ranks first for;
//! - [`lease`]: one lease kept alive from a named thread, and the deadline
//!   past which the node must not acknowledge (it may have expired);
//! - [`placement`]: which live node should lead what (rendezvous hashing);
//! - [`committer`]: one thread moving every partition's commit point,
//!   batched into shared transactions;
//! - [`registry`]: the cluster's keys: nodes, partition leaders (whose
//!   key's create revision is the partition's epoch) and commit points.
//!
//! Why etcd: leases with a TTL, a cluster-wide revision usable as a
//! fencing epoch (a key's create revision), multi-key transactions, and
//! a gRPC API reachable like the rest of the server.

pub mod committer;
pub mod control;
#[cfg(feature = "grpc")]
mod etcd;
pub mod lease;
pub mod memory;
mod offsets;
pub mod placement;
pub mod registry;
#[cfg(test)]
mod tests;
mod topics;

#[cfg(feature = "grpc")]
pub use etcd::{parse_endpoint, EtcdCoordination};
pub use memory::MemoryCoordination;

use std::fmt;
use std::time::Duration;

/// An etcd lease id (never 0: 0 means "no lease").
pub type LeaseId = i64;

/// A key as the store has it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    /// The store revision that created the key (unique per creation: a
    /// key deleted and created again gets a new one; usable as an epoch).
    pub create_revision: i64,
    /// The store revision of the key's last change.
    pub mod_revision: i64,
    /// The lease the key is attached to (0: none).
    pub lease: LeaseId,
}

/// A condition of a transaction (all compare for equality).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Compare {
    /// The key's create revision is this one (0: the key is absent).
    CreateRevision(Vec<u8>, i64),
    /// The key's last change is at this revision (0: the key is absent).
    ModRevision(Vec<u8>, i64),
    /// The key exists and holds this value.
    Value(Vec<u8>, Vec<u8>),
}

/// An operation of a transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Sets the key, attached to `lease` (0: none; an unknown or expired
    /// lease fails the whole transaction with [`CoordError::LeaseNotFound`]).
    Put {
        key: Vec<u8>,
        value: Vec<u8>,
        lease: LeaseId,
    },
    Delete(Vec<u8>),
    /// Deletes every key that starts with this prefix.
    DeletePrefix(Vec<u8>),
    /// Reads the key; its value is in [`TxnOutcome::gets`].
    Get(Vec<u8>),
}

/// What a transaction did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxnOutcome {
    /// Every compare held and the `then` branch ran; otherwise the
    /// `otherwise` branch ran.
    pub succeeded: bool,
    /// The store's revision after the transaction.
    pub revision: i64,
    /// The results of the [`Op::Get`]s of the branch that ran, in order.
    pub gets: Vec<Option<KeyValue>>,
}

/// Why a coordination call failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CoordError {
    /// etcd could not be reached or did not answer in time (no leader, a
    /// timeout, a connection refused): the call may or may not have taken
    /// effect, and may be tried again.
    Unavailable(String),
    /// The lease is unknown to etcd: it expired or was revoked.
    LeaseNotFound,
    /// etcd refused the request (a bug here, or an etcd we do not speak).
    Refused(String),
}

impl fmt::Display for CoordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CoordError::Unavailable(why) => write!(f, "etcd unavailable: {why}"),
            CoordError::LeaseNotFound => write!(f, "etcd lease not found (expired or revoked)"),
            CoordError::Refused(why) => write!(f, "etcd refused the request: {why}"),
        }
    }
}

impl std::error::Error for CoordError {}

pub type CoordResult<T> = std::result::Result<T, CoordError>;

/// The etcd operations cluster mode uses, synchronous. Every call has a
/// deadline of its own (an implementation's choice, a few seconds).
pub trait Coordination: Send + Sync + fmt::Debug {
    /// The key, if it exists.
    fn get(&self, key: &[u8]) -> CoordResult<Option<KeyValue>>;
    /// Every key that starts with `prefix`, in key order, and the store's
    /// revision they were read at.
    fn list(&self, prefix: &[u8]) -> CoordResult<(Vec<KeyValue>, i64)>;
    /// Runs `then` if every compare in `when` holds, else `otherwise`,
    /// atomically.
    fn txn(&self, when: &[Compare], then: &[Op], otherwise: &[Op]) -> CoordResult<TxnOutcome>;
    /// A new lease of `ttl` (whole seconds, at least 1); returns it with
    /// the TTL etcd granted.
    fn grant(&self, ttl: Duration) -> CoordResult<(LeaseId, Duration)>;
    /// Renews the lease; returns its TTL from now, or
    /// [`CoordError::LeaseNotFound`] if it has expired.
    fn keep_alive(&self, lease: LeaseId) -> CoordResult<Duration>;
    /// Ends the lease now, deleting its keys.
    fn revoke(&self, lease: LeaseId) -> CoordResult<()>;

    /// Starts watching the keys under `prefix`: a message on
    /// [`Watch::changes`] (the store's revision) after each change under
    /// it, from now on. When the watch breaks (etcd restarts, the
    /// connection drops) the channel disconnects: watch again. Dropping
    /// the [`Watch`] ends it.
    fn watch(&self, prefix: &[u8]) -> CoordResult<Watch>;

    /// Sets a key unconditionally; returns the store's revision after.
    fn put(&self, key: &[u8], value: &[u8], lease: LeaseId) -> CoordResult<i64> {
        let op = Op::Put {
            key: key.to_vec(),
            value: value.to_vec(),
            lease,
        };
        Ok(self.txn(&[], &[op], &[])?.revision)
    }
}

/// A watch on a prefix; see [`Coordination::watch`]. Callers learn only
/// that something changed, and read again what they need: simpler than
/// applying events, and a missed message costs nothing but a delay.
pub struct Watch {
    pub changes: crossbeam_channel::Receiver<i64>,
    /// Dropped with the watch; ends it (an etcd stream, its thread).
    _end: Option<Box<dyn Send>>,
}

impl fmt::Debug for Watch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Watch").finish_non_exhaustive()
    }
}

/// The end of the range of keys that start with `prefix` (etcd's
/// `range_end`): the prefix with its last byte below 0xff incremented and
/// the rest dropped; `[0]` (every key) when there is no such byte.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// etcd at the comma-separated `endpoints`.
#[cfg(feature = "grpc")]
pub fn connect(endpoints: &str) -> Result<std::sync::Arc<dyn Coordination>, String> {
    Ok(std::sync::Arc::new(EtcdCoordination::new(endpoints)?))
}

/// Without gRPC (the fuzz targets' build) there is no etcd client.
#[cfg(not(feature = "grpc"))]
pub fn connect(_endpoints: &str) -> Result<std::sync::Arc<dyn Coordination>, String> {
    Err("this build has no etcd client (built without the grpc feature)".into())
}
