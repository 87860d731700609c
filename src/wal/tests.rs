use super::*;

fn rec(offset: i64, value: &str) -> Record {
    Record {
        offset,
        timestamp_ms: 1_000 + offset,
        key: (offset % 2 == 0).then(|| format!("k{offset}").into_bytes()),
        value: value.as_bytes().to_vec(),
        headers: if offset % 3 == 0 {
            vec![Header {
                key: "h".into(),
                value: vec![0, 1, 2],
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
        encode_entry(&mut buf, base, &b);
        w.append(&buf).unwrap();
        ends.push(w.len());
        all.extend(b);
    }
    w.sync().unwrap();
    (w.path().to_path_buf(), all, ends)
}

#[test]
fn entries_replay_with_their_offsets() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = WalDir::open(tmp.path().join("wal")).unwrap();
    let (path, all, ends) = write_sample(&dir);
    let replay = replay_file(&path, 10).unwrap();
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
    let dir = WalDir::open(tmp.path().join("wal")).unwrap();
    let (path, all, ends) = write_sample(&dir);
    let full = fs::read(&path).unwrap();
    for cut in 0..full.len() {
        fs::write(&path, &full[..cut]).unwrap();
        let replay = replay_file(&path, 10).unwrap();
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
    let dir = WalDir::open(tmp.path().join("wal")).unwrap();
    let (path, all, ends) = write_sample(&dir);
    let full = fs::read(&path).unwrap();
    for i in 0..full.len() {
        let mut bad = full.clone();
        bad[i] ^= 0x40;
        fs::write(&path, &bad).unwrap();
        let replay = replay_file(&path, 10).unwrap();
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
    let dir = WalDir::open(tmp.path().join("wal")).unwrap();
    let mut w = dir.create(0).unwrap();
    let mut buf = Vec::new();
    encode_entry(&mut buf, 0, &batch(0, 2));
    encode_entry(&mut buf, 5, &batch(5, 2)); // gap: 2..5 missing
    w.append(&buf).unwrap();
    let replay = replay_file(w.path(), 0).unwrap();
    assert_eq!(replay.records.len(), 2);
    assert!(replay.cut.unwrap().contains("expected 2"));
    // A file whose first entry is not the offset its name promises.
    assert!(replay_file(w.path(), 1).unwrap().records.is_empty());
}

#[test]
fn reopen_cuts_the_bad_tail_and_appends_after_the_good_prefix() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = WalDir::open(tmp.path().join("wal")).unwrap();
    let (path, all, ends) = write_sample(&dir);
    let mut full = fs::read(&path).unwrap();
    full.extend_from_slice(&[0xde, 0xad, 0xbe]); // torn garbage
    fs::write(&path, &full).unwrap();
    let replay = replay_file(&path, 10).unwrap();
    let file = dir.files().unwrap().remove(0);
    let mut w = dir.reopen(&file, replay.good_len).unwrap();
    let mut buf = Vec::new();
    encode_entry(&mut buf, 18, &batch(18, 2));
    w.append(&buf).unwrap();
    w.sync().unwrap();
    let again = replay_file(&path, 10).unwrap();
    assert!(again.cut.is_none());
    assert_eq!(again.records[..8], all[..]);
    assert_eq!(again.records[8..], batch(18, 2)[..]);
    assert_eq!(again.good_len, ends[2] + buf.len() as u64);
    dir.remove(&path).unwrap();
    dir.remove(&path).unwrap(); // idempotent
    assert!(dir.files().unwrap().is_empty());
}
