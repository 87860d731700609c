//! Locks that shrug off poisoning, and a stop signal threads can wait on.

use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

/// Locks `m`, ignoring poisoning. Every critical section in this crate is a
/// short update that a panic cannot leave half-done (or, for SQLite, runs
/// in a transaction that rolls back), so a poisoned lock holds valid data.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// [`lock`] for the read side of an `RwLock`.
pub fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

/// [`lock`] for the write side of an `RwLock`.
pub fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}

/// A one-way flag: once raised it stays raised, and every thread sleeping in
/// [`StopSignal::sleep`] wakes at once. Clones share the flag.
#[derive(Clone, Debug, Default)]
pub struct StopSignal {
    inner: Arc<(Mutex<bool>, Condvar)>,
}

impl StopSignal {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn raise(&self) {
        let (flag, cv) = &*self.inner;
        *lock(flag) = true;
        cv.notify_all();
    }

    pub fn is_raised(&self) -> bool {
        *lock(&self.inner.0)
    }

    /// Sleeps for `d` unless the signal is raised first; true if it was.
    pub fn sleep(&self, d: Duration) -> bool {
        let deadline = Instant::now() + d;
        let (flag, cv) = &*self.inner;
        let mut raised = lock(flag);
        while !*raised {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            raised = cv
                .wait_timeout(raised, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_raised_signal_ends_a_sleep_at_once() {
        let s = StopSignal::new();
        assert!(!s.sleep(Duration::from_millis(1)));
        let t = {
            let s = s.clone();
            std::thread::spawn(move || s.sleep(Duration::from_secs(600)))
        };
        s.raise();
        assert!(t.join().unwrap(), "the sleeper saw the signal");
        assert!(s.is_raised());
        assert!(s.sleep(Duration::from_secs(600)), "stays raised");
    }
}
