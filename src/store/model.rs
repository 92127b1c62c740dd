//! Model-based checking of [`Cache`]: run a list of operations against the
//! cache and against a `BTreeMap` model, compare every answer, and check the
//! structure's invariants after each step. Shared by the unit tests (random op
//! lists) and the `store` fuzz target (`Arbitrary` op lists).
//!
//! The model cannot predict which entry eviction picks, so:
//! * with room for every key (`roomy`), the cache must equal the model exactly;
//! * otherwise a value the cache returns must be the model's current value,
//!   a key the cache lost must have been evicted (counted in its stats), and
//!   the cache's contents must always be a subset of the model.

use std::collections::BTreeMap;
use std::time::Duration;

use super::{Cache, MockClock};

/// One step.
#[derive(Debug, Clone)]
#[cfg_attr(fuzzing, derive(arbitrary::Arbitrary))]
pub enum Op {
    /// `insert(key, value)`.
    Insert(u8, u16),
    /// `insert_with_ttl(key, value, ms)`.
    InsertTtl(u8, u16, u8),
    /// `get(key)`.
    Get(u8),
    /// `peek(key)`.
    Peek(u8),
    /// `remove(key)`.
    Remove(u8),
    /// `get_or_insert_with(key, || value)`.
    Load(u8, u16),
    /// `try_get_or_insert_with(key, || Err(..))`.
    LoadFails(u8),
    /// Advance the mock clock by this many milliseconds.
    Advance(u8),
    /// Advance the mock clock 13 days: past the point where the next write
    /// with a TTL rebases its shard's expiry codes (`store::expiry`).
    Leap,
    /// `retain(|k, _| k % (n + 2) != 0)`.
    Retain(u8),
    /// `get_stale(key)`: an expired entry kept by `keep_expired`.
    GetStale(u8),
    /// `clear()`.
    Clear,
}

/// The cache's shape for a run.
#[derive(Debug, Clone, Copy)]
#[cfg_attr(fuzzing, derive(arbitrary::Arbitrary))]
pub struct Shape {
    /// Entry bound (or weight bound / 4 when weighted).
    pub capacity: u16,
    /// log2 of the shard count.
    pub shard_bits: u8,
    /// Bound by weight (value % 13 + 1) instead of count.
    pub weighted: bool,
    /// `keep_expired`, in milliseconds (0: off).
    pub keep_expired_ms: u8,
}

fn weight_of(v: u16) -> u64 {
    u64::from(v % 13) + 1
}

