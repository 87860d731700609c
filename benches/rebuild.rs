//! Rebuild from the bucket: a node with an empty data dir on a prefix that
//! holds STREAMHOUSE_BENCH_SEGMENTS (default 10,000) segments of flights
//! records on the S3 test server. Times `Engine::open` (list, footers,
//! metadata) and the first fetch, three times, and prints the median.
//!
//! `scripts/bench.sh --bench rebuild` (it starts the S3 test server), or
//! `cargo bench --bench rebuild` with STREAMHOUSE_TEST_S3_ENDPOINT set.

mod common;

use common::load_lines;
use std::sync::Arc;
use std::time::{Duration, Instant};
use streamhouse::object_store::{ObjectStore, S3Config, S3Store};
use streamhouse::{Acks, Engine, EngineConfig, FetchRequest, Record, TopicSpec};

const PARTITIONS: u32 = 8;

fn store(endpoint: &str, prefix: &str) -> Arc<dyn ObjectStore> {
    let config = S3Config {
        endpoint: Some(endpoint.to_string()),
        region: "us-east-1".into(),
        bucket: std::env::var("STREAMHOUSE_TEST_S3_BUCKET")
            .unwrap_or_else(|_| "streamhouse-test".into()),
        prefix: prefix.to_string(),
        path_style: true,
        request_timeout: Duration::from_secs(30),
        ..Default::default()
    }
    .with_env_credentials();
    Arc::new(S3Store::new(&config).expect("S3 store"))
}

/// Fills the prefix: every request seals its own segment (tiny segment
/// size), uploads run in the background on every partition at once.
fn populate(dir: &std::path::Path, store: Arc<dyn ObjectStore>, segments: usize) -> i64 {
    let values = load_lines("flights-200k.jsonl");
    let mut c = EngineConfig::new(dir);
    c.segment_max_bytes = 1;
    c.max_backlog_bytes = 4 << 30;
    let engine = Engine::open(c, store).expect("engine");
    engine
        .create_topic(&TopicSpec {
            name: "flights".into(),
            partitions: PARTITIONS,
            retention_ms: 0,
            retention_bytes: 0,
        })
        .expect("topic");
    let started = Instant::now();
    for s in 0..segments {
        let batch: Vec<Record> = (0..20)
            .map(|i| Record {
                value: Some(values[(s * 20 + i) % values.len()].clone()),
                ..Default::default()
            })
            .collect();
        engine
            .produce_sync("flights", s as u32 % PARTITIONS, batch, Acks::Wal)
            .expect("produce");
    }
    while engine.backlog_bytes() > 0 {
        std::thread::sleep(Duration::from_millis(50));
    }
    let info = engine.describe_topic("flights").expect("describe");
    let committed: i64 = info.partition_info.iter().map(|p| p.segment_count).sum();
    println!(
        "populated: {committed} segments in {:.1} s ({} PUTs)",
        started.elapsed().as_secs_f64(),
        engine.metrics().puts
    );
    engine.shutdown(Duration::from_secs(10));
    committed
}

fn main() {
    let Ok(endpoint) = std::env::var("STREAMHOUSE_TEST_S3_ENDPOINT") else {
        println!("rebuild bench skipped: STREAMHOUSE_TEST_S3_ENDPOINT not set (scripts/bench.sh starts the S3 test server)");
        return;
    };
    let segments: usize = std::env::var("STREAMHOUSE_BENCH_SEGMENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let prefix = format!("bench-rebuild-{}", std::process::id());
    let first = tempfile::tempdir().expect("dir");
    let committed = populate(first.path(), store(&endpoint, &prefix), segments);
    println!(
        "# rebuild from the bucket: {committed} segments in {PARTITIONS} partitions, S3 test server, {} cores (shared, noisy)",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!("| run | open (rebuild) s | first fetch ms | segments adopted |");
    println!("|---|---|---|---|");
    let mut opens = Vec::new();
    for run in 1..=3 {
        let empty = tempfile::tempdir().expect("dir");
        let t = Instant::now();
        let engine = Engine::open(EngineConfig::new(empty.path()), store(&endpoint, &prefix))
            .expect("rebuild");
        let open = t.elapsed();
        let t = Instant::now();
        let r = engine
            .fetch_sync(
                "flights",
                3,
                FetchRequest {
                    offset: 0,
                    max_records: 10,
                    max_bytes: 0,
                    max_wait: Duration::ZERO,
                },
            )
            .expect("fetch");
        let fetch = t.elapsed();
        assert_eq!(r.records.len(), 10);
        let adopted: i64 = engine
            .describe_topic("flights")
            .expect("describe")
            .partition_info
            .iter()
            .map(|p| p.segment_count)
            .sum();
        assert_eq!(adopted, committed, "every segment adopted");
        println!(
            "| {run} | {:.2} | {:.1} | {adopted} |",
            open.as_secs_f64(),
            fetch.as_secs_f64() * 1e3
        );
        opens.push(open.as_secs_f64());
        engine.shutdown(Duration::from_secs(1));
    }
    opens.sort_by(|a, b| a.total_cmp(b));
    println!("median open (rebuild): {:.2} s", opens[1]);
}
