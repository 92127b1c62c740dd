//! [`NearFarBuilder`]: the settings of a [`NearFar`], checked by `build`.

mod far;
mod loader;
mod warm;

use std::fmt;
use std::hash::{Hash, RandomState};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::fail_safe::FailSafe;
use super::generation::Generations;
use super::inner::{Far, FarClient, GENERATIONS, Inner};
use super::observe::Observe;
use super::stats::Counters;
use super::warm::Files;
use super::{FarKey, NearFar, key, nanos, value_of};
use crate::clock::Timer;
use crate::memcached::health::Circuit;
use crate::memcached::{self, Client};
use crate::{Cache, CacheBuilder, Clock};

/// How long a value served by the fail-safe is kept near, unless
/// [`NearFarBuilder::fail_safe_backoff`] says otherwise.
const DEFAULT_FAIL_SAFE_BACKOFF: Duration = Duration::from_secs(5);

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

/// What [`NearFarBuilder::inner`] builds: the state either handle holds,
/// and the keys its preload reads (see `nearfar/warm.rs`).
pub(super) struct Built<K, V, Cl> {
    pub(super) inner: Inner<K, V, Cl>,
    pub(super) preload: Vec<K>,
}

/// Configures and builds a [`NearFar`]. Made by [`NearFar::builder`].
///
/// Defaults: a near tier of at most 10,000 entries, no far tier, no
/// namespace, far TTL 1 hour, near TTL bounded only by the far item's TTL,
/// no revalidation, no generation check (so no
/// [`invalidate_all`](NearFar::invalidate_all) with a far tier), lease TTL
/// 10 s, lease wait 1 s, `remove` deletes, a circuit breaker that opens
/// after 5 consecutive far failures for 1 s, no fail-safe and no
/// refresh-ahead.
///
/// The same builder makes an `AsyncNearFar` (feature
/// `tokio`), made by `AsyncNearFar::builder`, whose far tier is an
/// `memcached::AsyncClient`: `Cl` is the far client's
/// type.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use nearfar::{Cache, NearFar, memcached::Client};
///
/// // Neither builds connect: no server needs to be up yet.
/// let client = Client::builder().servers(["127.0.0.1:11211"]).build()?;
/// let users: NearFar<u64, String> = NearFar::builder()
///     .near(Cache::builder().max_entries(100_000))
///     .far(client)
///     .namespace("users:v3")
///     .near_ttl(Duration::from_secs(30))
///     .revalidate_after(Duration::from_secs(5))
///     .fail_safe(Duration::from_secs(3600))
///     .build()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use]
pub struct NearFarBuilder<K, V, Cl = Client> {
    near: Option<CacheBuilder<K, V>>,
    far: Option<Cl>,
    fallback: Option<Cl>,
    namespace: String,
    far_ttl: Duration,
    near_ttl: Option<Duration>,
    revalidate_after: Option<Duration>,
    lease_ttl: Duration,
    lease_wait: Duration,
    stale_on_remove: Option<Duration>,
    generation_check: Option<Duration>,
    breaker: (u32, Duration),
    fail_safe: Option<Duration>,
    /// `None` until set: the default applies, and `build` can tell a
    /// backoff set without `fail_safe` (which would do nothing).
    fail_safe_backoff: Option<Duration>,
    loader_timeout: Option<Duration>,
    refresh_ahead: Option<f64>,
    files: Files<K, V>,
    clock: Option<Arc<dyn Clock>>,
    name: Option<String>,
}

impl<K, V, Cl: fmt::Debug> fmt::Debug for NearFarBuilder<K, V, Cl> {
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
            .field("generation_check", &self.generation_check)
            .field("circuit_breaker", &self.breaker)
            .field("fail_safe", &self.fail_safe)
            .field("fail_safe_backoff", &self.fail_safe_backoff)
            .field("loader_timeout", &self.loader_timeout)
            .field("refresh_ahead", &self.refresh_ahead)
            .field("snapshot", &self.files.snapshot)
            .field("preload", &self.files.preload)
            .field("save_every", &self.files.every)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl<K, V, Cl> Default for NearFarBuilder<K, V, Cl> {
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
            generation_check: None,
            breaker: (5, Duration::from_secs(1)),
            fail_safe: None,
            fail_safe_backoff: None,
            loader_timeout: None,
            refresh_ahead: None,
            files: Files::default(),
            clock: None,
            name: None,
        }
    }
}

