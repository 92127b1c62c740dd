//! NearFar against real memcached: the two-tier flow, sharing between
//! instances (each instance stands for a process), namespaces, odd keys,
//! revalidation, undecodable far values, fallback warm-up, and
//! `#[memoize]` over a NearFar. Leases are in nearfar_leases.rs, writes and
//! removals racing a load in nearfar_races.rs.
#![cfg(feature = "memcached")]

#[path = "common/memcached.rs"]
mod server;

#[path = "common/nearfar_setup.rs"]
mod nearfar_setup;

use std::time::Duration;

use nearfar::{Cache, MockClock, NearFar};
use nearfar_setup::{client, instance, k, stale_instance};
use server::Memcached;

/// An instance on `clock` that revalidates near copies older than 5 s.
fn revalidating(mc: &Memcached, clock: &MockClock, namespace: &str) -> NearFar<String, String> {
    NearFar::builder()
        .near(Cache::builder().max_entries(100).clock(clock.clone()))
        .clock(clock.clone())
        .far(client(mc))
        .namespace(namespace)
        .revalidate_after(Duration::from_secs(5))
        .build()
        .expect("NearFar")
}

#[test]
fn two_tier_flow_near_hit_far_hit_loader_fills_both() {
    let mc = Memcached::start();
    let raw = client(&mc);
    let a = instance(&mc, "flow");
    let b = instance(&mc, "flow");

    // Loader fills both tiers.
    assert_eq!(a.get_with(k("user:1"), || k("Ada")), "Ada");
    let s = a.stats();
    assert_eq!((s.loader_calls, s.far_misses, s.far_hits), (1, 1, 0));
    let fkey = a.far_key(&k("user:1")).unwrap();
    assert_eq!(fkey, "flow:user:1");
    assert_eq!(raw.get::<String>(&fkey).unwrap().as_deref(), Some("Ada"));

    // Near hit: no far traffic, no loader.
    assert_eq!(a.get_with(k("user:1"), || unreachable!()), "Ada");
    assert_eq!(a.get(&k("user:1")).as_deref(), Some("Ada"));
    let s = a.stats();
    assert_eq!((s.loader_calls, s.near_hits, s.far_hits), (1, 2, 0));

    // Another instance: far hit, which fills its near tier.
    assert_eq!(b.get(&k("user:1")).as_deref(), Some("Ada"));
    assert_eq!(b.stats().far_hits, 1);
    raw.delete(&fkey).unwrap();
    assert_eq!(b.get(&k("user:1")).as_deref(), Some("Ada"), "served near");
    assert_eq!(b.stats().near_hits, 1);

    // get on a key nowhere: None, counted as a far miss.
    assert_eq!(b.get(&k("nobody")), None);
    assert_eq!(b.stats().far_misses, 1);

    // A far hit through get_with in a third instance.
    raw.set(&fkey, "Grace", Duration::from_secs(60)).unwrap();
    let c = instance(&mc, "flow");
    assert_eq!(c.get_with(k("user:1"), || unreachable!()), "Grace");
    assert_eq!((c.stats().far_hits, c.stats().loader_calls), (1, 0));
}

#[test]
fn instances_share_inserts_and_removes() {
    let mc = Memcached::start();
    let a = instance(&mc, "share");
    let b = instance(&mc, "share");
    a.insert(k("x"), k("1"));
    assert_eq!(b.get(&k("x")).as_deref(), Some("1"));
    a.remove(&k("x"));
    assert_eq!(a.get(&k("x")), None);
    // b still holds its near copy (bounded staleness) until it drops it.
    assert_eq!(b.get(&k("x")).as_deref(), Some("1"));
    b.remove_near(&k("x"));
    assert_eq!(b.get(&k("x")), None);
}

