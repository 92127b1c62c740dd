//! The client against one real memcached, and against fake servers.
#![cfg(feature = "memcached")]

#[path = "common/memcached.rs"]
mod server;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nearfar::codec::{FLAG_BINCODE, FLAG_BYTES, FLAG_TEXT};
use nearfar::memcached::KeyError;
use nearfar::memcached::{Cas, Client, Error, Lease};
use serde::{Deserialize, Serialize};
use server::Memcached;

const MINUTE: Duration = Duration::from_secs(60);

fn client(server: &Memcached) -> Client {
    Client::builder()
        .servers([server.addr()])
        .io_timeout(Duration::from_secs(2))
        .build()
        .expect("client")
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct User {
    id: u32,
    name: String,
    tags: Vec<String>,
}

#[test]
fn every_operation_against_one_server() {
    let mc = Memcached::start();
    let c = client(&mc);

    // get / set of several types.
    assert_eq!(c.get::<String>("missing").unwrap(), None);
    c.set("s", "hello", MINUTE).unwrap();
    assert_eq!(c.get::<String>("s").unwrap().as_deref(), Some("hello"));
    c.set("n", &-42i64, Duration::ZERO).unwrap();
    assert_eq!(c.get::<i64>("n").unwrap(), Some(-42));
    let user = User {
        id: 7,
        name: "Ada".into(),
        tags: vec!["admin".into()],
    };
    c.set("user", &user, MINUTE).unwrap();
    assert_eq!(c.get::<User>("user").unwrap(), Some(user));

    // add / replace.
    assert!(c.add("a", "first", MINUTE).unwrap());
    assert!(!c.add("a", "second", MINUTE).unwrap());
    assert_eq!(c.get::<String>("a").unwrap().as_deref(), Some("first"));
    assert!(c.replace("a", "third", MINUTE).unwrap());
    assert!(!c.replace("nope", "x", MINUTE).unwrap());
    assert_eq!(c.get::<String>("a").unwrap().as_deref(), Some("third"));

    // delete / touch.
    assert!(c.delete("a").unwrap());
    assert!(!c.delete("a").unwrap());
    assert_eq!(c.get::<String>("a").unwrap(), None);
    assert!(c.touch("s", Duration::from_secs(100)).unwrap());
    assert!(!c.touch("a", MINUTE).unwrap());
    let item = c.meta_get::<String>("s").unwrap().unwrap();
    assert!(item.ttl.unwrap() <= Duration::from_secs(100));
    assert!(item.ttl.unwrap() >= Duration::from_secs(95));

    // incr / decr.
    c.set("count", &10u64, Duration::ZERO).unwrap();
    assert_eq!(c.incr("count", 5).unwrap(), Some(15));
    assert_eq!(c.decr("count", 20).unwrap(), Some(0));
    assert_eq!(c.incr("no-count", 1).unwrap(), None);
    assert!(matches!(c.incr("s", 1), Err(Error::Client(_))));

    // gets / cas, and cas_only.
    let (value, cas) = c.gets::<u64>("count").unwrap().unwrap();
    assert_eq!(value, 0);
    assert_eq!(c.cas_only("count").unwrap(), Some(cas));
    assert_eq!(c.cas_only("missing").unwrap(), None);
    assert!(c.cas("count", &1u64, Duration::ZERO, cas).unwrap());
    assert_ne!(c.cas_only("count").unwrap(), Some(cas));
    assert!(!c.cas("missing", &1u64, Duration::ZERO, Cas(1)).unwrap());

    // meta_get: no expiry reads as None.
    let item = c.meta_get::<u64>("count").unwrap().unwrap();
    assert_eq!((item.value, item.ttl), (1, None));

    // raw.
    c.set_raw("raw", b"\x00\x01bytes", 12345, MINUTE).unwrap();
    assert_eq!(
        c.get_raw("raw").unwrap(),
        Some((b"\x00\x01bytes".to_vec(), 12345))
    );
    assert_eq!(c.get_raw("missing").unwrap(), None);

    // batches on one server.
    let values: Vec<String> = (0..300).map(|i| format!("value-{i}")).collect();
    let items: Vec<(String, &String)> = values
        .iter()
        .enumerate()
        .map(|(i, v)| (format!("many:{i}"), v))
        .collect();
    c.set_many(&items, MINUTE).unwrap();
    let mut keys: Vec<String> = items.iter().map(|(k, _)| k.clone()).collect();
    keys.push("many:missing".into());
    let got: HashMap<String, String> = c.get_many(&keys).unwrap();
    assert_eq!(got.len(), 300);
    for (key, value) in &items {
        assert_eq!(got.get(key), Some(*value));
    }
    assert!(c.get_many::<String>(&[] as &[&str]).unwrap().is_empty());
    let raw = c.get_many_raw(&["many:1", "raw", "nope"]).unwrap();
    assert_eq!(raw.len(), 2);
    assert_eq!(raw["raw"], (b"\x00\x01bytes".to_vec(), 12345));
    assert_eq!(raw["many:1"], (b"value-1".to_vec(), FLAG_TEXT));

    // whole-server operations.
    let versions = c.version().unwrap();
    assert_eq!(versions.len(), 1);
    assert_eq!(versions[0].0, mc.addr());
    assert!(versions[0].1.starts_with("1."), "{versions:?}");
    let stats = c.stats().unwrap();
    assert!(stats[0].1.contains_key("curr_items"));
    c.flush_all().unwrap();
    assert_eq!(c.get::<String>("s").unwrap(), None);
}

#[test]
fn long_ttl_is_sent_as_absolute_time() {
    let mc = Memcached::start();
    let c = client(&mc);
    let ttl = Duration::from_secs(31 * 24 * 3600);
    c.set("long", "lives", ttl).unwrap();
    // Sent as a relative 31 days the server would read it as a 1970 date
    // and drop the item at once.
    let item = c.meta_get::<String>("long").unwrap().expect("stored");
    let left = item.ttl.expect("has a ttl");
    // memcached's clock ticks once a second and may lag ours by up to one
    // tick, so the remaining time can read one second over the TTL.
    assert!(
        left > ttl - Duration::from_secs(10) && left <= ttl + Duration::from_secs(1),
        "{left:?}"
    );
    assert!(c.touch("long", ttl).unwrap());
    assert!(c.get::<String>("long").unwrap().is_some());
}

#[test]
fn very_long_ttls_are_not_dead_on_arrival() {
    // memcached reads exptime as a signed 32-bit number: anything past
    // i32::MAX would wrap negative and store an already-expired item.
    let mc = Memcached::start();
    let c = client(&mc);
    let century = Duration::from_secs(100 * 365 * 24 * 3600);
    c.set("century", "lives", century).unwrap();
    assert_eq!(
        c.get::<String>("century").unwrap().as_deref(),
        Some("lives")
    );
    c.set("forever-ish", "lives too", Duration::MAX).unwrap();
    assert_eq!(
        c.get::<String>("forever-ish").unwrap().as_deref(),
        Some("lives too")
    );
    let item = c
        .meta_get::<String>("forever-ish")
        .unwrap()
        .expect("stored");
    assert!(item.ttl.expect("has a ttl") > Duration::from_secs(86_400));
    assert!(c.touch("century", Duration::MAX).unwrap());
    assert!(c.get::<String>("century").unwrap().is_some());
    assert!(c.add("added", "x", century).unwrap());
    assert!(c.get::<String>("added").unwrap().is_some());
}

#[test]
fn cas_conflict() {
    let mc = Memcached::start();
    let c = client(&mc);
    let other = client(&mc);
    c.set("doc", "v1", MINUTE).unwrap();
    let (_, cas) = c.gets::<String>("doc").unwrap().unwrap();
    let (_, cas2) = other.gets::<String>("doc").unwrap().unwrap();
    assert_eq!(cas, cas2);
    assert!(other.cas("doc", "v2-other", MINUTE, cas2).unwrap());
    assert!(!c.cas("doc", "v2-mine", MINUTE, cas).unwrap());
    assert_eq!(c.get::<String>("doc").unwrap().as_deref(), Some("v2-other"));
}

#[test]
fn key_injection_is_refused_and_nothing_flushed() {
    let mc = Memcached::start();
    let c = client(&mc);
    c.set("keep", "me", MINUTE).unwrap();
    for bad in ["k\r\nflush_all", "k flush_all", "k\nflush_all", "k\u{7f}"] {
        assert!(
            matches!(
                c.set(bad, "x", MINUTE),
                Err(Error::InvalidKey {
                    reason: KeyError::ForbiddenByte { .. }
                })
            ),
            "{bad:?}"
        );
        assert!(matches!(
            c.get::<String>(bad),
            Err(Error::InvalidKey { .. })
        ));
        assert!(matches!(
            c.get_many::<String>(&["fine", bad]),
            Err(Error::InvalidKey { .. })
        ));
    }
    assert!(matches!(
        c.get::<String>(""),
        Err(Error::InvalidKey {
            reason: KeyError::Empty
        })
    ));
    assert!(matches!(
        c.get::<String>(&"x".repeat(251)),
        Err(Error::InvalidKey {
            reason: KeyError::TooLong { len: 251 }
        })
    ));
    assert_eq!(c.get::<String>("keep").unwrap().as_deref(), Some("me"));
}

#[test]
fn key_prefix_is_applied() {
    let mc = Memcached::start();
    let plain = client(&mc);
    let prefixed = Client::builder()
        .servers([mc.addr()])
        .key_prefix("app:")
        .build()
        .unwrap();
    prefixed.set("k", "v", MINUTE).unwrap();
    assert_eq!(plain.get::<String>("app:k").unwrap().as_deref(), Some("v"));
    assert_eq!(plain.get::<String>("k").unwrap(), None);
    let got: HashMap<String, String> = prefixed.get_many(&["k"]).unwrap();
    assert_eq!(got.get("k").map(String::as_str), Some("v"));
}

#[test]
fn with_the_default_limit_the_client_refuses_what_memcached_would() {
    // memcached's default item limit (`-I 1m`) covers the value, the key
    // and 63 bytes of item overhead: the client refuses a value of 1 MiB
    // itself, and the largest value it lets through is stored.
    let mc = Memcached::start();
    let c = client(&mc);
    let mib = "x".repeat(1024 * 1024);
    assert!(matches!(
        c.set("whole", &mib, MINUTE),
        Err(Error::ValueTooLarge {
            size: 1_048_576,
            max: 1_048_508
        })
    ));
    let key = "k".repeat(250);
    for key in ["k", key.as_str()] {
        // A `String` is stored with non-zero client flags (text), which
        // take memcached's item 4 bytes more than flags 0.
        let largest = "x".repeat(1024 * 1024 - 63 - key.len());
        c.set(key, &largest, MINUTE).unwrap();
        assert_eq!(
            c.get::<String>(key).unwrap().map(|v| v.len()),
            Some(largest.len())
        );
        let over = "x".repeat(largest.len() + 1);
        assert!(matches!(
            c.set(key, &over, MINUTE),
            Err(Error::ValueTooLarge { .. })
        ));
    }
}

#[test]
fn oversized_values_are_refused_before_sending() {
    let mc = Memcached::start();
    let c = Client::builder()
        .servers([mc.addr()])
        .max_item_size(1000)
        .build()
        .unwrap();
    let big = vec![7u8; 1001];
    // The limit is the server's item size: the key and memcached's 63
    // bytes of item overhead count against it.
    assert!(matches!(
        c.set("big", &big, MINUTE),
        Err(Error::ValueTooLarge {
            size: 1001,
            max: 934
        })
    ));
    assert!(matches!(
        c.set_many(&[("ok", &vec![1u8]), ("big", &big)], MINUTE),
        Err(Error::ValueTooLarge { .. })
    ));
    // Nothing of the refused batch was sent.
    assert_eq!(c.get_raw("ok").unwrap(), None);
    assert_eq!(c.get_raw("big").unwrap(), None);
    c.set("fits", &vec![1u8; 933], MINUTE).unwrap();
    assert!(matches!(
        c.set("fits", &vec![1u8; 934], MINUTE),
        Err(Error::ValueTooLarge {
            size: 934,
            max: 933
        })
    ));

    // A client told of a larger limit than the server's: the value the
    // server refuses by its own limit comes back as a server error, and
    // the connection stays usable.
    let d = Client::builder()
        .servers([mc.addr()])
        .max_item_size(2 * 1024 * 1024)
        .build()
        .unwrap();
    let almost = vec![1u8; 1024 * 1024 - 10];
    assert!(matches!(
        d.set("huge", &almost, MINUTE),
        Err(Error::Server(_))
    ));
    assert_eq!(d.get::<Vec<u8>>("fits").unwrap(), Some(vec![1u8; 933]));
}

#[test]
fn large_values_round_trip() {
    let mc = Memcached::start();
    let c = client(&mc);
    let value: Vec<u8> = (0..900_000u32).map(|i| (i % 251) as u8).collect();
    c.set("large", &value, MINUTE).unwrap();
    assert_eq!(c.get::<Vec<u8>>("large").unwrap(), Some(value.clone()));
    let got: HashMap<String, Vec<u8>> = c.get_many(&["large", "large"]).unwrap();
    assert_eq!(got.get("large"), Some(&value));
}

#[test]
fn set_many_splits_large_batches() {
    let mc = Memcached::start();
    let c = client(&mc);
    // 24 values of 200 KB (about 4.8 MB) and 300 small ones: several
    // round trips by size and by count, all stored.
    let large: Vec<Vec<u8>> = (0..24u8).map(|i| vec![i; 200_000]).collect();
    let items: Vec<(String, &Vec<u8>)> = large
        .iter()
        .enumerate()
        .map(|(i, v)| (format!("large:{i}"), v))
        .collect();
    c.set_many(&items, MINUTE).unwrap();
    for (key, value) in &items {
        assert_eq!(c.get::<Vec<u8>>(key).unwrap().as_ref(), Some(*value));
    }
    let small: Vec<u32> = (0..300).collect();
    let items: Vec<(String, &u32)> = small.iter().map(|i| (format!("small:{i}"), i)).collect();
    c.set_many(&items, MINUTE).unwrap();
    let keys: Vec<&str> = items.iter().map(|(k, _)| k.as_str()).collect();
    let got: HashMap<String, u32> = c.get_many(&keys).unwrap();
    assert_eq!(got.len(), 300);
    assert!(items.iter().all(|(k, v)| got.get(k) == Some(*v)));
}

/// Stores bytes under `key` that do not decode as a `User` (another
/// client's, or an older layout), and checks that they do not.
fn store_undecodable(c: &Client, key: &str) {
    c.set_raw(key, b"\xff\xff\xff\xff\xff", FLAG_BINCODE, MINUTE)
        .unwrap();
    assert!(matches!(c.get::<User>(key), Err(Error::Codec(_))));
}

#[test]
fn undecodable_values_are_codec_errors() {
    let mc = Memcached::start();
    let c = client(&mc);
    store_undecodable(&c, "garbage");
    c.set_raw("text", b"not a number", FLAG_TEXT, MINUTE)
        .unwrap();
    assert!(matches!(c.get::<u64>("text"), Err(Error::Codec(_))));
    c.set_raw("weird", b"x", 1 << 20, MINUTE).unwrap();
    assert!(matches!(c.get::<String>("weird"), Err(Error::Codec(_))));
    // A batch with one bad value fails as a whole, and the connection is
    // still in step afterwards.
    c.set_raw("fine", b"ok", FLAG_TEXT, MINUTE).unwrap();
    assert!(matches!(
        c.get_many::<String>(&["fine", "weird", "fine"]),
        Err(Error::Codec(_))
    ));
    assert_eq!(c.get::<String>("fine").unwrap().as_deref(), Some("ok"));
    c.set_raw("bytes", b"\x01\x02", FLAG_BYTES, MINUTE).unwrap();
    assert_eq!(c.get::<Vec<u8>>("bytes").unwrap(), Some(vec![1, 2]));
}

#[test]
fn lease_flow_between_two_clients() {
    let mc = Memcached::start();
    let first = client(&mc);
    let second = client(&mc);
    let lease = Duration::from_secs(30);

    assert_eq!(
        first.get_or_lease::<String>("report", lease).unwrap(),
        Lease::Won {
            previous: None,
            cas: match first.cas_only("report").unwrap() {
                Some(cas) => cas,
                None => panic!("no placeholder"),
            }
        }
    );
    assert_eq!(
        second.get_or_lease::<String>("report", lease).unwrap(),
        Lease::Wait
    );
    first.set("report", "computed", MINUTE).unwrap();
    for c in [&first, &second] {
        match c.get_or_lease::<String>("report", lease).unwrap() {
            Lease::Hit { value, stale, .. } => {
                assert_eq!(value, "computed");
                assert!(!stale);
            }
            other => panic!("expected a hit, got {other:?}"),
        }
    }

    // Invalidate: the value stays, marked stale; one reader wins.
    assert!(first.invalidate("report", MINUTE).unwrap());
    assert!(!first.invalidate("nothing-here", MINUTE).unwrap());
    match second.get_or_lease::<String>("report", lease).unwrap() {
        Lease::Won { previous, .. } => assert_eq!(previous.as_deref(), Some("computed")),
        other => panic!("expected to win, got {other:?}"),
    }
    match first.get_or_lease::<String>("report", lease).unwrap() {
        Lease::Hit { value, stale, .. } => {
            assert_eq!(value, "computed");
            assert!(stale);
        }
        other => panic!("expected a stale hit, got {other:?}"),
    }
    second.set("report", "recomputed", MINUTE).unwrap();
    assert!(matches!(
        first.get_or_lease::<String>("report", lease).unwrap(),
        Lease::Hit { value, stale: false, .. } if value == "recomputed"
    ));

    // Early recache: under the threshold one caller wins with the value.
    first.set("soon", "old", Duration::from_secs(5)).unwrap();
    match first
        .get_or_lease_with_recache::<String>("soon", lease, Duration::from_secs(30))
        .unwrap()
    {
        Lease::Won { previous, .. } => assert_eq!(previous.as_deref(), Some("old")),
        other => panic!("expected an early win, got {other:?}"),
    }
    assert!(matches!(
        second
            .get_or_lease_with_recache::<String>("soon", lease, Duration::from_secs(30))
            .unwrap(),
        Lease::Hit { value, .. } if value == "old"
    ));
}

#[test]
fn an_invalidated_placeholder_is_never_a_value() {
    let mc = Memcached::start();
    let (first, second) = (client(&mc), client(&mc));
    let lease = Duration::from_secs(30);
    assert!(matches!(
        first.get_or_lease::<String>("k", lease).unwrap(),
        Lease::Won { previous: None, .. }
    ));
    // Removed with stale-while-revalidate while the lease is held.
    assert!(second.invalidate("k", MINUTE).unwrap());
    // One reader takes the new recompute token, with nothing to serve...
    assert!(matches!(
        second.peek_lease::<String>("k").unwrap(),
        Some(Lease::Won { previous: None, .. })
    ));
    // ...and the others wait: the empty placeholder is not an empty value.
    for c in [&first, &second] {
        assert_eq!(c.peek_lease::<String>("k").unwrap(), Some(Lease::Wait));
        assert_eq!(c.get_or_lease::<String>("k", lease).unwrap(), Lease::Wait);
        assert_eq!(c.peek_lease_cas("k").unwrap(), Some(Lease::Wait));
    }

    // delete_if_cas removes only the item it was read from.
    let now = first.cas_only("k").unwrap().expect("the placeholder");
    assert!(!first.delete_if_cas("k", Cas(now.0 + 1)).unwrap());
    assert!(first.delete_if_cas("k", now).unwrap());
    assert!(!first.delete_if_cas("k", now).unwrap());
}

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
fn sub_second_ttl_expires() {
    // 500 ms is rounded up to 1 s, never down to 0 ("never expires").
    let mc = Memcached::start();
    let c = client(&mc);
    c.set("brief", "v", Duration::from_millis(500)).unwrap();
    // memcached's clock ticks once a second, so the item may already be
    // gone; if not, it must carry an expiry.
    if let Some(item) = c.meta_get::<String>("brief").unwrap() {
        let ttl = item.ttl.expect("a sub-second TTL must not mean never");
        assert!(ttl <= Duration::from_secs(1), "{ttl:?}");
    }
    thread::sleep(Duration::from_millis(1600));
    assert_eq!(c.get::<String>("brief").unwrap(), None);
}

/// `curr_connections` of the server, read over `probe`'s own connection.
fn connections(probe: &Client) -> u64 {
    probe.stats().unwrap()[0].1["curr_connections"]
        .parse()
        .unwrap()
}

#[test]
fn pooled_connections_survive_a_server_restart() {
    let mut mc = Memcached::start();
    let probe = Client::builder()
        .servers([mc.addr()])
        .pool_size(1)
        .build()
        .unwrap();
    let baseline = connections(&probe);
    let c = Client::builder()
        .servers([mc.addr()])
        .pool_size(4)
        .io_timeout(Duration::from_secs(2))
        // One counted failure would mark the only server dead.
        .retry_attempts(1)
        .dead_timeout(MINUTE)
        .build()
        .unwrap();
    // Warm all four connections: four threads at once, a bounded number
    // of rounds, until the server sees four more connections.
    for _ in 0..20 {
        let start = std::sync::Barrier::new(4);
        thread::scope(|s| {
            for t in 0..4 {
                let (c, start) = (&c, &start);
                s.spawn(move || {
                    start.wait();
                    for i in 0..50 {
                        c.set(&format!("warm{t}:{i}"), &i, MINUTE).unwrap();
                    }
                });
            }
        });
        if connections(&probe).saturating_sub(baseline) >= 4 {
            break;
        }
    }
    assert_eq!(connections(&probe).saturating_sub(baseline), 4);

    // Every idle connection is now closed by the server: requests that are
    // not safe to send twice must still not fail.
    mc.restart();
    thread::scope(|s| {
        s.spawn(|| assert!(c.add("added", "x", MINUTE).unwrap()));
        s.spawn(|| assert_eq!(c.incr("counter", 1).unwrap(), None));
        s.spawn(|| assert!(!c.cas("doc", "x", MINUTE, Cas(1)).unwrap()));
        s.spawn(|| {
            assert!(matches!(
                c.get_or_lease::<String>("lease", MINUTE).unwrap(),
                Lease::Won { previous: None, .. }
            ))
        });
    });
    assert!(!c.is_marked_dead(&mc.addr()));

    // And one at a time, each right after a restart.
    mc.restart();
    assert!(c.add("added-2", "x", MINUTE).unwrap());
    mc.restart();
    c.set("counter", &1u64, Duration::ZERO).unwrap();
    mc.restart();
    assert_eq!(c.incr("counter", 1).unwrap(), None);
    c.set("counter", &1u64, Duration::ZERO).unwrap();
    let (_, cas) = c.gets::<u64>("counter").unwrap().unwrap();
    assert!(c.cas("counter", &2u64, Duration::ZERO, cas).unwrap());
    mc.restart();
    assert!(!c.cas("counter", &3u64, Duration::ZERO, cas).unwrap());
    mc.restart();
    assert!(matches!(
        c.get_or_lease::<String>("lease", MINUTE).unwrap(),
        Lease::Won { previous: None, .. }
    ));
    assert!(!c.is_marked_dead(&mc.addr()));
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

#[test]
fn shared_between_threads() {
    let mc = Memcached::start();
    // memcached counts one current connection per client connection: take
    // the baseline (listeners, the probe's own connection) first.
    let probe = Client::builder()
        .servers([mc.addr()])
        .pool_size(1)
        .build()
        .unwrap();
    let baseline = connections(&probe);
    let c = Client::builder()
        .servers([mc.addr()])
        .pool_size(2)
        .build()
        .unwrap();
    thread::scope(|s| {
        for t in 0..6 {
            let c = c.clone();
            s.spawn(move || {
                for i in 0..200 {
                    let key = format!("t{t}:{i}");
                    c.set(&key, &i, MINUTE).unwrap();
                    assert_eq!(c.get::<i32>(&key).unwrap(), Some(i));
                }
            });
        }
    });
    let items: u64 = c.stats().unwrap()[0].1["curr_items"].parse().unwrap();
    assert_eq!(items, 1200);
    // At most pool_size connections were opened by this client.
    let opened = connections(&probe).saturating_sub(baseline);
    assert!((1..=2).contains(&opened), "{opened} connections");
}

#[test]
fn unix_socket_server() {
    let dir = std::env::temp_dir().join(format!(
        "nearfar-mc-{}-{}",
        std::process::id(),
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("mc.sock");
    let mut child = std::process::Command::new("memcached")
        .args(["-s", path.to_str().unwrap(), "-m", "16", "-u", "root"])
        .spawn()
        .expect("memcached not found: install it with `apt-get install -y memcached`");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !path.exists() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(10));
    }
    let c = Client::builder()
        .servers([path.to_str().unwrap()])
        .build()
        .unwrap();
    let result = c
        .set("k", "over a unix socket", MINUTE)
        .and_then(|()| c.get::<String>("k"));
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(result.unwrap().as_deref(), Some("over a unix socket"));
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
fn a_won_lease_survives_an_undecodable_stale_value() {
    let mc = Memcached::start();
    let c = client(&mc);
    // Bytes that do not decode as a `User` (another client's, or an older
    // layout), then invalidated: the next reader wins the lease.
    store_undecodable(&c, "report");
    assert!(c.invalidate("report", MINUTE).unwrap());
    let cas = match c.get_or_lease::<User>("report", MINUTE).unwrap() {
        Lease::Won {
            previous: None,
            cas,
        } => cas,
        other => panic!("expected to win with nothing to serve, got {other:?}"),
    };
    // The lease is real: the winner's store goes through with its CAS.
    let user = User {
        id: 1,
        name: "Grace".into(),
        tags: Vec::new(),
    };
    assert!(c.cas("report", &user, MINUTE, cas).unwrap());
    assert_eq!(c.get::<User>("report").unwrap(), Some(user));
}

#[test]
fn writes_return_the_cas_they_stored() {
    let mc = Memcached::start();
    let c = client(&mc);
    let first = c.set_returning_cas("doc", "v1", MINUTE).unwrap();
    assert_eq!(
        c.gets::<String>("doc").unwrap(),
        Some(("v1".to_owned(), first))
    );
    assert_eq!(c.cas_only("doc").unwrap(), Some(first));
    // Unconditional over an existing item: a new CAS.
    let second = c.set_returning_cas("doc", "v2", MINUTE).unwrap();
    assert_ne!(second, first);
    assert_eq!(c.cas_only("doc").unwrap(), Some(second));

    // compare_and_set stores only while the CAS holds, and returns the new one.
    let third = c
        .compare_and_set("doc", "v3", MINUTE, second)
        .unwrap()
        .expect("the CAS still held");
    assert_ne!(third, second);
    let item = c.meta_get::<String>("doc").unwrap().unwrap();
    assert_eq!((item.value.as_str(), item.cas), ("v3", third));
    assert!(item.ttl.unwrap() <= MINUTE && item.ttl.unwrap() >= MINUTE - Duration::from_secs(5));
    assert_eq!(
        c.compare_and_set("doc", "v4", MINUTE, second).unwrap(),
        None
    );
    assert_eq!(c.get::<String>("doc").unwrap().as_deref(), Some("v3"));
    assert_eq!(c.compare_and_set("gone", "x", MINUTE, third).unwrap(), None);
    assert_eq!(c.get::<String>("gone").unwrap(), None);

    // The lease flow: the winner's store returns the CAS a later
    // revalidation compares against.
    let lease_cas = match c.get_or_lease::<String>("report", MINUTE).unwrap() {
        Lease::Won { cas, .. } => cas,
        other => panic!("expected to win, got {other:?}"),
    };
    let stored = c
        .compare_and_set("report", "fresh", MINUTE, lease_cas)
        .unwrap()
        .expect("the lease's CAS still held");
    assert_eq!(c.cas_only("report").unwrap(), Some(stored));
    assert_eq!(
        c.gets::<String>("report").unwrap(),
        Some(("fresh".to_owned(), stored))
    );

    // With a key prefix, the CAS is the prefixed item's.
    let prefixed = Client::builder()
        .servers([mc.addr()])
        .key_prefix("app:")
        .build()
        .unwrap();
    let cas = prefixed.set_returning_cas("doc", &7u32, MINUTE).unwrap();
    assert_eq!(c.cas_only("app:doc").unwrap(), Some(cas));
}

#[test]
fn invalidate_if_cas_marks_only_the_item_it_read() {
    let mc = Memcached::start();
    let c = client(&mc);
    let old = c.set_returning_cas("k", "v1", MINUTE).unwrap();
    let new = c.set_returning_cas("k", "v2", MINUTE).unwrap();
    // A CAS read before the write: the fresh value is left alone.
    assert!(!c.invalidate_if_cas("k", MINUTE, old).unwrap());
    match c.peek_lease::<String>("k").unwrap() {
        Some(Lease::Hit { value, stale, .. }) => {
            assert_eq!(value, "v2");
            assert!(!stale, "a fresh value must not be marked stale");
        }
        other => panic!("expected a fresh hit, got {other:?}"),
    }
    // The current CAS: marked stale, its value still served.
    assert!(c.invalidate_if_cas("k", MINUTE, new).unwrap());
    match c.peek_lease::<String>("k").unwrap() {
        Some(Lease::Hit { value, stale, .. }) => {
            assert_eq!(value, "v2");
            assert!(stale);
        }
        Some(Lease::Won { previous, .. }) => assert_eq!(previous.as_deref(), Some("v2")),
        other => panic!("expected the stale item, got {other:?}"),
    }
    assert!(!c.invalidate_if_cas("absent", MINUTE, new).unwrap());
}
