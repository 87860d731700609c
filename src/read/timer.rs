//! One thread that fires callbacks at deadlines: long-poll timeouts. It
//! sleeps until the earliest deadline or a new registration, never polls.

use crate::util::thread::{self, Worker};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::time::Instant;

type Callback = Box<dyn FnOnce() + Send>;

struct Entry {
    at: Instant,
    seq: u64,
    callback: Callback,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.at == other.at && self.seq == other.seq
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    // Reversed: BinaryHeap is a max-heap, we want the earliest first.
    fn cmp(&self, other: &Self) -> Ordering {
        other.at.cmp(&self.at).then(other.seq.cmp(&self.seq))
    }
}

pub struct Timer {
    tx: Option<Sender<(Instant, Callback)>>,
    thread: Option<Worker>,
}

impl Timer {
    pub fn start() -> std::io::Result<Self> {
        let (tx, rx) = crossbeam_channel::unbounded();
        let thread = thread::spawn("long-poll-timer", move || run(rx))?;
        Ok(Timer {
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    /// Calls `callback` on the timer thread at `at` (or at shutdown).
    pub fn at(&self, at: Instant, callback: impl FnOnce() + Send + 'static) {
        if let Some(tx) = &self.tx {
            let _ = tx.send((at, Box::new(callback)));
        }
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            t.join();
        }
    }
}

fn run(rx: Receiver<(Instant, Callback)>) {
    let mut heap: BinaryHeap<Entry> = BinaryHeap::new();
    let mut seq = 0u64;
    loop {
        let now = Instant::now();
        while heap.peek().is_some_and(|e| e.at <= now) {
            if let Some(e) = heap.pop() {
                (e.callback)();
            }
        }
        let next = match heap.peek() {
            Some(e) => rx.recv_deadline(e.at),
            None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        match next {
            Ok((at, callback)) => {
                seq += 1;
                heap.push(Entry { at, seq, callback });
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                // Shutting down: answer everyone still waiting.
                while let Some(e) = heap.pop() {
                    (e.callback)();
                }
                return;
            }
        }
    }
}
