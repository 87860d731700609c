//! Segment codec throughput on the real data sets, against a baseline of
//! plain LZ4 on the bare values in 1 MiB blocks, measured in the same run.
//!
//! `cargo bench --bench segment_codec` (STREAMHOUSE_BENCH_ROUNDS to change
//! the number of timed rounds; default 15). Prints one table per data set:
//! medians and p90 of records/s and MB/s (MB of value bytes, 10^6), and the
//! ratio of the format's median to the baseline's.

mod common;

use common::{load_lines, summarize};
use std::hint::black_box;
use std::time::Instant;
use streamhouse::segment::{SegmentBytes, SegmentWriter, DEFAULT_BLOCK_BYTES};

/// Records as a producer would send them: no key, server timestamps that
/// advance ~1 ms per 100 records, contiguous offsets.
fn encode(values: &[Vec<u8>]) -> Vec<u8> {
    let mut w = SegmentWriter::new(DEFAULT_BLOCK_BYTES);
    for (i, v) in values.iter().enumerate() {
        w.push_parts(
            i as i64,
            1_764_000_000_000 + i as i64 / 100,
            None,
            Some(v),
            &[],
        )
        .expect("offsets increase");
    }
    w.finish().expect("non-empty").0
}

fn decode_refs(seg: &[u8]) -> usize {
    let reader = SegmentBytes::open(seg).expect("valid segment");
    let mut n = 0;
    for i in 0..reader.footer().entries().len() {
        let block = reader.block(i).expect("valid block");
        for r in block.iter() {
            n += r.value.map_or(0, <[u8]>::len);
        }
    }
    n
}

fn decode_owned(seg: &[u8]) -> usize {
    let reader = SegmentBytes::open(seg).expect("valid segment");
    reader
        .iter_from(0)
        .map(|r| r.expect("valid").value_bytes().len())
        .sum()
}

/// Baseline: LZ4 of the bare values, concatenated in 1 MiB blocks.
fn bare_blocks(values: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut blocks = Vec::new();
    let mut cur = Vec::with_capacity(DEFAULT_BLOCK_BYTES);
    for v in values {
        if !cur.is_empty() && cur.len() + v.len() > DEFAULT_BLOCK_BYTES {
            blocks.push(std::mem::take(&mut cur));
        }
        cur.extend_from_slice(v);
    }
    if !cur.is_empty() {
        blocks.push(cur);
    }
    blocks
}

fn row(
    name: &str,
    records: usize,
    value_bytes: usize,
    secs: Vec<f64>,
    base_p50: Option<f64>,
) -> f64 {
    let rps = summarize(secs.iter().map(|s| records as f64 / s).collect());
    let mbs = summarize(secs.iter().map(|s| value_bytes as f64 / s / 1e6).collect());
    let ratio = base_p50.map_or(String::from("baseline"), |b| format!("{:.2}x", mbs.p50 / b));
    println!(
        "| {name:<28} | {:>12.0} | {:>12.0} | {:>8.1} | {:>8.1} | {ratio:>9} |",
        rps.p50, rps.p90, mbs.p50, mbs.p90
    );
    mbs.p50
}

fn time(rounds: usize, mut f: impl FnMut()) -> Vec<f64> {
    f(); // warm-up
    (0..rounds)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .collect()
}

fn main() {
    let rounds: usize = std::env::var("STREAMHOUSE_BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(15);
    println!("segment codec, {rounds} rounds each; MB = 10^6 bytes of record values");
    for file in ["flights-200k.jsonl", "movies.jsonl"] {
        let values = load_lines(file);
        let n = values.len();
        let value_bytes: usize = values.iter().map(Vec::len).sum();
        let seg = encode(&values);
        let blocks = bare_blocks(&values);
        let bare: Vec<Vec<u8>> = blocks
            .iter()
            .map(|b| lz4_flex::block::compress(b))
            .collect();
        let bare_len: usize = bare.iter().map(Vec::len).sum();

        println!();
        println!(
            "{file}: {n} records, {value_bytes} value bytes (mean {:.1} B)",
            value_bytes as f64 / n as f64
        );
        println!(
            "size: segment {} B = {:.2}% saved; bare-value LZ4 {} B = {:.2}% saved; format cost {:.2} points",
            seg.len(),
            100.0 * (1.0 - seg.len() as f64 / value_bytes as f64),
            bare_len,
            100.0 * (1.0 - bare_len as f64 / value_bytes as f64),
            100.0 * (seg.len() as f64 - bare_len as f64) / value_bytes as f64
        );
        println!(
            "| {:<28} | {:>12} | {:>12} | {:>8} | {:>8} | {:>9} |",
            "operation", "rec/s p50", "rec/s p90", "MB/s p50", "MB/s p90", "vs base"
        );
        println!("|{}|", "-".repeat(28 + 12 + 12 + 8 + 8 + 9 + 17));
        let base_c = row(
            "baseline: LZ4 compress",
            n,
            value_bytes,
            time(rounds, || {
                for b in &blocks {
                    black_box(lz4_flex::block::compress(b));
                }
            }),
            None,
        );
        row(
            "segment encode",
            n,
            value_bytes,
            time(rounds, || {
                black_box(encode(&values));
            }),
            Some(base_c),
        );
        let base_d = row(
            "baseline: LZ4 decompress",
            n,
            value_bytes,
            time(rounds, || {
                for (c, b) in bare.iter().zip(&blocks) {
                    black_box(lz4_flex::block::decompress(c, b.len()).expect("valid"));
                }
            }),
            None,
        );
        row(
            "segment decode (borrowed)",
            n,
            value_bytes,
            time(rounds, || {
                black_box(decode_refs(&seg));
            }),
            Some(base_d),
        );
        row(
            "segment decode (owned)",
            n,
            value_bytes,
            time(rounds, || {
                black_box(decode_owned(&seg));
            }),
            Some(base_d),
        );
    }
}
