//! Reads segments: the footer from one ranged read of the tail, then single
//! blocks by offset or timestamp, from memory or through an object store.

use super::format::{
    check_crc, le_u32, BlockIndexEntry, Cursor, FormatError, FrameHeader, Part, SegmentHeader,
    Trailer, BLOCK_PREAMBLE_LEN, FLAG_CONTIGUOUS_OFFSETS, FOOTER_COUNT_LEN, FRAME_HEADER_LEN,
    HEADER_LEN, INDEX_ENTRY_LEN, MAX_BLOCK_UNCOMPRESSED, TRAILER_LEN,
};
use crate::error::{Error, Result};
use crate::object_store::ObjectStore;
use crate::record::{Header, Record};
use std::ops::Range;

/// How many bytes of the tail a reader fetches first: enough for the footer
/// of a segment with ~1,300 blocks (over 1 GiB of 1 MiB blocks), so opening
/// a segment is one ranged read in practice.
pub const TAIL_READ_BYTES: u64 = 64 * 1024;

/// Something a segment can be read from by byte range.
pub trait ReadAt {
    /// Exactly the bytes of `range`, or an error.
    fn read_at(&self, range: Range<u64>) -> Result<Vec<u8>>;
    /// A name for error messages (the object key).
    fn name(&self) -> &str;
}

/// A segment held in memory.
pub struct InMemory<'a> {
    pub bytes: &'a [u8],
    pub name: &'a str,
}

impl ReadAt for InMemory<'_> {
    fn read_at(&self, range: Range<u64>) -> Result<Vec<u8>> {
        let len = self.bytes.len() as u64;
        if range.start > range.end || range.end > len {
            return Err(Error::corruption(
                self.name,
                FormatError::Truncated {
                    part: Part::Footer,
                    needed: range.end,
                    available: len,
                },
            ));
        }
        Ok(self.bytes[range.start as usize..range.end as usize].to_vec())
    }

    fn name(&self) -> &str {
        self.name
    }
}

/// A segment object in an object store, read with ranged GETs.
pub struct InStore<'a> {
    pub store: &'a dyn ObjectStore,
    pub key: &'a str,
}

impl ReadAt for InStore<'_> {
    fn read_at(&self, range: Range<u64>) -> Result<Vec<u8>> {
        Ok(self.store.get_range(self.key, range)?)
    }

    fn name(&self) -> &str {
        self.key
    }
}

/// The decoded footer index of one segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Footer {
    entries: Vec<BlockIndexEntry>,
    /// `prefix_max_ts[i]` = max timestamp of blocks 0..=i; non-decreasing, so
    /// a timestamp lookup is a binary search even when timestamps go back.
    prefix_max_ts: Vec<i64>,
    object_len: u64,
}

impl Footer {
    /// Reads and validates the footer of the `object_len`-byte segment at
    /// `src`: one ranged read of the tail, a second only when the footer is
    /// larger than [`TAIL_READ_BYTES`].
    pub fn read(src: &dyn ReadAt, object_len: u64) -> Result<Footer> {
        let min_len = (HEADER_LEN + TRAILER_LEN + FOOTER_COUNT_LEN) as u64;
        if object_len < min_len {
            return Err(Error::corruption(
                src.name(),
                FormatError::Truncated {
                    part: Part::Trailer,
                    needed: min_len,
                    available: object_len,
                },
            ));
        }
        let tail_start = object_len.saturating_sub(TAIL_READ_BYTES);
        let tail = src.read_at(tail_start..object_len)?;
        if tail.len() as u64 != object_len - tail_start {
            return Err(Error::corruption(
                src.name(),
                FormatError::Truncated {
                    part: Part::Trailer,
                    needed: object_len - tail_start,
                    available: tail.len() as u64,
                },
            ));
        }
        let trailer = Trailer::decode(&tail).map_err(|e| Error::corruption(src.name(), e))?;
        let footer_end = object_len - TRAILER_LEN as u64;
        let footer_len = u64::from(trailer.footer_len);
        if trailer.footer_position < HEADER_LEN as u64
            || trailer.footer_position.checked_add(footer_len) != Some(footer_end)
        {
            return Err(Error::corruption(
                src.name(),
                FormatError::malformed(
                    Part::Trailer,
                    format!(
                        "footer at {} of {} bytes does not end at the trailer ({footer_end})",
                        trailer.footer_position, footer_len
                    ),
                ),
            ));
        }
        let footer_bytes = if trailer.footer_position >= tail_start {
            let from = (trailer.footer_position - tail_start) as usize;
            tail[from..from + footer_len as usize].to_vec()
        } else {
            src.read_at(trailer.footer_position..footer_end)?
        };
        Footer::decode(&footer_bytes, &trailer, object_len)
            .map_err(|e| Error::corruption(src.name(), e))
    }

