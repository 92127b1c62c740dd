//! `invalidate_all` against real memcached: separate `NearFar` instances
//! (each stands for a process) sharing one server and namespace, with near
//! copies that would otherwise live for an hour. After one instance
//! invalidates, every instance serves the fresh value within
//! `generation_check` plus one round trip (timed on the real clock), and
//! the far items written before are never read again. Also: a counter lost
//! in memcached is put back, not started again; keys other clients name
//! change only at the first invalidation; a far tier down is reported, and
//! reads go on. With feature `tokio`, the same for `AsyncNearFar` on both
//! runtimes, and between the two kinds of handle.
#![cfg(feature = "memcached")]

#[path = "common/memcached.rs"]
mod server;

#[cfg(feature = "tokio")]
#[path = "common/runtimes.rs"]
mod runtimes;

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use nearfar::memcached::Client;
use nearfar::{Cache, InvalidateError, MockClock, NearFar};
use server::Memcached;

const MS: Duration = Duration::from_millis(1);

/// Every instance's `generation_check` in the timed tests.
const CHECK: Duration = Duration::from_millis(250);

/// What the bound allows beyond `CHECK`: the check's round trip (well
/// under a millisecond on loopback), the reader's own pause between reads
/// (1 ms), the loader and the lease, and scheduling noise on a busy
/// machine.
const SLACK: Duration = Duration::from_millis(150);

/// Near and far TTLs: far longer than any test, so only an invalidation
/// can make an instance drop its copy.
const HOUR: Duration = Duration::from_secs(3600);

fn client(mc: &Memcached) -> Client {
    Client::builder()
        .servers([mc.addr()])
        .io_timeout(200 * MS)
        .connect_timeout(200 * MS)
        .build()
        .expect("client")
}

/// An instance checking the namespace's generation every [`CHECK`], with
/// near copies kept for an hour.
fn instance(mc: &Memcached, namespace: &str) -> NearFar<String, String> {
    NearFar::builder()
        .near(Cache::builder().max_entries(1_000))
        .far(client(mc))
        .namespace(namespace)
        .far_ttl(HOUR)
        .near_ttl(HOUR)
        .generation_check(CHECK)
        .build()
        .expect("NearFar")
}

/// An instance on `clock`, checking every second of it.
fn on_clock(mc: &Memcached, clock: &MockClock, namespace: &str) -> NearFar<String, String> {
    NearFar::builder()
        .near(Cache::builder().max_entries(1_000).clock(clock.clone()))
        .far(client(mc))
        .namespace(namespace)
        .far_ttl(HOUR)
        .near_ttl(HOUR)
        .generation_check(Duration::from_secs(1))
        .clock(clock.clone())
        .build()
        .expect("NearFar")
}

fn k(s: &str) -> String {
    s.to_string()
}

/// The source of truth behind the cache, and how often it was read.
struct Source {
    value: Mutex<String>,
    loads: AtomicUsize,
}

impl Source {
    fn new(value: &str) -> Self {
        Source {
            value: Mutex::new(value.to_string()),
            loads: AtomicUsize::new(0),
        }
    }

    fn load(&self) -> String {
        self.loads.fetch_add(1, Ordering::SeqCst);
        self.value.lock().unwrap().clone()
    }

    fn set(&self, value: &str) {
        *self.value.lock().unwrap() = value.to_string();
    }

    fn loads(&self) -> usize {
        self.loads.load(Ordering::SeqCst)
    }
}

