//! Idempotent producers at the node level: InitProducer (ids and epochs,
//! durable in the bucket before they are handed out, then in metadata),
//! the registry check a produce call passes before it is queued, expiry,
//! and the rebuild of the registry at start.
//!
//! In the bucket (keys in `layout`):
//! - `producers/ids/{end}`: ids below `end` may have been handed out; a
//!   new block of [`ID_BLOCK`] ids is claimed there before its first id is
//!   used, so a node rebuilt from the bucket never hands an id out twice;
//! - `producers/names/{hex name}/{epoch}-{id}`: a named producer's id and
//!   current epoch, written before InitProducer answers, so the epoch
//!   only goes up, whatever happens to the node's disk.

use super::Engine;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::layout::{self, ProducerObject};
use crate::meta::ProducerRow;
use crate::object_store::ObjectStore;
use crate::partition::fenced_error;
use crate::producer::{ProducerBatch, RegistryError};
use crate::util::clock::now_ms;
use crate::util::sync::lock;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Ids claimed in the bucket at a time.
const ID_BLOCK: u64 = 1000;
/// Longest producer name, in bytes.
pub const MAX_PRODUCER_NAME: usize = 255;
/// Most producers a node keeps track of; InitProducer answers
/// RESOURCE_EXHAUSTED beyond it (each costs a registry entry, and one
/// table entry per partition it writes to, until it expires).
pub const MAX_PRODUCERS: usize = 1_000_000;

/// The ids this node may hand out without writing to the bucket:
/// `next..end`.
#[derive(Debug, Default)]
pub(super) struct IdBlock {
    next: u64,
    end: u64,
    /// A claim of the next block is on its way (see [`extend_ids`]).
    extending: bool,
}

impl Engine {
    /// InitProducer: an empty name gets a fresh id at epoch 0; a name gets
    /// its id with the epoch raised by one (fencing the previous one).
    pub fn init_producer(&self, name: &str) -> Result<(u64, u32)> {
        if let Some(owner) = self.ctx.owner.fenced() {
            return Err(fenced_error(&owner));
        }
        if name.len() > MAX_PRODUCER_NAME {
            return Err(Error::InvalidArgument(format!(
                "a producer name is at most {MAX_PRODUCER_NAME} bytes; this one has {}",
                name.len()
            )));
        }
        if self.ctx.producers.len() >= MAX_PRODUCERS {
            return Err(Error::Backpressure(format!(
                "{MAX_PRODUCERS} producers are active on this node; idle ones expire after --producer-expiry"
            )));
        }
        if let Some(owner) = self.ctx.owner.fenced() {
            return Err(crate::partition::fenced_error(&owner));
        }
        // One InitProducer at a time: they are rare, and a name's epoch
        // must go up by exactly one per call.
        let mut ids = lock(&self.producer_ids);
        let now = now_ms();
        if let (false, Some(registry)) = (name.is_empty(), &self.ctx.cluster) {
            let (id, epoch) = self.init_named_in_cluster(registry, name, &mut ids)?;
            self.ctx.producers.observe(id, epoch, now);
            return Ok((id, epoch));
        }
        let named = if name.is_empty() {
            None
        } else {
            self.ctx.meta.named_producer(name)?
        };
        let (id, epoch) = match &named {
            Some(row) => {
                let epoch = row.epoch.checked_add(1).ok_or_else(|| {
                    Error::FailedPrecondition(format!("producer {name:?} has used every epoch"))
                })?;
                (row.id, epoch)
            }
            None => (self.allocate_id(&mut ids)?, 0),
        };
        if !name.is_empty() {
            let key = layout::producer_name_key(name, epoch, id);
            self.ensure_owner()?;
            self.ctx.store.put(&key, b"")?;
            if let Some(old) = &named {
                self.delete_quietly(&layout::producer_name_key(name, old.epoch, id));
            }
        }
        self.ctx.meta.issue_producer(&ProducerRow {
            id,
            name: (!name.is_empty()).then(|| name.to_string()),
            epoch,
            issued_at_ms: now,
        })?;
        self.ctx.producers.observe(id, epoch, now);
        Ok((id, epoch))
    }

    /// A named producer's next epoch, cluster-wide: its key in etcd holds
    /// its id and epoch, changed by compare-and-swap so that each
    /// InitProducer of the name, on any node, gets an epoch of its own.
    fn init_named_in_cluster(
        &self,
        registry: &crate::cluster::registry::Registry,
        name: &str,
        ids: &mut IdBlock,
    ) -> Result<(u64, u32)> {
        let etcd = |e: crate::cluster::CoordError| {
            Error::Unavailable(format!("producer {name:?} is kept in etcd: {e}"))
        };
        for _ in 0..8 {
            let (id, epoch, revision) = match registry.named_producer(name).map_err(etcd)? {
                Some((id, epoch, revision)) => {
                    let epoch = epoch.checked_add(1).ok_or_else(|| {
                        Error::FailedPrecondition(format!("producer {name:?} has used every epoch"))
                    })?;
                    (id, epoch, revision)
                }
                None => (self.allocate_id(ids)?, 0, 0),
            };
            if registry
                .set_named_producer(name, id, epoch, revision)
                .map_err(etcd)?
            {
                return Ok((id, epoch));
            }
        }
        Err(Error::Unavailable(format!(
            "producer {name:?} is being initialized elsewhere at the same time; retry"
        )))
    }

