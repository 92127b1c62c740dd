//! [`Client`] and [`ClientBuilder`]: typed operations over a pool of servers.

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::conn::{Conn, ConnConfig, ServerSpec, later};
use super::error::{ConfigError, Error, Result};
use super::pending::Pending;
use super::pool::{Claim, Pool};
use super::protocol::{
    ArithmeticMode, KeyError, MAX_KEY_LEN, MAX_RELATIVE_EXPTIME, MetaArithmeticFlags,
    MetaDeleteFlags, MetaGetFlags, MetaReply, MetaSetFlags, MetaSetMode, MetaStatus, ProtocolError,
    RemainingTtl, Reply, ReturnFlags, ValidKey, encode_flush_all, encode_get,
    encode_meta_arithmetic, encode_meta_delete, encode_meta_get, encode_meta_noop, encode_meta_set,
    encode_stats, encode_version, exptime, parse_counter,
};
use super::ring::{Distribution, Ring};
use crate::codec::{Codec, DefaultCodec, Encoded};

/// memcached's default item size limit (its `-I` option): 1 MiB.
pub const DEFAULT_MAX_ITEM_SIZE: usize = 1024 * 1024;

/// The largest `max_item_size` a client accepts: 1 GiB, the most memcached's
/// `-I` allows (its `ITEM_SIZE_MAX_UPPER_LIMIT`). It also bounds what a
/// server's reply can make the client buffer.
pub const MAX_ITEM_SIZE_LIMIT: usize = 1024 * 1024 * 1024;

/// Keys sent per round trip by [`Client::get_many`]: bounds the request line
/// and how much reply is buffered at once.
const GET_MANY_CHUNK: usize = 128;

/// Owed invalidations kept per server before the record turns into a
/// flush of the whole server (see [`ClientBuilder::pending_invalidations`]).
pub const DEFAULT_PENDING_INVALIDATIONS: usize = 10_000;

/// Keys deleted per round trip when a server's owed invalidations are sent.
const SETTLE_CHUNK: usize = 128;

/// Items sent per round trip by [`Client::set_many`] ...
const SET_MANY_CHUNK: usize = 128;

/// ... and about how many bytes (one larger item still goes alone): bounds
/// the request buffered in memory and what the server must take at once.
const SET_MANY_CHUNK_BYTES: usize = 1024 * 1024;

/// How many of the leading items, of the sizes given, make one chunk: at
/// most `max_items`, and no more bytes than `max_bytes` unless the first
/// item alone is larger. Zero only when there are no items.
fn chunk_len(sizes: impl Iterator<Item = usize>, max_items: usize, max_bytes: usize) -> usize {
    let mut bytes = 0usize;
    let mut count = 0;
    for size in sizes.take(max_items) {
        bytes = bytes.saturating_add(size);
        if count > 0 && bytes > max_bytes {
            break;
        }
        count += 1;
    }
    count
}

/// A CAS unique: the version stamp memcached gives each stored item.
///
/// Read it with [`Client::gets`], [`Client::meta_get`] or
/// [`Client::cas_only`], or get it back from a write with
/// [`Client::set_returning_cas`] or [`Client::compare_and_set`]; pass it to
/// [`Client::cas`] or [`Client::compare_and_set`] to store only if the item
/// was not changed since.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cas(pub u64);

/// A value read by [`Client::meta_get`], with its CAS unique and remaining TTL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaItem<V> {
    /// The decoded value.
    pub value: V,
    /// The item's CAS unique.
    pub cas: Cas,
    /// The time the item has left to live; `None` when it never expires.
    pub ttl: Option<Duration>,
}

/// The outcome of [`Client::get_or_lease`]: a value, or who should compute it.
///
/// Built on memcached's meta get with the vivify (`N`) flag: on a miss the
/// server creates an empty placeholder and hands exactly one caller the win
/// flag (`W`); callers arriving meanwhile see the placeholder with `Z` (win
/// taken). After [`Client::invalidate`] the old value is kept but marked
/// stale (`X`), and again one caller wins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lease<V> {
    /// A value to use. `stale` is set when the item was invalidated and
    /// another caller is already recomputing it: the value may be outdated.
    Hit {
        /// The decoded value.
        value: V,
        /// The item's CAS unique.
        cas: Cas,
        /// Whether the value was marked stale.
        stale: bool,
        /// The time the item has left to live; `None` when it never expires.
        ttl: Option<Duration>,
    },
    /// This caller holds the lease: compute the value and store it with
    /// [`Client::cas`] and `cas`, so that a write or removal made while it
    /// was computed is not undone (`Ok(false)`: keep the value to yourself).
    ///
    /// `previous` is the value still stored when there is one (after an
    /// invalidation, or an early recache), which may be served meanwhile.
    Won {
        /// The outdated value, if the item had one that decodes as `V`
        /// (`None` as well when the stored bytes do not decode: the lease
        /// is not lost to a codec error).
        previous: Option<V>,
        /// The CAS unique of the placeholder or outdated item.
        cas: Cas,
    },
    /// Another caller holds the lease and no value exists yet: wait and
    /// retry, or compute without storing.
    Wait,
}

/// The CAS unique and remaining TTL (`None`: never expires) of an item read
/// through a lease request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Seen {
    pub(crate) cas: Cas,
    pub(crate) ttl: Option<Duration>,
}

/// A memcached client: typed operations over one or more servers.
///
/// Cheap to clone (an [`Arc`] inside) and safe to share between threads.
/// Each server has its own connection pool; keys are spread over the servers
/// by the configured [`Distribution`]. Values are encoded by the codec `C`
/// ([`DefaultCodec`] unless [`ClientBuilder::codec`] chose another).
///
/// I/O is blocking, bounded by the connect and I/O timeouts, and each call
/// as a whole by [`ClientBuilder::request_timeout`]. Connections are
/// opened lazily, on first use, so [`ClientBuilder::build`] succeeds while
/// servers are down.
///
/// Every reply is matched to its request: each meta command carries an
/// opaque token and asks for its key back, and a multi-key `get` checks the
/// key of each `VALUE`. A reply that answers another request, or none (a
/// late or unsolicited one), fails the call with an [`Error::Protocol`]
/// ([`ProtocolError::UnmatchedReply`] for meta replies) and closes the
/// connection, rather than being taken as the answer.
///
/// # Examples
///
/// ```no_run
/// use std::time::Duration;
/// use nearfar::memcached::Client;
///
/// let client = Client::builder().servers(["127.0.0.1:11211"]).build()?;
/// client.set("greeting", "hello", Duration::from_secs(60))?;
/// let greeting: Option<String> = client.get("greeting")?;
/// assert_eq!(greeting.as_deref(), Some("hello"));
/// # Ok::<(), nearfar::memcached::Error>(())
/// ```
pub struct Client<C = DefaultCodec> {
    inner: Arc<Inner<C>>,
}

impl<C> Clone for Client<C> {
    fn clone(&self) -> Self {
        Client {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<C> fmt::Debug for Client<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let servers: Vec<&str> = self
            .inner
            .pools
            .iter()
            .map(|p| p.spec.label.as_str())
            .collect();
        f.debug_struct("Client")
            .field("servers", &servers)
            .field("distribution", &self.inner.ring.distribution())
            .finish_non_exhaustive()
    }
}

struct Inner<C> {
    pools: Vec<Pool>,
    /// Per server (same index as `pools`): the invalidations it owes.
    pending: Vec<Pending>,
    ring: Ring,
    prefix: Box<[u8]>,
    codec: C,
    max_item_size: usize,
    retry_attempts: u32,
    dead_timeout: Duration,
    request_timeout: Duration,
    epoch: Instant,
}

/// Configures and builds a [`Client`]. Made by [`Client::builder`].
///
/// Defaults: pool size 8 per server, connect and I/O timeouts of 1 s, pool
/// wait 1 s, request timeout twice the I/O timeout, no key prefix,
/// [`Distribution::Ketama`], 2 retry attempts, dead timeout 10 s, item
/// limit 1 MiB, [`DefaultCodec`] without compression.
#[derive(Debug, Clone)]
#[must_use]
pub struct ClientBuilder<C = DefaultCodec> {
    servers: Vec<String>,
    pool_size: usize,
    connect_timeout: Duration,
    io_timeout: Duration,
    request_timeout: Option<Duration>,
    pool_timeout: Duration,
    key_prefix: String,
    distribution: Distribution,
    retry_attempts: u32,
    dead_timeout: Duration,
    max_item_size: usize,
    pending_invalidations: usize,
    codec: C,
}

impl Default for ClientBuilder<DefaultCodec> {
    fn default() -> Self {
        ClientBuilder {
            servers: Vec::new(),
            pool_size: 8,
            connect_timeout: Duration::from_secs(1),
            io_timeout: Duration::from_secs(1),
            request_timeout: None,
            pool_timeout: Duration::from_secs(1),
            key_prefix: String::new(),
            distribution: Distribution::Ketama,
            retry_attempts: 2,
            dead_timeout: Duration::from_secs(10),
            max_item_size: DEFAULT_MAX_ITEM_SIZE,
            pending_invalidations: DEFAULT_PENDING_INVALIDATIONS,
            codec: DefaultCodec::default(),
        }
    }
}

impl<C: Codec> ClientBuilder<C> {
    /// The servers, each `host:port`, `host:port:weight`, `[ipv6]:port`, or
    /// a unix socket path such as `/run/memcached.sock` (a path may end in
    /// `:weight` too). A host without a port uses 11211. Replaces any
    /// servers given before.
    pub fn servers<I, S>(mut self, servers: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.servers = servers.into_iter().map(|s| s.as_ref().to_owned()).collect();
        self
    }

