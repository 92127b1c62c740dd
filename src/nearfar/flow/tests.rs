//! Unit tests of the flows, driven by hand: scripted far replies and `now`
//! values, no server, no clock, no sleeping.

use std::time::Duration;

use super::load::{FIRST_PAUSE, Load, Store};
use super::read::{Keep, Read, Revalidate, Revalidated, Served};
use super::token::GiveBack;
use super::write::{Insert, Remove};
use super::*;
use crate::memcached::{Cas, Lease, MetaItem};
use crate::nearfar::stats::Counters;

const SECOND: u64 = 1_000_000_000;
const FAR_TTL: Duration = Duration::from_secs(300);
const NEAR_TTL: Duration = Duration::from_secs(30);
const LEASE_TTL: Duration = Duration::from_secs(10);
const LEASE_WAIT: Duration = Duration::from_secs(2);

fn ctx(counters: &Counters) -> Ctx<'_> {
    Ctx {
        counters,
        far_ttl: FAR_TTL,
        lease_ttl: LEASE_TTL,
        lease_wait: LEASE_WAIT,
        near_ttl: Some(NEAR_TTL),
        generation: 0,
    }
}

fn far<V>(reply: FarReply<V>) -> Input<V> {
    Input::Far(reply)
}

/// A lease reply: `lease`, the item's CAS and TTL left.
fn lease<V>(lease: Lease<V>, cas: u64, ttl: Option<Duration>) -> Input<V> {
    far(FarReply::Lease(Ok(Some((
        lease,
        Seen { cas: Cas(cas), ttl },
    )))))
}

/// A held lease: the placeholder's CAS, made `age` ago.
fn wait(cas: u64, age: Duration) -> Input<String> {
    lease(Lease::Wait, cas, Some(LEASE_TTL - age))
}

fn won(cas: u64, previous: Option<&str>) -> Input<String> {
    let previous = previous.map(str::to_string);
    lease(
        Lease::Won {
            previous,
            cas: Cas(cas),
        },
        cas,
        Some(LEASE_TTL),
    )
}

fn no_fallback() -> Input<String> {
    far(FarReply::Item(Ok(None)))
}

fn get(counter: &std::sync::atomic::AtomicU64) -> u64 {
    counter.load(std::sync::atomic::Ordering::Relaxed)
}

/// Asserts that `$step` matches `$pat`, showing it otherwise.
macro_rules! expect {
    ($step:expr, $pat:pat $(if $guard:expr)?) => {{
        let step = $step;
        assert!(matches!(step, $pat $(if $guard)?), "unexpected step {step:?}");
    }};
}

/// The load's result, once done.
fn done<V: std::fmt::Debug>(step: Step<'_, V, load::Loaded<V>>) -> load::Loaded<V> {
    match step {
        Step::Done(out) => out,
        other => panic!("not done: {other:?}"),
    }
}

#[test]
fn a_hit_is_done_at_once_and_kept_near_within_both_ttls() {
    let counters = Counters::default();
    let mut flow = Load::<String>::new(ctx(&counters), "k", None);
    expect!(
        flow.resume(Input::Start, 0),
        Step::Far(FarOp::GetOrLease {
            key: "k",
            lease_ttl: LEASE_TTL,
            recache: None,
        })
    );
    let hit = Lease::Hit {
        value: "v".to_string(),
        cas: Cas(9),
        stale: false,
        ttl: Some(Duration::from_secs(5)),
    };
    let (entry, ttl) = done(flow.resume(lease(hit, 9, Some(Duration::from_secs(5))), 7));
    assert_eq!(
        ttl,
        Duration::from_secs(5),
        "the far item's TTL left bounds it"
    );
    assert_eq!(
        (entry.value.as_str(), entry.cas, entry.checked),
        ("v", 9, 7)
    );
    assert_eq!(entry.expires, 7 + 5 * SECOND);
    assert_eq!(get(&counters.far_hits), 1);
    assert_eq!(get(&counters.loader_calls), 0);
    assert!(flow.take_held().is_none());
}

