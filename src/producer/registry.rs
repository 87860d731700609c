//! The node's view of which producer ids exist and their current epochs:
//! filled from the producers metadata table (InitProducer calls) and from
//! every partition's producer table as it opens. Produce checks it before a
//! batch is queued, so an epoch fenced by a newer InitProducer is refused
//! on partitions the new epoch has not written yet.

use crate::util::sync::lock;
use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;

#[derive(Clone, Copy, Debug)]
struct Known {
    epoch: u32,
    last_active_ms: i64,
}

#[derive(Default)]
pub(crate) struct Registry {
    known: Mutex<HashMap<u64, Known>>,
}

/// Why a produce with a producer id is refused before it is queued.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum RegistryError {
    Unknown(u64),
    Fenced { id: u64, epoch: u32, current: u32 },
    NeverIssued { id: u64, epoch: u32, current: u32 },
}

impl fmt::Display for RegistryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegistryError::Unknown(id) => write!(
                f,
                "unknown producer id {id}: call InitProducer for an id (producers expire after the server's --producer-expiry without writes)"
            ),
            RegistryError::Fenced { id, epoch, current } => write!(
                f,
                "producer {id} epoch {epoch} is fenced by epoch {current} (another instance called InitProducer with its name)"
            ),
            RegistryError::NeverIssued { id, epoch, current } => write!(
                f,
                "producer {id} epoch {epoch} was never issued (the current epoch is {current})"
            ),
        }
    }
}

impl Registry {
    /// Checks a produce call's producer id and epoch, and notes the
    /// activity.
    pub fn check(&self, id: u64, epoch: u32, now_ms: i64) -> Result<(), RegistryError> {
        let mut known = lock(&self.known);
        let Some(k) = known.get_mut(&id) else {
            return Err(RegistryError::Unknown(id));
        };
        if epoch < k.epoch {
            return Err(RegistryError::Fenced {
                id,
                epoch,
                current: k.epoch,
            });
        }
        if epoch > k.epoch {
            return Err(RegistryError::NeverIssued {
                id,
                epoch,
                current: k.epoch,
            });
        }
        k.last_active_ms = k.last_active_ms.max(now_ms);
        Ok(())
    }

    /// Adds what a source (metadata, a partition's table, an
    /// InitProducer) knows of a producer: the higher epoch and the later
    /// activity win.
    pub fn observe(&self, id: u64, epoch: u32, last_active_ms: i64) {
        let mut known = lock(&self.known);
        let k = known.entry(id).or_insert(Known {
            epoch,
            last_active_ms,
        });
        k.epoch = k.epoch.max(epoch);
        k.last_active_ms = k.last_active_ms.max(last_active_ms);
    }

    /// Forgets producers idle since before `cutoff_ms`; returns their ids.
    pub fn expire(&self, cutoff_ms: i64) -> Vec<u64> {
        let mut known = lock(&self.known);
        let gone: Vec<u64> = known
            .iter()
            .filter(|(_, k)| k.last_active_ms < cutoff_ms)
            .map(|(id, _)| *id)
            .collect();
        for id in &gone {
            known.remove(id);
        }
        gone
    }

    /// Whether `id` is known (issued or active within the expiry).
    pub fn contains(&self, id: u64) -> bool {
        lock(&self.known).contains_key(&id)
    }

    pub fn len(&self) -> usize {
        lock(&self.known).len()
    }
}
