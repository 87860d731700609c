//! One block: checked against its index entry, decompressed, and parsed
//! into record spans that borrow from the decompressed payload.

use super::columns::read_packed;
use super::error::{FormatError, Part};
use super::format::{
    BlockIndexEntry, FrameHeader, BLOCK_PREAMBLE_LEN, FLAG_CONTIGUOUS_OFFSETS,
    FLAG_NULLABLE_LENGTHS, FRAME_HEADER_LEN, MAX_BLOCK_UNCOMPRESSED,
};
use crate::codec::{le_i64, Cursor, DecodeError, DecodeResult, Lengths};
use crate::record::{Header, Record};
use std::ops::Range;

/// Where a record's parts lie inside a decoded block payload.
#[derive(Clone, Debug)]
struct RecordSpan {
    offset: i64,
    timestamp_ms: i64,
    key: Option<Range<u32>>,
    value: Option<Range<u32>>,
    headers: Range<u32>,
}

#[derive(Clone, Debug)]
struct HeaderSpan {
    key: Range<u32>,
    value: Option<Range<u32>>,
}

/// One decompressed, validated block. Records are borrowed views into it.
#[derive(Clone, Debug)]
pub struct DecodedBlock {
    payload: Vec<u8>,
    records: Vec<RecordSpan>,
    headers: Vec<HeaderSpan>,
}

/// A record borrowed from a [`DecodedBlock`].
#[derive(Clone, Copy, Debug)]
pub struct RecordRef<'a> {
    pub offset: i64,
    pub timestamp_ms: i64,
    pub key: Option<&'a [u8]>,
    /// `None`: a null value.
    pub value: Option<&'a [u8]>,
    block: &'a DecodedBlock,
    headers: &'a [HeaderSpan],
}

fn span(r: &Range<usize>) -> Range<u32> {
    // Payloads are bounded by MAX_BLOCK_UNCOMPRESSED (< 4 GiB).
    r.start as u32..r.end as u32
}

impl<'a> RecordRef<'a> {
    /// Header keys (validated UTF-8) and values (`None`: null).
    pub fn headers(&self) -> impl Iterator<Item = (&'a str, Option<&'a [u8]>)> + 'a {
        let block = self.block;
        self.headers.iter().map(move |h| {
            let key = &block.payload[h.key.start as usize..h.key.end as usize];
            // Validated as UTF-8 when the block was decoded.
            let key = std::str::from_utf8(key).unwrap_or_default();
            (key, h.value.as_ref().map(|v| block.slice(v)))
        })
    }

    pub fn to_record(&self) -> Record {
        Record {
            offset: self.offset,
            timestamp_ms: self.timestamp_ms,
            key: self.key.map(<[u8]>::to_vec),
            value: self.value.map(<[u8]>::to_vec),
            headers: self
                .headers()
                .map(|(k, v)| Header {
                    key: k.to_string(),
                    value: v.map(<[u8]>::to_vec),
                })
                .collect(),
        }
    }

    /// The record's charged size ([`crate::record::accounted_len`]), as
    /// counted against fetch byte limits.
    pub fn accounted_len(&self) -> usize {
        crate::record::accounted_len(
            self.key.map_or(0, <[u8]>::len),
            self.value.map_or(0, <[u8]>::len),
            self.headers.len(),
            self.headers
                .iter()
                .map(|h| {
                    (h.key.end - h.key.start + h.value.as_ref().map_or(0, |v| v.end - v.start))
                        as usize
                })
                .sum::<usize>(),
        )
    }
}

impl DecodedBlock {
    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Uncompressed payload size, for cache accounting.
    pub fn memory_bytes(&self) -> usize {
        self.payload.len()
            + self.records.len() * std::mem::size_of::<RecordSpan>()
            + self.headers.len() * std::mem::size_of::<HeaderSpan>()
    }

    fn slice(&self, range: &Range<u32>) -> &[u8] {
        &self.payload[range.start as usize..range.end as usize]
    }

