//! A partition's history as the bucket records it, beside its segments:
//!
//! - **epoch starts** (`{start:020}-{epoch}.epoch`): a node that takes the
//!   prefix from another writes, before it accepts a write, where its epoch
//!   starts in each partition. Objects of an earlier epoch from that offset
//!   on were written by a node that had been fenced (a late upload) and are
//!   never part of the log (Kafka's leader epochs, KIP-101, are the model);
//! - **low watermarks** (`{low:020}-{epoch}.low`): retention writes one
//!   before it deletes anything, so a rebuild knows that the offsets below
//!   were removed on purpose, and continues at `low` even when no segment
//!   is left.
//!
//! Both are append-only: new marks are new keys; everything a rebuild needs
//! is in the key (the body says the same for people, docs/FORMAT.md).

/// One epoch-start mark as listed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct EpochStart {
    pub epoch: u64,
    pub start: i64,
    pub key: String,
}

/// The marks listed for one partition.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct PartitionHistory {
    pub starts: Vec<EpochStart>,
    /// (low watermark, key).
    pub lows: Vec<(i64, String)>,
}

impl PartitionHistory {
    /// The first offset that objects of `epoch` may not hold: where the
    /// earliest-starting later epoch starts. `None`: no later epoch wrote
    /// a start, so every offset may be the epoch's.
    pub fn end_of_epoch(&self, epoch: u64) -> Option<i64> {
        self.starts
            .iter()
            .filter(|s| s.epoch > epoch)
            .map(|s| s.start)
            .min()
    }

    /// The latest start any epoch recorded: the bucket held every offset
    /// below it then, so a history that ends before it has lost objects.
    pub fn latest_start(&self) -> Option<&EpochStart> {
        self.starts.iter().max_by_key(|s| s.start)
    }

    /// Everything below this was removed by retention.
    pub fn low_watermark(&self) -> Option<i64> {
        self.lows.iter().map(|(low, _)| *low).max()
    }

    /// Low-watermark marks that a higher one supersedes.
    pub fn stale_lows(&self) -> Vec<String> {
        let Some(max) = self.low_watermark() else {
            return Vec::new();
        };
        let newest = self
            .lows
            .iter()
            .find(|(low, _)| *low == max)
            .map(|(_, k)| k);
        self.lows
            .iter()
            .filter(|(_, k)| Some(k) != newest)
            .map(|(_, k)| k.clone())
            .collect()
    }
}

/// The body of an epoch-start mark (informational: the key says it all).
pub(crate) fn encode_epoch_start(epoch: u64, start: i64, node_id: &str, at_ms: i64) -> Vec<u8> {
    format!(
        "streamhouse-epoch-start 1\nepoch={epoch}\nstart_offset={start}\nnode_id={node_id}\nwritten_at_ms={at_ms}\n"
    )
    .into_bytes()
}

/// The body of a low-watermark mark (informational: the key says it all).
pub(crate) fn encode_low_watermark(low: i64, epoch: u64, at_ms: i64) -> Vec<u8> {
    format!(
        "streamhouse-low-watermark 1\nlow_watermark={low}\nepoch={epoch}\nwritten_at_ms={at_ms}\n"
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start(epoch: u64, start: i64) -> EpochStart {
        EpochStart {
            epoch,
            start,
            key: format!("{start}-{epoch}.epoch"),
        }
    }

    #[test]
    fn an_epoch_ends_where_the_earliest_later_epoch_starts() {
        let h = PartitionHistory {
            starts: vec![start(2, 100), start(5, 300), start(4, 250)],
            lows: vec![],
        };
        assert_eq!(h.end_of_epoch(1), Some(100));
        assert_eq!(h.end_of_epoch(2), Some(250));
        assert_eq!(h.end_of_epoch(3), Some(250));
        assert_eq!(h.end_of_epoch(4), Some(300));
        assert_eq!(h.end_of_epoch(5), None, "the newest epoch has no end");
        assert_eq!(PartitionHistory::default().end_of_epoch(0), None);
    }

    #[test]
    fn the_highest_low_watermark_wins_and_the_others_are_stale() {
        let h = PartitionHistory {
            starts: vec![],
            lows: vec![(10, "a".into()), (40, "b".into()), (20, "c".into())],
        };
        assert_eq!(h.low_watermark(), Some(40));
        assert_eq!(h.stale_lows(), vec!["a".to_string(), "c".to_string()]);
        assert_eq!(PartitionHistory::default().low_watermark(), None);
        assert!(PartitionHistory::default().stale_lows().is_empty());
    }

    #[test]
    fn bodies_name_what_their_keys_say() {
        let body = String::from_utf8(encode_epoch_start(7, 250, "n1", 5)).unwrap();
        assert_eq!(
            body,
            "streamhouse-epoch-start 1\nepoch=7\nstart_offset=250\nnode_id=n1\nwritten_at_ms=5\n"
        );
        let body = String::from_utf8(encode_low_watermark(40, 7, 5)).unwrap();
        assert_eq!(
            body,
            "streamhouse-low-watermark 1\nlow_watermark=40\nepoch=7\nwritten_at_ms=5\n"
        );
    }
}
