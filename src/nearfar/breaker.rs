//! The circuit breaker in front of the far tier.
//!
//! Closed: every call goes to memcached. After `threshold` consecutive
//! failures (connection errors, timeouts: what a retry could cure) it opens
//! for `cooldown`: calls skip the far tier at once. When the cooldown is
//! over one caller probes; its success closes the breaker, its failure
//! opens it for another cooldown. So a dead server costs one failed call
//! per cooldown, not one per request.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::nanos;

/// Whether a call may use the far tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pass {
    /// Closed: go ahead.
    Closed,
    /// Half-open, and this caller holds the single probe: report its outcome.
    Probe,
    /// Open: skip the far tier.
    Skip,
}

pub(crate) struct Breaker {
    threshold: u32,
    cooldown: Duration,
    epoch: Instant,
    failures: AtomicU32,
    /// Nanoseconds since `epoch` until which the breaker is open; 0: closed.
    open_until: AtomicU64,
    probing: AtomicBool,
    pub(crate) trips: AtomicU64,
    pub(crate) skips: AtomicU64,
}

impl Breaker {
    /// A closed breaker; `threshold` 0 disables it (always closed).
    pub(crate) fn new(threshold: u32, cooldown: Duration) -> Breaker {
        Breaker {
            threshold,
            cooldown,
            epoch: Instant::now(),
            failures: AtomicU32::new(0),
            open_until: AtomicU64::new(0),
            probing: AtomicBool::new(false),
            trips: AtomicU64::new(0),
            skips: AtomicU64::new(0),
        }
    }

    fn now(&self) -> u64 {
        // At least 1, so an open deadline is never 0 ("closed").
        nanos(self.epoch.elapsed()).max(1)
    }

    pub(crate) fn pass(&self) -> Pass {
        let until = self.open_until.load(Ordering::Acquire);
        if until == 0 {
            return Pass::Closed;
        }
        if self.now() >= until
            && self
                .probing
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            return Pass::Probe;
        }
        self.skips.fetch_add(1, Ordering::Relaxed);
        Pass::Skip
    }

    /// The far call succeeded (or failed in a way that proves the server up).
    pub(crate) fn success(&self, pass: Pass) {
        if pass == Pass::Probe || self.failures.load(Ordering::Relaxed) != 0 {
            self.failures.store(0, Ordering::Relaxed);
            self.open_until.store(0, Ordering::Release);
            self.probing.store(false, Ordering::Release);
        }
    }

    /// The far call ended without a word from the server (nothing was sent,
    /// or what came back proves nothing): a probe is given up, so the next
    /// caller probes again; the breaker stays as it was.
    pub(crate) fn release(&self, pass: Pass) {
        if pass == Pass::Probe {
            self.probing.store(false, Ordering::Release);
        }
    }

    /// The far call failed with an error a retry could cure.
    pub(crate) fn failure(&self, pass: Pass) {
        if self.threshold == 0 {
            return;
        }
        if pass == Pass::Probe {
            // Only the probe moves an open breaker's deadline.
            let until = self.open_until.load(Ordering::Acquire);
            self.open(until);
            self.probing.store(false, Ordering::Release);
            return;
        }
        let failures = self
            .failures
            .fetch_add(1, Ordering::AcqRel)
            .saturating_add(1);
        if failures >= self.threshold {
            self.open(0);
        }
    }

    /// Opens the breaker for a cooldown from now, if its deadline is still
    /// `from` (0: closed): of callers failing at once, one trips it.
    fn open(&self, from: u64) {
        let until = self.now().saturating_add(nanos(self.cooldown));
        if self
            .open_until
            .compare_exchange(from, until, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            self.failures.store(0, Ordering::Relaxed);
            self.trips.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Whether the breaker is open now (calls skip the far tier).
    pub(crate) fn is_open(&self) -> bool {
        self.open_until.load(Ordering::Acquire) != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_threshold_and_probes_once() {
        let b = Breaker::new(2, Duration::ZERO);
        assert_eq!(b.pass(), Pass::Closed);
        b.failure(Pass::Closed);
        assert!(!b.is_open());
        b.failure(Pass::Closed);
        assert!(b.is_open());
        // Cooldown of zero: the next caller probes, the one after skips.
        assert_eq!(b.pass(), Pass::Probe);
        assert_eq!(b.pass(), Pass::Skip);
        b.failure(Pass::Probe);
        assert!(b.is_open());
        assert_eq!(b.pass(), Pass::Probe);
        b.success(Pass::Probe);
        assert!(!b.is_open());
        assert_eq!(b.pass(), Pass::Closed);
        assert_eq!(b.trips.load(Ordering::Relaxed), 2);
        assert_eq!(b.skips.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_released_probe_neither_closes_nor_extends() {
        let b = Breaker::new(1, Duration::ZERO);
        b.failure(Pass::Closed);
        assert_eq!(b.pass(), Pass::Probe);
        b.release(Pass::Probe);
        assert!(b.is_open(), "a probe that reached no server closes nothing");
        assert_eq!(b.trips.load(Ordering::Relaxed), 1);
        assert_eq!(b.pass(), Pass::Probe, "the next caller probes");
        b.success(Pass::Probe);
        assert!(!b.is_open());
        b.release(Pass::Closed);
        assert_eq!(b.pass(), Pass::Closed);
    }

    #[test]
    fn open_breaker_skips_during_cooldown() {
        let b = Breaker::new(1, Duration::from_secs(3600));
        b.failure(Pass::Closed);
        for _ in 0..10 {
            assert_eq!(b.pass(), Pass::Skip);
        }
    }

    #[test]
    fn failures_at_once_trip_it_once() {
        const THREADS: usize = 8;
        for _ in 0..100 {
            let b = Breaker::new(1, Duration::from_secs(3600));
            let barrier = std::sync::Barrier::new(THREADS);
            std::thread::scope(|s| {
                for _ in 0..THREADS {
                    s.spawn(|| {
                        barrier.wait();
                        b.failure(Pass::Closed);
                    });
                }
            });
            assert!(b.is_open());
            assert_eq!(b.trips.load(Ordering::Relaxed), 1);
        }
    }

    #[test]
    fn zero_threshold_never_opens() {
        let b = Breaker::new(0, Duration::from_secs(1));
        for _ in 0..10 {
            b.failure(Pass::Closed);
        }
        assert_eq!(b.pass(), Pass::Closed);
    }
}
