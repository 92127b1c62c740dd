//! [`NearFar`]: the near tier ([`Cache`]) and the far tier (a memcached
//! [`Client`]) as one cache.
//!
//! A read looks in the near tier (process memory, no lock); on a miss it
//! reads memcached and keeps the decoded value near; on a miss there too it
//! runs the caller's loader and writes the result to both tiers. Every
//! process (every `NearFar` instance) has its own near tier; memcached is
//! shared.
//!
//! # Guarantees
//!
//! * **Once per key, everywhere.** Concurrent callers of
//!   [`get_with`](NearFar::get_with) for one missing key run the loader once
//!   per process (the near tier's coalescing) and once across processes
//!   (a memcached lease, `mg ... N`): one caller wins the lease and loads,
//!   the others poll memcached with short, growing pauses for up to
//!   [`lease_wait`](NearFarBuilder::lease_wait). A lease older than that
//!   (its holder crashed, stalled or is slow) is taken over: deleted by its
//!   CAS and leased again, so an abandoned lease costs the fleet at most one
//!   `lease_wait`, not one per process until it lapses.
//! * **No errors from the far tier.** [`get`](NearFar::get) and
//!   [`get_with`](NearFar::get_with) never fail because memcached is down,
//!   slow or returns garbage: they count the error and go on with the near
//!   tier and the loader. A circuit breaker stops calling a failing server
//!   for a cooldown, so an outage costs one failed call per cooldown, not
//!   one per request. A server that comes back empty is refilled as keys
//!   are read.
//! * **No write undone by an outage.** An `insert` or `remove` whose far
//!   write the server did not take (it timed out or failed, the server was
//!   marked dead, the breaker skipped it, or it went to another server
//!   while this one was ejected) is recorded by the client, which deletes
//!   the key on that server before sending it anything else: the older far
//!   copy is never served again once the server is back, to this process
//!   or, after this process's next far call to that server, to any other.
//!   The record is bounded; past its bound the server is emptied on return
//!   instead (see
//!   [`ClientBuilder::pending_invalidations`](crate::memcached::ClientBuilder::pending_invalidations)).
//!   An `insert` memcached refuses (a value over the item limit, one the
//!   codec cannot encode) deletes the older far copy.
//!
//! # Staleness
//!
//! A near entry is a copy. After another process writes or removes a key,
//! this process may keep serving its copy until the first of:
//!
//! * the copy's near TTL ends: [`near_ttl`](NearFarBuilder::near_ttl), never
//!   longer than what memcached said was left of the item's own TTL when the
//!   copy was taken;
//! * a read after [`revalidate_after`](NearFarBuilder::revalidate_after)
//!   has passed since the copy was taken or last checked: that read checks
//!   the item's CAS in memcached (no value bytes) and refetches if it
//!   changed or is gone.
//!
//! So the staleness a reader can observe is bounded by
//! `min(near_ttl, revalidate_after)` plus one round trip; with neither set,
//! by the far item's TTL ([`far_ttl`](NearFarBuilder::far_ttl)). Writes
//! and removals by the same `NearFar` (and its clones) are seen at once.
//! While the far tier is unreachable, near copies are served until their
//! near TTL ends.
//!
//! With [`stale_on_remove`](NearFarBuilder::stale_on_remove), `remove`
//! marks the far item stale (`md ... I`) instead of deleting it: the next
//! `get_with` caller recomputes it while the others keep being served the
//! stale value (for at most the given time, and in the near tier for at most
//! one second).
//!
//! # Examples
//!
//! ```no_run
//! use std::time::Duration;
//! use nearfar::{Cache, NearFar};
//! use nearfar::memcached::Client;
//!
//! let client = Client::builder().servers(["127.0.0.1:11211"]).build()?;
//! let users: NearFar<u64, String> = NearFar::builder()
//!     .near(Cache::builder().max_entries(10_000))
//!     .far(client)
//!     .namespace("users:v3")
//!     .far_ttl(Duration::from_secs(3600))
//!     .near_ttl(Duration::from_secs(30))
//!     .revalidate_after(Duration::from_secs(5))
//!     .build()?;
//!
//! let name = users.get_with(42, || "Ada".to_string()); // loads once, everywhere
//! assert_eq!(users.get(&42).as_deref(), Some("Ada"));
//! users.remove(&42);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod builder;
mod call;
mod drive;
mod flow;
mod key;
mod load;
mod read;
mod stats;

