//! Unit tests of the namespace's generation: the check's schedule (one
//! caller per interval, under concurrency), and, through a `NearFar` whose
//! far tier is not there (no server: checks fail or are skipped, on a
//! `MockClock`), the races with reads and loads in progress when a newer
//! generation is taken, and the breaker open. Against memcached:
//! `tests/invalidate_all.rs`.

use std::convert::Infallible;
use std::sync::mpsc;
use std::sync::{Barrier, atomic::Ordering};
use std::thread;
use std::time::{Duration, Instant};

use super::super::drive::{Blocking, block_on};
use super::super::load::Plan;
use super::super::{Error, NearFar};
use super::*;
use crate::memcached::Client;
use crate::{Cache, MockClock};

const INTERVAL: Duration = Duration::from_secs(1);
const TTL: Duration = Duration::from_secs(3600);

#[test]
fn one_caller_per_interval_makes_the_check() {
    let gens = Generations::new(Some(1_000), String::new());
    // Unknown: everyone checks (nothing to go on with).
    assert!(gens.claim(0) && gens.claim(0));
    assert!(gens.advance(0));
    assert!(
        !gens.claim(999),
        "the unknown-time claims scheduled the next"
    );
    // Many threads at once, at the same instant: one wins.
    for round in 1..=50u64 {
        let now = 1_000 * round;
        let barrier = Barrier::new(8);
        let wins: usize = thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    s.spawn(|| {
                        barrier.wait();
                        (0..100).filter(|_| gens.claim(now)).count()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(wins, 1, "round {round}");
    }
}

#[test]
fn a_generation_never_goes_back() {
    let gens = Generations::new(Some(1), String::new());
    assert_eq!(gens.known(), None);
    assert!(gens.advance(3));
    assert!(!gens.advance(2) && !gens.advance(3));
    assert!(gens.advance(4));
    assert_eq!(gens.known(), Some(4));
    let off = Generations::new(None, String::new());
    assert_eq!(off.known(), Some(0));
    assert!(!off.claim(u64::MAX - 1));
    assert_eq!(off.next_check(), u64::MAX);
}

/// A client of a server that is not there: nothing listens on port 1, so
/// every far request fails at once.
fn unreachable_far() -> Client {
    Client::builder()
        .servers(["127.0.0.1:1"])
        .connect_timeout(Duration::from_millis(50))
        .build()
        .unwrap()
}

/// A `NearFar` on `clock` checking the generation every [`INTERVAL`], over
/// a far tier that is not there, with the given breaker.
fn checking(clock: &MockClock, breaker: u32) -> NearFar<u32, String> {
    NearFar::builder()
        .near(Cache::builder().max_entries(100).clock(clock.clone()))
        .far(unreachable_far())
        .namespace("ns")
        .near_ttl(TTL)
        .generation_check(INTERVAL)
        .circuit_breaker(breaker, Duration::from_secs(3600))
        .clock(clock.clone())
        .build()
        .unwrap()
}

#[test]
fn near_hits_make_one_check_per_interval_under_concurrency() {
    let clock = MockClock::new();
    let nf = checking(&clock, 0); // no breaker: every check is sent (and fails)
    nf.inner.adopt(0, false); // as after a first check answered
    nf.insert(1, "a".into()); // the first check is due at once: made here
    let before = nf.stats();
    assert_eq!(before.generation_checks, 1);
    // Within the interval: near hits, and no far request.
    for _ in 0..100 {
        assert_eq!(nf.get(&1).as_deref(), Some("a"));
    }
    assert_eq!(nf.stats().far_errors, before.far_errors);
    for round in 1..=3 {
        clock.advance(INTERVAL);
        let barrier = Barrier::new(8);
        thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    barrier.wait();
                    for _ in 0..200 {
                        assert_eq!(nf.get(&1).as_deref(), Some("a"));
                    }
                });
            }
        });
        let s = nf.stats();
        assert_eq!(s.generation_checks, 1 + round, "one check in round {round}");
        assert_eq!(s.far_errors, before.far_errors + round, "one request");
    }
}

