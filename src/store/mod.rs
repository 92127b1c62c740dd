//! The near tier: [`Cache`], a concurrent in-process `K -> V` cache.
//!
//! See [`Cache`] for the user guide. Inside:
//! * `builder` — [`CacheBuilder`]: the settings, and how they split over shards;
//! * `write` — the cache's write path: a shard locked, the write settled;
//! * `shard` — one shard: lock-free lookups and the write path;
//! * `index` — the hash index (F14-style chunks of tags and slot indices);
//! * `slab` — the slot arena and epoch-deferred slot reuse;
//! * `shard::retired` — memory held by retired values, bounded with the weight;
//! * `shard::unlink` — how entries leave a shard: eviction, expiry, removal;
//! * `lru` — the HOT / WARM / COLD policy;
//! * `ttl` — the clock and expiry;
//! * `loader` — one loader per missing key: the loading engine;
//! * `export` — what a snapshot needs: entries copied out hottest first,
//!   restored only where they fit;
//! * `stats` — always-on counters;
//! * `metrics` — the cache's name, and its counters published to the
//!   `metrics` facade (feature `metrics`);
//! * `epoch` — epoch-based reclamation of nearfar's own: pins, retired work;
//! * `local` — the per-thread epoch record and stats stripe.

mod builder;
mod epoch;
mod expiry;
mod export;
mod index;
mod iter;
mod loader;
#[cfg_attr(
    not(feature = "memcached"),
    allow(
        unused_imports,
        reason = "the store's API for a layered cache: see `LAYERED`"
    )
)]
pub(crate) use loader::Patience;
mod local;
#[cfg(all(test, not(shuttle)))]
mod lock_tests;
mod lru;
mod metrics;
#[cfg(any(test, fuzzing))]
#[doc(hidden)]
pub mod model;
mod shard;
#[cfg(all(test, shuttle))]
mod shuttle_tests;
mod slab;
mod stale;
mod stats;
mod ttl;
mod write;

use std::borrow::Borrow;
use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::sync::Arc;
use std::time::Duration;

use self::metrics::NearMetrics;
use loader::MissedKey;
use shard::Shard;
use stats::ReadCounters;
use ttl::{TimeSource, is_expired};

pub use builder::CacheBuilder;
pub use iter::Iter;
#[allow(
    unused_imports,
    reason = "the store's API for a snapshot, unused without the feature"
)]
pub(crate) use shard::Restored;
pub use stats::Stats;
pub use ttl::{Clock, MockClock};

use crate::shim::Ordering;

/// Why an entry left the cache, as told to the
/// [eviction listener](CacheBuilder::eviction_listener).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RemovalCause {
    /// Evicted to keep the cache within its entry or weight bound.
    Capacity,
    /// Its time to live had passed.
    Expired,
    /// Removed by `remove`, `retain` or `clear`.
    Removed,
    /// Its key was written again (the old value is reported), or the new
    /// value was too heavy to admit (the old value is dropped all the same).
    Replaced,
}

type Weigher<K, V> = Arc<dyn Fn(&K, &V) -> u64 + Send + Sync>;
type Listener<K, V> = Arc<dyn Fn(&K, &V, RemovalCause) + Send + Sync>;

