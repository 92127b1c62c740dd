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
//!   [`ClientBuilder::pending_invalidations`](memcached::ClientBuilder::pending_invalidations)).
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

mod breaker;
mod call;
mod key;
mod stats;

use std::cell::Cell;
use std::fmt;
use std::hash::{BuildHasher, Hash, RandomState};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::memcached::{self, Cas, Client, Lease};
use crate::{Cache, CacheBuilder, Clock};
use breaker::Breaker;
use call::{Call, Failure, Pool};
use stats::{Counters, bump};

pub use key::FarKey;
pub use stats::NearFarStats;

/// How long a value memcached marked stale is kept in the near tier.
const STALE_NEAR_TTL: Duration = Duration::from_secs(1);
/// The first and the longest pause between polls of a held lease.
const FIRST_PAUSE: Duration = Duration::from_millis(1);
const MAX_PAUSE: Duration = Duration::from_millis(50);
/// How many write generations keys are spread over (see `Inner::gens`): a
/// write to one key makes a far read of another key in its stripe, running
/// at the same time, skip its near fill (it is fetched again on the next
/// `get`), so stripes are many (8 KiB of counters).
const GENERATIONS: usize = 1024;

/// Why a [`NearFarBuilder`] could not build.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// A setting is out of range.
    InvalidSetting {
        /// The builder method.
        setting: &'static str,
        /// What it accepts.
        expected: &'static str,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidSetting { setting, expected } => {
                write!(
                    f,
                    "invalid NearFar setting `{setting}`: expected {expected}"
                )
            }
        }
    }
}

impl std::error::Error for Error {}

/// A near-tier entry: the value and what revalidation needs.
#[derive(Clone)]
struct Entry<V> {
    value: V,
    /// When the value was fetched or last revalidated (ns since `epoch`).
    checked: u64,
    /// When the near copy expires (ns since `epoch`; `u64::MAX`: never).
    expires: u64,
    /// The far item's CAS unique when known, else 0 (never a real CAS).
    cas: u64,
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
    breaker: Breaker,
    fallback: Option<(Client, Breaker)>,
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
    clock: Option<Arc<dyn Clock>>,
    epoch: Instant,
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

/// Configures and builds a [`NearFar`]. Made by [`NearFar::builder`].
///
/// Defaults: a near tier of at most 10,000 entries, no far tier, no
/// namespace, far TTL 1 hour, near TTL bounded only by the far item's TTL,
/// no revalidation, lease TTL 10 s, lease wait 1 s, `remove` deletes, and a
/// circuit breaker that opens after 5 consecutive far failures for 1 s.
#[must_use]
pub struct NearFarBuilder<K, V> {
    near: Option<CacheBuilder<K, V>>,
    far: Option<Client>,
    fallback: Option<Client>,
    namespace: String,
    far_ttl: Duration,
    near_ttl: Option<Duration>,
    revalidate_after: Option<Duration>,
    lease_ttl: Duration,
    lease_wait: Duration,
    stale_on_remove: Option<Duration>,
    breaker: (u32, Duration),
    clock: Option<Arc<dyn Clock>>,
}

impl<K, V> fmt::Debug for NearFarBuilder<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NearFarBuilder")
            .field("near", &self.near)
            .field("far", &self.far)
            .field("fallback", &self.fallback)
            .field("namespace", &self.namespace)
            .field("far_ttl", &self.far_ttl)
            .field("near_ttl", &self.near_ttl)
            .field("revalidate_after", &self.revalidate_after)
            .field("lease_ttl", &self.lease_ttl)
            .field("lease_wait", &self.lease_wait)
            .field("stale_on_remove", &self.stale_on_remove)
            .field("circuit_breaker", &self.breaker)
            .finish_non_exhaustive()
    }
}

impl<K, V> Default for NearFarBuilder<K, V> {
    fn default() -> Self {
        NearFarBuilder {
            near: None,
            far: None,
            fallback: None,
            namespace: String::new(),
            far_ttl: Duration::from_secs(3600),
            near_ttl: None,
            revalidate_after: None,
            lease_ttl: Duration::from_secs(10),
            lease_wait: Duration::from_secs(1),
            stale_on_remove: None,
            breaker: (5, Duration::from_secs(1)),
            clock: None,
        }
    }
}

