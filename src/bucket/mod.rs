//! What the bucket says about itself: the objects that make it possible to
//! rebuild a node's metadata from the bucket alone. Each is small text, one
//! `key=value` per line after a first line naming the kind and version:
//!
//! - a **topic manifest** (`topics/{t}/{inc}/manifest`), written before the
//!   topic exists anywhere else;
//! - a **tombstone** (`topics/{t}/{inc}/deleted`), written before any object
//!   of a deleted topic is removed, and kept afterwards as the evidence;
//! - the **group offsets checkpoint** (`groups/offsets`);
//! - the **owner record** (`owner`): one node per prefix ([`owner`]).
//!
//! Segments describe themselves (key + footer); beside a segment, the
//! partition's producer table as of its end (`{segment}.producers`, see
//! `producer::snapshot`). [`list_topics`] sorts a listing of `topics/`
//! into manifests, tombstones and segments. Producer ids and names live
//! under `producers/` (see `engine::producers`).

mod groups;
mod history;
mod manifest;
mod owner;

pub(crate) use groups::{
    decode_group_offsets, encode_group_offsets, CheckpointStamp, GroupCheckpointObject,
};
pub(crate) use history::{encode_epoch_start, encode_low_watermark, EpochStart, PartitionHistory};
pub(crate) use manifest::{decode_manifest, encode_manifest, encode_tombstone};
pub(crate) use owner::{OwnerRecord, Ownership, OwnershipError};

use crate::layout::{self, PartitionFile, TopicObject};
use crate::object_store::{ObjectStore, StoreResult};
use std::collections::{BTreeMap, BTreeSet};

/// A topic incarnation: (name, incarnation).
pub(crate) type TopicId = (String, i64);

/// One segment object as listed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ListedSegment {
    pub base_offset: i64,
    /// The owner epoch of the node that wrote it.
    pub epoch: u64,
    pub key: String,
    pub size: u64,
    /// The producer table put beside it, if listed.
    pub producer_state: Option<String>,
}

impl ListedSegment {
    /// The segment's key and its producer table's, if listed.
    pub fn keys(&self) -> impl Iterator<Item = String> + '_ {
        std::iter::once(self.key.clone()).chain(self.producer_state.clone())
    }

    /// A listed segment `{base}-{epoch}.seg` of `size` bytes, for tests.
    #[cfg(test)]
    pub fn for_test(base: i64, epoch: u64, size: u64) -> ListedSegment {
        ListedSegment {
            base_offset: base,
            epoch,
            key: format!("{base}-{epoch}.seg"),
            size,
            producer_state: None,
        }
    }
}

/// Everything under `topics/`, sorted by kind.
#[derive(Debug, Default)]
pub(crate) struct BucketTopics {
    pub manifests: BTreeSet<TopicId>,
    pub tombstones: BTreeSet<TopicId>,
    /// Per (topic, incarnation, partition), in offset order.
    pub segments: BTreeMap<(String, i64, u32), Vec<ListedSegment>>,
    /// Producer tables whose segment is not there (an upload cut short
    /// between the two PUTs), per (topic, incarnation, partition): (base
    /// offset, key).
    pub orphan_states: BTreeMap<(String, i64, u32), Vec<(i64, String)>>,
    /// Epoch starts and low watermarks, per (topic, incarnation, partition).
    pub history: BTreeMap<(String, i64, u32), PartitionHistory>,
    /// The highest incarnation seen, live or deleted (0 if none).
    pub max_incarnation: i64,
}

impl BucketTopics {
    /// Incarnations with a manifest and no tombstone.
    pub fn live(&self) -> impl Iterator<Item = &TopicId> {
        self.manifests
            .iter()
            .filter(|id| !self.tombstones.contains(*id))
    }

    /// Every object key of one incarnation (segments and manifest), never
    /// the tombstone.
    pub fn segments_of(&self, id: &TopicId) -> Vec<&ListedSegment> {
        self.segments
            .range((id.0.clone(), id.1, 0)..=(id.0.clone(), id.1, u32::MAX))
            .flat_map(|(_, v)| v.iter())
            .collect()
    }
}

/// Lists `topics/` once (a paged LIST on S3) and sorts what is there.
/// Objects that are not ours are left out.
pub(crate) fn list_topics(store: &dyn ObjectStore) -> StoreResult<BucketTopics> {
    list_under(store, layout::TOPICS_PREFIX)
}

/// One partition's objects (cluster mode: a node that comes to lead it).
pub(crate) fn list_partition(
    store: &dyn ObjectStore,
    topic: &str,
    incarnation: i64,
    partition: u32,
) -> StoreResult<BucketTopics> {
    let prefix = format!(
        "{}{partition}/",
        layout::incarnation_prefix(topic, incarnation)
    );
    list_under(store, &prefix)
}