#[test]
fn a_held_lease_is_polled_with_growing_pauses() {
    let counters = Counters::default();
    let mut flow = Load::<String>::new(ctx(&counters), "k", None);
    flow.resume(Input::Start, 0);
    expect!(flow.resume(wait(5, Duration::ZERO), 0), Step::Wait(d) if d == FIRST_PAUSE);
    expect!(
        flow.resume(Input::Waited, 0),
        Step::Far(FarOp::GetOrLease { .. })
    );
    expect!(flow.resume(wait(5, Duration::ZERO), 0), Step::Wait(d) if d == FIRST_PAUSE * 2);
    flow.resume(Input::Waited, 0);
    // The last pause ends at `lease_wait`, not after it.
    let almost = LEASE_WAIT.as_nanos() as u64 - 1_000_000 / 2;
    expect!(
        flow.resume(wait(5, Duration::ZERO), almost),
        Step::Wait(d) if d == Duration::from_micros(500)
    );
    assert_eq!(get(&counters.lease_waits), 1, "one wait per caller");
}

#[test]
fn a_placeholder_watched_for_lease_wait_is_taken_over() {
    let counters = Counters::default();
    let mut flow = Load::<String>::new(ctx(&counters), "k", None);
    flow.resume(Input::Start, 0);
    flow.resume(wait(5, Duration::ZERO), SECOND);
    flow.resume(Input::Waited, SECOND);
    // Watched since the first sight of placeholder 5, not since its birth.
    let at = SECOND + LEASE_WAIT.as_nanos() as u64;
    expect!(
        flow.resume(wait(5, Duration::ZERO), at),
        Step::Far(FarOp::DeleteIfCas {
            key: "k",
            cas: Cas(5)
        })
    );
    expect!(
        flow.resume(far(FarReply::Done(Ok(Some(true)))), at),
        Step::Far(FarOp::GetOrLease { .. })
    );
    assert_eq!(get(&counters.lease_takeovers), 1);
    // This caller wins the lease: no fallback value, load, store by CAS.
    expect!(
        flow.resume(won(6, None), at),
        Step::Far(FarOp::MetaGet {
            pool: Pool::Fallback,
            key: "k"
        })
    );
    expect!(flow.resume(no_fallback(), at), Step::Load);
    assert_eq!(get(&counters.loader_calls), 1);
    expect!(
        flow.resume(Input::Loaded("new".to_string()), at),
        Step::Far(FarOp::CompareAndSet { key: "k", value, ttl: FAR_TTL, cas: Cas(6) })
            if value == "new"
    );
    let stored = far(FarReply::Stored(Ok(Some(Some(Cas(7))))));
    let (entry, ttl) = done(flow.resume(stored, at + 1));
    assert_eq!((entry.value.as_str(), entry.cas, ttl), ("new", 7, NEAR_TTL));
    assert!(flow.take_held().is_none(), "the far tier took the value");
}

#[test]
fn an_old_placeholder_is_taken_over_at_first_sight() {
    let counters = Counters::default();
    let mut flow = Load::<String>::new(ctx(&counters), "k", None);
    flow.resume(Input::Start, 0);
    // Made longer than `lease_wait` ago (and a second of rounding).
    let age = LEASE_WAIT + Duration::from_secs(2);
    expect!(
        flow.resume(wait(5, age), 0),
        Step::Far(FarOp::DeleteIfCas { cas: Cas(5), .. })
    );
    // Someone else deleted it first: no takeover counted.
    flow.resume(far(FarReply::Done(Ok(Some(false)))), 0);
    assert_eq!(get(&counters.lease_takeovers), 0);
}

#[test]
fn a_second_abandoned_placeholder_loads_here_and_stores_nothing() {
    let counters = Counters::default();
    let mut flow = Load::<String>::new(ctx(&counters), "k", None);
    let old = LEASE_WAIT + Duration::from_secs(2);
    flow.resume(Input::Start, 0);
    flow.resume(wait(5, old), 0);
    flow.resume(far(FarReply::Done(Ok(Some(true)))), 0);
    // The new placeholder (another waiter's) looks old too: no second
    // takeover, no second wait.
    expect!(flow.resume(wait(8, old), 0), Step::Load);
    assert_eq!(get(&counters.lease_timeouts), 1);
    assert!(flow.take_held().is_none(), "it holds no lease");
    let (entry, ttl) = done(flow.resume(Input::Loaded("mine".to_string()), 0));
    assert_eq!(
        (entry.value.as_str(), entry.cas, ttl),
        ("mine", 0, NEAR_TTL)
    );
}

