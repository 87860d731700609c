use super::format::*;
use super::*;
use crate::record::{Header, Record};

fn rec(offset: i64, ts: i64, key: Option<&[u8]>, value: &[u8]) -> Record {
    Record {
        offset,
        timestamp_ms: ts,
        key: key.map(<[u8]>::to_vec),
        value: Some(value.to_vec()),
        headers: Vec::new(),
    }
}

/// Records with varied keys, values and headers, offsets from `base`.
fn sample(base: i64, n: usize) -> Vec<Record> {
    (0..n)
        .map(|i| {
            let mut r = rec(
                base + i as i64,
                1_700_000_000_000 + (i as i64 * 37) % 500 - 200,
                match i % 3 {
                    0 => None,
                    1 => Some(b"".as_slice()),
                    _ => Some(format!("key-{i}").into_bytes().leak()),
                },
                format!("{{\"n\":{i},\"pad\":\"{}\"}}", "v".repeat(i % 40)).as_bytes(),
            );
            if i % 4 == 0 {
                r.headers = vec![
                    Header {
                        key: "trace".into(),
                        value: Some(vec![i as u8, 0, 255]),
                    },
                    Header {
                        key: String::new(),
                        value: Some(Vec::new()),
                    },
                ];
            }
            r
        })
        .collect()
}

fn encode(records: &[Record], block_bytes: usize) -> (Vec<u8>, SegmentSummary) {
    let mut w = SegmentWriter::new(block_bytes);
    for r in records {
        w.push(r).unwrap();
    }
    w.finish().unwrap()
}

fn open(bytes: &[u8]) -> SegmentBytes<'_> {
    SegmentBytes::open(bytes).unwrap()
}

#[test]
fn round_trip_in_one_block() {
    let records = sample(0, 50);
    let (bytes, summary) = encode(&records, DEFAULT_BLOCK_BYTES);
    assert_eq!(summary.block_count, 1);
    assert_eq!(summary.record_count, 50);
    assert_eq!((summary.base_offset, summary.last_offset), (0, 49));
    assert_eq!(summary.size_bytes, bytes.len() as u64);
    assert_eq!(verify(&bytes).unwrap(), records);
}

#[test]
fn every_record_of_every_block_keeps_its_exact_offset() {
    // The public attempt at this design decoded blocks 2, 3, ... off by one.
    let records = sample(1_000, 400);
    let (bytes, summary) = encode(&records, 512);
    assert!(
        summary.block_count >= 10,
        "want many blocks, got {}",
        summary.block_count
    );
    let reader = open(&bytes);
    let mut seen = 0;
    for (i, entry) in reader.footer().entries().iter().enumerate() {
        let block = reader.block(i).unwrap();
        assert_eq!(block.len(), entry.record_count as usize);
        for r in block.iter() {
            let expected = &records[(r.offset - 1_000) as usize];
            assert_eq!(r.to_record(), *expected, "block {i}");
            seen += 1;
        }
        assert_eq!(block.get(0).unwrap().offset, entry.first_offset);
        assert_eq!(
            block.get(block.len() - 1).unwrap().offset,
            entry.last_offset
        );
    }
    assert_eq!(seen, records.len());
    // Iterating from any offset starts exactly there.
    for start in [1_000, 1_001, 1_137, 1_256, 1_399] {
        let first = reader.iter_from(start).next().unwrap().unwrap();
        assert_eq!(first.offset, start);
        let rest: Vec<Record> = reader.iter_from(start).map(|r| r.unwrap()).collect();
        assert_eq!(rest, records[(start - 1_000) as usize..]);
    }
    assert!(reader.iter_from(1_400).next().is_none());
    assert_eq!(
        reader.iter_from(0).count(),
        400,
        "before the base: from the start"
    );
}

#[test]
fn empty_key_is_not_absent_key_and_headers_round_trip() {
    let mut records = vec![
        rec(0, 5, None, b"no key"),
        rec(1, 5, Some(b""), b"empty key"),
        rec(2, 5, Some(b"\x00\xff"), b""),
    ];
    records[2].headers = vec![
        Header {
            key: "empty".into(),
            value: Some(vec![]),
        },
        Header {
            key: "binary".into(),
            value: Some((0..=255).collect()),
        },
        Header {
            key: "ünïcödé".into(),
            value: Some(b"v".to_vec()),
        },
        Header {
            key: "empty".into(),
            value: Some(b"duplicate keys keep their order".to_vec()),
        },
    ];
    let (bytes, _) = encode(&records, DEFAULT_BLOCK_BYTES);
    let back = verify(&bytes).unwrap();
    assert_eq!(back, records);
    assert_eq!(back[0].key, None);
    assert_eq!(back[1].key, Some(vec![]));
}