#[test]
fn four_instances_serve_the_fresh_value_within_the_bound() {
    let mc = Memcached::start();
    let raw = client(&mc);
    let fleet: Vec<_> = (0..4).map(|_| instance(&mc, "fleet")).collect();
    let source = Source::new("v1");
    let key = k("price");
    // Each instance's first read makes its first check, a quarter of an
    // interval after the previous one's: their checks stay apart, so the
    // invalidation finds each at another point of its interval.
    for nf in &fleet {
        assert_eq!(nf.get_with(key.clone(), || source.load()), "v1");
        thread::sleep(CHECK / 4);
    }
    assert_eq!(source.loads(), 1, "one load across the fleet");
    let old_key = fleet[0].far_key(&key).unwrap();
    assert_eq!(old_key, "fleet:price", "no generation tag before");

    // Every instance reads the key every millisecond on its own thread;
    // the source changes and instance 0 invalidates while they do.
    let invalidated: Mutex<Option<Instant>> = Mutex::new(None);
    let readers_started = Instant::now();
    let (seen, returned) = thread::scope(|s| {
        let readers: Vec<_> = fleet
            .iter()
            .map(|nf| {
                let (key, source, invalidated) = (&key, &source, &invalidated);
                s.spawn(move || {
                    let limit = Instant::now() + Duration::from_secs(10);
                    for _ in 0..100_000 {
                        let value = nf.get_with(key.clone(), || source.load());
                        if value == "v2" {
                            let at = invalidated.lock().unwrap().expect("v2 after");
                            return at.elapsed();
                        }
                        assert_eq!(value, "v1");
                        assert!(Instant::now() < limit, "v2 not seen in 10 s");
                        thread::sleep(MS);
                    }
                    panic!("v2 not seen in 100,000 reads");
                })
            })
            .collect();
        // The readers run a few checks' worth first (steady state).
        thread::sleep(3 * CHECK + CHECK / 8);
        source.set("v2");
        let at = Instant::now();
        *invalidated.lock().unwrap() = Some(at);
        fleet[0].invalidate_all().expect("invalidate_all");
        let returned = at.elapsed();
        let seen: Vec<Duration> = readers.into_iter().map(|r| r.join().unwrap()).collect();
        (seen, returned)
    });
    let ran = readers_started.elapsed();
    eprintln!(
        "invalidate_all returned in {returned:?}; instances saw the fresh value after {seen:?} \
         (generation_check {CHECK:?})"
    );
    for (i, took) in seen.iter().enumerate() {
        assert!(
            *took <= CHECK + SLACK,
            "instance {i} served the old value for {took:?}, over {CHECK:?} + {SLACK:?}"
        );
    }
    assert!(
        seen[0] <= returned + SLACK,
        "the invalidating instance at once"
    );

    // One request per interval per instance, not one per read: each read
    // about every millisecond for `ran`.
    for (i, nf) in fleet.iter().enumerate() {
        let s = nf.stats();
        let most = u64::try_from(ran.as_millis() / CHECK.as_millis()).unwrap() + 2;
        assert!(
            s.generation_checks <= most,
            "instance {i}: {} checks in {ran:?}",
            s.generation_checks
        );
        assert!(s.near_hits > 10 * s.generation_checks, "{s:?}");
        assert_eq!(s.invalidations, 1, "instance {i}");
        assert_eq!(s.far_errors, 0, "instance {i}");
    }
    assert_eq!(
        source.loads(),
        2,
        "one load of the fresh value across the fleet"
    );

    // The far items written before are never read again: the old key still
    // holds v1, and a value written there now (a process that knows no
    // generation, say) is not read either.
    let new_key = fleet[1].far_key(&key).unwrap();
    assert_eq!(new_key, "fleet:#g1:price");
    assert_eq!(raw.get::<String>(&old_key).unwrap().as_deref(), Some("v1"));
    raw.set(&old_key, "poison", HOUR).unwrap();
    for nf in &fleet {
        nf.remove_near(&key);
        assert_eq!(nf.get(&key).as_deref(), Some("v2"));
    }
    // A process started after the invalidation reads the new far item.
    let late = instance(&mc, "fleet");
    assert_eq!(late.get_with(key.clone(), || unreachable!()), "v2");
    assert_eq!(late.stats().far_hits, 1);
    assert_eq!(source.loads(), 2);
}

#[test]
fn gets_never_read_the_far_items_of_an_older_generation() {
    let mc = Memcached::start();
    let clock = MockClock::new();
    let (a, b, c) = (
        on_clock(&mc, &clock, "gets"),
        on_clock(&mc, &clock, "gets"),
        on_clock(&mc, &clock, "gets"),
    );
    let key = k("k");
    a.insert(key.clone(), k("v1"));
    assert_eq!(b.get(&key).as_deref(), Some("v1"));
    assert_eq!(c.get(&key).as_deref(), Some("v1"));

    a.invalidate_all().unwrap();
    assert_eq!(a.get(&key), None, "the invalidating instance at once");
    // Before their next check, the others go on with their copies.
    assert_eq!(b.get(&key).as_deref(), Some("v1"));
    clock.advance(Duration::from_secs(1));
    // At it, they drop them, and the far item of generation 0 is not read:
    // nothing was written in generation 1 yet.
    assert_eq!(b.get(&key), None);
    assert_eq!(c.get(&key), None);
    a.insert(key.clone(), k("v2"));
    assert_eq!(b.get(&key).as_deref(), Some("v2"));
    assert_eq!(c.get(&key).as_deref(), Some("v2"));
    // Twice more: each instance takes each newer generation once.
    a.invalidate_all().unwrap();
    b.invalidate_all().unwrap();
    clock.advance(Duration::from_secs(1));
    for nf in [&a, &b, &c] {
        assert_eq!(nf.get(&key), None);
        assert_eq!(nf.far_key(&key).as_deref(), Some("gets:#g3:k"));
    }
    // a: its own 1 and 2, then 3; b: 1, then its own 3; c: 1, then 3.
    let stats = [a.stats(), b.stats(), c.stats()];
    assert_eq!(stats.map(|s| s.invalidations), [3, 2, 2]);
}

