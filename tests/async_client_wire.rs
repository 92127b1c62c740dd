//! The async client against scripted fake servers whose replies are out
//! of step (a wrong opaque token or key, garbage, an `ERROR` line): typed
//! errors, the connection dropped, the next requests matched in step; on
//! both tokio runtimes.
#![cfg(feature = "tokio")]

#[path = "common/runtimes.rs"]
mod runtimes;

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use nearfar::memcached::{Client, Error};
use runtimes::{on_both_runtimes, wait_until};
use tokio::task::JoinSet;

/// A fake server on 127.0.0.1: each connection it accepts is served by
/// `serve(n, stream)` (n counts from 0) on its own thread. Returns the
/// address and the count of connections accepted.
fn fake_server<F>(serve: F) -> (String, Arc<AtomicUsize>)
where
    F: Fn(usize, TcpStream) + Send + Sync + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&accepted);
    let serve = Arc::new(serve);
    thread::spawn(move || {
        for n in 0..16 {
            let Ok((stream, _)) = listener.accept() else {
                return;
            };
            counter.fetch_add(1, Ordering::SeqCst);
            let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
            let serve = Arc::clone(&serve);
            thread::spawn(move || serve(n, stream));
        }
    });
    (addr, accepted)
}

/// The key and the `O` token (with its letter) of a meta request line.
fn key_and_opaque(line: &str) -> (String, Option<String>) {
    let mut fields = line.split_whitespace().skip(1);
    let key = fields.next().unwrap_or_default().to_owned();
    let opaque = fields.find(|f| f.starts_with('O')).map(str::to_owned);
    (key, opaque)
}

/// A memcached-like answer to an `mg`: the key itself as the value (a
/// string), with the echo memcached 1.6 puts on it (` k<key>` if asked
/// for, and the request's token).
fn good_reply(line: &str) -> String {
    let (key, opaque) = key_and_opaque(line);
    let mut echo = String::new();
    if line.split_whitespace().skip(2).any(|f| f == "k") {
        echo.push_str(&format!(" k{key}"));
    }
    if let Some(opaque) = opaque {
        echo.push_str(&format!(" {opaque}"));
    }
    format!("VA {} f16{echo}\r\n{key}\r\n", key.len())
}

/// Serves `stream` line by line: the first `bad` request lines of a
/// connection numbered 0 get `bad_reply(line)` (after `batch` lines have
/// arrived, so a pipeline is in flight), every other line a good reply.
/// Sets `closed` when connection 0 is closed by the client.
fn scripted(
    batch: usize,
    bad_reply: impl Fn(&str, usize) -> Option<String> + Send + Sync + 'static,
    closed: Arc<AtomicBool>,
) -> impl Fn(usize, TcpStream) + Send + Sync + 'static {
    move |conn, stream| {
        let Ok(mut writer) = stream.try_clone() else {
            return;
        };
        let mut reader = BufReader::new(stream);
        let mut lines = Vec::new();
        for _ in 0..10_000 {
            let mut line = String::new();
            if !reader.read_line(&mut line).is_ok_and(|read| read > 0) {
                break;
            }
            lines.push(line);
            if conn == 0 && lines.len() < batch {
                continue;
            }
            for (i, line) in lines.drain(..).enumerate() {
                let reply = match conn {
                    0 => bad_reply(&line, i).unwrap_or_else(|| good_reply(&line)),
                    _ => good_reply(&line),
                };
                if writer.write_all(reply.as_bytes()).is_err() {
                    break;
                }
            }
        }
        if conn == 0 {
            closed.store(true, Ordering::SeqCst);
        }
    }
}

