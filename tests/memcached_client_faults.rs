//! The blocking client when things go wrong: nothing listening, silent or
//! slow servers (I/O, request and pool timeouts), connections closed under
//! a request, malformed, garbled or error replies (each drops the
//! connection), `NS` replies, and a server at its connection limit. Most
//! run against scripted fake servers on loopback.
#![cfg(feature = "memcached")]

#[path = "common/memcached.rs"]
mod server;

#[path = "common/client_setup.rs"]
mod client_setup;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use client_setup::MINUTE;
use nearfar::memcached::{Client, Error};
use server::Memcached;

#[test]
fn nothing_listening_fails_fast() {
    let port = server::free_port();
    let c = Client::builder()
        .servers([format!("127.0.0.1:{port}")])
        .connect_timeout(Duration::from_millis(300))
        .io_timeout(Duration::from_millis(300))
        .retry_attempts(2)
        .dead_timeout(Duration::from_secs(60))
        .build()
        .expect("build does not connect");
    let started = Instant::now();
    assert!(matches!(c.get::<String>("k"), Err(Error::Connect { .. })));
    assert!(matches!(
        c.set("k", "v", MINUTE),
        Err(Error::Connect { .. })
    ));
    // Two failures: the only server is now marked dead.
    assert!(matches!(c.get::<String>("k"), Err(Error::AllServersDown)));
    assert!(c.version().is_err());
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[test]
fn silent_server_times_out() {
    // Accepts connections, reads requests, never answers.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().take(4).flatten() {
            held.push(stream);
        }
        thread::sleep(Duration::from_secs(5));
    });
    let c = Client::builder()
        .servers([addr.to_string()])
        .io_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let started = Instant::now();
    assert!(matches!(c.get::<String>("k"), Err(Error::Timeout)));
    assert!(started.elapsed() < Duration::from_secs(2));
}

/// A fake server: answers each request line with the next canned reply
/// (garbage first), counting the connections it accepts.
fn fake_server(replies: Vec<&'static [u8]>) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&accepted);
    thread::spawn(move || {
        let mut replies = replies.into_iter();
        for stream in listener.incoming().take(8) {
            let Ok(stream) = stream else { break };
            counter.fetch_add(1, Ordering::SeqCst);
            let mut writer = stream.try_clone().unwrap();
            let mut reader = BufReader::new(stream);
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
                line.clear();
                let Some(reply) = replies.next() else { return };
                if writer.write_all(reply).is_err() {
                    break;
                }
            }
        }
    });
    (addr, accepted)
}

/// What a scripted fake server does with one request line.
#[derive(Clone, Copy)]
enum Step {
    /// Answer with these bytes.
    Reply(&'static [u8]),
    /// Answer piece by piece, pausing before each piece after the first.
    Trickle(&'static [&'static [u8]], Duration),
    /// Leave the request unanswered for this long (then read on).
    Stall(Duration),
    /// Close the connection without answering.
    Close,
}

/// A fake server on 127.0.0.1. Its n-th accepted connection (of at most
/// `conns`) runs on its own thread: for the i-th request line it reads it
/// calls `answer(n, i, line, writer)`, until that returns false or the
/// client closes. Bounded: each read waits at most 10 s, and a connection
/// reads at most 10,000 lines. Returns the address and the count of
/// connections accepted.
fn line_server<F>(conns: usize, answer: F) -> (String, Arc<AtomicUsize>)
where
    F: Fn(usize, usize, &str, &mut TcpStream) -> bool + Send + Sync + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&accepted);
    let answer = Arc::new(answer);
    thread::spawn(move || {
        for n in 0..conns {
            let Ok((stream, _)) = listener.accept() else {
                return;
            };
            counter.fetch_add(1, Ordering::SeqCst);
            let answer = Arc::clone(&answer);
            thread::spawn(move || {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                let Ok(mut writer) = stream.try_clone() else {
                    return;
                };
                let mut reader = BufReader::new(stream);
                let mut line = String::new();
                for i in 0..10_000 {
                    line.clear();
                    if !reader.read_line(&mut line).is_ok_and(|n| n > 0)
                        || !answer(n, i, &line, &mut writer)
                    {
                        return;
                    }
                }
            });
        }
    });
    (addr, accepted)
}

