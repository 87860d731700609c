//! Shared helpers for the benches: the real data sets and percentile stats.
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Duration;

/// `../shared/data` beside the project root, or STREAMHOUSE_DATA_DIR.
pub fn data_dir() -> PathBuf {
    std::env::var_os("STREAMHOUSE_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            // At run time first: the persistent target directory may hold a
            // binary built from another clone.
            std::env::var_os("CARGO_MANIFEST_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into())
                .join("../shared/data")
        })
}

/// One value per line of a JSON-lines data set (the newline excluded).
pub fn load_lines(file: &str) -> Vec<Vec<u8>> {
    let path = data_dir().join(file);
    let text =
        std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    text.split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

/// Median, p90 and p99 of a set of samples (nearest-rank).
pub struct Summary {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub min: f64,
    pub max: f64,
    pub n: usize,
}

pub fn summarize(mut xs: Vec<f64>) -> Summary {
    assert!(!xs.is_empty());
    xs.sort_by(|a, b| a.total_cmp(b));
    let pick = |q: f64| xs[((q * xs.len() as f64).ceil() as usize).clamp(1, xs.len()) - 1];
    Summary {
        p50: pick(0.50),
        p90: pick(0.90),
        p99: pick(0.99),
        min: xs[0],
        max: xs[xs.len() - 1],
        n: xs.len(),
    }
}

pub fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}
