//! The connections to one server, and that server's health.
//!
//! A [`Pool`] keeps up to `max` connections: idle ones wait in a stack (the
//! most recently used is reused first, as it is the likeliest to be alive),
//! and each is checked without blocking before it is reused, so one the
//! server closed meanwhile is replaced before any request is sent on it; a
//! caller that finds none idle opens a new one while under the limit, or
//! waits for one to come back. A connection whose request failed with an
//! error that [drops the connection](Error::drops_connection) is closed, never
//! returned.
//!
//! [`Health`] counts consecutive failures (connect errors, timeouts, I/O
//! errors). At `retry_attempts` of them the server is marked dead for
//! `dead_timeout`; the client then routes its keys elsewhere. Once that time
//! has passed, exactly one request probes it (it claims the probe, which
//! keeps the server out of routing for the others for another
//! `dead_timeout`): a success clears the count and the dead period, a
//! failure marks it dead again at once.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::conn::{Conn, ConnConfig, ServerSpec, later, time_left};
use super::error::{Error, Result};

/// The connections to one server.
#[derive(Debug)]
pub(crate) struct Pool {
    pub(crate) spec: ServerSpec,
    config: ConnConfig,
    max: usize,
    wait_timeout: Duration,
    state: Mutex<PoolState>,
    returned: Condvar,
    pub(crate) health: Health,
}

#[derive(Debug, Default)]
struct PoolState {
    idle: Vec<Conn>,
    /// Connections open or being opened, idle ones included.
    open: usize,
    /// Callers waiting for a connection (notifying costs a syscall, so it
    /// is done only when someone waits).
    waiting: usize,
}