fn list_under(store: &dyn ObjectStore, prefix: &str) -> StoreResult<BucketTopics> {
    let mut out = BucketTopics::default();
    let mut states = BTreeMap::new();
    for obj in store.list(prefix)? {
        let Some(parsed) = layout::parse_topic_key(&obj.key) else {
            continue;
        };
        match parsed {
            TopicObject::Manifest { topic, incarnation } => {
                out.max_incarnation = out.max_incarnation.max(incarnation);
                out.manifests.insert((topic.to_string(), incarnation));
            }
            TopicObject::Tombstone { topic, incarnation } => {
                out.max_incarnation = out.max_incarnation.max(incarnation);
                out.tombstones.insert((topic.to_string(), incarnation));
            }
            TopicObject::Partition {
                topic,
                incarnation,
                partition,
                offset,
                epoch,
                file,
            } => {
                out.max_incarnation = out.max_incarnation.max(incarnation);
                let id = (topic.to_string(), incarnation, partition);
                let key = obj.key.clone();
                match file {
                    PartitionFile::ProducerState => {
                        states.insert(key, (id, offset));
                    }
                    PartitionFile::Records => {
                        out.segments.entry(id).or_default().push(ListedSegment {
                            base_offset: offset,
                            epoch,
                            key,
                            size: obj.size,
                            producer_state: None,
                        });
                    }
                    PartitionFile::EpochStart => {
                        let h = out.history.entry(id).or_default();
                        h.starts.push(EpochStart {
                            epoch,
                            start: offset,
                            key,
                        });
                    }
                    PartitionFile::LowWatermark => {
                        out.history.entry(id).or_default().lows.push((offset, key));
                    }
                }
            }
        }
    }
    // A producer table belongs to the segment with its stem; one without
    // its segment (an upload cut short) is an orphan.
    for s in out.segments.values_mut().flatten() {
        let key = layout::producer_state_key(&s.key);
        if states.remove(&key).is_some() {
            s.producer_state = Some(key);
        }
    }
    for (key, (id, base)) in states {
        out.orphan_states.entry(id).or_default().push((base, key));
    }
    // Offset order; at one base offset the newest owner's first.
    for segs in out.segments.values_mut() {
        segs.sort_by_key(|s| (s.base_offset, std::cmp::Reverse(s.epoch)));
    }
    Ok(out)
}

/// The fields of a small text object: a first line `{kind} {version}`, then
/// `key=value` lines. Returns the fields, or what is wrong.
fn parse_fields<'a>(
    text: &'a str,
    kind: &str,
    version: u32,
) -> Result<BTreeMap<&'a str, &'a str>, String> {
    let mut lines = text.lines();
    let first = lines.next().unwrap_or_default();
    let expected = format!("{kind} {version}");
    if first != expected {
        return Err(format!("first line is {first:?}, expected {expected:?}"));
    }
    let mut fields = BTreeMap::new();
    for line in lines.filter(|l| !l.is_empty()) {
        let (k, v) = line
            .split_once('=')
            .ok_or_else(|| format!("line {line:?} is not key=value"))?;
        if fields.insert(k, v).is_some() {
            return Err(format!("{k} appears twice"));
        }
    }
    Ok(fields)
}

fn field<T: std::str::FromStr>(fields: &BTreeMap<&str, &str>, name: &str) -> Result<T, String> {
    let raw = fields
        .get(name)
        .ok_or_else(|| format!("{name} is missing"))?;
    raw.parse()
        .map_err(|_| format!("{name}={raw:?} does not parse"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object_store::MemoryStore;

    #[test]
    fn a_listing_is_sorted_into_manifests_tombstones_and_segments() {
        let store = MemoryStore::new();
        for key in [
            layout::topic_manifest_key("a", 1),
            layout::segment_key("a", 1, 0, 100, 1),
            layout::segment_key("a", 1, 0, 0, 1),
            layout::segment_key("a", 1, 0, 0, 2),
            layout::segment_key("a", 1, 1, 0, 1),
            layout::topic_manifest_key("b", 2),
            layout::topic_tombstone_key("b", 2),
            layout::segment_key("b", 2, 0, 0, 1),
            layout::topic_tombstone_key("c", 7),
            layout::epoch_start_key("a", 1, 0, 100, 2),
            layout::low_watermark_key("a", 1, 0, 0, 1),
            "topics/not/ours".to_string(),
        ] {
            store.put(&key, b"x").unwrap();
        }
        let b = list_topics(&store).unwrap();
        assert_eq!(b.live().collect::<Vec<_>>(), vec![&("a".to_string(), 1)]);
        assert_eq!(b.max_incarnation, 7);
        let p0 = &b.segments[&("a".to_string(), 1, 0)];
        assert_eq!(
            p0.iter()
                .map(|s| (s.base_offset, s.epoch))
                .collect::<Vec<_>>(),
            vec![(0, 2), (0, 1), (100, 1)],
            "offset order, the newest owner first"
        );
        assert_eq!(b.segments_of(&("a".to_string(), 1)).len(), 4);
        assert_eq!(b.segments_of(&("b".to_string(), 2)).len(), 1);
        let h = &b.history[&("a".to_string(), 1, 0)];
        assert_eq!(h.end_of_epoch(1), Some(100));
        assert_eq!(h.low_watermark(), Some(0));
    }
}
