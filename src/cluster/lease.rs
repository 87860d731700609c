//! A node's lease, kept alive from a thread of its own (`etcd-lease`).
//!
//! The rule it serves: a node that cannot renew its lease in time stops
//! acknowledging before the lease can have expired, so that no write is
//! acknowledged by a node whose partitions another node may already lead.
//! A renewal sent at `t` that etcd answers with a TTL of `T` keeps the
//! lease until at least `t + T` by etcd's clock (etcd restarts the TTL when
//! it handles the renewal, after `t`). The node may act until
//! `t + T - margin`, the margin ([`SAFETY_MARGIN`] of the TTL) covering
//! clock rates that differ between the hosts. Renewals go every third of
//! the TTL, so two may fail before the node has to stop.

use super::{CoordError, Coordination, LeaseId};
use crate::util::sync::{lock, StopSignal};
use crate::util::thread::{spawn, Worker};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The share of the TTL kept back from the deadline.
pub const SAFETY_MARGIN: f64 = 0.2;

/// Where the lease stands, as far as this node can tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeaseState {
    /// Renewed: the node may act until then.
    Held { until: Instant },
    /// etcd said the lease is gone (expired or revoked): everything
    /// attached to it is gone too. Final.
    Lost,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<LeaseState>,
    ttl: Duration,
}

/// One lease, renewed until [`LeaseKeeper::stop`] (which revokes it).
#[derive(Debug)]
pub struct LeaseKeeper {
    id: LeaseId,
    coord: Arc<dyn Coordination>,
    shared: Arc<Shared>,
    stop: StopSignal,
    worker: Mutex<Option<Worker>>,
}

impl LeaseKeeper {
    /// Grants a lease of `ttl` and starts renewing it.
    pub fn start(coord: Arc<dyn Coordination>, ttl: Duration) -> Result<Self, CoordError> {
        let asked = Instant::now();
        let (id, granted) = coord.grant(ttl)?;
        let shared = Arc::new(Shared {
            state: Mutex::new(LeaseState::Held {
                until: deadline(asked, granted),
            }),
            ttl: granted,
        });
        let stop = StopSignal::new();
        let worker = {
            let (coord, shared, stop) = (Arc::clone(&coord), Arc::clone(&shared), stop.clone());
            spawn("etcd-lease", move || renew(&*coord, id, &shared, &stop)).map_err(|e| {
                CoordError::Unavailable(format!("cannot start the lease thread: {e}"))
            })?
        };
        log::info!("etcd lease {id:x} granted, TTL {} s", granted.as_secs());
        Ok(LeaseKeeper {
            id,
            coord,
            shared,
            stop,
            worker: Mutex::new(Some(worker)),
        })
    }

    pub fn id(&self) -> LeaseId {
        self.id
    }

    pub fn ttl(&self) -> Duration {
        self.shared.ttl
    }

    pub fn state(&self) -> LeaseState {
        *lock(&self.shared.state)
    }

    /// Whether the node may acknowledge now: the lease was renewed
    /// recently enough that it cannot have expired.
    pub fn may_act(&self) -> bool {
        matches!(self.state(), LeaseState::Held { until } if Instant::now() < until)
    }

    /// Stops renewing and revokes the lease (its keys go at once, so
    /// other nodes need not wait for the TTL). Later calls do nothing.
    pub fn stop(&self) {
        if !self.stop_renewing() {
            return;
        }
        if self.state() != LeaseState::Lost {
            match self.coord.revoke(self.id) {
                Ok(()) | Err(CoordError::LeaseNotFound) => {}
                Err(e) => log::warn!(
                    "etcd lease {:x} not revoked ({e}); it expires on its own",
                    self.id
                ),
            }
        }
        *lock(&self.shared.state) = LeaseState::Lost;
    }

    /// Stops renewing without revoking: the lease runs out its TTL, as
    /// after a crash. For tests of what the other nodes see.
    pub fn abandon(&self) {
        self.stop_renewing();
        *lock(&self.shared.state) = LeaseState::Lost;
    }

    /// Ends the renewal thread; false if it had ended already.
    fn stop_renewing(&self) -> bool {
        self.stop.raise();
        match lock(&self.worker).take() {
            Some(w) => {
                w.join();
                true
            }
            None => false,
        }
    }
}

impl Drop for LeaseKeeper {
    fn drop(&mut self) {
        self.stop();
    }
}

fn deadline(asked: Instant, ttl: Duration) -> Instant {
    asked + ttl.mul_f64(1.0 - SAFETY_MARGIN)
}

/// The renewal loop: every third of the TTL, or sooner after a failure
/// (a tenth of the TTL), until stopped or the lease is lost.
fn renew(coord: &dyn Coordination, id: LeaseId, shared: &Shared, stop: &StopSignal) {
    let mut wait = shared.ttl / 3;
    while !stop.sleep(wait) {
        let asked = Instant::now();
        match coord.keep_alive(id) {
            Ok(ttl) => {
                *lock(&shared.state) = LeaseState::Held {
                    until: deadline(asked, ttl),
                };
                wait = shared.ttl / 3;
            }
            Err(CoordError::LeaseNotFound) => {
                log::error!("etcd lease {id:x} expired: this node stops acting on it");
                *lock(&shared.state) = LeaseState::Lost;
                return;
            }
            Err(e) => {
                log::warn!("etcd lease {id:x} not renewed: {e}");
                wait = shared.ttl / 10;
            }
        }
    }
}
