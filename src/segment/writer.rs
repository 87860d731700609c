//! Builds a segment object from records in offset order.

use super::columns::PackedColumn;
use super::format::{
    BlockIndexEntry, FrameHeader, SegmentHeader, Trailer, BLOCK_PREAMBLE_LEN, CODEC_LZ4,
    DEFAULT_BLOCK_BYTES, FLAG_CONTIGUOUS_OFFSETS, FLAG_NULLABLE_LENGTHS, FORMAT_VERSION,
    FORMAT_VERSION_NULLS, FRAME_HEADER_LEN, HEADER_LEN,
};
use crate::codec::{
    header_encoded_len, put_header, put_uvarint, put_varint, uvarint_len, zigzag, Lengths,
};
use crate::record::{Header, Record};
use std::fmt;

/// Why a record was refused by the writer. These are caller bugs (the
/// partition writer assigns offsets), not data corruption.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteError {
    /// Offsets must strictly increase within a segment.
    OffsetNotIncreasing { previous: i64, offset: i64 },
    /// Offsets are non-negative.
    NegativeOffset(i64),
    /// A segment needs at least one record.
    Empty,
    /// A single block would exceed the 4 GiB a frame can describe.
    BlockTooLarge(usize),
}

impl fmt::Display for WriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WriteError::OffsetNotIncreasing { previous, offset } => write!(
                f,
                "offset {offset} does not follow {previous}: offsets must strictly increase"
            ),
            WriteError::NegativeOffset(o) => write!(f, "offset {o} is negative"),
            WriteError::Empty => f.write_str("a segment needs at least one record"),
            WriteError::BlockTooLarge(n) => write!(f, "block of {n} bytes exceeds 4 GiB"),
        }
    }
}

impl std::error::Error for WriteError {}

/// What a finished segment holds; the metadata row is made from this.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentSummary {
    pub base_offset: i64,
    pub last_offset: i64,
    pub record_count: u64,
    pub min_timestamp_ms: i64,
    pub max_timestamp_ms: i64,
    pub size_bytes: u64,
    pub block_count: u32,
    /// Sum of key, value and header bytes as given to the writer.
    pub payload_bytes: u64,
}

/// Column buffers of the block being filled (see FORMAT.md, "Block payload").
#[derive(Default)]
struct BlockBuilder {
    count: u32,
    base_offset: i64,
    base_timestamp: i64,
    prev_offset: i64,
    prev_timestamp: i64,
    min_timestamp: i64,
    max_timestamp: i64,
    contiguous: bool,
    /// Nullable once a record with a null is in the block (then the block
    /// has FLAG_NULLABLE_LENGTHS); plain otherwise, as in format v1.
    lengths: Lengths,
    offset_deltas: Vec<u8>,
    timestamp_deltas: Vec<u8>,
    key_lens: PackedColumn,
    value_lens: PackedColumn,
    header_counts: PackedColumn,
    header_data: Vec<u8>,
    keys: Vec<u8>,
    values: Vec<u8>,
}

impl BlockBuilder {
    fn uncompressed_len(&self) -> usize {
        let offsets = if self.contiguous {
            0
        } else {
            self.offset_deltas.len()
        };
        BLOCK_PREAMBLE_LEN
            + offsets
            + self.timestamp_deltas.len()
            + self.key_lens.encoded_len()
            + self.value_lens.encoded_len()
            + self.header_counts.encoded_len()
            + self.header_data.len()
            + self.keys.len()
            + self.values.len()
    }

    fn clear(&mut self) {
        self.count = 0;
        self.lengths = Lengths::Plain;
        for col in [
            &mut self.offset_deltas,
            &mut self.timestamp_deltas,
            &mut self.header_data,
            &mut self.keys,
            &mut self.values,
        ] {
            col.clear();
        }
        self.key_lens.clear();
        self.value_lens.clear();
        self.header_counts.clear();
    }
}

/// Bytes the header-data, key and value sections gain from one record.
fn data_len(key: Option<&[u8]>, value: Option<&[u8]>, headers: &[Header], l: Lengths) -> usize {
    let headers_len: usize = headers.iter().map(|h| header_encoded_len(h, l)).sum();
    key.map_or(0, <[u8]>::len) + value.map_or(0, <[u8]>::len) + headers_len
}

/// A record's key code, value length field and header count, as stored in
/// the block's 32-bit columns.
fn fields(
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    headers: &[Header],
    lengths: Lengths,
) -> Result<(u32, u32, u32), WriteError> {
    let as_u32 = |n: u64| u32::try_from(n).map_err(|_| WriteError::BlockTooLarge(n as usize));
    let key_code = match key {
        None => 0,
        Some(k) => as_u32(k.len() as u64 + 1)?,
    };
    Ok((
        key_code,
        as_u32(lengths.field(value))?,
        as_u32(headers.len() as u64)?,
    ))
}