/// A fake server whose n-th accepted connection plays `scripts[n]`, one
/// step per request line; past its script it reads on without answering
/// until the client closes. Returns its address and the count of
/// connections accepted.
fn scripted_server(scripts: Vec<Vec<Step>>) -> (String, Arc<AtomicUsize>) {
    line_server(scripts.len(), move |n, i, _, writer| {
        let Some(&step) = scripts[n].get(i) else {
            return true;
        };
        let sent = match step {
            Step::Reply(bytes) => writer.write_all(bytes),
            Step::Stall(pause) => {
                thread::sleep(pause);
                Ok(())
            }
            Step::Trickle(pieces, pause) => pieces.iter().enumerate().try_for_each(|(i, piece)| {
                if i > 0 {
                    thread::sleep(pause);
                }
                writer.write_all(piece)
            }),
            Step::Close => return false,
        };
        sent.is_ok()
    })
}

#[test]
fn connection_closed_under_a_request_is_not_a_server_failure() {
    // Each connection answers once, then closes when the next request
    // arrives: it passes the liveness check, yet dies under the request.
    // (The client numbers the meta commands on each connection from 1, and
    // each reply echoes its command's number.)
    let ok: &[u8] = b"VA 2 f16 O1\r\nok\r\n";
    let (addr, accepted) = scripted_server(vec![
        vec![Step::Reply(ok), Step::Close],
        vec![Step::Reply(b"VA 1 O1\r\n5\r\n"), Step::Close],
        vec![Step::Reply(ok)],
    ]);
    let c = Client::builder()
        .servers([addr.as_str()])
        .pool_size(1)
        .retry_attempts(1)
        .dead_timeout(MINUTE)
        .build()
        .unwrap();
    assert_eq!(c.get::<String>("k").unwrap().as_deref(), Some("ok"));
    // Not idempotent: not sent again, but not held against the server.
    assert!(matches!(c.incr("n", 1), Err(Error::Io(_))));
    assert!(!c.is_marked_dead(&addr));
    assert_eq!(c.incr("n", 1).unwrap(), Some(5));
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
    // Idempotent: sent again on a fresh connection.
    assert_eq!(c.get::<String>("k").unwrap().as_deref(), Some("ok"));
    assert_eq!(accepted.load(Ordering::SeqCst), 3);
    assert!(!c.is_marked_dead(&addr));
}

#[test]
fn timeout_mid_reply_drops_the_connection() {
    // Half a value, then a pause longer than the I/O timeout: the rest
    // arrives late, on a connection that must have been closed by then.
    let (addr, accepted) = scripted_server(vec![
        vec![Step::Trickle(
            &[b"VA 10 f16\r\nhello", b"world\r\n"],
            Duration::from_millis(600),
        )],
        vec![Step::Reply(b"VA 2 f16 O1\r\nok\r\n")],
    ]);
    let c = Client::builder()
        .servers([addr.as_str()])
        .pool_size(1)
        .io_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let started = Instant::now();
    assert!(matches!(c.get::<String>("k"), Err(Error::Timeout)));
    assert!(started.elapsed() < Duration::from_millis(550));
    // The next request gets its own answer, not the late "world".
    assert_eq!(c.get::<String>("k").unwrap().as_deref(), Some("ok"));
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

/// A reply of 60 one-byte pieces, 50 ms apart (about 3 s in all).
const SLOW_PIECES: [&[u8]; 62] = {
    let mut pieces: [&[u8]; 62] = [b"x"; 62];
    pieces[0] = b"VA 60 f16\r\n";
    pieces[61] = b"\r\n";
    pieces
};

/// A client with a 250 ms I/O timeout and a 2.5 s request timeout, to a
/// server that answers its first request with `pieces`, `pause` apart.
fn trickled_client(pieces: &'static [&'static [u8]], pause: Duration) -> Client {
    let (addr, _) = scripted_server(vec![vec![Step::Trickle(pieces, pause)]]);
    Client::builder()
        .servers([addr.as_str()])
        .io_timeout(Duration::from_millis(250))
        .request_timeout(Duration::from_millis(2500))
        .build()
        .unwrap()
}