#[test]
fn a_refused_store_keeps_the_value_nowhere_and_releases_nothing() {
    let counters = Counters::default();
    let mut flow = Load::<String>::new(ctx(&counters), "k", None);
    flow.resume(Input::Start, 0);
    flow.resume(won(6, None), 0);
    flow.resume(no_fallback(), 0);
    flow.resume(Input::Loaded("v".to_string()), 0);
    // The placeholder was replaced (a write or removal meanwhile).
    let refused = far(FarReply::Stored(Ok(Some(None))));
    let (entry, ttl) = done(flow.resume(refused, 0));
    assert_eq!((entry.value.as_str(), ttl), ("v", Duration::ZERO));
}

#[test]
fn a_store_that_failed_releases_the_placeholder() {
    let counters = Counters::default();
    let mut flow = Load::<String>::new(ctx(&counters), "k", None);
    flow.resume(Input::Start, 0);
    flow.resume(won(6, None), 0);
    flow.resume(no_fallback(), 0);
    flow.resume(Input::Loaded("v".to_string()), 0);
    let failed = far(FarReply::Stored(Err(Failure::Refused)));
    expect!(
        flow.resume(failed, 0),
        Step::Far(FarOp::DeleteIfCas {
            key: "k",
            cas: Cas(6)
        })
    );
    let (entry, ttl) = done(flow.resume(far(FarReply::Done(Ok(Some(true)))), 0));
    assert_eq!((entry.value.as_str(), entry.cas, ttl), ("v", 0, NEAR_TTL));
}

#[test]
fn a_far_failure_loads_without_a_store() {
    for reply in [Ok(None), Err(Failure::Owed), Err(Failure::Refused)] {
        let counters = Counters::default();
        let mut flow = Load::<String>::new(ctx(&counters), "k", None);
        flow.resume(Input::Start, 0);
        expect!(flow.resume(far(FarReply::Lease(reply)), 0), Step::Load);
        let (entry, ttl) = done(flow.resume(Input::Loaded("v".to_string()), 3));
        assert_eq!((entry.value.as_str(), entry.cas, ttl), ("v", 0, NEAR_TTL));
        assert_eq!(entry.checked, 3, "checked when loaded");
    }
}

#[test]
fn a_failed_loader_leaves_the_placeholder_to_release() {
    let counters = Counters::default();
    let mut flow = Load::<String>::new(ctx(&counters), "k", None);
    flow.resume(Input::Start, 0);
    flow.resume(won(6, None), 0);
    expect!(flow.resume(no_fallback(), 0), Step::Load);
    // The driver drops the flow: what it holds is released first.
    let mut held = flow.take_held().expect("the placeholder is held");
    expect!(
        Flow::<String>::resume(&mut held, Input::Start, 0),
        Step::Far(FarOp::DeleteIfCas {
            key: "k",
            cas: Cas(6)
        })
    );
    expect!(
        Flow::<String>::resume(&mut held, far(FarReply::Done(Ok(Some(true)))), 0),
        Step::Done(())
    );
    assert!(flow.take_held().is_none(), "taken once");
}

#[test]
fn a_stale_item_is_recomputed_and_its_token_given_back_on_failure() {
    let counters = Counters::default();
    let mut flow = Load::<String>::new(ctx(&counters), "k", None);
    flow.resume(Input::Start, 0);
    // Won with a previous value: a stale item, no fallback read.
    expect!(flow.resume(won(6, Some("old")), 0), Step::Load);
    assert_eq!(get(&counters.far_misses), 0);
    let mut held = flow.take_held().expect("the token is held");
    expect!(
        Flow::<String>::resume(&mut held, Input::Start, 0),
        Step::Far(FarOp::PeekLeaseCas { key: "k" })
    );
    let stale = Lease::Hit {
        value: (),
        cas: Cas(6),
        stale: true,
        ttl: Some(Duration::from_secs(4)),
    };
    let peeked = far(FarReply::PeekCas(Ok(Some(Some(stale)))));
    expect!(
        Flow::<String>::resume(&mut held, peeked, 0),
        Step::Far(FarOp::InvalidateIfCas { key: "k", cas: Cas(6), stale_for })
            if stale_for == Duration::from_secs(4)
    );
}

