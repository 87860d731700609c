use super::*;
use crate::record::{Header, Record};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn wal_dir(root: &Path) -> WalDir {
    WalDir::open(root.join("wal"), Arc::new(OsWalFs)).unwrap()
}

fn replay_file(path: &Path, first_offset: i64) -> FileScan {
    scan_file(&fs::read(path).unwrap(), first_offset)
}

fn rec(offset: i64, value: &str) -> Record {
    Record {
        offset,
        timestamp_ms: 1_000 + offset,
        key: (offset % 2 == 0).then(|| format!("k{offset}").into_bytes()),
        value: Some(value.as_bytes().to_vec()),
        headers: if offset % 3 == 0 {
            vec![Header {
                key: "h".into(),
                value: Some(vec![0, 1, 2]),
            }]
        } else {
            vec![]
        },
    }
}

fn batch(base: i64, n: i64) -> Vec<Record> {
    (base..base + n)
        .map(|o| rec(o, &format!("value-{o}")))
        .collect()
}

/// Writes entries of 3, 1 and 4 records starting at offset 10.
fn write_sample(dir: &WalDir) -> (PathBuf, Vec<Record>, Vec<u64>) {
    let mut w = dir.create(10).unwrap();
    let mut all = Vec::new();
    let mut ends = Vec::new();
    for (base, n) in [(10, 3), (13, 1), (14, 4)] {
        let b = batch(base, n);
        let mut buf = Vec::new();
        encode_entry(&mut buf, base, &b, None);
        w.append(&buf).unwrap();
        ends.push(fs::metadata(w.path()).unwrap().len());
        all.extend(b);
    }
    w.sync().unwrap();
    (w.path().to_path_buf(), all, ends)
}

#[test]
fn entries_replay_with_their_offsets() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = wal_dir(tmp.path());
    let (path, all, ends) = write_sample(&dir);
    let replay = replay_file(&path, 10);
    assert_eq!(replay.records, all);
    assert_eq!(replay.good_len, *ends.last().unwrap());
    assert!(replay.cut.is_none());
    assert_eq!(
        dir.files().unwrap(),
        vec![WalFileRef {
            first_offset: 10,
            path
        }]
    );
}

#[test]
fn a_torn_tail_is_cut_at_the_last_whole_entry_for_every_cut_point() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = wal_dir(tmp.path());
    let (path, all, ends) = write_sample(&dir);
    let full = fs::read(&path).unwrap();
    for cut in 0..full.len() {
        fs::write(&path, &full[..cut]).unwrap();
        let replay = replay_file(&path, 10);
        let whole = ends.iter().filter(|&&e| e as usize <= cut).count();
        let expected_len = if whole == 0 { 0 } else { ends[whole - 1] };
        assert_eq!(replay.good_len, expected_len, "cut at {cut}");
        let n = [0, 3, 4, 8][whole];
        assert_eq!(replay.records, all[..n], "cut at {cut}");
        assert_eq!(replay.cut.is_some(), cut as u64 != expected_len);
    }
}

#[test]
fn a_flipped_byte_stops_replay_at_that_entry() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = wal_dir(tmp.path());
    let (path, all, ends) = write_sample(&dir);
    let full = fs::read(&path).unwrap();
    for i in 0..full.len() {
        let mut bad = full.clone();
        bad[i] ^= 0x40;
        fs::write(&path, &bad).unwrap();
        let replay = replay_file(&path, 10);
        let entry = ends.iter().position(|&e| (i as u64) < e).unwrap();
        let n = [0, 3, 4][entry];
        assert_eq!(
            replay.records,
            all[..n],
            "flip at {i}: nothing from the bad entry on"
        );
        assert!(replay.cut.is_some());
    }
}

#[test]
fn an_entry_that_does_not_continue_the_offsets_is_a_cut() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = wal_dir(tmp.path());
    let mut w = dir.create(0).unwrap();
    let mut buf = Vec::new();
    encode_entry(&mut buf, 0, &batch(0, 2), None);
    encode_entry(&mut buf, 5, &batch(5, 2), None); // gap: 2..5 missing
    w.append(&buf).unwrap();
    let replay = replay_file(w.path(), 0);
    assert_eq!(replay.records.len(), 2);
    assert!(replay.cut.unwrap().contains("expected 2"));
    // A file whose first entry is not the offset its name promises.
    assert!(replay_file(w.path(), 1).records.is_empty());
}