impl<K, V> NearFarBuilder<K, V> {
    /// The near tier's settings (bounds, weigher, eviction listener, shards,
    /// clock). Its weigher and listener see the values as stored.
    ///
    /// With a far tier, every near entry gets an explicit TTL (see
    /// [`near_ttl`](Self::near_ttl)), so the builder's `time_to_live` is not
    /// used; without one, it applies when `near_ttl` is not set. Entries
    /// refreshed by revalidation are written again (a listener sees
    /// [`RemovalCause::Replaced`](crate::RemovalCause::Replaced)).
    pub fn near(mut self, near: CacheBuilder<K, V>) -> Self {
        self.near = Some(near);
        self
    }

    /// The far tier: a memcached client (its own key prefix, servers and
    /// timeouts apply). Short I/O and connect timeouts keep the cost of a
    /// slow server low.
    pub fn far(mut self, client: Client) -> Self {
        self.far = Some(client);
        self
    }

    /// An old memcached pool to warm the new one from: on a far miss the
    /// same key is read there, and a value found is copied into the far tier
    /// (with what is left of its TTL) and used. `remove` deletes from both.
    ///
    /// Both pools get the same memcached key, digested when it would be too
    /// long with the longer of the two clients' key prefixes (see
    /// [`NearFar::far_key`]). Give the old client a key prefix no longer
    /// than the new one's: otherwise a long key is digested by the processes
    /// that have this fallback and not by those that do not, and during a
    /// migration the two kinds would not see each other's writes.
    pub fn fallback(mut self, old: Client) -> Self {
        self.fallback = Some(old);
        self
    }

    /// The prefix of every far key (`namespace + ":" + key`). Change it
    /// (`"users:v3"` to `"users:v4"`) to invalidate a whole family at once:
    /// the old items are simply never read again and expire. At most 200
    /// bytes, no spaces or control bytes.
    ///
    /// Keys may hold `:` too, so two namespaces where one is the other
    /// plus `":..."` share far keys: `"a"` with key `"b:c"` and `"a:b"`
    /// with key `"c"` are both `a:b:c`. Give caches that share memcached
    /// namespaces none of which starts with another followed by `:`
    /// (`"users:v3"` and `"orders:v1"`, not `"users"` and `"users:v3"`).
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// How long values written to memcached live there (default 1 hour;
    /// `Duration::MAX`: as long as the server keeps them).
    pub fn far_ttl(mut self, ttl: Duration) -> Self {
        self.far_ttl = ttl;
        self
    }

    /// The longest a value stays in the near tier; never longer than what
    /// the far tier says is left of the item's TTL. Bounds how long another
    /// process's write can go unseen (see the [module docs](self)). Must not
    /// be zero (leave it unset, or use [`remove_near`](NearFar::remove_near)).
    pub fn near_ttl(mut self, ttl: Duration) -> Self {
        self.near_ttl = Some(ttl);
        self
    }

    /// Checks a near entry against memcached (by CAS, no value bytes) on the
    /// first read after it has been held this long: unchanged, it is kept
    /// for another period; changed or gone, it is refetched.
    pub fn revalidate_after(mut self, after: Duration) -> Self {
        self.revalidate_after = Some(after);
        self
    }

