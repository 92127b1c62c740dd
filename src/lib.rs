//! # nearfar
//!
//! An embedded, in-process cache with an optional memcached tier.
//!
//! * [`Cache`] — the near tier: a concurrent, typed `K -> V` store in process
//!   memory. Lookups take no lock; eviction is memcached's segmented LRU
//!   (HOT / WARM / COLD, a hit only sets an "active" bit); per-cache and
//!   per-entry TTL; bounded by entry count or by weight; one loader per
//!   missing key.
//! * `memcached` — the far tier: a memcached client (feature `memcached`, on
//!   by default; `default-features = false` gives the near tier alone).
//! * `NearFar` — both tiers as one cache (feature `memcached`): near hit,
//!   else memcached, else a loader run once per key across processes
//!   (memcached leases), with CAS revalidation, stale-while-revalidate, a
//!   circuit breaker and a fallback pool; far-tier failures never reach
//!   the caller.
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
//! | `memcached` | yes | the far-tier client, the [`codec`] module (serde, bincode 2, zlib) and the two-tier `NearFar` |
//!
//! # Memory
//!
//! A near-tier entry costs `size_of::<K>() + size_of::<V>()` plus about 28
//! bytes on 64-bit targets: 16 in its slot (expiry, index link, use count, flags, generation), 8
//! of LRU links and about 4 of hash index (one `u32` bucket per entry, rounded
//! up to a power of two per shard). A weigher adds 8 bytes for the stored
//! weight. Heap data owned by keys and values is extra, as always.
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs)]

mod shim;
pub mod store;

#[cfg(feature = "memcached")]
pub mod codec;
#[cfg(feature = "memcached")]
pub mod memcached;
#[cfg(feature = "memcached")]
pub mod nearfar;

pub use store::{Cache, CacheBuilder, Clock, Iter, MockClock, RemovalCause, Stats};

#[cfg(feature = "memcached")]
pub use nearfar::{Error as NearFarError, FarKey, NearFar, NearFarBuilder, NearFarStats};
