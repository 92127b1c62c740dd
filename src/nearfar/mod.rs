//! [`NearFar`]: the near tier ([`Cache`](crate::Cache)) and the far tier (a memcached
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
//!   one per request. A server that comes back is used again within the
//!   longer of that cooldown and the client's dead timeout (1 s each by
//!   default: see [`circuit_breaker`](NearFarBuilder::circuit_breaker)),
//!   and, empty after a restart, is refilled as keys are read.
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
//! # Fleet-wide invalidation
//!
//! memcached cannot tell other processes that something changed, so
//! [`invalidate_all`](NearFar::invalidate_all) does it with a number:
//! with [`generation_check`](NearFarBuilder::generation_check) set, every
//! process reads the namespace's generation (one memcached item) at most
//! once per interval, and far keys carry it (`namespace:#g<generation>:key`
//! once it is above 0). `invalidate_all` increments it: every process that
//! sees the new number serves none of its near copies again, and reads and
//! writes only the new far keys, so the old far items are never read again
//! (they expire with their far TTL). After `invalidate_all` returns, no
//! reader anywhere sees a value from before it later than
//! `generation_check` plus one round trip (and up to a kernel clock tick:
//! near hits test when the check is due on the coarse clock; see
//! [`generation_check`](NearFarBuilder::generation_check) for the limits of
//! that bound and its cost).
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

#[cfg(feature = "tokio")]
mod asynchronous;
mod builder;
mod call;
mod drive;
mod fail_safe;
mod flow;
mod generation;
mod inner;
mod key;
mod load;
mod observe;
mod read;
mod refresh;
mod stats;
mod warm;
mod write;

use std::borrow::Borrow;
use std::fmt;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::memcached::Client;
use crate::store::Patience;
use drive::{Blocking, block_on};
use inner::{Entry, Far, FarClient, Inner};
use load::Plan;
use refresh::Lookup;
use std::cell::Cell;
use warm::Stopper;

#[cfg(feature = "tokio")]
pub use asynchronous::AsyncNearFar;
pub use builder::{Error, NearFarBuilder};
pub use generation::InvalidateError;
pub use key::FarKey;
pub use stats::NearFarStats;

