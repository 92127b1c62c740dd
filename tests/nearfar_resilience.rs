//! NearFar when the far tier fails: killed mid-load, restarted, flapping,
//! nothing listening, or accepting but never answering. Callers must never
//! see an error from the far tier, and the circuit breaker must keep the
//! added latency bounded.
#![cfg(feature = "memcached")]

#[path = "common/memcached.rs"]
mod server;

use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use nearfar::NearFar;
use nearfar::memcached::Client;
use server::{Memcached, free_port};

const MS: Duration = Duration::from_millis(1);

fn client(addr: &str) -> Client {
    Client::builder()
        .servers([addr])
        .io_timeout(100 * MS)
        .connect_timeout(100 * MS)
        .dead_timeout(100 * MS)
        .build()
        .expect("client")
}

fn instance(addr: &str, breaker: (u32, Duration)) -> NearFar<u64, String> {
    NearFar::builder()
        .far(client(addr))
        .namespace("res")
        .near_ttl(Duration::from_secs(60))
        .circuit_breaker(breaker.0, breaker.1)
        .build()
        .expect("NearFar")
}

fn value(k: u64) -> String {
    format!("value-{k}")
}

/// Polls `cond` every 20 ms for up to `limit`.
fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        thread::sleep(20 * MS);
    }
    cond()
}

#[test]
fn server_killed_mid_load_then_restarted() {
    let mut mc = Memcached::start();
    let addr = mc.addr();
    let nf = instance(&addr, (3, 200 * MS));

    // A loader is running (its caller holds the lease) when the server dies.
    let (started_tx, started_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let loading = {
        let nf = nf.clone();
        thread::spawn(move || {
            nf.try_get_with(1, || {
                started_tx.send(()).unwrap();
                go_rx.recv().unwrap();
                Ok::<_, String>(value(1))
            })
        })
    };
    started_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    mc.stop();
    go_tx.send(()).unwrap();
    assert_eq!(loading.join().unwrap().unwrap(), value(1));
    assert!(
        nf.stats().far_errors >= 1,
        "the failed far write is counted"
    );

    // While it is down, readers keep working: near hits and local loads.
    for k in 0..50 {
        assert_eq!(
            nf.try_get_with(k, || Ok::<_, String>(value(k))).unwrap(),
            value(k)
        );
        assert_eq!(nf.get(&k), Some(value(k)));
    }
    assert!(nf.stats().far_errors >= 3);

    // It comes back empty and is refilled as keys are read.
    mc.restart();
    let raw = client(&addr);
    let mut k = 1000;
    assert!(
        eventually(Duration::from_secs(5), || {
            k += 1;
            nf.get_with(k, || value(k));
            raw.get::<String>(&nf.far_key(&k).unwrap()).ok().flatten() == Some(value(k))
        }),
        "far tier refilled after restart"
    );
    let other = instance(&addr, (3, 200 * MS));
    assert_eq!(other.get(&k), Some(value(k)));
    assert_eq!(other.stats().far_hits, 1);
}

#[test]
fn flapping_server_never_fails_a_caller() {
    let mut mc = Memcached::start();
    let addr = mc.addr();
    let nf = instance(&addr, (2, 100 * MS));
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..4)
        .map(|t| {
            let (nf, stop) = (nf.clone(), stop.clone());
            thread::spawn(move || {
                let mut calls = 0u64;
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let k = (i * 7 + t) % 200;
                    let got = nf.try_get_with(k, || Ok::<_, String>(value(k)));
                    assert_eq!(got.unwrap(), value(k));
                    if i % 5 == 0 {
                        nf.remove(&k);
                    }
                    i += 1;
                    calls += 1;
                }
                calls
            })
        })
        .collect();
    for _ in 0..3 {
        thread::sleep(150 * MS);
        mc.stop();
        thread::sleep(150 * MS);
        mc.restart();
    }
    thread::sleep(150 * MS);
    stop.store(true, Ordering::Relaxed);
    let calls: u64 = readers.into_iter().map(|h| h.join().unwrap()).sum();
    assert!(calls > 100, "{calls}");
    assert!(nf.stats().far_errors > 0);
    // Recovered: a fresh key reaches memcached again.
    let raw = client(&addr);
    assert!(eventually(Duration::from_secs(5), || {
        nf.insert(9999, value(9999));
        raw.get::<String>(&nf.far_key(&9999).unwrap())
            .ok()
            .flatten()
            == Some(value(9999))
    }));
}

#[test]
fn nothing_listening_costs_little_with_the_breaker() {
    let addr = format!("127.0.0.1:{}", free_port());
    let nf = instance(&addr, (3, Duration::from_secs(1)));
    let start = Instant::now();
    for k in 0..200 {
        assert_eq!(nf.get_with(k, || value(k)), value(k));
        assert_eq!(nf.get(&(k + 1000)), None);
    }
    let elapsed = start.elapsed();
    let s = nf.stats();
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
    assert!(s.far_errors >= 3, "{s:?}");
    // At most the threshold, plus one probe per elapsed cooldown.
    let bound = 3 + elapsed.as_secs() + 1;
    assert!(
        s.far_errors <= bound,
        "{} far errors > {bound}",
        s.far_errors
    );
    assert!(s.breaker_trips >= 1 && s.breaker_skips >= 390, "{s:?}");
    assert_eq!(s.loader_calls, 200);
}

#[test]
fn a_server_that_never_answers_costs_a_few_timeouts() {
    // Accepts connections (the kernel does, from the backlog) but never
    // reads or replies: every request times out.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let client = Client::builder()
        .servers([addr.as_str()])
        .io_timeout(100 * MS)
        .connect_timeout(100 * MS)
        // The client's own dead-server marking is left out of the way, so
        // the breaker alone bounds the cost.
        .retry_attempts(1_000_000)
        .build()
        .unwrap();
    let nf: NearFar<u64, String> = NearFar::builder()
        .far(client)
        .namespace("hole")
        .circuit_breaker(3, Duration::from_millis(500))
        .build()
        .unwrap();
    let start = Instant::now();
    for k in 0..200 {
        assert_eq!(nf.get_with(k, || value(k)), value(k));
    }
    let elapsed = start.elapsed();
    let s = nf.stats();
    // 200 timeouts would take 20 s; the breaker allows 3, then one probe
    // per 500 ms cooldown.
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
    let bound = 3 + 2 * (elapsed.as_millis() as u64 / 500 + 1);
    assert!(s.far_errors >= 3 && s.far_errors <= bound, "{s:?}");
    assert!(nf.far_breaker_open());
    drop(listener);
}
