//! One fetch: records from the in-memory tail or from sealed segments,
//! within the request's limits; at the high watermark, parked until the
//! next append or the deadline.

use super::timer::TimerKey;
use super::{FetchResult, FetchTask, PoolInner, DEFAULT_MAX_BYTES, DEFAULT_MAX_RECORDS};
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::partition::{PartitionShared, SegmentRef, Waiter};
use crate::record::Record;
use crate::segment::RecordRef;
use crate::util::sync::lock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// A fetch parked at the high watermark.
///
/// Lock order: a parked fetch's own locks (`task`, `timer_key`) are never
/// held while the pool's `timer` lock is taken, and the pool's `timer` lock
/// is never held while a parked fetch's lock is taken. The timer fires a
/// callback on its own thread as soon as it is registered when the deadline
/// has passed already (readers backed up), so [`PoolInner::park`] and
/// [`Parked::fire`] run at the same time; each takes one lock at a time.
struct Parked {
    task: Mutex<Option<FetchTask>>,
    pool: std::sync::Weak<PoolInner>,
    done: AtomicBool,
    /// Its deadline's timer entry, cancelled when an append answers first.
    timer_key: Mutex<Option<TimerKey>>,
}

impl Parked {
    /// Hands the fetch back to the pool: `by_append` when an append woke
    /// it, not its deadline.
    fn fire(&self, by_append: bool) {
        let Some(mut task) = lock(&self.task).take() else {
            return;
        };
        task.woken = by_append.then(Instant::now);
        self.done.store(true, Ordering::SeqCst);
        match self.pool.upgrade() {
            Some(pool) => {
                // The key's lock is released before the pool's timer lock
                // is taken (see the lock order above).
                let key = lock(&self.timer_key).take();
                if let Some(key) = key {
                    if let Some(timer) = lock(&pool.timer).as_ref() {
                        timer.cancel(key);
                    }
                }
                pool.submit_fetch(task);
            }
            None => {
                let _ = task.reply.send(Err(Error::shutting_down()));
            }
        }
    }
}

impl Waiter for Parked {
    fn wake(&self) {
        self.fire(true);
    }
    fn is_done(&self) -> bool {
        self.done.load(Ordering::SeqCst)
    }
}

/// Accumulates a fetch's records within its limits.
struct Collector {
    records: Vec<Record>,
    bytes: usize,
    max_records: usize,
    max_bytes: usize,
    next: i64,
    /// A record did not fit in what is left of `max_bytes`: the reply is
    /// complete (without this, a segment read that stops short of the byte
    /// limit would be tried again forever).
    no_room: bool,
}

impl Collector {
    fn full(&self) -> bool {
        self.no_room || self.records.len() >= self.max_records || self.bytes >= self.max_bytes
    }

    /// Counts a record of `len` bytes at `offset` unless it would pass
    /// `max_bytes` (the first always fits).
    fn admit(&mut self, offset: i64, len: usize) -> bool {
        if !self.records.is_empty() && self.bytes + len > self.max_bytes {
            self.no_room = true;
            return false;
        }
        self.bytes += len;
        self.next = offset + 1;
        true
    }

    /// Adds a record from a segment block, if [`Collector::admit`] lets it.
    fn push(&mut self, r: RecordRef<'_>) -> bool {
        let ok = self.admit(r.offset, r.accounted_len());
        if ok {
            self.records.push(r.to_record());
        }
        ok
    }

    /// Adds a record from the tail, if [`Collector::admit`] lets it.
    fn push_owned(&mut self, r: &Record) -> bool {
        let ok = self.admit(r.offset, r.accounted_len());
        if ok {
            self.records.push(r.clone());
        }
        ok
    }

    fn finish(&mut self, high: i64, low: i64) -> FetchResult {
        FetchResult {
            records: std::mem::take(&mut self.records),
            next_offset: self.next,
            high_watermark: high,
            low_watermark: low,
        }
    }
}

/// What one look at the partition decided.
enum Step {
    Done(Result<FetchResult>),
    /// Nothing to return yet: wait for the append after this count.
    Park(u64),
    Segment {
        seg: SegmentRef,
        next: Option<SegmentRef>,
    },
    Again,
}