    /// The most connections kept open to each server (at least 1).
    ///
    /// A request that finds all of them busy waits up to
    /// [`pool_timeout`](Self::pool_timeout) for one.
    pub fn pool_size(mut self, connections: usize) -> Self {
        self.pool_size = connections;
        self
    }

    /// How long opening a TCP connection may take, in all: a host that
    /// resolves to several addresses shares this time between them.
    ///
    /// It does not bound connecting to a unix socket path, which is a plain
    /// blocking `connect` (`std` offers no way to set a timeout or
    /// non-blocking mode before a `UnixStream` connects, and this crate
    /// does not depend on `libc` for it). That connect fails at once when
    /// nothing listens on the path, and waits only while the server's
    /// accept backlog is full: on Linux, until the server accepts enough
    /// connections to make room. The I/O timeout bounds every request once
    /// connected.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long a request may go without progress: it fails with
    /// [`Error::Timeout`] when no byte could be written or read for this
    /// long.
    ///
    /// Each write or read that moves bytes restarts the wait, so a large
    /// reply that keeps streaming is not cut off; the whole call is still
    /// bounded by [`request_timeout`](Self::request_timeout), twice this
    /// unless set.
    pub fn io_timeout(mut self, timeout: Duration) -> Self {
        self.io_timeout = timeout;
        self
    }

    /// The most one call may take in all, from its start to its outcome:
    /// waiting for a pooled connection, connecting, sending, reading every
    /// frame of the reply, and the one retry on a fresh connection made
    /// after a pooled connection turned out dead. A call past it fails with
    /// [`Error::Timeout`] ([`Error::PoolTimeout`] while still waiting for a
    /// connection, [`Error::Connect`] while connecting), even when its
    /// server keeps sending a byte now and then.
    ///
    /// A call to many keys ([`Client::get_many`], [`Client::set_many`]) has
    /// one deadline for all its servers and round trips, counted from when
    /// its keys are checked and its values encoded. The whole-cluster calls
    /// ([`Client::version`], [`Client::stats`], [`Client::flush_all`]) ask
    /// the servers one after another and give each its own deadline.
    ///
    /// Unless set, twice the [I/O timeout](Self::io_timeout) (2 s with the
    /// defaults), following it when only the I/O timeout is changed: room
    /// for a healthy call's one slow step (a connect, a wait for the pool or
    /// a pause of the server of up to an I/O timeout) and the exchange
    /// itself, while a server that never goes quiet for a whole I/O timeout
    /// still costs a caller at most two. Raise it for values that take
    /// longer to move than that (a 1 GiB value over a slow link), or for
    /// batches of many round trips. It also cuts the
    /// [connect](Self::connect_timeout) and [pool](Self::pool_timeout)
    /// timeouts short when they are longer.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = Some(timeout);
        self
    }

    /// How long a request waits for a free connection when the pool is full.
    pub fn pool_timeout(mut self, timeout: Duration) -> Self {
        self.pool_timeout = timeout;
        self
    }

    /// A prefix put in front of every key (the limits on keys apply to the
    /// prefixed key). Must itself be a valid key part: no spaces or control
    /// bytes.
    ///
    /// The prefix does not move keys between servers: a key is placed by
    /// the key as given, before the prefix is added, as pymemcache's
    /// `HashClient` and libmemcached (without
    /// `MEMCACHED_BEHAVIOR_HASH_WITH_NAMESPACE`) place it, so clients of
    /// either kind sharing a pool with the same prefix agree on every key.
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.key_prefix = prefix.into();
        self
    }

    /// How keys are spread over the servers.
    pub fn distribution(mut self, distribution: Distribution) -> Self {
        self.distribution = distribution;
        self
    }

    /// After this many consecutive failures (connect errors, timeouts, I/O
    /// errors) a server is marked dead for [`dead_timeout`](Self::dead_timeout)
    /// and its keys go to the next live server. At least 1.
    pub fn retry_attempts(mut self, attempts: u32) -> Self {
        self.retry_attempts = attempts;
        self
    }

    /// How long a failed server is left out before it is probed again.
    pub fn dead_timeout(mut self, timeout: Duration) -> Self {
        self.dead_timeout = timeout;
        self
    }

    /// The largest value stored or read, in bytes (default 1 MiB, memcached's
    /// default item limit). Larger values are refused with
    /// [`Error::ValueTooLarge`] before anything is sent; a larger value in a
    /// reply is a protocol error. At most [`MAX_ITEM_SIZE_LIMIT`] (1 GiB):
    /// `build` refuses more.
    pub fn max_item_size(mut self, bytes: usize) -> Self {
        self.max_item_size = bytes;
        self
    }

    /// How many keys each server's record of owed invalidations holds
    /// (default [`DEFAULT_PENDING_INVALIDATIONS`], 10,000).
    ///
    /// A write or removal that a server did not take (it failed or timed
    /// out there, it was never sent because the server was marked dead, or
    /// it went to another server while this one was ejected) leaves that
    /// server with the key's older copy. The client records the key, and
    /// deletes it on that server before sending the server anything else,
    /// so the older copy is never read again once the server is back. When
    /// more distinct keys are owed than this, the record is replaced by a
    /// `flush_all` of that server when it returns: its items are all
    /// dropped (a cache's misses), never a write silently forgotten. `0`
    /// means always flush.
    ///
    /// Bounds of the guarantee: the invalidations are sent before this
    /// client's next request to the server; other processes (with their
    /// own records) may read the older copy until then, so a process that
    /// writes during an outage should keep talking to the pool. A write
    /// that timed out may still reach the server later than the deletion
    /// that owed it (a server holding it in a stalled connection's buffer
    /// runs it when it resumes): it then stores the value this client last
    /// wrote, not an older one. `incr`, `decr` and `touch` are not
    /// recorded.
    pub fn pending_invalidations(mut self, limit: usize) -> Self {
        self.pending_invalidations = limit;
        self
    }

    /// The codec that turns values into bytes and flags.
    ///
    /// To compress large values as pymemcache does, pass
    /// `DefaultCodec::new().with_compression_threshold(Some(400))`.
    pub fn codec<C2: Codec>(self, codec: C2) -> ClientBuilder<C2> {
        ClientBuilder {
            servers: self.servers,
            pool_size: self.pool_size,
            connect_timeout: self.connect_timeout,
            io_timeout: self.io_timeout,
            request_timeout: self.request_timeout,
            pool_timeout: self.pool_timeout,
            key_prefix: self.key_prefix,
            distribution: self.distribution,
            retry_attempts: self.retry_attempts,
            dead_timeout: self.dead_timeout,
            max_item_size: self.max_item_size,
            pending_invalidations: self.pending_invalidations,
            codec,
        }
    }

    /// Checks the configuration and builds the client.
    ///
    /// No connection is opened here: each server is connected on first use,
    /// so servers that are down now do not fail the build.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when no server is given, an address does not parse,
    /// or a setting is out of range (a zero pool size, timeout, retry count or
    /// item size, or a key prefix that is not a valid key part).
    pub fn build(self) -> Result<Client<C>> {
        if self.servers.is_empty() {
            return Err(ConfigError::NoServers.into());
        }
        let invalid = |setting, expected| {
            Err(Error::Config(ConfigError::InvalidSetting {
                setting,
                expected,
            }))
        };
        if self.pool_size == 0 {
            return invalid("pool_size", "at least 1");
        }
        if self.connect_timeout.is_zero() {
            return invalid("connect_timeout", "a non-zero duration");
        }
        if self.io_timeout.is_zero() {
            return invalid("io_timeout", "a non-zero duration");
        }
        if self.pool_timeout.is_zero() {
            return invalid("pool_timeout", "a non-zero duration");
        }
        let request_timeout = self
            .request_timeout
            .unwrap_or_else(|| self.io_timeout.saturating_mul(2));
        if request_timeout.is_zero() {
            return invalid("request_timeout", "a non-zero duration");
        }
        if self.retry_attempts == 0 {
            return invalid("retry_attempts", "at least 1");
        }
        if self.max_item_size == 0 || self.max_item_size > MAX_ITEM_SIZE_LIMIT {
            return invalid("max_item_size", "between 1 byte and 1 GiB");
        }
        if !self.key_prefix.is_empty()
            && (self.key_prefix.len() >= MAX_KEY_LEN
                || ValidKey::new(self.key_prefix.as_bytes()).is_err())
        {
            return invalid(
                "key_prefix",
                "under 250 bytes with no spaces or control bytes",
            );
        }
        let specs = self
            .servers
            .iter()
            .map(|s| ServerSpec::parse(s))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        for (i, spec) in specs.iter().enumerate() {
            if specs[..i].iter().any(|other| other.label == spec.label) {
                return Err(ConfigError::InvalidAddress {
                    address: self.servers[i].clone(),
                }
                .into());
            }
        }
        let ring = Ring::new(
            self.distribution,
            specs.iter().map(|s| (s.ring_label(), s.weight)),
        );
        let config = ConnConfig {
            connect_timeout: self.connect_timeout,
            io_timeout: self.io_timeout,
            max_value: self.max_item_size,
        };
        debug_assert_eq!(ring.len(), specs.len());
        let pools = specs
            .into_iter()
            .map(|spec| Pool::new(spec, config, self.pool_size, self.pool_timeout))
            .collect();
        let pending = (0..ring.len())
            .map(|_| Pending::new(self.pending_invalidations))
            .collect();
        Ok(Client {
            inner: Arc::new(Inner {
                pools,
                pending,
                ring,
                prefix: self.key_prefix.into_bytes().into_boxed_slice(),
                codec: self.codec,
                max_item_size: self.max_item_size,
                retry_attempts: self.retry_attempts,
                dead_timeout: self.dead_timeout,
                request_timeout,
                epoch: Instant::now(),
            }),
        })
    }
}

