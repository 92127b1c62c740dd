//! Time: the near tier's view of the injectable clock, and expiry arithmetic.
//!
//! Expiry times are stored as nanoseconds since the cache's creation plus one,
//! so that `0` can mean "never expires" and fits the slot's `u64`.

use std::sync::Arc;
use std::time::Duration;

use crate::clock::Timer;
pub use crate::clock::{Clock, MockClock};

/// The cache's view of time: nanoseconds since it was built, plus one.
pub(crate) struct TimeSource(Timer);

impl TimeSource {
    pub(crate) fn new(clock: Option<Arc<dyn Clock>>) -> Self {
        TimeSource(Timer::new(clock))
    }

    /// Nanoseconds since the cache was built, plus one (never 0).
    #[inline]
    pub(crate) fn now(&self) -> u64 {
        self.0.now().saturating_add(1)
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
