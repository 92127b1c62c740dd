//! Unit tests of `NearFar` that need no memcached (see `tests/nearfar_*.rs`).

use super::call::{Failure, Pool};
use super::flow::load::lease_age;
use super::flow::read::fallback_ttl;
use super::*;
use crate::Cache;
use crate::MockClock;
use crate::memcached;
use crate::memcached::health::Pass;
use std::cell::Cell;
use std::sync::atomic::Ordering;
use std::thread;

#[test]
fn handle_is_send_sync_clone() {
    fn check<T: Send + Sync + Clone + 'static>() {}
    check::<NearFar<String, Vec<u8>>>();
    check::<NearFar<(u32, String), String>>();
}

#[test]
fn build_checks_settings() {
    let err = |b: NearFarBuilder<u8, u8>| b.build().unwrap_err();
    assert!(matches!(
        err(NearFar::builder().namespace("a\nb")),
        Error::InvalidSetting {
            setting: "namespace",
            ..
        }
    ));
    assert!(matches!(
        err(NearFar::builder().namespace("n".repeat(201))),
        Error::InvalidSetting {
            setting: "namespace",
            ..
        }
    ));
    assert!(matches!(
        err(NearFar::builder().far_ttl(Duration::ZERO)),
        Error::InvalidSetting {
            setting: "far_ttl",
            ..
        }
    ));
    assert!(matches!(
        err(NearFar::builder().near_ttl(Duration::ZERO)),
        Error::InvalidSetting {
            setting: "near_ttl",
            ..
        }
    ));
    assert!(matches!(
        err(NearFar::builder().loader_timeout(Duration::from_secs(1))),
        Error::InvalidSetting {
            setting: "loader_timeout",
            ..
        }
    ));
    let old_pool = Client::builder().servers(["127.0.0.1:1"]).build().unwrap();
    assert!(matches!(
        err(NearFar::builder().fallback(old_pool)),
        Error::InvalidSetting {
            setting: "fallback",
            ..
        }
    ));
    assert!(matches!(
        err(NearFar::builder().lease_wait(Duration::ZERO)),
        Error::InvalidSetting {
            setting: "lease_wait",
            ..
        }
    ));
    assert!(matches!(
        err(NearFar::builder().circuit_breaker(3, Duration::ZERO)),
        Error::InvalidSetting {
            setting: "circuit_breaker",
            ..
        }
    ));
    let client = Client::builder()
        .servers(["127.0.0.1:1"])
        .key_prefix("p".repeat(200))
        .build()
        .unwrap();
    assert!(matches!(
        err(NearFar::builder().far(client).namespace("n".repeat(20))),
        Error::InvalidSetting {
            setting: "namespace",
            ..
        }
    ));
    assert!(
        NearFar::<u8, u8>::builder()
            .namespace("ok:v1")
            .build()
            .is_ok()
    );
}

#[test]
fn a_lease_wait_that_outlasts_the_lease_is_refused() {
    let build = |wait: u64, ttl: Option<u64>| {
        let b = NearFar::<u8, u8>::builder().lease_wait(Duration::from_secs(wait));
        match ttl {
            Some(ttl) => b.lease_ttl(Duration::from_secs(ttl)),
            None => b,
        }
        .build()
    };
    // Equal, longer, and longer than the default lease (10 s).
    for (wait, ttl) in [(5, Some(5)), (6, Some(5)), (10, None), (30, None)] {
        match build(wait, ttl) {
            Err(
                e @ Error::InvalidSetting {
                    setting: "lease_wait",
                    ..
                },
            ) => {
                let message = e.to_string();
                assert!(message.contains("shorter than lease_ttl"), "{message}");
            }
            other => panic!("wait {wait} s, lease {ttl:?}: {other:?}"),
        }
    }
    assert!(build(4, Some(5)).is_ok());
    assert!(build(9, None).is_ok());
    assert!(build(25, Some(30)).is_ok());
}

#[test]
fn a_fail_safe_backoff_without_fail_safe_is_refused() {
    let alone = NearFar::<u8, u8>::builder()
        .fail_safe_backoff(Duration::from_secs(30))
        .build();
    match alone {
        Err(
            e @ Error::InvalidSetting {
                setting: "fail_safe_backoff",
                ..
            },
        ) => assert!(e.to_string().contains("fail_safe too"), "{e}"),
        other => panic!("expected fail_safe_backoff refused, got {other:?}"),
    }
    // With fail_safe, or left at its default without it: fine.
    let with = NearFar::<u8, u8>::builder()
        .fail_safe(Duration::from_secs(60))
        .fail_safe_backoff(Duration::from_secs(30))
        .build();
    assert!(with.is_ok());
    assert!(NearFar::<u8, u8>::builder().build().is_ok());
    assert!(
        NearFar::<u8, u8>::builder()
            .fail_safe(Duration::from_secs(60))
            .build()
            .is_ok()
    );
}

