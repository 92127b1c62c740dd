//! `#[nearfar::memoize]` on an `async fn`: the generated fn is async, its
//! body runs once per argument tuple however many callers await it (through
//! the private cache's `get_or_insert_async`), and `Result`/`Option` cache
//! `Ok`/`Some` only, as for a sync fn. Driven by a minimal executor per
//! thread (no runtime needed), as in `tests/near_async.rs`.
#![cfg(feature = "macros")]

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Barrier, Mutex};
use std::task::{Context, Poll, Waker};
use std::thread::{self};
use std::time::Duration;

use nearfar::memoize;

#[path = "common/executor.rs"]
mod executor;
use executor::block_on;

/// Pending (waking itself) until `open` is set.
async fn gate(open: &AtomicBool) {
    std::future::poll_fn(|cx| {
        if open.load(SeqCst) {
            Poll::Ready(())
        } else {
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    })
    .await
}

fn is_send<T: Send>(_: &T) {}

static SLOW_RUNS: AtomicUsize = AtomicUsize::new(0);

#[memoize]
async fn slow(key: String) -> String {
    SLOW_RUNS.fetch_add(1, SeqCst);
    thread::sleep(Duration::from_millis(50));
    // An await point inside the body, too.
    std::future::ready(()).await;
    format!("{key}!")
}

#[test]
fn concurrent_callers_share_one_run() {
    const CALLERS: usize = 8;
    let barrier = Barrier::new(CALLERS);
    let values: Vec<String> = thread::scope(|s| {
        let handles: Vec<_> = (0..CALLERS)
            .map(|_| {
                s.spawn(|| {
                    barrier.wait();
                    block_on(slow("k".to_string()))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(values.iter().all(|v| v == "k!"), "{values:?}");
    assert_eq!(SLOW_RUNS.load(SeqCst), 1);
    let stats = slow_cache().stats();
    assert_eq!(stats.loads, 1, "{stats:?}");
    assert_eq!(block_on(slow("k".to_string())), "k!");
    assert_eq!(SLOW_RUNS.load(SeqCst), 1, "a later call is a hit");
}

static ADD_RUNS: AtomicUsize = AtomicUsize::new(0);

/// Two arguments (the key is their tuple); `mut` stays with the body.
#[memoize(max_entries = 100)]
async fn add(mut a: u32, b: String) -> String {
    ADD_RUNS.fetch_add(1, SeqCst);
    a += 1;
    format!("{a}{b}")
}

#[test]
fn runs_once_per_argument_tuple() {
    for _ in 0..3 {
        assert_eq!(block_on(add(1, "x".into())), "2x");
        assert_eq!(block_on(add(1, "y".into())), "2y");
        assert_eq!(block_on(add(2, "x".into())), "3x");
    }
    assert_eq!(ADD_RUNS.load(SeqCst), 3);
    let cache = add_cache();
    let stats = cache.stats();
    assert_eq!((stats.hits, stats.misses), (6, 3), "{stats:?}");
    assert_eq!(cache.len(), 3);
    assert_eq!(cache.get(&(2, "x".to_string())), Some("3x".to_string()));
}

static UNIT_RUNS: AtomicUsize = AtomicUsize::new(0);

/// Doc comments and other attributes stay on the fn.
#[memoize(cache_fn = config_store)]
#[inline(never)]
async fn config() -> Vec<u8> {
    UNIT_RUNS.fetch_add(1, SeqCst);
    vec![1, 2, 3]
}

#[test]
fn cache_accessor_no_arguments_and_a_renamed_cache_fn() {
    assert_eq!(block_on(config()), [1, 2, 3]);
    assert_eq!(block_on(config()), [1, 2, 3]);
    assert_eq!(UNIT_RUNS.load(SeqCst), 1);
    assert_eq!(config_store().get(&()), Some(vec![1, 2, 3]));
    // Seeding or replacing through the cache is seen by callers.
    config_store().insert((), vec![9]);
    assert_eq!(block_on(config()), [9]);
    config_store().clear();
    assert_eq!(block_on(config()), [1, 2, 3]);
    assert_eq!(UNIT_RUNS.load(SeqCst), 2);
}

static PARSE_RUNS: AtomicUsize = AtomicUsize::new(0);

#[memoize]
async fn parse(s: String) -> Result<u32, std::num::ParseIntError> {
    PARSE_RUNS.fetch_add(1, SeqCst);
    s.parse()
}

#[test]
fn result_caches_ok_only() {
    assert_eq!(block_on(parse("12".into())), Ok(12));
    assert_eq!(block_on(parse("12".into())), Ok(12));
    assert!(block_on(parse("x".into())).is_err());
    assert!(
        block_on(parse("x".into())).is_err(),
        "the error was not cached"
    );
    assert_eq!(PARSE_RUNS.load(SeqCst), 3);
    // The cache holds the Ok type.
    let cache: &nearfar::Cache<String, u32> = parse_cache();
    assert_eq!(cache.len(), 1);
}

/// An error that is neither `Clone` nor `Send`: each caller gets its own
/// run's error, so none is shared.
#[derive(Debug)]
struct Failed(
    #[allow(dead_code)] usize,
    std::marker::PhantomData<*const ()>,
);

static FLAKY_RUNS: AtomicUsize = AtomicUsize::new(0);

#[memoize]
async fn flaky(n: u8) -> Result<u8, Failed> {
    let run = FLAKY_RUNS.fetch_add(1, SeqCst);
    thread::sleep(Duration::from_millis(30));
    if run == 0 {
        Err(Failed(run, std::marker::PhantomData))
    } else {
        Ok(n)
    }
}

#[test]
fn result_waiters_retry_after_a_failed_run() {
    // As for a sync fn: the first run fails, only its caller gets the
    // error; the callers that awaited it ask again, one runs the body, and
    // the others share its value.
    let barrier = Barrier::new(4);
    let errors = Mutex::new(0);
    thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                barrier.wait();
                match block_on(flaky(1)) {
                    Ok(v) => assert_eq!(v, 1),
                    Err(Failed(run, _)) => {
                        assert_eq!(run, 0);
                        *errors.lock().unwrap() += 1;
                    }
                }
            });
        }
    });
    assert_eq!(*errors.lock().unwrap(), 1);
    assert_eq!(FLAKY_RUNS.load(SeqCst), 2, "one retry, shared");
    assert_eq!(flaky_cache().get(&1), Some(1));
}

static HALF_RUNS: AtomicUsize = AtomicUsize::new(0);

#[memoize]
async fn half(n: u32) -> Option<u32> {
    HALF_RUNS.fetch_add(1, SeqCst);
    (n % 2 == 0).then_some(n / 2)
}

static HALF_CACHED_RUNS: AtomicUsize = AtomicUsize::new(0);

#[memoize(cache_none)]
async fn half_cached(n: u32) -> Option<u32> {
    HALF_CACHED_RUNS.fetch_add(1, SeqCst);
    (n % 2 == 0).then_some(n / 2)
}

#[test]
fn option_caches_some_only_unless_cache_none() {
    for _ in 0..2 {
        assert_eq!(block_on(half(8)), Some(4));
        assert_eq!(block_on(half(7)), None);
    }
    assert_eq!(HALF_RUNS.load(SeqCst), 3, "None ran again");
    let cache: &nearfar::Cache<u32, u32> = half_cache();
    assert_eq!(cache.len(), 1);

    for _ in 0..2 {
        assert_eq!(block_on(half_cached(7)), None);
    }
    assert_eq!(HALF_CACHED_RUNS.load(SeqCst), 1);
    let cache: &nearfar::Cache<u32, Option<u32>> = half_cached_cache();
    assert_eq!(cache.get(&7), Some(None));
}

static ERR_RUNS: AtomicUsize = AtomicUsize::new(0);

#[memoize(cache_err = true)]
async fn always_fails(n: u8) -> Result<u8, String> {
    ERR_RUNS.fetch_add(1, SeqCst);
    Err(format!("no {n}"))
}

#[test]
fn cache_err_caches_errors() {
    assert_eq!(block_on(always_fails(3)), Err("no 3".into()));
    assert_eq!(block_on(always_fails(3)), Err("no 3".into()));
    assert_eq!(ERR_RUNS.load(SeqCst), 1);
}

#[memoize(max_weight = 1_000, weigher = |_, v| v.len() as u64, ttl_ms = 600_000)]
async fn weighted(n: usize) -> Vec<u8> {
    vec![0; n]
}

#[memoize(max_entries = 16)]
async fn bounded(n: usize) -> usize {
    n
}

#[test]
fn bounds_apply() {
    for n in 0..200 {
        block_on(weighted(n % 100));
        block_on(bounded(n));
    }
    assert!(weighted_cache().weight() <= 1_000);
    assert!(bounded_cache().len() <= 16);
}

static STAMP_RUNS: AtomicUsize = AtomicUsize::new(0);

#[memoize(ttl_ms = 100)]
async fn stamped(n: u8) -> u8 {
    STAMP_RUNS.fetch_add(1, SeqCst);
    n
}

#[test]
fn ttl_expires_entries() {
    assert_eq!(block_on(stamped(1)), 1);
    assert_eq!(block_on(stamped(1)), 1);
    assert_eq!(STAMP_RUNS.load(SeqCst), 1);
    thread::sleep(Duration::from_millis(250));
    assert_eq!(block_on(stamped(1)), 1);
    assert_eq!(STAMP_RUNS.load(SeqCst), 2);
}

static GATED_RUNS: AtomicUsize = AtomicUsize::new(0);
static GATE: AtomicBool = AtomicBool::new(false);

#[memoize]
async fn gated(n: u8) -> u8 {
    GATED_RUNS.fetch_add(1, SeqCst);
    gate(&GATE).await;
    n * 2
}

#[test]
fn a_waiter_awaits_without_blocking_its_thread() {
    // Two callers on one thread: the second awaits the first's run (a
    // blocking wait would hang here), and gets its value.
    let mut cx = Context::from_waker(Waker::noop());
    let mut first = pin!(gated(4));
    let mut second = pin!(gated(4));
    assert!(first.as_mut().poll(&mut cx).is_pending());
    assert!(second.as_mut().poll(&mut cx).is_pending());
    assert_eq!(GATED_RUNS.load(SeqCst), 1);
    GATE.store(true, SeqCst);
    assert_eq!(first.as_mut().poll(&mut cx), Poll::Ready(8));
    assert_eq!(second.as_mut().poll(&mut cx), Poll::Ready(8));
    assert_eq!(GATED_RUNS.load(SeqCst), 1);
}

#[memoize]
async fn sends(s: String) -> Result<usize, String> {
    thread::sleep(Duration::from_millis(10));
    Ok(s.len())
}

#[test]
fn futures_are_send() {
    let fut = sends("abc".to_string());
    is_send(&fut);
    is_send(&slow("x".to_string()));
    is_send(&half(2));
    is_send(&config());
    // Made on this thread, run on others.
    let futures: Vec<_> = (0..4).map(|_| sends("abcd".to_string())).collect();
    let handles: Vec<_> = futures
        .into_iter()
        .map(|f| thread::spawn(move || block_on(f)))
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap(), Ok(4));
    }
    assert_eq!(block_on(fut), Ok(3));
}