#[test]
fn a_fallback_value_fills_the_placeholder_and_no_loader_runs() {
    let counters = Counters::default();
    let mut flow = Load::<String>::new(ctx(&counters), "k", None);
    flow.resume(Input::Start, 0);
    flow.resume(won(6, None), 0);
    let item = MetaItem {
        value: "old pool".to_string(),
        cas: Cas(1),
        ttl: Some(Duration::from_secs(20)),
    };
    expect!(
        flow.resume(far(FarReply::Item(Ok(Some(Some(item))))), 0),
        Step::Far(FarOp::Cas { key: "k", ttl, cas: Cas(6), .. }) if ttl == Duration::from_secs(20)
    );
    let (entry, ttl) = done(flow.resume(far(FarReply::Done(Ok(Some(true)))), 0));
    assert_eq!(
        (entry.value.as_str(), ttl),
        ("old pool", Duration::from_secs(20))
    );
    assert_eq!(get(&counters.loader_calls), 0);
    assert_eq!(get(&counters.fallback_hits), 1);
}

#[test]
fn an_undecodable_value_is_cleared_once_then_loaded_locally() {
    let counters = Counters::default();
    let mut flow = Load::<String>::new(ctx(&counters), "k", None);
    flow.resume(Input::Start, 0);
    let codec = || far(FarReply::Lease(Err(Failure::Codec)));
    expect!(
        flow.resume(codec(), 0),
        Step::Far(FarOp::PeekLeaseCas { .. })
    );
    let hit = Lease::Hit {
        value: (),
        cas: Cas(3),
        stale: false,
        ttl: None,
    };
    expect!(
        flow.resume(far(FarReply::PeekCas(Ok(Some(Some(hit))))), 0),
        Step::Far(FarOp::DeleteIfCas { cas: Cas(3), .. })
    );
    expect!(
        flow.resume(far(FarReply::Done(Ok(Some(true)))), 0),
        Step::Far(FarOp::GetOrLease { .. })
    );
    // Another writer's format again: load here, store nothing.
    expect!(flow.resume(codec(), 0), Step::Load);
    let (_, ttl) = done(flow.resume(Input::Loaded("v".to_string()), 0));
    assert_eq!(ttl, NEAR_TTL);
}

#[test]
fn a_compute_with_a_token_stores_over_the_stale_item() {
    let counters = Counters::default();
    let mut flow = Load::<String>::compute(ctx(&counters), "k", Store::Stale(Cas(4)));
    expect!(flow.resume(Input::Start, 0), Step::Load);
    expect!(
        flow.resume(Input::Loaded("v".to_string()), 0),
        Step::Far(FarOp::CompareAndSet { cas: Cas(4), .. })
    );
    // Not stored (breaker open): the token is handed back.
    expect!(
        flow.resume(far(FarReply::Stored(Ok(None))), 0),
        Step::Far(FarOp::PeekLeaseCas { .. })
    );
}

#[test]
fn a_read_serves_hits_stale_values_and_fallback_copies() {
    let counters = Counters::default();
    let read = |peeked: Reply<Option<Lease<String>>>, then: Vec<FarReply<String>>| {
        let mut flow = Read::new(ctx(&counters), "k");
        expect!(
            flow.resume(Input::Start, 0),
            Step::Far(FarOp::PeekLease { key: "k" })
        );
        let mut next = flow.advance(far(FarReply::Peek(peeked)), 0);
        for reply in then {
            assert_eq!(next, Next::Far);
            next = flow.advance(far(reply), 0);
        }
        match next {
            Next::Done(out) => out,
            other => panic!("not done: {other:?}"),
        }
    };
    let hit = |stale| Lease::Hit {
        value: "v".to_string(),
        cas: Cas(2),
        stale,
        ttl: Some(Duration::from_secs(100)),
    };
    let fresh = read(Ok(Some(Some(hit(false)))), vec![]).unwrap();
    assert_eq!(
        fresh.keep,
        Some(Keep {
            cas: 2,
            ttl: NEAR_TTL
        })
    );
    let stale = read(Ok(Some(Some(hit(true)))), vec![]).unwrap();
    assert_eq!(
        stale.keep,
        Some(Keep {
            cas: 0,
            ttl: STALE_NEAR_TTL
        })
    );
    assert_eq!(read(Err(Failure::Owed), vec![]), None);

    // A stale item's token taken by a read: handed back, previous served.
    let token = Lease::Won {
        previous: Some("old".to_string()),
        cas: Cas(3),
    };
    let served = read(Ok(Some(Some(token))), vec![FarReply::PeekCas(Ok(None))]).unwrap();
    assert_eq!(
        served,
        Served {
            value: "old".to_string(),
            keep: None
        }
    );

    // A miss read from the fallback pool and copied by `add`: kept near,
    // unless the copy was refused (the key was written meanwhile).
    for (stored, kept) in [(Some(true), true), (None, true), (Some(false), false)] {
        let item = MetaItem {
            value: "fb".to_string(),
            cas: Cas(1),
            ttl: Some(Duration::from_secs(20)),
        };
        let copied = FarReply::Done(Ok(stored));
        let served = read(
            Ok(Some(None)),
            vec![FarReply::Item(Ok(Some(Some(item)))), copied],
        )
        .unwrap();
        assert_eq!(served.value, "fb");
        assert_eq!(served.keep.is_some(), kept, "{stored:?}");
    }
    assert_eq!(get(&counters.far_misses), 3);
}

