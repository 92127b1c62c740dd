//! Behaviour of the near tier through its public API, single-threaded.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nearfar::{Cache, MockClock, RemovalCause};

#[test]
fn insert_get_remove_roundtrip() {
    let cache: Cache<String, u32> = Cache::new(100);
    assert!(cache.is_empty());
    cache.insert("a".into(), 1);
    cache.insert("b".into(), 2);
    assert_eq!(cache.get("a"), Some(1));
    assert_eq!(cache.get("b"), Some(2));
    assert_eq!(cache.get("c"), None);
    assert_eq!(cache.len(), 2);
    cache.insert("a".into(), 10);
    assert_eq!(cache.get("a"), Some(10), "insert replaces");
    assert_eq!(cache.len(), 2);
    assert_eq!(cache.remove("a"), Some(10));
    assert_eq!(cache.get("a"), None);
    assert_eq!(cache.remove("a"), None);
    assert_eq!(cache.len(), 1);
    cache.check_invariants().unwrap();
}

#[test]
fn stats_count_each_kind_of_event() {
    let cache = Cache::new(2);
    cache.insert(1, 1);
    cache.insert(1, 2);
    cache.insert(2, 2);
    cache.insert(3, 3); // evicts one
    cache.get(&3);
    cache.get(&99);
    cache.remove(&3);
    let s = cache.stats();
    assert_eq!(s.inserts, 3);
    assert_eq!(s.updates, 1);
    assert_eq!(s.evicted_capacity, 1);
    assert_eq!(s.evicted_removed, 1);
    assert_eq!((s.hits, s.misses), (1, 1));
    assert_eq!(s.entries, 1);
    assert_eq!(s.weight, 1);
    assert!((s.hit_ratio() - 0.5).abs() < 1e-9);
}

#[test]
fn peek_and_contains_do_not_count_or_promote() {
    let cache = Cache::builder().max_entries(10).shards(1).build();
    // Filled past its bound: the last key in is on probation, next to go.
    for i in 0..=10 {
        cache.insert(i, i);
    }
    // Peeking at 10 must not save it from being the next one evicted.
    assert_eq!(cache.peek(&10), Some(10));
    assert!(cache.contains_key(&10));
    cache.insert(11, 11);
    assert!(!cache.contains_key(&10));
    let s = cache.stats();
    assert_eq!((s.hits, s.misses), (0, 0));
    // Whereas a get is a use: 11 survives the next insert.
    assert_eq!(cache.get(&11), Some(11));
    cache.insert(12, 12);
    assert!(cache.contains_key(&11));
}

#[test]
fn hits_protect_entries_from_eviction() {
    let cache = Cache::builder().max_entries(100).shards(1).build();
    for i in 0..100u32 {
        cache.insert(i, i);
    }
    for i in 0..10u32 {
        assert_eq!(cache.get(&i), Some(i));
    }
    // A scan of new keys twice the cache's size.
    for i in 1000..1200u32 {
        cache.insert(i, i);
    }
    for i in 0..10u32 {
        assert_eq!(cache.get(&i), Some(i), "hot key {i} was evicted by a scan");
    }
    cache.check_invariants().unwrap();
}

#[test]
fn a_loop_over_more_keys_than_fit_still_hits() {
    // Memoising over 1,000 items in a loop with room for 100: each key comes
    // back only after 999 others, so an LRU would never hit. The cache keeps
    // what it admitted while filling and serves those on every round.
    assert_a_loop_hits(Cache::builder().max_entries(100).shards(1).build());
}

/// Runs keys 0..1000 three times through `cache` (room for 100) and checks
/// that the last two rounds hit at least 80 keys each.
fn assert_a_loop_hits(cache: Cache<u32, u32>) {
    for _ in 0..3 {
        for i in 0..1000u32 {
            cache.get_or_insert_with(i, || i);
        }
    }
    let s = cache.stats();
    assert!(s.hits >= 2 * 80, "{s:?}");
    cache.check_invariants().unwrap();
}

