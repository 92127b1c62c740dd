//! [`ClientBuilder`]: a client's settings, checked by `build`.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::{Client, DEFAULT_MAX_ITEM_SIZE, Inner, MAX_ITEM_SIZE_LIMIT};
use crate::clock::{Clock, Timer};
use crate::codec::{Codec, DefaultCodec};
use crate::memcached::address::ServerSpec;
use crate::memcached::conn::ConnConfig;
use crate::memcached::core::{Core, Server};
use crate::memcached::error::{ConfigError, Error, Result};
use crate::memcached::health::Circuit;
use crate::memcached::pending::Pending;
use crate::memcached::pool::Pool;
use crate::memcached::protocol::{MAX_KEY_LEN, ValidKey};
use crate::memcached::ring::{Distribution, Ring};
#[cfg(feature = "tls")]
use crate::memcached::tls::{Tls, TlsSource};

#[cfg(feature = "tls")]
mod tls;

/// An injected clock, shareable and printable (for builders that derive
/// `Debug` and `Clone`).
#[derive(Clone)]
struct SharedClock(Arc<dyn Clock>);

impl fmt::Debug for SharedClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Clock")
    }
}

/// Owed invalidations kept per server before the record turns into a
/// flush of the whole server (see [`ClientBuilder::pending_invalidations`]).
pub const DEFAULT_PENDING_INVALIDATIONS: usize = 10_000;

/// Configures and builds a [`Client`]. Made by [`Client::builder`].
///
/// Defaults: pool size 8 per server, connect and I/O timeouts of 1 s, pool
/// wait 1 s, request timeout twice the I/O timeout, no key prefix,
/// [`Distribution::Ketama`], 2 retry attempts, dead timeout 1 s, item
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
    clock: Option<SharedClock>,
    #[cfg(feature = "tls")]
    tls: Option<TlsSource>,
    #[cfg(feature = "tls")]
    tls_server_name: Option<String>,
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
            dead_timeout: Duration::from_secs(1),
            max_item_size: DEFAULT_MAX_ITEM_SIZE,
            pending_invalidations: DEFAULT_PENDING_INVALIDATIONS,
            clock: None,
            #[cfg(feature = "tls")]
            tls: None,
            #[cfg(feature = "tls")]
            tls_server_name: None,
            codec: DefaultCodec::default(),
        }
    }
}

impl<C: Codec> ClientBuilder<C> {
    /// The servers, each `host:port`, `host:port:weight`, `[ipv6]:port`, or
    /// a unix socket path such as `/run/memcached.sock` (a path may end in
    /// `:weight` too). A host without a port uses 11211. ASCII whitespace
    /// around an address is ignored (whitespace within it is refused).
    /// Replaces any servers given before.
    ///
    /// # Examples
    ///
    /// ```
    /// use nearfar::memcached::{Client, ConfigError, Error};
    ///
    /// let from_config = "10.0.0.1, 10.0.0.2:11212:2, /run/memcached.sock\n";
    /// let client = Client::builder()
    ///     .servers(from_config.split(',')) // " 10.0.0.2:11212:2" is "10.0.0.2:11212:2"
    ///     .build()?; // connects lazily: no server needs to be up yet
    /// assert_eq!(client.servers(), ["10.0.0.1:11211", "10.0.0.2:11212", "/run/memcached.sock"]);
    /// let none = Client::builder().servers(Vec::<String>::new()).build();
    /// assert!(matches!(none, Err(Error::Config(ConfigError::NoServers))));
    /// # Ok::<(), nearfar::memcached::Error>(())
    /// ```
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
    ///
    /// # Examples
    ///
    /// ```
    /// use nearfar::memcached::{Client, ConfigError, Error};
    ///
    /// // Up to 32 threads calling at once, each with a connection of its own.
    /// let client = Client::builder().servers(["10.0.0.1:11211"]).pool_size(32).build()?;
    /// let zero = Client::builder().servers(["10.0.0.1:11211"]).pool_size(0).build();
    /// assert!(matches!(zero, Err(Error::Config(ConfigError::InvalidSetting { .. }))));
    /// # Ok::<(), nearfar::memcached::Error>(())
    /// ```
    pub fn pool_size(mut self, connections: usize) -> Self {
        self.pool_size = connections;
        self
    }

