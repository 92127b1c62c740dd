//! Warm restarts of a two-tier cache against real memcached: `NearFar`'s
//! snapshot (its near tier back after a restart, TTLs counting the
//! downtime, saved on the injected clock, an invalidation while down not
//! undone), its key preload (a new process filled from memcached in the
//! background; a dead far tier neither failing nor blocking it), both for
//! `AsyncNearFar` too, and memcached's own warm restart (`-e`, `SIGUSR1`).
#![cfg(feature = "memcached")]

#[path = "common/dir.rs"]
mod dir;
#[path = "common/memcached.rs"]
mod server;

use std::thread;
use std::time::{Duration, Instant};

use dir::TestDir;
use nearfar::memcached::Client;
use nearfar::{Cache, MockClock, NearFar, NearFarBuilder, SnapshotError};
use server::Memcached;

const MS: Duration = Duration::from_millis(1);

fn client(mc: &Memcached) -> Client {
    Client::builder()
        .servers([mc.addr()])
        .io_timeout(500 * MS)
        .connect_timeout(500 * MS)
        .build()
        .expect("client")
}

/// A `NearFar` over `mc` in `namespace`, near TTL 60 s.
fn two_tier(mc: &Memcached, namespace: &str) -> NearFarBuilder<String, String> {
    NearFar::builder()
        .near(Cache::builder().max_entries(10_000))
        .far(client(mc))
        .namespace(namespace)
        .near_ttl(Duration::from_secs(60))
}

fn key(i: usize) -> String {
    format!("key:{i}")
}

fn value(i: usize) -> String {
    format!("value {i} {}", "x".repeat(200))
}

/// Waits (bounded: 10 s) until `done`, polling every few milliseconds.
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "not within 10 s: {what}");
        thread::sleep(2 * MS);
    }
}

#[test]
fn a_snapshot_brings_the_near_tier_back_without_far_reads() {
    let mc = Memcached::start();
    let dir = TestDir::new("warm-snapshot");
    let path = dir.file("near.snap");
    let every = Duration::from_secs(3600);
    let first = two_tier(&mc, "snap")
        .snapshot(&path, every)
        .build()
        .unwrap();
    for i in 0..300 {
        assert_eq!(first.get_with(key(i), || value(i)), value(i));
    }
    assert_eq!(first.stats().loader_calls, 300);
    drop(first); // saves
    assert!(path.exists());

    let restarted = two_tier(&mc, "snap")
        .snapshot(&path, every)
        .build()
        .unwrap();
    assert_eq!(restarted.stats().restored, 300);
    for i in 0..300 {
        assert_eq!(
            restarted.get_with(key(i), || panic!("loaded {i}")),
            value(i)
        );
    }
    let s = restarted.stats();
    assert_eq!((s.near_hits, s.far_hits, s.loader_calls), (300, 0, 0));
    assert_eq!(s.snapshot_errors, 0);
}

#[test]
fn near_ttls_count_the_downtime() {
    let dir = TestDir::new("warm-ttl");
    let path = dir.file("near.snap");
    let clock = MockClock::new();
    let build = || -> NearFar<String, String> {
        NearFar::builder()
            .near(Cache::builder().max_entries(100).clock(clock.clone()))
            .clock(clock.clone())
            .near_ttl(Duration::from_secs(60))
            .snapshot(&path, Duration::from_secs(3600))
            .build()
            .unwrap()
    };
    let first = build();
    first.insert("k".into(), "v".into());
    clock.advance(Duration::from_secs(10));
    drop(first); // 50 s left
    clock.advance(Duration::from_secs(45)); // down for 45 s
    let restarted = build();
    assert_eq!(restarted.stats().restored, 1);
    clock.advance(Duration::from_secs(4));
    assert_eq!(restarted.get("k").as_deref(), Some("v"));
    clock.advance(Duration::from_secs(1));
    assert_eq!(restarted.get("k"), None);
}

