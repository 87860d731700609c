//! Bytes accepted but not yet uploaded: the node's total, which
//! `max_backlog_bytes` bounds, and each partition's share of it. Both
//! change together, always through this type.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

#[derive(Debug)]
pub(crate) struct Backlog {
    node: Arc<AtomicU64>,
    partition: AtomicU64,
}

impl Backlog {
    pub fn new(node: Arc<AtomicU64>) -> Self {
        Backlog {
            node,
            partition: AtomicU64::new(0),
        }
    }

    /// Takes `bytes` from the node's bound unless the total would pass
    /// `max`; on refusal, returns the total as it was. One reservation for a
    /// whole produce request, before any partition receives a record; each
    /// partition then [`Backlog::take_share`]s its part.
    pub fn reserve_node(node: &AtomicU64, bytes: u64, max: u64) -> Result<(), u64> {
        node.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |now| {
            (now + bytes <= max).then_some(now + bytes)
        })?;
        Ok(())
    }

    /// Counts `bytes` already reserved on the node as this partition's.
    pub fn take_share(&self, bytes: u64) {
        self.partition.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Counts `bytes` without a bound (records recovered from the WAL).
    pub fn add(&self, bytes: u64) {
        self.node.fetch_add(bytes, Ordering::Relaxed);
        self.partition.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Gives back `bytes` (uploaded, or never written).
    pub fn release(&self, bytes: u64) {
        self.node.fetch_sub(bytes, Ordering::Relaxed);
        self.partition.fetch_sub(bytes, Ordering::Relaxed);
    }

    /// Gives back everything this partition holds (its topic was deleted).
    pub fn release_all(&self) {
        let left = self.partition.swap(0, Ordering::Relaxed);
        self.node.fetch_sub(left, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_share_the_node_bound() {
        let node = Arc::new(AtomicU64::new(0));
        let a = Backlog::new(Arc::clone(&node));
        let b = Backlog::new(Arc::clone(&node));
        assert!(Backlog::reserve_node(&node, 60, 100).is_ok());
        a.take_share(60);
        assert_eq!(
            Backlog::reserve_node(&node, 50, 100),
            Err(60),
            "over the node bound"
        );
        assert!(Backlog::reserve_node(&node, 40, 100).is_ok());
        b.take_share(40);
        a.release(10);
        assert_eq!(node.load(Ordering::Relaxed), 90);
        a.release_all();
        assert_eq!(node.load(Ordering::Relaxed), 40, "only a's share went");
    }
}
