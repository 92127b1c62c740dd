//! Fleet-wide invalidation (`invalidate_all`): the namespace's generation
//! as this process knows it, its periodic check, and the far tier for one
//! call with the generation its far keys carry ([`FarCall`]). Written once
//! for both handles: `async fn`s over a driver [`Mode`].
//!
//! The generation is a counter in memcached (see
//! [`flow::generation`](super::flow::generation)); far keys of generation
//! `g > 0` carry it. A process reads it at most once per
//! [`generation_check`](super::NearFarBuilder::generation_check): the first
//! call to find the check due wins it (a compare-and-swap of the next check
//! time) and sends the one request; the others go on with the generation
//! known. A newer generation found replaces the known one, and the near
//! tier is cleared.
//!
//! What keeps an older generation's values from being served again, even
//! by reads that began before the change and end after it:
//!
//! * every near entry carries the generation of the far keys it was read
//!   or loaded under, and a near hit checks it against the generation known
//!   (one atomic load): an entry of another generation is not served. So a
//!   far read that began under the old generation and fills the near tier
//!   after the clear leaves an entry that is never served (and
//!   [`keep_near`](Inner::keep_near) drops it at once);
//! * the clear supersedes the `get_with` loads in progress (their values go
//!   to their callers, not to the near tier, and no later caller joins
//!   them), and a load registered after the clear but planned before it
//!   re-renders its far key in the new generation before it starts
//!   ([`Inner::load_far`]).

use std::fmt;
use std::hash::Hash;
use std::ops::Deref;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::FarKey;
use super::call::Call;
use super::drive::{self, Mode};
use super::flow::generation::{Bump, Check};
use super::inner::{FarClient, Inner};
use super::stats::bump;

/// The generation of a process that has not read it yet (only with
/// `generation_check`; never a far key's).
pub(super) const UNKNOWN: u64 = u64::MAX;

/// The namespace's generation as this process knows it, and when to check
/// it next.
pub(super) struct Generations {
    /// The generation this process's far keys carry: 0 without
    /// `generation_check` (or a far tier), [`UNKNOWN`] until the first
    /// check is answered. Never goes back.
    current: AtomicU64,
    /// When the next check is due (ns on the `NearFar`'s clock); `u64::MAX`
    /// without `generation_check`.
    next: AtomicU64,
    /// ns between checks; `None`: no check (`generation_check` not set, or
    /// no far tier).
    interval: Option<u64>,
    /// The far key of the namespace's counter.
    pub(super) key: String,
}

impl Generations {
    /// The state of a process checking every `interval` ns (`None`: never:
    /// generation 0 for good), the counter being `key`.
    pub(super) fn new(interval: Option<u64>, key: String) -> Self {
        let (current, next) = match interval {
            Some(_) => (UNKNOWN, 0),
            None => (0, u64::MAX),
        };
        Generations {
            current: AtomicU64::new(current),
            next: AtomicU64::new(next),
            interval,
            key,
        }
    }

    /// Whether a check is configured.
    pub(super) fn checked(&self) -> bool {
        self.interval.is_some()
    }

    /// The generation known ([`UNKNOWN`] before the first check).
    #[inline]
    pub(super) fn current(&self) -> u64 {
        // Acquire: pairs with `advance`, so a caller that sees the new
        // generation sees the near tier cleared after it was stored.
        self.current.load(Ordering::Acquire)
    }

    /// The generation known, `None` before the first check.
    pub(super) fn known(&self) -> Option<u64> {
        Some(self.current()).filter(|&g| g != UNKNOWN)
    }

    /// When the next check is due (`u64::MAX`: never).
    #[inline]
    pub(super) fn next_check(&self) -> u64 {
        // Relaxed: a schedule; the compare-and-swap in `claim` decides.
        self.next.load(Ordering::Relaxed)
    }

    /// Whether the caller at `now` makes the check: one caller per
    /// interval (the one whose compare-and-swap moves the next check an
    /// interval on), every caller before the generation is known (there is
    /// nothing to go on with).
    pub(super) fn claim(&self, now: u64) -> bool {
        let Some(interval) = self.interval else {
            return false;
        };
        let next = self.next.load(Ordering::Relaxed);
        if self.current() == UNKNOWN {
            self.next
                .fetch_max(now.saturating_add(interval), Ordering::Relaxed);
            return true;
        }
        now >= next
            && self
                .next
                .compare_exchange(
                    next,
                    now.saturating_add(interval),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
    }

    /// Takes `seen` as the generation if it is newer than the one known
    /// (or none is known): whether it was.
    pub(super) fn advance(&self, seen: u64) -> bool {
        let mut current = self.current.load(Ordering::Acquire);
        loop {
            if current != UNKNOWN && seen <= current {
                return false;
            }
            match self.current.compare_exchange_weak(
                current,
                seen,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return true,
                Err(now) => current = now,
            }
        }
    }
}

impl fmt::Debug for Generations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Generations")
            .field("known", &self.known())
            .field("interval_ns", &self.interval)
            .finish_non_exhaustive()
    }
}

