//! The blocking client against one real memcached: every operation, TTLs,
//! keys and prefixes, item size limits, large values and batches, values
//! that do not decode, the pool (threads, a server restart) and a Unix
//! socket. CAS and leases are in memcached_client_leases.rs, fake servers
//! and failures in memcached_client_faults.rs.
#![cfg(feature = "memcached")]

#[path = "common/memcached.rs"]
mod server;

#[path = "common/client_setup.rs"]
mod client_setup;

use std::collections::HashMap;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use client_setup::{MINUTE, User, client, store_undecodable};
use nearfar::codec::{FLAG_BYTES, FLAG_TEXT};
use nearfar::memcached::KeyError;
use nearfar::memcached::{Cas, Client, Error, Lease};
use server::Memcached;

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

#[test]
fn addresses_split_from_a_list_keep_their_spaces_and_work() {
    // A comma-separated setting, split as it comes: spaces after the commas,
    // a newline at the end.
    let (a, b) = (Memcached::start(), Memcached::start());
    let setting = format!("{}, {} \n", a.addr(), b.addr());
    let c = Client::builder()
        .servers(setting.split(','))
        .build()
        .unwrap();
    assert_eq!(c.servers(), [a.addr(), b.addr()]);
    for i in 0..20 {
        c.set(&format!("k{i}"), &i, MINUTE).unwrap();
    }
    for i in 0..20 {
        assert_eq!(c.get::<i32>(&format!("k{i}")).unwrap(), Some(i));
    }
    let per_server: Vec<u64> = c
        .stats()
        .unwrap()
        .iter()
        .map(|(_, stats)| stats["curr_items"].parse().unwrap())
        .collect();
    assert_eq!(per_server.iter().sum::<u64>(), 20, "{per_server:?}");
    assert!(
        per_server.iter().all(|&n| n > 0),
        "both used: {per_server:?}"
    );
}