#[test]
fn io_timeout_bounds_silence_not_a_streaming_reply() {
    // Ten bytes of a 60-byte value over 500 ms, then silence: the wait
    // restarts with each piece and ends 250 ms after the last.
    let c = trickled_client(&SLOW_PIECES[..11], Duration::from_millis(50));
    let started = Instant::now();
    assert!(matches!(c.get::<String>("k"), Err(Error::Timeout)));
    let first = started.elapsed();
    assert!(
        first >= Duration::from_millis(700) && first < Duration::from_millis(1500),
        "{first:?}"
    );
    // Every piece arrives well within the I/O timeout, so a reply longer
    // than the timeout as a whole succeeds ...
    let c = trickled_client(
        &[b"VA 5 f16 O1\r\n", b"h", b"e", b"l", b"l", b"o", b"\r\n"],
        Duration::from_millis(100),
    );
    assert_eq!(c.get::<String>("k").unwrap().as_deref(), Some("hello"));

    // ... but not one that trickles on past the request timeout.
    let c = trickled_client(&SLOW_PIECES, Duration::from_millis(50));
    let started = Instant::now();
    assert!(matches!(c.get::<String>("k"), Err(Error::Timeout)));
    // The timeout itself shows the deadline held (without it, the whole
    // reply arrives after ~3.1 s); the upper bound is loose for a stalled
    // machine.
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(2400) && elapsed < Duration::from_millis(5000),
        "{elapsed:?}"
    );
}

#[test]
fn not_stored_is_its_own_error() {
    // A set the server declines (`NS`) is neither a server fault nor
    // success; the connection stays in step.
    // Each meta reply echoes its command's number (from 1 on a connection).
    let (addr, accepted) = scripted_server(vec![vec![
        // ms header, then its data line.
        Step::Reply(b""),
        Step::Reply(b"NS O1\r\n"),
        // set_many: quiet ms header and data, then mn.
        Step::Reply(b""),
        Step::Reply(b""),
        Step::Reply(b"NS O2\r\nMN\r\n"),
        Step::Reply(b"VA 2 f16 O3\r\nok\r\n"),
    ]]);
    let c = Client::builder().servers([addr.as_str()]).build().unwrap();
    assert!(matches!(c.set("k", "v", MINUTE), Err(Error::NotStored)));
    assert!(matches!(
        c.set_many(&[("k", "v")], MINUTE),
        Err(Error::NotStored)
    ));
    assert_eq!(c.get::<String>("k").unwrap().as_deref(), Some("ok"));
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

#[test]
fn busy_pool_times_out_waiting() {
    // The only connection is held by a request the server never answers.
    let (addr, accepted) = scripted_server(vec![vec![Step::Stall(Duration::from_secs(3))]]);
    let c = Client::builder()
        .servers([addr.as_str()])
        .pool_size(1)
        .io_timeout(Duration::from_secs(2))
        .pool_timeout(Duration::from_millis(200))
        .retry_attempts(1)
        .build()
        .unwrap();
    thread::scope(|s| {
        let busy = s.spawn(|| c.get::<String>("held"));
        let deadline = Instant::now() + Duration::from_secs(5);
        while accepted.load(Ordering::SeqCst) == 0 && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
        let started = Instant::now();
        assert!(matches!(c.get::<String>("k"), Err(Error::PoolTimeout)));
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(150) && waited < Duration::from_millis(1500),
            "{waited:?}"
        );
        // Waiting for a connection says nothing against the server.
        assert!(!c.is_marked_dead(&addr));
        assert!(matches!(busy.join().unwrap(), Err(Error::Timeout)));
    });
}

#[test]
fn garbage_inside_multi_line_replies_drops_the_connection() {
    let (addr, accepted) = scripted_server(vec![
        vec![Step::Reply(
            b"VALUE a 16 2\r\nok\r\nGARBAGE here\r\nEND\r\n",
        )],
        vec![
            Step::Reply(b"VALUE a 16 2\r\nok\r\nEND\r\n"),
            Step::Reply(b"STAT pid 1\r\n\x01junk\r\nEND\r\n"),
        ],
        vec![Step::Reply(b"STAT pid 2\r\nEND\r\n")],
    ]);
    // Garbage counts against the server as no answer does (one verdict for
    // health and breaker): two garbled replies in a row would eject it,
    // one followed by a good reply does not.
    let c = Client::builder()
        .servers([addr.as_str()])
        .pool_size(1)
        .retry_attempts(2)
        .build()
        .unwrap();
    assert!(matches!(
        c.get_many::<String>(&["a", "b"]),
        Err(Error::Protocol(_))
    ));
    // A new connection, not the rest of the bad reply.
    let got: HashMap<String, String> = c.get_many(&["a", "b"]).unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got["a"], "ok");
    assert_eq!(accepted.load(Ordering::SeqCst), 2);

    assert!(matches!(c.stats(), Err(Error::Protocol(_))));
    let stats = c.stats().unwrap();
    assert_eq!(stats[0].1["pid"], "2");
    assert_eq!(accepted.load(Ordering::SeqCst), 3);
    assert!(!c.is_marked_dead(&addr));
}