/// A concurrent, bounded, in-process cache with a memcached-style segmented
/// LRU and optional time-to-live.
///
/// * **Lookups take no lock.** They find the entry through a lock-free index
///   under an epoch guard, count the use (only while the entry's 2-bit use
///   count is not full), and clone the value. A hit on a hot entry writes no
///   memory shared with other threads. (A miss that races with the index
///   growing, and a hit on an expired entry, may briefly lock the shard.)
/// * **Writes lock one shard.** Keys are spread over shards by hash; each
///   shard has its own bound, so after any `insert` returns the shard — and so
///   the cache — is within its entry and weight maxima.
/// * **Eviction** follows memcached's segmented LRU with a small probation
///   segment and a ghost history (S3-FIFO): new entries enter HOT (or, while
///   the cache fills, the protected WARM segment, so a loop over more keys
///   than fit keeps hitting part of them), entries used while in a list move
///   up when they reach its tail, unused ones are evicted. See the `lru`
///   module for the measured choices.
/// * **`Clone` is cheap**: it makes another handle to the same cache.
///
/// `V` must be `Clone`: lookups return owned values. Wrap large values in
/// [`Arc`] to make that clone a reference-count bump.
///
/// ```
/// use nearfar::Cache;
///
/// let cache: Cache<String, u64> = Cache::new(10_000);
/// cache.insert("answer".to_string(), 42);
/// assert_eq!(cache.get("answer"), Some(42)); // Borrow lookups, like HashMap
/// assert_eq!(cache.get("question"), None);
///
/// // Run an expensive computation once per key, even under concurrency.
/// let v = cache.get_or_insert_with("slow".to_string(), || 7);
/// assert_eq!(v, 7);
/// ```
///
/// # Memory
/// Each entry costs its key and value plus about 28 bytes on 64-bit targets
/// (27.8 to 27.9 measured at 1M entries, `benches/RESULTS.md`): 8 in its
/// slot (expiry, use count, flags, generation), 8 of LRU links, 4 for its
/// position in the index, about 7 of hash index (a tag byte and a `u32`
/// slot index per lane, lanes at most 75% full) and half a byte of
/// eviction history; a weigher adds 8 for the stored weight. With
/// [`max_weight`](CacheBuilder::max_weight), values evicted but not yet
/// freed count against the bound too: live and retired together stay
/// within 1.25x of it.
///
/// # Requirements on `K`
/// `Hash` and `Eq` must agree (as for `HashMap`) and should not panic. A
/// panicking `Hash`, `Eq`, weigher or listener propagates to the caller; the
/// cache stays consistent and usable.
pub struct Cache<K, V, S = ahash::RandomState> {
    inner: Arc<Inner<K, V, S>>,
}

/// `repr(C)`, in this order: what every lookup reads first (the shards,
/// the hasher, the read counters, the clock), then what writes read, then
/// the rest. Left to the compiler, a field added elsewhere can move the
/// lookup's fields onto another cache line (a layout change once moved
/// hits by about 15%, for the same instructions).
#[repr(C)]
struct Inner<K, V, S> {
    shards: Box<[Shard<K, V>]>,
    /// `shards.len() - 1` (a power of two less one): what [`shard_of`]
    /// masks with, kept so a lookup does no arithmetic on the length.
    shard_mask: usize,
    reads: ReadCounters,
    hasher: S,
    time: TimeSource,
    listener: Option<Listener<K, V>>,
    weigher: Option<Weigher<K, V>>,
    default_ttl: Option<Duration>,
    metrics: NearMetrics,
}

impl<K, V, S> Clone for Cache<K, V, S> {
    fn clone(&self) -> Self {
        Cache {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<K, V, S> fmt::Debug for Cache<K, V, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cache")
            .field("name", &self.name())
            .field("entries", &self.len())
            .field("weight", &self.weight())
            .field("shards", &self.inner.shards.len())
            .finish_non_exhaustive()
    }
}

impl<K: Hash + Eq, V: Clone> Cache<K, V> {
    /// A cache holding at most `max_entries` entries, with default settings.
    ///
    /// ```
    /// let cache: nearfar::Cache<u64, String> = nearfar::Cache::new(1_000);
    /// assert_eq!(cache.len(), 0);
    /// ```
    pub fn new(max_entries: usize) -> Self {
        Self::builder().max_entries(max_entries).build()
    }

