//! A WAL entry that fails its checksum in the middle of the log (bit rot,
//! not a torn tail) never renumbers anything: the partition is fenced
//! (reads up to the damage go on, produce answers DATA_LOSS naming the file
//! and position), the rest of the node serves, the damaged bytes are kept,
//! and `--repair-wal` accepts the loss with offsets going on past anything
//! the damage could hide. Real binaries.

mod common;

use common::grpc::{create, fetch, fetch_all, produce, record};
use common::{s3, Clients, TestServer};
use grpcio::RpcStatusCode;
use std::path::{Path, PathBuf};
use streamhouse::proto as pb;

fn batch(tag: &str, n: usize) -> Vec<pb::Record> {
    (0..n)
        .map(|i| record(b"", format!("{tag}-{i}-{}", "x".repeat(40)).as_bytes(), &[]))
        .collect()
}

fn produce_ok(c: &Clients, p: u32, tag: &str, n: usize) -> (i64, i64) {
    let r = produce(c, "t", Some(p), batch(tag, n)).unwrap();
    (
        r.get_acks()[0].get_base_offset(),
        r.get_acks()[0].get_count(),
    )
}

fn wal_files(data: &Path, p: u32) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(data.join("wal/t").join(p.to_string()))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

/// Flips one byte inside the second WAL entry of `file` (the first when
/// there is only one).
fn rot_an_entry(file: &Path) -> Vec<u8> {
    let mut bytes = std::fs::read(file).unwrap();
    let first_len = 8 + u32::from_le_bytes(bytes[4..8].try_into().unwrap()) as usize;
    let at = if first_len + 40 < bytes.len() {
        first_len + 20
    } else {
        20
    };
    bytes[at] ^= 0x10;
    std::fs::write(file, &bytes).unwrap();
    bytes
}

/// Every record from offset 0 on, following next_offset across gaps.
fn read_all(c: &Clients) -> Vec<pb::Record> {
    let mut out = Vec::new();
    let mut next = 0;
    loop {
        let f = fetch(c, "t", 0, next).unwrap();
        if f.get_records().is_empty() {
            return out;
        }
        next = f.get_next_offset();
        out.extend(f.get_records().iter().cloned());
    }
}

fn expect_data_loss(c: &Clients, file: &Path) {
    match produce(c, "t", Some(0), batch("refused", 1)) {
        Err(grpcio::Error::RpcFailure(st)) => {
            assert_eq!(st.code(), RpcStatusCode::DATA_LOSS, "{}", st.message());
            let m = st.message();
            // Clients see the WAL file's path below the data directory.
            let shown = file.display().to_string();
            let below = shown.split("/wal/").nth(1).unwrap_or(&shown);
            assert!(
                m.contains(&format!("<data-dir>/wal/{below}"))
                    && m.contains("at byte")
                    && m.contains("--repair-wal t/0"),
                "{m}"
            );
        }
        other => panic!("a damaged partition acknowledged: {other:?}"),
    }
}

