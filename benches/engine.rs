//! Engine benchmarks on real data (flights records from ../shared/data).
//!
//! `cargo bench --bench engine` (or `scripts/bench.sh`, which also starts the
//! S3 test server so the S3 rows run). Sections:
//!
//! 1. produce throughput, 1 partition, batches of 1,000, acks=wal
//!    (1 and 4 producer threads, median of 3 runs);
//! 2. ack latency at half the 4-thread rate (open loop, paced);
//! 3. produce -> long-poll consumer visibility latency at the same rate;
//! 4. fetch of 100 records, uncached (cache off) and cached, local store and
//!    S3 when STREAMHOUSE_TEST_S3_ENDPOINT is set;
//! 5. a sequential consumer over STREAMHOUSE_BENCH_GB (default 1) GB:
//!    cache hit rate, and PUTs per GB at default settings;
//! 6. time to serve again after a restart with 1M records in the WAL.

mod common;

use common::{load_lines, micros, summarize};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use streamhouse::engine::ProducerBatch;
use streamhouse::object_store::{LocalFsStore, ObjectStore, S3Config, S3Store};
use streamhouse::{Acks, Engine, EngineConfig, FetchRequest, Header, Record, TopicSpec};

const BATCH: usize = 1000;

fn topic(name: &str) -> TopicSpec {
    TopicSpec {
        name: name.into(),
        partitions: 1,
        retention_ms: 0,
        retention_bytes: 0,
    }
}

fn batches(values: &[Vec<u8>], records: usize, start: usize) -> Vec<Vec<Record>> {
    (0..records.div_ceil(BATCH))
        .map(|b| {
            (0..BATCH)
                .map(|i| Record {
                    value: Some(values[(start + b * BATCH + i) % values.len()].clone()),
                    ..Default::default()
                })
                .collect()
        })
        .collect()
}

fn local_engine(dir: &std::path::Path, tweak: impl FnOnce(&mut EngineConfig)) -> Arc<Engine> {
    let mut c = EngineConfig::new(dir);
    tweak(&mut c);
    let store = Arc::new(LocalFsStore::open(dir.join("objects")).expect("store"));
    Engine::open(c, store).expect("engine")
}

fn s3_store(tag: &str) -> Option<Arc<dyn ObjectStore>> {
    let endpoint = std::env::var("STREAMHOUSE_TEST_S3_ENDPOINT").ok()?;
    let config = S3Config {
        endpoint: Some(endpoint),
        region: "us-east-1".into(),
        bucket: std::env::var("STREAMHOUSE_TEST_S3_BUCKET")
            .unwrap_or_else(|_| "streamhouse-test".into()),
        prefix: format!("bench-{tag}-{}", std::process::id()),
        path_style: true,
        request_timeout: Duration::from_secs(30),
        ..Default::default()
    }
    .with_env_credentials();
    Some(Arc::new(S3Store::new(&config).expect("S3 store")))
}

/// Splits the batches between `threads` threads that each run `send` on
/// theirs (one request in flight per thread); returns records/s.
fn run_producers(
    all: Vec<Vec<Record>>,
    threads: usize,
    send: impl Fn(Vec<Vec<Record>>) + Clone + Send + 'static,
) -> f64 {
    let n: usize = all.iter().map(Vec::len).sum();
    let mut per_thread: Vec<Vec<Vec<Record>>> = (0..threads).map(|_| Vec::new()).collect();
    for (i, b) in all.into_iter().enumerate() {
        per_thread[i % threads].push(b);
    }
    let start = Instant::now();
    let handles: Vec<_> = per_thread
        .into_iter()
        .map(|mine| {
            let send = send.clone();
            std::thread::spawn(move || send(mine))
        })
        .collect();
    for h in handles {
        h.join().expect("producer");
    }
    n as f64 / start.elapsed().as_secs_f64()
}

/// Plain produce from `threads` threads; records/s.
fn produce_run(engine: &Arc<Engine>, name: &str, all: Vec<Vec<Record>>, threads: usize) -> f64 {
    let (engine, name) = (Arc::clone(engine), name.to_string());
    run_producers(all, threads, move |mine| {
        for b in mine {
            engine
                .produce_sync(&name, 0, b, Acks::Wal)
                .expect("produce");
        }
    })
}

