//! Leases (memcached's `mg ... N`): who computes a missing value, and
//! stale-while-revalidate through invalidation.

use std::time::Duration;

use serde::de::DeserializeOwned;

use super::Client;
use crate::codec::Codec;
use crate::memcached::command::{Cas, Lease, Seen};
use crate::memcached::error::Result;
use crate::memcached::ops;

impl<C: Codec> Client<C> {
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
        Ok(self
            .single(key, &ops::lease::<C, V>(&self.inner, lease_ttl, None))?
            .0)
    }

    /// [`Client::get_or_lease`] (with [`recache`](Client::get_or_lease_with_recache)
    /// when given), with the CAS unique and remaining TTL of the item read:
    /// for [`Lease::Wait`], those of the placeholder another caller holds,
    /// which tell how old it is and let a waiter take an abandoned one over
    /// (delete it by its CAS and lease again).
    pub(crate) fn get_or_lease_seen<V: DeserializeOwned>(
        &self,
        key: &str,
        lease_ttl: Duration,
        recache: Option<Duration>,
    ) -> Result<(Lease<V>, Seen)> {
        self.single(key, &ops::lease::<C, V>(&self.inner, lease_ttl, recache))
    }

    /// Like [`Client::get_or_lease`], and also hands one caller
    /// [`Lease::Won`] (with the current value as `previous`) once the item
    /// has less than `recache_within` left to live, so it is recomputed
    /// before it expires.
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
    /// use nearfar::memcached::Lease;
    ///
    /// let (lease_ttl, recache_within) = (Duration::from_secs(10), Duration::from_secs(60));
    /// client.set("report", "Q3 figures", Duration::from_secs(30))?;
    /// // Under a minute left: this caller is asked to recompute it now...
    /// let Lease::Won { previous, cas } =
    ///     client.get_or_lease_with_recache::<String>("report", lease_ttl, recache_within)?
    /// else {
    ///     panic!("the first reader of an item about to expire wins")
    /// };
    /// assert_eq!(previous.as_deref(), Some("Q3 figures"));
    /// // ...while the others still read the current value.
    /// assert!(matches!(
    ///     client.get_or_lease_with_recache::<String>("report", lease_ttl, recache_within)?,
    ///     Lease::Hit { .. }
    /// ));
    /// let revised = "Q3 figures, revised";
    /// assert!(client.cas("report", revised, Duration::from_secs(300), cas)?);
    /// # Ok::<(), nearfar::memcached::Error>(())
    /// ```
    pub fn get_or_lease_with_recache<V: DeserializeOwned>(
        &self,
        key: &str,
        lease_ttl: Duration,
        recache_within: Duration,
    ) -> Result<Lease<V>> {
        let lease = ops::lease::<C, V>(&self.inner, lease_ttl, Some(recache_within));
        Ok(self.single(key, &lease)?.0)
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
        self.single(key, &ops::peek_lease::<C, V>(&self.inner))
    }

    /// Like [`Client::peek_lease`] without the value bytes: the CAS unique,
    /// remaining TTL and lease state of `key` (`value` is `()`), a cheap
    /// check whether a copy held elsewhere is still current that, unlike
    /// [`Client::cas_only`], tells a stale item and its recompute token apart.
    ///
    /// As with `peek_lease`, the first peek at a stale item (after
    /// [`invalidate`](Client::invalidate)) wins its recompute token
    /// ([`Lease::Won`]): a caller that only checks currency and drops a
    /// won token leaves the other readers served the stale value until it
    /// expires, so a caller that wins should recompute and store the value.
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
    /// use nearfar::memcached::Lease;
    ///
    /// let cas = client.set_returning_cas("report", "Q3 figures", Duration::from_secs(300))?;
    /// // The copy we wrote is the stored one, and not marked stale.
    /// assert!(matches!(
    ///     client.peek_lease_cas("report")?,
    ///     Some(Lease::Hit { cas: now, stale: false, .. }) if now == cas
    /// ));
    /// client.invalidate("report", Duration::from_secs(30))?;
    /// // Stale now; this read is handed the recompute token (a caller that
    /// // will not recompute should delete the key: see `peek_lease`).
    /// assert!(matches!(client.peek_lease_cas("report")?, Some(Lease::Won { .. })));
    /// assert_eq!(client.peek_lease_cas("report:missing")?, None);
    /// # Ok::<(), nearfar::memcached::Error>(())
    /// ```
    pub fn peek_lease_cas(&self, key: &str) -> Result<Option<Lease<()>>> {
        self.single(key, &ops::peek_lease_cas())
    }

    /// Marks `key` stale instead of removing it: the value stays readable for
    /// `stale_ttl`, and the next [`Client::get_or_lease`] wins the lease to
    /// recompute it while others see [`Lease::Hit`] with `stale: true`.
    /// Returns `Ok(false)` if the key held nothing.
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
    /// use nearfar::memcached::Lease;
    ///
    /// let lease_ttl = Duration::from_secs(10);
    /// client.set("report", "Q3 figures", Duration::from_secs(300))?;
    /// // The source changed: mark the copy stale rather than delete it.
    /// assert!(client.invalidate("report", Duration::from_secs(30))?);
    /// // The next reader recomputes it, with the old value to serve meanwhile...
    /// let Lease::Won { previous, .. } = client.get_or_lease::<String>("report", lease_ttl)? else {
    ///     panic!("the first reader after an invalidation wins")
    /// };
    /// assert_eq!(previous.as_deref(), Some("Q3 figures"));
    /// // ...while the other readers get the stale value.
    /// assert!(matches!(
    ///     client.get_or_lease::<String>("report", lease_ttl)?,
    ///     Lease::Hit { stale: true, .. }
    /// ));
    /// assert!(!client.invalidate("report:missing", Duration::from_secs(30))?);
    /// # Ok::<(), nearfar::memcached::Error>(())
    /// ```
    pub fn invalidate(&self, key: &str, stale_ttl: Duration) -> Result<bool> {
        self.single(key, &ops::invalidate(stale_ttl, None))
    }

    /// Like [`Client::invalidate`], but only if the item's CAS unique is
    /// still `cas`: `Ok(false)` when it changed, or holds nothing. For
    /// marking an item stale again after reading it, without marking a
    /// value written since.
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
    /// if let Some(cas) = client.cas_only("report")? {
    ///     client.invalidate_if_cas("report", Duration::from_secs(30), cas)?;
    /// }
    /// # Ok::<(), nearfar::memcached::Error>(())
    /// ```
    pub fn invalidate_if_cas(&self, key: &str, stale_ttl: Duration, cas: Cas) -> Result<bool> {
        self.single(key, &ops::invalidate(stale_ttl, Some(cas)))
    }
}
