//! Time: the near tier's view of the injectable clock, and expiry arithmetic.
//!
//! Expiry times are nanoseconds since the cache's creation plus one, so that
//! `0` can mean "never expires". A slot keeps one in four bytes, to the
//! millisecond, rounded up (see `expiry`); what the store reads back is this
//! form again.

use std::sync::Arc;
use std::time::Duration;

use crate::clock::Timer;
pub use crate::clock::{Clock, MockClock};

/// The cache's view of time: nanoseconds since it was built, plus one; and
/// how long an expired entry is kept (`keep_expired`).
pub(crate) struct TimeSource {
    timer: Timer,
    /// Nanoseconds an entry is kept past its expiry; 0: not kept.
    keep_expired: u64,
}

impl TimeSource {
    pub(crate) fn new(clock: Option<Arc<dyn Clock>>) -> Self {
        TimeSource {
            timer: Timer::new(clock),
            keep_expired: 0,
        }
    }

    /// The same, keeping expired entries for `grace` (`None`: not kept).
    pub(crate) fn keeping_expired(self, grace: Option<Duration>) -> Self {
        TimeSource {
            keep_expired: grace.map_or(0, |g| u64::try_from(g.as_nanos()).unwrap_or(u64::MAX)),
            ..self
        }
    }

    /// Whether a clock was injected (it moves only when told: a timed wait
    /// on it reads it again rather than trusting real time).
    pub(crate) fn is_injected(&self) -> bool {
        self.timer.is_injected()
    }

    /// Nanoseconds since the cache was built, plus one (never 0).
    #[inline]
    pub(crate) fn now(&self) -> u64 {
        self.timer.now().saturating_add(1)
    }

    /// [`TimeSource::now`], read cheaply and up to a kernel tick behind
    /// (see `Timer::recent`): what a lookup tests an entry's expiry
    /// against. Never ahead of `now`, so an entry never looks expired
    /// early; a writer that acts on what a lookup saw reads `now` again.
    #[inline]
    pub(crate) fn recent(&self) -> u64 {
        self.timer.recent().saturating_add(1)
    }

    /// The wall-clock time on the cache's clock (see `Clock::wall_time`).
    #[allow(
        dead_code,
        reason = "the store's API for a snapshot, unused without one: see `store::export`"
    )]
    pub(crate) fn wall(&self) -> std::time::SystemTime {
        self.timer.wall()
    }

    /// Whether an entry stamped `expires`, expired at `now`, is still kept
    /// (a fail-safe copy, see `CacheBuilder::keep_expired`).
    #[inline]
    pub(crate) fn kept(&self, expires: u64, now: u64) -> bool {
        self.keep_expired != 0 && now < expires.saturating_add(self.keep_expired)
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
