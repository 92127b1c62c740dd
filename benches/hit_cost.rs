//! What nearfar's `metrics` feature costs a near hit when no recorder is
//! installed (the bound: within 5% of a build without it).
//! Features are chosen at compile time, so `metrics_cost.sh` builds this
//! bench twice (without and with `--features metrics`) and compares the
//! two binaries: instructions per hit under callgrind, and ns per hit
//! with the two timed alternately.
//!
//! A warm `Cache<u64, [u8; 64]>` of 100,000 entries; each pass reads
//! 2^20 of its keys (a fixed pseudo-random order), every read a hit.
//!
//! * `hit_cost callgrind`: two passes, both in `measured_hits` (for
//!   `--toggle-collect='*measured_hits*'`: divide by twice 2^20), the
//!   first of them the warm-up;
//! * `hit_cost time`: the median ns per hit of 7 passes, on one line;
//! * either with `ttl`: every entry has a one-hour TTL, so every hit
//!   reads the clock (as a `NearFar`'s near hit does whenever its copy has
//!   an expiry: a `near_ttl`, or what is left of the far item's TTL);
//! * under `cargo test --benches`: a small smoke run of both caches
//!   (without and with `ttl`).
#![allow(missing_docs)]

use std::hint::black_box;
use std::time::Instant;

type Nearfar = nearfar::Cache<u64, [u8; 64]>;

const ENTRIES: u64 = 100_000;

/// Keys of the cache in a fixed pseudo-random order (an LCG).
fn keys(n: usize) -> Vec<u64> {
    let mut x = 0x5EEDu64;
    (0..n)
        .map(|_| {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            (x >> 33) % ENTRIES
        })
        .collect()
}

fn cache(ttl: bool) -> Nearfar {
    let mut builder = Nearfar::builder().max_entries(ENTRIES as usize * 2);
    if ttl {
        builder = builder.time_to_live(std::time::Duration::from_secs(3600));
    }
    let cache = builder.build();
    for k in 0..ENTRIES {
        let mut v = [0u8; 64];
        v[..8].copy_from_slice(&k.to_le_bytes());
        cache.insert(k, v);
    }
    cache
}

/// The pass callgrind measures: every read a hit.
#[inline(never)]
fn measured_hits(cache: &Nearfar, keys: &[u64]) -> u64 {
    let mut sum = 0u64;
    for k in keys {
        let v = cache.get(black_box(k)).expect("a hit");
        sum = sum.wrapping_add(u64::from(v[0]));
    }
    sum
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mode = args.iter().find(|a| *a == "callgrind" || *a == "time");
    if mode.is_none() && !args.iter().any(|a| a == "--bench") {
        // The smoke run: both caches, so the TTL path is exercised too.
        run(None, false, 1 << 12);
        run(None, true, 1 << 12);
        return;
    }
    let ttl = args.iter().any(|a| a == "ttl");
    run(mode.map(String::as_str), ttl, 1 << 20);
}

/// One cache (with a TTL on every entry, or none), read in passes of `n`
/// hits: timed (`mode` `time`, or none), or for callgrind.
fn run(mode: Option<&str>, ttl: bool, n: usize) {
    let build = match (cfg!(feature = "metrics"), ttl) {
        (true, false) => "metrics",
        (false, false) => "plain",
        (true, true) => "metrics, ttl",
        (false, true) => "plain, ttl",
    };
    let cache = cache(ttl);
    let keys = keys(n);
    // The warm-up is a pass of `measured_hits` too: a function of its own
    // would be a second caller of the lookup, which the compiler then
    // calls instead of inlining (~20 instructions a hit).
    black_box(measured_hits(&cache, &keys));
    if mode == Some("callgrind") {
        black_box(measured_hits(&cache, &keys));
        println!("{build}: {} hits", 2 * n);
        return;
    }
    let mut ns: Vec<f64> = (0..7)
        .map(|_| {
            let start = Instant::now();
            black_box(measured_hits(&cache, &keys));
            start.elapsed().as_nanos() as f64 / n as f64
        })
        .collect();
    ns.sort_by(f64::total_cmp);
    assert_eq!(cache.stats().hits, 8 * n as u64, "every read a hit");
    println!("{build}: {:.2} ns/hit", ns[3]);
}
