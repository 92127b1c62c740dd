//! Refresh-ahead, measured as issue 13 asks: 4 `NearFar` instances (four
//! "processes", each its own near tier) x 50 threads read one key at a
//! steady rate across 10 TTL periods, against one memcached, with a 50 ms
//! loader; once with `refresh_ahead(0.8)`, once without. Reported: loader
//! calls, and the calls that waited for a load (took over 25 ms: a near or
//! far hit takes well under a millisecond here) after the first fill (each
//! thread's first call, which all wait for the first load, is left out),
//! per mode. A third mode runs the same load as tasks: 4 `AsyncNearFar`
//! instances x 50 tasks on a 2-worker tokio runtime, with
//! `refresh_ahead(0.8)` and `get_with_spawned` (the refresh on a task of
//! its own, so no caller should wait after the first fill).
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

#[derive(Default)]
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
                let mut tally = Tally::default();
                while !stop.load(Ordering::Relaxed) {
                    let at = Instant::now();
                    cache.get_with("hot".to_string(), || {
                        loader_calls.fetch_add(1, Ordering::Relaxed);
                        thread::sleep(LOADER);
                        7
                    });
                    let took = tally.record(at.elapsed());
                    thread::sleep(Duration::from_millis(10).saturating_sub(took));
                }
                tally
            })
        })
        .collect();
    start.wait();
    thread::sleep(ttl * periods);
    stop.store(true, Ordering::Relaxed);
    let mut out = Run::default();
    for handle in handles {
        out.add(handle.join().expect("reader"));
    }
    out.loader_calls = loader_calls.load(Ordering::Relaxed);
    out
}

/// The async mode: `instances` `AsyncNearFar`s x `tasks` tasks, each read
/// through `get_with_spawned`.
fn run_async(
    addr: &str,
    namespace: &str,
    instances: usize,
    tasks: usize,
    ttl: Duration,
    periods: u32,
) -> Run {
    use nearfar::AsyncNearFar;
    use nearfar::memcached::AsyncClient;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let loader_calls = Arc::new(AtomicU64::new(0));
        let mut caches: Vec<Arc<AsyncNearFar<String, u64>>> = Vec::new();
        for _ in 0..instances {
            let client: AsyncClient = Client::builder()
                .servers([addr])
                .build_async()
                .expect("client");
            let cache = AsyncNearFar::builder()
                .far(client)
                .namespace(namespace)
                .far_ttl(ttl)
                .near_ttl(ttl)
                .refresh_ahead(0.8)
                .build()
                .expect("near/far");
            caches.push(Arc::new(cache));
        }
        let stop = Arc::new(AtomicBool::new(false));
        let handles: Vec<_> = caches
            .iter()
            .flat_map(|cache| (0..tasks).map(move |t| (Arc::clone(cache), t)))
            .map(|(cache, t)| {
                let (stop, loader_calls) = (Arc::clone(&stop), Arc::clone(&loader_calls));
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_micros(200 * t as u64)).await;
                    let mut tally = Tally::default();
                    while !stop.load(Ordering::Relaxed) {
                        let at = Instant::now();
                        let loader_calls = Arc::clone(&loader_calls);
                        let load = || async move {
                            loader_calls.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(LOADER).await;
                            7
                        };
                        cache.get_with_spawned("hot".to_string(), load).await;
                        let took = tally.record(at.elapsed());
                        tokio::time::sleep(Duration::from_millis(10).saturating_sub(took)).await;
                    }
                    tally
                })
            })
            .collect();
        tokio::time::sleep(ttl * periods).await;
        stop.store(true, Ordering::Relaxed);
        let mut out = Run::default();
        for handle in handles {
            out.add(handle.await.expect("reader"));
        }
        out.loader_calls = loader_calls.load(Ordering::Relaxed);
        out
    })
}

/// One reader's calls: how many, how many waited for a load after its
/// first (which waits for the first fill), the slowest after it.
#[derive(Default)]
struct Tally {
    calls: u64,
    waited: u64,
    slowest: Duration,
}

impl Tally {
    fn record(&mut self, took: Duration) -> Duration {
        if self.calls > 0 {
            if took >= WAITED {
                self.waited += 1;
            }
            self.slowest = self.slowest.max(took);
        }
        self.calls += 1;
        took
    }
}

impl Run {
    fn add(&mut self, tally: Tally) {
        self.calls += tally.calls;
        self.waited += tally.waited;
        self.slowest = self.slowest.max(tally.slowest);
    }
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
    for (mode, refresh, spawned) in [
        ("without refresh-ahead", false, false),
        ("refresh_ahead(0.8)", true, false),
        ("refresh_ahead(0.8), async, get_with_spawned", true, true),
    ] {
        let namespace = match (refresh, spawned) {
            (false, _) => "ra-off",
            (true, false) => "ra-on",
            (true, true) => "ra-async",
        };
        let r = if spawned {
            run_async(&server.addr(), namespace, instances, threads, ttl, periods)
        } else {
            run(
                &server.addr(),
                namespace,
                refresh,
                instances,
                threads,
                ttl,
                periods,
            )
        };
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
