//! Time for every timed decision of the crate: the [`Clock`] users inject
//! (a [`MockClock`] in tests, so nothing needs to sleep), and [`Timer`], the
//! nanoseconds-since-creation view the near tier, the client's server
//! health and `NearFar` take their `now` from.

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use crate::shim::{AtomicU64, Ordering};

/// A source of monotonic time for TTLs.
///
/// Without one, the crate reads the CPU's time-stamp counter (through the
/// `quanta` crate, calibrated against the system's monotonic clock, and the
/// system's clock itself where the counter is not reliable): about half
/// the cost of [`Instant::now`] per read. Tests can pass a [`MockClock`] to
/// [`CacheBuilder::clock`](crate::CacheBuilder::clock) and move time by
/// hand instead of sleeping.
pub trait Clock: Send + Sync + 'static {
    /// The current instant. Must never go backwards.
    fn now(&self) -> Instant;

    /// Waits `duration` on this clock: what a caller polling for another's
    /// result does between polls (`NearFar`'s lease wait). The default
    /// sleeps the thread; [`MockClock`] advances itself instead, so a test
    /// waits for nothing.
    ///
    /// `AsyncNearFar` calls it too, from its task, when a clock is
    /// injected (without one it awaits tokio's timer): an injected clock
    /// used with the async API should not block here.
    fn sleep(&self, duration: Duration) {
        std::thread::sleep(duration);
    }

    /// The wall-clock time: what a snapshot records when it is saved, so
    /// that the time a process spent down counts against its entries' TTLs
    /// when another process loads it (`Cache::load`, feature `snapshot`).
    /// The default is [`SystemTime::now`]; [`MockClock`] moves it with its
    /// monotonic time.
    fn wall_time(&self) -> SystemTime {
        SystemTime::now()
    }
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
    wall_origin: SystemTime,
    offset_nanos: Arc<AtomicU64>,
}

impl MockClock {
    /// A mock clock starting at the current real instant (and, for
    /// [`Clock::wall_time`], the current wall-clock time).
    pub fn new() -> Self {
        MockClock {
            origin: Instant::now(),
            wall_origin: SystemTime::now(),
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

    /// Advances the clock by `duration` at once: time passes for every
    /// clone, and nothing waits.
    fn sleep(&self, duration: Duration) {
        self.advance(duration);
    }

    /// The wall-clock time it started at, plus how far it was advanced.
    fn wall_time(&self) -> SystemTime {
        self.wall_origin + self.elapsed()
    }
}

/// The process's time-stamp-counter clock (quanta), calibrated once and
/// shared by every [`Timer`] without an injected clock (each calibration
/// takes tens of microseconds, the first one ~0.6 ms).
fn counter() -> &'static quanta::Clock {
    static COUNTER: OnceLock<quanta::Clock> = OnceLock::new();
    COUNTER.get_or_init(quanta::Clock::new)
}

/// Nanoseconds since creation, on an injected [`Clock`] when there is one,
/// else on the CPU's time-stamp counter through quanta (see `Cargo.toml`:
/// about half the cost of [`Instant::now`], and every hit on an entry with
/// a TTL reads the clock).
#[derive(Clone)]
pub(crate) struct Timer {
    clock: Option<Arc<dyn Clock>>,
    /// The injected clock's time at creation (unused without one).
    origin: Instant,
    /// The counter, and its time at creation.
    counter: &'static quanta::Clock,
    counter_origin: quanta::Instant,
}

impl Timer {
    pub(crate) fn new(clock: Option<Arc<dyn Clock>>) -> Timer {
        let origin = match &clock {
            Some(c) => c.now(),
            None => Instant::now(),
        };
        let counter = counter();
        Timer {
            clock,
            origin,
            counter,
            counter_origin: counter.now(),
        }
    }

    /// Waits `duration` on the timer's clock (see [`Clock::sleep`]).
    #[allow(
        dead_code,
        reason = "the clock's own API (tested below); its caller, NearFar's lease wait, is built with the memcached feature"
    )]
    pub(crate) fn sleep(&self, duration: Duration) {
        match &self.clock {
            Some(clock) => clock.sleep(duration),
            None => std::thread::sleep(duration),
        }
    }

    /// Whether a clock was injected (else the system's clock is used).
    pub(crate) fn is_injected(&self) -> bool {
        self.clock.is_some()
    }

    /// The wall-clock time, on the injected clock when there is one (see
    /// [`Clock::wall_time`]).
    #[allow(
        dead_code,
        reason = "the clock's own API (tested below); its caller, the snapshot, is built with the snapshot feature"
    )]
    pub(crate) fn wall(&self) -> SystemTime {
        match &self.clock {
            Some(c) => c.wall_time(),
            None => SystemTime::now(),
        }
    }

    /// Nanoseconds since the timer was made (saturating: 584 years).
    #[inline]
    pub(crate) fn now(&self) -> u64 {
        let since = match &self.clock {
            Some(c) => c.now().saturating_duration_since(self.origin),
            None => self
                .counter
                .now()
                .saturating_duration_since(self.counter_origin),
        };
        u64::try_from(since.as_nanos()).unwrap_or(u64::MAX)
    }
}

impl fmt::Debug for Timer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Timer")
            .field("injected", &self.clock.is_some())
            .finish_non_exhaustive()
    }
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
    fn a_mock_clock_moves_its_wall_time_with_it() {
        let clock = MockClock::new();
        let timer = Timer::new(Some(Arc::new(clock.clone())));
        let before = timer.wall();
        clock.advance(Duration::from_secs(90));
        assert_eq!(
            timer.wall().duration_since(before).ok(),
            Some(Duration::from_secs(90))
        );
    }

    #[test]
    fn a_timer_sleeps_on_its_clock() {
        let clock = MockClock::new();
        let timer = Timer::new(Some(Arc::new(clock.clone())));
        timer.sleep(Duration::from_secs(3600));
        assert_eq!(timer.now(), 3_600_000_000_000, "no real wait");
        assert_eq!(clock.elapsed(), Duration::from_secs(3600));
    }

    #[test]
    fn a_timer_without_a_clock_follows_the_system_clock() {
        let timer = Timer::new(None);
        let start = Instant::now();
        let mut last = timer.now();
        // Bounded: a few milliseconds of reads, each no earlier than the last.
        while start.elapsed() < Duration::from_millis(10) {
            let now = timer.now();
            assert!(now >= last, "the timer went back: {last} -> {now}");
            last = now;
        }
        // At least half the real time passed (a calibration off by more
        // would be a broken clock; real time bounds it from above too).
        let real = start.elapsed().as_nanos() as u64;
        assert!(last >= real / 2, "{last} ns counted in {real} ns");
        assert!(
            timer.now() <= 2 * Instant::now().duration_since(start).as_nanos() as u64 + 1_000_000
        );
    }

    #[test]
    fn a_timer_counts_from_its_creation_on_the_injected_clock() {
        let clock = MockClock::new();
        clock.advance(Duration::from_secs(5));
        let timer = Timer::new(Some(Arc::new(clock.clone())));
        assert_eq!(timer.now(), 0);
        clock.advance(Duration::from_millis(3));
        assert_eq!(timer.now(), 3_000_000);
    }
}
