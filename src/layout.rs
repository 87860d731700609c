//! Every name StreamHouse gives to things on disk and in the bucket, and
//! the parsing of those names. Nothing else builds a path or an object key.
//!
//! ```text
//! {data-dir}/LOCK                                          held by the one process using the dir
//! {data-dir}/meta.sqlite                                   metadata (SQLite)
//! {data-dir}/objects/...                                   the local object store
//! {data-dir}/wal/{topic}/{partition}/{first:020}.wal        one WAL file per segment
//! {data-dir}/wal/{topic}/{partition}/{first:020}.wal.discarded   set aside by a repair
//! {data-dir}/wal/{topic}/{partition}/{first:020}.wal.damaged     a damaged file's bytes, kept
//! bucket, under [{prefix}/]:
//!   topics/{topic}/{incarnation}/manifest                  the topic, written before it exists
//!   topics/{topic}/{incarnation}/deleted                   tombstone: written before any deletion
//!   topics/{topic}/{incarnation}/{partition}/{base:020}-{epoch}.seg   segments
//!   topics/{topic}/{incarnation}/{partition}/{start:020}-{epoch}.epoch epoch `epoch` writes from `start` on
//!   topics/{topic}/{incarnation}/{partition}/{low:020}-{epoch}.low     retention removed every offset below `low`
//!   groups/offsets                                         consumer-group offsets checkpoint
//!   owner                                                  the node that owns the prefix
//! ```
//!
//! A segment key carries the owner epoch of the node that wrote it, so a
//! node fenced by a take-over can never overwrite the new owner's objects
//! (keys written before epochs existed, `{base:020}.seg`, read as epoch 0).
//!
//! Zero-padded offsets make name order offset order. The incarnation is a
//! number metadata hands out once per topic creation, so a topic deleted and
//! created again never reuses the object keys (and cached blocks) of the old
//! one.

use std::path::{Path, PathBuf};

const WAL_SUFFIX: &str = ".wal";
const DISCARDED_SUFFIX: &str = ".wal.discarded";
const DAMAGED_SUFFIX: &str = ".wal.damaged";

/// The file whose lock makes a process the data directory's only user.
pub fn lock_path(data_dir: &Path) -> PathBuf {
    data_dir.join("LOCK")
}

/// The data dir's node id, beside the WAL it names (the metadata file can
/// be lost and rebuilt; the WAL's owner must not change with it).
pub fn node_id_path(data_dir: &Path) -> PathBuf {
    data_dir.join("NODE_ID")
}

pub fn meta_path(data_dir: &Path) -> PathBuf {
    data_dir.join("meta.sqlite")
}

pub fn local_objects_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("objects")
}

/// The folder holding every topic's WAL folder.
pub fn wal_root(data_dir: &Path) -> PathBuf {
    data_dir.join("wal")
}

/// Where a node puts its whole WAL aside when another node owned the
/// prefix after it (`epoch`: that node's; `at_ms`: when); never replayed.
pub fn superseded_wal_root(data_dir: &Path, epoch: u64, at_ms: i64) -> PathBuf {
    data_dir.join(format!("wal.superseded-by-epoch-{epoch}-at-{at_ms}"))
}

pub fn topic_wal_dir(data_dir: &Path, topic: &str) -> PathBuf {
    wal_root(data_dir).join(topic)
}

pub fn partition_wal_dir(data_dir: &Path, topic: &str, partition: u32) -> PathBuf {
    topic_wal_dir(data_dir, topic).join(partition.to_string())
}

/// The WAL file of the segment that starts at `first_offset`.
pub fn wal_file_name(first_offset: i64) -> String {
    format!("{first_offset:020}{WAL_SUFFIX}")
}

/// The first offset a WAL file's name promises; `None` for other files
/// (including discarded ones).
pub fn parse_wal_file_name(name: &str) -> Option<i64> {
    name.strip_suffix(WAL_SUFFIX)?.parse().ok()
}