#[test]
fn keys_other_clients_name_change_only_at_the_first_invalidation() {
    let mc = Memcached::start();
    let raw = client(&mc);
    let clock = MockClock::new();
    let nf = on_clock(&mc, &clock, "shared");
    // Another client (pymemcache, say) wrote the plain key: read as before.
    raw.set("shared:42", "from python", HOUR).unwrap();
    assert_eq!(nf.get(&k("42")).as_deref(), Some("from python"));
    assert_eq!(nf.far_key(&k("42")).as_deref(), Some("shared:42"));
    assert_eq!(raw.get_raw("shared:#generation").unwrap(), None);

    nf.invalidate_all().unwrap();
    // The counter is a plain decimal number other clients can read.
    let (counter, _) = raw.get_raw("shared:#generation").unwrap().unwrap();
    assert_eq!(counter, b"1");
    assert_eq!(nf.far_key(&k("42")).as_deref(), Some("shared:#g1:42"));
    assert_eq!(nf.get(&k("42")), None, "the plain key is not read");
    raw.set("shared:#g1:42", "tagged", HOUR).unwrap();
    assert_eq!(nf.get(&k("42")).as_deref(), Some("tagged"));
    // Long keys are digested after the tag, within 250 bytes.
    let long = "x".repeat(240);
    let fkey = nf.far_key(&long).unwrap();
    assert!(
        fkey.starts_with("shared:#g1:#") && fkey.len() == 11 + 33,
        "{fkey}"
    );
    assert_eq!(nf.get_with(long.clone(), || k("long")), "long");
    assert_eq!(raw.get::<String>(&fkey).unwrap().as_deref(), Some("long"));
}

#[test]
fn a_lost_counter_is_put_back_not_started_again() {
    let mc = Memcached::start();
    let raw = client(&mc);
    let clock = MockClock::new();
    let (a, b) = (on_clock(&mc, &clock, "lost"), on_clock(&mc, &clock, "lost"));
    let key = k("k");
    a.invalidate_all().unwrap();
    a.invalidate_all().unwrap();
    assert_eq!(b.get(&key), None); // b's first check: generation 2
    a.insert(key.clone(), k("in generation 2"));
    assert_eq!(b.get(&key).as_deref(), Some("in generation 2"));
    // Generation 0's item is still there, from before.
    raw.set("lost:k", "generation 0", HOUR).unwrap();

    // The counter is lost (evicted, flushed, its server replaced).
    assert!(raw.delete("lost:#generation").unwrap());
    clock.advance(Duration::from_secs(1));
    b.remove_near(&key);
    assert_eq!(b.get(&key).as_deref(), Some("in generation 2"), "not 0's");
    let counter = |raw: &Client| raw.get_raw("lost:#generation").unwrap().unwrap().0;
    assert_eq!(counter(&raw), b"2", "put back by b's check");
    // A process started now finds generation 2, not 0.
    let late = on_clock(&mc, &clock, "lost");
    assert_eq!(late.get(&key).as_deref(), Some("in generation 2"));

    // Made again lower elsewhere: raised back by the next check, and a
    // bump goes past every generation used.
    raw.set("lost:#generation", "1", Duration::ZERO).unwrap();
    clock.advance(Duration::from_secs(1));
    assert_eq!(b.get(&key).as_deref(), Some("in generation 2"));
    assert_eq!(counter(&raw), b"2");
    raw.delete("lost:#generation").unwrap();
    a.invalidate_all().unwrap();
    assert_eq!(counter(&raw), b"3");
    assert_eq!(a.far_key(&key).as_deref(), Some("lost:#g3:k"));
}

#[test]
fn a_far_tier_down_is_reported_and_reads_go_on() {
    let mut mc = Memcached::start();
    let nf: NearFar<String, String> = NearFar::builder()
        .far(client(&mc))
        .namespace("down")
        .near_ttl(HOUR)
        .generation_check(CHECK)
        .circuit_breaker(1, Duration::from_secs(60))
        .build()
        .unwrap();
    let key = k("k");
    assert_eq!(nf.get_with(key.clone(), || k("v")), "v");
    mc.stop();
    assert_eq!(nf.invalidate_all(), Err(InvalidateError::NoAnswer));
    assert!(nf.far_breaker_open());
    assert_eq!(nf.invalidate_all(), Err(InvalidateError::Unavailable));
    // Reads go on, the due checks skipped, with the generation known.
    thread::sleep(CHECK + 10 * MS);
    let started = Instant::now();
    for i in 0..20 {
        assert_eq!(nf.get(&key).as_deref(), Some("v"));
        assert_eq!(nf.get_with(format!("new {i}"), || k("loaded")), "loaded");
    }
    assert!(started.elapsed() < Duration::from_secs(1), "nothing waited");
    assert_eq!(nf.stats().far_errors, 1);

    // Without generation_check, there is nothing to invalidate far.
    let plain: NearFar<String, String> = NearFar::builder().far(client(&mc)).build().unwrap();
    assert_eq!(plain.invalidate_all(), Err(InvalidateError::NotEnabled));
}

