//! `NearFarBuilder::refresh_ahead`: a near copy past `threshold` of its TTL
//! is reloaded by one caller while the others keep being served it; across
//! processes memcached's recache token (`mg ... R`) picks one loader.
//! Near-tier time is a `MockClock`; memcached's own TTLs run on its clock.

#![cfg(feature = "memcached")]

#[path = "common/memcached.rs"]
mod server;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use nearfar::memcached::Client;
use nearfar::{Cache, MockClock, NearFar, NearFarBuilder};
use server::Memcached;

const TTL: Duration = Duration::from_secs(10);

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

fn builder(clock: &MockClock) -> NearFarBuilder<String, u32> {
    NearFar::builder()
        .near(Cache::builder().max_entries(100).clock(clock.clone()))
        .near_ttl(TTL)
        .refresh_ahead(0.8)
        .clock(clock.clone())
}

#[derive(Clone, Default)]
struct Loads(Arc<AtomicUsize>);

impl Loads {
    fn load(&self, value: u32) -> u32 {
        self.0.fetch_add(1, Ordering::SeqCst);
        value
    }

    fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

#[test]
fn a_copy_past_the_threshold_is_reloaded_once_and_never_misses() {
    let clock = MockClock::new();
    let cache = builder(&clock).build().unwrap();
    let loads = Loads::default();
    let k = || "k".to_string();
    assert_eq!(cache.get_with(k(), || loads.load(1)), 1);
    // Before 80% of its TTL: served as is.
    clock.advance(secs(7.9));
    assert_eq!(cache.get_with(k(), || loads.load(2)), 1);
    assert_eq!(loads.count(), 1);
    // Past it: this call reloads (and gets the new value)...
    clock.advance(secs(0.2));
    assert_eq!(cache.get_with(k(), || loads.load(2)), 2);
    assert_eq!(loads.count(), 2);
    assert_eq!(cache.stats().refresh_aheads, 1);
    // ...which lives a whole TTL from now: no miss where the old one expired.
    clock.advance(secs(5.0));
    assert_eq!(cache.get(&k()), Some(2));
    assert_eq!(cache.get_with(k(), || loads.load(3)), 2);
    assert_eq!(loads.count(), 2);
    assert_eq!(cache.stats().near.misses, 1, "only the first fill missed");
}

#[test]
fn while_one_caller_refreshes_the_others_are_served_the_copy_without_waiting() {
    let clock = MockClock::new();
    let cache = Arc::new(builder(&clock).build().unwrap());
    let loads = Loads::default();
    assert_eq!(cache.get_with("k".to_string(), || loads.load(1)), 1);
    clock.advance(secs(9.0));
    // The refresher's loader blocks until the others have been served.
    let (release, released) = mpsc::channel::<()>();
    let started = Arc::new(Barrier::new(2));
    let refresher = {
        let (cache, loads, started) = (Arc::clone(&cache), loads.clone(), Arc::clone(&started));
        thread::spawn(move || {
            cache.get_with("k".to_string(), || {
                started.wait();
                released
                    .recv_timeout(Duration::from_secs(10))
                    .expect("released");
                loads.load(2)
            })
        })
    };
    started.wait();
    let others: Vec<_> = (0..8)
        .map(|_| {
            let (cache, loads) = (Arc::clone(&cache), loads.clone());
            thread::spawn(move || {
                let at = Instant::now();
                let got = cache.get_with("k".to_string(), || loads.load(3));
                (got, at.elapsed())
            })
        })
        .collect();
    for other in others {
        let (got, took) = other.join().unwrap();
        assert_eq!(got, 1, "served the copy");
        assert!(took < Duration::from_secs(5), "did not wait for the load");
    }
    release.send(()).unwrap();
    assert_eq!(refresher.join().unwrap(), 2);
    assert_eq!(loads.count(), 2, "one refresh");
    assert_eq!(cache.get(&"k".to_string()), Some(2));
}

#[test]
fn a_failed_refresh_keeps_the_copy_and_a_later_hit_tries_again() {
    let clock = MockClock::new();
    let cache = builder(&clock).build().unwrap();
    let k = || "k".to_string();
    assert_eq!(cache.try_get_with(k(), || Ok::<_, String>(1)), Ok(1));
    clock.advance(secs(8.5));
    let failed = cache.try_get_with(k(), || Err::<u32, _>("down".to_string()));
    assert_eq!(failed, Ok(1), "the copy, not the error");
    assert_eq!(cache.try_get_with(k(), || Ok::<_, String>(2)), Ok(2));
    assert_eq!(cache.stats().refresh_aheads, 2);
}

#[test]
fn the_threshold_is_checked() {
    for bad in [0.0, 1.0, -0.5, 2.0, f64::NAN] {
        let built = NearFar::<u32, u32>::builder().refresh_ahead(bad).build();
        assert!(built.is_err(), "threshold {bad}");
    }
}

#[test]
fn across_processes_one_loads_and_the_other_takes_the_refreshed_far_value() {
    let server = Memcached::start();
    let client = || {
        Client::builder()
            .servers([server.addr()])
            .build()
            .expect("client")
    };
    // Two processes (two near tiers) on one memcached; the far TTL short
    // enough for memcached's recache window to open soon: 4 s, threshold
    // 0.5, so a far item with under 3 s left (2 s, rounded up, plus 1).
    let far_ttl = Duration::from_secs(4);
    let clock = MockClock::new();
    let instance = || {
        NearFar::<String, u32>::builder()
            .near(Cache::builder().max_entries(100).clock(clock.clone()))
            .far(client())
            .namespace("ra")
            .far_ttl(far_ttl)
            .refresh_ahead(0.5)
            .clock(clock.clone())
            .build()
            .unwrap()
    };
    let (a, b) = (instance(), instance());
    let loads = Loads::default();
    assert_eq!(a.get_with("k".to_string(), || loads.load(1)), 1);
    assert_eq!(b.get_with("k".to_string(), || loads.load(1)), 1);
    assert_eq!(loads.count(), 1, "b read a's value from memcached");
    // memcached's clock (whole seconds): after 2.5 s the item has at most
    // 2 s of its 4 left, under the 3 s window, so the first recache read
    // wins its token (it lives at least 3 s); rewritten, it has 3-4 s left,
    // outside the window.
    thread::sleep(Duration::from_millis(2500));
    clock.advance(secs(2.5));
    assert_eq!(a.get_with("k".to_string(), || loads.load(2)), 2);
    assert_eq!(loads.count(), 2, "a won the token and loaded");
    assert_eq!(b.get_with("k".to_string(), || loads.load(3)), 2);
    assert_eq!(loads.count(), 2, "b took a's refreshed value, no load");
    assert_eq!(b.stats().refresh_aheads, 1);
}

/// A two-worker tokio runtime.
#[cfg(feature = "tokio")]
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// A near-only `AsyncNearFar` on `clock`, refreshing ahead at 0.8.
#[cfg(feature = "tokio")]
fn async_cache(clock: &MockClock) -> Arc<nearfar::AsyncNearFar<String, u32>> {
    Arc::new(
        nearfar::AsyncNearFar::builder()
            .near(Cache::builder().max_entries(100).clock(clock.clone()))
            .near_ttl(TTL)
            .refresh_ahead(0.8)
            .clock(clock.clone())
            .build()
            .unwrap(),
    )
}

#[cfg(feature = "tokio")]
#[test]
fn an_async_copy_past_the_threshold_is_reloaded_by_one_task() {
    runtime().block_on(async {
        let clock = MockClock::new();
        let cache = async_cache(&clock);
        let loads = Loads::default();
        let first = cache.get_with("k".to_string(), || async { loads.load(1) });
        assert_eq!(first.await, 1);
        clock.advance(secs(9.0));
        // Many tasks at once: one refreshes (its loader yields a while),
        // the others get the copy.
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let (cache, loads) = (Arc::clone(&cache), loads.clone());
                tokio::spawn(async move {
                    cache
                        .get_with("k".to_string(), || async move {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            loads.load(2)
                        })
                        .await
                })
            })
            .collect();
        let mut got = Vec::new();
        for task in tasks {
            got.push(task.await.unwrap());
        }
        assert_eq!(loads.count(), 2, "one refresh");
        assert_eq!(got.iter().filter(|&&v| v == 2).count(), 1, "{got:?}");
        assert_eq!(got.iter().filter(|&&v| v == 1).count(), 15, "{got:?}");
        assert_eq!(cache.get(&"k".to_string()).await, Some(2));
    });
}

