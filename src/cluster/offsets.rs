//! Consumer-group offsets of a cluster, kept in etcd: a commit is durable
//! once etcd has it, whichever node took it and whatever happens to that
//! node after. One key per committed partition, and one per group (so
//! listing groups does not read every offset):
//!
//! - `groups/{group}`: the time of the group's last commit (ms);
//! - `offsets/{group}/{topic}/{partition}`: `{offset} {updated_at_ms}
//!   {incarnation}\n` then the commit's metadata (any UTF-8, up to its
//!   limit). The topic's incarnation says which topic of that name the
//!   offset is of: one deleted and created again does not inherit it.

use super::registry::Registry;
use super::{CoordError, CoordResult, KeyValue, Op};
use crate::meta::GroupOffset;

/// A group name as it appears in a key: `%` and `/` escaped, so that
/// `offsets/{group}/` is the prefix of that group's keys only.
fn escape(group: &str) -> String {
    group.replace('%', "%25").replace('/', "%2F")
}

fn unescape(key_part: &str) -> String {
    key_part.replace("%2F", "/").replace("%25", "%")
}

/// Offsets per transaction: etcd takes at most 128 operations in one (by
/// default), and each batch also puts the group's key.
const OFFSETS_PER_TXN: usize = 100;

fn malformed(key: &[u8], why: &str) -> CoordError {
    CoordError::Refused(format!(
        "etcd key {:?} is not a group offset this version reads: {why}",
        String::from_utf8_lossy(key)
    ))
}

impl Registry {
    fn group_key(&self, group: &str) -> Vec<u8> {
        self.key("groups", &escape(group))
    }

    fn offsets_prefix(&self, group: &str) -> Vec<u8> {
        self.key("offsets", &format!("{}/", escape(group)))
    }

    fn offset_key(&self, group: &str, topic: &str, partition: u32) -> Vec<u8> {
        self.key("offsets", &format!("{}/{topic}/{partition}", escape(group)))
    }

    /// Whether `group` has committed anything (or was created).
    pub fn group_exists(&self, group: &str) -> CoordResult<bool> {
        Ok(self.coord().get(&self.group_key(group))?.is_some())
    }

    /// Every group with a `groups/` key, in name order.
    pub fn groups(&self) -> CoordResult<Vec<String>> {
        let prefix = self.key("groups", "");
        let (kvs, _) = self.coord().list(&prefix)?;
        kvs.iter()
            .map(|kv| match std::str::from_utf8(&kv.key[prefix.len()..]) {
                Ok(name) => Ok(unescape(name)),
                Err(_) => Err(malformed(&kv.key, "not UTF-8")),
            })
            .collect()
    }

    /// Stores `o`, of the topic's `incarnation`, and the group's key (one
    /// transaction).
    pub fn commit_group_offset(&self, o: &GroupOffset, incarnation: i64) -> CoordResult<()> {
        self.commit_group_offsets(&[(o.clone(), incarnation)])
    }

    /// Stores offsets of one group (each with its topic's incarnation)
    /// and the group's key: one transaction per [`OFFSETS_PER_TXN`].
    pub fn commit_group_offsets(&self, offsets: &[(GroupOffset, i64)]) -> CoordResult<()> {
        for chunk in offsets.chunks(OFFSETS_PER_TXN) {
            let Some((last, _)) = chunk.last() else {
                continue;
            };
            let mut ops: Vec<Op> = chunk
                .iter()
                .map(|(o, incarnation)| {
                    let mut value =
                        format!("{} {} {incarnation}\n", o.offset, o.updated_at_ms).into_bytes();
                    value.extend_from_slice(o.metadata.as_bytes());
                    Op::Put {
                        key: self.offset_key(&o.group, &o.topic, o.partition),
                        value,
                        lease: 0,
                    }
                })
                .collect();
            ops.push(Op::Put {
                key: self.group_key(&last.group),
                value: last.updated_at_ms.to_string().into_bytes(),
                lease: 0,
            });
            self.coord().txn(&[], &ops, &[])?;
        }
        Ok(())
    }

