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

/// Times `slices` pairs of slices of `ops` operations, TLS then plain
/// (then plain then TLS, in turn), after one warm-up slice of each.
fn interleave(
    name: &'static str,
    slices: usize,
    ops: usize,
    mut tls: impl FnMut(usize),
    mut plain: impl FnMut(usize),
) -> Row {
    let time = |f: &mut dyn FnMut(usize)| {
        let start = Instant::now();
        for i in 0..ops {
            f(i);
        }
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
    let get = |client: &Client, key: &str| {
        black_box(client.get::<String>(key).expect("get").expect("hit"));
    };
    rows.push(interleave(
        "blocking get, 100 B",
        slices,
        4000 / scale,
        |_| get(&tls, "small"),
        |_| get(&plain, "small"),
    ));
    rows.push(interleave(
        "blocking set, 100 B",
        slices,
        4000 / scale,
        |_| tls.set("small", &small, MINUTE).expect("set"),
        |_| plain.set("small", &small, MINUTE).expect("set"),
    ));
    rows.push(interleave(
        "blocking get, 16 KiB",
        slices,
        2000 / scale,
        |_| get(&tls, "large"),
        |_| get(&plain, "large"),
    ));
    let connect = |addr: &str, tls: bool| {
        let builder = Setup::builder(addr);
        let builder = if tls {
            builder.tls(Arc::clone(&setup.fresh_config))
        } else {
            builder
        };
        let client = builder.build().expect("client");
        get(&client, "small");
    };
    rows.push(interleave(
        "new connection + first get (blocking)",
        slices,
        100 / scale.min(10),
        |_| connect(&setup.tls_addr, true),
        |_| connect(&setup.plain_addr, false),
    ));

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let (atls, aplain) = rt.block_on(async { setup.asynchronous() });
    let one_get = |client: &AsyncClient| {
        rt.block_on(async {
            black_box(
                client
                    .get::<String>("small")
                    .await
                    .expect("get")
                    .expect("hit"),
            );
        })
    };
    rows.push(interleave(
        "async get, 100 B, one task",
        slices,
        4000 / scale,
        |_| one_get(&atls),
        |_| one_get(&aplain),
    ));
    let many = |client: &AsyncClient, set: bool| {
        rt.block_on(async {
            let tasks: Vec<_> = (0..TASKS)
                .map(|_| {
                    let (client, small) = (client.clone(), small.clone());
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
        })
    };
    rows.push(interleave(
        "async get, 100 B, 64 tasks (per batch of 64)",
        slices,
        200 / scale,
        |_| many(&atls, false),
        |_| many(&aplain, false),
    ));
    rows.push(interleave(
        "async set, 100 B, 64 tasks (per batch of 64)",
        slices,
        200 / scale,
        |_| many(&atls, true),
        |_| many(&aplain, true),
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
