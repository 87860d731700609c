//! The write-ahead log of one partition.
//!
//! A partition's WAL is a directory of files, one per segment: the file named
//! `{first_offset:020}.wal` holds the records of the segment that starts at
//! that offset, and a new file starts when the writer seals a segment. Once
//! the segment is uploaded and committed in metadata, its file is deleted
//! whole: trimming is one `unlink`, and recovery never has to skip committed
//! records inside a file.
//!
//! Why per partition and not one log per node: each partition trims on its
//! own schedule (when its own segment commits), and a node-wide log would
//! need reference counting across partitions before any file could go. The
//! cost is one fsync per partition per group commit instead of one per node;
//! group commit inside a partition already shares it between every request
//! pending at that moment.
//!
//! ## Entry format (little-endian)
//!
//! ```text
//! u32 crc        CRC-32C of the 4 length bytes followed by the payload
//! u32 len        payload length in bytes
//! payload, kind 1 = records:
//!   u8  kind
//!   i64 base_offset
//!   u32 record_count
//!   record_count x record:
//!     i64    timestamp_ms
//!     varint key code (0 = no key, k + 1 = key of k bytes), key bytes
//!     varint value length, value bytes
//!     varint header count, then per header (as in segment blocks):
//!       varint key length, key bytes (UTF-8), varint value length, value bytes
//! payload, kind 2 = skip (written only by a repair):
//!   u8  kind
//!   i64 next_offset   offsets go on here; the ones between are never used
//! payload, kind 3 = an idempotent producer's records:
//!   u8  kind
//!   i64 base_offset
//!   u32 record_count
//!   u64 producer_id     (never 0)
//!   u32 producer_epoch
//!   i64 first_sequence  (>= 0)
//!   i64 written_ms      server clock when written (producer expiry)
//!   record_count x record, as in kind 1
//! kinds 17 and 19 (1 and 3 with bit 0x10): the same, with every value
//!   length and header value length a *nullable* field: 0 = null,
//!   n + 1 = n bytes (written only for entries holding a null value or
//!   null header value, so entries without keep their original bytes)
//! ```
//!
//! The file of the active segment may end with zeros written ahead of its
//! last entry ([`zero_ahead`]); replay reads zeros to the end of the last
//! file as its end. A sealed file is cut to its last entry before the next
//! file is created, so zeros after the entries of any other file are damage.
//!
//! Kind 3 makes the producer table recoverable from the WAL alone: a batch
//! and the fact that it was written are one entry, one CRC.
//!
//! Offsets are written into the entry, so replay reproduces exactly the
//! offsets that were acknowledged. On replay the first entry that is torn
//! (runs past the end of the file), fails its CRC, does not parse, or does
//! not continue the offsets ends the good prefix. If it is the torn tail of
//! the log (the last file, nothing intact after it) the file is cut there:
//! those records were never acknowledged. Otherwise it is damage: nothing is
//! cut, the partition refuses writes (DATA_LOSS) and keeps serving reads up
//! to it, until an operator accepts the loss (`--repair-wal`), which keeps
//! the damaged bytes and skips past every offset they could hide.
//!
//! - [`entry`]: the entry codec;
//! - [`scan`]: recovery's pure scan, files in, recovered state out;
//! - [`dir`]: the directory and the open file;
//! - [`fs`]: the file-I/O seam, with a fault-injecting implementation;
//! - [`zero_ahead`]: zeros written ahead of a busy file, off the writer.

mod dir;
mod entry;
mod fs;
mod scan;
mod zero_ahead;

pub(crate) use dir::{is_disk_full, is_out_of_descriptors, WalDir, WalWriter};
pub(crate) use entry::encode_entry;
#[cfg(test)]
use entry::encode_skip_entry;
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) use entry::seal_payload_for_fuzzing;
pub use fs::{FaultyWalFs, OsWalFs, WalFaults, WalFile, WalFs};
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) use scan::scan_file;
pub(crate) use scan::{scan_wal, Damage, ProducerWrite, Recovered, RecoveredFile, ScanError};
#[cfg(test)]
use scan::{FileScan, WalFileRef};

#[cfg(test)]
mod tests;
