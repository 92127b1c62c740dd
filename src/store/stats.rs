//! Always-on statistics.
//!
//! Read-side counters (hits, misses) are striped by thread: each thread bumps
//! counters on its own cache line, so a hit writes no line another core is
//! reading. Write-side counters live in each shard and are bumped under its
//! lock. A [`Stats`] snapshot sums them; it is not atomic across counters.

use crate::shim::{AtomicU64, Ordering};

/// A snapshot of a cache's counters, from [`Cache::stats`](crate::Cache::stats).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Lookups that found a live entry (`get`, and the first probe of the
    /// `get_or_insert_with` family).
    pub hits: u64,
    /// Lookups that found nothing (or only an expired entry).
    pub misses: u64,
    /// New keys stored.
    pub inserts: u64,
    /// Values replaced for keys already present.
    pub updates: u64,
    /// Inserts refused because the entry alone is heavier than a shard's share
    /// of the budget (see [`Cache::max_entry_weight`](crate::Cache::max_entry_weight)),
    /// or because a stalled reader kept the memory it needed (see
    /// [`CacheBuilder::max_weight`](crate::CacheBuilder::max_weight)).
    pub rejected: u64,
    /// Entries evicted to respect the size bound.
    pub evicted_capacity: u64,
    /// Entries reclaimed because their TTL passed.
    pub evicted_expired: u64,
    /// Entries removed explicitly (`remove`, `retain`, `clear`).
    pub evicted_removed: u64,
    /// Loader runs in the `get_or_insert_with` family.
    pub loads: u64,
    /// Callers that waited for another caller's loader instead of running their own.
    pub load_waits: u64,
    /// Entries present when the snapshot was taken.
    pub entries: u64,
    /// Total weight present when the snapshot was taken.
    pub weight: u64,
}

impl Stats {
    /// `hits / (hits + misses)`, or 0 with no lookups.
    pub fn hit_ratio(&self) -> f64 {
        let total = self.hits + self.misses;
        if total == 0 {
            0.0
        } else {
            self.hits as f64 / total as f64
        }
    }
}

/// One thread's counters, padded to a pair of cache lines (adjacent-line
/// prefetch makes 64 bytes too small on x86).
///
/// `repr(C)`, the counters at offset 96: apart, modulo 128 (so modulo
/// 4 KiB), from the epoch record's `state` (offset 64), the other store of
/// every lookup, and from the read fields of the 128-aligned structures a
/// lookup reads (offsets below 64): see `epoch::Record` for the stall
/// they would otherwise share now and then (4K aliasing).
#[repr(C, align(128))]
#[derive(Default)]
struct Stripe {
    _apart: [u64; 12],
    hits: AtomicU64,
    misses: AtomicU64,
}

// The layout `Stripe`'s doc argues: the counters at offsets 96 and 104.
#[cfg(not(shuttle))]
const _: () = assert!(
    std::mem::offset_of!(Stripe, hits) == 96 && std::mem::offset_of!(Stripe, misses) == 104
);

/// Hit and miss counters, one stripe per live thread.
///
/// A reader counts on the stripe numbered as the epoch record it pinned
/// (`epoch::Guard::holder`): a record has one holder at a time, and the
/// records in use have the lowest numbers free (the lowest-numbered free
/// record is reused before a new one is made), so in every cache only that
/// thread writes that stripe: a
/// plain load and store count exactly, with no locked instruction and no
/// cache line shared with another core. (A record changes holder through
/// a Release store and an Acquire compare-exchange: the next holder's
/// counts follow the last one's.) Records numbered past the stripes a
/// cache has share one extra stripe and count with an atomic add.
pub(crate) struct ReadCounters {
    stripes: Box<[Stripe]>,
    /// `stripes.len() - 1`: the shared stripe's number, and the count of
    /// exclusive ones (kept so a count does no arithmetic on the length).
    shared: usize,
}

/// Most stripes a cache has (exclusive ones; plus one shared).
const MAX_STRIPES: usize = 64;

impl ReadCounters {
    pub(crate) fn new() -> Self {
        let threads = std::thread::available_parallelism().map_or(4, |n| n.get());
        let exclusive = (threads * 4).next_power_of_two().clamp(8, MAX_STRIPES);
        ReadCounters {
            stripes: (0..=exclusive).map(|_| Stripe::default()).collect(),
            shared: exclusive,
        }
    }

