//! [`CacheBuilder`]: a cache's settings, and how `build` splits its bounds
//! over the shards.

use std::fmt;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::time::Duration;

use super::metrics::NearMetrics;
use super::shard::Shard;
use super::stats::ReadCounters;
use super::ttl::TimeSource;
use super::{Cache, Clock, Inner, Listener, MAX_SHARDS, RemovalCause, Weigher};

/// Configures and builds a [`Cache`].
///
/// With neither [`max_entries`](Self::max_entries) nor
/// [`max_weight`](Self::max_weight) the cache is unbounded.
pub struct CacheBuilder<K, V, S = ahash::RandomState> {
    max_entries: Option<usize>,
    max_weight: Option<u64>,
    weigher: Option<Weigher<K, V>>,
    ttl: Option<Duration>,
    keep_expired: Option<Duration>,
    shards: Option<usize>,
    clock: Option<Arc<dyn Clock>>,
    listener: Option<Listener<K, V>>,
    hasher: S,
    name: Option<String>,
}

impl<K, V> Default for CacheBuilder<K, V> {
    fn default() -> Self {
        CacheBuilder {
            max_entries: None,
            max_weight: None,
            weigher: None,
            ttl: None,
            keep_expired: None,
            shards: None,
            clock: None,
            listener: None,
            hasher: ahash::RandomState::new(),
            name: None,
        }
    }
}

