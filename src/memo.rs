//! Memoisation: cache a function's results by its arguments.
//!
//! * [`Memo`] wraps a closure `Fn(&K) -> V` and a [`Cache`]: `memo.get(&k)`
//!   runs the closure once per key, even when many threads ask for the same
//!   missing key at once (they wait for the one run and share its value).
//! * [`TryMemo`] does the same for a fallible closure `Fn(&K) -> Result<V, E>`:
//!   only `Ok` values are cached; an error goes back (as `Arc<E>`) to the
//!   caller that ran the closure and to the callers waiting on it.
//! * [`MemoStore`] is what the [`#[memoize]`](crate::memoize) attribute
//!   stores results in: a [`Cache`] by default, or any store of your own
//!   (`store = PATH`).
//! * [`memoize`], [`memoize_result`] and [`memoize_option`] are the calls the
//!   attribute expands to; they work on any [`MemoStore`].
//!   [`memoize_async`], [`memoize_result_async`] and [`memoize_option_async`]
//!   are their counterparts for an `async fn`, on a [`Cache`];
//!   [`memoize_async_in`] and its siblings on any [`AsyncMemoStore`] (a
//!   `Cache`, or an `AsyncNearFar`), for `store = PATH`.
//!
//! ```
//! use nearfar::memo::Memo;
//!
//! let square = Memo::new(1_000, |n: &u64| n * n);
//! assert_eq!(square.get(&12), 144);
//! assert_eq!(square.get(&12), 144); // from the cache
//! assert_eq!(square.cache().stats().hits, 1);
//! ```

use std::fmt;
use std::future::Future;
use std::hash::{BuildHasher, Hash};
use std::pin::Pin;
use std::sync::{Arc, LazyLock};

use crate::Cache;

/// A function memoised in a [`Cache`]: `get(&key)` returns the cached value
/// for `key`, or runs the function once for it and caches the result.
///
/// The function takes its key by reference (`Fn(&K) -> V`); the key is cloned
/// into the cache only on a miss, so a hit costs a lookup and a clone of the
/// value (wrap large values in [`Arc`]).
///
/// Concurrent callers for the same missing key run the function once: the
/// others wait for its value. If the function panics, the panic propagates to
/// the caller that ran it, nothing is cached, and a waiting caller runs it
/// again.
///
/// # Panics
/// If the function asks its own `Memo` for the key it is computing (it would
/// wait for itself forever). Asking for *other* keys — recursion on smaller
/// inputs — is fine.
///
/// ```
/// use std::time::Duration;
/// use nearfar::{Cache, memo::Memo};
///
/// // Bounded by entry count:
/// let lengths = Memo::new(10_000, |s: &String| s.chars().count());
/// assert_eq!(lengths.get(&"héllo".to_string()), 5);
///
/// // Any cache: a TTL, a weight bound, your own hasher...
/// let cache = Cache::builder()
///     .max_entries(100)
///     .time_to_live(Duration::from_secs(60))
///     .build();
/// let slow = Memo::with_cache(cache, |id: &u32| format!("user {id}"));
/// assert_eq!(slow.get(&7), "user 7");
/// assert_eq!(slow.cache().len(), 1);
/// ```
pub struct Memo<K, V, F, S = ahash::RandomState> {
    cache: Cache<K, V, S>,
    f: F,
}

impl<K, V, F> Memo<K, V, F>
where
    K: Hash + Eq + Clone,
    V: Clone,
    F: Fn(&K) -> V,
{
    /// Memoises `f` in a new cache of at most `max_entries` entries.
    pub fn new(max_entries: usize, f: F) -> Self {
        Memo {
            cache: Cache::new(max_entries),
            f,
        }
    }
}