#[test]
fn bound_holds_after_every_insert() {
    for shards in [1, 2, 8] {
        let cache = Cache::builder().max_entries(37).shards(shards).build();
        for i in 0..1000u64 {
            cache.insert(i, i);
            assert!(cache.len() <= 37, "len {} after insert {i}", cache.len());
        }
        cache.check_invariants().unwrap();
        assert_eq!(cache.stats().evicted_capacity, 1000 - cache.len() as u64);
    }
}

#[test]
fn zero_capacity_refuses_everything() {
    let cache = Cache::new(0);
    cache.insert(1, 1);
    assert_eq!(cache.get(&1), None);
    assert_eq!(cache.try_insert(2, 2), Err((2, 2)));
    assert_eq!(cache.stats().rejected, 2);
}

#[test]
fn weight_bound_and_rejection_of_heavy_entries() {
    let cache: Cache<u32, Vec<u8>> = Cache::builder()
        .max_weight(1000)
        .weigher(|_, v: &Vec<u8>| v.len() as u64)
        .shards(64) // clamped to 8 for a weighted cache
        .build();
    assert!(
        cache.max_entry_weight() >= 1000 / 8,
        "largest admitted {}",
        cache.max_entry_weight()
    );
    for i in 0..100 {
        cache.insert(i, vec![0; 30]);
        assert!(cache.weight() <= 1000);
    }
    cache.check_invariants().unwrap();
    let biggest = cache.max_entry_weight() as usize;
    assert!(cache.try_insert(500, vec![0; biggest]).is_ok());
    assert_eq!(cache.get(&500).map(|v| v.len()), Some(biggest));
    // Too heavy: refused, counted, and the old value for the key is gone.
    let (k, v) = cache.try_insert(500, vec![0; biggest + 1]).unwrap_err();
    assert_eq!((k, v.len()), (500, biggest + 1));
    assert_eq!(cache.get(&500), None);
    assert_eq!(cache.stats().rejected, 1);
    cache.check_invariants().unwrap();
}

#[test]
fn ttl_default_and_per_entry_on_mock_clock() {
    let clock = MockClock::new();
    let cache = Cache::builder()
        .max_entries(100)
        .time_to_live(Duration::from_secs(10))
        .clock(clock.clone())
        .build();
    cache.insert("default", 1);
    cache.insert_with_ttl("short", 2, Duration::from_millis(1500));
    cache.insert_with_ttl("long", 3, Duration::from_secs(60));
    clock.advance(Duration::from_millis(1499));
    assert_eq!(cache.get("short"), Some(2));
    clock.advance(Duration::from_millis(1));
    assert_eq!(cache.get("short"), None, "expired exactly at its TTL");
    assert!(!cache.contains_key("short"));
    assert_eq!(cache.peek("short"), None);
    assert_eq!(cache.get("default"), Some(1));
    clock.advance(Duration::from_millis(8500));
    assert_eq!(cache.get("default"), None);
    assert_eq!(cache.get("long"), Some(3));
    assert!(cache.iter().all(|(k, _)| k == "long"));
    assert_eq!(
        cache.remove("default"),
        None,
        "an expired entry is not returned by remove"
    );
}

#[test]
fn expired_entries_are_reclaimed_by_writes_without_reads() {
    let clock = MockClock::new();
    let cache = Cache::builder()
        .max_entries(1000)
        .shards(1)
        .clock(clock.clone())
        .build();
    for i in 0..100u32 {
        cache.insert_with_ttl(i, i, Duration::from_secs(1));
    }
    clock.advance(Duration::from_secs(2));
    // Unrelated writes sweep the dead entries away.
    for i in 1000..1100u32 {
        cache.insert(i, i);
    }
    let s = cache.stats();
    assert_eq!(s.evicted_expired, 100, "{s:?}");
    assert_eq!(cache.len(), 100);
    cache.check_invariants().unwrap();
}

