//! The client against scripted fake servers: how long a call may take when
//! a server trickles its reply, and how replies are matched to requests.
#![cfg(feature = "memcached")]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use nearfar::memcached::{Client, Error};

const MINUTE: Duration = Duration::from_secs(60);

/// The I/O timeout of every client here.
const IO: Duration = Duration::from_millis(100);

/// What a call may overrun its deadline by on a loaded machine (the bounds
/// below are on the worst call, not speed targets).
const SLACK: Duration = Duration::from_millis(150);

/// Between two bytes of a trickled reply: under the I/O timeout, so the
/// inactivity timeout alone never fires.
const TRICKLE: Duration = Duration::from_millis(60);

/// A fake server on 127.0.0.1: each of the first `conns` connections it
/// accepts is served by `serve(n, stream)` (n counts from 0) on its own
/// thread. Returns the address and the count of connections accepted.
fn fake_server<F>(conns: usize, serve: F) -> (String, Arc<AtomicUsize>)
where
    F: Fn(usize, TcpStream) + Send + Sync + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&accepted);
    let serve = Arc::new(serve);
    thread::spawn(move || {
        for n in 0..conns {
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

/// Writes `bytes` one at a time, `TRICKLE` apart, until they run out or
/// the client closes the connection (at most 100 bytes: about 6 s).
fn trickle(stream: &mut TcpStream, bytes: &[u8]) -> bool {
    for (i, byte) in bytes.iter().take(100).enumerate() {
        if i > 0 {
            thread::sleep(TRICKLE);
        }
        if stream.write_all(std::slice::from_ref(byte)).is_err() {
            return false;
        }
    }
    true
}

/// Reads until the bytes received end with `end` (a request's last line);
/// false when the client closed or went quiet for 10 s.
fn read_until_end(stream: &mut TcpStream, end: &[u8]) -> bool {
    let mut got = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    while !got.ends_with(end) {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return false,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
        if got.len() > 64 << 20 {
            return false;
        }
    }
    true
}

/// A server that reads a request, then trickles a reply line that never
/// ends, a byte every `TRICKLE`, until the client gives up.
fn trickling_server() -> (String, Arc<AtomicUsize>) {
    fake_server(16, |_, mut stream| {
        let mut buf = [0u8; 4096];
        if matches!(stream.read(&mut buf), Ok(n) if n > 0) {
            trickle(&mut stream, &[b'x'; 100]);
        }
    })
}

fn client_for(servers: &[&str]) -> Client {
    Client::builder()
        .servers(servers)
        .io_timeout(IO)
        .connect_timeout(IO)
        // Kept out of the way: every call reaches its server.
        .retry_attempts(1_000)
        .build()
        .unwrap()
}

/// Runs `call`, checks it failed with `Error::Timeout` within `bound`, and
/// returns how long it took.
fn times_out<T: std::fmt::Debug>(
    what: &str,
    bound: Duration,
    call: impl FnOnce() -> Result<T, Error>,
) -> Duration {
    let started = Instant::now();
    let result = call();
    let took = started.elapsed();
    assert!(
        matches!(result, Err(Error::Timeout)),
        "{what}: expected a timeout, got {result:?}"
    );
    assert!(took <= bound, "{what} took {took:?}, over {bound:?}");
    took
}

/// The default request timeout: twice the I/O timeout.
const DEFAULT_REQUEST: Duration = Duration::from_millis(2 * 100);

#[test]
fn a_trickling_server_cannot_hold_a_single_key_call() {
    let (addr, _) = trickling_server();
    let c = client_for(&[&addr]);
    let bound = DEFAULT_REQUEST + SLACK;
    let mut worst = Duration::ZERO;
    worst = worst.max(times_out("get", bound, || c.get::<String>("k")));
    worst = worst.max(times_out("set", bound, || c.set("k", "v", MINUTE)));
    worst = worst.max(times_out("delete", bound, || c.delete("k")));
    worst = worst.max(times_out("incr", bound, || c.incr("n", 1)));
    worst = worst.max(times_out("touch", bound, || c.touch("k", MINUTE)));
    eprintln!("worst single-key call against a trickling server: {worst:?}");

    // A request timeout set on its own: the call lasts until it, not until
    // an I/O timeout (never reached while bytes keep coming) nor past it.
    let request = Duration::from_millis(300);
    let c = Client::builder()
        .servers([addr.as_str()])
        .io_timeout(IO)
        .request_timeout(request)
        .retry_attempts(1_000)
        .build()
        .unwrap();
    let took = times_out("get", request + SLACK, || c.get::<String>("k"));
    assert!(took >= request - Duration::from_millis(20), "{took:?}");
}

/// Keys of which at least one goes to each of `servers`.
fn keys_on_every_server(c: &Client, servers: &[&str]) -> Vec<String> {
    let keys: Vec<String> = (0..64).map(|i| format!("key-{i}")).collect();
    for server in servers {
        assert!(
            keys.iter().any(|k| c.server_for(k).unwrap() == *server),
            "no key went to {server}"
        );
    }
    keys
}

#[test]
fn get_many_over_two_trickling_servers_shares_one_deadline() {
    let (first, _) = trickling_server();
    let (second, _) = trickling_server();
    let c = client_for(&[&first, &second]);
    let keys = keys_on_every_server(&c, &[&first, &second]);
    let took = times_out("get_many", DEFAULT_REQUEST + SLACK, || {
        c.get_many::<String>(&keys)
    });
    eprintln!("get_many over two trickling servers: {took:?}");
}

/// A server that answers every `set_many` round trip (ended by `mn`), but
/// slowly: its `MN` comes a byte at a time, about 180 ms in all, just under
/// the default request timeout.
fn slow_batch_server() -> (String, Arc<AtomicUsize>) {
    fake_server(16, |_, mut stream| {
        for _ in 0..100 {
            if !read_until_end(&mut stream, b"mn\r\n") || !trickle(&mut stream, b"MN\r\n") {
                return;
            }
        }
    })
}

#[test]
fn set_many_round_trips_share_one_deadline() {
    // 300 items: three round trips of at most 128, each about 180 ms. One
    // fits the deadline; three do not.
    let (addr, _) = slow_batch_server();
    let c = client_for(&[&addr]);
    let values: Vec<String> = (0..300).map(|i| format!("v{i}")).collect();
    let items: Vec<(String, &String)> = values
        .iter()
        .enumerate()
        .map(|(i, v)| (format!("k{i}"), v))
        .collect();
    let took = times_out("set_many", DEFAULT_REQUEST + SLACK, || {
        c.set_many(&items, MINUTE)
    });
    eprintln!("set_many of three slow round trips: {took:?}");
}

#[test]
fn set_many_to_a_trickling_server_times_out() {
    let (addr, _) = trickling_server();
    let c = client_for(&[&addr]);
    let took = times_out("set_many", DEFAULT_REQUEST + SLACK, || {
        c.set_many(&[("a", "1"), ("b", "2")], MINUTE)
    });
    eprintln!("set_many to a trickling server: {took:?}");
}

// ---- replies matched to requests ------------------------------------------

/// The key and the `O` token (with its letter) of a meta request line.
fn key_and_opaque(line: &str) -> (String, Option<String>) {
    let mut fields = line.split_whitespace().skip(1);
    let key = fields.next().unwrap_or_default().to_owned();
    let opaque = fields.find(|f| f.starts_with('O')).map(str::to_owned);
    (key, opaque)
}

/// The echo a memcached 1.6 server puts on a meta reply: ` k<key>` when
/// the request asked for the key (`k`), and the request's ` O<token>`.
fn echo(line: &str) -> String {
    let (key, opaque) = key_and_opaque(line);
    let mut out = String::new();
    if line.split_whitespace().skip(2).any(|f| f == "k") {
        out.push_str(&format!(" k{key}"));
    }
    if let Some(opaque) = opaque {
        out.push(' ');
        out.push_str(&opaque);
    }
    out
}

/// A server that answers every `mg` with the value `good` (a string), as
/// memcached would; before answering the `n`-th request of its first
/// connection it first sends `unsolicited`: to the client that is a reply
/// arriving after the answer to request `n - 1` and before its own.
fn server_with_unsolicited_reply(
    n: usize,
    unsolicited: &'static [u8],
) -> (String, Arc<AtomicUsize>) {
    fake_server(8, move |conn, stream| {
        let Ok(mut writer) = stream.try_clone() else {
            return;
        };
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        for i in 0..1_000 {
            line.clear();
            if !reader.read_line(&mut line).is_ok_and(|read| read > 0) {
                return;
            }
            if conn == 0 && i == n && writer.write_all(unsolicited).is_err() {
                return;
            }
            let reply = format!("VA 4 f16{}\r\ngood\r\n", echo(&line));
            if writer.write_all(reply.as_bytes()).is_err() {
                return;
            }
        }
    })
}

#[test]
fn an_unsolicited_reply_is_never_taken_as_the_answer() {
    // Replies a request did not ask for, all well-formed: a late copy of
    // the first answer (its key, no token or the first request's token), a
    // value for the very key of the next request with a token no request
    // carried, and one with no echo at all.
    let unsolicited: [&[u8]; 5] = [
        b"VA 4 f16 ka0\r\nevil\r\n",
        b"VA 4 f16 ka0 O1\r\nevil\r\n",
        b"VA 4 f16 ka1 O999\r\nevil\r\n",
        b"VA 4 f16 O999\r\nevil\r\n",
        b"VA 4 f16\r\nevil\r\n",
    ];
    for bogus in unsolicited {
        let what = String::from_utf8_lossy(bogus);
        let (addr, accepted) = server_with_unsolicited_reply(1, bogus);
        let c = Client::builder()
            .servers([addr.as_str()])
            .pool_size(1)
            .build()
            .unwrap();
        assert_eq!(c.get::<String>("a0").unwrap().as_deref(), Some("good"));
        // Back to back: the pooled connection is reused at once.
        match c.get::<String>("a1") {
            Err(e) => {
                assert!(matches!(e, Error::Protocol(_)), "{what:?}: {e:?}");
                assert!(e.drops_connection());
            }
            Ok(value) => panic!("{what:?}: took {value:?} as the answer"),
        }
        // The connection out of step was dropped: a new one answers.
        assert_eq!(c.get::<String>("a2").unwrap().as_deref(), Some("good"));
        assert_eq!(accepted.load(Ordering::SeqCst), 2, "{what:?}");
    }
}

#[test]
fn an_unsolicited_reply_right_after_an_answer_is_never_taken() {
    // The server sends the extra reply right after its answer, and the
    // client asks again at once (within the 1 ms in which a pooled
    // connection is reused unchecked). Whether the extra reply is already
    // there when the connection is checked out is a race: either way it
    // must never be returned as a value.
    let (addr, _) = fake_server(64, |_, stream| {
        let Ok(mut writer) = stream.try_clone() else {
            return;
        };
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        for _ in 0..1_000 {
            line.clear();
            if !reader.read_line(&mut line).is_ok_and(|read| read > 0) {
                return;
            }
            let reply = format!("VA 4 f16{}\r\ngood\r\n", echo(&line));
            if writer.write_all(reply.as_bytes()).is_err() {
                return;
            }
            let _ = writer.flush();
            if writer.write_all(b"VA 4 f16 O7777\r\nevil\r\n").is_err() {
                return;
            }
        }
    });
    let c = Client::builder()
        .servers([addr.as_str()])
        .pool_size(1)
        .retry_attempts(1_000)
        .build()
        .unwrap();
    let mut answered = 0;
    for i in 0..200 {
        match c.get::<String>(&format!("k{i}")) {
            Ok(value) => {
                assert_eq!(value.as_deref(), Some("good"), "request {i}");
                answered += 1;
            }
            Err(e) => assert!(e.drops_connection(), "request {i}: {e:?}"),
        }
    }
    assert!(answered > 0);
}

#[test]
fn a_reply_for_another_key_drops_the_connection() {
    // The token matches but the echoed key is not the one asked for.
    let (addr, accepted) = fake_server(8, |conn, stream| {
        let Ok(mut writer) = stream.try_clone() else {
            return;
        };
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        for _ in 0..1_000 {
            line.clear();
            if !reader.read_line(&mut line).is_ok_and(|read| read > 0) {
                return;
            }
            let reply = if conn == 0 {
                let (_, opaque) = key_and_opaque(&line);
                let opaque = opaque.map(|o| format!(" {o}")).unwrap_or_default();
                format!("VA 4 f16 kother{opaque}\r\nevil\r\n")
            } else {
                format!("VA 4 f16{}\r\ngood\r\n", echo(&line))
            };
            if writer.write_all(reply.as_bytes()).is_err() {
                return;
            }
        }
    });
    let c = Client::builder()
        .servers([addr.as_str()])
        .pool_size(1)
        .build()
        .unwrap();
    let result = c.get::<String>("mine");
    assert!(matches!(result, Err(Error::Protocol(_))), "{result:?}");
    assert_eq!(c.get::<String>("mine").unwrap().as_deref(), Some("good"));
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

#[test]
fn a_pipeline_reply_with_a_foreign_token_drops_the_connection() {
    // set_many's quiet sets answer only on failure, each with its own
    // token: a failure carrying a token no set carried is out of step.
    let (addr, accepted) = fake_server(8, |conn, mut stream| {
        if conn == 0 {
            if read_until_end(&mut stream, b"mn\r\n") {
                let _ = stream.write_all(b"NS O999\r\nMN\r\n");
            }
            // Then read on until the client closes.
            let _ = read_until_end(&mut stream, b"never");
        } else {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            for _ in 0..1_000 {
                line.clear();
                if !reader.read_line(&mut line).is_ok_and(|read| read > 0) {
                    return;
                }
                // The set_many that failed leaves its keys owed: they are
                // deleted (`md`) before the next request.
                let reply = if line.starts_with("md ") {
                    format!("HD{}\r\n", echo(&line))
                } else {
                    format!("VA 4 f16{}\r\ngood\r\n", echo(&line))
                };
                if stream.write_all(reply.as_bytes()).is_err() {
                    return;
                }
            }
        }
    });
    let c = Client::builder()
        .servers([addr.as_str()])
        .pool_size(1)
        .build()
        .unwrap();
    let result = c.set_many(&[("a", "1"), ("b", "2")], MINUTE);
    assert!(matches!(result, Err(Error::Protocol(_))), "{result:?}");
    assert_eq!(c.get::<String>("a").unwrap().as_deref(), Some("good"));
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

#[test]
fn waiting_for_a_pooled_connection_ends_at_the_deadline() {
    // The only connection is held by a call to a trickling server; a
    // second call waits for it (the pool timeout alone would let it wait a
    // minute), then, if it gets it in time, meets the same server.
    let (addr, accepted) = trickling_server();
    let request = Duration::from_millis(400);
    let c = Client::builder()
        .servers([addr.as_str()])
        .pool_size(1)
        .io_timeout(IO)
        .request_timeout(request)
        .pool_timeout(MINUTE)
        .retry_attempts(1_000)
        .build()
        .unwrap();
    thread::scope(|s| {
        let busy = s.spawn(|| c.get::<String>("held"));
        let until = Instant::now() + Duration::from_secs(5);
        while accepted.load(Ordering::SeqCst) == 0 && Instant::now() < until {
            thread::sleep(Duration::from_millis(5));
        }
        let started = Instant::now();
        let result = c.get::<String>("k");
        let took = started.elapsed();
        // Timed out waiting for the connection, or on the trickling
        // server; or (the busy call let go of the connection just before
        // the deadline) while connecting anew, with what was left of it.
        assert!(
            matches!(&result, Err(Error::PoolTimeout | Error::Timeout))
                || matches!(
                    &result,
                    Err(Error::Connect { source, .. }) if source.kind() == std::io::ErrorKind::TimedOut
                ),
            "{result:?}"
        );
        assert!(took <= request + SLACK, "waited {took:?}");
        assert!(matches!(busy.join().unwrap(), Err(Error::Timeout)));
    });
}