impl<K, V, Cl> NearFarBuilder<K, V, Cl> {
    /// The near tier's settings (bounds, weigher, eviction listener, shards,
    /// clock). Its weigher and listener see the values as stored.
    ///
    /// With a far tier, every near entry gets an explicit TTL (see
    /// [`near_ttl`](Self::near_ttl)), so the builder's `time_to_live` is not
    /// used; without one, it applies when `near_ttl` is not set. Entries
    /// refreshed by revalidation are written again (a listener sees
    /// [`RemovalCause::Replaced`](crate::RemovalCause::Replaced)).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use nearfar::{Cache, MockClock, NearFar};
    ///
    /// // No far tier: the near builder's TTL applies (no `near_ttl` set).
    /// let clock = MockClock::new();
    /// let sessions: NearFar<u64, String> = NearFar::builder()
    ///     .near(
    ///         Cache::builder()
    ///             .max_entries(50_000)
    ///             .time_to_live(Duration::from_secs(600))
    ///             .clock(clock.clone()),
    ///     )
    ///     .clock(clock.clone())
    ///     .build()?;
    /// sessions.insert(7, "alice".into());
    /// clock.advance(Duration::from_secs(599));
    /// assert_eq!(sessions.get(&7).as_deref(), Some("alice"));
    /// clock.advance(Duration::from_secs(1));
    /// assert_eq!(sessions.get(&7), None);
    /// # Ok::<(), nearfar::NearFarError>(())
    /// ```
    pub fn near(mut self, near: CacheBuilder<K, V>) -> Self {
        self.near = Some(near);
        self
    }

    /// The clock of every timed decision of this `NearFar`: revalidation,
    /// the circuit breaker's cooldown, and the lease wait (whose pauses go
    /// through [`Clock::sleep`]) (default: the system's monotonic clock).
    /// Give the near builder the same clock, so near TTLs and revalidation
    /// agree, and the far client too ([`ClientBuilder::clock`](crate::memcached::ClientBuilder::clock))
    /// for its dead-server timing; a [`MockClock`](crate::MockClock) makes
    /// them all testable without sleeping.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use nearfar::{Cache, MockClock, NearFar, memcached::Client};
    ///
    /// // One clock for the three: the breaker's cooldown (NearFar), the
    /// // client's dead timeout, and the near TTLs.
    /// let clock = MockClock::new();
    /// // Nothing listens on port 1: every far request fails at once.
    /// let far = Client::builder().servers(["127.0.0.1:1"]).clock(clock.clone()).build()?;
    /// let cache: NearFar<u32, u32> = NearFar::builder()
    ///     .near(Cache::builder().max_entries(100).clock(clock.clone()))
    ///     .far(far)
    ///     .circuit_breaker(1, Duration::from_secs(30))
    ///     .clock(clock.clone())
    ///     .build()?;
    /// assert_eq!(cache.get_with(1, || 10), 10); // far fails: the breaker opens
    /// assert_eq!(cache.get_with(2, || 20), 20); // skipped: nothing sent
    /// assert_eq!(cache.stats().far_errors, 1);
    /// clock.advance(Duration::from_secs(30)); // no sleep: the cooldown is over
    /// assert_eq!(cache.get_with(3, || 30), 30); // probes the server (and fails)
    /// assert_eq!(cache.stats().far_errors, 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Some(Arc::new(clock));
        self
    }

    /// The cache's name: the `name` label of its metrics (feature
    /// `metrics`, see [`crate::observe`]), its near tier's included, and a
    /// field of its `Debug` output. Default: the near builder's
    /// ([`CacheBuilder::name`]), else `"default"`.
    ///
    /// # Examples
    ///
    /// ```
    /// let users: nearfar::NearFar<u64, String> = nearfar::NearFar::builder()
    ///     .name("users")
    ///     .build()?;
    /// assert!(format!("{users:?}").contains("\"users\""));
    /// # Ok::<(), nearfar::NearFarError>(())
    /// ```
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
}

impl<K, V> NearFarBuilder<K, V, Client>
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
    /// a digest, and with [`generation_check`](Self::generation_check) a
    /// generation tag, it must fit memcached's 250 bytes)
    /// or holds spaces or control bytes, a zero `far_ttl`, `near_ttl`,
    /// `lease_ttl`, `lease_wait`, `generation_check`, `circuit_breaker` cooldown,
    /// `fail_safe`, `fail_safe_backoff` or `loader_timeout`, a `lease_wait`
    /// not shorter than `lease_ttl`, a `loader_timeout` or
    /// `fail_safe_backoff` without `fail_safe`, a `fallback` without `far`, a
    /// `refresh_ahead` threshold not strictly between 0 and 1, a zero
    /// `snapshot` period, or a `preload` file that is the snapshot's.
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
        let built = self.inner()?;
        let inner = Arc::new(built.inner);
        NearFar::preload(&inner, built.preload);
        Ok(NearFar { inner })
    }
}

