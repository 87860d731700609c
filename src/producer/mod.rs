//! Idempotent producers: what a partition remembers of each producer so
//! that a retried batch is answered with its original offsets instead of
//! being written twice, and so that a fenced epoch or a sequence gap is
//! refused. Pure data; the writer thread owns one [`ProducerTable`] per
//! partition, the WAL carries each batch's [`ProducerBatch`], and
//! [`snapshot`] is the table's byte format (committed with every segment).
//!
//! The rules, per (producer, partition), as in Kafka:
//! - sequence numbers count records from 0; a batch's `first_sequence` is
//!   the previous batch's plus its record count;
//! - the last [`KEPT_BATCHES`] batches are remembered with their offsets:
//!   one of them sent again is a duplicate, not written again;
//! - an older epoch than the partition has seen is fenced;
//! - a producer new to a partition, or a newer epoch, starts at sequence 0.

mod registry;
pub mod snapshot;

pub(crate) use registry::{Registry, RegistryError};

use std::collections::{BTreeMap, VecDeque};
use std::fmt;

/// Batches remembered per (producer, partition).
pub const KEPT_BATCHES: usize = 5;

/// What an idempotent produce request says about its batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProducerBatch {
    pub producer_id: u64,
    pub epoch: u32,
    pub first_sequence: i64,
}

/// A batch a partition wrote: its sequence range and where it landed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WrittenBatch {
    pub first_sequence: i64,
    pub count: u32,
    pub base_offset: i64,
}

impl WrittenBatch {
    fn next_sequence(&self) -> i64 {
        self.first_sequence + i64::from(self.count)
    }
}

/// One producer's state in one partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProducerEntry {
    pub epoch: u32,
    /// When it last wrote here (ms since the epoch, server clock), for
    /// expiry.
    pub last_write_ms: i64,
    /// The newest last, at most [`KEPT_BATCHES`].
    pub batches: VecDeque<WrittenBatch>,
}

/// What to do with an idempotent batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Write it.
    Append,
    /// It was written: answer with these offsets, write nothing.
    Duplicate(WrittenBatch),
}

/// Why an idempotent batch is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SequenceError {
    /// A newer epoch of this producer wrote here.
    Fenced { epoch: u32, current: u32 },
    /// The sequence skips ahead of the next expected one.
    Gap { expected: i64, got: i64 },
    /// Older than the batches kept: it was written (every earlier sequence
    /// was), but its offsets are forgotten.
    TooOld { oldest_kept: i64, got: i64 },
    /// It overlaps a kept batch without being equal to it.
    Mismatch { got: i64, count: u32 },
}

impl fmt::Display for SequenceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SequenceError::Fenced { epoch, current } => write!(
                f,
                "producer epoch {epoch} is fenced: epoch {current} of this producer has written since (another instance called InitProducer with its name)"
            ),
            SequenceError::Gap { expected: 0, got } => write!(
                f,
                "sequence gap: the next sequence number expected is 0, the batch starts at {got}; this partition has no batch of this producer epoch: send the batch at sequence 0 first (if the producer was idle longer than the producer expiry, call InitProducer again)"
            ),
            SequenceError::Gap { expected, got } => write!(
                f,
                "sequence gap: the next sequence number expected is {expected}, the batch starts at {got}; a batch before it was not written, send it first"
            ),
            SequenceError::TooOld { oldest_kept, got } => write!(
                f,
                "the batch at sequence {got} was written before, but only the last {KEPT_BATCHES} batches (from sequence {oldest_kept}) keep their offsets"
            ),
            SequenceError::Mismatch { got, count } => write!(
                f,
                "the batch at sequence {got} with {count} records overlaps a batch written before without being equal to it: a retry must resend the same records"
            ),
        }
    }
}

/// Every producer's state in one partition, by producer id.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProducerTable {
    entries: BTreeMap<u64, ProducerEntry>,
}

