//! Segment format v1: constants, fixed-width layouts and the error type.
//!
//! `docs/FORMAT.md` is the byte-level specification; this file is its one
//! implementation of fixed-width parts (header, frame header, index entry,
//! trailer) and of the varints used inside blocks. The golden-segment test in
//! `tests/segment_golden.rs` keeps the two in agreement.

use std::fmt;

/// First 8 bytes of every segment object.
pub const HEADER_MAGIC: [u8; 8] = *b"SHSEGMNT";
/// Last 8 bytes of every segment object.
pub const TRAILER_MAGIC: [u8; 8] = *b"SHSEGEND";
/// The only version this code writes and reads.
pub const FORMAT_VERSION: u16 = 1;
/// Compression codec id: LZ4 block format (no frame, no size prefix).
pub const CODEC_LZ4: u8 = 1;

pub const HEADER_LEN: usize = 16;
pub const FRAME_HEADER_LEN: usize = 16;
pub const BLOCK_PREAMBLE_LEN: usize = 20;
pub const INDEX_ENTRY_LEN: usize = 48;
pub const FOOTER_COUNT_LEN: usize = 4;
pub const TRAILER_LEN: usize = 32;

/// Block preamble flag: offsets are `base_offset + i`, no offset column.
pub const FLAG_CONTIGUOUS_OFFSETS: u8 = 0x01;

/// Default target for the uncompressed size of a block.
pub const DEFAULT_BLOCK_BYTES: usize = 1024 * 1024;
/// Upper bound a reader accepts for one block's uncompressed size. A block
/// can exceed the 1 MiB target when a single record is larger; this bound only
/// stops a corrupt length from allocating without limit.
pub const MAX_BLOCK_UNCOMPRESSED: u32 = 512 * 1024 * 1024;

/// Which part of a segment an error is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    Header,
    Trailer,
    Footer,
    /// A block, by its index in the footer (0-based).
    Block(u32),
    /// An entry of a write-ahead log file (which shares the varint codec).
    WalEntry,
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Part::Header => f.write_str("header"),
            Part::Trailer => f.write_str("trailer"),
            Part::Footer => f.write_str("footer"),
            Part::Block(i) => write!(f, "block {i}"),
            Part::WalEntry => f.write_str("WAL entry"),
        }
    }
}

/// What is wrong with the bytes of a segment. Every decoder returns one of
/// these instead of panicking or returning unchecked data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FormatError {
    /// The magic bytes are not those of a StreamHouse segment.
    BadMagic { part: Part },
    /// The segment was written by a format version this build cannot read.
    UnsupportedVersion { found: u16, supported: u16 },
    /// The compression codec id is unknown.
    UnsupportedCodec { found: u8 },
    /// A stored CRC-32C does not match the bytes it covers.
    Checksum {
        part: Part,
        stored: u32,
        computed: u32,
    },
    /// Fewer bytes are present than the part needs.
    Truncated {
        part: Part,
        needed: u64,
        available: u64,
    },
    /// A length, offset or count is inconsistent with the rest of the segment.
    Malformed { part: Part, reason: String },
}

impl FormatError {
    pub(crate) fn malformed(part: Part, reason: impl Into<String>) -> Self {
        FormatError::Malformed {
            part,
            reason: reason.into(),
        }
    }

    /// The part of the segment the error names.
    pub fn part(&self) -> Option<Part> {
        match self {
            FormatError::BadMagic { part }
            | FormatError::Checksum { part, .. }
            | FormatError::Truncated { part, .. }
            | FormatError::Malformed { part, .. } => Some(*part),
            FormatError::UnsupportedVersion { .. } | FormatError::UnsupportedCodec { .. } => None,
        }
    }
}

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FormatError::BadMagic { part } => write!(f, "{part}: bad magic bytes"),
            FormatError::UnsupportedVersion { found, supported } => write!(
                f,
                "unsupported segment format version {found} (this build reads version {supported})"
            ),
            FormatError::UnsupportedCodec { found } => {
                write!(f, "unsupported compression codec id {found}")
            }
            FormatError::Checksum {
                part,
                stored,
                computed,
            } => write!(
                f,
                "{part}: checksum mismatch (stored {stored:#010x}, computed {computed:#010x})"
            ),
            FormatError::Truncated {
                part,
                needed,
                available,
            } => write!(
                f,
                "{part}: truncated (needs {needed} bytes, {available} available)"
            ),
            FormatError::Malformed { part, reason } => write!(f, "{part}: {reason}"),
        }
    }
}