    /// A builder for a cache with custom settings.
    ///
    /// ```
    /// use std::time::Duration;
    /// let cache: nearfar::Cache<String, Vec<u8>> = nearfar::Cache::builder()
    ///     .max_weight(64 << 20)
    ///     .weigher(|k: &String, v: &Vec<u8>| (k.len() + v.len()) as u64)
    ///     .time_to_live(Duration::from_secs(300))
    ///     .build();
    /// cache.insert("k".into(), vec![0; 1000]);
    /// assert_eq!(cache.weight(), 1001);
    /// ```
    pub fn builder() -> CacheBuilder<K, V> {
        CacheBuilder::default()
    }
}

/// The shard for `hash`, of `mask + 1` (a power of two): the low bits of
/// the top half of the index's mix (`index::mix`, the hash times an odd
/// constant), so a hasher with weak high bits (an identity hash of small
/// integers) still spreads keys over the shards. One multiply serves both
/// (a lookup's probe reuses it: two instructions a hit). The index picks
/// the home chunk by scaling that same top half onto its chunk count: with
/// the shard's bits fixed, the top half still steps through the chunks
/// less than one at a time while a shard has fewer than `2^32 / (mask + 1)`
/// chunks (every realistic size: 2^26 with 64 shards), so a shard's keys
/// still spread evenly over its chunks; the tag comes from the bits below.
/// (Hashes equal in their low `32 + log2(shards)` bits share a shard.)
#[inline]
fn shard_of(hash: u64, mask: usize) -> usize {
    (index::mix(hash) >> 32) as usize & mask
}

/// The most shards a cache can have.
const MAX_SHARDS: usize = 1 << 16;

// ---- LAYERED: the store's API for a cache layered over it ----
//
// A cache that keeps copies of values held elsewhere (`NearFar` keeps
// memcached's) needs four things the public API does not offer: storing and
// dropping a copy without superseding a load in progress
// (`Cache::fill_with_ttl`, `Cache::drop_copy`, below), loading after its own
// lookup missed, told whether the load is shared (`Cache::load_after_miss`
// in `loader.rs`, `Sharing` below), and a builder's settings carried over to
// wrapped values (`CacheBuilder::map_values` in `builder.rs`). They are the
// store's crate API, compiled in every build and passed everything they need
// as arguments; what they mean (what supersedes a load, whom a load's value
// goes to) is the store's, and the store's own unit tests check them under
// `--no-default-features` (the `tests` modules of `write.rs`, `loader.rs`
// and `builder.rs`).
// Without the `memcached` feature no module layers a cache over the store,
// and nothing calls them: hence the `allow(dead_code)` on each of the four
// (and on nothing else: `Origin::Copy` is built only by them, which the lint
// then counts as used; `Sharing` is the engine's own).

/// What an insert or removal is: a write (newer than any load of the key in
/// progress, which it supersedes), or the storing or dropping of a copy of
/// a value held elsewhere (NearFar's far tier), which supersedes nothing.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Origin {
    Write,
    Copy,
}

/// Whom the value of a loader now starting goes to; the store passes it to
/// the loader as its argument.
///
/// A loader that itself coordinates with other processes (`NearFar`'s
/// memcached lease) reads it: an unshared loader runs for a caller whose
/// wait was refused because the leader of this process's load of the key is
/// blocked on this caller, so that leader holds the lease, and waiting for
/// it would only wait out the lease. It applies to this loader only: the
/// loads nested in it are shared as usual (each told its own).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Sharing {
    /// The load is registered: callers for the key wait for its value, and
    /// the value is stored.
    Shared,
    /// This caller's wait on another caller's load of the key was refused
    /// (it would close a cycle of loaders waiting on each other): the value
    /// goes to this caller only, and is not stored; the leader's is.
    Unshared,
}

/// Marks the path that calls it as unlikely (`std::hint::cold_path` is
/// newer than the crate's minimum Rust).
#[cold]
#[inline(always)]
pub(crate) fn cold() {}

/// Whether a lookup counts as a use of the entry.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Touch {
    /// A real read: count the entry's use, and a hit or miss.
    Use,
    /// A peek: no promotion, no counting.
    Peek,
}

