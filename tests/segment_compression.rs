//! The segment format's size overhead on real data (../shared/data): at most
//! 2 points of savings below plain LZ4 of the bare values in 1 MiB blocks.
//! Sizes are deterministic, so this is a plain assertion, not a benchmark.

mod common;

use streamhouse::segment::{SegmentWriter, DEFAULT_BLOCK_BYTES};

fn values(file: &str) -> Vec<Vec<u8>> {
    let path = common::project_path("../shared/data").join(file);
    let text = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

/// (segment savings %, bare LZ4 savings %)
fn savings(file: &str) -> (f64, f64) {
    let values = values(file);
    let raw: usize = values.iter().map(Vec::len).sum();
    let mut w = SegmentWriter::new(DEFAULT_BLOCK_BYTES);
    for (i, v) in values.iter().enumerate() {
        w.push_parts(
            i as i64,
            1_764_000_000_000 + i as i64 / 100,
            None,
            Some(v),
            &[],
        )
        .unwrap();
    }
    let (seg, summary) = w.finish().unwrap();
    assert_eq!(summary.record_count as usize, values.len());

    let mut bare = 0;
    let mut block = Vec::new();
    for v in &values {
        if !block.is_empty() && block.len() + v.len() > DEFAULT_BLOCK_BYTES {
            bare += lz4_flex::block::compress(&block).len();
            block.clear();
        }
        block.extend_from_slice(v);
    }
    bare += lz4_flex::block::compress(&block).len();
    let pct = |n: usize| 100.0 * (1.0 - n as f64 / raw as f64);
    (pct(seg.len()), pct(bare))
}

fn check(file: &str, expected_bare: f64) {
    let (seg, bare) = savings(file);
    eprintln!(
        "{file}: segment saves {seg:.2}%, bare LZ4 saves {bare:.2}%, cost {:.2} points",
        bare - seg
    );
    assert!(
        (bare - expected_bare).abs() < 1.5,
        "{file}: bare LZ4 saves {bare:.2}%, expected ~{expected_bare}%"
    );
    assert!(
        bare - seg <= 2.0,
        "{file}: the format costs {:.2} points of savings (max 2)",
        bare - seg
    );
}

#[test]
fn flights_within_two_points_of_bare_lz4() {
    check("flights-200k.jsonl", 81.0);
}

#[test]
fn movies_within_two_points_of_bare_lz4() {
    check("movies.jsonl", 76.0);
}
