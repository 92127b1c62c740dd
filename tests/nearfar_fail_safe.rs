//! `NearFarBuilder::fail_safe`: a failed load (error, panic, async
//! `loader_timeout`) serves the key's last value while it expired less than
//! `max_stale` ago, retrying the loader at most once per backoff; without a
//! last value the caller gets the error as before. Near-only and over a real
//! memcached, blocking and async. Time is a `MockClock`: no sleeping.

#![cfg(feature = "memcached")]

#[path = "common/memcached.rs"]
mod server;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use nearfar::memcached::Client;
use nearfar::{Cache, MockClock, NearFar, NearFarBuilder};
use server::Memcached;

const NEAR_TTL: Duration = Duration::from_secs(60);
const MAX_STALE: Duration = Duration::from_secs(600);
const BACKOFF: Duration = Duration::from_secs(10);

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn builder(clock: &MockClock) -> NearFarBuilder<String, u32> {
    NearFar::builder()
        .near(Cache::builder().max_entries(100).clock(clock.clone()))
        .near_ttl(NEAR_TTL)
        .fail_safe(MAX_STALE)
        .fail_safe_backoff(BACKOFF)
        .clock(clock.clone())
}

/// A loader that counts its calls and fails when told to.
#[derive(Clone, Default)]
struct Source {
    calls: Arc<AtomicUsize>,
}