impl std::error::Error for FormatError {}

/// The 16-byte segment header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentHeader {
    pub version: u16,
    pub codec: u8,
}

impl SegmentHeader {
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..8].copy_from_slice(&HEADER_MAGIC);
        b[8..10].copy_from_slice(&self.version.to_le_bytes());
        b[10] = self.codec;
        b[11] = 0;
        let crc = crc32c::crc32c(&b[0..12]);
        b[12..16].copy_from_slice(&crc.to_le_bytes());
        b
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, FormatError> {
        let b = take(bytes, HEADER_LEN, Part::Header)?;
        if b[0..8] != HEADER_MAGIC {
            return Err(FormatError::BadMagic { part: Part::Header });
        }
        check_crc(Part::Header, &b[0..12], le_u32(&b[12..16]))?;
        let version = le_u16(&b[8..10]);
        if version != FORMAT_VERSION {
            return Err(FormatError::UnsupportedVersion {
                found: version,
                supported: FORMAT_VERSION,
            });
        }
        if b[10] != CODEC_LZ4 {
            return Err(FormatError::UnsupportedCodec { found: b[10] });
        }
        if b[11] != 0 {
            return Err(FormatError::malformed(
                Part::Header,
                "reserved byte is not zero",
            ));
        }
        Ok(SegmentHeader {
            version,
            codec: b[10],
        })
    }
}

/// The 16-byte header in front of every compressed block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    pub uncompressed_len: u32,
    pub record_count: u32,
    pub compressed_len: u32,
    /// CRC-32C of the first 12 bytes of this header followed by the payload.
    pub crc: u32,
}

impl FrameHeader {
    /// Encodes the header for `payload`, computing its CRC.
    pub fn encode(uncompressed_len: u32, record_count: u32, payload: &[u8]) -> [u8; 16] {
        let mut b = [0u8; FRAME_HEADER_LEN];
        b[0..4].copy_from_slice(&uncompressed_len.to_le_bytes());
        b[4..8].copy_from_slice(&record_count.to_le_bytes());
        b[8..12].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        let crc = crc32c::crc32c_append(crc32c::crc32c(&b[0..12]), payload);
        b[12..16].copy_from_slice(&crc.to_le_bytes());
        b
    }

    pub fn decode(frame: &[u8], part: Part) -> Result<Self, FormatError> {
        let b = take(frame, FRAME_HEADER_LEN, part)?;
        Ok(FrameHeader {
            uncompressed_len: le_u32(&b[0..4]),
            record_count: le_u32(&b[4..8]),
            compressed_len: le_u32(&b[8..12]),
            crc: le_u32(&b[12..16]),
        })
    }
}

/// One footer index entry: where a block is and what it holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockIndexEntry {
    pub first_offset: i64,
    pub last_offset: i64,
    pub min_timestamp_ms: i64,
    pub max_timestamp_ms: i64,
    /// Byte position of the block's frame from the start of the object.
    pub position: u64,
    /// Length of the frame: 16-byte frame header plus compressed payload.
    pub frame_len: u32,
    pub record_count: u32,
}

impl BlockIndexEntry {
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.first_offset.to_le_bytes());
        out.extend_from_slice(&self.last_offset.to_le_bytes());
        out.extend_from_slice(&self.min_timestamp_ms.to_le_bytes());
        out.extend_from_slice(&self.max_timestamp_ms.to_le_bytes());
        out.extend_from_slice(&self.position.to_le_bytes());
        out.extend_from_slice(&self.frame_len.to_le_bytes());
        out.extend_from_slice(&self.record_count.to_le_bytes());
    }

    pub fn decode(b: &[u8]) -> Self {
        debug_assert_eq!(b.len(), INDEX_ENTRY_LEN);
        BlockIndexEntry {
            first_offset: le_i64(&b[0..8]),
            last_offset: le_i64(&b[8..16]),
            min_timestamp_ms: le_i64(&b[16..24]),
            max_timestamp_ms: le_i64(&b[24..32]),
            position: le_u64(&b[32..40]),
            frame_len: le_u32(&b[40..44]),
            record_count: le_u32(&b[44..48]),
        }
    }

    /// The byte range of the block's frame within the object.
    pub fn frame_range(&self) -> std::ops::Range<u64> {
        self.position..self.position + u64::from(self.frame_len)
    }
}