/// Runs `ops` and reports the first disagreement or broken invariant.
pub fn run(shape: Shape, ops: &[Op]) -> Result<(), String> {
    let clock = MockClock::new();
    let shards = 1usize << (shape.shard_bits % 4);
    let cap = usize::from(shape.capacity);
    let grace = u64::from(shape.keep_expired_ms);
    let mut builder = Cache::<u8, u16>::builder()
        .shards(shards)
        .clock(clock.clone());
    if grace > 0 {
        builder = builder.keep_expired(Duration::from_millis(grace));
    }
    builder = if shape.weighted {
        builder
            .max_weight(cap as u64 * 4)
            .weigher(|_, v| weight_of(*v))
    } else {
        builder.max_entries(cap)
    };
    let cache = builder.build();
    // Every u8 key fits (per shard, so with a margin for uneven spreading).
    let roomy = !shape.weighted && cap / shards >= 256;
    let mut model: BTreeMap<u8, (u16, Option<u64>)> = BTreeMap::new();
    let mut now_ms = 0u64;
    let live = |m: &BTreeMap<u8, (u16, Option<u64>)>, k: u8, now: u64| -> Option<u16> {
        m.get(&k)
            .and_then(|&(v, exp)| exp.is_none_or(|e| now < e).then_some(v))
    };
    // An expired entry `keep_expired` still keeps: its value and age (ms).
    let kept = |m: &BTreeMap<u8, (u16, Option<u64>)>, k: u8, now: u64| -> Option<(u16, u64)> {
        let &(v, exp) = m.get(&k)?;
        let e = exp?;
        (grace > 0 && now >= e && now < e + grace).then(|| (v, now - e))
    };

    for (step, op) in ops.iter().enumerate() {
        let fail = |msg: String| Err(format!("step {step} {op:?}: {msg}"));
        match *op {
            Op::Insert(k, v) | Op::InsertTtl(k, v, _) => {
                let ttl = match *op {
                    Op::InsertTtl(_, _, ms) => Some(u64::from(ms)),
                    _ => None,
                };
                match ttl {
                    Some(ms) => cache.insert_with_ttl(k, v, Duration::from_millis(ms)),
                    None => cache.insert(k, v),
                }
                let expiry = ttl.map(|ms| now_ms + ms);
                if let Err(e) = learn_admission(&cache, &shape, k, v, expiry, now_ms, &mut model) {
                    return fail(e);
                }
                // Born expired, it may still be kept (if it was admitted).
                if grace > 0 && expiry.is_some_and(|e| e <= now_ms) {
                    if let Some((held, _)) = cache.get_stale(&k) {
                        if held != v {
                            return fail(format!("kept {held} after writing {v}"));
                        }
                        model.insert(k, (v, expiry));
                    }
                }
            }
            Op::Get(k) | Op::Peek(k) => {
                let got = if matches!(op, Op::Get(_)) {
                    cache.get(&k)
                } else {
                    cache.peek(&k)
                };
                let want = live(&model, k, now_ms);
                match (got, want) {
                    (Some(g), Some(w)) if g == w => {}
                    (None, None) => {}
                    (None, Some(_)) if !roomy => {
                        model.remove(&k);
                    }
                    (g, w) => return fail(format!("cache {g:?}, model {w:?}")),
                }
            }
            Op::Remove(k) => {
                let got = cache.remove(&k);
                let want = live(&model, k, now_ms);
                model.remove(&k);
                // Without room, the entry may have been evicted already.
                if got != want && (roomy || got.is_some()) {
                    return fail(format!("removed {got:?}, model {want:?}"));
                }
            }
            Op::Load(k, v) => {
                let got = cache.get_or_insert_with(k, || v);
                match live(&model, k, now_ms) {
                    Some(w) if w == got => {}
                    Some(_) if roomy => return fail(format!("loaded {got}, model had a value")),
                    _ => {
                        if got != v {
                            return fail(format!("loader value {v} not returned, got {got}"));
                        }
                        if let Err(e) =
                            learn_admission(&cache, &shape, k, v, None, now_ms, &mut model)
                        {
                            return fail(e);
                        }
                    }
                }
            }
            Op::LoadFails(k) => {
                let got = cache.try_get_or_insert_with(k, || Err::<u16, ()>(()));
                match (got, live(&model, k, now_ms)) {
                    (Ok(g), Some(w)) if g == w => {}
                    (Err(_), None) => {}
                    (Err(_), Some(_)) if !roomy => {
                        model.remove(&k);
                    }
                    (g, w) => return fail(format!("cache {g:?}, model {w:?}")),
                }
            }
            Op::Advance(ms) => {
                clock.advance(Duration::from_millis(u64::from(ms)));
                now_ms += u64::from(ms);
            }
            Op::Leap => {
                const LEAP_MS: u64 = 13 * 86_400_000;
                clock.advance(Duration::from_millis(LEAP_MS));
                now_ms += LEAP_MS;
            }
            Op::Retain(n) => {
                let m = u16::from(n) + 2;
                cache.retain(|k, _| u16::from(*k) % m != 0);
                // `retain` also ends every expired entry, kept ones too.
                model.retain(|k, &mut (_, exp)| {
                    u16::from(*k) % m != 0 && exp.is_none_or(|e| now_ms < e)
                });
            }
            Op::GetStale(k) => {
                let got = cache
                    .get_stale(&k)
                    .map(|(v, age)| (v, age.as_millis() as u64));
                let want = kept(&model, k, now_ms);
                match (got, want) {
                    (g, w) if g == w => {}
                    // Evicted (kept entries go first).
                    (None, Some(_)) if !roomy => {
                        model.remove(&k);
                    }
                    (g, w) => return fail(format!("stale {g:?}, model {w:?}")),
                }
            }
            Op::Clear => {
                cache.clear();
                model.clear();
            }
        }
        // Structure and bounds.
        cache
            .check_invariants()
            .map_err(|e| format!("step {step} {op:?}: {e}"))?;
        if shape.weighted {
            if cache.weight() > cap as u64 * 4 {
                return Err(format!(
                    "step {step}: weight {} over {}",
                    cache.weight(),
                    cap * 4
                ));
            }
        } else if cache.len() > cap {
            return Err(format!("step {step}: {} entries over {cap}", cache.len()));
        }
        // Contents: a subset of the model (equal to it when nothing can be evicted).
        let mut seen = 0;
        for (k, v) in cache.iter() {
            seen += 1;
            if live(&model, k, now_ms) != Some(v) {
                return Err(format!(
                    "step {step} {op:?}: cache holds {k} = {v}, model {:?}",
                    model.get(&k)
                ));
            }
        }
        let expected = model
            .keys()
            .filter(|&&k| live(&model, k, now_ms).is_some())
            .count();
        if roomy && seen != expected {
            return Err(format!(
                "step {step} {op:?}: cache has {seen} live entries, model {expected}"
            ));
        }
        // Forget model entries the cache evicted, so later answers compare fairly.
        if !roomy && seen != expected {
            let present: std::collections::BTreeSet<u8> = cache.iter().map(|(k, _)| k).collect();
            // (Expired entries are not listed: `GetStale` checks kept ones.)
            model
                .retain(|k, &mut (_, exp)| present.contains(k) || exp.is_some_and(|e| e <= now_ms));
        }
    }
    Ok(())
}