impl<K, V, S> Cache<K, V, S> {
    /// The number of entries (a moment's snapshot under concurrency; may
    /// include expired entries not reclaimed yet).
    pub fn len(&self) -> usize {
        self.inner
            .shards
            .iter()
            .map(|s| s.counters.entries.load(Ordering::Relaxed) as usize)
            .sum()
    }

    /// Whether the cache holds no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The total weight of the entries (the entry count without a weigher).
    pub fn weight(&self) -> u64 {
        self.inner
            .shards
            .iter()
            .fold(0u64, |sum, s| sum.saturating_add(s.counters.weight()))
    }

    /// The heaviest entry that is admitted: a shard's share of `max_weight`
    /// (at least 1/8 of it, since weighted caches have at most 8 shards).
    /// Heavier entries are refused and counted in [`Stats::rejected`].
    pub fn max_entry_weight(&self) -> u64 {
        self.inner
            .shards
            .iter()
            .map(|s| s.max_weight())
            .min()
            .unwrap_or(0)
    }

    /// A snapshot of the counters.
    ///
    /// ```
    /// let cache = nearfar::Cache::new(10);
    /// cache.insert(1, "one");
    /// cache.get(&1);
    /// cache.get(&2);
    /// let s = cache.stats();
    /// assert_eq!((s.hits, s.misses, s.inserts, s.entries), (1, 1, 1, 1));
    /// ```
    pub fn stats(&self) -> Stats {
        let mut stats = Stats::default();
        self.inner.reads.add_to(&mut stats);
        for shard in self.inner.shards.iter() {
            shard.counters.add_to(&mut stats);
        }
        stats
    }
}