/// [`produce_run`] with each thread an idempotent producer of its own
/// (InitProducer, then sequence numbers).
fn produce_run_idempotent(
    engine: &Arc<Engine>,
    name: &str,
    all: Vec<Vec<Record>>,
    threads: usize,
) -> f64 {
    let (engine, name) = (Arc::clone(engine), name.to_string());
    run_producers(all, threads, move |mine| {
        let (producer_id, epoch) = engine.init_producer("").expect("init");
        let mut first_sequence = 0;
        for b in mine {
            let count = b.len() as i64;
            let batch = ProducerBatch {
                producer_id,
                epoch,
                first_sequence,
            };
            let rx = engine
                .produce_idempotent(&name, 0, b, Acks::Wal, batch)
                .expect("produce");
            let ack = futures::executor::block_on(rx)
                .expect("answer")
                .expect("ack");
            assert!(!ack.duplicate);
            first_sequence += count;
        }
    })
}

/// Plain and idempotent produce, alternating run by run in one sitting.
fn section_idempotence(values: &[Vec<u8>]) {
    println!("\n## 1b. idempotent produce vs plain, 1 partition, batches of {BATCH}, acks=wal, flights records; runs alternate plain/idempotent");
    let records = 2_000_000;
    println!("| producer threads | plain records/s p50 (runs) | idempotent records/s p50 (runs) | idempotent / plain |");
    println!("|---|---|---|---|");
    for threads in [1, 4] {
        let (mut plain, mut idem) = (Vec::new(), Vec::new());
        for run in 0..6 {
            let dir = tempfile::tempdir().expect("tmp");
            let engine = local_engine(dir.path(), |_| {});
            engine.create_topic(&topic("p")).expect("topic");
            let all = batches(values, records, (run / 2) * 7919);
            if run % 2 == 0 {
                plain.push(produce_run(&engine, "p", all, threads));
            } else {
                idem.push(produce_run_idempotent(&engine, "p", all, threads));
            }
            engine.shutdown(Duration::ZERO);
        }
        let show = |v: &[f64]| {
            v.iter()
                .map(|r| format!("{:.2} M", r / 1e6))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let (p, i) = (summarize(plain.clone()), summarize(idem.clone()));
        println!(
            "| {threads} | {:.0} ({}) | {:.0} ({}) | {:.3} |",
            p.p50,
            show(&plain),
            i.p50,
            show(&idem),
            i.p50 / p.p50
        );
    }
}

fn section_produce(values: &[Vec<u8>], mean: f64) -> f64 {
    println!("\n## 1. produce, 1 partition, batches of {BATCH}, acks=wal, flights records (mean {mean:.1} B)");
    let records = 2_000_000;
    println!("| producer threads | records/s p50 | min | max | MB/s p50 | fsyncs per batch |");
    println!("|---|---|---|---|---|---|");
    let mut best = 0.0;
    for threads in [1, 4] {
        let mut rates = Vec::new();
        let mut fsync_ratio = 0.0;
        for run in 0..3 {
            let dir = tempfile::tempdir().expect("tmp");
            let engine = local_engine(dir.path(), |_| {});
            engine.create_topic(&topic("p")).expect("topic");
            let all = batches(values, records, run * 7919);
            rates.push(produce_run(&engine, "p", all, threads));
            fsync_ratio = engine.metrics().wal_fsyncs as f64 / (records / BATCH) as f64;
            engine.shutdown(Duration::ZERO);
        }
        let s = summarize(rates);
        println!(
            "| {threads} | {:.0} | {:.0} | {:.0} | {:.1} | {fsync_ratio:.2} |",
            s.p50,
            s.min,
            s.max,
            s.p50 * mean / 1e6
        );
        if s.p50 > best {
            best = s.p50;
        }
    }
    best
}

fn section_latency(values: &[Vec<u8>], max_rate: f64) {
    for store in ["local", "memory"] {
        latency_run(values, max_rate, store);
    }
}

fn latency_run(values: &[Vec<u8>], max_rate: f64, store: &str) {
    let rate = max_rate / 2.0;
    let interval = Duration::from_secs_f64(BATCH as f64 / rate);
    let seconds = 5.0;
    let n_batches = (seconds / interval.as_secs_f64()) as usize;
    println!(
        "\n## 2-3. latency at half the maximum rate: {rate:.0} records/s ({n_batches} batches of {BATCH}, one every {interval:?}), {store} object store"
    );
    let dir = tempfile::tempdir().expect("tmp");
    let engine = if store == "memory" {
        Engine::open(
            EngineConfig::new(dir.path()),
            Arc::new(streamhouse::object_store::MemoryStore::new()),
        )
        .expect("engine")
    } else {
        local_engine(dir.path(), |_| {})
    };
    engine.create_topic(&topic("lat")).expect("topic");
    let epoch = Instant::now();

    // Visibility: a long-poll consumer timestamps arrivals of stamped records.
    let consumer = {
        let engine = Arc::clone(&engine);
        std::thread::spawn(move || {
            let mut lat = Vec::new();
            let mut next = 0;
            let total = (n_batches * BATCH) as i64;
            while next < total {
                let r = engine
                    .fetch_sync(
                        "lat",
                        0,
                        FetchRequest {
                            offset: next,
                            max_records: 5000,
                            max_bytes: 8 << 20,
                            max_wait: Duration::from_secs(2),
                        },
                    )
                    .expect("fetch");
                let now = epoch.elapsed();
                for rec in &r.records {
                    if let Some(h) = rec.headers.first() {
                        let mut b = [0u8; 8];
                        b.copy_from_slice(h.value_bytes());
                        let sent = Duration::from_nanos(u64::from_le_bytes(b));
                        lat.push((sent, micros(now - sent)));
                    }
                }
                next = r.next_offset;
            }
            lat
        })
    };
    let (tx, rx) = crossbeam_channel::unbounded();
    let acker = std::thread::spawn(move || {
        let mut lat = Vec::new();
        for (sent, rx) in rx {
            let rx: streamhouse::AckReceiver = rx;
            futures::executor::block_on(rx)
                .expect("reply")
                .expect("ack");
            lat.push((sent, micros(epoch.elapsed() - sent)));
        }
        lat
    });
    let start = Instant::now();
    let all = batches(values, n_batches * BATCH, 0);
    for (i, mut b) in all.into_iter().enumerate() {
        let due = start + interval * i as u32;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let sent = epoch.elapsed();
        b[0].headers = vec![Header {
            key: "t".into(),
            value: Some((sent.as_nanos() as u64).to_le_bytes().to_vec()),
        }];
        let rx = engine.produce("lat", 0, b, Acks::Wal).expect("produce");
        tx.send((sent, rx)).expect("acker");
    }
    drop(tx);
    let acks = acker.join().expect("acker");
    let vis = consumer.join().expect("consumer");
    // The first 0.5 s carry start-up costs (fresh WAL file, first page
    // faults of the tail); both views are printed.
    let warm = start.duration_since(epoch) + Duration::from_millis(500);
    println!("| measure | samples | n | p50 ms | p99 ms | max ms |");
    println!("|---|---|---|---|---|---|");
    for (name, xs) in [
        ("ack latency (acks=wal)", &acks),
        ("produce -> long-poll consumer", &vis),
    ] {
        for (label, keep) in [("all", Duration::ZERO), ("after 0.5 s", warm)] {
            let s = summarize(
                xs.iter()
                    .filter(|(t, _)| *t >= keep)
                    .map(|(_, l)| *l)
                    .collect(),
            );
            println!(
                "| {name} | {label} | {} | {:.3} | {:.3} | {:.3} |",
                s.n,
                s.p50 / 1e3,
                s.p99 / 1e3,
                s.max / 1e3
            );
        }
    }
    engine.shutdown(Duration::ZERO);
}

fn fill_and_wait(engine: &Engine, name: &str, values: &[Vec<u8>], records: usize) {
    engine.create_topic(&topic(name)).expect("topic");
    for b in batches(values, records, 0) {
        engine.produce_sync(name, 0, b, Acks::Wal).expect("produce");
    }
    let deadline = Instant::now() + Duration::from_secs(300);
    while engine.backlog_bytes() > 0 {
        assert!(Instant::now() < deadline, "uploads did not finish");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn fetch_100(engine: &Engine, name: &str, offsets: &[i64]) -> Vec<f64> {
    offsets
        .iter()
        .map(|&o| {
            let t = Instant::now();
            let r = engine
                .fetch_sync(
                    name,
                    0,
                    FetchRequest {
                        offset: o,
                        max_records: 100,
                        max_bytes: 0,
                        max_wait: Duration::ZERO,
                    },
                )
                .expect("fetch");
            assert_eq!(r.records.len(), 100);
            micros(t.elapsed())
        })
        .collect()
}

fn section_fetch(values: &[Vec<u8>]) {
    println!("\n## 4. fetch of 100 records at random offsets of sealed segments (1M records, 8 MiB segments)");
    println!("| store | cache | n | p50 ms | p99 ms | GETs |");
    println!("|---|---|---|---|---|---|");
    let records = 1_000_000usize;
    let mut rng = streamhouse::util::xorshift::XorShift64::new(0x9e37_79b9);
    let offsets: Vec<i64> = (0..300)
        .map(|_| (rng.next_u64() % (records as u64 - 100)) as i64)
        .collect();
    let mut stores: Vec<(&str, Option<Arc<dyn ObjectStore>>)> = vec![("local", None)];
    match s3_store("fetch") {
        Some(s) => stores.push(("S3 (test server)", Some(s))),
        None => println!("(S3 rows skipped: STREAMHOUSE_TEST_S3_ENDPOINT not set)"),
    }
    for (label, s3) in stores {
        let dir = tempfile::tempdir().expect("tmp");
        let store: Arc<dyn ObjectStore> = match s3 {
            Some(s) => s,
            None => Arc::new(LocalFsStore::open(dir.path().join("objects")).expect("store")),
        };
        let tweak = |c: &mut EngineConfig| {
            c.segment_max_bytes = 8 << 20;
            c.segment_max_age = Duration::from_millis(500);
        };
        {
            let mut c = EngineConfig::new(dir.path());
            tweak(&mut c);
            let engine = Engine::open(c, Arc::clone(&store)).expect("engine");
            fill_and_wait(&engine, "f", values, records);
            engine.shutdown(Duration::ZERO);
        }
        for (cache_label, cache) in [("off (every block a GET)", 0u64), ("warm", 256 << 20)] {
            let mut c = EngineConfig::new(dir.path());
            tweak(&mut c);
            c.cache_bytes = cache;
            let engine = Engine::open(c, Arc::clone(&store)).expect("engine");
            if cache > 0 {
                fetch_100(&engine, "f", &offsets); // warm the cache
            }
            let gets_before = engine.metrics().gets;
            let s = summarize(fetch_100(&engine, "f", &offsets));
            let gets = engine.metrics().gets - gets_before;
            println!(
                "| {label} | {cache_label} | {} | {:.3} | {:.3} | {gets} |",
                s.n,
                s.p50 / 1e3,
                s.p99 / 1e3
            );
            engine.shutdown(Duration::ZERO);
        }
    }
}

fn section_sequential(values: &[Vec<u8>], mean: f64) {
    let gb: f64 = std::env::var("STREAMHOUSE_BENCH_GB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    let records = (gb * 1e9 / mean) as usize;
    println!("\n## 5. {gb} GB ({records} flights records) at default settings, then a sequential consumer");
    let dir = tempfile::tempdir().expect("tmp");
    let engine = local_engine(dir.path(), |c| {
        c.segment_max_age = Duration::from_millis(500)
    });
    engine.create_topic(&topic("seq")).expect("topic");
    let t = Instant::now();
    let chunk = 500_000;
    let mut done = 0;
    while done < records {
        let n = chunk.min(records - done);
        produce_run(&engine, "seq", batches(values, n, done), 4);
        done += n;
    }
    let produce_secs = t.elapsed().as_secs_f64();
    while engine.backlog_bytes() > 0 {
        std::thread::sleep(Duration::from_millis(20));
    }
    let m = engine.metrics();
    println!(
        "produced in {produce_secs:.1} s; {} segments, {} PUTs for {:.3} GB of payload = {:.1} PUTs per GB",
        m.segments_sealed,
        m.puts,
        m.bytes_in as f64 / 1e9,
        m.puts as f64 / (m.bytes_in as f64 / 1e9)
    );
    engine.shutdown(Duration::ZERO);

    // A fresh engine: cold cache, default 256 MiB.
    let engine = local_engine(dir.path(), |_| {});
    let t = Instant::now();
    let mut next = 0;
    let mut fetches = 0u64;
    loop {
        let r = engine
            .fetch_sync(
                "seq",
                0,
                FetchRequest {
                    offset: next,
                    max_records: 500,
                    max_bytes: 0,
                    max_wait: Duration::ZERO,
                },
            )
            .expect("fetch");
        if r.records.is_empty() {
            break;
        }
        fetches += 1;
        next = r.next_offset;
    }
    let secs = t.elapsed().as_secs_f64();
    let m = engine.metrics();
    let lookups = m.cache_hits + m.cache_misses;
    println!(
        "consumed {next} records in {secs:.1} s ({:.0} records/s, {fetches} fetches of 500): block lookups {lookups}, hits {}, misses {}, hit rate {:.3}%, prefetched blocks {}",
        next as f64 / secs,
        m.cache_hits,
        m.cache_misses,
        100.0 * m.cache_hits as f64 / lookups.max(1) as f64,
        m.prefetches
    );
    engine.shutdown(Duration::ZERO);
}

fn section_restart(values: &[Vec<u8>]) {
    println!("\n## 6. restart with 1M records in the WAL (nothing uploaded)");
    let dir = tempfile::tempdir().expect("tmp");
    let tweak = |c: &mut EngineConfig| {
        c.segment_max_bytes = 4 << 30;
        c.segment_max_age = Duration::from_secs(3600);
    };
    {
        let engine = local_engine(dir.path(), tweak);
        engine.create_topic(&topic("r")).expect("topic");
        produce_run(&engine, "r", batches(values, 1_000_000, 0), 4);
        engine.shutdown(Duration::ZERO);
    }
    let wal_bytes: u64 = std::fs::read_dir(dir.path().join("wal/r/0"))
        .expect("wal dir")
        .map(|e| e.expect("entry").metadata().expect("meta").len())
        .sum();
    let mut times = HashMap::new();
    let t = Instant::now();
    let engine = local_engine(dir.path(), tweak);
    times.insert("open (replay)", t.elapsed());
    let r = engine
        .fetch_sync(
            "r",
            0,
            FetchRequest {
                offset: 999_900,
                max_records: 100,
                max_bytes: 0,
                max_wait: Duration::ZERO,
            },
        )
        .expect("fetch");
    assert_eq!(r.records.len(), 100);
    let first_fetch = t.elapsed();
    let ack = engine
        .produce_sync("r", 0, batches(values, 1000, 0).remove(0), Acks::Wal)
        .expect("produce");
    assert_eq!(ack.base_offset, 1_000_000);
    println!(
        "WAL {:.1} MB; open + replay {:.3} s; first fetch answered at {:.3} s; next produce got offset {}",
        wal_bytes as f64 / 1e6,
        times["open (replay)"].as_secs_f64(),
        first_fetch.as_secs_f64(),
        ack.base_offset
    );
    engine.shutdown(Duration::ZERO);
}

fn main() {
    let values = load_lines("flights-200k.jsonl");
    let mean = values.iter().map(Vec::len).sum::<usize>() as f64 / values.len() as f64;
    println!(
        "# engine benchmarks; machine: {} cores (shared, noisy); data: flights-200k.jsonl",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let only = std::env::var("STREAMHOUSE_BENCH_ONLY").unwrap_or_default();
    let want = |s: &str| only.is_empty() || only.split(',').any(|x| x == s);
    let mut max_rate = 1_000_000.0;
    if want("produce") {
        max_rate = section_produce(&values, mean);
    }
    if want("idempotence") {
        section_idempotence(&values);
    }
    if want("latency") {
        section_latency(&values, max_rate);
    }
    if want("fetch") {
        section_fetch(&values);
    }
    if want("sequential") {
        section_sequential(&values, mean);
    }
    if want("restart") {
        section_restart(&values);
    }
}