impl PoolInner {
    pub(super) fn fetch(self: &Arc<Self>, task: FetchTask) {
        // 0 asks for the defaults; anything larger than the server's limits
        // is clamped to them (the reply says where to go on).
        let limit = |n: usize, default: usize, max: usize| match n {
            0 => default,
            n => n.min(max),
        };
        let config = &self.ctx.config;
        let mut c = Collector {
            records: Vec::new(),
            bytes: 0,
            max_records: limit(
                task.req.max_records,
                DEFAULT_MAX_RECORDS,
                config.max_fetch_records,
            ),
            max_bytes: limit(
                task.req.max_bytes,
                DEFAULT_MAX_BYTES,
                config.max_fetch_bytes,
            ),
            no_room: false,
            next: task.req.offset,
        };
        let result = loop {
            match self.step(&task, &mut c) {
                Step::Done(r) => break r,
                Step::Park(seen) => return self.park(task, seen),
                Step::Again => continue,
                Step::Segment { seg, next } => {
                    let read = self.read_segment(&task.partition, &seg, next.as_ref(), &mut c);
                    // What was read before a damaged segment is answered; the
                    // client's next fetch starts at the damage and gets the
                    // error.
                    match read {
                        Err(e) if c.records.is_empty() => break Err(e),
                        Ok(()) if !c.full() => continue,
                        _ => {
                            let view = task.partition.view();
                            let high = view.readable_end(self.ctx.owner.is_fenced());
                            break Ok(c.finish(high, view.low_watermark));
                        }
                    }
                }
            }
        };
        if let Ok(r) = &result {
            Metrics::add(&self.ctx.metrics.records_out, r.records.len() as u64);
            Metrics::add(&self.ctx.metrics.bytes_out, c.bytes as u64);
        }
        if let Some(woken) = task.woken {
            self.ctx.stages.fetch_wake.observe(woken.elapsed());
        }
        let _ = task.reply.send(result);
    }

    /// Parks a fetch until the partition's next append or its deadline.
    fn park(self: &Arc<Self>, task: FetchTask, seen_appends: u64) {
        let deadline = task.deadline;
        let partition = Arc::clone(&task.partition);
        let parked = Arc::new(Parked {
            task: Mutex::new(Some(task)),
            pool: Arc::downgrade(self),
            done: AtomicBool::new(false),
            timer_key: Mutex::new(None),
        });
        // Registered under the pool's timer lock, the key stored after it is
        // released (see the lock order on `Parked`). A fire in between finds
        // no key to cancel: the entry has fired, or fires later and finds
        // the task gone.
        let key = {
            let timer = lock(&self.timer);
            timer.as_ref().map(|timer| {
                let p = Arc::clone(&parked);
                timer.at(deadline, move || p.fire(false))
            })
        };
        let registered = key.is_some();
        if let Some(key) = key {
            if !parked.done.load(Ordering::SeqCst) {
                *lock(&parked.timer_key) = Some(key);
            }
        }
        if !registered {
            // Shutting down: no timer to end the wait.
            if let Some(task) = lock(&parked.task).take() {
                let _ = task.reply.send(Err(Error::shutting_down()));
            }
            return;
        }
        // After the timer lock is released: parking may wake it at once.
        partition.park(parked, seen_appends);
    }

