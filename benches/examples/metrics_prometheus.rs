//! A `NearFar`'s metrics (nearfar's feature `metrics`) served to Prometheus
//! on a local HTTP port by `metrics-exporter-prometheus`.
//!
//! ```text
//! cargo run --release -p nearfar-benches --features metrics --example metrics_prometheus
//! curl -s http://127.0.0.1:9898/metrics | grep nearfar_
//! ```
//!
//! It starts a private memcached (as nearfar's tests do: the `memcached`
//! binary must be installed), or uses `NEARFAR_MEMCACHED=host:port`;
//! listens on `NEARFAR_METRICS_ADDR` (default `127.0.0.1:9898`); and runs
//! a small read-mostly workload for `NEARFAR_EXAMPLE_SECS` seconds (default
//! 30), then exits. The exporter is installed before the cache is built:
//! a cache registers its metric handles when it is built.
//!
//! `tests/metrics_prometheus.rs` runs the same functions on a free port
//! and scrapes them.
#![allow(missing_docs)]

#[path = "../../tests/common/memcached.rs"]
pub mod server;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder};
use nearfar::memcached::Client;
use nearfar::{Cache, NearFar};

/// The histograms' buckets, in seconds: 10 µs to 1 s.
const BUCKETS: [f64; 11] = [
    1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 5e-3, 1e-2, 1e-1, 1.0,
];

/// Installs the Prometheus exporter as the global recorder, serving
/// `/metrics` on `addr`. Call it before building the caches.
pub fn install(addr: SocketAddr) -> Result<(), BuildError> {
    PrometheusBuilder::new()
        .with_http_listener(addr)
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &BUCKETS)?
        .install()
}

/// The cache the example observes: near tier, memcached at `server`,
/// named `example` (the `name` label of its metrics).
pub fn cache(server: &str) -> NearFar<String, String> {
    let far = Client::builder()
        .servers([server])
        .io_timeout(Duration::from_millis(500))
        .connect_timeout(Duration::from_millis(500))
        .build()
        .expect("client");
    NearFar::builder()
        .name("example")
        .near(Cache::builder().max_entries(100))
        .far(far)
        .namespace("metrics-example")
        .near_ttl(Duration::from_secs(1))
        .build()
        .expect("cache")
}

/// One round of the workload: 1,000 reads over 200 keys (the near tier
/// holds 100 of them), each missing key loaded once and stored in both
/// tiers, so near hits, near misses, far hits, loads and evictions all
/// move.
pub fn round(cache: &NearFar<String, String>, round: u64) {
    for i in 0..1_000u64 {
        let key = format!("user:{}", (i * 7919 + round) % 200);
        let _ = cache.get_with(key.clone(), || format!("profile of {key}"));
    }
}

fn main() {
    let addr: SocketAddr = std::env::var("NEARFAR_METRICS_ADDR")
        .unwrap_or_else(|_| "127.0.0.1:9898".into())
        .parse()
        .expect("NEARFAR_METRICS_ADDR: host:port");
    let secs: u64 = std::env::var("NEARFAR_EXAMPLE_SECS")
        .map_or(30, |s| s.parse().expect("NEARFAR_EXAMPLE_SECS: seconds"));
    install(addr).expect("the Prometheus exporter");
    let private = std::env::var("NEARFAR_MEMCACHED")
        .is_err()
        .then(server::Memcached::start);
    let server = match &private {
        Some(mc) => mc.addr(),
        None => std::env::var("NEARFAR_MEMCACHED").unwrap_or_default(),
    };
    let cache = cache(&server);
    println!("metrics on http://{addr}/metrics for {secs} s (memcached at {server})");
    let start = Instant::now();
    let mut n = 0;
    while start.elapsed() < Duration::from_secs(secs) {
        round(&cache, n);
        n += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    cache.publish_metrics();
    println!("{n} rounds: {:?}", cache.stats());
}