/// One `get` against a fake whose first connection answers with
/// `bad_reply`: it fails as `expected` says, the connection is closed by
/// the client, and the next requests, on a second connection, get their
/// own keys' values.
async fn out_of_step(
    rt: &str,
    what: &str,
    bad_reply: impl Fn(&str, usize) -> Option<String> + Send + Sync + 'static,
    expected: fn(&Error) -> bool,
) {
    let closed = Arc::new(AtomicBool::new(false));
    let (addr, accepted) = fake_server(scripted(1, bad_reply, Arc::clone(&closed)));
    let a = Client::builder()
        .servers([addr.as_str()])
        .pool_size(1)
        .io_timeout(Duration::from_secs(2))
        .build_async()
        .unwrap();
    match a.get::<String>("mine").await {
        Err(e) => assert!(expected(&e), "{rt}: {what}: {e:?}"),
        Ok(value) => panic!("{rt}: {what}: took {value:?} as the answer"),
    }
    wait_until(
        "the client closes the connection",
        Duration::from_secs(5),
        || closed.load(Ordering::SeqCst),
    )
    .await;
    // A new connection, matched in step, many requests pipelined on it.
    let mut tasks = JoinSet::new();
    for i in 0..50 {
        let a = a.clone();
        tasks.spawn(async move {
            let key = format!("next-{i}");
            assert_eq!(a.get::<String>(&key).await.unwrap(), Some(key));
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.unwrap_or_else(|e| panic!("{rt}: {what}: {e}"));
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 2, "{rt}: {what}");
}

#[test]
fn a_reply_with_a_wrong_token_or_key_drops_the_connection() {
    on_both_runtimes(|rt| async move {
        let protocol = |e: &Error| matches!(e, Error::Protocol(_)) && e.drops_connection();
        // A token no request carried, the key right.
        out_of_step(
            rt,
            "wrong token",
            |line, _| {
                let (key, _) = key_and_opaque(line);
                Some(format!("VA 4 f16 k{key} O999999\r\nevil\r\n"))
            },
            protocol,
        )
        .await;
        // No token at all.
        out_of_step(
            rt,
            "no token",
            |_, _| Some("VA 4 f16\r\nevil\r\n".into()),
            protocol,
        )
        .await;
        // The token right, another key.
        out_of_step(
            rt,
            "wrong key",
            |line, _| {
                let (_, opaque) = key_and_opaque(line);
                let opaque = opaque.map(|o| format!(" {o}")).unwrap_or_default();
                Some(format!("VA 4 f16 kother{opaque}\r\nevil\r\n"))
            },
            protocol,
        )
        .await;
    });
}

#[test]
fn garbage_or_an_error_line_drops_the_connection() {
    on_both_runtimes(|rt| async move {
        let protocol = |e: &Error| matches!(e, Error::Protocol(_));
        out_of_step(
            rt,
            "garbage",
            |_, _| Some("HELLO there\r\n".into()),
            protocol,
        )
        .await;
        out_of_step(
            rt,
            "bad header",
            |_, _| Some("VA x f16\r\nab\r\n".into()),
            protocol,
        )
        .await;
        out_of_step(
            rt,
            "ERROR",
            |_, _| Some("ERROR\r\n".into()),
            |e| matches!(e, Error::Client(_)),
        )
        .await;

        // Garbage after two good replies of a pipeline of five: those two
        // get their values, the three in flight behind it fail, typed.
        let closed = Arc::new(AtomicBool::new(false));
        let bad = |line: &str, i: usize| (i == 2).then(|| format!("garbage {line}"));
        let (addr, accepted) = fake_server(scripted(5, bad, Arc::clone(&closed)));
        let a = Client::builder()
            .servers([addr.as_str()])
            .pool_size(1)
            .retry_attempts(100)
            .build_async()
            .unwrap();
        let mut tasks = JoinSet::new();
        for i in 0..5 {
            let a = a.clone();
            tasks.spawn(async move {
                let key = format!("p{i}");
                (key.clone(), a.get::<String>(&key).await)
            });
        }
        let (mut good, mut failed) = (0, 0);
        while let Some(joined) = tasks.join_next().await {
            match joined.unwrap() {
                (key, Ok(value)) => {
                    assert_eq!(value, Some(key));
                    good += 1;
                }
                (_, Err(e)) => {
                    assert!(matches!(e, Error::Protocol(_)), "{rt}: {e:?}");
                    failed += 1;
                }
            }
        }
        assert_eq!((good, failed), (2, 3), "{rt}");
        wait_until(
            "the client closes the connection",
            Duration::from_secs(5),
            || closed.load(Ordering::SeqCst),
        )
        .await;
        assert_eq!(
            a.get::<String>("after").await.unwrap().as_deref(),
            Some("after")
        );
        assert_eq!(accepted.load(Ordering::SeqCst), 2, "{rt}");
    });
}

#[test]
fn a_late_reply_times_out_its_call_and_is_dropped_in_step() {
    // The first request gets its reply 600 ms late: its call's deadline
    // (200 ms, well inside the 5 s I/O timeout) fails it with a timeout at
    // once, with no timer of its own; the late reply is then read and
    // dropped, and the next request on the same connection gets its own.
    let (addr, accepted) = fake_server(|_, stream| {
        let Ok(mut writer) = stream.try_clone() else {
            return;
        };
        let mut first = true;
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { return };
            if first {
                first = false;
                thread::sleep(Duration::from_millis(600));
            }
            if writer.write_all(good_reply(&line).as_bytes()).is_err() {
                return;
            }
        }
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = Client::builder()
            .servers([addr.as_str()])
            .pool_size(1)
            .io_timeout(Duration::from_secs(5))
            .request_timeout(Duration::from_millis(200))
            .retry_attempts(100)
            .build_async()
            .unwrap();
        let started = std::time::Instant::now();
        let late = client.get::<String>("late").await;
        let took = started.elapsed();
        assert!(matches!(late, Err(Error::Timeout)), "{late:?}");
        assert!(
            took >= Duration::from_millis(190) && took < Duration::from_millis(450),
            "failed after {took:?}"
        );
        // Sent once the late reply is about to come or came (its deadline
        // well after it: the server answers it right after the late one):
        // answered with its own key, on the same connection.
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(
            client.get::<String>("next").await.unwrap().as_deref(),
            Some("next")
        );
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            1,
            "one connection throughout"
        );
    });
}

