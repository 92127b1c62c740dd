//! The `metrics_prometheus` example, scraped: its exporter listens on a
//! free loopback port, a plain HTTP GET over a `TcpStream` reads the
//! Prometheus text, and the cache's counters are seen to move between two
//! scrapes (once after `publish_metrics`, once published by the cache
//! itself as it works).
#![allow(missing_docs)]

#[path = "../examples/metrics_prometheus.rs"]
#[allow(dead_code)]
mod example;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// Installs the example's exporter on a free port (another process may
/// take the port between the pick and the bind: then another one).
fn install() -> SocketAddr {
    let mut last = String::new();
    for _ in 0..5 {
        let addr = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port");
        match example::install(addr) {
            Ok(()) => return addr,
            Err(e) => last = e.to_string(),
        }
    }
    panic!("the exporter did not start: {last}");
}

/// `GET /metrics`, the body.
fn scrape(addr: SocketAddr) -> String {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response");
    assert!(
        response.starts_with("HTTP/1.1 200"),
        "{}",
        &response[..response.len().min(200)]
    );
    response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default()
}

/// The value of the sample `series` (`metric{labels}`) in a scrape.
fn value(body: &str, series: &str) -> Option<f64> {
    body.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
}

#[test]
fn the_example_s_counters_move_between_two_scrapes() {
    let addr = install();
    let mc = example::server::Memcached::start();
    let cache = example::cache(&mc.addr());
    example::round(&cache, 0);
    cache.publish_metrics();
    let first = scrape(addr);
    let near_hits = r#"nearfar_near_hits_total{name="example"}"#;
    let far_hits = r#"nearfar_far_hits_total{name="example"}"#;
    let loads = r#"nearfar_loader_calls_total{name="example"}"#;
    let evicted = r#"nearfar_near_evictions_total{name="example",cause="capacity"}"#;
    let gets = r#"nearfar_far_request_seconds_count{name="example",command="get_or_lease"}"#;
    let entries = r#"nearfar_near_entries{name="example"}"#;
    let s = cache.stats();
    assert_eq!(
        value(&first, near_hits),
        Some(s.near_hits as f64),
        "{first}"
    );
    assert_eq!(value(&first, loads), Some(200.0), "each key once: {first}");
    assert_eq!(value(&first, evicted), Some(s.near.evicted_capacity as f64));
    assert!(value(&first, gets).is_some_and(|n| n >= 200.0), "{first}");
    assert_eq!(value(&first, entries), Some(100.0));
    assert!(first.contains("# TYPE nearfar_near_hits_total counter"));
    // Only the cache's own series: nothing registered under another name.
    let names: Vec<&str> = first
        .lines()
        .filter(|l| l.starts_with("nearfar_") && !l.contains(r#"name="example""#))
        .collect();
    assert!(names.is_empty(), "{names:?}");

    // Without publish_metrics: the cache publishes as it works, at most
    // once a second. Rounds until a scrape shows it (bounded: 10 s).
    let start = Instant::now();
    let moved = loop {
        example::round(&cache, 1);
        std::thread::sleep(Duration::from_millis(100));
        let now = scrape(addr);
        let up = |series| value(&now, series) > value(&first, series);
        if up(near_hits) && up(far_hits) {
            break now;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "not published in 10 s: {now}"
        );
    };
    assert!(value(&moved, gets) > value(&first, gets));
    assert_eq!(value(&moved, loads), Some(200.0), "no key loaded twice");
}