    pub fn get(&self, i: usize) -> Option<RecordRef<'_>> {
        let r = self.records.get(i)?;
        Some(RecordRef {
            offset: r.offset,
            timestamp_ms: r.timestamp_ms,
            key: r.key.as_ref().map(|k| self.slice(k)),
            value: r.value.as_ref().map(|v| self.slice(v)),
            block: self,
            headers: &self.headers[r.headers.start as usize..r.headers.end as usize],
        })
    }

    /// Index of the first record with offset >= `offset`.
    pub fn position_of(&self, offset: i64) -> usize {
        self.records.partition_point(|r| r.offset < offset)
    }

    /// Index of the first record with timestamp >= `timestamp_ms`.
    pub fn position_of_timestamp(&self, timestamp_ms: i64) -> Option<usize> {
        self.records
            .iter()
            .position(|r| r.timestamp_ms >= timestamp_ms)
    }

    pub fn iter(&self) -> impl Iterator<Item = RecordRef<'_>> {
        (0..self.records.len()).filter_map(move |i| self.get(i))
    }

    /// Checks the frame against its index entry, decompresses and parses it.
    /// `frame` is exactly the bytes of `entry.frame_range()`.
    pub fn decode(
        frame: &[u8],
        entry: &BlockIndexEntry,
        block_no: u32,
    ) -> Result<DecodedBlock, FormatError> {
        let part = Part::Block(block_no);
        let header = check_frame(frame, entry, part)?;
        let payload = decompress(&frame[FRAME_HEADER_LEN..], header.uncompressed_len, part)?;
        parse(payload, entry, part)
    }
}

/// The frame's length, CRC and counts agree with its index entry.
fn check_frame(
    frame: &[u8],
    entry: &BlockIndexEntry,
    part: Part,
) -> Result<FrameHeader, FormatError> {
    if frame.len() != entry.frame_len as usize {
        return Err(FormatError::Truncated {
            part,
            needed: u64::from(entry.frame_len),
            available: frame.len() as u64,
        });
    }
    let fh = FrameHeader::decode(frame, part)?;
    let payload = &frame[FRAME_HEADER_LEN..];
    let computed = crc32c::crc32c_append(crc32c::crc32c(&frame[0..12]), payload);
    if computed != fh.crc {
        return Err(FormatError::Checksum {
            part,
            stored: fh.crc,
            computed,
        });
    }
    if fh.compressed_len as usize != payload.len() {
        return Err(FormatError::malformed(
            part,
            format!(
                "frame says {} compressed bytes, index says {}",
                fh.compressed_len,
                payload.len()
            ),
        ));
    }
    if fh.record_count != entry.record_count {
        return Err(FormatError::malformed(
            part,
            format!(
                "frame says {} records, index says {}",
                fh.record_count, entry.record_count
            ),
        ));
    }
    if fh.uncompressed_len > MAX_BLOCK_UNCOMPRESSED
        || (fh.uncompressed_len as usize) < BLOCK_PREAMBLE_LEN
    {
        return Err(FormatError::malformed(
            part,
            format!(
                "uncompressed length {} is out of bounds",
                fh.uncompressed_len
            ),
        ));
    }
    Ok(fh)
}

fn decompress(
    compressed: &[u8],
    uncompressed_len: u32,
    part: Part,
) -> Result<Vec<u8>, FormatError> {
    let mut data = vec![0u8; uncompressed_len as usize];
    let n = lz4_flex::block::decompress_into(compressed, &mut data)
        .map_err(|e| FormatError::malformed(part, format!("LZ4 decompression failed: {e}")))?;
    if n != data.len() {
        return Err(FormatError::malformed(
            part,
            format!("decompressed {n} bytes, frame says {}", data.len()),
        ));
    }
    Ok(data)
}

/// Parses a decompressed payload (FORMAT.md, "Block payload"): preamble,
/// offset and timestamp columns, the packed length columns, then header
/// data, keys and values, with nothing left over.
fn parse(
    payload: Vec<u8>,
    entry: &BlockIndexEntry,
    part: Part,
) -> Result<DecodedBlock, FormatError> {
    let (records, headers) =
        parse_spans(&payload, entry).map_err(|e| FormatError::decode(part, e))?;
    Ok(DecodedBlock {
        payload,
        records,
        headers,
    })
}

fn parse_spans(
    p: &[u8],
    entry: &BlockIndexEntry,
) -> DecodeResult<(Vec<RecordSpan>, Vec<HeaderSpan>)> {
    let count = entry.record_count as usize;
    let preamble = read_preamble(p, entry)?;
    // A column of `count` varints needs at least `count` bytes: reject
    // counts the payload cannot hold before allocating for them.
    if count > p.len() {
        return Err(DecodeError::new(format!(
            "{count} records cannot fit in {} bytes",
            p.len()
        )));
    }
    let mut c = Cursor::new(p, BLOCK_PREAMBLE_LEN);
    let mut records = read_offsets(&mut c, &preamble, entry)?;
    read_timestamps(&mut c, &mut records, preamble.base_timestamp, entry)?;
    // Lengths come first, data after: collect lengths, then lay out ranges.
    let key_codes = read_packed(&mut c, count, "key lengths")?;
    let value_lens = read_packed(&mut c, count, "value lengths")?;
    let header_counts = read_packed(&mut c, count, "header counts")?;
    let headers = read_headers(&mut c, &mut records, &header_counts, preamble.lengths)?;
    for (r, &code) in records.iter_mut().zip(&key_codes) {
        if let Some(kl) = code.checked_sub(1) {
            r.key = Some(span(&c.skip(kl as usize, "key")?));
        }
    }
    for (r, &field) in records.iter_mut().zip(&value_lens) {
        if let Some(vl) = preamble.lengths.decode(u64::from(field)) {
            r.value = Some(span(&c.skip(vl as usize, "value")?));
        }
    }
    if c.remaining() != 0 {
        return Err(DecodeError::new(format!(
            "{} unexplained bytes after the last value",
            c.remaining()
        )));
    }
    Ok((records, headers))
}