    /// How long a lease (the right to compute a missing value) is held in
    /// memcached before it lapses if its holder never stores (default 10 s;
    /// memcached counts whole seconds, at least one).
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = ttl;
        self
    }

    /// How long a caller that lost the lease polls memcached for the
    /// winner's value (default 1 s).
    ///
    /// A lease older than this is taken to be abandoned: the first caller
    /// to find it so deletes the placeholder by its CAS (never a value
    /// stored meanwhile) and leases again, then loads and fills the far
    /// tier for everyone (the old holder's store, if it ever comes, is then
    /// refused by its CAS and its value kept to itself). A placeholder's age
    /// is told from what memcached says is left of its TTL, so a caller that
    /// arrives late takes it over without waiting; give every process that
    /// shares a namespace the same [`lease_ttl`](Self::lease_ttl).
    ///
    /// A caller that finds a fresh placeholder right after its takeover
    /// (another caller took it over first) loads without waiting again,
    /// and its value is returned (and kept near) but not written to
    /// memcached: with the winner's placeholder possibly removed meanwhile,
    /// no store could tell a removal from a lapsed lease.
    pub fn lease_wait(mut self, wait: Duration) -> Self {
        self.lease_wait = wait;
        self
    }

    /// Makes [`NearFar::remove`] mark the far item stale for `stale_for`
    /// instead of deleting it: stale-while-revalidate (see the
    /// [module docs](self)). Memcached counts whole seconds, at least one.
    pub fn stale_on_remove(mut self, stale_for: Duration) -> Self {
        self.stale_on_remove = Some(stale_for);
        self
    }

    /// Opens the circuit breaker after `failures` consecutive far failures
    /// (connection errors, timeouts) for `cooldown`; then one call probes the
    /// server and closes it on success. `failures == 0` turns it off.
    pub fn circuit_breaker(mut self, failures: u32, cooldown: Duration) -> Self {
        self.breaker = (failures, cooldown);
        self
    }

    /// The clock that times revalidation (default: the system's monotonic
    /// clock). Give the near builder the same clock, so near TTLs and
    /// revalidation agree; a [`MockClock`](crate::MockClock) makes both
    /// testable without sleeping.
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Some(Arc::new(clock));
        self
    }
}

