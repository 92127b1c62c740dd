//! `#[nearfar::memoize]`: what the attribute generates, end to end.
#![cfg(feature = "macros")]

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Barrier, LazyLock, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use nearfar::memo::MemoStore;
use nearfar::memoize;

static ADD_RUNS: AtomicUsize = AtomicUsize::new(0);

#[memoize]
fn add(a: u32, b: String) -> String {
    ADD_RUNS.fetch_add(1, SeqCst);
    format!("{a}{b}")
}

#[test]
fn runs_once_per_argument_tuple() {
    for _ in 0..3 {
        assert_eq!(add(1, "x".into()), "1x");
        assert_eq!(add(1, "y".into()), "1y");
        assert_eq!(add(2, "x".into()), "2x");
    }
    assert_eq!(ADD_RUNS.load(SeqCst), 3);
    let cache = add_cache();
    let stats = cache.stats();
    assert_eq!((stats.hits, stats.misses), (6, 3), "{stats:?}");
    assert_eq!(cache.len(), 3);
    assert_eq!(cache.get(&(2, "x".to_string())), Some("2x".to_string()));
}

static UNIT_RUNS: AtomicUsize = AtomicUsize::new(0);

/// Doc comments and other attributes stay on the fn.
#[memoize(cache_fn = config_store)]
#[inline(never)]
fn config() -> Vec<u8> {
    UNIT_RUNS.fetch_add(1, SeqCst);
    vec![1, 2, 3]
}

#[test]
fn no_arguments_and_a_renamed_cache_fn() {
    assert_eq!(config(), [1, 2, 3]);
    assert_eq!(config(), [1, 2, 3]);
    assert_eq!(UNIT_RUNS.load(SeqCst), 1);
    assert_eq!(config_store().get(&()), Some(vec![1, 2, 3]));
    // Seeding or replacing through the cache is seen by callers.
    config_store().insert((), vec![9]);
    assert_eq!(config(), [9]);
}

#[memoize]
fn fib(n: u64) -> u128 {
    if n < 2 {
        n as u128
    } else {
        fib(n - 1) + fib(n - 2)
    }
}

#[test]
fn recursion_on_other_keys() {
    // Unmemoised, fib(80) makes ~10^16 calls; memoised, 81 runs.
    let started = Instant::now();
    assert_eq!(fib(80), 23_416_728_348_467_685);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(fib_cache().len(), 81);
    assert_eq!(fib_cache().stats().loads, 81);
    // Named after the fn's path: its metrics' `name` label.
    assert_eq!(fib_cache().name(), "memoize::fib");
}

static SELF_RUNS: AtomicUsize = AtomicUsize::new(0);

#[memoize]
fn asks_for_itself(n: u8) -> u8 {
    if SELF_RUNS.fetch_add(1, SeqCst) == 0 {
        return asks_for_itself(n);
    }
    n
}

#[test]
fn recursion_on_the_same_key_panics_and_leaves_the_cache_usable() {
    let r = std::panic::catch_unwind(|| asks_for_itself(1));
    let msg = r.expect_err("same key recursion must panic");
    let msg = msg
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| msg.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    assert!(msg.contains("its own key"), "{msg}");
    assert_eq!(asks_for_itself(1), 1);
    assert_eq!(asks_for_itself_cache().get(&1), Some(1));
}

static RESULT_RUNS: AtomicUsize = AtomicUsize::new(0);

#[memoize]
fn parse(s: String) -> Result<u32, std::num::ParseIntError> {
    RESULT_RUNS.fetch_add(1, SeqCst);
    s.parse()
}

#[test]
fn result_caches_ok_only() {
    assert_eq!(parse("12".into()), Ok(12));
    assert_eq!(parse("12".into()), Ok(12));
    assert!(parse("x".into()).is_err());
    assert!(parse("x".into()).is_err());
    assert_eq!(RESULT_RUNS.load(SeqCst), 3);
    // The cache holds the Ok type.
    let cache: &nearfar::Cache<String, u32> = parse_cache();
    assert_eq!(cache.len(), 1);
}

/// An error type that is not `Clone`, returned through an alias.
#[derive(Debug, PartialEq)]
struct Unclonable(u32);
type Outcome<T> = Result<T, Unclonable>;

static ALIAS_RUNS: AtomicUsize = AtomicUsize::new(0);

#[memoize(result = true)]
fn checked(n: u32) -> Outcome<u32> {
    ALIAS_RUNS.fetch_add(1, SeqCst);
    if n % 2 == 0 {
        Ok(n / 2)
    } else {
        Err(Unclonable(n))
    }
}

#[test]
fn result_through_an_alias() {
    assert_eq!(checked(4), Ok(2));
    assert_eq!(checked(4), Ok(2));
    assert_eq!(checked(3), Err(Unclonable(3)));
    assert_eq!(checked(3), Err(Unclonable(3)));
    assert_eq!(ALIAS_RUNS.load(SeqCst), 3);
    assert_eq!(checked_cache().get(&4), Some(2));
}

