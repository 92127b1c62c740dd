//! The connections to one server, and that server's health.
//!
//! A [`Pool`] keeps up to `max` connections: idle ones wait in a stack (the
//! most recently used is reused first, as it is the likeliest to be alive);
//! a caller that finds none idle opens a new one while under the limit, or
//! waits for one to come back. A connection whose request failed with an
//! error that [drops the connection](Error::drops_connection) is closed, never
//! returned.
//!
//! [`Health`] counts consecutive failures (connect errors, timeouts, I/O
//! errors). At `retry_attempts` of them the server is marked dead for
//! `dead_timeout`; the client then routes its keys elsewhere. Once that time
//! has passed the server is live again for routing, and the next request
//! probes it: a success clears the count, a failure marks it dead again at
//! once.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::conn::{Conn, ConnConfig, ServerSpec};
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
    /// The flag says whether the connection was reused (it may have gone
    /// stale while idle) rather than just opened.
    fn checkout(&self) -> Result<(Conn, bool)> {
        let deadline = Instant::now() + self.wait_timeout;
        let mut state = self.lock();
        loop {
            if let Some(conn) = state.idle.pop() {
                return Ok((conn, true));
            }
            if state.open < self.max {
                state.open += 1;
                drop(state);
                return match Conn::connect(&self.spec, &self.config) {
                    Ok(conn) => Ok((conn, false)),
                    Err(e) => {
                        self.release_slot();
                        Err(e)
                    }
                };
            }
            let remaining = deadline
                .checked_duration_since(Instant::now())
                .filter(|d| !d.is_zero())
                .ok_or(Error::PoolTimeout)?;
            state.waiting += 1;
            state = self
                .returned
                .wait_timeout(state, remaining)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
            state.waiting -= 1;
        }
    }

    fn checkin(&self, conn: Conn) {
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
    /// When `retry_stale` is set and `op` fails with an I/O error on a
    /// connection that had been idle in the pool (the server may have closed
    /// it meanwhile, by restarting for instance), the other idle connections
    /// are closed too and `op` runs once more on a new connection. Only
    /// requests that are safe to send twice set it.
    pub(crate) fn run<T>(
        &self,
        retry_stale: bool,
        mut op: impl FnMut(&mut Conn) -> Result<T>,
    ) -> Result<T> {
        let (conn, reused) = self.checkout()?;
        match self.run_on(conn, &mut op) {
            Err(Error::Io(_)) if retry_stale && reused => {
                self.clear_idle();
                let (conn, _) = self.checkout()?;
                self.run_on(conn, &mut op)
            }
            other => other,
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

impl Health {
    /// Whether keys may be routed to the server at `now` (nanoseconds since
    /// the client's epoch).
    pub(crate) fn is_live(&self, now: u64) -> bool {
        let until = self.dead_until.load(Ordering::Relaxed);
        until == 0 || now >= until
    }

    /// Whether the server is inside a dead period at `now`.
    pub(crate) fn is_dead(&self, now: u64) -> bool {
        !self.is_live(now)
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
            let until = now
                .saturating_add(u64::try_from(dead_for.as_nanos()).unwrap_or(u64::MAX))
                .max(1);
            self.dead_until.store(until, Ordering::Relaxed);
            true
        } else {
            false
        }
    }
}
