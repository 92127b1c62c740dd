//! Which server a key goes to, what runs on it, and the invalidations a
//! server owes before it serves again.

use std::time::Instant;

use super::cluster::flush_all_on;
use super::{Client, IDEMPOTENT, KeyBuf};
use crate::codec::Codec;
use crate::memcached::command::{Access, Command, meta_status};
use crate::memcached::conn::Conn;
use crate::memcached::error::{Error, Result};
use crate::memcached::health::{Pass, Verdict};
use crate::memcached::pending::Busy;
use crate::memcached::protocol::{
    MetaDeleteFlags, MetaStatus, Reply, ValidKey, encode_meta_delete,
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
        let (result, stale) = match self.settle(index, deadline) {
            Ok(()) => pool.run(idempotent, deadline, op),
            Err(Unsettled::Busy) => (Err(Error::PoolTimeout), false),
            Err(Unsettled::Failed(e, stale)) => {
                if e.verdict() == Verdict::Up {
                    // The server answered but will not forget what it owes
                    // (`flush_all` disabled with -F, say): it must not serve
                    // its older copies, so it counts as failing and is
                    // ejected like a server that does not answer.
                    if pool.health.failure(self.now()) {
                        pool.clear_idle();
                    }
                    return Err(e);
                }
                (Err(e), stale)
            }
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

    /// Validates and routes `key`, then sends `cmd` (tagged with the opaque
    /// token its reply must echo) and reads its reply: the blocking driver
    /// of a [`Command`].
    ///
    /// A write leaves the servers ahead of the one it went to (in the key's
    /// failover order: ejected ones) owing an invalidation of the key, and
    /// the server it went to as well when it failed with doubt; with no
    /// server to go to, every server owes it. See [`pending`](crate::memcached::pending).
    pub(super) fn single<Cmd: Command>(&self, key: &str, cmd: &Cmd) -> Result<Cmd::Output> {
        let deadline = self.deadline();
        let mut buf = KeyBuf::new();
        let valid = self.key(key, &mut buf)?;
        let prefixed = valid.as_bytes();
        let place = self.placement(prefixed);
        let routed = self.route(place);
        let access = cmd.access();
        let run = |server| {
            self.on_server(server, access.idempotent(), deadline, |conn| {
                let mut request = conn.meta_request();
                let opaque = request.tag(valid);
                cmd.encode(request.out(), valid, opaque);
                conn.send()?;
                conn.recv(|reply| cmd.read(reply))
            })
        };
        let server = match (access, routed) {
            (Access::Read | Access::ReadOnce, routed) => return run(routed?),
            // Nothing was sent anywhere: a lease creates nothing then.
            (Access::Lease, Err(e)) => return Err(e),
            (_, Err(e)) => {
                self.owe_ahead(place, prefixed, None, None);
                return Err(e);
            }
            (_, Ok(server)) => server,
        };
        // Recorded before the write goes out (a settle of those servers
        // meanwhile cannot miss it), and again once it is done: a settle
        // that ran meanwhile may have had the stand-in delete the key before
        // this write landed there.
        let ahead = access.writes() && self.owe_ahead(place, prefixed, Some(server), Some(server));
        let result = run(server);
        if ahead {
            self.owe_ahead(place, prefixed, Some(server), Some(server));
        }
        if result.as_ref().is_err_and(Error::leaves_doubt) {
            self.owe(server, prefixed, None);
        }
        result
    }

    /// Records `key` (prefixed; `place` its placing part) as owed by every
    /// server ahead of `until` in the key's failover order (every server,
    /// with `until` `None`), with `instead` as the server that took the
    /// write. Returns whether any server was ahead.
    pub(super) fn owe_ahead(
        &self,
        place: &[u8],
        key: &[u8],
        until: Option<usize>,
        instead: Option<usize>,
    ) -> bool {
        let servers = self.inner.pools.len();
        let mut ahead: Vec<usize> = Vec::new();
        while ahead.len() < servers {
            match self.pick(place, |i| !ahead.contains(&i)) {
                Some(server) if Some(server) != until => ahead.push(server),
                _ => break,
            }
        }
        for &server in &ahead {
            self.owe(server, key, instead);
        }
        !ahead.is_empty()
    }

    /// Records that server `index` must forget `key` (prefixed) before it
    /// serves again; `instead`: the server that took the write.
    pub(super) fn owe(&self, index: usize, key: &[u8], instead: Option<usize>) {
        if let Some(pending) = self.inner.pending.get(index) {
            pending.record(key, instead);
        }
    }

    /// Records that the write of `key` (as given, without the key prefix)
    /// was skipped by the caller (a circuit breaker open): the server it
    /// would go to now, and every server ahead of that one in its failover
    /// order, must forget it before they serve again. An invalid key is
    /// ignored (no server can hold it).
    pub(crate) fn owe_invalidation(&self, key: &str) {
        let mut buf = KeyBuf::new();
        let Ok(valid) = self.key(key, &mut buf) else {
            return;
        };
        let prefixed = valid.as_bytes();
        let place = self.placement(prefixed);
        let now = self.now();
        let routed = self.pick(place, |i| {
            self.inner
                .pools
                .get(i)
                .is_some_and(|p| p.health.is_routable(now))
        });
        self.owe_ahead(place, prefixed, routed, None);
        if let Some(server) = routed {
            self.owe(server, prefixed, None);
        }
    }

    /// Sends server `index` the invalidations it owes, if any, before any
    /// other request of this client reaches it: a `flush_all` if its record
    /// overflowed, then the owed keys' deletions, in pipelined chunks. One
    /// caller settles at a time; requests to the server wait for it, up to
    /// their `deadline`, so none can read an owed key's older copy first.
    /// What was deleted is forgotten chunk by chunk (a settle cut short
    /// keeps its progress); keys whose writes went to a stand-in are then
    /// owed by the stand-in, whose copy is the older one now.
    pub(super) fn settle(&self, index: usize, deadline: Instant) -> Result<(), Unsettled> {
        let pending = &self.inner.pending[index];
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
                flush_all_on(conn)?;
                flushed = true;
                let (stand_ins, keys) = pending.flushed(seq);
                for server in stand_ins.into_iter().filter(|&s| s != index) {
                    if let Some(stand_in) = self.inner.pending.get(server) {
                        stand_in.record_flush();
                    }
                }
                moved.extend(keys);
            }
            if work.flush.is_none() {
                // (After a flush, every key taken was covered by it.)
                for chunk in work.keys.chunks(SETTLE_CHUNK) {
                    delete_chunk(conn, chunk)?;
                    moved.extend(pending.deleted(chunk));
                }
            }
            Ok(())
        });
        pending.end();
        // Recorded with this server's record unlocked and its settle over:
        // a stand-in's own settling may move keys back here.
        for (key, stand_ins) in moved {
            for server in stand_ins.into_iter().filter(|&s| s != index) {
                self.owe(server, &key, None);
            }
        }
        result.map_err(|e| Unsettled::Failed(e, stale))
    }
}

