//! Named threads that are always joined, with a deadline when the work
//! might hang on a store that does not answer.

use crossbeam_channel::{Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::Instant;

/// A named thread. Join it with [`Worker::join`], or with
/// [`Worker::join_until`] when it may be stuck in a call that cannot be
/// interrupted (an HTTP request to a hung store).
#[derive(Debug)]
pub struct Worker {
    name: String,
    handle: Option<JoinHandle<()>>,
    /// Disconnects when the thread's closure returns (or unwinds).
    done: Receiver<()>,
}

/// Starts `f` on a thread called `name`.
pub fn spawn(
    name: impl Into<String>,
    f: impl FnOnce() + Send + 'static,
) -> std::io::Result<Worker> {
    let name = name.into();
    let (done_tx, done) = crossbeam_channel::bounded::<()>(0);
    let handle = std::thread::Builder::new()
        .name(name.clone())
        .spawn(move || {
            let _done = done_tx; // dropped when `f` ends, however it ends
            f();
        })?;
    Ok(Worker {
        name,
        handle: Some(handle),
        done,
    })
}

impl Worker {
    /// True once the thread has ended; waits for that until `deadline`.
    pub fn wait_until(&self, deadline: Instant) -> bool {
        !matches!(
            self.done.recv_deadline(deadline),
            Err(RecvTimeoutError::Timeout)
        )
    }

    /// Waits for the thread to end.
    pub fn join(mut self) {
        self.join_inner();
    }

    /// Waits for the thread until `deadline`; true if it ended. A thread
    /// still running at the deadline is left to finish on its own (the
    /// process is exiting; whatever it was doing is safe to abandon).
    pub fn join_until(mut self, deadline: Instant) -> bool {
        if self.is_current() {
            // The last owner dropped on the thread itself: it is ending.
            self.handle.take();
            return true;
        }
        if self.wait_until(deadline) {
            self.join_inner();
            true
        } else {
            log::warn!("thread {} did not stop in time; leaving it", self.name);
            self.handle.take();
            false
        }
    }

    fn is_current(&self) -> bool {
        self.handle
            .as_ref()
            .is_some_and(|h| h.thread().id() == std::thread::current().id())
    }

    fn join_inner(&mut self) {
        // A thread cannot join itself (the last owner may be dropped on the
        // thread itself).
        if self.is_current() {
            self.handle.take();
        }
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.join_inner();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn join_until_returns_when_the_thread_ends_or_at_the_deadline() {
        let quick = spawn("quick", || {}).unwrap();
        assert!(quick.join_until(Instant::now() + Duration::from_secs(10)));
        let (tx, rx) = crossbeam_channel::bounded::<()>(0);
        let stuck = spawn("stuck", move || {
            let _ = rx.recv();
        })
        .unwrap();
        let start = Instant::now();
        assert!(!stuck.join_until(start + Duration::from_millis(50)));
        assert!(start.elapsed() < Duration::from_secs(5));
        drop(tx);
    }
}

/// `f` over every item on up to `threads` scoped threads named
/// `{name}-{i}`; the results in the items' order.
pub fn map_parallel<T: Sync, R: Send>(
    items: &[T],
    threads: usize,
    name: &str,
    f: impl Fn(&T) -> R + Sync,
) -> std::io::Result<Vec<R>> {
    let slots: Vec<std::sync::Mutex<Option<R>>> =
        items.iter().map(|_| std::sync::Mutex::new(None)).collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| -> std::io::Result<()> {
        for i in 0..threads.min(items.len()) {
            std::thread::Builder::new()
                .name(format!("{name}-{i}"))
                .spawn_scoped(scope, || loop {
                    let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(item) = items.get(n) else { return };
                    let r = f(item);
                    *crate::util::sync::lock(&slots[n]) = Some(r);
                })?;
        }
        Ok(())
    })?;
    // A slot is empty only if its thread panicked, which `scope` re-raises.
    Ok(slots
        .into_iter()
        .filter_map(|s| s.into_inner().unwrap_or_else(|p| p.into_inner()))
        .collect())
}

#[cfg(test)]
mod parallel_tests {
    #[test]
    fn map_parallel_keeps_the_order() {
        let items: Vec<u64> = (0..100).collect();
        let out = super::map_parallel(&items, 7, "t", |x| x * 2).unwrap();
        assert_eq!(out, items.iter().map(|x| x * 2).collect::<Vec<_>>());
        assert!(super::map_parallel(&[] as &[u8], 4, "t", |x| *x)
            .unwrap()
            .is_empty());
    }
}
