//! The multiplexed connections to one server, and the run of one exchange
//! on them: the async counterpart of the blocking `Pool::run` and
//! `Conn::exchange`.
//!
//! A pool holds `pool_size` slots, each with at most one open
//! [`MuxConn`]; requests take the slots in turn, so their requests spread
//! over the connections and pipeline on each. A slot whose connection
//! closed is reopened by the next request that takes it (one connect per
//! slot at a time; requests arriving meanwhile wait for it).

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use tokio::sync::oneshot;

use super::mux::{Answer, MuxConn};
use crate::memcached::address::ServerSpec;
use crate::memcached::conn::{ConnConfig, time_left};
use crate::memcached::error::{Error, Result};
use crate::memcached::exchange::Exchange;
use crate::memcached::protocol::{ProtocolError, Reply, parse_reply};

/// The multiplexed connections to one server.
pub(crate) struct MuxPool {
    spec: ServerSpec,
    config: ConnConfig,
    slots: Box<[Slot]>,
    /// The slot the next request takes.
    next: AtomicUsize,
}

#[derive(Default)]
struct Slot {
    conn: Mutex<Option<Arc<MuxConn>>>,
    /// Held while the slot's connection is being opened.
    connecting: tokio::sync::Mutex<()>,
}

impl Slot {
    /// The slot's connection, if it is open.
    fn open(&self) -> Option<Arc<MuxConn>> {
        let conn = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        conn.as_ref().filter(|c| !c.is_closed()).cloned()
    }
}

impl MuxPool {
    pub(crate) fn new(spec: ServerSpec, config: ConnConfig, size: usize) -> MuxPool {
        MuxPool {
            spec,
            config,
            slots: (0..size.max(1)).map(|_| Slot::default()).collect(),
            next: AtomicUsize::new(0),
        }
    }

    /// A connection to send on, opened if its slot has none, by the call's
    /// `deadline`; `true` with a connection that was open already.
    async fn conn(&self, deadline: Instant) -> Result<(Arc<MuxConn>, bool)> {
        // Relaxed: the counter only spreads requests over the slots.
        let index = self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len();
        let slot = &self.slots[index];
        if let Some(conn) = slot.open() {
            return Ok((conn, true));
        }
        let _connecting = within(deadline, slot.connecting.lock(), || Error::PoolTimeout).await?;
        if let Some(conn) = slot.open() {
            // Opened by the request this one waited for: fresh.
            return Ok((conn, false));
        }
        // Bounded by the deadline there, each step with its own error.
        let conn = Arc::new(MuxConn::connect(&self.spec, &self.config, deadline).await?);
        *slot.conn.lock().unwrap_or_else(PoisonError::into_inner) = Some(Arc::clone(&conn));
        Ok((conn, false))
    }

    /// Drops the pool's handles on its connections (the server was marked
    /// dead: they most likely died with it). Requests in flight on them
    /// finish; the next request opens a new one.
    pub(crate) fn clear_idle(&self) {
        for slot in self.slots.iter() {
            slot.conn
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
        }
    }

    /// Runs the exchange `make` builds on a connection, within `deadline`.
    ///
    /// As the blocking pool does: an I/O error on a connection that was
    /// already open (it died while idle: the server restarted, say) is
    /// flagged `true` (it says nothing of the server's health) and, when
    /// `retry_stale` allows it and the deadline has not passed, the
    /// exchange is sent once more on a fresh connection.
    pub(crate) async fn run<E: Exchange>(
        &self,
        retry_stale: bool,
        deadline: Instant,
        make: impl Fn() -> E,
    ) -> (Result<E::Output>, bool) {
        // (A deadline already past needs no clock read here: the writer
        // fails the request unsent.)
        let (conn, reused) = match self.conn(deadline).await {
            Ok(checked_out) => checked_out,
            Err(e) => return (Err(e), false),
        };
        match self.exchange(&conn, make(), deadline).await {
            Err(Error::Io(e)) if reused => {
                if !retry_stale || time_left(deadline).is_none() {
                    return (Err(Error::Io(e)), true);
                }
                let retried = match self.conn(deadline).await {
                    Ok((conn, _)) => self.exchange(&conn, make(), deadline).await,
                    Err(e) => Err(e),
                };
                (retried, false)
            }
            other => (other, false),
        }
    }

    /// A connection for several exchanges in turn (a settle's flush and
    /// deletes), by `deadline`.
    pub(crate) async fn settle_conn(&self, deadline: Instant) -> Result<Arc<MuxConn>> {
        if time_left(deadline).is_none() {
            return Err(Error::Timeout);
        }
        Ok(self.conn(deadline).await?.0)
    }

    /// Sends `exchange` on `conn` and feeds it its reply, by `deadline`.
    ///
    /// Cancellation-safe: once queued, the request is written even if this
    /// future is dropped, and its reply is read and discarded by the
    /// connection, which stays in step.
    pub(crate) async fn exchange<E: Exchange>(
        &self,
        conn: &MuxConn,
        mut exchange: E,
        deadline: Instant,
    ) -> Result<E::Output> {
        let (reply, replied) = oneshot::channel();
        conn.send(
            |request| exchange.encode(request),
            exchange.framing(),
            deadline,
            reply,
        )?;
        // No timer per request: the connection tells this request when its
        // deadline passes (see `mux.rs`).
        let answer = match replied.await {
            Ok(answer) => answer?,
            // The connection's tasks ended without a word (the runtime is
            // shutting down).
            Err(_) => {
                return Err(Error::Io(std::io::Error::new(
                    std::io::ErrorKind::BrokenPipe,
                    "connection closed",
                )));
            }
        };
        let result =
            feed(&mut exchange, &answer, self.config.max_value).and_then(|()| exchange.finish());
        if result.as_ref().is_err_and(Error::drops_connection) {
            // The reply made no sense for its request: what follows on the
            // connection cannot be trusted either.
            conn.close();
        }
        result
    }
}

/// Feeds `exchange` the frames of its reply (whole frames, as the
/// connection's reader framed them): the first as the reader parsed it,
/// when it kept it, the others parsed here.
fn feed<E: Exchange>(exchange: &mut E, answer: &Answer, max_value: usize) -> Result<()> {
    let bytes = &answer.bytes[..];
    let partial = || {
        Error::Protocol(ProtocolError::Malformed {
            reply: "partial frame",
        })
    };
    let mut pos = 0;
    if let Some(first) = &answer.first {
        let meta = first.resolve(bytes).ok_or_else(partial)?;
        exchange.feed(Reply::Meta(meta))?;
        pos = first.len();
    }
    while pos < bytes.len() {
        match parse_reply(&bytes[pos..], max_value)? {
            Some((reply, used)) => {
                pos += used;
                exchange.feed(reply)?;
            }
            None => return Err(partial()),
        }
    }
    Ok(())
}

/// `future`'s output, or `error()` once `deadline` has come.
pub(crate) async fn within<T>(
    deadline: Instant,
    future: impl Future<Output = T>,
    error: impl FnOnce() -> Error,
) -> Result<T> {
    tokio::time::timeout_at(deadline.into(), future)
        .await
        .map_err(|_| error())
}