#[test]
fn listener_hears_every_removal_with_its_cause_and_may_reenter() {
    let clock = MockClock::new();
    let heard = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&heard);
    let cache: Cache<u32, u32> = Cache::builder()
        .max_entries(2)
        .shards(1)
        .clock(clock.clone())
        .eviction_listener(move |k, v, cause| sink.lock().unwrap().push((*k, *v, cause)))
        .build();
    cache.insert(1, 10);
    cache.insert(1, 11);
    cache.insert(2, 20);
    cache.insert(3, 30);
    cache.remove(&3);
    cache.insert_with_ttl(4, 40, Duration::from_secs(1));
    clock.advance(Duration::from_secs(1));
    assert_eq!(cache.get(&4), None);
    let got = heard.lock().unwrap().clone();
    assert_eq!(
        got,
        vec![
            (1, 10, RemovalCause::Replaced),
            // Rewriting key 1 counted as a use, so 2 was the coldest.
            (2, 20, RemovalCause::Capacity),
            (3, 30, RemovalCause::Removed),
            (4, 40, RemovalCause::Expired),
        ]
    );

    // The listener runs after the shard lock is released: it may use the cache.
    let slot: Arc<Mutex<Option<Cache<u32, u32>>>> = Arc::new(Mutex::new(None));
    let inner = Arc::clone(&slot);
    let reentrant: Cache<u32, u32> = Cache::builder()
        .max_entries(1)
        .eviction_listener(move |k, _, _| {
            let cache = inner.lock().unwrap().clone();
            if let (Some(c), true) = (cache, *k < 1000) {
                let _ = c.get(k);
                c.insert(1000 + k, 0);
            }
        })
        .build();
    *slot.lock().unwrap() = Some(reentrant.clone());
    reentrant.insert(1, 1);
    reentrant.insert(2, 2);
    assert!(reentrant.len() <= 1);
    *slot.lock().unwrap() = None; // break the cycle
}

#[test]
fn retain_clear_and_iter() {
    let cache = Cache::new(1000);
    for i in 0..100u32 {
        cache.insert(i, i * 2);
    }
    cache.retain(|k, v| k % 3 == 0 && *v < 150);
    let mut kept: Vec<_> = cache.iter().collect();
    kept.sort();
    let expected: Vec<_> = (0..100u32)
        .filter(|k| k % 3 == 0 && k * 2 < 150)
        .map(|k| (k, k * 2))
        .collect();
    assert_eq!(kept, expected);
    assert_eq!(cache.len(), expected.len());
    cache.clear();
    assert!(cache.is_empty());
    assert_eq!(cache.iter().count(), 0);
    assert_eq!(cache.stats().evicted_removed, 100);
    cache.check_invariants().unwrap();
}

#[test]
fn drops_every_value_exactly_once() {
    let live = Arc::new(AtomicUsize::new(0));
    struct Tracked(Arc<AtomicUsize>);
    impl Clone for Tracked {
        fn clone(&self) -> Self {
            self.0.fetch_add(1, Ordering::SeqCst);
            Tracked(Arc::clone(&self.0))
        }
    }
    impl Drop for Tracked {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::SeqCst);
        }
    }
    let make = || {
        live.fetch_add(1, Ordering::SeqCst);
        Tracked(Arc::clone(&live))
    };
    {
        let cache = Cache::builder().max_entries(50).build();
        for i in 0..500u32 {
            cache.insert(i % 120, make());
            if i % 7 == 0 {
                drop(cache.remove(&(i % 50)));
            }
            drop(cache.get(&(i % 60)));
        }
    }
    // Dropping the cache drops every value it still holds, retired ones
    // included (those still waiting for the epoch).
    assert_eq!(
        live.load(Ordering::SeqCst),
        0,
        "values leaked or double-dropped"
    );
}

#[test]
fn get_or_insert_with_runs_loader_once_and_caches_errors_never() {
    let cache = Cache::new(10);
    let calls = AtomicUsize::new(0);
    let load = || {
        calls.fetch_add(1, Ordering::SeqCst);
        7
    };
    assert_eq!(cache.get_or_insert_with(1, load), 7);
    assert_eq!(cache.get_or_insert_with(1, || unreachable!("cached")), 7);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let err = cache
        .try_get_or_insert_with(2, || Err::<u32, _>("boom"))
        .unwrap_err();
    assert_eq!(*err, "boom");
    assert!(!cache.contains_key(&2));
    assert_eq!(
        cache.try_get_or_insert_with(2, || Ok::<_, ()>(5)).unwrap(),
        5
    );
    let s = cache.stats();
    assert_eq!(s.loads, 3);
}

