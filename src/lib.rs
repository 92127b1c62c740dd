//! # nearfar
//!
//! An embedded, in-process cache with an optional memcached tier.
//!
//! * [`Cache`] — the near tier: a concurrent, typed `K -> V` store in process
//!   memory. Lookups take no lock; eviction is memcached's segmented LRU
//!   (HOT / WARM / COLD, a hit only bumps a capped use count); per-cache and
//!   per-entry TTL; bounded by entry count or by weight; one loader per
//!   missing key.
//! * `memcached` — the far tier: a memcached client (feature `memcached`, on
//!   by default; `default-features = false` gives the near tier alone).
//! * `NearFar` — both tiers as one cache (feature `memcached`): near hit,
//!   else memcached, else a loader run once per key across processes
//!   (memcached leases), with CAS revalidation, stale-while-revalidate, a
//!   circuit breaker, a fallback pool, and fleet-wide invalidation in
//!   bounded time (`invalidate_all`); far-tier failures never reach the
//!   caller.
//!
//! ```
//! use std::time::Duration;
//! use nearfar::Cache;
//!
//! let cache: Cache<String, Vec<u8>> = Cache::builder()
//!     .max_weight(64 << 20)
//!     .weigher(|k: &String, v: &Vec<u8>| (k.len() + v.len()) as u64)
//!     .time_to_live(Duration::from_secs(300))
//!     .build();
//!
//! cache.insert("user:42".to_string(), b"profile".to_vec());
//! assert_eq!(cache.get("user:42").as_deref(), Some(&b"profile"[..]));
//!
//! // Memoise: concurrent callers for one missing key run the loader once.
//! let page = cache.get_or_insert_with("/".to_string(), || b"<html>".to_vec());
//! assert_eq!(page, b"<html>");
//! ```
//!
//! # Features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `memcached` | yes | the far-tier client, the [`codec`] module (serde, bincode 2, zlib) and the two-tier `NearFar`; turns `snapshot` on |
//! | `snapshot` | yes (with `memcached`) | warm restarts: [`Cache::save`] / [`Cache::load`] (the [`snapshot`] module: a checksummed file written atomically, through the [`codec`]), and `NearFar`'s periodic snapshot and key preload |
//! | `macros` | yes | the [`#[memoize]`](memoize) attribute (a proc-macro crate: syn, quote) |
//! | `tokio` | no | the async far-tier client and `AsyncNearFar` |
//! | `tls` | no | TLS to memcached for both clients (rustls with ring: no OpenSSL, no cmake): `ClientBuilder::tls`, `tls_ca_file` |
//! | `metrics` | no | counters, gauges and histograms through the `metrics` facade, named in [`observe`] |
//! | `tracing` | no | spans around `NearFar`'s far requests and loads (key digests, never keys), see [`observe`] |
//!
//! [`memo`] (always available) memoises closures: [`memo::Memo`],
//! [`memo::TryMemo`], and [`memo::MemoStore`], the store trait `#[memoize]`
//! targets.
//!
//! # Memory
//!
//! A near-tier entry costs `size_of::<K>() + size_of::<V>()` plus about 32
//! bytes on 64-bit targets: 16 in its slot (expiry, index position, use
//! count, flags, generation), 8 of LRU links and about 7 of hash index (a
//! tag byte and a `u32` slot index per lane, lanes at most 75% full) and
//! half a byte of eviction history. A weigher adds 8 bytes for the stored
//! weight. Heap data owned by keys and values is extra, as always.
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs)]

mod clock;
pub mod memo;
pub mod observe;
mod shim;
pub mod store;

// The codec is the far tier's and the snapshot's (`memcached` turns
// `snapshot` on, so `snapshot` alone gates it).
#[cfg(feature = "snapshot")]
pub mod codec;
#[cfg(feature = "memcached")]
pub mod memcached;
#[cfg(feature = "memcached")]
pub mod nearfar;
#[cfg(feature = "snapshot")]
pub mod snapshot;

#[cfg(feature = "snapshot")]
pub use snapshot::SnapshotError;
pub use store::{Cache, CacheBuilder, Clock, Iter, MockClock, RemovalCause, Stats};

