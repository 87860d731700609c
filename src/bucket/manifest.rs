//! Topic manifests and tombstones.

use super::{field, parse_fields};
use crate::meta::TopicRow;

const MANIFEST: &str = "streamhouse-topic-manifest";
const TOMBSTONE: &str = "streamhouse-topic-deleted";

pub(crate) fn encode_manifest(t: &TopicRow) -> Vec<u8> {
    format!(
        "{MANIFEST} 1\nname={}\npartitions={}\nretention_ms={}\nretention_bytes={}\nincarnation={}\ncreated_at_ms={}\n",
        t.name, t.partitions, t.retention_ms, t.retention_bytes, t.incarnation, t.created_at_ms
    )
    .into_bytes()
}

pub(crate) fn decode_manifest(bytes: &[u8]) -> Result<TopicRow, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8".to_string())?;
    let f = parse_fields(text, MANIFEST, 1)?;
    Ok(TopicRow {
        name: field(&f, "name")?,
        partitions: field(&f, "partitions")?,
        retention_ms: field(&f, "retention_ms")?,
        retention_bytes: field(&f, "retention_bytes")?,
        incarnation: field(&f, "incarnation")?,
        created_at_ms: field(&f, "created_at_ms")?,
    })
}

pub(crate) fn encode_tombstone(deleted_at_ms: i64) -> Vec<u8> {
    format!("{TOMBSTONE} 1\ndeleted_at_ms={deleted_at_ms}\n").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_round_trip_and_bad_ones_say_why() {
        let t = TopicRow {
            name: "orders.v1".into(),
            partitions: 12,
            retention_ms: 86_400_000,
            retention_bytes: 0,
            created_at_ms: 1_764_000_000_000,
            incarnation: 42,
        };
        assert_eq!(decode_manifest(&encode_manifest(&t)).unwrap(), t);
        for (bad, why) in [
            (&b"streamhouse-topic-manifest 2\nname=x\n"[..], "expected"),
            (
                b"streamhouse-topic-manifest 1\nname=x\npartitions=1\n",
                "missing",
            ),
            (
                b"streamhouse-topic-manifest 1\nname=t\npartitions=x\n",
                "does not parse",
            ),
            (b"\xff", "UTF-8"),
        ] {
            let e = decode_manifest(bad).unwrap_err();
            assert!(e.contains(why), "{e}");
        }
        assert!(String::from_utf8(encode_tombstone(5))
            .unwrap()
            .contains("deleted_at_ms=5"));
    }
}
