//! Refresh-ahead, measured as issue 13 asks: 4 `NearFar` instances (four
//! "processes", each its own near tier) x 50 threads read one key at a
//! steady rate across 10 TTL periods, against one memcached, with a 50 ms
//! loader; once with `refresh_ahead(0.8)`, once without. Reported: loader
//! calls, and the calls that waited for a load (took over 25 ms: a near or
//! far hit takes well under a millisecond here) after the first fill (each
//! thread's first call, which all wait for the first load, is left out),
//! per mode.
//!
//! `cargo bench --bench refresh_ahead` (2 x 10 TTL periods of 3 s: a
//! minute; `NEARFAR_RA_TTL_MS` changes the period: memcached counts TTLs in
//! whole seconds, so periods under ~3 s blur). Under `cargo test --benches`
//! it runs a short smoke version (2 periods of 1.5 s, 2 x 4 threads).
#![allow(missing_docs)]

#[path = "../tests/common/memcached.rs"]
mod server;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use nearfar::NearFar;
use nearfar::memcached::Client;

const LOADER: Duration = Duration::from_millis(50);
/// A call slower than this waited for a load.
const WAITED: Duration = Duration::from_millis(25);

struct Run {
    calls: u64,
    waited: u64,
    loader_calls: u64,
    slowest: Duration,
}

fn run(
    addr: &str,
    namespace: &str,
    refresh: bool,
    instances: usize,
    threads: usize,
    ttl: Duration,
    periods: u32,
) -> Run {
    let loader_calls = Arc::new(AtomicU64::new(0));
    let caches: Vec<Arc<NearFar<String, u64>>> = (0..instances)
        .map(|_| {
            let client = Client::builder()
                .servers([addr])
                .pool_size(threads.max(1))
                .build()
                .expect("client");
            let mut builder = NearFar::builder()
                .far(client)
                .namespace(namespace)
                .far_ttl(ttl)
                .near_ttl(ttl);
            if refresh {
                builder = builder.refresh_ahead(0.8);
            }
            Arc::new(builder.build().expect("near/far"))
        })
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let start = Arc::new(Barrier::new(instances * threads + 1));
    let handles: Vec<_> = caches
        .iter()
        .flat_map(|cache| (0..threads).map(move |t| (Arc::clone(cache), t)))
        .map(|(cache, t)| {
            let (stop, start, loader_calls) = (
                Arc::clone(&stop),
                Arc::clone(&start),
                Arc::clone(&loader_calls),
            );
            thread::spawn(move || {
                start.wait();
                // A steady rate: one read every 10 ms per thread, offset
                // so the threads do not read in lockstep.
                thread::sleep(Duration::from_micros(200 * t as u64));
                let (mut calls, mut waited, mut slowest) = (0u64, 0u64, Duration::ZERO);
                let mut first = true;
                while !stop.load(Ordering::Relaxed) {
                    let at = Instant::now();
                    cache.get_with("hot".to_string(), || {
                        loader_calls.fetch_add(1, Ordering::Relaxed);
                        thread::sleep(LOADER);
                        7
                    });
                    let took = at.elapsed();
                    calls += 1;
                    if !std::mem::take(&mut first) {
                        if took >= WAITED {
                            waited += 1;
                        }
                        slowest = slowest.max(took);
                    }
                    thread::sleep(Duration::from_millis(10).saturating_sub(took));
                }
                (calls, waited, slowest)
            })
        })
        .collect();
    start.wait();
    thread::sleep(ttl * periods);
    stop.store(true, Ordering::Relaxed);
    let mut out = Run {
        calls: 0,
        waited: 0,
        loader_calls: 0,
        slowest: Duration::ZERO,
    };
    for handle in handles {
        let (calls, waited, slowest) = handle.join().expect("reader");
        out.calls += calls;
        out.waited += waited;
        out.slowest = out.slowest.max(slowest);
    }
    out.loader_calls = loader_calls.load(Ordering::Relaxed);
    out
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let server = server::Memcached::start_with(&["-c", "4096"]);
    let ttl_ms = std::env::var("NEARFAR_RA_TTL_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if full { 3000 } else { 1500 });
    let ttl = Duration::from_millis(ttl_ms);
    let (instances, threads, periods) = if full { (4, 50, 10) } else { (2, 4, 2) };
    println!(
        "refresh-ahead: {instances} instances x {threads} threads, one key, a read every 10 ms per thread, \
         TTL {ttl:?} (near and far), {periods} periods, loader {LOADER:?}\n"
    );
    println!(
        "| mode | calls | loader calls | calls that waited for a load (> {WAITED:?}) after the first fill | slowest call after it |"
    );
    println!("|---|---|---|---|---|");
    for (mode, refresh) in [
        ("without refresh-ahead", false),
        ("refresh_ahead(0.8)", true),
    ] {
        let namespace = if refresh { "ra-on" } else { "ra-off" };
        let r = run(
            &server.addr(),
            namespace,
            refresh,
            instances,
            threads,
            ttl,
            periods,
        );
        println!(
            "| {mode} | {} | {} | {} | {:.1} ms |",
            r.calls,
            r.loader_calls,
            r.waited,
            r.slowest.as_secs_f64() * 1e3
        );
        assert!(r.calls > 0 && r.loader_calls > 0, "the run did something");
    }
}