/// Why a server's owed invalidations could not be sent.
#[derive(Debug)]
pub(super) enum Unsettled {
    /// Another caller was sending them and did not finish by the deadline.
    Busy,
    /// Sending them failed (with `Pool::run`'s stale-connection flag).
    Failed(Error, bool),
}

/// Deletes `chunk`'s keys on `conn` in one pipelined round trip. Reads
/// every reply before it fails, so the connection stays in step unless the
/// error itself drops it.
fn delete_chunk(conn: &mut Conn, chunk: &[(Box<[u8]>, u64)]) -> Result<()> {
    let mut request = conn.meta_request();
    for (key, _) in chunk {
        let key = ValidKey::new(key)?;
        let opaque = request.tag(key);
        let flags = MetaDeleteFlags::default().tagged(opaque);
        encode_meta_delete(request.out(), key, &flags);
    }
    conn.send()?;
    let mut first_error = None;
    for _ in chunk {
        conn.recv(|reply| match meta_status(&reply) {
            Some(MetaStatus::Success | MetaStatus::NotFound) => Ok(()),
            // The server carries on after it: read the other replies.
            _ if matches!(reply, Reply::ServerError(_)) => {
                first_error.get_or_insert(Error::from_reply(&reply));
                Ok(())
            }
            _ => Err(Error::from_reply(&reply)),
        })?;
    }
    first_error.map_or(Ok(()), Err)
}
