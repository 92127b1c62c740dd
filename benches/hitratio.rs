//! Hit and miss ratios of the evicting caches (nearfar, quick_cache, moka,
//! mini-moka) under single-threaded cache-aside replay (get; on a miss,
//! insert), printed as markdown tables:
//!
//! 1. Zipf s = 0.99 and s = 1.2 over 1,000,000 keys, capacity 100,000,
//!    `NEARFAR_HITRATIO_OPS` requests (default 10,000,000). Every request is
//!    counted, the cold start included.
//! 2. The real traces in `$NEARFAR_TRACES` (default `../shared/traces`
//!    beside the repository) at capacities of 1% and 10% of each trace's
//!    distinct keys. Skipped, with a message, when the folder is missing.
//!
//! Fairness: moka and mini-moka buffer their policy work and apply it later,
//! so right after an `insert` they can hold more entries than their bound;
//! the replay runs their pending maintenance after every insert
//! ([`common::BenchCache::settle`]) so every cache is held to its bound at
//! every request, as the synchronous caches are. Each cache keeps its default
//! configuration otherwise (quick_cache and nearfar their default sharding).
//!
//! Run: `cargo bench --bench hitratio`. Under `cargo test --benches` (no
//! `--bench` argument) it runs a small smoke version instead.
#![allow(missing_docs)]

mod common;

use std::path::Path;
use std::time::Instant;

use common::{
    BenchCache, CAPACITY, Counts, Kind, Visitor, cache_aside, list_traces, read_trace, traces_dir,
    unique_count, zipf_stream,
};

/// Replays `keys` cache-aside on a fresh cache of type `C`.
struct Replay<'k> {
    keys: &'k [u64],
    capacity: usize,
}

impl Visitor<u64> for Replay<'_> {
    type Output = Counts;

    fn visit<C: BenchCache<u64> + 'static>(self, _kind: Kind) -> Counts {
        let cache = C::with_capacity(self.capacity);
        // Values are irrelevant to a count-bounded cache: store the key.
        cache_aside(&cache, self.keys, |k| k, true)
    }
}

/// One table row: the ratio each evicting cache reached on `keys`.
fn row(keys: &[u64], capacity: usize, ratio: fn(Counts) -> f64) -> Vec<f64> {
    Kind::EVICTING
        .iter()
        .map(|&kind| ratio(kind.visit(Replay { keys, capacity })))
        .collect()
}

fn header(first: &[&str]) {
    let names: Vec<&str> = Kind::EVICTING.iter().map(|k| k.name()).collect();
    let cols: Vec<&str> = first.iter().copied().chain(names).collect();
    println!("| {} |", cols.join(" | "));
    println!("|{}", "---|".repeat(cols.len()));
}

fn cells(ratios: &[f64]) -> String {
    ratios
        .iter()
        .map(|r| format!("{:.2}%", r * 100.0))
        .collect::<Vec<_>>()
        .join(" | ")
}

fn zipf_table(requests: usize) {
    println!("### Hit ratio, Zipf over 1,000,000 keys, capacity {CAPACITY} (higher is better)\n");
    header(&["workload", "requests"]);
    for (s, seed) in [(0.99, 0x417_0099), (1.2, 0x417_0120)] {
        let keys = zipf_stream(s, requests, seed);
        let ratios = row(&keys, CAPACITY, Counts::hit_ratio);
        println!("| zipf s={s} | {requests} | {} |", cells(&ratios));
    }
    println!();
}

fn trace_table(dir: &Path, max_requests: Option<usize>) {
    let traces = match list_traces(dir) {
        Ok(t) if !t.is_empty() => t,
        Ok(_) => {
            println!(
                "No traces found in {}: skipping the trace table.",
                dir.display()
            );
            return;
        }
        Err(e) => {
            println!(
                "Trace folder {} unreadable ({e}): skipping the trace table. \
                 Set NEARFAR_TRACES to the folder holding arc/, cache2k/, libcachesim/, lirs/.",
                dir.display()
            );
            return;
        }
    };
    println!(
        "### Miss ratio on real traces, capacity 1% and 10% of distinct keys (lower is better)\n"
    );
    header(&["trace", "capacity", "requests", "distinct"]);
    for (path, format) in traces {
        let mut keys = match read_trace(&path, format) {
            Ok(k) => k,
            Err(e) => {
                println!("| {} | unreadable: {e} |", path.display());
                continue;
            }
        };
        if let Some(max) = max_requests {
            keys.truncate(max);
        }
        let distinct = unique_count(&keys);
        let name = path
            .strip_prefix(dir)
            .unwrap_or(&path)
            .display()
            .to_string();
        for percent in [1, 10] {
            let capacity = (distinct * percent / 100).max(1);
            let ratios = row(&keys, capacity, Counts::miss_ratio);
            println!(
                "| {name} | {capacity} ({percent}%) | {} | {distinct} | {} |",
                keys.len(),
                cells(&ratios)
            );
        }
    }
    println!();
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` does not, and
    // then a small smoke run checks the code paths without the wait.
    let full = std::env::args().any(|a| a == "--bench");
    let start = Instant::now();
    let requests = if full {
        std::env::var("NEARFAR_HITRATIO_OPS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(10_000_000)
    } else {
        200_000
    };
    zipf_table(requests);
    trace_table(&traces_dir(), if full { None } else { Some(20_000) });
    println!("(took {:.1} s)", start.elapsed().as_secs_f64());
}
