//! Helpers shared by the NearFar tests against real memcached
//! (nearfar_basic.rs, nearfar_leases.rs, nearfar_races.rs): clients and
//! instances on one private server, and a load held open on a thread.
//!
//! Include it with `#[path = "common/nearfar_setup.rs"] mod nearfar_setup;`,
//! after `#[path = "common/memcached.rs"] mod server;`, whose [`Memcached`]
//! it takes.
#![allow(dead_code)]

use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use nearfar::memcached::Client;
use nearfar::{Cache, NearFar};

use super::server::Memcached;

/// One millisecond, to write short durations as `200 * MS`.
pub const MS: Duration = Duration::from_millis(1);

/// A client to `mc` alone, with 200 ms I/O and connect timeouts.
pub fn client(mc: &Memcached) -> Client {
    Client::builder()
        .servers([mc.addr()])
        .io_timeout(200 * MS)
        .connect_timeout(200 * MS)
        .build()
        .expect("client")
}

/// An instance with a near tier of 1,000 entries over `mc`, in `namespace`.
pub fn instance(mc: &Memcached, namespace: &str) -> NearFar<String, String> {
    NearFar::builder()
        .near(Cache::builder().max_entries(1_000))
        .far(client(mc))
        .namespace(namespace)
        .build()
        .expect("NearFar")
}

/// An instance with no near tier that serves a removed item stale for 30 s
/// while one caller recomputes it.
pub fn stale_instance(mc: &Memcached, namespace: &str) -> NearFar<String, String> {
    NearFar::builder()
        .far(client(mc))
        .namespace(namespace)
        .stale_on_remove(Duration::from_secs(30))
        .build()
        .expect("NearFar")
}

/// `s` as an owned key.
pub fn k(s: &str) -> String {
    s.to_string()
}

/// Starts `nf.get_with(key)` on a thread and returns once its loader runs.
/// The loader then waits for a message on the returned sender before it
/// returns `value`; the handle yields what the caller got.
pub fn blocked_load(
    nf: NearFar<String, String>,
    key: &str,
    value: &'static str,
) -> (mpsc::Sender<()>, thread::JoinHandle<String>) {
    let (started_tx, started_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let key = k(key);
    let loader = thread::spawn(move || {
        nf.get_with(key, || {
            started_tx.send(()).unwrap();
            go_rx.recv().unwrap();
            k(value)
        })
    });
    started_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    (go_tx, loader)
}
