//! Warm restarts (issue 14): a process whose near tier holds 100k entries
//! is restarted cold, from a snapshot (`NearFarBuilder::snapshot`) and from
//! a key preload (`NearFarBuilder::preload`), against one memcached. Each
//! restarted process reads a Zipf(0.99) stream over the 100k keys on one
//! thread for its first second; reported per restart: reads, the near hit
//! ratio, far reads, loader calls (a 200 µs loader: a database query), the
//! build time and, for the preload, when it was done. Twice: with
//! memcached still warm, and with memcached lost too (flushed: loader calls
//! saved). Then `Cache::save` / `Cache::load` of 100k entries, timed.
//!
//! `cargo bench --bench warm_restart` (about 30 s). Under
//! `cargo test --benches` a smoke version runs (10k keys, 200 ms windows).
#![allow(missing_docs)]

mod common;
#[path = "../tests/common/memcached.rs"]
mod server;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::{SplitMix64, Zipf};
use nearfar::memcached::Client;
use nearfar::{Cache, NearFar, NearFarBuilder};

/// What the loader costs: a query to the source of truth.
const LOADER: Duration = Duration::from_micros(200);

struct Setup {
    keys: usize,
    window: Duration,
    warm_reads: usize,
}

fn value(key: u64) -> String {
    // 100 bytes, distinct per key.
    format!("{key:020}{}", "v".repeat(80))
}