/// The 32-byte trailer at the very end of a segment object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Trailer {
    pub footer_position: u64,
    pub footer_len: u32,
    pub footer_crc: u32,
    pub version: u16,
}

impl Trailer {
    pub fn encode(&self) -> [u8; TRAILER_LEN] {
        let mut b = [0u8; TRAILER_LEN];
        b[0..8].copy_from_slice(&self.footer_position.to_le_bytes());
        b[8..12].copy_from_slice(&self.footer_len.to_le_bytes());
        b[12..16].copy_from_slice(&self.footer_crc.to_le_bytes());
        b[16..18].copy_from_slice(&self.version.to_le_bytes());
        // b[18..20] reserved, zero
        let crc = crc32c::crc32c(&b[0..20]);
        b[20..24].copy_from_slice(&crc.to_le_bytes());
        b[24..32].copy_from_slice(&TRAILER_MAGIC);
        b
    }

    /// Decodes the trailer from the last 32 bytes of `tail`.
    pub fn decode(tail: &[u8]) -> Result<Self, FormatError> {
        if tail.len() < TRAILER_LEN {
            return Err(FormatError::Truncated {
                part: Part::Trailer,
                needed: TRAILER_LEN as u64,
                available: tail.len() as u64,
            });
        }
        let b = &tail[tail.len() - TRAILER_LEN..];
        if b[24..32] != TRAILER_MAGIC {
            return Err(FormatError::BadMagic {
                part: Part::Trailer,
            });
        }
        check_crc(Part::Trailer, &b[0..20], le_u32(&b[20..24]))?;
        let version = le_u16(&b[16..18]);
        if version != FORMAT_VERSION {
            return Err(FormatError::UnsupportedVersion {
                found: version,
                supported: FORMAT_VERSION,
            });
        }
        if b[18..20] != [0, 0] {
            return Err(FormatError::malformed(
                Part::Trailer,
                "reserved bytes are not zero",
            ));
        }
        Ok(Trailer {
            footer_position: le_u64(&b[0..8]),
            footer_len: le_u32(&b[8..12]),
            footer_crc: le_u32(&b[12..16]),
            version,
        })
    }
}

// ---- little helpers shared by the writer and the reader ----

pub(crate) fn check_crc(part: Part, bytes: &[u8], stored: u32) -> Result<(), FormatError> {
    let computed = crc32c::crc32c(bytes);
    if computed == stored {
        Ok(())
    } else {
        Err(FormatError::Checksum {
            part,
            stored,
            computed,
        })
    }
}

fn take(bytes: &[u8], n: usize, part: Part) -> Result<&[u8], FormatError> {
    bytes.get(..n).ok_or(FormatError::Truncated {
        part,
        needed: n as u64,
        available: bytes.len() as u64,
    })
}

// The slices below always have the exact width (callers index fixed ranges
// of arrays they have length-checked), so the conversions cannot fail.
pub(crate) fn le_u16(b: &[u8]) -> u16 {
    u16::from_le_bytes([b[0], b[1]])
}
pub(crate) fn le_u32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}
pub(crate) fn le_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}
pub(crate) fn le_i64(b: &[u8]) -> i64 {
    le_u64(b) as i64
}

