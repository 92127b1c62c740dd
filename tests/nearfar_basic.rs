//! NearFar against real memcached: the two-tier flow, sharing between
//! instances (each instance stands for a process), namespaces, odd keys,
//! revalidation, stale-while-revalidate, leases released on failure, and
//! fallback warm-up.
#![cfg(feature = "memcached")]

#[path = "common/memcached.rs"]
mod server;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use nearfar::memcached::Client;
use nearfar::{Cache, MockClock, NearFar};
use server::Memcached;

const MS: Duration = Duration::from_millis(1);

fn client(mc: &Memcached) -> Client {
    Client::builder()
        .servers([mc.addr()])
        .io_timeout(200 * MS)
        .connect_timeout(200 * MS)
        .build()
        .expect("client")
}

fn instance(mc: &Memcached, namespace: &str) -> NearFar<String, String> {
    NearFar::builder()
        .near(Cache::builder().max_entries(1_000))
        .far(client(mc))
        .namespace(namespace)
        .build()
        .expect("NearFar")
}

/// An instance with no near tier that serves a removed item stale for 30 s
/// while one caller recomputes it.
fn stale_instance(mc: &Memcached, namespace: &str) -> NearFar<String, String> {
    NearFar::builder()
        .far(client(mc))
        .namespace(namespace)
        .stale_on_remove(Duration::from_secs(30))
        .build()
        .expect("NearFar")
}

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

