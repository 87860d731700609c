//! One thread that fires callbacks at deadlines: long-poll timeouts. It
//! sleeps until the earliest deadline or a change, never polls. An entry
//! whose poll was answered early (an append woke it) is cancelled, so the
//! timer holds only the polls still waiting, however many come and go.

use crate::util::sync::lock;
use crate::util::thread::{self, Worker};
use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

type Callback = Box<dyn FnOnce() + Send>;

/// Names one registration, for [`Timer::cancel`].
pub type TimerKey = (Instant, u64);

#[derive(Default)]
struct Entries {
    pending: BTreeMap<TimerKey, Callback>,
    next_seq: u64,
    stopping: bool,
}

#[derive(Default)]
struct Shared {
    entries: Mutex<Entries>,
    changed: Condvar,
}

pub struct Timer {
    shared: Arc<Shared>,
    thread: Option<Worker>,
}

impl Timer {
    pub fn start() -> std::io::Result<Self> {
        let shared = Arc::new(Shared::default());
        let s = Arc::clone(&shared);
        let thread = thread::spawn("long-poll-timer", move || run(&s))?;
        Ok(Timer {
            shared,
            thread: Some(thread),
        })
    }

    /// Calls `callback` on the timer thread at `at` (or at shutdown),
    /// unless cancelled first.
    pub fn at(&self, at: Instant, callback: impl FnOnce() + Send + 'static) -> TimerKey {
        let mut e = lock(&self.shared.entries);
        e.next_seq += 1;
        let key = (at, e.next_seq);
        e.pending.insert(key, Box::new(callback));
        self.shared.changed.notify_one();
        key
    }

    /// Drops a registration that is no longer needed.
    pub fn cancel(&self, key: TimerKey) {
        lock(&self.shared.entries).pending.remove(&key);
    }

    #[cfg(test)]
    fn pending(&self) -> usize {
        lock(&self.shared.entries).pending.len()
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        lock(&self.shared.entries).stopping = true;
        self.shared.changed.notify_one();
        // Bounded: a callback stuck on a lock must not hold a shutdown.
        if let Some(t) = self.thread.take() {
            if !t.join_until(Instant::now() + std::time::Duration::from_secs(2)) {
                log::error!("the long-poll timer did not stop within 2 s");
            }
        }
    }
}

fn run(shared: &Shared) {
    let mut e = lock(&shared.entries);
    loop {
        if e.stopping {
            // Shutting down: answer everyone still waiting.
            let all = std::mem::take(&mut e.pending);
            drop(e);
            all.into_values().for_each(|cb| cb());
            return;
        }
        let now = Instant::now();
        let next = e.pending.keys().next().copied();
        match next {
            Some(key) if key.0 <= now => {
                let cb = e.pending.remove(&key);
                drop(e);
                if let Some(cb) = cb {
                    cb();
                }
                e = lock(&shared.entries);
            }
            Some(key) => {
                e = shared
                    .changed
                    .wait_timeout(e, key.0 - now)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
            None => {
                e = shared.changed.wait(e).unwrap_or_else(|p| p.into_inner());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[test]
    fn fires_in_order_cancels_and_answers_everyone_at_shutdown() {
        let timer = Timer::start().unwrap();
        // Many early-answered polls leave nothing behind.
        let far = Instant::now() + Duration::from_secs(3600);
        for _ in 0..10_000 {
            let k = timer.at(far, || {});
            timer.cancel(k);
        }
        assert_eq!(timer.pending(), 0);
        let fired = Arc::new(Mutex::new(Vec::new()));
        let now = Instant::now();
        for (i, ms) in [(1, 400u64), (0, 300), (2, 500)] {
            let f = Arc::clone(&fired);
            timer.at(now + Duration::from_millis(ms), move || lock(&f).push(i));
        }
        let cancelled = Arc::new(AtomicUsize::new(0));
        let c = Arc::clone(&cancelled);
        let key = timer.at(now + Duration::from_millis(350), move || {
            c.fetch_add(1, Ordering::SeqCst);
        });
        timer.cancel(key);
        assert_eq!(timer.pending(), 3);
        std::thread::sleep(Duration::from_millis(900));
        assert_eq!(*lock(&fired), vec![0, 1, 2]);
        assert_eq!(cancelled.load(Ordering::SeqCst), 0);
        let late = Arc::new(AtomicUsize::new(0));
        let l = Arc::clone(&late);
        timer.at(far, move || {
            l.fetch_add(1, Ordering::SeqCst);
        });
        drop(timer);
        assert_eq!(late.load(Ordering::SeqCst), 1, "answered at shutdown");
    }
}