/// Writes records into blocks of about `block_bytes` uncompressed bytes and
/// produces the segment object's bytes with [`SegmentWriter::finish`].
pub struct SegmentWriter {
    block_bytes: usize,
    out: Vec<u8>,
    index: Vec<BlockIndexEntry>,
    block: BlockBuilder,
    scratch: Vec<u8>,
    compressed: Vec<u8>,
    last_offset: Option<i64>,
    record_count: u64,
    payload_bytes: u64,
    /// A block used nullable lengths: the segment is version 2.
    has_nulls: bool,
}

impl Default for SegmentWriter {
    fn default() -> Self {
        Self::new(DEFAULT_BLOCK_BYTES)
    }
}

impl SegmentWriter {
    /// A writer whose blocks hold about `block_bytes` of uncompressed payload
    /// (a single larger record gets a block of its own).
    pub fn new(block_bytes: usize) -> Self {
        let header = SegmentHeader {
            version: FORMAT_VERSION,
            codec: CODEC_LZ4,
        };
        SegmentWriter {
            block_bytes: block_bytes.max(1),
            out: header.encode().to_vec(),
            index: Vec::new(),
            block: BlockBuilder::default(),
            scratch: Vec::new(),
            compressed: Vec::new(),
            last_offset: None,
            record_count: 0,
            payload_bytes: 0,
            has_nulls: false,
        }
    }

    pub fn push(&mut self, record: &Record) -> Result<(), WriteError> {
        self.push_parts(
            record.offset,
            record.timestamp_ms,
            record.key.as_deref(),
            record.value.as_deref(),
            &record.headers,
        )
    }

    /// Appends one record (`value` `None`: null). Offsets must strictly
    /// increase; timestamps may go in any order.
    pub fn push_parts(
        &mut self,
        offset: i64,
        timestamp_ms: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[Header],
    ) -> Result<(), WriteError> {
        if offset < 0 {
            return Err(WriteError::NegativeOffset(offset));
        }
        if let Some(previous) = self.last_offset {
            if offset <= previous {
                return Err(WriteError::OffsetNotIncreasing { previous, offset });
            }
        }
        // A null needs nullable lengths: a plain block is closed first
        // (its lengths are written already), so blocks without nulls keep
        // the v1 bytes.
        let has_null = value.is_none() || headers.iter().any(|h| h.value.is_none());
        if has_null && self.block.lengths == Lengths::Plain && self.block.count > 0 {
            self.flush_block()?;
        }
        if self.block.count > 0
            && self.grown_len(offset, timestamp_ms, key, value, headers)? > self.block_bytes
        {
            self.flush_block()?;
        }
        let b = &mut self.block;
        if b.count == 0 {
            b.base_offset = offset;
            b.base_timestamp = timestamp_ms;
            b.prev_offset = offset - 1;
            b.prev_timestamp = timestamp_ms;
            b.min_timestamp = timestamp_ms;
            b.max_timestamp = timestamp_ms;
            b.contiguous = true;
            b.lengths = if has_null {
                Lengths::Nullable
            } else {
                Lengths::Plain
            };
        }
        let (key_code, value_field, header_count) = fields(key, value, headers, b.lengths)?;
        let gap = (offset - b.prev_offset - 1) as u64;
        b.contiguous &= gap == 0;
        put_uvarint(&mut b.offset_deltas, gap);
        put_varint(
            &mut b.timestamp_deltas,
            timestamp_ms.wrapping_sub(b.prev_timestamp),
        );
        b.key_lens.push(key_code);
        if let Some(k) = key {
            b.keys.extend_from_slice(k);
        }
        b.value_lens.push(value_field);
        b.values.extend_from_slice(value.unwrap_or_default());
        b.header_counts.push(header_count);
        for h in headers {
            put_header(&mut b.header_data, h, b.lengths);
        }
        b.prev_offset = offset;
        b.prev_timestamp = timestamp_ms;
        b.min_timestamp = b.min_timestamp.min(timestamp_ms);
        b.max_timestamp = b.max_timestamp.max(timestamp_ms);
        b.count += 1;

        self.last_offset = Some(offset);
        self.record_count += 1;
        self.payload_bytes += (key.map_or(0, <[u8]>::len)
            + value.map_or(0, <[u8]>::len)
            + headers
                .iter()
                .map(|h| h.key.len() + h.value_bytes().len())
                .sum::<usize>()) as u64;
        Ok(())
    }

    /// The exact uncompressed size of the open (non-empty) block with this
    /// record appended.
    fn grown_len(
        &self,
        offset: i64,
        timestamp_ms: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[Header],
    ) -> Result<usize, WriteError> {
        let b = &self.block;
        let (key_code, value_field, header_count) = fields(key, value, headers, b.lengths)?;
        let gap = (offset - b.prev_offset - 1) as u64;
        let offset_column = if gap == 0 && b.contiguous {
            0
        } else if b.contiguous {
            b.offset_deltas.len() + uvarint_len(gap) // the column appears
        } else {
            uvarint_len(gap)
        };
        let columns_now =
            b.key_lens.encoded_len() + b.value_lens.encoded_len() + b.header_counts.encoded_len();
        let columns_then = b.key_lens.encoded_len_with(key_code)
            + b.value_lens.encoded_len_with(value_field)
            + b.header_counts.encoded_len_with(header_count);
        Ok(b.uncompressed_len() - columns_now
            + columns_then
            + offset_column
            + uvarint_len(zigzag(timestamp_ms.wrapping_sub(b.prev_timestamp)))
            + data_len(key, value, headers, b.lengths))
    }