/// Where a repair sets aside a WAL file after damage, never replayed again.
pub fn discarded_wal_path(wal_file: &Path) -> PathBuf {
    with_suffix(wal_file, DISCARDED_SUFFIX)
}

/// Where a repair keeps the damaged file's bytes.
pub fn damaged_wal_path(wal_file: &Path) -> PathBuf {
    with_suffix(wal_file, DAMAGED_SUFFIX)
}

fn with_suffix(wal_file: &Path, suffix: &str) -> PathBuf {
    let mut name = wal_file.file_name().unwrap_or_default().to_os_string();
    name.push(&suffix[WAL_SUFFIX.len()..]);
    wal_file.with_file_name(name)
}

/// Every object of every topic: manifests, tombstones, segments.
pub const TOPICS_PREFIX: &str = "topics/";

/// Every object of one incarnation of a topic.
pub fn incarnation_prefix(topic: &str, incarnation: i64) -> String {
    format!("topics/{topic}/{incarnation}/")
}

pub fn topic_manifest_key(topic: &str, incarnation: i64) -> String {
    format!("topics/{topic}/{incarnation}/manifest")
}

pub fn topic_tombstone_key(topic: &str, incarnation: i64) -> String {
    format!("topics/{topic}/{incarnation}/deleted")
}

pub fn segment_key(
    topic: &str,
    incarnation: i64,
    partition: u32,
    base_offset: i64,
    epoch: u64,
) -> String {
    format!("topics/{topic}/{incarnation}/{partition}/{base_offset:020}-{epoch}.seg")
}

/// "Epoch `epoch` writes this partition from offset `start` on", written
/// by a node that takes the prefix from another before it accepts a
/// write: objects of earlier epochs from `start` on are not part of the log.
pub fn epoch_start_key(
    topic: &str,
    incarnation: i64,
    partition: u32,
    start: i64,
    epoch: u64,
) -> String {
    format!("topics/{topic}/{incarnation}/{partition}/{start:020}-{epoch}.epoch")
}

/// "Retention removed every offset of this partition below `low`",
/// written before retention deletes anything: a rebuild continues at `low`
/// even when no segment is left.
pub fn low_watermark_key(
    topic: &str,
    incarnation: i64,
    partition: u32,
    low: i64,
    epoch: u64,
) -> String {
    format!("topics/{topic}/{incarnation}/{partition}/{low:020}-{epoch}.low")
}

/// [`segment_key`] with the writing node's id after the epoch
/// (`{base:020}-{epoch}-{writer}.seg`): on a store that ignores conditional
/// writes two nodes could both hold one epoch, and must still never write
/// the same key. Only ASCII letters and digits of `writer` are used.
pub fn segment_key_by(
    topic: &str,
    incarnation: i64,
    partition: u32,
    base_offset: i64,
    epoch: u64,
    writer: &str,
) -> String {
    let writer: String = writer.chars().filter(char::is_ascii_alphanumeric).collect();
    format!("topics/{topic}/{incarnation}/{partition}/{base_offset:020}-{epoch}-{writer}.seg")
}

/// A partition's producer table as of the end of the segment `segment_key`
/// names (`producer::snapshot` bytes), put beside the segment: a node
/// rebuilt from the bucket recovers its producers from the newest one.
pub fn producer_state_key(segment_key: &str) -> String {
    match segment_key.strip_suffix(".seg") {
        Some(stem) => format!("{stem}.producers"),
        None => format!("{segment_key}.producers"),
    }
}

/// The owner record: which node owns the prefix, at which epoch.
pub const OWNER_KEY: &str = "owner";

/// Where a node checks that the store honours conditional writes.
pub fn owner_probe_key(node_id: &str) -> String {
    format!("owner-probe/{node_id}")
}

/// Producer ids handed out, and named producers' ids and epochs.
pub const PRODUCERS_PREFIX: &str = "producers/";

/// Marks that ids below `end` may have been handed out: written before any
/// id of a new block is, so a node rebuilt from the bucket never hands one
/// out again.
pub fn producer_id_block_key(end: u64) -> String {
    format!("producers/ids/{end:020}")
}