#[test]
fn reopen_cuts_the_bad_tail_and_appends_after_the_good_prefix() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = wal_dir(tmp.path());
    let (path, all, ends) = write_sample(&dir);
    let mut full = fs::read(&path).unwrap();
    full.extend_from_slice(&[0xde, 0xad, 0xbe]); // torn garbage
    fs::write(&path, &full).unwrap();
    let replay = replay_file(&path, 10);
    let file = dir.files().unwrap().remove(0);
    let mut w = dir.reopen(&file.path, replay.good_len).unwrap();
    let mut buf = Vec::new();
    encode_entry(&mut buf, 18, &batch(18, 2), None);
    w.append(&buf).unwrap();
    w.sync().unwrap();
    let again = replay_file(&path, 10);
    assert!(again.cut.is_none());
    assert_eq!(again.records[..8], all[..]);
    assert_eq!(again.records[8..], batch(18, 2)[..]);
    assert_eq!(again.good_len, ends[2] + buf.len() as u64);
    dir.remove(&path).unwrap();
    dir.remove(&path).unwrap(); // idempotent
    assert!(dir.files().unwrap().is_empty());
}

// ---- scan_wal: files in, recovered state out (no disk) ----

/// A WAL file's name and bytes, built in memory: entries of the given
/// (base, count) pairs.
fn file(first_offset: i64, entries: &[(i64, i64)]) -> (WalFileRef, Vec<u8>) {
    let mut data = Vec::new();
    for &(base, n) in entries {
        encode_entry(&mut data, base, &batch(base, n), None);
    }
    (
        WalFileRef {
            first_offset,
            path: PathBuf::from(format!("{first_offset}.wal")),
        },
        data,
    )
}

fn scan(committed: i64, files: Vec<(WalFileRef, Vec<u8>)>) -> Recovered {
    scan_wal(committed, files.into_iter().map(Ok)).unwrap()
}

fn offsets(records: &[Record]) -> Vec<i64> {
    records.iter().map(|r| r.offset).collect()
}

fn path(first_offset: i64) -> PathBuf {
    PathBuf::from(format!("{first_offset}.wal"))
}

#[test]
fn scan_of_whole_files_keeps_sealed_files_and_the_active_one() {
    let r = scan(
        0,
        vec![
            file(0, &[(0, 3), (3, 2)]),
            file(5, &[(5, 4)]),
            file(9, &[(9, 1)]),
        ],
    );
    assert_eq!(r.next_offset, 10);
    assert_eq!(r.sealed.len(), 2);
    assert_eq!(offsets(&r.sealed[0].records), vec![0, 1, 2, 3, 4]);
    assert_eq!(offsets(&r.sealed[1].records), vec![5, 6, 7, 8]);
    let active = r.active.unwrap();
    assert_eq!(
        (active.first_offset, offsets(&active.records)),
        (9, vec![9])
    );
    assert!(r.obsolete.is_empty() && r.damage.is_none() && r.cuts.is_empty());
}

#[test]
fn scan_skips_committed_records_and_marks_committed_files_obsolete() {
    // 0..5 and 5..7 are committed; the file at 5 straddles the committed
    // offset (7) and keeps 7..9; an empty file at 9 is the active one.
    let r = scan(
        7,
        vec![file(0, &[(0, 5)]), file(5, &[(5, 2), (7, 2)]), file(9, &[])],
    );
    assert_eq!(r.next_offset, 9);
    assert_eq!(r.obsolete, vec![path(0)]);
    assert_eq!(r.sealed.len(), 1);
    assert_eq!(r.sealed[0].first_offset, 7);
    assert_eq!(offsets(&r.sealed[0].records), vec![7, 8]);
    let active = r.active.unwrap();
    assert_eq!((active.path, active.records.len()), (path(9), 0));
}

#[test]
fn scan_cut_in_the_final_file_keeps_the_good_prefix_for_appends() {
    let (f, mut data) = file(4, &[(4, 2), (6, 3)]);
    let whole_first = {
        let mut d = Vec::new();
        encode_entry(&mut d, 4, &batch(4, 2), None);
        d.len() as u64
    };
    data.truncate(data.len() - 5); // torn second entry
    let r = scan(0, vec![file(0, &[(0, 4)]), (f, data)]);
    assert_eq!(r.next_offset, 6, "offsets continue after the good prefix");
    let active = r.active.unwrap();
    assert_eq!(active.good_len, whole_first);
    assert_eq!(offsets(&active.records), vec![4, 5]);
    assert_eq!(r.cuts.len(), 1);
    assert_eq!(
        (r.cuts[0].path.clone(), r.cuts[0].at),
        (path(4), whole_first)
    );
    assert!(r.damage.is_none(), "a torn tail is not damage");
}