impl<K, V, F, S> Memo<K, V, F, S>
where
    K: Hash + Eq + Clone,
    V: Clone,
    S: BuildHasher,
    F: Fn(&K) -> V,
{
    /// The function's value for `key`: cached, or computed now and cached.
    ///
    /// # Panics
    /// See [`Memo`]: when the function asks this memo for `key` itself, and
    /// whenever the function panics.
    pub fn get(&self, key: &K) -> V {
        self.cache.get_or_insert_with_ref(key, || (self.f)(key))
    }
}

/// A fallible function memoised in a [`Cache`]: like [`Memo`] for
/// `Fn(&K) -> Result<V, E>`. Only `Ok` values are cached.
///
/// An error is returned as `Arc<E>`, to the caller that ran the function and
/// to the callers that were waiting on that run (the same `Arc`); it is not
/// cached, so the next call for the key runs the function again. (The
/// `#[memoize]` attribute, through [`memoize_result`], cannot share an
/// error it cannot clone: its waiters run the function again instead, one
/// at a time.)
///
/// ```
/// use nearfar::memo::TryMemo;
///
/// let parse = TryMemo::new(100, |s: &String| s.parse::<u32>());
/// assert_eq!(parse.get(&"42".to_string()), Ok(42));
/// assert!(parse.get(&"forty-two".to_string()).is_err());
/// assert_eq!(parse.cache().len(), 1); // the error was not cached
/// ```
///
/// The error type must be `Send + Sync + 'static` (errors are shared as
/// `Arc<E>` between threads); [`TryMemo::new`] requires it up front:
///
/// ```compile_fail
/// use nearfar::memo::TryMemo;
/// let _memo = TryMemo::new(10, |_: &u8| Err::<u8, _>(std::rc::Rc::new(())));
/// ```
pub struct TryMemo<K, V, F, S = ahash::RandomState> {
    cache: Cache<K, V, S>,
    f: F,
}

impl<K, V, E, F> TryMemo<K, V, F>
where
    K: Hash + Eq + Clone,
    V: Clone,
    F: Fn(&K) -> Result<V, E>,
    // As `get` requires (errors are shared as `Arc<E>`): checked here so a
    // memo that could never be asked is refused where it is made.
    E: Send + Sync + 'static,
{
    /// Memoises `f` in a new cache of at most `max_entries` entries.
    pub fn new(max_entries: usize, f: F) -> Self {
        TryMemo {
            cache: Cache::new(max_entries),
            f,
        }
    }
}

impl<K, V, E, F, S> TryMemo<K, V, F, S>
where
    K: Hash + Eq + Clone,
    V: Clone,
    S: BuildHasher,
    F: Fn(&K) -> Result<V, E>,
    E: Send + Sync + 'static,
{
    /// The function's `Ok` value for `key`: cached, or computed now and
    /// cached.
    ///
    /// # Errors
    /// The function's error (not cached), shared with the callers that
    /// waited on the same run.
    ///
    /// # Panics
    /// As for [`Memo::get`].
    pub fn get(&self, key: &K) -> Result<V, Arc<E>> {
        self.cache.try_get_or_insert_with_ref(key, || (self.f)(key))
    }
}

/// What [`Memo`] and [`TryMemo`] share: a cache and a function, and the
/// methods and impls that do not depend on what the function returns.
macro_rules! memo_common {
    ($name:ident, $holds:literal) => {
        impl<K, V, F, S> $name<K, V, F, S> {
            /// Memoises `f` in `cache` (built with any bound, TTL or hasher).
            /// The cache may be a clone of one used elsewhere: clones share
            /// entries.
            pub fn with_cache(cache: Cache<K, V, S>, f: F) -> Self {
                $name { cache, f }
            }

            #[doc = concat!("The cache behind this memo (", $holds, "): for")]
            /// [`stats`](Cache::stats), [`clear`](Cache::clear),
            /// [`remove`](Cache::remove) or seeding it with
            /// [`insert`](Cache::insert).
            pub fn cache(&self) -> &Cache<K, V, S> {
                &self.cache
            }
        }

        impl<K, V, F: Clone, S> Clone for $name<K, V, F, S> {
            /// Another memo sharing this one's cache.
            fn clone(&self) -> Self {
                $name {
                    cache: self.cache.clone(),
                    f: self.f.clone(),
                }
            }
        }

        impl<K, V, F, S> fmt::Debug for $name<K, V, F, S> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($name))
                    .field("cache", &self.cache)
                    .finish_non_exhaustive()
            }
        }
    };
}

