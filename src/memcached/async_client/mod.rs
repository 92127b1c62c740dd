//! [`AsyncClient`]: the memcached client for async code on tokio (feature
//! `tokio`), over the same core and commands as the blocking
//! [`Client`](super::Client).
//!
//! Each method has the name, arguments and meaning of the blocking one;
//! the operation's command comes from the same function
//! ([`ops`](super::ops)) and runs through the same routing, health and
//! owed-invalidation decisions ([`Core`](super::core::Core)). What differs
//! is the driver: requests from many tasks share multiplexed connections
//! (`mux.rs`), pipelined as they arrive, and nothing blocks a thread.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::command::{Cas, Lease, MetaItem, Seen};
use super::core::Core;
use super::error::Result;
use super::ops;
use super::protocol::MetaSetMode;
use crate::codec::{Codec, DefaultCodec};

mod batch;
mod cluster;
mod connect;
mod mux;
mod pool;
mod route;

pub(crate) use pool::MuxPool;

/// A memcached client for async code (feature `tokio`).
///
/// Built by the same builder as [`Client`](super::Client), with
/// [`ClientBuilder::build_async`](super::ClientBuilder::build_async); its
/// methods are the blocking client's, as `async fn`s, with the same
/// arguments, results and errors. Cheap to clone (an [`Arc`] inside) and
/// safe to share between tasks.
///
/// Connections are opened lazily, on the runtime of the first request that
/// needs one. Each server gets [`pool_size`](super::ClientBuilder::pool_size)
/// connections, and every request is pipelined on one of them: many tasks
/// share a connection, their requests coalesced into few writes, their
/// replies matched to them in order and by each meta command's opaque
/// token and key. A future dropped mid-request (by `tokio::time::timeout`,
/// say) leaves the connection in step: its request, once queued, is still
/// written, and its reply is read and discarded. Timeouts,
/// dead-server ejection and owed invalidations work as in the blocking
/// client.
///
/// # Examples
///
/// ```no_run
/// use std::time::Duration;
/// use nearfar::memcached::{AsyncClient, Client};
///
/// # async fn run() -> nearfar::memcached::Result<()> {
/// let client: AsyncClient = Client::builder().servers(["127.0.0.1:11211"]).build_async()?;
/// client.set("greeting", "hello", Duration::from_secs(60)).await?;
/// let greeting: Option<String> = client.get("greeting").await?;
/// assert_eq!(greeting.as_deref(), Some("hello"));
/// # Ok(())
/// # }
/// ```
pub struct AsyncClient<C = DefaultCodec> {
    inner: Arc<Inner<C>>,
}

/// The async client's state: its [`Core`] (the same type as the blocking
/// client's), and the multiplexed connections per server (same index as
/// `core.servers`).
struct Inner<C> {
    core: Core<C>,
    pools: Vec<MuxPool>,
}

impl<C> std::ops::Deref for Inner<C> {
    type Target = Core<C>;

    fn deref(&self) -> &Core<C> {
        &self.core
    }
}

impl<C> AsyncClient<C> {
    pub(crate) fn new(core: Core<C>, pools: Vec<MuxPool>) -> AsyncClient<C> {
        AsyncClient {
            inner: Arc::new(Inner { core, pools }),
        }
    }
}

impl<C> Clone for AsyncClient<C> {
    fn clone(&self) -> Self {
        AsyncClient {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<C> fmt::Debug for AsyncClient<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.core.describe("AsyncClient", f)
    }
}

impl<C: Codec> AsyncClient<C> {
    // ---- reads ----------------------------------------------------------

    /// Reads and decodes the value stored under `key`; `None` on a miss.
    ///
    /// # Errors
    ///
    /// As [`Client::get`](super::Client::get).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(client: nearfar::memcached::AsyncClient) -> nearfar::memcached::Result<()> {
    /// let visits: Option<u64> = client.get("visits").await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn get<V: DeserializeOwned>(&self, key: &str) -> Result<Option<V>> {
        self.single(key, &ops::get::<C, V>(&self.inner)).await
    }

    /// Reads a value with its CAS unique, for a later [`AsyncClient::cas`].
    ///
    /// # Errors
    ///
    /// As [`Client::gets`](super::Client::gets).
    pub async fn gets<V: DeserializeOwned>(&self, key: &str) -> Result<Option<(V, Cas)>> {
        self.single(key, &ops::gets::<C, V>(&self.inner)).await
    }

    /// Reads a value with its CAS unique and remaining TTL (one `mg`).
    ///
    /// # Errors
    ///
    /// As [`Client::meta_get`](super::Client::meta_get).
    pub async fn meta_get<V: DeserializeOwned>(&self, key: &str) -> Result<Option<MetaItem<V>>> {
        self.single(key, &ops::meta_get::<C, V>(&self.inner)).await
    }

