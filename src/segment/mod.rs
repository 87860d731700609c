//! Segment format v1: the immutable object that holds one partition's records
//! for an offset range. `docs/FORMAT.md` is the byte-level specification.
//!
//! - [`format`]: constants, fixed-width parts, varints, [`FormatError`].
//! - [`writer`]: records → blocks (LZ4 + CRC-32C) → footer index → trailer.
//! - [`reader`]: footer from one ranged read of the tail; one block at a time.

pub mod format;
pub mod reader;
pub mod writer;

pub use format::{BlockIndexEntry, FormatError, Part, DEFAULT_BLOCK_BYTES, FORMAT_VERSION};
pub use reader::{
    read_block, verify, DecodedBlock, Footer, InMemory, InStore, ReadAt, RecordRef, SegmentReader,
    TAIL_READ_BYTES,
};
pub use writer::{SegmentSummary, SegmentWriter, WriteError};

#[cfg(test)]
mod tests;
