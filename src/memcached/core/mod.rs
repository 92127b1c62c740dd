//! What a client knows and decides, whichever driver does its I/O: its
//! servers and their health, the invalidations each owes, key placement,
//! routing, and the bookkeeping before and after a request. The blocking
//! [`Client`](super::Client) and the tokio `AsyncClient`
//! each hold a `Core` beside their connections and call it around every
//! request: no socket and no waiting here; time comes from the injected
//! clock ([`Timer`]) as nanoseconds.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::de::DeserializeOwned;

pub(crate) mod batch;

use super::address::ServerSpec;
use super::command::{self, Access, Command};
use super::conn::{ConnConfig, later};
use super::error::{Error, Result};
use super::health::{Circuit, Pass, Verdict};
use super::pending::{Moved, Pending};
use super::protocol::{
    KeyError, MAX_KEY_LEN, MAX_RELATIVE_EXPTIME, ReturnFlags, ValidKey, exptime,
};
use super::ring::Ring;
use crate::clock::Timer;
use crate::codec::Codec;

/// What memcached adds to a value within its item size limit (`-I`,
/// [`ClientBuilder::max_item_size`](super::ClientBuilder::max_item_size)),
/// besides the key: the item header (48 bytes on 64-bit builds), the CAS
/// value (8), the key's terminating NUL (1), the data's `\r\n` (2) and the
/// client flags (4). Measured on memcached 1.6.18 with the default 1 MiB
/// limit: the largest value stored under a key of `n` bytes is
/// `1,048,576 - 63 - n` with non-zero client flags (4 more with flags 0).
pub(crate) const ITEM_OVERHEAD: usize = 63;

/// Keys deleted per round trip when a server's owed invalidations are sent.
pub(crate) const SETTLE_CHUNK: usize = 128;

/// One configured server: where it is, whether it answers, what it owes.
#[derive(Debug)]
pub(crate) struct Server {
    pub(crate) spec: ServerSpec,
    pub(crate) health: Circuit,
    pub(crate) pending: Pending,
}

/// The driver-independent state and decisions of a client.
#[derive(Debug)]
pub(crate) struct Core<C> {
    pub(crate) servers: Vec<Server>,
    pub(crate) ring: Ring,
    pub(crate) prefix: Box<[u8]>,
    pub(crate) codec: C,
    pub(crate) max_item_size: usize,
    pub(crate) request_timeout: Duration,
    /// Connection settings (timeouts, reply size bound).
    pub(crate) config: ConnConfig,
    /// Connections per server.
    pub(crate) pool_size: usize,
    /// How long a caller waits for a pooled connection.
    pub(crate) pool_timeout: Duration,
    /// The clock of server health (dead periods, probes).
    pub(crate) timer: Timer,
}

/// A prefixed key, built on the stack.
pub(crate) struct KeyBuf {
    bytes: [u8; MAX_KEY_LEN],
}

impl KeyBuf {
    pub(crate) fn new() -> KeyBuf {
        KeyBuf {
            bytes: [0; MAX_KEY_LEN],
        }
    }
}

/// The time of one routing decision, read from the clock at most once and
/// only when needed (see [`Core::lazy_now`]).
pub(crate) struct LazyNow<'t> {
    timer: &'t Timer,
    read: std::cell::Cell<Option<u64>>,
}

impl LazyNow<'_> {
    /// Nanoseconds on the client's clock, read on first use.
    pub(crate) fn get(&self) -> u64 {
        if let Some(now) = self.read.get() {
            return now;
        }
        let now = self.timer.now();
        self.read.set(Some(now));
        now
    }
}

/// Why a server's owed invalidations could not be sent.
#[derive(Debug)]
pub(crate) enum Unsettled {
    /// Another caller was sending them and did not finish by the deadline.
    Busy,
    /// Sending them failed (with the stale-connection flag: an I/O error
    /// on a reused connection, which says nothing of the server).
    Failed(Error, bool),
}

/// What a request does once its server's settle is over.
#[derive(Debug)]
pub(crate) enum Settled {
    /// Nothing is owed any more: send the request.
    Go,
    /// Fail with this error (and the stale flag), recorded as the
    /// request's outcome.
    Fail(Error, bool),
    /// The server refused to forget: fail with this error, already
    /// recorded as a failure; `true` if it marked the server dead (the
    /// driver closes its idle connections).
    Refused(Error, bool),
}

impl<C> Core<C> {
    /// A client's `Debug`: its servers and distribution, as `name`.
    pub(crate) fn describe(&self, name: &str, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let servers: Vec<&str> = self.servers.iter().map(|s| s.spec.label.as_str()).collect();
        f.debug_struct(name)
            .field("servers", &servers)
            .field("distribution", &self.ring.distribution())
            .finish_non_exhaustive()
    }
}