static FIB_RUNS: AtomicUsize = AtomicUsize::new(0);

/// Recursion on other keys: an async fn calling itself boxes the call.
#[memoize]
async fn fib(n: u64) -> u128 {
    FIB_RUNS.fetch_add(1, SeqCst);
    if n < 2 {
        n as u128
    } else {
        Box::pin(fib(n - 1)).await + Box::pin(fib(n - 2)).await
    }
}

#[test]
fn recursion_on_other_keys() {
    assert_eq!(block_on(fib(80)), 23_416_728_348_467_685);
    assert_eq!(FIB_RUNS.load(SeqCst), 81);
    assert_eq!(fib_cache().len(), 81);
}

static CANCEL_RUNS: AtomicUsize = AtomicUsize::new(0);
static CANCEL_GATE: AtomicBool = AtomicBool::new(false);

#[memoize]
async fn cancellable(n: u8) -> u8 {
    CANCEL_RUNS.fetch_add(1, SeqCst);
    gate(&CANCEL_GATE).await;
    n + 1
}

#[test]
fn dropping_the_running_caller_lets_a_waiter_run() {
    // A timeout or a dropped task: the body's future is dropped mid-run;
    // the caller awaiting it runs the body itself, and its value is cached.
    let mut cx = Context::from_waker(Waker::noop());
    let mut first = Box::pin(cancellable(1));
    let mut second = pin!(cancellable(1));
    assert!(first.as_mut().poll(&mut cx).is_pending());
    assert!(second.as_mut().poll(&mut cx).is_pending());
    drop(first);
    CANCEL_GATE.store(true, SeqCst);
    assert_eq!(second.as_mut().poll(&mut cx), Poll::Ready(2));
    assert_eq!(CANCEL_RUNS.load(SeqCst), 2);
    assert_eq!(cancellable_cache().get(&1), Some(2));
}
