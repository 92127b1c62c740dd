//! `CacheBuilder::keep_expired` and `Cache::get_stale`: expired entries kept
//! as fail-safe copies, invisible to reads, first to go, within the bounds.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use nearfar::{Cache, CacheBuilder, MockClock, RemovalCause};

const TTL: Duration = Duration::from_secs(10);
const GRACE: Duration = Duration::from_secs(60);

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn kept(clock: &MockClock, capacity: usize) -> CacheBuilder<u32, String> {
    Cache::builder()
        .max_entries(capacity)
        .shards(1)
        .keep_expired(GRACE)
        .clock(clock.clone())
}

#[test]
fn a_kept_entry_is_gone_for_reads_and_there_for_get_stale_until_the_grace_ends() {
    let clock = MockClock::new();
    let cache = kept(&clock, 100).build();
    cache.insert_with_ttl(1, "one".to_string(), TTL);
    assert_eq!(cache.get_stale(&1), None, "live: read it with get");
    clock.advance(secs(12));
    assert_eq!(cache.get(&1), None);
    assert_eq!(cache.peek(&1), None);
    assert!(!cache.contains_key(&1));
    assert_eq!(cache.iter().count(), 0);
    assert_eq!(cache.get_stale(&1), Some(("one".to_string(), secs(2))));
    // Reads of it neither revive it nor count as hits.
    assert_eq!(cache.get(&1), None);
    assert_eq!(cache.stats().hits, 0);
    clock.advance(GRACE - secs(3));
    assert_eq!(
        cache.get_stale(&1),
        Some(("one".to_string(), GRACE - secs(1)))
    );
    clock.advance(secs(1));
    assert_eq!(cache.get_stale(&1), None, "kept for GRACE after its expiry");
    // Past the grace a read reclaims it, as without keep_expired.
    assert_eq!(cache.get(&1), None);
    assert_eq!(cache.len(), 0);
    cache.check_invariants().unwrap();
}

#[test]
fn without_keep_expired_an_expired_entry_is_not_kept() {
    let clock = MockClock::new();
    let cache: Cache<u32, String> = Cache::builder()
        .max_entries(100)
        .clock(clock.clone())
        .build();
    cache.insert_with_ttl(1, "one".to_string(), TTL);
    clock.advance(secs(11));
    assert_eq!(cache.get_stale(&1), None);
    assert_eq!(cache.get(&1), None);
    assert_eq!(cache.len(), 0, "reclaimed by the read");
}

#[test]
fn kept_entries_are_evicted_before_live_ones_earliest_expired_first() {
    let clock = MockClock::new();
    let evicted = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&evicted);
    let cache = kept(&clock, 8)
        .eviction_listener(move |k: &u32, _: &String, cause| seen.lock().unwrap().push((*k, cause)))
        .build();
    // Two entries that will expire, then six live ones, all used.
    cache.insert_with_ttl(1, "a".to_string(), TTL);
    cache.insert_with_ttl(2, "b".to_string(), TTL + secs(1));
    for k in 3..=8 {
        cache.insert(k, k.to_string());
    }
    for k in 1..=8 {
        cache.get(&k);
    }
    clock.advance(TTL + secs(2));
    // Met by reads: 2 first, then 1 (the order they were found expired).
    assert_eq!(cache.get(&2), None);
    assert_eq!(cache.get(&1), None);
    assert_eq!(cache.len(), 8, "kept, within the bound");
    cache.insert(9, "i".to_string());
    cache.insert(10, "j".to_string());
    assert_eq!(
        *evicted.lock().unwrap(),
        [(2, RemovalCause::Expired), (1, RemovalCause::Expired)]
    );
    for k in 3..=10 {
        assert!(cache.contains_key(&k), "live entry {k} kept");
    }
    // The next insert evicts a live entry: nothing kept is left.
    cache.insert(11, "k".to_string());
    let evicted = evicted.lock().unwrap();
    assert_eq!(evicted.len(), 3);
    assert_eq!(evicted[2].1, RemovalCause::Capacity);
    assert_eq!(cache.len(), 8);
    cache.check_invariants().unwrap();
}

#[test]
fn a_new_value_replaces_a_kept_entry_and_is_not_first_to_go() {
    let clock = MockClock::new();
    let cache = kept(&clock, 4).build();
    cache.insert_with_ttl(1, "old".to_string(), TTL);
    for k in 2..=4 {
        cache.insert(k, k.to_string());
    }
    clock.advance(TTL + secs(1));
    assert_eq!(cache.get(&1), None);
    assert_eq!(
        cache.get_or_insert_with(1, || "new".to_string()),
        "new",
        "a kept entry is a miss for the loader"
    );
    assert_eq!(cache.get_stale(&1), None, "live again");
    cache.get(&1);
    // Two more keys: the evictions take others, not the fresh value.
    cache.insert(5, "5".to_string());
    cache.insert(6, "6".to_string());
    assert_eq!(cache.get(&1).as_deref(), Some("new"));
    assert_eq!(cache.len(), 4);
    cache.check_invariants().unwrap();
}

#[test]
fn a_failed_load_leaves_the_kept_copy_to_serve() {
    let clock = MockClock::new();
    let cache = kept(&clock, 10).time_to_live(TTL).build();
    let loaded = cache.try_get_or_insert_with(7, || Ok::<_, &str>("good".to_string()));
    assert_eq!(loaded.as_deref(), Ok("good"));
    clock.advance(TTL + secs(5));
    let failed = cache.try_get_or_insert_with(7, || Err::<String, _>("source down"));
    assert_eq!(failed.map_err(|e| *e), Err("source down"));
    assert_eq!(cache.get_stale(&7), Some(("good".to_string(), secs(5))));
}

#[test]
fn kept_entries_count_against_a_weight_bound() {
    let clock = MockClock::new();
    let cache: Cache<u32, Vec<u8>> = Cache::builder()
        .max_weight(100)
        .shards(1)
        .weigher(|_, v: &Vec<u8>| v.len() as u64)
        .keep_expired(GRACE)
        .clock(clock.clone())
        .build();
    for k in 0..5 {
        cache.insert_with_ttl(k, vec![0; 20], TTL);
    }
    clock.advance(TTL + secs(1));
    for k in 0..5 {
        assert_eq!(cache.get(&k), None);
    }
    assert_eq!(cache.weight(), 100, "kept entries weigh as before");
    cache.insert(10, vec![1; 50]);
    assert!(cache.weight() <= 100);
    assert_eq!(cache.get(&10), Some(vec![1; 50]));
    let kept = (0..5).filter(|k| cache.get_stale(k).is_some()).count();
    assert_eq!(kept, 2, "the live insert evicted three kept entries");
    cache.check_invariants().unwrap();
}

#[test]
fn the_sweep_moves_expired_entries_to_the_front_of_eviction_and_ends_them_after_the_grace() {
    let clock = MockClock::new();
    let cache = kept(&clock, 1000).build();
    for k in 0..20 {
        cache.insert_with_ttl(k, k.to_string(), TTL);
    }
    clock.advance(TTL + secs(1));
    // Writes sweep (a few slots each): the expired entries are kept...
    for k in 100..140 {
        cache.insert(k, k.to_string());
    }
    assert_eq!(cache.len(), 60);
    assert!((0..20).all(|k| cache.get_stale(&k).is_some()));
    // ...and once the grace has passed, the sweep reclaims them.
    clock.advance(GRACE);
    for k in 200..240 {
        cache.insert(k, k.to_string());
    }
    assert_eq!(cache.len(), 80);
    assert!((0..20).all(|k| cache.get_stale(&k).is_none()));
    cache.check_invariants().unwrap();
}
