//! Far tier: a memcached client.
//!
//! [`Client`] is a blocking, thread-safe memcached client built on
//! `std::net`: a connection pool per server, keys spread over servers by a
//! [`Distribution`], dead-server ejection, typed values through a
//! [`Codec`](crate::codec::Codec), pipelined batches, and the meta-protocol
//! tools (leases, invalidation, CAS revalidation) a two-tier cache needs.
//! With feature `tokio`, `AsyncClient` is the same client on tokio; with
//! feature `tls`, either one connects over TLS (`ClientBuilder::tls`,
//! `tls_ca_file`: memcached started with `-Z`). It is built on a pure wire
//! protocol (encoders and an incremental reply parser over `&[u8]`), kept
//! private.

mod address;
#[cfg(feature = "tokio")]
mod async_client;
mod client;
mod command;
mod conn;
mod core;
mod error;
mod exchange;
pub(crate) mod health;
mod ops;
mod pending;
mod pool;
pub(crate) mod protocol;
mod ring;
#[cfg(feature = "tls")]
mod tls;

#[cfg(feature = "tokio")]
pub use async_client::AsyncClient;
pub use client::{
    Client, ClientBuilder, DEFAULT_MAX_ITEM_SIZE, DEFAULT_PENDING_INVALIDATIONS,
    MAX_ITEM_SIZE_LIMIT,
};
pub use command::{Cas, Lease, MetaItem};
pub use error::{ConfigError, Error, Result};
pub use protocol::{KeyError, ProtocolError};
pub use ring::Distribution;

/// **Not part of nearfar's API: no stability guarantee, may change in any
/// release.** The pure wire protocol (key checks, request encoders, the
/// reply parser), reachable only so that the fuzz targets (`fuzz/`) can
/// drive it from outside the crate.
#[doc(hidden)]
pub mod __fuzz_protocol {
    pub use super::protocol::*;
}

/// The TLS library of feature `tls`, for making the configuration
/// [`ClientBuilder::tls`] takes with the version this crate uses.
#[cfg(feature = "tls")]
pub use rustls;