    /// How long opening a TCP connection may take, in all: a host that
    /// resolves to several addresses shares this time between them, and
    /// with TLS (`tls`, feature `tls`) the handshake is part
    /// of it.
    ///
    /// It does not bound connecting to a unix socket path, which is a plain
    /// blocking `connect` (`std` offers no way to set a timeout or
    /// non-blocking mode before a `UnixStream` connects, and this crate
    /// does not depend on `libc` for it). That connect fails at once when
    /// nothing listens on the path, and waits only while the server's
    /// accept backlog is full: on Linux, until the server accepts enough
    /// connections to make room. The I/O timeout bounds every request once
    /// connected.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use nearfar::memcached::Client;
    ///
    /// // Servers in the same rack: a connect not done in 100 ms has failed.
    /// let client = Client::builder()
    ///     .servers(["10.0.0.1:11211", "10.0.0.2:11211"])
    ///     .connect_timeout(Duration::from_millis(100))
    ///     .build()?;
    /// # Ok::<(), nearfar::memcached::Error>(())
    /// ```
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
    ///
    /// # Examples
    ///
    /// ```
    /// use std::{net::TcpListener, time::Duration};
    /// use nearfar::memcached::{Client, Error};
    ///
    /// let silent = TcpListener::bind("127.0.0.1:0")?; // takes connections, never answers
    /// let client = Client::builder()
    ///     .servers([silent.local_addr()?.to_string()])
    ///     .io_timeout(Duration::from_millis(50))
    ///     .build()?;
    /// assert!(matches!(client.get::<String>("k"), Err(Error::Timeout))); // after 50 ms
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
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
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use nearfar::memcached::Client;
    ///
    /// // Quick to notice a stalled server, patient with values of many MiB.
    /// let client = Client::builder()
    ///     .servers(["10.0.0.1:11211"])
    ///     .io_timeout(Duration::from_millis(200))
    ///     .request_timeout(Duration::from_secs(10))
    ///     .build()?;
    /// # Ok::<(), nearfar::memcached::Error>(())
    /// ```
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = Some(timeout);
        self
    }

    /// How long a request waits for a free connection when the pool is full.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use nearfar::memcached::Client;
    ///
    /// // In a burst, fail fast with `Error::PoolTimeout` rather than queue for 1 s.
    /// let client = Client::builder()
    ///     .servers(["10.0.0.1:11211"])
    ///     .pool_timeout(Duration::from_millis(20))
    ///     .build()?;
    /// # Ok::<(), nearfar::memcached::Error>(())
    /// ```
    pub fn pool_timeout(mut self, timeout: Duration) -> Self {
        self.pool_timeout = timeout;
        self
    }

    /// A prefix put in front of every key (the limits on keys apply to the
    /// prefixed key). Must itself be a valid key part: no spaces or control
    /// bytes.
    ///
    /// Under [`Distribution::Ketama`] and [`Distribution::Rendezvous`] the
    /// prefix does not move keys between servers: a key is placed by the
    /// key as given, before the prefix is added, as pymemcache's
    /// `HashClient` and libmemcached (without
    /// `MEMCACHED_BEHAVIOR_HASH_WITH_NAMESPACE`) place it, so clients of
    /// either kind sharing a pool with the same prefix agree on every key.
    /// Under [`Distribution::PythonMemcached`] (and its legacy form) the
    /// prefixed key places it, as python-memcached places the keys of its
    /// `get_multi` and `set_multi` with `key_prefix`.
    ///
    /// # Examples
    ///
    /// ```
    /// use nearfar::memcached::{Client, ConfigError, Error};
    ///
    /// // Two services share a memcached; each reads and writes only its own keys:
    /// // billing's get("user:42") reads "billing:user:42", search's "search:user:42".
    /// let billing = Client::builder().servers(["10.0.0.1"]).key_prefix("billing:").build()?;
    /// let search = Client::builder().servers(["10.0.0.1"]).key_prefix("search:").build()?;
    /// assert_eq!((billing.key_prefix(), search.key_prefix()), ("billing:", "search:"));
    /// let spaced = Client::builder().servers(["10.0.0.1"]).key_prefix("my app:").build();
    /// assert!(matches!(spaced, Err(Error::Config(ConfigError::InvalidSetting { .. }))));
    /// # Ok::<(), nearfar::memcached::Error>(())
    /// ```
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.key_prefix = prefix.into();
        self
    }

    /// How keys are spread over the servers.
    ///
    /// # Examples
    ///
    /// ```
    /// use nearfar::memcached::{Client, Distribution};
    ///
    /// // Keys shared with Python services using pymemcache's
    /// // HashClient([("10.0.0.1", 11211), ("10.0.0.2", 11211), ("10.0.0.3", 11211)]):
    /// let client = Client::builder()
    ///     .servers(["10.0.0.1:11211", "10.0.0.2:11211", "10.0.0.3:11211"])
    ///     .distribution(Distribution::Rendezvous)
    ///     .build()?;
    /// // Where HashClient puts them (pymemcache 4.0):
    /// assert_eq!(client.server_for("user:42")?, "10.0.0.1:11211");
    /// assert_eq!(client.server_for("session:9f2c")?, "10.0.0.2:11211");
    /// assert_eq!(client.server_for("cart:7")?, "10.0.0.3:11211");
    /// # Ok::<(), nearfar::memcached::Error>(())
    /// ```
    pub fn distribution(mut self, distribution: Distribution) -> Self {
        self.distribution = distribution;
        self
    }

    /// After this many consecutive failures (connect errors, timeouts, I/O
    /// errors, replies that make no sense) a server is marked dead for
    /// [`dead_timeout`](Self::dead_timeout) and its keys go to the next live
    /// server; then one request probes it. An answer of any kind (a refusal
    /// included) clears the count. At least 1.
    ///
    /// # Examples
    ///
    /// ```
    /// use nearfar::MockClock;
    /// use nearfar::memcached::{Client, Error};
    ///
    /// let down = "/nonexistent/memcached.sock"; // a server that cannot be reached
    /// let clock = MockClock::new(); // so it stays dead however slowly this runs
    /// let client = Client::builder().servers([down]).retry_attempts(3).clock(clock).build()?;
    /// for _ in 0..3 {
    ///     assert!(!client.is_marked_dead(down));
    ///     assert!(matches!(client.get::<String>("k"), Err(Error::Connect { .. })));
    /// }
    /// assert!(client.is_marked_dead(down)); // after the third failure in a row
    /// assert!(matches!(client.get::<String>("k"), Err(Error::AllServersDown)));
    /// # Ok::<(), nearfar::memcached::Error>(())
    /// ```
    pub fn retry_attempts(mut self, attempts: u32) -> Self {
        self.retry_attempts = attempts;
        self
    }

    /// How long a failed server is left out before it is probed again
    /// (default 1 s).
    ///
    /// A server marked dead (after [`retry_attempts`](Self::retry_attempts)
    /// failures in a row) gets no request for this long, its keys going to
    /// the next live server (or failing with [`Error::AllServersDown`] when
    /// none is left); then one request, however many callers there are,
    /// probes it. An answer brings it back for every caller; a failure
    /// leaves it out for another `dead_timeout` from then. So a dead server
    /// costs one connection attempt per `dead_timeout`, and one that comes
    /// back (memcached restarted) is used again within `dead_timeout` of
    /// it under load, plus the probe's round trip. Its pooled connections
    /// died with it: they are closed when it is marked dead, and one that
    /// closed meanwhile is replaced before anything is sent on it.
    ///
    /// With a [`NearFar`](crate::NearFar) in front of this client, its
    /// circuit breaker
    /// ([`NearFarBuilder::circuit_breaker`](crate::NearFarBuilder::circuit_breaker),
    /// default 1 s) does not add its cooldown to this one: its probe waits
    /// until this client would send a request, and a request this client
    /// refused unsent (every server left out) does not hold the breaker
    /// open as a failure would. The far tier is used again within the
    /// longer of the two after memcached comes back: measured with both
    /// defaults, memcached killed for 2 s under load and restarted, the
    /// first far hit came 0.8 s to 1.0 s after it accepted connections,
    /// blocking and async (`tests/recovery.rs`).
    ///
    /// Shorter recovers sooner, at one more connection attempt per dead
    /// server per period (a refused connect costs microseconds; a host that
    /// does not answer holds the probing call up to the
    /// [connect timeout](Self::connect_timeout)).
    ///
    /// `build` refuses zero: every request would find a dead server due for
    /// its probe at once, so it would never be left out.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use nearfar::MockClock;
    /// use nearfar::memcached::{Client, ConfigError, Error};
    ///
    /// let (down, up) = ("/nonexistent/memcached.sock", "10.0.0.2:11211");
    /// let clock = MockClock::new();
    /// let client = Client::builder()
    ///     .servers([down, up])
    ///     .retry_attempts(1)
    ///     .dead_timeout(Duration::from_secs(10))
    ///     .clock(clock.clone())
    ///     .build()?;
    /// assert_eq!(client.server_for("user:42")?, down);
    /// assert!(client.get::<String>("user:42").is_err()); // cannot connect: marked dead
    /// assert_eq!(client.server_for("user:42")?, up); // its keys go to the next live server
    /// clock.advance(Duration::from_secs(10));
    /// assert_eq!(client.server_for("user:42")?, down); // due for a probe
    ///
    /// let zero = Client::builder().servers([up]).dead_timeout(Duration::ZERO).build();
    /// assert!(matches!(
    ///     zero,
    ///     Err(Error::Config(ConfigError::InvalidSetting { setting: "dead_timeout", .. }))
    /// ));
    /// # Ok::<(), nearfar::memcached::Error>(())
    /// ```
    pub fn dead_timeout(mut self, timeout: Duration) -> Self {
        self.dead_timeout = timeout;
        self
    }

    /// The servers' item size limit, in bytes: memcached's `-I` (default
    /// 1 MiB, memcached's default). As in memcached, an item holds its key
    /// and 63 bytes of overhead too, so the largest value stored under a
    /// key of `n` bytes (prefix included) is `bytes - 63 - n`: 1,048,503 for
    /// a 10-byte key by default. A larger value is refused with
    /// [`Error::ValueTooLarge`] before anything is sent (the server keeps
    /// what it had); a value over `bytes` in a reply is a protocol error.
    /// At most [`MAX_ITEM_SIZE_LIMIT`] (1 GiB): `build` refuses more.
    ///
    /// # Examples
    ///
    /// ```
    /// use nearfar::memcached::Client;
    ///
    /// // Servers started with `memcached -I 8m`:
    /// let client = Client::builder()
    ///     .servers(["10.0.0.1:11211"])
    ///     .max_item_size(8 * 1024 * 1024)
    ///     .build()?;
    /// # Ok::<(), nearfar::memcached::Error>(())
    /// ```
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
    /// dropped (a cache's misses), never a write silently forgotten, and so
    /// are the servers that took its keys' writes in its place. `0` means
    /// always flush. A server that refuses to forget (memcached run with
    /// `-F`, which disables `flush_all`) counts as failing and is ejected
    /// rather than read.
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
    ///
    /// # Examples
    ///
    /// ```
    /// use nearfar::memcached::Client;
    ///
    /// // Many distinct keys written during an outage: keep up to 100,000 owed per
    /// // server rather than flush the server when it returns.
    /// let client = Client::builder().servers(["cache-1"]).pending_invalidations(100_000).build()?;
    /// // None kept: a server that missed a write is flushed when it returns.
    /// let flushing = Client::builder().servers(["cache-1"]).pending_invalidations(0).build()?;
    /// # Ok::<(), nearfar::memcached::Error>(())
    /// ```
    pub fn pending_invalidations(mut self, limit: usize) -> Self {
        self.pending_invalidations = limit;
        self
    }

    /// The clock that times server health: how long a failed server stays
    /// marked dead ([`dead_timeout`](Self::dead_timeout)) and when it is
    /// probed (default: the system's monotonic clock). A
    /// [`MockClock`](crate::MockClock) makes ejection and recovery testable
    /// without sleeping. I/O timeouts are the sockets' own and always run
    /// on real time.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use nearfar::MockClock;
    /// use nearfar::memcached::Client;
    ///
    /// // A test of ejection: time moves only when the test moves it, to the nanosecond.
    /// let (down, clock) = ("/nonexistent/memcached.sock", MockClock::new());
    /// let client =
    ///     Client::builder().servers([down]).retry_attempts(1).clock(clock.clone()).build()?;
    /// assert!(client.get::<String>("k").is_err()); // marked dead for 1 s (`dead_timeout`)
    /// clock.advance(Duration::from_millis(999));
    /// assert!(client.is_marked_dead(down));
    /// clock.advance(Duration::from_millis(1));
    /// assert!(!client.is_marked_dead(down)); // due for a probe
    /// # Ok::<(), nearfar::memcached::Error>(())
    /// ```
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Some(SharedClock(Arc::new(clock)));
        self
    }

    /// The codec that turns values into bytes and flags.
    ///
    /// To compress large values as pymemcache does, pass
    /// `DefaultCodec::new().with_compression_threshold(Some(400))`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use nearfar::codec::{Codec, CodecError, DefaultCodec, Encoded, FLAG_BINCODE};
    /// use nearfar::memcached::{Client, Error};
    /// use serde::{Serialize, de::DeserializeOwned};
    ///
    /// // Writes only what Python's clients read: no bincode values.
    /// struct PythonReadable(DefaultCodec);
    /// impl Codec for PythonReadable {
    ///     fn encode<T: Serialize + ?Sized>(&self, value: &T) -> Result<Encoded, CodecError> {
    ///         let item = self.0.encode(value)?;
    ///         match item.flags & FLAG_BINCODE {
    ///             0 => Ok(item),
    ///             _ => Err(CodecError::Encode("Python cannot read bincode".into())),
    ///         }
    ///     }
    ///     fn decode<T: DeserializeOwned>(&self, data: &[u8], flags: u32) -> Result<T, CodecError> {
    ///         self.0.decode(data, flags)
    ///     }
    /// }
    ///
    /// // Compressing values over 400 bytes, as pymemcache's CompressedSerde does.
    /// let codec = PythonReadable(DefaultCodec::new().with_compression_threshold(Some(400)));
    /// let client = Client::builder().servers(["127.0.0.1:11211"]).codec(codec).build()?;
    /// let refused = client.set("point", &(1, 2), Duration::from_secs(60)); // nothing sent
    /// assert!(matches!(refused, Err(Error::Codec(CodecError::Encode(_)))));
    /// # Ok::<(), nearfar::memcached::Error>(())
    /// ```
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
            clock: self.clock,
            #[cfg(feature = "tls")]
            tls: self.tls,
            #[cfg(feature = "tls")]
            tls_server_name: self.tls_server_name,
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
    /// [`Error::Config`], not retryable, with [`ConfigError::NoServers`]
    /// when no server is given; [`ConfigError::InvalidAddress`] when an
    /// address does not parse; [`ConfigError::DuplicateServer`] when it
    /// names a server given before;
    /// [`ConfigError::InvalidSetting`] (naming the setting) for a zero pool
    /// size, connect, I/O, request or pool timeout, retry count or dead
    /// timeout, an item
    /// size of 0 or over 1 GiB, or a key prefix that is not a valid key part
    /// under 250 bytes. With TLS (feature `tls`): `TlsCaFile` when the CA
    /// file cannot be used, `TlsServerName` when a server name cannot be
    /// one, `TlsUnixSocket` for a unix socket server (see `tls`), and
    /// `InvalidSetting` for a `tls_server_name` without TLS.
    ///
    /// # Examples
    ///
    /// ```
    /// use nearfar::memcached::{Client, ConfigError, Error};
    ///
    /// // Nothing listens there, and the build succeeds: it connects nothing.
    /// let client = Client::builder().servers(["/nonexistent/memcached.sock"]).build()?;
    /// assert!(matches!(client.get::<String>("k"), Err(Error::Connect { .. })));
    /// // "10.0.0.1" is "10.0.0.1:11211" again.
    /// let twice = Client::builder().servers(["10.0.0.1:11211", "10.0.0.1"]).build();
    /// let Err(Error::Config(ConfigError::DuplicateServer { address, first, server })) = twice else {
    ///     panic!("a duplicate, not {twice:?}");
    /// };
    /// assert_eq!((address.as_str(), first.as_str()), ("10.0.0.1", "10.0.0.1:11211"));
    /// assert_eq!(server, "10.0.0.1:11211"); // what both name
    /// # Ok::<(), nearfar::memcached::Error>(())
    /// ```
    pub fn build(self) -> Result<Client<C>> {
        let core = self.core()?;
        let pools = core
            .servers
            .iter()
            .map(|s| {
                Pool::new(
                    s.spec.clone(),
                    core.config.clone(),
                    core.pool_size,
                    core.pool_timeout,
                )
            })
            .collect();
        Ok(Client {
            inner: Arc::new(Inner { core, pools }),
        })
    }

    /// Checks the configuration and builds an [`AsyncClient`](crate::memcached::AsyncClient)
    /// (feature `tokio`): the same settings, with `pool_size` multiplexed
    /// connections per server, each shared by many tasks.
    ///
    /// No connection is opened here (and no runtime is needed): each is
    /// opened by the first request that needs it, on that request's tokio
    /// runtime.
    ///
    /// # Errors
    ///
    /// As [`ClientBuilder::build`].
    ///
    /// # Examples
    ///
    /// ```
    /// use nearfar::memcached::{AsyncClient, Client};
    ///
    /// let client: AsyncClient = Client::builder()
    ///     .servers(["10.0.0.1:11211", "10.0.0.2:11211"])
    ///     .pool_size(4)
    ///     .build_async()?;
    /// # Ok::<(), nearfar::memcached::Error>(())
    /// ```
    #[cfg(feature = "tokio")]
    pub fn build_async(self) -> Result<crate::memcached::AsyncClient<C>> {
        use crate::memcached::async_client::{AsyncClient, MuxPool};
        let core = self.core()?;
        let pools = core
            .servers
            .iter()
            .map(|s| MuxPool::new(s.spec.clone(), core.config.clone(), core.pool_size))
            .collect();
        Ok(AsyncClient::new(core, pools))
    }

    /// Checks the configuration and builds what either client needs.
    fn core(self) -> Result<Core<C>> {
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
        // Zero: a dead server's probe is due at once, for every request.
        if self.dead_timeout.is_zero() {
            return invalid("dead_timeout", "a non-zero duration");
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
            if let Some(first) = specs[..i]
                .iter()
                .position(|other| other.label == spec.label)
            {
                return Err(ConfigError::DuplicateServer {
                    address: self.servers[i].clone(),
                    first: self.servers[first].clone(),
                    server: spec.label.clone(),
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
            #[cfg(feature = "tls")]
            tls: match &self.tls {
                Some(source) => Some(Tls::new(source, self.tls_server_name.as_deref(), &specs)?),
                None if self.tls_server_name.is_some() => {
                    return invalid("tls_server_name", "tls or tls_ca_file set as well");
                }
                None => None,
            },
        };
        debug_assert_eq!(ring.len(), specs.len());
        let servers = specs
            .into_iter()
            .map(|spec| Server {
                spec,
                health: Circuit::new(self.retry_attempts, self.dead_timeout),
                pending: Pending::new(self.pending_invalidations),
            })
            .collect();
        let core = Core {
            servers,
            ring,
            prefix: self.key_prefix.into_bytes().into_boxed_slice(),
            codec: self.codec,
            max_item_size: self.max_item_size,
            request_timeout,
            config,
            pool_size: self.pool_size,
            pool_timeout: self.pool_timeout,
            timer: Timer::new(self.clock.map(|c| c.0)),
        };
        Ok(core)
    }
}
