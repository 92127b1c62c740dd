//! # nearfar
//!
//! An in-process cache with an optional memcached tier.
//!
//! * [`Cache`] — the near tier: a concurrent, typed `K -> V` store with a
//!   memcached-style segmented LRU, per-cache and per-entry TTL, bounded by
//!   entry count or by weight. Reads take no lock.
//! * `memcached` — the far tier: a memcached client (feature `memcached`, on by default).
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs)]

mod shim;
pub mod store;

#[cfg(feature = "memcached")]
pub mod codec;
#[cfg(feature = "memcached")]
pub mod memcached;

pub use store::{Cache, CacheBuilder, Clock, Iter, MockClock, RemovalCause, Stats};
