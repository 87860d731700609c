//! What can be wrong with a segment's bytes, and where.

use crate::codec::DecodeError;
use std::fmt;

/// Which part of a segment an error is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    Header,
    Trailer,
    Footer,
    /// A block, by its index in the footer (0-based).
    Block(u32),
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Part::Header => f.write_str("header"),
            Part::Trailer => f.write_str("trailer"),
            Part::Footer => f.write_str("footer"),
            Part::Block(i) => write!(f, "block {i}"),
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

    /// A field of `part` that did not decode.
    pub(crate) fn decode(part: Part, e: DecodeError) -> Self {
        Self::malformed(part, e.0)
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