impl<K, V, Cl> NearFarBuilder<K, V, Cl>
where
    K: Hash + Eq + Clone + FarKey + Send + Sync + 'static,
    V: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
{
    /// Checks the settings and builds what either handle holds, its
    /// snapshot loaded, and the keys to preload.
    pub(super) fn inner(self) -> Result<Built<K, V, Cl>, Error>
    where
        Cl: FarClient,
    {
        let invalid = |setting, expected| Err(Error::InvalidSetting { setting, expected });
        let prefix_len = self
            .far
            .iter()
            .chain(&self.fallback)
            .map(|c| c.key_prefix().len())
            .max()
            .unwrap_or(0);
        let tag = if self.generation_check.is_some() {
            key::MAX_GENERATION_TAG
        } else {
            0
        };
        if self.namespace.len() > 200
            || prefix_len + self.namespace.len() + 1 + tag + key::DIGEST_LEN
                > memcached::protocol::MAX_KEY_LEN
            || (!self.namespace.is_empty()
                && memcached::protocol::validate_key(self.namespace.as_bytes()).is_err())
        {
            return invalid(
                "namespace",
                "at most 200 bytes (with the key prefix, room for a 34-byte digest, and a 23-byte generation tag with generation_check) and no spaces or control bytes",
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
        // A zero wait takes over every lease at once: each process would
        // load for itself, deleting the others' placeholders.
        if self.lease_wait.is_zero() {
            return invalid("lease_wait", "a non-zero duration");
        }
        // A wait as long as the lease would outwait it: the placeholder
        // lapses first, and a waiter then leases and loads while the holder
        // may still be loading, so the wait asked for is never had.
        if self.lease_wait >= self.lease_ttl {
            return invalid(
                "lease_wait",
                "a wait shorter than lease_ttl (default 10 s): a waiter would outwait the lease itself",
            );
        }
        if self.breaker.0 > 0 && self.breaker.1.is_zero() {
            return invalid("circuit_breaker", "a non-zero cooldown");
        }
        if self.generation_check.is_some_and(|d| d.is_zero()) {
            return invalid("generation_check", "a non-zero duration");
        }
        if self.fail_safe.is_some_and(|d| d.is_zero()) {
            return invalid("fail_safe", "a non-zero duration");
        }
        if self.fail_safe_backoff.is_some_and(|d| d.is_zero()) {
            return invalid("fail_safe_backoff", "a non-zero duration");
        }
        if self.loader_timeout.is_some_and(|d| d.is_zero()) {
            return invalid("loader_timeout", "a non-zero duration");
        }
        // Settings that would otherwise do nothing, silently.
        if self.loader_timeout.is_some() && self.fail_safe.is_none() {
            return invalid("loader_timeout", "fail_safe too (it serves the last value)");
        }
        if self.fail_safe_backoff.is_some() && self.fail_safe.is_none() {
            return invalid(
                "fail_safe_backoff",
                "fail_safe too (the backoff is how long its last value is served)",
            );
        }
        if self.fallback.is_some() && self.far.is_none() {
            return invalid("fallback", "a far tier too (the pool it falls back from)");
        }
        if self.refresh_ahead.is_some_and(|t| !(t > 0.0 && t < 1.0)) {
            return invalid("refresh_ahead", "a threshold strictly between 0 and 1");
        }
        if self.files.every.is_some_and(|d| d.is_zero()) {
            return invalid("snapshot", "a non-zero period");
        }
        if self.files.preload.is_some() && self.files.preload == self.files.snapshot {
            return invalid("preload", "a file other than the snapshot's");
        }
        let fail_safe = self.fail_safe.map(|max_stale| FailSafe {
            max_stale: nanos(max_stale),
            backoff: self.fail_safe_backoff.unwrap_or(DEFAULT_FAIL_SAFE_BACKOFF),
            loader_timeout: self.loader_timeout,
        });
        let (threshold, cooldown) = self.breaker;
        let generations = Arc::new(match &self.far {
            Some(_) => Generations::new(
                self.generation_check.map(nanos),
                key::generation_key(&self.namespace),
            ),
            None => Generations::new(None, String::new()),
        });
        let far = self.far.map(|client| Far {
            client,
            breaker: Circuit::new(threshold, cooldown),
            fallback: self
                .fallback
                .map(|old| (old, Circuit::new(threshold, cooldown))),
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
        let mut near = self
            .near
            .unwrap_or_else(|| Cache::builder().max_entries(10_000))
            .map_values(value_of::<V>);
        if let Some(max_stale) = self.fail_safe {
            near = near.keep_expired(max_stale);
        }
        if let Some(name) = self.name {
            near = near.name(name);
        }
        let near = near.build();
        let observe = Observe::new(near.name().into(), far.as_ref());
        let timer = Timer::new(self.clock);
        let (warm, preload) =
            super::warm::start(&near, &generations, &timer, self.near_ttl, self.files);
        let inner = Inner {
            near,
            far,
            near_ttl: self.near_ttl,
            revalidate,
            fail_safe,
            refresh_ahead: self.refresh_ahead,
            refreshing: (0..GENERATIONS).map(|_| AtomicU64::new(0)).collect(),
            timer,
            counters: Counters::observed(observe, warm.counters()),
            gens: (0..GENERATIONS).map(|_| AtomicU64::new(0)).collect(),
            gen_hasher: RandomState::new(),
            generations,
            warm,
        };
        Ok(Built { inner, preload })
    }
}
