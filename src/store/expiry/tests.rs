//! The encoding at its boundaries, and a cache whose shard rebases several
//! times (a `MockClock` moved 13 days at a time): entries expire exactly
//! when their code says, to the millisecond, and `keep_expired` still keeps
//! them for as long as it says.

use std::time::Duration;

use super::*;
use crate::clock::MockClock;
use crate::store::Cache;

const BASE: u64 = 1;

#[test]
fn never_is_zero_and_stays_zero() {
    assert_eq!(encode(0, BASE), 0);
    assert_eq!(decode(0, BASE), 0);
    assert_eq!(shift(0, 100 * SECOND), 0);
}

#[test]
fn milliseconds_round_up_and_whole_ones_are_exact() {
    assert_eq!(decode(encode(BASE + 10 * MS, BASE), BASE), BASE + 10 * MS);
    assert_eq!(decode(encode(BASE + 1, BASE), BASE), BASE + MS);
    assert_eq!(
        decode(encode(BASE + 10 * MS + 1, BASE), BASE),
        BASE + 11 * MS
    );
    assert_eq!(
        decode(encode(BASE + 11 * MS - 1, BASE), BASE),
        BASE + 11 * MS
    );
    for exp in [
        BASE + 1,
        BASE + 999_999,
        BASE + 7 * MS + 3,
        BASE + MAX_MS * MS,
    ] {
        let got = decode(encode(exp, BASE), BASE);
        assert!(got >= exp && got - exp < MS, "{exp} -> {got}");
    }
}

#[test]
fn an_expiry_at_or_before_the_base_is_past_but_not_never() {
    assert_eq!(encode(BASE, BASE), AT_BASE);
    assert_eq!(encode(5, 100), AT_BASE);
    assert_eq!(decode(AT_BASE, 100), 100);
}

#[test]
fn past_the_millisecond_range_the_unit_is_the_second() {
    let last_ms = BASE + MAX_MS * MS;
    assert_eq!(encode(last_ms, BASE), MAX_MS as u32);
    let next = encode(last_ms + 1, BASE);
    assert_eq!(next & SECONDS, SECONDS);
    let got = decode(next, BASE);
    assert!(got > last_ms && got - (last_ms + 1) < SECOND);
    assert_eq!((got - BASE) % SECOND, 0);
    // A year: to the second, rounded up.
    let year = BASE + 365 * 86_400 * SECOND + 1;
    assert_eq!(decode(encode(year, BASE), BASE), year - 1 + SECOND);
    // Past the second range, and u64::MAX (`Duration::MAX`'s TTL): the end.
    let last_s = BASE + MAX_SECONDS * SECOND;
    assert_eq!(decode(encode(last_s, BASE), BASE), last_s);
    assert_eq!(encode(last_s + 1, BASE), END);
    assert_eq!(encode(u64::MAX, BASE), END);
    assert_eq!(decode(END, BASE), u64::MAX);
    assert_eq!(decode(END, u64::MAX - 3), u64::MAX);
}

#[test]
fn decoding_saturates_rather_than_wrapping() {
    assert_eq!(decode(MAX_MS as u32, u64::MAX - 5), u64::MAX);
    assert_eq!(decode(SECONDS | 7, u64::MAX - 5), u64::MAX);
}

#[test]
fn a_rebase_keeps_future_expiries_and_clamps_past_ones() {
    let delta = 1_000 * SECOND;
    let new = BASE + delta;
    // Future, in either unit: the same instant against the new base.
    for exp in [
        new + 1,
        new + 5 * MS,
        new + 30 * 86_400 * SECOND,
        new - 3 * MS + 9 * SECOND,
    ] {
        let code = encode(exp, BASE);
        assert_eq!(decode(shift(code, delta), new), decode(code, BASE), "{exp}");
    }
    let far = encode(BASE + 40 * 365 * 86_400 * SECOND, BASE);
    assert_eq!(decode(shift(far, delta), new), decode(far, BASE));
    // Exactly at the new base, and before it: at the base (past, not 0).
    assert_eq!(shift(encode(new, BASE), delta), AT_BASE);
    assert_eq!(shift(encode(new - MS, BASE), delta), AT_BASE);
    assert_eq!(shift(SECONDS | 3, delta), AT_BASE);
    assert_eq!(shift(AT_BASE, delta), AT_BASE);
    // Never and the end stay.
    assert_eq!(shift(END, delta), END);
}

#[test]
fn a_rebase_is_due_after_2_30_ms_and_leaves_2_29_behind() {
    assert_eq!(rebase_by(BASE, BASE + REBASE_AFTER - 1), None);
    let now = BASE + REBASE_AFTER + 1234 * MS;
    let delta = rebase_by(BASE, now).unwrap();
    assert_eq!(delta % SECOND, 0);
    let behind = now - (BASE + delta);
    assert!((KEEP_BEHIND..KEEP_BEHIND + SECOND).contains(&behind));
    // Then a TTL under 2^30 ms still fits the millisecond range.
    assert!(encode(now + REBASE_AFTER - MS, BASE + delta) & SECONDS == 0);
}

const DAY: Duration = Duration::from_secs(86_400);

