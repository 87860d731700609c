//! Recovery's view of a WAL: a pure function from the files' bytes to what
//! they hold beyond the committed offset. No I/O here; the partition acts
//! on the result (reopen, upload again, delete, set aside).

use super::entry::{decode_payload, frame, plausible_entry_at, Entry, Frame};
use crate::producer::ProducerBatch;
use crate::record::Record;
use crate::util::fs::IoError;
use std::fmt;
use std::path::PathBuf;

/// One WAL file on disk, by the first offset its name gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalFileRef {
    pub first_offset: i64,
    pub path: PathBuf,
}

/// An idempotent producer's batch found in the WAL, and where it landed:
/// recovery replays these into the partition's producer table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProducerWrite {
    pub batch: ProducerBatch,
    pub base_offset: i64,
    pub count: u32,
    /// When it was written (server clock, ms).
    pub written_ms: i64,
}

/// What reading one WAL file found.
#[derive(Debug)]
pub struct FileScan {
    /// Every record of the good prefix, in offset order.
    pub records: Vec<Record>,
    /// The idempotent batches among them, in offset order.
    pub writes: Vec<ProducerWrite>,
    /// Length of the good prefix in bytes; the file is cut here.
    pub good_len: u64,
    /// Why reading stopped early, if it did (torn or corrupt entry).
    pub cut: Option<String>,
    /// The good prefix is followed by zeros to the end of the file: zeros
    /// written ahead of an active file's end, not yet overwritten (not a
    /// cut, in the last file).
    pub zero_tail: bool,
    /// The offset the next record takes after the good prefix.
    pub next_offset: i64,
}

/// Fewest bytes one record takes in a WAL entry (timestamp, key code, value
/// length, header count): bounds how many offsets unreadable bytes can hide.
const MIN_RECORD_BYTES: u64 = 11;

/// Reads the entries of one file up to the first that is torn, fails its
/// checksum, does not parse, or does not continue the offsets from
/// `first_offset` (the offset the file's name promises).
pub fn scan_file(data: &[u8], first_offset: i64) -> FileScan {
    let mut records: Vec<Record> = Vec::new();
    let mut writes = Vec::new();
    let mut pos = 0usize;
    let mut expected = first_offset;
    let mut cut = None;
    let mut zero_tail = false;
    while pos < data.len() {
        if data[pos] == 0 && data[pos..].iter().all(|&b| b == 0) {
            zero_tail = true;
            break;
        }
        let (payload, len) = match frame(&data[pos..]) {
            Frame::Whole { payload, len } => (payload, len),
            Frame::Torn(why) => {
                cut = Some(format!("{why} at byte {pos}"));
                break;
            }
            Frame::BadChecksum => {
                cut = Some(format!("entry at byte {pos} fails its checksum"));
                break;
            }
        };
        let entry = match decode_payload(payload) {
            Ok(e) => e,
            Err(e) => {
                cut = Some(format!("entry at byte {pos} does not parse: {e}"));
                break;
            }
        };
        match entry {
            Entry::Records(entry, producer) => {
                let starts_at = entry.first().map(|r| r.offset);
                if starts_at != Some(expected) {
                    cut = Some(format!(
                        "entry at byte {pos} starts at offset {starts_at:?}, expected {expected}"
                    ));
                    break;
                }
                if let Some((batch, written_ms)) = producer {
                    writes.push(ProducerWrite {
                        batch,
                        base_offset: expected,
                        count: entry.len() as u32,
                        written_ms,
                    });
                }
                expected += entry.len() as i64;
                records.extend(entry);
            }
            Entry::Skip(next) if next >= expected => expected = next,
            Entry::Skip(next) => {
                cut = Some(format!(
                    "entry at byte {pos} skips back to offset {next} from {expected}"
                ));
                break;
            }
        }
        pos += len;
    }
    FileScan {
        records,
        writes,
        good_len: pos as u64,
        cut,
        zero_tail,
        next_offset: expected,
    }
}

/// Whether an intact entry that continues the offsets follows `from`.
fn later_entry_exists(data: &[u8], from: usize, min_offset: i64) -> bool {
    (from + 1..data.len()).any(|q| plausible_entry_at(&data[q..], min_offset))
}

/// A file whose records beyond the committed offset recovery keeps.
#[derive(Debug)]
pub struct RecoveredFile {
    pub path: PathBuf,
    /// The file's length on disk (beyond `good_len` when it is damaged).
    pub len: u64,
    /// The first offset this file holds for the partition now (its name's
    /// offset, or the committed offset if the file straddles it).
    pub first_offset: i64,
    /// End of the good prefix: appends continue here.
    pub good_len: u64,
    /// Where offsets continue after this file's good prefix (past its last
    /// record, or where a skip entry moved them).
    pub next_offset: i64,
    /// Uncommitted records, contiguous.
    pub records: Vec<Record>,
    /// The idempotent batches among them.
    pub writes: Vec<ProducerWrite>,
}

/// Where a file was cut, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cut {
    pub path: PathBuf,
    pub at: u64,
    pub why: String,
}

/// A bad entry that is not the torn tail of the log (a later intact entry,
/// or a later file, exists): offsets after it may have been acknowledged
/// and read, so nothing is cut or renumbered until an operator accepts the
/// loss ([`Damage::next_offset_bound`] is where offsets may then go on).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    pub path: PathBuf,
    /// Byte position of the bad entry.
    pub at: u64,
    pub why: String,
    /// The first offset that could not be read.
    pub first_lost: i64,
    /// The damaged file's length, and the later files with their first
    /// offsets and lengths: what may hide acknowledged offsets.
    pub file_len: u64,
    pub later: Vec<(WalFileRef, u64)>,
}

