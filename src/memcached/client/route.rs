//! Which server a key goes to, what runs on it, and the invalidations a
//! server owes before it serves again.

use std::time::Instant;

use super::{Access, Client, IDEMPOTENT, KeyBuf, leaves_doubt, meta_status};
use crate::codec::Codec;
use crate::memcached::conn::Conn;
use crate::memcached::error::{Error, Result};
use crate::memcached::health::Pass;
use crate::memcached::protocol::{
    MetaDeleteFlags, MetaStatus, Reply, ValidKey, encode_flush_all, encode_meta_delete,
};

/// Keys deleted per round trip when a server's owed invalidations are sent.
const SETTLE_CHUNK: usize = 128;

impl<C: Codec> Client<C> {
    /// The index of the live server for `key` (given without the prefix).
    pub(super) fn route(&self, key: &[u8]) -> Result<usize> {
        self.route_at(key, self.now(), &mut Vec::new())
    }

    /// The index of the server for `key` among those `routable` accepts.
    pub(super) fn pick(&self, key: &[u8], routable: impl Fn(usize) -> bool) -> Option<usize> {
        if self.inner.pools.len() == 1 {
            return Some(0).filter(|&i| routable(i));
        }
        self.inner.ring.server_for_live(key, routable)
    }

    /// The index of the server for `key`, with liveness judged at `now`.
    ///
    /// A server whose dead period is over is probed by one caller only: the
    /// first to route a key to it claims the probe, and the others route
    /// around it until the probe's outcome is known. `probing` lists the
    /// servers this caller already holds the probe of (all of a batch's
    /// keys for such a server go with the probe).
    pub(super) fn route_at(&self, key: &[u8], now: u64, probing: &mut Vec<usize>) -> Result<usize> {
        let pools = &self.inner.pools;
        // Servers whose probe another caller took meanwhile.
        let mut taken = Vec::new();
        loop {
            let server = self
                .pick(key, |i| {
                    probing.contains(&i)
                        || (!taken.contains(&i)
                            && pools.get(i).is_some_and(|p| p.health.is_routable(now)))
                })
                .ok_or(Error::AllServersDown)?;
            if probing.contains(&server) {
                return Ok(server);
            }
            match pools[server].health.pass(now) {
                Pass::Closed => return Ok(server),
                Pass::Probe => {
                    probing.push(server);
                    return Ok(server);
                }
                Pass::Skip => taken.push(server),
            }
        }
    }

    /// Runs `op` on a connection to server `index`, within the call's
    /// `deadline`, and records the outcome in the server's health.
    pub(super) fn on_server<T>(
        &self,
        index: usize,
        idempotent: bool,
        deadline: Instant,
        op: impl FnMut(&mut Conn) -> Result<T>,
    ) -> Result<T> {
        let pool = &self.inner.pools[index];
        let (result, stale) = match self.settle(index, deadline) {
            (Ok(()), _) => pool.run(idempotent, deadline, op),
            (Err(e), stale) => (Err(e), stale),
        };
        match &result {
            // A connection that died while idle in the pool (the server
            // restarted, say): the idle ones are closed, and the next
            // request's fresh connection tells whether the server is up.
            Err(Error::Io(_)) if stale => {}
            Ok(_) => pool.health.success(),
            Err(e) => {
                // Marked dead (or again, after its probe failed): its idle
                // connections most likely died with it.
                if pool.health.record(e.verdict(), Pass::Closed, self.now()) {
                    pool.clear_idle();
                }
            }
        }
        result
    }

