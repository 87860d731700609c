//! Zeros written ahead of a busy WAL file: never over data, never a cut,
//! and gone from a finished file.

use super::*;
use std::time::{Duration, Instant};

/// Appends entries of 100 records until the file holds `bytes`; returns
/// the records and where the data ends.
fn fill(w: &mut WalWriter, base: i64, bytes: u64) -> (Vec<Record>, u64) {
    let mut all = Vec::new();
    let mut next = base;
    let mut end = 0u64;
    while end < bytes {
        let b = batch(next, 100);
        let mut buf = Vec::new();
        encode_entry(&mut buf, next, &b, None);
        w.append(&buf).unwrap();
        end += buf.len() as u64;
        next += 100;
        all.extend(b);
    }
    (all, end)
}

/// Waits (up to 10 s) until the file on disk is longer than `than`.
fn wait_longer(path: &Path, than: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let len = fs::metadata(path).unwrap().len();
        if len > than || Instant::now() > deadline {
            return len;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_busy_file_gets_zeros_ahead_that_replay_reads_as_its_end() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = wal_dir(tmp.path());
    let mut w = dir.create(0).unwrap();
    let (all, end) = fill(&mut w, 0, 1 << 20);
    w.sync().unwrap();
    let on_disk = wait_longer(w.path(), end);
    assert!(
        on_disk > end,
        "no zeros ahead: {on_disk} bytes on disk, {end} of data"
    );
    let data = fs::read(w.path()).unwrap();
    assert!(data[end as usize..].iter().all(|&b| b == 0));

    // As after a crash: the last file with its zeros replays whole, uncut.
    let scan = scan_file(&data, 0);
    assert_eq!(scan.records, all);
    assert_eq!(
        (scan.good_len, scan.cut.clone(), scan.zero_tail),
        (end, None, true)
    );
    let rec = scan_wal(0, dir.read_all().unwrap()).unwrap();
    assert!(rec.cuts.is_empty(), "{:?}", rec.cuts);
    assert!(rec.damage.is_none());
    assert_eq!(rec.next_offset, all.len() as i64);
    assert_eq!(rec.active.unwrap().good_len, end);
}

#[test]
fn a_finished_file_ends_with_its_last_entry() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = wal_dir(tmp.path());
    let mut w = dir.create(0).unwrap();
    let (all, end) = fill(&mut w, 0, 1 << 20);
    wait_longer(w.path(), end);
    w.finish().unwrap();
    let path = w.path().to_path_buf();
    drop(w);
    // Nothing comes back after the finish, however long the zeroer takes.
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(fs::metadata(&path).unwrap().len(), end);
    let scan = replay_file(&path, 0);
    assert_eq!((scan.records.len(), scan.zero_tail), (all.len(), false));
}

#[test]
fn zeros_after_the_data_of_a_file_before_the_last_are_damage() {
    let (a, mut a_bytes) = file(0, &[(0, 3)]);
    let good = a_bytes.len() as u64;
    a_bytes.extend_from_slice(&[0u8; 4096]);
    let b = file(3, &[(3, 2)]);
    let rec = scan(0, vec![(a, a_bytes), b]);
    let damage = rec.damage.expect("zeros in a finished file are damage");
    assert_eq!((damage.at, damage.first_lost), (good, 3));
    assert!(damage.why.contains("zeros"), "{}", damage.why);
}

#[test]
fn appends_racing_the_zeroer_are_never_overwritten() {
    // Many small appends while the zeroer works ahead of them: every
    // entry must read back intact, in order.
    let tmp = tempfile::tempdir().unwrap();
    let dir = wal_dir(tmp.path());
    for round in 0..4 {
        let mut w = dir.create(round * 1_000_000).unwrap();
        let mut all = Vec::new();
        let mut next = round * 1_000_000;
        for i in 0..3_000 {
            let b = batch(next, 1 + i % 7);
            let mut buf = Vec::new();
            encode_entry(&mut buf, next, &b, None);
            w.append(&buf).unwrap();
            next += b.len() as i64;
            all.extend(b);
            if i % 500 == 0 {
                w.sync().unwrap();
            }
        }
        w.sync().unwrap();
        let scan = replay_file(w.path(), round * 1_000_000);
        assert_eq!(scan.cut, None);
        assert_eq!(scan.records, all);
        w.finish().unwrap();
    }
}

#[test]
fn a_full_disk_cut_back_takes_the_zeros_with_it_and_appends_go_on() {
    let tmp = tempfile::tempdir().unwrap();
    let faulty = FaultyWalFs::default();
    let dir = WalDir::open(tmp.path().join("wal"), Arc::new(faulty.clone())).unwrap();
    let mut w = dir.create(0).unwrap();
    let (mut all, end) = fill(&mut w, 0, 512 << 10);
    wait_longer(w.path(), end);
    faulty
        .faults
        .disk_full
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let mut buf = Vec::new();
    encode_entry(
        &mut buf,
        all.len() as i64,
        &batch(all.len() as i64, 50),
        None,
    );
    assert!(w.append(&buf).is_err());
    // Cut back to the data: nothing of the failed entry is left (zeros
    // may follow again, written ahead of the new end).
    let data = fs::read(w.path()).unwrap();
    assert!(data.len() as u64 >= end && data[end as usize..].iter().all(|&b| b == 0));
    faulty.faults.clear();
    let (more, _) = fill(&mut w, all.len() as i64, 1);
    all.extend(more);
    w.sync().unwrap();
    let scan = replay_file(w.path(), 0);
    assert_eq!(scan.cut, None);
    assert_eq!(scan.records, all);
}