#[test]
fn a_bad_entry_in_a_non_final_file_is_damage_not_a_cut() {
    let (f, mut data) = file(3, &[(3, 2), (5, 2)]);
    let n = data.len();
    data[n - 1] ^= 0x40; // corrupt the second entry of the middle file
    let later = file(7, &[(7, 5)]);
    let last = file(12, &[(12, 1)]);
    let (later_len, last_len) = (later.1.len() as u64, last.1.len() as u64);
    let r = scan(0, vec![file(0, &[(0, 3)]), (f, data), later, last]);
    let d = r.damage.expect("damage");
    assert_eq!((d.path.clone(), d.first_lost), (path(3), 5));
    assert!(d.why.contains("checksum"), "{}", d.why);
    assert_eq!(
        d.later,
        vec![
            (
                WalFileRef {
                    first_offset: 7,
                    path: path(7)
                },
                later_len
            ),
            (
                WalFileRef {
                    first_offset: 12,
                    path: path(12)
                },
                last_len
            )
        ],
        "later files are left as they are"
    );
    // Reads keep what precedes the damage; offsets would go on only past
    // anything a later file could hold.
    assert_eq!(offsets(&r.sealed[0].records), vec![0, 1, 2]);
    assert_eq!(offsets(&r.active.unwrap().records), vec![3, 4]);
    assert!(d.next_offset_bound() > 12 + (last_len / 11) as i64);
}

#[test]
fn a_bad_entry_with_an_intact_one_after_it_in_the_last_file_is_damage() {
    let (f, mut data) = file(0, &[(0, 2), (2, 3), (5, 1)]);
    let first_len = {
        let mut d = Vec::new();
        encode_entry(&mut d, 0, &batch(0, 2), None);
        d.len()
    };
    data[first_len + 12] ^= 0x01; // inside the second entry's payload
    let r = scan(0, vec![(f, data)]);
    let d = r.damage.expect("bit rot in the middle, not a torn tail");
    assert_eq!((d.at as usize, d.first_lost), (first_len, 2));
    assert!(d.later.is_empty());
    assert_eq!(offsets(&r.active.unwrap().records), vec![0, 1]);
}