/// A prefixed key, built on the stack.
struct KeyBuf {
    bytes: [u8; MAX_KEY_LEN],
}

impl KeyBuf {
    fn new() -> KeyBuf {
        KeyBuf {
            bytes: [0; MAX_KEY_LEN],
        }
    }
}

/// Whether a request may be sent again on a new connection after a pooled
/// one that passed its liveness check still turned out to be dead (see
/// `Pool::run`).
const IDEMPOTENT: bool = true;

/// What a single-key request does to its item: whether it may be sent
/// again after a stale pooled connection (see `Pool::run`), and whether a
/// failure leaves the server owing an invalidation of the key (see
/// [`pending`](super::pending)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    /// Reads only: safe to send twice.
    Read,
    /// Changes state a resend would change again (a recompute token, a
    /// counter), and nothing a stale copy could undo.
    ReadOnce,
    /// Writes or removes the item, unconditionally: safe to send twice.
    Write,
    /// Writes conditionally (a CAS, `add`), or creates a lease placeholder:
    /// not sent twice.
    WriteOnce,
}

impl Access {
    fn idempotent(self) -> bool {
        matches!(self, Access::Read | Access::Write)
    }

    fn writes(self) -> bool {
        matches!(self, Access::Write | Access::WriteOnce)
    }
}

/// Whether a write that failed with `e` may or may not have reached the
/// server (or may still land): a failure a retry could cure, or a reply
/// that made no sense. Not a refusal made before sending, nor the server's
/// own answer (`SERVER_ERROR`, `CLIENT_ERROR`, not stored), which the caller
/// is told of and which changed nothing it did not report.
pub(crate) fn leaves_doubt(e: &Error) -> bool {
    e.is_retryable() || matches!(e, Error::Protocol(_))
}

impl Client<DefaultCodec> {
    /// A builder with the defaults listed on [`ClientBuilder`].
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use nearfar::memcached::{Client, Distribution};
    ///
    /// let client = Client::builder()
    ///     .servers(["10.0.0.1:11211", "10.0.0.2:11211:2", "/run/memcached.sock"])
    ///     .distribution(Distribution::Ketama)
    ///     .pool_size(4)
    ///     .io_timeout(Duration::from_millis(250))
    ///     .key_prefix("app:")
    ///     .build()?; // connects lazily: no server needs to be up yet
    /// # Ok::<(), nearfar::memcached::Error>(())
    /// ```
    pub fn builder() -> ClientBuilder<DefaultCodec> {
        ClientBuilder::default()
    }
}

impl<C: Codec> Client<C> {
    // ---- plumbing -------------------------------------------------------

