//! Segment format v1: constants and the fixed-width parts.
//!
//! `docs/FORMAT.md` is the byte-level specification; this file is its one
//! implementation of the fixed-width parts (header, frame header, index
//! entry, trailer). The golden-segment test in `tests/segment_golden.rs`
//! keeps the two in agreement.

use super::error::{FormatError, Part};
use crate::codec::{le_i64, le_u16, le_u32, le_u64};

/// First 8 bytes of every segment object.
pub const HEADER_MAGIC: [u8; 8] = *b"SHSEGMNT";
/// Last 8 bytes of every segment object.
pub const TRAILER_MAGIC: [u8; 8] = *b"SHSEGEND";
/// The version of a segment without nulls: v1, byte for byte.
pub const FORMAT_VERSION: u16 = 1;
/// The version of a segment with a block that uses
/// [`FLAG_NULLABLE_LENGTHS`] (a null value or null header value); v1
/// readers refuse it by its version rather than misread it.
pub const FORMAT_VERSION_NULLS: u16 = 2;

fn check_version(version: u16) -> Result<(), FormatError> {
    if version == FORMAT_VERSION || version == FORMAT_VERSION_NULLS {
        Ok(())
    } else {
        Err(FormatError::UnsupportedVersion {
            found: version,
            supported: FORMAT_VERSION_NULLS,
        })
    }
}
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
/// Block flag bit 1 (format v2): value and header value lengths are
/// nullable fields (0 = null, n + 1 = n bytes), as key lengths always are.
pub const FLAG_NULLABLE_LENGTHS: u8 = 0x02;

/// Default target for the uncompressed size of a block.
pub const DEFAULT_BLOCK_BYTES: usize = 1024 * 1024;
/// Upper bound a reader accepts for one block's uncompressed size. A block
/// can exceed the 1 MiB target when a single record is larger; this bound only
/// stops a corrupt length from allocating without limit.
pub const MAX_BLOCK_UNCOMPRESSED: u32 = 512 * 1024 * 1024;

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
        check_version(version)?;
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
        check_version(version)?;
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

#[cfg(test)]
mod tests {
    use super::*;

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