#[test]
fn the_saver_saves_on_the_injected_clock_and_on_drop() {
    let dir = TestDir::new("warm-saver");
    let path = dir.file("near.snap");
    let clock = MockClock::new();
    let cache: NearFar<String, u32> = NearFar::builder()
        .near(Cache::builder().max_entries(100).clock(clock.clone()))
        .clock(clock.clone())
        .snapshot(&path, Duration::from_secs(30))
        .build()
        .unwrap();
    let saved = |k: &str| -> Option<u32> {
        // A NearFar's snapshot is a Cache's too.
        let loaded: Cache<String, u32> = Cache::new(100);
        match loaded.load(&path) {
            Ok(_) => loaded.get(k),
            Err(SnapshotError::Io { .. }) => None,
            Err(e) => panic!("{e}"),
        }
    };
    cache.insert("a".into(), 1);
    clock.advance(Duration::from_secs(29));
    // Not due: a few of the saver's looks at the clock go by, no save.
    thread::sleep(50 * MS);
    assert_eq!(cache.stats().snapshot_saves, 0);
    assert!(!path.exists());
    clock.advance(Duration::from_secs(1));
    wait_until("the first save", || cache.stats().snapshot_saves == 1);
    assert_eq!(saved("a"), Some(1));
    cache.insert("b".into(), 2);
    clock.advance(Duration::from_secs(30));
    wait_until("the second save", || cache.stats().snapshot_saves == 2);
    assert_eq!(saved("b"), Some(2));
    cache.insert("c".into(), 3);
    drop(cache);
    assert_eq!(saved("c"), Some(3), "saved on drop");
    assert_eq!(dir.files(), ["near.snap"]);
}

#[test]
fn an_invalidation_while_down_is_not_undone() {
    let mc = Memcached::start();
    let dir = TestDir::new("warm-generation");
    let path = dir.file("near.snap");
    let build = || {
        two_tier(&mc, "gen")
            .generation_check(Duration::from_secs(1))
            .snapshot(&path, Duration::from_secs(3600))
            .build()
            .unwrap()
    };
    let first = build();
    assert_eq!(first.get_with("k".into(), || "v1".into()), "v1");
    drop(first);

    // Restarted with no invalidation meanwhile: the restored entry is of
    // the generation the first check finds, and is served.
    let second = build();
    assert_eq!(second.stats().restored, 1);
    assert_eq!(second.get_with("k".into(), || panic!("reloaded")), "v1");
    assert_eq!(second.stats().far_hits, 0);
    drop(second);

    // Another process invalidates the namespace while this one is down:
    // the restored entry (of the generation before) is dropped at the first
    // check, and the value loaded again.
    let other = two_tier(&mc, "gen")
        .generation_check(Duration::from_secs(1))
        .build()
        .unwrap();
    other.invalidate_all().unwrap();
    let third = build();
    assert_eq!(third.stats().restored, 1);
    assert_eq!(third.get_with("k".into(), || "v2".into()), "v2");
    assert_eq!(third.stats().loader_calls, 1);
}

#[test]
fn a_preload_warms_a_new_process_from_memcached() {
    let mc = Memcached::start();
    let dir = TestDir::new("warm-preload");
    let keys = dir.file("near.keys");
    let n = 3_000;
    let first = two_tier(&mc, "pre").preload(&keys).build().unwrap();
    for i in 0..n {
        first.get_with(key(i), || value(i));
    }
    drop(first); // saves the keys
    // Keys only: not a snapshot of entries, and far smaller than the values.
    let entries: Cache<String, String> = Cache::new(10);
    assert!(matches!(
        entries.load(&keys),
        Err(SnapshotError::WrongType { .. })
    ));
    let size = std::fs::metadata(&keys).unwrap().len();
    assert!(size < (n * 40) as u64, "{size} bytes for {n} keys");

    let restarted = two_tier(&mc, "pre").preload(&keys).build().unwrap();
    wait_until("the preload", || restarted.stats().preloaded == n as u64);
    for i in 0..n {
        assert_eq!(
            restarted.get_with(key(i), || panic!("loaded {i}")),
            value(i)
        );
    }
    let s = restarted.stats();
    assert_eq!((s.near_hits, s.loader_calls), (n as u64, 0));
    assert_eq!(s.far_errors, 0);
}