/// A client of a server that is not there: nothing listens on port 1, so
/// every far call fails fast.
fn unreachable_far() -> Client {
    Client::builder()
        .servers(["127.0.0.1:1"])
        .connect_timeout(Duration::from_millis(50))
        .build()
        .unwrap()
}

#[test]
fn far_tier_down_never_fails_a_caller() {
    let client = unreachable_far();
    let nf: NearFar<u32, String> = NearFar::builder()
        .far(client)
        .circuit_breaker(2, Duration::from_secs(60))
        .build()
        .unwrap();
    for i in 0..20 {
        assert_eq!(nf.get_with(i, || i.to_string()), i.to_string());
        assert_eq!(nf.get(&i), Some(i.to_string()));
        nf.insert(i + 100, "x".into());
        nf.remove(&(i + 100));
    }
    let s = nf.stats();
    assert_eq!(s.far_errors, 2, "{s:?}");
    assert_eq!(s.breaker_trips, 1);
    assert!(nf.far_breaker_open());
}

#[test]
fn a_far_read_older_than_a_write_here_is_not_kept_near() {
    // Far writes fail: the near tier decides.
    let client = unreachable_far();
    let nf: NearFar<u32, String> = NearFar::builder()
        .far(client)
        .circuit_breaker(0, Duration::from_secs(1))
        .build()
        .unwrap();
    let ttl = Duration::from_secs(60);
    let old = || nf.inner.entry("old".to_string(), 7, Some(ttl), 0);

    // A read that began before a removal by this NearFar is dropped.
    let seen = nf.inner.write_generation(&1).load(Ordering::Acquire);
    nf.remove(&1);
    nf.inner.keep_near(&1, seen, old(), ttl);
    assert_eq!(nf.get(&1), None);

    // One that began before a write does not replace the written value.
    let seen = nf.inner.write_generation(&2).load(Ordering::Acquire);
    nf.insert(2, "new".to_string());
    nf.inner.keep_near(&2, seen, old(), ttl);
    assert_eq!(nf.get(&2).as_deref(), Some("new"));

    // Without a write meanwhile, it is kept.
    let seen = nf.inner.write_generation(&3).load(Ordering::Acquire);
    nf.inner.keep_near(&3, seen, old(), ttl);
    assert_eq!(nf.get(&3).as_deref(), Some("old"));
}

/// A NearFar over `client` whose breaker opens at the first failure for a
/// second, on a mock clock.
fn tripping_on_a_mock_clock(client: Client) -> (NearFar<u32, String>, MockClock) {
    let clock = MockClock::new();
    let nf = NearFar::builder()
        .far(client)
        .circuit_breaker(1, Duration::from_secs(1))
        .clock(clock.clone())
        .build()
        .unwrap();
    (nf, clock)
}

#[test]
fn a_probe_that_sends_nothing_does_not_close_the_breaker() {
    let client = Client::builder().servers(["127.0.0.1:1"]).build().unwrap();
    let (nf, clock) = tripping_on_a_mock_clock(client);
    let far = nf.inner.call().unwrap();
    let breaker = &far.breaker;
    breaker.failure(nf.inner.now());
    assert!(breaker.is_open());
    // Each attempt below holds the probe (the cooldown is over).
    clock.advance(Duration::from_secs(2));
    let too_large = |_: &Client| -> memcached::Result<()> {
        Err(memcached::Error::ValueTooLarge { size: 2, max: 1 })
    };
    assert_eq!(far.attempt(Pool::Far, too_large), Err(Failure::Refused));
    assert!(breaker.is_open(), "nothing reached the server");
    let invalid_key = |c: &Client| c.get::<u8>("has space");
    assert_eq!(far.attempt(Pool::Far, invalid_key), Err(Failure::Refused));
    assert!(breaker.is_open());
    // A real reply from the server closes it.
    let answered = |_: &Client| -> memcached::Result<()> { Err(memcached::Error::NotStored) };
    assert_eq!(far.attempt(Pool::Far, answered), Err(Failure::Refused));
    assert!(!breaker.is_open());
}

