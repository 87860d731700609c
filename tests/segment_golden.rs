//! Keeps docs/FORMAT.md, the code and the bytes on disk in agreement.
//!
//! `tests/data/golden-v1.seg` was written by the v1 writer from
//! [`golden_records`]. This test decodes it twice: with an independent
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
const GOLDEN_BLOCK_BYTES: usize = 120;

fn h(key: &str, value: &[u8]) -> Header {
    Header {
        key: key.to_string(),
        value: value.to_vec(),
    }
}

fn r(offset: i64, ts: i64, key: Option<&[u8]>, value: &[u8], headers: Vec<Header>) -> Record {
    Record {
        offset,
        timestamp_ms: ts,
        key: key.map(<[u8]>::to_vec),
        value: value.to_vec(),
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
    assert_eq!(hdr.u16(), 1, "header version");
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
    assert_eq!(t.u16(), 1, "trailer version");
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
                        let vl = p.varint() as usize;
                        Header {
                            key,
                            value: p.take(vl).to_vec(),
                        }
                    })
                    .collect()
            })
            .collect();
        let keys: Vec<Option<Vec<u8>>> = key_lens
            .iter()
            .map(|&k| (k > 0).then(|| p.take(k as usize - 1).to_vec()))
            .collect();
        let values: Vec<Vec<u8>> = value_lens
            .iter()
            .map(|&v| p.take(v as usize).to_vec())
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
    Decoded {
        header: seg[0..16].to_vec(),
        entries,
        payloads,
        records,
    }
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