#[test]
fn a_preload_against_a_dead_far_tier_neither_fails_nor_blocks() {
    let mut mc = Memcached::start();
    let dir = TestDir::new("warm-preload-dead");
    let keys = dir.file("near.keys");
    let first = two_tier(&mc, "dead").preload(&keys).build().unwrap();
    for i in 0..2_500 {
        first.insert(key(i), value(i));
    }
    drop(first);
    mc.stop();

    let restarted = two_tier(&mc, "dead").preload(&keys).build().unwrap();
    // The caller is served by its loader meanwhile.
    assert_eq!(restarted.get_with(key(1), || "loaded".into()), "loaded");
    wait_until("the preload's failure", || {
        restarted.stats().far_errors >= 1
    });
    assert_eq!(restarted.stats().preloaded, 0);
    drop(restarted); // the preload's thread is joined: it gave up
}

#[test]
fn memcached_restarted_from_its_memory_file_keeps_its_values() {
    let dir = TestDir::new("warm-memcached");
    let memory = dir.file("memcached.mem");
    let memory = memory.to_str().expect("a UTF-8 path");
    let mut mc = Memcached::start_with(&["-e", memory]);
    let cache = two_tier(&mc, "mc").build().unwrap();
    for i in 0..200 {
        cache.insert(key(i), value(i));
    }
    mc.restart_graceful();

    // The same client reconnects by itself; values come from the far tier.
    for i in 0..200 {
        cache.remove_near(&key(i));
        assert_eq!(cache.get(&key(i)), Some(value(i)), "key {i}");
    }
    let s = cache.stats();
    assert_eq!((s.far_hits, s.far_errors), (200, 0));
    // A new process reads them too.
    let fresh = two_tier(&mc, "mc").build().unwrap();
    assert_eq!(fresh.get_with(key(7), || panic!("lost")), value(7));
}

#[cfg(feature = "tokio")]
#[path = "common/runtimes.rs"]
mod runtimes;

#[cfg(feature = "tokio")]
mod asynchronous {
    use std::time::Duration;

    use nearfar::memcached::Client;
    use nearfar::{AsyncNearFar, Cache};

    use super::{TestDir, key, runtimes, server::Memcached, value};

    fn build(
        mc: &Memcached,
        namespace: &str,
        snapshot: Option<&std::path::Path>,
        preload: Option<&std::path::Path>,
    ) -> AsyncNearFar<String, String> {
        let client = Client::builder()
            .servers([mc.addr()])
            .build_async()
            .expect("client");
        let mut builder = AsyncNearFar::builder()
            .near(Cache::builder().max_entries(10_000))
            .far(client)
            .namespace(namespace)
            .near_ttl(Duration::from_secs(60));
        if let Some(path) = snapshot {
            builder = builder.snapshot(path, Duration::from_secs(3600));
        }
        if let Some(path) = preload {
            builder = builder.preload(path);
        }
        builder.build().expect("AsyncNearFar")
    }

    #[test]
    fn async_nearfar_restarts_warm_from_a_snapshot_and_a_preload() {
        let mc = Memcached::start();
        let dir = TestDir::new("warm-async");
        runtimes::on_both_runtimes(|runtime| {
            let (mc, dir) = (&mc, &dir);
            async move {
                let ns = format!("async-{runtime}");
                let snap = dir.file(&format!("{runtime}.snap"));
                let keys = dir.file(&format!("{runtime}.keys"));
                let first = build(mc, &ns, Some(&snap), Some(&keys));
                for i in 0..1_500 {
                    first.get_with(key(i), || async move { value(i) }).await;
                }
                drop(first); // saves both

                let from_snapshot = build(mc, &ns, Some(&snap), None);
                assert_eq!(from_snapshot.stats().restored, 1_500, "{runtime}");
                drop(from_snapshot);

                std::fs::remove_file(&snap).unwrap();
                let preloaded = build(mc, &ns, None, Some(&keys));
                runtimes::wait_until("the preload", Duration::from_secs(10), || {
                    preloaded.stats().preloaded == 1_500
                })
                .await;
                for i in 0..1_500 {
                    let v = preloaded
                        .get_with(key(i), || async move { panic!("loaded {i}") })
                        .await;
                    assert_eq!(v, value(i));
                }
                assert_eq!(preloaded.stats().loader_calls, 0, "{runtime}");
            }
        });
    }
}
