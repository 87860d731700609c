//! Footers and blocks of sealed segments through the cache, and the
//! sequential prefetch that keeps a reader's next block warm.

use super::source::{read_block, read_footer, StoredObject};
use super::{PoolInner, Prefetch};
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::object_store::StoreError;
use crate::partition::{PartitionShared, SegmentRef};
use crate::segment::{DecodedBlock, Footer};
use crate::util::sync::lock;
use std::sync::Arc;

impl PoolInner {
    fn object<'a>(&'a self, seg: &'a SegmentRef) -> StoredObject<'a> {
        StoredObject {
            store: &self.ctx.store,
            key: &seg.key,
            metrics: &self.ctx.metrics,
        }
    }

    pub(super) fn store_error(
        &self,
        partition: &PartitionShared,
        seg: &SegmentRef,
        e: Error,
    ) -> Error {
        match &e {
            Error::Store(StoreError::NotFound { .. }) => {
                let low = partition.view().low_watermark;
                if seg.last_offset < low {
                    return Error::OutOfRange(format!(
                        "offsets up to {} of partition {} were removed by retention; the low watermark is {low}",
                        seg.last_offset,
                        partition.name()
                    ));
                }
                Error::DataLoss(format!(
                    "segment object {} (offsets {}..={} of partition {}) is missing from the object store",
                    seg.key,
                    seg.base_offset,
                    seg.last_offset,
                    partition.name()
                ))
            }
            Error::Store(StoreError::OutOfBounds { reason, .. }) => Error::DataLoss(format!(
                "segment object {} (offsets {}..={} of partition {}) is shorter than its metadata says ({} bytes): {reason}",
                seg.key,
                seg.base_offset,
                seg.last_offset,
                partition.name(),
                seg.size_bytes
            )),
            _ => e,
        }
    }

    pub(super) fn footer(&self, seg: &SegmentRef) -> Result<Arc<Footer>> {
        if let Some(f) = self.cache.footer(&seg.key) {
            return Ok(f);
        }
        let footer = Arc::new(read_footer(&self.object(seg), seg.size_bytes)?);
        self.cache.insert_footer(&seg.key, Arc::clone(&footer));
        Ok(footer)
    }

    pub(super) fn block(
        &self,
        seg: &SegmentRef,
        footer: &Footer,
        i: usize,
    ) -> Result<Arc<DecodedBlock>> {
        if let Some(b) = self.cache.block(&seg.key, i as u32) {
            Metrics::add(&self.ctx.metrics.cache_hits, 1);
            return Ok(b);
        }
        Metrics::add(&self.ctx.metrics.cache_misses, 1);
        self.load_block(seg, footer, i)
    }

    fn load_block(&self, seg: &SegmentRef, footer: &Footer, i: usize) -> Result<Arc<DecodedBlock>> {
        let block = Arc::new(read_block(&self.object(seg), footer, i)?);
        self.cache
            .insert_block(&seg.key, i as u32, Arc::clone(&block));
        Ok(block)
    }

    pub(super) fn queue_prefetch(&self, seg: &SegmentRef, block: u32) {
        if self.cache.contains_block(&seg.key, block) {
            return;
        }
        if !lock(&self.prefetching).insert((Arc::clone(&seg.key), block)) {
            return;
        }
        if self
            .prefetch_tx
            .try_send(Prefetch {
                segment: seg.clone(),
                block,
            })
            .is_err()
        {
            lock(&self.prefetching).remove(&(Arc::clone(&seg.key), block));
        }
    }

    pub(super) fn prefetch(&self, p: Prefetch) {
        let key = (Arc::clone(&p.segment.key), p.block);
        if !self.cache.contains_block(&p.segment.key, p.block) {
            let loaded = self
                .footer(&p.segment)
                .and_then(|f| self.load_block(&p.segment, &f, p.block as usize));
            match loaded {
                Ok(_) => Metrics::add(&self.ctx.metrics.prefetches, 1),
                Err(e) => log::debug!(
                    "prefetch of {} block {} failed: {e}",
                    p.segment.key,
                    p.block
                ),
            }
        }
        lock(&self.prefetching).remove(&key);
    }
}