/// Appends `v` as an unsigned LEB128 varint.
pub(crate) fn put_uvarint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Appends `v` zigzag-encoded as a varint (small magnitudes of either sign
/// take one byte).
pub(crate) fn put_varint(out: &mut Vec<u8>, v: i64) {
    put_uvarint(out, zigzag(v));
}

/// Maps signed to unsigned so that small magnitudes stay small.
pub(crate) fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// Number of bytes `put_uvarint(v)` writes.
pub(crate) fn uvarint_len(v: u64) -> usize {
    let bits = 64 - (v | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// A column of small unsigned integers (lengths, counts) stored as
/// frame-of-reference plus bit-packing: the column's minimum as a varint, a
/// bit width `w` (u8, 0..=32), then each `value - min` in `w` bits, packed
/// LSB-first into `ceil(n * w / 8)` bytes. Lengths of similar records need
/// only a few bits each, where varints would take a byte that LZ4 cannot
/// compress away.
#[derive(Default, Clone, Debug)]
pub(crate) struct PackedColumn {
    values: Vec<u32>,
    min: u32,
    max: u32,
}

fn bit_width(x: u32) -> usize {
    (32 - x.leading_zeros()) as usize
}

impl PackedColumn {
    pub(crate) fn push(&mut self, v: u32) {
        if self.values.is_empty() {
            self.min = v;
            self.max = v;
        } else {
            self.min = self.min.min(v);
            self.max = self.max.max(v);
        }
        self.values.push(v);
    }

    pub(crate) fn clear(&mut self) {
        self.values.clear();
    }

    fn len_for(n: usize, min: u32, max: u32) -> usize {
        uvarint_len(u64::from(min)) + 1 + (n * bit_width(max - min)).div_ceil(8)
    }

    /// Encoded size in bytes.
    pub(crate) fn encoded_len(&self) -> usize {
        Self::len_for(self.values.len(), self.min, self.max)
    }

    /// Encoded size if `v` were pushed.
    pub(crate) fn encoded_len_with(&self, v: u32) -> usize {
        if self.values.is_empty() {
            return Self::len_for(1, v, v);
        }
        Self::len_for(self.values.len() + 1, self.min.min(v), self.max.max(v))
    }

    pub(crate) fn encode_into(&self, out: &mut Vec<u8>) {
        put_uvarint(out, u64::from(self.min));
        let w = bit_width(self.max - self.min);
        out.push(w as u8);
        if w == 0 {
            return;
        }
        let (mut acc, mut bits) = (0u64, 0usize);
        for &v in &self.values {
            acc |= u64::from(v - self.min) << bits;
            bits += w;
            while bits >= 8 {
                out.push(acc as u8);
                acc >>= 8;
                bits -= 8;
            }
        }
        if bits > 0 {
            out.push(acc as u8);
        }
    }
}

/// A bounds-checked cursor over a decoded block payload.
pub(crate) struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    part: Part,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(buf: &'a [u8], pos: usize, part: Part) -> Self {
        Cursor { buf, pos, part }
    }

    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    pub(crate) fn uvarint(&mut self, what: &str) -> Result<u64, FormatError> {
        let mut v: u64 = 0;
        for i in 0..10 {
            let Some(&byte) = self.buf.get(self.pos) else {
                return Err(FormatError::malformed(
                    self.part,
                    format!("{what}: varint runs past the end of the block"),
                ));
            };
            self.pos += 1;
            if i == 9 && byte > 1 {
                return Err(FormatError::malformed(
                    self.part,
                    format!("{what}: varint overflows 64 bits"),
                ));
            }
            v |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(FormatError::malformed(
            self.part,
            format!("{what}: varint longer than 10 bytes"),
        ))
    }

    pub(crate) fn varint(&mut self, what: &str) -> Result<i64, FormatError> {
        let u = self.uvarint(what)?;
        Ok(((u >> 1) as i64) ^ -((u & 1) as i64))
    }

    /// A length that must fit in the rest of the block.
    pub(crate) fn len(&mut self, what: &str) -> Result<usize, FormatError> {
        let v = self.uvarint(what)?;
        let rest = (self.buf.len() - self.pos) as u64;
        if v > rest {
            return Err(FormatError::malformed(
                self.part,
                format!("{what} {v} exceeds the {rest} bytes left in the block"),
            ));
        }
        Ok(v as usize)
    }

    /// Reads a [`PackedColumn`] of `n` values.
    pub(crate) fn packed(&mut self, n: usize, what: &str) -> Result<Vec<u32>, FormatError> {
        let min = u32::try_from(self.uvarint(what)?).map_err(|_| {
            FormatError::malformed(self.part, format!("{what}: minimum exceeds 32 bits"))
        })?;
        let w = self.skip(1, what)?;
        let w = usize::from(self.buf[w.start]);
        if w > 32 {
            return Err(FormatError::malformed(
                self.part,
                format!("{what}: bit width {w} exceeds 32"),
            ));
        }
        let bytes = self.skip((n * w).div_ceil(8), what)?;
        let packed = &self.buf[bytes];
        let mask = if w == 32 {
            u64::from(u32::MAX)
        } else {
            (1u64 << w) - 1
        };
        let mut out = Vec::with_capacity(n);
        let (mut acc, mut bits, mut next) = (0u64, 0usize, 0usize);
        for _ in 0..n {
            while bits < w {
                acc |= u64::from(packed[next]) << bits;
                next += 1;
                bits += 8;
            }
            let delta = (acc & mask) as u32;
            acc >>= w;
            bits -= w;
            out.push(min.checked_add(delta).ok_or_else(|| {
                FormatError::malformed(self.part, format!("{what}: value overflows 32 bits"))
            })?);
        }
        Ok(out)
    }

    /// Skips `n` bytes, returning the range they occupy.
    pub(crate) fn skip(
        &mut self,
        n: usize,
        what: &str,
    ) -> Result<std::ops::Range<usize>, FormatError> {
        let start = self.pos;
        let end = start
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| {
                FormatError::malformed(self.part, format!("{what} runs past the end of the block"))
            })?;
        self.pos = end;
        Ok(start..end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_at_the_edges() {
        let values = [0u64, 1, 127, 128, 16_383, 16_384, u32::MAX as u64, u64::MAX];
        for &v in &values {
            let mut buf = Vec::new();
            put_uvarint(&mut buf, v);
            assert_eq!(buf.len(), uvarint_len(v), "length of {v}");
            let mut c = Cursor::new(&buf, 0, Part::Block(0));
            assert_eq!(c.uvarint("v").unwrap(), v);
            assert_eq!(c.pos(), buf.len());
        }
        for &v in &[0i64, -1, 1, -64, 64, i64::MIN, i64::MAX] {
            let mut buf = Vec::new();
            put_varint(&mut buf, v);
            assert_eq!(Cursor::new(&buf, 0, Part::Block(0)).varint("v").unwrap(), v);
        }
    }

    #[test]
    fn packed_columns_round_trip() {
        let cases: Vec<Vec<u32>> = vec![
            vec![0],
            vec![7, 7, 7, 7],
            vec![33, 45, 38, 40, 41, 33],
            vec![0, u32::MAX, 5],
            (0..1000).map(|i| (i * 7919) % 1024).collect(),
        ];
        for values in cases {
            let mut col = PackedColumn::default();
            for (i, &v) in values.iter().enumerate() {
                if i > 0 {
                    let predicted = col.encoded_len_with(v);
                    col.push(v);
                    assert_eq!(col.encoded_len(), predicted);
                } else {
                    col.push(v);
                }
            }
            let mut buf = Vec::new();
            col.encode_into(&mut buf);
            assert_eq!(buf.len(), col.encoded_len());
            let mut c = Cursor::new(&buf, 0, Part::Block(0));
            assert_eq!(c.packed(values.len(), "col").unwrap(), values);
            assert_eq!(c.pos(), buf.len());
        }
        // A width over 32 and a truncated body are errors.
        assert!(Cursor::new(&[0, 33, 0, 0, 0, 0, 0], 0, Part::Block(0))
            .packed(1, "c")
            .is_err());
        assert!(Cursor::new(&[0, 8], 0, Part::Block(0))
            .packed(1, "c")
            .is_err());
    }

    #[test]
    fn overlong_and_truncated_varints_are_errors() {
        let overlong = [0xffu8; 11];
        assert!(Cursor::new(&overlong, 0, Part::Block(0))
            .uvarint("x")
            .is_err());
        let overflow = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02];
        assert!(Cursor::new(&overflow, 0, Part::Block(0))
            .uvarint("x")
            .is_err());
        let truncated = [0x80u8];
        assert!(Cursor::new(&truncated, 0, Part::Block(0))
            .uvarint("x")
            .is_err());
    }

    #[test]
    fn header_and_trailer_round_trip() {
        let h = SegmentHeader {
            version: FORMAT_VERSION,
            codec: CODEC_LZ4,
        };
        assert_eq!(SegmentHeader::decode(&h.encode()).unwrap(), h);
        let t = Trailer {
            footer_position: 1234,
            footer_len: 52,
            footer_crc: 0xdead_beef,
            version: FORMAT_VERSION,
        };
        assert_eq!(Trailer::decode(&t.encode()).unwrap(), t);
    }
}
