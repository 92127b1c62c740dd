//! The blocking driver: a request's run on its server, after the
//! invalidations the server owes. What to send where, and what an outcome
//! means, is decided by the [`Core`](crate::memcached::core::Core); this
//! file only does the I/O and the waiting.

use std::time::Instant;

use super::{Client, IDEMPOTENT};
use crate::codec::Codec;
use crate::memcached::command::Command;
use crate::memcached::conn::Conn;
use crate::memcached::core::{KeyBuf, SETTLE_CHUNK, Settled, Unsettled};
use crate::memcached::error::Result;
use crate::memcached::exchange::Single;
use crate::memcached::exchange::batch::DeleteKeys;
use crate::memcached::exchange::server::FlushAll;
use crate::memcached::pending::Busy;

impl<C: Codec> Client<C> {
    /// Runs `op` on a connection to server `index`, within the call's
    /// `deadline`, and records the outcome in the server's health. The
    /// invalidations the server owes are sent first; when they cannot be,
    /// `op` is not run.
    pub(super) fn on_server<T>(
        &self,
        index: usize,
        idempotent: bool,
        deadline: Instant,
        op: impl FnMut(&mut Conn) -> Result<T>,
    ) -> Result<T> {
        let pool = &self.inner.pools[index];
        let (result, stale) = match self.inner.after_settle(index, self.settle(index, deadline)) {
            Settled::Go => pool.run(idempotent, deadline, op),
            Settled::Fail(e, stale) => (Err(e), stale),
            Settled::Refused(e, dead) => {
                if dead {
                    pool.clear_idle();
                }
                return Err(e);
            }
        };
        if self.inner.record(index, &result, stale) {
            pool.clear_idle();
        }
        result
    }

    /// Validates and routes `key`, then sends `cmd` (tagged with the opaque
    /// token its reply must echo) and reads its reply: the blocking driver
    /// of a [`Command`]. See [`Core::begin`](crate::memcached::core::Core::begin)
    /// for what a write leaves owed.
    pub(super) fn single<Cmd: Command>(&self, key: &str, cmd: &Cmd) -> Result<Cmd::Output> {
        let deadline = self.inner.deadline();
        let mut buf = KeyBuf::new();
        let valid = self.inner.key(key, &mut buf)?;
        let routed = self.inner.begin(valid, cmd)?;
        let result = self.on_server(
            routed.server,
            routed.access.idempotent(),
            deadline,
            |conn| conn.exchange(Single::new(cmd, valid)),
        );
        self.inner.end(&routed, &result);
        result
    }

    /// Records that the write of `key` was skipped by the caller: see
    /// [`Core::owe_invalidation`](crate::memcached::core::Core::owe_invalidation).
    pub(crate) fn owe_invalidation(&self, key: &str) {
        self.inner.owe_invalidation(key);
    }

    /// Whether a request would be sent now: see
    /// [`Core::can_send`](crate::memcached::core::Core::can_send).
    pub(crate) fn can_send(&self) -> bool {
        self.inner.can_send()
    }

    /// Sends server `index` the invalidations it owes, if any, before any
    /// other request of this client reaches it: a `flush_all` if its record
    /// overflowed, then the owed keys' deletions, in pipelined chunks. One
    /// caller settles at a time; requests to the server wait for it, up to
    /// their `deadline`, so none can read an owed key's older copy first.
    /// What was deleted is forgotten chunk by chunk (a settle cut short
    /// keeps its progress); keys whose writes went to a stand-in are then
    /// owed by the stand-in, whose copy is the older one now.
    fn settle(&self, index: usize, deadline: Instant) -> Result<(), Unsettled> {
        let pending = &self.inner.servers[index].pending;
        if !pending.is_dirty() {
            return Ok(());
        }
        let work = match pending.begin(deadline) {
            Ok(Some(work)) => work,
            // Another caller settled it meanwhile.
            Ok(None) => return Ok(()),
            Err(Busy::Timeout) => return Err(Unsettled::Busy),
        };
        let mut moved = Vec::new();
        let mut flushed = work.flush.is_none();
        let (result, stale) = self.inner.pools[index].run(IDEMPOTENT, deadline, |conn| {
            if let (Some(seq), false) = (work.flush, flushed) {
                conn.exchange(FlushAll::default())?;
                flushed = true;
                self.inner.flushed(index, seq, &mut moved);
            }
            if work.flush.is_none() {
                // (After a flush, every key taken was covered by it.)
                for chunk in work.keys.chunks(SETTLE_CHUNK) {
                    conn.exchange(DeleteKeys::new(chunk))?;
                    moved.extend(pending.deleted(chunk));
                }
            }
            Ok(())
        });
        self.inner.end_settle(index, moved);
        result.map_err(|e| Unsettled::Failed(e, stale))
    }
}