#[test]
fn panicking_loader_leaves_the_cache_usable() {
    let cache: Cache<u32, u32> = Cache::new(10);
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        cache.get_or_insert_with(1, || panic!("loader failed"))
    }));
    assert!(r.is_err());
    assert_eq!(cache.get(&1), None);
    assert_eq!(cache.get_or_insert_with(1, || 2), 2);
    cache.check_invariants().unwrap();
}

#[test]
fn clone_is_a_handle_to_the_same_cache() {
    let a: Cache<u8, u8> = Cache::new(10);
    let b = a.clone();
    a.insert(1, 1);
    assert_eq!(b.get(&1), Some(1));
    fn send_sync<T: Send + Sync + Clone + 'static>() {}
    send_sync::<Cache<String, Vec<u8>>>();
}

#[test]
fn table_grows_for_unbounded_and_weighted_caches() {
    let cache: Cache<u64, u64> = Cache::builder().build();
    for i in 0..50_000 {
        cache.insert(i, i + 1);
    }
    for i in 0..50_000 {
        assert_eq!(cache.get(&i), Some(i + 1));
    }
    assert_eq!(cache.len(), 50_000);
    cache.check_invariants().unwrap();
}

#[test]
fn a_value_whose_drop_uses_the_cache_does_not_deadlock() {
    // Reviewer's case: reclaimed values used to be dropped under the shard lock.
    type Handle = Arc<Mutex<Option<Cache<u32, Noisy>>>>;
    static DROPS: AtomicUsize = AtomicUsize::new(0);
    #[derive(Clone)]
    struct Noisy(Handle);
    impl Drop for Noisy {
        fn drop(&mut self) {
            DROPS.fetch_add(1, Ordering::SeqCst);
            let cache = self.0.lock().unwrap().clone();
            if let Some(c) = cache {
                let _ = c.remove(&u32::MAX);
            }
        }
    }
    let handle: Handle = Arc::new(Mutex::new(None));
    let cache: Cache<u32, Noisy> = Cache::builder().max_entries(8).shards(1).build();
    *handle.lock().unwrap() = Some(cache.clone());
    for i in 0..2_000u32 {
        cache.insert(i, Noisy(Arc::clone(&handle)));
    }
    // Evicted values were reclaimed (and dropped, using the cache) along
    // the way, not only at the end.
    assert!(
        DROPS.load(Ordering::SeqCst) > 1_000,
        "{} drops",
        DROPS.load(Ordering::SeqCst)
    );
    assert!(cache.len() <= 8);
    *handle.lock().unwrap() = None;
}

#[test]
fn unbounded_weights_cannot_overflow() {
    let cache: Cache<u32, u64> = Cache::builder().weigher(|_, v: &u64| *v).build();
    for (k, w) in [(1, u64::MAX - 1), (2, 10), (3, u64::MAX), (4, u64::MAX / 2)] {
        cache.insert(k, w);
        // A shard's budget is u64::MAX even when unbounded: entries sharing a
        // shard may evict each other, but the newest always stays.
        assert_eq!(cache.get(&k), Some(w));
        cache.check_invariants().unwrap();
        let present: u128 = cache.iter().map(|(_, w)| u128::from(w)).sum();
        assert_eq!(
            u128::from(cache.weight()),
            present.min(u128::from(u64::MAX)),
            "gauges saturate, never wrap"
        );
    }
}

#[test]
fn absurd_shard_counts_are_clamped() {
    let a: Cache<u32, u32> = Cache::builder().shards(usize::MAX).max_entries(10).build();
    a.insert(1, 1);
    assert_eq!(a.get(&1), Some(1));
    let b: Cache<u32, u32> = Cache::builder().shards(1 << 40).build();
    b.insert(1, 1);
    assert_eq!(b.get(&1), Some(1));
}