memo_common!(Memo, "it holds the function's values");
memo_common!(TryMemo, "it holds the `Ok` values");

/// A store that memoised results live in: what
/// [`#[memoize(store = PATH)]`](crate::memoize) and [`memoize`] need.
///
/// Two methods, both "return the stored value for `key`, or run `compute`
/// and store its result". Implementations should run `compute` at most once
/// per call, and at most once per key across concurrent callers where they
/// can (the callers that wait then share the value); they must not call it
/// when they return a stored value.
///
/// The trait is object safe (`&dyn MemoStore<K, V>` works) and is
/// implemented for [`Cache`], for `&T`, `Box<T>`, [`Arc<T>`] and
/// [`LazyLock<T>`] where `T: MemoStore` (so a
/// `static STORE: LazyLock<MyStore>` can be named directly).
///
/// # Implementing it
/// For a store with "get or insert with" methods — such as a two-tier cache
/// with `get_with(k, || V) -> V` and
/// `try_get_with(k, || Result<V, E>) -> Result<V, Arc<E>>` — it is five lines:
///
/// ```
/// # use std::sync::Arc;
/// # struct TwoTier<K, V>(nearfar::Cache<K, V>);
/// # impl<K: std::hash::Hash + Eq, V: Clone> TwoTier<K, V> {
/// #     fn get_with(&self, k: K, f: impl FnOnce() -> V) -> V { self.0.get_or_insert_with(k, f) }
/// #     fn try_get_with<E: Send + Sync + 'static>(&self, k: K, f: impl FnOnce() -> Result<V, E>) -> Result<V, Arc<E>> {
/// #         self.0.try_get_or_insert_with(k, f)
/// #     }
/// # }
/// use nearfar::memo::MemoStore;
///
/// impl<K: std::hash::Hash + Eq + Clone, V: Clone> MemoStore<K, V> for TwoTier<K, V> {
///     fn get_or_compute(&self, key: &K, compute: &mut dyn FnMut() -> V) -> V {
///         self.get_with(key.clone(), compute)
///     }
///     fn try_get_or_compute(&self, key: &K, compute: &mut dyn FnMut() -> Option<V>) -> Option<V> {
///         self.try_get_with(key.clone(), || compute().ok_or(())).ok()
///     }
/// }
/// # let store = TwoTier(nearfar::Cache::new(10));
/// # assert_eq!(nearfar::memo::memoize(&store, 3u8, |k| k * 2), 6);
/// ```
///
/// The key is passed by reference so that a store can look it up without a
/// clone and clone it only to store it.
pub trait MemoStore<K, V> {
    /// The value stored for `key`, or `compute()`'s, stored under `key`.
    fn get_or_compute(&self, key: &K, compute: &mut dyn FnMut() -> V) -> V;

    /// The value stored for `key`; or else `compute()`'s: `Some` is stored
    /// and returned, `None` is returned and nothing is stored. A caller that
    /// waited on another's `compute` returns that result, `Some` or `None`.
    ///
    /// It must not return `None` without running `compute` for any other
    /// reason: [`memoize_result`] takes such a `None` as "another caller's
    /// run failed" and asks again.
    fn try_get_or_compute(&self, key: &K, compute: &mut dyn FnMut() -> Option<V>) -> Option<V>;
}

/// The error a [`Cache`] loader reports when `compute` gave `None`.
struct NotStored;