#[test]
fn a_far_read_that_began_before_a_newer_generation_is_never_served() {
    let clock = MockClock::new();
    let nf = checking(&clock, 0);
    nf.inner.adopt(4, false);
    let of = |value: &str, generation| nf.inner.entry(value.to_string(), 7, Some(TTL), generation);

    // A far read of key 1 began in generation 4; generation 5 is taken
    // meanwhile (the near tier cleared); then the read ends: not kept.
    let seen = nf.inner.write_generation(&1).load(Ordering::Acquire);
    nf.inner.near.fill_with_ttl(9, of("old", 4), TTL);
    nf.inner.adopt(5, false);
    assert!(nf.inner.near.peek(&9).is_none(), "cleared");
    assert_eq!(nf.stats().invalidations, 1);
    nf.inner.keep_near(&1, seen, of("old", 4), TTL);
    assert!(nf.inner.near.peek(&1).is_none());

    // Its fill landed after the clear (its first check made before the
    // new generation was taken, its second not yet): in the near tier,
    // never served, and dropped by the read that finds it.
    nf.inner.near.fill_with_ttl(2, of("old", 4), TTL);
    assert_eq!(
        nf.get(&2),
        None,
        "a copy of generation 4 is not served in 5"
    );
    assert!(nf.inner.near.peek(&2).is_none());
    assert_eq!(nf.get_with(2, || "new".into()), "new");
    assert_eq!(nf.get(&2).as_deref(), Some("new"));

    // A copy of the generation known is served.
    nf.inner.near.fill_with_ttl(3, of("current", 5), TTL);
    assert_eq!(nf.get(&3).as_deref(), Some("current"));
}