#[test]
fn a_call_sends_nothing_more_to_a_pool_that_did_not_answer() {
    let client = || Client::builder().servers(["127.0.0.1:1"]).build().unwrap();
    let nf: NearFar<u32, String> = NearFar::builder()
        .far(client())
        .fallback(client())
        .circuit_breaker(0, Duration::from_secs(1))
        .build()
        .unwrap();
    let far = nf.inner.call().unwrap();
    let runs = Cell::new(0);
    let timeout = |_: &Client| -> memcached::Result<()> {
        runs.set(runs.get() + 1);
        Err(memcached::Error::Timeout)
    };
    assert_eq!(far.attempt(Pool::Far, timeout), Err(Failure::Owed));
    assert_eq!(far.attempt(Pool::Far, timeout), Ok(None), "skipped");
    assert_eq!(runs.get(), 1);
    // The other pool is asked still, and a new call asks the far tier again.
    assert_eq!(far.attempt(Pool::Fallback, timeout), Err(Failure::Owed));
    assert_eq!(runs.get(), 2);
    let next = nf.inner.call().unwrap();
    assert_eq!(next.attempt(Pool::Far, timeout), Err(Failure::Owed));
    assert_eq!(runs.get(), 3);
    // A refusal is an answer: the call goes on asking.
    let refused = |_: &Client| -> memcached::Result<()> { Err(memcached::Error::NotStored) };
    let third = nf.inner.call().unwrap();
    assert_eq!(third.attempt(Pool::Far, refused), Err(Failure::Refused));
    assert_eq!(third.attempt(Pool::Far, refused), Err(Failure::Refused));
}

#[test]
fn an_outage_checks_a_due_entry_once_per_period() {
    let clock = crate::MockClock::new();
    let client = unreachable_far();
    let nf: NearFar<u32, String> = NearFar::builder()
        .near(Cache::builder().max_entries(10).clock(clock.clone()))
        .far(client)
        .near_ttl(Duration::from_secs(60))
        .revalidate_after(Duration::from_secs(1))
        .circuit_breaker(1, Duration::from_secs(3600))
        .clock(clock.clone())
        .build()
        .unwrap();
    nf.insert(1, "a".into()); // the far write fails: the breaker opens
    assert!(nf.far_breaker_open());
    clock.advance(Duration::from_secs(2));
    for _ in 0..5 {
        assert_eq!(nf.get(&1).as_deref(), Some("a"));
    }
    assert_eq!(nf.stats().revalidations, 1, "one check per period");
    clock.advance(Duration::from_secs(2));
    assert_eq!(nf.get_with(1, || unreachable!()), "a");
    assert_eq!(nf.get(&1).as_deref(), Some("a"));
    assert_eq!(nf.stats().revalidations, 2);
    // The copy still ends with its near TTL.
    clock.advance(Duration::from_secs(60));
    assert_eq!(nf.get(&1), None);
}

#[test]
fn far_keys_fit_the_fallback_clients_prefix_too() {
    let with_prefix = |prefix: &str| {
        Client::builder()
            .servers(["127.0.0.1:1"])
            .key_prefix(prefix)
            .build()
            .unwrap()
    };
    let nf: NearFar<String, u8> = NearFar::builder()
        .far(with_prefix(""))
        .fallback(with_prefix(&"p".repeat(100)))
        .namespace("ns")
        .build()
        .unwrap();
    // 3 + 200 bytes fit alone, not behind the fallback's 100-byte prefix.
    let long = "k".repeat(200);
    let fkey = nf.far_key(&long).unwrap();
    assert!(fkey.starts_with("ns:#"), "{fkey}");
    assert!(100 + fkey.len() <= memcached::protocol::MAX_KEY_LEN);
    // A short key is left as it is.
    assert_eq!(nf.far_key(&"k".to_string()).as_deref(), Some("ns:k"));
    // A namespace that leaves no room with the fallback's prefix is refused.
    let too_long = NearFar::<String, u8>::builder()
        .far(with_prefix(""))
        .fallback(with_prefix(&"p".repeat(200)))
        .namespace("n".repeat(20))
        .build();
    assert!(matches!(
        too_long,
        Err(Error::InvalidSetting {
            setting: "namespace",
            ..
        })
    ));
}

#[test]
fn a_panic_in_the_probe_gives_the_probe_back() {
    let client = Client::builder().servers(["127.0.0.1:1"]).build().unwrap();
    let (nf, clock) = tripping_on_a_mock_clock(client);
    let far = nf.inner.call().unwrap();
    far.breaker.failure(nf.inner.now());
    clock.advance(Duration::from_secs(2));
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        far.attempt(Pool::Far, |_| -> memcached::Result<()> {
            panic!("a value's Serialize panicked")
        })
    }));
    assert!(panicked.is_err());
    assert!(far.breaker.is_open());
    assert_eq!(
        far.breaker.pass(nf.inner.now()),
        Pass::Probe,
        "the next caller probes again"
    );
}

