//! Cluster mode: committed records read through any node, not only the
//! partition's leader (and while a partition has no leader, during a
//! failover).
//!
//! A node that does not lead a partition serves a fetch from a read-only
//! view of it: the segments the bucket holds below the commit point etcd
//! has, and nothing past it (records the leader has not committed are
//! the leader's to serve). The view is built from one LIST of the
//! partition and one etcd read, kept for [`FRESH`], and built again
//! sooner when a fetch asks past its end. Which segments are the log
//! follows the bucket's history as an adoption does: an epoch's objects
//! from the next epoch's start on are late uploads and are left out. A
//! committed log is contiguous, so each segment ends where the next one
//! starts, and the last where the commit point is: no footer is read to
//! build a view.
//!
//! A fetch past the commit point is answered UNAVAILABLE naming the
//! leader, never OUT_OF_RANGE (the offset may well exist there).

use super::Engine;
use crate::bucket::{self, ListedSegment, PartitionHistory};
use crate::cluster::registry::PartitionId;
use crate::error::{Error, Result};
use crate::partition::{Backlog, PartitionShared, PartitionView, SegmentRef, Status};
use crate::util::sync::lock;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a view is used before it is built again.
const FRESH: Duration = Duration::from_secs(1);
/// A fetch past a view's end builds it again only if it is older than this.
const RETRY_AFTER: Duration = Duration::from_millis(100);

struct View {
    shared: Arc<PartitionShared>,
    built: Instant,
    /// Where the partition's log starts (retention's mark, or 0): below
    /// the view's start and above this, objects are missing from the
    /// listing, and the leader answers.
    floor: i64,
}

impl View {
    /// The view for a fetch at `offset`, or `not_led`.
    fn serve(&self, offset: i64, not_led: Error) -> Result<Arc<PartitionShared>> {
        let v = self.shared.view();
        let readable = offset <= v.high_watermark
            && (offset >= v.low_watermark || v.low_watermark <= self.floor);
        drop(v);
        match readable {
            true => Ok(Arc::clone(&self.shared)),
            false => Err(not_led),
        }
    }
}

/// The views of partitions this node does not lead.
#[derive(Default)]
pub(super) struct Followers {
    views: Mutex<HashMap<PartitionId, View>>,
}

impl Engine {
    /// A read-only view of `topic/partition`'s committed records for a
    /// fetch at `offset`; `not_led` (the error naming the leader) when the
    /// offset is past them or nothing is committed yet.
    pub(super) fn follower_view(
        &self,
        topic: &str,
        partition: u32,
        offset: i64,
        not_led: Error,
    ) -> Result<Arc<PartitionShared>> {
        let Some(registry) = &self.ctx.cluster else {
            return Err(not_led);
        };
        let t = self.topic(topic)?;
        let id = PartitionId {
            topic: topic.to_string(),
            partition,
        };
        {
            let views = lock(&self.member.followers.views);
            if let Some(v) = views
                .get(&id)
                .filter(|v| v.shared.incarnation == t.row.incarnation)
            {
                let age = v.built.elapsed();
                let end = v.shared.view().high_watermark;
                if age < FRESH && (offset <= end || age < RETRY_AFTER) {
                    return v.serve(offset, not_led);
                }
            }
        }
        let Some(point) = registry
            .committed(&id)
            .map_err(|e| Error::Unavailable(format!("etcd: {e}")))?
        else {
            return Err(not_led);
        };
        let (name, inc) = (&t.row.name, t.row.incarnation);
        let listed = bucket::list_partition(&self.ctx.store, name, inc, partition)?;
        let key = (name.clone(), inc, partition);
        let segments = listed.segments.get(&key).map_or(&[][..], Vec::as_slice);
        let history = listed.history.get(&key).cloned().unwrap_or_default();
        let view = committed_view(segments, &history, point.next_offset);
        let shared = Arc::new(PartitionShared::new(
            name,
            inc,
            partition,
            view,
            Backlog::new(Arc::clone(&self.ctx.backlog_bytes)),
        ));
        let built = View {
            shared,
            built: Instant::now(),
            floor: history.low_watermark().unwrap_or(0),
        };
        let served = built.serve(offset, not_led);
        lock(&self.member.followers.views).insert(id, built);
        served
    }
}

