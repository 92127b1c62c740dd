//! TLS to a real memcached (`-Z`, feature `tls`): round trips on both
//! clients, a certificate that does not verify, mismatched ports (a plain
//! client on a TLS port, a TLS client on a plain one) failing fast, a
//! handshake that never completes bounded by the connect timeout, and what
//! `build` refuses.
#![cfg(feature = "tls")]

#[path = "common/memcached.rs"]
mod server;

#[path = "common/pki.rs"]
mod pki;

#[cfg(feature = "tokio")]
#[path = "common/runtimes.rs"]
mod runtimes;

use std::net::TcpListener;
use std::time::{Duration, Instant};

use nearfar::memcached::rustls::{self, CertificateError};
use nearfar::memcached::{Client, ClientBuilder, ConfigError, Error};
use pki::Pki;
use server::Memcached;

const MINUTE: Duration = Duration::from_secs(60);

/// Timeouts far longer than any failure below may take: a failure that
/// comes within [`FAST`] was not a timeout running out.
const SLOW_TIMEOUT: Duration = Duration::from_secs(5);

/// How soon a mismatch must fail.
const FAST: Duration = Duration::from_secs(2);

/// A value larger than a TLS record (16 KiB) and than what rustls buffers
/// unsent (64 KiB), so it crosses many records each way.
const LARGE: usize = 300 * 1024;