#[test]
fn a_load_does_not_undo_an_insert_or_remove_near_only_or_far_down() {
    use std::sync::mpsc;
    // Near only, and with a far tier that is down (every far call fails,
    // the breaker off): the near tier alone decides.
    for (far, near_ttl) in [
        (false, None),
        (false, Some(Duration::from_secs(60))),
        (true, None),
        (true, Some(Duration::from_secs(60))),
    ] {
        // What runs while the load is held: an insert, an insert then a
        // removal, or an insert while a load that then fails is held.
        for (remove, fail) in [(false, false), (true, false), (false, true)] {
            let mut builder = NearFar::<u8, String>::builder();
            if let Some(ttl) = near_ttl {
                builder = builder.near_ttl(ttl);
            }
            if far {
                builder = builder
                    .far(unreachable_far())
                    .circuit_breaker(0, Duration::from_secs(1));
            }
            let cache = builder.build().unwrap();
            let (started_tx, started_rx) = mpsc::channel();
            let (go_tx, go_rx) = mpsc::channel::<()>();
            let loading = cache.clone();
            let loader = thread::spawn(move || {
                loading.try_get_with(1, || {
                    started_tx.send(()).unwrap();
                    go_rx.recv().unwrap();
                    if fail {
                        Err("db down")
                    } else {
                        Ok("v1".to_string())
                    }
                })
            });
            started_rx.recv().unwrap();
            cache.insert(1, "v2".to_string());
            if remove {
                cache.remove(&1);
            }
            go_tx.send(()).unwrap();
            let loaded = loader.join().unwrap().map_err(|e| *e);
            let want = if fail {
                Err("db down")
            } else {
                Ok("v1".to_string())
            };
            assert_eq!(loaded, want, "the caller gets its outcome");
            let want = (!remove).then(|| "v2".to_string());
            let case = format!("far {far}, near_ttl {near_ttl:?}, remove {remove}, fail {fail}");
            assert_eq!(cache.get(&1), want, "{case}");
        }
    }
}

#[test]
fn a_memoised_near_hit_clones_no_key() {
    use std::sync::atomic::AtomicUsize;
    static CLONES: AtomicUsize = AtomicUsize::new(0);
    #[derive(PartialEq, Eq, Hash, serde::Serialize)]
    struct Key(u8);
    impl Clone for Key {
        fn clone(&self) -> Self {
            CLONES.fetch_add(1, Ordering::SeqCst);
            Key(self.0)
        }
    }
    let nf: NearFar<Key, u8> = NearFar::builder().build().unwrap();
    assert_eq!(crate::memo::memoize(&nf, Key(3), |k| k.0), 3);
    assert_eq!(CLONES.load(Ordering::SeqCst), 1, "the miss stores a clone");
    assert_eq!(crate::memo::memoize(&nf, Key(3), |_| 0), 3);
    assert_eq!(CLONES.load(Ordering::SeqCst), 1, "a near hit clones none");
}

#[test]
fn a_load_counts_one_near_miss_and_a_hit_one_hit() {
    // Near only, and with an unreachable far tier (the far path): each
    // get_with that loads is one near lookup, so one near miss.
    let far: NearFar<u32, u32> = NearFar::builder().far(unreachable_far()).build().unwrap();
    let near: NearFar<u32, u32> = NearFar::builder().build().unwrap();
    for nf in [near, far] {
        for i in 0..5 {
            assert_eq!(nf.get_with(i, || i + 1), i + 1);
        }
        for i in 0..5 {
            assert_eq!(nf.get_with(i, || unreachable!()), i + 1);
        }
        let s = nf.stats();
        assert_eq!((s.near.misses, s.near.hits), (5, 5), "{s:?}");
        assert_eq!(s.loader_calls, 5);
    }
}

#[test]
fn a_fallback_copy_never_turns_a_dying_item_immortal() {
    let hour = Duration::from_secs(3600);
    assert_eq!(
        fallback_ttl(Some(Duration::ZERO), hour),
        Duration::from_secs(1)
    );
    assert_eq!(
        fallback_ttl(Some(Duration::from_secs(5)), hour),
        Duration::from_secs(5)
    );
    assert_eq!(fallback_ttl(Some(2 * hour), hour), hour);
    assert_eq!(fallback_ttl(None, hour), hour);
}