#[test]
fn damage_in_the_middle_of_the_last_file_fences_the_partition_until_repaired() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start_in(dir.path(), &[]);
    let c = s.clients();
    create(&c, "t", 2);
    let (a, _) = produce_ok(&c, 0, "a", 10);
    let (b, _) = produce_ok(&c, 0, "b", 10);
    let (last, n) = produce_ok(&c, 0, "c", 10);
    produce_ok(&c, 1, "other", 5);
    drop(c);
    // kill -9: a clean stop would seal and upload the active segment.
    let s = {
        let mut s = s;
        s.child.kill().unwrap();
        s.child.wait().unwrap();
        s
    };
    let files = wal_files(dir.path(), 0);
    assert_eq!(files.len(), 1, "one active file, nothing sealed: {files:?}");
    let rotten = rot_an_entry(&files[0]);

    let s = TestServer::start_in(
        dir.path(),
        &s.extra.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let c = s.clients();
    // Reads up to the damage go on; the damaged partition refuses writes;
    // the other partition serves.
    let got = fetch_all(&c, "t", 0, 0);
    assert_eq!(got.len() as i64, b - a, "the records before the damage");
    expect_data_loss(&c, &files[0]);
    produce_ok(&c, 1, "still-fine", 1);
    assert_eq!(
        std::fs::read(&files[0]).unwrap(),
        rotten,
        "the damaged bytes are kept"
    );
    drop(c);
    drop(s);

    // The operator accepts the loss: offsets go on past anything the
    // damage could hide, never reusing one that was acknowledged.
    let s = TestServer::start_in(dir.path(), &["--repair-wal", "t/0"]);
    let c = s.clients();
    let (next, _) = produce_ok(&c, 0, "after", 3);
    assert!(
        next >= last + n,
        "offset {next} reuses acknowledged ones (up to {})",
        last + n - 1
    );
    let got = read_all(&c);
    let values: Vec<String> = got
        .iter()
        .map(|r| {
            String::from_utf8_lossy(r.get_value())
                .split('-')
                .next()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(values, [vec!["a"; 10], vec!["after"; 3]].concat());
    assert_eq!(got[10].get_offset(), next, "a gap, not a renumbering");
    let kept: Vec<PathBuf> = wal_files(dir.path(), 0)
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(".wal.damaged"))
        .collect();
    assert_eq!(
        std::fs::read(&kept[0]).unwrap(),
        rotten,
        "kept beside the log"
    );
    // Reads inside the gap answer from the next record on.
    let f = fetch(&c, "t", 0, last).unwrap();
    assert_eq!(f.get_records()[0].get_offset(), next);
}

#[test]
fn damage_in_a_middle_file_keeps_the_later_files_and_the_offsets() {
    let Some(endpoint) = s3::endpoint() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // The store goes away so sealed segments stay in the WAL: three files.
    let proxy = s3::Proxy::start(&endpoint);
    let bucket = s3::Bucket::new(&proxy.endpoint(), "wal-damage");
    let small = ["--segment-max-bytes", "1KiB"];
    let s = bucket.start(dir.path(), &small);
    let c = s.clients();
    create(&c, "t", 1);
    proxy.set_up(false);
    let mut acked = Vec::new();
    for tag in ["a", "b", "c"] {
        acked.push(produce_ok(&c, 0, tag, 30));
    }
    drop(c);
    let mut s = s;
    assert!(s.sigterm_and_wait().success());
    let files = wal_files(dir.path(), 0);
    assert!(files.len() >= 3, "{files:?}");
    let middle = &files[1];
    rot_an_entry(middle);
    let later_before: Vec<Vec<u8>> = files[2..]
        .iter()
        .map(|f| std::fs::read(f).unwrap())
        .collect();

    proxy.set_up(true);
    let s = bucket.start(dir.path(), &small);
    let c = s.clients();
    expect_data_loss(&c, middle);
    let readable = fetch_all(&c, "t", 0, 0);
    assert_eq!(readable.len(), 30, "the intact first file is served");
    let later_after: Vec<Vec<u8>> = files[2..]
        .iter()
        .map(|f| std::fs::read(f).unwrap())
        .collect();
    assert_eq!(later_after, later_before, "later files are untouched");
    drop(c);
    let mut s = s;
    assert!(s.sigterm_and_wait().success());

    let s = bucket.start(dir.path(), &[small[0], small[1], "--repair-wal", "t/0"]);
    let c = s.clients();
    let highest_acked = acked.iter().map(|(b, n)| b + n).max().unwrap();
    let (next, _) = produce_ok(&c, 0, "after", 1);
    assert!(
        next >= highest_acked,
        "offset {next} below {highest_acked}: renumbered"
    );
    let names: Vec<String> = wal_files(dir.path(), 0)
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.iter().any(|n| n.ends_with(".wal.damaged")),
        "{names:?}"
    );
    assert!(
        names.iter().any(|n| n.ends_with(".wal.discarded")),
        "{names:?}"
    );
}