#[cfg(feature = "tokio")]
mod on_tokio {
    //! The same for `AsyncNearFar`, on both runtimes, and between an async
    //! and a blocking handle.

    use super::*;
    use nearfar::AsyncNearFar;
    use nearfar::memcached::AsyncClient;

    fn async_client(addr: &str) -> AsyncClient {
        Client::builder()
            .servers([addr])
            .io_timeout(200 * MS)
            .connect_timeout(200 * MS)
            .build_async()
            .expect("client")
    }

    fn async_instance(addr: &str, namespace: &str) -> AsyncNearFar<String, String> {
        AsyncNearFar::builder()
            .far(async_client(addr))
            .namespace(namespace)
            .far_ttl(HOUR)
            .near_ttl(HOUR)
            .generation_check(CHECK)
            .build()
            .expect("AsyncNearFar")
    }

    #[test]
    fn four_async_instances_serve_the_fresh_value_within_the_bound() {
        let mc = Memcached::start();
        let addr = mc.addr();
        runtimes::on_both_runtimes(|runtime| {
            let addr = addr.clone();
            async move {
                let namespace = format!("async-{runtime}");
                let fleet: Vec<_> = (0..4).map(|_| async_instance(&addr, &namespace)).collect();
                let source = std::sync::Arc::new(Source::new("v1"));
                let key = k("price");
                // Checks a quarter of an interval apart (see the blocking test).
                for nf in &fleet {
                    let value = nf.get_with(key.clone(), || async { source.load() }).await;
                    assert_eq!(value, "v1");
                    tokio::time::sleep(CHECK / 4).await;
                }
                assert_eq!(source.loads(), 1);
                let invalidated = std::sync::Arc::new(Mutex::new(None::<Instant>));
                let readers: Vec<_> = fleet
                    .iter()
                    .cloned()
                    .map(|nf| {
                        let (key, source) = (key.clone(), source.clone());
                        let invalidated = invalidated.clone();
                        tokio::spawn(async move {
                            let limit = Instant::now() + Duration::from_secs(10);
                            for _ in 0..100_000 {
                                let value =
                                    nf.get_with(key.clone(), || async { source.load() }).await;
                                if value == "v2" {
                                    let at = invalidated.lock().unwrap().expect("v2 after");
                                    return at.elapsed();
                                }
                                assert_eq!(value, "v1");
                                assert!(Instant::now() < limit, "v2 not seen in 10 s");
                                tokio::time::sleep(MS).await;
                            }
                            panic!("v2 not seen in 100,000 reads");
                        })
                    })
                    .collect();
                tokio::time::sleep(3 * CHECK + CHECK / 8).await;
                source.set("v2");
                *invalidated.lock().unwrap() = Some(Instant::now());
                fleet[0].invalidate_all().await.expect("invalidate_all");
                let mut seen = Vec::new();
                for reader in readers {
                    seen.push(reader.await.expect("reader"));
                }
                eprintln!("{runtime}: instances saw the fresh value after {seen:?}");
                for (i, took) in seen.iter().enumerate() {
                    assert!(
                        *took <= CHECK + SLACK,
                        "{runtime}: instance {i} served the old value for {took:?}"
                    );
                }
                assert_eq!(source.loads(), 2, "{runtime}");
                assert_eq!(
                    fleet[3].far_key(&key),
                    Some(format!("{namespace}:#g1:price"))
                );
            }
        });
    }

    #[test]
    fn an_async_invalidation_reaches_a_blocking_instance() {
        let mc = Memcached::start();
        let blocking = instance(&mc, "mixed");
        let key = k("k");
        blocking.insert(key.clone(), k("v1"));
        assert_eq!(blocking.get(&key).as_deref(), Some("v1"));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let nf = async_instance(&mc.addr(), "mixed");
            assert_eq!(nf.get(&key).await.as_deref(), Some("v1"));
            nf.invalidate_all().await.unwrap();
            assert_eq!(nf.get(&key).await, None);
            nf.insert(key.clone(), k("v2")).await;
        });
        let limit = Instant::now() + CHECK + SLACK;
        while blocking.get(&key).as_deref() != Some("v2") {
            assert!(Instant::now() < limit, "not within {CHECK:?} + {SLACK:?}");
            thread::sleep(MS);
        }
        assert_eq!(blocking.far_key(&key).as_deref(), Some("mixed:#g1:k"));
    }
}
