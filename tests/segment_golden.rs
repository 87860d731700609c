//! Keeps docs/FORMAT.md, the code and the bytes on disk in agreement.
//!
//! `tests/data/golden-v1.seg` was written by the v1 writer from
//! [`golden_records`]; `tests/data/golden-v2.seg` (format v2: null values
//! and null header values) from [`golden_v2_records`]. This test decodes it twice: with an independent
//! decoder written here from FORMAT.md alone, comparing every field, and with
//! the library. It also re-encodes the records and compares every field and
//! every decompressed block byte with the golden file, so a layout change
//! without a version bump fails.
//!
//! Regenerate (only together with a version bump):
//! `STREAMHOUSE_WRITE_GOLDEN=1 cargo test --test segment_golden`

use streamhouse::segment::{verify, SegmentWriter};
use streamhouse::{Header, Record};

mod common;

const GOLDEN: &str = "tests/data/golden-v1.seg";
const GOLDEN_V2: &str = "tests/data/golden-v2.seg";
const GOLDEN_BLOCK_BYTES: usize = 120;

fn h(key: &str, value: &[u8]) -> Header {
    Header {
        key: key.to_string(),
        value: Some(value.to_vec()),
    }
}

fn r(offset: i64, ts: i64, key: Option<&[u8]>, value: &[u8], headers: Vec<Header>) -> Record {
    Record {
        offset,
        timestamp_ms: ts,
        key: key.map(<[u8]>::to_vec),
        value: Some(value.to_vec()),
        headers,
    }
}

/// Covers: no key, empty key, binary key, empty value, headers with empty and
/// binary values, timestamps going backwards, an offset gap (a block without
/// the contiguous flag), and several blocks.
fn golden_records() -> Vec<Record> {
    vec![
        r(100, 1_700_000_000_000, None, b"{\"first\":1}", vec![]),
        r(
            101,
            1_699_999_999_990,
            Some(b""),
            b"",
            vec![h("empty", b"")],
        ),
        r(
            102,
            1_700_000_000_005,
            Some(b"\x00k\xff"),
            b"second value",
            vec![h("bin", &[0, 255, 1])],
        ),
        r(
            103,
            1_700_000_000_005,
            Some(b"user-42"),
            b"{\"x\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaa\"}",
            vec![],
        ),
        r(
            104,
            1_700_000_000_100,
            None,
            b"{\"y\":\"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb\"}",
            vec![h("a", b"1"), h("b", b"")],
        ),
        r(107, 1_700_000_000_050, Some(b"k"), b"after a gap", vec![]),
        r(
            108,
            1_700_000_000_051,
            None,
            b"v",
            vec![h("\u{00e9}t\u{00e9}", b"utf8 key")],
        ),
        r(109, 1_700_000_000_200, None, &[b'z'; 150], vec![]),
        r(110, 1_700_000_000_201, Some(b"last"), b"the end", vec![]),
    ]
}

// ---- an independent decoder, written from FORMAT.md ----

struct Bytes<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Bytes<'a> {
    fn take(&mut self, n: usize) -> &'a [u8] {
        let s = &self.b[self.pos..self.pos + n];
        self.pos += n;
        s
    }
    fn u8(&mut self) -> u8 {
        self.take(1)[0]
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.take(2).try_into().unwrap())
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.take(4).try_into().unwrap())
    }
    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.take(8).try_into().unwrap())
    }
    fn i64(&mut self) -> i64 {
        self.u64() as i64
    }
    fn varint(&mut self) -> u64 {
        let mut v = 0u64;
        for i in 0.. {
            let b = self.u8();
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                break;
            }
        }
        v
    }
    /// Frame-of-reference + bit-packed column of `n` values (FORMAT.md).
    fn packed(&mut self, n: usize) -> Vec<u64> {
        let min = self.varint();
        let w = self.u8() as usize;
        let bytes = self.take((n * w).div_ceil(8));
        (0..n)
            .map(|i| {
                let mut v = 0u64;
                for bit in 0..w {
                    let at = i * w + bit;
                    v |= u64::from((bytes[at / 8] >> (at % 8)) & 1) << bit;
                }
                min + v
            })
            .collect()
    }
    fn zigzag(&mut self) -> i64 {
        let u = self.varint();
        ((u >> 1) as i64) ^ -((u & 1) as i64)
    }
}

#[derive(Debug, PartialEq)]
struct Entry {
    first: i64,
    last: i64,
    min_ts: i64,
    max_ts: i64,
    position: u64,
    frame_len: u32,
    count: u32,
}

struct Decoded {
    header: Vec<u8>,
    entries: Vec<Entry>,
    payloads: Vec<Vec<u8>>,
    records: Vec<Record>,
}

