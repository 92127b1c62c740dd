//! The async client's operations against a real memcached, each checked
//! against the blocking client's answer for the same item (one writes, the
//! other reads), on both tokio runtimes.
#![cfg(feature = "tokio")]

#[path = "common/memcached.rs"]
mod server;

#[path = "common/runtimes.rs"]
mod runtimes;

use std::collections::HashMap;
use std::io::ErrorKind;
use std::net::TcpListener;
use std::time::Duration;

use nearfar::codec::{FLAG_BINCODE, FLAG_TEXT};
use nearfar::memcached::KeyError;
use nearfar::memcached::{AsyncClient, Cas, Client, Error, Lease};
use runtimes::on_both_runtimes;
use serde::{Deserialize, Serialize};
use server::Memcached;

const MINUTE: Duration = Duration::from_secs(60);
const ZERO: Duration = Duration::ZERO;

fn async_client(mc: &Memcached) -> AsyncClient {
    Client::builder()
        .servers([mc.addr()])
        .io_timeout(Duration::from_secs(2))
        .build_async()
        .expect("async client")
}

fn blocking_client(mc: &Memcached) -> Client {
    Client::builder()
        .servers([mc.addr()])
        .io_timeout(Duration::from_secs(2))
        .build()
        .expect("blocking client")
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct User {
    id: u32,
    name: String,
    tags: Vec<String>,
}

#[test]
fn every_operation_agrees_with_the_blocking_client() {
    on_both_runtimes(|rt| async move {
        let mc = Memcached::start();
        let (a, b) = (async_client(&mc), blocking_client(&mc));

        // get / set, written by one client and read by the other.
        assert_eq!(a.get::<String>("missing").await.unwrap(), None);
        a.set("s", "hello", MINUTE).await.unwrap();
        assert_eq!(b.get::<String>("s").unwrap().as_deref(), Some("hello"));
        a.set("n", &-42i64, ZERO).await.unwrap();
        assert_eq!(b.get::<i64>("n").unwrap(), Some(-42));
        let user = User {
            id: 7,
            name: "Ada".into(),
            tags: vec!["admin".into()],
        };
        b.set("user", &user, MINUTE).unwrap();
        assert_eq!(a.get::<User>("user").await.unwrap(), Some(user.clone()));

        // gets, meta_get, cas_only: the same item, the same CAS.
        let gets = a.gets::<String>("s").await.unwrap();
        assert!(gets.is_some(), "{rt}");
        assert_eq!(gets, b.gets::<String>("s").unwrap());
        assert_eq!(a.gets::<String>("missing").await.unwrap(), None);
        b.set("forever", &user, ZERO).unwrap();
        let item = a.meta_get::<User>("forever").await.unwrap().expect("hit");
        assert_eq!((&item.value, item.ttl), (&user, None));
        assert_eq!(Some(item), b.meta_get::<User>("forever").unwrap());
        let item = a.meta_get::<String>("s").await.unwrap().expect("hit");
        let ttl = item.ttl.expect("a TTL");
        assert!(
            ttl <= MINUTE && ttl >= MINUTE - Duration::from_secs(5),
            "{ttl:?}"
        );
        assert_eq!(Some(item.cas), b.cas_only("s").unwrap());
        assert_eq!(a.meta_get::<String>("missing").await.unwrap(), None);
        assert_eq!(a.cas_only("s").await.unwrap(), b.cas_only("s").unwrap());
        assert_eq!(a.cas_only("missing").await.unwrap(), None);

        // raw bytes and flags, both ways.
        a.set_raw("raw", b"\x00\x01bytes", 12345, MINUTE)
            .await
            .unwrap();
        assert_eq!(
            b.get_raw("raw").unwrap(),
            Some((b"\x00\x01bytes".to_vec(), 12345))
        );
        b.set_raw("raw2", b"\xffother", 7, MINUTE).unwrap();
        assert_eq!(
            a.get_raw("raw2").await.unwrap(),
            Some((b"\xffother".to_vec(), 7))
        );
        assert_eq!(
            a.get_raw("s").await.unwrap(),
            Some((b"hello".to_vec(), FLAG_TEXT))
        );
        assert_eq!(a.get_raw("missing").await.unwrap(), None);

        // add / replace.
        assert!(a.add("a", "first", MINUTE).await.unwrap());
        assert!(!a.add("a", "second", MINUTE).await.unwrap());
        assert!(!b.add("a", "second", MINUTE).unwrap());
        assert_eq!(b.get::<String>("a").unwrap().as_deref(), Some("first"));
        assert!(a.replace("a", "third", MINUTE).await.unwrap());
        assert!(!a.replace("nope", "x", MINUTE).await.unwrap());
        assert_eq!(b.get::<String>("a").unwrap().as_deref(), Some("third"));
        assert_eq!(b.get::<String>("nope").unwrap(), None);

        // cas: one store per CAS, whichever client tries.
        let (_, cas) = b.gets::<String>("a").unwrap().unwrap();
        assert!(a.cas("a", "fourth", MINUTE, cas).await.unwrap());
        assert!(!a.cas("a", "fifth", MINUTE, cas).await.unwrap());
        assert!(!b.cas("a", "fifth", MINUTE, cas).unwrap());
        assert_eq!(b.get::<String>("a").unwrap().as_deref(), Some("fourth"));
        assert!(!a.cas("missing", "x", MINUTE, Cas(1)).await.unwrap());

        // set_returning_cas / compare_and_set return the CAS stored.
        let first = a.set_returning_cas("doc", "v1", MINUTE).await.unwrap();
        assert_eq!(
            b.gets::<String>("doc").unwrap(),
            Some(("v1".to_owned(), first))
        );
        let second = a
            .compare_and_set("doc", "v2", MINUTE, first)
            .await
            .unwrap()
            .expect("the CAS still held");
        assert_ne!(second, first);
        assert_eq!(b.cas_only("doc").unwrap(), Some(second));
        assert_eq!(
            a.compare_and_set("doc", "v3", MINUTE, first).await.unwrap(),
            None
        );
        assert_eq!(b.get::<String>("doc").unwrap().as_deref(), Some("v2"));
        let third = b.set_returning_cas("doc", "v3", MINUTE).unwrap();
        assert_eq!(a.cas_only("doc").await.unwrap(), Some(third));
        assert_eq!(
            a.compare_and_set("gone", "x", MINUTE, third).await.unwrap(),
            None
        );
        assert_eq!(b.get::<String>("gone").unwrap(), None);

        // delete / delete_if_cas.
        assert!(a.delete("a").await.unwrap());
        assert!(!a.delete("a").await.unwrap());
        assert!(!b.delete("a").unwrap());
        assert_eq!(b.get::<String>("a").unwrap(), None);
        let cas = b.set_returning_cas("d", "x", MINUTE).unwrap();
        assert!(!a.delete_if_cas("d", Cas(cas.0 + 1)).await.unwrap());
        assert_eq!(b.get::<String>("d").unwrap().as_deref(), Some("x"));
        assert!(a.delete_if_cas("d", cas).await.unwrap());
        assert!(!a.delete_if_cas("d", cas).await.unwrap());
        assert_eq!(b.get::<String>("d").unwrap(), None);

        // touch.
        assert!(a.touch("s", Duration::from_secs(100)).await.unwrap());
        assert!(!a.touch("a", MINUTE).await.unwrap());
        let ttl = b.meta_get::<String>("s").unwrap().unwrap().ttl.unwrap();
        assert!(ttl <= Duration::from_secs(100) && ttl >= Duration::from_secs(95));

        // incr / decr, interleaved with the blocking client's.
        b.set("count", &10u64, ZERO).unwrap();
        assert_eq!(a.incr("count", 5).await.unwrap(), Some(15));
        assert_eq!(b.incr("count", 1).unwrap(), Some(16));
        assert_eq!(a.decr("count", 20).await.unwrap(), Some(0));
        assert_eq!(a.incr("count", 3).await.unwrap(), Some(3));
        assert_eq!(b.get::<u64>("count").unwrap(), Some(3));
        assert_eq!(a.incr("no-count", 1).await.unwrap(), None);
        assert_eq!(a.decr("no-count", 1).await.unwrap(), None);
        // Not a number: the server's refusal, as for the blocking client
        // (whose connection it closes; the next call opens another).
        assert!(matches!(a.incr("s", 1).await, Err(Error::Client(_))));
        assert!(matches!(b.incr("s", 1), Err(Error::Client(_))));
        assert_eq!(a.get::<u64>("count").await.unwrap(), Some(3));

        // get_many / get_many_raw / set_many, both ways, 300 keys.
        let values: Vec<String> = (0..300).map(|i| format!("value-{i}")).collect();
        let items: Vec<(String, &String)> = values
            .iter()
            .enumerate()
            .map(|(i, v)| (format!("many:{i}"), v))
            .collect();
        a.set_many(&items, MINUTE).await.unwrap();
        let mut keys: Vec<String> = items.iter().map(|(k, _)| k.clone()).collect();
        keys.push("many:missing".into());
        let got: HashMap<String, String> = b.get_many(&keys).unwrap();
        assert_eq!(got.len(), 300);
        assert!(items.iter().all(|(k, v)| got.get(k) == Some(*v)));
        assert_eq!(a.get_many::<String>(&keys).await.unwrap(), got);
        let numbers: Vec<u32> = (0..200).collect();
        let items: Vec<(String, &u32)> = numbers.iter().map(|i| (format!("num:{i}"), i)).collect();
        b.set_many(&items, MINUTE).unwrap();
        let keys: Vec<&str> = items.iter().map(|(k, _)| k.as_str()).collect();
        let got: HashMap<String, u32> = a.get_many(&keys).await.unwrap();
        assert_eq!(got.len(), 200);
        assert!(items.iter().all(|(k, v)| got.get(k) == Some(*v)));
        assert!(
            a.get_many::<String>(&[] as &[&str])
                .await
                .unwrap()
                .is_empty()
        );
        let raw_keys = ["many:1", "raw", "nope"];
        let raw = a.get_many_raw(&raw_keys).await.unwrap();
        assert_eq!(raw.len(), 2);
        assert_eq!(raw["raw"], (b"\x00\x01bytes".to_vec(), 12345));
        assert_eq!(raw["many:1"], (b"value-1".to_vec(), FLAG_TEXT));
        assert_eq!(raw, b.get_many_raw(&raw_keys).unwrap());

        // Whole-server operations and introspection.
        let versions = a.version().await.unwrap();
        assert_eq!(versions, b.version().unwrap());
        assert_eq!(versions.len(), 1);
        assert_eq!(versions[0].0, mc.addr());
        assert!(versions[0].1.starts_with("1."), "{versions:?}");
        let stats = a.stats().await.unwrap();
        assert_eq!(stats.len(), 1);
        assert_eq!(stats[0].0, mc.addr());
        assert!(stats[0].1.contains_key("curr_items"), "{stats:?}");
        assert_eq!(stats[0].1.get("pid"), b.stats().unwrap()[0].1.get("pid"));
        assert_eq!(a.key_prefix(), "");
        assert_eq!(a.servers(), vec![mc.addr()]);
        assert_eq!(a.servers(), b.servers());
        assert_eq!(a.server_for("s").unwrap(), mc.addr());
        assert!(!a.is_marked_dead(&mc.addr()));
        a.flush_all().await.unwrap();
        assert_eq!(b.get::<String>("s").unwrap(), None);
        assert!(b.get_many::<String>(&keys).unwrap().is_empty());
    });
}

#[test]
fn key_prefix_and_routing_agree_with_the_blocking_client() {
    on_both_runtimes(|_| async move {
        let mc = Memcached::start();
        let plain = blocking_client(&mc);
        let prefixed = Client::builder().servers([mc.addr()]).key_prefix("app:");
        let (a, b) = (
            prefixed.clone().build_async().unwrap(),
            prefixed.build().unwrap(),
        );
        assert_eq!(a.key_prefix(), "app:");
        a.set("k", "v", MINUTE).await.unwrap();
        assert_eq!(plain.get::<String>("app:k").unwrap().as_deref(), Some("v"));
        assert_eq!(plain.get::<String>("k").unwrap(), None);
        assert_eq!(b.get::<String>("k").unwrap().as_deref(), Some("v"));
        let got: HashMap<String, String> = a.get_many(&["k"]).await.unwrap();
        assert_eq!(got.get("k").map(String::as_str), Some("v"));
        let cas = a.set_returning_cas("doc", &7u32, MINUTE).await.unwrap();
        assert_eq!(plain.cas_only("app:doc").unwrap(), Some(cas));

        // Three servers (nothing listens: routing needs no connection):
        // every key goes where the blocking client sends it.
        let addrs: Vec<String> = (0..3)
            .map(|_| format!("127.0.0.1:{}", server::free_port()))
            .collect();
        let a = Client::builder().servers(&addrs).build_async().unwrap();
        let b = Client::builder().servers(&addrs).build().unwrap();
        assert_eq!(a.servers(), addrs);
        let mut used = std::collections::HashSet::new();
        for i in 0..300 {
            let key = format!("key-{i}");
            let server = a.server_for(&key).unwrap();
            assert_eq!(server, b.server_for(&key).unwrap(), "{key}");
            used.insert(server);
        }
        assert_eq!(used.len(), 3, "the keys spread over every server");
        assert!(addrs.iter().all(|s| !a.is_marked_dead(s)));
    });
}

#[test]
fn leases_and_invalidation_agree_with_the_blocking_client() {
    on_both_runtimes(|rt| async move {
        let mc = Memcached::start();
        let (first, second, b) = (async_client(&mc), async_client(&mc), blocking_client(&mc));
        let lease = Duration::from_secs(30);

        // Nothing there: no lease state, whoever peeks.
        assert_eq!(first.peek_lease::<String>("report").await.unwrap(), None);
        assert_eq!(b.peek_lease::<String>("report").unwrap(), None);
        assert_eq!(first.peek_lease_cas("report").await.unwrap(), None);

        // The first caller wins, with the placeholder's CAS...
        let cas = match first.get_or_lease::<String>("report", lease).await.unwrap() {
            Lease::Won {
                previous: None,
                cas,
            } => cas,
            other => panic!("{rt}: expected to win, got {other:?}"),
        };
        assert_eq!(b.cas_only("report").unwrap(), Some(cas));
        // ...everyone else waits, async or blocking, peeking or asking.
        assert_eq!(
            second
                .get_or_lease::<String>("report", lease)
                .await
                .unwrap(),
            Lease::Wait
        );
        assert_eq!(
            b.get_or_lease::<String>("report", lease).unwrap(),
            Lease::Wait
        );
        assert_eq!(
            second.peek_lease::<String>("report").await.unwrap(),
            Some(Lease::Wait)
        );
        assert_eq!(
            second.peek_lease_cas("report").await.unwrap(),
            Some(Lease::Wait)
        );
        assert_eq!(b.peek_lease_cas("report").unwrap(), Some(Lease::Wait));

        // The winner stores by CAS (no expiry: the TTLs compare equal);
        // then it is a hit for all, the same hit.
        assert!(first.cas("report", "computed", ZERO, cas).await.unwrap());
        let hit = second
            .get_or_lease::<String>("report", lease)
            .await
            .unwrap();
        match &hit {
            Lease::Hit {
                value,
                stale: false,
                ttl: None,
                cas: hit_cas,
            } => {
                assert_eq!(value, "computed");
                assert_eq!(b.cas_only("report").unwrap(), Some(*hit_cas));
            }
            other => panic!("{rt}: expected a fresh hit, got {other:?}"),
        }
        assert_eq!(hit, b.get_or_lease::<String>("report", lease).unwrap());
        assert_eq!(
            first.peek_lease::<String>("report").await.unwrap(),
            Some(hit.clone())
        );
        assert_eq!(
            first.peek_lease::<String>("report").await.unwrap(),
            b.peek_lease::<String>("report").unwrap()
        );
        assert!(matches!(
            first.peek_lease_cas("report").await.unwrap(),
            Some(Lease::Hit {
                value: (),
                stale: false,
                ..
            })
        ));

        // Invalidate: the value stays, marked stale; one reader wins the
        // recompute token with it, the others get the stale hit.
        assert!(first.invalidate("report", MINUTE).await.unwrap());
        assert!(!first.invalidate("nothing-here", MINUTE).await.unwrap());
        match second
            .get_or_lease::<String>("report", lease)
            .await
            .unwrap()
        {
            Lease::Won { previous, .. } => assert_eq!(previous.as_deref(), Some("computed")),
            other => panic!("{rt}: expected to win, got {other:?}"),
        }
        for got in [
            first.get_or_lease::<String>("report", lease).await.unwrap(),
            b.get_or_lease::<String>("report", lease).unwrap(),
        ] {
            match got {
                Lease::Hit {
                    value, stale: true, ..
                } => assert_eq!(value, "computed"),
                other => panic!("{rt}: expected a stale hit, got {other:?}"),
            }
        }
        b.set("report", "recomputed", MINUTE).unwrap();
        assert!(matches!(
            first.get_or_lease::<String>("report", lease).await.unwrap(),
            Lease::Hit { value, stale: false, .. } if value == "recomputed"
        ));

        // invalidate_if_cas marks only the item it read.
        let old = a_write(&b, "k", "v1");
        let new = a_write(&b, "k", "v2");
        assert!(!first.invalidate_if_cas("k", MINUTE, old).await.unwrap());
        assert!(matches!(
            b.peek_lease::<String>("k").unwrap(),
            Some(Lease::Hit { value, stale: false, .. }) if value == "v2"
        ));
        assert!(first.invalidate_if_cas("k", MINUTE, new).await.unwrap());
        match b.peek_lease::<String>("k").unwrap() {
            Some(Lease::Hit {
                value, stale: true, ..
            }) => assert_eq!(value, "v2"),
            Some(Lease::Won { previous, .. }) => assert_eq!(previous.as_deref(), Some("v2")),
            other => panic!("{rt}: expected the stale item, got {other:?}"),
        }
        assert!(
            !first
                .invalidate_if_cas("absent", MINUTE, new)
                .await
                .unwrap()
        );

        // Early recache: under the threshold one caller wins with the value.
        first
            .set("soon", "old", Duration::from_secs(5))
            .await
            .unwrap();
        let recache = Duration::from_secs(30);
        match first
            .get_or_lease_with_recache::<String>("soon", lease, recache)
            .await
            .unwrap()
        {
            Lease::Won { previous, .. } => assert_eq!(previous.as_deref(), Some("old")),
            other => panic!("{rt}: expected an early win, got {other:?}"),
        }
        assert!(matches!(
            second
                .get_or_lease_with_recache::<String>("soon", lease, recache)
                .await
                .unwrap(),
            Lease::Hit { value, .. } if value == "old"
        ));
        // Far from expiry: a plain hit for all.
        first.set("later", "v", MINUTE).await.unwrap();
        assert!(matches!(
            first
                .get_or_lease_with_recache::<String>("later", lease, recache)
                .await
                .unwrap(),
            Lease::Hit { value, stale: false, .. } if value == "v"
        ));
    });
}

/// Stores `value` under `key` with the blocking client; its CAS.
fn a_write(b: &Client, key: &str, value: &str) -> Cas {
    b.set_returning_cas(key, value, MINUTE).unwrap()
}

#[test]
fn bad_keys_are_refused_and_nothing_is_sent() {
    on_both_runtimes(|rt| async move {
        // A listener nobody accepts on: a connection the client opened
        // would wait in its backlog.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let a = Client::builder().servers([&addr]).build_async().unwrap();
        let b = Client::builder().servers([&addr]).build().unwrap();
        let long = "x".repeat(251);
        let bad = [
            "k\r\nflush_all",
            "k flush_all",
            "k\nflush_all",
            "k\u{7f}",
            "with space",
            "tab\there",
            "",
            long.as_str(),
        ];
        for key in bad {
            let errors = [
                a.get::<String>(key).await.err(),
                a.set(key, "x", MINUTE).await.err(),
                a.delete(key).await.err(),
                a.get_or_lease::<String>(key, MINUTE).await.err(),
                a.invalidate(key, MINUTE).await.err(),
                a.incr(key, 1).await.err(),
                a.get_many::<String>(&["fine", key]).await.err(),
                a.set_many(&[("fine", "1"), (key, "2")], MINUTE).await.err(),
            ];
            let blocking = format!("{:?}", b.get::<String>(key).err());
            for error in errors {
                assert!(
                    matches!(error, Some(Error::InvalidKey { .. })),
                    "{rt}: {key:?}: {error:?}"
                );
                assert_eq!(format!("{error:?}"), blocking, "{rt}: {key:?}");
            }
        }
        assert!(matches!(
            a.get::<String>("k flush_all").await,
            Err(Error::InvalidKey {
                reason: KeyError::ForbiddenByte {
                    byte: b' ',
                    index: 1
                }
            })
        ));
        assert!(matches!(
            a.get::<String>(&long).await,
            Err(Error::InvalidKey {
                reason: KeyError::TooLong { len: 251 }
            })
        ));
        assert!(a.server_for("with space").is_err());
        // Nothing reached the server: no connection was even opened.
        listener.set_nonblocking(true).unwrap();
        match listener.accept() {
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            other => panic!("{rt}: a connection was opened: {other:?}"),
        }
    });
}

#[test]
fn oversized_and_undecodable_values_are_typed_errors() {
    on_both_runtimes(|rt| async move {
        let mc = Memcached::start();
        let b = blocking_client(&mc);
        let a = Client::builder()
            .servers([mc.addr()])
            .max_item_size(1000)
            .build_async()
            .unwrap();
        b.set("keep", "me", MINUTE).unwrap();

        // Over max_item_size: refused before sending, by every write.
        let big = vec![7u8; 1001];
        let too_large = |r: Result<(), Error>| {
            assert!(
                matches!(r, Err(Error::ValueTooLarge { size: 1001, .. })),
                "{rt}: {r:?}"
            );
        };
        too_large(a.set("big", &big, MINUTE).await);
        too_large(a.add("big", &big, MINUTE).await.map(drop));
        too_large(a.replace("keep", &big, MINUTE).await.map(drop));
        too_large(a.cas("keep", &big, MINUTE, Cas(1)).await.map(drop));
        too_large(a.set_returning_cas("big", &big, MINUTE).await.map(drop));
        too_large(
            a.compare_and_set("big", &big, MINUTE, Cas(1))
                .await
                .map(drop),
        );
        too_large(a.set_raw("big", &big, 0, MINUTE).await);
        assert!(matches!(
            a.set_many(&[("ok", &vec![1u8]), ("big", &big)], MINUTE)
                .await,
            Err(Error::ValueTooLarge { .. })
        ));
        // Nothing of the refused calls was sent.
        assert_eq!(b.get_raw("ok").unwrap(), None);
        assert_eq!(b.get_raw("big").unwrap(), None);
        assert_eq!(b.get::<String>("keep").unwrap().as_deref(), Some("me"));
        // The key and memcached's 63 bytes of item overhead count too.
        a.set("fits", &vec![1u8; 933], MINUTE).await.unwrap();
        assert_eq!(b.get::<Vec<u8>>("fits").unwrap(), Some(vec![1u8; 933]));
        assert!(matches!(
            a.set("fits", &vec![1u8; 934], MINUTE).await,
            Err(Error::ValueTooLarge {
                size: 934,
                max: 933
            })
        ));

        // Bytes that do not decode: a codec error, as the blocking client
        // says, and the connection stays in step.
        b.set_raw("garbage", b"\xff\xff\xff\xff\xff", FLAG_BINCODE, MINUTE)
            .unwrap();
        assert!(matches!(b.get::<User>("garbage"), Err(Error::Codec(_))));
        assert!(matches!(
            a.get::<User>("garbage").await,
            Err(Error::Codec(_))
        ));
        assert!(matches!(
            a.gets::<User>("garbage").await,
            Err(Error::Codec(_))
        ));
        assert!(matches!(
            a.meta_get::<User>("garbage").await,
            Err(Error::Codec(_))
        ));
        b.set_raw("text", b"not a number", FLAG_TEXT, MINUTE)
            .unwrap();
        assert!(matches!(a.get::<u64>("text").await, Err(Error::Codec(_))));
        b.set_raw("weird", b"x", 1 << 20, MINUTE).unwrap();
        assert!(matches!(
            a.get::<String>("weird").await,
            Err(Error::Codec(_))
        ));
        assert!(matches!(
            a.get_many::<String>(&["keep", "weird", "keep"]).await,
            Err(Error::Codec(_))
        ));
        assert_eq!(
            a.get::<String>("keep").await.unwrap().as_deref(),
            Some("me")
        );
        // The raw bytes are still there to read undecoded.
        assert_eq!(
            a.get_raw("garbage").await.unwrap(),
            Some((b"\xff\xff\xff\xff\xff".to_vec(), FLAG_BINCODE))
        );
        // A lease on undecodable bytes made stale is still won, not lost.
        assert!(a.invalidate("garbage", MINUTE).await.unwrap());
        let cas = match a.get_or_lease::<User>("garbage", MINUTE).await.unwrap() {
            Lease::Won {
                previous: None,
                cas,
            } => cas,
            other => panic!("{rt}: expected to win, got {other:?}"),
        };
        let user = User {
            id: 1,
            name: "Grace".into(),
            tags: Vec::new(),
        };
        assert!(a.cas("garbage", &user, MINUTE, cas).await.unwrap());
        assert_eq!(b.get::<User>("garbage").unwrap(), Some(user));
    });
}

/// The count of connections `mc` has accepted since it started, read on
/// `probe`'s own (pooled, reused) connection.
fn total_connections(probe: &Client) -> u64 {
    probe.stats().unwrap()[0].1["total_connections"]
        .parse()
        .unwrap()
}

#[test]
fn many_tasks_share_few_connections_and_get_their_own_values() {
    const TASKS: u32 = 256;
    const ROUNDS: u32 = 20;
    on_both_runtimes(|rt| async move {
        let mc = Memcached::start();
        let probe = Client::builder()
            .servers([mc.addr()])
            .pool_size(1)
            .build()
            .unwrap();
        let before = total_connections(&probe);
        let a = Client::builder()
            .servers([mc.addr()])
            .pool_size(4)
            .io_timeout(Duration::from_secs(2))
            .build_async()
            .unwrap();
        let mut tasks = tokio::task::JoinSet::new();
        for t in 0..TASKS {
            let a = a.clone();
            tasks.spawn(async move {
                for i in 0..ROUNDS {
                    // Values of many sizes, some spanning several reads.
                    let key = format!("t{t}:{i}");
                    let value =
                        format!("{key}={}", "v".repeat(((t * 37 + i * 101) % 3000) as usize));
                    a.set(&key, &value, MINUTE).await.unwrap();
                    let got = a.get::<String>(&key).await.unwrap();
                    assert_eq!(got.as_ref(), Some(&value), "task {t} round {i}");
                    if i % 5 == 4 {
                        // A batch of this task's keys so far.
                        let keys: Vec<String> = (0..=i).map(|j| format!("t{t}:{j}")).collect();
                        let got: HashMap<String, String> = a.get_many(&keys).await.unwrap();
                        assert_eq!(got.len(), keys.len(), "task {t}");
                        for (key, value) in &got {
                            assert!(value.starts_with(&format!("{key}=")), "{key}: {value}");
                        }
                    }
                }
                t
            });
        }
        let mut done = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            done.push(joined.unwrap_or_else(|e| panic!("{rt}: a task failed: {e}")));
        }
        assert_eq!(done.len(), TASKS as usize);
        // Every request went over the pool's four connections, opened once.
        let opened = total_connections(&probe) - before;
        assert_eq!(opened, 4, "{rt}: {opened} connections for 4 slots");
    });
}