    /// The committed offset and the incarnation of the topic it is of.
    pub fn group_offset(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
    ) -> CoordResult<Option<(GroupOffset, i64)>> {
        let key = self.offset_key(group, topic, partition);
        match self.coord().get(&key)? {
            Some(kv) => Ok(Some(parse_offset(group, topic, partition, &kv)?)),
            None => Ok(None),
        }
    }

    /// Every committed offset of `group`, by topic and partition, each
    /// with the incarnation of the topic it is of.
    pub fn group_offsets(&self, group: &str) -> CoordResult<Vec<(GroupOffset, i64)>> {
        let prefix = self.offsets_prefix(group);
        let (kvs, _) = self.coord().list(&prefix)?;
        let mut out = Vec::with_capacity(kvs.len());
        for kv in &kvs {
            let rest = std::str::from_utf8(&kv.key[prefix.len()..])
                .map_err(|_| malformed(&kv.key, "not UTF-8"))?;
            let (topic, partition) = rest
                .rsplit_once('/')
                .and_then(|(t, p)| Some((t, p.parse::<u32>().ok()?)))
                .ok_or_else(|| malformed(&kv.key, "no topic/partition"))?;
            out.push(parse_offset(group, topic, partition, kv)?);
        }
        out.sort_by(|(a, _), (b, _)| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        Ok(out)
    }

    /// Removes the group and every offset it committed; returns how many
    /// offsets there were.
    pub fn delete_group(&self, group: &str) -> CoordResult<usize> {
        let (kvs, _) = self.coord().list(&self.offsets_prefix(group))?;
        let ops = [
            Op::DeletePrefix(self.offsets_prefix(group)),
            Op::Delete(self.group_key(group)),
        ];
        self.coord().txn(&[], &ops, &[])?;
        Ok(kvs.len())
    }

    /// Removes every group's offsets of `topic` (deleted); returns how
    /// many. Reads every committed offset: a rare operation.
    pub fn delete_topic_offsets(&self, topic: &str) -> CoordResult<usize> {
        let prefix = self.key("offsets", "");
        let (kvs, _) = self.coord().list(&prefix)?;
        let of_topic: Vec<Op> = kvs
            .into_iter()
            .filter(|kv| {
                let rest = String::from_utf8_lossy(&kv.key[prefix.len()..]).into_owned();
                let mut parts = rest.rsplitn(3, '/');
                parts.next().is_some() && parts.next() == Some(topic)
            })
            .map(|kv| Op::Delete(kv.key))
            .collect();
        // etcd takes at most 128 operations per transaction by default.
        for chunk in of_topic.chunks(100) {
            self.coord().txn(&[], chunk, &[])?;
        }
        Ok(of_topic.len())
    }
}

fn parse_offset(
    group: &str,
    topic: &str,
    partition: u32,
    kv: &KeyValue,
) -> CoordResult<(GroupOffset, i64)> {
    let text = std::str::from_utf8(&kv.value).map_err(|_| malformed(&kv.key, "not UTF-8"))?;
    let (head, metadata) = text
        .split_once('\n')
        .ok_or_else(|| malformed(&kv.key, "no header line"))?;
    let mut fields = head.split(' ').map(str::parse::<i64>);
    let (Some(Ok(offset)), Some(Ok(at)), Some(Ok(incarnation)), None) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return Err(malformed(&kv.key, "bad header line"));
    };
    let o = GroupOffset {
        group: group.to_string(),
        topic: topic.to_string(),
        partition,
        offset,
        metadata: metadata.to_string(),
        updated_at_ms: at,
    };
    Ok((o, incarnation))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{Coordination, MemoryCoordination};
    use std::sync::Arc;

    fn offset(group: &str, topic: &str, partition: u32, offset: i64, meta: &str) -> GroupOffset {
        GroupOffset {
            group: group.into(),
            topic: topic.into(),
            partition,
            offset,
            metadata: meta.into(),
            updated_at_ms: 1_700_000_000_000 + offset,
        }
    }

