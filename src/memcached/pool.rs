//! The blocking connections to one server.
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
//! The server's health is not kept here but in the client's
//! [`Core`](super::core::Core), shared with the async driver.

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::address::ServerSpec;
use super::conn::{Conn, ConnConfig, later, time_left};
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