impl ProducerTable {
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// (producer id, epoch, last write) of every producer here.
    pub fn producers(&self) -> impl Iterator<Item = (u64, u32, i64)> + '_ {
        self.entries
            .iter()
            .map(|(id, e)| (*id, e.epoch, e.last_write_ms))
    }

    pub fn entry(&self, producer_id: u64) -> Option<&ProducerEntry> {
        self.entries.get(&producer_id)
    }

    /// Puts back a producer's entry as it was (`None`: unknown): takes back
    /// a [`record`] whose batch was not written after all.
    ///
    /// [`record`]: ProducerTable::record
    pub fn restore(&mut self, producer_id: u64, entry: Option<ProducerEntry>) {
        match entry {
            Some(e) => {
                self.entries.insert(producer_id, e);
            }
            None => {
                self.entries.remove(&producer_id);
            }
        }
    }

    /// Decides what to do with a batch of `count` records.
    pub fn check(&self, b: &ProducerBatch, count: u32) -> Result<Verdict, SequenceError> {
        // A producer new to this partition, or in a new epoch, starts at
        // sequence 0. Accepting any first sequence would let a batch that
        // overtook an earlier one in flight be written first, and the
        // earlier one then be refused as already written: lost.
        let first = |b: &ProducerBatch| {
            if b.first_sequence == 0 {
                Ok(Verdict::Append)
            } else {
                Err(SequenceError::Gap {
                    expected: 0,
                    got: b.first_sequence,
                })
            }
        };
        let Some(e) = self.entries.get(&b.producer_id) else {
            return first(b);
        };
        if b.epoch < e.epoch {
            return Err(SequenceError::Fenced {
                epoch: b.epoch,
                current: e.epoch,
            });
        }
        let (Some(oldest), Some(newest)) = (e.batches.front(), e.batches.back()) else {
            return first(b);
        };
        if b.epoch > e.epoch {
            return first(b);
        }
        let expected = newest.next_sequence();
        if b.first_sequence == expected {
            return Ok(Verdict::Append);
        }
        if b.first_sequence > expected {
            return Err(SequenceError::Gap {
                expected,
                got: b.first_sequence,
            });
        }
        if b.first_sequence < oldest.first_sequence {
            return Err(SequenceError::TooOld {
                oldest_kept: oldest.first_sequence,
                got: b.first_sequence,
            });
        }
        match e
            .batches
            .iter()
            .find(|w| w.first_sequence == b.first_sequence && w.count == count)
        {
            Some(w) => Ok(Verdict::Duplicate(*w)),
            None => Err(SequenceError::Mismatch {
                got: b.first_sequence,
                count,
            }),
        }
    }

    /// Remembers a batch written at `base_offset` (after [`check`] said
    /// `Append`). A newer epoch forgets the older epoch's batches.
    ///
    /// [`check`]: ProducerTable::check
    pub fn record(&mut self, b: &ProducerBatch, count: u32, base_offset: i64, now_ms: i64) {
        let e = self
            .entries
            .entry(b.producer_id)
            .or_insert_with(|| ProducerEntry {
                epoch: b.epoch,
                last_write_ms: now_ms,
                batches: VecDeque::with_capacity(KEPT_BATCHES),
            });
        if b.epoch != e.epoch {
            e.epoch = b.epoch;
            e.batches.clear();
        }
        e.last_write_ms = e.last_write_ms.max(now_ms);
        if e.batches.len() == KEPT_BATCHES {
            e.batches.pop_front();
        }
        e.batches.push_back(WrittenBatch {
            first_sequence: b.first_sequence,
            count,
            base_offset,
        });
    }

    /// Forgets producers that last wrote before `cutoff_ms`; returns how
    /// many.
    pub fn expire(&mut self, cutoff_ms: i64) -> usize {
        let before = self.entries.len();
        self.entries.retain(|_, e| e.last_write_ms >= cutoff_ms);
        before - self.entries.len()
    }

    pub(crate) fn insert(&mut self, producer_id: u64, entry: ProducerEntry) {
        self.entries.insert(producer_id, entry);
    }
}

#[cfg(test)]
mod tests;
