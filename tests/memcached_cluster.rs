//! The client over three real memcached servers: placement, batches,
//! fail-over and recovery.
#![cfg(feature = "memcached")]

#[path = "common/memcached.rs"]
mod server;

use std::collections::HashMap;
use std::thread;
use std::time::{Duration, Instant};

use nearfar::memcached::{Client, Distribution, Error};
use server::Memcached;

const MINUTE: Duration = Duration::from_secs(60);

fn cluster() -> Vec<Memcached> {
    (0..3).map(|_| Memcached::start()).collect()
}

fn single(server: &Memcached) -> Client {
    Client::builder().servers([server.addr()]).build().unwrap()
}

fn spread_and_batches(distribution: Distribution) {
    let servers = cluster();
    let c = Client::builder()
        .servers(servers.iter().map(Memcached::addr))
        .distribution(distribution)
        .build()
        .unwrap();
    let keys: Vec<String> = (0..300).map(|i| format!("key:{i}")).collect();
    let values: Vec<u32> = (0..300).collect();
    let items: Vec<(&String, &u32)> = keys.iter().zip(&values).collect();
    c.set_many(&items, MINUTE).unwrap();

    // Every key is on the server the ring names, and only there.
    let direct: Vec<Client> = servers.iter().map(single).collect();
    let mut per_server = vec![0usize; servers.len()];
    for (key, value) in &items {
        let home = c.server_for(key).unwrap();
        for (i, (server, client)) in servers.iter().zip(&direct).enumerate() {
            let stored = client.get::<u32>(key).unwrap();
            if server.addr() == home {
                assert_eq!(stored, Some(**value), "{key} missing on {home}");
                per_server[i] += 1;
            } else {
                assert_eq!(stored, None, "{key} also on {}", server.addr());
            }
        }
    }
    for count in &per_server {
        assert!(*count > 40, "uneven spread: {per_server:?}");
    }

    // One get_many over all three servers.
    let mut wanted: Vec<&str> = keys.iter().map(String::as_str).collect();
    wanted.push("absent");
    let got: HashMap<String, u32> = c.get_many(&wanted).unwrap();
    assert_eq!(got.len(), 300);
    for (key, value) in &items {
        assert_eq!(got.get(key.as_str()), Some(*value));
    }
    // Single gets agree.
    assert_eq!(c.get::<u32>("key:17").unwrap(), Some(17));
}

#[test]
fn ketama_spread_and_batches() {
    spread_and_batches(Distribution::Ketama);
}

#[test]
fn rendezvous_spread_and_batches() {
    spread_and_batches(Distribution::Rendezvous);
}

#[test]
fn weights_shift_the_spread() {
    let servers = cluster();
    let c = Client::builder()
        .servers([
            format!("{}:4", servers[0].addr()),
            format!("{}:1", servers[1].addr()),
            format!("{}:1", servers[2].addr()),
        ])
        .build()
        .unwrap();
    let heavy = (0..600)
        .filter(|i| c.server_for(&format!("w:{i}")).unwrap() == servers[0].addr())
        .count();
    // Expect about 2/3 of the keys on the weight-4 server.
    assert!((300..500).contains(&heavy), "{heavy} of 600");
}

#[test]
fn killed_server_is_ejected_and_comes_back() {
    let mut servers = cluster();
    let dead_timeout = Duration::from_millis(800);
    let c = Client::builder()
        .servers(servers.iter().map(Memcached::addr))
        .connect_timeout(Duration::from_millis(300))
        .io_timeout(Duration::from_millis(500))
        .retry_attempts(2)
        .dead_timeout(dead_timeout)
        .build()
        .unwrap();
    let victim = servers[1].addr();
    let keys: Vec<String> = (0..200).map(|i| format!("k{i}")).collect();
    for key in &keys {
        c.set(key, key, MINUTE).unwrap();
    }
    let victim_key = keys
        .iter()
        .find(|k| c.server_for(k).unwrap() == victim)
        .unwrap()
        .clone();
    let other_keys: Vec<&String> = keys
        .iter()
        .filter(|k| c.server_for(k).unwrap() != victim)
        .collect();

    servers[1].stop();

    // The victim's keys fail until it has failed `retry_attempts` times.
    let mut failures = 0;
    let started = Instant::now();
    while !c.is_marked_dead(&victim) {
        match c.get::<String>(&victim_key) {
            Err(e) => {
                assert!(e.is_retryable(), "{e:?}");
                failures += 1;
            }
            Ok(v) => panic!("read {v:?} from a stopped server"),
        }
        assert!(failures <= 2, "not ejected after {failures} failures");
        assert!(started.elapsed() < Duration::from_secs(5));
    }
    assert_eq!(failures, 2);

    // Other keys kept working, and the victim's keys now go elsewhere.
    for key in &other_keys {
        assert_eq!(c.get::<String>(key).unwrap().as_deref(), Some(key.as_str()));
    }
    let fallback = c.server_for(&victim_key).unwrap();
    assert_ne!(fallback, victim);
    assert_eq!(c.get::<String>(&victim_key).unwrap(), None, "a miss");
    c.set(&victim_key, "rerouted", MINUTE).unwrap();
    assert_eq!(
        c.get::<String>(&victim_key).unwrap().as_deref(),
        Some("rerouted")
    );
    let got: HashMap<String, String> = c.get_many(&keys).unwrap();
    assert_eq!(got.len(), other_keys.len() + 1);

    // Back after a restart and the dead timeout: the next request probes it.
    servers[1].restart();
    thread::sleep(dead_timeout + Duration::from_millis(100));
    assert_eq!(c.server_for(&victim_key).unwrap(), victim);
    assert_eq!(
        c.get::<String>(&victim_key).unwrap(),
        None,
        "restarted empty"
    );
    assert!(!c.is_marked_dead(&victim));
    c.set(&victim_key, "home again", MINUTE).unwrap();
    assert_eq!(
        single(&servers[1])
            .get::<String>(&victim_key)
            .unwrap()
            .as_deref(),
        Some("home again")
    );
}