#[test]
fn a_five_mib_record_gets_a_block_of_its_own() {
    let big: Vec<u8> = (0..5 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let records = vec![
        rec(0, 1, None, b"small before"),
        rec(1, 2, Some(b"big"), &big),
        rec(2, 3, None, b"small after"),
    ];
    let (bytes, summary) = encode(&records, DEFAULT_BLOCK_BYTES);
    assert_eq!(summary.block_count, 3);
    let reader = open(&bytes);
    let e = reader.footer().entries()[1];
    assert_eq!((e.first_offset, e.last_offset, e.record_count), (1, 1, 1));
    assert_eq!(
        reader.block(1).unwrap().get(0).unwrap().value,
        Some(&big[..])
    );
    assert_eq!(reader.read_all().unwrap(), records);
}

#[test]
fn timestamps_may_go_backwards_within_a_block() {
    let ts = [5_000, 1_000, 9_000, -3, 4_000, 4_000, i64::MAX, 0];
    let records: Vec<Record> = ts
        .iter()
        .enumerate()
        .map(|(i, &t)| rec(i as i64, t, None, b"x"))
        .collect();
    let (bytes, summary) = encode(&records, DEFAULT_BLOCK_BYTES);
    assert_eq!(
        (summary.min_timestamp_ms, summary.max_timestamp_ms),
        (-3, i64::MAX)
    );
    assert_eq!(verify(&bytes).unwrap(), records);
    let reader = open(&bytes);
    let block = reader.block(0).unwrap();
    assert_eq!(block.position_of_timestamp(6_000), Some(2));
    assert_eq!(block.position_of_timestamp(i64::MIN), Some(0));
}

#[test]
fn lookup_by_timestamp_uses_max_timestamp_of_blocks() {
    // Blocks of 3 records (tiny block size); block max timestamps 300, 200
    // (goes back), 600.
    let ts = [100, 300, 50, 200, 150, 100, 400, 600, 500];
    let records: Vec<Record> = ts
        .iter()
        .enumerate()
        .map(|(i, &t)| rec(i as i64, t, None, &[b'v'; 40]))
        .collect();
    let (bytes, _) = encode(&records, 170);
    let reader = open(&bytes);
    let f = reader.footer();
    assert_eq!(f.entries().len(), 3);
    assert_eq!(f.block_for_timestamp(0), Some(0));
    assert_eq!(f.block_for_timestamp(300), Some(0));
    assert_eq!(f.block_for_timestamp(301), Some(2), "block 1 max is 200");
    assert_eq!(f.block_for_timestamp(250), Some(0));
    assert_eq!(f.block_for_timestamp(601), None);
}

#[test]
fn offsets_with_gaps_round_trip() {
    let offsets = [10, 11, 15, 100, 101, 1_000_000];
    let records: Vec<Record> = offsets.iter().map(|&o| rec(o, 1, None, b"v")).collect();
    let (bytes, _) = encode(&records, DEFAULT_BLOCK_BYTES);
    assert_eq!(verify(&bytes).unwrap(), records);
    let reader = open(&bytes);
    let from_gap: Vec<i64> = reader.iter_from(16).map(|r| r.unwrap().offset).collect();
    assert_eq!(from_gap, vec![100, 101, 1_000_000]);
}

#[test]
fn the_writer_refuses_bad_offsets_and_empty_segments() {
    let mut w = SegmentWriter::default();
    w.push(&rec(5, 0, None, b"")).unwrap();
    assert_eq!(
        w.push(&rec(5, 0, None, b"")),
        Err(WriteError::OffsetNotIncreasing {
            previous: 5,
            offset: 5
        })
    );
    assert!(w.push(&rec(4, 0, None, b"")).is_err());
    assert_eq!(
        SegmentWriter::default().push(&rec(-1, 0, None, b"")),
        Err(WriteError::NegativeOffset(-1))
    );
    assert_eq!(
        SegmentWriter::default().finish().unwrap_err(),
        WriteError::Empty
    );
}

fn small_multi_block() -> (Vec<u8>, Vec<Record>) {
    let records = sample(0, 24);
    let (bytes, summary) = encode(&records, 200);
    assert!(summary.block_count >= 3, "{}", summary.block_count);
    (bytes, records)
}

/// Flip every byte of a multi-block segment in turn: a full verification
/// must fail every time (every byte is covered by a CRC or a magic), and a
/// footer-driven read must either fail or return exactly the original records
/// (it does not read the header). Never a panic, never wrong data.
#[test]
fn every_flipped_byte_is_detected() {
    let (bytes, records) = small_multi_block();
    for i in 0..bytes.len() {
        for mask in [0x01u8, 0x80, 0xff] {
            let mut bad = bytes.clone();
            bad[i] ^= mask;
            if let Ok(got) = verify(&bad) {
                panic!("byte {i} mask {mask:#x}: verify gave {} records", got.len());
            }
            let footer_read = SegmentBytes::open(&bad).and_then(|r| r.read_all());
            if let Ok(got) = footer_read {
                assert!(
                    i < HEADER_LEN,
                    "byte {i}: footer read succeeded outside the header"
                );
                assert_eq!(got, records);
            }
        }
    }
}

#[test]
fn truncation_anywhere_is_an_error() {
    let (bytes, _) = small_multi_block();
    for len in 0..bytes.len() {
        let cut = &bytes[..len];
        assert!(verify(cut).is_err(), "truncated to {len}");
        assert!(
            SegmentBytes::open(cut).is_err(),
            "footer of a cut object at {len}"
        );
    }
}

/// Rewrites the footer and trailer of `bytes` with `edit` applied to the
/// index entries, recomputing the CRCs, so that validation past the
/// checksums is what gets exercised.
fn with_edited_footer(bytes: &[u8], edit: impl Fn(&mut Vec<BlockIndexEntry>)) -> Vec<u8> {
    let trailer = Trailer::decode(bytes).unwrap();
    let fstart = trailer.footer_position as usize;
    let fend = bytes.len() - TRAILER_LEN;
    let mut entries: Vec<BlockIndexEntry> = bytes[fstart + 4..fend]
        .chunks_exact(INDEX_ENTRY_LEN)
        .map(BlockIndexEntry::decode)
        .collect();
    edit(&mut entries);
    let mut out = bytes[..fstart].to_vec();
    let mut footer = (entries.len() as u32).to_le_bytes().to_vec();
    for e in &entries {
        e.encode_into(&mut footer);
    }
    out.extend_from_slice(&footer);
    out.extend_from_slice(
        &Trailer {
            footer_position: fstart as u64,
            footer_len: footer.len() as u32,
            footer_crc: crc32c::crc32c(&footer),
            version: FORMAT_VERSION,
        }
        .encode(),
    );
    out
}

#[test]
fn structural_errors_are_typed_and_name_the_part() {
    let (bytes, _) = small_multi_block();

    let mut wrong_magic = bytes.clone();
    wrong_magic[0] = b'X';
    assert_eq!(
        verify(&wrong_magic).unwrap_err(),
        FormatError::BadMagic { part: Part::Header }
    );
    let n = bytes.len();
    let mut wrong_tail_magic = bytes.clone();
    wrong_tail_magic[n - 1] = b'X';
    assert_eq!(
        verify(&wrong_tail_magic).unwrap_err(),
        FormatError::BadMagic {
            part: Part::Trailer
        }
    );

    // A version-3 trailer with a valid CRC: a clear "unsupported version".
    let mut t = Trailer::decode(&bytes).unwrap();
    t.version = 3;
    let mut v2 = bytes[..n - TRAILER_LEN].to_vec();
    v2.extend_from_slice(&t.encode());
    assert_eq!(
        verify(&v2).unwrap_err(),
        FormatError::UnsupportedVersion {
            found: 3,
            supported: 2
        }
    );
    let mut h2 = bytes.clone();
    h2[8] = 3;
    let crc = crc32c::crc32c(&h2[0..12]);
    h2[12..16].copy_from_slice(&crc.to_le_bytes());
    assert!(matches!(
        verify(&h2).unwrap_err(),
        FormatError::UnsupportedVersion { found: 3, .. }
    ));

    // Lengths pointing past the end, with valid checksums.
    let past_end = with_edited_footer(&bytes, |e| e[1].frame_len = u32::MAX);
    assert!(matches!(
        verify(&past_end).unwrap_err(),
        FormatError::Malformed {
            part: Part::Footer,
            ..
        }
    ));
    let overlapping = with_edited_footer(&bytes, |e| e[2].first_offset = e[1].last_offset);
    assert!(matches!(
        verify(&overlapping).unwrap_err(),
        FormatError::Malformed {
            part: Part::Footer,
            ..
        }
    ));
    // An index entry that lies about its block's offsets: the block decoder
    // catches it and names the block.
    let lying = with_edited_footer(&bytes, |e| {
        e[1].first_offset += 1;
        e[1].record_count -= 1;
    });
    let err = verify(&lying).unwrap_err();
    assert_eq!(err.part(), Some(Part::Block(1)), "{err}");
    let no_blocks = with_edited_footer(&bytes, |e| e.clear());
    assert!(verify(&no_blocks).is_err());
}

/// A null closes a block without nullable lengths and opens one with them;
/// records without nulls after it share the nullable block; a segment
/// without nulls stays version 1.
#[test]
fn nulls_get_a_nullable_block_and_version_2_only_when_present() {
    let rec = |offset: i64, value: Option<&[u8]>| Record {
        offset,
        timestamp_ms: 1_000 + offset,
        key: None,
        value: value.map(<[u8]>::to_vec),
        headers: vec![],
    };
    let records = vec![
        rec(0, Some(b"a")),
        rec(1, None),
        rec(2, Some(b"")),
        rec(3, Some(b"d")),
    ];
    let mut w = SegmentWriter::new(1 << 20);
    for r in &records {
        w.push(r).unwrap();
    }
    let (bytes, summary) = w.finish().unwrap();
    assert_eq!(
        summary.block_count, 2,
        "the plain block closed before the null"
    );
    assert_eq!(u16::from_le_bytes([bytes[8], bytes[9]]), 2);
    assert_eq!(verify(&bytes).unwrap(), records);

    let mut w = SegmentWriter::new(1 << 20);
    w.push(&records[0]).unwrap();
    w.push(&records[2]).unwrap();
    let (bytes, summary) = w.finish().unwrap();
    assert_eq!(summary.block_count, 1);
    assert_eq!(u16::from_le_bytes([bytes[8], bytes[9]]), 1);
}