#[test]
fn a_load_is_kept_whatever_other_keys_are_written_meanwhile() {
    for far in [false, true] {
        let mut builder = NearFar::<u32, String>::builder();
        if far {
            builder = builder
                .far(unreachable_far())
                .circuit_breaker(0, Duration::from_secs(1));
        }
        let cache = builder.build().unwrap();
        let writer = cache.clone();
        // Writes and removals of 300 other keys while the load runs: none
        // of them is this key, so the loaded value is kept.
        let got = cache.get_with(0, || {
            for other in 1..=300 {
                writer.insert(other, "other".into());
                writer.remove(&(other + 1000));
            }
            "loaded".into()
        });
        assert_eq!(got, "loaded");
        assert_eq!(cache.get(&0).as_deref(), Some("loaded"), "far {far}");
        assert_eq!(cache.get_with(0, || unreachable!()), "loaded");
        assert_eq!(cache.stats().loader_calls, 1);
    }
}

#[test]
fn dropping_a_near_copy_does_not_supersede_a_load() {
    use std::sync::mpsc;
    let cache: NearFar<u8, String> = NearFar::builder().build().unwrap();
    let (started_tx, started_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let loading = cache.clone();
    let loader = thread::spawn(move || {
        loading.get_with(1, || {
            started_tx.send(()).unwrap();
            go_rx.recv_timeout(Duration::from_secs(10)).unwrap();
            "loaded".to_string()
        })
    });
    started_rx.recv().unwrap();
    // Dropping a (stale) near copy is not a write: a caller arriving now
    // joins the load in progress instead of running the loader again, and
    // the load's value is kept.
    cache.remove_near(&1);
    let joiner = {
        let cache = cache.clone();
        thread::spawn(move || cache.get_with(1, || "second run".to_string()))
    };
    // Let the joiner reach the load before releasing it (bounded wait).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while cache.stats().near.load_waits == 0 && std::time::Instant::now() < deadline {
        thread::sleep(Duration::from_millis(1));
    }
    go_tx.send(()).unwrap();
    assert_eq!(loader.join().unwrap(), "loaded");
    assert_eq!(joiner.join().unwrap(), "loaded");
    assert_eq!(cache.stats().loader_calls, 1);
    assert_eq!(cache.get(&1).as_deref(), Some("loaded"));
}

#[test]
fn a_placeholder_age_is_a_lower_bound_in_whole_seconds() {
    let ttl = Duration::from_secs(10);
    let secs = Duration::from_secs;
    // Just made (memcached may already report a second gone): not old.
    assert_eq!(lease_age(ttl, Some(secs(10))), Duration::ZERO);
    assert_eq!(lease_age(ttl, Some(secs(9))), Duration::ZERO);
    assert_eq!(lease_age(ttl, Some(secs(7))), secs(2));
    assert_eq!(lease_age(ttl, Some(secs(0))), secs(9));
    // Made by a process with a longer lease TTL: never looks old.
    assert_eq!(lease_age(ttl, Some(secs(30))), Duration::ZERO);
    assert_eq!(lease_age(ttl, None), Duration::ZERO);
    // A fractional lease TTL is rounded up, as it is sent.
    assert_eq!(
        lease_age(Duration::from_millis(1_500), Some(secs(0))),
        secs(1)
    );
}

/// A clock that counts how often it is read.
#[derive(Clone, Default)]
struct CountingClock {
    inner: MockClock,
    reads: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl crate::Clock for CountingClock {
    fn now(&self) -> std::time::Instant {
        self.reads.fetch_add(1, Ordering::Relaxed);
        crate::Clock::now(&self.inner)
    }
}

#[test]
fn a_near_hit_reads_the_clock_once_with_revalidation_and_refresh_ahead_both_on() {
    let clock = CountingClock::default();
    let far = Client::builder().servers(["127.0.0.1:1"]).build().unwrap();
    let cache: NearFar<u32, u32> = NearFar::builder()
        .far(far)
        .near_ttl(Duration::from_secs(60))
        .revalidate_after(Duration::from_secs(30))
        .refresh_ahead(0.8)
        .clock(clock.clone())
        .build()
        .unwrap();
    assert_eq!(cache.get_with(1, || 10), 10);
    let before = clock.reads.load(Ordering::Relaxed);
    assert_eq!(cache.get_with(1, || unreachable!("a near hit")), 10);
    // Both checks (revalidation due? refresh due?) share one reading.
    assert_eq!(clock.reads.load(Ordering::Relaxed) - before, 1);
}