static CACHE_ERR_RUNS: AtomicUsize = AtomicUsize::new(0);

#[memoize(cache_err = true)]
fn always_fails(n: u8) -> Result<u8, String> {
    CACHE_ERR_RUNS.fetch_add(1, SeqCst);
    Err(format!("no {n}"))
}

#[test]
fn cache_err_caches_errors() {
    assert_eq!(always_fails(1), Err("no 1".to_string()));
    assert_eq!(always_fails(1), Err("no 1".to_string()));
    assert_eq!(CACHE_ERR_RUNS.load(SeqCst), 1);
    assert_eq!(always_fails_cache().get(&1), Some(Err("no 1".to_string())));
}

static OPTION_RUNS: AtomicUsize = AtomicUsize::new(0);

#[memoize]
fn half(n: u32) -> Option<u32> {
    OPTION_RUNS.fetch_add(1, SeqCst);
    (n % 2 == 0).then_some(n / 2)
}

static NONE_RUNS: AtomicUsize = AtomicUsize::new(0);

#[memoize(cache_none)]
fn half_cached(n: u32) -> Option<u32> {
    NONE_RUNS.fetch_add(1, SeqCst);
    (n % 2 == 0).then_some(n / 2)
}

#[test]
fn option_caches_some_only_unless_cache_none() {
    for _ in 0..2 {
        assert_eq!(half(8), Some(4));
        assert_eq!(half(7), None);
        assert_eq!(half_cached(8), Some(4));
        assert_eq!(half_cached(7), None);
    }
    assert_eq!(OPTION_RUNS.load(SeqCst), 3);
    assert_eq!(half_cache().len(), 1);
    assert_eq!(NONE_RUNS.load(SeqCst), 2);
    assert_eq!(half_cached_cache().get(&7), Some(None));
}

static TTL_RUNS: AtomicUsize = AtomicUsize::new(0);

#[memoize(ttl_ms = 300)]
fn stamped(n: u8) -> u8 {
    TTL_RUNS.fetch_add(1, SeqCst);
    n
}

static LONG_TTL_RUNS: AtomicUsize = AtomicUsize::new(0);

#[memoize(ttl_ms = 600_000)]
fn stamped_long(n: u8) -> u8 {
    LONG_TTL_RUNS.fetch_add(1, SeqCst);
    n
}

#[test]
fn ttl_keeps_entries_within_it() {
    // A TTL no stall of this machine can outlast.
    assert_eq!(stamped_long(1), 1);
    assert_eq!(stamped_long(1), 1);
    assert_eq!(LONG_TTL_RUNS.load(SeqCst), 1);
    assert!(stamped_long_cache().contains_key(&1));
}

#[test]
fn ttl_expires_entries() {
    assert_eq!(stamped(1), 1);
    thread::sleep(Duration::from_millis(400));
    let runs = TTL_RUNS.load(SeqCst);
    assert!(!stamped_cache().contains_key(&1), "expired after its TTL");
    assert_eq!(stamped(1), 1);
    assert_eq!(TTL_RUNS.load(SeqCst), runs + 1);
}

#[memoize(max_entries = 64)]
fn bounded(n: u32) -> u32 {
    n + 1
}

#[memoize(max_weight = 1_000, weigher = weigh_bytes)]
fn weighted(n: usize) -> Vec<u8> {
    vec![0; n]
}

#[memoize(max_weight = 1_000, weigher = |_, v: &Vec<u8>| v.len() as u64)]
fn weighted_by_closure(n: usize) -> Vec<u8> {
    vec![1; n]
}

#[memoize(max_weight = 1_000, weigher = |_, v| v.len() as u64)]
fn weighted_by_untyped_closure(n: usize) -> Vec<u8> {
    vec![2; n]
}

/// A weight bound alone: every entry weighs 1, and no entry bound applies.
#[memoize(max_weight = 50)]
fn weight_bounded(n: u32) -> u32 {
    n
}

#[allow(clippy::ptr_arg)] // the cache's weigher type is `Fn(&K, &V) -> u64`
fn weigh_bytes(_: &usize, v: &Vec<u8>) -> u64 {
    v.len() as u64
}

#[test]
fn bounds_are_respected() {
    for n in 0..1_000 {
        assert_eq!(bounded(n), n + 1);
        assert!(bounded_cache().len() <= 64);
    }
    assert!(!bounded_cache().is_empty());
    assert_eq!(bounded_cache().stats().loads, 1_000);
    for n in 1..100 {
        assert_eq!(weighted(n).len(), n);
        assert!(weighted_cache().weight() <= 1_000);
    }
    for n in 0..1_000 {
        assert_eq!(weight_bounded(n), n);
        assert!(weight_bounded_cache().len() <= 50);
        assert!(weight_bounded_cache().weight() <= 50);
    }
    assert!(!weight_bounded_cache().is_empty());
    for n in 1..100 {
        assert_eq!(weighted_by_closure(n).len(), n);
        assert!(weighted_by_closure_cache().weight() <= 1_000);
        assert_eq!(weighted_by_untyped_closure(n).len(), n);
        assert!(weighted_by_untyped_closure_cache().weight() <= 1_000);
    }
    assert!(weighted_by_closure_cache().len() < 99);
}

