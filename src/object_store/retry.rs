//! The one retry loop: exponential backoff with full jitter, bounded by a
//! policy and cut short by a stop signal. [`RetryingStore`] uses it for
//! transient errors of every store call; the uploader uses it, with a
//! policy that never gives up, for uploads and metadata commits.

use super::{Expect, ObjectMeta, ObjectStore, StoreError, StoreResult, Versioned};
use crate::util::sync::StopSignal;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How hard to retry. Delay before retry n (1-based) is uniform in
/// `0..=min(max_delay, base_delay * 2^(n-1))` ("full jitter"), so many
/// clients failing together do not retry in lockstep.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (`u32::MAX`: no limit).
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// No retry starts after this much time since the first attempt
    /// (`Duration::MAX`: no limit).
    pub max_elapsed: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 10,
            base_delay: Duration::from_millis(50),
            max_delay: Duration::from_secs(5),
            max_elapsed: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// Retries until success or the stop signal: for work that must
    /// happen eventually and whose data is safe meanwhile (uploads, whose
    /// records stay in the WAL).
    pub fn forever() -> Self {
        RetryPolicy {
            max_attempts: u32::MAX,
            base_delay: Duration::from_millis(50),
            max_delay: Duration::from_secs(5),
            max_elapsed: Duration::MAX,
        }
    }

    /// The upper bound of the jittered delay before retry `n` (1-based).
    pub fn delay_cap(&self, n: u32) -> Duration {
        let factor = 1u32.checked_shl(n.saturating_sub(1)).unwrap_or(u32::MAX);
        self.base_delay
            .checked_mul(factor)
            .unwrap_or(self.max_delay)
            .min(self.max_delay)
    }

    fn jittered_delay(&self, n: u32) -> Duration {
        let cap = self.delay_cap(n).as_nanos() as u64;
        if cap == 0 {
            return Duration::ZERO;
        }
        // RandomState is seeded randomly per instance: a cheap, dependency-free
        // source of jitter (not cryptographic, and it need not be).
        let mut h = RandomState::new().build_hasher();
        h.write_u32(n);
        Duration::from_nanos(h.finish() % (cap + 1))
    }
}