#[test]
fn a_borrowed_key_reads_both_tiers_as_the_owned_one() {
    let mc = Memcached::start();
    let a = instance(&mc, "borrowed");
    let b = instance(&mc, "borrowed");
    a.insert(k("x"), k("1"));
    // Near hit, by `&str` on a `String` key.
    assert_eq!(a.get("x").as_deref(), Some("1"));
    // Near miss, far hit: the `&str` renders the owned key's far key, and
    // the far value is kept near under the owned key.
    assert_eq!(b.get("x").as_deref(), Some("1"));
    assert_eq!(b.stats().far_hits, 1);
    assert_eq!(b.get(&k("x")).as_deref(), Some("1"));
    assert_eq!(b.stats().near_hits, 1);
    assert_eq!(b.get("y"), None);
}

#[test]
fn near_ttl_is_bounded_by_far_ttl_left() {
    let mc = Memcached::start();
    let raw = client(&mc);
    let clock = MockClock::new();
    let a: NearFar<String, String> = NearFar::builder()
        .near(Cache::builder().max_entries(100).clock(clock.clone()))
        .clock(clock.clone())
        .far(client(&mc))
        .namespace("ttl")
        .near_ttl(Duration::from_secs(600))
        .build()
        .unwrap();
    raw.set("ttl:short", "v", Duration::from_secs(30)).unwrap();
    assert_eq!(a.get(&k("short")).as_deref(), Some("v"));
    raw.delete("ttl:short").unwrap();
    clock.advance(Duration::from_secs(25));
    assert_eq!(
        a.get(&k("short")).as_deref(),
        Some("v"),
        "near copy still live"
    );
    clock.advance(Duration::from_secs(6));
    assert_eq!(
        a.get(&k("short")),
        None,
        "near copy expired with the far item"
    );
}

#[test]
fn namespace_bump_invalidates_the_family() {
    let mc = Memcached::start();
    let v1 = instance(&mc, "users:v1");
    v1.insert(k("a"), k("old"));
    let v1_other = instance(&mc, "users:v1");
    assert_eq!(v1_other.get(&k("a")).as_deref(), Some("old"));
    let v2 = instance(&mc, "users:v2");
    assert_eq!(v2.get(&k("a")), None);
    assert_eq!(v2.get_with(k("a"), || k("new")), "new");
    assert_eq!(v2.stats().loader_calls, 1);
}

#[test]
fn long_and_odd_keys_are_hashed_and_work() {
    let mc = Memcached::start();
    let raw = client(&mc);
    let a = instance(&mc, "odd");
    let b = instance(&mc, "odd");
    let keys = [
        k("has space"),
        k("new\nline"),
        k("tab\there"),
        k("del\u{7f}"),
        "x".repeat(300),
        k(""),
        k("#looks-like-a-digest"),
        k("ünïcode-ok"),
    ];
    for (i, key) in keys.iter().enumerate() {
        a.insert(key.clone(), i.to_string());
    }
    for (i, key) in keys.iter().enumerate() {
        let fkey = a.far_key(key).unwrap();
        assert!(fkey.len() <= 250, "{fkey}");
        assert!(fkey.bytes().all(|c| c > b' ' && c != 0x7f), "{fkey:?}");
        if key.starts_with('ü') {
            assert_eq!(fkey, format!("odd:{key}"));
        } else {
            assert!(fkey.starts_with("odd:#") && fkey.len() == 4 + 33, "{fkey}");
        }
        assert_eq!(raw.get::<String>(&fkey).unwrap(), Some(i.to_string()));
        assert_eq!(b.get(key), Some(i.to_string()), "key {key:?}");
    }
    // Structured keys render through the codec.
    let t: NearFar<(u32, String), u64> = NearFar::builder()
        .far(client(&mc))
        .namespace("tuple")
        .build()
        .unwrap();
    assert_eq!(t.get_with((7, k("a")), || 49), 49);
    let fkey = t.far_key(&(7, k("a"))).unwrap();
    assert_eq!(fkey, "tuple:070161");
    assert_eq!(raw.get::<u64>(&fkey).unwrap(), Some(49));
}