#[test]
fn a_client_outlives_the_runtime_its_connections_were_opened_on() {
    // The connection's tasks die with their runtime; a request made on
    // another runtime then opens a new connection instead of waiting on
    // tasks that will never write it (nor time it out).
    let (addr, accepted) = fake_server(|_, stream| {
        let Ok(mut writer) = stream.try_clone() else {
            return;
        };
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { return };
            if writer.write_all(good_reply(&line).as_bytes()).is_err() {
                return;
            }
        }
    });
    let client = Client::builder()
        .servers([addr.as_str()])
        .pool_size(1)
        .io_timeout(Duration::from_secs(30))
        .request_timeout(Duration::from_secs(60))
        .build_async()
        .unwrap();
    let first = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let got = first.block_on(client.get::<String>("a"));
    assert_eq!(got.unwrap().as_deref(), Some("a"));
    drop(first);
    let second = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    second.block_on(async {
        let got = tokio::time::timeout(Duration::from_secs(5), client.get::<String>("b")).await;
        let got = got.expect("the request did not hang");
        assert_eq!(got.unwrap().as_deref(), Some("b"));
    });
    assert_eq!(accepted.load(Ordering::SeqCst), 2, "a new connection");
}

#[test]
fn a_connection_ended_before_its_first_reply_asks_about_tls() {
    // What a plain client sees of memcached serving TLS (`-Z`): its new
    // connection dropped at the first request. Then a connection that
    // answered once and dies under the next request: no such question.
    let (addr, accepted) = fake_server(|n, stream| {
        let Ok(mut writer) = stream.try_clone() else {
            return;
        };
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        if reader.read_line(&mut line).is_ok_and(|read| read > 0) && n % 2 == 1 {
            let _ = writer.write_all(good_reply(&line).as_bytes());
            line.clear();
            let _ = reader.read_line(&mut line);
        }
    });
    on_both_runtimes(|rt| {
        let addr = addr.clone();
        let accepted = Arc::clone(&accepted);
        async move {
            let before = accepted.load(Ordering::SeqCst);
            let client = Client::builder()
                .servers([addr])
                .pool_size(1)
                .build_async()
                .unwrap();
            let e = client.get::<String>("k").await.unwrap_err();
            match &e {
                Error::Io(io) => {
                    assert_eq!(io.kind(), std::io::ErrorKind::UnexpectedEof, "{rt}: {e}");
                }
                other => panic!("{rt}: expected an I/O error, got {other:?}"),
            }
            let message = e.to_string();
            assert!(
                message.contains("is the server expecting TLS?"),
                "{rt}: {message}"
            );
            assert!(e.is_retryable(), "{rt}");

            assert_eq!(
                client.get::<String>("k").await.unwrap().as_deref(),
                Some("k")
            );
            let e = client.incr("n", 1).await.unwrap_err(); // not sent again
            assert!(matches!(&e, Error::Io(_)), "{rt}: {e:?}");
            assert!(!e.to_string().contains("TLS"), "{rt}: {e}");
            assert_eq!(accepted.load(Ordering::SeqCst), before + 2, "{rt}");
        }
    });
}