/// A one-shard cache on `clock`, keeping expired entries for `keep`.
fn one_shard(clock: &MockClock, keep: Option<Duration>) -> Cache<u32, u32> {
    let builder = Cache::builder()
        .max_entries(1_000)
        .shards(1)
        .clock(clock.clone());
    match keep {
        Some(keep) => builder.keep_expired(keep).build(),
        None => builder.build(),
    }
}

/// The shard's base (clock ns + 1).
fn base(cache: &Cache<u32, u32>) -> u64 {
    cache.inner.shards[0].base.get()
}

/// A write with a TTL: what rebases a shard that is due.
fn poke(cache: &Cache<u32, u32>) {
    cache.insert_with_ttl(u32::MAX, 0, Duration::from_secs(1));
}

#[test]
fn entries_expire_to_the_millisecond_across_rebases() {
    let clock = MockClock::new();
    let cache = one_shard(&clock, None);
    // A first rebase, so the base sits ~6.2 days behind `now` (whole
    // seconds): TTLs of 20 days and more then fall in the second range.
    clock.advance(13 * DAY);
    poke(&cache);
    let first = base(&cache);
    assert!(first > 1, "13 days in, a write with a TTL rebases");
    assert_eq!((first - 1) % SECOND, 0, "the base moves by whole seconds");
    let at = Duration::from_nanos(first - 1);
    assert!(13 * DAY - at >= Duration::from_millis(1 << 29));
    let ms = Duration::from_millis;
    // (key, TTL, when it expires, from now): whole milliseconds exactly,
    // others rounded up; in the second range, to the second.
    let cases: [(u32, Duration, Duration); 9] = [
        (1, ms(1), ms(1)),
        (2, Duration::from_micros(2_500), ms(3)),
        (3, Duration::from_nanos(1), ms(1)),
        (
            4,
            Duration::from_secs(1) + ms(7),
            Duration::from_secs(1) + ms(7),
        ),
        (5, 11 * DAY + ms(3), 11 * DAY + ms(3)),
        (6, 20 * DAY, 20 * DAY),
        (7, 20 * DAY + ms(1), 20 * DAY + Duration::from_secs(1)),
        (8, 40 * DAY + ms(400), 40 * DAY + Duration::from_secs(1)),
        (9, 2 * DAY + ms(5), 2 * DAY + ms(5)),
    ];
    for &(k, ttl, _) in &cases {
        cache.insert_with_ttl(k, k, ttl);
    }
    cache.insert(100, 100);
    cache.insert_with_ttl(101, 101, Duration::MAX);
    let mut order = cases.to_vec();
    order.sort_by_key(|&(.., at)| at);
    let mut elapsed = Duration::ZERO;
    let mut bases = vec![first];
    for (i, &(k, _, expires)) in order.iter().enumerate() {
        // Up to just before it, 13 days at most per step, a write with a
        // TTL after each (so the shard rebases on the way).
        let just_before = expires - Duration::from_nanos(1);
        while elapsed < just_before {
            let step = (just_before - elapsed).min(13 * DAY);
            clock.advance(step);
            elapsed += step;
            poke(&cache);
            if base(&cache) != *bases.last().unwrap() {
                bases.push(base(&cache));
            }
        }
        for &(later, _, at) in &order[i..] {
            if at > elapsed {
                assert_eq!(cache.get(&later), Some(later), "key {later} at {elapsed:?}");
            }
        }
        clock.advance(Duration::from_nanos(1));
        elapsed += Duration::from_nanos(1);
        assert_eq!(cache.get(&k), None, "key {k} past {expires:?}");
        cache.check_invariants().unwrap();
    }
    assert!(bases.len() >= 4, "rebased {} times", bases.len());
    assert_eq!(cache.get(&100), Some(100), "no TTL: never expires");
    assert_eq!(
        cache.get(&101),
        Some(101),
        "Duration::MAX: never in practice"
    );
}

#[test]
fn keep_expired_keeps_to_the_millisecond_across_a_rebase() {
    let clock = MockClock::new();
    let cache = one_shard(&clock, Some(DAY));
    clock.advance(13 * DAY);
    poke(&cache);
    let first = base(&cache);
    // Expires 12 days and 5 ms on: kept one day past that.
    cache.insert_with_ttl(1, 1, 12 * DAY + Duration::from_millis(5));
    // Expires at once, more than the grace before the next rebase's base.
    cache.insert_with_ttl(2, 2, Duration::from_millis(1));
    clock.advance(13 * DAY);
    poke(&cache);
    assert!(base(&cache) > first, "rebased");
    assert_eq!(cache.get(&1), None, "expired");
    assert_eq!(
        cache.get_stale(&1),
        Some((1, DAY - Duration::from_millis(5))),
        "kept, its age exact"
    );
    assert_eq!(cache.get_stale(&2), None, "13 days past: beyond the grace");
    clock.advance(Duration::from_millis(5) - Duration::from_nanos(1));
    assert_eq!(
        cache.get_stale(&1),
        Some((1, DAY - Duration::from_nanos(1)))
    );
    clock.advance(Duration::from_nanos(1));
    assert_eq!(cache.get_stale(&1), None, "the grace is over");
    cache.check_invariants().unwrap();
}