#[test]
fn malformed_reply_drops_the_connection() {
    // Meta replies echo their command's number (from 1 on a connection).
    let (addr, accepted) = fake_server(vec![
        b"HELLO THERE\r\n",
        b"VA 2 f16 O1\r\nok\r\n",
        b"VA 2 f16 O2\r\nok\r\n",
    ]);
    let c = Client::builder()
        .servers([addr])
        .pool_size(1)
        .build()
        .unwrap();
    assert!(matches!(c.get::<String>("k"), Err(Error::Protocol(_))));
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
    // The desynced connection was closed: the next request opens a new one.
    assert_eq!(c.get::<String>("k").unwrap().as_deref(), Some("ok"));
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
    // A good connection is reused.
    assert_eq!(c.get::<String>("k").unwrap().as_deref(), Some("ok"));
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

#[test]
fn oversized_reply_is_a_protocol_error() {
    let (addr, _) = fake_server(vec![b"VA 999999999 f0\r\n"]);
    let c = Client::builder()
        .servers([addr])
        .max_item_size(1024)
        .build()
        .unwrap();
    assert!(matches!(c.get::<String>("k"), Err(Error::Protocol(_))));
}

/// A fake server from before the meta commands: it answers `version` and
/// gives `ERROR` for every other line, each reply `pause` after its line (so
/// the replies to one request arrive apart, as from a busy server). Returns
/// its address and the count of connections accepted.
fn server_without_meta_commands(pause: Duration) -> (String, Arc<AtomicUsize>) {
    line_server(8, move |_, _, line, writer| {
        thread::sleep(pause);
        let reply: &[u8] = if line.trim_end() == "version" {
            b"VERSION 1.4.15\r\n"
        } else {
            b"ERROR\r\n"
        };
        writer.write_all(reply).is_ok()
    })
}

#[test]
fn error_replies_close_the_connection() {
    // A meta set's command line and its data line each draw an `ERROR`
    // from a server without meta commands: after the first, the second is
    // still on its way, and must not be read as the next request's reply.
    let (addr, accepted) = server_without_meta_commands(Duration::from_millis(30));
    let c = Client::builder()
        .servers([addr.as_str()])
        .pool_size(1)
        .build()
        .unwrap();
    assert!(matches!(c.set("k", "v", MINUTE), Err(Error::Client(_))));
    assert_eq!(c.version().unwrap()[0].1, "1.4.15");
    assert_eq!(accepted.load(Ordering::SeqCst), 2);

    // A pipelined set_many (two sets and a no-op: five lines, five errors).
    assert!(matches!(
        c.set_many(&[("a", "1"), ("b", "2")], MINUTE),
        Err(Error::Client(_))
    ));
    assert_eq!(c.version().unwrap()[0].1, "1.4.15");
    assert_eq!(accepted.load(Ordering::SeqCst), 3);
    // The server answered every time: it is up.
    assert!(!c.is_marked_dead(&addr));
}

#[test]
fn client_error_inside_a_pipeline_closes_the_connection() {
    // set_many: the server refuses the data line with CLIENT_ERROR, then
    // reads the data as a command (ERROR), and still answers the no-op, late.
    let (addr, accepted) = scripted_server(vec![
        vec![
            Step::Reply(b"CLIENT_ERROR bad data chunk\r\n"),
            Step::Reply(b"ERROR\r\n"),
            Step::Trickle(&[b"", b"MN\r\n"], Duration::from_millis(50)),
        ],
        vec![Step::Reply(b"VA 2 f16 O1\r\nok\r\n")],
    ]);
    let c = Client::builder()
        .servers([addr.as_str()])
        .pool_size(1)
        .build()
        .unwrap();
    match c.set_many(&[("k", "v")], MINUTE) {
        Err(Error::Client(message)) => assert_eq!(message, "bad data chunk"),
        other => panic!("expected the CLIENT_ERROR, got {other:?}"),
    }
    // Not the late `MN`: a new connection, and the answer to this request.
    assert_eq!(c.get::<String>("k").unwrap().as_deref(), Some("ok"));
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

/// Opens raw connections to `mc` (each checked with `version`) until the
/// server turns one away with `ERROR Too many open connections`; returns
/// the ones it kept open. Bounded in count and time.
fn fill_connections(mc: &Memcached) -> Vec<std::net::TcpStream> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut held = Vec::new();
    for _ in 0..64 {
        assert!(
            Instant::now() < deadline,
            "filling connections took too long"
        );
        let mut stream = std::net::TcpStream::connect(mc.addr()).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let mut line = String::new();
        // At its limit memcached writes its refusal and closes (or resets)
        // the connection: the write or the read may fail instead.
        let answered = stream
            .write_all(b"version\r\n")
            .and_then(|()| BufReader::new(&stream).read_line(&mut line));
        if line.starts_with("VERSION") {
            held.push(stream);
        } else if line == "ERROR Too many open connections\r\n"
            || (!held.is_empty() && answered.as_ref().map_or(true, |&n| n == 0))
        {
            return held;
        } else {
            panic!("unexpected reply {line:?} ({answered:?})");
        }
    }
    panic!("memcached never reached its connection limit");
}

#[test]
fn server_at_its_connection_limit_is_a_retryable_connect_failure() {
    let mc = Memcached::start_with(&["-c", "16", "-t", "1"]);
    let held = fill_connections(&mc);
    let dead_timeout = Duration::from_millis(500);
    let c = Client::builder()
        .servers([mc.addr()])
        .pool_size(1)
        .retry_attempts(2)
        .dead_timeout(dead_timeout)
        .build()
        .unwrap();
    for attempt in 1..=2 {
        match c.get::<String>("k") {
            Err(e @ Error::Connect { .. }) => {
                assert!(e.is_retryable() && e.drops_connection(), "{e:?}");
                assert!(e.to_string().contains("Too many open connections"), "{e}");
            }
            other => panic!("attempt {attempt}: expected a refused connection, got {other:?}"),
        }
    }
    // Both refusals counted against the server.
    assert!(c.is_marked_dead(&mc.addr()));
    assert!(matches!(c.get::<String>("k"), Err(Error::AllServersDown)));

    // With room again, a probe after the dead period gets through (once
    // memcached has seen the held connections close: a few tries, bounded).
    drop(held);
    let mut answered = None;
    for _ in 0..8 {
        thread::sleep(dead_timeout + Duration::from_millis(100));
        if let Ok(v) = c.get::<String>("k") {
            answered = Some(v);
            break;
        }
    }
    assert_eq!(answered, Some(None), "the server never came back");
    assert!(!c.is_marked_dead(&mc.addr()));
}

#[test]
fn a_connection_ended_before_its_first_reply_asks_about_tls() {
    // What a plain client sees of memcached serving TLS (`-Z`): its new
    // connection dropped at the first request. Then a connection that
    // answered once and dies under the next request: no such question.
    let ok: &[u8] = b"VA 2 f16 O1\r\nok\r\n";
    let (addr, accepted) =
        scripted_server(vec![vec![Step::Close], vec![Step::Reply(ok), Step::Close]]);
    let c = Client::builder()
        .servers([addr.as_str()])
        .pool_size(1)
        .build()
        .unwrap();
    let e = c.get::<String>("k").unwrap_err();
    match &e {
        Error::Io(io) => assert_eq!(io.kind(), std::io::ErrorKind::UnexpectedEof, "{e}"),
        other => panic!("expected an I/O error, got {other:?}"),
    }
    let message = e.to_string();
    assert!(
        message.contains("is the server expecting TLS?"),
        "{message}"
    );
    assert!(
        message.contains("server closed the connection"),
        "{message}"
    );
    assert!(
        e.is_retryable(),
        "still a transient failure as far as anyone knows"
    );

    assert_eq!(c.get::<String>("k").unwrap().as_deref(), Some("ok"));
    let e = c.incr("n", 1).unwrap_err(); // not idempotent: not sent again
    assert!(matches!(&e, Error::Io(_)), "{e:?}");
    assert!(!e.to_string().contains("TLS"), "{e}");
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}