/// Hex digits of a name in one key segment: a local store makes each
/// segment a file name, at most 255 bytes on common file systems.
const NAME_SEGMENT_HEX: usize = 200;

/// A named producer's id and current epoch; the name is hex-encoded (names
/// are any UTF-8, keys are not), cut into segments of at most 200 digits
/// (a 255-byte name is 510 digits: three directories on a local store).
pub fn producer_name_key(name: &str, epoch: u32, id: u64) -> String {
    let hex: String = name.bytes().map(|b| format!("{b:02x}")).collect();
    let segments: Vec<&str> = (0..hex.len())
        .step_by(NAME_SEGMENT_HEX)
        .map(|i| &hex[i..(i + NAME_SEGMENT_HEX).min(hex.len())])
        .collect();
    format!("producers/names/{}/{epoch:010}-{id}", segments.join("/"))
}

/// What an object under [`PRODUCERS_PREFIX`] is, from its key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProducerObject {
    IdBlock { end: u64 },
    Name { name: String, epoch: u32, id: u64 },
}

/// Takes a key under [`PRODUCERS_PREFIX`] apart; `None` for keys that are
/// not ours.
pub fn parse_producer_key(key: &str) -> Option<ProducerObject> {
    let rest = key.strip_prefix(PRODUCERS_PREFIX)?;
    // Ids are SQLite integers: 1..=i64::MAX.
    let id_range = 1..=i64::MAX as u64;
    if let Some(end) = rest.strip_prefix("ids/") {
        let end: u64 = end.parse().ok()?;
        return id_range
            .contains(&end)
            .then_some(ProducerObject::IdBlock { end });
    }
    let (hex, file) = rest.strip_prefix("names/")?.rsplit_once('/')?;
    let (epoch, id) = file.split_once('-')?;
    // Every segment but the last is full (one way to write each name).
    let segments: Vec<&str> = hex.split('/').collect();
    let (last, full) = segments.split_last()?;
    if full.iter().any(|s| s.len() != NAME_SEGMENT_HEX) || last.is_empty() {
        return None;
    }
    let hex = segments.concat();
    if hex.len() % 2 != 0 || !hex.is_ascii() {
        return None;
    }
    let bytes = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    let id: u64 = id.parse().ok()?;
    if !id_range.contains(&id) {
        return None;
    }
    Some(ProducerObject::Name {
        name: String::from_utf8(bytes).ok()?,
        epoch: epoch.parse().ok()?,
        id,
    })
}

/// The consumer-group offsets checkpoint.
pub const GROUP_OFFSETS_KEY: &str = "groups/offsets";
/// Group offsets changed since the base at [`GROUP_OFFSETS_KEY`].
pub const GROUP_OFFSETS_DELTA_KEY: &str = "groups/offsets-delta";

/// What an object under [`TOPICS_PREFIX`] is, from its key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TopicObject<'a> {
    Manifest {
        topic: &'a str,
        incarnation: i64,
    },
    Tombstone {
        topic: &'a str,
        incarnation: i64,
    },
    /// One of a partition's objects: a segment, the producer table put
    /// beside it (same stem), or a mark of the partition's history
    /// (`offset` is the segment's base, the epoch's start, the low
    /// watermark).
    Partition {
        topic: &'a str,
        incarnation: i64,
        partition: u32,
        offset: i64,
        epoch: u64,
        file: PartitionFile,
    },
}

/// Which kind of partition object a key names, from its suffix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PartitionFile {
    /// `.seg`: the records.
    Records,
    /// `.producers`: the partition's producer table as of its end.
    ProducerState,
    /// `.epoch`: where an epoch's history starts.
    EpochStart,
    /// `.low`: where retention left the partition's low watermark.
    LowWatermark,
}

const PARTITION_SUFFIXES: [(&str, PartitionFile); 4] = [
    (".seg", PartitionFile::Records),
    (".producers", PartitionFile::ProducerState),
    (".epoch", PartitionFile::EpochStart),
    (".low", PartitionFile::LowWatermark),
];

