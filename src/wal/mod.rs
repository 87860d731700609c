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
//! payload:
//!   u8  kind     1 = records
//!   i64 base_offset
//!   u32 record_count
//!   record_count x record:
//!     i64    timestamp_ms
//!     varint key code (0 = no key, k + 1 = key of k bytes), key bytes
//!     varint value length, value bytes
//!     varint header count, then per header:
//!       varint key length, key bytes (UTF-8), varint value length, value bytes
//! ```
//!
//! Offsets are written into the entry, so replay reproduces exactly the
//! offsets that were acknowledged. On replay the first entry that is torn
//! (runs past the end of the file), fails its CRC, does not parse, or does
//! not continue the offsets is where the file is cut: nothing after it is
//! read, and the file is truncated there so later appends follow good data.

use crate::error::{Error, Result};
use crate::record::{Header, Record};
use crate::segment::format::{put_uvarint, Cursor, FormatError, Part};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

const ENTRY_HEADER_LEN: usize = 8;
const KIND_RECORDS: u8 = 1;
/// Bounds a corrupt length field: no entry is larger than this.
const MAX_ENTRY_LEN: u32 = 1 << 30;

/// Encodes one WAL entry for `records` (whose offsets start at `base_offset`
/// and are contiguous) onto the end of `out`.
pub fn encode_entry(out: &mut Vec<u8>, base_offset: i64, records: &[Record]) {
    let start = out.len();
    out.extend_from_slice(&[0u8; ENTRY_HEADER_LEN]);
    out.push(KIND_RECORDS);
    out.extend_from_slice(&base_offset.to_le_bytes());
    out.extend_from_slice(&(records.len() as u32).to_le_bytes());
    for r in records {
        out.extend_from_slice(&r.timestamp_ms.to_le_bytes());
        match &r.key {
            None => out.push(0),
            Some(k) => {
                put_uvarint(out, k.len() as u64 + 1);
                out.extend_from_slice(k);
            }
        }
        put_uvarint(out, r.value.len() as u64);
        out.extend_from_slice(&r.value);
        put_uvarint(out, r.headers.len() as u64);
        for h in &r.headers {
            put_uvarint(out, h.key.len() as u64);
            out.extend_from_slice(h.key.as_bytes());
            put_uvarint(out, h.value.len() as u64);
            out.extend_from_slice(&h.value);
        }
    }
    let len = (out.len() - start - ENTRY_HEADER_LEN) as u32;
    out[start + 4..start + 8].copy_from_slice(&len.to_le_bytes());
    let crc = crc32c::crc32c_append(
        crc32c::crc32c(&len.to_le_bytes()),
        &out[start + ENTRY_HEADER_LEN..],
    );
    out[start..start + 4].copy_from_slice(&crc.to_le_bytes());
}

/// Decodes one entry payload into records with their offsets.
fn decode_payload(payload: &[u8]) -> std::result::Result<Vec<Record>, FormatError> {
    let part = Part::WalEntry;
    if payload.len() < 13 || payload[0] != KIND_RECORDS {
        return Err(FormatError::malformed(part, "not a records entry"));
    }
    let mut b8 = [0u8; 8];
    b8.copy_from_slice(&payload[1..9]);
    let base = i64::from_le_bytes(b8);
    let count = u32::from_le_bytes([payload[9], payload[10], payload[11], payload[12]]) as usize;
    if count > payload.len() || base < 0 {
        return Err(FormatError::malformed(
            part,
            "record count or base offset out of range",
        ));
    }
    let mut c = Cursor::new(payload, 13, part);
    let mut records = Vec::with_capacity(count);
    for i in 0..count {
        let ts = c.skip(8, "timestamp")?;
        b8.copy_from_slice(&payload[ts]);
        let key = match c.uvarint("key code")? {
            0 => None,
            code => {
                let len = usize::try_from(code - 1)
                    .map_err(|_| FormatError::malformed(part, "key length"))?;
                Some(payload[c.skip(len, "key")?].to_vec())
            }
        };
        let vlen = c.len("value length")?;
        let value = payload[c.skip(vlen, "value")?].to_vec();
        let hcount = c.len("header count")?;
        let mut headers = Vec::with_capacity(hcount);
        for _ in 0..hcount {
            let kl = c.len("header key length")?;
            let k = std::str::from_utf8(&payload[c.skip(kl, "header key")?])
                .map_err(|_| FormatError::malformed(part, "header key is not UTF-8"))?
                .to_string();
            let vl = c.len("header value length")?;
            headers.push(Header {
                key: k,
                value: payload[c.skip(vl, "header value")?].to_vec(),
            });
        }
        records.push(Record {
            offset: base + i as i64,
            timestamp_ms: i64::from_le_bytes(b8),
            key,
            value,
            headers,
        });
    }
    if c.pos() != payload.len() {
        return Err(FormatError::malformed(
            part,
            "trailing bytes after the last record",
        ));
    }
    Ok(records)
}

/// What replaying one WAL file found.
#[derive(Debug)]
pub struct Replay {
    /// Every record of the good prefix, in offset order.
    pub records: Vec<Record>,
    /// Length of the good prefix in bytes; the file is cut here.
    pub good_len: u64,
    /// Why replay stopped early, if it did (torn or corrupt tail).
    pub cut: Option<String>,
}