impl<K, V, S> MemoStore<K, V> for Cache<K, V, S>
where
    K: Hash + Eq + Clone,
    V: Clone,
    S: BuildHasher,
{
    fn get_or_compute(&self, key: &K, compute: &mut dyn FnMut() -> V) -> V {
        self.get_or_insert_with_ref(key, compute)
    }

    fn try_get_or_compute(&self, key: &K, compute: &mut dyn FnMut() -> Option<V>) -> Option<V> {
        self.try_get_or_insert_with_ref(key, || compute().ok_or(NotStored))
            .ok()
    }
}

macro_rules! forward_memo_store {
    ($($ty:ty),*) => {$(
        impl<K, V, T: MemoStore<K, V> + ?Sized> MemoStore<K, V> for $ty {
            fn get_or_compute(&self, key: &K, compute: &mut dyn FnMut() -> V) -> V {
                (**self).get_or_compute(key, compute)
            }

            fn try_get_or_compute(
                &self,
                key: &K,
                compute: &mut dyn FnMut() -> Option<V>,
            ) -> Option<V> {
                (**self).try_get_or_compute(key, compute)
            }
        }
    )*};
}

forward_memo_store!(&T, Box<T>, Arc<T>);

impl<K, V, T: MemoStore<K, V>, I: FnOnce() -> T> MemoStore<K, V> for LazyLock<T, I> {
    fn get_or_compute(&self, key: &K, compute: &mut dyn FnMut() -> V) -> V {
        (**self).get_or_compute(key, compute)
    }

    fn try_get_or_compute(&self, key: &K, compute: &mut dyn FnMut() -> Option<V>) -> Option<V> {
        (**self).try_get_or_compute(key, compute)
    }
}

/// A boxed, `Send` future: what an [`AsyncMemoStore`] takes and gives on a
/// miss.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A store that an `async fn`'s memoised results live in with
/// [`#[memoize(store = PATH)]`](crate::memoize): the async [`MemoStore`],
/// used by [`memoize_async_in`] and its siblings. Implemented for [`Cache`],
/// for `AsyncNearFar` (feature `tokio`: results
/// shared with other processes through memcached), and for `&T`, [`Arc<T>`]
/// and [`LazyLock<T>`] where `T: AsyncMemoStore`.
///
/// A hit is answered at once ([`get_now`](Self::get_now)), with nothing
/// allocated; only a miss goes through a boxed future, so the trait's
/// futures are `Send` by construction (the memoised fn's body must be
/// `Send` with a store).
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot hold an async fn's memoised results",
    note = "an async fn is memoised in a `nearfar::Cache` or a `nearfar::AsyncNearFar` (a blocking `NearFar` would block the executor)"
)]
pub trait AsyncMemoStore<K, V> {
    /// The value stored for `key` when it can be had without waiting (a
    /// hit, counted as one); `None` sends the caller to the methods below.
    fn get_now(&self, key: &K) -> Option<V>;

    /// After [`get_now`](Self::get_now) missed: the value another caller
    /// stores meanwhile, or `compute`'s, stored under `key`. Concurrent
    /// callers for one key await one `compute`.
    fn compute_after_miss<'a>(&'a self, key: &'a K, compute: BoxFuture<'a, V>) -> BoxFuture<'a, V>;

    /// As [`compute_after_miss`](Self::compute_after_miss), for a `compute`
    /// that may give nothing: `Some` is stored and returned, `None` is
    /// returned and nothing is stored. A caller that awaited another's
    /// `compute` returns that result, `Some` or `None` (as
    /// [`MemoStore::try_get_or_compute`], it must not return `None` without
    /// awaiting a `compute` for any other reason).
    fn try_compute_after_miss<'a>(
        &'a self,
        key: &'a K,
        compute: BoxFuture<'a, Option<V>>,
    ) -> BoxFuture<'a, Option<V>>;
}