fn decode_per_spec(seg: &[u8]) -> Decoded {
    let len = seg.len();
    // header
    let mut hdr = Bytes { b: seg, pos: 0 };
    assert_eq!(hdr.take(8), b"SHSEGMNT", "header magic");
    let version = hdr.u16();
    assert!(version == 1 || version == 2, "header version {version}");
    assert_eq!(hdr.u8(), 1, "codec = LZ4");
    assert_eq!(hdr.u8(), 0, "reserved");
    assert_eq!(hdr.u32(), crc32c::crc32c(&seg[0..12]), "header crc");
    // trailer
    let mut t = Bytes {
        b: seg,
        pos: len - 32,
    };
    let footer_position = t.u64();
    let footer_len = t.u32();
    let footer_crc = t.u32();
    assert_eq!(t.u16(), version, "trailer version");
    assert_eq!(t.u16(), 0, "trailer reserved");
    assert_eq!(
        t.u32(),
        crc32c::crc32c(&seg[len - 32..len - 12]),
        "trailer crc"
    );
    assert_eq!(t.take(8), b"SHSEGEND", "trailer magic");
    assert_eq!(footer_position + u64::from(footer_len) + 32, len as u64);
    let footer = &seg[footer_position as usize..len - 32];
    assert_eq!(crc32c::crc32c(footer), footer_crc, "footer crc");
    // footer
    let mut f = Bytes { b: footer, pos: 0 };
    let count = f.u32();
    assert_eq!(footer_len, 4 + 48 * count);
    let entries: Vec<Entry> = (0..count)
        .map(|_| Entry {
            first: f.i64(),
            last: f.i64(),
            min_ts: f.i64(),
            max_ts: f.i64(),
            position: f.u64(),
            frame_len: f.u32(),
            count: f.u32(),
        })
        .collect();
    let mut expected_pos = 16;
    let mut nullable_blocks = 0;
    let mut records = Vec::new();
    let mut payloads = Vec::new();
    for e in &entries {
        assert_eq!(e.position, expected_pos, "frames tile the object");
        expected_pos += u64::from(e.frame_len);
        // frame
        let frame = &seg[e.position as usize..(e.position + u64::from(e.frame_len)) as usize];
        let mut fr = Bytes { b: frame, pos: 0 };
        let uncompressed_len = fr.u32();
        assert_eq!(fr.u32(), e.count, "frame record count");
        let compressed_len = fr.u32();
        assert_eq!(compressed_len, e.frame_len - 16);
        let crc = fr.u32();
        let mut expect_crc = crc32c::crc32c(&frame[0..12]);
        expect_crc = crc32c::crc32c_append(expect_crc, &frame[16..]);
        assert_eq!(crc, expect_crc, "frame crc");
        let payload = lz4_flex::block::decompress(&frame[16..], uncompressed_len as usize).unwrap();
        assert_eq!(payload.len(), uncompressed_len as usize);
        // payload
        let n = e.count as usize;
        let mut p = Bytes {
            b: &payload,
            pos: 0,
        };
        let base_offset = p.i64();
        let base_ts = p.i64();
        let flags = p.u8();
        assert_eq!(flags & !3, 0, "flags other than bits 0 and 1");
        // Bit 1 (v2): value lengths are 0 = null, n + 1 = n bytes.
        let nullable = flags & 2 == 2;
        assert!(!nullable || version == 2, "nullable lengths only in v2");
        nullable_blocks += usize::from(nullable);
        let value_of = |field: u64| -> Option<usize> {
            if nullable {
                field.checked_sub(1).map(|n| n as usize)
            } else {
                Some(field as usize)
            }
        };
        assert_eq!(p.take(3), [0, 0, 0]);
        assert_eq!(base_offset, e.first);
        let offsets: Vec<i64> = if flags & 1 == 1 {
            (0..n as i64).map(|i| base_offset + i).collect()
        } else {
            let mut prev = base_offset - 1;
            (0..n)
                .map(|_| {
                    prev = prev + 1 + p.varint() as i64;
                    prev
                })
                .collect()
        };
        let mut prev_ts = base_ts;
        let timestamps: Vec<i64> = (0..n)
            .map(|_| {
                prev_ts = prev_ts.wrapping_add(p.zigzag());
                prev_ts
            })
            .collect();
        let key_lens = p.packed(n);
        let value_lens = p.packed(n);
        let header_counts = p.packed(n);
        let headers: Vec<Vec<Header>> = header_counts
            .iter()
            .map(|&c| {
                (0..c)
                    .map(|_| {
                        let kl = p.varint() as usize;
                        let key = String::from_utf8(p.take(kl).to_vec()).unwrap();
                        let value = value_of(p.varint()).map(|vl| p.take(vl).to_vec());
                        Header { key, value }
                    })
                    .collect()
            })
            .collect();
        let keys: Vec<Option<Vec<u8>>> = key_lens
            .iter()
            .map(|&k| (k > 0).then(|| p.take(k as usize - 1).to_vec()))
            .collect();
        let values: Vec<Option<Vec<u8>>> = value_lens
            .iter()
            .map(|&v| value_of(v).map(|n| p.take(n).to_vec()))
            .collect();
        assert_eq!(p.pos, payload.len(), "payload ends after the last value");
        assert_eq!(*offsets.last().unwrap(), e.last);
        assert_eq!(*timestamps.iter().min().unwrap(), e.min_ts);
        assert_eq!(*timestamps.iter().max().unwrap(), e.max_ts);
        for i in 0..n {
            records.push(Record {
                offset: offsets[i],
                timestamp_ms: timestamps[i],
                key: keys[i].clone(),
                value: values[i].clone(),
                headers: headers[i].clone(),
            });
        }
        payloads.push(payload);
    }
    assert_eq!(expected_pos, footer_position);
    assert_eq!(
        version == 2,
        nullable_blocks > 0,
        "v2 exactly when a block is nullable"
    );
    Decoded {
        header: seg[0..16].to_vec(),
        entries,
        payloads,
        records,
    }
}

