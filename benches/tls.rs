//! What TLS costs (feature `tls`): nearfar's clients against a memcached
//! serving TLS (`-Z`) and one serving plain TCP, started side by side with
//! the same settings, interleaved: each case alternates slices of TLS and
//! plain requests, and the figure reported is the median over slice pairs
//! of TLS time ÷ plain time (as `interleaved.rs` does, so that a shared
//! machine's drift hits both alike).
//!
//! Cases: the blocking client's get and set of a 100-byte value and get of
//! a 16 KiB one, one thread; the async client's get of 100 bytes, one task
//! at a time, and gets and sets of 100 bytes from 64 tasks at once
//! (pipelined on one connection); and a new connection's first request
//! (connect, plus the handshake with TLS: a fresh blocking client each
//! time, TLS session resumption off, as for a process's first request).
//!
//! Run (about half a minute; `taskset -c 0` before it pins the bench and
//! both servers to one core, as `far.rs` suggests):
//!
//! ```text
//! cargo bench -p nearfar-benches --features tls --bench tls
//! ```
//!
//! Under `cargo test --benches --features tls` (no `--bench` argument) it
//! runs a small smoke version.
//!
//! Measured three times (memcached 1.6.18 with OpenSSL 3, a shared 2-core
//! VM under other load, unpinned; TLS ÷ plain, median of 15 slice pairs;
//! run 3 after the blocking write path's last change):
//!
//! | case | run 1 | run 2 | run 3 |
//! |---|---|---|---|
//! | blocking get, 100 B | 1.38x (12.4 / 9.0 µs) | 1.41x | 1.38x (12.6 / 9.1 µs) |
//! | blocking set, 100 B | 1.40x (13.2 / 9.6 µs) | 1.42x | 1.42x |
//! | blocking get, 16 KiB | 2.96x | 2.77x (28.9 / 10.3 µs) | 2.76x |
//! | new connection + first get | 44.2x (3,768 / 88 µs) | 38.8x | 49.3x (4,232 / 96 µs) |
//! | async get, 100 B, one task | 1.17x | 0.98x | 1.30x |
//! | async get, 100 B, 64 tasks | 0.96x | 1.03x | 0.90x |
//! | async set, 100 B, 64 tasks | 1.20x | 1.03x | 1.40x |
//!
//! Of a handshake's ~3.5 ms, the client's own work (ring: X25519, two
//! ECDSA P-256 verifications) was about 0.55 ms; the rest is waiting for
//! memcached's side of it. The async client's per-request cost hides in
//! the scheduling that dominates its round trips on a loaded machine.
#![allow(missing_docs)]

#[path = "../tests/common/memcached.rs"]
mod server;

#[path = "../tests/common/pki.rs"]
mod pki;

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nearfar::memcached::{AsyncClient, Client, ClientBuilder, rustls};
use server::Memcached;

const MINUTE: Duration = Duration::from_secs(60);
const TASKS: usize = 64;

/// One server of each kind, a client of each kind for each, and the TLS
/// configuration.
struct Setup {
    /// Kept for the servers' lifetime.
    _tls_server: Memcached,
    _plain_server: Memcached,
    _pki: pki::Pki,
    tls_addr: String,
    plain_addr: String,
    /// Trusts the test CA; resumes no session (for the connect case).
    fresh_config: Arc<rustls::ClientConfig>,
    ca: std::path::PathBuf,
}

impl Setup {
    fn new() -> Setup {
        let pki = pki::Pki::new();
        let args = pki.memcached_args();
        let tls_server =
            Memcached::start_with(&args.iter().map(String::as_str).collect::<Vec<_>>());
        let plain_server = Memcached::start();
        let mut roots = rustls::RootCertStore::empty();
        use rustls::pki_types::pem::PemObject;
        let ca = std::fs::read(&pki.ca).expect("read the CA");
        for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&ca) {
            roots.add(cert.expect("CA PEM")).expect("CA certificate");
        }
        let mut config = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.resumption = rustls::client::Resumption::disabled();
        Setup {
            tls_addr: tls_server.addr(),
            plain_addr: plain_server.addr(),
            _tls_server: tls_server,
            _plain_server: plain_server,
            ca: pki.ca.clone(),
            _pki: pki,
            fresh_config: Arc::new(config),
        }
    }

    fn builder(addr: &str) -> ClientBuilder {
        Client::builder()
            .servers([addr])
            .pool_size(1)
            .io_timeout(Duration::from_secs(5))
    }

    /// (TLS, plain) blocking clients.
    fn blocking(&self) -> (Client, Client) {
        let tls = Setup::builder(&self.tls_addr)
            .tls_ca_file(&self.ca)
            .build()
            .expect("TLS client");
        let plain = Setup::builder(&self.plain_addr)
            .build()
            .expect("plain client");
        (tls, plain)
    }

    /// (TLS, plain) async clients.
    fn asynchronous(&self) -> (AsyncClient, AsyncClient) {
        let tls = Setup::builder(&self.tls_addr)
            .tls_ca_file(&self.ca)
            .build_async()
            .expect("TLS client");
        let plain = Setup::builder(&self.plain_addr)
            .build_async()
            .expect("plain client");
        (tls, plain)
    }
}