impl Pool {
    pub(crate) fn new(
        spec: ServerSpec,
        config: ConnConfig,
        max: usize,
        wait_timeout: Duration,
    ) -> Pool {
        Pool {
            spec,
            config,
            max: max.max(1),
            wait_timeout,
            state: Mutex::new(PoolState::default()),
            returned: Condvar::new(),
            health: Health::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, PoolState> {
        // The state is a list and a counter, consistent at every unlock.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes an idle connection, or opens one, or waits for one.
    ///
    /// An idle connection is checked first ([`Conn::is_alive`]): one the
    /// server closed while it sat in the pool (after a restart, say) is
    /// dropped and the next one tried, or a new one opened, before anything
    /// is sent, so every kind of request is safe from stale connections.
    ///
    /// The wait for a free connection ends at the pool timeout or the
    /// call's `deadline`, whichever comes first ([`Error::PoolTimeout`]
    /// either way: no connection was free in time); connecting is bounded
    /// by `deadline` too. The connection comes back bounded by `deadline`.
    ///
    /// The flag says whether the connection was reused rather than just
    /// opened.
    fn checkout(&self, deadline: Instant) -> Result<(Conn, bool)> {
        let wait_until = later(Instant::now(), self.wait_timeout).min(deadline);
        let mut state = self.lock();
        loop {
            if let Some(mut conn) = state.idle.pop() {
                drop(state);
                if conn.is_alive() {
                    conn.bound(deadline);
                    return Ok((conn, true));
                }
                drop(conn);
                state = self.lock();
                // Its slot is free: the next round may reuse or open.
                state.open = state.open.saturating_sub(1);
                continue;
            }
            if state.open < self.max {
                state.open += 1;
                drop(state);
                return match Conn::connect(&self.spec, &self.config, deadline) {
                    Ok(conn) => Ok((conn, false)),
                    Err(e) => {
                        self.release_slot();
                        Err(e)
                    }
                };
            }
            let remaining = time_left(wait_until).ok_or(Error::PoolTimeout)?;
            state.waiting += 1;
            state = self
                .returned
                .wait_timeout(state, remaining)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
            state.waiting -= 1;
        }
    }

    fn checkin(&self, mut conn: Conn) {
        conn.trim();
        let mut state = self.lock();
        state.idle.push(conn);
        let waiting = state.waiting > 0;
        drop(state);
        if waiting {
            self.returned.notify_one();
        }
    }

    /// Forgets a connection that was closed.
    fn release_slot(&self) {
        let mut state = self.lock();
        state.open = state.open.saturating_sub(1);
        let waiting = state.waiting > 0;
        drop(state);
        if waiting {
            self.returned.notify_one();
        }
    }

    /// Closes every idle connection (after the server failed: they are
    /// likely dead too).
    pub(crate) fn clear_idle(&self) {
        let idle = {
            let mut state = self.lock();
            let idle = std::mem::take(&mut state.idle);
            state.open = state.open.saturating_sub(idle.len());
            idle
        };
        drop(idle);
        // Waiters may now open connections of their own.
        self.returned.notify_all();
    }

    /// Runs `op` on a pooled connection and returns the connection to the
    /// pool, unless the error says the connection is out of step.
    ///
    /// When `op` fails with an I/O error on a connection that had been idle
    /// in the pool (it passed the liveness check, but the server closed it
    /// under the request), the other idle connections are closed too: they
    /// most likely died with it. Then, when `retry_stale` is set, `op` runs
    /// once more on a fresh connection; only requests that are safe to send
    /// twice set it.
    ///
    /// Every wait (for a free connection, to connect, on the socket) ends by
    /// the call's `deadline`; a call whose deadline has already passed (an
    /// earlier round trip of the same call took it all) fails with
    /// [`Error::Timeout`] before taking a connection, and the retry is not
    /// made once the deadline has passed.
    ///
    /// The flag returned is set when the result is such an I/O error on a
    /// reused connection that was not retried: it says nothing of the
    /// server's health (the next request opens a fresh connection, whose
    /// outcome does).
    pub(crate) fn run<T>(
        &self,
        retry_stale: bool,
        deadline: Instant,
        mut op: impl FnMut(&mut Conn) -> Result<T>,
    ) -> (Result<T>, bool) {
        if time_left(deadline).is_none() {
            return (Err(Error::Timeout), false);
        }
        let (conn, reused) = match self.checkout(deadline) {
            Ok(checked_out) => checked_out,
            Err(e) => return (Err(e), false),
        };
        match self.run_on(conn, &mut op) {
            Err(Error::Io(e)) if reused => {
                self.clear_idle();
                if !retry_stale || time_left(deadline).is_none() {
                    return (Err(Error::Io(e)), true);
                }
                let retried = self
                    .checkout(deadline)
                    .and_then(|(conn, _)| self.run_on(conn, &mut op));
                (retried, false)
            }
            other => (other, false),
        }
    }

    /// Runs `op` on `conn`, then returns the connection to the pool or, after
    /// an error that leaves it out of step, closes it.
    fn run_on<T>(&self, conn: Conn, op: &mut impl FnMut(&mut Conn) -> Result<T>) -> Result<T> {
        let mut guard = Checkout {
            pool: self,
            conn: Some(conn),
        };
        let result = match guard.conn.as_mut() {
            Some(conn) => op(conn),
            None => Err(Error::PoolTimeout),
        };
        if let Err(e) = &result
            && e.drops_connection()
        {
            // Closed here; the guard releases its slot.
            drop(guard.conn.take());
        }
        result
    }
}

/// Returns a connection to its pool when dropped, or, if it was taken out
/// (closed) or a panic is unwinding, releases its slot instead.
struct Checkout<'a> {
    pool: &'a Pool,
    conn: Option<Conn>,
}

impl Drop for Checkout<'_> {
    fn drop(&mut self) {
        match self.conn.take() {
            Some(conn) if !std::thread::panicking() => self.pool.checkin(conn),
            _ => self.pool.release_slot(),
        }
    }
}

/// A server's failure count and dead period.
#[derive(Debug, Default)]
pub(crate) struct Health {
    failures: AtomicU32,
    /// Nanoseconds after the client's epoch until which the server is
    /// dead; 0 when it is not.
    dead_until: AtomicU64,
}

/// What [`Health::claim`] granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Claim {
    /// The server is not marked dead: route to it.
    Live,
    /// Its dead period is over and this caller is the one to probe it.
    Probe,
    /// It is dead, or another caller holds the probe: route elsewhere.
    Taken,
}

impl Health {
    /// Whether the server may be routed to at `now` (nanoseconds since the
    /// client's epoch): not marked dead, or its dead period is over (the
    /// caller must still [`claim`](Health::claim) the probe).
    pub(crate) fn is_routable(&self, now: u64) -> bool {
        let until = self.dead_until.load(Ordering::Relaxed);
        until == 0 || now >= until
    }