#[test]
fn a_revalidation_keeps_an_unchanged_copy_and_drops_a_changed_one() {
    let counters = Counters::default();
    let check = |peeked: Reply<Option<Lease<()>>>| {
        let mut flow = Revalidate::new(ctx(&counters), "k", 5);
        expect!(
            Flow::<String>::resume(&mut flow, Input::Start, 0),
            Step::Far(FarOp::PeekLeaseCas { key: "k" })
        );
        match Flow::<String>::resume(&mut flow, far(FarReply::PeekCas(peeked)), 0) {
            Step::Done(out) => out,
            other => panic!("not done: {other:?}"),
        }
    };
    let hit = |cas, stale| Lease::Hit {
        value: (),
        cas: Cas(cas),
        stale,
        ttl: Some(Duration::from_secs(9)),
    };
    let left = Some(Duration::from_secs(9));
    assert_eq!(
        check(Ok(Some(Some(hit(5, false))))),
        Revalidated::Keep(left)
    );
    assert_eq!(check(Ok(Some(Some(hit(6, false))))), Revalidated::Changed);
    assert_eq!(check(Ok(Some(Some(hit(5, true))))), Revalidated::Changed);
    assert_eq!(check(Ok(Some(None))), Revalidated::Changed);
    let token = Lease::Won {
        previous: None,
        cas: Cas(5),
    };
    assert_eq!(check(Ok(Some(Some(token)))), Revalidated::WonStale(Cas(5)));
    assert_eq!(check(Err(Failure::Owed)), Revalidated::Keep(None));
    assert_eq!(get(&counters.revalidations), 6);
    assert_eq!(get(&counters.revalidations_changed), 4);
}

#[test]
fn a_give_back_deletes_a_stale_placeholder_only() {
    let mut flow = GiveBack::new("k", Cas(4));
    Flow::<String>::resume(&mut flow, Input::Start, 0);
    expect!(
        Flow::<String>::resume(
            &mut flow,
            far(FarReply::PeekCas(Ok(Some(Some(Lease::Wait))))),
            0
        ),
        Step::Far(FarOp::DeleteIfCas {
            key: "k",
            cas: Cas(4)
        })
    );
    // A fresh value written since: left alone.
    let mut flow = GiveBack::new("k", Cas(4));
    Flow::<String>::resume(&mut flow, Input::Start, 0);
    let fresh = Lease::Hit {
        value: (),
        cas: Cas(8),
        stale: false,
        ttl: None,
    };
    expect!(
        Flow::<String>::resume(&mut flow, far(FarReply::PeekCas(Ok(Some(Some(fresh))))), 0),
        Step::Done(())
    );
}

#[test]
fn an_insert_the_server_refused_deletes_the_older_copy() {
    let value = "v".to_string();
    let mut flow = Insert::new("k", &value, FAR_TTL);
    expect!(
        flow.resume(Input::Start, 0),
        Step::Far(FarOp::SetReturningCas {
            key: "k",
            ttl: FAR_TTL,
            ..
        })
    );
    expect!(
        flow.resume(far(FarReply::Set(Err(Failure::Refused))), 0),
        Step::Far(FarOp::Delete {
            pool: Pool::Far,
            key: "k"
        })
    );
    // The delete refused too: the client is told to owe it.
    expect!(
        flow.resume(far(FarReply::Done(Err(Failure::Refused))), 0),
        Step::Far(FarOp::Owe {
            pool: Pool::Far,
            key: "k"
        })
    );
    expect!(flow.resume(far(FarReply::Owed), 0), Step::Done(None));

    let mut flow = Insert::new("k", &value, FAR_TTL);
    flow.resume(Input::Start, 0);
    expect!(
        flow.resume(far(FarReply::Set(Ok(Some(Cas(12))))), 0),
        Step::Done(Some(Cas(12)))
    );
    // Failed with doubt: the client recorded it, nothing more to send.
    let mut flow = Insert::new("k", &value, FAR_TTL);
    flow.resume(Input::Start, 0);
    expect!(
        flow.resume(far(FarReply::Set(Err(Failure::Owed))), 0),
        Step::Done(None)
    );
}

