//! Time for every timed decision of the crate: the [`Clock`] users inject
//! (a [`MockClock`] in tests, so nothing needs to sleep), and [`Timer`], the
//! nanoseconds-since-creation view the near tier, the client's server
//! health and `NearFar` take their `now` from.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::shim::{AtomicU64, Ordering};

/// A source of monotonic time for TTLs.
///
/// The default is the system's monotonic clock ([`Instant::now`]); a lookup
/// of an entry with a TTL reads it coarsely (on Linux, the kernel's coarse
/// clock: about one tick, typically 4 ms, behind), so it may still return
/// an entry for that long after its expiry. Tests can pass a [`MockClock`]
/// to [`CacheBuilder::clock`](crate::CacheBuilder::clock) and move time by
/// hand instead of sleeping (every read is then exact).
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

/// Nanoseconds since creation, on an injected [`Clock`] when there is one,
/// else on the system's monotonic clock: read precisely ([`Timer::now`]),
/// or cheaply and up to one kernel tick behind ([`Timer::recent`]).
#[derive(Clone)]
pub(crate) struct Timer {
    clock: Option<Arc<dyn Clock>>,
    origin: Instant,
    /// Without an injected clock, on Linux: the kernel's monotonic time at
    /// creation, which both reads count from. `None` elsewhere, or where
    /// the kernel has no coarse clock (then both reads are `Instant`'s).
    kernel_origin: Option<u64>,
}

impl Timer {
    pub(crate) fn new(clock: Option<Arc<dyn Clock>>) -> Timer {
        let origin = match &clock {
            Some(c) => c.now(),
            None => Instant::now(),
        };
        let kernel_origin = if clock.is_none() {
            kernel::origin()
        } else {
            None
        };
        Timer {
            clock,
            origin,
            kernel_origin,
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
        if let Some(c) = &self.clock {
            return nanos(c.now().saturating_duration_since(self.origin));
        }
        if let Some(origin) = self.kernel_origin {
            if let Some(now) = kernel::precise() {
                return now.saturating_sub(origin);
            }
        }
        nanos(Instant::now().saturating_duration_since(self.origin))
    }

    /// [`Timer::now`], read cheaply: on Linux without an injected clock,
    /// the kernel's coarse monotonic clock, which is about one tick (1 to
    /// 10 ms, 4 on most kernels; a late tick adds to it) behind, never
    /// ahead. A lookup of an entry with a TTL reads it: the precise clock
    /// cost ~32 ns a read on the CI machine, and its time-stamp-counter
    /// read held back the memory loads of the lookups around it (`hit_cost time ttl`: ~123 ns a hit against
    /// ~39 with this clock and ~26 without a TTL; 236.4 instructions a hit
    /// against 177.4, callgrind). Elsewhere, or with an injected clock, it
    /// is `now`.
    #[inline]
    pub(crate) fn recent(&self) -> u64 {
        // (`kernel_origin` is `None` with an injected clock.)
        if let Some(origin) = self.kernel_origin {
            if let Some(now) = kernel::coarse() {
                return now.saturating_sub(origin);
            }
        }
        self.now()
    }
}

/// A duration in whole nanoseconds (saturating: 584 years).
fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// The kernel's monotonic clocks, read directly: the precise one (what
/// `Instant::now` reads) and the coarse one (the time at the last tick:
/// read from the vDSO's data page with no time-stamp-counter read, so it
/// costs a few nanoseconds and does not stall the CPU). Both count from
/// the same zero, so a coarse read is never ahead of a precise one.
#[cfg(any(target_os = "linux", target_os = "android"))]
mod kernel {
    /// The precise clock's time, to count both clocks from, if the kernel
    /// has the coarse one (Linux 2.6.32 on).
    pub(super) fn origin() -> Option<u64> {
        coarse()?;
        precise()
    }

    pub(super) fn precise() -> Option<u64> {
        read(libc::CLOCK_MONOTONIC)
    }

    pub(super) fn coarse() -> Option<u64> {
        read(libc::CLOCK_MONOTONIC_COARSE)
    }

    /// Nanoseconds on clock `id`, or `None` if the kernel refused the call.
    #[inline]
    fn read(id: libc::clockid_t) -> Option<u64> {
        // SAFETY: a `timespec` is two integers (and, on some targets,
        // padding): all zeroes is a valid one.
        let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
        // SAFETY: `ts` is a valid, writable `timespec` for the call, which
        // writes only it; `id` is a clock id the kernel checks (an unknown
        // one is refused with `EINVAL`, not undefined).
        let refused = unsafe { libc::clock_gettime(id, &mut ts) } != 0;
        if refused {
            return None;
        }
        // Monotonic times are never negative.
        let (secs, nanos) = (ts.tv_sec as u64, ts.tv_nsec as u64);
        Some(secs.saturating_mul(1_000_000_000).saturating_add(nanos))
    }
}

/// Elsewhere: no coarse clock (both reads are `Instant`'s).
#[cfg(not(any(target_os = "linux", target_os = "android")))]
mod kernel {
    pub(super) fn origin() -> Option<u64> {
        None
    }

    pub(super) fn precise() -> Option<u64> {
        None
    }

    pub(super) fn coarse() -> Option<u64> {
        None
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
        let before = Instant::now();
        let timer = Timer::new(None);
        let start = Instant::now();
        let mut last = timer.now();
        // Bounded: a few milliseconds of reads, each no earlier than the last.
        while start.elapsed() < Duration::from_millis(10) {
            let now = timer.now();
            assert!(now >= last, "the timer went back: {last} -> {now}");
            last = now;
        }
        // The timer and `Instant` read the same clock, and the timer was
        // made between `before` and `start`: each read is bounded by the
        // real time read just before and just after it, whatever the
        // scheduler does between the reads.
        let since_start = start.elapsed().as_nanos() as u64;
        let counted = timer.now();
        let since_before = before.elapsed().as_nanos() as u64;
        assert!(
            counted >= since_start,
            "{counted} ns counted in {since_start}"
        );
        assert!(
            counted <= since_before,
            "{counted} ns counted in {since_before}"
        );
    }

    #[test]
    fn the_coarse_read_is_never_ahead_of_the_precise_one_and_not_far_behind() {
        let timer = Timer::new(None);
        let start = Instant::now();
        // Bounded: a few milliseconds of reads, over more than one tick.
        while start.elapsed() < Duration::from_millis(25) {
            let before = timer.now();
            let recent = timer.recent();
            let after = timer.now();
            assert!(recent <= after, "coarse {recent} ahead of precise {after}");
            // Read after `before`, it is about a tick behind it at most (10
            // ms at HZ 100, the slowest tick; a late tick adds a little), so
            // 100 ms catches a read on another clock or from another zero,
            // whatever the scheduler did between the reads. (Not tested:
            // that it never steps back. Kernels before 6.15 could step it
            // back by nanoseconds when NTP changed the clock's rate.)
            assert!(
                recent + 100_000_000 >= before,
                "coarse {recent} far behind {before}"
            );
        }
    }

    #[test]
    fn with_an_injected_clock_the_coarse_read_is_exact() {
        let clock = MockClock::new();
        let timer = Timer::new(Some(Arc::new(clock.clone())));
        clock.advance(Duration::from_nanos(1_234_567));
        assert_eq!(timer.recent(), 1_234_567);
        assert_eq!(timer.recent(), timer.now());
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
