//! [`Client`] and [`ClientBuilder`]: typed operations over a pool of servers.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;

use super::command::{Cas, MetaItem};
use super::core::Core;
use super::error::Result;
use super::ops;
use super::pool::Pool;
use crate::codec::{Codec, DefaultCodec};

mod batch;
mod builder;
mod cluster;
mod lease;
mod route;
#[cfg(test)]
mod tests;
mod write;

pub use builder::{ClientBuilder, DEFAULT_PENDING_INVALIDATIONS};

/// memcached's default item size limit (its `-I` option): 1 MiB.
pub const DEFAULT_MAX_ITEM_SIZE: usize = 1024 * 1024;

/// The largest `max_item_size` a client accepts: 1 GiB, the most memcached's
/// `-I` allows (its `ITEM_SIZE_MAX_UPPER_LIMIT`). It also bounds what a
/// server's reply can make the client buffer.
pub const MAX_ITEM_SIZE_LIMIT: usize = 1024 * 1024 * 1024;

/// A memcached client: typed operations over one or more servers.
///
/// Cheap to clone (an [`Arc`] inside) and safe to share between threads.
/// Each server has its own connection pool; keys are spread over the servers
/// by the configured [`Distribution`](super::Distribution). Values are encoded by the codec `C`
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
/// late or unsolicited one), fails the call with an [`Error::Protocol`](crate::memcached::Error::Protocol)
/// ([`ProtocolError::UnmatchedReply`](super::protocol::ProtocolError::UnmatchedReply) for meta replies) and closes the
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
        self.inner.core.describe("Client", f)
    }
}

/// The blocking client's state: the driver-independent [`Core`], and a
/// pool of blocking connections per server (same index as `core.servers`).
struct Inner<C> {
    core: Core<C>,
    pools: Vec<Pool>,
}

impl<C> std::ops::Deref for Inner<C> {
    type Target = Core<C>;

    fn deref(&self) -> &Core<C> {
        &self.core
    }
}

