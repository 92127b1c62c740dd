//! Refresh-ahead: a near copy that has lived `threshold` of its TTL is
//! reloaded by ONE caller of this process while the others keep being
//! served it, so a hot key never misses at its expiry. When refreshes start
//! is spread by probabilistic early expiration (XFetch: Vattani, Chierichetti
//! and Lowenstein, VLDB 2015), scaled by the key's last load time, so keys
//! filled together do not all refresh together. Across processes memcached
//! picks one refresher: the far read asks for the recompute token of a value
//! close to its expiry (`mg ... R`), and a process that finds the far value
//! already refreshed takes it instead of loading. Written once for both
//! handles: an `async fn` over a driver [`Mode`], run on the winner's
//! thread (blocking) or task (`AsyncNearFar::get_with`), or on a task
//! spawned for it (`AsyncNearFar::get_with_spawned`, whose loader is
//! `'static`).

use std::cell::Cell;
use std::future::Future;
use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::drive::Mode;
use super::generation::FarCall;
use super::inner::{Entry, FarClient, Inner};
use super::stats::bump;
use super::{FarKey, nanos};
use crate::store::Sharing;

/// How long a refresh may hold its key's claim before another caller may
/// start one (its holder is gone, or slower than this).
const CLAIM_HOLD: Duration = Duration::from_secs(30);

impl<K, V, Cl> Inner<K, V, Cl>
where
    K: Hash + Eq + Clone + FarKey + Send + Sync + 'static,
    V: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
    Cl: FarClient,
{
    /// The near lookup a `get_with` starts with (both handles): a live
    /// copy, one due for refresh-ahead, or a load to make.
    #[inline]
    pub(super) fn lookup(&self, key: &K) -> Lookup<V> {
        // One clock read for both checks, when either needs it.
        let mut now = None;
        match self.near.get(key) {
            Some(entry) if !self.due_at(&entry, &mut now) => {
                if self.due_refresh(&entry, &mut now) {
                    Lookup::DueRefresh(entry)
                } else {
                    Lookup::Fresh(entry.value)
                }
            }
            entry => Lookup::Load(entry),
        }
    }

    /// Whether a near hit on `entry` should refresh it: past `threshold` of
    /// its life, or, by XFetch, a little before (the more likely the
    /// closer, within a few of its last load times). `now` is the lookup's
    /// clock reading, if it made one (else it is read here and kept).
    #[inline]
    pub(super) fn due_refresh(&self, entry: &Entry<V>, now: &mut Option<u64>) -> bool {
        let Some(threshold) = self.refresh_ahead else {
            return false;
        };
        if entry.expires == u64::MAX || entry.stale_since != 0 {
            return false;
        }
        let now = *now.get_or_insert_with(|| self.recent());
        let life = entry.expires.saturating_sub(entry.checked);
        // Never past the expiry (a threshold below 1 keeps it before).
        let point = entry.checked + (life as f64 * threshold) as u64;
        if now >= point {
            return true;
        }
        // XFetch: refresh when now - delta * beta * ln(u) >= point, beta 1,
        // u uniform in (0, 1]: -ln(u) is exponential with mean 1.
        let early = entry.delta as f64 * -unit_random().ln();
        now as f64 + early >= point as f64
    }

    /// Refreshes `key`, whose near copy `current` is due, if this caller
    /// wins the key's claim in this process: runs the far read and `load`
    /// (see the module docs) and keeps the new value near. Returns the new
    /// value, or `current`'s when another caller holds the claim or the
    /// refresh failed (the copy stays until it expires).
    pub(super) async fn refresh_ahead<M: Mode<Client = Cl>, E>(
        &self,
        key: &K,
        current: Entry<V>,
        load: impl Future<Output = Result<V, E>>,
    ) -> V {
        let Some(claim) = self.claim_refresh(key) else {
            return current.value;
        };
        let refreshed = self.refresh_claimed::<M, E>(key, claim, load).await;
        refreshed.unwrap_or(current.value)
    }

    /// The refresh of `key` once its `claim` is won (by this caller, or
    /// handed to a spawned task: see `AsyncNearFar::get_with_spawned`):
    /// the new value, kept near, or `None` when the refresh failed.
    pub(super) async fn refresh_claimed<M: Mode<Client = Cl>, E>(
        &self,
        key: &K,
        claim: Claim<'_>,
        load: impl Future<Output = Result<V, E>>,
    ) -> Option<V> {
        // Released when the refresh ends, however it ends.
        let _claim = claim;
        bump(&self.counters.refresh_aheads);
        let seen = self.write_generation(key).load(Ordering::Acquire);
        let far = self.far_call::<M>().await;
        // A far value with less than this left is ours to recompute (if no
        // other process took the token first).
        let window = far.as_ref().map(|far| self.refresh_window(far));
        let plan = self.plan(far, key, None, window);
        // The load path of every `get_with` (timed, observed; its value not
        // shared: this caller's copy is live, so no one waits on it). No
        // loader timeout: the copy is served to everyone else meanwhile.
        let loaded = self
            .load_fail_safe::<M, E>(key, &plan, Sharing::Unshared, load, None)
            .await;
        let (entry, ttl) = loaded.ok()?;
        let value = entry.value.clone();
        let ttl = ttl.unwrap_or(Duration::MAX);
        if !ttl.is_zero() {
            self.keep_near(key, seen, entry, ttl);
        }
        Some(value)
    }

    /// The far refresh window: the share of `far_ttl` after the threshold,
    /// rounded up to whole seconds, plus one. memcached counts the time an
    /// item has left in whole seconds (and its clock ticks once a second),
    /// so a window cut to the second could stay shut for an item past the
    /// threshold; one second more opens it, and an item another process
    /// has just refreshed (its whole `far_ttl` left) stays outside it.
    fn refresh_window(&self, far: &FarCall<'_, Cl>) -> Duration {
        let threshold = self.refresh_ahead.unwrap_or(1.0);
        let window = far.far_ttl.mul_f64((1.0 - threshold).max(0.0));
        Duration::from_secs(window.as_secs_f64().ceil() as u64 + 1)
    }

    /// Claims the refresh of `key` in this process: `None` when another
    /// caller holds it (or a key sharing its stripe does). Released when the
    /// claim is dropped, however the refresh ends.
    pub(super) fn claim_refresh(&self, key: &K) -> Option<Claim<'_>> {
        let stripe = self.stripe(key);
        let slot = &self.refreshing[stripe];
        let now = self.now().max(1);
        let held = slot.load(Ordering::Relaxed);
        if held > now {
            return None;
        }
        let until = now.saturating_add(nanos(CLAIM_HOLD));
        // Relaxed: the claim guards no memory, only who refreshes; the
        // compare-exchange makes exactly one caller win it.
        slot.compare_exchange(held, until, Ordering::Relaxed, Ordering::Relaxed)
            .ok()?;
        Some(Claim {
            slot,
            stripe,
            until,
        })
    }

    /// A claim [`Claim::detach`]ed for a task that holds its own handle on
    /// this state, taken up again (released when dropped).
    #[cfg_attr(
        not(feature = "tokio"),
        allow(dead_code, reason = "a spawned refresh is the async handle's")
    )]
    pub(super) fn reattach(&self, claim: Detached) -> Claim<'_> {
        Claim {
            slot: &self.refreshing[claim.stripe],
            stripe: claim.stripe,
            until: claim.until,
        }
    }
}