    /// Whether the server is inside a dead period at `now` (one being
    /// probed counts as dead until the probe succeeds).
    pub(crate) fn is_dead(&self, now: u64) -> bool {
        !self.is_routable(now)
    }

    /// Takes the server for one request at `now`. When its dead period is
    /// over, only one caller wins [`Claim::Probe`]: the dead period is moved
    /// on by `probe_for`, so the others keep routing around the server until
    /// the probe's outcome ([`Health::succeeded`] or [`Health::failed`])
    /// settles it, or, if none is ever recorded, until another probe is due.
    pub(crate) fn claim(&self, now: u64, probe_for: Duration) -> Claim {
        let until = self.dead_until.load(Ordering::Relaxed);
        if until == 0 {
            return Claim::Live;
        }
        if now < until {
            return Claim::Taken;
        }
        let next = now.saturating_add(nanos(probe_for)).max(1);
        match self
            .dead_until
            .compare_exchange(until, next, Ordering::Relaxed, Ordering::Relaxed)
        {
            Ok(_) => Claim::Probe,
            // Another caller probed, or the outcome came in meanwhile.
            Err(0) => Claim::Live,
            Err(_) => Claim::Taken,
        }
    }

    /// Records an answer from the server.
    pub(crate) fn succeeded(&self) {
        if self.failures.load(Ordering::Relaxed) != 0 {
            self.failures.store(0, Ordering::Relaxed);
        }
        if self.dead_until.load(Ordering::Relaxed) != 0 {
            self.dead_until.store(0, Ordering::Relaxed);
        }
    }

    /// Records a failure; returns `true` when it marks the server dead.
    pub(crate) fn failed(&self, now: u64, attempts: u32, dead_for: Duration) -> bool {
        let failures = self
            .failures
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1);
        if failures >= attempts {
            let until = now.saturating_add(nanos(dead_for)).max(1);
            self.dead_until.store(until, Ordering::Relaxed);
            true
        } else {
            false
        }
    }
}

/// A duration in nanoseconds, saturating.
fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_caller_probes_a_dead_server() {
        let health = Health::default();
        let dead_for = Duration::from_secs(10);
        let second = 1_000_000_000;
        assert_eq!(health.claim(0, dead_for), Claim::Live);
        assert!(!health.failed(0, 2, dead_for));
        assert_eq!(health.claim(0, dead_for), Claim::Live);
        assert!(health.failed(second, 2, dead_for));
        assert!(health.is_dead(second));
        assert_eq!(health.claim(2 * second, dead_for), Claim::Taken);

        // The dead period is over: one probe, the others are kept away.
        let over = 11 * second + 1;
        assert!(health.is_routable(over) && !health.is_dead(over));
        assert_eq!(health.claim(over, dead_for), Claim::Probe);
        assert!(health.is_dead(over) && !health.is_routable(over));
        assert_eq!(health.claim(over, dead_for), Claim::Taken);
        assert_eq!(health.claim(over + second, dead_for), Claim::Taken);

        // The probe failed: dead again at once, for a full period.
        assert!(health.failed(over + second, 2, dead_for));
        assert_eq!(health.claim(over + 5 * second, dead_for), Claim::Taken);
        let over = over + 11 * second + 1;
        assert_eq!(health.claim(over, dead_for), Claim::Probe);

        // The probe succeeded: everyone routes to it again.
        health.succeeded();
        assert_eq!(health.claim(over, dead_for), Claim::Live);
        assert_eq!(health.claim(over, dead_for), Claim::Live);
        assert!(!health.is_dead(over));

        // A probe whose outcome is never recorded lets another try later.
        assert!(!health.failed(over, 2, dead_for));
        assert!(health.failed(over, 2, dead_for));
        let over = over + 10 * second;
        assert_eq!(health.claim(over, dead_for), Claim::Probe);
        assert_eq!(health.claim(over + 10 * second, dead_for), Claim::Probe);
    }

    #[test]
    fn concurrent_callers_get_one_probe() {
        let health = Health::default();
        let dead_for = Duration::from_secs(1);
        assert!(health.failed(0, 1, dead_for));
        let now = 2_000_000_000;
        let probes = std::sync::atomic::AtomicU32::new(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..100 {
                        if health.claim(now, dead_for) == Claim::Probe {
                            probes.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        assert_eq!(probes.load(Ordering::Relaxed), 1);
    }
}