#[test]
fn a_remove_marks_stale_then_deletes_from_the_fallback_pool() {
    let mut flow = Remove::new("k", Some(Duration::from_secs(3)));
    let mut step = |input| Flow::<String>::advance(&mut flow, input, 0);
    assert_eq!(step(Input::Start), Next::Far);
    assert_eq!(step(far(FarReply::Done(Ok(Some(true))))), Next::Far);
    // Skipped on the fallback pool: owed there.
    assert_eq!(step(far(FarReply::Done(Ok(None)))), Next::Far);
    assert_eq!(step(far(FarReply::Owed)), Next::Done(()));

    let mut flow = Remove::new("k", Some(Duration::from_secs(3)));
    expect!(
        Flow::<String>::resume(&mut flow, Input::Start, 0),
        Step::Far(FarOp::Invalidate { key: "k", .. })
    );
    expect!(
        Flow::<String>::resume(&mut flow, far(FarReply::Done(Ok(Some(true)))), 0),
        Step::Far(FarOp::Delete {
            pool: Pool::Fallback,
            key: "k"
        })
    );
    expect!(
        Flow::<String>::resume(&mut flow, far(FarReply::Done(Ok(None))), 0),
        Step::Far(FarOp::Owe {
            pool: Pool::Fallback,
            key: "k"
        })
    );
}

#[test]
fn a_refresh_asks_for_the_recache_token_and_stores_over_it_when_won() {
    let counters = Counters::default();
    let window = Duration::from_secs(60);
    let mut flow = Load::<String>::refresh(ctx(&counters), "k", window);
    expect!(
        flow.resume(Input::Start, 0),
        Step::Far(FarOp::GetOrLease { key: "k", lease_ttl: LEASE_TTL, recache: Some(w) })
            if w == window
    );
    // memcached handed this process the token of the value about to expire.
    expect!(flow.resume(won(8, Some("old")), 0), Step::Load);
    expect!(
        flow.resume(Input::Loaded("new".to_string()), 0),
        Step::Far(FarOp::CompareAndSet { key: "k", value, cas: Cas(8), .. }) if value == "new"
    );
    let (entry, _) = done(flow.resume(far(FarReply::Stored(Ok(Some(Some(Cas(9)))))), 1));
    assert_eq!((entry.value.as_str(), entry.cas), ("new", 9));
    assert_eq!(get(&counters.loader_calls), 1);
}

#[test]
fn a_refresh_takes_a_far_value_another_process_refreshed() {
    let counters = Counters::default();
    let mut flow = Load::<String>::refresh(ctx(&counters), "k", Duration::from_secs(60));
    flow.resume(Input::Start, 0);
    let fresh = Lease::Hit {
        value: "theirs".to_string(),
        cas: Cas(12),
        stale: false,
        ttl: Some(Duration::from_secs(3000)),
    };
    let (entry, _) = done(flow.resume(lease(fresh, 12, Some(Duration::from_secs(3000))), 0));
    assert_eq!(entry.value, "theirs");
    assert_eq!(
        get(&counters.loader_calls),
        0,
        "no load: the far value is new"
    );
}

#[test]
fn a_refresh_does_not_wait_for_another_process_lease() {
    let counters = Counters::default();
    let mut flow = Load::<String>::refresh(ctx(&counters), "k", Duration::from_secs(60));
    flow.resume(Input::Start, 0);
    // The far item is gone and being computed elsewhere: load here, now.
    expect!(flow.resume(wait(5, Duration::ZERO), 0), Step::Load);
    let (entry, _) = done(flow.resume(Input::Loaded("mine".to_string()), 0));
    assert_eq!(entry.value, "mine");
    assert_eq!(get(&counters.lease_waits), 0);
    assert!(
        flow.take_held().is_none(),
        "nothing stored far, nothing held"
    );
}
