//! Randomized-schedule tests of the concurrent core under shuttle
//! (`RUSTFLAGS="--cfg shuttle" cargo test --lib shuttle_`). The shim swaps the
//! atomics, mutexes and condvars for shuttle's, so shuttle controls every
//! interleaving of readers, writers, evictions and loads, and explores many.
//!
//! The epoch collector is not instrumented; under shuttle all threads share
//! one OS thread and so one epoch participant, which only makes reclamation
//! more conservative, never less.

use std::sync::Arc;

use shuttle::sync::atomic::{AtomicUsize, Ordering};
use shuttle::thread;

use super::Cache;

const ITERATIONS: usize = 20_000;

#[test]
fn shuttle_readers_see_old_or_new_values_only() {
    shuttle::check_random(
        || {
            let cache: Cache<u32, (u32, u32)> = Cache::builder().max_entries(2).shards(1).build();
            cache.insert(1, (1, 1));
            let writer = {
                let cache = cache.clone();
                thread::spawn(move || {
                    cache.insert(1, (1, 2));
                    cache.insert(2, (2, 2));
                    cache.insert(3, (3, 3)); // evicts something
                    cache.remove(&1);
                })
            };
            let reader = {
                let cache = cache.clone();
                thread::spawn(move || {
                    for k in [1, 2, 3, 1] {
                        if let Some((key, v)) = cache.get(&k) {
                            assert_eq!(key, k, "value of another key");
                            assert!(
                                v == key || (k == 1 && v <= 2),
                                "impossible value {v} for {k}"
                            );
                        }
                    }
                })
            };
            writer.join().unwrap();
            reader.join().unwrap();
            assert!(cache.len() <= 2);
            assert_eq!(cache.get(&1), None);
            cache.check_invariants().unwrap();
        },
        ITERATIONS,
    );
}

fn loader_runs_once() {
    let cache: Cache<u32, u32> = Cache::new(10);
    let calls = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = (0..3)
        .map(|_| {
            let (cache, calls) = (cache.clone(), Arc::clone(&calls));
            thread::spawn(move || {
                cache.get_or_insert_with(7, || {
                    calls.fetch_add(1, Ordering::SeqCst);
                    thread::yield_now();
                    70
                })
            })
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap(), 70);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[test]
fn shuttle_loader_runs_once_per_key_pct() {
    // PCT: prioritised schedules that reach deep orderings random ones miss.
    shuttle::check_pct(loader_runs_once, ITERATIONS, 3);
}

#[test]
fn shuttle_loader_runs_once_per_key() {
    shuttle::check_random(loader_runs_once, ITERATIONS);
}

#[test]
fn shuttle_concurrent_writers_keep_bound_and_structure() {
    shuttle::check_random(
        || {
            let cache: Cache<u32, u32> = Cache::builder().max_entries(3).shards(1).build();
            let handles: Vec<_> = (0..2u32)
                .map(|t| {
                    let cache = cache.clone();
                    thread::spawn(move || {
                        for i in 0..4 {
                            let k = (i + t * 2) % 5;
                            cache.insert(k, k);
                            assert!(cache.len() <= 3);
                            if let Some(v) = cache.get(&(k + 1)) {
                                assert_eq!(v, k + 1);
                            }
                        }
                    })
                })
                .collect();
            for h in handles {
                h.join().unwrap();
            }
            cache.check_invariants().unwrap();
        },
        ITERATIONS,
    );
}