    /// Counts one on stripe `owner` (any number past the exclusive
    /// stripes: the shared one), and returns the stripe's new
    /// count (which the metrics' publishing looks at: see `metrics.rs`).
    #[inline]
    fn count(&self, owner: usize, field: impl Fn(&Stripe) -> &AtomicU64) -> u64 {
        let stripes = &*self.stripes;
        let shared = self.shared;
        if owner < shared && !cfg!(shuttle) {
            // SAFETY: `owner < shared = len - 1` (`new`). (Spares every read's
            // count a second, redundant bounds check.)
            let c = field(unsafe { stripes.get_unchecked(owner) });
            // Relaxed load + store: this thread is the stripe's only writer
            // (see the type's docs); readers only need some recent value.
            let n = c.load(Ordering::Relaxed).wrapping_add(1);
            c.store(n, Ordering::Relaxed);
            n
        } else {
            super::cold();
            // (The stripes as loaded above rather than `self`: the call's
            // argument is then made on this path, not on every hit.)
            count_shared(&stripes[shared], field)
        }
    }

    /// Counts a hit by the holder of the epoch record numbered `owner`
    /// (`Guard::holder`); returns the stripe's hits.
    #[inline]
    pub(crate) fn hit(&self, owner: usize) -> u64 {
        self.count(owner, |s| &s.hits)
    }

    /// Counts a miss, as [`hit`](Self::hit).
    #[inline]
    pub(crate) fn miss(&self, owner: usize) -> u64 {
        self.count(owner, |s| &s.misses)
    }

    pub(crate) fn add_to(&self, stats: &mut Stats) {
        for s in self.stripes.iter() {
            stats.hits += s.hits.load(Ordering::Relaxed);
            stats.misses += s.misses.load(Ordering::Relaxed);
        }
    }
}

/// Counts one on `stripe`, the shared stripe (threads numbered past the
/// exclusive stripes: rare, so out of the hit's way).
#[cold]
#[inline(never)]
fn count_shared(stripe: &Stripe, field: impl Fn(&Stripe) -> &AtomicU64) -> u64 {
    // Relaxed RMW: shared by several threads, exact, orders nothing.
    field(stripe)
        .fetch_add(1, Ordering::Relaxed)
        .wrapping_add(1)
}

/// Write-side counters of one shard. Bumped only by the holder of the shard's
/// lock (so a load and a store suffice); read without the lock by `stats()`.
#[derive(Default)]
pub(crate) struct WriteCounters {
    pub(crate) inserts: AtomicU64,
    pub(crate) updates: AtomicU64,
    pub(crate) rejected: AtomicU64,
    pub(crate) evicted_capacity: AtomicU64,
    pub(crate) evicted_expired: AtomicU64,
    pub(crate) evicted_removed: AtomicU64,
    pub(crate) loads: AtomicU64,
    pub(crate) load_waits: AtomicU64,
    pub(crate) entries: AtomicU64,
    /// Kept only where entries have weights of their own (`weighted`):
    /// elsewhere the weight is `entries`, and a write stores one gauge.
    pub(crate) weight: AtomicU64,
    weighted: bool,
    /// Write operations, counted only with the `metrics` feature (which
    /// looks at the throttle every so many: see `metrics.rs`).
    writes: AtomicU64,
}

/// Adds `n` to a counter only the lock holder writes.
#[inline]
pub(crate) fn bump(counter: &AtomicU64, n: u64) {
    // Relaxed load + store, not an RMW: the shard lock serialises writers, and
    // readers only need some recent value.
    counter.store(
        counter.load(Ordering::Relaxed).wrapping_add(n),
        Ordering::Relaxed,
    );
}

impl WriteCounters {
    /// The counters of a shard whose entries are `weighted`.
    pub(crate) fn new(weighted: bool) -> Self {
        WriteCounters {
            weighted,
            ..WriteCounters::default()
        }
    }

    /// The shard's weight gauge (its entry count, unweighted).
    #[inline]
    pub(crate) fn weight(&self) -> u64 {
        if self.weighted {
            self.weight.load(Ordering::Relaxed)
        } else {
            self.entries.load(Ordering::Relaxed)
        }
    }

    /// Counts a write operation (by the lock holder); returns the count.
    #[inline]
    pub(crate) fn wrote(&self) -> u64 {
        bump(&self.writes, 1);
        self.writes.load(Ordering::Relaxed)
    }

    pub(crate) fn add_to(&self, stats: &mut Stats) {
        let l = |c: &AtomicU64| c.load(Ordering::Relaxed);
        stats.inserts += l(&self.inserts);
        stats.updates += l(&self.updates);
        stats.rejected += l(&self.rejected);
        stats.evicted_capacity += l(&self.evicted_capacity);
        stats.evicted_expired += l(&self.evicted_expired);
        stats.evicted_removed += l(&self.evicted_removed);
        stats.loads += l(&self.loads);
        stats.load_waits += l(&self.load_waits);
        stats.entries += l(&self.entries);
        stats.weight = stats.weight.saturating_add(self.weight());
    }
}