#[cfg(target_os = "linux")]
#[test]
fn a_large_bound_does_not_allocate_up_front() {
    fn rss_bytes() -> u64 {
        let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
        let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
        pages * 4096
    }
    let before = rss_bytes();
    let cache: Cache<u64, u64> = Cache::builder().max_entries(1 << 28).shards(4).build();
    cache.insert(1, 1);
    let grown = rss_bytes().saturating_sub(before);
    // The index used to be sized for the bound at once: 1 GiB here.
    assert!(grown < 64 << 20, "an almost empty cache took {grown} bytes");
    assert_eq!(cache.get(&1), Some(1));
}

#[test]
fn a_hash_panic_during_eviction_leaves_the_bound_to_the_next_insert() {
    use std::sync::atomic::AtomicU32;
    static PANIC_ON: AtomicU32 = AtomicU32::new(u32::MAX);
    #[derive(Clone, PartialEq, Eq, Debug)]
    struct Key(u32);
    impl std::hash::Hash for Key {
        fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
            assert_ne!(self.0, PANIC_ON.load(Ordering::Relaxed), "hash panics");
            self.0.hash(state);
        }
    }
    let cache = Cache::builder().max_entries(4).shards(1).build();
    for i in 0..4 {
        cache.insert(Key(i), i);
    }
    // Key 3 is on probation, the next victim; evicting it hashes it (for
    // the ghost history) after key 4 is linked, and that hash panics.
    PANIC_ON.store(3, Ordering::Relaxed);
    let insert = std::panic::AssertUnwindSafe(|| cache.insert(Key(4), 4));
    assert!(std::panic::catch_unwind(insert).is_err());
    PANIC_ON.store(u32::MAX, Ordering::Relaxed);
    // Consistent, but one entry over its bound. Rewriting key 4 at the same weight needs no eviction of its own, but
    // the shard is over its bound: the insert restores it.
    cache.insert(Key(4), 40);
    assert_eq!(cache.len(), 4);
    assert_eq!(cache.get(&Key(4)), Some(40));
    cache.check_invariants().unwrap();
}

#[test]
fn a_weighted_cache_held_by_its_entry_count_still_resists_a_loop() {
    // The entry bound binds, not the (huge) weight budget: probation and
    // the WARM fill must follow the entry count.
    assert_a_loop_hits(
        Cache::builder()
            .max_entries(100)
            .max_weight(1 << 40)
            .weigher(|_, _| 1)
            .shards(1)
            .build(),
    );
}

#[test]
fn a_load_with_a_zero_ttl_is_returned_not_stored() {
    let cache = Cache::builder().max_entries(2).shards(1).build();
    cache.insert(1, 1);
    cache.insert(2, 2);
    let got = cache.try_get_or_insert_with_ttl(3, || Ok::<_, ()>((3, Duration::ZERO)));
    assert_eq!(got.unwrap(), 3);
    assert!(!cache.contains_key(&3));
    assert!(cache.contains_key(&1) && cache.contains_key(&2));
    assert_eq!(cache.stats().evicted_capacity, 0, "nothing evicted for it");
}

#[test]
fn a_write_during_a_load_wins_over_the_loaded_value() {
    let cache: Cache<u32, &str> = Cache::new(100);
    // The loader itself writes the key: the write comes after the load
    // began, so it is the newer value.
    let got = cache.get_or_insert_with(1, || {
        cache.insert(1, "written");
        "loaded"
    });
    assert_eq!(got, "loaded", "the caller gets what its loader produced");
    assert_eq!(
        cache.get(&1),
        Some("written"),
        "the write is not overwritten"
    );

    // A removal during the load: nothing is stored.
    let got = cache.get_or_insert_with(2, || {
        assert_eq!(cache.remove(&2), None);
        "loaded"
    });
    assert_eq!(got, "loaded");
    assert_eq!(cache.get(&2), None, "the removal is not undone");

    // A write to another key does not stop the load from being stored.
    let got = cache.get_or_insert_with(3, || {
        cache.insert(4, "other");
        cache.remove(&5);
        "loaded"
    });
    assert_eq!(got, "loaded");
    assert_eq!(cache.get(&3), Some("loaded"));
    assert_eq!(cache.stats().loads, 3);
}