    /// Reads only the CAS unique of `key`.
    ///
    /// # Errors
    ///
    /// As [`Client::cas_only`](super::Client::cas_only).
    pub async fn cas_only(&self, key: &str) -> Result<Option<Cas>> {
        self.single(key, &ops::cas_only()).await
    }

    /// Reads the bytes and client flags stored under `key`, undecoded.
    ///
    /// # Errors
    ///
    /// As [`Client::get_raw`](super::Client::get_raw).
    pub async fn get_raw(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>> {
        self.single(key, &ops::get_raw()).await
    }

    // ---- writes ---------------------------------------------------------

    /// Stores `value` under `key` for `ttl` (`Duration::ZERO`: no expiry).
    ///
    /// # Errors
    ///
    /// As [`Client::set`](super::Client::set).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # async fn run(client: nearfar::memcached::AsyncClient) -> nearfar::memcached::Result<()> {
    /// client.set("user:42:name", "Ada", Duration::from_secs(300)).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn set<V: Serialize + ?Sized>(
        &self,
        key: &str,
        value: &V,
        ttl: Duration,
    ) -> Result<()> {
        self.single(key, &ops::set(&self.inner, value, ttl)?).await
    }

    /// Stores `value` only if `key` holds nothing; `Ok(false)` if it does.
    ///
    /// # Errors
    ///
    /// As [`Client::add`](super::Client::add).
    pub async fn add<V: Serialize + ?Sized>(
        &self,
        key: &str,
        value: &V,
        ttl: Duration,
    ) -> Result<bool> {
        let add = ops::store_value(&self.inner, value, ttl, MetaSetMode::Add, None)?;
        self.single(key, &add).await
    }

    /// Stores `value` only if `key` holds something; `Ok(false)` if not.
    ///
    /// # Errors
    ///
    /// As [`Client::replace`](super::Client::replace).
    pub async fn replace<V: Serialize + ?Sized>(
        &self,
        key: &str,
        value: &V,
        ttl: Duration,
    ) -> Result<bool> {
        let replace = ops::store_value(&self.inner, value, ttl, MetaSetMode::Replace, None)?;
        self.single(key, &replace).await
    }

    /// Stores `value` only if the item's CAS unique is still `cas`.
    ///
    /// # Errors
    ///
    /// As [`Client::cas`](super::Client::cas).
    pub async fn cas<V: Serialize + ?Sized>(
        &self,
        key: &str,
        value: &V,
        ttl: Duration,
        cas: Cas,
    ) -> Result<bool> {
        let cas = ops::store_value(&self.inner, value, ttl, MetaSetMode::Set, Some(cas))?;
        self.single(key, &cas).await
    }

    /// Stores `value` and returns the CAS unique of the new item.
    ///
    /// # Errors
    ///
    /// As [`Client::set_returning_cas`](super::Client::set_returning_cas).
    pub async fn set_returning_cas<V: Serialize + ?Sized>(
        &self,
        key: &str,
        value: &V,
        ttl: Duration,
    ) -> Result<Cas> {
        self.single(key, &ops::set_returning_cas(&self.inner, value, ttl)?)
            .await
    }

    /// Stores `value` if the item's CAS unique is still `cas`, returning the
    /// new one; `Ok(None)` if it changed.
    ///
    /// # Errors
    ///
    /// As [`Client::compare_and_set`](super::Client::compare_and_set).
    pub async fn compare_and_set<V: Serialize + ?Sized>(
        &self,
        key: &str,
        value: &V,
        ttl: Duration,
        cas: Cas,
    ) -> Result<Option<Cas>> {
        let store = ops::store_returning_cas(&self.inner, value, ttl, Some(cas))?;
        self.single(key, &store).await
    }

    /// Stores bytes and client flags as given.
    ///
    /// # Errors
    ///
    /// As [`Client::set_raw`](super::Client::set_raw).
    pub async fn set_raw(&self, key: &str, data: &[u8], flags: u32, ttl: Duration) -> Result<()> {
        self.single(key, &ops::set_raw(data, flags, ttl)).await
    }

    // ---- removal, expiry, counters ---------------------------------------

    /// Removes `key`; `Ok(false)` if it held nothing.
    ///
    /// # Errors
    ///
    /// As [`Client::delete`](super::Client::delete).
    pub async fn delete(&self, key: &str) -> Result<bool> {
        self.single(key, &ops::delete()).await
    }

    /// Removes `key` only if its CAS unique is still `cas`.
    ///
    /// # Errors
    ///
    /// As [`Client::delete_if_cas`](super::Client::delete_if_cas).
    pub async fn delete_if_cas(&self, key: &str, cas: Cas) -> Result<bool> {
        self.single(key, &ops::delete_if_cas(cas)).await
    }