/// A single-key request routed to its server ([`Core::begin`]), for
/// [`Core::end`] to account for once it is done.
#[derive(Debug)]
pub(crate) struct Routed<'k> {
    /// The prefixed key.
    pub(crate) key: ValidKey<'k>,
    /// The server it goes to.
    pub(crate) server: usize,
    pub(crate) access: Access,
    /// Whether servers ahead of `server` in the key's failover order owe
    /// the key (a write to a stand-in).
    ahead: bool,
}

impl<C: Codec> Core<C> {
    /// Nanoseconds since the client was built (the clock of server health).
    pub(crate) fn now(&self) -> u64 {
        self.timer.now()
    }

    /// The deadline of a call starting now (see
    /// [`ClientBuilder::request_timeout`](super::ClientBuilder::request_timeout)).
    pub(crate) fn deadline(&self) -> Instant {
        later(Instant::now(), self.request_timeout)
    }

    /// Prefixes `key` into `buf` and validates the result, once.
    pub(crate) fn key<'b>(&self, key: &str, buf: &'b mut KeyBuf) -> Result<ValidKey<'b>> {
        let prefix = &self.prefix;
        if key.is_empty() {
            return Err(KeyError::Empty.into());
        }
        let len = prefix.len() + key.len();
        if len > MAX_KEY_LEN {
            return Err(KeyError::TooLong { len }.into());
        }
        buf.bytes[..prefix.len()].copy_from_slice(prefix);
        buf.bytes[prefix.len()..len].copy_from_slice(key.as_bytes());
        Ok(ValidKey::new(&buf.bytes[..len])?)
    }

    /// The part of a prefixed key that places it: the key as the caller
    /// gave it, without the key prefix, or the whole key for the
    /// distributions that hash it (see
    /// [`ClientBuilder::key_prefix`](super::ClientBuilder::key_prefix)).
    pub(crate) fn placement<'k>(&self, prefixed: &'k [u8]) -> &'k [u8] {
        if self.ring.distribution().hashes_key_prefix() {
            return prefixed;
        }
        prefixed.get(self.prefix.len()..).unwrap_or(prefixed)
    }

    pub(crate) fn decode<V: DeserializeOwned>(
        &self,
        data: &[u8],
        flags: &ReturnFlags<'_>,
    ) -> Result<V> {
        command::decode(&self.codec, data, flags)
    }

    /// Whether a value of `size` bytes fits memcached's item limit under a
    /// key of `key_len` bytes (as sent: prefixed): the limit covers the
    /// key and the item's own overhead too ([`ITEM_OVERHEAD`]).
    pub(crate) fn check_size(&self, key_len: usize, size: usize) -> Result<()> {
        let max = self
            .max_item_size
            .saturating_sub(ITEM_OVERHEAD.saturating_add(key_len));
        if size > max {
            Err(Error::ValueTooLarge { size, max })
        } else {
            Ok(())
        }
    }

    // ---- routing ------------------------------------------------------

    /// The index of the live server for `key` (given without the prefix).
    pub(crate) fn route(&self, key: &[u8]) -> Result<usize> {
        self.route_at(key, &self.lazy_now(), &mut Vec::new())
    }

    /// The time of a routing decision, read from the clock only if a
    /// server's circuit is open (with every server up, routing needs none).
    pub(crate) fn lazy_now(&self) -> LazyNow<'_> {
        LazyNow {
            timer: &self.timer,
            read: std::cell::Cell::new(None),
        }
    }

    /// The index of the server for `key` among those `routable` accepts.
    pub(crate) fn pick(&self, key: &[u8], routable: impl Fn(usize) -> bool) -> Option<usize> {
        if self.servers.len() == 1 {
            return Some(0).filter(|&i| routable(i));
        }
        self.ring.server_for_live(key, routable)
    }

    /// Whether server `index` takes requests at `now` (without claiming a
    /// probe of it).
    pub(crate) fn is_routable(&self, index: usize, now: &LazyNow<'_>) -> bool {
        self.servers
            .get(index)
            .is_some_and(|s| !s.health.is_open() || s.health.is_routable(now.get()))
    }

    /// Whether a request would be sent now rather than refused with
    /// [`Error::AllServersDown`]: some server's circuit is closed, or its
    /// dead period is over and its probe unclaimed. Claims nothing: what a
    /// circuit in front of this client (`NearFar`'s breaker) asks before it
    /// claims a probe of its own (see [`health`](super::health)).
    pub(crate) fn can_send(&self) -> bool {
        let now = self.lazy_now();
        (0..self.servers.len()).any(|i| self.is_routable(i, &now))
    }

    /// The index of the server for `key`, with liveness judged at `now`.
    ///
    /// A server whose dead period is over is probed by one caller only: the
    /// first to route a key to it claims the probe, and the others route
    /// around it until the probe's outcome is known. `probing` lists the
    /// servers this caller already holds the probe of (all of a batch's
    /// keys for such a server go with the probe).
    pub(crate) fn route_at(
        &self,
        key: &[u8],
        now: &LazyNow<'_>,
        probing: &mut Vec<usize>,
    ) -> Result<usize> {
        // Servers whose probe another caller took meanwhile.
        let mut taken = Vec::new();
        loop {
            let server = self
                .pick(key, |i| {
                    probing.contains(&i) || (!taken.contains(&i) && self.is_routable(i, now))
                })
                .ok_or(Error::AllServersDown)?;
            if probing.contains(&server) {
                return Ok(server);
            }
            let health = &self.servers[server].health;
            // A closed circuit passes whatever the time (one that opens
            // meanwhile: as if this request came just before).
            let pass = if health.is_open() {
                health.pass(now.get())
            } else {
                Pass::Closed
            };
            match pass {
                Pass::Closed => return Ok(server),
                Pass::Probe => {
                    probing.push(server);
                    return Ok(server);
                }
                Pass::Skip => taken.push(server),
            }
        }
    }

    // ---- a single-key request -------------------------------------------

    /// Routes a single-key request `cmd` for `key` (prefixed and valid).
    ///
    /// A write leaves the servers ahead of the one it goes to (in the key's
    /// failover order: ejected ones) owing an invalidation of the key,
    /// recorded here before the write goes out (a settle of those servers
    /// meanwhile cannot miss it) and again by [`Core::end`]; with no server
    /// to go to, every server owes it. See [`pending`](super::pending).
    ///
    /// # Errors
    ///
    /// [`Error::AllServersDown`].
    ///
    /// A value to store is checked against the item limit first: refused,
    /// it changes nothing anywhere (the server keeps its value).
    pub(crate) fn begin<'k>(&self, key: ValidKey<'k>, cmd: &impl Command) -> Result<Routed<'k>> {
        let prefixed = key.as_bytes();
        if let Some(size) = cmd.stored_len() {
            self.check_size(prefixed.len(), size)?;
        }
        let access = cmd.access();
        let place = self.placement(prefixed);
        let server = match (access, self.route(place)) {
            (_, Ok(server)) => server,
            // Nothing was sent anywhere: a read or a lease changes nothing.
            (Access::Read | Access::ReadOnce | Access::Lease, Err(e)) => return Err(e),
            (_, Err(e)) => {
                self.owe_ahead(place, prefixed, None, None);
                return Err(e);
            }
        };
        let ahead = access.writes() && self.owe_ahead(place, prefixed, Some(server), Some(server));
        Ok(Routed {
            key,
            server,
            access,
            ahead,
        })
    }

    /// Accounts for a single-key request once it is done with `result`:
    /// the servers ahead of a stand-in owe the key again (a settle that ran
    /// meanwhile may have had the stand-in delete the key before this write
    /// landed there), and a write or lease that failed with doubt leaves its
    /// own server owing the key.
    pub(crate) fn end<T>(&self, routed: &Routed<'_>, result: &Result<T>) {
        let prefixed = routed.key.as_bytes();
        if routed.ahead {
            let place = self.placement(prefixed);
            self.owe_ahead(place, prefixed, Some(routed.server), Some(routed.server));
        }
        let reads = matches!(routed.access, Access::Read | Access::ReadOnce);
        if !reads && result.as_ref().is_err_and(Error::leaves_doubt) {
            self.owe(routed.server, prefixed, None);
        }
    }

    /// Records in server `index`'s health how a request on it went;
    /// `stale` is set for an I/O error on a reused connection, which says
    /// nothing of the server (the next request's fresh connection does).
    /// Returns whether the server was marked dead by it (its idle
    /// connections most likely died with it: the driver closes them).
    pub(crate) fn record<T>(&self, index: usize, result: &Result<T>, stale: bool) -> bool {
        let health = &self.servers[index].health;
        match result {
            Err(Error::Io(_)) if stale => false,
            Ok(_) => {
                health.success();
                false
            }
            Err(e) => health.record(e.verdict(), Pass::Closed, self.now()),
        }
    }

    // ---- owed invalidations ---------------------------------------------

    /// Records `key` (prefixed; `place` its placing part) as owed by every
    /// server ahead of `until` in the key's failover order (every server,
    /// with `until` `None`), with `instead` as the server that took the
    /// write. Returns whether any server was ahead.
    pub(crate) fn owe_ahead(
        &self,
        place: &[u8],
        key: &[u8],
        until: Option<usize>,
        instead: Option<usize>,
    ) -> bool {
        let servers = self.servers.len();
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
    pub(crate) fn owe(&self, index: usize, key: &[u8], instead: Option<usize>) {
        if let Some(server) = self.servers.get(index) {
            server.pending.record(key, instead);
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
        let now = self.lazy_now();
        let routed = self.pick(place, |i| self.is_routable(i, &now));
        self.owe_ahead(place, prefixed, routed, None);
        if let Some(server) = routed {
            self.owe(server, prefixed, None);
        }
    }

    /// Server `index` was emptied by a settle that began at `seq`: its
    /// record forgets what that covered, the stand-ins of an overflowed
    /// record are marked to be emptied in turn, and the forgotten keys'
    /// stand-ins are added to `moved` (owed by them once the settle ends).
    pub(crate) fn flushed(&self, index: usize, seq: u64, moved: &mut Moved) {
        let (stand_ins, keys) = self.servers[index].pending.flushed(seq);
        for server in stand_ins.into_iter().filter(|&s| s != index) {
            if let Some(stand_in) = self.servers.get(server) {
                stand_in.pending.record_flush();
            }
        }
        moved.extend(keys);
    }

    /// Ends server `index`'s settle (done or not: what was not sent stays
    /// owed) and records the keys `moved` off it as owed by their stand-ins,
    /// whose copies are the older ones now. Done with this server's record
    /// unlocked and its settle over: a stand-in's own settling may move
    /// keys back here.
    pub(crate) fn end_settle(&self, index: usize, moved: Moved) {
        self.servers[index].pending.end();
        for (key, stand_ins) in moved {
            for server in stand_ins.into_iter().filter(|&s| s != index) {
                self.owe(server, &key, None);
            }
        }
    }

    /// What a request to server `index` does after its settle ended with
    /// `settled`: go ahead, or fail.
    ///
    /// A server that answered but will not forget what it owes (`flush_all`
    /// disabled with -F, say) must not serve its older copies, so it counts
    /// as failing, as a server that does not answer does.
    pub(crate) fn after_settle(&self, index: usize, settled: Result<(), Unsettled>) -> Settled {
        match settled {
            Ok(()) => Settled::Go,
            Err(Unsettled::Busy) => Settled::Fail(Error::PoolTimeout, false),
            Err(Unsettled::Failed(e, _)) if e.verdict() == Verdict::Up => {
                let dead = self.servers[index].health.failure(self.now());
                Settled::Refused(e, dead)
            }
            Err(Unsettled::Failed(e, stale)) => Settled::Fail(e, stale),
        }
    }

    // ---- server introspection -------------------------------------------

    /// The server labels, in order.
    pub(crate) fn labels(&self) -> Vec<String> {
        self.servers.iter().map(|s| s.spec.label.clone()).collect()
    }

    /// See [`Client::server_for`](super::Client::server_for).
    pub(crate) fn server_for(&self, key: &str) -> Result<String> {
        let mut buf = KeyBuf::new();
        let valid = self.key(key, &mut buf)?;
        let now = self.lazy_now();
        // Only looks: claims no probe of a server whose dead period is over.
        let server = self
            .pick(self.placement(valid.as_bytes()), |i| {
                self.is_routable(i, &now)
            })
            .ok_or(Error::AllServersDown)?;
        Ok(self.servers[server].spec.label.clone())
    }

    /// See [`Client::is_marked_dead`](super::Client::is_marked_dead).
    pub(crate) fn is_marked_dead(&self, label: &str) -> bool {
        let now = self.now();
        self.servers
            .iter()
            .any(|s| s.spec.label == label && !s.health.is_routable(now))
    }

    /// See [`Client::key_prefix`](super::Client::key_prefix).
    pub(crate) fn key_prefix(&self) -> &str {
        // Checked to be a valid key part (so ASCII) when the client was built.
        std::str::from_utf8(&self.prefix).unwrap_or_default()
    }
}

/// [`exptime`] at the current wall-clock time (read only for TTLs over 30
/// days, which are sent as absolute times).
pub(crate) fn exptime_now(ttl: Duration) -> u32 {
    let now = if ttl.as_secs() >= MAX_RELATIVE_EXPTIME {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    } else {
        0
    };
    exptime(ttl, now)
}
