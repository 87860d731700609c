//! Recovery's view of a WAL: a pure function from the files' bytes to what
//! they hold beyond the committed offset. No I/O here; the partition acts
//! on the result (reopen, upload again, delete, set aside).

use super::entry::{decode_payload, frame, Frame};
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

/// What reading one WAL file found.
#[derive(Debug)]
pub struct FileScan {
    /// Every record of the good prefix, in offset order.
    pub records: Vec<Record>,
    /// Length of the good prefix in bytes; the file is cut here.
    pub good_len: u64,
    /// Why reading stopped early, if it did (torn or corrupt entry).
    pub cut: Option<String>,
}

/// Reads the entries of one file up to the first that is torn, fails its
/// checksum, does not parse, or does not continue the offsets from
/// `first_offset` (the offset the file's name promises).
pub fn scan_file(data: &[u8], first_offset: i64) -> FileScan {
    let mut records: Vec<Record> = Vec::new();
    let mut pos = 0usize;
    let mut expected = first_offset;
    let mut cut = None;
    while pos < data.len() {
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
        let starts_at = entry.first().map(|r| r.offset);
        if starts_at != Some(expected) {
            cut = Some(format!(
                "entry at byte {pos} starts at offset {starts_at:?}, expected {expected}"
            ));
            break;
        }
        expected += entry.len() as i64;
        records.extend(entry);
        pos += len;
    }
    FileScan {
        records,
        good_len: pos as u64,
        cut,
    }
}

/// A file whose records beyond the committed offset recovery keeps.
#[derive(Debug)]
pub struct RecoveredFile {
    pub path: PathBuf,
    /// The first offset this file holds for the partition now (its name's
    /// offset, or the committed offset if the file straddles it).
    pub first_offset: i64,
    /// End of the good prefix: appends continue here.
    pub good_len: u64,
    /// Uncommitted records, contiguous.
    pub records: Vec<Record>,
}

/// Where a file was cut, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cut {
    pub path: PathBuf,
    pub at: u64,
    pub why: String,
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
    /// Files after a cut: their offsets would not be contiguous; set aside.
    pub discard: Vec<PathBuf>,
    pub cuts: Vec<Cut>,
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
/// A cut (torn or corrupt entry) ends the log: later files are set aside.
/// A cut inside a file whose records are all committed loses nothing, and
/// scanning goes on.
pub fn scan_wal(
    committed: i64,
    files: impl IntoIterator<Item = Result<(WalFileRef, Vec<u8>), IoError>>,
) -> Result<Recovered, ScanError> {
    let mut out = Recovered::default();
    let mut kept: Vec<RecoveredFile> = Vec::new();
    let mut expected = committed;
    let mut broken = false;
    for item in files {
        let (file, data) = item.map_err(ScanError::Read)?;
        if broken {
            out.discard.push(file.path);
            continue;
        }
        let scan = scan_file(&data, file.first_offset);
        if let Some(why) = scan.cut {
            out.cuts.push(Cut {
                path: file.path.clone(),
                at: scan.good_len,
                why,
            });
            broken = true;
        }
        let records: Vec<Record> = scan
            .records
            .into_iter()
            .filter(|r| r.offset >= committed)
            .collect();
        if records.is_empty() && file.first_offset < committed {
            // Fully committed; its deletion was lost in a crash.
            out.obsolete.push(file.path);
            broken = false;
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
            expected = records[records.len() - 1].offset + 1;
        }
        kept.push(RecoveredFile {
            path: file.path,
            first_offset: file.first_offset.max(committed),
            good_len: scan.good_len,
            records,
        });
    }
    out.next_offset = expected;
    // Empty files before the last one carry nothing.
    while kept.len() > 1 && kept[0].records.is_empty() {
        out.obsolete.push(kept.remove(0).path);
    }
    // The last file is the active one if its records start where its name
    // says (an empty last file starts at the next offset).
    if let Some(last) = kept.pop() {
        let starts = last.records.first().map_or(expected, |r| r.offset);
        if last.first_offset == starts {
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
    Ok(out)
}