impl<K, V, S> fmt::Debug for CacheBuilder<K, V, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheBuilder")
            .field("max_entries", &self.max_entries)
            .field("max_weight", &self.max_weight)
            .field("weigher", &self.weigher.is_some())
            .field("ttl", &self.ttl)
            .field("keep_expired", &self.keep_expired)
            .field("shards", &self.shards)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl<K, V, S> CacheBuilder<K, V, S> {
    /// Bounds the number of entries.
    ///
    /// # Examples
    ///
    /// ```
    /// let cache = nearfar::Cache::builder().max_entries(2).build();
    /// cache.insert("a", 1);
    /// cache.insert("b", 2);
    /// cache.insert("c", 3); // evicts one entry to make room
    /// assert_eq!(cache.len(), 2);
    /// assert_eq!(cache.get("c"), Some(3));
    /// assert_eq!(cache.stats().evicted_capacity, 1);
    /// ```
    pub fn max_entries(mut self, n: usize) -> Self {
        self.max_entries = Some(n);
        self
    }

    /// Bounds the total weight (see [`weigher`](Self::weigher); without one
    /// every entry weighs 1).
    ///
    /// # What the bound covers
    /// [`Cache::weight`] counts the entries stored. A value that leaves the
    /// cache (evicted, replaced, removed) is freed only once no reader can
    /// still be cloning it, which takes the epoch moving on. Until then it
    /// still holds memory, so when `V` or `K` has a `Drop` (owns memory), the
    /// bound covers those retired values too: stored and retired weight
    /// together stay within **1.25 x `max_weight`**, at every moment. With a
    /// weigher that returns a value's size in bytes, that bounds the memory
    /// the cache's values hold, besides values callers are inserting (each
    /// is the caller's until it is stored) and clones readers hold.
    ///
    /// An insert that would go past it evicts to make room for itself, then
    /// pushes the epoch and frees what comes back (while not pinned itself)
    /// before it stores. If a reader stays pinned meanwhile (a slow eviction
    /// listener, an [`iter`](Cache::iter) cloning a large shard, a thread
    /// preempted mid-lookup) it waits for it up to 100 ms (2 ms for a while
    /// after a wait that ran out); past that the insert is **refused**:
    /// nothing is stored, any old value for the key is removed, it counts in
    /// [`Stats::rejected`](super::Stats::rejected), and [`try_insert`](Cache::try_insert) hands the
    /// entry back. A reader that never unpins thus holds the memory at the
    /// bound, not past it. Inserts made from an eviction listener run pinned
    /// and do not wait. Values without a `Drop` (plain data, kept inline in
    /// the cache's slots) free nothing when retired and are not counted.
    ///
    /// # Examples
    ///
    /// ```
    /// // Page bodies, up to 10,000 bytes in all.
    /// let pages = nearfar::Cache::builder()
    ///     .max_weight(10_000)
    ///     .weigher(|_id: &u32, body: &String| body.len() as u64)
    ///     .build();
    /// for id in 0..100 {
    ///     pages.insert(id, "x".repeat(200));
    /// }
    /// assert!(pages.weight() <= 10_000); // older pages were evicted
    /// assert!(pages.stats().evicted_capacity >= 50);
    /// ```
    pub fn max_weight(mut self, weight: u64) -> Self {
        self.max_weight = Some(weight);
        self
    }

    /// How much an entry weighs, typically its size in bytes. Called once per
    /// insert before anything is stored (under the shard's lock for values
    /// from a `get_or_insert_with` loader), so it must not use the cache; the
    /// result is stored with the entry.
    ///
    /// An entry heavier than [`Cache::max_entry_weight`] (a shard's share of
    /// [`max_weight`](Self::max_weight)) is refused rather than stored.
    ///
    /// # Panics
    ///
    /// A panic in the weigher propagates to the caller that inserted: the
    /// entry is not stored (an older value for its key is kept), and the
    /// cache stays usable.
    ///
    /// # Examples
    ///
    /// ```
    /// let images = nearfar::Cache::builder()
    ///     .max_weight(64 * 1024)
    ///     .weigher(|name: &String, bytes: &Vec<u8>| (name.len() + bytes.len()) as u64)
    ///     .build();
    /// images.insert("logo.png".to_string(), vec![0; 1_000]);
    /// assert_eq!(images.weight(), 1_008);
    ///
    /// // Too heavy to admit (over a shard's share of the bound, which is at
    /// // least 1/8 of it): handed back, nothing stored.
    /// assert!(images.max_entry_weight() >= 8 * 1024);
    /// assert!(images.try_insert("banner.png".to_string(), vec![0; 100_000]).is_err());
    /// assert_eq!(images.stats().rejected, 1);
    /// ```
    pub fn weigher(mut self, weigher: impl Fn(&K, &V) -> u64 + Send + Sync + 'static) -> Self {
        self.weigher = Some(Arc::new(weigher));
        self
    }

    /// A time to live for entries stored by [`Cache::insert`] and the
    /// `get_or_insert_with` family. [`Cache::insert_with_ttl`] overrides it.
    /// Expiry is kept to the millisecond, rounded up, and a lookup may see
    /// an entry up to about one kernel clock tick late (see
    /// [`Cache::insert_with_ttl`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use nearfar::{Cache, MockClock};
    ///
    /// let clock = MockClock::new();
    /// let sessions = Cache::builder()
    ///     .max_entries(1_000)
    ///     .time_to_live(Duration::from_secs(30 * 60))
    ///     .clock(clock.clone())
    ///     .build();
    /// sessions.insert("9f2c", "alice");
    /// sessions.insert_with_ttl("77ab", "bob", Duration::from_secs(60 * 60));
    ///
    /// clock.advance(Duration::from_secs(31 * 60));
    /// assert_eq!(sessions.get("9f2c"), None); // the default TTL ran out
    /// assert_eq!(sessions.get("77ab"), Some("bob")); // its own TTL did not
    /// ```
    pub fn time_to_live(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Keeps an entry for up to `grace` after its TTL runs out, as a
    /// fail-safe copy: reads treat it as gone ([`Cache::get`] misses, a
    /// `get_or_insert_with` loads), but [`Cache::get_stale`] still returns
    /// it, so a caller whose source fails can serve the last good value.
    ///
    /// Kept entries stay within the cache's bounds and are the first it
    /// evicts (the earliest expired first); past `grace` they are removed
    /// as expired entries are without it. A new value for the key replaces
    /// a kept entry as it would a live one.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use nearfar::{Cache, MockClock};
    ///
    /// let clock = MockClock::new();
    /// let cache = Cache::builder()
    ///     .max_entries(100)
    ///     .keep_expired(Duration::from_secs(60))
    ///     .clock(clock.clone())
    ///     .build();
    /// cache.insert_with_ttl("rate", 1.25, Duration::from_secs(10));
    /// clock.advance(Duration::from_secs(15));
    /// assert_eq!(cache.get("rate"), None);
    /// assert_eq!(cache.get_stale("rate"), Some((1.25, Duration::from_secs(5))));
    /// clock.advance(Duration::from_secs(60));
    /// assert_eq!(cache.get_stale("rate"), None);
    /// ```
    pub fn keep_expired(mut self, grace: Duration) -> Self {
        self.keep_expired = Some(grace);
        self
    }

    /// The number of shards (rounded up to a power of two). The default is
    /// four per CPU, reduced so that each shard holds at least 32 entries.
    /// Weight-bounded caches have at most 8 shards (so an entry of up to 1/8
    /// of `max_weight` is always admitted: see [`Cache::max_entry_weight`]),
    /// and no shard is left without room, whatever is asked for here.
    ///
    /// # Examples
    ///
    /// ```
    /// // Few writers: fewer, larger shards keep eviction closer to one LRU.
    /// let cache = nearfar::Cache::builder().max_entries(10_000).shards(4).build();
    /// for i in 0..1_000u32 {
    ///     cache.insert(i, i * 2);
    /// }
    /// assert_eq!(cache.len(), 1_000);
    /// assert_eq!(cache.get(&500), Some(1_000));
    /// assert!(format!("{cache:?}").contains("shards: 4"));
    /// ```
    pub fn shards(mut self, n: usize) -> Self {
        self.shards = Some(n.max(1));
        self
    }

    /// The clock used for TTLs (default: the system's monotonic clock).
    ///
    /// A [`MockClock`](crate::MockClock) makes expiry testable without
    /// sleeping: time moves only when the test advances it.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use nearfar::{Cache, MockClock};
    ///
    /// let clock = MockClock::new();
    /// let cache = Cache::builder().max_entries(10).clock(clock.clone()).build();
    /// cache.insert_with_ttl("token", 7, Duration::from_secs(60));
    /// clock.advance(Duration::from_secs(59));
    /// assert_eq!(cache.get("token"), Some(7));
    /// clock.advance(Duration::from_secs(1));
    /// assert_eq!(cache.get("token"), None);
    /// ```
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Some(Arc::new(clock));
        self
    }

    /// Called for every entry that leaves the cache, with the reason.
    ///
    /// It runs on the thread that caused the removal, after the shard's lock
    /// is released, so it may use the cache.
    ///
    /// Keep it short. It is handed references into the cache's own storage,
    /// so it runs with the thread pinned to the current epoch: until it
    /// returns, slots freed by any thread from then on cannot be reused, and
    /// writers grow the slab instead (by about one slot per insert made
    /// meanwhile; the entries stay within the bound, the memory does not
    /// shrink back). A listener that blocks on I/O should hand the entry to
    /// a queue or a channel and return.
    ///
    /// # Panics
    ///
    /// A panic in the listener propagates to the caller whose call removed
    /// the entry; the removal itself is done, and the cache stays usable.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use std::time::Duration;
    /// use nearfar::{Cache, MockClock, RemovalCause};
    ///
    /// let clock = MockClock::new();
    /// let causes = Arc::new(Mutex::new(Vec::new()));
    /// let seen = Arc::clone(&causes);
    /// let cache = Cache::builder()
    ///     .max_entries(2)
    ///     .clock(clock.clone())
    ///     .eviction_listener(move |key: &&str, _value: &u32, cause| {
    ///         seen.lock().unwrap().push((*key, cause));
    ///     })
    ///     .build();
    ///
    /// cache.insert("a", 1);
    /// cache.insert("a", 2); // the old value is replaced
    /// cache.remove("a");
    /// cache.insert_with_ttl("b", 3, Duration::from_secs(5));
    /// clock.advance(Duration::from_secs(6));
    /// assert_eq!(cache.get("b"), None); // found expired
    /// assert_eq!(
    ///     *causes.lock().unwrap(),
    ///     [
    ///         ("a", RemovalCause::Replaced),
    ///         ("a", RemovalCause::Removed),
    ///         ("b", RemovalCause::Expired),
    ///     ]
    /// );
    ///
    /// causes.lock().unwrap().clear();
    /// for (key, value) in [("c", 4), ("d", 5), ("e", 6)] {
    ///     cache.insert(key, value);
    /// }
    /// // One of the three made way for the others.
    /// assert_eq!(cache.len(), 2);
    /// assert!(matches!(causes.lock().unwrap()[..], [(_, RemovalCause::Capacity)]));
    /// ```
    pub fn eviction_listener(
        mut self,
        listener: impl Fn(&K, &V, RemovalCause) + Send + Sync + 'static,
    ) -> Self {
        self.listener = Some(Arc::new(listener));
        self
    }

    /// The hasher used to pick shards and index chunks (default: `ahash`).
    ///
    /// The cache spreads the hash with one multiplication, which suits any
    /// hasher whose output bits all depend on the whole key (ahash, SipHash,
    /// foldhash). With a bare multiplicative hash such as FxHash, keys that
    /// differ only in their high bits (`i << 40`) share their index tags, and
    /// each lookup then compares keys along its chunk: measured 4x slower
    /// gets for such keys, with results still correct.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::hash::RandomState; // std's SipHash
    /// use nearfar::Cache;
    ///
    /// let cache: Cache<String, u32, RandomState> = Cache::builder()
    ///     .max_entries(100)
    ///     .hasher(RandomState::new())
    ///     .build();
    /// cache.insert("answer".to_string(), 42);
    /// assert_eq!(cache.get("answer"), Some(42));
    /// ```
    pub fn hasher<S2: BuildHasher>(self, hasher: S2) -> CacheBuilder<K, V, S2> {
        CacheBuilder {
            max_entries: self.max_entries,
            max_weight: self.max_weight,
            weigher: self.weigher,
            ttl: self.ttl,
            keep_expired: self.keep_expired,
            shards: self.shards,
            clock: self.clock,
            listener: self.listener,
            hasher,
            name: self.name,
        }
    }

    /// The cache's name (default `"default"`): the `name` label of its
    /// metrics (feature `metrics`, see [`crate::observe`]) and a field of
    /// its `Debug` output. Give each cache of a process its own: two caches
    /// of one name publish into the same series, and their figures mix.
    ///
    /// ```
    /// let users: nearfar::Cache<u64, String> = nearfar::Cache::builder()
    ///     .max_entries(1_000)
    ///     .name("users")
    ///     .build();
    /// assert_eq!(users.name(), "users");
    /// assert!(format!("{users:?}").contains("users"));
    /// ```
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Builds the cache.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let cache: nearfar::Cache<u64, String> = nearfar::Cache::builder()
    ///     .max_entries(10_000)
    ///     .time_to_live(Duration::from_secs(300))
    ///     .build();
    /// assert!(cache.is_empty());
    /// let handle = cache.clone(); // another handle to the same cache
    /// handle.insert(1, "one".to_string());
    /// assert_eq!(cache.get(&1).as_deref(), Some("one"));
    /// ```
    pub fn build(self) -> Cache<K, V, S> {
        let weighted = self.weigher.is_some();
        let requested = self.shards.unwrap_or_else(|| {
            let cpus = std::thread::available_parallelism().map_or(4, |n| n.get());
            (cpus * 4).min(64)
        });
        let mut shards = requested.clamp(1, MAX_SHARDS).next_power_of_two();
        if weighted || self.max_weight.is_some() {
            shards = shards.min(8);
        }
        // Every shard must have room for something: at least 32 entries per
        // shard by default, and never an empty shard even when asked for.
        let min_per_shard = if self.shards.is_none() { 32 } else { 1 };
        let smallest_bound = match (self.max_entries, self.max_weight) {
            (Some(n), Some(w)) => Some((n as u64).min(w)),
            (Some(n), None) => Some(n as u64),
            (None, w) => w,
        };
        if let Some(bound) = smallest_bound {
            while shards > 1 && bound / (shards as u64) < min_per_shard {
                shards /= 2;
            }
        }
        // Split each bound exactly: the shard budgets add up to the bound.
        let split = |total: u64, i: usize| {
            total / shards as u64 + u64::from((i as u64) < total % shards as u64)
        };
        let notify = self.listener.is_some();
        let shard_list = (0..shards)
            .map(|i| {
                let entries = self
                    .max_entries
                    .map_or(usize::MAX, |n| split(n as u64, i) as usize);
                let weight = self.max_weight.map_or(u64::MAX, |w| split(w, i));
                Shard::new(entries, weight, weighted, notify)
            })
            .collect();
        Cache {
            inner: Arc::new(Inner {
                shard_mask: shards - 1,
                shards: shard_list,
                hasher: self.hasher,
                time: TimeSource::new(self.clock).keeping_expired(self.keep_expired),
                default_ttl: self.ttl,
                weigher: self.weigher,
                listener: self.listener,
                reads: ReadCounters::new(),
                metrics: NearMetrics::new(
                    self.name
                        .unwrap_or_else(|| crate::observe::DEFAULT_NAME.to_owned())
                        .into_boxed_str(),
                ),
            }),
        }
    }
}

