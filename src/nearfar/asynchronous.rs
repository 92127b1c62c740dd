//! [`AsyncNearFar`] (feature `tokio`): the two-tier cache for async code,
//! over an [`AsyncClient`]. The same state ([`Inner`]), flows and
//! decisions as [`NearFar`](super::NearFar) (`read.rs`, `load.rs`,
//! `write.rs`), run in the [`Tokio`] mode: far requests await the async
//! client, lease waits await tokio's timers, loaders are futures, and
//! callers waiting for another's load await it instead of parking a
//! thread.

use std::borrow::Borrow;
use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::call::{Call, Failure, Pool};
use super::drive::{Mode, perform};
use super::flow::token::Held;
use super::flow::{FarOp, FarReply, Flow, Input, Seen, Step};
use super::inner::{Entry, Inner};
use super::load::Plan;
use super::observe::Request;
use super::refresh::Lookup;
use super::warm::Stopper;
use super::{Error, FarKey, InvalidateError, NearFarBuilder, NearFarStats};
use crate::clock::Timer;
use crate::memcached::{self, AsyncClient};
use crate::memo::BoxFuture;
use crate::store::Sharing;
use std::sync::atomic::{AtomicBool, Ordering};

/// The async mode: the async client, tokio's timers, loaders awaited.
pub(super) struct Tokio;

impl<'a> Call<'a, AsyncClient> {
    /// Runs a request on `pool` through its breaker (see [`Call::begin`]
    /// and [`Call::finish`]): `Ok(Some(_))` answered, `Ok(None)` skipped,
    /// `Err` failed. Dropped midway, the request's probe of the breaker is
    /// given back.
    async fn attempt_async<T, F>(
        &self,
        pool: Pool,
        request: Request<'_>,
        op: impl FnOnce(&'a AsyncClient) -> F,
    ) -> Result<Option<T>, Failure>
    where
        F: Future<Output = memcached::Result<T>>,
    {
        let Some(attempt) = self.begin(pool, request) else {
            return Ok(None);
        };
        let result = attempt.observed.traced(op(attempt.client)).await;
        self.finish(attempt, result)
    }
}

impl Mode for Tokio {
    type Client = AsyncClient;

    async fn perform<V>(call: &Call<'_, AsyncClient>, op: FarOp<'_, V>) -> FarReply<V>
    where
        V: Serialize + DeserializeOwned + Send + Sync,
    {
        perform!(call, op, attempt_async, await)
    }

    /// On tokio's timer; on the injected clock when there is one (a
    /// `MockClock` advances at once, so tests wait for nothing), then
    /// yielding to the other tasks.
    async fn pause(timer: &Timer, pause: Duration) {
        if timer.is_injected() {
            timer.sleep(pause);
            tokio::task::yield_now().await;
        } else {
            tokio::time::sleep(pause).await;
        }
    }

    /// Nothing can be awaited in a drop: what a load whose future was
    /// dropped (a `loader_timeout`, a `select!`) or that panicked held is
    /// released on a task of its own, on the runtime the load ran on, with
    /// the far pool's client (not through the call's breaker, which the
    /// call no longer waits on). Without a runtime (it is shutting down)
    /// the lease placeholder lapses after `lease_ttl`, and callers waiting
    /// on it take it over after `lease_wait`, as for a crashed holder.
    fn release_dropped(call: &Call<'_, AsyncClient>, timer: &Timer, held: Held<'_>) {
        let (Ok(runtime), Some(client)) = (
            tokio::runtime::Handle::try_current(),
            call.client(Pool::Far),
        ) else {
            return;
        };
        let (released, client, timer) = (held.to_owned(), client.clone(), timer.clone());
        runtime.spawn(async move {
            let client = Unguarded(&client);
            let mut held = released.held();
            let mut input = Input::Start;
            // The step loop of `drive::run`, over this task's own client.
            loop {
                input = match Flow::<()>::resume(&mut held, input, timer.now()) {
                    Step::Far(op) => Input::Far(client.perform(op).await),
                    Step::Wait(pause) => {
                        Tokio::pause(&timer, pause).await;
                        Input::Waited
                    }
                    Step::Load | Step::Done(()) => break,
                };
            }
        });
    }
}

/// The far pool's client, sending without a call's breaker or counters:
/// what a dropped load held is released with it (see
/// [`Tokio::release_dropped`]).
struct Unguarded<'a>(&'a AsyncClient);