fn tls_memcached(pki: &Pki) -> Memcached {
    let args = pki.memcached_args();
    Memcached::start_with(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

fn builder(addr: &str) -> ClientBuilder {
    Client::builder()
        .servers([addr])
        .connect_timeout(SLOW_TIMEOUT)
        .io_timeout(SLOW_TIMEOUT)
        .request_timeout(2 * SLOW_TIMEOUT)
}

fn large_value() -> Vec<u8> {
    (0..LARGE).map(|i| (i % 251) as u8).collect()
}

/// Asserts that `e` is a certificate refused for `why`, by the server at
/// `addr`, with a message that says so.
fn assert_certificate_refused(e: &Error, addr: &str, why: fn(&CertificateError) -> bool) {
    match e {
        Error::Tls {
            server,
            source: rustls::Error::InvalidCertificate(cause),
        } if server == addr && why(cause) => {}
        other => panic!("expected a certificate refused by {addr}, got {other:?}"),
    }
    let message = e.to_string();
    assert!(
        message.contains(addr) && message.contains("TLS handshake"),
        "{message}"
    );
    assert!(message.contains("invalid peer certificate"), "{message}");
    assert!(!e.is_retryable(), "a certificate refused is not retryable");
}

#[test]
fn blocking_round_trip_over_tls() {
    let pki = Pki::new();
    let mut mc = tls_memcached(&pki);
    // 127.0.0.1: the certificate's IP address name.
    let client = builder(&mc.addr()).tls_ca_file(&pki.ca).build().unwrap();

    assert_eq!(client.get::<String>("missing").unwrap(), None);
    client.set("greeting", "hello over TLS", MINUTE).unwrap();
    assert_eq!(
        client.get::<String>("greeting").unwrap().as_deref(),
        Some("hello over TLS")
    );
    let large = large_value();
    client.set("large", &large, MINUTE).unwrap();
    assert_eq!(client.get::<Vec<u8>>("large").unwrap(), Some(large));
    assert!(client.delete("greeting").unwrap());
    assert_eq!(client.get::<String>("greeting").unwrap(), None);

    // A pooled TLS connection idle for a while is checked before reuse
    // (a read that would block: alive), and one the server closed (a
    // restart) is replaced before anything is sent on it.
    let connections = || -> u64 {
        let stats = client.stats().unwrap();
        stats[0].1["total_connections"].parse().unwrap()
    };
    let before = connections();
    std::thread::sleep(Duration::from_millis(20));
    client.set("greeting", "again", MINUTE).unwrap();
    assert_eq!(
        connections(),
        before,
        "the idle TLS connection was not reused"
    );
    mc.restart();
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(client.get::<String>("greeting").unwrap(), None);

    // Batches (one request of many commands, one reply of many frames).
    let items: Vec<(String, u32)> = (0..50).map(|i| (format!("k{i}"), i)).collect();
    let refs: Vec<(&str, &u32)> = items.iter().map(|(k, v)| (k.as_str(), v)).collect();
    client.set_many(&refs, MINUTE).unwrap();
    let keys: Vec<&str> = items.iter().map(|(k, _)| k.as_str()).collect();
    let got = client.get_many::<u32>(&keys).unwrap();
    assert_eq!(got.len(), 50);
    assert!(items.iter().all(|(k, v)| got.get(k) == Some(v)));

    // The server name given, instead of the address's: one the
    // certificate carries works, another is refused.
    let named = builder(&mc.addr())
        .tls_ca_file(&pki.ca)
        .tls_server_name(pki::SERVER_NAMES[1])
        .build()
        .unwrap();
    assert_eq!(named.get::<u32>("k7").unwrap(), Some(7));
    let misnamed = builder(&mc.addr())
        .tls_ca_file(&pki.ca)
        .tls_server_name("other.test")
        .build()
        .unwrap();
    let e = misnamed.get::<u32>("k7").unwrap_err();
    assert!(e.to_string().contains("tls_server_name"), "{e}");
    assert_certificate_refused(&e, &mc.addr(), |c| {
        matches!(
            c,
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. }
        )
    });
}

#[test]
fn a_certificate_from_another_ca_is_refused_every_time() {
    let pki = Pki::new();
    let mc = tls_memcached(&pki);
    let client = builder(&mc.addr())
        .tls_ca_file(&pki.other_ca)
        .retry_attempts(1)
        .build()
        .unwrap();
    // A refused certificate does not eject the server (retry_attempts 1
    // would at the first failure that counted): every call reports it,
    // never `AllServersDown`.
    for _ in 0..3 {
        let e = client.set("k", "v", MINUTE).unwrap_err();
        assert_certificate_refused(&e, &mc.addr(), |c| *c == CertificateError::UnknownIssuer);
    }
    assert!(!client.is_marked_dead(&mc.addr()), "the server was ejected");
    let message = client.get::<String>("k").unwrap_err().to_string();
    assert!(
        message.contains("not signed by a CA the client trusts"),
        "{message}"
    );
}

#[test]
fn nearfar_over_a_refused_certificate_loads_and_keeps_asking() {
    let pki = Pki::new();
    let mc = tls_memcached(&pki);
    let far = builder(&mc.addr())
        .tls_ca_file(&pki.other_ca)
        .build()
        .unwrap();
    let cache: nearfar::NearFar<u64, String> = nearfar::NearFar::builder()
        .far(far)
        .namespace("tls")
        .circuit_breaker(1, MINUTE)
        .build()
        .unwrap();
    // The far tier's error never reaches the caller: the loader answers.
    for key in 0..3 {
        assert_eq!(cache.get_with(key, || format!("v{key}")), format!("v{key}"));
    }
    // Each call asked the far tier (and was refused): a breaker that opens
    // at the first failure would have held it out for a minute and hidden
    // the cause from the client's errors.
    let stats = cache.stats();
    assert!(stats.far_errors >= 3, "{stats:?}");
    assert_eq!(
        (stats.breaker_trips, stats.breaker_skips),
        (0, 0),
        "{stats:?}"
    );
}

#[test]
fn a_plain_client_on_a_tls_port_fails_fast() {
    let pki = Pki::new();
    let mc = tls_memcached(&pki);
    let client = builder(&mc.addr()).build().unwrap();
    let started = Instant::now();
    let e = client.get::<String>("k").unwrap_err();
    let took = started.elapsed();
    assert_asks_about_tls(&e);
    assert!(took < FAST, "took {took:?} to fail: {e}");
}

/// Asserts that `e` is what a plain client gets from a TLS port: memcached's
/// TLS layer drops the connection at the first bytes that are not a TLS
/// handshake, which the client reports as the I/O error it is (retryable:
/// a server that died just then looks the same), asking about TLS.
fn assert_asks_about_tls(e: &Error) {
    match e {
        Error::Io(io) => assert!(
            matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::UnexpectedEof
            ),
            "{e:?}"
        ),
        other => panic!("expected an I/O error, got {other:?}"),
    }
    assert!(e.is_retryable());
    let message = e.to_string();
    assert!(
        message.contains("is the server expecting TLS?"),
        "{message}"
    );
}