impl<K, V, S> AsyncMemoStore<K, V> for Cache<K, V, S>
where
    K: Hash + Eq + Clone + Send + Sync,
    V: Clone + Send + Sync,
    S: BuildHasher + Send + Sync,
{
    fn get_now(&self, key: &K) -> Option<V> {
        self.get(key)
    }

    fn compute_after_miss<'a>(&'a self, key: &'a K, compute: BoxFuture<'a, V>) -> BoxFuture<'a, V> {
        let computed = async { Ok::<_, std::convert::Infallible>((compute.await, None)) };
        let loaded = self.load_after_miss_async(key.clone(), computed);
        Box::pin(async {
            match loaded.await {
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
        let computed = async { compute.await.map(|v| (v, None)).ok_or(NotStored) };
        let loaded = self.load_after_miss_async(key.clone(), computed);
        Box::pin(async { loaded.await.ok() })
    }
}

macro_rules! forward_async_memo_store {
    ($($ty:ty),*) => {$(
        impl<K, V, T: AsyncMemoStore<K, V> + ?Sized> AsyncMemoStore<K, V> for $ty {
            fn get_now(&self, key: &K) -> Option<V> {
                (**self).get_now(key)
            }

            fn compute_after_miss<'a>(
                &'a self,
                key: &'a K,
                compute: BoxFuture<'a, V>,
            ) -> BoxFuture<'a, V> {
                (**self).compute_after_miss(key, compute)
            }

            fn try_compute_after_miss<'a>(
                &'a self,
                key: &'a K,
                compute: BoxFuture<'a, Option<V>>,
            ) -> BoxFuture<'a, Option<V>> {
                (**self).try_compute_after_miss(key, compute)
            }
        }
    )*};
}

forward_async_memo_store!(&T, Arc<T>);

impl<K, V, T: AsyncMemoStore<K, V>, I: FnOnce() -> T> AsyncMemoStore<K, V> for LazyLock<T, I> {
    fn get_now(&self, key: &K) -> Option<V> {
        (**self).get_now(key)
    }

    fn compute_after_miss<'a>(&'a self, key: &'a K, compute: BoxFuture<'a, V>) -> BoxFuture<'a, V> {
        (**self).compute_after_miss(key, compute)
    }

    fn try_compute_after_miss<'a>(
        &'a self,
        key: &'a K,
        compute: BoxFuture<'a, Option<V>>,
    ) -> BoxFuture<'a, Option<V>> {
        (**self).try_compute_after_miss(key, compute)
    }
}

/// `f(&key).await`, memoised in `store`: what `#[memoize(store = PATH)]`
/// expands to for an `async fn` with a plain return type.
///
/// # Examples
///
/// ```
/// # use std::future::Future;
/// # use std::task::{Context, Poll, Waker};
/// # fn block_on<F: Future>(f: F) -> F::Output {
/// #     let mut f = std::pin::pin!(f);
/// #     let mut cx = Context::from_waker(Waker::noop());
/// #     loop { if let Poll::Ready(v) = f.as_mut().poll(&mut cx) { return v; } }
/// # }
/// use nearfar::memo::memoize_async_in;
/// let store = nearfar::Cache::new(100);
/// let v = block_on(memoize_async_in(&store, 4, |&n| async move { n * n }));
/// assert_eq!(v, 16);
/// assert_eq!(store.get(&4), Some(16));
/// ```
pub async fn memoize_async_in<K, V, S, F, Fut>(store: &S, key: K, f: F) -> V
where
    S: AsyncMemoStore<K, V> + ?Sized,
    F: FnOnce(&K) -> Fut,
    Fut: Future<Output = V> + Send,
{
    if let Some(v) = store.get_now(&key) {
        return v;
    }
    store.compute_after_miss(&key, Box::pin(f(&key))).await
}