static SLOW_RUNS: AtomicUsize = AtomicUsize::new(0);

#[memoize]
fn slow(key: String) -> usize {
    SLOW_RUNS.fetch_add(1, SeqCst);
    thread::sleep(Duration::from_millis(100));
    key.len()
}

#[test]
fn concurrent_callers_share_one_run() {
    let start = Barrier::new(16);
    thread::scope(|s| {
        for _ in 0..16 {
            s.spawn(|| {
                start.wait();
                assert_eq!(slow("sixteen".into()), 7);
            });
        }
    });
    assert_eq!(SLOW_RUNS.load(SeqCst), 1);
    assert_eq!(slow_cache().stats().loads, 1);
}

/// A store of our own: a locked map that counts its computations (no
/// coalescing: it holds the lock while computing, which serialises callers).
#[derive(Default)]
struct MapStore {
    map: Mutex<HashMap<(String, u8), String>>,
    computed: AtomicUsize,
}

impl MemoStore<(String, u8), String> for MapStore {
    fn get_or_compute(&self, key: &(String, u8), compute: &mut dyn FnMut() -> String) -> String {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(key.clone())
            .or_insert_with(|| {
                self.computed.fetch_add(1, SeqCst);
                compute()
            })
            .clone()
    }

    fn try_get_or_compute(
        &self,
        key: &(String, u8),
        compute: &mut dyn FnMut() -> Option<String>,
    ) -> Option<String> {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(v) = map.get(key) {
            return Some(v.clone());
        }
        self.computed.fetch_add(1, SeqCst);
        let v = compute()?;
        map.insert(key.clone(), v.clone());
        Some(v)
    }
}

static MAP: LazyLock<MapStore> = LazyLock::new(MapStore::default);

#[memoize(store = MAP)]
fn repeat(s: String, times: u8) -> String {
    s.repeat(times as usize)
}

#[memoize(store = MAP)]
fn shout(s: String, times: u8) -> Option<String> {
    (times > 0).then(|| s.to_uppercase().repeat(times as usize))
}

#[test]
fn store_option_uses_a_custom_store() {
    assert_eq!(repeat("ab".into(), 2), "abab");
    assert_eq!(repeat("ab".into(), 2), "abab");
    assert_eq!(MAP.computed.load(SeqCst), 1);
    // Shares the map (same key and value types): the stored value wins.
    assert_eq!(shout("ab".into(), 2), Some("abab".into()));
    assert_eq!(shout("ab".into(), 0), None);
    assert_eq!(shout("ab".into(), 0), None);
    assert_eq!(MAP.computed.load(SeqCst), 3);
    assert_eq!(MAP.map.lock().unwrap().len(), 1);
}

// A renamed dependency: `crate = PATH` says where nearfar is.
use ::nearfar as nf;

#[memoize(crate = nf, max_entries = 10)]
fn renamed(mut n: u64) -> u64 {
    n *= 3;
    n
}

#[test]
fn crate_option_and_mut_arguments() {
    assert_eq!(renamed(5), 15);
    assert_eq!(renamed(5), 15);
    assert_eq!(renamed_cache().stats().hits, 1);
}

mod public {
    //! A `pub` memoised fn gets a `pub`, documented cache fn.

    /// Doubles.
    #[nearfar::memoize]
    pub fn double(n: i64) -> i64 {
        n * 2
    }
}

#[test]
fn public_fn_and_its_cache_fn() {
    assert_eq!(public::double(21), 42);
    assert_eq!(public::double_cache().get(&21), Some(42));
}

/// An argument named like the generated cache fn does not shadow it.
#[memoize]
fn shadowed(shadowed_cache: u8, cache: u8) -> u16 {
    u16::from(shadowed_cache) * 10 + u16::from(cache)
}

/// Nor with a renamed cache fn and an argument of that name.
#[memoize(cache_fn = cache)]
fn renamed_shadowed(cache: u8) -> u8 {
    cache + 1
}

#[test]
fn arguments_named_like_the_cache_fn() {
    assert_eq!(shadowed(1, 2), 12);
    assert_eq!(shadowed(1, 2), 12);
    assert_eq!(shadowed_cache().stats().hits, 1);
    assert_eq!(renamed_shadowed(4), 5);
    assert_eq!(renamed_shadowed(4), 5);
    assert_eq!(cache().get(&4), Some(5));
}

/// Argument attributes (lints) stay on the arguments: without it on the
/// generated outer fn, `N` would warn (an error under `-D warnings`).
#[memoize]
fn with_argument_attribute(#[allow(non_snake_case)] N: u8) -> u8 {
    N * 2
}

#[test]
fn argument_attributes_are_kept() {
    assert_eq!(with_argument_attribute(4), 8);
    assert_eq!(with_argument_attribute_cache().get(&4), Some(8));
}