/// Format v2: a null value, a null header value beside an empty one and a
/// duplicate key, an empty value, a plain block (no nulls) between
/// nullable ones, and a null value alone in a block.
fn golden_v2_records() -> Vec<Record> {
    let null = |offset, ts, key: Option<&[u8]>, headers| Record {
        value: None,
        ..r(offset, ts, key, b"", headers)
    };
    let nh = |key: &str| Header {
        key: key.to_string(),
        value: None,
    };
    vec![
        r(7, 1_700_000_000_000, Some(b"a"), b"{\"v\":1}", vec![]),
        null(8, 1_700_000_000_001, Some(b"a"), vec![]),
        r(
            9,
            1_700_000_000_002,
            None,
            b"",
            vec![nh("n"), h("n", b""), h("n", b"x")],
        ),
        r(10, 1_700_000_000_003, Some(b""), &[0xab; 90], vec![]),
        r(
            11,
            1_700_000_000_004,
            Some(b"plain"),
            &[0xcd; 70],
            vec![h("e", b"")],
        ),
        null(13, 1_699_999_999_999, None, vec![nh("only")]),
    ]
}

fn write_records(records: &[Record]) -> Vec<u8> {
    let mut w = SegmentWriter::new(GOLDEN_BLOCK_BYTES);
    for r in records {
        w.push(r).unwrap();
    }
    w.finish().unwrap().0
}

#[test]
fn golden_v2_decodes_per_the_spec_and_todays_writer_writes_it() {
    if std::env::var("STREAMHOUSE_WRITE_GOLDEN").is_ok_and(|v| v == "1") {
        std::fs::write(
            common::project_path(GOLDEN_V2),
            write_records(&golden_v2_records()),
        )
        .unwrap();
    }
    let golden = std::fs::read(common::project_path(GOLDEN_V2)).expect("tests/data/golden-v2.seg");
    let decoded = decode_per_spec(&golden);
    assert_eq!(&golden[8..10], &[2, 0], "version 2");
    assert!(
        decoded.payloads.iter().any(|p| p[16] & 2 == 0),
        "a plain block too"
    );
    assert!(decoded.payloads.iter().filter(|p| p[16] & 2 == 2).count() >= 2);
    assert_eq!(
        decoded.records,
        golden_v2_records(),
        "every field, per FORMAT.md"
    );
    assert_eq!(verify(&golden).unwrap(), golden_v2_records());
    let fresh = decode_per_spec(&write_records(&golden_v2_records()));
    assert_eq!(fresh.header, decoded.header);
    assert_eq!(
        fresh.payloads, decoded.payloads,
        "decompressed blocks, byte for byte"
    );
}

fn write_golden_records() -> Vec<u8> {
    let mut w = SegmentWriter::new(GOLDEN_BLOCK_BYTES);
    for r in golden_records() {
        w.push(&r).unwrap();
    }
    w.finish().unwrap().0
}

#[test]
fn golden_segment_decodes_per_the_spec() {
    if std::env::var("STREAMHOUSE_WRITE_GOLDEN").is_ok_and(|v| v == "1") {
        std::fs::write(common::project_path(GOLDEN), write_golden_records()).unwrap();
    }
    let golden = std::fs::read(common::project_path(GOLDEN)).expect("tests/data/golden-v1.seg");
    let decoded = decode_per_spec(&golden);
    assert!(decoded.entries.len() >= 3, "golden has several blocks");
    assert!(
        decoded.payloads.iter().any(|p| p[16] & 1 == 0),
        "golden has a block with an offset gap"
    );
    assert_eq!(
        decoded.records,
        golden_records(),
        "every field, per FORMAT.md"
    );
    // The library agrees.
    assert_eq!(verify(&golden).unwrap(), golden_records());
}

#[test]
fn todays_writer_still_writes_the_golden_layout() {
    let golden = decode_per_spec(&std::fs::read(common::project_path(GOLDEN)).unwrap());
    let fresh = decode_per_spec(&write_golden_records());
    // Compressed sizes may differ with another LZ4 build; the layout may not.
    assert_eq!(fresh.header, golden.header);
    assert_eq!(
        fresh.payloads, golden.payloads,
        "decompressed blocks, byte for byte"
    );
    let strip = |es: &[Entry]| -> Vec<(i64, i64, i64, i64, u32)> {
        es.iter()
            .map(|e| (e.first, e.last, e.min_ts, e.max_ts, e.count))
            .collect()
    };
    assert_eq!(strip(&fresh.entries), strip(&golden.entries));
}