    /// Validates and routes `key`, then sends one meta command built by
    /// `encode` (given the opaque token it must carry, see
    /// `MetaGetFlags::tagged`) and reads its reply with `read`.
    ///
    /// A write the key's home server does not take leaves it owing an
    /// invalidation of the key: recorded before the write goes to a
    /// stand-in (so a cleanup of the home server that runs meanwhile
    /// cannot miss it), or after the write failed or could not be routed.
    pub(super) fn single<T>(
        &self,
        key: &str,
        access: Access,
        encode: impl Fn(&mut Vec<u8>, ValidKey<'_>, u32),
        read: impl Fn(Reply<'_>) -> Result<T>,
    ) -> Result<T> {
        let deadline = self.deadline();
        let mut buf = KeyBuf::new();
        let valid = self.key(key, &mut buf)?;
        let prefixed = valid.as_bytes();
        let routed = self.route(self.placement(prefixed));
        let run = |server| {
            self.on_server(server, access.idempotent(), deadline, |conn| {
                let mut request = conn.meta_request();
                let opaque = request.tag(valid);
                encode(request.out(), valid, opaque);
                conn.send()?;
                conn.recv(&read)
            })
        };
        if !access.writes() {
            return run(routed?);
        }
        let home = self.home(self.placement(prefixed));
        let server = match routed {
            Ok(server) => server,
            Err(e) => {
                self.owe(home, prefixed, None);
                return Err(e);
            }
        };
        if server != home {
            self.owe(home, prefixed, Some(server));
        }
        let result = run(server);
        if result.as_ref().is_err_and(leaves_doubt) {
            self.owe(server, prefixed, None);
        }
        result
    }

    /// The server `key` (without the prefix) belongs on when every server
    /// is up: where an older copy of it may be.
    pub(super) fn home(&self, key: &[u8]) -> usize {
        self.pick(key, |_| true).unwrap_or(0)
    }

    /// Records that server `index` must forget `key` (prefixed) before it
    /// serves again; `instead`: the server that took the write.
    pub(super) fn owe(&self, index: usize, key: &[u8], instead: Option<usize>) {
        if let Some(pending) = self.inner.pending.get(index) {
            pending.record(key, instead);
        }
    }

    /// Records that the write of `key` (as given, without the key prefix)
    /// was skipped by the caller (a circuit breaker open): the key's home
    /// server, and the server it is routed to now if another, must forget
    /// it before they serve again. An invalid key is ignored (no server
    /// can hold it).
    pub(crate) fn owe_invalidation(&self, key: &str) {
        let mut buf = KeyBuf::new();
        let Ok(valid) = self.key(key, &mut buf) else {
            return;
        };
        let prefixed = valid.as_bytes();
        let place = self.placement(prefixed);
        let home = self.home(place);
        self.owe(home, prefixed, None);
        let now = self.now();
        let routed = self.pick(place, |i| {
            self.inner
                .pools
                .get(i)
                .is_some_and(|p| p.health.is_routable(now))
        });
        if let Some(server) = routed.filter(|&s| s != home) {
            self.owe(server, prefixed, None);
        }
    }

    /// Sends server `index` the invalidations it owes, if any, before any
    /// other request of this client reaches it. Requests to the server wait
    /// while this runs (the record stays locked), so none can read an
    /// owed key's older copy first. When done, the keys whose writes went
    /// to a stand-in are owed by the stand-in in turn. The flag is
    /// `Pool::run`'s stale-connection flag.
    pub(super) fn settle(&self, index: usize, deadline: Instant) -> (Result<()>, bool) {
        let pending = &self.inner.pending[index];
        if !pending.is_dirty() {
            return (Ok(()), false);
        }
        let mut owed = pending.lock();
        if owed.is_empty() {
            // Another caller settled it meanwhile.
            return (Ok(()), false);
        }
        let flush = owed.flush;
        let keys: Vec<&[u8]> = owed.keys.keys().map(|k| &k[..]).collect();
        let (result, stale) = self.inner.pools[index].run(IDEMPOTENT, deadline, |conn| {
            if flush {
                encode_flush_all(conn.request(), None, false);
                conn.send()?;
                conn.recv(|reply| match reply {
                    Reply::Ok => Ok(()),
                    other => Err(Error::from_reply(&other)),
                })?;
            }
            for chunk in keys.chunks(SETTLE_CHUNK) {
                let mut request = conn.meta_request();
                for key in chunk {
                    let key = ValidKey::new(key)?;
                    let opaque = request.tag(key);
                    let flags = MetaDeleteFlags::default().tagged(opaque);
                    encode_meta_delete(request.out(), key, &flags);
                }
                conn.send()?;
                for _ in chunk {
                    conn.recv(|reply| match meta_status(&reply) {
                        Some(MetaStatus::Success | MetaStatus::NotFound) => Ok(()),
                        _ => Err(Error::from_reply(&reply)),
                    })?;
                }
            }
            Ok(())
        });
        drop(keys);
        if result.is_err() {
            return (result, stale);
        }
        let settled = pending.settled(&mut owed);
        drop(owed);
        // The stand-ins' copies are the older ones now. Recorded with this
        // server's record unlocked: a stand-in's own settling may move keys
        // back here.
        for (key, stand_ins) in settled {
            for server in stand_ins.into_iter().filter(|&s| s != index) {
                self.owe(server, &key, None);
            }
        }
        (Ok(()), stale)
    }
}