/// As [`memoize_result_async`], in any [`AsyncMemoStore`]: what
/// `#[memoize(store = PATH)]` expands to for an `async fn` returning a
/// `Result`.
///
/// # Errors
/// `f`'s error, from this caller's own run of `f`.
pub async fn memoize_result_async_in<K, V, E, S, F, Fut>(store: &S, key: K, f: F) -> Result<V, E>
where
    S: AsyncMemoStore<K, V> + ?Sized,
    F: Fn(&K) -> Fut,
    Fut: Future<Output = Result<V, E>> + Send,
    E: Send,
{
    if let Some(v) = store.get_now(&key) {
        return Ok(v);
    }
    loop {
        let error = std::sync::Mutex::new(None);
        let running = f(&key);
        let run = async {
            match running.await {
                Ok(v) => Some(v),
                Err(e) => {
                    *error
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(e);
                    None
                }
            }
        };
        if let Some(v) = store.try_compute_after_miss(&key, Box::pin(run)).await {
            return Ok(v);
        }
        if let Some(e) = error
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
        {
            return Err(e);
        }
        // We awaited another caller's run, and it failed: ask again.
    }
}

/// As [`memoize_option_async`], in any [`AsyncMemoStore`]: what
/// `#[memoize(store = PATH)]` expands to for an `async fn` returning an
/// `Option`.
pub async fn memoize_option_async_in<K, V, S, F, Fut>(store: &S, key: K, f: F) -> Option<V>
where
    S: AsyncMemoStore<K, V> + ?Sized,
    F: FnOnce(&K) -> Fut,
    Fut: Future<Output = Option<V>> + Send,
{
    if let Some(v) = store.get_now(&key) {
        return Some(v);
    }
    store.try_compute_after_miss(&key, Box::pin(f(&key))).await
}

/// `f(&key)`, memoised in `store`: what `#[memoize]` expands to for a plain
/// return type.
///
/// ```
/// let store = nearfar::Cache::new(100);
/// assert_eq!(nearfar::memo::memoize(&store, (2, 3), |(a, b)| a * b), 6);
/// assert_eq!(store.get(&(2, 3)), Some(6));
/// ```
pub fn memoize<K, V, S>(store: &S, key: K, f: impl Fn(&K) -> V) -> V
where
    S: MemoStore<K, V> + ?Sized,
{
    store.get_or_compute(&key, &mut || f(&key))
}

/// `f(&key)` for a fallible `f`, memoised in `store`: `Ok` values are
/// stored, errors are returned and not stored. What `#[memoize]` expands to
/// for a `Result` return type (without `cache_err`).
///
/// Concurrent callers for one key share one run of `f`. When that run fails,
/// its caller gets the error, and the callers that waited on it ask again:
/// one of them runs `f` while the others wait on that run, and so on. So `f`
/// runs at most once at a time per key, each error returned comes from its
/// caller's own run (`E` need not be `Clone`), and the first `Ok` is stored
/// and shared with the callers still waiting. ([`TryMemo`] differs: its
/// waiters share the failed run's error as an `Arc<E>`, and do not run `f`.)
///
/// This relies on `store` running `compute` whenever it has no value and
/// waits on no other caller's run (see [`MemoStore::try_get_or_compute`]).
///
/// # Errors
/// `f`'s error, from this caller's own run of `f`.
///
/// ```
/// use nearfar::memo::memoize_result;
/// let store = nearfar::Cache::new(100);
/// let parse = |s: &String| s.parse::<u8>();
/// assert_eq!(memoize_result(&store, "7".to_string(), parse), Ok(7));
/// assert!(memoize_result(&store, "x".to_string(), parse).is_err());
/// assert_eq!(store.len(), 1);
/// ```
pub fn memoize_result<K, V, E, S>(store: &S, key: K, f: impl Fn(&K) -> Result<V, E>) -> Result<V, E>
where
    V: Clone,
    S: MemoStore<K, V> + ?Sized,
{
    loop {
        let mut error = None;
        let got = store.try_get_or_compute(&key, &mut || match f(&key) {
            Ok(v) => Some(v),
            Err(e) => {
                error = Some(e);
                None
            }
        });
        if let Some(v) = got {
            return Ok(v);
        }
        if let Some(e) = error {
            return Err(e);
        }
        // We waited on another caller's run, and it failed: its error is
        // not ours to return. Ask again, through the same coalescing, so
        // that the callers left run `f` one at a time (or share a value).
    }
}