    /// Looks at the partition once, under its read lock: serve from the
    /// tail, park, answer an error, or name the next segment to read.
    fn step(&self, t: &FetchTask, c: &mut Collector) -> Step {
        let p = &t.partition;
        if let Some(e) = p.read_refusal() {
            return Step::Done(Err(e));
        }
        let view = p.view();
        let high = view.readable_end(self.ctx.owner.is_fenced());
        let offset = c.next;
        if !c.records.is_empty() && offset < view.low_watermark {
            // Retention moved past us mid-response: end it here rather than
            // skip offsets inside one answer.
            return Step::Done(Ok(c.finish(high, view.low_watermark)));
        }
        if c.records.is_empty() && (offset < view.low_watermark || offset > high) {
            return Step::Done(Err(Error::OutOfRange(format!(
                "offset {offset} is out of range for partition {}: valid offsets are {}..={} (low..high watermark)",
                p.name(),
                view.low_watermark,
                high
            ))));
        }
        if offset >= high {
            if c.records.is_empty() && Instant::now() < t.deadline {
                return Step::Park(p.appends());
            }
            return Step::Done(Ok(c.finish(high, view.low_watermark)));
        }
        if offset >= view.committed_next {
            // The unflushed tail: readable as soon as it is acknowledged.
            let mut i = view.tail_position(offset);
            'batches: while let Some(batch) = view.tail.get(i) {
                let start = batch.records.partition_point(|r| r.offset < c.next);
                for r in &batch.records[start..] {
                    if c.full() || !c.push_owned(r) {
                        break 'batches;
                    }
                }
                i += 1;
            }
            return Step::Done(Ok(c.finish(high, view.low_watermark)));
        }
        let i = view.segments.partition_point(|s| s.last_offset < offset);
        match view.segments.get(i) {
            Some(seg) => {
                // In a gap between segments the next one starts later.
                c.next = c.next.max(seg.base_offset);
                Step::Segment {
                    seg: seg.clone(),
                    next: view.segments.get(i + 1).cloned(),
                }
            }
            None => {
                c.next = view.committed_next;
                Step::Again
            }
        }
    }

    fn read_segment(
        &self,
        partition: &PartitionShared,
        seg: &SegmentRef,
        next_seg: Option<&SegmentRef>,
        c: &mut Collector,
    ) -> Result<()> {
        let footer = self
            .footer(seg)
            .map_err(|e| self.store_error(partition, seg, e))?;
        let blocks = footer.entries().len();
        let mut i = footer.block_for_offset(c.next);
        while let Some(bi) = i {
            let block = self
                .block(seg, &footer, bi)
                .map_err(|e| self.store_error(partition, seg, e))?;
            // Sequential readers will want what comes next.
            if bi + 1 < blocks {
                self.queue_prefetch(seg, (bi + 1) as u32);
            } else if let Some(n) = next_seg {
                self.queue_prefetch(n, 0);
            }
            let mut pos = block.position_of(c.next);
            while let Some(r) = block.get(pos) {
                if c.full() || !c.push(r) {
                    return Ok(());
                }
                pos += 1;
            }
            c.next = c.next.max(footer.entries()[bi].last_offset + 1);
            if c.full() {
                return Ok(());
            }
            i = (bi + 1 < blocks).then_some(bi + 1);
        }
        c.next = c.next.max(seg.last_offset + 1);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    //! The lock order between parking a fetch and firing it (the timer
    //! thread fires at once when the deadline has passed, while the reader
    //! is still parking): neither waits for a lock while holding the other
    //! side's.
    use super::*;
    use crate::context::Context;
    use crate::object_store::MemoryStore;
    use crate::partition::{Backlog, PartitionView, Status};
    use crate::read::{FetchRequest, ReaderPool};
    use std::time::Duration;

    fn pool(dir: &std::path::Path) -> ReaderPool {
        let mut config = crate::EngineConfig::new(dir);
        config.reader_threads = 1;
        let ctx = Context::open(config, Arc::new(MemoryStore::new())).unwrap();
        ReaderPool::start(ctx).unwrap()
    }

    fn task() -> FetchTask {
        let view = PartitionView::empty(Status::Open);
        let backlog = Backlog::new(Default::default());
        let partition = Arc::new(PartitionShared::new("t", 1, 0, view, backlog));
        let (reply, _) = futures::channel::oneshot::channel();
        FetchTask {
            partition,
            req: FetchRequest {
                offset: 0,
                max_records: 1,
                max_bytes: 0,
                max_wait: Duration::ZERO,
            },
            deadline: Instant::now(),
            reply,
            woken: None,
        }
    }

    #[test]
    fn firing_holds_no_lock_of_the_fetch_while_it_waits_for_the_timer_lock() {
        let dir = tempfile::tempdir().unwrap();
        let pool = pool(dir.path());
        let parked = Arc::new(Parked {
            task: Mutex::new(Some(task())),
            pool: Arc::downgrade(&pool.inner),
            done: AtomicBool::new(false),
            timer_key: Mutex::new(Some((Instant::now(), 1))),
        });
        // A reader parking holds the pool's timer lock...
        let parking = lock(&pool.inner.timer);
        let p = Arc::clone(&parked);
        let firing = std::thread::spawn(move || p.fire(false));
        std::thread::sleep(Duration::from_millis(100));
        // ... and takes the fetch's key lock next: it must be free while
        // the firing thread waits for the timer lock.
        assert!(
            parked.timer_key.try_lock().is_ok(),
            "fire holds the key's lock while it waits for the timer's: parking would deadlock"
        );
        drop(parking);
        firing.join().unwrap();
    }
}
