//! A whole segment held in memory: open it through its footer, decode
//! blocks one at a time, or check every byte with [`verify`]. Reading a
//! segment from an object store, one ranged read per part, is the read
//! path's job (`src/read/source.rs`); both use the same pure steps.

use super::block::DecodedBlock;
use super::error::{FormatError, Part};
use super::footer::{tail_range, Footer, TailLookup};
use super::format::SegmentHeader;
use crate::record::Record;
use std::ops::Range;

/// A segment object in memory.
pub struct SegmentBytes<'a> {
    bytes: &'a [u8],
    footer: Footer,
}

impl<'a> SegmentBytes<'a> {
    /// Opens the segment by reading its trailer and footer.
    pub fn open(bytes: &'a [u8]) -> Result<Self, FormatError> {
        let len = bytes.len() as u64;
        let footer = match Footer::from_tail(slice(bytes, tail_range(len)?)?, len)? {
            TailLookup::Found(f) => f,
            TailLookup::FooterAt { range, trailer } => {
                Footer::decode(slice(bytes, range)?, &trailer)?
            }
        };
        Ok(SegmentBytes { bytes, footer })
    }

    pub fn footer(&self) -> &Footer {
        &self.footer
    }

    /// Decodes block `i`.
    pub fn block(&self, i: usize) -> Result<DecodedBlock, FormatError> {
        let entry = self
            .footer
            .entries()
            .get(i)
            .ok_or_else(|| FormatError::malformed(Part::Footer, format!("no block {i}")))?;
        DecodedBlock::decode(slice(self.bytes, entry.frame_range())?, entry, i as u32)
    }

    /// Records with offset >= `offset`, in order, block by block; ends
    /// after the first error.
    pub fn iter_from(&self, offset: i64) -> SegmentIter<'_, 'a> {
        SegmentIter {
            segment: self,
            next_block: self.footer.block_for_offset(offset),
            current: None,
            pos: 0,
            from: offset,
        }
    }

    /// Every record of the segment.
    pub fn read_all(&self) -> Result<Vec<Record>, FormatError> {
        self.iter_from(i64::MIN).collect()
    }
}

/// See [`SegmentBytes::iter_from`].
pub struct SegmentIter<'s, 'a> {
    segment: &'s SegmentBytes<'a>,
    next_block: Option<usize>,
    current: Option<DecodedBlock>,
    pos: usize,
    from: i64,
}

impl Iterator for SegmentIter<'_, '_> {
    type Item = Result<Record, FormatError>;

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
            let blocks = self.segment.footer.entries().len();
            self.next_block = (i + 1 < blocks).then_some(i + 1);
            match self.segment.block(i) {
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

/// `bytes[range]`, or the truncation it runs into.
fn slice(bytes: &[u8], range: Range<u64>) -> Result<&[u8], FormatError> {
    let len = bytes.len() as u64;
    if range.start > range.end || range.end > len {
        return Err(FormatError::Truncated {
            part: Part::Footer,
            needed: range.end,
            available: len,
        });
    }
    Ok(&bytes[range.start as usize..range.end as usize])
}

/// Reads and checks every byte of a whole segment held in memory: header,
/// each block, footer and trailer. Returns the records on success.
pub fn verify(bytes: &[u8]) -> Result<Vec<Record>, FormatError> {
    SegmentHeader::decode(bytes)?;
    SegmentBytes::open(bytes)?.read_all()
}