    /// Cluster mode, at each poll: every named producer's current epoch,
    /// so that this node refuses older epochs of it, as the node that
    /// issued the epoch does, even on partitions the new epoch has not
    /// written to. Noted as inactive: an unused name's entry expires and
    /// comes back at the next poll.
    pub(super) fn follow_named_producers(&self) {
        let Some(registry) = &self.ctx.cluster else {
            return;
        };
        match registry.named_producers() {
            Ok(named) => {
                for (id, epoch) in named {
                    self.ctx.producers.observe(id, epoch, 0);
                }
            }
            Err(e) => log::warn!("cannot read the cluster's named producers: {e}"),
        }
    }

    /// The next id, claiming a new block in the bucket first when the
    /// current one is used up. Half way through a block the next one is
    /// claimed in the background, so InitProducer rarely waits on the store
    /// and goes on answering through a store outage while the ids last.
    fn allocate_id(&self, ids: &mut IdBlock) -> Result<u64> {
        if let Some(registry) = &self.ctx.cluster {
            // Cluster-wide, from etcd: every node hands out its own block.
            if ids.next >= ids.end {
                let first = registry.claim_producer_ids(ID_BLOCK).map_err(|e| {
                    Error::Unavailable(format!("cannot claim producer ids in etcd: {e}"))
                })?;
                (ids.next, ids.end) = (first, first + ID_BLOCK);
            }
            ids.next += 1;
            return Ok(ids.next - 1);
        }
        if ids.next >= ids.end {
            let end = ids
                .next
                .max(1)
                .checked_add(ID_BLOCK)
                .filter(|e| *e <= i64::MAX as u64)
                .ok_or_else(|| {
                    Error::Backpressure("every producer id has been handed out".to_string())
                })?;
            self.ensure_owner()?;
            self.ctx
                .store
                .put(&layout::producer_id_block_key(end), b"")?;
            if ids.end > 0 {
                self.delete_quietly(&layout::producer_id_block_key(ids.end));
            }
            ids.next = ids.next.max(1);
            ids.end = end;
        }
        let id = ids.next;
        ids.next += 1;
        if ids.end - ids.next <= ID_BLOCK / 2 && !ids.extending {
            ids.extending = true;
            let (ctx, block, from) = (
                Arc::clone(&self.ctx),
                Arc::clone(&self.producer_ids),
                ids.end,
            );
            // Detached: it ends with its one claim (retries end at shutdown).
            let spawned = std::thread::Builder::new()
                .name("producer-ids".into())
                .spawn(move || extend_ids(&ctx, &block, from));
            if let Err(e) = spawned {
                log::warn!("cannot claim the next producer ids ahead: {e}");
                ids.extending = false;
            }
        }
        Ok(id)
    }

    /// Deletes an object that only made a listing longer; a failure
    /// changes nothing (the newer key wins).
    fn delete_quietly(&self, key: &str) {
        if let Err(e) = self.ctx.store.delete(key) {
            log::debug!("could not delete {key}: {e}");
        }
    }

    /// Checks an idempotent produce call against the registry before its
    /// batch is queued: an unknown id, a fenced or never-issued epoch, and a
    /// sequence that cannot be one are refused here.
    pub(super) fn check_producer(&self, b: &ProducerBatch, records: usize) -> Result<()> {
        if b.first_sequence < 0 || b.first_sequence.checked_add(records as i64).is_none() {
            return Err(Error::InvalidArgument(format!(
                "first_sequence {} is out of range",
                b.first_sequence
            )));
        }
        let checked = self.ctx.producers.check(b.producer_id, b.epoch, now_ms());
        let elsewhere = matches!(
            checked,
            Err(RegistryError::Unknown(_) | RegistryError::NeverIssued { .. })
        );
        if let (true, Some(_)) = (elsewhere, &self.ctx.cluster) {
            // Another node of the cluster issued it, or a later epoch of it
            // (ids are unique cluster-wide); the partition's producer table
            // checks its epoch and sequence. Bounded like the ids issued
            // here.
            if self.ctx.producers.len() >= MAX_PRODUCERS {
                return Err(Error::Backpressure(format!(
                    "{MAX_PRODUCERS} producers are active on this node; idle ones expire after --producer-expiry"
                )));
            }
            self.ctx.producers.observe(b.producer_id, b.epoch, now_ms());
            return Ok(());
        }
        checked.map_err(|e| match e {
            RegistryError::Unknown(_) => Error::NotFound(e.to_string()),
            RegistryError::Fenced { .. } => Error::Aborted(e.to_string()),
            RegistryError::NeverIssued { .. } => Error::InvalidArgument(e.to_string()),
        })
    }

