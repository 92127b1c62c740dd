//! Fail-safe copies: what `CacheBuilder::keep_expired` keeps past its TTL,
//! read back with [`Cache::get_stale`]. (Keeping them is the shard's: an
//! expired entry met by a read or by the sweep moves to the list evicted
//! first while `keep_expired` allows, see `shard/unlink.rs`.)

use std::borrow::Borrow;
use std::hash::{BuildHasher, Hash};
use std::time::Duration;

use super::ttl::is_expired;
use super::{Cache, local};

impl<K, V, S> Cache<K, V, S>
where
    K: Hash + Eq,
    V: Clone,
    S: BuildHasher,
{
    /// The value for `key` if it has expired and is kept as a fail-safe copy
    /// (see [`CacheBuilder::keep_expired`](super::CacheBuilder::keep_expired)),
    /// with how long ago it expired. `None` when the key is absent, live
    /// (read it with [`get`](Self::get)), or expired longer ago than the
    /// cache keeps.
    ///
    /// Neither marks the entry as used nor counts a hit or a miss, and takes
    /// no lock.
    ///
    /// # Examples
    ///
    /// Serving the last good value when the source fails:
    ///
    /// ```
    /// use std::time::Duration;
    /// use nearfar::{Cache, MockClock};
    ///
    /// let clock = MockClock::new();
    /// let cache = Cache::builder()
    ///     .max_entries(100)
    ///     .time_to_live(Duration::from_secs(10))
    ///     .keep_expired(Duration::from_secs(300))
    ///     .clock(clock.clone())
    ///     .build();
    /// let fetch = |ok: bool| if ok { Ok(42) } else { Err("source down") };
    ///
    /// assert_eq!(cache.try_get_or_insert_with("answer", || fetch(true)), Ok(42));
    /// clock.advance(Duration::from_secs(11));
    /// let served = cache
    ///     .try_get_or_insert_with("answer", || fetch(false))
    ///     .or_else(|e| cache.get_stale("answer").map(|(v, _)| v).ok_or(e));
    /// assert_eq!(served, Ok(42));
    /// ```
    pub fn get_stale<Q>(&self, key: &Q) -> Option<(V, Duration)>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.inner.hasher.hash_one(key);
        let shard = self.shard(hash);
        let guard = local::pin();
        let (_, slot) = shard.find(hash, key, &guard)?;
        // A rebase racing this read may decode it earlier than it is (see
        // `expiry`): a live entry then passes for expired (its value, the
        // one a hit returns, served as stale) or a kept one for gone; never
        // a copy past what `keep_expired` allows.
        let expires = shard.expires(slot);
        let now = self.inner.time.now();
        if expires == 0 || !is_expired(expires, now) || !self.inner.time.kept(expires, now) {
            return None;
        }
        // SAFETY: reached through the index while pinned (see `Slot::key`):
        // the slot's fields stay as written until the epoch passes.
        let value = unsafe { slot.value() }.clone();
        Some((value, Duration::from_nanos(now - expires)))
    }
}
