//! nearfar against quick_cache, interleaved: both caches replay the same
//! Zipf stream in alternating slices of 2^16 operations, and the figure
//! reported is the median over slices of quick_cache's time ÷ nearfar's for
//! the same slice. On a shared VM whose speed drifts by tens of percent
//! between criterion groups (see `RESULTS.md`), alternating slices exposes
//! both caches to the same drift, so this ratio moves far less from run to
//! run than the ratio of two separately measured medians.
//!
//! Workloads as in `near.rs`: capacity 100,000, `[u8; 64]` values, Zipf
//! s = 0.99 and 1.2 over 1,000,000 keys, cache-aside and 90/10, 1 and 2
//! threads (with 2, each slice is split between two threads). Each cache is
//! warmed by one cache-aside pass over the stream first.
//!
//! Run: `cargo bench --bench interleaved` (about a minute).
//!
//! For instruction counts (steadier still), one cache, one workload, one
//! warm and one measured pass, under callgrind:
//!
//! ```text
//! cargo bench --bench interleaved --no-run   # prints the binary's path
//! valgrind --tool=callgrind --toggle-collect='*measured_pass*' \
//!     target/release/deps/interleaved-<hash> one nearfar 0.99 cache_aside
//! ```
//!
//! (`one quick_cache 1.2 mixed_90_10` and so on.) Under `cargo test --benches`
//! (no `--bench` argument) it runs a small smoke version.
#![allow(missing_docs)]

mod common;

use std::time::Instant;

use common::{BenchCache, CAPACITY, Value, Workload, cache_aside, value_for, zipf_stream};

type Nearfar = nearfar::Cache<u64, Value>;
type QuickCache = quick_cache::sync::Cache<u64, Value>;

/// Operations per slice: long enough to time, short enough that the two
/// caches' slices see the same machine.
const SLICE: usize = 1 << 16;

/// Nanoseconds per operation for `keys`, split over `threads`.
fn time<C: BenchCache<Value>>(workload: Workload, cache: &C, keys: &[u64], threads: usize) -> f64 {
    let start = Instant::now();
    workload.run_batch(cache, keys, threads);
    start.elapsed().as_nanos() as f64 / keys.len() as f64
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// One row: (nearfar ns/op, quick_cache ns/op, median per-slice ratio).
fn row(keys: &[u64], workload: Workload, threads: usize, rounds: usize) -> (f64, f64, f64) {
    let near = Nearfar::with_capacity(CAPACITY);
    let quick = QuickCache::with_capacity(CAPACITY);
    cache_aside(&near, keys, value_for, false);
    cache_aside(&quick, keys, value_for, false);
    let (mut tn, mut tq, mut ratio) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        for (i, part) in keys.chunks(SLICE).enumerate() {
            // Alternate which cache goes first, so neither always inherits
            // the other's cache pollution.
            let (n, q) = if (round + i) % 2 == 0 {
                let n = time(workload, &near, part, threads);
                (n, time(workload, &quick, part, threads))
            } else {
                let q = time(workload, &quick, part, threads);
                (time(workload, &near, part, threads), q)
            };
            tn.push(n);
            tq.push(q);
            ratio.push(q / n);
        }
    }
    (median(tn), median(tq), median(ratio))
}

fn table(ops: usize, rounds: usize) {
    println!("### nearfar vs quick_cache, interleaved slices of {SLICE} ops\n");
    println!(
        "| workload | nearfar ns/op | quick_cache ns/op | median slice ratio (quick_cache ÷ nearfar time) |"
    );
    println!("|---|---|---|---|");
    for s in [0.99, 1.2] {
        let keys = zipf_stream(s, ops, 0x5EED);
        for workload in Workload::ALL {
            for threads in [1, 2] {
                let (n, q, r) = row(&keys, workload, threads, rounds);
                println!(
                    "| {}/s={s}/{threads}t | {n:.1} | {q:.1} | {r:.2}x |",
                    workload.name()
                );
            }
        }
    }
}

/// The pass callgrind measures (`--toggle-collect='*measured_pass*'`).
#[inline(never)]
fn measured_pass<C: BenchCache<Value>>(cache: &C, keys: &[u64], workload: Workload) {
    workload.run(cache, keys);
}

/// `one <nearfar|quick_cache> <s> <cache_aside|mixed_90_10>`: a warm pass, then
/// the measured one.
fn one(args: &[String]) {
    let usage = "usage: one <nearfar|quick_cache> <s> <cache_aside|mixed_90_10>";
    let [cache, s, workload] = args else {
        panic!("{usage}");
    };
    let s: f64 = s.parse().expect(usage);
    let workload = Workload::from_name(workload).expect(usage);
    let keys = zipf_stream(s, 1 << 20, 0x5EED);
    fn go<C: BenchCache<Value>>(keys: &[u64], workload: Workload) {
        let cache = C::with_capacity(CAPACITY);
        cache_aside(&cache, keys, value_for, false);
        measured_pass(&cache, keys, workload);
        println!("{} entries", cache.len());
    }
    match cache.as_str() {
        "nearfar" => go::<Nearfar>(&keys, workload),
        "quick_cache" => go::<QuickCache>(&keys, workload),
        _ => panic!("{usage}"),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(at) = args.iter().position(|a| a == "one") {
        one(&args[at + 1..]);
        return;
    }
    // `cargo bench` passes `--bench`; `cargo test --benches` does not.
    let full = args.iter().any(|a| a == "--bench");
    let start = Instant::now();
    if full {
        table(1 << 20, 3);
    } else {
        table(1 << 16, 1);
    }
    println!("\n(took {:.1} s)", start.elapsed().as_secs_f64());
}
