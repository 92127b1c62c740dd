use super::*;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Barrier, Mutex};
use std::thread;
use std::time::Duration;

#[test]
fn memo_runs_once_per_key() {
    let calls = AtomicUsize::new(0);
    let memo = Memo::new(100, |k: &u32| {
        calls.fetch_add(1, Ordering::Relaxed);
        k * 10
    });
    for _ in 0..3 {
        assert_eq!(memo.get(&1), 10);
        assert_eq!(memo.get(&2), 20);
    }
    assert_eq!(calls.load(Ordering::Relaxed), 2);
    let stats = memo.cache().stats();
    assert_eq!(
        (stats.hits, stats.misses),
        (4, 2),
        "one miss per miss: {stats:?}"
    );
}

#[test]
fn memo_coalesces_threads() {
    let calls = AtomicUsize::new(0);
    let memo = Memo::new(100, |k: &u32| {
        calls.fetch_add(1, Ordering::Relaxed);
        thread::sleep(Duration::from_millis(50));
        k + 1
    });
    let start = Barrier::new(8);
    thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                start.wait();
                assert_eq!(memo.get(&5), 6);
            });
        }
    });
    assert_eq!(calls.load(Ordering::Relaxed), 1);
}

#[test]
fn try_memo_does_not_cache_errors() {
    let calls = AtomicUsize::new(0);
    let memo = TryMemo::new(100, |k: &i32| {
        calls.fetch_add(1, Ordering::Relaxed);
        if *k < 0 {
            Err(format!("negative: {k}"))
        } else {
            Ok(*k as u32)
        }
    });
    assert_eq!(memo.get(&3), Ok(3));
    assert_eq!(memo.get(&3), Ok(3));
    assert_eq!(*memo.get(&-1).unwrap_err(), "negative: -1");
    assert_eq!(*memo.get(&-1).unwrap_err(), "negative: -1");
    assert_eq!(calls.load(Ordering::Relaxed), 3);
    assert_eq!(memo.cache().len(), 1);
}

#[test]
fn memo_with_cache_shares_entries() {
    let cache: Cache<u8, u8> = Cache::new(10);
    cache.insert(1, 100);
    let memo = Memo::with_cache(cache.clone(), |k: &u8| *k);
    assert_eq!(memo.get(&1), 100, "seeded value wins");
    assert_eq!(memo.get(&2), 2);
    assert_eq!(cache.get(&2), Some(2));
    let again = memo.clone();
    assert_eq!(again.get(&2), 2);
    assert!(format!("{memo:?}").starts_with("Memo"));
}

#[test]
fn memo_recursion_on_other_keys() {
    // A closure cannot name its own memo; a recursive function memoises
    // through a static store (what `#[memoize]` generates).
    static FIB: LazyLock<Cache<u64, u128>> = LazyLock::new(|| Cache::new(1_000));
    fn fib(n: u64) -> u128 {
        memoize(&FIB, n, |&n| {
            if n < 2 {
                n as u128
            } else {
                fib(n - 1) + fib(n - 2)
            }
        })
    }
    assert_eq!(fib(100), 354_224_848_179_261_915_075);
    assert_eq!(FIB.len(), 101);
}

#[test]
fn memo_store_is_object_safe() {
    let cache: Cache<String, usize> = Cache::new(10);
    let store: &dyn MemoStore<String, usize> = &cache;
    assert_eq!(memoize(store, "abc".to_string(), |s| s.len()), 3);
    let boxed: Box<dyn MemoStore<String, usize>> = Box::new(cache.clone());
    assert_eq!(memoize(&boxed, "abc".to_string(), |_| 99), 3);
    let arc = Arc::new(cache);
    assert_eq!(memoize(&arc, "de".to_string(), |s| s.len()), 2);
}