impl<K, V, S> Cache<K, V, S>
where
    K: Hash + Eq,
    V: Clone,
    S: BuildHasher,
{
    #[inline]
    fn shard(&self, hash: u64) -> &Shard<K, V> {
        let shards = &self.inner.shards;
        let at = shard_of(hash, self.inner.shard_mask);
        debug_assert!(at < shards.len());
        // SAFETY: `shard_of` masks with `shard_mask`, which the builder sets
        // to `len - 1` (`len` at least 1, never changed): `at < len`.
        // (Spares every lookup and write a bounds check.)
        unsafe { shards.get_unchecked(at) }
    }

    /// Looks `key` up and applies `f` to its value if present and unexpired.
    // Always inlined: the hit path is short, and a call's register saves
    // and restores were ~17 of its ~150 instructions (callgrind).
    #[inline(always)]
    fn lookup<Q, R>(&self, hash: u64, key: &Q, touch: Touch, f: impl FnOnce(&V) -> R) -> Option<R>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        let shard = self.shard(hash);
        let guard = local::pin();
        let Some((idx, slot)) = shard.find(hash, key, &guard) else {
            if touch == Touch::Use {
                self.counted(self.inner.reads.miss(guard.holder()));
            }
            return None;
        };
        // Lock-free: decoded against the shard's base only when it expires
        // at all, so a hit without a TTL costs a load and a test.
        if slot.has_expiry() {
            // Laid out of the way of entries without an expiry (it saved a
            // jump per hit); an entry with one reads the clock anyway.
            cold();
            if is_expired(shard.expires(slot), self.inner.time.recent()) {
                if touch == Touch::Use {
                    self.counted(self.inner.reads.miss(guard.holder()));
                    self.reclaim_expired(shard, idx, slot.generation(), &guard);
                }
                return None;
            }
        }
        if touch == Touch::Use {
            // Counts the use only while the count is below its cap, so a hot
            // entry's line is not written on every hit.
            slot.touch();
            self.counted(self.inner.reads.hit(guard.holder()));
        }
        // SAFETY: reached through the index while pinned (see `Slot::key`).
        Some(f(unsafe { slot.value() }))
    }

    /// The value for `key`, if present and not expired (see
    /// [`insert_with_ttl`](Self::insert_with_ttl)). Marks the entry as used
    /// (it will survive eviction longer) and counts a hit or a miss.
    ///
    /// Takes no lock and allocates nothing (beyond what `V::clone` does), but
    /// for two rare cases: a miss that races with the shard's index growing
    /// is retried under the lock, and an expired entry it meets is reclaimed
    /// if the shard's lock is free.
    ///
    /// ```
    /// let cache = nearfar::Cache::new(100);
    /// cache.insert("k".to_string(), vec![1, 2, 3]);
    /// assert_eq!(cache.get("k"), Some(vec![1, 2, 3]));
    /// ```
    #[inline]
    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.inner.hasher.hash_one(key);
        self.lookup(hash, key, Touch::Use, V::clone)
    }

    /// Like [`get`](Self::get), but neither marks the entry as used nor
    /// counts a hit or miss.
    ///
    /// ```
    /// let cache = nearfar::Cache::new(100);
    /// cache.insert(1, 'a');
    /// assert_eq!(cache.peek(&1), Some('a'));
    /// assert_eq!(cache.stats().hits, 0);
    /// ```
    pub fn peek<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.inner.hasher.hash_one(key);
        self.lookup(hash, key, Touch::Peek, V::clone)
    }

    /// Whether `key` is present and not expired (no promotion, no counting;
    /// expiry as for [`get`](Self::get)).
    ///
    /// ```
    /// let cache = nearfar::Cache::new(100);
    /// cache.insert(1, ());
    /// assert!(cache.contains_key(&1));
    /// assert!(!cache.contains_key(&2));
    /// ```
    pub fn contains_key<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.inner.hasher.hash_one(key);
        self.lookup(hash, key, Touch::Peek, |_| ()).is_some()
    }

    /// Stores `value` under `key` (replacing any value), with the cache's
    /// default time to live. Evicts as needed: when it returns, the cache is
    /// within its bounds. An entry heavier than
    /// [`max_entry_weight`](Self::max_entry_weight) is refused (and any old
    /// value for the key removed): use [`try_insert`](Self::try_insert) to
    /// get it back. So is one that finds no memory for it while a reader
    /// holds evicted values alive (see
    /// [`max_weight`](CacheBuilder::max_weight)); it may wait for that
    /// reader first.
    ///
    /// ```
    /// let cache = nearfar::Cache::new(2);
    /// cache.insert(1, "a");
    /// cache.insert(2, "b");
    /// cache.insert(3, "c");
    /// assert_eq!(cache.len(), 2);
    /// ```
    // A call, not inlined into the caller: `insert_inner` is inlined here,
    // specialised for a write with the default TTL, and so it measured
    // cheaper than inlined into a caller's loop (callgrind, a rewrite:
    // 330.8 instructions inlined, 326.8 as a call).
    #[inline(never)]
    pub fn insert(&self, key: K, value: V) {
        let _ = self.insert_inner(key, value, self.inner.default_ttl, Origin::Write);
    }

    /// Stores `value` under `key`, expiring after `ttl` (overriding the
    /// cache's default).
    ///
    /// Expiry is kept to the millisecond: the entry expires at the first
    /// whole millisecond of the cache's clock at or after `ttl` is up (for
    /// some TTLs of more than 12 days, the first whole second), never
    /// before. So a TTL under a millisecond, zero included, keeps the entry
    /// until the next whole millisecond. `Duration::MAX` and the like never
    /// expire in practice.
    ///
    /// Lookups read the kernel's coarse clock (see [`Clock`]): on the
    /// system's clock, one may still return an entry up to about a tick
    /// (typically 4 ms) after it expires, never before. Writers, `remove`,
    /// `get_stale`, `iter` and an injected clock are exact, so within that
    /// window they may already treat as expired an entry `get` returns.
    ///
    /// ```
    /// use std::time::Duration;
    /// let clock = nearfar::MockClock::new();
    /// let cache = nearfar::Cache::builder().max_entries(10).clock(clock.clone()).build();
    /// cache.insert_with_ttl("session", 1, Duration::from_secs(30));
    /// clock.advance(Duration::from_secs(31));
    /// assert_eq!(cache.get("session"), None);
    /// ```
    pub fn insert_with_ttl(&self, key: K, value: V, ttl: Duration) {
        let _ = self.insert_inner(key, value, Some(ttl), Origin::Write);
    }

    /// Stores a copy of `key`'s value read from elsewhere (NearFar's far
    /// tier), expiring after `ttl`. Unlike [`insert`](Self::insert) it does
    /// not supersede a load of the key in progress: a read is not newer
    /// than what that load computes. Nor does it wait for memory held by
    /// retired values (see [`max_weight`](CacheBuilder::max_weight)): when
    /// there is none to be had at once, the copy is not kept.
    #[allow(
        dead_code,
        reason = "the store's API for a layered cache, unused without one: see `LAYERED`"
    )]
    pub(crate) fn fill_with_ttl(&self, key: K, value: V, ttl: Duration) {
        let _ = self.insert_inner(key, value, Some(ttl), Origin::Copy);
    }

    /// Like [`insert`](Self::insert), but hands the entry back if it is too
    /// heavy to admit.
    ///
    /// # Errors
    /// `Err((key, value))` when the entry's weight exceeds
    /// [`max_entry_weight`](Self::max_entry_weight) (or the cache has no room
    /// at all, as with `max_entries(0)`), or when values retired from its
    /// shard still hold the memory it needs because a reader stays pinned
    /// (see [`max_weight`](CacheBuilder::max_weight)).
    ///
    /// ```
    /// let cache = nearfar::Cache::builder()
    ///     .max_weight(100)
    ///     .weigher(|_: &u32, v: &String| v.len() as u64)
    ///     .build();
    /// assert!(cache.try_insert(1, "x".repeat(10)).is_ok());
    /// assert!(cache.try_insert(2, "x".repeat(1000)).is_err());
    /// assert_eq!(cache.stats().rejected, 1);
    /// ```
    pub fn try_insert(&self, key: K, value: V) -> Result<(), (K, V)> {
        self.insert_inner(key, value, self.inner.default_ttl, Origin::Write)
    }

    /// Removes `key`, returning its value if it was present and unexpired.
    ///
    /// The cache's own copy is dropped once no concurrent reader can still
    /// be reading it: on a later write to the same shard after the epoch has
    /// moved on. (Values replaced by `insert` or evicted are handed over in
    /// batches of up to 64 per shard, so as many may stay alive a little
    /// longer; with [`max_weight`](CacheBuilder::max_weight) they count
    /// against the bound until then.)
    ///
    /// ```
    /// let cache = nearfar::Cache::new(10);
    /// cache.insert(1, "a");
    /// assert_eq!(cache.remove(&1), Some("a"));
    /// assert_eq!(cache.remove(&1), None);
    /// ```
    pub fn remove<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.remove_inner(key, Origin::Write, V::clone)
    }

    /// Drops `key`'s entry as a stale copy (NearFar: a near copy found
    /// outdated, or dropped on request), not as a write: unlike
    /// [`remove`](Self::remove) it does not supersede a load of the key in
    /// progress, which is fetching a fresher value.
    #[allow(
        dead_code,
        reason = "the store's API for a layered cache, unused without one: see `LAYERED`"
    )]
    pub(crate) fn drop_copy<Q>(&self, key: &Q)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.remove_inner(key, Origin::Copy, |_| ());
    }

    /// An iterator over clones of the entries.
    ///
    /// It takes each shard's entries in turn, picked under that shard's lock
    /// and cloned after it is released: an entry present and unexpired for
    /// the whole iteration is yielded exactly once; entries inserted, removed
    /// or expiring meanwhile may or may not be. It never yields a key twice.
    ///
    /// While one shard's entries are cloned the thread stays pinned to the
    /// epoch (as an eviction listener does): slots freed meanwhile by any
    /// cache wait for it before reuse, and writers grow their slabs instead.
    /// For a large cache with costly clones, hold `Arc`s as values.
    ///
    /// ```
    /// let cache = nearfar::Cache::new(100);
    /// cache.insert(1, 10);
    /// cache.insert(2, 20);
    /// let mut all: Vec<_> = cache.iter().collect();
    /// all.sort();
    /// assert_eq!(all, vec![(1, 10), (2, 20)]);
    /// ```
    pub fn iter(&self) -> Iter<'_, K, V, S>
    where
        K: Clone,
    {
        Iter {
            cache: self,
            next_shard: 0,
            buffer: Vec::new().into_iter(),
        }
    }

    /// The value for `key`, or the result of `load` stored under it.
    ///
    /// Concurrent callers for the same missing key run `load` once: the
    /// others wait for its value. If `load` panics, the panic propagates to
    /// its caller and the waiters retry (one of them runs its own loader).
    ///
    /// A write made while `load` runs is newer than what `load` computed,
    /// so it wins: after an [`insert`](Self::insert) or a
    /// [`remove`](Self::remove) of the same key (from any thread, `load`
    /// included), the loaded value is returned but not stored. The value
    /// returned is the one this call's loader (or the loader it waited for)
    /// produced.
    ///
    /// `load` may ask this or another cache for other keys. Should loaders
    /// in different threads come to wait on each other in a cycle (thread
    /// A's loader for key 1 asks for key 2, whose loader in thread B asks
    /// for key 1), the caller whose wait would close the cycle does not
    /// wait: it runs its own loader and gets that value, unstored.
    ///
    /// # Panics
    /// If `load` asks this cache for the same key through this family of
    /// methods (it would wait for itself forever); and whenever `load` panics.
    ///
    /// ```
    /// let cache = nearfar::Cache::new(100);
    /// let mut calls = 0;
    /// assert_eq!(cache.get_or_insert_with(1, || { calls += 1; "one" }), "one");
    /// assert_eq!(cache.get_or_insert_with(1, || { calls += 1; "uno" }), "one");
    /// assert_eq!(calls, 1);
    /// ```
    pub fn get_or_insert_with(&self, key: K, load: impl FnOnce() -> V) -> V {
        match self.try_get_or_insert_with(key, || Ok::<V, std::convert::Infallible>(load())) {
            Ok(v) => v,
            Err(e) => match *e {},
        }
    }

    /// Like [`get_or_insert_with`](Self::get_or_insert_with) for a fallible
    /// loader. An error is not cached: it is returned to the caller that ran
    /// the loader and to the callers waiting on it (the same `Arc`), and the
    /// next caller tries again.
    ///
    /// # Errors
    /// The loader's error, shared.
    ///
    /// # Panics
    /// As for [`get_or_insert_with`](Self::get_or_insert_with).
    ///
    /// ```
    /// let cache = nearfar::Cache::new(100);
    /// let r: Result<u32, _> = cache.try_get_or_insert_with(1, || "10".parse::<u32>());
    /// assert_eq!(r.unwrap(), 10);
    /// let e = cache.try_get_or_insert_with(2, || "x".parse::<u32>());
    /// assert!(e.is_err());
    /// assert!(!cache.contains_key(&2));
    /// ```
    pub fn try_get_or_insert_with<E>(
        &self,
        key: K,
        load: impl FnOnce() -> Result<V, E>,
    ) -> Result<V, Arc<E>>
    where
        E: Send + Sync + 'static,
    {
        self.load_once(key, |_| load().map(|v| (v, None)))
    }

    /// Like [`try_get_or_insert_with`](Self::try_get_or_insert_with), with a
    /// time to live chosen by the loader for the value it returns (for
    /// example what an upstream source says is left). It overrides the
    /// cache's default; `Duration::MAX` means no expiry, and
    /// `Duration::ZERO` that the value goes to this caller and those waiting
    /// on the load but is not stored (it would be expired already).
    ///
    /// # Errors
    /// The loader's error, shared, as for `try_get_or_insert_with`.
    ///
    /// # Panics
    /// As for [`get_or_insert_with`](Self::get_or_insert_with).
    ///
    /// ```
    /// use std::time::Duration;
    /// let clock = nearfar::MockClock::new();
    /// let cache = nearfar::Cache::builder().max_entries(10).clock(clock.clone()).build();
    /// let v = cache.try_get_or_insert_with_ttl("token", || Ok::<_, ()>(("abc", Duration::from_secs(5))));
    /// assert_eq!(v.unwrap(), "abc");
    /// clock.advance(Duration::from_secs(5));
    /// assert!(!cache.contains_key("token"));
    /// ```
    pub fn try_get_or_insert_with_ttl<E>(
        &self,
        key: K,
        load: impl FnOnce() -> Result<(V, Duration), E>,
    ) -> Result<V, Arc<E>>
    where
        E: Send + Sync + 'static,
    {
        self.load_once(key, |_| load().map(|(v, ttl)| (v, Some(ttl))))
    }

    /// [`get_or_insert_with`](Self::get_or_insert_with) for a borrowed key,
    /// cloned only on a miss (see `try_get_or_insert_with_ref`).
    pub(crate) fn get_or_insert_with_ref(&self, key: &K, load: impl FnOnce() -> V) -> V
    where
        K: Clone,
    {
        match self.try_get_or_insert_with_ref(key, || Ok::<V, std::convert::Infallible>(load())) {
            Ok(v) => v,
            Err(e) => match *e {},
        }
    }

    /// [`try_get_or_insert_with`](Self::try_get_or_insert_with) for a
    /// borrowed key, cloned only on a miss: the memoisation path
    /// ([`crate::memo`]), where a hit should cost no clone of the key.
    pub(crate) fn try_get_or_insert_with_ref<E>(
        &self,
        key: &K,
        load: impl FnOnce() -> Result<V, E>,
    ) -> Result<V, Arc<E>>
    where
        K: Clone,
        E: Send + Sync + 'static,
    {
        let hash = self.inner.hasher.hash_one(key);
        if let Some(v) = self.lookup(hash, key, Touch::Use, V::clone) {
            return Ok(v);
        }
        // Cloned only if this caller registers the load (not to wait on one);
        // the clone hashes as `key` does (`Clone`, `Hash` and `Eq` agree).
        let key = MissedKey::Borrowed(key, K::clone);
        self.load_missed(hash, key, |_| load().map(|v| (v, None)))
    }
}

impl<K: Hash + Eq, V, S: BuildHasher> Cache<K, V, S> {
    /// Checks every shard's invariants (index, lists, bounds). For the
    /// crate's own tests and fuzz targets; not part of the API.
    #[doc(hidden)]
    pub fn check_invariants(&self) -> Result<(), String> {
        for (i, shard) in self.inner.shards.iter().enumerate() {
            shard
                .check(&self.inner.hasher)
                .map_err(|e| format!("shard {i}: {e}"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_identity_hash_of_small_integers_spreads_over_shards() {
        let mut per_shard = [0usize; 64];
        for k in 0..64_000u64 {
            per_shard[super::shard_of(k, 63)] += 1;
        }
        let min = per_shard.iter().min().copied().unwrap_or(0);
        let max = per_shard.iter().max().copied().unwrap_or(0);
        assert!(
            min > 500 && max < 1500,
            "shard loads {min}..{max} of 64,000 keys"
        );
    }
}
