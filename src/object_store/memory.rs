//! `MemoryStore`: objects in a map, with injectable faults for tests of the
//! layers above (uploads under a flaky store, backpressure when it is down).

use super::{
    check_range, content_etag, validate_key, validate_prefix, Expect, ObjectMeta, ObjectStore,
    StoreError, StoreResult, Versioned,
};
use crate::util::sync::lock;
use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Faults applied to every call of a [`MemoryStore`].
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// The store is unreachable: every call fails with a transient error.
    pub down: bool,
    /// The next N calls fail with a transient error before doing anything.
    pub fail_next: u32,
    /// Each call fails with this probability (0.0..=1.0), before doing anything.
    pub fail_fraction: f64,
    /// Each call sleeps this long first.
    pub latency: Duration,
    /// With this probability a call takes effect and then reports a transient
    /// "connection lost" error, as when a connection drops after the request
    /// was sent: the caller cannot know whether it happened.
    pub lose_connection_fraction: f64,
    /// Conditional writes with `If-None-Match: *` succeed whatever is
    /// there, as on stores that accept the header and ignore it.
    pub ignore_if_none_match: bool,
    /// The same for `If-Match`.
    pub ignore_if_match: bool,
}

/// An in-memory [`ObjectStore`] with fault injection. Cloning shares the
/// objects and the faults.
#[derive(Clone, Debug, Default)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    objects: Mutex<BTreeMap<String, Arc<Vec<u8>>>>,
    faults: Mutex<Faults>,
    rng: Mutex<u64>,
    calls: AtomicU64,
    injected: AtomicU64,
}

impl MemoryStore {
    pub fn new() -> Self {
        let store = MemoryStore::default();
        *lock(&store.inner.rng) = 0x9e37_79b9_7f4a_7c15;
        store
    }

    pub fn set_faults(&self, faults: Faults) {
        *lock(&self.inner.faults) = faults;
    }

    pub fn faults(&self) -> Faults {
        lock(&self.inner.faults).clone()
    }

    /// Makes the next `n` calls fail with a transient error.
    pub fn fail_next(&self, n: u32) {
        lock(&self.inner.faults).fail_next = n;
    }

    pub fn set_down(&self, down: bool) {
        lock(&self.inner.faults).down = down;
    }

    /// Calls made so far, and how many of them failed by injection.
    pub fn call_counts(&self) -> (u64, u64) {
        (
            self.inner.calls.load(Ordering::Relaxed),
            self.inner.injected.load(Ordering::Relaxed),
        )
    }

    pub fn object_count(&self) -> usize {
        lock(&self.inner.objects).len()
    }

    fn random(&self) -> f64 {
        // xorshift64*: deterministic per store, good enough for fault dice.
        let mut s = lock(&self.inner.rng);
        *s ^= *s >> 12;
        *s ^= *s << 25;
        *s ^= *s >> 27;
        let v = s.wrapping_mul(0x2545_f491_4f6c_dd1d);
        (v >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Applies the faults that strike before a call does anything.
    fn before(&self, key: &str) -> StoreResult<()> {
        self.inner.calls.fetch_add(1, Ordering::Relaxed);
        let faults = {
            let mut f = lock(&self.inner.faults);
            let snapshot = f.clone();
            if f.fail_next > 0 {
                f.fail_next -= 1;
            }
            snapshot
        };
        if !faults.latency.is_zero() {
            std::thread::sleep(faults.latency);
        }
        let reason = if faults.down {
            Some("store is down (injected)")
        } else if faults.fail_next > 0 {
            Some("injected failure (fail_next)")
        } else if faults.fail_fraction > 0.0 && self.random() < faults.fail_fraction {
            Some("injected failure (fail_fraction)")
        } else {
            None
        };
        match reason {
            Some(r) => {
                self.inner.injected.fetch_add(1, Ordering::Relaxed);
                Err(StoreError::transient(key, r))
            }
            None => Ok(()),
        }
    }

    /// Applies the "took effect, then the connection dropped" fault.
    fn after<T>(&self, key: &str, result: StoreResult<T>) -> StoreResult<T> {
        let fraction = lock(&self.inner.faults).lose_connection_fraction;
        if result.is_ok() && fraction > 0.0 && self.random() < fraction {
            self.inner.injected.fetch_add(1, Ordering::Relaxed);
            return Err(StoreError::transient(
                key,
                "connection lost after the request was sent (injected)",
            ));
        }
        result
    }

    fn object(&self, key: &str) -> StoreResult<Arc<Vec<u8>>> {
        lock(&self.inner.objects)
            .get(key)
            .cloned()
            .ok_or_else(|| StoreError::NotFound {
                key: key.to_string(),
            })
    }
}

impl ObjectStore for MemoryStore {
    fn put(&self, key: &str, data: &[u8]) -> StoreResult<()> {
        validate_key(key)?;
        self.before(key)?;
        lock(&self.inner.objects).insert(key.to_string(), Arc::new(data.to_vec()));
        self.after(key, Ok(()))
    }

    fn put_if(&self, key: &str, data: &[u8], expect: Expect<'_>) -> StoreResult<()> {
        validate_key(key)?;
        self.before(key)?;
        let (ignore_absent, ignore_version) = {
            let f = lock(&self.inner.faults);
            (f.ignore_if_none_match, f.ignore_if_match)
        };
        let r = {
            let mut objects = lock(&self.inner.objects);
            let current = objects.get(key).map(|o| content_etag(o));
            let ok = match expect {
                Expect::Absent => ignore_absent || current.is_none(),
                Expect::Version(tag) => ignore_version || current.as_deref() == Some(tag),
            };
            if ok {
                objects.insert(key.to_string(), Arc::new(data.to_vec()));
                Ok(())
            } else {
                Err(StoreError::PreconditionFailed {
                    key: key.to_string(),
                })
            }
        };
        self.after(key, r)
    }

    fn get(&self, key: &str) -> StoreResult<Vec<u8>> {
        validate_key(key)?;
        self.before(key)?;
        let r = self.object(key).map(|o| o.as_ref().clone());
        self.after(key, r)
    }

    fn get_versioned(&self, key: &str) -> StoreResult<Versioned> {
        let data = self.get(key)?;
        let etag = content_etag(&data);
        Ok(Versioned { data, etag })
    }

    fn get_range(&self, key: &str, range: Range<u64>) -> StoreResult<Vec<u8>> {
        validate_key(key)?;
        self.before(key)?;
        let r = self.object(key).and_then(|o| {
            check_range(key, &range, o.len() as u64)?;
            Ok(o[range.start as usize..range.end as usize].to_vec())
        });
        self.after(key, r)
    }

    fn size(&self, key: &str) -> StoreResult<u64> {
        validate_key(key)?;
        self.before(key)?;
        let r = self.object(key).map(|o| o.len() as u64);
        self.after(key, r)
    }

    fn list(&self, prefix: &str) -> StoreResult<Vec<ObjectMeta>> {
        validate_prefix(prefix)?;
        self.before(prefix)?;
        let objects = lock(&self.inner.objects);
        let r = objects
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| ObjectMeta {
                key: k.clone(),
                size: v.len() as u64,
            })
            .collect();
        drop(objects);
        self.after(prefix, Ok(r))
    }

    fn delete(&self, key: &str) -> StoreResult<()> {
        validate_key(key)?;
        self.before(key)?;
        lock(&self.inner.objects).remove(key);
        self.after(key, Ok(()))
    }

    fn describe(&self) -> String {
        "memory://".to_string()
    }
}
