//! Helpers shared by the blocking client's tests (memcached_client.rs,
//! memcached_client_leases.rs, memcached_client_faults.rs): a client to one
//! private server, a structured value, and bytes that do not decode as it.
//!
//! Include it with `#[path = "common/client_setup.rs"] mod client_setup;`,
//! after `#[path = "common/memcached.rs"] mod server;`, whose [`Memcached`]
//! it takes.
#![allow(dead_code)]

use std::time::Duration;

use nearfar::codec::FLAG_BINCODE;
use nearfar::memcached::{Client, Error};
use serde::{Deserialize, Serialize};

use super::server::Memcached;

/// A TTL for items that must outlive the test.
pub const MINUTE: Duration = Duration::from_secs(60);

/// A client to `server` alone, with a 2 s I/O timeout.
pub fn client(server: &Memcached) -> Client {
    Client::builder()
        .servers([server.addr()])
        .io_timeout(Duration::from_secs(2))
        .build()
        .expect("client")
}

/// A structured value (stored through bincode).
#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub struct User {
    pub id: u32,
    pub name: String,
    pub tags: Vec<String>,
}

/// Stores bytes under `key` that do not decode as a `User` (another
/// client's, or an older layout), and checks that they do not.
pub fn store_undecodable(c: &Client, key: &str) {
    c.set_raw(key, b"\xff\xff\xff\xff\xff", FLAG_BINCODE, MINUTE)
        .unwrap();
    assert!(matches!(c.get::<User>(key), Err(Error::Codec(_))));
}