/// Reads a WAL file up to its first bad entry. `first_offset` is the offset
/// its name promises for the first record.
pub fn replay_file(path: &Path, first_offset: i64) -> Result<Replay> {
    let data = fs::read(path).map_err(|e| Error::io(format!("read WAL {}", path.display()), e))?;
    let mut records: Vec<Record> = Vec::new();
    let mut pos = 0usize;
    let mut expected = first_offset;
    let mut cut = None;
    while pos < data.len() {
        let rest = &data[pos..];
        if rest.len() < ENTRY_HEADER_LEN {
            cut = Some(format!("torn entry header at byte {pos}"));
            break;
        }
        let crc = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]);
        let len = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
        if len > MAX_ENTRY_LEN || (len as usize) > rest.len() - ENTRY_HEADER_LEN {
            cut = Some(format!(
                "entry at byte {pos} runs past the end of the file (torn write)"
            ));
            break;
        }
        let payload = &rest[ENTRY_HEADER_LEN..ENTRY_HEADER_LEN + len as usize];
        let computed = crc32c::crc32c_append(crc32c::crc32c(&rest[4..8]), payload);
        if computed != crc {
            cut = Some(format!("entry at byte {pos} fails its checksum"));
            break;
        }
        let entry = match decode_payload(payload) {
            Ok(e) => e,
            Err(e) => {
                cut = Some(format!("entry at byte {pos} does not parse: {e}"));
                break;
            }
        };
        if entry.first().map(|r| r.offset) != Some(expected) {
            cut = Some(format!(
                "entry at byte {pos} starts at offset {:?}, expected {expected}",
                entry.first().map(|r| r.offset)
            ));
            break;
        }
        expected += entry.len() as i64;
        records.extend(entry);
        pos += ENTRY_HEADER_LEN + len as usize;
    }
    Ok(Replay {
        records,
        good_len: pos as u64,
        cut,
    })
}

/// The WAL directory of one partition.
#[derive(Debug)]
pub struct WalDir {
    dir: PathBuf,
}

/// One WAL file on disk, by the first offset its name gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalFileRef {
    pub first_offset: i64,
    pub path: PathBuf,
}

impl WalDir {
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self> {
        let dir = dir.into();
        fs::create_dir_all(&dir)
            .map_err(|e| Error::io(format!("create WAL directory {}", dir.display()), e))?;
        Ok(WalDir { dir })
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    pub fn file_path(&self, first_offset: i64) -> PathBuf {
        self.dir.join(format!("{first_offset:020}.wal"))
    }

    /// The WAL files in offset order. Files that are not ours are ignored.
    pub fn files(&self) -> Result<Vec<WalFileRef>> {
        let ctx = |e| Error::io(format!("list WAL directory {}", self.dir.display()), e);
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(ctx)? {
            let entry = entry.map_err(ctx)?;
            let name = entry.file_name();
            let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".wal")) else {
                continue;
            };
            if let Ok(first_offset) = stem.parse::<i64>() {
                out.push(WalFileRef {
                    first_offset,
                    path: entry.path(),
                });
            }
        }
        out.sort_by_key(|f| f.first_offset);
        Ok(out)
    }

    /// Creates the file for the segment starting at `first_offset` (empty;
    /// an existing file is truncated) and makes its name durable.
    pub fn create(&self, first_offset: i64) -> Result<WalWriter> {
        let path = self.file_path(first_offset);
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&path)
            .map_err(|e| Error::io(format!("create WAL {}", path.display()), e))?;
        sync_dir(&self.dir)?;
        Ok(WalWriter { file, path, len: 0 })
    }

    /// Reopens an existing file for appending after cutting it to
    /// `good_len` bytes (the end of its last good entry).
    pub fn reopen(&self, file: &WalFileRef, good_len: u64) -> Result<WalWriter> {
        let ctx = |e| Error::io(format!("reopen WAL {}", file.path.display()), e);
        let f = OpenOptions::new()
            .write(true)
            .open(&file.path)
            .map_err(ctx)?;
        let len = f.metadata().map_err(ctx)?.len();
        if len != good_len {
            f.set_len(good_len).map_err(ctx)?;
            f.sync_all().map_err(ctx)?;
        }
        let mut w = WalWriter {
            file: f,
            path: file.path.clone(),
            len: good_len,
        };
        w.seek_end()?;
        Ok(w)
    }

    /// Deletes a WAL file whose records are all committed in segments.
    pub fn remove(&self, path: &Path) -> Result<()> {
        match fs::remove_file(path) {
            Ok(()) => sync_dir(&self.dir),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(format!("remove WAL {}", path.display()), e)),
        }
    }

    /// Removes the whole directory (topic deletion).
    pub fn destroy(self) -> Result<()> {
        match fs::remove_dir_all(&self.dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(format!("remove {}", self.dir.display()), e)),
        }
    }
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(format!("fsync directory {}", dir.display()), e))
}

/// The open, append-only WAL file of the active segment.
#[derive(Debug)]
pub struct WalWriter {
    file: File,
    path: PathBuf,
    len: u64,
}

impl WalWriter {
    fn seek_end(&mut self) -> Result<()> {
        use std::io::Seek;
        self.file
            .seek(io::SeekFrom::Start(self.len))
            .map(|_| ())
            .map_err(|e| Error::io(format!("seek WAL {}", self.path.display()), e))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends encoded entries (not yet durable).
    pub fn append(&mut self, bytes: &[u8]) -> Result<()> {
        self.file
            .write_all(bytes)
            .map_err(|e| Error::io(format!("write WAL {}", self.path.display()), e))?;
        self.len += bytes.len() as u64;
        Ok(())
    }

    /// Makes everything appended so far durable (fdatasync).
    pub fn sync(&mut self) -> Result<()> {
        self.file
            .sync_data()
            .map_err(|e| Error::io(format!("fsync WAL {}", self.path.display()), e))
    }
}

#[cfg(test)]
mod tests;