/// `f(&key)` for an `Option`-returning `f`, memoised in `store`: `Some`
/// values are stored, `None` is returned and not stored (callers waiting on
/// the run that gave it get `None` too). What `#[memoize]` expands to for an
/// `Option` return type (without `cache_none`).
///
/// ```
/// use nearfar::memo::memoize_option;
/// let store = nearfar::Cache::new(100);
/// let half = |n: &u32| (n % 2 == 0).then(|| n / 2);
/// assert_eq!(memoize_option(&store, 8, half), Some(4));
/// assert_eq!(memoize_option(&store, 7, half), None);
/// assert_eq!(store.len(), 1);
/// ```
pub fn memoize_option<K, V, S>(store: &S, key: K, f: impl Fn(&K) -> Option<V>) -> Option<V>
where
    S: MemoStore<K, V> + ?Sized,
{
    store.try_get_or_compute(&key, &mut || f(&key))
}

/// `f(&key).await`, memoised in `cache`: what `#[memoize]` expands to for an
/// `async fn` with a plain return type (the async [`memoize`]).
///
/// The future `f` returns runs at most once per key however many callers
/// await it at once (see [`Cache::get_or_insert_async`]): the others await
/// its value, parking no thread. `f` is called only on a miss. The key is
/// cloned once per call, to hand to the cache (which takes it by value),
/// and `f` clones what it needs from `&key` on a miss.
///
/// ```
/// # use std::future::Future;
/// # use std::task::{Context, Poll, Waker};
/// # fn block_on<F: Future>(f: F) -> F::Output {
/// #     let mut f = std::pin::pin!(f);
/// #     let mut cx = Context::from_waker(Waker::noop());
/// #     loop { if let Poll::Ready(v) = f.as_mut().poll(&mut cx) { return v; } }
/// # }
/// use nearfar::memo::memoize_async;
/// let cache = nearfar::Cache::new(100);
/// let v = block_on(memoize_async(&cache, (2, 3), |&(a, b)| async move { a * b }));
/// assert_eq!(v, 6);
/// assert_eq!(cache.get(&(2, 3)), Some(6));
/// ```
pub async fn memoize_async<K, V, S, F, Fut>(cache: &Cache<K, V, S>, key: K, f: F) -> V
where
    K: Hash + Eq + Clone,
    V: Clone,
    S: BuildHasher,
    F: FnOnce(&K) -> Fut,
    Fut: Future<Output = V>,
{
    cache
        .get_or_insert_async(key.clone(), async { f(&key).await })
        .await
}