/// The log below `commit` as the bucket holds it: the segments of each
/// epoch below the next epoch's start, from the last back to the first
/// that continues the chain (or the retention low watermark).
fn committed_view(
    listed: &[ListedSegment],
    history: &PartitionHistory,
    commit: i64,
) -> PartitionView {
    let mut candidates: Vec<&ListedSegment> = listed
        .iter()
        .filter(|s| s.base_offset < commit)
        .filter(|s| {
            history
                .end_of_epoch(s.epoch)
                .is_none_or(|end| s.base_offset < end)
        })
        .collect();
    candidates.sort_by_key(|s| (s.base_offset, std::cmp::Reverse(s.epoch)));
    candidates.dedup_by_key(|s| s.base_offset);
    let low = history.low_watermark().unwrap_or(0);
    let mut segments = VecDeque::new();
    let mut end = commit;
    for s in candidates.iter().rev() {
        segments.push_front(SegmentRef {
            base_offset: s.base_offset,
            last_offset: end - 1,
            key: Arc::from(s.key.as_str()),
            size_bytes: s.size,
            // Not known without the footer; a view serves fetches only.
            max_timestamp_ms: i64::MAX,
        });
        end = s.base_offset;
        if end <= low {
            break;
        }
    }
    let mut view = PartitionView::empty(Status::Open);
    view.low_watermark = low.max(end).min(commit);
    view.committed_next = commit;
    view.high_watermark = commit;
    view.segments = segments;
    view
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bucket::EpochStart;

    fn seg(base: i64, epoch: u64) -> ListedSegment {
        ListedSegment::for_test(base, epoch, 100)
    }

    fn start(epoch: u64, start: i64) -> EpochStart {
        EpochStart {
            epoch,
            start,
            key: format!("{start}-{epoch}.epoch"),
        }
    }

    fn ranges(v: &PartitionView) -> Vec<(i64, i64, String)> {
        v.segments
            .iter()
            .map(|s| (s.base_offset, s.last_offset, s.key.to_string()))
            .collect()
    }

    #[test]
    fn late_uploads_and_uncommitted_segments_are_left_out() {
        // Epoch 5 wrote 0..=9 and 10..=19, and a late 20.. after epoch 9
        // started at 20; epoch 9 wrote 20..=29, committed, and 30..
        // uploaded but not committed yet.
        let listed = [seg(0, 5), seg(10, 5), seg(20, 5), seg(20, 9), seg(30, 9)];
        let history = PartitionHistory {
            starts: vec![start(5, 0), start(9, 20)],
            lows: vec![],
        };
        let v = committed_view(&listed, &history, 30);
        assert_eq!(
            ranges(&v),
            [
                (0, 9, "0-5.seg".to_string()),
                (10, 19, "10-5.seg".to_string()),
                (20, 29, "20-9.seg".to_string())
            ]
        );
        assert_eq!((v.low_watermark, v.high_watermark), (0, 30));
    }

    #[test]
    fn retention_s_low_watermark_bounds_the_view() {
        let listed = [seg(10, 1), seg(20, 1)];
        let history = PartitionHistory {
            starts: vec![],
            lows: vec![(15, "15-1.low".into())],
        };
        let v = committed_view(&listed, &history, 25);
        assert_eq!(ranges(&v).len(), 2);
        assert_eq!(v.low_watermark, 15);
        // Nothing left: the view starts and ends at the commit point.
        let v = committed_view(&[], &history, 25);
        assert!(v.segments.is_empty());
        assert_eq!((v.low_watermark, v.high_watermark), (25, 25));
    }
}