/// One case's result.
struct Row {
    name: &'static str,
    /// Median time per operation, µs.
    tls: f64,
    plain: f64,
    /// Median over slice pairs of TLS ÷ plain.
    ratio: f64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Times `slices` pairs of slices of `ops` operations (`tls(ops)` runs
/// one slice), TLS then plain (then plain then TLS, in turn), after one
/// warm-up slice of each.
fn interleave(
    name: &'static str,
    slices: usize,
    ops: usize,
    mut tls: impl FnMut(usize),
    mut plain: impl FnMut(usize),
) -> Row {
    let time = |f: &mut dyn FnMut(usize)| {
        let start = Instant::now();
        f(ops);
        start.elapsed().as_secs_f64() * 1e6 / ops as f64
    };
    time(&mut tls);
    time(&mut plain);
    let (mut t, mut p, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for slice in 0..slices {
        let (a, b) = if slice % 2 == 0 {
            let a = time(&mut tls);
            (a, time(&mut plain))
        } else {
            let b = time(&mut plain);
            (time(&mut tls), b)
        };
        t.push(a);
        p.push(b);
        ratios.push(a / b);
    }
    let row = Row {
        name,
        tls: median(t),
        plain: median(p),
        ratio: median(ratios),
    };
    println!(
        "{:<44} TLS {:>9.2} µs   plain {:>9.2} µs   TLS/plain {:>5.2}x",
        row.name, row.tls, row.plain, row.ratio
    );
    row
}

/// `TASKS` tasks each get (or set) a 100-byte value at once.
async fn round(client: &AsyncClient, set: bool, small: &str) {
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let (client, small) = (client.clone(), small.to_owned());
            tokio::spawn(async move {
                if set {
                    client.set("small", &small, MINUTE).await.expect("set");
                } else {
                    black_box(client.get::<String>("small").await.expect("get"));
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task");
    }
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` does not.
    let full = std::env::args().any(|a| a == "--bench");
    let (slices, scale) = if full { (15, 1) } else { (2, 20) };
    let setup = Setup::new();
    let started = Instant::now();
    let small = "x".repeat(100);
    let large = "y".repeat(16 * 1024);
    let mut rows = Vec::new();

    let (tls, plain) = setup.blocking();
    for client in [&tls, &plain] {
        client.set("small", &small, MINUTE).expect("set");
        client.set("large", &large, MINUTE).expect("set");
    }
    let gets = |client: &Client, key: &str, n: usize| {
        for _ in 0..n {
            black_box(client.get::<String>(key).expect("get").expect("hit"));
        }
    };
    let sets = |client: &Client, n: usize| {
        for _ in 0..n {
            client.set("small", &small, MINUTE).expect("set");
        }
    };
    rows.push(interleave(
        "blocking get, 100 B",
        slices,
        4000 / scale,
        |n| gets(&tls, "small", n),
        |n| gets(&plain, "small", n),
    ));
    rows.push(interleave(
        "blocking set, 100 B",
        slices,
        4000 / scale,
        |n| sets(&tls, n),
        |n| sets(&plain, n),
    ));
    rows.push(interleave(
        "blocking get, 16 KiB",
        slices,
        2000 / scale,
        |n| gets(&tls, "large", n),
        |n| gets(&plain, "large", n),
    ));
    // A fresh client each time: connect (and handshake), then one get.
    let connect = |addr: &str, tls: bool, n: usize| {
        for _ in 0..n {
            let builder = Setup::builder(addr);
            let builder = if tls {
                builder.tls(Arc::clone(&setup.fresh_config))
            } else {
                builder
            };
            gets(&builder.build().expect("client"), "small", 1);
        }
    };
    rows.push(interleave(
        "new connection + first get (blocking)",
        slices,
        100 / scale.min(10),
        |n| connect(&setup.tls_addr, true, n),
        |n| connect(&setup.plain_addr, false, n),
    ));

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let (atls, aplain) = rt.block_on(async { setup.asynchronous() });
    // One task: the slice's gets one after another.
    let one_task = |client: &AsyncClient, n: usize| {
        rt.block_on(async {
            for _ in 0..n {
                black_box(client.get::<String>("small").await.expect("get"));
            }
        })
    };
    rows.push(interleave(
        "async get, 100 B, one task",
        slices,
        4000 / scale,
        |n| one_task(&atls, n),
        |n| one_task(&aplain, n),
    ));
    // `n` rounds of 64 tasks at once.
    let rounds = |client: &AsyncClient, set: bool, n: usize| {
        rt.block_on(async {
            for _ in 0..n {
                round(client, set, &small).await;
            }
        })
    };
    rows.push(interleave(
        "async get, 100 B, 64 tasks (per round of 64)",
        slices,
        200 / scale,
        |n| rounds(&atls, false, n),
        |n| rounds(&aplain, false, n),
    ));
    rows.push(interleave(
        "async set, 100 B, 64 tasks (per round of 64)",
        slices,
        200 / scale,
        |n| rounds(&atls, true, n),
        |n| rounds(&aplain, true, n),
    ));

    println!("\n| case | TLS | plain TCP | TLS ÷ plain |\n|---|---|---|---|");
    for row in &rows {
        println!(
            "| {} | {:.1} µs | {:.1} µs | {:.2}x |",
            row.name, row.tls, row.plain, row.ratio
        );
    }
    println!("\n(took {:.1} s)", started.elapsed().as_secs_f64());
}