fn value_of<V>(entry: &Entry<V>) -> &V {
    &entry.value
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
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
    inner: Arc<Inner<K, V, Client>>,
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
        fmt::Debug::fmt(&*self.inner, f)
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
    /// The key may be given in a borrowed form (`&str` for a `String`
    /// key), as for [`Cache::get`](crate::Cache::get); it is made owned only
    /// when the near tier misses. The borrowed form must render the same
    /// far key as the owned one, as std's pairs do (`str` and `String`,
    /// `[T]` and `Vec<T>`, `T` and `Box<T>` or `Arc<T>`: serde writes them
    /// alike).
    ///
    /// # Examples
    ///
    /// ```
    /// let cache: nearfar::NearFar<String, u32> = nearfar::NearFar::builder().build()?;
    /// assert_eq!(cache.get("one"), None);
    /// cache.insert("one".to_string(), 1);
    /// assert_eq!(cache.get("one"), Some(1));
    /// # Ok::<(), nearfar::NearFarError>(())
    /// ```
    #[inline]
    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        let inner = &*self.inner;
        match inner.near.get(key) {
            Some(entry) if !inner.due(&entry) => Some(entry.value),
            entry => self.get_slow(&key.to_owned(), entry),
        }
    }

    /// Starts the key preload (see [`NearFarBuilder::preload`]) on a
    /// thread of its own, joined when the cache is dropped (unless the
    /// preload is what drops it).
    fn preload(inner: &Arc<Inner<K, V, Client>>, keys: Vec<K>) {
        inner.start_preload(keys, |weak, keys, stop| {
            let thread = std::thread::Builder::new()
                .name("nearfar-preload".into())
                .spawn(move || block_on(Inner::preload::<Blocking>(weak, keys, stop)))
                // No thread to be had: no preload (the cache works cold).
                .ok()?;
            let stopper: Stopper = Box::new(move || {
                if thread.thread().id() != std::thread::current().id() {
                    let _ = thread.join();
                }
            });
            Some(stopper)
        });
    }

    /// `get` after a near miss, or with a copy due for revalidation.
    #[cold]
    fn get_slow(&self, key: &K, entry: Option<Entry<V>>) -> Option<V> {
        block_on(self.inner.get_slow::<Blocking>(key, entry))
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
        let entry = match inner.lookup(key) {
            Lookup::Fresh(value) => return Ok(value),
            Lookup::DueRefresh(entry) => return Ok(self.refresh(key, entry, load)),
            Lookup::Load(entry) => entry,
        };
        let plan = match block_on(inner.plan_load::<Blocking>(key, entry)) {
            Plan::Done(v) => return Ok(v),
            plan => plan,
        };
        let ran = Cell::new(false);
        // The loader runs on this thread, which nothing interrupts; a
        // caller waiting for another thread's load of the key is served
        // its last value once `loader_timeout` has passed.
        let instead = || inner.fail_safe_entry(key).map(|(entry, _)| entry);
        let patience = inner.fail_safe.and_then(|f| f.loader_timeout);
        let patience = patience.map(|wait| Patience {
            wait,
            instead: &instead,
        });
        let loader = |sharing| {
            ran.set(true);
            let loading = async { load() };
            block_on(inner.load_fail_safe::<Blocking, E>(key, &plan, sharing, loading, None))
        };
        let result = inner.near.load_after_miss(key.clone(), loader, patience);
        block_on(inner.after_load::<Blocking>(&plan, ran.get()));
        result.map(|entry| entry.value)
    }

    /// A near hit due for refresh-ahead: refreshed here if this caller
    /// wins the key's claim, else its value as it is.
    #[cold]
    fn refresh<E>(&self, key: &K, entry: Entry<V>, load: impl FnOnce() -> Result<V, E>) -> V {
        block_on(
            self.inner
                .refresh_ahead::<Blocking, E>(key, entry, async { load() }),
        )
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
        block_on(self.inner.insert::<Blocking>(key, value));
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
        block_on(self.inner.remove::<Blocking>(key));
    }

    /// Drops this process's near copy of `key` only (the far tier keeps
    /// it): the next read fetches it from memcached.
    ///
    /// # Examples
    ///
    /// A copy known to be out of date (another service changed the value in
    /// memcached, say) is read again from memcached, without deleting it
    /// there for every process:
    ///
    /// ```no_run
    /// use nearfar::{NearFar, memcached::Client};
    ///
    /// let client = Client::builder().servers(["127.0.0.1:11211"]).build()?;
    /// let users: NearFar<u64, String> = NearFar::builder().far(client).namespace("users").build()?;
    /// users.insert(42, "Ada".into()); // in both tiers
    /// users.remove_near(&42);
    /// assert_eq!(users.get(&42).as_deref(), Some("Ada")); // from memcached
    /// assert_eq!(users.stats().far_hits, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// Near only, the copy is all there is:
    ///
    /// ```
    /// let cache: nearfar::NearFar<u8, String> = nearfar::NearFar::builder().build()?;
    /// cache.insert(1, "one".into());
    /// cache.remove_near(&1);
    /// assert_eq!(cache.get(&1), None);
    /// assert_eq!(cache.get_with(1, || "one again".into()), "one again");
    /// # Ok::<(), nearfar::NearFarError>(())
    /// ```
    pub fn remove_near(&self, key: &K) {
        self.inner.near.drop_copy(key);
    }

    /// Invalidates every key of the namespace, in every process: bumps the
    /// namespace's generation in memcached (one `incr`) and clears this
    /// process's near tier. Other processes (built with
    /// [`generation_check`](NearFarBuilder::generation_check)) drop their
    /// near copies at their next check, within `generation_check` plus one
    /// round trip (and up to a kernel clock tick), and nobody reads the far items written before the
    /// invalidation again: reads go to the loader (or a value written
    /// since). Without a far tier, it clears the near tier.
    ///
    /// A read or load of this process running meanwhile still returns its
    /// value to its caller, but keeps nothing near.
    ///
    /// # Errors
    ///
    /// Unlike the other calls, it reports the far tier's failure (an admin
    /// call: its caller needs to know): [`InvalidateError::NotEnabled`]
    /// with a far tier but no `generation_check`;
    /// [`InvalidateError::Unavailable`] when the circuit breaker is open;
    /// [`InvalidateError::Refused`] or [`InvalidateError::NoAnswer`] when
    /// the request failed (the memcached error is counted in
    /// [`NearFarStats::far_errors`]). On an error this process's near tier
    /// is left as it was.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use nearfar::{NearFar, memcached::Client};
    ///
    /// let client = Client::builder().servers(["127.0.0.1:11211"]).build()?;
    /// let prices: NearFar<u64, u64> = NearFar::builder()
    ///     .far(client)
    ///     .namespace("prices")
    ///     .near_ttl(Duration::from_secs(3600))
    ///     .generation_check(Duration::from_secs(1))
    ///     .build()?;
    /// assert_eq!(prices.get_with(7, || 700), 700);
    /// // The price list was reloaded: every process forgets every price
    /// // within about a second.
    /// prices.invalidate_all()?;
    /// assert_eq!(prices.get_with(7, || 710), 710);
    /// assert_eq!(prices.far_key(&7).as_deref(), Some("prices:#g1:7"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// Near only, it clears the near tier:
    ///
    /// ```
    /// let cache: nearfar::NearFar<u8, u8> = nearfar::NearFar::builder().build()?;
    /// cache.insert(1, 1);
    /// cache.invalidate_all()?;
    /// assert_eq!(cache.get(&1), None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn invalidate_all(&self) -> Result<(), InvalidateError> {
        block_on(self.inner.invalidate_all::<Blocking>())
    }

    /// The memcached key used for `key` (without the client's own key
    /// prefix), or `None` without a far tier, when the key cannot be
    /// rendered (see [`FarKey`]), or with
    /// [`generation_check`](NearFarBuilder::generation_check) before this
    /// process has read the namespace's generation.
    ///
    /// It is `namespace + ":" + rendered` (just `rendered` with no
    /// namespace), unless the rendered key is empty, starts with `#`, holds
    /// a space, control byte or DEL, or would make the full key (the
    /// client's key prefix included, or the fallback client's when that is
    /// longer) longer than 250 bytes: then it is
    /// `namespace + ":#" + hex(md5(rendered))`, 32 hex digits. Once the
    /// namespace has been invalidated ([`invalidate_all`](Self::invalidate_all)),
    /// `#g<generation>:` comes after the namespace's `:`
    /// (`users:#g3:42`, `users:#g3:#<md5>`).
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
        self.inner.far_key(key)
    }

    /// Whether the circuit breaker is open (`false` without a far tier):
    /// from the failure that opens it until a far call succeeds again.
    /// Calls skip the far tier while it cools down; after the cooldown one
    /// call at a time is sent as a probe, and it stays open until a probe
    /// succeeds.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use nearfar::{Cache, MockClock, NearFar, memcached::Client};
    ///
    /// let clock = MockClock::new();
    /// // Nothing listens on port 1: every far request fails at once.
    /// let far = Client::builder().servers(["127.0.0.1:1"]).clock(clock.clone()).build()?;
    /// let cache: NearFar<u32, u32> = NearFar::builder()
    ///     .near(Cache::builder().max_entries(100).clock(clock.clone()))
    ///     .far(far)
    ///     .circuit_breaker(1, Duration::from_secs(30))
    ///     .clock(clock.clone())
    ///     .build()?;
    /// assert!(!cache.far_breaker_open());
    /// assert_eq!(cache.get_with(1, || 10), 10); // far fails: loaded here, breaker open
    /// assert!(cache.far_breaker_open());
    /// clock.advance(Duration::from_secs(30));
    /// assert_eq!(cache.get_with(2, || 20), 20); // the probe fails too
    /// assert!(cache.far_breaker_open(), "open until a probe succeeds");
    /// assert_eq!(cache.stats().breaker_trips, 1);
    ///
    /// let near_only: NearFar<u32, u32> = NearFar::builder().build()?;
    /// assert!(!near_only.far_breaker_open());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn far_breaker_open(&self) -> bool {
        self.inner.far_breaker_open()
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
        self.inner.stats()
    }

    /// Publishes the counters, the near tier's included, to the `metrics`
    /// facade now (see [`crate::observe`]), as before a scrape; without
    /// the `metrics` feature it does nothing.
    ///
    /// # Examples
    ///
    /// ```
    /// let cache: nearfar::NearFar<u8, u8> = nearfar::NearFar::builder().name("small").build()?;
    /// cache.get_with(1, || 1);
    /// cache.publish_metrics();
    /// # Ok::<(), nearfar::NearFarError>(())
    /// ```
    pub fn publish_metrics(&self) {
        self.inner.publish_metrics();
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
