//! The awaiting side of the loading engine: `get_or_insert_async` and
//! `try_get_or_insert_async`. A missed key is claimed as in the blocking
//! family (`claim`); the leader awaits its loader under the same `Abandon`
//! guard (which also fires when its future is dropped) and publishes the
//! outcome with `publish`; a waiter awaits [`WaitLoad`] instead of blocking.

use std::future::Future;
use std::hash::{BuildHasher, Hash};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use super::{Abandon, Claim, InFlight, MissedKey, Outcome};
use crate::store::shard::Shard;
use crate::store::{Cache, Touch};

impl<K, V, S> Cache<K, V, S>
where
    K: Hash + Eq,
    V: Clone,
    S: BuildHasher,
{
    /// Returns the value for `key`, or `load`'s value, stored: the async
    /// counterpart of [`get_or_insert_with`](Self::get_or_insert_with).
    ///
    /// `load` runs once per key however many callers ask at once; the others
    /// await its value, parking no thread (a load's end wakes them).
    /// Dropping the future of the caller whose `load` is running (a timeout,
    /// say) releases the others: one of them loads instead. A value that
    /// finds no memory at once (see [`max_weight`](crate::CacheBuilder::max_weight))
    /// is returned to its callers unstored rather than waited for.
    ///
    /// # Panics
    ///
    /// When `load` panics: in this caller only; the others awaiting it load
    /// again. A `load` that awaits this cache for its own key waits forever
    /// (unlike the blocking family, an async load's task cannot be told
    /// apart from another's).
    ///
    /// ```
    /// # use std::future::Future;
    /// # use std::task::{Context, Poll, Waker};
    /// # fn block_on<F: Future>(f: F) -> F::Output {
    /// #     let mut f = std::pin::pin!(f);
    /// #     let mut cx = Context::from_waker(Waker::noop());
    /// #     loop { if let Poll::Ready(v) = f.as_mut().poll(&mut cx) { return v; } }
    /// # }
    /// let cache = nearfar::Cache::new(100);
    /// let v = block_on(cache.get_or_insert_async(1, async { "one" }));
    /// assert_eq!(v, "one");
    /// let again = block_on(cache.get_or_insert_async(1, async { unreachable!() }));
    /// assert_eq!(again, "one");
    /// ```
    pub async fn get_or_insert_async(&self, key: K, load: impl Future<Output = V>) -> V {
        let infallible = async { Ok::<V, std::convert::Infallible>(load.await) };
        match self.try_get_or_insert_async(key, infallible).await {
            Ok(v) => v,
            Err(e) => match *e {},
        }
    }

    /// Like [`get_or_insert_async`](Self::get_or_insert_async) for a
    /// fallible loader: an error is not cached; it goes to this caller and
    /// to those awaiting the same load (one shared `Arc`), and the next
    /// caller tries again.
    ///
    /// # Errors
    ///
    /// The loader's error, shared.
    ///
    /// # Panics
    ///
    /// As for [`get_or_insert_async`](Self::get_or_insert_async).
    pub async fn try_get_or_insert_async<E>(
        &self,
        key: K,
        load: impl Future<Output = Result<V, E>>,
    ) -> Result<V, Arc<E>>
    where
        E: Send + Sync + 'static,
    {
        let hash = self.inner.hasher.hash_one(&key);
        if let Some(v) = self.lookup(hash, &key, Touch::Use, V::clone) {
            return Ok(v);
        }
        let load = async { load.await.map(|v| (v, None)) };
        self.load_missed_async(hash, key, load).await
    }

    /// The async counterpart of [`load_after_miss`](Self::load_after_miss),
    /// for a cache layered over the store (`AsyncNearFar`) that has just
    /// looked `key` up itself and missed: the coalesced load, whose loader
    /// returns the value and an optional TTL (`None`: the cache's default).
    /// Awaiting callers cannot be told apart by task (see
    /// [`get_or_insert_async`](Self::get_or_insert_async)), so a loader's
    /// value is always shared ([`Sharing::Shared`](crate::store::Sharing)).
    #[allow(
        dead_code,
        reason = "the store's API for a layered cache, unused without one: see `LAYERED`"
    )]
    pub(crate) async fn load_after_miss_async<E>(
        &self,
        key: K,
        load: impl Future<Output = Result<(V, Option<Duration>), E>>,
    ) -> Result<V, Arc<E>>
    where
        E: Send + Sync + 'static,
    {
        let hash = self.inner.hasher.hash_one(&key);
        self.load_missed_async(hash, key, load).await
    }

    /// The slow half of [`try_get_or_insert_async`](Self::try_get_or_insert_async),
    /// after a lookup of `key` (hashing to `hash`) missed.
    async fn load_missed_async<E>(
        &self,
        hash: u64,
        key: K,
        load: impl Future<Output = Result<(V, Option<Duration>), E>>,
    ) -> Result<V, Arc<E>>
    where
        E: Send + Sync + 'static,
    {
        let shard = self.shard(hash);
        let mut key = MissedKey::Owned(key);
        let flight = loop {
            let waiting = match self.claim(shard, hash, key, true) {
                Claim::Stored(v) => return Ok(v),
                Claim::Lead(flight) => break flight,
                Claim::Wait(flight, k) => {
                    key = k;
                    flight
                }
            };
            match (WaitLoad { flight: &waiting }).await {
                Outcome::Value(v) => return Ok(v),
                Outcome::Failed(e) => {
                    if let Ok(e) = e.downcast::<E>() {
                        return Err(e);
                    }
                }
                Outcome::Retry => {}
            }
        };
        self.lead_async(shard, hash, flight, load).await
    }

    /// [`lead`](Self::lead) for an async loader. The guard also releases
    /// the waiters when this future is dropped before the loader finishes
    /// (cancelled): they retry, and one of them leads. A value that finds
    /// no memory at once (see `shard::retired`) is returned unstored rather
    /// than waited for: an async caller must not block its executor.
    async fn lead_async<E>(
        &self,
        shard: &Shard<K, V>,
        hash: u64,
        flight: Arc<InFlight<V>>,
        load: impl Future<Output = Result<(V, Option<Duration>), E>>,
    ) -> Result<V, Arc<E>>
    where
        E: Send + Sync + 'static,
    {
        let abandon = Abandon {
            shard,
            flight: &flight,
        };
        let loaded = load.await;
        let result = self.publish(shard, hash, &flight, loaded, false);
        std::mem::forget(abandon);
        result
    }
}

/// Awaits the end of a load (see [`InFlight::outcome`]).
struct WaitLoad<'a, V> {
    flight: &'a InFlight<V>,
}

impl<V: Clone> Future for WaitLoad<'_, V> {
    type Output = Outcome<V>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Outcome<V>> {
        match self.flight.outcome(cx.waker()) {
            Some(outcome) => Poll::Ready(outcome),
            None => Poll::Pending,
        }
    }
}
