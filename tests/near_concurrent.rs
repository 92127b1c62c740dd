//! The near tier under concurrency: loader coalescing, bounds, and readers
//! racing writers, evictions and index resizes. Loops are bounded in count.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use nearfar::Cache;

const THREADS: usize = 8;

#[test]
fn concurrent_misses_run_the_loader_once() {
    for round in 0..20u64 {
        let cache: Cache<u64, u64> = Cache::new(100);
        let calls = Arc::new(AtomicUsize::new(0));
        let barrier = Arc::new(Barrier::new(THREADS));
        let handles: Vec<_> = (0..THREADS)
            .map(|_| {
                let (cache, calls, barrier) =
                    (cache.clone(), Arc::clone(&calls), Arc::clone(&barrier));
                thread::spawn(move || {
                    barrier.wait();
                    cache.get_or_insert_with(round, || {
                        calls.fetch_add(1, Ordering::SeqCst);
                        thread::sleep(Duration::from_millis(20));
                        round * 10
                    })
                })
            })
            .collect();
        for h in handles {
            assert_eq!(h.join().unwrap(), round * 10);
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1, "round {round}");
        let s = cache.stats();
        assert_eq!(s.loads, 1);
        assert_eq!(s.loads + s.load_waits + s.hits, THREADS as u64, "{s:?}");
    }
}

#[test]
fn a_failing_loader_shares_its_error_with_its_waiters() {
    let cache: Cache<u32, u32> = Cache::new(100);
    let calls = Arc::new(AtomicUsize::new(0));
    let barrier = Arc::new(Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS)
        .map(|_| {
            let (cache, calls, barrier) = (cache.clone(), Arc::clone(&calls), Arc::clone(&barrier));
            thread::spawn(move || {
                barrier.wait();
                cache.try_get_or_insert_with(1, || {
                    calls.fetch_add(1, Ordering::SeqCst);
                    thread::sleep(Duration::from_millis(50));
                    Err::<u32, String>("db down".into())
                })
            })
        })
        .collect();
    for h in handles {
        assert_eq!(*h.join().unwrap().unwrap_err(), "db down");
    }
    // Late arrivals may have become leaders themselves; never more than one at a time.
    let n = calls.load(Ordering::SeqCst);
    assert!((1..=THREADS).contains(&n));
    assert!(!cache.contains_key(&1), "errors are not cached");
}

#[test]
fn a_panicking_loader_releases_waiters_who_retry() {
    let cache: Cache<u32, u32> = Cache::new(100);
    let calls = Arc::new(AtomicUsize::new(0));
    let barrier = Arc::new(Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS)
        .map(|_| {
            let (cache, calls, barrier) = (cache.clone(), Arc::clone(&calls), Arc::clone(&barrier));
            thread::spawn(move || {
                barrier.wait();
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    cache.get_or_insert_with(1, || {
                        let n = calls.fetch_add(1, Ordering::SeqCst);
                        thread::sleep(Duration::from_millis(30));
                        if n == 0 {
                            panic!("first loader fails");
                        }
                        42
                    })
                }))
            })
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(
        results.iter().filter(|r| r.is_err()).count(),
        1,
        "only the panicking caller sees the panic"
    );
    assert!(results.iter().flatten().all(|&v| v == 42));
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "one retry after the panic, coalesced"
    );
    assert_eq!(cache.get(&1), Some(42));
}

