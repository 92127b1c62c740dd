//! The far tier's settings of [`NearFarBuilder`]: which memcached pools,
//! its keys, how long items live there and how long near copies of them are
//! served (near TTL, revalidation, fleet-wide invalidation), leases, and the
//! circuit breaker.

use std::time::Duration;

use super::NearFarBuilder;

impl<K, V, Cl> NearFarBuilder<K, V, Cl> {
    /// The far tier: a memcached client (its own key prefix, servers and
    /// timeouts apply). Short I/O and connect timeouts keep the cost of a
    /// slow server low.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use nearfar::{NearFar, memcached::Client};
    ///
    /// // Building connects to nothing. Nothing listens on port 1: this far tier
    /// // is down, and the callers do not notice.
    /// let client = Client::builder()
    ///     .servers(["127.0.0.1:1"])
    ///     .connect_timeout(Duration::from_millis(50))
    ///     .build()?;
    /// let users: NearFar<u64, String> = NearFar::builder().far(client).build()?;
    /// assert_eq!(users.get_with(42, || "Ada".to_string()), "Ada");
    /// assert_eq!(users.get(&42).as_deref(), Some("Ada")); // kept near
    /// assert_eq!(users.stats().far_errors, 1); // the load's request
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// With memcached up, what one process loads, the others read:
    ///
    /// ```no_run
    /// use nearfar::{NearFar, memcached::Client};
    ///
    /// let process = || -> Result<NearFar<u64, String>, Box<dyn std::error::Error>> {
    ///     let client = Client::builder().servers(["127.0.0.1:11211"]).build()?;
    ///     Ok(NearFar::builder().far(client).namespace("users").build()?)
    /// };
    /// let (a, b) = (process()?, process()?);
    /// a.remove(&42); // start from a miss
    /// assert_eq!(a.get_with(42, || "Ada".to_string()), "Ada"); // loaded, stored far
    /// assert_eq!(b.get_with(42, || unreachable!("read far")), "Ada");
    /// assert_eq!(b.stats().far_hits, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
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
    /// [`NearFar::far_key`](crate::NearFar::far_key)). Give the old client
    /// a key prefix no longer than the new one's: otherwise a long key is
    /// digested by the processes that have this fallback and not by those
    /// that do not, and during a migration the two kinds would not see each
    /// other's writes.
    ///
    /// # Examples
    ///
    /// ```
    /// use nearfar::{NearFar, memcached::Client};
    ///
    /// // Moving to a new pool: a key the new pool misses is read from the old one
    /// // and copied over, so the new pool starts warm. Neither client connects yet.
    /// let new = Client::builder()
    ///     .servers(["10.0.1.1:11211", "10.0.1.2:11211"])
    ///     .key_prefix("shop:")
    ///     .build()?;
    /// let old = Client::builder().servers(["10.0.0.1:11211"]).key_prefix("shop:").build()?;
    /// let products: NearFar<u64, String> = NearFar::builder()
    ///     .far(new)
    ///     .fallback(old)
    ///     .namespace("products")
    ///     .build()?;
    /// assert_eq!(products.far_key(&7).as_deref(), Some("products:7")); // in both pools
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
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
    ///
    /// # Examples
    ///
    /// ```
    /// use nearfar::{NearFar, NearFarError, memcached::Client};
    ///
    /// let far = || Client::builder().servers(["127.0.0.1:11211"]).build(); // connects lazily
    /// let v3: NearFar<u64, String> = NearFar::builder().far(far()?).namespace("users:v3").build()?;
    /// let v4: NearFar<u64, String> = NearFar::builder().far(far()?).namespace("users:v4").build()?;
    /// assert_eq!(v3.far_key(&42).as_deref(), Some("users:v3:42"));
    /// assert_eq!(v4.far_key(&42).as_deref(), Some("users:v4:42")); // reads none of v3's items
    /// let plain: NearFar<u64, String> = NearFar::builder().far(far()?).build()?;
    /// assert_eq!(plain.far_key(&42).as_deref(), Some("42"));
    ///
    /// let spaced = NearFar::<u64, String>::builder().namespace("users v3").build();
    /// assert!(matches!(spaced, Err(NearFarError::InvalidSetting { setting: "namespace", .. })));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// How long values written to memcached live there (default 1 hour;
    /// `Duration::MAX`: as long as the server keeps them).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use nearfar::{NearFar, NearFarError, memcached::Client};
    ///
    /// // Prices change daily: memcached keeps them for a day at most.
    /// let client = Client::builder().servers(["127.0.0.1:11211"]).build()?;
    /// let prices: NearFar<u32, u64> = NearFar::builder()
    ///     .far(client)
    ///     .namespace("prices")
    ///     .far_ttl(Duration::from_secs(24 * 3600))
    ///     .build()?;
    ///
    /// let zero = NearFar::<u32, u64>::builder().far_ttl(Duration::ZERO).build();
    /// assert!(matches!(zero, Err(NearFarError::InvalidSetting { setting: "far_ttl", .. })));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn far_ttl(mut self, ttl: Duration) -> Self {
        self.far_ttl = ttl;
        self
    }

    /// The longest a value stays in the near tier; never longer than what
    /// the far tier says is left of the item's TTL (to the millisecond the
    /// near tier keeps expiries to, see
    /// [`Cache::insert_with_ttl`](crate::Cache::insert_with_ttl)). Bounds how long another
    /// process's write can go unseen (see the
    /// [module docs](crate::nearfar)). Must not be zero (leave it unset, or
    /// use [`remove_near`](crate::NearFar::remove_near)).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use nearfar::{Cache, MockClock, NearFar, NearFarError};
    ///
    /// let clock = MockClock::new();
    /// let cache: NearFar<&str, u32> = NearFar::builder()
    ///     .near(Cache::builder().max_entries(1_000).clock(clock.clone()))
    ///     .near_ttl(Duration::from_secs(30))
    ///     .clock(clock.clone())
    ///     .build()?;
    /// cache.insert("a", 1);
    /// clock.advance(Duration::from_secs(29));
    /// assert_eq!(cache.get(&"a"), Some(1));
    /// clock.advance(Duration::from_secs(1));
    /// assert_eq!(cache.get(&"a"), None); // the copy expired (with a far tier: read far)
    ///
    /// let zero = NearFar::<&str, u32>::builder().near_ttl(Duration::ZERO).build();
    /// assert!(matches!(zero, Err(NearFarError::InvalidSetting { setting: "near_ttl", .. })));
    /// # Ok::<(), NearFarError>(())
    /// ```
    pub fn near_ttl(mut self, ttl: Duration) -> Self {
        self.near_ttl = Some(ttl);
        self
    }

    /// Checks a near entry against memcached (by CAS, no value bytes) on the
    /// first read after it has been held this long (tested on the coarse
    /// clock: up to a kernel tick, typically 4 ms, later; see
    /// [`Cache::insert_with_ttl`](crate::Cache::insert_with_ttl)): unchanged,
    /// it is kept for another period; changed or gone, it is refetched.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use nearfar::{Cache, MockClock, NearFar, memcached::Client};
    ///
    /// let clock = MockClock::new();
    /// let process = || -> Result<NearFar<u32, String>, Box<dyn std::error::Error>> {
    ///     Ok(NearFar::builder()
    ///         .near(Cache::builder().max_entries(1_000).clock(clock.clone()))
    ///         .far(Client::builder().servers(["127.0.0.1:11211"]).build()?)
    ///         .namespace("docs")
    ///         .near_ttl(Duration::from_secs(300))
    ///         .revalidate_after(Duration::from_secs(5))
    ///         .clock(clock.clone())
    ///         .build()?)
    /// };
    /// let (a, b) = (process()?, process()?);
    /// a.insert(1, "v1".into());
    /// assert_eq!(b.get(&1).as_deref(), Some("v1")); // b keeps a copy
    /// a.insert(1, "v2".into());
    /// assert_eq!(b.get(&1).as_deref(), Some("v1")); // for 5 s, b's copy: no far read
    /// clock.advance(Duration::from_secs(5));
    /// assert_eq!(b.get(&1).as_deref(), Some("v2")); // CAS checked: changed, fetched
    /// assert_eq!(b.stats().revalidations_changed, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn revalidate_after(mut self, after: Duration) -> Self {
        self.revalidate_after = Some(after);
        self
    }

    /// How long a lease (the right to compute a missing value) is held in
    /// memcached before it lapses if its holder never stores (default 10 s;
    /// memcached counts whole seconds, at least one).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use nearfar::{NearFar, NearFarError, memcached::Client};
    ///
    /// // Reports take up to 20 s to compute: the others wait for the one computing
    /// // (lease_wait), and its lease outlives the wait.
    /// let client = Client::builder().servers(["127.0.0.1:11211"]).build()?;
    /// let reports: NearFar<u32, Vec<u8>> = NearFar::builder()
    ///     .far(client)
    ///     .namespace("reports")
    ///     .lease_wait(Duration::from_secs(25))
    ///     .lease_ttl(Duration::from_secs(30))
    ///     .build()?;
    ///
    /// let zero = NearFar::<u32, Vec<u8>>::builder().lease_ttl(Duration::ZERO).build();
    /// assert!(matches!(zero, Err(NearFarError::InvalidSetting { setting: "lease_ttl", .. })));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = ttl;
        self
    }

    /// How long a caller that lost the lease polls memcached for the
    /// winner's value (default 1 s). Shorter than
    /// [`lease_ttl`](Self::lease_ttl) (default 10 s), which `build` checks.
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
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::sync::mpsc;
    /// use std::time::Duration;
    /// use nearfar::{NearFar, memcached::Client};
    ///
    /// let process = || -> Result<NearFar<u32, String>, Box<dyn std::error::Error>> {
    ///     Ok(NearFar::builder()
    ///         .far(Client::builder().servers(["127.0.0.1:11211"]).build()?)
    ///         .namespace("reports")
    ///         .lease_wait(Duration::from_secs(3))
    ///         .build()?)
    /// };
    /// let (a, b) = (process()?, process()?);
    /// a.remove(&1); // start from a miss
    /// let (started, running) = mpsc::channel();
    /// std::thread::scope(|s| {
    ///     s.spawn(|| {
    ///         a.get_with(1, || {
    ///             started.send(()).unwrap();
    ///             std::thread::sleep(Duration::from_millis(500));
    ///             "report".to_string()
    ///         })
    ///     });
    ///     running.recv().unwrap(); // a holds the lease and computes
    ///     // b waits for a's value (up to 3 s) rather than computing it too.
    ///     assert_eq!(b.get_with(1, || unreachable!("a computes it")), "report");
    /// });
    /// assert_eq!(b.stats().lease_waits, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// `build` refuses a zero wait: every process would take over every
    /// lease at once, and load for itself. It refuses a wait as long as
    /// [`lease_ttl`](Self::lease_ttl) or longer too: the lease would lapse
    /// first, and a waiter would then lease and load while the holder may
    /// still be loading; raise `lease_ttl` with it.
    ///
    /// ```
    /// use std::time::Duration;
    /// use nearfar::{NearFar, NearFarError};
    ///
    /// let long = NearFar::<u32, String>::builder().lease_wait(Duration::from_secs(10)).build();
    /// assert!(matches!(long, Err(NearFarError::InvalidSetting { setting: "lease_wait", .. })));
    /// let both = NearFar::<u32, String>::builder()
    ///     .lease_wait(Duration::from_secs(10))
    ///     .lease_ttl(Duration::from_secs(30))
    ///     .build();
    /// assert!(both.is_ok());
    /// ```
    pub fn lease_wait(mut self, wait: Duration) -> Self {
        self.lease_wait = wait;
        self
    }

    /// Makes [`NearFar::remove`](crate::NearFar::remove) mark the far item
    /// stale for `stale_for` instead of deleting it: stale-while-revalidate
    /// (see the [module docs](crate::nearfar)). Memcached counts whole
    /// seconds, at least one.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use nearfar::{NearFar, memcached::Client};
    ///
    /// let process = || -> Result<NearFar<u32, String>, Box<dyn std::error::Error>> {
    ///     Ok(NearFar::builder()
    ///         .far(Client::builder().servers(["127.0.0.1:11211"]).build()?)
    ///         .namespace("docs")
    ///         .stale_on_remove(Duration::from_secs(10))
    ///         .build()?)
    /// };
    /// let (a, b, c) = (process()?, process()?, process()?);
    /// a.insert(1, "v1".into());
    /// a.remove(&1); // marked stale for 10 s, not deleted
    /// // Until it is recomputed, readers are served the stale value...
    /// assert_eq!(b.get(&1).as_deref(), Some("v1"));
    /// assert_eq!(b.stats().stale_serves, 1);
    /// // ...and the first `get_with` recomputes it.
    /// assert_eq!(c.get_with(1, || "v2".to_string()), "v2");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn stale_on_remove(mut self, stale_for: Duration) -> Self {
        self.stale_on_remove = Some(stale_for);
        self
    }

    /// Makes [`invalidate_all`](crate::NearFar::invalidate_all) possible: this
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
    /// round trip (the check's; at most the client's `request_timeout`),
    /// plus up to a kernel clock tick (near hits test whether the check is
    /// due on the coarse clock, see
    /// [`Cache::insert_with_ttl`](crate::Cache::insert_with_ttl)).
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
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use nearfar::{NearFar, NearFarError, memcached::Client};
    ///
    /// let far = || Client::builder().servers(["127.0.0.1:11211"]).build(); // connects lazily
    /// let prices: NearFar<u32, u64> = NearFar::builder()
    ///     .far(far()?)
    ///     .namespace("prices")
    ///     .generation_check(Duration::from_secs(1))
    ///     .build()?;
    /// // No far key until the first call has read the namespace's generation.
    /// assert_eq!(prices.far_key(&7), None);
    ///
    /// // The tag takes room: a 200-byte namespace fits without it, not with it.
    /// let long = "n".repeat(200);
    /// assert!(NearFar::<u32, u64>::builder().far(far()?).namespace(&long).build().is_ok());
    /// let tagged = NearFar::<u32, u64>::builder()
    ///     .far(far()?)
    ///     .namespace(&long)
    ///     .generation_check(Duration::from_secs(1))
    ///     .build();
    /// assert!(matches!(tagged, Err(NearFarError::InvalidSetting { setting: "namespace", .. })));
    /// let zero = NearFar::<u32, u64>::builder().generation_check(Duration::ZERO).build();
    /// assert!(matches!(zero, Err(NearFarError::InvalidSetting { setting: "generation_check", .. })));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// See [`invalidate_all`](crate::NearFar::invalidate_all) for the generation
    /// at work.
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
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use nearfar::{NearFar, NearFarError, memcached::Client};
    ///
    /// // Nothing listens on port 1: every far request fails at once.
    /// let far = Client::builder().servers(["127.0.0.1:1"]).build()?;
    /// let cache: NearFar<u32, u32> = NearFar::builder()
    ///     .far(far)
    ///     .circuit_breaker(2, Duration::from_secs(60))
    ///     .build()?;
    /// for i in 0..10 {
    ///     assert_eq!(cache.get_with(i, || i * 10), i * 10); // never an error
    /// }
    /// let s = cache.stats();
    /// assert_eq!((s.far_errors, s.breaker_trips), (2, 1)); // then the far tier is skipped
    /// assert!(s.breaker_skips > 0 && cache.far_breaker_open());
    ///
    /// let zero = NearFar::<u32, u32>::builder().circuit_breaker(3, Duration::ZERO).build();
    /// assert!(matches!(zero, Err(NearFarError::InvalidSetting { setting: "circuit_breaker", .. })));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn circuit_breaker(mut self, failures: u32, cooldown: Duration) -> Self {
        self.breaker = (failures, cooldown);
        self
    }
}