// The store's API for a cache layered over it: see `LAYERED` in `mod.rs`.
impl<K: 'static, V: 'static, S> CacheBuilder<K, V, S> {
    /// The same settings for a cache of `W`s that each hold a `V` (found by
    /// `f`): the weigher and the eviction listener see that inner `V`.
    #[allow(
        dead_code,
        reason = "the store's API for a layered cache, unused without one: see `LAYERED`"
    )]
    pub(crate) fn map_values<W: 'static>(self, f: fn(&W) -> &V) -> CacheBuilder<K, W, S> {
        CacheBuilder {
            max_entries: self.max_entries,
            max_weight: self.max_weight,
            weigher: self
                .weigher
                .map(|w| Arc::new(move |k: &K, v: &W| w(k, f(v))) as Weigher<K, W>),
            ttl: self.ttl,
            keep_expired: self.keep_expired,
            shards: self.shards,
            clock: self.clock,
            listener: self
                .listener
                .map(|l| Arc::new(move |k: &K, v: &W, c| l(k, f(v), c)) as Listener<K, W>),
            hasher: self.hasher,
            name: self.name,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::super::{Cache, RemovalCause};

    #[test]
    fn mapped_values_keep_the_weigher_and_the_listener_of_the_inner_value() {
        let removed = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&removed);
        let cache = Cache::builder()
            .max_weight(100)
            .weigher(|_: &u32, v: &String| v.len() as u64)
            .eviction_listener(move |k: &u32, v: &String, cause| {
                seen.lock().unwrap().push((*k, v.clone(), cause));
            })
            .map_values(|w: &(u64, String)| &w.1)
            .build();
        cache.insert(1, (7, "abc".to_string()));
        assert_eq!(cache.weight(), 3);
        cache.remove(&1);
        assert_eq!(
            *removed.lock().unwrap(),
            [(1, "abc".to_string(), RemovalCause::Removed)]
        );
    }
}