impl Source {
    fn load(&self, value: Option<u32>) -> Result<u32, String> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        value.ok_or_else(|| "source down".to_string())
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

#[test]
fn a_failed_load_serves_the_last_value_retrying_once_per_backoff_until_max_stale() {
    let clock = MockClock::new();
    let cache = builder(&clock).build().unwrap();
    let source = Source::default();
    let k = || "rate".to_string();
    assert_eq!(cache.try_get_with(k(), || source.load(Some(5))), Ok(5));
    clock.advance(NEAR_TTL + secs(1));

    // Expired, the source fails: the last value, counted, not the error.
    assert_eq!(cache.try_get_with(k(), || source.load(None)), Ok(5));
    assert_eq!(source.calls(), 2);
    assert_eq!(cache.stats().fail_safe_serves, 1);
    // Within the backoff it is served near: the loader is not called.
    for _ in 0..5 {
        assert_eq!(cache.try_get_with(k(), || source.load(None)), Ok(5));
        assert_eq!(cache.get(&k()), Some(5));
    }
    assert_eq!(source.calls(), 2);
    // Each backoff, one more try; it fails, the value is served again.
    clock.advance(BACKOFF);
    assert_eq!(cache.try_get_with(k(), || source.load(None)), Ok(5));
    assert_eq!(source.calls(), 3);
    assert_eq!(cache.stats().fail_safe_serves, 2);
    // `max_stale` counts from the first expiry, not from the last serve.
    clock.advance(MAX_STALE - BACKOFF - secs(1));
    let err = cache.try_get_with(k(), || source.load(None));
    assert_eq!(
        err.map_err(|e| e.to_string()),
        Err("source down".to_string())
    );
    assert_eq!(source.calls(), 4);
    // A success puts a fresh value back.
    assert_eq!(cache.try_get_with(k(), || source.load(Some(6))), Ok(6));
    assert_eq!(cache.get(&k()), Some(6));
}

#[test]
fn without_a_last_value_or_without_fail_safe_the_error_reaches_the_caller() {
    let clock = MockClock::new();
    let source = Source::default();
    let cache = builder(&clock).build().unwrap();
    let never_loaded = cache.try_get_with("new".to_string(), || source.load(None));
    assert!(never_loaded.is_err());

    let plain: NearFar<String, u32> = NearFar::builder()
        .near(Cache::builder().max_entries(100).clock(clock.clone()))
        .near_ttl(NEAR_TTL)
        .clock(clock.clone())
        .build()
        .unwrap();
    assert_eq!(
        plain.try_get_with("k".to_string(), || source.load(Some(1))),
        Ok(1)
    );
    clock.advance(NEAR_TTL + secs(1));
    assert!(
        plain
            .try_get_with("k".to_string(), || source.load(None))
            .is_err()
    );
    assert_eq!(plain.stats().fail_safe_serves, 0);
    assert_eq!(cache.stats().fail_safe_serves, 0);
}

#[test]
fn a_panicking_loader_serves_the_last_value_and_without_one_the_panic_goes_on() {
    let clock = MockClock::new();
    let cache = builder(&clock).build().unwrap();
    assert_eq!(cache.get_with("k".to_string(), || 1), 1);
    clock.advance(NEAR_TTL + secs(1));
    let served = cache.get_with("k".to_string(), || panic!("loader bug"));
    assert_eq!(served, 1);
    assert_eq!(cache.stats().fail_safe_serves, 1);

    let unserved = catch_unwind(AssertUnwindSafe(|| {
        cache.get_with("other".to_string(), || panic!("loader bug"))
    }));
    assert!(unserved.is_err(), "no last value: the panic propagates");
    // The cache still works for that key.
    assert_eq!(cache.get_with("other".to_string(), || 2), 2);
}

#[test]
fn a_blocking_caller_waiting_past_loader_timeout_for_another_threads_load_is_served_the_last_value()
{
    let clock = MockClock::new();
    let cache = builder(&clock).loader_timeout(secs(2)).build().unwrap();
    let k = || "rate".to_string();
    assert_eq!(cache.get_with(k(), || 5), 5);
    clock.advance(NEAR_TTL + secs(1));

    // Thread A loads the expired key, and its source hangs.
    let (release, hold) = std::sync::mpsc::channel::<()>();
    let (running, started) = std::sync::mpsc::channel();
    let leader = {
        let cache = cache.clone();
        std::thread::spawn(move || {
            cache.get_with(k(), || {
                running.send(()).unwrap();
                hold.recv_timeout(secs(10)).unwrap();
                6
            })
        })
    };
    started.recv_timeout(secs(10)).unwrap();
    // Thread B waits for A's load: on the cache's clock, not real time.
    let (done, answer) = std::sync::mpsc::channel();
    let waiter = {
        let cache = cache.clone();
        std::thread::spawn(move || done.send(cache.get_with(k(), || 7)).unwrap())
    };
    for _ in 0..1_000 {
        if cache.stats().coalesced_waits == 1 {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(20));
    assert!(answer.recv_timeout(Duration::from_millis(50)).is_err());
    clock.advance(secs(2));
    // Past `loader_timeout`: B is served the last value, counted; A's
    // loader runs on (nothing interrupts a thread) and its value is kept.
    assert_eq!(answer.recv_timeout(secs(10)).unwrap(), 5);
    assert_eq!(cache.stats().fail_safe_serves, 1);
    waiter.join().unwrap();
    release.send(()).unwrap();
    assert_eq!(leader.join().unwrap(), 6);
    assert_eq!(cache.get(&k()), Some(6));
}

#[test]
fn the_setting_is_checked() {
    let zero = NearFar::<u32, u32>::builder()
        .fail_safe(Duration::ZERO)
        .build();
    assert!(zero.is_err());
    let zero = NearFar::<u32, u32>::builder()
        .fail_safe(secs(1))
        .fail_safe_backoff(Duration::ZERO)
        .build();
    assert!(zero.is_err());
}

#[test]
fn over_memcached_the_last_value_is_served_and_not_written_far_again() {
    let server = Memcached::start();
    let clock = MockClock::new();
    let far = || {
        Client::builder()
            .servers([server.addr()])
            .build()
            .expect("client")
    };
    let cache = builder(&clock).far(far()).namespace("fs").build().unwrap();
    let source = Source::default();
    assert_eq!(
        cache.try_get_with("k".to_string(), || source.load(Some(9))),
        Ok(9)
    );
    let plain = far();
    let fkey = cache.far_key(&"k".to_string()).expect("far key");
    assert_eq!(plain.get::<u32>(&fkey).unwrap(), Some(9));
    // Gone from memcached (another process removed it), expired near.
    plain.delete(&fkey).unwrap();
    clock.advance(NEAR_TTL + secs(1));
    assert_eq!(
        cache.try_get_with("k".to_string(), || source.load(None)),
        Ok(9)
    );
    assert_eq!(cache.stats().fail_safe_serves, 1);
    assert_eq!(source.calls(), 2, "the far miss went to the loader");
    assert_eq!(
        plain.get::<u32>(&fkey).unwrap(),
        None,
        "a stale value is not stored far as if fresh"
    );
}

#[cfg(feature = "tokio")]
mod asynchronous {
    use std::future::pending;

    use nearfar::AsyncNearFar;

    use super::*;

    fn on_both_runtimes<F: std::future::Future<Output = ()>>(test: impl Fn() -> F) {
        for runtime in [
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime"),
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime"),
        ] {
            runtime.block_on(async {
                tokio::time::timeout(secs(20), test())
                    .await
                    .expect("the test did not finish in 20 s");
            });
        }
    }

    fn async_cache(clock: &MockClock, timeout: Option<Duration>) -> AsyncNearFar<String, u32> {
        let mut builder = AsyncNearFar::builder()
            .near(Cache::builder().max_entries(100).clock(clock.clone()))
            .near_ttl(NEAR_TTL)
            .fail_safe(MAX_STALE)
            .fail_safe_backoff(BACKOFF)
            .clock(clock.clone());
        if let Some(timeout) = timeout {
            builder = builder.loader_timeout(timeout);
        }
        builder.build().unwrap()
    }

    #[test]
    fn an_async_failed_load_serves_the_last_value() {
        on_both_runtimes(|| async {
            let clock = MockClock::new();
            let cache = async_cache(&clock, None);
            let k = || "k".to_string();
            let first = cache.try_get_with(k(), || async { Ok::<u32, String>(3) });
            assert_eq!(first.await, Ok(3));
            clock.advance(NEAR_TTL + secs(1));
            let failed = cache.try_get_with(k(), || async { Err::<u32, _>("down".to_string()) });
            assert_eq!(failed.await, Ok(3));
            assert_eq!(cache.stats().fail_safe_serves, 1);
            assert_eq!(
                cache.get(&k()).await,
                Some(3),
                "served near for the backoff"
            );
        });
    }

    #[test]
    fn a_load_past_loader_timeout_serves_the_last_value_and_runs_on_without_one() {
        on_both_runtimes(|| async {
            let clock = MockClock::new();
            let cache = async_cache(&clock, Some(Duration::from_millis(100)));
            let k = || "k".to_string();
            assert_eq!(cache.get_with(k(), || async { 4 }).await, 4);
            clock.advance(NEAR_TTL + secs(1));
            // A loader that never ends: past the timeout (on the mock
            // clock), the last value.
            assert_eq!(cache.get_with(k(), pending::<u32>).await, 4);
            assert_eq!(cache.stats().fail_safe_serves, 1);
            // No last value: the timeout does not cut the load short.
            let slow = cache.get_with("new".to_string(), || async {
                tokio::time::sleep(Duration::from_millis(30)).await;
                8
            });
            assert_eq!(slow.await, 8);
        });
    }
}