impl<K, V> NearFarBuilder<K, V>
where
    K: Hash + Eq + Clone + FarKey + Send + Sync + 'static,
    V: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
{
    /// Checks the settings and builds the cache. Opens no connection.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidSetting`] for a namespace that is too long (with the
    /// client's key prefix, or the fallback client's when that is longer,
    /// and a digest it must fit memcached's 250 bytes)
    /// or holds spaces or control bytes, a zero `far_ttl`, `near_ttl`,
    /// `lease_ttl` or `circuit_breaker` cooldown.
    ///
    /// # Examples
    ///
    /// ```
    /// use nearfar::{NearFar, NearFarError};
    ///
    /// let bad = NearFar::<u32, u32>::builder().namespace("has space").build();
    /// assert!(matches!(bad, Err(NearFarError::InvalidSetting { setting: "namespace", .. })));
    /// ```
    pub fn build(self) -> Result<NearFar<K, V>, Error> {
        let invalid = |setting, expected| Err(Error::InvalidSetting { setting, expected });
        let prefix_len = self
            .far
            .iter()
            .chain(&self.fallback)
            .map(|c| c.key_prefix().len())
            .max()
            .unwrap_or(0);
        if self.namespace.len() > 200
            || prefix_len + self.namespace.len() + 1 + key::DIGEST_LEN
                > memcached::protocol::MAX_KEY_LEN
            || (!self.namespace.is_empty()
                && memcached::protocol::validate_key(self.namespace.as_bytes()).is_err())
        {
            return invalid(
                "namespace",
                "at most 200 bytes (with the key prefix, room for a 34-byte digest) and no spaces or control bytes",
            );
        }
        if self.far_ttl.is_zero() {
            return invalid("far_ttl", "a non-zero duration");
        }
        if self.near_ttl.is_some_and(|t| t.is_zero()) {
            return invalid("near_ttl", "a non-zero duration");
        }
        if self.lease_ttl.is_zero() {
            return invalid("lease_ttl", "a non-zero duration");
        }
        if self.breaker.0 > 0 && self.breaker.1.is_zero() {
            return invalid("circuit_breaker", "a non-zero cooldown");
        }
        let (threshold, cooldown) = self.breaker;
        let far = self.far.map(|client| Far {
            client,
            breaker: Breaker::new(threshold, cooldown),
            fallback: self
                .fallback
                .map(|old| (old, Breaker::new(threshold, cooldown))),
            prefix_len,
            namespace: self.namespace,
            far_ttl: self.far_ttl,
            lease_ttl: self.lease_ttl,
            lease_wait: self.lease_wait,
            stale_on_remove: self.stale_on_remove,
        });
        let revalidate = match (&far, self.revalidate_after) {
            (Some(_), Some(after)) => nanos(after),
            _ => u64::MAX,
        };
        let near = self
            .near
            .unwrap_or_else(|| Cache::builder().max_entries(10_000))
            .map_values(value_of::<V>)
            .build();
        let epoch = self.clock.as_ref().map_or_else(Instant::now, |c| c.now());
        Ok(NearFar {
            inner: Arc::new(Inner {
                near,
                far,
                near_ttl: self.near_ttl,
                revalidate,
                clock: self.clock,
                epoch,
                counters: Counters::default(),
                gens: (0..GENERATIONS).map(|_| AtomicU64::new(0)).collect(),
                gen_hasher: RandomState::new(),
            }),
        })
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

/// How [`NearFar::compute`] stores a loaded value in the far tier.
#[derive(Clone, Copy)]
enum Store {
    /// Not at all: the far tier is down, a lease wait timed out (see
    /// [`NearFarBuilder::lease_wait`]), or the far value stayed undecodable.
    Skip,
    /// Over the lease placeholder this caller won (its CAS unique), if it
    /// is still there: filled from the fallback pool when that has the key,
    /// released if the load fails.
    Placeholder(Cas),
    /// Over the stale item whose recompute token this caller holds (its CAS
    /// unique), if it is still unchanged.
    Stale(Cas),
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
        let result = inner.near.load_after_miss(key.clone(), || {
            ran.set(true);
            let (entry, ttl) = if crate::store::take_unshared() {
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
        let far = &Call::new(far, &inner.counters);
        // The CAS unique memcached gave our write: a revalidation of this
        // entry then finds the item unchanged (0: unknown, always refetched).
        let cas = self.key_of(far, &key).and_then(|fkey| {
            let set = far.attempt(Pool::Far, |c| {
                c.set_returning_cas(&fkey, &value, far.far_ttl)
            });
            match set {
                Ok(Some(cas)) => return Some(cas),
                // Skipped by the breaker: the server must forget the older
                // copy before it serves again.
                Ok(None) => far.owe(Pool::Far, &fkey),
                // Refused (too large, not encodable, declined): the older
                // copy is still there. Remove it, or every process would
                // read it until `far_ttl`.
                Err(Failure::Codec | Failure::Refused) => {
                    far.delete(Pool::Far, &fkey);
                }
                // The client recorded it.
                Err(Failure::Owed) => {}
            }
            None
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
            match far.stale_on_remove {
                Some(stale_for) => {
                    let marked = far.attempt(Pool::Far, |c| c.invalidate(&fkey, stale_for));
                    if marked == Ok(None) {
                        far.owe(Pool::Far, &fkey);
                    }
                }
                None => far.delete(Pool::Far, &fkey),
            }
            far.delete(Pool::Fallback, &fkey);
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
            .map(|far| Call::new(far, &inner.counters))
    }

    /// Nanoseconds since the epoch, on the revalidation clock.
    fn now(&self) -> u64 {
        let inner = &*self.inner;
        let now = inner.clock.as_ref().map_or_else(Instant::now, |c| c.now());
        nanos(now.saturating_duration_since(inner.epoch))
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
        let now = self.now();
        Entry {
            value,
            checked: now,
            expires: ttl.map_or(u64::MAX, |t| now.saturating_add(nanos(t))),
            cas,
        }
    }

    /// The near TTL of a value with `far_left` left in memcached.
    fn bound(&self, far_left: Option<Duration>) -> Duration {
        let near = self.inner.near_ttl.unwrap_or(Duration::MAX);
        near.min(far_left.unwrap_or(Duration::MAX))
    }

    fn stale_ttl(&self) -> Duration {
        self.bound(Some(STALE_NEAR_TTL))
    }

    /// Keeps `value`, read from the far tier, near for what `far_left`
    /// allows; `seen` is the key's write generation before the read.
    fn put_near(&self, key: &K, seen: u64, value: V, cas: u64, far_left: Option<Duration>) {
        let ttl = self.bound(far_left);
        let entry = self.entry(value, cas, Some(ttl));
        self.keep_near(key, seen, entry, ttl);
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

    /// Checks a near entry due for revalidation against the far item's CAS.
    fn revalidate(&self, far: &Call<'_>, key: &K, entry: Entry<V>) -> Check<V> {
        let inner = &*self.inner;
        let Some(fkey) = self.key_of(far, key) else {
            return Check::Keep(entry.value);
        };
        let counters = &inner.counters;
        bump(&counters.revalidations);
        let generation = self.generation(key).load(Ordering::Acquire);
        let Some(seen) = far.run(|c| c.peek_lease_cas(&fkey)) else {
            // Far tier unusable: keep serving the copy until its near TTL,
            // and check it again only after another period (not on every
            // read while the outage lasts).
            return Check::Keep(self.refresh(key, generation, entry, None));
        };
        match seen {
            Some(Lease::Hit {
                cas,
                stale: false,
                ttl,
                ..
            }) if cas.0 == entry.cas => Check::Keep(self.refresh(key, generation, entry, ttl)),
            Some(Lease::Won { cas, .. }) => {
                bump(&counters.revalidations_changed);
                Check::WonStale(entry.value, cas)
            }
            _ => {
                bump(&counters.revalidations_changed);
                Check::Changed
            }
        }
    }

    /// Marks a near entry checked now, for no longer than it had left (nor
    /// `far_left`, what the far item has left when known), and returns its
    /// value. `generation`: the key's write generation before the check.
    fn refresh(&self, key: &K, generation: u64, entry: Entry<V>, far_left: Option<Duration>) -> V {
        let now = self.now();
        let near_left = entry.expires.saturating_sub(now);
        let ttl = Duration::from_nanos(near_left).min(self.bound(far_left));
        let value = entry.value.clone();
        let refreshed = Entry {
            checked: now,
            expires: now.saturating_add(nanos(ttl)),
            ..entry
        };
        // Written again rather than updated in place: a shared timestamp in
        // every entry would cost each near hit an atomic on a shared cache
        // line.
        self.keep_near(key, generation, refreshed, ttl);
        value
    }

    /// `get` with a near entry due for revalidation.
    #[cold]
    fn get_revalidate(&self, key: &K, entry: Entry<V>) -> Option<V> {
        let Some(far) = self.call() else {
            return Some(entry.value);
        };
        match self.revalidate(&far, key, entry) {
            Check::Keep(v) => Some(v),
            Check::Changed => {
                self.inner.near.drop_copy(key);
                self.read_far(&far, key)
            }
            Check::WonStale(v, cas) => {
                // This read took the stale item's recompute token and has no
                // loader: hand it back so the next `get_with` recomputes.
                self.inner.near.drop_copy(key);
                if let Some(fkey) = self.key_of(&far, key) {
                    self.give_back_token(&far, &fkey, cas);
                }
                bump(&self.inner.counters.stale_serves);
                Some(v)
            }
        }
    }

    /// `get` after a near miss: memcached, then the fallback pool.
    #[cold]
    fn get_far(&self, key: &K) -> Option<V> {
        self.read_far(&self.call()?, key)
    }

    /// Reads `key` from memcached, then the fallback pool.
    fn read_far(&self, far: &Call<'_>, key: &K) -> Option<V> {
        let inner = &*self.inner;
        let fkey = self.key_of(far, key)?;
        let counters = &inner.counters;
        let generation = self.generation(key).load(Ordering::Acquire);
        match far.run(|c| c.peek_lease::<V>(&fkey))? {
            Some(Lease::Hit {
                value,
                cas,
                stale,
                ttl,
            }) => {
                if stale {
                    bump(&counters.stale_serves);
                    self.put_near(key, generation, value.clone(), 0, Some(STALE_NEAR_TTL));
                } else {
                    bump(&counters.far_hits);
                    self.put_near(key, generation, value.clone(), cas.0, ttl);
                }
                Some(value)
            }
            Some(Lease::Won { previous, cas }) => {
                // A stale item whose recompute token this read took: no
                // loader here, so hand it back (the next `get_with` wins).
                self.give_back_token(far, &fkey, cas);
                if previous.is_some() {
                    bump(&counters.stale_serves);
                }
                previous
            }
            Some(Lease::Wait) | None => {
                bump(&counters.far_misses);
                let (value, ttl, stored) = self.read_fallback(far, &fkey, None)?;
                // A far failure (`None`) keeps the copy near, as a load does.
                if stored != Some(false) {
                    self.put_near(key, generation, value.clone(), 0, Some(ttl));
                }
                Some(value)
            }
        }
    }

    /// Hands back the recompute token of the stale item `fkey` (CAS unique
    /// `cas` when taken), which a read without a loader took (memcached
    /// gives it to any reader of a stale item): marking the item stale again
    /// clears the token, and doing so for the time it had left keeps its
    /// staleness bounded. A stale lease placeholder (removed while a load
    /// held it) has no value to serve: it is deleted, if still the same.
    fn give_back_token(&self, far: &Call<'_>, fkey: &str, cas: Cas) {
        let seen = far.run(|c| c.peek_lease_cas(fkey));
        match seen {
            Some(Some(Lease::Hit {
                stale: true,
                ttl: Some(left),
                cas: seen,
                ..
            })) if !left.is_zero() => {
                // Only the item just read: a value written since is fresh
                // and must not be marked stale.
                far.run(|c| c.invalidate_if_cas(fkey, left, seen));
            }
            Some(Some(Lease::Wait)) => {
                far.run(|c| c.delete_if_cas(fkey, cas));
            }
            _ => {}
        }
    }

    /// Reads `fkey` from the fallback pool; a value found is copied into the
    /// far tier (over our own placeholder, `placeholder` its CAS unique, if
    /// it is still there; else `add`) and returned with the TTL for the copy
    /// and what became of it: stored (`Some(true)`), refused (`Some(false)`:
    /// the key was written or removed meanwhile, so the value may be
    /// outdated and must not be kept near, as with a refused `cas` of a
    /// load), or not stored (`None`: the far tier failed or was skipped).
    fn read_fallback(
        &self,
        far: &Call<'_>,
        fkey: &str,
        placeholder: Option<Cas>,
    ) -> Option<(V, Duration, Option<bool>)> {
        let item = far.run_on(Pool::Fallback, |c| c.meta_get::<V>(fkey))??;
        bump(&self.inner.counters.fallback_hits);
        let ttl = fallback_ttl(item.ttl, far.far_ttl);
        let stored = far.run(|c| match placeholder {
            Some(cas) => c.cas(fkey, &item.value, ttl, cas),
            None => c.add(fkey, &item.value, ttl),
        });
        Some((item.value, ttl, stored))
    }

    /// `try_get_with` without a far tier (or for a key it cannot hold). An
    /// `insert` or `remove` of the key while `load` runs supersedes the
    /// load in the near tier: its value goes to its callers only.
    fn load_near_only<E>(&self, key: &K, load: impl FnOnce() -> Result<V, E>) -> Result<V, Arc<E>>
    where
        E: Send + Sync + 'static,
    {
        let inner = &*self.inner;
        let near_ttl = inner.near_ttl;
        // Called after `try_get_with_ref`'s own lookup missed (and counted
        // it): the load does not look again.
        let result = inner.near.load_after_miss(key.clone(), || {
            bump(&inner.counters.loader_calls);
            load().map(|v| (self.entry(v, 0, near_ttl), near_ttl))
        });
        result.map(|entry| entry.value)
    }

    /// The near tier's loader for `fkey`: memcached (with a lease), then
    /// `load`. Runs once per key in this process at a time.
    fn load_through<E>(
        &self,
        far: &Call<'_>,
        fkey: &str,
        won_stale: Option<Cas>,
        load: impl FnOnce() -> Result<V, E>,
    ) -> Result<(Entry<V>, Duration), E> {
        let counters = &self.inner.counters;
        if let Some(cas) = won_stale {
            // A revalidation already took the stale item's recompute token.
            return self.compute(far, fkey, Store::Stale(cas), load);
        }
        let start = Instant::now();
        let mut pause = FIRST_PAUSE;
        let mut waited = false;
        let mut cleared = false;
        let mut took_over = false;
        loop {
            let lease = far.attempt(Pool::Far, |c| c.get_or_lease_seen::<V>(fkey, far.lease_ttl));
            match lease {
                Ok(Some((
                    Lease::Hit {
                        value,
                        cas,
                        stale,
                        ttl,
                    },
                    _,
                ))) => {
                    let ttl = if stale {
                        bump(&counters.stale_serves);
                        self.stale_ttl()
                    } else {
                        bump(&counters.far_hits);
                        self.bound(ttl)
                    };
                    return Ok((self.entry(value, cas.0, Some(ttl)), ttl));
                }
                Ok(Some((Lease::Won { previous, cas }, _))) => {
                    let store = if previous.is_none() {
                        bump(&counters.far_misses);
                        Store::Placeholder(cas)
                    } else {
                        Store::Stale(cas)
                    };
                    return self.compute(far, fkey, store, load);
                }
                Ok(Some((Lease::Wait, placeholder))) => {
                    if !waited {
                        waited = true;
                        bump(&counters.lease_waits);
                    }
                    let elapsed = start.elapsed();
                    let abandoned = elapsed >= far.lease_wait
                        || lease_age(far.lease_ttl, placeholder.ttl) > far.lease_wait;
                    if abandoned && !took_over {
                        // The holder is gone (or slower than `lease_wait`):
                        // take its lease over, so the fleet pays for an
                        // abandoned lease at most once. Deleted only if it
                        // is still that placeholder; then lease again: this
                        // caller wins (and fills the far tier for everyone),
                        // or finds the value another caller stored.
                        took_over = true;
                        bump(&counters.lease_takeovers);
                        far.run(|c| c.delete_if_cas(fkey, placeholder.cas));
                        continue;
                    }
                    if abandoned {
                        // A placeholder again right after the takeover:
                        // another waiter took it over first and is loading.
                        // Load here rather than wait a second time; no
                        // store is safe here: `add` would land after a
                        // removal that deleted the winner's placeholder
                        // (undoing it), and there is no CAS to store
                        // against. The far tier is filled by the winner.
                        bump(&counters.lease_timeouts);
                        return self.compute(far, fkey, Store::Skip, load);
                    }
                    thread::sleep(pause.min(far.lease_wait - elapsed));
                    pause = (pause * 2).min(MAX_PAUSE);
                }
                // An undecodable far value: delete it (only if it is still
                // the item just read), then lease again, so the value loaded
                // here is stored over its own placeholder by CAS and a write
                // or removal meanwhile is not undone. Undecodable again
                // (another writer's format): load locally, store nothing.
                Err(Failure::Codec) if !cleared => {
                    cleared = true;
                    let seen = far.run(|c| c.peek_lease_cas(fkey));
                    match seen {
                        Some(Some(Lease::Hit { cas, .. } | Lease::Won { cas, .. })) => {
                            far.run(|c| c.delete_if_cas(fkey, cas));
                        }
                        // Gone, or being computed: read again.
                        Some(Some(Lease::Wait) | None) => {}
                        None => return self.compute(far, fkey, Store::Skip, load),
                    }
                }
                Err(Failure::Codec) => return self.compute(far, fkey, Store::Skip, load),
                // The far tier is down (or the breaker open): load locally.
                Ok(None) | Err(_) => return self.compute(far, fkey, Store::Skip, load),
            }
        }
    }

    /// Runs `load` and stores its value far as `store` says. When a
    /// conditional store finds the item changed or gone (another caller
    /// wrote or removed the key while `load` ran), the value is returned
    /// with a zero near TTL: kept nowhere, as it may be outdated.
    ///
    /// A lease this caller holds is given up whenever its value does not
    /// reach the far tier: the loader failed or panicked, or the store
    /// failed (a value over the item size limit, a codec error, a timeout,
    /// the breaker open). Otherwise every other process would wait out
    /// `lease_wait` for a value that never comes, until the lease lapses.
    fn compute<E>(
        &self,
        far: &Call<'_>,
        fkey: &str,
        store: Store,
        load: impl FnOnce() -> Result<V, E>,
    ) -> Result<(Entry<V>, Duration), E> {
        let counters = &self.inner.counters;
        let placeholder = match store {
            Store::Placeholder(cas) => Some(cas),
            _ => None,
        };
        // Deletes the lease placeholder unless disarmed: only the
        // placeholder (by its CAS unique), never a value written over it
        // meanwhile; through the breaker, like every far call.
        let release = placeholder.map(|cas| {
            OnDrop(Some(move || {
                far.run(|c| c.delete_if_cas(fkey, cas));
            }))
        });
        // Hands back the recompute token of a stale item unless disarmed:
        // the stale value must not be served for all of its stale time with
        // no one recomputing it.
        let give_back = match store {
            Store::Stale(cas) => Some(OnDrop(Some(move || self.give_back_token(far, fkey, cas)))),
            _ => None,
        };
        // Disarms both guards once the far tier took the value or refused
        // it (a refusal means the item changed: the placeholder or token is
        // gone); with `None` (not stored) they run as they drop.
        let settle = |outcome: Option<bool>| {
            if outcome.is_some() {
                std::mem::forget(release);
                std::mem::forget(give_back);
            }
        };
        if placeholder.is_some() {
            if let Some((value, ttl, stored)) = self.read_fallback(far, fkey, placeholder) {
                settle(stored);
                if stored == Some(false) {
                    // Refused far: for this caller only.
                    return Ok((self.entry(value, 0, None), Duration::ZERO));
                }
                let ttl = self.bound(Some(ttl));
                return Ok((self.entry(value, 0, Some(ttl)), ttl));
            }
        }
        bump(&counters.loader_calls);
        let value = load()?;
        let ttl = far.far_ttl;
        // Stored: `Some(Some(cas))` with the item's new CAS unique (kept
        // near, so a revalidation finds it unchanged); refused:
        // `Some(None)`; not stored: `None`.
        let kept = match store {
            Store::Skip => None,
            Store::Placeholder(cas) | Store::Stale(cas) => {
                far.run(|c| c.compare_and_set(fkey, &value, ttl, cas))
            }
        };
        settle(kept.map(|stored| stored.is_some()));
        if kept == Some(None) {
            return Ok((self.entry(value, 0, None), Duration::ZERO));
        }
        // Loaded locally or not, a near copy never outlives `far_ttl`.
        let ttl = self.bound(Some(far.far_ttl));
        let cas = kept.flatten().map_or(0, |c| c.0);
        Ok((self.entry(value, cas, Some(ttl)), ttl))
    }
}

/// How long ago, at least, a lease placeholder was made, given what it
/// has `left` to live and that it was made for `lease_ttl` (as every
/// `NearFar` sharing the namespace should be configured). memcached counts
/// whole seconds and rounds the lease TTL up, so a second is taken off:
/// a placeholder made just now never looks old.
fn lease_age(lease_ttl: Duration, left: Option<Duration>) -> Duration {
    let made_for = lease_ttl.as_secs() + u64::from(lease_ttl.subsec_nanos() > 0);
    let left = left.map_or(made_for, |l| l.as_secs());
    Duration::from_secs(made_for.saturating_sub(left).saturating_sub(1))
}

/// The TTL for a copy of a fallback item that has `left` to live (`None`:
/// never expires), bounded by `far_ttl`. A reported 0 (an item in its last
/// second) becomes 1 s: a TTL of 0 would be sent as exptime 0, "never".
fn fallback_ttl(left: Option<Duration>, far_ttl: Duration) -> Duration {
    left.map_or(far_ttl, |left| left.max(Duration::from_secs(1)))
        .min(far_ttl)
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