impl<'a> Unguarded<'a> {
    /// The request `op` names, by the one mapping (`perform!`).
    async fn perform<V>(&self, op: FarOp<'_, V>) -> FarReply<V>
    where
        V: Serialize + DeserializeOwned + Send + Sync,
    {
        perform!(self, op, attempt_async, await)
    }

    /// What `perform!` calls: `op` on the far pool's client (the fallback
    /// pool is not released to: skipped).
    async fn attempt_async<T, F>(
        &self,
        pool: Pool,
        _request: Request<'_>,
        op: impl FnOnce(&'a AsyncClient) -> F,
    ) -> Result<Option<T>, Failure>
    where
        F: Future<Output = memcached::Result<T>>,
    {
        if pool != Pool::Far {
            return Ok(None);
        }
        op(self.0).await.map(Some).map_err(|e| Failure::of(&e))
    }

    /// What `perform!` calls for a skipped write: owed by the client.
    fn owe(&self, pool: Pool, fkey: &str) {
        if pool == Pool::Far {
            self.0.owe_invalidation(fkey);
        }
    }
}

/// The future of [`AsyncNearFar::get`]: a near hit, or the far read.
enum Get<'a, V> {
    Hit(Option<V>),
    Far(BoxFuture<'a, Option<V>>),
}

// Nothing of a `Get` is ever pinned in place: the value is moved out, and
// the far read is pinned in its own box.
impl<V> Unpin for Get<'_, V> {}

impl<V> Future for Get<'_, V> {
    type Output = Option<V>;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<V>> {
        match self.get_mut() {
            Get::Hit(value) => std::task::Poll::Ready(value.take()),
            Get::Far(far) => far.as_mut().poll(cx),
        }
    }
}

/// The near and far tiers as one cache, for async code (feature `tokio`).
/// Made by [`AsyncNearFar::builder`].
///
/// The same cache as [`NearFar`](super::NearFar) (see its module docs for
/// the read path, the guarantees and the staleness bounds), with an
/// [`AsyncClient`] as its far tier and `async` methods: a near hit returns
/// at once; a miss awaits memcached, and a load awaits the caller's future.
/// Callers of one missing key share one load in this process (the others
/// await it) and one across processes (memcached's lease, polled on
/// tokio's timers). The far tier's failures never reach the caller.
///
/// A handle: `Clone` is cheap and clones share everything.
///
/// # Examples
///
/// ```no_run
/// use std::time::Duration;
/// use nearfar::{AsyncNearFar, Cache};
/// use nearfar::memcached::Client;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let far = Client::builder().servers(["127.0.0.1:11211"]).build_async()?;
/// let users: AsyncNearFar<u64, String> = AsyncNearFar::builder()
///     .near(Cache::builder().max_entries(10_000))
///     .far(far)
///     .namespace("users:v3")
///     .far_ttl(Duration::from_secs(3600))
///     .build()?;
///
/// let name = users.get_with(42, || async { "Ada".to_string() }).await;
/// assert_eq!(users.get(&42).await.as_deref(), Some("Ada"));
/// users.remove(&42).await;
/// # Ok(())
/// # }
/// ```
pub struct AsyncNearFar<K, V> {
    inner: Arc<Inner<K, V, AsyncClient>>,
}

impl<K, V> Clone for AsyncNearFar<K, V> {
    fn clone(&self) -> Self {
        AsyncNearFar {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<K, V> fmt::Debug for AsyncNearFar<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.inner, f)
    }
}

impl<K, V> NearFarBuilder<K, V, AsyncClient>
where
    K: Hash + Eq + Clone + FarKey + Send + Sync + 'static,
    V: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
{
    /// Checks the settings and builds the cache. Opens no connection.
    ///
    /// # Errors
    ///
    /// As [`NearFarBuilder::build`] for a `NearFar`.
    ///
    /// # Examples
    ///
    /// ```
    /// use nearfar::AsyncNearFar;
    ///
    /// let cache = AsyncNearFar::<u32, String>::builder().build()?; // near only
    /// # Ok::<(), nearfar::NearFarError>(())
    /// ```
    pub fn build(self) -> Result<AsyncNearFar<K, V>, Error> {
        let built = self.inner()?;
        let inner = Arc::new(built.inner);
        // The key preload (see `NearFarBuilder::preload`) on a task of the
        // current runtime, aborted when the cache is dropped; outside a
        // runtime there is none to run it.
        inner.start_preload(built.preload, |weak, keys, stop| {
            let runtime = tokio::runtime::Handle::try_current().ok()?;
            let task = runtime.spawn(Inner::preload::<Tokio>(weak, keys, stop));
            let stopper: Stopper = Box::new(move || task.abort());
            Some(stopper)
        });
        Ok(AsyncNearFar { inner })
    }
}

impl<K, V> AsyncNearFar<K, V>
where
    K: Hash + Eq + Clone + FarKey + Send + Sync + 'static,
    V: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
{
    /// A builder with the defaults listed on [`NearFarBuilder`]; its
    /// [`far`](NearFarBuilder::far) takes an [`AsyncClient`].
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use nearfar::{AsyncNearFar, Cache, memcached::Client};
    ///
    /// // Neither builds connect, and neither needs a runtime.
    /// let far = Client::builder().servers(["127.0.0.1:11211"]).build_async()?;
    /// let users: AsyncNearFar<u64, String> = AsyncNearFar::builder()
    ///     .near(Cache::builder().max_entries(10_000))
    ///     .far(far)
    ///     .namespace("users:v3")
    ///     .near_ttl(Duration::from_secs(30))
    ///     .build()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn builder() -> NearFarBuilder<K, V, AsyncClient> {
        NearFarBuilder::default()
    }

