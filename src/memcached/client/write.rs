//! Writes: `set` and its conditional kinds (`add`, `replace`, `cas`),
//! with or without the new CAS back, as meta sets.

use std::time::Duration;

use serde::Serialize;

use super::Client;
use crate::codec::Codec;
use crate::memcached::command::Cas;
use crate::memcached::error::Result;
use crate::memcached::ops;
use crate::memcached::protocol::MetaSetMode;

impl<C: Codec> Client<C> {
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
    /// [`Error::InvalidKey`](crate::memcached::Error::InvalidKey), [`Error::Codec`](crate::memcached::Error::Codec) when the value cannot be
    /// encoded, [`Error::ValueTooLarge`](crate::memcached::Error::ValueTooLarge) when the encoded value is over the
    /// item limit (nothing is sent), [`Error::Server`](crate::memcached::Error::Server) when the server refuses
    /// it, [`Error::NotStored`](crate::memcached::Error::NotStored) when it declines to store it, and the
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
        self.single(key, &ops::set(&self.inner, value, ttl)?)
    }

    /// Stores `value` only if `key` holds nothing; `Ok(false)` if it does.
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
    /// // A lock that frees itself if its holder dies: only one caller takes it.
    /// assert!(client.add("lock:nightly-report", "worker-a", Duration::from_secs(30))?);
    /// assert!(!client.add("lock:nightly-report", "worker-b", Duration::from_secs(30))?);
    /// assert_eq!(client.get::<String>("lock:nightly-report")?.as_deref(), Some("worker-a"));
    /// client.delete("lock:nightly-report")?; // done: release it
    /// # Ok::<(), nearfar::memcached::Error>(())
    /// ```
    pub fn add<V: Serialize + ?Sized>(&self, key: &str, value: &V, ttl: Duration) -> Result<bool> {
        let add = ops::store_value(&self.inner, value, ttl, MetaSetMode::Add, None)?;
        self.single(key, &add)
    }

    /// Stores `value` only if `key` already holds a value; `Ok(false)` if not.
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
    /// # client.delete("profile:7")?;
    /// // Refresh a cached profile only if it is cached: no entry for a user the
    /// // cache does not hold.
    /// assert!(!client.replace("profile:7", "Ada", Duration::from_secs(300))?);
    /// client.set("profile:7", "Ada", Duration::from_secs(300))?;
    /// assert!(client.replace("profile:7", "Ada Lovelace", Duration::from_secs(300))?);
    /// assert_eq!(client.get::<String>("profile:7")?.as_deref(), Some("Ada Lovelace"));
    /// # Ok::<(), nearfar::memcached::Error>(())
    /// ```
    pub fn replace<V: Serialize + ?Sized>(
        &self,
        key: &str,
        value: &V,
        ttl: Duration,
    ) -> Result<bool> {
        let replace = ops::store_value(&self.inner, value, ttl, MetaSetMode::Replace, None)?;
        self.single(key, &replace)
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
        let cas = ops::store_value(&self.inner, value, ttl, MetaSetMode::Set, Some(cas))?;
        self.single(key, &cas)
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
    /// As [`Client::set`]: [`Error::InvalidKey`](crate::memcached::Error::InvalidKey), [`Error::Codec`](crate::memcached::Error::Codec),
    /// [`Error::ValueTooLarge`](crate::memcached::Error::ValueTooLarge) (nothing is sent), [`Error::Server`](crate::memcached::Error::Server),
    /// [`Error::NotStored`](crate::memcached::Error::NotStored), and the connection errors; a reply without the
    /// CAS is an [`Error::Protocol`](crate::memcached::Error::Protocol).
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
        self.single(key, &ops::set_returning_cas(&self.inner, value, ttl)?)
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
    /// As [`Client::set`]: [`Error::InvalidKey`](crate::memcached::Error::InvalidKey), [`Error::Codec`](crate::memcached::Error::Codec),
    /// [`Error::ValueTooLarge`](crate::memcached::Error::ValueTooLarge) (nothing is sent), [`Error::Server`](crate::memcached::Error::Server), and the
    /// connection errors; a reply without the CAS is an [`Error::Protocol`](crate::memcached::Error::Protocol).
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
        self.single(
            key,
            &ops::store_returning_cas(&self.inner, value, ttl, Some(cas))?,
        )
    }

    /// Stores `data` with client `flags` under `key`, unencoded.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidKey`](crate::memcached::Error::InvalidKey), [`Error::ValueTooLarge`](crate::memcached::Error::ValueTooLarge), [`Error::Server`](crate::memcached::Error::Server),
    /// [`Error::NotStored`](crate::memcached::Error::NotStored) and the connection errors.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # let client = nearfar::memcached::Client::builder().servers(["127.0.0.1:11211"]).build()?;
    /// use nearfar::codec::FLAG_BYTES;
    ///
    /// // Bytes already encoded elsewhere (a thumbnail), stored as they are.
    /// let png = [0x89, b'P', b'N', b'G', b'\r', b'\n'];
    /// client.set_raw("thumb:42", &png, FLAG_BYTES, Duration::from_secs(3600))?;
    /// assert_eq!(client.get_raw("thumb:42")?, Some((png.to_vec(), FLAG_BYTES)));
    /// // Flags 0 is the codec's raw bytes, so a typed read gets them too.
    /// assert_eq!(client.get::<Vec<u8>>("thumb:42")?, Some(png.to_vec()));
    /// # Ok::<(), nearfar::memcached::Error>(())
    /// ```
    pub fn set_raw(&self, key: &str, data: &[u8], flags: u32, ttl: Duration) -> Result<()> {
        self.single(key, &ops::set_raw(data, flags, ttl))
    }
}
