//! kill -9 under produce load, 20 rounds: a child process (this test binary,
//! re-run on the ignored entry point below) produces to two partitions from
//! four threads and prints every acknowledgement; the parent SIGKILLs it at a
//! random moment, then the next child recovers the same data directory and
//! goes on. At the end every acknowledged record must be present exactly
//! once, at the offset it was acknowledged with, with no gaps.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use streamhouse::object_store::LocalFsStore;
use streamhouse::{Acks, Engine, EngineConfig, Error, Record, TopicSpec};

const CHILD_DIR: &str = "STREAMHOUSE_CRASH_CHILD_DIR";
const CHILD_ROUND: &str = "STREAMHOUSE_CRASH_CHILD_ROUND";
const ROUNDS: u64 = 20;
const PARTITIONS: u32 = 2;

fn config(dir: &str) -> EngineConfig {
    let mut c = EngineConfig::new(dir);
    // Small and young segments: seals, uploads, commits and WAL trims happen
    // all the time, so kills land in every phase.
    c.segment_max_bytes = 16 * 1024;
    c.segment_max_age = Duration::from_millis(200);
    c.reader_threads = 2;
    c
}

fn open(dir: &str) -> Arc<Engine> {
    let store = Arc::new(LocalFsStore::open(format!("{dir}/objects")).unwrap());
    Engine::open(config(dir), store).unwrap()
}

fn value(round: u64, thread: u32, seq: u64, i: usize) -> String {
    format!("r{round}-t{thread}-s{seq}-i{i}")
}

/// The child: produce until killed. Not a test on its own.
#[test]
#[ignore = "entry point of the kill -9 test's child process"]
fn crash_child_entry() {
    let (Ok(dir), Ok(round)) = (std::env::var(CHILD_DIR), std::env::var(CHILD_ROUND)) else {
        return;
    };
    let round: u64 = round.parse().unwrap();
    let engine = open(&dir);
    match engine.create_topic(&TopicSpec {
        name: "crash".into(),
        partitions: PARTITIONS,
        retention_ms: 0,
        retention_bytes: 0,
    }) {
        Ok(_) | Err(Error::AlreadyExists(_)) => {}
        Err(e) => panic!("{e}"),
    }
    let out = Arc::new(Mutex::new(std::io::stdout()));
    println!("READY");
    let threads: Vec<_> = (0..4u32)
        .map(|t| {
            let engine = Arc::clone(&engine);
            let out = Arc::clone(&out);
            std::thread::spawn(move || {
                let partition = t % PARTITIONS;
                let acks = if t == 3 { Acks::Uploaded } else { Acks::Wal };
                for seq in 0.. {
                    let n = 1 + ((seq * 7 + u64::from(t)) % 40) as usize;
                    let records: Vec<Record> = (0..n)
                        .map(|i| Record {
                            value: Some(value(round, t, seq, i).into_bytes()),
                            ..Default::default()
                        })
                        .collect();
                    match engine.produce_sync("crash", partition, records, acks) {
                        Ok(ack) => {
                            let mut o = out.lock().unwrap();
                            writeln!(
                                o,
                                "ACK {partition} {} {} {round} {t} {seq}",
                                ack.base_offset, ack.count
                            )
                            .unwrap();
                            o.flush().unwrap();
                        }
                        Err(Error::Backpressure(_)) => std::thread::sleep(Duration::from_millis(5)),
                        Err(e) => panic!("produce failed: {e}"),
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

fn read_all(engine: &Engine, partition: u32) -> Vec<Record> {
    common::engine::fetch_all(engine, "crash", partition, 0)
}

#[test]
fn kill_9_under_load_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let dir_s = dir.path().to_str().unwrap().to_string();
    let exe = std::env::current_exe().unwrap();
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    eprintln!("kill -9 test: seed {seed}");
    let mut rng = streamhouse::util::xorshift::XorShift64::new(seed | 1);
    let mut next_rand = move || rng.next_u64();
    // (partition, offset) -> value acknowledged there
    let mut acked: HashMap<(u32, i64), String> = HashMap::new();
    let mut total_acks = 0usize;
    for round in 0..ROUNDS {
        let mut child = Command::new(&exe)
            .args([
                "--ignored",
                "--exact",
                "crash_child_entry",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_DIR, &dir_s)
            .env(CHILD_ROUND, round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = crossbeam_channel::unbounded::<Vec<u8>>();
        let reader = std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            loop {
                let mut line = Vec::new();
                match r.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {
                        let _ = tx.send(line);
                    }
                }
            }
        });
        // Wait for the child to be up (recovery done), then let it run a
        // random 50..650 ms before the kill.
        let ready_by = Instant::now() + Duration::from_secs(60);
        loop {
            let line = rx.recv_deadline(ready_by).expect("child became ready");
            if line.windows(5).any(|w| w == b"READY") {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(50 + next_rand() % 600));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        reader.join().unwrap();
        let mut round_acks = 0;
        for line in rx.try_iter() {
            // Only whole lines: a torn last line is an ack we never saw.
            if !line.ends_with(b"\n") || !line.starts_with(b"ACK ") {
                continue;
            }
            let text = String::from_utf8(line).unwrap();
            let f: Vec<u64> = text[4..]
                .trim()
                .split(' ')
                .map(|x| x.parse().unwrap())
                .collect();
            let (partition, base, count, r, t, seq) = (
                f[0] as u32,
                f[1] as i64,
                f[2] as usize,
                f[3],
                f[4] as u32,
                f[5],
            );
            for i in 0..count {
                let v = value(r, t, seq, i);
                if let Some(prev) = acked.insert((partition, base + i as i64), v.clone()) {
                    panic!(
                        "offset {} of partition {partition} acknowledged twice: {prev} and {v}",
                        base + i as i64
                    );
                }
            }
            round_acks += 1;
        }
        total_acks += round_acks;
        eprintln!("round {round}: {round_acks} acks");
    }
    assert!(
        total_acks > ROUNDS as usize,
        "the children made progress ({total_acks} acks)"
    );

    let engine = open(&dir_s);
    let mut seen_values: HashMap<String, (u32, i64)> = HashMap::new();
    let mut found = 0;
    for p in 0..PARTITIONS {
        for rec in read_all(&engine, p) {
            let v = String::from_utf8(rec.value.unwrap()).unwrap();
            if let Some(other) = seen_values.insert(v.clone(), (p, rec.offset)) {
                panic!("{v} stored twice: at {other:?} and ({p}, {})", rec.offset);
            }
            if let Some(expected) = acked.get(&(p, rec.offset)) {
                assert_eq!(&v, expected, "partition {p} offset {}", rec.offset);
                found += 1;
            }
        }
    }
    assert_eq!(found, acked.len(), "every acknowledged record is present");
    eprintln!(
        "{} acknowledged records verified after {ROUNDS} kills",
        acked.len()
    );
}