#[test]
fn all_servers_down() {
    let mut servers = cluster();
    let c = Client::builder()
        .servers(servers.iter().map(Memcached::addr))
        .connect_timeout(Duration::from_millis(200))
        .io_timeout(Duration::from_millis(200))
        .retry_attempts(1)
        .dead_timeout(MINUTE)
        .build()
        .unwrap();
    for s in &mut servers {
        s.stop();
    }
    let started = Instant::now();
    let mut last = None;
    for i in 0..10 {
        last = Some(c.get::<String>(&format!("k{i}")));
    }
    assert!(matches!(last, Some(Err(Error::AllServersDown))), "{last:?}");
    assert!(matches!(
        c.get_many::<String>(&["a", "b"]),
        Err(Error::AllServersDown)
    ));
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[test]
fn down_at_build_time_does_not_fail_build() {
    let up = Memcached::start();
    let down = server::free_port();
    let c = Client::builder()
        .servers([up.addr(), format!("127.0.0.1:{down}")])
        .connect_timeout(Duration::from_millis(200))
        .retry_attempts(1)
        .build()
        .unwrap();
    // Every key ends up served once the down server is ejected.
    let mut errors = 0;
    for i in 0..50 {
        let key = format!("k{i}");
        match c.set(&key, &i, MINUTE) {
            Ok(()) => assert_eq!(c.get::<i32>(&key).unwrap(), Some(i)),
            Err(Error::Connect { .. }) => errors += 1,
            Err(e) => panic!("{e:?}"),
        }
    }
    // Exactly one: the first key sent to the down server marks it dead.
    assert_eq!(errors, 1);
}

#[test]
fn key_prefix_does_not_move_keys() {
    // pymemcache's HashClient and libmemcached place a key by its
    // unprefixed form: a prefixed client must put every key where an
    // unprefixed one (or those clients) would look for it.
    for distribution in [Distribution::Ketama, Distribution::Rendezvous] {
        let servers = cluster();
        let build = |prefix: &str| {
            Client::builder()
                .servers(servers.iter().map(Memcached::addr))
                .distribution(distribution)
                .key_prefix(prefix)
                .build()
                .unwrap()
        };
        let (plain, prefixed) = (build(""), build("app:"));
        let keys: Vec<String> = (0..200).map(|i| format!("p:{i}")).collect();
        for key in &keys {
            assert_eq!(
                prefixed.server_for(key).unwrap(),
                plain.server_for(key).unwrap(),
                "{distribution:?}: {key}"
            );
        }
        // Where the items land, through single sets and a batch.
        for key in &keys[..100] {
            prefixed.set(key, key, MINUTE).unwrap();
        }
        let items: Vec<(&String, &String)> = keys[100..].iter().map(|k| (k, k)).collect();
        prefixed.set_many(&items, MINUTE).unwrap();
        let direct: Vec<Client> = servers.iter().map(single).collect();
        for key in &keys {
            let home = plain.server_for(key).unwrap();
            for (server, client) in servers.iter().zip(&direct) {
                let stored = client.get::<String>(&format!("app:{key}")).unwrap();
                assert_eq!(
                    stored.is_some(),
                    server.addr() == home,
                    "{distribution:?}: {key} on {} (home {home})",
                    server.addr()
                );
            }
        }
        let got: HashMap<String, String> = prefixed.get_many(&keys).unwrap();
        assert_eq!(got.len(), keys.len());
    }
}

#[test]
fn a_refused_set_many_leaves_a_due_probe_alone() {
    let mut mc = Memcached::start();
    let dead_timeout = Duration::from_millis(400);
    let c = Client::builder()
        .servers([mc.addr()])
        .connect_timeout(Duration::from_millis(300))
        .retry_attempts(1)
        .dead_timeout(dead_timeout)
        .max_item_size(1000)
        .build()
        .unwrap();
    mc.stop();
    assert!(matches!(c.get::<String>("k"), Err(Error::Connect { .. })));
    assert!(c.is_marked_dead(&mc.addr()));
    mc.restart();
    thread::sleep(dead_timeout + Duration::from_millis(100));
    // The dead period is over: the next request may probe the server.
    assert!(!c.is_marked_dead(&mc.addr()));

    // A batch refused before sending must not take that probe with it.
    let (small, big) = (vec![1u8], vec![0u8; 1001]);
    assert!(matches!(
        c.set_many(&[("ok", &small), ("big", &big)], MINUTE),
        Err(Error::ValueTooLarge {
            size: 1001,
            max: 934
        })
    ));
    assert!(!c.is_marked_dead(&mc.addr()));
    assert_eq!(c.get::<Vec<u8>>("ok").unwrap(), None, "nothing was sent");
    assert!(!c.is_marked_dead(&mc.addr()));
}