/// Runs `attempt` until it succeeds, `retryable` refuses its error, the
/// policy runs out, or `stop` is raised; returns the last result. Before
/// each retry, `on_retry(attempt number, error, delay)` is called (for logs
/// and counters).
pub fn retry<T, E>(
    policy: &RetryPolicy,
    stop: &StopSignal,
    retryable: impl Fn(&E) -> bool,
    mut on_retry: impl FnMut(u32, &E, Duration),
    mut attempt: impl FnMut() -> Result<T, E>,
) -> Result<T, E> {
    let start = Instant::now();
    let mut n = 1;
    loop {
        let err = match attempt() {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        if !retryable(&err) || n >= policy.max_attempts || stop.is_raised() {
            return Err(err);
        }
        let delay = policy.jittered_delay(n);
        if start.elapsed().saturating_add(delay) > policy.max_elapsed {
            return Err(err);
        }
        on_retry(n, &err, delay);
        if stop.sleep(delay) {
            return Err(err);
        }
        n += 1;
    }
}

/// Wraps a store; retries transient errors per [`RetryPolicy`], logging each
/// retry with the key and the reason. `NotFound` and `Permanent` errors are
/// returned at once.
#[derive(Debug, Clone)]
pub struct RetryingStore {
    inner: Arc<dyn ObjectStore>,
    policy: RetryPolicy,
    stop: StopSignal,
    retries: Arc<AtomicU64>,
}

impl RetryingStore {
    /// Retries stop when `stop` is raised (at shutdown), so no call waits
    /// out its backoff then.
    pub fn new(inner: Arc<dyn ObjectStore>, policy: RetryPolicy, stop: StopSignal) -> Self {
        RetryingStore {
            inner,
            policy,
            stop,
            retries: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Retries made so far (for metrics).
    pub fn retry_count(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }

    pub fn inner(&self) -> &Arc<dyn ObjectStore> {
        &self.inner
    }

    fn run<T>(&self, op: &str, key: &str, f: impl Fn() -> StoreResult<T>) -> StoreResult<T> {
        let start = Instant::now();
        let mut attempts = 1;
        let result = retry(
            &self.policy,
            &self.stop,
            StoreError::is_transient,
            |n, e, delay| {
                attempts = n + 1;
                log::warn!(
                    "object store {op} {key:?}: attempt {n} failed ({e}); retrying in {delay:?}"
                );
                self.retries.fetch_add(1, Ordering::Relaxed);
            },
            f,
        );
        if let Err(e) = &result {
            if e.is_transient() {
                log::warn!(
                    "object store {op} {key:?}: giving up after {attempts} attempts in {:?}: {e}",
                    start.elapsed()
                );
            }
        }
        result
    }
}

impl ObjectStore for RetryingStore {
    fn put(&self, key: &str, data: &[u8]) -> StoreResult<()> {
        self.run("put", key, || self.inner.put(key, data))
    }

    fn put_if(&self, key: &str, data: &[u8], expect: Expect<'_>) -> StoreResult<()> {
        self.run("conditional put", key, || {
            self.inner.put_if(key, data, expect)
        })
    }

    fn get(&self, key: &str) -> StoreResult<Vec<u8>> {
        self.run("get", key, || self.inner.get(key))
    }

    fn get_versioned(&self, key: &str) -> StoreResult<Versioned> {
        self.run("get", key, || self.inner.get_versioned(key))
    }

    fn get_range(&self, key: &str, range: Range<u64>) -> StoreResult<Vec<u8>> {
        self.run("get_range", key, || {
            self.inner.get_range(key, range.clone())
        })
    }

    fn size(&self, key: &str) -> StoreResult<u64> {
        self.run("head", key, || self.inner.size(key))
    }

    fn list(&self, prefix: &str) -> StoreResult<Vec<ObjectMeta>> {
        self.run("list", prefix, || self.inner.list(prefix))
    }

    fn delete(&self, key: &str) -> StoreResult<()> {
        self.run("delete", key, || self.inner.delete(key))
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }

    fn identity(&self) -> String {
        self.inner.identity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object_store::{Faults, MemoryStore};

    fn fast_policy(max_attempts: u32) -> RetryPolicy {
        RetryPolicy {
            max_attempts,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(4),
            max_elapsed: Duration::from_secs(10),
        }
    }

    #[test]
    fn transient_failures_are_retried_until_success() {
        let mem = MemoryStore::new();
        let store = RetryingStore::new(Arc::new(mem.clone()), fast_policy(5), StopSignal::new());
        mem.fail_next(3);
        store.put("a/b", b"hello").unwrap();
        assert_eq!(store.retry_count(), 3);
        assert_eq!(store.get("a/b").unwrap(), b"hello");
        assert_eq!(mem.call_counts(), (5, 3));
    }

    #[test]
    fn attempts_are_bounded() {
        let mem = MemoryStore::new();
        let store = RetryingStore::new(Arc::new(mem.clone()), fast_policy(4), StopSignal::new());
        mem.set_down(true);
        let err = store.put("k", b"v").unwrap_err();
        assert!(err.is_transient());
        assert_eq!(mem.call_counts(), (4, 4), "exactly max_attempts calls");
        assert_eq!(store.retry_count(), 3);
    }

    #[test]
    fn total_time_is_bounded() {
        let mem = MemoryStore::new();
        let policy = RetryPolicy {
            max_attempts: 1000,
            base_delay: Duration::from_millis(5),
            max_delay: Duration::from_millis(5),
            max_elapsed: Duration::from_millis(50),
        };
        let store = RetryingStore::new(Arc::new(mem.clone()), policy, StopSignal::new());
        mem.set_faults(Faults {
            down: true,
            latency: Duration::from_millis(5),
            ..Faults::default()
        });
        assert!(store.get("k").is_err());
        let (calls, _) = mem.call_counts();
        assert!(
            calls < 1000,
            "stopped by time, not attempts ({calls} calls)"
        );
    }

    #[test]
    fn not_found_and_permanent_errors_are_not_retried() {
        let mem = MemoryStore::new();
        let store = RetryingStore::new(Arc::new(mem.clone()), fast_policy(5), StopSignal::new());
        assert!(store.get("missing").unwrap_err().is_not_found());
        assert!(matches!(
            store.put("../escape", b"x").unwrap_err(),
            StoreError::Permanent { .. }
        ));
        assert_eq!(store.retry_count(), 0);
        assert_eq!(
            mem.call_counts().0,
            1,
            "the invalid key never reached the store"
        );
    }

    #[test]
    fn delay_cap_grows_exponentially_to_the_maximum() {
        let p = RetryPolicy {
            max_attempts: 10,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(100),
            max_elapsed: Duration::from_secs(1),
        };
        let caps: Vec<u64> = (1..=6).map(|n| p.delay_cap(n).as_millis() as u64).collect();
        assert_eq!(caps, vec![10, 20, 40, 80, 100, 100]);
        assert_eq!(p.delay_cap(200), Duration::from_millis(100));
        for n in 1..=6 {
            for _ in 0..50 {
                assert!(p.jittered_delay(n) <= p.delay_cap(n));
            }
        }
    }

    #[test]
    fn a_raised_stop_signal_ends_retries_at_once() {
        let mem = MemoryStore::new();
        let stop = StopSignal::new();
        let policy = RetryPolicy {
            base_delay: Duration::from_secs(60),
            max_delay: Duration::from_secs(60),
            ..RetryPolicy::forever()
        };
        let store = RetryingStore::new(Arc::new(mem.clone()), policy, stop.clone());
        mem.set_down(true);
        let raiser = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(50));
                stop.raise();
            })
        };
        let start = Instant::now();
        // Without the signal this would retry forever with 60 s delays.
        assert!(store.put("k", b"v").unwrap_err().is_transient());
        assert!(start.elapsed() < Duration::from_secs(30));
        raiser.join().unwrap();
        let calls_before = mem.call_counts().0;
        assert!(store.put("k", b"v").is_err());
        assert_eq!(
            mem.call_counts().0,
            calls_before + 1,
            "no retry once stopped"
        );
    }

    #[test]
    fn retry_stops_when_the_error_is_not_retryable() {
        let mut calls = 0;
        let r: Result<(), &str> = retry(
            &RetryPolicy::forever(),
            &StopSignal::new(),
            |e| *e != "fatal",
            |_, _, _| {},
            || {
                calls += 1;
                Err(if calls < 3 { "again" } else { "fatal" })
            },
        );
        assert_eq!(r, Err("fatal"));
        assert_eq!(calls, 3);
    }
}