fn k(s: &str) -> String {
    s.to_string()
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
fn stale_on_remove_serves_stale_while_one_recomputes() {
    let mc = Memcached::start();
    let mk = || stale_instance(&mc, "swr");
    let (a, b, c, d) = (mk(), mk(), mk(), mk());
    assert_eq!(a.get_with(k("report"), || k("v1")), "v1");
    a.remove(&k("report"));
    assert_eq!(
        a.get(&k("report")).as_deref(),
        Some("v1"),
        "stale until recomputed"
    );

    // b wins the recompute; while its loader runs, c is served the stale value.
    let (go_tx, recompute) = blocked_load(b, "report", "v2");
    assert_eq!(c.get_with(k("report"), || unreachable!()), "v1");
    assert_eq!(c.stats().stale_serves, 1);
    go_tx.send(()).unwrap();
    assert_eq!(recompute.join().unwrap(), "v2");
    assert_eq!(d.get(&k("report")).as_deref(), Some("v2"));
    assert_eq!(d.stats().stale_serves, 0);
}

#[test]
fn a_failed_or_panicking_loader_releases_the_lease() {
    let mc = Memcached::start();
    let mk = || -> NearFar<String, String> {
        NearFar::builder()
            .far(client(&mc))
            .namespace("release")
            .lease_wait(Duration::from_secs(5))
            .build()
            .unwrap()
    };
    let (a, b) = (mk(), mk());
    let err = a.try_get_with(k("e"), || Err::<String, _>("db down"));
    assert_eq!(*err.unwrap_err(), "db down");
    let start = Instant::now();
    assert_eq!(b.get_with(k("e"), || k("ok")), "ok");
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "no wait on a dead lease"
    );
    assert_eq!(b.stats().lease_waits, 0);

    let panicked = catch_unwind(AssertUnwindSafe(|| {
        a.get_with(k("p"), || panic!("loader bug"))
    }));
    assert!(panicked.is_err());
    let start = Instant::now();
    assert_eq!(b.get_with(k("p"), || k("ok")), "ok");
    assert!(start.elapsed() < Duration::from_secs(2));
    assert_eq!(b.stats().lease_waits, 0);
    // a is still usable after its loader panicked.
    assert_eq!(a.get_with(k("p"), || unreachable!()), "ok");
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
fn a_hung_lease_holder_is_taken_over_after_lease_wait() {
    let mc = Memcached::start();
    let mk = |wait: Duration| -> NearFar<String, String> {
        NearFar::builder()
            .far(client(&mc))
            .namespace("hung")
            .lease_wait(wait)
            .build()
            .unwrap()
    };
    let (a, b) = (mk(Duration::from_secs(10)), mk(300 * MS));
    let (go_tx, holder) = blocked_load(a, "slow", "from a");
    let start = Instant::now();
    assert_eq!(b.get_with(k("slow"), || k("from b")), "from b");
    let waited = start.elapsed();
    assert!(
        waited >= 300 * MS && waited < Duration::from_secs(2),
        "{waited:?}"
    );
    let s = b.stats();
    assert_eq!(
        (
            s.lease_waits,
            s.lease_takeovers,
            s.lease_timeouts,
            s.loader_calls
        ),
        (1, 1, 0, 1)
    );
    // b took the lease over and filled the far tier for everyone.
    assert_eq!(mk(MS).get(&k("slow")).as_deref(), Some("from b"));
    go_tx.send(()).unwrap();
    // a's late store is refused by its CAS: its value stays its own.
    assert_eq!(holder.join().unwrap(), "from a");
    assert_eq!(mk(MS).get(&k("slow")).as_deref(), Some("from b"));
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

/// Starts `nf.get_with(key)` on a thread and returns once its loader runs.
/// The loader then waits for a message on the returned sender before it
/// returns `value`; the handle yields what the caller got.
fn blocked_load(
    nf: NearFar<String, String>,
    key: &str,
    value: &'static str,
) -> (mpsc::Sender<()>, thread::JoinHandle<String>) {
    let (started_tx, started_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let key = k(key);
    let loader = thread::spawn(move || {
        nf.get_with(key, || {
            started_tx.send(()).unwrap();
            go_rx.recv().unwrap();
            k(value)
        })
    });
    started_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    (go_tx, loader)
}

/// Runs `a.get_with(key)` with a loader blocked on a channel, calls
/// `meanwhile` while it is blocked, then lets it return "v1".
fn load_racing(a: &NearFar<String, String>, key: &str, meanwhile: impl FnOnce()) {
    let (go_tx, loader) = blocked_load(a.clone(), key, "v1");
    meanwhile();
    go_tx.send(()).unwrap();
    assert_eq!(
        loader.join().unwrap(),
        "v1",
        "the loader's caller gets its value"
    );
}

#[test]
fn a_write_or_removal_during_a_load_is_not_undone() {
    let mc = Memcached::start();
    let fresh = || instance(&mc, "race");
    let a = fresh();

    // Another instance writes while a's loader runs.
    let b = fresh();
    load_racing(&a, "ins", || b.insert(k("ins"), k("v2")));
    assert_eq!(fresh().get(&k("ins")).as_deref(), Some("v2"));
    assert_eq!(a.get(&k("ins")).as_deref(), Some("v2"));

    // Another instance removes (the placeholder) while a's loader runs.
    load_racing(&a, "rm", || b.remove(&k("rm")));
    assert_eq!(fresh().get(&k("rm")), None);
    assert_eq!(a.get(&k("rm")), None);

    // The same instance (a clone) writes, then removes, meanwhile.
    let same = a.clone();
    load_racing(&a, "ins-here", || same.insert(k("ins-here"), k("v2")));
    assert_eq!(fresh().get(&k("ins-here")).as_deref(), Some("v2"));
    assert_eq!(a.get(&k("ins-here")).as_deref(), Some("v2"));
    load_racing(&a, "rm-here", || same.remove(&k("rm-here")));
    assert_eq!(fresh().get(&k("rm-here")), None);
    assert_eq!(a.get(&k("rm-here")), None);

    // A value written before the load is removed while a stale item is
    // being recomputed (stale_on_remove): the recompute does not return it.
    let swr = || stale_instance(&mc, "race-swr");
    let (a, b) = (swr(), swr());
    b.insert(k("s"), k("v0"));
    b.remove(&k("s"));
    load_racing(&a, "s", || b.insert(k("s"), k("v2")));
    assert_eq!(swr().get(&k("s")).as_deref(), Some("v2"));
    assert_eq!(a.get(&k("s")).as_deref(), Some("v2"));
}

#[test]
fn a_placeholder_removed_with_stale_on_remove_is_never_served() {
    let mc = Memcached::start();
    let mk = || -> NearFar<String, String> {
        NearFar::builder()
            .far(client(&mc))
            .namespace("swr-placeholder")
            .stale_on_remove(Duration::from_secs(30))
            .lease_wait(Duration::from_secs(10))
            .build()
            .unwrap()
    };
    let (a, b, c, d) = (mk(), mk(), mk(), mk());
    // a holds the lease (its loader blocked) while b removes the key.
    load_racing(&a, "k", || {
        b.remove(&k("k"));
        // A reader without a loader finds nothing (not an empty string)...
        assert_eq!(d.get(&k("k")), None);
        assert_eq!(d.get(&k("k")), None);
        // ...and the next get_with runs its loader, without waiting.
        let start = Instant::now();
        assert_eq!(c.get_with(k("k"), || k("from c")), "from c");
        assert!(start.elapsed() < Duration::from_secs(5));
        assert_eq!(c.stats().loader_calls, 1);
        assert_eq!(d.get_with(k("k"), || unreachable!()), "from c");
    });
    // a's value was loaded before the removal: c's stays.
    assert_eq!(mk().get(&k("k")).as_deref(), Some("from c"));
}

#[test]
fn a_failed_load_releases_only_its_placeholder() {
    let mc = Memcached::start();
    let (a, b) = (instance(&mc, "release-cas"), instance(&mc, "release-cas"));
    let (started_tx, started_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let a2 = a.clone();
    let loader = thread::spawn(move || {
        a2.try_get_with(k("k"), || {
            started_tx.send(()).unwrap();
            go_rx.recv().unwrap();
            Err::<String, _>("db down")
        })
    });
    started_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    // b writes over a's placeholder while a's loader runs, then it fails.
    b.insert(k("k"), k("v2"));
    go_tx.send(()).unwrap();
    assert_eq!(*loader.join().unwrap().unwrap_err(), "db down");
    assert_eq!(
        instance(&mc, "release-cas").get(&k("k")).as_deref(),
        Some("v2"),
        "the release did not delete b's value"
    );
}

#[test]
fn a_failed_recompute_of_a_stale_item_hands_its_token_back() {
    let mc = Memcached::start();
    let mk = || stale_instance(&mc, "swr-fail");
    let (a, b, c) = (mk(), mk(), mk());
    for key in ["err", "panic"] {
        a.insert(k(key), k("v0"));
        a.remove(&k(key));
        // b takes the stale item's recompute token, and its loader fails.
        if key == "err" {
            let err = b.try_get_with(k(key), || Err::<String, _>("db down"));
            assert_eq!(*err.unwrap_err(), "db down");
        } else {
            let panicked = catch_unwind(AssertUnwindSafe(|| {
                b.get_with(k(key), || panic!("loader bug"))
            }));
            assert!(panicked.is_err());
        }
        // The next caller recomputes rather than being served "v0".
        let before = c.stats().loader_calls;
        assert_eq!(c.get_with(k(key), || k("v1")), "v1");
        assert_eq!(c.stats().loader_calls, before + 1);
        assert_eq!(mk().get(&k(key)).as_deref(), Some("v1"));
    }
}

#[test]
fn replacing_an_undecodable_value_does_not_undo_a_write_or_removal() {
    let mc = Memcached::start();
    let raw = client(&mc);
    let fresh = || instance(&mc, "dec-race");
    let (a, b) = (fresh(), fresh());
    let garbage = |key: &str| {
        // Text flags, not UTF-8: no `String` decodes from it.
        raw.set_raw(key, &[0xff, 0xfe], 16, Duration::from_secs(60))
            .unwrap();
    };

    // Another instance writes while a loads over the undecodable value.
    garbage("dec-race:ins");
    load_racing(&a, "ins", || b.insert(k("ins"), k("v2")));
    assert_eq!(fresh().get(&k("ins")).as_deref(), Some("v2"));
    assert_eq!(a.get(&k("ins")).as_deref(), Some("v2"));

    // Another instance removes while a loads over the undecodable value.
    garbage("dec-race:rm");
    load_racing(&a, "rm", || b.remove(&k("rm")));
    assert_eq!(fresh().get(&k("rm")), None);
    assert_eq!(a.get(&k("rm")), None);
    assert!(a.stats().decode_errors >= 2);
}

#[test]
fn a_lease_timeout_load_does_not_undo_a_removal() {
    let mc = Memcached::start();
    let mk = |wait: Duration| -> NearFar<String, String> {
        NearFar::builder()
            .far(client(&mc))
            .namespace("hung-rm")
            .lease_wait(wait)
            .build()
            .unwrap()
    };
    let (a, b, c) = (
        mk(Duration::from_secs(10)),
        mk(100 * MS),
        mk(Duration::from_secs(10)),
    );
    // a wins the lease and hangs; b waits out its lease_wait, takes the
    // lease over and loads.
    let (go_a, holder) = blocked_load(a, "k", "from a");
    let (go_b, late) = blocked_load(b.clone(), "k", "from b");
    assert_eq!(b.stats().lease_takeovers, 1);
    // The key is removed (b's placeholder with it) while b's loader runs.
    c.remove(&k("k"));
    go_b.send(()).unwrap();
    assert_eq!(late.join().unwrap(), "from b", "b's caller gets its value");
    assert_eq!(mk(MS).get(&k("k")), None, "b stored after the removal");
    go_a.send(()).unwrap();
    assert_eq!(holder.join().unwrap(), "from a");
    assert_eq!(mk(MS).get(&k("k")), None, "a stored after the removal");
}

/// A `String` whose decoding, while [`GATE`] is armed, says so and waits:
/// holds a fallback-pool read between the read and the far store.
#[derive(Debug, Clone, PartialEq)]
struct Gated(String);

type Gate = (mpsc::Sender<()>, mpsc::Receiver<()>);
static GATE: std::sync::Mutex<Option<Gate>> = std::sync::Mutex::new(None);

impl serde::Serialize for Gated {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> serde::Deserialize<'de> for Gated {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = String::deserialize(d)?;
        let gate = GATE.lock().unwrap().take();
        if let Some((started, go)) = gate {
            started.send(()).unwrap();
            go.recv().unwrap();
        }
        Ok(Gated(value))
    }
}

#[test]
fn a_fallback_fill_refused_far_is_not_kept_near() {
    let old = Memcached::start();
    let new = Memcached::start();
    let mk = || -> NearFar<String, Gated> {
        NearFar::builder()
            .far(client(&new))
            .fallback(client(&old))
            .namespace("fb-race")
            .build()
            .unwrap()
    };
    let (a, b) = (mk(), mk());
    let old_raw = client(&old);
    let v = |s: &str| Gated(k(s));
    // `read` reads `key` through a with its fallback decode held, while
    // `meanwhile` runs; a's caller gets the old pool's value.
    let race =
        |key: &str, read: fn(&NearFar<String, Gated>, String) -> Gated, meanwhile: &dyn Fn()| {
            old_raw
                .set(&format!("fb-race:{key}"), "old", Duration::from_secs(60))
                .unwrap();
            let (started_tx, started_rx) = mpsc::channel();
            let (go_tx, go_rx) = mpsc::channel();
            *GATE.lock().unwrap() = Some((started_tx, go_rx));
            let (a2, key2) = (a.clone(), k(key));
            let reader = thread::spawn(move || read(&a2, key2));
            started_rx.recv_timeout(Duration::from_secs(10)).unwrap();
            meanwhile();
            go_tx.send(()).unwrap();
            assert_eq!(reader.join().unwrap(), v("old"));
        };
    let with = |a: &NearFar<String, Gated>, key| a.get_with(key, || unreachable!());
    let get = |a: &NearFar<String, Gated>, key| a.get(&key).unwrap();

    // A load's fill over its placeholder, a write meanwhile.
    race("w", with, &|| b.insert(k("w"), v("v2")));
    assert_eq!(a.get(&k("w")), Some(v("v2")));
    // A load's fill over its placeholder, a removal meanwhile.
    race("r", with, &|| b.remove(&k("r")));
    assert_eq!(a.get(&k("r")), None);
    // A get's fill (`add`), a write meanwhile.
    race("g", get, &|| b.insert(k("g"), v("v2")));
    assert_eq!(a.get(&k("g")), Some(v("v2")));
}

#[test]
fn a_value_the_far_tier_refuses_gives_the_lease_or_token_back() {
    let mc = Memcached::start();
    // Over memcached's default 1 MiB item limit: the far store fails (the
    // client refuses it before sending), the loaded value is served here.
    let huge = || "x".repeat(2 << 20);

    // A lease won on a miss: released, so the next process loads at once
    // instead of waiting out `lease_wait` for a value that never comes.
    let mk = || -> NearFar<String, String> {
        NearFar::builder()
            .far(client(&mc))
            .namespace("refused")
            .lease_wait(Duration::from_secs(5))
            .build()
            .unwrap()
    };
    let (a, b) = (mk(), mk());
    assert_eq!(a.get_with(k("big"), huge).len(), 2 << 20);
    assert_eq!(a.stats().far_errors, 1, "the refused store is counted");
    let start = Instant::now();
    assert_eq!(b.get_with(k("big"), || k("small")), "small");
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "no wait on a lease whose value never reached memcached"
    );
    assert_eq!(b.stats().lease_waits, 0);
    assert_eq!(mk().get(&k("big")).as_deref(), Some("small"));

    // A stale item's recompute token: handed back, so the next caller
    // recomputes rather than being served the stale value.
    let swr = || stale_instance(&mc, "refused-swr");
    let (a, b, c) = (swr(), swr(), swr());
    a.insert(k("s"), k("v0"));
    a.remove(&k("s"));
    assert_eq!(b.get_with(k("s"), huge).len(), 2 << 20);
    let before = c.stats().loader_calls;
    assert_eq!(c.get_with(k("s"), || k("v1")), "v1");
    assert_eq!(c.stats().loader_calls, before + 1);
    assert_eq!(swr().get(&k("s")).as_deref(), Some("v1"));
}

#[test]
fn a_fallback_copy_the_far_tier_refuses_gives_the_lease_back() {
    let old = Memcached::start();
    let new = Memcached::start();
    client(&old)
        .set("fbr:k", &"y".repeat(4096), Duration::from_secs(60))
        .unwrap();
    // The new pool's client admits items of at most 1 KiB: the copy of the
    // old pool's 4 KiB item fails.
    let small_items = || {
        Client::builder()
            .servers([new.addr()])
            .io_timeout(200 * MS)
            .max_item_size(1024)
            .build()
            .unwrap()
    };
    let mk = || -> NearFar<String, String> {
        NearFar::builder()
            .far(small_items())
            .fallback(client(&old))
            .namespace("fbr")
            .lease_wait(Duration::from_secs(5))
            .build()
            .unwrap()
    };
    let (a, b) = (mk(), mk());
    assert_eq!(a.get_with(k("k"), || unreachable!()).len(), 4096);
    // b finds no lease held: it reads the old pool too, without waiting.
    let start = Instant::now();
    assert_eq!(b.get_with(k("k"), || unreachable!()).len(), 4096);
    assert!(start.elapsed() < Duration::from_secs(2));
    assert_eq!(b.stats().lease_waits, 0);
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

#[test]
fn loaders_waiting_on_each_other_do_not_wait_out_the_lease() {
    let mc = Memcached::start();
    let a: NearFar<String, String> = NearFar::builder()
        .far(client(&mc))
        .namespace("cycle")
        .lease_wait(Duration::from_secs(5))
        .build()
        .unwrap();
    let both_loading = std::sync::Arc::new(std::sync::Barrier::new(2));
    let start = Instant::now();
    // x's loader needs y, y's loader needs x, each asked once both loads
    // run: the call closing the cycle loads for itself, and must not poll
    // the memcached lease its own process's blocked leader holds.
    let handles: Vec<_> = [("x", "y"), ("y", "x")]
        .into_iter()
        .map(|(mine, other)| {
            let (a, both_loading) = (a.clone(), both_loading.clone());
            thread::spawn(move || {
                a.get_with(k(mine), || {
                    both_loading.wait();
                    a.get_with(k(other), || format!("{other}0")) + "+"
                })
            })
        })
        .collect();
    let got: Vec<String> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(
        start.elapsed() < Duration::from_millis(2500),
        "took {:?}",
        start.elapsed()
    );
    // One of the two used the other's stored value, the other its own.
    assert!(got == ["y0+", "y0++"] || got == ["x0++", "x0+"], "{got:?}");
    assert_eq!(a.get(&k("x")).as_deref(), Some(got[0].as_str()));
    assert_eq!(a.get(&k("y")).as_deref(), Some(got[1].as_str()));
}

#[test]
fn a_shared_load_inside_a_loader_run_for_one_caller_still_fills_memcached() {
    let mc = Memcached::start();
    let nf = instance(&mc, "inner");
    // A plain cache whose two loaders wait on each other: the caller that
    // closes the cycle runs its loader for itself. That loader asks the
    // NearFar for another key: a shared load of its own, which must go
    // through memcached as usual (lease, then store).
    let cache: Cache<u32, String> = Cache::new(10);
    let both_loading = std::sync::Arc::new(std::sync::Barrier::new(2));
    let handles: Vec<_> = [(1u32, 2u32, "za"), (2, 1, "zb")]
        .into_iter()
        .map(|(mine, other, far_key)| {
            let (cache, nf, both_loading) = (cache.clone(), nf.clone(), both_loading.clone());
            thread::spawn(move || {
                cache.get_or_insert_with(mine, || {
                    both_loading.wait();
                    cache.get_or_insert_with(other, || {
                        nf.get_with(k(far_key), || format!("{far_key} computed"))
                    })
                })
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    // Exactly one inner loader ran (the refused caller's); its NearFar load
    // stored the value far.
    let raw = client(&mc);
    let stored: Vec<Option<String>> = ["inner:za", "inner:zb"]
        .iter()
        .map(|key| raw.get::<String>(key).unwrap())
        .collect();
    assert_eq!(nf.stats().loader_calls, 1);
    assert!(
        stored == [Some(k("za computed")), None] || stored == [None, Some(k("zb computed"))],
        "{stored:?}"
    );
}