/// After writing `k = v`: the cache admitted it iff it holds it now (a new
/// entry is never its own insert's victim). Anything within
/// `max_entry_weight` must have been admitted.
fn learn_admission(
    cache: &Cache<u8, u16>,
    shape: &Shape,
    k: u8,
    v: u16,
    expiry: Option<u64>,
    now_ms: u64,
    model: &mut BTreeMap<u8, (u16, Option<u64>)>,
) -> Result<(), String> {
    let born_dead = expiry.is_some_and(|e| e <= now_ms);
    let held = cache.peek(&k);
    let must_fit =
        shape.capacity > 0 && (!shape.weighted || weight_of(v) <= cache.max_entry_weight());
    match held {
        Some(h) if h == v && !born_dead => {
            model.insert(k, (v, expiry));
            Ok(())
        }
        None if born_dead || !must_fit => {
            model.remove(&k);
            Ok(())
        }
        other => Err(format!(
            "after writing {k} = {v}: cache holds {other:?} (must fit: {must_fit})"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// xorshift64*: deterministic op lists without a dependency.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    fn random_ops(rng: &mut Rng, len: usize, keys: u64) -> Vec<Op> {
        (0..len)
            .map(|_| {
                let k = rng.below(keys) as u8;
                let v = rng.next() as u16;
                match rng.below(100) {
                    0..=29 => Op::Insert(k, v),
                    30..=37 => Op::InsertTtl(k, v, rng.below(50) as u8),
                    38..=60 => Op::Get(k),
                    61..=64 => Op::GetStale(k),
                    65..=69 => Op::Peek(k),
                    70..=79 => Op::Remove(k),
                    80..=87 => Op::Load(k, v),
                    88..=89 => Op::LoadFails(k),
                    90..=95 => Op::Advance(rng.below(20) as u8),
                    96 => Op::Leap,
                    97..=98 => Op::Retain(rng.below(5) as u8),
                    _ => Op::Clear,
                }
            })
            .collect()
    }

    #[test]
    fn random_op_lists_agree_with_the_model() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for round in 0..300 {
            let shape = Shape {
                capacity: [0, 1, 3, 16, 64, 255, 4096][round % 7],
                shard_bits: (round / 6 % 3) as u8,
                weighted: round % 5 == 0,
                keep_expired_ms: [0, 0, 5, 40][round % 4],
            };
            let keys = if round % 2 == 0 { 24 } else { 256 };
            let ops = random_ops(&mut rng, 400, keys);
            if let Err(e) = run(shape, &ops) {
                panic!("round {round} {shape:?}: {e}");
            }
        }
    }

    #[test]
    fn roomy_cache_equals_the_model() {
        let mut rng = Rng(42);
        for _ in 0..20 {
            // Every shard has room for all 256 keys: nothing is ever evicted.
            let shape = Shape {
                capacity: 2048,
                shard_bits: 3,
                weighted: false,
                keep_expired_ms: 30,
            };
            let ops = random_ops(&mut rng, 500, 200);
            run(shape, &ops).unwrap();
        }
    }
}