#[test]
fn a_tls_client_on_a_plain_port_fails_fast() {
    let pki = Pki::new();
    let mc = Memcached::start();
    let client = builder(&mc.addr()).tls_ca_file(&pki.ca).build().unwrap();
    let started = Instant::now();
    let e = client.get::<String>("k").unwrap_err();
    let took = started.elapsed();
    assert!(
        matches!(
            &e,
            Error::Tls {
                source: rustls::Error::InvalidMessage(_),
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("-Z"), "{e}");
    assert!(took < FAST, "took {took:?} to fail: {e}");
}

#[test]
fn a_handshake_that_never_completes_ends_at_the_connect_timeout() {
    let pki = Pki::new();
    // Accepts connections (the kernel does, into the backlog) and never
    // answers the handshake.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap().to_string();
    let client = builder(&addr)
        .connect_timeout(Duration::from_millis(300))
        .tls_ca_file(&pki.ca)
        .build()
        .unwrap();
    let started = Instant::now();
    let e = client.get::<String>("k").unwrap_err();
    let took = started.elapsed();
    assert_handshake_timed_out(&e, &addr);
    assert!(
        took >= Duration::from_millis(250) && took < FAST,
        "took {took:?}"
    );
    drop(silent);
}

/// Asserts that `e` is a TLS handshake with `addr` cut by the connect
/// timeout or the call's deadline, and says so.
fn assert_handshake_timed_out(e: &Error, addr: &str) {
    match e {
        Error::Connect { server, source } => {
            assert_eq!(server, addr);
            assert_eq!(source.kind(), std::io::ErrorKind::TimedOut, "{e}");
        }
        other => panic!("expected a connect timeout, got {other:?}"),
    }
    assert!(e.is_retryable());
    let message = e.to_string();
    assert!(message.contains("TLS handshake not done"), "{message}");
}

/// A value larger than loopback's socket buffers hold, so that writing
/// it to a stopped server blocks.
const HUGE: usize = 24 << 20;

/// The stalled-server test's request timeout (its I/O timeout is 1 s) and
/// how late past it a call may end.
const DEADLINE: Duration = Duration::from_millis(1200);
const SLACK: Duration = Duration::from_millis(500);

#[test]
fn a_stalled_server_is_bounded_by_the_deadline_over_tls() {
    let pki = Pki::new();
    let mut args = pki.memcached_args();
    args.extend(["-I".to_owned(), "32m".to_owned()]);
    let mc = Memcached::start_with(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let client = builder(&mc.addr())
        .tls_ca_file(&pki.ca)
        .io_timeout(Duration::from_secs(1))
        .request_timeout(DEADLINE)
        .max_item_size(32 << 20)
        .build()
        .unwrap();
    client.set("k", "v", MINUTE).unwrap();
    mc.pause();
    let huge = vec![7u8; HUGE];
    // On the open connection: blocked writing (the server reads nothing),
    // a timeout that drops the connection.
    let started = Instant::now();
    let e = client.set_raw("huge", &huge, 0, MINUTE).unwrap_err();
    let took = started.elapsed();
    assert!(matches!(e, Error::Timeout), "{e:?}");
    assert!(took < DEADLINE + SLACK, "the set took {took:?}");
    // A new connection: the handshake gets no answer, and the call's
    // deadline ends it well before the connect timeout (5 s).
    let started = Instant::now();
    let e = client.get::<String>("k").unwrap_err();
    let took = started.elapsed();
    assert_handshake_timed_out(&e, &mc.addr());
    assert!(took < DEADLINE + SLACK, "the get took {took:?}");
    mc.resume();
}

#[test]
fn build_refuses_what_tls_cannot_do() {
    let pki = Pki::new();
    let refused = |b: ClientBuilder| match b.build() {
        Err(Error::Config(e)) => e,
        other => panic!("expected a configuration error, got {other:?}"),
    };
    let e = refused(
        Client::builder()
            .servers(["127.0.0.1:11211", "/run/memcached.sock"])
            .tls_ca_file(&pki.ca),
    );
    assert_eq!(
        e,
        ConfigError::TlsUnixSocket {
            path: "/run/memcached.sock".into()
        }
    );
    let e = refused(
        Client::builder()
            .servers(["127.0.0.1:11211"])
            .tls_server_name("memcached.test"),
    );
    assert!(
        matches!(
            e,
            ConfigError::InvalidSetting {
                setting: "tls_server_name",
                ..
            }
        ),
        "{e:?}"
    );
    let missing = pki.ca.with_file_name("missing.pem");
    let e = refused(
        Client::builder()
            .servers(["127.0.0.1:11211"])
            .tls_ca_file(&missing),
    );
    assert!(
        matches!(&e, ConfigError::TlsCaFile { path, .. } if *path == missing),
        "{e:?}"
    );
    // The server's key is PEM, but no certificate.
    let e = refused(
        Client::builder()
            .servers(["127.0.0.1:11211"])
            .tls_ca_file(&pki.key),
    );
    assert!(e.to_string().contains("no PEM certificate"), "{e}");
}

#[cfg(feature = "tokio")]
mod asynchronous {
    use super::*;
    use runtimes::on_both_runtimes;

    #[test]
    fn async_round_trip_over_tls() {
        let pki = Pki::new();
        on_both_runtimes(|rt| {
            let (ca, args) = (pki.ca.clone(), pki.memcached_args());
            async move {
                let mc = runtimes::blocking(move || {
                    Memcached::start_with(&args.iter().map(String::as_str).collect::<Vec<_>>())
                })
                .await;
                let client = builder(&mc.addr())
                    .pool_size(2)
                    .tls_ca_file(&ca)
                    .build_async()
                    .unwrap();
                assert_eq!(client.get::<String>("missing").await.unwrap(), None, "{rt}");
                client
                    .set("greeting", "hello over TLS", MINUTE)
                    .await
                    .unwrap();
                assert_eq!(
                    client.get::<String>("greeting").await.unwrap().as_deref(),
                    Some("hello over TLS"),
                    "{rt}"
                );
                let large = large_value();
                client.set("large", &large, MINUTE).await.unwrap();
                assert_eq!(client.get::<Vec<u8>>("large").await.unwrap(), Some(large));
                assert!(client.delete("greeting").await.unwrap());
                assert_eq!(client.get::<String>("greeting").await.unwrap(), None);

                // Many tasks' requests pipelined on the TLS connections.
                let tasks: Vec<_> = (0..64u32)
                    .map(|i| {
                        let client = client.clone();
                        tokio::spawn(async move {
                            let key = format!("task{i}");
                            client.set(&key, &i, MINUTE).await.unwrap();
                            client.get::<u32>(&key).await.unwrap()
                        })
                    })
                    .collect();
                for (i, task) in tasks.into_iter().enumerate() {
                    assert_eq!(task.await.unwrap(), Some(i as u32), "{rt}");
                }

                // Written by the async client, read by the blocking one.
                let blocking = builder(&mc.addr()).tls_ca_file(&ca).build().unwrap();
                let read = runtimes::blocking(move || blocking.get::<u32>("task9")).await;
                assert_eq!(read.unwrap(), Some(9), "{rt}");
                runtimes::blocking(move || drop(mc)).await;
            }
        });
    }

    #[test]
    fn async_stalled_server_is_bounded_by_the_deadline_over_tls() {
        let pki = Pki::new();
        on_both_runtimes(|rt| {
            let (ca, mut args) = (pki.ca.clone(), pki.memcached_args());
            args.extend(["-I".to_owned(), "32m".to_owned()]);
            async move {
                let mc = runtimes::blocking(move || {
                    Memcached::start_with(&args.iter().map(String::as_str).collect::<Vec<_>>())
                })
                .await;
                let client = builder(&mc.addr())
                    .tls_ca_file(&ca)
                    .pool_size(1)
                    .io_timeout(Duration::from_secs(1))
                    .request_timeout(DEADLINE)
                    .max_item_size(32 << 20)
                    .build_async()
                    .unwrap();
                client.set("k", "v", MINUTE).await.unwrap();
                let mc = runtimes::blocking(move || {
                    mc.pause();
                    mc
                })
                .await;
                let huge = vec![7u8; HUGE];
                let started = Instant::now();
                let e = client.set_raw("huge", &huge, 0, MINUTE).await.unwrap_err();
                let took = started.elapsed();
                assert!(matches!(e, Error::Timeout), "{rt}: {e:?}");
                assert!(took < DEADLINE + SLACK, "{rt}: the set took {took:?}");
                // The stall closed the connection: a new one's handshake
                // is cut short by the call's deadline.
                let started = Instant::now();
                let e = client.get::<String>("k").await.unwrap_err();
                let took = started.elapsed();
                assert_handshake_timed_out(&e, &mc.addr());
                assert!(took < DEADLINE + SLACK, "{rt}: the get took {took:?}");
                runtimes::blocking(move || {
                    mc.resume();
                    drop(mc);
                })
                .await;
            }
        });
    }

    #[test]
    fn async_mismatches_fail_fast_with_clear_errors() {
        let pki = Pki::new();
        on_both_runtimes(|rt| {
            let (ca, other_ca, args) = (pki.ca.clone(), pki.other_ca.clone(), pki.memcached_args());
            async move {
                let (tls_mc, plain_mc) = runtimes::blocking(move || {
                    let args: Vec<&str> = args.iter().map(String::as_str).collect();
                    (Memcached::start_with(&args), Memcached::start())
                })
                .await;

                // A certificate from another CA, every time (no ejection).
                let client = builder(&tls_mc.addr())
                    .tls_ca_file(&other_ca)
                    .retry_attempts(1)
                    .build_async()
                    .unwrap();
                for _ in 0..3 {
                    let e = client.get::<String>("k").await.unwrap_err();
                    assert_certificate_refused(&e, &tls_mc.addr(), |c| {
                        *c == CertificateError::UnknownIssuer
                    });
                }

                // A plain client on the TLS port.
                let plain = builder(&tls_mc.addr()).build_async().unwrap();
                let started = Instant::now();
                let e = plain.get::<String>("k").await.unwrap_err();
                assert_asks_about_tls(&e);
                assert!(started.elapsed() < FAST, "{rt}: {:?}", started.elapsed());

                // A TLS client on the plain port.
                let tls = builder(&plain_mc.addr())
                    .tls_ca_file(&ca)
                    .build_async()
                    .unwrap();
                let started = Instant::now();
                let e = tls.get::<String>("k").await.unwrap_err();
                assert!(
                    matches!(
                        &e,
                        Error::Tls {
                            source: rustls::Error::InvalidMessage(_),
                            ..
                        }
                    ),
                    "{rt}: {e:?}"
                );
                assert!(started.elapsed() < FAST, "{rt}: {:?}", started.elapsed());

                // A handshake never answered: the connect timeout.
                let silent = TcpListener::bind("127.0.0.1:0").unwrap();
                let addr = silent.local_addr().unwrap().to_string();
                let stuck = builder(&addr)
                    .connect_timeout(Duration::from_millis(300))
                    .tls_ca_file(&ca)
                    .build_async()
                    .unwrap();
                let started = Instant::now();
                let e = stuck.get::<String>("k").await.unwrap_err();
                assert_handshake_timed_out(&e, &addr);
                assert!(started.elapsed() < FAST, "{rt}: {:?}", started.elapsed());
                drop(silent);
                runtimes::blocking(move || drop((tls_mc, plain_mc))).await;
            }
        });
    }
}
