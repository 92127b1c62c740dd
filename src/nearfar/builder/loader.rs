//! The loader's settings of [`NearFarBuilder`]: what a load that fails,
//! hangs or comes due does (fail-safe, its backoff, the loader timeout,
//! refresh-ahead).

use std::time::Duration;

use super::NearFarBuilder;

impl<K, V, Cl> NearFarBuilder<K, V, Cl> {
    /// Fail-safe: when a load fails — the loader returns an error or
    /// panics, or outlasts [`loader_timeout`](Self::loader_timeout) — and this process still has
    /// the key's last value, expired less than `max_stale` ago, that value
    /// is returned instead (to the caller and the callers waiting on the
    /// same load) and counted in
    /// [`NearFarStats::fail_safe_serves`](crate::NearFarStats::fail_safe_serves).
    /// It is then served near for
    /// [`fail_safe_backoff`](Self::fail_safe_backoff), so a failing source
    /// is tried at most once per backoff per key; each try that fails
    /// serves it again until `max_stale` has passed since it first expired.
    /// Without a last value the caller gets the error (or the panic) as
    /// without fail-safe. The value is not written to memcached again.
    ///
    /// To have last values, the near tier keeps expired entries for
    /// `max_stale` (see
    /// [`CacheBuilder::keep_expired`](crate::CacheBuilder::keep_expired)):
    /// within its bounds, and the first it evicts. Off by default.
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
    ///
    /// `build` refuses it without [`fail_safe`](Self::fail_safe): there
    /// would be no value served to back off with.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::cell::Cell;
    /// use std::time::Duration;
    /// use nearfar::{Cache, MockClock, NearFar, NearFarError};
    ///
    /// let clock = MockClock::new();
    /// let cache: NearFar<&str, u32> = NearFar::builder()
    ///     .near(Cache::builder().max_entries(1_000).clock(clock.clone()))
    ///     .near_ttl(Duration::from_secs(60))
    ///     .fail_safe(Duration::from_secs(3600))
    ///     .fail_safe_backoff(Duration::from_secs(10))
    ///     .clock(clock.clone())
    ///     .build()?;
    /// cache.insert("price", 7);
    /// clock.advance(Duration::from_secs(60)); // expired: the next call loads
    /// let tries = Cell::new(0);
    /// let down = || {
    ///     tries.set(tries.get() + 1);
    ///     Err("db unreachable")
    /// };
    /// assert_eq!(cache.try_get_with("price", down), Ok(7)); // tried: the last value
    /// clock.advance(Duration::from_secs(9));
    /// assert_eq!(cache.try_get_with("price", down), Ok(7)); // within the backoff
    /// assert_eq!(tries.get(), 1, "not tried again");
    /// clock.advance(Duration::from_secs(1));
    /// assert_eq!(cache.try_get_with("price", down), Ok(7));
    /// assert_eq!(tries.get(), 2, "tried once per backoff");
    ///
    /// let alone = NearFar::<&str, u32>::builder().fail_safe_backoff(Duration::from_secs(10)).build();
    /// assert!(matches!(alone, Err(NearFarError::InvalidSetting { setting: "fail_safe_backoff", .. })));
    /// # Ok::<(), NearFarError>(())
    /// ```
    pub fn fail_safe_backoff(mut self, backoff: Duration) -> Self {
        self.fail_safe_backoff = Some(backoff);
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
    ///
    /// `build` refuses it without [`fail_safe`](Self::fail_safe), which
    /// gives it the value to serve.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use nearfar::{NearFar, NearFarError};
    ///
    /// // A thread that asks for a key another thread is loading gets the key's
    /// // last value after 2 s, rather than waiting for the load to end.
    /// let rates: NearFar<&str, f64> = NearFar::builder()
    ///     .fail_safe(Duration::from_secs(3600))
    ///     .loader_timeout(Duration::from_secs(2))
    ///     .build()?;
    ///
    /// let zero = NearFar::<&str, f64>::builder()
    ///     .fail_safe(Duration::from_secs(3600))
    ///     .loader_timeout(Duration::ZERO)
    ///     .build();
    /// assert!(matches!(zero, Err(NearFarError::InvalidSetting { setting: "loader_timeout", .. })));
    /// # Ok::<(), NearFarError>(())
    /// ```
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
    /// Counted in [`NearFarStats::refresh_aheads`](crate::NearFarStats::refresh_aheads).
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
}
