//! NearFar's three read paths against their floors.
//!
//! * `near_hit`: `NearFar::get` (and `AsyncNearFar::get`, polled once)
//!   answered by the near tier, against a plain `Cache::get` of the same
//!   keys and values (targets: at most 1.1x, and 1.2x for the async one).
//! * `far_hit`: `NearFar::get` with a near tier that admits nothing, so
//!   every read goes to memcached (a lease-aware `mg`, decode, near insert
//!   attempt), against the client's own `get`.
//! * `loader`: `NearFar::get_with` for a new key each time (lease `mg`, the
//!   loader, `ms`), against the client's `get_or_lease` + `set` by hand.
//!
//! The bench starts its own memcached on a free loopback port:
//!
//! ```text
//! taskset -c 0 cargo bench --bench nearfar
//! ```
//!
//! Measured once (memcached 1.6.18, 2-core VM shared with other builds, all
//! on core 0; criterion medians; values are 100-byte strings):
//!
//! | case | NearFar | floor | ratio |
//! |---|---|---|---|
//! | near hit, `u64` values | 22.1 ns | plain `Cache::get` 25.3 ns | 0.87x |
//! | near hit, 100-byte `String` | 62.6 ns | plain `Cache::get` 63.8 ns | 0.98x |
//! | far hit | 24.5 µs | `Client::get` 26.0 µs | 0.94x |
//! | loader (new key) | 59.0 µs | `get_or_lease` + `set` 47.8 µs | 1.23x |
//!
//! A near hit costs what a plain cache hit costs (the entry's 24 bytes of
//! revalidation data are copied with the value; the clock is read only when
//! `revalidate_after` is set). Differences under ~10% are within this
//! machine's noise (the far-hit path is not really faster than the client
//! it calls). The load path adds the near tier's once-per-key
//! registration, the key's rendering and a near insert to two round trips.

#![allow(missing_docs)]

#[path = "../tests/common/memcached.rs"]
mod server;

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use nearfar::memcached::{Client, Lease};
use nearfar::{AsyncNearFar, Cache, NearFar};

const KEYS: u64 = 10_000;
const VALUE_LEN: usize = 100;

/// One near-hit group: `NearFar::get` against a plain `Cache::get`, both
/// holding `value(k)` for every key in `0..KEYS`.
fn near_hit<V>(c: &mut Criterion, name: &str, value: impl Fn(u64) -> V)
where
    V: Clone + serde::Serialize + serde::de::DeserializeOwned + Send + Sync + 'static,
{
    let mut group = c.benchmark_group(name);
    let plain: Cache<u64, V> = Cache::builder().max_entries(KEYS as usize * 2).build();
    let nf: NearFar<u64, V> = NearFar::builder()
        .near(Cache::builder().max_entries(KEYS as usize * 2))
        .build()
        .unwrap();
    for k in 0..KEYS {
        plain.insert(k, value(k));
        nf.insert(k, value(k));
    }
    let mut i = 0u64;
    group.bench_function("cache", |b| {
        b.iter(|| {
            i = (i + 1) % KEYS;
            black_box(plain.get(black_box(&i)))
        })
    });
    group.bench_function("nearfar", |b| {
        b.iter(|| {
            i = (i + 1) % KEYS;
            black_box(nf.get(black_box(&i)))
        })
    });
    // The async handle: a near hit is ready when first polled, so the
    // future is polled once, with a waker that does nothing (what an
    // executor's poll costs on top is the executor's, not the cache's).
    let anf: AsyncNearFar<u64, V> = AsyncNearFar::builder()
        .near(Cache::builder().max_entries(KEYS as usize * 2))
        .build()
        .unwrap();
    for k in 0..KEYS {
        ready(anf.insert(k, value(k)));
    }
    group.bench_function("async_nearfar", |b| {
        b.iter(|| {
            i = (i + 1) % KEYS;
            black_box(ready(anf.get(black_box(&i))))
        })
    });
    group.finish();
}

/// The output of a future that is ready when first polled (a near hit).
fn ready<F: std::future::Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match future.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(out) => out,
        std::task::Poll::Pending => panic!("a near hit (or near-only insert) is ready at once"),
    }
}

fn bench_near_hit(c: &mut Criterion) {
    near_hit(c, "nearfar/near_hit_u64", |k| k);
    let value = "x".repeat(VALUE_LEN);
    near_hit(c, "nearfar/near_hit_string", |_| value.clone());
}

fn bench_far(c: &mut Criterion) {
    let mc = server::Memcached::start();
    let addr = mc.addr();
    let client = Client::builder()
        .servers([addr.as_str()])
        .pool_size(1)
        .build()
        .expect("client");
    let value = "x".repeat(VALUE_LEN);

    // Far hits: a near tier that admits nothing.
    let nf: NearFar<u64, String> = NearFar::builder()
        .near(Cache::builder().max_entries(0))
        .far(client.clone())
        .namespace("bench")
        .build()
        .unwrap();
    for k in 0..100 {
        nf.insert(k, value.clone());
    }
    assert_eq!(nf.get(&1), Some(value.clone()));
    let mut group = c.benchmark_group("nearfar/far_hit");
    let mut i = 0u64;
    group.bench_function("client_get", |b| {
        b.iter(|| {
            i = (i + 1) % 100;
            let key = format!("bench:{i}");
            black_box(client.get::<String>(&key).unwrap())
        })
    });
    group.bench_function("nearfar_get", |b| {
        b.iter(|| {
            i = (i + 1) % 100;
            black_box(nf.get(&i))
        })
    });
    group.finish();

    // Loads: a new key every time.
    let nf: NearFar<u64, String> = NearFar::builder()
        .near(Cache::builder().max_entries(1_000))
        .far(client.clone())
        .namespace("load")
        .build()
        .unwrap();
    let next = AtomicU64::new(0);
    let mut group = c.benchmark_group("nearfar/loader");
    group.bench_function("lease_and_set", |b| {
        b.iter(|| {
            let key = format!("manual:{}", next.fetch_add(1, Ordering::Relaxed));
            match client
                .get_or_lease::<String>(&key, Duration::from_secs(10))
                .unwrap()
            {
                Lease::Won { .. } => client
                    .set(&key, value.as_str(), Duration::from_secs(3600))
                    .unwrap(),
                other => panic!("fresh key not won: {other:?}"),
            }
        })
    });
    group.bench_function("nearfar_get_with", |b| {
        b.iter(|| {
            let k = next.fetch_add(1, Ordering::Relaxed);
            black_box(nf.get_with(k, || value.clone()))
        })
    });
    group.finish();
    assert_eq!(nf.stats().far_errors, 0);
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = bench_near_hit, bench_far
}
criterion_main!(benches);