/// `f(&key).await` for a fallible `f`, memoised in `cache`: `Ok` values are
/// stored, errors are returned and not stored. What `#[memoize]` expands to
/// for an `async fn` returning a `Result` (without `cache_err`): the async
/// [`memoize_result`], with its semantics.
///
/// Concurrent callers for one key share one run of `f`. When that run fails,
/// its caller gets the error, and the callers that awaited it ask again: one
/// of them runs `f` while the others await that run, and so on. So `f`'s
/// future runs at most once at a time per key, each error returned comes
/// from its caller's own run (`E` need not be `Clone`, `Send` or `Sync`),
/// and the first `Ok` is stored and shared with the callers still waiting.
///
/// # Errors
/// `f`'s error, from this caller's own run of `f`.
///
/// ```
/// # use std::future::Future;
/// # use std::task::{Context, Poll, Waker};
/// # fn block_on<F: Future>(f: F) -> F::Output {
/// #     let mut f = std::pin::pin!(f);
/// #     let mut cx = Context::from_waker(Waker::noop());
/// #     loop { if let Poll::Ready(v) = f.as_mut().poll(&mut cx) { return v; } }
/// # }
/// use nearfar::memo::memoize_result_async;
/// let cache = nearfar::Cache::new(100);
/// let parse = |s: &String| {
///     let s = s.clone();
///     async move { s.parse::<u8>() }
/// };
/// assert_eq!(block_on(memoize_result_async(&cache, "7".to_string(), parse)), Ok(7));
/// assert!(block_on(memoize_result_async(&cache, "x".to_string(), parse)).is_err());
/// assert_eq!(cache.len(), 1);
/// ```
pub async fn memoize_result_async<K, V, E, S, F, Fut>(
    cache: &Cache<K, V, S>,
    key: K,
    f: F,
) -> Result<V, E>
where
    K: Hash + Eq + Clone,
    V: Clone,
    S: BuildHasher,
    F: Fn(&K) -> Fut,
    Fut: Future<Output = Result<V, E>>,
{
    loop {
        let mut error = None;
        let got = cache
            .try_get_or_insert_async(key.clone(), async {
                f(&key).await.map_err(|e| {
                    error = Some(e);
                    NotStored
                })
            })
            .await;
        if let Ok(v) = got {
            return Ok(v);
        }
        if let Some(e) = error {
            return Err(e);
        }
        // We awaited another caller's run, and it failed: its error is not
        // ours to return. Ask again, through the same coalescing (as
        // `memoize_result` does).
    }
}

/// `f(&key).await` for an `Option`-returning `f`, memoised in `cache`:
/// `Some` values are stored, `None` is returned and not stored (callers
/// awaiting the run that gave it get `None` too). What `#[memoize]` expands
/// to for an `async fn` returning an `Option` (without `cache_none`): the
/// async [`memoize_option`].
///
/// ```
/// # use std::future::Future;
/// # use std::task::{Context, Poll, Waker};
/// # fn block_on<F: Future>(f: F) -> F::Output {
/// #     let mut f = std::pin::pin!(f);
/// #     let mut cx = Context::from_waker(Waker::noop());
/// #     loop { if let Poll::Ready(v) = f.as_mut().poll(&mut cx) { return v; } }
/// # }
/// use nearfar::memo::memoize_option_async;
/// let cache = nearfar::Cache::new(100);
/// let half = |&n: &u32| async move { (n % 2 == 0).then(|| n / 2) };
/// assert_eq!(block_on(memoize_option_async(&cache, 8, half)), Some(4));
/// assert_eq!(block_on(memoize_option_async(&cache, 7, half)), None);
/// assert_eq!(cache.len(), 1);
/// ```
pub async fn memoize_option_async<K, V, S, F, Fut>(
    cache: &Cache<K, V, S>,
    key: K,
    f: F,
) -> Option<V>
where
    K: Hash + Eq + Clone,
    V: Clone,
    S: BuildHasher,
    F: FnOnce(&K) -> Fut,
    Fut: Future<Output = Option<V>>,
{
    cache
        .try_get_or_insert_async(key.clone(), async { f(&key).await.ok_or(NotStored) })
        .await
        .ok()
}

/// Items the `#[memoize]` expansion names; not part of the API.
#[doc(hidden)]
pub mod __private {
    /// The `Ok` type of a `Result`-like return type (for type aliases that
    /// the attribute cannot see through, with `result = true`).
    pub trait ResultOk {
        /// `T` of `Result<T, E>`.
        type Ok;
    }

    impl<T, E> ResultOk for Result<T, E> {
        type Ok = T;
    }

    /// The `Some` type of an `Option`-like return type (`option = true`).
    pub trait OptionSome {
        /// `T` of `Option<T>`.
        type Some;
    }

    impl<T> OptionSome for Option<T> {
        type Some = T;
    }
}

#[cfg(test)]
mod tests;