    /// Decodes footer bytes whose trailer has already been validated.
    pub fn decode(
        bytes: &[u8],
        trailer: &Trailer,
        object_len: u64,
    ) -> std::result::Result<Footer, FormatError> {
        check_crc(Part::Footer, bytes, trailer.footer_crc)?;
        if bytes.len() < FOOTER_COUNT_LEN {
            return Err(FormatError::Truncated {
                part: Part::Footer,
                needed: FOOTER_COUNT_LEN as u64,
                available: bytes.len() as u64,
            });
        }
        let count = le_u32(&bytes[0..4]) as usize;
        let expected = count
            .checked_mul(INDEX_ENTRY_LEN)
            .and_then(|n| n.checked_add(FOOTER_COUNT_LEN));
        if expected != Some(bytes.len()) {
            return Err(FormatError::malformed(
                Part::Footer,
                format!(
                    "{count} index entries do not fill a footer of {} bytes",
                    bytes.len()
                ),
            ));
        }
        if count == 0 {
            return Err(FormatError::malformed(
                Part::Footer,
                "segment has no blocks",
            ));
        }
        let entries: Vec<BlockIndexEntry> = bytes[FOOTER_COUNT_LEN..]
            .chunks_exact(INDEX_ENTRY_LEN)
            .map(BlockIndexEntry::decode)
            .collect();

        let mut expected_position = HEADER_LEN as u64;
        let mut previous_last: Option<i64> = None;
        for (i, e) in entries.iter().enumerate() {
            let bad = |reason: String| {
                FormatError::malformed(Part::Footer, format!("index entry {i}: {reason}"))
            };
            if e.position != expected_position {
                return Err(bad(format!(
                    "block starts at {} but the previous one ends at {expected_position}",
                    e.position
                )));
            }
            if (e.frame_len as usize) <= FRAME_HEADER_LEN {
                return Err(bad(format!("frame length {} is too short", e.frame_len)));
            }
            if e.record_count == 0 || e.first_offset < 0 || e.first_offset > e.last_offset {
                return Err(bad(format!(
                    "offsets {}..={} with {} records are inconsistent",
                    e.first_offset, e.last_offset, e.record_count
                )));
            }
            let span = (e.last_offset as i128) - (e.first_offset as i128) + 1;
            if span < i128::from(e.record_count) {
                return Err(bad(format!(
                    "{} records cannot fit offsets {}..={}",
                    e.record_count, e.first_offset, e.last_offset
                )));
            }
            if let Some(prev) = previous_last {
                if e.first_offset <= prev {
                    return Err(bad(format!(
                        "first offset {} does not follow the previous block's last offset {prev}",
                        e.first_offset
                    )));
                }
            }
            if e.min_timestamp_ms > e.max_timestamp_ms {
                return Err(bad("min timestamp is after max timestamp".to_string()));
            }
            previous_last = Some(e.last_offset);
            expected_position += u64::from(e.frame_len);
        }
        if expected_position != trailer.footer_position {
            return Err(FormatError::malformed(
                Part::Footer,
                format!(
                    "blocks end at {expected_position} but the footer starts at {}",
                    trailer.footer_position
                ),
            ));
        }
        let mut prefix_max_ts = Vec::with_capacity(entries.len());
        let mut max = i64::MIN;
        for e in &entries {
            max = max.max(e.max_timestamp_ms);
            prefix_max_ts.push(max);
        }
        Ok(Footer {
            entries,
            prefix_max_ts,
            object_len,
        })
    }