    fn flush_block(&mut self) -> Result<(), WriteError> {
        let b = &self.block;
        if b.count == 0 {
            return Ok(());
        }
        let uncompressed_len = b.uncompressed_len();
        let uncompressed_u32 = u32::try_from(uncompressed_len)
            .map_err(|_| WriteError::BlockTooLarge(uncompressed_len))?;

        let p = &mut self.scratch;
        p.clear();
        p.reserve(uncompressed_len);
        p.extend_from_slice(&b.base_offset.to_le_bytes());
        p.extend_from_slice(&b.base_timestamp.to_le_bytes());
        let mut flags = if b.contiguous {
            FLAG_CONTIGUOUS_OFFSETS
        } else {
            0
        };
        if b.lengths == Lengths::Nullable {
            flags |= FLAG_NULLABLE_LENGTHS;
            self.has_nulls = true;
        }
        p.push(flags);
        p.extend_from_slice(&[0, 0, 0]);
        if !b.contiguous {
            p.extend_from_slice(&b.offset_deltas);
        }
        p.extend_from_slice(&b.timestamp_deltas);
        b.key_lens.encode_into(p);
        b.value_lens.encode_into(p);
        b.header_counts.encode_into(p);
        p.extend_from_slice(&b.header_data);
        p.extend_from_slice(&b.keys);
        p.extend_from_slice(&b.values);
        debug_assert_eq!(p.len(), uncompressed_len);

        self.compressed
            .resize(lz4_flex::block::get_maximum_output_size(p.len()), 0);
        // The buffer is sized to the bound lz4_flex documents, so compression
        // into it cannot run out of space.
        let n = lz4_flex::block::compress_into(p, &mut self.compressed)
            .map_err(|_| WriteError::BlockTooLarge(uncompressed_len))?;
        let payload = &self.compressed[..n];
        let frame_len = u32::try_from(FRAME_HEADER_LEN + n)
            .map_err(|_| WriteError::BlockTooLarge(FRAME_HEADER_LEN + n))?;

        let position = self.out.len() as u64;
        self.out
            .extend_from_slice(&FrameHeader::encode(uncompressed_u32, b.count, payload));
        self.out.extend_from_slice(payload);
        self.index.push(BlockIndexEntry {
            first_offset: b.base_offset,
            last_offset: b.prev_offset,
            min_timestamp_ms: b.min_timestamp,
            max_timestamp_ms: b.max_timestamp,
            position,
            frame_len,
            record_count: b.count,
        });
        self.block.clear();
        Ok(())
    }

    /// Closes the last block, writes the footer and trailer, and returns the
    /// object bytes with a summary for the metadata row.
    pub fn finish(mut self) -> Result<(Vec<u8>, SegmentSummary), WriteError> {
        self.flush_block()?;
        let (Some(first), Some(last)) = (self.index.first(), self.index.last()) else {
            return Err(WriteError::Empty);
        };
        let summary = SegmentSummary {
            base_offset: first.first_offset,
            last_offset: last.last_offset,
            record_count: self.record_count,
            min_timestamp_ms: self
                .index
                .iter()
                .map(|e| e.min_timestamp_ms)
                .min()
                .unwrap_or(0),
            max_timestamp_ms: self
                .index
                .iter()
                .map(|e| e.max_timestamp_ms)
                .max()
                .unwrap_or(0),
            size_bytes: 0,
            block_count: self.index.len() as u32,
            payload_bytes: self.payload_bytes,
        };

        let version = if self.has_nulls {
            FORMAT_VERSION_NULLS
        } else {
            FORMAT_VERSION
        };
        let header = SegmentHeader {
            version,
            codec: CODEC_LZ4,
        };
        self.out[..HEADER_LEN].copy_from_slice(&header.encode());
        let footer_position = self.out.len() as u64;
        let footer_start = self.out.len();
        self.out
            .extend_from_slice(&(self.index.len() as u32).to_le_bytes());
        for entry in &self.index {
            entry.encode_into(&mut self.out);
        }
        let footer = &self.out[footer_start..];
        let trailer = Trailer {
            footer_position,
            footer_len: footer.len() as u32,
            footer_crc: crc32c::crc32c(footer),
            version,
        };
        self.out.extend_from_slice(&trailer.encode());
        let size_bytes = self.out.len() as u64;
        Ok((
            self.out,
            SegmentSummary {
                size_bytes,
                ..summary
            },
        ))
    }
}
