//! The footer index: where every block is and what it holds, found from the
//! object's tail. Reading is two pure steps so that any byte source can
//! drive it: [`tail_range`] says what to fetch first, [`Footer::from_tail`]
//! either decodes the footer or names the range that holds it.

use super::error::{FormatError, Part};
use super::format::{
    check_crc, BlockIndexEntry, Trailer, FOOTER_COUNT_LEN, FRAME_HEADER_LEN, HEADER_LEN,
    INDEX_ENTRY_LEN, TRAILER_LEN,
};
use crate::codec::le_u32;
use std::ops::Range;

/// How many bytes of the tail a reader fetches first: enough for the footer
/// of a segment with ~1,300 blocks (over 1 GiB of 1 MiB blocks), so opening
/// a segment is one ranged read in practice.
pub const TAIL_READ_BYTES: u64 = 64 * 1024;

/// The decoded footer index of one segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Footer {
    entries: Vec<BlockIndexEntry>,
    /// `prefix_max_ts[i]` = max timestamp of blocks 0..=i; non-decreasing, so
    /// a timestamp lookup is a binary search even when timestamps go back.
    prefix_max_ts: Vec<i64>,
}

/// What the tail of an object revealed.
#[derive(Debug)]
pub enum TailLookup {
    /// The footer was inside the tail.
    Found(Footer),
    /// The footer starts before the tail: read `range`, then
    /// [`Footer::decode`] it with `trailer`.
    FooterAt { range: Range<u64>, trailer: Trailer },
}

/// The byte range to read first from an `object_len`-byte segment.
pub fn tail_range(object_len: u64) -> Result<Range<u64>, FormatError> {
    let min_len = (HEADER_LEN + TRAILER_LEN + FOOTER_COUNT_LEN) as u64;
    if object_len < min_len {
        return Err(FormatError::Truncated {
            part: Part::Trailer,
            needed: min_len,
            available: object_len,
        });
    }
    Ok(object_len.saturating_sub(TAIL_READ_BYTES)..object_len)
}

impl Footer {
    /// Reads the trailer at the end of `tail` (the bytes of
    /// [`tail_range`]`(object_len)`) and the footer, if the tail holds it.
    pub fn from_tail(tail: &[u8], object_len: u64) -> Result<TailLookup, FormatError> {
        let range = tail_range(object_len)?;
        if tail.len() as u64 != range.end - range.start {
            return Err(FormatError::Truncated {
                part: Part::Trailer,
                needed: range.end - range.start,
                available: tail.len() as u64,
            });
        }
        let trailer = Trailer::decode(tail)?;
        let footer_end = object_len - TRAILER_LEN as u64;
        let footer_len = u64::from(trailer.footer_len);
        if trailer.footer_position < HEADER_LEN as u64
            || trailer.footer_position.checked_add(footer_len) != Some(footer_end)
        {
            return Err(FormatError::malformed(
                Part::Trailer,
                format!(
                    "footer at {} of {} bytes does not end at the trailer ({footer_end})",
                    trailer.footer_position, footer_len
                ),
            ));
        }
        if trailer.footer_position < range.start {
            return Ok(TailLookup::FooterAt {
                range: trailer.footer_position..footer_end,
                trailer,
            });
        }
        let from = (trailer.footer_position - range.start) as usize;
        let bytes = &tail[from..from + footer_len as usize];
        Footer::decode(bytes, &trailer).map(TailLookup::Found)
    }

    /// Decodes footer bytes whose trailer has already been validated.
    pub fn decode(bytes: &[u8], trailer: &Trailer) -> Result<Footer, FormatError> {
        check_crc(Part::Footer, bytes, trailer.footer_crc)?;
        let entries = decode_entries(bytes)?;
        check_entries(&entries, trailer.footer_position)?;
        let mut prefix_max_ts = Vec::with_capacity(entries.len());
        let mut max = i64::MIN;
        for e in &entries {
            max = max.max(e.max_timestamp_ms);
            prefix_max_ts.push(max);
        }
        Ok(Footer {
            entries,
            prefix_max_ts,
        })
    }

    pub fn entries(&self) -> &[BlockIndexEntry] {
        &self.entries
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

/// The entry count, then that many fixed-width entries, nothing else.
fn decode_entries(bytes: &[u8]) -> Result<Vec<BlockIndexEntry>, FormatError> {
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
    Ok(bytes[FOOTER_COUNT_LEN..]
        .chunks_exact(INDEX_ENTRY_LEN)
        .map(BlockIndexEntry::decode)
        .collect())
}

/// Blocks must tile the object from the header to the footer, and their
/// offsets must be consistent and increasing.
fn check_entries(entries: &[BlockIndexEntry], footer_position: u64) -> Result<(), FormatError> {
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
    if expected_position != footer_position {
        return Err(FormatError::malformed(
            Part::Footer,
            format!("blocks end at {expected_position} but the footer starts at {footer_position}"),
        ));
    }
    Ok(())
}