#[test]
fn revalidation_sees_another_instances_write_and_remove() {
    let mc = Memcached::start();
    let clock = MockClock::new();
    let a = revalidating(&mc, &clock, "reval");
    let b = instance(&mc, "reval");

    assert_eq!(a.get_with(k("k"), || k("v1")), "v1");
    b.insert(k("k"), k("v2"));
    assert_eq!(a.get(&k("k")).as_deref(), Some("v1"), "within the period");
    assert_eq!(a.stats().revalidations, 0);

    clock.advance(Duration::from_secs(5));
    assert_eq!(
        a.get(&k("k")).as_deref(),
        Some("v2"),
        "changed CAS: refetched"
    );
    let s = a.stats();
    assert_eq!((s.revalidations, s.revalidations_changed), (1, 1));

    // Unchanged: kept, checked again only after another period.
    clock.advance(Duration::from_secs(5));
    assert_eq!(a.get(&k("k")).as_deref(), Some("v2"));
    assert_eq!(a.get(&k("k")).as_deref(), Some("v2"));
    let s = a.stats();
    assert_eq!((s.revalidations, s.revalidations_changed), (2, 1));

    // A remove elsewhere: seen after the period, through get_with too.
    b.remove(&k("k"));
    assert_eq!(a.get(&k("k")).as_deref(), Some("v2"));
    clock.advance(Duration::from_secs(5));
    assert_eq!(a.get_with(k("k"), || k("v3")), "v3");
    let s = a.stats();
    assert_eq!((s.revalidations, s.revalidations_changed), (3, 2));
    assert_eq!(b.get(&k("k")).as_deref(), Some("v3"));
}

#[test]
fn undecodable_far_value_is_a_counted_miss_and_is_replaced() {
    let mc = Memcached::start();
    let raw = client(&mc);
    let a: NearFar<String, u64> = NearFar::builder()
        .far(client(&mc))
        .namespace("dec")
        .build()
        .unwrap();
    raw.set("dec:n", "not a number", Duration::from_secs(60))
        .unwrap();
    assert_eq!(a.get(&k("n")), None);
    assert_eq!(a.stats().decode_errors, 1);
    assert_eq!(a.get_with(k("n"), || 5), 5);
    assert_eq!(a.stats().decode_errors, 2);
    assert_eq!(raw.get::<u64>("dec:n").unwrap(), Some(5));
}

#[test]
fn fallback_pool_warms_the_new_one() {
    let old = Memcached::start();
    let new = Memcached::start();
    let old_raw = client(&old);
    let new_raw = client(&new);
    old_raw
        .set("fb:a", "from-old", Duration::from_secs(60))
        .unwrap();
    old_raw
        .set("fb:b", "also-old", Duration::from_secs(60))
        .unwrap();
    let a: NearFar<String, String> = NearFar::builder()
        .far(client(&new))
        .fallback(client(&old))
        .namespace("fb")
        .build()
        .unwrap();
    assert_eq!(a.get(&k("a")).as_deref(), Some("from-old"));
    assert_eq!(
        new_raw.get::<String>("fb:a").unwrap().as_deref(),
        Some("from-old")
    );
    assert_eq!(a.get_with(k("b"), || unreachable!()), "also-old");
    assert_eq!(
        new_raw.get::<String>("fb:b").unwrap().as_deref(),
        Some("also-old")
    );
    assert_eq!(a.get_with(k("c"), || k("loaded")), "loaded");
    let s = a.stats();
    assert_eq!((s.fallback_hits, s.loader_calls), (2, 1));
    // remove clears both pools, so the old value cannot come back.
    a.remove(&k("a"));
    assert_eq!(old_raw.get::<String>("fb:a").unwrap(), None);
    assert_eq!(a.get(&k("a")), None);
}