/// Why [`NearFar::invalidate_all`](super::NearFar::invalidate_all) did not
/// invalidate.
///
/// It is an explicit call, so unlike `get` and `insert` it reports the far
/// tier's failure; the memcached error itself is counted in
/// [`NearFarStats::far_errors`](super::NearFarStats::far_errors) (and fed to
/// the circuit breaker) as for every far request, and what it means for the
/// invalidation is told here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum InvalidateError {
    /// The `NearFar` was built without
    /// [`generation_check`](super::NearFarBuilder::generation_check): its
    /// far keys carry no generation, so no invalidation can reach the far
    /// copies. Nothing was done.
    NotEnabled,
    /// The far tier was not asked: its circuit breaker is open. Nothing was
    /// done; this process's near tier is as it was.
    Unavailable,
    /// memcached refused (the counter holds something other than a number,
    /// or it could not be created): nothing was done.
    Refused,
    /// memcached did not answer (a timeout, a dropped connection, no server
    /// up): the generation may or may not have been bumped. Calling again
    /// is safe (one more invalidation at most).
    NoAnswer,
}

impl fmt::Display for InvalidateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            InvalidateError::NotEnabled => {
                "invalidate_all needs generation_check: far keys carry no generation"
            }
            InvalidateError::Unavailable => {
                "the far tier's circuit breaker is open: nothing invalidated"
            }
            InvalidateError::Refused => "memcached refused the generation bump",
            InvalidateError::NoAnswer => {
                "memcached did not answer: the generation may or may not have been bumped"
            }
        })
    }
}

impl std::error::Error for InvalidateError {}

/// The far tier for one call, with the namespace's generation its far keys
/// carry (see [`Inner::far_call`]).
pub(super) struct FarCall<'a, Cl> {
    pub(super) call: Call<'a, Cl>,
    pub(super) generation: u64,
}

impl<'a, Cl> Deref for FarCall<'a, Cl> {
    type Target = Call<'a, Cl>;

    fn deref(&self) -> &Call<'a, Cl> {
        &self.call
    }
}

impl<K, V, Cl> Inner<K, V, Cl>
where
    K: Hash + Eq + Clone + FarKey + Send + Sync + 'static,
    V: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
    Cl: FarClient,
{
    /// The far tier for one call, with the generation its far keys carry,
    /// the namespace's generation checked first when the check is due.
    /// `None` without a far tier, or while the generation is not known (no
    /// check answered yet: the far tier down since this process started):
    /// the call uses the near tier only, as it would with no far tier.
    pub(super) async fn far_call<M: Mode<Client = Cl>>(&self) -> Option<FarCall<'_, Cl>> {
        let call = self.call()?;
        let generations = &self.generations;
        if generations.claim(self.now()) {
            bump(&self.counters.generation_checks);
            let mut flow = Check::new(&self.counters, &generations.key, generations.known());
            if let Some(seen) = drive::run::<M, (), _>(&call, &self.timer, &mut flow).await {
                self.adopt(seen, false);
            }
        }
        let generation = generations.known()?;
        Some(FarCall { call, generation })
    }

    /// The generation of the far keys `far` uses, or without it the
    /// generation known: what near entries made by the call carry.
    pub(super) fn generation_of(&self, far: Option<&FarCall<'_, Cl>>) -> u64 {
        far.map_or_else(|| self.generations.current(), |f| f.generation)
    }

    /// Takes `seen` as the namespace's generation if it is newer than the
    /// one known, and then clears the near tier: its entries are of an
    /// older generation (and not served: see the module docs), and the
    /// loads in progress are superseded. At a process's first check only
    /// the entries of other generations are dropped (see below). Counted as an invalidation when
    /// `own` (this process's `invalidate_all`) or when a generation was
    /// known before (not a process's first check).
    pub(super) fn adopt(&self, seen: u64, own: bool) {
        let first = self.generations.known().is_none();
        if self.generations.advance(seen) {
            if own || !first {
                bump(&self.counters.invalidations);
                self.near.clear();
            } else {
                // A process's first check: what its near tier holds of the
                // generation it found is current (entries restored from a
                // snapshot saved in it). The rest (older generations, and
                // entries loaded near-only before any was known) is never
                // served again: dropped. Loads in progress were made
                // near-only, so what they store carries no generation
                // known and is not served either.
                self.near.retain(|_, entry| entry.generation == seen);
            }
        }
    }

    /// `invalidate_all`: bumps the namespace's generation in memcached and
    /// takes it here at once (the near tier cleared); without a far tier,
    /// clears the near tier.
    pub(super) async fn invalidate_all<M: Mode<Client = Cl>>(&self) -> Result<(), InvalidateError> {
        let Some(call) = self.call() else {
            self.near.clear();
            return Ok(());
        };
        let generations = &self.generations;
        if !generations.checked() {
            return Err(InvalidateError::NotEnabled);
        }
        let mut flow = Bump::new(&generations.key, generations.known());
        let generation = drive::run::<M, (), _>(&call, &self.timer, &mut flow).await?;
        // Higher than any generation known here (`Bump` sees to it), unless
        // a check of this process adopted a higher one meanwhile (and
        // cleared the near tier then).
        self.adopt(generation, true);
        Ok(())
    }
}

#[cfg(test)]
mod tests;