struct Preamble {
    base_offset: i64,
    base_timestamp: i64,
    contiguous: bool,
    lengths: Lengths,
}

fn read_preamble(p: &[u8], entry: &BlockIndexEntry) -> DecodeResult<Preamble> {
    // The frame check guarantees at least BLOCK_PREAMBLE_LEN bytes.
    let base_offset = le_i64(&p[0..8]);
    let base_timestamp = le_i64(&p[8..16]);
    let flags = p[16];
    if flags & !(FLAG_CONTIGUOUS_OFFSETS | FLAG_NULLABLE_LENGTHS) != 0 || p[17..20] != [0, 0, 0] {
        return Err(DecodeError::new(format!("unknown flags {flags:#04x}")));
    }
    if base_offset != entry.first_offset {
        return Err(DecodeError::new(format!(
            "base offset {base_offset} differs from the index's {}",
            entry.first_offset
        )));
    }
    Ok(Preamble {
        base_offset,
        base_timestamp,
        contiguous: flags & FLAG_CONTIGUOUS_OFFSETS != 0,
        lengths: if flags & FLAG_NULLABLE_LENGTHS != 0 {
            Lengths::Nullable
        } else {
            Lengths::Plain
        },
    })
}

/// Offsets: `base + i` when contiguous, else a gap varint per record; the
/// last must be the index's last offset.
fn read_offsets(
    c: &mut Cursor<'_>,
    pre: &Preamble,
    entry: &BlockIndexEntry,
) -> DecodeResult<Vec<RecordSpan>> {
    let count = entry.record_count as usize;
    let mut records = Vec::with_capacity(count);
    let mut prev = pre.base_offset - 1;
    for i in 0..count {
        let gap = if pre.contiguous {
            0
        } else {
            c.uvarint("offset delta")?
        };
        let offset = i64::try_from(gap)
            .ok()
            .and_then(|g| prev.checked_add(1)?.checked_add(g))
            .ok_or_else(|| DecodeError::new(format!("record {i}: offset overflows")))?;
        prev = offset;
        records.push(RecordSpan {
            offset,
            timestamp_ms: 0,
            key: None,
            value: None,
            headers: 0..0,
        });
    }
    if prev != entry.last_offset {
        return Err(DecodeError::new(format!(
            "last offset {prev} differs from the index's {}",
            entry.last_offset
        )));
    }
    Ok(records)
}

/// Zigzag deltas from the base timestamp; min and max must match the index.
fn read_timestamps(
    c: &mut Cursor<'_>,
    records: &mut [RecordSpan],
    base_timestamp: i64,
    entry: &BlockIndexEntry,
) -> DecodeResult<()> {
    let mut ts = base_timestamp;
    let (mut min_ts, mut max_ts) = (i64::MAX, i64::MIN);
    for r in records.iter_mut() {
        ts = ts.wrapping_add(c.varint("timestamp delta")?);
        r.timestamp_ms = ts;
        min_ts = min_ts.min(ts);
        max_ts = max_ts.max(ts);
    }
    if min_ts != entry.min_timestamp_ms || max_ts != entry.max_timestamp_ms {
        return Err(DecodeError::new(
            "timestamps differ from the index's min/max",
        ));
    }
    Ok(())
}

fn read_headers(
    c: &mut Cursor<'_>,
    records: &mut [RecordSpan],
    header_counts: &[u32],
    lengths: Lengths,
) -> DecodeResult<Vec<HeaderSpan>> {
    let mut headers: Vec<HeaderSpan> = Vec::new();
    for (r, &n) in records.iter_mut().zip(header_counts) {
        let start = headers.len() as u32;
        if n as usize > c.remaining() {
            return Err(DecodeError::new(format!(
                "header count {n} exceeds the bytes left in the block"
            )));
        }
        for _ in 0..n {
            let (key, value) = c.header(lengths)?;
            headers.push(HeaderSpan {
                key: span(&key),
                value: value.as_ref().map(span),
            });
        }
        r.headers = start..headers.len() as u32;
    }
    Ok(headers)
}
