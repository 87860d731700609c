//! Subscribe streams open at once: bounded on the node and per connection,
//! so that streams nobody reads cannot hold unbounded memory (each holds at
//! most one reply of [`SUBSCRIBE_MAX_BYTES`] being sent and one being read).

use crate::util::sync::lock;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Streams on one connection (a client's address and port).
pub const MAX_STREAMS_PER_CONNECTION: usize = 100;
/// Bytes of records in one message of a stream (the first record is sent
/// whole whatever its size). 64 KiB: 1,000 streams that never read hold
/// about 180 MB (256 KiB: 500 MB).
pub const SUBSCRIBE_MAX_BYTES: usize = 64 << 10;

/// The open streams, by connection.
#[derive(Debug)]
pub struct StreamSlots {
    max_total: usize,
    open: Mutex<Open>,
}

#[derive(Debug, Default)]
struct Open {
    total: usize,
    by_peer: HashMap<String, usize>,
}

/// One open stream; dropping it frees the slot.
#[derive(Debug)]
pub struct StreamSlot {
    slots: Arc<StreamSlots>,
    peer: String,
}

impl StreamSlots {
    pub fn new(max_total: usize) -> Arc<StreamSlots> {
        Arc::new(StreamSlots {
            max_total,
            open: Mutex::new(Open::default()),
        })
    }

    /// A slot for a stream from `peer`, or why there is none.
    pub fn take(self: &Arc<Self>, peer: &str) -> Result<StreamSlot, String> {
        let mut open = lock(&self.open);
        if open.total >= self.max_total {
            return Err(format!(
                "{} Subscribe streams are open on this node (--max-streams); close one or use Fetch",
                open.total
            ));
        }
        let on_peer = open.by_peer.entry(peer.to_string()).or_insert(0);
        if *on_peer >= MAX_STREAMS_PER_CONNECTION {
            return Err(format!(
                "{on_peer} Subscribe streams are open on this connection; the limit is {MAX_STREAMS_PER_CONNECTION}"
            ));
        }
        *on_peer += 1;
        open.total += 1;
        Ok(StreamSlot {
            slots: Arc::clone(self),
            peer: peer.to_string(),
        })
    }

    pub fn open(&self) -> usize {
        lock(&self.open).total
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = lock(&self.slots.open);
        open.total -= 1;
        if let Some(n) = open.by_peer.get_mut(&self.peer) {
            *n -= 1;
            if *n == 0 {
                open.by_peer.remove(&self.peer);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_bounded_per_node_and_per_connection_and_come_back() {
        let slots = StreamSlots::new(MAX_STREAMS_PER_CONNECTION + 1);
        let a: Vec<StreamSlot> = (0..MAX_STREAMS_PER_CONNECTION)
            .map(|_| slots.take("ipv4:127.0.0.1:1000").expect("room"))
            .collect();
        let err = slots
            .take("ipv4:127.0.0.1:1000")
            .expect_err("connection full");
        assert!(err.contains("on this connection"), "{err}");
        let b = slots
            .take("ipv4:127.0.0.1:2000")
            .expect("another connection");
        let err = slots.take("ipv4:127.0.0.1:3000").expect_err("node full");
        assert!(err.contains("--max-streams"), "{err}");
        drop(b);
        drop(a);
        assert_eq!(slots.open(), 0);
        assert!(slots.take("ipv4:127.0.0.1:1000").is_ok());
    }
}