    pub fn entries(&self) -> &[BlockIndexEntry] {
        &self.entries
    }

    pub fn object_len(&self) -> u64 {
        self.object_len
    }

    pub fn base_offset(&self) -> i64 {
        self.entries[0].first_offset
    }

    pub fn last_offset(&self) -> i64 {
        self.entries[self.entries.len() - 1].last_offset
    }

    /// The block holding `offset`, or the first block after it when `offset`
    /// falls in a gap; `None` past the last block.
    pub fn block_for_offset(&self, offset: i64) -> Option<usize> {
        let i = self.entries.partition_point(|e| e.last_offset < offset);
        (i < self.entries.len()).then_some(i)
    }

    /// The first block whose max timestamp is >= `timestamp_ms`.
    pub fn block_for_timestamp(&self, timestamp_ms: i64) -> Option<usize> {
        let i = self.prefix_max_ts.partition_point(|&m| m < timestamp_ms);
        (i < self.entries.len()).then_some(i)
    }
}

/// Where a record's parts lie inside a decoded block payload.
#[derive(Clone, Debug)]
struct RecordSpan {
    offset: i64,
    timestamp_ms: i64,
    key: Option<Range<u32>>,
    value: Range<u32>,
    headers: Range<u32>,
}

#[derive(Clone, Debug)]
struct HeaderSpan {
    key: Range<u32>,
    value: Range<u32>,
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
    pub value: &'a [u8],
    block: &'a DecodedBlock,
    headers: &'a [HeaderSpan],
}

