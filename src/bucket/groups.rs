//! The consumer-group offsets checkpoint: every committed offset, one per
//! line, tab-separated; the metadata string hex-encoded (it may hold any
//! character; group names and topic names hold no tab or newline); a last
//! line `end`. Version 2 carries a [`CheckpointStamp`] (the writer's owner
//! epoch and a sequence): which checkpoint is newer is decided by it, never
//! by clocks of different nodes. Version 1 reads as stamp (0, 0).
//!
//! Two objects: the base (`groups/offsets`, every offset) and the delta
//! (`groups/offsets-delta`, the offsets changed since a base, with that
//! base's stamp in `base_epoch` / `base_seq`). Most checkpoints write only
//! the delta, so their size follows the groups that commit, not every
//! group there is; the base is written again when the delta would be half
//! its size, after a removal, and at a node's first checkpoint.

use super::{field, parse_fields};
use crate::meta::GroupOffset;

const KIND: &str = "streamhouse-group-offsets";

/// Which checkpoint is newer: a later owner epoch, then a later sequence.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct CheckpointStamp {
    pub epoch: u64,
    pub seq: u64,
}

impl CheckpointStamp {
    /// As kept in a metadata setting: `epoch seq`.
    pub fn to_setting(self) -> String {
        format!("{} {}", self.epoch, self.seq)
    }

    pub fn from_setting(s: &str) -> Option<CheckpointStamp> {
        let (epoch, seq) = s.split_once(' ')?;
        Some(CheckpointStamp {
            epoch: epoch.parse().ok()?,
            seq: seq.parse().ok()?,
        })
    }
}

/// One checkpoint object: a base (`base: None`) or a delta over the base
/// with that stamp.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct GroupCheckpointObject {
    pub stamp: CheckpointStamp,
    pub base: Option<CheckpointStamp>,
    pub offsets: Vec<GroupOffset>,
}

pub(crate) fn encode_group_offsets(
    offsets: &[GroupOffset],
    stamp: CheckpointStamp,
    base: Option<CheckpointStamp>,
    written_at_ms: i64,
) -> Vec<u8> {
    let mut s = format!(
        "{KIND} 2\nwritten_at_ms={written_at_ms}\nepoch={}\nseq={}\ncount={}\n",
        stamp.epoch,
        stamp.seq,
        offsets.len()
    );
    if let Some(b) = base {
        s.push_str(&format!("base_epoch={}\nbase_seq={}\n", b.epoch, b.seq));
    }
    for o in offsets {
        let meta: String = o.metadata.bytes().map(|b| format!("{b:02x}")).collect();
        s.push_str(&format!(
            "{}\t{}\t{}\t{}\t{}\t{meta}\n",
            o.group, o.topic, o.partition, o.offset, o.updated_at_ms
        ));
    }
    s.push_str("end\n");
    s.into_bytes()
}

pub(crate) fn decode_group_offsets(bytes: &[u8]) -> Result<GroupCheckpointObject, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8".to_string())?;
    let text = text
        .strip_suffix("end\n")
        .ok_or_else(|| "the end line is missing (truncated)".to_string())?;
    let (head, rows): (Vec<&str>, Vec<&str>) = text.lines().partition(|l| !l.contains('\t'));
    let head = head.join("\n");
    let (f, stamp, base) = match parse_fields(&head, KIND, 2) {
        Ok(f) => {
            let stamp = CheckpointStamp {
                epoch: field(&f, "epoch")?,
                seq: field(&f, "seq")?,
            };
            let base = match f.contains_key("base_seq") {
                true => Some(CheckpointStamp {
                    epoch: field(&f, "base_epoch")?,
                    seq: field(&f, "base_seq")?,
                }),
                false => None,
            };
            (f, stamp, base)
        }
        Err(_) => (
            parse_fields(&head, KIND, 1)?,
            CheckpointStamp::default(),
            None,
        ),
    };
    let count: usize = field(&f, "count")?;
    if rows.len() != count {
        return Err(format!("{} offsets, the header says {count}", rows.len()));
    }
    let offsets = rows
        .iter()
        .map(|row| decode_row(row))
        .collect::<Result<_, _>>()?;
    Ok(GroupCheckpointObject {
        stamp,
        base,
        offsets,
    })
}

fn decode_row(row: &str) -> Result<GroupOffset, String> {
    let cols: Vec<&str> = row.split('\t').collect();
    let [group, topic, partition, offset, updated, meta] = cols[..] else {
        return Err(format!("row {row:?} does not have 6 columns"));
    };
    let num = |v: &str, what: &str| -> Result<i64, String> {
        v.parse()
            .map_err(|_| format!("{what} {v:?} does not parse"))
    };
    if meta.len() % 2 != 0 {
        return Err(format!("metadata {meta:?} is not hex"));
    }
    let meta_bytes = (0..meta.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&meta[i..i + 2], 16))
        .collect::<Result<Vec<u8>, _>>()
        .map_err(|_| format!("metadata {meta:?} is not hex"))?;
    Ok(GroupOffset {
        group: group.to_string(),
        topic: topic.to_string(),
        partition: u32::try_from(num(partition, "partition")?)
            .map_err(|_| format!("partition {partition:?} is out of range"))?,
        offset: num(offset, "offset")?,
        metadata: String::from_utf8(meta_bytes).map_err(|_| "metadata is not UTF-8".to_string())?,
        updated_at_ms: num(updated, "updated_at_ms")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_round_trip_with_any_metadata() {
        let offsets = vec![
            GroupOffset {
                group: "billing ü".into(),
                topic: "orders".into(),
                partition: 3,
                offset: 42,
                metadata: "tab\there\nnewline=".into(),
                updated_at_ms: 1_764_000_000_000,
            },
            GroupOffset {
                group: "g".into(),
                topic: "t".into(),
                partition: 0,
                offset: 0,
                metadata: String::new(),
                updated_at_ms: 1,
            },
        ];
        let stamp = CheckpointStamp { epoch: 3, seq: 9 };
        let bytes = encode_group_offsets(&offsets, stamp, None, 7);
        let read = |b: &[u8]| {
            let o = decode_group_offsets(b).unwrap();
            (o.stamp, o.base, o.offsets)
        };
        assert_eq!(read(&bytes), (stamp, None, offsets.clone()));
        assert_eq!(
            read(&encode_group_offsets(&[], stamp, None, 7)),
            (stamp, None, vec![])
        );
        // A delta names its base.
        let base = CheckpointStamp { epoch: 3, seq: 4 };
        let delta = encode_group_offsets(&offsets[1..], stamp, Some(base), 7);
        assert_eq!(read(&delta), (stamp, Some(base), offsets[1..].to_vec()));
        // Version 1 (before stamps) reads as the oldest stamp.
        let v1 = b"streamhouse-group-offsets 1\nwritten_at_ms=7\ncount=1\ng\tt\t0\t5\t1\t\nend\n";
        let (old, _, rows) = read(v1);
        assert_eq!((old, rows[0].offset), (CheckpointStamp::default(), 5));
        assert!(CheckpointStamp { epoch: 2, seq: 0 } > CheckpointStamp { epoch: 1, seq: 50 });
        assert_eq!(
            CheckpointStamp::from_setting(&stamp.to_setting()),
            Some(stamp)
        );
        let mut cut = bytes.clone();
        cut.truncate(bytes.len() - 5);
        assert!(decode_group_offsets(&cut).is_err());
        assert!(decode_group_offsets(b"streamhouse-group-offsets 1\ncount=1\n").is_err());
    }
}