    /// Forgets producers idle for longer than the expiry (the registry, and
    /// anonymous ids in metadata; partitions forget theirs when they seal).
    pub(super) fn expire_producers(&self) {
        let expiry = self.ctx.config.producer_expiry_ms();
        let cutoff = now_ms().saturating_sub(expiry);
        let gone = self.ctx.producers.expire(cutoff);
        if !gone.is_empty() {
            log::info!("{} idle producers expired", gone.len());
        }
        if let Err(e) = self.ctx.meta.forget_anonymous_producers(cutoff) {
            log::warn!("could not forget expired producers: {e}");
        }
        self.expire_named_producers(cutoff);
    }

    /// A named producer idle for the expiry goes as an anonymous one does
    /// (as Kafka's transactional ids expire): its row and its object in the
    /// bucket, so that names used once do not pile up in every start's
    /// listing. Its next InitProducer starts again at a new id, epoch 0.
    fn expire_named_producers(&self, cutoff: i64) {
        if self.ctx.owner.fenced().is_some() {
            return;
        }
        // InitProducer issues names under this lock: none is issued again
        // between the listing and its removal.
        let _ids = lock(&self.producer_ids);
        let rows = match self.ctx.meta.named_producers_issued_before(cutoff) {
            Ok(rows) => rows,
            Err(e) => return log::warn!("could not list named producers: {e}"),
        };
        let idle: Vec<ProducerRow> = rows
            .into_iter()
            .filter(|r| !self.ctx.producers.contains(r.id))
            .collect();
        let mut forgotten = 0;
        for row in idle {
            let Some(name) = &row.name else { continue };
            let key = layout::producer_name_key(name, row.epoch, row.id);
            match self.ctx.store.delete(&key) {
                Ok(()) => match self.ctx.meta.forget_producer(row.id) {
                    Ok(()) => forgotten += 1,
                    Err(e) => log::warn!("could not forget producer {name:?}: {e}"),
                },
                Err(e) => log::warn!("could not delete {key}: {e}; tried again later"),
            }
        }
        if forgotten > 0 {
            log::info!("{forgotten} idle named producers expired");
        }
    }
}

/// Claims the block after `from` in the bucket, then makes it usable (if
/// the block still ends at `from`: InitProducer may have claimed it itself
/// meanwhile, under the same key).
fn extend_ids(ctx: &Context, block: &Mutex<IdBlock>, from: u64) {
    let Some(end) = from.checked_add(ID_BLOCK).filter(|e| *e <= i64::MAX as u64) else {
        lock(block).extending = false;
        return;
    };
    let claimed = match ctx.owner.confirm_recent(&ctx.store) {
        Ok(()) => ctx.store.put(&layout::producer_id_block_key(end), b""),
        Err(e) => {
            lock(block).extending = false;
            log::warn!("producer ids below {end} not claimed ahead of use: {e:?}");
            return;
        }
    };
    let mut ids = lock(block);
    ids.extending = false;
    match claimed {
        Ok(()) if ids.end == from => {
            ids.end = end;
            drop(ids);
            if let Err(e) = ctx.store.delete(&layout::producer_id_block_key(from)) {
                log::debug!("could not delete the claim of ids below {from}: {e}");
            }
        }
        Ok(()) => {}
        Err(e) => log::warn!("could not claim producer ids below {end} ahead of use: {e}"),
    }
}

/// At start, before partitions open: named producers' epochs from the
/// bucket into metadata (a name's epoch never goes back, even on a node
/// rebuilt from the bucket), the registry from metadata, and the first id
/// this node may hand out (past every block the bucket records).
pub(super) fn restore_producers(ctx: &Context) -> Result<IdBlock> {
    let mut block_end = 0u64;
    let mut names: BTreeMap<String, (u32, u64)> = BTreeMap::new();
    for obj in ctx.store.list(layout::PRODUCERS_PREFIX)? {
        match layout::parse_producer_key(&obj.key) {
            Some(ProducerObject::IdBlock { end }) => block_end = block_end.max(end),
            Some(ProducerObject::Name { name, epoch, id }) => {
                let e = names.entry(name).or_insert((epoch, id));
                *e = (*e).max((epoch, id));
            }
            None => {}
        }
    }
    let now = now_ms();
    for (name, (epoch, id)) in names {
        let local = ctx.meta.named_producer(&name)?;
        if local.as_ref().is_none_or(|r| r.epoch < epoch) {
            ctx.meta.issue_producer(&ProducerRow {
                id,
                name: Some(name),
                epoch,
                issued_at_ms: local.map_or(now, |r| r.issued_at_ms),
            })?;
        }
    }
    let expiry = ctx.config.producer_expiry_ms();
    for row in ctx
        .meta
        .producers_issued_since(now.saturating_sub(expiry))?
    {
        ctx.producers.observe(row.id, row.epoch, row.issued_at_ms);
    }
    let next = block_end.max(ctx.meta.max_producer_id()? + 1).max(1);
    Ok(IdBlock {
        next,
        end: next,
        extending: false,
    })
}