    /// The value for `key`: from the near tier, else from memcached (kept
    /// near), else `None`. As [`NearFar::get`](super::NearFar::get), the
    /// key in a borrowed form too (`&str` for a `String` key).
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let cache = nearfar::AsyncNearFar::<String, u32>::builder().build()?;
    /// assert_eq!(cache.get("one").await, None);
    /// cache.insert("one".to_string(), 1).await;
    /// assert_eq!(cache.get("one").await, Some(1));
    /// # Ok::<(), nearfar::NearFarError>(())
    /// # }).unwrap();
    /// ```
    pub fn get<'a, Q>(&'a self, key: &Q) -> impl Future<Output = Option<V>> + Send + 'a
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        let inner = &*self.inner;
        // The near lookup is made here, when `get` is called: a near hit's
        // future is ready at once and costs no state machine; only the far
        // path (boxed, its state being large) is a future to drive, with
        // the key made owned.
        match inner.near.get(key) {
            Some(entry) if !inner.due(&entry) => Get::Hit(Some(entry.value)),
            entry => {
                let key = key.to_owned();
                Get::Far(Box::pin(async move {
                    inner.get_slow::<Tokio>(&key, entry).await
                }))
            }
        }
    }

    /// The value for `key`, or `load`'s value written to both tiers. As
    /// [`NearFar::get_with`](super::NearFar::get_with): `load` runs once
    /// per key per process and once across processes; waiting callers
    /// await it.
    ///
    /// # Panics
    ///
    /// When `load` panics (in this caller only; the others retry). A
    /// `load` that awaits this cache for its own key waits forever.
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let cache = nearfar::AsyncNearFar::<u32, u64>::builder().build()?;
    /// assert_eq!(cache.get_with(10, || async { 10 * 10 }).await, 100);
    /// # Ok::<(), nearfar::NearFarError>(())
    /// # }).unwrap();
    /// ```
    pub async fn get_with<F>(&self, key: K, load: impl FnOnce() -> F) -> V
    where
        F: Future<Output = V>,
    {
        self.get_with_ref(&key, load()).await
    }

    /// Like [`get_with`](Self::get_with) for a fallible loader: an error is
    /// not cached; it goes to this caller and those awaiting the same load
    /// (one shared `Arc`). A memcached lease won for the failed load is
    /// released.
    ///
    /// # Errors
    ///
    /// The loader's error, shared. Never an error of the far tier.
    ///
    /// # Panics
    ///
    /// As for [`get_with`](Self::get_with).
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let cache = nearfar::AsyncNearFar::<String, u32>::builder().build()?;
    /// let ok = cache.try_get_with("7".to_string(), || async { "7".parse::<u32>() }).await;
    /// assert_eq!(ok.unwrap(), 7);
    /// # Ok::<(), nearfar::NearFarError>(())
    /// # }).unwrap();
    /// ```
    pub async fn try_get_with<E, F>(&self, key: K, load: impl FnOnce() -> F) -> Result<V, Arc<E>>
    where
        E: Send + Sync + 'static,
        F: Future<Output = Result<V, E>>,
    {
        self.try_get_with_ref(&key, load()).await
    }

    /// [`get_with`](Self::get_with) for a borrowed key, cloned only on a
    /// near miss (the memoisation path). `load` is polled only on a miss.
    async fn get_with_ref(&self, key: &K, load: impl Future<Output = V>) -> V {
        let load = async move { Ok::<V, std::convert::Infallible>(load.await) };
        match self.try_get_with_ref(key, load).await {
            Ok(v) => v,
            Err(e) => match *e {},
        }
    }

    /// [`try_get_with`](Self::try_get_with) for a borrowed key, cloned only
    /// on a near miss.
    async fn try_get_with_ref<E>(
        &self,
        key: &K,
        load: impl Future<Output = Result<V, E>>,
    ) -> Result<V, Arc<E>>
    where
        E: Send + Sync + 'static,
    {
        let inner = &*self.inner;
        match inner.lookup(key) {
            Lookup::Fresh(value) => Ok(value),
            Lookup::DueRefresh(entry) => {
                // On this task: see `NearFarBuilder::refresh_ahead`.
                Ok(Box::pin(inner.refresh_ahead::<Tokio, E>(key, entry, load)).await)
            }
            // Boxed, as in `get`: a near hit does not move the load's state.
            Lookup::Load(entry) => Box::pin(self.load(key, entry, load)).await,
        }
    }

    /// As [`get_with`](Self::get_with), for a loader that owns what it
    /// uses (`Send + 'static`), so that a refresh-ahead (see
    /// [`NearFarBuilder::refresh_ahead`]) runs on a task of its own: the
    /// caller that wins the refresh is served the current copy at once,
    /// like every other caller, and no caller waits for the refresh. A miss
    /// is loaded as by `get_with`, awaited by its callers.
    ///
    /// # Panics
    ///
    /// As for [`get_with`](Self::get_with). A refresh that panics on its
    /// task ends that task only (the copy stays until it expires).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use nearfar::AsyncNearFar;
    ///
    /// # async fn fetch_rate(_: &str) -> f64 { 1.08 }
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let rates: AsyncNearFar<String, f64> = AsyncNearFar::builder()
    ///     .near_ttl(Duration::from_secs(60))
    ///     .refresh_ahead(0.8)
    ///     .build()?;
    /// let rate = rates
    ///     .get_with_spawned("eur".to_string(), || async { fetch_rate("eur").await })
    ///     .await;
    /// assert_eq!(rate, 1.08);
    /// # Ok::<(), nearfar::NearFarError>(())
    /// # }).unwrap();
    /// ```
    pub async fn get_with_spawned<F>(&self, key: K, load: impl FnOnce() -> F) -> V
    where
        F: Future<Output = V> + Send + 'static,
    {
        let load = || {
            let load = load();
            async move { Ok::<V, std::convert::Infallible>(load.await) }
        };
        match self.try_get_with_spawned(key, load).await {
            Ok(v) => v,
            Err(e) => match *e {},
        }
    }

    /// As [`try_get_with`](Self::try_get_with), with the refresh-ahead of
    /// [`get_with_spawned`](Self::get_with_spawned) on a task of its own.
    ///
    /// # Errors
    ///
    /// The loader's error, shared, for a miss. The error of a refresh is
    /// not returned (the copy is served, and stays until it expires).
    ///
    /// # Panics
    ///
    /// As for [`get_with_spawned`](Self::get_with_spawned).
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let cache = nearfar::AsyncNearFar::<String, u32>::builder().build()?;
    /// let ok = cache
    ///     .try_get_with_spawned("7".to_string(), || async { "7".parse::<u32>() })
    ///     .await;
    /// assert_eq!(ok.unwrap(), 7);
    /// # Ok::<(), nearfar::NearFarError>(())
    /// # }).unwrap();
    /// ```
    pub async fn try_get_with_spawned<E, F>(
        &self,
        key: K,
        load: impl FnOnce() -> F,
    ) -> Result<V, Arc<E>>
    where
        E: Send + Sync + 'static,
        F: Future<Output = Result<V, E>> + Send + 'static,
    {
        match self.inner.lookup(&key) {
            Lookup::Fresh(value) => Ok(value),
            Lookup::DueRefresh(entry) => {
                self.spawn_refresh(key, load());
                Ok(entry.value)
            }
            Lookup::Load(entry) => Box::pin(self.load(&key, entry, load())).await,
        }
    }

    /// Starts the refresh of `key` on a task of its own if this caller
    /// wins the key's claim (claimed here, so that one task is spawned
    /// however many callers find the copy due). Without a runtime to
    /// spawn on (it is shutting down) there is no refresh.
    fn spawn_refresh<E, F>(&self, key: K, load: F)
    where
        E: Send + Sync + 'static,
        F: Future<Output = Result<V, E>> + Send + 'static,
    {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let Some(claim) = self.inner.claim_refresh(&key) else {
            return;
        };
        let (claim, inner) = (claim.detach(), Arc::clone(&self.inner));
        runtime.spawn(async move {
            let claim = inner.reattach(claim);
            inner.refresh_claimed::<Tokio, E>(&key, claim, load).await;
        });
    }

    /// `try_get_with` after a near miss (or with a copy due for
    /// revalidation): the coalesced load of [`Inner::plan_load`]'s plan.
    async fn load<E>(
        &self,
        key: &K,
        entry: Option<Entry<V>>,
        load: impl Future<Output = Result<V, E>>,
    ) -> Result<V, Arc<E>>
    where
        E: Send + Sync + 'static,
    {
        let inner = &*self.inner;
        let plan = match inner.plan_load::<Tokio>(key, entry).await {
            Plan::Done(v) => return Ok(v),
            plan => plan,
        };
        // Awaiting callers' loads are always shared (see
        // `Cache::load_after_miss_async`): this caller's runs if it leads.
        let timeout = inner.fail_safe.and_then(|f| f.loader_timeout);
        let loading = inner.load_fail_safe::<Tokio, E>(key, &plan, Sharing::Shared, load, timeout);
        let ran = AtomicBool::new(false);
        let loading = async {
            // Relaxed: read below by this same call, once the load is over.
            ran.store(true, Ordering::Relaxed);
            loading.await
        };
        let result = inner.near.load_after_miss_async(key.clone(), loading).await;
        inner
            .after_load::<Tokio>(&plan, ran.load(Ordering::Relaxed))
            .await;
        result.map(|entry| entry.value)
    }

    /// Stores `value` under `key` in both tiers. As
    /// [`NearFar::insert`](super::NearFar::insert).
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let cache = nearfar::AsyncNearFar::<u8, String>::builder().build()?;
    /// cache.insert(1, "one".into()).await;
    /// assert_eq!(cache.get(&1).await.as_deref(), Some("one"));
    /// # Ok::<(), nearfar::NearFarError>(())
    /// # }).unwrap();
    /// ```
    pub async fn insert(&self, key: K, value: V) {
        self.inner.insert::<Tokio>(key, value).await;
    }

    /// Removes `key` from both tiers. As
    /// [`NearFar::remove`](super::NearFar::remove).
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let cache = nearfar::AsyncNearFar::<u8, String>::builder().build()?;
    /// cache.insert(1, "one".into()).await;
    /// cache.remove(&1).await;
    /// assert_eq!(cache.get(&1).await, None);
    /// # Ok::<(), nearfar::NearFarError>(())
    /// # }).unwrap();
    /// ```
    pub async fn remove(&self, key: &K) {
        self.inner.remove::<Tokio>(key).await;
    }

    /// Drops this process's near copy of `key` only (the far tier keeps
    /// it): the next read fetches it from memcached. As
    /// [`NearFar::remove_near`](super::NearFar::remove_near).
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// // Near only here, so the copy is all there is.
    /// let cache = nearfar::AsyncNearFar::<u8, String>::builder().build()?;
    /// cache.insert(1, "one".into()).await;
    /// cache.remove_near(&1); // not async: nothing is sent
    /// assert_eq!(cache.get(&1).await, None);
    /// # Ok::<(), nearfar::NearFarError>(())
    /// # }).unwrap();
    /// ```
    pub fn remove_near(&self, key: &K) {
        self.inner.near.drop_copy(key);
    }

    /// Invalidates every key of the namespace, in every process. As
    /// [`NearFar::invalidate_all`](super::NearFar::invalidate_all): bumps
    /// the namespace's generation in memcached and clears this process's
    /// near tier; the other processes follow within
    /// [`generation_check`](NearFarBuilder::generation_check) plus one
    /// round trip.
    ///
    /// # Errors
    ///
    /// As [`NearFar::invalidate_all`](super::NearFar::invalidate_all): an
    /// [`InvalidateError`] says why nothing (or, with
    /// [`InvalidateError::NoAnswer`], maybe nothing) was invalidated.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use nearfar::{AsyncNearFar, memcached::Client};
    ///
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let far = Client::builder().servers(["127.0.0.1:11211"]).build_async()?;
    /// let prices: AsyncNearFar<u64, u64> = AsyncNearFar::builder()
    ///     .far(far)
    ///     .namespace("prices")
    ///     .generation_check(Duration::from_secs(1))
    ///     .build()?;
    /// prices.invalidate_all().await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn invalidate_all(&self) -> Result<(), InvalidateError> {
        self.inner.invalidate_all::<Tokio>().await
    }

    /// The memcached key used for `key`: see
    /// [`NearFar::far_key`](super::NearFar::far_key).
    ///
    /// # Examples
    ///
    /// ```
    /// use nearfar::{AsyncNearFar, memcached::Client};
    ///
    /// let far = Client::builder().servers(["127.0.0.1:11211"]).build_async()?;
    /// let cache: AsyncNearFar<String, u32> =
    ///     AsyncNearFar::builder().far(far).namespace("ns").build()?;
    /// assert_eq!(cache.far_key(&"a".into()).as_deref(), Some("ns:a"));
    /// let odd = cache.far_key(&"a b".into()).unwrap(); // a space: hashed
    /// assert!(odd.starts_with("ns:#") && odd.len() == 3 + 33);
    /// let near_only = AsyncNearFar::<String, u32>::builder().build()?;
    /// assert_eq!(near_only.far_key(&"a".into()), None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn far_key(&self, key: &K) -> Option<String> {
        self.inner.far_key(key)
    }

    /// Whether the circuit breaker is open. As
    /// [`NearFar::far_breaker_open`](super::NearFar::far_breaker_open).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use nearfar::{AsyncNearFar, memcached::Client};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// // Nothing listens on port 1: every far request fails at once.
    /// let far = Client::builder().servers(["127.0.0.1:1"]).build_async()?;
    /// let cache: AsyncNearFar<u32, u32> = AsyncNearFar::builder()
    ///     .far(far)
    ///     .circuit_breaker(1, Duration::from_secs(30))
    ///     .build()?;
    /// assert!(!cache.far_breaker_open());
    /// assert_eq!(cache.get_with(1, || async { 10 }).await, 10); // loaded here
    /// assert!(cache.far_breaker_open()); // for 30 s, then until a probe succeeds
    /// assert_eq!(cache.get_with(2, || async { 20 }).await, 20); // far skipped
    /// assert_eq!(cache.stats().far_errors, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn far_breaker_open(&self) -> bool {
        self.inner.far_breaker_open()
    }

    /// A snapshot of the counters. As
    /// [`NearFar::stats`](super::NearFar::stats).
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let cache = nearfar::AsyncNearFar::<u8, u8>::builder().build()?;
    /// cache.get_with(1, || async { 1 }).await;
    /// cache.get(&1).await;
    /// let s = cache.stats();
    /// assert_eq!((s.loader_calls, s.near_hits), (1, 1));
    /// # Ok::<(), nearfar::NearFarError>(())
    /// # }).unwrap();
    /// ```
    pub fn stats(&self) -> NearFarStats {
        self.inner.stats()
    }

    /// Publishes the counters to the `metrics` facade now, as
    /// [`NearFar::publish_metrics`](super::NearFar::publish_metrics) does.
    ///
    /// # Examples
    ///
    /// ```
    /// let cache: nearfar::AsyncNearFar<u8, u8> =
    ///     nearfar::AsyncNearFar::builder().name("sessions").build()?;
    /// cache.publish_metrics(); // needs no runtime
    /// # Ok::<(), nearfar::NearFarError>(())
    /// ```
    pub fn publish_metrics(&self) {
        self.inner.publish_metrics();
    }
}