    #[test]
    fn offsets_round_trip_and_groups_do_not_overlap() {
        let r = Registry::new(Arc::new(MemoryCoordination::new()), "c");
        // "a" is a prefix of "a/b" and "a%2Fb" would unescape like it.
        let committed = [
            offset("a", "t", 0, 5, "line one\nline two"),
            offset("a", "t", 10, 7, ""),
            offset("a", "u", 1, 0, "m"),
            offset("a/b", "t", 0, 9, ""),
            offset("a%2Fb", "t", 0, 11, " "),
        ];
        for o in &committed {
            r.commit_group_offset(o, 1).unwrap();
        }
        let only = |v: Vec<(GroupOffset, i64)>| -> Vec<GroupOffset> {
            v.into_iter()
                .map(|(o, inc)| {
                    assert_eq!(inc, 1);
                    o
                })
                .collect()
        };
        assert_eq!(r.groups().unwrap(), vec!["a", "a%2Fb", "a/b"]);
        assert_eq!(only(r.group_offsets("a").unwrap()), committed[..3].to_vec());
        assert_eq!(
            only(r.group_offsets("a/b").unwrap()),
            vec![committed[3].clone()]
        );
        assert_eq!(
            only(r.group_offsets("a%2Fb").unwrap()),
            vec![committed[4].clone()]
        );
        assert_eq!(
            r.group_offset("a", "t", 0).unwrap(),
            Some((committed[0].clone(), 1))
        );
        assert_eq!(r.group_offset("a", "t", 1).unwrap(), None);
        assert!(r.group_exists("a/b").unwrap());

        // A later commit replaces the earlier one.
        r.commit_group_offset(&offset("a", "t", 0, 6, "x"), 2)
            .unwrap();
        assert_eq!(
            r.group_offset("a", "t", 0)
                .unwrap()
                .map(|(o, inc)| (o.offset, inc)),
            Some((6, 2))
        );

        // Topic "u" deleted: its offsets go, in every group.
        r.commit_group_offset(&offset("a/b", "u", 4, 1, ""), 1)
            .unwrap();
        assert_eq!(r.delete_topic_offsets("u").unwrap(), 2);
        let left: Vec<(String, u32)> = r
            .group_offsets("a")
            .unwrap()
            .into_iter()
            .map(|(o, _)| (o.topic, o.partition))
            .collect();
        assert_eq!(left, [("t".to_string(), 0), ("t".to_string(), 10)]);
        assert_eq!(
            only(r.group_offsets("a/b").unwrap()),
            vec![committed[3].clone()]
        );
        r.commit_group_offset(&committed[2], 1).unwrap();

        assert_eq!(r.delete_group("a").unwrap(), 3);
        assert_eq!(r.groups().unwrap(), vec!["a%2Fb", "a/b"]);
        assert!(r.group_offsets("a").unwrap().is_empty());
        assert_eq!(r.group_offsets("a/b").unwrap().len(), 1);
        assert!(!r.group_exists("a").unwrap());
    }

    #[test]
    fn many_offsets_of_a_group_go_in_transactions_etcd_accepts() {
        let r = Registry::new(Arc::new(MemoryCoordination::new()), "c");
        let batch: Vec<(GroupOffset, i64)> = (0..250)
            .map(|p| (offset("g", "t", p, i64::from(p), "m"), 3))
            .collect();
        r.commit_group_offsets(&batch).unwrap();
        let stored = r.group_offsets("g").unwrap();
        assert_eq!(stored.len(), 250);
        assert!(stored
            .iter()
            .all(|(o, inc)| i64::from(o.partition) == o.offset && *inc == 3));
        assert_eq!(r.groups().unwrap(), ["g"]);
    }

    #[test]
    fn a_value_this_version_cannot_read_is_an_error_not_a_panic() {
        let coord = Arc::new(MemoryCoordination::new());
        let r = Registry::new(coord.clone(), "c");
        for bad in [
            &b"no newline"[..],
            b"x 1 1\n",
            b"5 1\n",
            b"5 1 1 1\n",
            b"\xff\xfe 1 1\n",
        ] {
            coord.put(b"/streamhouse/c/offsets/g/t/0", bad, 0).unwrap();
            assert!(matches!(
                r.group_offset("g", "t", 0),
                Err(CoordError::Refused(_))
            ));
            assert!(r.group_offsets("g").is_err());
        }
    }
}