    /// Nanoseconds since the client was built (the clock of server health).
    fn now(&self) -> u64 {
        u64::try_from(self.inner.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// The deadline of a call starting now (see
    /// [`ClientBuilder::request_timeout`]).
    fn deadline(&self) -> Instant {
        later(Instant::now(), self.inner.request_timeout)
    }

    /// Prefixes `key` into `buf` and validates the result, once.
    fn key<'b>(&self, key: &str, buf: &'b mut KeyBuf) -> Result<ValidKey<'b>> {
        let prefix = &self.inner.prefix;
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
    /// gave it, without the key prefix (see [`ClientBuilder::key_prefix`]).
    fn placement<'k>(&self, prefixed: &'k [u8]) -> &'k [u8] {
        prefixed.get(self.inner.prefix.len()..).unwrap_or(prefixed)
    }

    /// The index of the live server for `key` (given without the prefix).
    fn route(&self, key: &[u8]) -> Result<usize> {
        self.route_at(key, self.now(), &mut Vec::new())
    }

    /// The index of the server for `key` among those `routable` accepts.
    fn pick(&self, key: &[u8], routable: impl Fn(usize) -> bool) -> Option<usize> {
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
    fn route_at(&self, key: &[u8], now: u64, probing: &mut Vec<usize>) -> Result<usize> {
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
            match pools[server].health.claim(now, self.inner.dead_timeout) {
                Claim::Live => return Ok(server),
                Claim::Probe => {
                    probing.push(server);
                    return Ok(server);
                }
                Claim::Taken => taken.push(server),
            }
        }
    }

    /// Runs `op` on a connection to server `index`, within the call's
    /// `deadline`, and records the outcome in the server's health.
    fn on_server<T>(
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
            Err(Error::Connect { .. } | Error::Timeout | Error::Io(_)) => {
                let dead = pool.health.failed(
                    self.now(),
                    self.inner.retry_attempts,
                    self.inner.dead_timeout,
                );
                if dead {
                    pool.clear_idle();
                }
            }
            // Busy, or garbage: neither proves the server up nor down.
            Err(Error::PoolTimeout | Error::Protocol(_)) => {}
            _ => pool.health.succeeded(),
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
    fn single<T>(
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
    fn home(&self, key: &[u8]) -> usize {
        self.pick(key, |_| true).unwrap_or(0)
    }

    /// Records that server `index` must forget `key` (prefixed) before it
    /// serves again; `instead`: the server that took the write.
    fn owe(&self, index: usize, key: &[u8], instead: Option<usize>) {
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
    fn settle(&self, index: usize, deadline: Instant) -> (Result<()>, bool) {
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

    fn decode<V: DeserializeOwned>(&self, data: &[u8], flags: &ReturnFlags<'_>) -> Result<V> {
        let client_flags = flags
            .client_flags
            .ok_or(ProtocolError::Malformed { reply: "VA" })?;
        Ok(self.inner.codec.decode(data, client_flags)?)
    }

    fn check_size(&self, size: usize) -> Result<()> {
        let max = self.inner.max_item_size;
        if size > max {
            Err(Error::ValueTooLarge { size, max })
        } else {
            Ok(())
        }
    }

    /// Stores with a meta set; `Ok(true)` on `HD`, `Ok(false)` on `NS`, `EX`
    /// or `NF`.
    fn store(
        &self,
        key: &str,
        data: &[u8],
        flags: u32,
        ttl: Duration,
        mode: MetaSetMode,
        compare_cas: Option<u64>,
    ) -> Result<bool> {
        let set_flags = store_flags(flags, ttl, mode, compare_cas);
        Ok(matches!(
            self.meta_store(key, data, &set_flags)?,
            Stored::Yes(_)
        ))
    }

    /// Sends one meta set with `set_flags` and reads its outcome (with the
    /// stored item's new CAS unique when the reply carries one: the callers
    /// that set `return_cas` treat its absence as a protocol error).
    fn meta_store(&self, key: &str, data: &[u8], set_flags: &MetaSetFlags) -> Result<Stored> {
        self.check_size(data.len())?;
        let access = if set_flags.compare_cas.is_none() && set_flags.mode != MetaSetMode::Add {
            Access::Write
        } else {
            Access::WriteOnce
        };
        self.single(
            key,
            access,
            |out, key, opaque| encode_meta_set(out, key, data, &set_flags.tagged(opaque)),
            |reply| match reply {
                Reply::Meta(MetaReply {
                    status: MetaStatus::Success,
                    flags,
                }) => Ok(Stored::Yes(flags.cas.map(Cas))),
                Reply::Meta(MetaReply {
                    status: MetaStatus::NotStored | MetaStatus::Exists | MetaStatus::NotFound,
                    ..
                }) => Ok(Stored::No),
                other => Err(Error::from_reply(&other)),
            },
        )
    }

    // ---- typed operations ---------------------------------------------

    /// Reads and decodes the value stored under `key`; `None` on a miss.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidKey`] for a key memcached cannot take (checked before
    /// sending), [`Error::Codec`] when the stored bytes do not decode into a
    /// `V`, and the connection errors ([`Error::Connect`], [`Error::Io`],
    /// [`Error::Timeout`], [`Error::Protocol`], [`Error::AllServersDown`], ...).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # let client = nearfar::memcached::Client::builder().servers(["127.0.0.1:11211"]).build()?;
    /// let visits: Option<u64> = client.get("visits")?;
    /// # Ok::<(), nearfar::memcached::Error>(())
    /// ```
    pub fn get<V: DeserializeOwned>(&self, key: &str) -> Result<Option<V>> {
        let flags = MetaGetFlags {
            value: true,
            flags: true,
            ..MetaGetFlags::default()
        };
        self.single(
            key,
            Access::Read,
            |out, key, opaque| encode_meta_get(out, key, &flags.tagged(opaque)),
            |reply| match reply {
                Reply::Meta(MetaReply {
                    status: MetaStatus::Value(data),
                    flags,
                }) => self.decode(data, &flags).map(Some),
                Reply::Meta(MetaReply {
                    status: MetaStatus::Miss,
                    ..
                }) => Ok(None),
                other => Err(Error::from_reply(&other)),
            },
        )
    }

    /// Stores `value` under `key` for `ttl`.
    ///
    /// `Duration::ZERO` means no expiry; a TTL over 30 days is sent as an
    /// absolute unix time (memcached reads larger relative values that way),
    /// capped at memcached's largest time, 2038-01-19 (`i32::MAX`), so a very
    /// long TTL such as `Duration::MAX` means "as long as the server can
    /// keep it"; fractions of a second are rounded up.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidKey`], [`Error::Codec`] when the value cannot be
    /// encoded, [`Error::ValueTooLarge`] when the encoded value is over the
    /// item limit (nothing is sent), [`Error::Server`] when the server refuses
    /// it, [`Error::NotStored`] when it declines to store it, and the
    /// connection errors.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # let client = nearfar::memcached::Client::builder().servers(["127.0.0.1:11211"]).build()?;
    /// client.set("user:42:name", "Ada", Duration::from_secs(300))?;
    /// client.set("visits", &1_000u64, Duration::ZERO)?;
    /// # Ok::<(), nearfar::memcached::Error>(())
    /// ```
    pub fn set<V: Serialize + ?Sized>(&self, key: &str, value: &V, ttl: Duration) -> Result<()> {
        let encoded = self.inner.codec.encode(value)?;
        self.set_raw(key, &encoded.data, encoded.flags, ttl)
    }

    /// Stores `value` only if `key` holds nothing; `Ok(false)` if it does.
    ///
    /// # Errors
    ///
    /// As [`Client::set`].
    pub fn add<V: Serialize + ?Sized>(&self, key: &str, value: &V, ttl: Duration) -> Result<bool> {
        let encoded = self.inner.codec.encode(value)?;
        self.store(
            key,
            &encoded.data,
            encoded.flags,
            ttl,
            MetaSetMode::Add,
            None,
        )
    }

    /// Stores `value` only if `key` already holds a value; `Ok(false)` if not.
    ///
    /// # Errors
    ///
    /// As [`Client::set`].
    pub fn replace<V: Serialize + ?Sized>(
        &self,
        key: &str,
        value: &V,
        ttl: Duration,
    ) -> Result<bool> {
        let encoded = self.inner.codec.encode(value)?;
        self.store(
            key,
            &encoded.data,
            encoded.flags,
            ttl,
            MetaSetMode::Replace,
            None,
        )
    }

    /// Stores `value` only if the item's CAS unique is still `cas`.
    ///
    /// Returns `Ok(false)` when the item was changed (or removed) since the
    /// CAS was read.
    ///
    /// # Errors
    ///
    /// As [`Client::set`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # let client = nearfar::memcached::Client::builder().servers(["127.0.0.1:11211"]).build()?;
    /// if let Some((count, cas)) = client.gets::<u64>("counter")? {
    ///     let stored = client.cas("counter", &(count + 1), Duration::ZERO, cas)?;
    ///     println!("updated: {stored}");
    /// }
    /// # Ok::<(), nearfar::memcached::Error>(())
    /// ```
    pub fn cas<V: Serialize + ?Sized>(
        &self,
        key: &str,
        value: &V,
        ttl: Duration,
        cas: Cas,
    ) -> Result<bool> {
        let encoded = self.inner.codec.encode(value)?;
        self.store(
            key,
            &encoded.data,
            encoded.flags,
            ttl,
            MetaSetMode::Set,
            Some(cas.0),
        )
    }

    /// Stores `value` under `key` for `ttl` (as [`Client::set`] does) and
    /// returns the CAS unique the server gave the new item, in the same
    /// round trip (the meta set's `c` flag).
    ///
    /// The CAS is what [`Client::gets`], [`Client::meta_get`] and
    /// [`Client::cas_only`] report until the item changes again, so a copy
    /// of the value kept elsewhere can later be checked for being current
    /// without reading the item back first.
    ///
    /// # Errors
    ///
    /// As [`Client::set`]: [`Error::InvalidKey`], [`Error::Codec`],
    /// [`Error::ValueTooLarge`] (nothing is sent), [`Error::Server`],
    /// [`Error::NotStored`], and the connection errors; a reply without the
    /// CAS is an [`Error::Protocol`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # let client = nearfar::memcached::Client::builder().servers(["127.0.0.1:11211"]).build()?;
    /// let cas = client.set_returning_cas("user:42:name", "Ada", Duration::from_secs(300))?;
    /// // Later: is the copy we wrote still the stored one?
    /// if client.cas_only("user:42:name")? != Some(cas) {
    ///     println!("changed since we wrote it");
    /// }
    /// # Ok::<(), nearfar::memcached::Error>(())
    /// ```
    pub fn set_returning_cas<V: Serialize + ?Sized>(
        &self,
        key: &str,
        value: &V,
        ttl: Duration,
    ) -> Result<Cas> {
        let encoded = self.inner.codec.encode(value)?;
        let set_flags = MetaSetFlags {
            return_cas: true,
            ..store_flags(encoded.flags, ttl, MetaSetMode::Set, None)
        };
        match self.meta_store(key, &encoded.data, &set_flags)? {
            Stored::Yes(Some(cas)) => Ok(cas),
            Stored::Yes(None) => Err(ProtocolError::Malformed { reply: "HD" }.into()),
            Stored::No => Err(Error::NotStored),
        }
    }

    /// Stores `value` only if the item's CAS unique is still `cas` (as
    /// [`Client::cas`] does), and returns the stored item's new CAS unique.
    ///
    /// `Ok(Some(new_cas))` when the value was stored; `Ok(None)` when the
    /// item changed since `cas` was read, or is gone. The new CAS is the one
    /// [`Client::gets`] and [`Client::cas_only`] then report, so a caller
    /// that keeps a copy of the value (a near cache, say) can revalidate it
    /// later without reading the item back.
    ///
    /// # Errors
    ///
    /// As [`Client::set`]: [`Error::InvalidKey`], [`Error::Codec`],
    /// [`Error::ValueTooLarge`] (nothing is sent), [`Error::Server`], and the
    /// connection errors; a reply without the CAS is an [`Error::Protocol`].
    /// Not sent again after a connection failure, as the first attempt may
    /// have stored the value.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # let client = nearfar::memcached::Client::builder().servers(["127.0.0.1:11211"]).build()?;
    /// if let Some((count, cas)) = client.gets::<u64>("counter")? {
    ///     match client.compare_and_set("counter", &(count + 1), Duration::ZERO, cas)? {
    ///         Some(new_cas) => println!("stored, now at {new_cas:?}"),
    ///         None => println!("changed meanwhile: read it again"),
    ///     }
    /// }
    /// # Ok::<(), nearfar::memcached::Error>(())
    /// ```
    pub fn compare_and_set<V: Serialize + ?Sized>(
        &self,
        key: &str,
        value: &V,
        ttl: Duration,
        cas: Cas,
    ) -> Result<Option<Cas>> {
        let encoded = self.inner.codec.encode(value)?;
        let set_flags = MetaSetFlags {
            return_cas: true,
            ..store_flags(encoded.flags, ttl, MetaSetMode::Set, Some(cas.0))
        };
        match self.meta_store(key, &encoded.data, &set_flags)? {
            Stored::Yes(Some(cas)) => Ok(Some(cas)),
            Stored::Yes(None) => Err(ProtocolError::Malformed { reply: "HD" }.into()),
            Stored::No => Ok(None),
        }
    }

    /// Removes `key`; `Ok(false)` if it held nothing.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidKey`] and the connection errors.
    pub fn delete(&self, key: &str) -> Result<bool> {
        self.meta_delete(key, &MetaDeleteFlags::default(), Access::Write)
    }

    /// One meta delete (`md`) with `flags`: `Ok(true)` when it applied,
    /// `Ok(false)` when the key held nothing or its CAS did not match.
    fn meta_delete(&self, key: &str, flags: &MetaDeleteFlags, access: Access) -> Result<bool> {
        self.single(
            key,
            access,
            |out, key, opaque| encode_meta_delete(out, key, &flags.tagged(opaque)),
            |reply| match meta_status(&reply) {
                Some(MetaStatus::Success) => Ok(true),
                Some(MetaStatus::NotFound | MetaStatus::Exists) => Ok(false),
                _ => Err(Error::from_reply(&reply)),
            },
        )
    }

    /// Removes `key` only if its CAS unique is still `cas`; `Ok(false)` if
    /// it holds nothing or was changed since the CAS was read.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidKey`] and the connection errors.
    pub fn delete_if_cas(&self, key: &str, cas: Cas) -> Result<bool> {
        let flags = MetaDeleteFlags {
            compare_cas: Some(cas.0),
            ..MetaDeleteFlags::default()
        };
        self.meta_delete(key, &flags, Access::WriteOnce)
    }

    /// Gives `key` a new TTL (same rules as [`Client::set`]); `Ok(false)` if
    /// it holds nothing.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidKey`] and the connection errors.
    pub fn touch(&self, key: &str, ttl: Duration) -> Result<bool> {
        // Not recorded as a write: a touch the server missed leaves no
        // older value to be read. A meta get that only sets the TTL (`mg <key> T<ttl>`): unlike the
        // text `touch`, its reply carries the key and token to match.
        let flags = MetaGetFlags {
            update_ttl: Some(exptime_now(ttl)),
            ..MetaGetFlags::default()
        };
        self.single(
            key,
            Access::Read,
            |out, key, opaque| encode_meta_get(out, key, &flags.tagged(opaque)),
            |reply| match meta_status(&reply) {
                Some(MetaStatus::Success) => Ok(true),
                Some(MetaStatus::Miss) => Ok(false),
                _ => Err(Error::from_reply(&reply)),
            },
        )
    }

    /// `incr`/`decr` as a meta arithmetic command (`ma`), whose reply,
    /// unlike the text commands', carries the key and token to match.
    fn arithmetic(&self, key: &str, delta: u64, incr: bool) -> Result<Option<u64>> {
        let flags = MetaArithmeticFlags {
            mode: if incr {
                ArithmeticMode::Incr
            } else {
                ArithmeticMode::Decr
            },
            delta: Some(delta),
            value: true,
            ..MetaArithmeticFlags::default()
        };
        self.single(
            key,
            Access::ReadOnce,
            |out, key, opaque| encode_meta_arithmetic(out, key, &flags.tagged(opaque)),
            |reply| match meta_status(&reply) {
                Some(MetaStatus::Value(number)) => Ok(Some(parse_counter(number)?)),
                Some(MetaStatus::NotFound) => Ok(None),
                _ => Err(Error::from_reply(&reply)),
            },
        )
    }

    /// Adds `delta` to the decimal number stored under `key` (wrapping at
    /// 2^64, as memcached does) and returns the new value; `None` if the key
    /// holds nothing. Store the starting number with [`Client::set`] (as an
    /// integer, or its decimal text).
    ///
    /// # Errors
    ///
    /// [`Error::Client`] when the stored value is not a number, plus
    /// [`Error::InvalidKey`] and the connection errors.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # let client = nearfar::memcached::Client::builder().servers(["127.0.0.1:11211"]).build()?;
    /// client.set("hits", &0u64, Duration::ZERO)?;
    /// assert_eq!(client.incr("hits", 5)?, Some(5));
    /// # Ok::<(), nearfar::memcached::Error>(())
    /// ```
    pub fn incr(&self, key: &str, delta: u64) -> Result<Option<u64>> {
        self.arithmetic(key, delta, true)
    }

    /// Subtracts `delta` from the number stored under `key`, stopping at 0,
    /// and returns the new value; `None` if the key holds nothing.
    ///
    /// # Errors
    ///
    /// As [`Client::incr`].
    pub fn decr(&self, key: &str, delta: u64) -> Result<Option<u64>> {
        self.arithmetic(key, delta, false)
    }

    /// Reads a value with its CAS unique, for a later [`Client::cas`].
    ///
    /// # Errors
    ///
    /// As [`Client::get`].
    pub fn gets<V: DeserializeOwned>(&self, key: &str) -> Result<Option<(V, Cas)>> {
        Ok(self.meta_get::<V>(key)?.map(|item| (item.value, item.cas)))
    }

    /// Reads a value with its CAS unique and remaining TTL (one `mg` request).
    ///
    /// # Errors
    ///
    /// As [`Client::get`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # let client = nearfar::memcached::Client::builder().servers(["127.0.0.1:11211"]).build()?;
    /// if let Some(item) = client.meta_get::<String>("session")? {
    ///     println!("{} (cas {:?}, expires in {:?})", item.value, item.cas, item.ttl);
    /// }
    /// # Ok::<(), nearfar::memcached::Error>(())
    /// ```
    pub fn meta_get<V: DeserializeOwned>(&self, key: &str) -> Result<Option<MetaItem<V>>> {
        let flags = MetaGetFlags {
            value: true,
            flags: true,
            cas: true,
            ttl: true,
            ..MetaGetFlags::default()
        };
        self.single(
            key,
            Access::Read,
            |out, key, opaque| encode_meta_get(out, key, &flags.tagged(opaque)),
            |reply| match reply {
                Reply::Meta(MetaReply {
                    status: MetaStatus::Value(data),
                    flags,
                }) => Ok(Some(MetaItem {
                    value: self.decode(data, &flags)?,
                    cas: cas_of(&flags)?,
                    ttl: ttl_of(&flags)?,
                })),
                Reply::Meta(MetaReply {
                    status: MetaStatus::Miss,
                    ..
                }) => Ok(None),
                other => Err(Error::from_reply(&other)),
            },
        )
    }

    /// Reads only the CAS unique of `key` (no value is sent back): a cheap
    /// check whether a copy held elsewhere is still current.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidKey`] and the connection errors.
    pub fn cas_only(&self, key: &str) -> Result<Option<Cas>> {
        let flags = MetaGetFlags {
            cas: true,
            ..MetaGetFlags::default()
        };
        self.single(
            key,
            Access::Read,
            |out, key, opaque| encode_meta_get(out, key, &flags.tagged(opaque)),
            |reply| match reply {
                Reply::Meta(MetaReply {
                    status: MetaStatus::Success,
                    flags,
                }) => cas_of(&flags).map(Some),
                Reply::Meta(MetaReply {
                    status: MetaStatus::Miss,
                    ..
                }) => Ok(None),
                other => Err(Error::from_reply(&other)),
            },
        )
    }

    /// Reads `key`, or takes the lease to compute it (stampede protection).
    ///
    /// On a miss the server stores an empty placeholder for `lease_ttl` and
    /// exactly one caller gets [`Lease::Won`]; it should compute the value
    /// and store it with [`Client::cas`] and the won CAS. Others get [`Lease::Wait`] until then, or
    /// [`Lease::Hit`] with `stale: true` when an invalidated value is still
    /// there. The lease lapses after `lease_ttl` (at least one second) if the
    /// winner never stores.
    ///
    /// A stored value that is empty with client flags 0 (an empty byte
    /// string) cannot be told from a placeholder while a lease is held on
    /// it or after it was [invalidated](Client::invalidate): it reads as
    /// [`Lease::Wait`] or [`Lease::Won`] with no `previous`. Such a value
    /// cannot be stored through leases.
    ///
    /// # Errors
    ///
    /// As [`Client::get`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// use nearfar::memcached::Lease;
    /// # let client = nearfar::memcached::Client::builder().servers(["127.0.0.1:11211"]).build()?;
    /// # fn expensive() -> String { String::new() }
    /// let value: Option<String> = match client.get_or_lease("report", Duration::from_secs(10))? {
    ///     Lease::Hit { value, .. } => Some(value),
    ///     Lease::Won { cas, .. } => {
    ///         let fresh = expensive();
    ///         // Not stored if the key was written or removed meanwhile.
    ///         client.cas("report", &fresh, Duration::from_secs(300), cas)?;
    ///         Some(fresh)
    ///     }
    ///     Lease::Wait => None, // someone else is computing it: retry shortly
    /// };
    /// # Ok::<(), nearfar::memcached::Error>(())
    /// ```
    pub fn get_or_lease<V: DeserializeOwned>(
        &self,
        key: &str,
        lease_ttl: Duration,
    ) -> Result<Lease<V>> {
        Ok(self.lease(key, lease_ttl, None)?.0)
    }

    /// [`Client::get_or_lease`], with the CAS unique and remaining TTL of
    /// the item read: for [`Lease::Wait`], those of the placeholder another
    /// caller holds, which tell how old it is and let a waiter take an
    /// abandoned one over (delete it by its CAS and lease again).
    pub(crate) fn get_or_lease_seen<V: DeserializeOwned>(
        &self,
        key: &str,
        lease_ttl: Duration,
    ) -> Result<(Lease<V>, Seen)> {
        self.lease(key, lease_ttl, None)
    }

    /// Like [`Client::get_or_lease`], and also hands one caller
    /// [`Lease::Won`] (with the current value as `previous`) once the item
    /// has less than `recache_within` left to live, so it is recomputed
    /// before it expires.
    ///
    /// # Errors
    ///
    /// As [`Client::get`].
    pub fn get_or_lease_with_recache<V: DeserializeOwned>(
        &self,
        key: &str,
        lease_ttl: Duration,
        recache_within: Duration,
    ) -> Result<Lease<V>> {
        Ok(self
            .lease(key, lease_ttl, Some(exptime_now(recache_within).max(1)))?
            .0)
    }

    fn lease<V: DeserializeOwned>(
        &self,
        key: &str,
        lease_ttl: Duration,
        recache_ttl: Option<u32>,
    ) -> Result<(Lease<V>, Seen)> {
        let vivify = Some(exptime_now(lease_ttl).max(1));
        // With `N` the server answers every request with an item.
        self.lease_read(key, vivify, recache_ttl, true, |data, flags| {
            self.decode(data, flags)
        })?
        .ok_or(Error::Protocol(ProtocolError::UnexpectedReply {
            reply: "EN",
        }))
    }

    /// Reads `key` like [`Client::meta_get`], but reports the lease state
    /// as [`Client::get_or_lease`] does, without creating a placeholder on a
    /// miss (`Ok(None)`).
    ///
    /// * [`Lease::Wait`]: another caller holds the lease on a placeholder
    ///   (the value is being computed).
    /// * [`Lease::Hit`]: a value, `stale` if it was invalidated.
    /// * [`Lease::Won`] (with `previous` set): the item was invalidated and
    ///   no one had taken its recompute token, so memcached handed it to this
    ///   read (it does so on any read of a stale item). A caller that will
    ///   not recompute should [`delete`](Client::delete) the key, or others
    ///   serve the stale value until it expires.
    ///
    /// # Errors
    ///
    /// As [`Client::get`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use nearfar::memcached::Lease;
    /// # let client = nearfar::memcached::Client::builder().servers(["127.0.0.1:11211"]).build()?;
    /// match client.peek_lease::<String>("report")? {
    ///     Some(Lease::Hit { value, stale, .. }) => println!("{value} (stale: {stale})"),
    ///     Some(Lease::Wait) => println!("being computed"),
    ///     Some(Lease::Won { .. }) => println!("stale, and ours to recompute"),
    ///     None => println!("missing"),
    /// }
    /// # Ok::<(), nearfar::memcached::Error>(())
    /// ```
    pub fn peek_lease<V: DeserializeOwned>(&self, key: &str) -> Result<Option<Lease<V>>> {
        let read = self.lease_read(key, None, None, true, |data, flags| {
            self.decode(data, flags)
        })?;
        Ok(read.map(|(lease, _)| lease))
    }

    /// Like [`Client::peek_lease`] without the value bytes: the CAS unique,
    /// remaining TTL and lease state of `key` (`value` is `()`), a cheap
    /// check whether a copy held elsewhere is still current that, unlike
    /// [`Client::cas_only`], tells a stale item and its recompute token apart.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidKey`] and the connection errors.
    pub fn peek_lease_cas(&self, key: &str) -> Result<Option<Lease<()>>> {
        let read = self.lease_read(key, None, None, false, |_, _| Ok(()))?;
        Ok(read.map(|(lease, _)| lease))
    }

    /// The meta get behind the lease family: `vivify` and `recache` are the
    /// `N` and `R` tokens; `with_value` asks for the data block (else the
    /// item's size tells a placeholder apart). With `N` it is a write: a
    /// request that failed may still create a placeholder nobody fills, so
    /// the server owes the key's invalidation (see [`Client::single`]).
    fn lease_read<V>(
        &self,
        key: &str,
        vivify: Option<u32>,
        recache_ttl: Option<u32>,
        with_value: bool,
        decode: impl Fn(&[u8], &ReturnFlags<'_>) -> Result<V>,
    ) -> Result<Option<(Lease<V>, Seen)>> {
        let flags = MetaGetFlags {
            value: with_value,
            flags: true,
            cas: true,
            ttl: true,
            size: !with_value,
            vivify_ttl: vivify,
            recache_ttl,
            ..MetaGetFlags::default()
        };
        let access = if vivify.is_some() {
            Access::WriteOnce
        } else {
            Access::ReadOnce
        };
        self.single(
            key,
            access,
            |out, key, opaque| encode_meta_get(out, key, &flags.tagged(opaque)),
            |reply| {
                let (data, flags) = match reply {
                    Reply::Meta(MetaReply {
                        status: MetaStatus::Value(data),
                        flags,
                    }) if with_value => (data, flags),
                    Reply::Meta(MetaReply {
                        status: MetaStatus::Success,
                        flags,
                    }) if !with_value => (&[][..], flags),
                    Reply::Meta(MetaReply {
                        status: MetaStatus::Miss,
                        ..
                    }) => return Ok(None),
                    other => return Err(Error::from_reply(&other)),
                };
                let cas = cas_of(&flags)?;
                let seen = Seen {
                    cas,
                    ttl: ttl_of(&flags)?,
                };
                let empty = if with_value {
                    data.is_empty()
                } else {
                    flags.size == Some(0)
                };
                // A vivified placeholder: empty with client flags 0, stale
                // or not (a placeholder invalidated while its lease is
                // held is still no value).
                let placeholder = empty && flags.client_flags == Some(0);
                if flags.won {
                    // The server handed this caller the lease: keep it even
                    // when the outdated value does not decode (written by
                    // another client, or an older version of `V`).
                    let previous = if placeholder {
                        None
                    } else {
                        match decode(data, &flags) {
                            Ok(value) => Some(value),
                            Err(Error::Codec(_)) => None,
                            Err(e) => return Err(e),
                        }
                    };
                    Ok(Some((Lease::Won { previous, cas }, seen)))
                } else if placeholder && (flags.win_taken || flags.stale) {
                    Ok(Some((Lease::Wait, seen)))
                } else {
                    let hit = Lease::Hit {
                        value: decode(data, &flags)?,
                        cas,
                        stale: flags.stale,
                        ttl: seen.ttl,
                    };
                    Ok(Some((hit, seen)))
                }
            },
        )
    }

    /// Marks `key` stale instead of removing it: the value stays readable for
    /// `stale_ttl`, and the next [`Client::get_or_lease`] wins the lease to
    /// recompute it while others see [`Lease::Hit`] with `stale: true`.
    /// Returns `Ok(false)` if the key held nothing.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidKey`] and the connection errors.
    pub fn invalidate(&self, key: &str, stale_ttl: Duration) -> Result<bool> {
        let flags = MetaDeleteFlags {
            invalidate: true,
            ttl: Some(exptime_now(stale_ttl).max(1)),
            ..MetaDeleteFlags::default()
        };
        self.meta_delete(key, &flags, Access::Write)
    }

    /// Like [`Client::invalidate`], but only if the item's CAS unique is
    /// still `cas`: `Ok(false)` when it changed, or holds nothing. For
    /// marking an item stale again after reading it, without marking a
    /// value written since.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidKey`] and the connection errors.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # let client = nearfar::memcached::Client::builder().servers(["127.0.0.1:11211"]).build()?;
    /// if let Some(cas) = client.cas_only("report")? {
    ///     client.invalidate_if_cas("report", Duration::from_secs(30), cas)?;
    /// }
    /// # Ok::<(), nearfar::memcached::Error>(())
    /// ```
    pub fn invalidate_if_cas(&self, key: &str, stale_ttl: Duration, cas: Cas) -> Result<bool> {
        let flags = MetaDeleteFlags {
            invalidate: true,
            ttl: Some(exptime_now(stale_ttl).max(1)),
            compare_cas: Some(cas.0),
            ..MetaDeleteFlags::default()
        };
        self.meta_delete(key, &flags, Access::WriteOnce)
    }

    // ---- raw operations -------------------------------------------------

    /// Reads the bytes and client flags stored under `key`, undecoded.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidKey`] and the connection errors.
    pub fn get_raw(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>> {
        let flags = MetaGetFlags {
            value: true,
            flags: true,
            ..MetaGetFlags::default()
        };
        self.single(
            key,
            Access::Read,
            |out, key, opaque| encode_meta_get(out, key, &flags.tagged(opaque)),
            |reply| match reply {
                Reply::Meta(MetaReply {
                    status: MetaStatus::Value(data),
                    flags,
                }) => {
                    let client_flags = flags
                        .client_flags
                        .ok_or(ProtocolError::Malformed { reply: "VA" })?;
                    Ok(Some((data.to_vec(), client_flags)))
                }
                Reply::Meta(MetaReply {
                    status: MetaStatus::Miss,
                    ..
                }) => Ok(None),
                other => Err(Error::from_reply(&other)),
            },
        )
    }

    /// Stores `data` with client `flags` under `key`, unencoded.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidKey`], [`Error::ValueTooLarge`], [`Error::Server`],
    /// [`Error::NotStored`] and the connection errors.
    pub fn set_raw(&self, key: &str, data: &[u8], flags: u32, ttl: Duration) -> Result<()> {
        if self.store(key, data, flags, ttl, MetaSetMode::Set, None)? {
            Ok(())
        } else {
            Err(Error::NotStored)
        }
    }

    // ---- batches --------------------------------------------------------

    /// Reads many keys at once; the map holds the hits, by key as given.
    ///
    /// Keys are grouped by server; each server gets its keys in one
    /// multi-key `get` (128 keys per round trip), and the servers are queried
    /// in parallel. (A multi-key `get` costs memcached 1.6.18 less than the
    /// same keys as pipelined quiet meta gets: about 0.45x the time for 100
    /// keys, measured in `benches/far.rs`.)
    ///
    /// # Errors
    ///
    /// [`Error::InvalidKey`] if any key is invalid (nothing is sent), and the
    /// first error of any server (the whole call fails: a cache caller may
    /// treat that as all misses). A value that does not decode fails the call
    /// with [`Error::Codec`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # let client = nearfar::memcached::Client::builder().servers(["127.0.0.1:11211"]).build()?;
    /// let names = client.get_many::<String>(&["user:1", "user:2", "user:3"])?;
    /// for (key, name) in &names {
    ///     println!("{key} = {name}");
    /// }
    /// # Ok::<(), nearfar::memcached::Error>(())
    /// ```
    pub fn get_many<V: DeserializeOwned + Send>(
        &self,
        keys: &[impl AsRef<str>],
    ) -> Result<HashMap<String, V>> {
        self.fetch_many(keys, |data, flags| {
            Ok(self.inner.codec.decode::<V>(data, flags)?)
        })
    }

    /// Like [`Client::get_many`], without decoding: the map holds each hit's
    /// bytes and client flags.
    ///
    /// # Errors
    ///
    /// As [`Client::get_many`], without codec errors.
    pub fn get_many_raw(
        &self,
        keys: &[impl AsRef<str>],
    ) -> Result<HashMap<String, (Vec<u8>, u32)>> {
        self.fetch_many(keys, |data, flags| Ok((data.to_vec(), flags)))
    }

    fn fetch_many<V: Send>(
        &self,
        keys: &[impl AsRef<str>],
        decode: impl Fn(&[u8], u32) -> Result<V> + Sync,
    ) -> Result<HashMap<String, V>> {
        let batch = self.batch(keys.iter().map(AsRef::as_ref))?;
        let deadline = self.deadline();
        let found = self.per_server(&batch, |server, indices| {
            self.get_group(server, &batch, indices, &decode, deadline)
        })?;
        let mut out = HashMap::with_capacity(found.len());
        for (index, value) in found {
            if let Some(key) = keys.get(index) {
                out.insert(key.as_ref().to_owned(), value);
            }
        }
        Ok(out)
    }

    /// Stores many values with one TTL, grouped by server: each server gets
    /// its items pipelined, in round trips of at most 128 items or about
    /// 1 MiB, and the servers are written in parallel.
    ///
    /// # Errors
    ///
    /// Every key and value is checked and encoded before anything is sent:
    /// [`Error::InvalidKey`], [`Error::Codec`] and [`Error::ValueTooLarge`]
    /// refuse the whole batch. After that, the first error of any server
    /// ([`Error::NotStored`] for an item the server declined to store); the
    /// other items may have been stored.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # let client = nearfar::memcached::Client::builder().servers(["127.0.0.1:11211"]).build()?;
    /// client.set_many(&[("a", &1u32), ("b", &2u32)], Duration::from_secs(60))?;
    /// # Ok::<(), nearfar::memcached::Error>(())
    /// ```
    pub fn set_many<K: AsRef<str>, V: Serialize + ?Sized>(
        &self,
        items: &[(K, &V)],
        ttl: Duration,
    ) -> Result<()> {
        // Encoded and size-checked before routing: routing may claim the
        // probe of a server whose dead period just ended, and a refused
        // batch would leave that probe unresolved (the server kept out for
        // another dead period).
        let encoded = items
            .iter()
            .map(|(_, value)| {
                let encoded = self.inner.codec.encode(*value)?;
                self.check_size(encoded.data.len())?;
                Ok(encoded)
            })
            .collect::<Result<Vec<_>>>()?;
        let batch = match self.batch(items.iter().map(|(k, _)| k.as_ref())) {
            Err(Error::AllServersDown) => {
                // Every key was valid (routing comes after the checks):
                // the servers holding them owe their invalidation.
                for (key, _) in items {
                    self.owe_invalidation(key.as_ref());
                }
                return Err(Error::AllServersDown);
            }
            batch => batch?,
        };
        // Keys sent to a stand-in: their home server owes them (recorded
        // before sending, as `single` does).
        for (server, indices) in batch.groups.iter().enumerate() {
            for &index in indices {
                let key = batch.key(index)?;
                let home = self.home(self.placement(key.as_bytes()));
                if home != server {
                    self.owe(home, key.as_bytes(), Some(server));
                }
            }
        }
        let exptime = exptime_now(ttl);
        let deadline = self.deadline();
        // The bytes an item takes on the wire: its value, key and header.
        let wire_size = |index: usize| {
            encoded
                .get(index)
                .map_or(0, |item| item.data.len())
                .saturating_add(batch.ranges.get(index).map_or(0, Range::len))
                .saturating_add(48)
        };
        self.per_server(&batch, |server, indices| {
            let mut rest = indices;
            while !rest.is_empty() {
                let len = chunk_len(
                    rest.iter().map(|&index| wire_size(index)),
                    SET_MANY_CHUNK,
                    SET_MANY_CHUNK_BYTES,
                );
                let (chunk, tail) = rest.split_at(len.clamp(1, rest.len()));
                if let Err(e) = self.set_chunk(server, &batch, &encoded, chunk, exptime, deadline) {
                    if leaves_doubt(&e) {
                        // This chunk may or may not have landed; the rest
                        // of the server's items were never sent.
                        for &index in rest {
                            if let Ok(key) = batch.key(index) {
                                self.owe(server, key.as_bytes(), None);
                            }
                        }
                    }
                    return Err(e);
                }
                rest = tail;
            }
            Ok(Vec::<()>::new())
        })?;
        Ok(())
    }

    /// One round trip of [`Client::set_many`]: the items `chunk` (indices
    /// into `batch` and `encoded`) as quiet meta sets, then a no-op.
    fn set_chunk(
        &self,
        server: usize,
        batch: &Batch,
        encoded: &[Encoded],
        chunk: &[usize],
        exptime: u32,
        deadline: Instant,
    ) -> Result<()> {
        self.on_server(server, IDEMPOTENT, deadline, |conn| {
            let mut request = conn.meta_request();
            for &index in chunk {
                // Batch indices all come from the same item list.
                let item = &encoded[index];
                let key = batch.key(index)?;
                let flags = MetaSetFlags {
                    ttl: Some(exptime),
                    client_flags: Some(item.flags),
                    quiet: true,
                    ..MetaSetFlags::default()
                };
                let opaque = request.tag(key);
                encode_meta_set(request.out(), key, &item.data, &flags.tagged(opaque));
            }
            encode_meta_noop(request.out());
            conn.send()?;
            let mut first_error = None;
            while !conn.recv(|reply| match reply {
                Reply::Meta(MetaReply {
                    status: MetaStatus::NoOp,
                    ..
                }) => Ok(true),
                Reply::Meta(MetaReply {
                    status: MetaStatus::NotStored,
                    ..
                }) => {
                    first_error.get_or_insert(Error::NotStored);
                    Ok(false)
                }
                // The server carried on after it: the rest of the replies
                // still come, so read on to the no-op.
                Reply::ServerError(_) => {
                    first_error.get_or_insert(Error::from_reply(&reply));
                    Ok(false)
                }
                // `ERROR` and `CLIENT_ERROR` (a command the server lacks, a
                // bad data chunk) can come with more replies than there
                // were requests: stop here, and the connection is closed.
                other => Err(Error::from_reply(&other)),
            })? {}
            first_error.map_or(Ok(()), Err)
        })
    }

    /// Prefixes, validates and routes every key of a batch.
    fn batch<'k>(&self, keys: impl Iterator<Item = &'k str>) -> Result<Batch> {
        let mut batch = Batch {
            bytes: Vec::new(),
            ranges: Vec::new(),
            groups: vec![Vec::new(); self.inner.pools.len()],
        };
        let mut buf = KeyBuf::new();
        for key in keys {
            let valid = self.key(key, &mut buf)?;
            let start = batch.bytes.len();
            batch.bytes.extend_from_slice(valid.as_bytes());
            batch.ranges.push(start..batch.bytes.len());
        }
        // Routed once every key is known valid, so a refused batch claims
        // no probe of a dead server.
        let now = self.now();
        let mut probing = Vec::new();
        for (index, range) in batch.ranges.iter().enumerate() {
            let key = batch.bytes.get(range.clone()).unwrap_or_default();
            let server = self.route_at(self.placement(key), now, &mut probing)?;
            batch.groups[server].push(index);
        }
        Ok(batch)
    }

    /// Runs `op` for every server that has keys in `batch`, in parallel
    /// threads when there are several, and concatenates the results.
    ///
    /// A server whose thread the OS refuses to start is done on the
    /// calling thread instead.
    fn per_server<T: Send>(
        &self,
        batch: &Batch,
        op: impl Fn(usize, &[usize]) -> Result<Vec<T>> + Sync,
    ) -> Result<Vec<T>> {
        let mut groups = batch
            .groups
            .iter()
            .enumerate()
            .filter(|(_, indices)| !indices.is_empty());
        let Some((first_server, first)) = groups.next() else {
            return Ok(Vec::new());
        };
        let rest: Vec<_> = groups.collect();
        if rest.is_empty() {
            return op(first_server, first);
        }
        let op = &op;
        std::thread::scope(|scope| {
            let mut handles = Vec::with_capacity(rest.len());
            let mut unspawned = Vec::new();
            for (server, indices) in rest {
                match std::thread::Builder::new().spawn_scoped(scope, move || op(server, indices)) {
                    Ok(handle) => handles.push(handle),
                    Err(_) => unspawned.push((server, indices)),
                }
            }
            let mut out = op(first_server, first);
            let mut merge = |result: Result<Vec<T>>| match (&mut out, result) {
                (Ok(all), Ok(more)) => all.extend(more),
                (Ok(_), Err(e)) => out = Err(e),
                (Err(_), _) => {}
            };
            for (server, indices) in unspawned {
                merge(op(server, indices));
            }
            for handle in handles {
                merge(
                    handle
                        .join()
                        .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
                );
            }
            out
        })
    }

    /// One server's part of [`Client::get_many`]: `(key index, value)` pairs.
    fn get_group<V>(
        &self,
        server: usize,
        batch: &Batch,
        indices: &[usize],
        decode: &impl Fn(&[u8], u32) -> Result<V>,
        deadline: Instant,
    ) -> Result<Vec<(usize, V)>> {
        let mut found = Vec::with_capacity(indices.len());
        for chunk in indices.chunks(GET_MANY_CHUNK) {
            let mut got = self.on_server(server, IDEMPOTENT, deadline, |conn| {
                let keys = chunk
                    .iter()
                    .map(|&index| batch.key(index))
                    .collect::<Result<Vec<_>>>()?;
                encode_get(conn.request(), keys.iter().copied());
                conn.send()?;
                let mut hits = Vec::new();
                let mut first_error = None;
                // Hits come back in request order: match each to the next
                // requested key with its name.
                let mut cursor = 0;
                while !conn.recv(|reply| match reply {
                    Reply::End => Ok(true),
                    Reply::Value(item) => {
                        let offset = keys[cursor..]
                            .iter()
                            .position(|key| key.as_bytes() == item.key)
                            .ok_or(ProtocolError::UnexpectedReply { reply: "VALUE" })?;
                        cursor += offset;
                        let index = chunk[cursor];
                        cursor += 1;
                        // Keep reading to the end even when a value does
                        // not decode, so the connection stays in step.
                        match decode(item.data, item.flags) {
                            Ok(value) => hits.push((index, value)),
                            Err(e) => {
                                first_error.get_or_insert(e);
                            }
                        }
                        Ok(false)
                    }
                    other => Err(Error::from_reply(&other)),
                })? {}
                first_error.map_or(Ok(hits), Err)
            })?;
            found.append(&mut got);
        }
        Ok(found)
    }

    // ---- whole-cluster operations -------------------------------------

    /// Runs `op` on every server, dead ones included, one after another and
    /// each within its own request timeout, and collects `(server label,
    /// result)`; fails with the first error after trying all.
    fn on_every_server<T>(&self, op: impl Fn(&mut Conn) -> Result<T>) -> Result<Vec<(String, T)>> {
        let mut out = Vec::with_capacity(self.inner.pools.len());
        let mut first_error = None;
        for (index, pool) in self.inner.pools.iter().enumerate() {
            match self.on_server(index, IDEMPOTENT, self.deadline(), &op) {
                Ok(value) => out.push((pool.spec.label.clone(), value)),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map_or(Ok(out), Err)
    }

    /// Removes every item from every server (`flush_all`).
    ///
    /// # Errors
    ///
    /// The first error of any server, after all were tried.
    pub fn flush_all(&self) -> Result<()> {
        self.on_every_server(|conn| {
            encode_flush_all(conn.request(), None, false);
            conn.send()?;
            conn.recv(|reply| match reply {
                Reply::Ok => Ok(()),
                other => Err(Error::from_reply(&other)),
            })
        })?;
        Ok(())
    }

    /// Each server's label and version string.
    ///
    /// # Errors
    ///
    /// The first error of any server, after all were tried.
    pub fn version(&self) -> Result<Vec<(String, String)>> {
        self.on_every_server(|conn| {
            encode_version(conn.request());
            conn.send()?;
            conn.recv(|reply| match reply {
                Reply::Version(v) => Ok(String::from_utf8_lossy(v).into_owned()),
                other => Err(Error::from_reply(&other)),
            })
        })
    }

    /// Each server's label and general statistics (`stats`), by name.
    ///
    /// # Errors
    ///
    /// The first error of any server, after all were tried.
    pub fn stats(&self) -> Result<Vec<(String, HashMap<String, String>)>> {
        self.on_every_server(|conn| {
            encode_stats(conn.request(), []);
            conn.send()?;
            let mut stats = HashMap::new();
            while !conn.recv(|reply| match reply {
                Reply::Stat { name, value } => {
                    stats.insert(
                        String::from_utf8_lossy(name).into_owned(),
                        String::from_utf8_lossy(value).into_owned(),
                    );
                    Ok(false)
                }
                Reply::End => Ok(true),
                other => Err(Error::from_reply(&other)),
            })? {}
            Ok(stats)
        })
    }

    /// The prefix put in front of every key (see
    /// [`ClientBuilder::key_prefix`]); empty when none was set.
    pub fn key_prefix(&self) -> &str {
        // Checked to be a valid key part (so ASCII) when the client was built.
        std::str::from_utf8(&self.inner.prefix).unwrap_or_default()
    }

    /// The configured servers' labels (`host:port` or socket path), in order.
    pub fn servers(&self) -> Vec<String> {
        self.inner
            .pools
            .iter()
            .map(|p| p.spec.label.clone())
            .collect()
    }

    /// The label of the server `key` is sent to now, skipping servers
    /// marked dead.
    ///
    /// The key is placed as given, without the key prefix (which only
    /// changes the key stored on the server), so the answer is the same
    /// with or without a prefix, and the same as pymemcache's `HashClient`
    /// or libmemcached gives for that key over the same servers.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidKey`] (the prefixed key is checked), or
    /// [`Error::AllServersDown`].
    pub fn server_for(&self, key: &str) -> Result<String> {
        let mut buf = KeyBuf::new();
        let valid = self.key(key, &mut buf)?;
        let now = self.now();
        // Only looks: claims no probe of a server whose dead period is over.
        let server = self
            .pick(self.placement(valid.as_bytes()), |i| {
                self.inner
                    .pools
                    .get(i)
                    .is_some_and(|p| p.health.is_routable(now))
            })
            .ok_or(Error::AllServersDown)?;
        Ok(self.inner.pools[server].spec.label.clone())
    }

    /// Whether the server labelled `server` is marked dead now.
    pub fn is_marked_dead(&self, server: &str) -> bool {
        let now = self.now();
        self.inner
            .pools
            .iter()
            .any(|p| p.spec.label == server && p.health.is_dead(now))
    }
}

/// The keys of a batch, prefixed and validated, and grouped by server.
struct Batch {
    bytes: Vec<u8>,
    ranges: Vec<Range<usize>>,
    /// Key indices, per server index.
    groups: Vec<Vec<usize>>,
}

impl Batch {
    fn key(&self, index: usize) -> Result<ValidKey<'_>> {
        let range = self.ranges.get(index).cloned().unwrap_or_default();
        let bytes = self.bytes.get(range).unwrap_or_default();
        Ok(ValidKey::new(bytes)?)
    }
}

/// The outcome of a meta set.
enum Stored {
    /// `HD`: stored, with the new CAS unique when the reply has one.
    Yes(Option<Cas>),
    /// `NS`, `EX` or `NF`: the server declined to store it.
    No,
}

/// The meta set flags of a store with client `flags`, `ttl`, `mode` and an
/// optional CAS to compare.
fn store_flags(
    flags: u32,
    ttl: Duration,
    mode: MetaSetMode,
    compare_cas: Option<u64>,
) -> MetaSetFlags {
    MetaSetFlags {
        mode,
        ttl: Some(exptime_now(ttl)),
        client_flags: Some(flags),
        compare_cas,
        ..MetaSetFlags::default()
    }
}

/// The status of a meta reply, `None` for any other reply.
fn meta_status<'a>(reply: &Reply<'a>) -> Option<MetaStatus<'a>> {
    match reply {
        Reply::Meta(meta) => Some(meta.status),
        _ => None,
    }
}

fn cas_of(flags: &ReturnFlags<'_>) -> Result<Cas> {
    flags
        .cas
        .map(Cas)
        .ok_or(Error::Protocol(ProtocolError::Malformed { reply: "VA" }))
}

fn ttl_of(flags: &ReturnFlags<'_>) -> Result<Option<Duration>> {
    match flags.ttl {
        Some(RemainingTtl::Never) => Ok(None),
        Some(RemainingTtl::Seconds(secs)) => Ok(Some(Duration::from_secs(u64::from(secs)))),
        None => Err(Error::Protocol(ProtocolError::Malformed { reply: "VA" })),
    }
}

/// [`exptime`] at the current wall-clock time (read only for TTLs over 30
/// days, which are sent as absolute times).
fn exptime_now(ttl: Duration) -> u32 {
    let now = if ttl.as_secs() >= MAX_RELATIVE_EXPTIME {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    } else {
        0
    };
    exptime(ttl, now)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(prefix: &str) -> Client {
        Client::builder()
            .servers(["127.0.0.1:1"])
            .key_prefix(prefix)
            .build()
            .unwrap()
    }

    #[test]
    fn keys_are_prefixed_and_checked() {
        let c = client("app:");
        let mut buf = KeyBuf::new();
        assert_eq!(c.key("k", &mut buf).unwrap().as_bytes(), b"app:k");
        assert!(matches!(
            c.key("", &mut buf),
            Err(Error::InvalidKey {
                reason: KeyError::Empty
            })
        ));
        assert!(matches!(
            c.key("k\r\nflush_all", &mut buf),
            Err(Error::InvalidKey {
                reason: KeyError::ForbiddenByte { byte: b'\r', .. }
            })
        ));
        let long = "x".repeat(247);
        assert!(matches!(
            c.key(&long, &mut buf),
            Err(Error::InvalidKey {
                reason: KeyError::TooLong { len: 251 }
            })
        ));
        assert!(c.key(&long[1..], &mut buf).is_ok());
    }

    #[test]
    fn build_refuses_bad_settings() {
        let bad = [
            Client::builder().build(),
            Client::builder().servers(["h:1"]).pool_size(0).build(),
            Client::builder()
                .servers(["h:1"])
                .io_timeout(Duration::ZERO)
                .build(),
            Client::builder().servers(["h:1"]).retry_attempts(0).build(),
            Client::builder()
                .servers(["h:1"])
                .request_timeout(Duration::ZERO)
                .build(),
            Client::builder().servers(["h:1"]).max_item_size(0).build(),
            // More than memcached can store: unbounded reply buffering.
            Client::builder()
                .servers(["h:1"])
                .max_item_size(MAX_ITEM_SIZE_LIMIT + 1)
                .build(),
            Client::builder()
                .servers(["h:1"])
                .max_item_size(usize::MAX)
                .build(),
            Client::builder().servers(["h:1"]).key_prefix("a b").build(),
            Client::builder().servers(["h:1", "h:1"]).build(),
            Client::builder().servers(["h:x"]).build(),
        ];
        for result in bad {
            assert!(matches!(result, Err(Error::Config(_))), "{result:?}");
        }
        // memcached's own upper limit is allowed.
        assert!(
            Client::builder()
                .servers(["h:1"])
                .max_item_size(MAX_ITEM_SIZE_LIMIT)
                .build()
                .is_ok()
        );
    }

    #[test]
    fn exptime_is_relative_up_to_30_days() {
        assert_eq!(exptime_now(Duration::ZERO), 0);
        assert_eq!(exptime_now(Duration::from_secs(60)), 60);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let abs = u64::from(exptime_now(Duration::from_secs(31 * 86_400)));
        assert!(abs >= now + 31 * 86_400 && abs <= now + 31 * 86_400 + 5);
    }

    #[test]
    fn set_many_chunks_by_count_and_bytes() {
        let small = || std::iter::repeat(100);
        assert_eq!(chunk_len(small().take(300), 128, 1 << 20), 128);
        assert_eq!(chunk_len(small().take(5), 128, 1 << 20), 5);
        assert_eq!(chunk_len(std::iter::empty(), 128, 1 << 20), 0);
        // 400 KB items: two fit in 1 MiB, the third starts the next chunk.
        assert_eq!(chunk_len(std::iter::repeat(400_000), 128, 1 << 20), 2);
        // One item over the limit still goes, alone.
        assert_eq!(chunk_len([2 << 20, 10].into_iter(), 128, 1 << 20), 1);
        assert_eq!(chunk_len([10, 2 << 20].into_iter(), 128, 1 << 20), 1);
        assert_eq!(chunk_len([usize::MAX, usize::MAX].into_iter(), 128, 1), 1);
    }

    #[test]
    fn client_is_send_sync_clone() {
        fn check<T: Send + Sync + Clone>() {}
        check::<Client>();
    }
}
