//! [`NearFarBuilder`]: the settings of a [`NearFar`], checked by `build`.

use std::fmt;
use std::hash::{Hash, RandomState};
use std::path::PathBuf;
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
use super::warm::{self, Files, Io};
use super::{FarKey, NearFar, key, nanos, value_of};
use crate::clock::Timer;
use crate::memcached::health::Circuit;
use crate::memcached::{self, Client};
use crate::{Cache, CacheBuilder, Clock};

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
/// and the keys its preload reads (see `warm.rs`).
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
    fail_safe_backoff: Duration,
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
            fail_safe_backoff: Duration::from_secs(5),
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
    pub fn near(mut self, near: CacheBuilder<K, V>) -> Self {
        self.near = Some(near);
        self
    }

    /// The far tier: a memcached client (its own key prefix, servers and
    /// timeouts apply). Short I/O and connect timeouts keep the cost of a
    /// slow server low.
    pub fn far(mut self, client: Cl) -> Self {
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
    pub fn fallback(mut self, old: Cl) -> Self {
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
    /// process's write can go unseen (see the [module docs](super)). Must not
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
    /// [module docs](super)). Memcached counts whole seconds, at least one.
    pub fn stale_on_remove(mut self, stale_for: Duration) -> Self {
        self.stale_on_remove = Some(stale_for);
        self
    }

    /// Makes [`invalidate_all`](NearFar::invalidate_all) possible: this
    /// process reads the namespace's generation (one memcached item, a
    /// number) at most once per `interval`, and its far keys carry it once
    /// the namespace has been invalidated (`namespace:#g<generation>:key`;
    /// before that they are unchanged, `namespace:key`). Off by default:
    /// nothing is read and far keys never change.
    ///
    /// **The bound.** A process that finds a newer generation serves none
    /// of its near copies again and reads and writes only the new far keys
    /// (the old items are never read again and expire). It finds it at its
    /// first read once `interval` has passed since its previous check, one
    /// round trip later: so after `invalidate_all` returns, no reader
    /// anywhere sees a value from before it later than `interval` plus one
    /// round trip (the check's; at most the client's `request_timeout`).
    /// Two limits: reads of a process running during its check's round trip
    /// go on with the generation known before (after a pause in reads longer
    /// than `interval`, that one may be older than `interval`); and a process
    /// that cannot reach memcached goes on with the generation it knows (its
    /// near copies then end with their near TTL, as in any outage).
    ///
    /// **The cost.** One `get` of a few bytes per `interval` per process,
    /// made by the first read to find the check due (that read waits for
    /// it; the others go on). A near hit otherwise costs an atomic load and
    /// a clock read more. Before its first check is answered, a process
    /// knows no generation: every call checks (the first answer ends that),
    /// and while memcached is unreachable the process uses its near tier
    /// only (its loader's values are not stored far, its `insert` and
    /// `remove` not sent).
    ///
    /// **Compatibility.** Every process sharing the namespace must set it
    /// (with any interval): one that does not never sees an invalidation
    /// and keeps the plain keys. Other clients (pymemcache) share items only
    /// until the first `invalidate_all`; after it they must name keys the
    /// same way: read `namespace:#generation` (decimal), and prefix
    /// `#g<generation>:` when it is above 0. The tag must fit memcached's
    /// 250-byte keys with a digest: with it, the key prefix and the
    /// namespace may take at most 193 bytes together (216 without).
    ///
    /// Must not be zero.
    pub fn generation_check(mut self, interval: Duration) -> Self {
        self.generation_check = Some(interval);
        self
    }

    /// Opens the circuit breaker after `failures` consecutive far failures
    /// (connection errors, timeouts, no server up, replies that make no
    /// sense: the same judgement as the client's dead-server ejection) for
    /// `cooldown`, timed on [`clock`](Self::clock); then one call probes the
    /// server and closes it on success. `failures == 0` turns it off.
    /// Default: 5 failures, 1 s.
    ///
    /// The breaker sits in front of the client's own dead-server ejection
    /// ([`ClientBuilder::retry_attempts`](crate::memcached::ClientBuilder::retry_attempts)
    /// and [`ClientBuilder::dead_timeout`](crate::memcached::ClientBuilder::dead_timeout),
    /// default 2 failures, 1 s), and the two cooldowns do not add up: once
    /// `cooldown` is over, the breaker's probe waits until the client
    /// would send it (calls skip the far tier meanwhile, as while the
    /// breaker is open), so it is never spent on a server the client still
    /// leaves out; and a probe the client refused unsent anyway proves
    /// nothing, so it is given back rather than counted as a failure.
    /// When memcached comes back, the far tier is used again within the
    /// longer of `cooldown` and `dead_timeout`, plus the time to the next
    /// call: measured with both defaults, memcached killed for 2 s under
    /// load and restarted, the first far hit came 0.8 s to 1.0 s after it
    /// accepted connections, with `NearFar` and `AsyncNearFar` alike
    /// (`tests/recovery.rs`). A dead server still gets one probe per
    /// `dead_timeout`, sent by the client, however many calls are made.
    pub fn circuit_breaker(mut self, failures: u32, cooldown: Duration) -> Self {
        self.breaker = (failures, cooldown);
        self
    }

    /// Fail-safe: when a load fails — the loader returns an error or
    /// panics, or outlasts [`loader_timeout`](Self::loader_timeout) — and this process still has
    /// the key's last value, expired less than `max_stale` ago, that value
    /// is returned instead (to the caller and the callers waiting on the
    /// same load) and counted in
    /// [`NearFarStats::fail_safe_serves`](super::NearFarStats::fail_safe_serves).
    /// It is then served near for
    /// [`fail_safe_backoff`](Self::fail_safe_backoff), so a failing source
    /// is tried at most once per backoff per key; each try that fails
    /// serves it again until `max_stale` has passed since it first expired.
    /// Without a last value the caller gets the error (or the panic) as
    /// without fail-safe. The value is not written to memcached again.
    ///
    /// To have last values, the near tier keeps expired entries for
    /// `max_stale` (see [`CacheBuilder::keep_expired`]): within its bounds,
    /// and the first it evicts. Off by default.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use nearfar::{Cache, MockClock, NearFar};
    ///
    /// let clock = MockClock::new();
    /// let cache: NearFar<&str, u32> = NearFar::builder()
    ///     .near(Cache::builder().max_entries(1_000).clock(clock.clone()))
    ///     .near_ttl(Duration::from_secs(60))
    ///     .fail_safe(Duration::from_secs(3600))
    ///     .clock(clock.clone())
    ///     .build()?;
    /// assert_eq!(cache.try_get_with("price", || Ok::<_, String>(7)), Ok(7));
    /// clock.advance(Duration::from_secs(61));
    /// // The source is down: the last price is served, not the error.
    /// let price = cache.try_get_with("price", || Err("db unreachable".to_string()));
    /// assert_eq!(price, Ok(7));
    /// assert_eq!(cache.stats().fail_safe_serves, 1);
    /// # Ok::<(), nearfar::NearFarError>(())
    /// ```
    pub fn fail_safe(mut self, max_stale: Duration) -> Self {
        self.fail_safe = Some(max_stale);
        self
    }

    /// How long a value served by the [`fail_safe`](Self::fail_safe) is
    /// kept near before the loader is tried again (default 5 s).
    pub fn fail_safe_backoff(mut self, backoff: Duration) -> Self {
        self.fail_safe_backoff = backoff;
        self
    }

    /// With [`fail_safe`](Self::fail_safe), how long an `AsyncNearFar`
    /// load (the far read, the lease wait and the loader) may run before
    /// the key's last value is served instead; the load is then dropped (a
    /// memcached lease it held is released on a task of its own, so other
    /// processes do not wait out [`lease_wait`](Self::lease_wait) for it).
    /// Without a last value the load runs on. Off by default.
    ///
    /// A blocking `NearFar` runs its loader on the calling thread, which
    /// nothing can interrupt: that caller waits for its own loader. The
    /// callers waiting for it (other threads asking for the same key) are
    /// served the last value once they have waited `timeout` (on the
    /// injected [`clock`](Self::clock) when there is one); the loader runs
    /// on, and its value is stored when it comes.
    pub fn loader_timeout(mut self, timeout: Duration) -> Self {
        self.loader_timeout = Some(timeout);
        self
    }

    /// Refresh-ahead: once a near copy has lived `threshold` of its TTL
    /// (e.g. 0.8; FusionCache's eager refresh), the next `get_with` /
    /// `try_get_with` of it reloads it while every other caller keeps being
    /// served the copy, so a hot key never misses at its expiry.
    ///
    /// * One refresh per key at a time in this process, and one across
    ///   processes: the far read asks memcached for the recompute token of
    ///   a value in the last `1 - threshold` of [`far_ttl`](Self::far_ttl)
    ///   (`mg ... R`); a process that finds the far value already
    ///   refreshed takes it instead of loading, one that finds it being
    ///   computed elsewhere (the far item gone) loads without waiting.
    /// * When a refresh starts is spread by probabilistic early expiration
    ///   (XFetch), scaled by the key's last load time, so keys filled
    ///   together do not all refresh together.
    /// * The refresh runs in the call that starts it: on the caller's
    ///   thread for a `NearFar` (no hidden threads), on the caller's task
    ///   for an `AsyncNearFar`'s `get_with`; that caller waits for the load
    ///   and gets the new value. With `AsyncNearFar::get_with_spawned`
    ///   (a loader that owns what it uses: `Send + 'static`) it runs on a
    ///   task of its own instead, and no caller waits for it. A refresh
    ///   that fails leaves the copy until it expires (its caller gets the
    ///   copy, not the error).
    ///
    /// Counted in [`NearFarStats::refresh_aheads`](super::NearFarStats::refresh_aheads).
    /// `get` (without a loader) does not refresh. Off by default.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use nearfar::{Cache, MockClock, NearFar};
    ///
    /// let clock = MockClock::new();
    /// let rates: NearFar<&str, u32> = NearFar::builder()
    ///     .near(Cache::builder().max_entries(100).clock(clock.clone()))
    ///     .near_ttl(Duration::from_secs(10))
    ///     .refresh_ahead(0.8)
    ///     .clock(clock.clone())
    ///     .build()?;
    /// assert_eq!(rates.get_with("eur", || 1), 1);
    /// clock.advance(Duration::from_secs(9)); // past 80% of its TTL
    /// assert_eq!(rates.get_with("eur", || 2), 2, "this call refreshed it");
    /// clock.advance(Duration::from_secs(5)); // the old copy would be gone
    /// assert_eq!(rates.get(&"eur"), Some(2));
    /// # Ok::<(), nearfar::NearFarError>(())
    /// ```
    pub fn refresh_ahead(mut self, threshold: f64) -> Self {
        self.refresh_ahead = Some(threshold);
        self
    }

    /// The clock of every timed decision of this `NearFar`: revalidation,
    /// the circuit breaker's cooldown, and the lease wait (whose pauses go
    /// through [`Clock::sleep`]) (default: the system's monotonic clock).
    /// Give the near builder the same clock, so near TTLs and revalidation
    /// agree, and the far client too ([`ClientBuilder::clock`](crate::memcached::ClientBuilder::clock))
    /// for its dead-server timing; a [`MockClock`](crate::MockClock) makes
    /// them all testable without sleeping.
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

/// Warm restarts (feature `snapshot`, which `memcached` turns on): for
/// keys and values that serialize.
impl<K, V, Cl> NearFarBuilder<K, V, Cl>
where
    K: Hash + Eq + Serialize + DeserializeOwned,
    V: Clone + Serialize + DeserializeOwned,
{
    /// Warm restarts from disk: saves the near tier to the file at `path`
    /// every `every` (on this cache's [`clock`](Self::clock)) and when its
    /// last handle is dropped, and loads it when the cache is built, if
    /// the file is there. A restarted process then serves what it held
    /// before from its first call, without a far read.
    ///
    /// The file is [`Cache::save`]'s: written atomically (a crash during a
    /// save leaves the previous one), checksummed, hottest entries first;
    /// loaded within the near tier's bounds, each entry with what was left
    /// of its near TTL when saved less the time since (the process's
    /// downtime counts; never longer than [`near_ttl`](Self::near_ttl)),
    /// and served only while the namespace's generation is the one it was
    /// saved in (see [`generation_check`](Self::generation_check)): an
    /// `invalidate_all` while the process was down is not undone. A
    /// restored entry has no CAS: the first revalidation
    /// ([`revalidate_after`](Self::revalidate_after), counted from the
    /// load) refetches it.
    ///
    /// Saves run on a thread of their own (`nearfar-snapshot`), for a
    /// `NearFar` and an `AsyncNearFar` alike, so no call waits for one;
    /// the last save runs on the thread that drops the last handle. A
    /// file that does not load (cut short, changed, of other types) is
    /// counted in [`NearFarStats::snapshot_errors`](super::NearFarStats::snapshot_errors),
    /// the cache starts cold, and the next save replaces it. Values fail
    /// the save if they do not serialize. Counted:
    /// [`restored`](super::NearFarStats::restored),
    /// [`snapshot_saves`](super::NearFarStats::snapshot_saves).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use nearfar::NearFar;
    ///
    /// let path = std::env::temp_dir().join(format!("nearfar-doc-nf-{}", std::process::id()));
    /// let cache: NearFar<u32, String> = NearFar::builder()
    ///     .snapshot(&path, Duration::from_secs(60))
    ///     .build()?;
    /// cache.insert(1, "one".into());
    /// drop(cache); // saved
    ///
    /// let restarted: NearFar<u32, String> = NearFar::builder()
    ///     .snapshot(&path, Duration::from_secs(60))
    ///     .build()?;
    /// assert_eq!(restarted.stats().restored, 1);
    /// assert_eq!(restarted.get(&1).as_deref(), Some("one"));
    /// # drop(restarted);
    /// # std::fs::remove_file(&path).unwrap();
    /// # Ok::<(), nearfar::NearFarError>(())
    /// ```
    pub fn snapshot(mut self, path: impl Into<PathBuf>, every: Duration) -> Self {
        self.files.snapshot = Some(path.into());
        self.files.every = Some(every);
        self.files.io = Some(Io::new());
        self
    }

    /// Warm restarts from memcached (Hazelcast's "preloader", without
    /// values on disk): saves the near tier's keys, hottest first, to the
    /// file at `path` (when the [`snapshot`](Self::snapshot) is saved, or
    /// every 60 s without one, and when the last handle is dropped); when
    /// the cache is built, reads them again from the far tier in the
    /// background, in `get_many` batches of 1024 keys, and keeps the values
    /// found near. A restarted process is warm after a few round trips,
    /// with no copy of values on disk to go stale or leak.
    ///
    /// The preload runs on a thread of its own (`nearfar-preload`) for a
    /// `NearFar`, on a task of the current tokio runtime for an
    /// `AsyncNearFar` (none when built outside one). No call waits for it:
    /// a key not preloaded yet is read far as usual. It reads only keys not
    /// near already (those the snapshot restored), keeps values as a `get`
    /// would (for [`near_ttl`](Self::near_ttl), bounded by
    /// [`far_ttl`](Self::far_ttl)), and stops at the first batch the far
    /// tier fails or its breaker skips, or when the cache is dropped. Its
    /// values are counted in
    /// [`NearFarStats::preloaded`](super::NearFarStats::preloaded). Without
    /// a far tier nothing is preloaded.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use nearfar::{NearFar, memcached::Client};
    ///
    /// let client = Client::builder().servers(["127.0.0.1:11211"]).build()?;
    /// let users: NearFar<u64, String> = NearFar::builder()
    ///     .far(client)
    ///     .namespace("users")
    ///     .near_ttl(Duration::from_secs(30))
    ///     .preload("/var/lib/myapp/users.keys")
    ///     .build()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn preload(mut self, path: impl Into<PathBuf>) -> Self {
        self.files.preload = Some(path.into());
        self.files.io = Some(Io::new());
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
    /// `lease_ttl`, `generation_check`, `circuit_breaker` cooldown,
    /// `fail_safe`, `fail_safe_backoff` or `loader_timeout`, a
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
        if self.breaker.0 > 0 && self.breaker.1.is_zero() {
            return invalid("circuit_breaker", "a non-zero cooldown");
        }
        if self.generation_check.is_some_and(|d| d.is_zero()) {
            return invalid("generation_check", "a non-zero duration");
        }
        if self.fail_safe.is_some_and(|d| d.is_zero()) {
            return invalid("fail_safe", "a non-zero duration");
        }
        if self.fail_safe_backoff.is_zero() {
            return invalid("fail_safe_backoff", "a non-zero duration");
        }
        if self.loader_timeout.is_some_and(|d| d.is_zero()) {
            return invalid("loader_timeout", "a non-zero duration");
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
            backoff: self.fail_safe_backoff,
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
        let (warm, preload) = warm::start(&near, &generations, &timer, self.near_ttl, self.files);
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
