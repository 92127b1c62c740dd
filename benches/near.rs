//! Near-tier throughput: every cache on the same pre-generated Zipf key
//! streams, capacity 100,000, values `[u8; 64]`.
//!
//! Matrix: cache x {s = 0.99, s = 1.2} x {cache-aside, mixed 90/10} x
//! {1 thread, 2 threads}. One criterion iteration replays the whole stream
//! (`NEARFAR_BENCH_OPS` keys, default 2^20); with 2 threads each replays its
//! own half, and the time covers the whole batch, spawn to join. Each cache is
//! warmed by one cache-aside pass over the stream before it is timed.
//!
//! Run: `cargo bench --bench near` (about 5 minutes). Quick look:
//! `NEARFAR_BENCH_OPS=100000 cargo bench --bench near -- --warm-up-time 0.2 --measurement-time 0.5`.
#![allow(missing_docs)]

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use common::{BenchCache, CAPACITY, Kind, Visitor, Workload, cache_aside, value_for, zipf_stream};
use criterion::{BenchmarkGroup, Criterion, SamplingMode, Throughput, measurement::WallTime};

struct BenchOne<'g, 'c, 'k> {
    group: &'g mut BenchmarkGroup<'c, WallTime>,
    keys: &'k [u64],
    workload: Workload,
    threads: usize,
}

impl Visitor<common::Value> for BenchOne<'_, '_, '_> {
    type Output = ();

    fn visit<C: BenchCache<common::Value> + 'static>(self, kind: Kind) {
        let cache = C::with_capacity(CAPACITY);
        // Warm: one untimed cache-aside pass, so timing starts at steady state.
        cache_aside(&cache, self.keys, value_for, false);
        let (workload, keys, threads) = (self.workload, self.keys, self.threads);
        self.group.bench_function(kind.name(), |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    workload.run_batch(&cache, keys, threads);
                }
                start.elapsed()
            })
        });
    }
}

fn stream_len() -> usize {
    // Without `--bench` (`cargo test --benches`) criterion runs each bench
    // once as a test: a short stream keeps that quick in a debug build.
    if !std::env::args().any(|a| a == "--bench") {
        return 10_000;
    }
    std::env::var("NEARFAR_BENCH_OPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1 << 20)
}

/// The groups that ran, in order: their names and the ops one iteration does.
type Ran = Vec<(String, u64)>;

fn near(c: &mut Criterion, ran: &mut Ran) {
    let len = stream_len();
    for (s, seed) in [(0.99, 0x5EED_0099), (1.2, 0x5EED_0120)] {
        let keys = zipf_stream(s, len, seed);
        for workload in Workload::ALL {
            for threads in [1, 2] {
                let name = format!("{}/s={s}/{threads}t", workload.name());
                ran.push((name.clone(), keys.len() as u64));
                let mut group = c.benchmark_group(name);
                group.throughput(Throughput::Elements(keys.len() as u64));
                // One iteration is a whole stream replay (tens to hundreds of
                // ms): flat sampling keeps the sample count at the configured
                // size instead of growing the iteration count linearly.
                group.sampling_mode(SamplingMode::Flat);
                for &kind in Kind::ALL {
                    kind.visit(BenchOne {
                        group: &mut group,
                        keys: &keys,
                        workload,
                        threads,
                    });
                }
                group.finish();
            }
        }
    }
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .configure_from_args()
}

/// Where criterion keeps its results (its own default, unless overridden):
/// the workspace's target directory, one level above this package.
fn criterion_dir() -> PathBuf {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return home.into();
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("criterion")
}

/// The median time per iteration (ns) criterion estimated for one bench in
/// this run, read from its `estimates.json`; `None` if it did not run now.
fn median_ns(group: &str, cache: &str, since: SystemTime) -> Option<f64> {
    let path = criterion_dir()
        .join(group.replace('/', "_"))
        .join(cache)
        .join("new/estimates.json");
    if std::fs::metadata(&path).ok()?.modified().ok()? < since {
        return None;
    }
    let json = std::fs::read_to_string(path).ok()?;
    let median = &json[json.find("\"median\"")?..];
    let value = &median[median.find("\"point_estimate\":")? + "\"point_estimate\":".len()..];
    let end = value.find([',', '}'])?;
    value[..end].trim().parse().ok()
}

/// Prints throughput per cache and the reference cache's ratio to each peer
/// (the first of `Kind::ALL`: nearfar).
fn summary(ran: &Ran, since: SystemTime) {
    let reference = Kind::ALL[0];
    let names: Vec<&str> = Kind::ALL.iter().map(|k| k.name()).collect();
    println!(
        "\n### Throughput, Mops/s (median of samples); ({} ÷ cache) in brackets\n",
        reference.name()
    );
    println!("| workload | {} |", names.join(" | "));
    println!("|---|{}", "---|".repeat(names.len()));
    for (group, ops) in ran {
        let mops: Vec<Option<f64>> = names
            .iter()
            .map(|n| median_ns(group, n, since).map(|ns| *ops as f64 / ns * 1e3))
            .collect();
        if mops.iter().all(Option::is_none) {
            continue;
        }
        let cells: Vec<String> = mops
            .iter()
            .map(|m| match (m, mops[0]) {
                (Some(m), Some(r)) => format!("{m:.2} ({:.2}x)", r / m),
                (Some(m), None) => format!("{m:.2}"),
                (None, _) => "-".to_owned(),
            })
            .collect();
        println!("| {group} | {} |", cells.join(" | "));
    }
}

fn main() {
    let since = SystemTime::now();
    let mut c = config();
    let mut ran = Ran::new();
    near(&mut c, &mut ran);
    c.final_summary();
    if std::env::args().any(|a| a == "--bench") {
        summary(&ran, since);
    }
}