/// Whether a request may be sent again on a new connection after a pooled
/// one that passed its liveness check still turned out to be dead (see
/// `Pool::run`).
const IDEMPOTENT: bool = true;

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
    // ---- typed operations ---------------------------------------------

    /// Reads and decodes the value stored under `key`; `None` on a miss.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidKey`](crate::memcached::Error::InvalidKey) for a key memcached cannot take (checked before
    /// sending), [`Error::Codec`](crate::memcached::Error::Codec) when the stored bytes do not decode into a
    /// `V`, and the connection errors ([`Error::Connect`](crate::memcached::Error::Connect), [`Error::Io`](crate::memcached::Error::Io),
    /// [`Error::Timeout`](crate::memcached::Error::Timeout), [`Error::Protocol`](crate::memcached::Error::Protocol), [`Error::AllServersDown`](crate::memcached::Error::AllServersDown), ...).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # let client = nearfar::memcached::Client::builder().servers(["127.0.0.1:11211"]).build()?;
    /// let visits: Option<u64> = client.get("visits")?;
    /// # Ok::<(), nearfar::memcached::Error>(())
    /// ```
    pub fn get<V: DeserializeOwned>(&self, key: &str) -> Result<Option<V>> {
        self.single(key, &ops::get::<C, V>(&self.inner))
    }

    /// Removes `key`; `Ok(false)` if it held nothing.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidKey`](crate::memcached::Error::InvalidKey) and the connection errors.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # let client = nearfar::memcached::Client::builder().servers(["127.0.0.1:11211"]).build()?;
    /// client.set("session:9f2c", "alice", Duration::from_secs(600))?;
    /// assert!(client.delete("session:9f2c")?); // logged out
    /// assert!(!client.delete("session:9f2c")?); // nothing left to remove
    /// assert_eq!(client.get::<String>("session:9f2c")?, None);
    /// # Ok::<(), nearfar::memcached::Error>(())
    /// ```
    pub fn delete(&self, key: &str) -> Result<bool> {
        self.single(key, &ops::delete())
    }

    /// Removes `key` only if its CAS unique is still `cas`; `Ok(false)` if
    /// it holds nothing or was changed since the CAS was read.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidKey`](crate::memcached::Error::InvalidKey) and the connection errors.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # let client = nearfar::memcached::Client::builder().servers(["127.0.0.1:11211"]).build()?;
    /// // Worker A claims the job, and keeps the CAS of its claim.
    /// let a = client.set_returning_cas("job:7:owner", "worker-a", Duration::from_secs(60))?;
    /// // A stalls, its claim lapses, and worker B claims the job.
    /// let b = client.set_returning_cas("job:7:owner", "worker-b", Duration::from_secs(60))?;
    /// // A's release leaves B's claim alone; B's own release removes it.
    /// assert!(!client.delete_if_cas("job:7:owner", a)?);
    /// assert!(client.delete_if_cas("job:7:owner", b)?);
    /// # Ok::<(), nearfar::memcached::Error>(())
    /// ```
    pub fn delete_if_cas(&self, key: &str, cas: Cas) -> Result<bool> {
        self.single(key, &ops::delete_if_cas(cas))
    }

    /// Gives `key` a new TTL (same rules as [`Client::set`]); `Ok(false)` if
    /// it holds nothing.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidKey`](crate::memcached::Error::InvalidKey) and the connection errors.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # let client = nearfar::memcached::Client::builder().servers(["127.0.0.1:11211"]).build()?;
    /// client.set("session:4d1e", "bob", Duration::from_secs(600))?;
    /// // The user is active: keep the session another ten minutes from now.
    /// assert!(client.touch("session:4d1e", Duration::from_secs(600))?);
    /// assert!(!client.touch("session:expired", Duration::from_secs(600))?);
    /// # Ok::<(), nearfar::memcached::Error>(())
    /// ```
    pub fn touch(&self, key: &str, ttl: Duration) -> Result<bool> {
        self.single(key, &ops::touch(ttl))
    }

    /// Adds `delta` to the decimal number stored under `key` (wrapping at
    /// 2^64, as memcached does) and returns the new value; `None` if the key
    /// holds nothing. Store the starting number with [`Client::set`] (as an
    /// integer, or its decimal text).
    ///
    /// # Errors
    ///
    /// [`Error::Client`](crate::memcached::Error::Client) when the stored value is not a number, plus
    /// [`Error::InvalidKey`](crate::memcached::Error::InvalidKey) and the connection errors.
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
        self.single(key, &ops::arithmetic(delta, true))
    }

    /// Subtracts `delta` from the number stored under `key`, stopping at 0,
    /// and returns the new value; `None` if the key holds nothing.
    ///
    /// # Errors
    ///
    /// As [`Client::incr`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # let client = nearfar::memcached::Client::builder().servers(["127.0.0.1:11211"]).build()?;
    /// client.set("seats:left", &2u64, Duration::ZERO)?;
    /// assert_eq!(client.decr("seats:left", 1)?, Some(1));
    /// assert_eq!(client.decr("seats:left", 5)?, Some(0)); // stops at 0
    /// assert_eq!(client.decr("seats:unknown", 1)?, None);
    /// # Ok::<(), nearfar::memcached::Error>(())
    /// ```
    pub fn decr(&self, key: &str, delta: u64) -> Result<Option<u64>> {
        self.single(key, &ops::arithmetic(delta, false))
    }

    /// Reads a value with its CAS unique, for a later [`Client::cas`].
    ///
    /// # Errors
    ///
    /// As [`Client::get`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # let client = nearfar::memcached::Client::builder().servers(["127.0.0.1:11211"]).build()?;
    /// client.set("stock:sku-1", &10u64, Duration::ZERO)?;
    /// let (stock, cas) = client.gets::<u64>("stock:sku-1")?.expect("just set");
    /// assert!(client.cas("stock:sku-1", &(stock - 1), Duration::ZERO, cas)?);
    /// // That write changed the CAS: a second write with the old one is refused.
    /// assert!(!client.cas("stock:sku-1", &(stock - 1), Duration::ZERO, cas)?);
    /// assert_eq!(client.get::<u64>("stock:sku-1")?, Some(9));
    /// # Ok::<(), nearfar::memcached::Error>(())
    /// ```
    pub fn gets<V: DeserializeOwned>(&self, key: &str) -> Result<Option<(V, Cas)>> {
        self.single(key, &ops::gets::<C, V>(&self.inner))
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
        self.single(key, &ops::meta_get::<C, V>(&self.inner))
    }

    /// Reads only the CAS unique of `key` (no value is sent back): a cheap
    /// check whether a copy held elsewhere is still current.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidKey`](crate::memcached::Error::InvalidKey) and the connection errors.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # let client = nearfar::memcached::Client::builder().servers(["127.0.0.1:11211"]).build()?;
    /// let cas = client.set_returning_cas("config", "v1", Duration::from_secs(300))?;
    /// // A copy of "v1" kept in process is current while the CAS is unchanged.
    /// assert_eq!(client.cas_only("config")?, Some(cas));
    /// client.set("config", "v2", Duration::from_secs(300))?;
    /// assert_ne!(client.cas_only("config")?, Some(cas));
    /// assert_eq!(client.cas_only("config:missing")?, None);
    /// # Ok::<(), nearfar::memcached::Error>(())
    /// ```
    pub fn cas_only(&self, key: &str) -> Result<Option<Cas>> {
        self.single(key, &ops::cas_only())
    }

    // ---- raw operations -------------------------------------------------

    /// Reads the bytes and client flags stored under `key`, undecoded.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidKey`](crate::memcached::Error::InvalidKey) and the connection errors.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # let client = nearfar::memcached::Client::builder().servers(["127.0.0.1:11211"]).build()?;
    /// use nearfar::codec::{FLAG_INTEGER, FLAG_TEXT};
    ///
    /// client.set("greeting", "hello", Duration::from_secs(60))?;
    /// assert_eq!(client.get_raw("greeting")?, Some((b"hello".to_vec(), FLAG_TEXT)));
    /// client.set("visits", &1_000u64, Duration::ZERO)?;
    /// assert_eq!(client.get_raw("visits")?, Some((b"1000".to_vec(), FLAG_INTEGER)));
    /// assert_eq!(client.get_raw("missing")?, None);
    /// # Ok::<(), nearfar::memcached::Error>(())
    /// ```
    pub fn get_raw(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>> {
        self.single(key, &ops::get_raw())
    }
}