    /// Gives `key` a new TTL; `Ok(false)` if it holds nothing.
    ///
    /// # Errors
    ///
    /// As [`Client::touch`](super::Client::touch).
    pub async fn touch(&self, key: &str, ttl: Duration) -> Result<bool> {
        self.single(key, &ops::touch(ttl)).await
    }

    /// Adds `delta` to the number stored under `key`; `None` on a miss.
    ///
    /// # Errors
    ///
    /// As [`Client::incr`](super::Client::incr).
    pub async fn incr(&self, key: &str, delta: u64) -> Result<Option<u64>> {
        self.single(key, &ops::arithmetic(delta, true)).await
    }

    /// Subtracts `delta` from the number stored under `key`, stopping at 0.
    ///
    /// # Errors
    ///
    /// As [`Client::decr`](super::Client::decr).
    pub async fn decr(&self, key: &str, delta: u64) -> Result<Option<u64>> {
        self.single(key, &ops::arithmetic(delta, false)).await
    }

    // ---- leases ---------------------------------------------------------

    /// Reads `key`, or takes the lease to compute it (stampede protection).
    ///
    /// # Errors
    ///
    /// As [`Client::get_or_lease`](super::Client::get_or_lease).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// use nearfar::memcached::Lease;
    /// # async fn run(client: nearfar::memcached::AsyncClient) -> nearfar::memcached::Result<()> {
    /// match client.get_or_lease::<String>("report", Duration::from_secs(10)).await? {
    ///     Lease::Hit { value, .. } => println!("{value}"),
    ///     Lease::Won { cas, .. } => {
    ///         let value = "computed".to_string();
    ///         client.cas("report", &value, Duration::from_secs(300), cas).await?;
    ///     }
    ///     Lease::Wait => { /* retry shortly */ }
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub async fn get_or_lease<V: DeserializeOwned>(
        &self,
        key: &str,
        lease_ttl: Duration,
    ) -> Result<Lease<V>> {
        Ok(self.get_or_lease_seen(key, lease_ttl, None).await?.0)
    }

    /// [`AsyncClient::get_or_lease`] with the item's CAS and TTL.
    #[allow(dead_code, reason = "AsyncNearFar's lease path")]
    pub(crate) async fn get_or_lease_seen<V: DeserializeOwned>(
        &self,
        key: &str,
        lease_ttl: Duration,
        recache: Option<Duration>,
    ) -> Result<(Lease<V>, Seen)> {
        self.single(key, &ops::lease::<C, V>(&self.inner, lease_ttl, recache))
            .await
    }

    /// [`AsyncClient::get_or_lease`], also winning the recompute token of a
    /// value with less than `recache_within` left.
    ///
    /// # Errors
    ///
    /// As [`Client::get_or_lease_with_recache`](super::Client::get_or_lease_with_recache).
    pub async fn get_or_lease_with_recache<V: DeserializeOwned>(
        &self,
        key: &str,
        lease_ttl: Duration,
        recache_within: Duration,
    ) -> Result<Lease<V>> {
        let lease = ops::lease::<C, V>(&self.inner, lease_ttl, Some(recache_within));
        Ok(self.single(key, &lease).await?.0)
    }

    /// A key's lease state without asking for a lease.
    ///
    /// # Errors
    ///
    /// As [`Client::peek_lease`](super::Client::peek_lease).
    pub async fn peek_lease<V: DeserializeOwned>(&self, key: &str) -> Result<Option<Lease<V>>> {
        self.single(key, &ops::peek_lease::<C, V>(&self.inner))
            .await
    }

    /// [`AsyncClient::peek_lease`] without the value.
    ///
    /// # Errors
    ///
    /// As [`Client::peek_lease_cas`](super::Client::peek_lease_cas).
    pub async fn peek_lease_cas(&self, key: &str) -> Result<Option<Lease<()>>> {
        self.single(key, &ops::peek_lease_cas()).await
    }

    /// Marks `key` stale for `stale_ttl` instead of deleting it: readers
    /// get the old value marked stale, and one of them wins the lease.
    ///
    /// # Errors
    ///
    /// As [`Client::invalidate`](super::Client::invalidate).
    pub async fn invalidate(&self, key: &str, stale_ttl: Duration) -> Result<bool> {
        self.single(key, &ops::invalidate(stale_ttl, None)).await
    }

    /// [`AsyncClient::invalidate`] only if the item's CAS is still `cas`.
    ///
    /// # Errors
    ///
    /// As [`Client::invalidate_if_cas`](super::Client::invalidate_if_cas).
    pub async fn invalidate_if_cas(
        &self,
        key: &str,
        stale_ttl: Duration,
        cas: Cas,
    ) -> Result<bool> {
        self.single(key, &ops::invalidate(stale_ttl, Some(cas)))
            .await
    }
}