use std::cell::Cell;
use std::fmt;
use std::hash::{BuildHasher, Hash, RandomState};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Cache;
use crate::clock::Timer;
use crate::memcached::health::Circuit;
use crate::memcached::{Cas, Client};
use crate::store::Sharing;
use call::Call;
use flow::Ctx;
use flow::load::Store;
use flow::read::Keep;
use flow::write::{Insert, Remove};
use stats::Counters;

pub use builder::{Error, NearFarBuilder};
pub use key::FarKey;
pub use stats::NearFarStats;

/// How many write generations keys are spread over (see `Inner::gens`): a
/// write to one key makes a far read of another key in its stripe, running
/// at the same time, skip its near fill (it is fetched again on the next
/// `get`), so stripes are many (8 KiB of counters).
const GENERATIONS: usize = 1024;

/// A near-tier entry: the value and what revalidation needs.
#[derive(Clone, Debug)]
struct Entry<V> {
    value: V,
    /// When the value was fetched or last revalidated (ns since `epoch`).
    checked: u64,
    /// When the near copy expires (ns since `epoch`; `u64::MAX`: never).
    expires: u64,
    /// The far item's CAS unique when known, else 0 (never a real CAS).
    cas: u64,
}

impl<V> Entry<V> {
    /// An entry for `value` fetched at `now`, near for `ttl` (`None`: no
    /// bound).
    fn at(now: u64, value: V, cas: u64, ttl: Option<Duration>) -> Self {
        Entry {
            value,
            checked: now,
            expires: ttl.map_or(u64::MAX, |t| now.saturating_add(nanos(t))),
            cas,
        }
    }
}

fn value_of<V>(entry: &Entry<V>) -> &V {
    &entry.value
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// The far tier and its settings.
struct Far {
    client: Client,
    breaker: Circuit,
    fallback: Option<(Client, Circuit)>,
    /// The longer key prefix of the client and the fallback client: every
    /// far key must fit memcached's limit with either.
    prefix_len: usize,
    namespace: String,
    far_ttl: Duration,
    lease_ttl: Duration,
    lease_wait: Duration,
    stale_on_remove: Option<Duration>,
}

struct Inner<K, V> {
    near: Cache<K, Entry<V>>,
    far: Option<Far>,
    near_ttl: Option<Duration>,
    /// `revalidate_after` in ns; `u64::MAX` when off (or no far tier).
    revalidate: u64,
    /// The clock of every timed decision: revalidation, the breaker.
    timer: Timer,
    counters: Counters,
    /// Write generations, one per stripe of keys: `insert` and `remove` bump
    /// their key's after the far write and before the near one. A `get`
    /// that read the far tier before such a bump does not keep what it
    /// read near. (`get_with` loads need no generation: the near tier marks
    /// a load superseded when its key is written or removed meanwhile.)
    gens: Box<[AtomicU64]>,
    gen_hasher: RandomState,
}

/// The near and far tiers as one cache. Made by [`NearFar::builder`].
///
/// A handle: `Clone` is cheap and clones share everything. See the
/// [module documentation](self) for the read path, the guarantees and the
/// staleness bounds. Without [`far`](NearFarBuilder::far) it is a near-only
/// cache with the same API.
///
/// # Examples
///
/// ```
/// use nearfar::{Cache, NearFar};
///
/// // Near only (no memcached): the same API, one loader run per key.
/// let cache: NearFar<String, u32> = NearFar::builder()
///     .near(Cache::builder().max_entries(1_000))
///     .build()?;
/// assert_eq!(cache.get_with("a".to_string(), || 1), 1);
/// assert_eq!(cache.get_with("a".to_string(), || 2), 1);
/// assert_eq!(cache.get(&"a".to_string()), Some(1));
/// assert_eq!(cache.stats().loader_calls, 1);
/// # Ok::<(), nearfar::NearFarError>(())
/// ```
pub struct NearFar<K, V> {
    inner: Arc<Inner<K, V>>,
}

impl<K, V> Clone for NearFar<K, V> {
    fn clone(&self) -> Self {
        NearFar {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<K, V> fmt::Debug for NearFar<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("NearFar");
        d.field("near", &self.inner.near);
        if let Some(far) = &self.inner.far {
            d.field("far", &far.client)
                .field("namespace", &far.namespace)
                .field("breaker_open", &far.breaker.is_open());
        }
        d.finish_non_exhaustive()
    }
}

/// What a revalidation found.
enum Check<V> {
    /// The far item is unchanged (or could not be checked): serve this.
    Keep(V),
    /// Changed or gone: fetch again.
    Changed,
    /// Stale (invalidated), and this check took its recompute token (the
    /// item's CAS unique).
    WonStale(V, Cas),
}

/// Runs its closure when dropped (also while unwinding) unless forgotten.
struct OnDrop<F: FnOnce()>(Option<F>);

impl<F: FnOnce()> Drop for OnDrop<F> {
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            f();
        }
    }
}