#[test]
fn revalidation_of_an_invalidated_item_recomputes_once() {
    let mc = Memcached::start();
    let clock = MockClock::new();
    let a: NearFar<String, String> = NearFar::builder()
        .near(Cache::builder().max_entries(100).clock(clock.clone()))
        .clock(clock.clone())
        .far(client(&mc))
        .namespace("reval-stale")
        .revalidate_after(Duration::from_secs(1))
        .stale_on_remove(Duration::from_secs(30))
        .build()
        .unwrap();
    let b = stale_instance(&mc, "reval-stale");
    assert_eq!(a.get_with(k("k"), || k("v1")), "v1");
    b.remove(&k("k"));
    clock.advance(Duration::from_secs(1));
    // a's check meets the stale item, takes its recompute token and, having
    // a loader, recomputes.
    assert_eq!(a.get_with(k("k"), || k("v2")), "v2");
    assert_eq!(a.stats().loader_calls, 2);
    assert_eq!(b.get(&k("k")).as_deref(), Some("v2"));

    // A plain get meeting a stale item hands its token back: the next
    // get_with elsewhere recomputes.
    b.remove(&k("k"));
    clock.advance(Duration::from_secs(1));
    assert_eq!(a.get(&k("k")).as_deref(), Some("v2"), "stale, served");
    let c: NearFar<String, String> = NearFar::builder()
        .far(client(&mc))
        .namespace("reval-stale")
        .build()
        .unwrap();
    assert_eq!(c.get_with(k("k"), || k("v3")), "v3");
    assert_eq!(c.stats().loader_calls, 1);
}

/// `#[memoize(store = ...)]` over a `NearFar`: two "processes" memoising the
/// same function share results through memcached.
#[test]
fn memoize_through_a_nearfar_store() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{LazyLock, OnceLock};
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    // The server belongs to this test (killed when it ends); the stores only
    // learn its address.
    static ADDR: OnceLock<String> = OnceLock::new();
    let mc = Memcached::start();
    ADDR.set(mc.addr()).unwrap();
    fn store() -> nearfar::NearFar<u64, u64> {
        let addr = ADDR.get().expect("set before first use").clone();
        let client = nearfar::memcached::Client::builder()
            .servers([addr])
            .build()
            .unwrap();
        nearfar::NearFar::builder()
            .near(nearfar::Cache::builder().max_entries(100))
            .far(client)
            .namespace("memo-test")
            .build()
            .unwrap()
    }
    static FIRST: LazyLock<nearfar::NearFar<u64, u64>> = LazyLock::new(store);
    static SECOND: LazyLock<nearfar::NearFar<u64, u64>> = LazyLock::new(store);
    #[nearfar::memoize(store = FIRST)]
    fn square_a(n: u64) -> u64 {
        RUNS.fetch_add(1, Ordering::SeqCst);
        n * n
    }
    #[nearfar::memoize(store = SECOND)]
    fn square_b(n: u64) -> u64 {
        RUNS.fetch_add(1, Ordering::SeqCst);
        n * n
    }
    assert_eq!(square_a(12), 144);
    assert_eq!(square_a(12), 144);
    // The second process finds it in memcached: the body does not run again.
    assert_eq!(square_b(12), 144);
    assert_eq!(RUNS.load(Ordering::SeqCst), 1);
    assert_eq!(SECOND.stats().far_hits, 1);
}

#[test]
fn revalidation_finds_this_instances_own_writes_unchanged() {
    let mc = Memcached::start();
    let clock = MockClock::new();
    let a = revalidating(&mc, &clock, "own-cas");
    // Written here, and loaded here (stored over the lease placeholder).
    a.insert(k("written"), k("w"));
    assert_eq!(a.get_with(k("loaded"), || k("l")), "l");

    clock.advance(Duration::from_secs(5));
    assert_eq!(a.get(&k("written")).as_deref(), Some("w"));
    assert_eq!(a.get(&k("loaded")).as_deref(), Some("l"));
    let s = a.stats();
    assert_eq!(
        (s.revalidations, s.revalidations_changed, s.far_hits),
        (2, 0, 0),
        "the near copies carry the CAS of their own far write: {s:?}"
    );

    // A write elsewhere is still seen.
    instance(&mc, "own-cas").insert(k("written"), k("w2"));
    clock.advance(Duration::from_secs(5));
    assert_eq!(a.get(&k("written")).as_deref(), Some("w2"));
    assert_eq!(a.stats().revalidations_changed, 1);
}
