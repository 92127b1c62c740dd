//! nearfar against quick_cache, interleaved: both caches (and dashmap, the
//! no-eviction ceiling) replay the same Zipf stream in rotating slices of
//! 2^16 operations, and the figure reported is the median over slices of
//! quick_cache's time ÷ nearfar's (and ÷ dashmap's) for the same slice. On a shared VM whose speed drifts by tens of percent
//! between criterion groups (see `RESULTS.md`), alternating slices exposes
//! both caches to the same drift, so this ratio moves far less from run to
//! run than the ratio of two separately measured medians. The dashmap
//! column says how far any cache could get above quick_cache on a row: it
//! is a bare concurrent map, with no policy, no bound and no eviction.
//!
//! Workloads as in `near.rs`: capacity 100,000, `[u8; 64]` values, Zipf
//! s = 0.99 and 1.2 over 1,000,000 keys, cache-aside and 90/10; also
//! read-only (the stream's reads of keys both warmed caches hold: every
//! read a hit, no writes). 1, 2, 4 and 16 threads (each slice is split
//! between the threads; from 8 threads up, slices are longer so thread
//! spawns stay a small part of them). Each cache is warmed by one
//! cache-aside pass over the stream first.
//!
//! Run: `cargo bench --bench interleaved` (about half a minute).
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

use common::{
    BenchCache, CAPACITY, DashMapAhash, Value, Workload, cache_aside, value_for, zipf_stream,
};

type Nearfar = nearfar::Cache<u64, Value>;
type QuickCache = quick_cache::sync::Cache<u64, Value>;

/// Operations per slice: long enough to time, short enough that the two
/// caches' slices see the same machine.
const SLICE: usize = 1 << 16;

/// Thread counts of the table: the issue's 1 and 2, and 4 and 16 on the
/// machine's cores (more threads than cores, as thread pools run).
const THREADS: [usize; 4] = [1, 2, 4, 16];

/// The read-only row's stream: `keys` in their order, with the ones either
/// warmed cache does not hold left out, so every read is a hit in both.
/// (dashmap holds every key.)
fn held_by_all(keys: &[u64], near: &Nearfar, quick: &QuickCache) -> Vec<u64> {
    let held: Vec<u64> = keys
        .iter()
        .copied()
        .filter(|&k| BenchCache::get(near, k).is_some() && BenchCache::get(quick, k).is_some())
        .collect();
    assert!(
        held.len() > keys.len() / 2,
        "the warmed caches hold too few of the stream's keys for a read-only row"
    );
    held
}

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

/// Times one slice on one cache (ns/op).
type TimeSlice<'a> = &'a dyn Fn(&[u64]) -> f64;

/// One row's medians: ns/op per cache, and per-slice ratios against
/// quick_cache's time for the same slice.
struct Row {
    near: f64,
    quick: f64,
    dash: f64,
    /// quick_cache ÷ nearfar: above 1, nearfar is faster.
    near_ratio: f64,
    /// quick_cache ÷ dashmap: the ceiling (dashmap evicts nothing).
    dash_ratio: f64,
}

fn row(keys: &[u64], workload: Workload, threads: usize, rounds: usize) -> Row {
    let near = Nearfar::with_capacity(CAPACITY);
    let quick = QuickCache::with_capacity(CAPACITY);
    let dash = DashMapAhash::<Value>::with_capacity(CAPACITY);
    cache_aside(&near, keys, value_for, false);
    cache_aside(&quick, keys, value_for, false);
    cache_aside(&dash, keys, value_for, false);
    let held;
    let keys = if workload == Workload::ReadOnly {
        held = held_by_all(keys, &near, &quick);
        &held[..]
    } else {
        keys
    };
    // Spawning 16 threads costs tens of microseconds: longer slices keep
    // that a small part of each timing.
    let slice = SLICE * threads.div_ceil(4);
    let runs: [TimeSlice<'_>; 3] = [
        &|part| time(workload, &near, part, threads),
        &|part| time(workload, &quick, part, threads),
        &|part| time(workload, &dash, part, threads),
    ];
    let mut times: [Vec<f64>; 3] = Default::default();
    let (mut near_ratio, mut dash_ratio) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        for (i, part) in keys.chunks(slice).enumerate() {
            // Rotate which cache goes first, so none always inherits
            // another's cache pollution.
            let mut t = [0.0; 3];
            for k in 0..3 {
                let which = (round + i + k) % 3;
                t[which] = runs[which](part);
            }
            for (all, one) in times.iter_mut().zip(t) {
                all.push(one);
            }
            near_ratio.push(t[1] / t[0]);
            dash_ratio.push(t[1] / t[2]);
        }
    }
    let [near, quick, dash] = times.map(median);
    Row {
        near,
        quick,
        dash,
        near_ratio: median(near_ratio),
        dash_ratio: median(dash_ratio),
    }
}

fn table(ops: usize, rounds: usize) {
    println!("### nearfar vs quick_cache, interleaved slices of {SLICE} ops\n");
    println!(
        "Ratios are quick_cache's time ÷ the other's for the same slice (median over \
         slices): above 1, the other is faster. dashmap evicts nothing (it holds \
         every key it is given): the speed ceiling.\n"
    );
    println!(
        "| workload | nearfar ns/op | quick_cache ns/op | dashmap ns/op | nearfar vs quick_cache | dashmap vs quick_cache |"
    );
    println!("|---|---|---|---|---|---|");
    for s in [0.99, 1.2] {
        let keys = zipf_stream(s, ops, 0x5EED);
        for workload in [Workload::CacheAside, Workload::Mixed, Workload::ReadOnly] {
            for threads in THREADS {
                let r = row(&keys, workload, threads, rounds);
                println!(
                    "| {}/s={s}/{threads}t | {:.1} | {:.1} | {:.1} | {:.2}x | {:.2}x |",
                    workload.name(),
                    r.near,
                    r.quick,
                    r.dash,
                    r.near_ratio,
                    r.dash_ratio
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

/// `one <nearfar|quick_cache|dashmap> <s> <cache_aside|mixed_90_10|read_only>`: a
/// warm pass, then the measured one (`read_only`: over the keys the warmed
/// cache holds, so every read is a hit).
fn one(args: &[String]) {
    let usage = "usage: one <nearfar|quick_cache|dashmap> <s> <cache_aside|mixed_90_10|read_only>";
    let [cache, s, workload] = args else {
        panic!("{usage}");
    };
    let s: f64 = s.parse().expect(usage);
    let workload = Workload::from_name(workload).expect(usage);
    let keys = zipf_stream(s, 1 << 20, 0x5EED);
    fn go<C: BenchCache<Value>>(keys: &[u64], workload: Workload) {
        let cache = C::with_capacity(CAPACITY);
        cache_aside(&cache, keys, value_for, false);
        let held: Vec<u64>;
        let keys = if workload == Workload::ReadOnly {
            held = keys
                .iter()
                .copied()
                .filter(|&k| cache.get(k).is_some())
                .collect();
            &held[..]
        } else {
            keys
        };
        measured_pass(&cache, keys, workload);
        println!(
            "{} operations measured, {} entries",
            keys.len(),
            cache.len()
        );
    }
    match cache.as_str() {
        "nearfar" => go::<Nearfar>(&keys, workload),
        "quick_cache" => go::<QuickCache>(&keys, workload),
        "dashmap" => go::<DashMapAhash<Value>>(&keys, workload),
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