/// Takes a key under [`TOPICS_PREFIX`] apart; `None` for keys that are not
/// ours (they are left alone).
pub fn parse_topic_key(key: &str) -> Option<TopicObject<'_>> {
    let mut parts = key.strip_prefix(TOPICS_PREFIX)?.split('/');
    let topic = parts.next()?;
    let incarnation: i64 = parts.next()?.parse().ok()?;
    let third = parts.next()?;
    let object = match (third, parts.next()) {
        ("manifest", None) => TopicObject::Manifest { topic, incarnation },
        ("deleted", None) => TopicObject::Tombstone { topic, incarnation },
        (partition, Some(file)) => {
            let (stem, file) = PARTITION_SUFFIXES
                .iter()
                .find_map(|(suffix, kind)| Some((file.strip_suffix(suffix)?, *kind)))?;
            // `{base}`, `{base}-{epoch}` or `{base}-{epoch}-{writer}`.
            let mut fields = stem.splitn(3, '-');
            let base = fields.next()?;
            let epoch = match fields.next() {
                Some(epoch) => epoch.parse().ok()?,
                None => 0,
            };
            if fields
                .next()
                .is_some_and(|w| w.is_empty() || !w.chars().all(|c| c.is_ascii_alphanumeric()))
            {
                return None;
            }
            TopicObject::Partition {
                topic,
                incarnation,
                partition: partition.parse().ok()?,
                offset: base.parse().ok()?,
                epoch,
                file,
            }
        }
        _ => return None,
    };
    parts.next().is_none().then_some(object)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_keys_sort_by_offset_under_their_topic() {
        let k = segment_key("orders.v1", 1700, 3, 42, 7);
        assert_eq!(k, "topics/orders.v1/1700/3/00000000000000000042-7.seg");
        assert!(k.starts_with(&incarnation_prefix("orders.v1", 1700)));
        assert_eq!(
            parse_topic_key(&k),
            Some(TopicObject::Partition {
                topic: "orders.v1",
                incarnation: 1700,
                partition: 3,
                offset: 42,
                epoch: 7,
                file: PartitionFile::Records
            })
        );
        assert_eq!(
            parse_topic_key("topics/t/1/0/00000000000000000042.seg"),
            Some(TopicObject::Partition {
                topic: "t",
                incarnation: 1,
                partition: 0,
                offset: 42,
                epoch: 0,
                file: PartitionFile::Records
            }),
            "keys from before epochs"
        );
        assert_eq!(
            parse_topic_key(&topic_manifest_key("t", 5)),
            Some(TopicObject::Manifest {
                topic: "t",
                incarnation: 5
            })
        );
        assert_eq!(
            parse_topic_key(&topic_tombstone_key("t", 5)),
            Some(TopicObject::Tombstone {
                topic: "t",
                incarnation: 5
            })
        );
        for other in [
            "topics/t/x/manifest",
            "topics/t/5/0/x.seg",
            "topics/t/5/0/1.seg/extra",
            "topics/t/5/0/1-x.seg",
            "topics/t/5/notes",
            "elsewhere/t/5/manifest",
        ] {
            assert_eq!(parse_topic_key(other), None, "{other}");
        }
        assert!(segment_key("t", 1, 0, 9, 5) < segment_key("t", 1, 0, 10, 1));
        let state = producer_state_key(&k);
        assert_eq!(
            state,
            "topics/orders.v1/1700/3/00000000000000000042-7.producers"
        );
        assert_eq!(
            parse_topic_key(&state),
            Some(TopicObject::Partition {
                topic: "orders.v1",
                incarnation: 1700,
                partition: 3,
                offset: 42,
                epoch: 7,
                file: PartitionFile::ProducerState
            })
        );
    }

    #[test]
    fn history_marks_parse_with_their_offset_and_epoch() {
        for (key, file) in [
            (
                epoch_start_key("t", 3, 1, 250, 7),
                PartitionFile::EpochStart,
            ),
            (
                low_watermark_key("t", 3, 1, 250, 7),
                PartitionFile::LowWatermark,
            ),
        ] {
            assert_eq!(
                parse_topic_key(&key),
                Some(TopicObject::Partition {
                    topic: "t",
                    incarnation: 3,
                    partition: 1,
                    offset: 250,
                    epoch: 7,
                    file
                }),
                "{key}"
            );
        }
        assert_eq!(
            epoch_start_key("t", 3, 1, 250, 7),
            "topics/t/3/1/00000000000000000250-7.epoch"
        );
        assert_eq!(
            parse_topic_key("topics/t/3/1/00000000000000000250-7.lo"),
            None
        );
    }

    #[test]
    fn a_writer_in_a_segment_key_keeps_its_offset_and_epoch() {
        let k = segment_key_by("t", 3, 1, 250, 7, "ab12-/x");
        assert_eq!(k, "topics/t/3/1/00000000000000000250-7-ab12x.seg");
        assert_ne!(k, segment_key_by("t", 3, 1, 250, 7, "cd34"));
        assert_eq!(
            parse_topic_key(&k),
            Some(TopicObject::Partition {
                topic: "t",
                incarnation: 3,
                partition: 1,
                offset: 250,
                epoch: 7,
                file: PartitionFile::Records
            })
        );
        assert_eq!(
            producer_state_key(&k),
            "topics/t/3/1/00000000000000000250-7-ab12x.producers"
        );
        for bad in [
            "topics/t/3/1/1-7-.seg",
            "topics/t/3/1/1-7-a.b.seg",
            "topics/t/3/1/1-x-a.seg",
        ] {
            assert_eq!(parse_topic_key(bad), None, "{bad}");
        }
    }

    #[test]
    fn producer_keys_round_trip() {
        let k = producer_name_key("billing/é", 3, 17);
        assert_eq!(k, "producers/names/62696c6c696e672fc3a9/0000000003-17");
        assert_eq!(
            parse_producer_key(&k),
            Some(ProducerObject::Name {
                name: "billing/é".into(),
                epoch: 3,
                id: 17
            })
        );
        assert_eq!(
            parse_producer_key(&producer_id_block_key(2000)),
            Some(ProducerObject::IdBlock { end: 2000 })
        );
        // The longest name: every segment fits a file name (255 bytes).
        let long = "é".repeat(127) + "x";
        assert_eq!(long.len(), 255);
        let k = producer_name_key(&long, 1, 5);
        assert!(k.split('/').all(|seg| seg.len() <= 255), "{k}");
        assert_eq!(k.split('/').count(), 6, "{k}");
        assert_eq!(
            parse_producer_key(&k),
            Some(ProducerObject::Name {
                name: long,
                epoch: 1,
                id: 5
            })
        );
        for other in [
            "producers/names/6/1-2",
            "producers/names/61/62/1-2",
            "producers/names//1-2",
            "producers/names/zz/1-2",
            "producers/names/61/1",
            "producers/ids/x",
            "producers/ids/0",
            "producers/ids/18446744073709551615",
            "producers/names/61/1-0",
            "producers/names/61/1-9223372036854775808",
            "producers/other",
        ] {
            assert_eq!(parse_producer_key(other), None, "{other}");
        }
    }

    #[test]
    fn wal_names_round_trip_and_discarded_files_are_not_wal_files() {
        let dir = partition_wal_dir(Path::new("/d"), "t", 7);
        assert_eq!(dir, Path::new("/d/wal/t/7"));
        let name = wal_file_name(42);
        assert_eq!(name, "00000000000000000042.wal");
        assert_eq!(parse_wal_file_name(&name), Some(42));
        let aside = discarded_wal_path(&dir.join(&name));
        assert_eq!(
            aside,
            Path::new("/d/wal/t/7/00000000000000000042.wal.discarded")
        );
        let aside_name = aside.file_name().unwrap().to_str().unwrap();
        assert_eq!(parse_wal_file_name(aside_name), None);
        assert_eq!(parse_wal_file_name("notes.txt"), None);
    }
}