/// Memoises a free function: its results are cached by its arguments.
///
/// ```
/// #[nearfar::memoize]
/// fn fib(n: u64) -> u128 {
///     if n < 2 { n as u128 } else { fib(n - 1) + fib(n - 2) }
/// }
/// assert_eq!(fib(90), 2_880_067_194_370_816_120);
/// assert_eq!(fib_cache().len(), 91);
/// ```
///
/// The body runs once per distinct argument tuple: later calls return the
/// cached value, and concurrent callers for the same missing arguments wait
/// for one run and share its value (see [`Cache::get_or_insert_with`]).
///
/// # What it generates
/// * A `static` [`Cache`] (a `std::sync::LazyLock`) named after the fn's
///   path (`module::name`, see [`CacheBuilder::name`]), private to a generated
///   function `<name>_cache() -> &'static Cache<Key, Value>` with the memoised
///   fn's visibility and `cfg`s: use it for [`stats`](Cache::stats), to
///   [`clear`](Cache::clear) or [`remove`](Cache::remove) entries, or to
///   [`insert`](Cache::insert) values. Rename it with `cache_fn = NAME`. (The
///   memoised fn reaches the cache through a hidden `__nearfar_<name>_cache`
///   fn, so an argument may share the cache fn's name.)
/// * The function itself, with its signature and attributes: its body moves
///   into an inner function, called on a miss with clones of the arguments.
///
/// The key is the argument itself for a one-argument fn (`Cache<u64, _>`),
/// `()` for none, and the tuple of the arguments otherwise
/// (`Cache<(String, u32), _>`). Arguments must be `Clone + Hash + Eq + Send +
/// Sync + 'static` — owned values (`String`, not `&str`, and no reference
/// or `impl Trait` inside the type either: `(u8, &str)` is refused). The
/// cached value type must be `Clone + Send + Sync + 'static`.
///
/// What is cloned: the arguments are *moved* into the key, not cloned. A hit
/// clones nothing but the cached value it returns (wrap large values in
/// `Arc`). A miss clones the key once, to store it, and the arguments once
/// more, to run the body with them.
///
/// # Options
/// `#[nearfar::memoize(option = value, ...)]`, in any order:
///
/// | option | meaning |
/// |---|---|
/// | `max_entries = N` | bound the cache to `N` entries (default 10 000, unless a weight bound is given) |
/// | `max_weight = N`, `weigher = EXPR` | bound it by total weight; the weigher is `Fn(&Key, &Value) -> u64`: a path, or a closure such as `\|_, v\| v.len() as u64` (its argument types are inferred). Each entry weighs 1 without one; a `weigher` needs `max_weight` (a compile error otherwise) |
/// | `ttl_secs = N` or `ttl_ms = N` | entries expire `N` seconds / milliseconds after they are computed (a lookup may still see one up to a kernel clock tick later: see [`Cache::insert_with_ttl`]) |
/// | `store = PATH` | keep results in this store instead of a private cache: the path of a `static` [`memo::MemoStore<Key, Value>`](memo::MemoStore), such as a `static STORE: LazyLock<…>` (any other expression, or a `const`, is a compile error: it would be a new store on every call); no cache function is generated, and the bound and TTL options do not apply |
/// | `result = BOOL` | treat the return type as a `Result` (default: when its last path segment is `Result<…>`) |
/// | `option = BOOL` | treat the return type as an `Option` (default: when its last path segment is `Option<…>`) |
/// | `cache_err` (`= true`) | for a `Result`, cache errors too (the value is the whole `Result`; `E: Clone`) |
/// | `cache_none` (`= true`) | for an `Option`, cache `None` too |
/// | `cache_fn = NAME` | name the generated cache function (default `<fn name>_cache`) |
/// | `crate = PATH` | where `nearfar` is, when it is renamed in `Cargo.toml` (default `::nearfar`) |
///
/// ## `Result` and `Option`
/// The attribute decides from the *spelling* of the return type: if its last
/// path segment is `Result<T, …>` (so `io::Result<T>` and `anyhow::Result<T>`
/// count), only `Ok(T)` values are cached, and an `Err` is returned to the
/// caller and not cached: the next call runs the body again. Callers that
/// waited on a run that failed ask again, one running the body while the
/// others wait on it: the body runs at most once at a time per key, each
/// error returned comes from its caller's own run (`E` needs no `Clone`),
/// and the first `Ok` is shared with the callers still waiting. For a
/// type alias the attribute cannot see through, write `result = true`; for a
/// type named `Result` that is not one, `result = false`. Likewise `Option<T>`
/// caches only `Some(T)` (callers that waited on the run get its `None`).
///
/// ```
/// use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
/// static RUNS: AtomicUsize = AtomicUsize::new(0);
///
/// #[nearfar::memoize(max_entries = 1_000, ttl_secs = 60)]
/// fn parse_port(s: String) -> Result<u16, std::num::ParseIntError> {
///     RUNS.fetch_add(1, Relaxed);
///     s.parse()
/// }
///
/// assert_eq!(parse_port("8080".into()), Ok(8080));
/// assert_eq!(parse_port("8080".into()), Ok(8080)); // cached
/// assert!(parse_port("http".into()).is_err());
/// assert!(parse_port("http".into()).is_err()); // errors are not cached
/// assert_eq!(RUNS.load(Relaxed), 3);
/// assert_eq!(parse_port_cache().len(), 1);
/// ```
///
/// ## Your own store
/// ```
/// use std::sync::LazyLock;
/// use nearfar::Cache;
///
/// // Shared by two functions, with settings of its own.
/// static SQUARES: LazyLock<Cache<u64, u64>> = LazyLock::new(|| Cache::new(100));
///
/// #[nearfar::memoize(store = SQUARES)]
/// fn square(n: u64) -> u64 { n * n }
///
/// assert_eq!(square(9), 81);
/// assert_eq!(SQUARES.get(&9), Some(81));
/// ```
///
/// ## `async fn`
/// An `async fn` is memoised the same way, in its private cache (the
/// options above apply), or with `store = PATH` in an async store (an
/// [`AsyncMemoStore`](memo::AsyncMemoStore): a `Cache`, or an
/// `AsyncNearFar` with feature `tokio`, whose results are shared with other
/// processes through memcached). The generated fn is an `async fn` with the same signature;
/// its body runs at most once per argument tuple at a time: the callers that
/// ask for the same missing arguments meanwhile *await* that run (parking no
/// thread, see [`Cache::get_or_insert_async`]) and share its value.
/// `Result` and `Option` return types cache `Ok` and `Some` only, with the
/// semantics described above. The future is `Send` when the body's is (and,
/// for a `Result`, when `E` is). Dropping the future of the caller running
/// the body (a timeout, say) lets a waiting caller run it instead.
///
/// ```
/// # use std::future::Future;
/// # use std::task::{Context, Poll, Waker};
/// # fn block_on<F: Future>(f: F) -> F::Output {
/// #     let mut f = std::pin::pin!(f);
/// #     let mut cx = Context::from_waker(Waker::noop());
/// #     loop { if let Poll::Ready(v) = f.as_mut().poll(&mut cx) { return v; } }
/// # }
/// # async fn fetch(url: &str) -> Result<String, std::io::Error> { Ok(format!("<{url}>")) }
/// #[nearfar::memoize(max_entries = 1_000, ttl_secs = 60)]
/// async fn page(url: String) -> Result<String, std::io::Error> {
///     fetch(&url).await
/// }
///
/// # block_on(async {
/// assert_eq!(page("a.example".into()).await?, "<a.example>");
/// assert_eq!(page("a.example".into()).await?, "<a.example>"); // cached
/// assert_eq!(page_cache().len(), 1);
/// # Ok::<(), std::io::Error>(())
/// # }).unwrap();
/// ```
///
/// The key is built as for a sync fn, except that a `Cache` clones it once
/// per call (its async loads take the key by value), hits included; an
/// `AsyncNearFar` clones it on a near miss only.
///
/// # Recursion
/// A memoised function may call itself (or other memoised functions) for
/// *other* arguments, as `fib` above does. Calling itself with the *same*
/// arguments while computing them panics: it would wait for itself forever.
///
/// A cycle *across threads* does not deadlock: if one thread computes
/// `a(1)`, whose body calls `b(1)`, while another computes `b(1)`, whose
/// body calls `a(1)`, the call that would close the cycle of waits runs the
/// body itself instead of waiting (its result is returned, not stored; the
/// other thread's is). A cycle that is real recursion (`a(1)` needs `b(1)`
/// needs `a(1)` in every thread) then ends in the same-arguments panic
/// above, as it would in one thread.
///
/// A memoised `async fn` may await itself for other arguments (boxing the
/// recursive call, as any recursive `async fn` must); awaiting itself for
/// the *same* arguments waits forever instead of panicking (an async task
/// cannot be told apart from another), as does a cycle of such awaits.
///
/// # Limits
/// The attribute applies to free functions (not methods or associated
/// functions in an `impl` block) that are not `const`, `unsafe`, `extern`
/// or generic, whose parameters are plain identifiers with owned
/// types (lint attributes on them are kept; `cfg` is refused), and whose
/// return type has no `impl Trait`. Anything else is a
/// compile error that says why — except an associated function *without*
/// `self` in an `impl` block, which the attribute cannot tell from a free
/// function: it fails to compile with "cannot find function
/// `__nearfar_<name>_cache`" (memoise a free function and call it from the
/// associated one).
///
/// ```compile_fail
/// // An async fn needs an async store: a blocking NearFar would block the
/// // executor (use an AsyncNearFar).
/// use std::sync::LazyLock;
/// static STORE: LazyLock<nearfar::NearFar<u32, String>> =
///     LazyLock::new(|| nearfar::NearFar::builder().build().unwrap());
///
/// #[nearfar::memoize(store = STORE)]
/// async fn fetch(id: u32) -> String { id.to_string() }
/// ```
///
/// ```compile_fail
/// #[nearfar::memoize]
/// async fn len(s: &str) -> usize { s.len() }
/// ```
///
/// ```compile_fail
/// #[nearfar::memoize]
/// fn first<T: Clone>(items: Vec<T>) -> Option<T> { items.first().cloned() }
/// ```
///
/// ```compile_fail
/// #[nearfar::memoize]
/// fn sum((a, b): (u32, u32)) -> u32 { a + b }
/// ```
///
/// ```compile_fail
/// #[nearfar::memoize]
/// fn len(s: &str) -> usize { s.len() }
/// ```
///
/// ```compile_fail
/// #[nearfar::memoize]
/// fn len(s: (u8, &str)) -> usize { s.1.len() }
/// ```
///
/// ```compile_fail
/// #[nearfar::memoize]
/// fn show(n: u32) -> Option<impl std::fmt::Display> { Some(n) }
/// ```
///
/// ```compile_fail
/// struct Db;
/// impl Db {
///     #[nearfar::memoize]
///     fn get(id: u32) -> u32 { id }
/// }
/// ```
///
/// ```compile_fail
/// // A weigher without `max_weight` would bound nothing.
/// fn weigh(_: &u32, v: &String) -> u64 { v.len() as u64 }
///
/// #[nearfar::memoize(weigher = weigh)]
/// fn name(id: u32) -> String { id.to_string() }
/// ```
///
/// ```compile_fail
/// // `store` takes the path of a static, not an expression to run per call.
/// fn make_store() -> nearfar::Cache<u32, u32> { nearfar::Cache::new(10) }
///
/// #[nearfar::memoize(store = make_store())]
/// fn double(n: u32) -> u32 { n * 2 }
/// ```
///
/// ```compile_fail
/// // Nor a `const`: each use of it is a new store.
/// use std::sync::LazyLock;
/// #[allow(clippy::declare_interior_mutable_const)]
/// const STORE: LazyLock<nearfar::Cache<u32, u32>> = LazyLock::new(|| nearfar::Cache::new(10));
///
/// #[nearfar::memoize(store = STORE)]
/// fn double(n: u32) -> u32 { n * 2 }
/// ```
///
/// ```compile_fail
/// struct Db;
/// impl Db {
///     #[nearfar::memoize]
///     fn get(&self, id: u32) -> u32 { id }
/// }
/// ```
#[cfg(feature = "macros")]
pub use nearfar_macros::memoize;

#[cfg(feature = "tokio")]
pub use nearfar::AsyncNearFar;
#[cfg(feature = "memcached")]
pub use nearfar::{
    Error as NearFarError, FarKey, InvalidateError, NearFar, NearFarBuilder, NearFarStats,
};

/// The README's Rust examples, compiled (and those not marked `no_run`
/// run) as doctests, so the front page cannot drift from the API.
/// They use every feature but `metrics` and `tracing` (`cargo test
/// --all-features` runs them).
#[cfg(all(doctest, feature = "tokio", feature = "macros", feature = "tls"))]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
