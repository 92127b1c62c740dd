//! Far tier: the nearfar memcached client against the `memcache` crate
//! (ascii protocol) and a minimal hand-written text client (the floor: one
//! write, reads into a reused buffer until the reply's end, no parsing).
//!
//! The bench starts its own memcached on a free loopback port. Measure with
//! client and server pinned to one core (child processes inherit the
//! affinity, so the server is pinned too):
//!
//! ```text
//! taskset -c 0 cargo bench --bench far
//! ```
//!
//! Values are 100-byte strings, read as `String` by both libraries' typed
//! APIs. Cases: single get and single set; one multi-key get
//! of 100 keys; and nearfar's pipelined `get_many(100)` against 100 single
//! gets.
//!
//! Measured once (memcached 1.6.18, 2-core VM, everything on core 0; times
//! are criterion's medians):
//!
//! | case | nearfar | memcache 0.21 | minimal floor |
//! |---|---|---|---|
//! | single get | 20.6 µs | 70.1 µs (3.4x slower) | 20.4 µs (nearfar at 0.99x its speed) |
//! | single set | 20.7 µs | 135.6 µs (6.6x slower) | 21.8 µs (nearfar at 1.05x) |
//! | 100 keys, one batch | 93.8 µs (`get_many`), 84.9 µs (`get_many_raw`) | 180.9 µs (`gets`) | 55.7 µs (multi-key `get`) |
//! | 100 single gets | 2.45 ms: `get_many` is 26x faster | | |
//!
//! The minimal client's 100 pipelined quiet `mg` took 140.9 µs, 2.5x its
//! multi-key `get`: why `get_many` sends the latter.
#![allow(missing_docs)]

#[path = "../tests/common/memcached.rs"]
mod server;

use std::hint::black_box;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use nearfar::memcached::Client;

const VALUE_LEN: usize = 100;
const BATCH: usize = 100;

/// The floor: a blocking text-protocol client with reused buffers.
struct Minimal {
    stream: TcpStream,
    out: Vec<u8>,
    buf: Vec<u8>,
}

impl Minimal {
    fn connect(addr: &str) -> Minimal {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        Minimal {
            stream,
            out: Vec::with_capacity(4096),
            buf: vec![0; 64 * 1024],
        }
    }

    /// Sends `out` and reads until the reply ends with `terminator`; returns
    /// the reply's length.
    fn round_trip(&mut self, terminator: &[u8]) -> usize {
        self.stream.write_all(&self.out).expect("write");
        let mut filled = 0;
        loop {
            if filled == self.buf.len() {
                self.buf.resize(self.buf.len() * 2, 0);
            }
            let n = self.stream.read(&mut self.buf[filled..]).expect("read");
            assert!(n > 0, "server closed the connection");
            filled += n;
            if self.buf[..filled].ends_with(terminator) {
                return filled;
            }
        }
    }

    fn get(&mut self, keys: &[&str]) -> usize {
        self.out.clear();
        self.out.extend_from_slice(b"get");
        for key in keys {
            self.out.push(b' ');
            self.out.extend_from_slice(key.as_bytes());
        }
        self.out.extend_from_slice(b"\r\n");
        self.round_trip(b"END\r\n")
    }

    /// Quiet meta gets closed by a no-op, as nearfar's `get_many` sends them.
    fn meta_pipeline(&mut self, keys: &[&str]) -> usize {
        self.out.clear();
        for (i, key) in keys.iter().enumerate() {
            write!(self.out, "mg {key} v f O{i} q\r\n").expect("format");
        }
        self.out.extend_from_slice(b"mn\r\n");
        self.round_trip(b"MN\r\n")
    }

    fn set(&mut self, key: &str, value: &[u8]) -> usize {
        self.out.clear();
        write!(self.out, "set {key} 0 0 {}\r\n", value.len()).expect("format");
        self.out.extend_from_slice(value);
        self.out.extend_from_slice(b"\r\n");
        self.round_trip(b"\r\n")
    }
}

fn bench_far(c: &mut Criterion) {
    let mc = server::Memcached::start();
    let addr = mc.addr();
    let value = "x".repeat(VALUE_LEN);
    let keys: Vec<String> = (0..BATCH).map(|i| format!("bench:key:{i}")).collect();
    let key_refs: Vec<&str> = keys.iter().map(String::as_str).collect();

    let nearfar = Client::builder()
        .servers([addr.as_str()])
        .pool_size(1)
        .build()
        .expect("nearfar client");
    let peer = memcache::Client::connect(format!("memcache://{addr}?protocol=ascii"))
        .expect("memcache client");
    let mut minimal = Minimal::connect(&addr);
    for key in &keys {
        nearfar
            .set(key, value.as_str(), Duration::ZERO)
            .expect("fill the server");
    }
    // Sanity: every client reads what nearfar stored.
    assert_eq!(
        nearfar.get::<String>(&keys[0]).unwrap(),
        Some(value.clone())
    );
    assert_eq!(peer.get::<String>(&keys[0]).unwrap(), Some(value.clone()));
    assert!(minimal.get(&key_refs[..1]) > VALUE_LEN);

    let mut group = c.benchmark_group("far/get");
    group.bench_function("nearfar", |b| {
        b.iter(|| nearfar.get::<String>(black_box(&keys[7])).unwrap())
    });
    group.bench_function("memcache", |b| {
        b.iter(|| peer.get::<String>(black_box(&keys[7])).unwrap())
    });
    group.bench_function("minimal", |b| {
        b.iter(|| minimal.get(black_box(&key_refs[7..8])))
    });
    group.finish();

    let mut group = c.benchmark_group("far/set");
    group.bench_function("nearfar", |b| {
        b.iter(|| {
            nearfar
                .set(black_box("bench:set"), value.as_str(), Duration::ZERO)
                .unwrap()
        })
    });
    group.bench_function("memcache", |b| {
        b.iter(|| peer.set(black_box("bench:set"), value.as_str(), 0).unwrap())
    });
    group.bench_function("minimal", |b| {
        b.iter(|| minimal.set(black_box("bench:set"), value.as_bytes()))
    });
    group.finish();

    let mut group = c.benchmark_group("far/get_100_keys");
    group.bench_function("nearfar_get_many", |b| {
        b.iter(|| {
            let got = nearfar.get_many::<String>(black_box(&key_refs)).unwrap();
            assert_eq!(got.len(), BATCH);
        })
    });
    group.bench_function("nearfar_get_many_raw", |b| {
        b.iter(|| {
            let got = nearfar.get_many_raw(black_box(&key_refs)).unwrap();
            assert_eq!(got.len(), BATCH);
        })
    });
    group.bench_function("nearfar_100_single_gets", |b| {
        b.iter(|| {
            for key in &key_refs {
                black_box(nearfar.get::<String>(key).unwrap());
            }
        })
    });
    group.bench_function("memcache_gets", |b| {
        b.iter(|| {
            let got = peer.gets::<String>(black_box(&key_refs)).unwrap();
            assert_eq!(got.len(), BATCH);
        })
    });
    group.bench_function("minimal_multi_get", |b| {
        b.iter(|| minimal.get(black_box(&key_refs)))
    });
    group.bench_function("minimal_meta_pipeline", |b| {
        b.iter(|| minimal.meta_pipeline(black_box(&key_refs)))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = bench_far
}
criterion_main!(benches);
