//! Segment format v1: the immutable object that holds one partition's records
//! for an offset range. `docs/FORMAT.md` is the byte-level specification.
//!
//! Pure bytes: nothing here knows where a segment is stored. Errors are
//! [`FormatError`]s naming the part that failed; the caller adds the object.
//!
//! - [`format`]: constants and the fixed-width parts (header, frame header,
//!   index entry, trailer);
//! - [`writer`]: records → blocks (LZ4 + CRC-32C) → footer index → trailer;
//! - [`footer`]: the index, found from the object's tail;
//! - [`block`]: one block checked, decompressed and parsed;
//! - [`reader`]: a whole segment in memory, and [`verify`].

mod block;
mod columns;
mod error;
mod footer;
pub(crate) mod format;
mod reader;
mod writer;

pub use block::{DecodedBlock, RecordRef};
pub use error::{FormatError, Part};
pub use footer::Footer;
#[cfg(test)]
pub(crate) use footer::TAIL_READ_BYTES;
pub(crate) use footer::{tail_range, TailLookup};
pub use format::{BlockIndexEntry, DEFAULT_BLOCK_BYTES};
pub use reader::{verify, SegmentBytes, SegmentIter};
pub use writer::{SegmentSummary, SegmentWriter, WriteError};

#[cfg(test)]
mod tests;
