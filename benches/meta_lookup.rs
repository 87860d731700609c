//! Metadata lookups over a partition with 10,000 committed segments.
//!
//! `cargo bench --bench meta_lookup`: commits 10,000 segments (timing the
//! commits), then times random lookups by offset, and loading the whole
//! segment list as a partition's recovery does, printing p50/p90/p99
//! latencies in microseconds.

mod common;

use common::{micros, summarize};
use std::time::Instant;
use streamhouse::meta::{MetaStore, SegmentRow, TopicRow};

const SEGMENTS: i64 = 10_000;
const PER_SEGMENT: i64 = 50_000;
const LOOKUPS: usize = 20_000;

fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let meta = MetaStore::open(dir.path().join("meta.sqlite")).expect("open");
    meta.create_topic(&TopicRow {
        name: "bench".into(),
        partitions: 1,
        retention_ms: 0,
        retention_bytes: 0,
        created_at_ms: 0,
        incarnation: 0,
    })
    .expect("topic");
    let mut commit = Vec::with_capacity(SEGMENTS as usize);
    for i in 0..SEGMENTS {
        let t = Instant::now();
        meta.commit_segment(
            &SegmentRow {
                topic: "bench".into(),
                partition: 0,
                base_offset: i * PER_SEGMENT,
                last_offset: (i + 1) * PER_SEGMENT - 1,
                record_count: PER_SEGMENT,
                size_bytes: 8 << 20,
                min_timestamp_ms: i * 1000,
                max_timestamp_ms: i * 1000 + 999,
                object_key: format!("topics/bench/0/{:020}.seg", i * PER_SEGMENT),
                created_at_ms: i,
            },
            None,
        )
        .expect("commit");
        commit.push(micros(t.elapsed()));
    }
    let mut rng = streamhouse::util::xorshift::XorShift64::new(0x1234_5678);
    let mut next = || rng.next_u64();
    let mut by_offset = Vec::with_capacity(LOOKUPS);
    for _ in 0..LOOKUPS {
        let offset = (next() % (SEGMENTS * PER_SEGMENT) as u64) as i64;
        let t = Instant::now();
        let s = meta
            .segment_for_offset("bench", 0, offset)
            .expect("query")
            .expect("found");
        by_offset.push(micros(t.elapsed()));
        assert!(s.base_offset <= offset && offset <= s.last_offset);
    }
    let mut load_all = Vec::with_capacity(50);
    for _ in 0..50 {
        let t = Instant::now();
        let all = meta.segments("bench", 0).expect("query");
        load_all.push(micros(t.elapsed()));
        assert_eq!(all.len(), SEGMENTS as usize);
    }
    println!("metadata, one partition with {SEGMENTS} segments; latency in microseconds");
    println!(
        "| {:<28} | {:>7} | {:>8} | {:>8} | {:>8} |",
        "operation", "n", "p50", "p90", "p99"
    );
    for (name, xs) in [
        ("commit_segment (fsync)", commit),
        ("segment_for_offset", by_offset),
        ("segments (all, at recovery)", load_all),
    ] {
        let s = summarize(xs);
        println!(
            "| {name:<28} | {:>7} | {:>8.1} | {:>8.1} | {:>8.1} |",
            s.n, s.p50, s.p90, s.p99
        );
    }
}