impl<K, V> NearFar<K, V>
where
    K: Hash + Eq + Clone + FarKey + Send + Sync + 'static,
    V: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
{
    /// A builder with the defaults listed on [`NearFarBuilder`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use nearfar::{Cache, NearFar};
    /// use nearfar::memcached::Client;
    ///
    /// let far = Client::builder()
    ///     .servers(["10.0.0.1:11211", "10.0.0.2:11211"])
    ///     .io_timeout(Duration::from_millis(100))
    ///     .connect_timeout(Duration::from_millis(100))
    ///     .build()?;
    /// let cache: NearFar<String, Vec<u8>> = NearFar::builder()
    ///     .near(Cache::builder().max_weight(64 << 20).weigher(|k: &String, v: &Vec<u8>| (k.len() + v.len()) as u64))
    ///     .far(far)
    ///     .namespace("pages:v1")
    ///     .near_ttl(Duration::from_secs(10))
    ///     .circuit_breaker(3, Duration::from_secs(2))
    ///     .build()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn builder() -> NearFarBuilder<K, V> {
        NearFarBuilder::default()
    }

    /// The value for `key`: from the near tier, else from memcached (kept
    /// near for `min(near_ttl, what is left of its far TTL)`), else `None`.
    ///
    /// A far value that does not decode into `V` is a miss (counted in
    /// [`NearFarStats::decode_errors`]); a far error is a miss too (counted
    /// in `far_errors`). A value memcached marked stale is returned (counted
    /// in `stale_serves`).
    ///
    /// # Examples
    ///
    /// ```
    /// let cache: nearfar::NearFar<u32, String> = nearfar::NearFar::builder().build()?;
    /// assert_eq!(cache.get(&1), None);
    /// cache.insert(1, "one".into());
    /// assert_eq!(cache.get(&1).as_deref(), Some("one"));
    /// # Ok::<(), nearfar::NearFarError>(())
    /// ```
    #[inline]
    pub fn get(&self, key: &K) -> Option<V> {
        let inner = &*self.inner;
        match inner.near.get(key) {
            Some(entry) if !self.due(&entry) => Some(entry.value),
            Some(entry) => self.get_revalidate(key, entry),
            None => self.get_far(key),
        }
    }

    /// The value for `key`, or `load`'s result written to both tiers.
    ///
    /// `load` runs once per key however many callers ask at once: once per
    /// process (the others wait for it), and once across processes sharing
    /// memcached (the others poll for the winner's value, up to
    /// [`lease_wait`](NearFarBuilder::lease_wait)). The far tier's failures
    /// are never returned: without it, `load` runs locally.
    ///
    /// # Panics
    ///
    /// When `load` panics (the panic propagates to this caller only; other
    /// waiters retry, and the memcached lease is released), or when `load`
    /// asks this cache for the same key (it would wait for itself).
    ///
    /// # Examples
    ///
    /// ```
    /// let cache: nearfar::NearFar<u32, u64> = nearfar::NearFar::builder().build()?;
    /// assert_eq!(cache.get_with(10, || 10 * 10), 100);
    /// # Ok::<(), nearfar::NearFarError>(())
    /// ```
    pub fn get_with(&self, key: K, load: impl FnOnce() -> V) -> V {
        self.get_with_ref(&key, load)
    }

    /// Like [`get_with`](Self::get_with) for a fallible loader. An error is
    /// not cached: it goes to this caller and the callers of this process
    /// waiting on the same load (one shared `Arc`), and the next caller
    /// tries again. A memcached lease won for the failed load is released.
    ///
    /// # Errors
    ///
    /// The loader's error, shared. Never an error of the far tier.
    ///
    /// # Panics
    ///
    /// As for [`get_with`](Self::get_with).
    ///
    /// # Examples
    ///
    /// ```
    /// let cache: nearfar::NearFar<String, u32> = nearfar::NearFar::builder().build()?;
    /// let ok = cache.try_get_with("7".to_string(), || "7".parse::<u32>());
    /// assert_eq!(ok.unwrap(), 7);
    /// let err = cache.try_get_with("x".to_string(), || "x".parse::<u32>());
    /// assert!(err.is_err());
    /// # Ok::<(), nearfar::NearFarError>(())
    /// ```
    pub fn try_get_with<E>(&self, key: K, load: impl FnOnce() -> Result<V, E>) -> Result<V, Arc<E>>
    where
        E: Send + Sync + 'static,
    {
        self.try_get_with_ref(&key, load)
    }

    /// [`get_with`](Self::get_with) for a borrowed key.
    fn get_with_ref(&self, key: &K, load: impl FnOnce() -> V) -> V {
        match self.try_get_with_ref(key, || Ok::<V, std::convert::Infallible>(load())) {
            Ok(v) => v,
            Err(e) => match *e {},
        }
    }

    /// [`try_get_with`](Self::try_get_with) for a borrowed key, cloned only
    /// on a near miss: the memoisation path ([`crate::memo`]), where a near
    /// hit should cost no clone of the key.
    fn try_get_with_ref<E>(&self, key: &K, load: impl FnOnce() -> Result<V, E>) -> Result<V, Arc<E>>
    where
        E: Send + Sync + 'static,
    {
        let inner = &*self.inner;
        let mut won_stale = None;
        let far = self.call();
        if let Some(entry) = inner.near.get(key) {
            if !self.due(&entry) {
                return Ok(entry.value);
            }
            // Due only with a far tier.
            let Some(far) = &far else {
                return Ok(entry.value);
            };
            match self.revalidate(far, key, entry) {
                Check::Keep(v) => return Ok(v),
                Check::Changed => {}
                Check::WonStale(_, cas) => won_stale = Some(cas),
            }
            inner.near.drop_copy(key);
        }
        let Some(far) = &far else {
            return self.load_near_only(key, load);
        };
        let Some(fkey) = self.key_of(far, key) else {
            return self.load_near_only(key, load);
        };
        let ran = Cell::new(false);
        // The lookup above counted the near miss (or hit, for an entry that
        // was then found changed): the load does not look again. An
        // `insert` or `remove` of this key by this `NearFar` while the load
        // runs writes the near tier after the far one, which marks the load
        // superseded: its value (maybe read before that far write) goes to
        // its callers and is not kept near.
        let result = inner.near.load_after_miss(key.clone(), |sharing| {
            ran.set(true);
            let (entry, ttl) = if sharing == Sharing::Unshared {
                // This caller's wait on a load of this process was refused
                // (loaders waiting on each other in a cycle): that load's
                // leader holds the memcached lease, so polling it would only
                // wait out `lease_wait`. Load here; store far only with a
                // recompute token this caller holds.
                let store = won_stale.map_or(Store::Skip, Store::Stale);
                self.compute(far, &fkey, store, load)?
            } else {
                self.load_through(far, &fkey, won_stale, load)?
            };
            Ok((entry, Some(ttl)))
        });
        if let Some(cas) = won_stale.filter(|_| !ran.get()) {
            // Another caller of this process loaded: it saw the item stale
            // and served it, so the recompute token this caller holds would
            // go unused. Hand it back.
            self.give_back_token(far, &fkey, cas);
        }
        result.map(|entry| entry.value)
    }

    /// Stores `value` under `key` in both tiers (far for
    /// [`far_ttl`](NearFarBuilder::far_ttl)). A far failure is counted,
    /// not returned: the near tier holds the value all the same.
    ///
    /// # Examples
    ///
    /// ```
    /// let cache: nearfar::NearFar<&'static str, u8> = nearfar::NearFar::builder().build()?;
    /// cache.insert("k", 1);
    /// assert_eq!(cache.get(&"k"), Some(1));
    /// # Ok::<(), nearfar::NearFarError>(())
    /// ```
    pub fn insert(&self, key: K, value: V) {
        let inner = &*self.inner;
        let Some(far) = &inner.far else {
            // A load of the key running meanwhile is superseded by this
            // write (the near tier sees to it) and does not store over it.
            let entry = self.entry(value, 0, inner.near_ttl);
            match inner.near_ttl {
                Some(ttl) => inner.near.insert_with_ttl(key, entry, ttl),
                None => inner.near.insert(key, entry),
            }
            return;
        };
        let far = &Call::new(far, &inner.counters, &inner.timer);
        // The CAS unique memcached gave our write: a revalidation of this
        // entry then finds the item unchanged (0: unknown, always refetched).
        let cas = self.key_of(far, &key).and_then(|fkey| {
            let mut flow = Insert::new(&fkey, &value, far.far_ttl);
            drive::run(far, &inner.timer, &mut flow)
        });
        // After the far write, before the near one: a far read that began
        // before the far write (a `get` filling the near tier) sees the bump
        // and keeps nothing near. (A `get_with` load in progress is
        // superseded by the near write below.)
        self.generation(&key).fetch_add(1, Ordering::AcqRel);
        let ttl = self.bound(Some(far.far_ttl));
        let entry = self.entry(value, cas.map_or(0, |c| c.0), Some(ttl));
        inner.near.insert_with_ttl(key, entry, ttl);
    }

    /// Removes `key` from both tiers (and from the fallback pool), or with
    /// [`stale_on_remove`](NearFarBuilder::stale_on_remove) marks the far
    /// item stale. Other processes may still serve their near copies for a
    /// bounded time (see the [module docs](self)). Far failures are counted.
    ///
    /// # Examples
    ///
    /// ```
    /// let cache: nearfar::NearFar<u8, u8> = nearfar::NearFar::builder().build()?;
    /// cache.insert(1, 1);
    /// cache.remove(&1);
    /// assert_eq!(cache.get(&1), None);
    /// # Ok::<(), nearfar::NearFarError>(())
    /// ```
    pub fn remove(&self, key: &K) {
        let inner = &*self.inner;
        inner.near.remove(key);
        let far = self.call();
        if let Some((far, fkey)) = far.as_ref().and_then(|f| Some((f, self.key_of(f, key)?))) {
            let mut flow = Remove::new(&fkey, far.stale_on_remove);
            drive::run::<V, _>(far, &inner.timer, &mut flow);
        }
        // After the far removal: a `get` of this process that read the old
        // value before it sees the bump and keeps nothing near, one that
        // already filled the near tier is undone by the removal below, and
        // a `get_with` load still running is superseded by it.
        self.generation(key).fetch_add(1, Ordering::AcqRel);
        inner.near.remove(key);
    }

    /// Drops this process's near copy of `key` only (the far tier keeps
    /// it): the next read fetches it from memcached.
    pub fn remove_near(&self, key: &K) {
        self.inner.near.drop_copy(key);
    }

    /// The memcached key used for `key` (without the client's own key
    /// prefix), or `None` without a far tier or when the key cannot be
    /// rendered (see [`FarKey`]).
    ///
    /// It is `namespace + ":" + rendered` (just `rendered` with no
    /// namespace), unless the rendered key is empty, starts with `#`, holds
    /// a space, control byte or DEL, or would make the full key (the
    /// client's key prefix included, or the fallback client's when that is
    /// longer) longer than 250 bytes: then it is
    /// `namespace + ":#" + hex(md5(rendered))`, 32 hex digits.
    ///
    /// # Examples
    ///
    /// ```
    /// # use nearfar::{NearFar, memcached::Client};
    /// let client = Client::builder().servers(["127.0.0.1:11211"]).build().unwrap();
    /// let cache: NearFar<String, u32> = NearFar::builder().far(client).namespace("ns").build()?;
    /// assert_eq!(cache.far_key(&"a".into()).as_deref(), Some("ns:a"));
    /// let odd = cache.far_key(&"a b".into()).unwrap();
    /// assert!(odd.starts_with("ns:#") && odd.len() == 3 + 33);
    /// # Ok::<(), nearfar::NearFarError>(())
    /// ```
    pub fn far_key(&self, key: &K) -> Option<String> {
        self.key_of(self.inner.far.as_ref()?, key)
    }

    /// Whether the circuit breaker is open now (far calls are skipped);
    /// `false` without a far tier.
    pub fn far_breaker_open(&self) -> bool {
        self.inner.far.as_ref().is_some_and(|f| f.breaker.is_open())
    }

    /// A snapshot of the counters.
    ///
    /// # Examples
    ///
    /// ```
    /// let cache: nearfar::NearFar<u8, u8> = nearfar::NearFar::builder().build()?;
    /// cache.get_with(1, || 1);
    /// cache.get(&1);
    /// let s = cache.stats();
    /// assert_eq!((s.loader_calls, s.near_hits), (1, 1));
    /// # Ok::<(), nearfar::NearFarError>(())
    /// ```
    pub fn stats(&self) -> NearFarStats {
        let inner = &*self.inner;
        let (trips, skips) = inner.far.as_ref().map_or((0, 0), |f| {
            let load =
                |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
            let mut trips = load(&f.breaker.trips);
            let mut skips = load(&f.breaker.skips);
            if let Some((_, b)) = &f.fallback {
                trips += load(&b.trips);
                skips += load(&b.skips);
            }
            (trips, skips)
        });
        inner.counters.snapshot(inner.near.stats(), trips, skips)
    }

    // ---- internals ------------------------------------------------------

    /// The far tier for one call of this `NearFar` (see [`Call`]); `None`
    /// without one.
    fn call(&self) -> Option<Call<'_>> {
        let inner = &*self.inner;
        inner
            .far
            .as_ref()
            .map(|far| Call::new(far, &inner.counters, &inner.timer))
    }

    /// The settings and counters the far-tier flows decide with.
    fn ctx(&self, far: &Far) -> Ctx<'_> {
        let inner = &*self.inner;
        Ctx {
            counters: &inner.counters,
            far_ttl: far.far_ttl,
            lease_ttl: far.lease_ttl,
            lease_wait: far.lease_wait,
            near_ttl: inner.near_ttl,
        }
    }

    /// Nanoseconds since the epoch, on the revalidation clock.
    fn now(&self) -> u64 {
        let inner = &*self.inner;
        inner.timer.now()
    }

    /// Whether `entry` is due for revalidation.
    #[inline]
    fn due(&self, entry: &Entry<V>) -> bool {
        let after = self.inner.revalidate;
        after != u64::MAX && self.now().saturating_sub(entry.checked) >= after
    }

    /// The write generation of `key`'s stripe.
    fn generation(&self, key: &K) -> &AtomicU64 {
        let inner = &*self.inner;
        // The remainder is below `GENERATIONS`, so it fits a usize.
        let stripe = (inner.gen_hasher.hash_one(key) % GENERATIONS as u64) as usize;
        &inner.gens[stripe]
    }

    fn key_of(&self, far: &Far, key: &K) -> Option<String> {
        let rendered = key.far_key()?;
        Some(key::full_key(&far.namespace, far.prefix_len, &rendered))
    }

    /// An entry for `value` fetched now, near for `ttl` (`None`: no bound).
    fn entry(&self, value: V, cas: u64, ttl: Option<Duration>) -> Entry<V> {
        Entry::at(self.now(), value, cas, ttl)
    }

    /// The near TTL of a value with `far_left` left in memcached.
    fn bound(&self, far_left: Option<Duration>) -> Duration {
        let near = self.inner.near_ttl.unwrap_or(Duration::MAX);
        near.min(far_left.unwrap_or(Duration::MAX))
    }

    /// Keeps `value`, read from the far tier, near as `keep` says; `seen`
    /// is the key's write generation before the read.
    fn put_near(&self, key: &K, seen: u64, value: V, keep: Keep) {
        let entry = self.entry(value, keep.cas, Some(keep.ttl));
        self.keep_near(key, seen, entry, keep.ttl);
    }

    /// Stores `entry`, made from a far read, near for `ttl`, unless this
    /// `NearFar` wrote or removed `key` since the read began (its write
    /// generation is no longer `seen`): the read may predate that write, and
    /// storing it would undo it here. A write landing between the check and
    /// the store is caught by the second check.
    fn keep_near(&self, key: &K, seen: u64, entry: Entry<V>, ttl: Duration) {
        let generation = self.generation(key);
        if generation.load(Ordering::Acquire) != seen {
            return;
        }
        // A fill, not a write: it does not supersede a `get_with` load of
        // the key in progress (which may have computed a newer value).
        self.inner.near.fill_with_ttl(key.clone(), entry, ttl);
        if generation.load(Ordering::Acquire) != seen {
            self.inner.near.drop_copy(key);
        }
    }
}

#[cfg(test)]
mod tests;

/// `#[nearfar::memoize(store = ...)]` and [`crate::memo`] can memoise through
/// a `NearFar`: results are shared with other processes through memcached, and
/// a far-tier outage degrades to the near tier and the function itself.
impl<K, V> crate::memo::MemoStore<K, V> for NearFar<K, V>
where
    K: Hash + Eq + Clone + FarKey + Send + Sync + 'static,
    V: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
{
    fn get_or_compute(&self, key: &K, compute: &mut dyn FnMut() -> V) -> V {
        self.get_with_ref(key, compute)
    }

    fn try_get_or_compute(&self, key: &K, compute: &mut dyn FnMut() -> Option<V>) -> Option<V> {
        self.try_get_with_ref(key, || compute().ok_or(())).ok()
    }
}