#[test]
fn bound_never_exceeded_under_concurrent_inserts() {
    let cache: Cache<u64, u64> = Cache::builder().max_entries(1000).build();
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (cache, stop) = (cache.clone(), Arc::clone(&stop));
        thread::spawn(move || {
            let mut max_seen = 0;
            while !stop.load(Ordering::Relaxed) {
                max_seen = max_seen.max(cache.len());
            }
            max_seen
        })
    };
    let writers: Vec<_> = (0..4u64)
        .map(|t| {
            let cache = cache.clone();
            thread::spawn(move || {
                for i in 0..50_000u64 {
                    let k = (i * 7919 + t * 13) % 20_000;
                    cache.insert(k, k);
                    if let Some(v) = cache.get(&(k / 2)) {
                        assert_eq!(v, k / 2);
                    }
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    assert!(watcher.join().unwrap() <= 1000);
    assert!(cache.len() <= 1000);
    cache.check_invariants().unwrap();
}

/// Readers check that every value they get belongs to its key while writers
/// replace, remove and evict entries and the index of a weighted cache grows:
/// a slot reused too early would show up as a wrong or torn value.
#[test]
fn readers_never_see_a_reused_slot() {
    #[derive(Clone)]
    struct Val {
        key: u64,
        body: Arc<Vec<u64>>,
    }
    for round in 0..3 {
        let cache: Cache<u64, Val> = Cache::builder()
            .max_weight(40_000)
            .weigher(|_, v: &Val| v.body.len() as u64)
            .build();
        let stop = Arc::new(AtomicBool::new(false));
        let readers: Vec<_> = (0..3)
            .map(|_| {
                let (cache, stop) = (cache.clone(), Arc::clone(&stop));
                thread::spawn(move || {
                    let mut seen = 0u64;
                    let mut i = 0u64;
                    while !stop.load(Ordering::Relaxed) && i < 20_000_000 {
                        let k = (i * 2_654_435_761) % 8_192;
                        if let Some(v) = cache.get(&k) {
                            assert_eq!(v.key, k);
                            assert!(v.body.iter().all(|&x| x == k), "torn value for {k}");
                            seen += 1;
                        }
                        i += 1;
                    }
                    seen
                })
            })
            .collect();
        for i in 0..200_000u64 {
            let k = (i * 40_503 + round) % 8_192;
            match i % 10 {
                0 => {
                    cache.remove(&k);
                }
                _ => cache.insert(
                    k,
                    Val {
                        key: k,
                        body: Arc::new(vec![k; 1 + (i % 13) as usize]),
                    },
                ),
            }
        }
        stop.store(true, Ordering::Relaxed);
        let seen: u64 = readers.into_iter().map(|r| r.join().unwrap()).sum();
        assert!(seen > 0, "readers should have hit something");
        assert!(cache.weight() <= 40_000);
        cache.check_invariants().unwrap();
    }
}

/// Reviewer's case: a panic after the loader returned (here in the weigher,
/// then in the listener) must release the waiters, not leave them blocked.
#[test]
fn a_panic_after_the_loader_releases_waiters() {
    for panic_in_listener in [false, true] {
        let armed = Arc::new(AtomicBool::new(true));
        let trip = Arc::clone(&armed);
        let boom = move || {
            if trip.swap(false, Ordering::SeqCst) {
                panic!("injected");
            }
        };
        let boom2 = boom.clone();
        let cache: Cache<u32, u32> = if panic_in_listener {
            Cache::builder()
                .max_entries(1)
                .shards(1)
                .eviction_listener(move |_, _, _| boom())
                .build()
        } else {
            Cache::builder()
                .max_entries(100)
                .weigher(move |_, _| {
                    boom2();
                    1
                })
                .build()
        };
        if panic_in_listener {
            cache.insert(0, 0); // the load's insert will evict this one
        }
        let barrier = Arc::new(Barrier::new(THREADS));
        let handles: Vec<_> = (0..THREADS)
            .map(|_| {
                let (cache, barrier) = (cache.clone(), Arc::clone(&barrier));
                thread::spawn(move || {
                    barrier.wait();
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        cache.get_or_insert_with(1, || {
                            thread::sleep(Duration::from_millis(20));
                            11
                        })
                    }))
                })
            })
            .collect();
        let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert_eq!(
            results.iter().filter(|r| r.is_err()).count(),
            1,
            "one caller saw the injected panic"
        );
        assert!(results.iter().flatten().all(|&v| v == 11));
        assert_eq!(cache.get_or_insert_with(1, || 99), 11);
        cache.check_invariants().unwrap();
    }
}