/// `#[nearfar::memoize(store = ...)]` on an `async fn` (and
/// [`memoize_async_in`](crate::memo::memoize_async_in)) can memoise
/// through an `AsyncNearFar`: results are shared with other processes
/// through memcached, and a far-tier outage degrades to the near tier and
/// the function itself.
impl<K, V> crate::memo::AsyncMemoStore<K, V> for AsyncNearFar<K, V>
where
    K: Hash + Eq + Clone + FarKey + Send + Sync + 'static,
    V: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
{
    /// A near hit not due for revalidation (a copy due for it is fetched
    /// again by the miss path, which replaces it).
    fn get_now(&self, key: &K) -> Option<V> {
        let inner = &*self.inner;
        inner
            .near
            .get(key)
            .filter(|entry| !inner.due(entry))
            .map(|entry| entry.value)
    }

    fn compute_after_miss<'a>(&'a self, key: &'a K, compute: BoxFuture<'a, V>) -> BoxFuture<'a, V> {
        let computed = async { Ok::<V, std::convert::Infallible>(compute.await) };
        Box::pin(async move {
            match self.load(key, None, computed).await {
                Ok(v) => v,
                Err(e) => match *e {},
            }
        })
    }

    fn try_compute_after_miss<'a>(
        &'a self,
        key: &'a K,
        compute: BoxFuture<'a, Option<V>>,
    ) -> BoxFuture<'a, Option<V>> {
        let computed = async { compute.await.ok_or(()) };
        Box::pin(async move { self.load(key, None, computed).await.ok() })
    }
}