/// The key of Zipf rank `rank`, scrambled so hot keys are not adjacent.
fn key_of(rank: u64) -> u64 {
    rank.wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

fn builder(addr: &str, keys: usize) -> NearFarBuilder<u64, String> {
    let client = Client::builder().servers([addr]).build().expect("client");
    NearFar::builder()
        .near(Cache::builder().max_entries(keys))
        .far(client)
        .namespace("warm")
        .near_ttl(Duration::from_secs(600))
}

fn loader(loads: &AtomicU64, key: u64) -> String {
    loads.fetch_add(1, Ordering::Relaxed);
    thread::sleep(LOADER);
    value(key)
}

/// One restarted process's first window.
struct Window {
    build: Duration,
    reads: u64,
    near_hits: u64,
    far_hits: u64,
    loads: u64,
    restored: u64,
    preloaded: u64,
}

/// Builds a process with `files` set, then reads the stream for the window.
fn restart(
    addr: &str,
    setup: &Setup,
    zipf: &Zipf,
    files: impl FnOnce(NearFarBuilder<u64, String>) -> NearFarBuilder<u64, String>,
) -> Window {
    let loads = Arc::new(AtomicU64::new(0));
    let began = Instant::now();
    let cache = files(builder(addr, setup.keys)).build().expect("near/far");
    let build = began.elapsed();
    let mut rng = SplitMix64::new(7);
    let mut reads = 0u64;
    let start = Instant::now();
    while start.elapsed() < setup.window {
        for _ in 0..64 {
            let key = key_of(zipf.sample(&mut rng));
            cache.get_with(key, || loader(&loads, key));
            reads += 1;
        }
    }
    let s = cache.stats();
    Window {
        build,
        reads,
        near_hits: s.near_hits,
        far_hits: s.far_hits,
        loads: loads.load(Ordering::Relaxed),
        restored: s.restored,
        preloaded: s.preloaded,
    }
}

fn row(name: &str, w: &Window) {
    let ratio = w.near_hits as f64 / w.reads.max(1) as f64;
    println!(
        "| {name} | {:.1} ms | {} | {} | {:.2}% | {} | {} | {:.2} |",
        w.build.as_secs_f64() * 1e3,
        w.restored + w.preloaded,
        w.reads,
        ratio * 100.0,
        w.far_hits,
        w.loads,
        w.loads as f64 * 1000.0 / w.reads.max(1) as f64,
    );
}

fn header(title: &str) {
    println!("\n{title}\n");
    println!(
        "| restart | build | entries restored / preloaded | reads in the window | near hit ratio | far reads | loader calls | loader calls per 1k reads |"
    );
    println!("|---|---|---|---|---|---|---|---|");
}

/// How long a process built with the key list at `keys` and left idle
/// takes to preload `total` values (bounded: 60 s).
fn preload_time(addr: &str, setup: &Setup, keys: &Path, total: u64) -> (Duration, u64) {
    let began = Instant::now();
    let cache = builder(addr, setup.keys)
        .preload(keys)
        .build()
        .expect("near/far");
    while cache.stats().preloaded < total && began.elapsed() < Duration::from_secs(60) {
        thread::sleep(Duration::from_millis(1));
    }
    (began.elapsed(), cache.stats().preloaded)
}

fn remove(path: &Path) {
    let _ = std::fs::remove_file(path);
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let setup = if full {
        Setup {
            keys: 100_000,
            window: Duration::from_secs(1),
            warm_reads: 1_000_000,
        }
    } else {
        Setup {
            keys: 10_000,
            window: Duration::from_millis(200),
            warm_reads: 50_000,
        }
    };
    let server = server::Memcached::start_with(&["-m", "256"]);
    let addr = server.addr();
    let dir: PathBuf =
        std::env::temp_dir().join(format!("nearfar-warm-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a directory for the files");
    let (snap, keys_file) = (dir.join("near.snap"), dir.join("near.keys"));
    let zipf = Zipf::new(setup.keys, 0.99);
    println!(
        "warm restarts: {} keys, near tier of {} entries, Zipf(0.99) reads on one thread, loader {LOADER:?}, \
         window {:?} after each restart, memcached 1.6 on loopback",
        setup.keys, setup.keys, setup.window
    );

    // The first process: every key written (both tiers), then read long
    // enough for the near tier's hottest entries to stand out.
    let loads = Arc::new(AtomicU64::new(0));
    let first = builder(&addr, setup.keys)
        .snapshot(&snap, Duration::from_secs(3600))
        .preload(&keys_file)
        .build()
        .expect("near/far");
    for rank in 1..=setup.keys as u64 {
        let key = key_of(rank);
        first.insert(key, value(key));
    }
    let mut rng = SplitMix64::new(1);
    for _ in 0..setup.warm_reads {
        let key = key_of(zipf.sample(&mut rng));
        first.get_with(key, || loader(&loads, key));
    }
    // Its steady state, over a window like the restarts'.
    let before = first.stats();
    let mut rng = SplitMix64::new(7);
    let (mut reads, start) = (0u64, Instant::now());
    while start.elapsed() < setup.window {
        for _ in 0..64 {
            let key = key_of(zipf.sample(&mut rng));
            first.get_with(key, || loader(&loads, key));
            reads += 1;
        }
    }
    let steady = (first.stats().near_hits - before.near_hits) as f64 / reads as f64;
    let entries = first.stats().near.entries;
    let began = Instant::now();
    drop(first); // saves both files
    let final_save = began.elapsed();
    let snap_bytes = std::fs::metadata(&snap).map_or(0, |m| m.len());
    let keys_bytes = std::fs::metadata(&keys_file).map_or(0, |m| m.len());
    println!(
        "\nthe process before the restart: {entries} entries near, steady near hit ratio {:.2}% ({reads} reads); \
         its last save on drop (snapshot {snap_bytes} B + key list {keys_bytes} B): {:.1} ms",
        steady * 100.0,
        final_save.as_secs_f64() * 1e3
    );

    // Each restarted process saves its files again when dropped: every
    // restart starts from the first process's.
    let (snap_first, keys_first) = (dir.join("first.snap"), dir.join("first.keys"));
    std::fs::copy(&snap, &snap_first).expect("copy the snapshot");
    std::fs::copy(&keys_file, &keys_first).expect("copy the key list");
    let files = || {
        std::fs::copy(&snap_first, &snap).expect("the snapshot back");
        std::fs::copy(&keys_first, &keys_file).expect("the key list back");
    };
    let every = Duration::from_secs(3600);

    header("memcached warm (it kept every value):");
    let cold = restart(&addr, &setup, &zipf, |b| b);
    row("cold", &cold);
    files();
    let from_snapshot = restart(&addr, &setup, &zipf, |b| b.snapshot(&snap, every));
    row("snapshot", &from_snapshot);
    files();
    let preloaded = restart(&addr, &setup, &zipf, |b| b.preload(&keys_file));
    row("preload", &preloaded);
    files();
    let (took, preloaded_all) = preload_time(&addr, &setup, &keys_file, entries);
    println!(
        "\nthe preload of an idle process: {preloaded_all} of {entries} values in {:.0} ms",
        took.as_secs_f64() * 1e3
    );

    header("memcached lost too (flushed before each restart):");
    let flush = || {
        Client::builder()
            .servers([addr.as_str()])
            .build()
            .expect("client")
            .flush_all()
            .expect("flush_all");
    };
    flush();
    let lost_cold = restart(&addr, &setup, &zipf, |b| b);
    row("cold", &lost_cold);
    flush();
    files();
    let lost_snapshot = restart(&addr, &setup, &zipf, |b| b.snapshot(&snap, every));
    row("snapshot", &lost_snapshot);
    flush();
    files();
    let lost_preload = restart(&addr, &setup, &zipf, |b| b.preload(&keys_file));
    row("preload (nothing to read)", &lost_preload);
    println!(
        "\nloader calls saved by the snapshot in the first window: {} of {} ({:.1}x fewer per read)",
        lost_cold.loads.saturating_sub(lost_snapshot.loads),
        lost_cold.loads,
        (lost_cold.loads as f64 / lost_cold.reads.max(1) as f64)
            / (lost_snapshot.loads.max(1) as f64 / lost_snapshot.reads.max(1) as f64)
    );

    // Cache::save / Cache::load of the same entries, on their own.
    let cache: Cache<u64, String> = Cache::new(setup.keys);
    for rank in 1..=setup.keys as u64 {
        let key = key_of(rank);
        cache.insert(key, value(key));
    }
    let file = dir.join("cache.snap");
    let mut saves = Vec::new();
    let mut loads_t = Vec::new();
    let mut stored = 0;
    let mut saved_entries = 0;
    for _ in 0..5 {
        let began = Instant::now();
        saved_entries = cache.save(&file).expect("save").entries;
        saves.push(began.elapsed());
        let fresh: Cache<u64, String> = Cache::new(setup.keys);
        let began = Instant::now();
        stored = fresh.load(&file).expect("load").stored;
        loads_t.push(began.elapsed());
    }
    saves.sort();
    loads_t.sort();
    let per_100k = |d: Duration, n: u64| d.as_secs_f64() * 1e3 * 100_000.0 / n.max(1) as f64;
    println!(
        "\nCache::save of {saved_entries} entries (100-byte values, {} B): median {:.1} ms ({:.1} ms per 100k); \
         Cache::load of them into an empty cache ({stored} stored): median {:.1} ms ({:.1} ms per 100k); 5 runs each",
        std::fs::metadata(&file).map_or(0, |m| m.len()),
        saves[2].as_secs_f64() * 1e3,
        per_100k(saves[2], saved_entries),
        loads_t[2].as_secs_f64() * 1e3,
        per_100k(loads_t[2], stored),
    );

    assert!(
        from_snapshot.near_hits > cold.near_hits,
        "the snapshot warmed the near tier"
    );
    assert!(
        lost_snapshot.loads < lost_cold.loads,
        "the snapshot saved loader calls"
    );
    for path in [&snap, &keys_file, &snap_first, &keys_first, &file] {
        remove(path);
    }
    let _ = std::fs::remove_dir(&dir);
}
