//! Counters of the two-tier cache, and their snapshot [`NearFarStats`].

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::observe::Observe;
use super::warm::Counters as WarmCounters;
use crate::Stats;

/// A snapshot of a [`NearFar`](super::NearFar)'s counters, from
/// [`NearFar::stats`](super::NearFar::stats). Not atomic across counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct NearFarStats {
    /// Reads answered by the near tier (its `hits`; a near entry that was
    /// then revalidated counts here too).
    pub near_hits: u64,
    /// Near misses answered by the far tier with a fresh value.
    pub far_hits: u64,
    /// Far lookups that found nothing (the loader or the fallback ran next).
    pub far_misses: u64,
    /// Far operations that failed (connection errors, timeouts, server
    /// errors); the caller was served from the near tier or the loader.
    pub far_errors: u64,
    /// Far values that did not decode into `V`: treated as misses.
    pub decode_errors: u64,
    /// Runs of a caller's loader.
    pub loader_calls: u64,
    /// Of `loader_calls`, those that returned an error or panicked.
    pub loader_errors: u64,
    /// Callers that waited for another caller's load instead of running
    /// their own: in this process (the near tier's coalescing) plus waits on
    /// another process's memcached lease (once per caller).
    pub coalesced_waits: u64,
    /// Of `coalesced_waits`, those that waited on a memcached lease.
    pub lease_waits: u64,
    /// Lease waits that ran the loader themselves without storing: after
    /// taking an old lease over, they found a fresh one (another waiter's)
    /// and did not wait a second
    /// [`lease_wait`](super::NearFarBuilder::lease_wait).
    pub lease_timeouts: u64,
    /// Lease placeholders taken over by a waiter: older than
    /// [`lease_wait`](super::NearFarBuilder::lease_wait) (their holder gone
    /// or slow), deleted by their CAS and leased again, so an abandoned
    /// lease costs the fleet at most one `lease_wait`.
    pub lease_takeovers: u64,
    /// Values served although marked stale (invalidated) in the far tier.
    pub stale_serves: u64,
    /// Near entries checked against the far tier's CAS
    /// ([`revalidate_after`](super::NearFarBuilder::revalidate_after)).
    pub revalidations: u64,
    /// Of `revalidations`, those that found the far value changed or gone.
    pub revalidations_changed: u64,
    /// Values copied from the [`fallback`](super::NearFarBuilder::fallback) pool.
    pub fallback_hits: u64,
    /// Times the circuit breaker opened.
    pub breaker_trips: u64,
    /// Far operations skipped because the breaker was open.
    pub breaker_skips: u64,
    /// Failed loads (an error, a panic, or `loader_timeout` passed) answered
    /// with the key's last value by the
    /// [`fail_safe`](super::NearFarBuilder::fail_safe): once per load, its
    /// waiters included; the value is then served near for
    /// [`fail_safe_backoff`](super::NearFarBuilder::fail_safe_backoff).
    pub fail_safe_serves: u64,
    /// Refreshes started by refresh-ahead (one caller per key at a time in
    /// this process; see
    /// [`refresh_ahead`](super::NearFarBuilder::refresh_ahead)).
    pub refresh_aheads: u64,
    /// Checks of the namespace's generation
    /// ([`generation_check`](super::NearFarBuilder::generation_check)) this
    /// process made (at most one per interval once it knows the generation;
    /// a check the breaker skipped counts too).
    pub generation_checks: u64,
    /// Newer generations of the namespace this process took, from a check
    /// or its own [`invalidate_all`](super::NearFar::invalidate_all): each
    /// cleared its near tier.
    pub invalidations: u64,
    /// Near entries loaded from the
    /// [`snapshot`](super::NearFarBuilder::snapshot) when the cache was
    /// built.
    pub restored: u64,
    /// Values the key [`preload`](super::NearFarBuilder::preload) read
    /// from memcached into the near tier.
    pub preloaded: u64,
    /// Snapshot and preload files saved (once per save, both files
    /// included).
    pub snapshot_saves: u64,
    /// Saves that failed (the previous files are left as they were), and
    /// files that did not load when the cache was built (it started cold).
    pub snapshot_errors: u64,
    /// The near tier's own counters.
    pub near: Stats,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) far_hits: AtomicU64,
    pub(crate) far_misses: AtomicU64,
    pub(crate) far_errors: AtomicU64,
    pub(crate) decode_errors: AtomicU64,
    pub(crate) loader_calls: AtomicU64,
    pub(crate) loader_errors: AtomicU64,
    pub(crate) lease_waits: AtomicU64,
    pub(crate) lease_timeouts: AtomicU64,
    pub(crate) lease_takeovers: AtomicU64,
    pub(crate) stale_serves: AtomicU64,
    pub(crate) revalidations: AtomicU64,
    pub(crate) revalidations_changed: AtomicU64,
    pub(crate) fallback_hits: AtomicU64,
    pub(crate) fail_safe_serves: AtomicU64,
    pub(crate) refresh_aheads: AtomicU64,
    pub(crate) generation_checks: AtomicU64,
    pub(crate) invalidations: AtomicU64,
    /// Warm restarts' counters (restored, preloaded, saves, errors), shared
    /// with the snapshot saver's thread.
    pub(crate) warm: Arc<WarmCounters>,
    /// The cache's name and metric handles, which publish these counters.
    pub(crate) observe: Observe,
}

/// Adds one to a counter.
#[inline]
pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl Counters {
    /// Zeroed counters, `warm`'s included, published through `observe`.
    pub(crate) fn observed(observe: Observe, warm: Arc<WarmCounters>) -> Self {
        Counters {
            observe,
            warm,
            ..Counters::default()
        }
    }

    pub(crate) fn snapshot(&self, near: Stats, trips: u64, skips: u64) -> NearFarStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let lease_waits = get(&self.lease_waits);
        NearFarStats {
            near_hits: near.hits,
            far_hits: get(&self.far_hits),
            far_misses: get(&self.far_misses),
            far_errors: get(&self.far_errors),
            decode_errors: get(&self.decode_errors),
            loader_calls: get(&self.loader_calls),
            loader_errors: get(&self.loader_errors),
            coalesced_waits: near.load_waits + lease_waits,
            lease_waits,
            lease_timeouts: get(&self.lease_timeouts),
            lease_takeovers: get(&self.lease_takeovers),
            stale_serves: get(&self.stale_serves),
            revalidations: get(&self.revalidations),
            revalidations_changed: get(&self.revalidations_changed),
            fallback_hits: get(&self.fallback_hits),
            breaker_trips: trips,
            breaker_skips: skips,
            fail_safe_serves: get(&self.fail_safe_serves),
            refresh_aheads: get(&self.refresh_aheads),
            generation_checks: get(&self.generation_checks),
            invalidations: get(&self.invalidations),
            restored: get(&self.warm.restored),
            preloaded: get(&self.warm.preloaded),
            snapshot_saves: get(&self.warm.saves),
            snapshot_errors: get(&self.warm.errors),
            near,
        }
    }
}