#[test]
fn memoize_result_waiters_retry_after_a_failed_run() {
    // The first run fails (slowly); the waiters ask again, one of them
    // runs `f`, succeeds, and the others share its value.
    let store: Cache<u8, u8> = Cache::new(10);
    let calls = AtomicUsize::new(0);
    let start = Barrier::new(4);
    let errors = Mutex::new(0);
    thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                start.wait();
                let r = memoize_result(&store, 1, |k| {
                    let n = calls.fetch_add(1, Ordering::SeqCst);
                    thread::sleep(Duration::from_millis(30));
                    if n == 0 {
                        Err("first run fails")
                    } else {
                        Ok(*k)
                    }
                });
                match r {
                    Ok(v) => assert_eq!(v, 1),
                    Err(e) => {
                        assert_eq!(e, "first run fails");
                        *errors.lock().unwrap() += 1;
                    }
                }
            });
        }
    });
    assert_eq!(
        *errors.lock().unwrap(),
        1,
        "only the failing run's caller sees its error"
    );
    assert_eq!(store.get(&1), Some(1));
    assert_eq!(calls.load(Ordering::SeqCst), 2, "one retry, shared");
}

#[test]
fn memoize_result_waiters_retry_one_at_a_time() {
    // Every run fails: each caller ends with its own run's error, and
    // the retries after a failed run are coalesced, never concurrent.
    let store: Cache<u8, u8> = Cache::new(10);
    let (running, most, calls) = (
        AtomicUsize::new(0),
        AtomicUsize::new(0),
        AtomicUsize::new(0),
    );
    let start = Barrier::new(6);
    thread::scope(|s| {
        for _ in 0..6 {
            s.spawn(|| {
                start.wait();
                let r: Result<u8, usize> = memoize_result(&store, 1, |_| {
                    let n = calls.fetch_add(1, Ordering::SeqCst);
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    thread::sleep(Duration::from_millis(20));
                    running.fetch_sub(1, Ordering::SeqCst);
                    Err(n)
                });
                assert!(r.is_err());
            });
        }
    });
    assert_eq!(most.load(Ordering::SeqCst), 1, "runs never overlap");
    assert_eq!(calls.load(Ordering::SeqCst), 6, "one run per caller");
    assert!(store.is_empty());
}

#[test]
fn only_the_caller_that_runs_clones_the_key() {
    static CLONES: AtomicUsize = AtomicUsize::new(0);
    #[derive(PartialEq, Eq, Hash)]
    struct Key(u8);
    impl Clone for Key {
        fn clone(&self) -> Self {
            CLONES.fetch_add(1, Ordering::SeqCst);
            Key(self.0)
        }
    }
    let memo = Memo::new(10, |k: &Key| {
        thread::sleep(Duration::from_millis(50));
        k.0
    });
    let start = Barrier::new(4);
    thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                start.wait();
                assert_eq!(memo.get(&Key(3)), 3);
            });
        }
    });
    assert_eq!(memo.get(&Key(3)), 3);
    assert_eq!(
        CLONES.load(Ordering::SeqCst),
        1,
        "waiters and hits clone no key"
    );
}

#[test]
fn memoize_option_shares_none_with_waiters() {
    let store: Cache<u8, u8> = Cache::new(10);
    let calls = AtomicUsize::new(0);
    let start = Barrier::new(4);
    thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                start.wait();
                let r = memoize_option(&store, 1, |_| {
                    calls.fetch_add(1, Ordering::SeqCst);
                    // Hold the run until the other three wait on it
                    // (bounded: a failure shows as more runs, not a hang).
                    for _ in 0..2_000 {
                        if store.stats().load_waits >= 3 {
                            break;
                        }
                        thread::sleep(Duration::from_millis(5));
                    }
                    None
                });
                assert_eq!(r, None);
            });
        }
    });
    // One run, its `None` shared with the three callers that waited.
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    // Not cached: a later call runs again.
    assert_eq!(memoize_option(&store, 1, |k| Some(*k)), Some(1));
    assert_eq!(store.len(), 1);
}

#[test]
fn lazy_lock_store() {
    static STORE: LazyLock<Cache<u32, u32>> = LazyLock::new(|| Cache::new(10));
    assert_eq!(memoize(&STORE, 4, |k| k + 1), 5);
    assert_eq!(memoize(&STORE, 4, |_| 0), 5);
}