impl<'a> RecordRef<'a> {
    /// Header keys (validated UTF-8) and values.
    pub fn headers(&self) -> impl Iterator<Item = (&'a str, &'a [u8])> + 'a {
        let block = self.block;
        self.headers.iter().map(move |h| {
            let key = &block.payload[h.key.start as usize..h.key.end as usize];
            // Validated as UTF-8 when the block was decoded.
            let key = std::str::from_utf8(key).unwrap_or_default();
            (
                key,
                &block.payload[h.value.start as usize..h.value.end as usize],
            )
        })
    }

    pub fn to_record(&self) -> Record {
        Record {
            offset: self.offset,
            timestamp_ms: self.timestamp_ms,
            key: self.key.map(<[u8]>::to_vec),
            value: self.value.to_vec(),
            headers: self
                .headers()
                .map(|(k, v)| Header {
                    key: k.to_string(),
                    value: v.to_vec(),
                })
                .collect(),
        }
    }

    /// Key + value + header bytes, as counted against fetch byte limits.
    pub fn payload_len(&self) -> usize {
        self.key.map_or(0, <[u8]>::len)
            + self.value.len()
            + self
                .headers
                .iter()
                .map(|h| (h.key.end - h.key.start + h.value.end - h.value.start) as usize)
                .sum::<usize>()
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

    pub fn first_offset(&self) -> i64 {
        self.records.first().map_or(0, |r| r.offset)
    }

    pub fn last_offset(&self) -> i64 {
        self.records.last().map_or(0, |r| r.offset)
    }

    pub fn get(&self, i: usize) -> Option<RecordRef<'_>> {
        let r = self.records.get(i)?;
        let slice = |range: &Range<u32>| &self.payload[range.start as usize..range.end as usize];
        Some(RecordRef {
            offset: r.offset,
            timestamp_ms: r.timestamp_ms,
            key: r.key.as_ref().map(slice),
            value: slice(&r.value),
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
    ) -> std::result::Result<DecodedBlock, FormatError> {
        let part = Part::Block(block_no);
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
        let mut data = vec![0u8; fh.uncompressed_len as usize];
        let n = lz4_flex::block::decompress_into(payload, &mut data)
            .map_err(|e| FormatError::malformed(part, format!("LZ4 decompression failed: {e}")))?;
        if n != data.len() {
            return Err(FormatError::malformed(
                part,
                format!("decompressed {n} bytes, frame says {}", data.len()),
            ));
        }
        Self::parse(data, entry, part)
    }

    fn parse(
        payload: Vec<u8>,
        entry: &BlockIndexEntry,
        part: Part,
    ) -> std::result::Result<DecodedBlock, FormatError> {
        let count = entry.record_count as usize;
        let p = &payload;
        let base_offset = super::format::le_i64(&p[0..8]);
        let base_timestamp = super::format::le_i64(&p[8..16]);
        let flags = p[16];
        if flags & !FLAG_CONTIGUOUS_OFFSETS != 0 || p[17..20] != [0, 0, 0] {
            return Err(FormatError::malformed(
                part,
                format!("unknown flags {flags:#04x}"),
            ));
        }
        if base_offset != entry.first_offset {
            return Err(FormatError::malformed(
                part,
                format!(
                    "base offset {base_offset} differs from the index's {}",
                    entry.first_offset
                ),
            ));
        }
        // A column of `count` varints needs at least `count` bytes: reject
        // counts the payload cannot hold before allocating for them.
        if count > p.len() {
            return Err(FormatError::malformed(
                part,
                format!("{count} records cannot fit in {} bytes", p.len()),
            ));
        }
        let mut c = Cursor::new(p, BLOCK_PREAMBLE_LEN, part);
        let mut records: Vec<RecordSpan> = Vec::with_capacity(count);

        // offsets
        let mut prev = base_offset - 1;
        for i in 0..count {
            let gap = if flags & FLAG_CONTIGUOUS_OFFSETS != 0 {
                0
            } else {
                c.uvarint("offset delta")?
            };
            let offset = i64::try_from(gap)
                .ok()
                .and_then(|g| prev.checked_add(1)?.checked_add(g))
                .ok_or_else(|| {
                    FormatError::malformed(part, format!("record {i}: offset overflows"))
                })?;
            prev = offset;
            records.push(RecordSpan {
                offset,
                timestamp_ms: 0,
                key: None,
                value: 0..0,
                headers: 0..0,
            });
        }
        if prev != entry.last_offset {
            return Err(FormatError::malformed(
                part,
                format!(
                    "last offset {prev} differs from the index's {}",
                    entry.last_offset
                ),
            ));
        }
        // timestamps
        let mut ts = base_timestamp;
        let (mut min_ts, mut max_ts) = (i64::MAX, i64::MIN);
        for r in records.iter_mut() {
            ts = ts.wrapping_add(c.varint("timestamp delta")?);
            r.timestamp_ms = ts;
            min_ts = min_ts.min(ts);
            max_ts = max_ts.max(ts);
        }
        if min_ts != entry.min_timestamp_ms || max_ts != entry.max_timestamp_ms {
            return Err(FormatError::malformed(
                part,
                "timestamps differ from the index's min/max".to_string(),
            ));
        }
        // Lengths come first, data after: collect lengths, then lay out ranges.
        let key_lens = c.packed(count, "key lengths")?;
        let value_lens = c.packed(count, "value lengths")?;
        let header_counts = c.packed(count, "header counts")?;
        let mut headers: Vec<HeaderSpan> = Vec::new();
        for (r, &n) in records.iter_mut().zip(&header_counts) {
            let start = headers.len() as u32;
            if n as usize > p.len() - c.pos() {
                return Err(FormatError::malformed(
                    part,
                    format!("header count {n} exceeds the bytes left in the block"),
                ));
            }
            for _ in 0..n {
                let kl = c.len("header key length")?;
                let key = c.skip(kl, "header key")?;
                if std::str::from_utf8(&p[key.clone()]).is_err() {
                    return Err(FormatError::malformed(part, "header key is not UTF-8"));
                }
                let vl = c.len("header value length")?;
                let value = c.skip(vl, "header value")?;
                headers.push(HeaderSpan {
                    key: key.start as u32..key.end as u32,
                    value: value.start as u32..value.end as u32,
                });
            }
            r.headers = start..headers.len() as u32;
        }
        for (r, &code) in records.iter_mut().zip(&key_lens) {
            if let Some(kl) = code.checked_sub(1) {
                let k = c.skip(kl as usize, "key")?;
                r.key = Some(k.start as u32..k.end as u32);
            }
        }
        for (r, &vl) in records.iter_mut().zip(&value_lens) {
            let v = c.skip(vl as usize, "value")?;
            r.value = v.start as u32..v.end as u32;
        }
        if c.pos() != p.len() {
            return Err(FormatError::malformed(
                part,
                format!(
                    "{} unexplained bytes after the last value",
                    p.len() - c.pos()
                ),
            ));
        }
        Ok(DecodedBlock {
            payload,
            records,
            headers,
        })
    }
}

/// A segment opened through its footer; blocks are read one at a time.
pub struct SegmentReader<S: ReadAt> {
    src: S,
    footer: Footer,
}

impl<S: ReadAt> SegmentReader<S> {
    /// Opens the `object_len`-byte segment at `src` by reading its footer.
    pub fn open(src: S, object_len: u64) -> Result<Self> {
        let footer = Footer::read(&src, object_len)?;
        Ok(SegmentReader { src, footer })
    }

    pub fn footer(&self) -> &Footer {
        &self.footer
    }

    /// Fetches (one ranged read) and decodes block `i`.
    pub fn read_block(&self, i: usize) -> Result<DecodedBlock> {
        read_block(&self.src, &self.footer, i)
    }

    /// Records with offset >= `offset`, in order, block by block.
    pub fn iter_from(&self, offset: i64) -> SegmentIter<'_, S> {
        SegmentIter {
            reader: self,
            next_block: self.footer.block_for_offset(offset),
            current: None,
            pos: 0,
            from: offset,
        }
    }

    /// Every record of the segment.
    pub fn read_all(&self) -> Result<Vec<Record>> {
        self.iter_from(i64::MIN).collect()
    }
}

