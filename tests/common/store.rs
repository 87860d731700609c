//! A memory store that runs a hook before every PUT: tests record the order
//! of PUTs, or hold some back.

use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use streamhouse::object_store::{
    Expect, MemoryStore, ObjectMeta, ObjectStore, StoreError, StoreResult, Versioned,
};

type PutHook = Box<dyn Fn(&str) + Send + Sync>;

pub struct HookedStore {
    pub inner: MemoryStore,
    before_put: PutHook,
    /// While set, every PUT fails as an unreachable store's would.
    pub refuse_puts: AtomicBool,
}

impl HookedStore {
    pub fn new(before_put: impl Fn(&str) + Send + Sync + 'static) -> HookedStore {
        HookedStore {
            inner: MemoryStore::new(),
            before_put: Box::new(before_put),
            refuse_puts: AtomicBool::new(false),
        }
    }
}

impl std::fmt::Debug for HookedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HookedStore")
    }
}

impl ObjectStore for HookedStore {
    fn put(&self, key: &str, data: &[u8]) -> StoreResult<()> {
        (self.before_put)(key);
        if self.refuse_puts.load(Ordering::SeqCst) {
            return Err(StoreError::Transient {
                key: key.to_string(),
                reason: "the store is down (test)".into(),
            });
        }
        self.inner.put(key, data)
    }
    fn put_if(&self, key: &str, data: &[u8], expect: Expect<'_>) -> StoreResult<()> {
        self.inner.put_if(key, data, expect)
    }
    fn get(&self, key: &str) -> StoreResult<Vec<u8>> {
        self.inner.get(key)
    }
    fn get_versioned(&self, key: &str) -> StoreResult<Versioned> {
        self.inner.get_versioned(key)
    }
    fn get_range(&self, key: &str, range: Range<u64>) -> StoreResult<Vec<u8>> {
        self.inner.get_range(key, range)
    }
    fn size(&self, key: &str) -> StoreResult<u64> {
        self.inner.size(key)
    }
    fn list(&self, prefix: &str) -> StoreResult<Vec<ObjectMeta>> {
        self.inner.list(prefix)
    }
    fn delete(&self, key: &str) -> StoreResult<()> {
        self.inner.delete(key)
    }
    /// The same store as `inner` (a data directory may move between them).
    fn describe(&self) -> String {
        self.inner.describe()
    }
}
