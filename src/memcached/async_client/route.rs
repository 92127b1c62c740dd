//! The async driver: a request's run on its server, after the
//! invalidations the server owes. The same decisions as the blocking
//! driver's (`client/route.rs`), made by the same [`Core`] calls; only the
//! I/O and the waiting are async.

use std::future::poll_fn;
use std::time::Instant;

use super::AsyncClient;
use super::pool::within;
use crate::codec::Codec;
use crate::memcached::command::Command;
use crate::memcached::core::{Core, KeyBuf, SETTLE_CHUNK, Settled, Unsettled};
use crate::memcached::error::Result;
use crate::memcached::exchange::batch::DeleteKeys;
use crate::memcached::exchange::server::FlushAll;
use crate::memcached::exchange::{Exchange, Single};
use crate::memcached::pending::Moved;

impl<C: Codec> AsyncClient<C> {
    /// Runs the exchange `make` builds on server `index`, within the call's
    /// `deadline`, and records the outcome in the server's health. The
    /// invalidations the server owes are sent first; when they cannot be,
    /// the exchange is not run.
    pub(super) async fn on_server<E: Exchange>(
        &self,
        index: usize,
        idempotent: bool,
        deadline: Instant,
        make: impl Fn() -> E,
    ) -> Result<E::Output> {
        let pool = &self.inner.pools[index];
        let settled = self.settle(index, deadline).await;
        let (result, stale) = match self.inner.after_settle(index, settled) {
            Settled::Go => pool.run(idempotent, deadline, make).await,
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

    /// Validates and routes `key`, then runs `cmd` on its server: the async
    /// driver of a [`Command`], as `Client::single` is the blocking one.
    pub(super) async fn single<Cmd: Command>(&self, key: &str, cmd: &Cmd) -> Result<Cmd::Output> {
        let deadline = self.inner.deadline();
        let mut buf = KeyBuf::new();
        let valid = self.inner.key(key, &mut buf)?;
        let routed = self.inner.begin(valid, cmd)?;
        let run = self.on_server(routed.server, routed.access.idempotent(), deadline, || {
            Single::new(cmd, valid)
        });
        let result = run.await;
        self.inner.end(&routed, &result);
        result
    }

    /// Sends server `index` the invalidations it owes, as the blocking
    /// client's `settle` does (see there): one caller at a time, the others
    /// awaiting it up to their `deadline`. A settle whose future is dropped
    /// midway keeps what it finished and leaves the rest owed.
    async fn settle(&self, index: usize, deadline: Instant) -> Result<(), Unsettled> {
        let pending = &self.inner.servers[index].pending;
        if !pending.is_dirty() {
            return Ok(());
        }
        let work = match within(deadline, poll_fn(|cx| pending.poll_begin(cx)), || {
            crate::memcached::error::Error::PoolTimeout
        })
        .await
        {
            Ok(Some(work)) => work,
            // Another caller settled it meanwhile.
            Ok(None) => return Ok(()),
            Err(_) => return Err(Unsettled::Busy),
        };
        let mut settling = Settling {
            core: &self.inner.core,
            index,
            moved: Vec::new(),
        };
        let pool = &self.inner.pools[index];
        let sent = async {
            let conn = pool.settle_conn(deadline).await?;
            if let Some(seq) = work.flush {
                pool.exchange(&conn, FlushAll::default(), deadline).await?;
                self.inner.flushed(index, seq, &mut settling.moved);
            } else {
                for chunk in work.keys.chunks(SETTLE_CHUNK) {
                    pool.exchange(&conn, DeleteKeys::new(chunk), deadline)
                        .await?;
                    settling.moved.extend(pending.deleted(chunk));
                }
            }
            Ok(())
        };
        let result: Result<()> = sent.await;
        drop(settling);
        result.map_err(|e| Unsettled::Failed(e, false))
    }
}

/// Ends a settle when dropped, done, failed or cancelled: the server's
/// record is released and the keys moved off it are owed by their
/// stand-ins.
struct Settling<'a, C: Codec> {
    core: &'a Core<C>,
    index: usize,
    moved: Moved,
}

impl<C: Codec> Drop for Settling<'_, C> {
    fn drop(&mut self) {
        self.core
            .end_settle(self.index, std::mem::take(&mut self.moved));
    }
}