/// What the near lookup of a `get_with` found (see [`Inner::lookup`]).
pub(super) enum Lookup<V> {
    /// A live copy, not due for refresh.
    Fresh(V),
    /// A live copy due for refresh-ahead.
    DueRefresh(Entry<V>),
    /// None, or a copy to revalidate: load (see `Inner::plan_load`).
    Load(Option<Entry<V>>),
}

/// A held refresh claim: released on drop (if still this one's).
pub(super) struct Claim<'a> {
    slot: &'a AtomicU64,
    stripe: usize,
    until: u64,
}

/// A held claim without its borrow of the state, to move into a spawned
/// task (see [`Inner::reattach`]). Dropped without being reattached, it is
/// not released: it lapses after [`CLAIM_HOLD`].
#[cfg_attr(
    not(feature = "tokio"),
    allow(dead_code, reason = "a spawned refresh is the async handle's")
)]
pub(super) struct Detached {
    stripe: usize,
    until: u64,
}

impl Claim<'_> {
    /// This claim, still held, for a task of its own.
    #[cfg_attr(
        not(feature = "tokio"),
        allow(dead_code, reason = "a spawned refresh is the async handle's")
    )]
    pub(super) fn detach(self) -> Detached {
        let detached = Detached {
            stripe: self.stripe,
            until: self.until,
        };
        std::mem::forget(self);
        detached
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        let _ = self
            .slot
            .compare_exchange(self.until, 0, Ordering::Relaxed, Ordering::Relaxed);
    }
}

/// A uniform random number in (0, 1]: a per-thread xorshift, seeded from
/// the thread's stack address and a process-wide hasher's keys (XFetch
/// needs no strong randomness, only independence between callers).
fn unit_random() -> f64 {
    thread_local! {
        static STATE: Cell<u64> = const { Cell::new(0) };
    }
    STATE.with(|state| {
        let mut x = state.get();
        if x == 0 {
            let seed = std::hash::RandomState::new().hash_one(state as *const _ as usize);
            x = seed | 1;
        }
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        state.set(x);
        // 53 random bits, shifted into (0, 1].
        ((x >> 11) + 1) as f64 / (1u64 << 53) as f64
    })
}
