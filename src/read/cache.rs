//! The block cache: decoded blocks of sealed segments, LRU, bounded in bytes,
//! keyed by (segment object, block index); footers are cached beside them.

use crate::segment::{DecodedBlock, Footer};
use crate::util::sync::lock;
use lru::LruCache;
use std::sync::{Arc, Mutex};

type BlockKey = (Arc<str>, u32);

struct Blocks {
    lru: LruCache<BlockKey, Arc<DecodedBlock>>,
    bytes: u64,
}

pub struct BlockCache {
    capacity_bytes: u64,
    blocks: Mutex<Blocks>,
    footers: Mutex<LruCache<Arc<str>, Arc<Footer>>>,
}

/// Footers are small (48 bytes a block); this many segments' worth.
const FOOTER_ENTRIES: usize = 16_384;

impl BlockCache {
    pub fn new(capacity_bytes: u64) -> Self {
        let footers = std::num::NonZeroUsize::new(FOOTER_ENTRIES)
            .map_or_else(LruCache::unbounded, LruCache::new);
        BlockCache {
            capacity_bytes,
            blocks: Mutex::new(Blocks {
                lru: LruCache::unbounded(),
                bytes: 0,
            }),
            footers: Mutex::new(footers),
        }
    }

    pub fn block(&self, key: &Arc<str>, block: u32) -> Option<Arc<DecodedBlock>> {
        lock(&self.blocks)
            .lru
            .get(&(Arc::clone(key), block))
            .cloned()
    }

    pub fn contains_block(&self, key: &Arc<str>, block: u32) -> bool {
        lock(&self.blocks).lru.contains(&(Arc::clone(key), block))
    }

    pub fn insert_block(&self, key: &Arc<str>, block: u32, value: Arc<DecodedBlock>) {
        let size = value.memory_bytes() as u64;
        if size > self.capacity_bytes {
            return; // would evict everything and still not fit
        }
        let mut b = lock(&self.blocks);
        if let Some(old) = b.lru.put((Arc::clone(key), block), value) {
            b.bytes -= old.memory_bytes() as u64;
        }
        b.bytes += size;
        while b.bytes > self.capacity_bytes {
            match b.lru.pop_lru() {
                Some((_, evicted)) => b.bytes -= evicted.memory_bytes() as u64,
                None => break,
            }
        }
    }

    pub fn footer(&self, key: &Arc<str>) -> Option<Arc<Footer>> {
        lock(&self.footers).get(key).cloned()
    }

    pub fn insert_footer(&self, key: &Arc<str>, footer: Arc<Footer>) {
        lock(&self.footers).put(Arc::clone(key), footer);
    }

    /// Bytes of decoded blocks held now.
    pub fn bytes(&self) -> u64 {
        lock(&self.blocks).bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Record;
    use crate::segment::{SegmentBytes, SegmentWriter};

    /// Decoded blocks of a segment with `n` blocks of one 1000-byte record.
    fn blocks(n: usize) -> Vec<Arc<DecodedBlock>> {
        let mut w = SegmentWriter::new(100);
        for i in 0..n {
            w.push(&Record {
                offset: i as i64,
                value: Some(vec![i as u8; 1000]),
                ..Default::default()
            })
            .unwrap();
        }
        let (bytes, _) = w.finish().unwrap();
        let r = SegmentBytes::open(&bytes).unwrap();
        (0..n).map(|i| Arc::new(r.block(i).unwrap())).collect()
    }

    #[test]
    fn the_cache_stays_within_its_byte_bound_evicting_least_recently_used() {
        let bs = blocks(10);
        let one = bs[0].memory_bytes() as u64;
        let cache = BlockCache::new(one * 3);
        let key: Arc<str> = Arc::from("seg");
        for (i, b) in bs.iter().enumerate().take(3) {
            cache.insert_block(&key, i as u32, Arc::clone(b));
        }
        assert!(cache.block(&key, 0).is_some()); // 0 is now most recent
        cache.insert_block(&key, 3, Arc::clone(&bs[3]));
        assert!(cache.bytes() <= one * 3);
        assert!(
            cache.block(&key, 1).is_none(),
            "least recently used went first"
        );
        assert!(cache.block(&key, 0).is_some());
        assert!(cache.block(&key, 3).is_some());
        // Re-inserting the same key does not double count.
        cache.insert_block(&key, 3, Arc::clone(&bs[3]));
        assert!(cache.bytes() <= one * 3);
        // A cache smaller than one block caches nothing.
        let tiny = BlockCache::new(one - 1);
        tiny.insert_block(&key, 0, Arc::clone(&bs[0]));
        assert_eq!(tiny.bytes(), 0);
        assert!(tiny.block(&key, 0).is_none());
    }
}