#[test]
fn a_load_running_when_a_newer_generation_is_taken_keeps_nothing_near() {
    let clock = MockClock::new();
    let nf = checking(&clock, 0);
    nf.inner.adopt(1, false);
    let (started_tx, started_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let nf = &nf;
    thread::scope(|s| {
        let old = s.spawn(move || {
            nf.get_with(1, move || {
                started_tx.send(()).unwrap();
                go_rx.recv().unwrap();
                "old".to_string()
            })
        });
        started_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        nf.inner.adopt(2, false);
        // A caller after it does not join the superseded load (it would
        // wait for it: failed after 10 s rather than hung): it loads in the
        // new generation.
        let (new_tx, new_rx) = mpsc::channel();
        s.spawn(move || new_tx.send(nf.get_with(1, || "new".to_string())));
        let new = new_rx.recv_timeout(Duration::from_secs(10));
        go_tx.send(()).unwrap();
        assert_eq!(new.as_deref(), Ok("new"), "joined the superseded load");
        assert_eq!(old.join().unwrap(), "old", "its own caller gets its value");
    });
    assert_eq!(
        nf.get(&1).as_deref(),
        Some("new"),
        "not the superseded load's"
    );
    assert_eq!(nf.stats().loader_calls, 2);
}

#[test]
fn a_load_planned_before_a_newer_generation_loads_in_it() {
    let clock = MockClock::new();
    let nf = checking(&clock, 0);
    nf.inner.adopt(1, false);
    let plan = block_on(nf.inner.plan_load::<Blocking>(&1, None));
    assert!(matches!(&plan, Plan::Far { fkey, .. } if fkey == "ns:#g1:1"));
    // Taken before the load is registered: the clear cannot supersede it.
    nf.inner.adopt(2, false);
    let loaded = nf.inner.near.load_after_miss(
        1,
        |sharing| {
            let load = async { Ok::<_, Infallible>("v".to_string()) };
            block_on(nf.inner.load_far::<Blocking, _>(&1, &plan, sharing, load))
        },
        None,
    );
    assert_eq!(loaded.unwrap().generation, 2);
    assert_eq!(nf.get(&1).as_deref(), Some("v"));
    assert_eq!(nf.far_key(&1).as_deref(), Some("ns:#g2:1"));
}

#[test]
fn with_the_breaker_open_a_check_neither_blocks_nor_fails_a_read() {
    let clock = MockClock::new();
    let nf = checking(&clock, 1);
    // The first call checks (no generation known yet), fails, and opens
    // the breaker: the near tier only, as with no far tier.
    assert_eq!(nf.get_with(1, || "a".to_string()), "a");
    assert!(nf.far_breaker_open());
    assert_eq!(nf.far_key(&1), None, "no generation known");
    let first = nf.stats();
    assert_eq!((first.far_errors, first.generation_checks), (1, 1));
    for _ in 0..3 {
        clock.advance(INTERVAL);
        let started = Instant::now();
        for i in 0..100 {
            assert_eq!(nf.get(&1).as_deref(), Some("a"));
            assert_eq!(nf.get_with(2 + i % 3, || "b".into()), "b");
        }
        assert!(started.elapsed() < Duration::from_secs(2), "nothing waited");
        let s = nf.stats();
        assert_eq!(s.far_errors, 1, "nothing sent");
        assert!(s.generation_checks > first.generation_checks);
        assert!(s.breaker_skips > first.breaker_skips);
    }
    nf.insert(9, "c".into());
    assert_eq!(nf.get(&9).as_deref(), Some("c"));
    assert_eq!(nf.invalidate_all(), Err(InvalidateError::Unavailable));

    // With a generation known: near hits go on with it after each skipped
    // check, and nothing is cleared.
    let nf = checking(&clock, 1);
    nf.inner.adopt(3, false);
    nf.insert(1, "a".into()); // its check fails: the breaker opens
    assert!(nf.far_breaker_open());
    for _ in 0..3 {
        clock.advance(INTERVAL);
        for _ in 0..10 {
            assert_eq!(nf.get(&1).as_deref(), Some("a"));
        }
    }
    assert_eq!(nf.stats().far_errors, 1);
    assert_eq!(nf.invalidate_all(), Err(InvalidateError::Unavailable));
    assert_eq!(nf.get(&1).as_deref(), Some("a"), "nothing cleared");
    assert_eq!(nf.far_key(&1).as_deref(), Some("ns:#g3:1"));
}

#[test]
fn invalidate_all_needs_generation_check_with_a_far_tier() {
    let nf: NearFar<u32, String> = NearFar::builder().far(unreachable_far()).build().unwrap();
    assert_eq!(nf.invalidate_all(), Err(InvalidateError::NotEnabled));
    assert_eq!(nf.stats().far_errors, 0, "nothing sent");
    // Near only: the near tier is cleared.
    let near: NearFar<u32, String> = NearFar::builder().build().unwrap();
    near.insert(1, "a".into());
    assert_eq!(near.invalidate_all(), Ok(()));
    assert_eq!(near.get(&1), None);
    assert_eq!(near.get_with(1, || "b".into()), "b");
}

#[test]
fn generation_check_needs_room_for_the_tag() {
    let err = |b: super::super::NearFarBuilder<u8, u8>| b.build().unwrap_err();
    let setting = |e: Error| match e {
        Error::InvalidSetting { setting, .. } => setting,
    };
    let zero = NearFar::builder().generation_check(Duration::ZERO);
    assert_eq!(setting(err(zero)), "generation_check");
    // Prefix and namespace: 194 bytes fit without the tag, not with it.
    let far = || {
        Client::builder()
            .servers(["127.0.0.1:1"])
            .key_prefix("p".repeat(100))
            .build()
            .unwrap()
    };
    let with = |n: usize| NearFar::builder().far(far()).namespace("n".repeat(n));
    assert!(with(94).build().is_ok());
    assert_eq!(
        setting(err(with(94).generation_check(INTERVAL))),
        "namespace"
    );
    assert!(with(93).generation_check(INTERVAL).build().is_ok());
}
