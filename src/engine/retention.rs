//! Retention: drops segments past each topic's time or size limit, oldest
//! first, on its own thread.

use super::Engine;
use crate::bucket;
use crate::error::Result;
use crate::layout;
use crate::metrics::Metrics;
use crate::object_store::ObjectStore;
use crate::partition::{Partition, Status};
use crate::util::clock::now_ms;

impl Engine {
    /// Drops segments past each topic's retention, oldest first: metadata
    /// row and low watermark first (the object marked as garbage in the same
    /// transaction), then the object.
    pub fn run_retention(&self) {
        let now = now_ms();
        for t in self.snapshot() {
            if t.row.retention_ms == 0 && t.row.retention_bytes == 0 {
                continue;
            }
            for p in &t.partitions {
                // In a cluster each partition's leader, and only it, runs
                // its retention: no two nodes delete the same objects.
                let led = p.shared.cluster_epoch > 0 && p.shared.view().status == Status::Open;
                if self.ctx.cluster.is_some() && !led {
                    continue;
                }
                if let Err(e) = self.retain_partition(&t.row.name, p, now) {
                    log::warn!("retention of {}/{}: {e}", t.row.name, p.shared.partition);
                }
            }
        }
    }

    fn retain_partition(&self, topic: &str, p: &Partition, now: i64) -> Result<()> {
        let id = p.shared.partition;
        // Only segments the readers already see: one the uploader committed
        // a moment ago waits for the next pass.
        let visible_end = p.shared.view().committed_next;
        let mut expired = self.ctx.meta.segments_beyond_retention(topic, id, now)?;
        expired.retain(|s| s.last_offset < visible_end);
        let Some(last) = expired.last() else {
            return Ok(());
        };
        let new_low = last.last_offset + 1;
        // The bucket learns the new low watermark before anything goes, so
        // a rebuild continues at it even when no segment is left; and only
        // from a node that owns the prefix this moment (a mark is evidence
        // a rebuild deletes by).
        let epoch = match p.shared.cluster_epoch {
            0 => {
                self.confirm_owner_now()?;
                self.ctx.owner.epoch()
            }
            // Still the leader, its lease surely alive.
            cluster_epoch => {
                self.check_leading(topic, id)?;
                cluster_epoch
            }
        };
        let mark = layout::low_watermark_key(topic, p.shared.incarnation, id, new_low, epoch);
        self.ctx.store.put(
            &mark,
            &bucket::encode_low_watermark(new_low, epoch, now_ms()),
        )?;
        let dropped = self.ctx.meta.drop_segments_before(topic, id, new_low)?;
        {
            let mut view = p.shared.view_mut();
            view.low_watermark = view.low_watermark.max(new_low);
            while view
                .segments
                .front()
                .is_some_and(|s| s.last_offset < new_low)
            {
                view.segments.pop_front();
            }
        }
        Metrics::add(&self.ctx.metrics.segments_dropped, dropped.len() as u64);
        // The rows are gone and their objects marked as garbage, in one
        // transaction: collection deletes them now or, after a crash or a
        // store outage, on a later pass.
        if let Err(e) = super::gc::collect_garbage(&self.ctx) {
            log::warn!("retention: dropped objects stay marked for collection: {e}");
        }
        log::info!(
            "retention: {topic}/{id} dropped {} segments, low watermark now {new_low}",
            dropped.len()
        );
        Ok(())
    }
}