impl Damage {
    /// An offset no record of the damaged region or a later file can have
    /// had: each record takes at least [`MIN_RECORD_BYTES`].
    pub fn next_offset_bound(&self) -> i64 {
        let hidden = |first: i64, bytes: u64| first + (bytes / MIN_RECORD_BYTES) as i64 + 1;
        self.later
            .iter()
            .map(|(f, len)| hidden(f.first_offset, *len))
            .fold(hidden(self.first_lost, self.file_len - self.at), i64::max)
    }
}

/// Everything the WAL holds beyond the committed offset.
#[derive(Debug, Default)]
pub struct Recovered {
    /// Where offsets continue: one past the last record found.
    pub next_offset: i64,
    /// Sealed files with uncommitted records, in offset order: their
    /// segments are uploaded again.
    pub sealed: Vec<RecoveredFile>,
    /// The file the writer keeps appending to, if one can be reused.
    pub active: Option<RecoveredFile>,
    /// Files with nothing uncommitted in them: delete.
    pub obsolete: Vec<PathBuf>,
    pub cuts: Vec<Cut>,
    /// Damage in the middle of the log: the partition must not write.
    pub damage: Option<Damage>,
}

#[derive(Debug)]
pub enum ScanError {
    Read(IoError),
    /// The records found do not continue from the committed offset.
    Gap {
        path: PathBuf,
        expected: i64,
        found: i64,
    },
}

impl fmt::Display for ScanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScanError::Read(e) => e.fmt(f),
            ScanError::Gap {
                path,
                expected,
                found,
            } => write!(
                f,
                "WAL {} resumes at offset {found} but {expected} is the next expected; \
                 offsets {expected}..{found} are missing",
                path.display()
            ),
        }
    }
}

/// Scans a partition's WAL files, in offset order, against `committed`
/// (one past the last offset in a committed segment).
///
/// A torn tail (a bad entry at the end of the last file, nothing intact
/// after it) is cut: those records were never acknowledged. A bad entry
/// with an intact entry or a later file after it is damage: scanning stops
/// there, nothing is cut or set aside, and [`Recovered::damage`] says where.
/// A cut inside a file whose records are all committed loses nothing.
pub fn scan_wal(
    committed: i64,
    files: impl IntoIterator<Item = Result<(WalFileRef, Vec<u8>), IoError>>,
) -> Result<Recovered, ScanError> {
    let mut out = Recovered::default();
    let mut kept: Vec<RecoveredFile> = Vec::new();
    let mut expected = committed;
    let mut files = files.into_iter().peekable();
    while let Some(item) = files.next() {
        let (file, data) = item.map_err(ScanError::Read)?;
        let scan = scan_file(&data, file.first_offset);
        let records: Vec<Record> = scan
            .records
            .into_iter()
            .filter(|r| r.offset >= committed)
            .collect();
        if records.is_empty() && file.first_offset < committed && scan.next_offset <= committed {
            // Fully committed; its deletion was lost in a crash.
            out.obsolete.push(file.path);
            continue;
        }
        if let Some(first) = records.first() {
            if first.offset != expected {
                return Err(ScanError::Gap {
                    path: file.path,
                    expected,
                    found: first.offset,
                });
            }
        }
        expected = expected.max(scan.next_offset);
        let mut damage = None;
        let more_files = files.peek().is_some();
        // A finished file ends with its last entry: zeros after it in a
        // file before the last are damage, not the zeros of an active file.
        let cut = scan.cut.or_else(|| {
            (scan.zero_tail && more_files).then(|| {
                format!(
                    "zeros from byte {} to the end of a file that is not the last",
                    scan.good_len
                )
            })
        });
        if let Some(why) = cut {
            out.cuts.push(Cut {
                path: file.path.clone(),
                at: scan.good_len,
                why: why.clone(),
            });
            if more_files || later_entry_exists(&data, scan.good_len as usize, expected) {
                damage = Some(Damage {
                    path: file.path.clone(),
                    at: scan.good_len,
                    why,
                    first_lost: expected,
                    file_len: data.len() as u64,
                    later: Vec::new(),
                });
            }
        }
        kept.push(RecoveredFile {
            path: file.path,
            len: data.len() as u64,
            first_offset: file.first_offset.max(committed),
            good_len: scan.good_len,
            next_offset: scan.next_offset,
            records,
            writes: scan
                .writes
                .into_iter()
                .filter(|w| w.base_offset >= committed)
                .collect(),
        });
        if let Some(mut d) = damage {
            for later in files.by_ref() {
                let (f, data) = later.map_err(ScanError::Read)?;
                d.later.push((f, data.len() as u64));
            }
            out.damage = Some(d);
        }
    }
    out.next_offset = expected;
    settle_files(&mut out, kept);
    Ok(out)
}

/// Sorts the kept files into sealed ones, the active one and obsolete ones.
fn settle_files(out: &mut Recovered, mut kept: Vec<RecoveredFile>) {
    let expected = out.next_offset;
    // Empty files before the last one carry nothing.
    while kept.len() > 1 && kept[0].records.is_empty() {
        out.obsolete.push(kept.remove(0).path);
    }
    // The last file is the active one if its records start where its name
    // says (an empty last file starts at the next offset), if a repair's
    // skip entry moved its offsets on, or if it is damaged (kept as it is).
    if let Some(last) = kept.pop() {
        let starts = last.records.first().map_or(expected, |r| r.offset);
        let skipped = last.records.is_empty() && last.next_offset > last.first_offset;
        if last.first_offset == starts || skipped || out.damage.is_some() {
            out.active = Some(last);
        } else {
            kept.push(last);
        }
    }
    for k in kept {
        if k.records.is_empty() {
            out.obsolete.push(k.path);
        } else {
            out.sealed.push(k);
        }
    }
}