#[cfg(feature = "tokio")]
#[test]
fn with_get_with_spawned_the_refresh_runs_on_its_own_task_and_no_caller_waits() {
    runtime().block_on(async {
        let clock = MockClock::new();
        let cache = async_cache(&clock);
        let loads = Loads::default();
        let l = loads.clone();
        let first = cache.get_with_spawned("k".to_string(), || async move { l.load(1) });
        assert_eq!(first.await, 1);
        clock.advance(secs(9.0));
        // The refresh's loader does not end until the test says so: every
        // caller, the one that started the refresh too, is served the copy
        // meanwhile.
        let release = Arc::new(tokio::sync::Notify::new());
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let (cache, loads, release) =
                    (Arc::clone(&cache), loads.clone(), Arc::clone(&release));
                tokio::spawn(async move {
                    cache
                        .get_with_spawned("k".to_string(), || async move {
                            release.notified().await;
                            loads.load(2)
                        })
                        .await
                })
            })
            .collect();
        for task in tasks {
            assert_eq!(task.await.unwrap(), 1, "served the copy, not waiting");
        }
        assert_eq!(cache.stats().refresh_aheads, 1, "one refresh started");
        release.notify_one();
        // The refresh lands on its own (bounded: 5 s of real time).
        for _ in 0..500 {
            if cache.get(&"k".to_string()).await == Some(2) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(cache.get(&"k".to_string()).await, Some(2));
        assert_eq!(loads.count(), 2, "one refresh");
        // Past the old copy's expiry the new one is served.
        clock.advance(secs(2.0));
        assert_eq!(cache.get(&"k".to_string()).await, Some(2));
    });
}