#[test]
fn a_repair_keeps_the_damaged_bytes_skips_past_the_damage_and_never_reuses_offsets() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = wal_dir(tmp.path());
    let mut w = dir.create(0).unwrap();
    let mut buf = Vec::new();
    for (base, n) in [(0, 2), (2, 3), (5, 4)] {
        encode_entry(&mut buf, base, &batch(base, n), None);
    }
    let second = {
        let mut d = Vec::new();
        encode_entry(&mut d, 0, &batch(0, 2), None);
        d.len() + 12
    };
    buf[second] ^= 0xff; // inside the second entry
    w.append(&buf).unwrap();
    w.sync().unwrap();
    let mut later = dir.create(9).unwrap();
    let mut lbuf = Vec::new();
    encode_entry(&mut lbuf, 9, &batch(9, 2), None);
    later.append(&lbuf).unwrap();
    let r = scan_wal(0, dir.read_all().unwrap()).unwrap();
    let damage = r.damage.expect("damage");
    assert_eq!(damage.first_lost, 2);
    let next = dir.accept_loss(&damage).unwrap();
    assert!(next >= 11, "past every offset a later file holds: {next}");
    assert_eq!(next, damage.next_offset_bound());
    // The damaged bytes are kept; later files are set aside, not deleted.
    let names: Vec<String> = fs::read_dir(tmp.path().join("wal"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(
        names.iter().any(|n| n.ends_with(".wal.damaged")),
        "{names:?}"
    );
    assert!(
        names.iter().any(|n| n.ends_with(".wal.discarded")),
        "{names:?}"
    );
    let kept = fs::read(tmp.path().join("wal/00000000000000000000.wal.damaged")).unwrap();
    assert_eq!(kept, buf);
    // The log now reads cleanly: the good prefix, then offsets at `next`.
    let again = scan_wal(0, dir.read_all().unwrap()).unwrap();
    assert!(
        again.damage.is_none() && again.cuts.is_empty(),
        "{:?}",
        again.cuts
    );
    assert_eq!(again.next_offset, next);
    assert_eq!(offsets(&again.active.unwrap().records), vec![0, 1]);
}

#[test]
fn a_repair_that_fails_on_a_full_disk_leaves_the_damaged_file_to_repair_again() {
    let tmp = tempfile::tempdir().unwrap();
    let faulty = super::FaultyWalFs::default();
    let dir = WalDir::open(tmp.path().join("wal"), Arc::new(faulty.clone())).unwrap();
    let mut w = dir.create(0).unwrap();
    let mut buf = Vec::new();
    for (base, n) in [(0, 2), (2, 3), (5, 4)] {
        encode_entry(&mut buf, base, &batch(base, n), None);
    }
    let last = buf.len() - 10;
    buf[last] ^= 0xff;
    encode_entry(&mut buf, 9, &batch(9, 1), None); // damage in the middle
    w.append(&buf).unwrap();
    w.sync().unwrap();
    drop(w);
    let damage = scan_wal(0, dir.read_all().unwrap())
        .unwrap()
        .damage
        .expect("damage");
    faulty
        .faults
        .disk_full
        .store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(dir.accept_loss(&damage).is_err());
    // Nothing half done: the damaged file is whole and still damaged.
    let path = tmp.path().join("wal/00000000000000000000.wal");
    assert_eq!(fs::read(&path).unwrap(), buf);
    let again = scan_wal(0, dir.read_all().unwrap()).unwrap();
    assert!(again.damage.is_some());
    // With space, the same repair goes through.
    faulty.faults.clear();
    let next = dir.accept_loss(&again.damage.unwrap()).unwrap();
    let repaired = scan_wal(0, dir.read_all().unwrap()).unwrap();
    assert!(repaired.damage.is_none() && repaired.cuts.is_empty());
    assert_eq!(repaired.next_offset, next);
    assert_eq!(
        fs::read(tmp.path().join("wal/00000000000000000000.wal.damaged")).unwrap(),
        buf
    );
}

#[test]
fn a_skip_entry_moves_offsets_on_and_a_skip_back_is_a_cut() {
    let mut data = Vec::new();
    encode_entry(&mut data, 0, &batch(0, 2), None);
    encode_skip_entry(&mut data, 50);
    encode_entry(&mut data, 50, &batch(50, 1), None);
    let s = scan_file(&data, 0);
    assert!(s.cut.is_none(), "{:?}", s.cut);
    assert_eq!(offsets(&s.records), vec![0, 1, 50]);
    assert_eq!(s.next_offset, 51);
    let mut back = Vec::new();
    encode_entry(&mut back, 0, &batch(0, 2), None);
    encode_skip_entry(&mut back, 1);
    assert!(scan_file(&back, 0).cut.unwrap().contains("skips back"));
    // A file holding only a skip is the active file, not obsolete: it is
    // what keeps the skipped offsets from being reused.
    let mut only = Vec::new();
    encode_skip_entry(&mut only, 77);
    let r = scan(
        5,
        vec![(
            WalFileRef {
                first_offset: 5,
                path: path(5),
            },
            only,
        )],
    );
    assert_eq!(r.next_offset, 77);
    assert_eq!(r.active.unwrap().path, path(5));
    assert!(r.obsolete.is_empty());
}

#[test]
fn scan_cut_inside_a_committed_file_loses_nothing() {
    let (f, mut data) = file(0, &[(0, 3), (3, 2)]);
    data.truncate(data.len() - 1);
    // 0..5 are committed: the torn file is obsolete, and the next file is
    // still read.
    let r = scan(5, vec![(f, data), file(5, &[(5, 2)])]);
    assert_eq!(r.obsolete, vec![path(0)]);
    assert!(r.damage.is_none());
    assert_eq!(offsets(&r.active.unwrap().records), vec![5, 6]);
    assert_eq!(r.next_offset, 7);
}

#[test]
fn scan_reads_every_entry_kind_and_cuts_at_an_unknown_one() {
    // Records and skip entries are the kinds (skips: see below); one with
    // another kind byte (and a valid checksum) at the end is a cut, not a
    // panic or a skip.
    let (f, mut data) = file(0, &[(0, 2)]);
    let mut odd = Vec::new();
    encode_entry(&mut odd, 2, &batch(2, 1), None);
    odd[8] = 9; // the kind byte
    let len = u32::from_le_bytes([odd[4], odd[5], odd[6], odd[7]]);
    let crc = crc32c::crc32c_append(crc32c::crc32c(&len.to_le_bytes()), &odd[8..]);
    odd[..4].copy_from_slice(&crc.to_le_bytes());
    data.extend_from_slice(&odd);
    let r = scan(0, vec![(f, data)]);
    assert_eq!(offsets(&r.active.unwrap().records), vec![0, 1]);
    assert!(
        r.cuts[0].why.contains("unknown entry kind 9"),
        "{:?}",
        r.cuts
    );
    assert_eq!(r.next_offset, 2);
}

#[test]
fn scan_refuses_a_gap_after_the_committed_offset() {
    let err = scan_wal(3, vec![Ok(file(5, &[(5, 2)]))]).unwrap_err();
    assert!(
        matches!(
            err,
            ScanError::Gap {
                expected: 3,
                found: 5,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn scan_of_nothing_starts_at_the_committed_offset() {
    let r = scan(42, vec![]);
    assert_eq!(r.next_offset, 42);
    assert!(r.active.is_none() && r.sealed.is_empty());
}

#[test]
fn producer_entries_replay_their_batch_identity_beyond_the_committed_offset() {
    use crate::producer::ProducerBatch;
    let p = |seq| ProducerBatch {
        producer_id: 77,
        epoch: 2,
        first_sequence: seq,
    };
    let mut data = Vec::new();
    encode_entry(&mut data, 0, &batch(0, 2), Some((&p(0), 1_000)));
    encode_entry(&mut data, 2, &batch(2, 1), None);
    encode_entry(&mut data, 3, &batch(3, 3), Some((&p(2), 2_000)));
    let whole = scan_file(&data, 0);
    assert_eq!(offsets(&whole.records), (0..6).collect::<Vec<_>>());
    assert_eq!(
        whole.writes,
        vec![
            ProducerWrite {
                batch: p(0),
                base_offset: 0,
                count: 2,
                written_ms: 1_000
            },
            ProducerWrite {
                batch: p(2),
                base_offset: 3,
                count: 3,
                written_ms: 2_000
            }
        ]
    );
    // Records survive byte for byte, headers included.
    assert_eq!(whole.records, batch(0, 6));
    // Committed through offset 2: only the later batch is replayed.
    let f = WalFileRef {
        first_offset: 0,
        path: path(0),
    };
    let r = scan(3, vec![(f, data.clone())]);
    let active = r.active.unwrap();
    assert_eq!(offsets(&active.records), vec![3, 4, 5]);
    assert_eq!(active.writes.len(), 1);
    assert_eq!(active.writes[0].base_offset, 3);
    // A torn producer entry is cut like any other.
    let cut = scan_file(&data[..data.len() - 1], 0);
    assert_eq!(cut.writes.len(), 1);
    assert_eq!(cut.next_offset, 3);
}

/// Null values and null header values come back null, apart from empty
/// ones; entries without a null keep kind 1 and their v1 bytes.
#[test]
fn nulls_replay_as_nulls_and_entries_without_keep_their_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = wal_dir(tmp.path());
    let mut w = dir.create(0).unwrap();
    let mut records = batch(0, 4);
    records[1].value = None;
    records[2].value = Some(vec![]);
    records[3].headers = vec![
        Header {
            key: "n".into(),
            value: None,
        },
        Header {
            key: "n".into(),
            value: Some(vec![]),
        },
    ];
    let mut with_nulls = Vec::new();
    encode_entry(&mut with_nulls, 0, &records, None);
    assert_eq!(with_nulls[entry::ENTRY_HEADER_LEN], 1 | 0x10, "kind 17");
    w.append(&with_nulls).unwrap();
    let plain = batch(4, 2);
    let mut without = Vec::new();
    encode_entry(&mut without, 4, &plain, None);
    assert_eq!(without[entry::ENTRY_HEADER_LEN], 1, "kind 1");
    w.append(&without).unwrap();
    w.sync().unwrap();
    let replay = replay_file(w.path(), 0);
    let mut all = records;
    all.extend(plain);
    assert_eq!(replay.records, all);
}

mod zero_ahead;
