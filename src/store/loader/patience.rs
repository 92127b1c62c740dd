//! A waiter's patience: how long a caller blocked on another caller's load
//! of the key waits before it takes what its caller offers instead
//! (`NearFar`'s fail-safe: the key's last value, once `loader_timeout` has
//! passed). The loader itself runs on; only the waiter stops waiting.
//!
//! The wait's deadline is on the cache's clock, as every timed decision:
//! with the system's clock the waiter sleeps on the load's condition
//! variable until the deadline; with an injected clock (which moves only
//! when told) it wakes every [`SLICE`] of real time to read the clock
//! again, so a test that advances a `MockClock` past the deadline releases
//! it without anything sleeping for the timeout.

use std::time::Duration;

use super::{InFlight, Outcome};
use crate::store::ttl::TimeSource;

/// How often a waiter with a deadline on an injected clock reads the clock.
const SLICE: Duration = Duration::from_millis(1);

/// How long a waiter waits for another caller's load of its key, and what
/// it returns once that time has passed. The store's API for a cache
/// layered over it (see `LAYERED` in `store/mod.rs`).
pub(crate) struct Patience<'a, V> {
    /// How long to wait, on the cache's clock, from the start of the wait.
    pub(crate) wait: Duration,
    /// Called once the wait is over with the load still running: a value
    /// to return instead, or `None` to wait on for the load's outcome.
    pub(crate) instead: &'a dyn Fn() -> Option<V>,
}

impl<V> InFlight<V> {
    /// Blocks until the load ends or `time` reaches `deadline` (in the
    /// cache's nanoseconds, see [`TimeSource::now`]); `None` at the
    /// deadline.
    pub(crate) fn wait_until(&self, time: &TimeSource, deadline: u64) -> Option<Outcome<V>>
    where
        V: Clone,
    {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(outcome) = state.state.ended() {
                return Some(outcome);
            }
            let now = time.now();
            if now >= deadline {
                return None;
            }
            let left = Duration::from_nanos(deadline - now);
            // On an injected clock real time says nothing about the
            // deadline: read the clock again after a slice.
            let slice = if time.is_injected() {
                left.min(SLICE)
            } else {
                left
            };
            // A spurious wake-up or a timeout only loops: the outcome and
            // the clock are read again under the lock.
            state = match self.done.wait_timeout(state, slice) {
                Ok((state, _)) => state,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }
}

#[cfg(all(test, not(shuttle)))]
mod tests {
    use std::sync::mpsc;
    use std::time::Duration;

    use super::Patience;
    use crate::MockClock;
    use crate::store::Cache;

    /// `cache`, whose load of key 1 is led by a thread that holds it until
    /// `release` is sent; returns once the load is running.
    fn leader_held(cache: &Cache<u32, u32>) -> (mpsc::Sender<()>, std::thread::JoinHandle<u32>) {
        let (release, hold) = mpsc::channel::<()>();
        let (running, started) = mpsc::channel();
        let c = cache.clone();
        let leader = std::thread::spawn(move || {
            let load = |_| {
                running.send(()).unwrap();
                hold.recv_timeout(Duration::from_secs(10)).unwrap();
                Ok::<_, ()>((10, None))
            };
            c.load_after_miss(1, load, None).unwrap()
        });
        started.recv_timeout(Duration::from_secs(10)).unwrap();
        (release, leader)
    }

    /// A cache on `clock`.
    fn on(clock: &MockClock) -> Cache<u32, u32> {
        Cache::builder()
            .max_entries(10)
            .clock(clock.clone())
            .build()
    }

    /// Returns once a caller waits for `cache`'s load (it counted its wait
    /// just before it reads the clock for its deadline: a little real time
    /// later, it waits on the clock as it is).
    fn waiting(cache: &Cache<u32, u32>) {
        for _ in 0..1_000 {
            if cache.stats().load_waits == 1 {
                std::thread::sleep(Duration::from_millis(20));
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        panic!("no caller waited for the load within 5 s");
    }

    #[test]
    fn a_waiter_takes_what_it_is_offered_once_its_patience_runs_out_on_the_cache_clock() {
        let clock = MockClock::new();
        let cache = on(&clock);
        let (release, leader) = leader_held(&cache);
        let (tx, rx) = mpsc::channel();
        let c = cache.clone();
        let waiter = std::thread::spawn(move || {
            let instead = || Some(99);
            let patience = Patience {
                wait: Duration::from_secs(2),
                instead: &instead,
            };
            let got = c.load_after_miss(1, |_| Ok::<_, ()>((0, None)), Some(patience));
            tx.send(got).unwrap();
        });
        waiting(&cache);
        // Real time passes, the cache's clock does not: it waits on.
        assert!(rx.recv_timeout(Duration::from_millis(50)).is_err());
        clock.advance(Duration::from_millis(1_999));
        assert!(rx.recv_timeout(Duration::from_millis(50)).is_err());
        clock.advance(Duration::from_millis(1));
        assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), Ok(99));
        waiter.join().unwrap();
        // The leader ran on; its value is the one stored.
        release.send(()).unwrap();
        assert_eq!(leader.join().unwrap(), 10);
        assert_eq!(cache.get(&1), Some(10));
        assert_eq!(cache.stats().loads, 1);
    }

    #[test]
    fn a_waiter_offered_nothing_waits_for_the_load() {
        let clock = MockClock::new();
        let cache = on(&clock);
        let (release, leader) = leader_held(&cache);
        let (tx, rx) = mpsc::channel();
        let c = cache.clone();
        let waiter = std::thread::spawn(move || {
            let asked = std::cell::Cell::new(0);
            let instead = || {
                asked.set(asked.get() + 1);
                None
            };
            let patience = Patience {
                wait: Duration::from_secs(1),
                instead: &instead,
            };
            let got = c.load_after_miss(1, |_| Ok::<_, ()>((0, None)), Some(patience));
            tx.send((got, asked.get())).unwrap();
        });
        waiting(&cache);
        clock.advance(Duration::from_secs(5));
        // Asked once, given nothing: still waiting.
        assert!(rx.recv_timeout(Duration::from_millis(50)).is_err());
        release.send(()).unwrap();
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(10)).unwrap(),
            (Ok(10), 1)
        );
        waiter.join().unwrap();
        assert_eq!(leader.join().unwrap(), 10);
    }

    #[test]
    fn on_the_system_clock_the_wait_ends_at_its_deadline() {
        let cache: Cache<u32, u32> = Cache::new(10);
        let (release, leader) = leader_held(&cache);
        let start = std::time::Instant::now();
        let instead = || Some(7);
        let patience = Patience {
            wait: Duration::from_millis(20),
            instead: &instead,
        };
        let got = cache.load_after_miss(1, |_| Ok::<_, ()>((0, None)), Some(patience));
        assert_eq!(got, Ok(7));
        assert!(start.elapsed() >= Duration::from_millis(20));
        release.send(()).unwrap();
        assert_eq!(leader.join().unwrap(), 10);
    }
}