/// Fetches and decodes block `i` of the segment whose footer is given.
pub fn read_block(src: &dyn ReadAt, footer: &Footer, i: usize) -> Result<DecodedBlock> {
    let entry = footer.entries.get(i).ok_or_else(|| {
        Error::corruption(
            src.name(),
            FormatError::malformed(Part::Footer, format!("no block {i}")),
        )
    })?;
    let frame = src.read_at(entry.frame_range())?;
    DecodedBlock::decode(&frame, entry, i as u32).map_err(|e| Error::corruption(src.name(), e))
}

/// Iterator over a segment's records from an offset; see
/// [`SegmentReader::iter_from`].
pub struct SegmentIter<'a, S: ReadAt> {
    reader: &'a SegmentReader<S>,
    next_block: Option<usize>,
    current: Option<DecodedBlock>,
    pos: usize,
    from: i64,
}

impl<S: ReadAt> Iterator for SegmentIter<'_, S> {
    type Item = Result<Record>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(block) = &self.current {
                if let Some(r) = block.get(self.pos) {
                    self.pos += 1;
                    return Some(Ok(r.to_record()));
                }
                self.current = None;
            }
            let i = self.next_block?;
            self.next_block = (i + 1 < self.reader.footer.entries.len()).then_some(i + 1);
            match self.reader.read_block(i) {
                Ok(block) => {
                    self.pos = block.position_of(self.from);
                    self.current = Some(block);
                }
                Err(e) => {
                    self.next_block = None;
                    return Some(Err(e));
                }
            }
        }
    }
}

/// Reads and checks every byte of a whole segment held in memory: header,
/// each block, footer and trailer. Returns the records on success.
pub fn verify(bytes: &[u8], name: &str) -> Result<Vec<Record>> {
    SegmentHeader::decode(bytes).map_err(|e| Error::corruption(name, e))?;
    let reader = SegmentReader::open(InMemory { bytes, name }, bytes.len() as u64)?;
    reader.read_all()
}
