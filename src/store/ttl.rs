//! Time: the injectable clock and expiry arithmetic.
//!
//! Expiry times are stored as nanoseconds since the cache's creation plus one,
//! so that `0` can mean "never expires" and fits the slot's `u64`.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::shim::{AtomicU64, Ordering};

/// A source of monotonic time for TTLs.
///
/// The default is the system's monotonic clock ([`Instant::now`]). Tests can
/// pass a [`MockClock`] to [`CacheBuilder::clock`](crate::CacheBuilder::clock)
/// and move time by hand instead of sleeping.
pub trait Clock: Send + Sync + 'static {
    /// The current instant. Must never go backwards.
    fn now(&self) -> Instant;
}

/// A clock that only moves when told to. Clones share the same time.
///
/// ```
/// use std::time::Duration;
/// use nearfar::{Cache, MockClock};
///
/// let clock = MockClock::new();
/// let cache = Cache::builder()
///     .max_entries(100)
///     .time_to_live(Duration::from_secs(60))
///     .clock(clock.clone())
///     .build();
/// cache.insert("k", 1);
/// clock.advance(Duration::from_secs(59));
/// assert_eq!(cache.get("k"), Some(1));
/// clock.advance(Duration::from_secs(1));
/// assert_eq!(cache.get("k"), None);
/// ```
#[derive(Clone)]
pub struct MockClock {
    origin: Instant,
    offset_nanos: Arc<AtomicU64>,
}

impl MockClock {
    /// A mock clock starting at the current real instant.
    pub fn new() -> Self {
        MockClock {
            origin: Instant::now(),
            offset_nanos: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        let nanos = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        // Relaxed: a plain counter; readers that need to see the advance get
        // it through whatever synchronises them with the thread advancing it.
        let _ = self
            .offset_nanos
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |cur| {
                Some(cur.saturating_add(nanos))
            });
    }

    /// How far the clock has been advanced in total.
    pub fn elapsed(&self) -> Duration {
        Duration::from_nanos(self.offset_nanos.load(Ordering::Relaxed))
    }
}

impl Default for MockClock {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for MockClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MockClock")
            .field("elapsed", &self.elapsed())
            .finish()
    }
}

impl Clock for MockClock {
    fn now(&self) -> Instant {
        self.origin + self.elapsed()
    }
}

/// The cache's view of time: nanoseconds since it was built.
pub(crate) struct TimeSource {
    clock: Option<Arc<dyn Clock>>,
    origin: Instant,
}

impl TimeSource {
    pub(crate) fn new(clock: Option<Arc<dyn Clock>>) -> Self {
        let origin = match &clock {
            Some(c) => c.now(),
            None => Instant::now(),
        };
        TimeSource { clock, origin }
    }

    /// Nanoseconds since the cache was built, plus one (never 0).
    #[inline]
    pub(crate) fn now(&self) -> u64 {
        let now = match &self.clock {
            Some(c) => c.now(),
            None => Instant::now(),
        };
        let nanos = now.saturating_duration_since(self.origin).as_nanos();
        u64::try_from(nanos).unwrap_or(u64::MAX - 1) + 1
    }

    /// The expiry stamp for an entry living `ttl` from `now`; 0 (never) when
    /// `ttl` is `None`.
    pub(crate) fn expiry(now: u64, ttl: Option<Duration>) -> u64 {
        match ttl {
            None => 0,
            Some(ttl) => now.saturating_add(u64::try_from(ttl.as_nanos()).unwrap_or(u64::MAX)),
        }
    }
}

/// Whether an entry stamped `expires` is dead at `now`.
#[inline]
pub(crate) fn is_expired(expires: u64, now: u64) -> bool {
    expires != 0 && now >= expires
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mock_clock_moves_only_when_advanced_and_clones_share_it() {
        let c = MockClock::new();
        let t0 = c.now();
        let c2 = c.clone();
        c2.advance(Duration::from_millis(1500));
        assert_eq!(c.now() - t0, Duration::from_millis(1500));
    }

    #[test]
    fn expiry_boundaries() {
        let clock = MockClock::new();
        let ts = TimeSource::new(Some(Arc::new(clock.clone())));
        let now = ts.now();
        assert_eq!(now, 1);
        let exp = TimeSource::expiry(now, Some(Duration::from_millis(10)));
        clock.advance(Duration::from_millis(9));
        assert!(!is_expired(exp, ts.now()));
        clock.advance(Duration::from_millis(1));
        assert!(is_expired(exp, ts.now()));
        assert!(!is_expired(0, u64::MAX));
        assert_eq!(TimeSource::expiry(now, Some(Duration::MAX)), u64::MAX);
    }
}
