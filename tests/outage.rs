//! Nothing undone by an outage: writes and removals that a memcached server
//! did not take (stalled with SIGSTOP, ejected from the ring, refusing the
//! value) must not come back when it answers again, and a lease left behind
//! by a stall must not make the fleet wait.
#![cfg(feature = "memcached")]

#[path = "common/memcached.rs"]
mod server;

use std::thread;
use std::time::{Duration, Instant};

use nearfar::MockClock;
use nearfar::NearFar;
use nearfar::memcached::{Client, ClientBuilder, Error, Lease};
use server::Memcached;

const MS: Duration = Duration::from_millis(1);
const MINUTE: Duration = Duration::from_secs(60);

/// The settings: I/O timeout 200 ms, dead for 1 s after two
/// failures.
fn client(servers: &[String]) -> Client {
    settings(servers).build().expect("client")
}

fn settings(servers: &[String]) -> ClientBuilder {
    Client::builder()
        .servers(servers)
        .io_timeout(200 * MS)
        .connect_timeout(200 * MS)
        .dead_timeout(Duration::from_secs(1))
        .retry_attempts(2)
}

/// A client whose server health runs on `clock`: dead periods end when the
/// test says, not after a sleep.
fn client_on(servers: &[String], clock: &MockClock) -> Client {
    settings(servers)
        .clock(clock.clone())
        .build()
        .expect("client")
}

fn instance(client: Client) -> NearFar<String, String> {
    NearFar::builder()
        .far(client)
        .namespace("outage")
        .near_ttl(Duration::from_secs(1))
        .revalidate_after(Duration::from_secs(1))
        .build()
        .expect("NearFar")
}

/// Makes `client` mark the (paused) server of `probe` dead: two reads that
/// time out.
fn mark_dead(client: &Client, server: &str, probe: &str) {
    for _ in 0..2 {
        assert!(client.get::<String>(probe).is_err());
    }
    assert!(client.is_marked_dead(server), "{server} not marked dead");
}

#[test]
fn writes_and_removals_during_an_outage_are_not_undone() {
    let mc = Memcached::start();
    let servers = [mc.addr()];
    let (ca, cb) = (client(&servers), client(&servers));
    let (a, b) = (instance(ca.clone()), instance(cb));
    let (k, gone) = ("k".to_string(), "gone".to_string());
    a.insert(k.clone(), "v1".into());
    a.insert(gone.clone(), "x".into());
    assert_eq!(b.get(&k).as_deref(), Some("v1"));

    mc.pause();
    // Two reads through NearFar time out: the client marks the server dead.
    assert_eq!(a.get(&"other-1".to_string()), None);
    assert_eq!(a.get(&"other-2".to_string()), None);
    assert!(ca.is_marked_dead(&mc.addr()));
    a.insert(k.clone(), "v2".into()); // far write skipped
    a.remove(&gone); // far removal skipped
    mc.resume();
    // Past the dead timeout and every near TTL.
    thread::sleep(Duration::from_millis(2_500));

    let old_k = || Some("v1".to_string());
    for round in 0..2 {
        let (ak, bk, bgone) = (a.get(&k), b.get(&k), b.get(&gone));
        assert_ne!(
            ak,
            old_k(),
            "round {round}: the writer read its undone write"
        );
        assert_ne!(
            bk,
            old_k(),
            "round {round}: another process read the older value"
        );
        assert_eq!(bgone, None, "round {round}: a removed key came back");
        thread::sleep(Duration::from_millis(1_200));
    }
    // The far tier holds no older copy either.
    let plain = client(&servers);
    assert_eq!(plain.get::<String>("outage:gone").unwrap(), None);
    assert_ne!(plain.get::<String>("outage:k").unwrap(), old_k());
}

#[test]
fn a_write_that_timed_out_is_invalidated_when_the_server_answers() {
    let mc = Memcached::start();
    let servers = [mc.addr()];
    let clock = MockClock::new();
    let c = client_on(&servers, &clock);
    c.set("k", "v1", MINUTE).unwrap();
    mc.pause();
    // Not marked dead after one failure: the next request goes to the
    // server, and invalidates the key there first.
    let deleted = c.delete("k");
    assert!(matches!(deleted, Err(Error::Timeout)), "{deleted:?}");
    mc.resume();
    assert_eq!(c.get::<String>("k").unwrap(), None);
    // An unconditional write that failed for good (no server up) too.
    c.set("j", "v1", MINUTE).unwrap();
    mc.pause();
    mark_dead(&c, &mc.addr(), "probe");
    assert!(matches!(
        c.set("j", "v2", MINUTE),
        Err(Error::AllServersDown)
    ));
    mc.resume();
    clock.advance(Duration::from_millis(1_100));
    assert_eq!(c.get::<String>("j").unwrap(), None, "the older j came back");
}

#[test]
fn ketama_failover_rewrites_are_not_undone_when_the_server_returns() {
    let servers = [Memcached::start(), Memcached::start(), Memcached::start()];
    let addrs: Vec<String> = servers.iter().map(Memcached::addr).collect();
    let clock = MockClock::new();
    let c = client_on(&addrs, &clock);
    const KEYS: usize = 300;
    let key = |i: usize| format!("key-{i}");
    for i in 0..KEYS {
        c.set(&key(i), "v1", MINUTE).unwrap();
    }
    let victim = &servers[0];
    let on_victim: Vec<usize> = (0..KEYS)
        .filter(|&i| c.server_for(&key(i)).unwrap() == victim.addr())
        .collect();
    assert!(on_victim.len() > 20, "too few keys on the victim to test");

    victim.pause();
    mark_dead(&c, &victim.addr(), &key(on_victim[0]));
    for i in 0..KEYS {
        c.set(&key(i), "v2", MINUTE).unwrap(); // the victim's keys fail over
    }
    victim.resume();
    clock.advance(Duration::from_millis(1_100));
    let old: Vec<usize> = (0..KEYS)
        .filter(|&i| c.get::<String>(&key(i)).unwrap().as_deref() == Some("v1"))
        .collect();
    assert!(
        old.is_empty(),
        "{} keys read their older copy: {old:?}",
        old.len()
    );
    assert!(!c.is_marked_dead(&victim.addr()));

    // Written again with the victim back (v3), then the victim is ejected
    // again: the stand-ins' v2 copies must not be served in its place.
    for &i in &on_victim {
        c.set(&key(i), "v3", MINUTE).unwrap();
    }
    victim.pause();
    mark_dead(&c, &victim.addr(), &key(on_victim[0]));
    let stale: Vec<usize> = on_victim
        .iter()
        .copied()
        .filter(|&i| c.get::<String>(&key(i)).unwrap().as_deref() == Some("v2"))
        .collect();
    victim.resume();
    assert!(
        stale.is_empty(),
        "stand-ins served {} older copies",
        stale.len()
    );
}

#[test]
fn an_overflowing_record_empties_the_server_instead_of_forgetting() {
    let mc = Memcached::start();
    let servers = [mc.addr()];
    let clock = MockClock::new();
    let c = settings(&servers)
        .pending_invalidations(2)
        .clock(clock.clone())
        .build()
        .unwrap();
    for key in ["a", "b", "c", "untouched"] {
        c.set(key, "v1", MINUTE).unwrap();
    }
    mc.pause();
    mark_dead(&c, &mc.addr(), "probe");
    for key in ["a", "b", "c"] {
        assert!(c.set(key, "v2", MINUTE).is_err());
    }
    mc.resume();
    clock.advance(Duration::from_millis(1_100));
    for key in ["a", "b", "c", "untouched"] {
        assert_eq!(c.get::<String>(key).unwrap(), None, "{key} survived");
    }
}

#[test]
fn a_refused_write_removes_the_older_far_copy() {
    let mc = Memcached::start();
    let small = || {
        Client::builder()
            .servers([mc.addr()])
            .max_item_size(64)
            .build()
            .unwrap()
    };
    let (a, b) = (instance(small()), instance(small()));
    let k = "k".to_string();
    a.insert(k.clone(), "v1".into());
    a.insert(k.clone(), "x".repeat(1_000)); // over the item limit
    assert_eq!(a.get(&k).map(|v| v.len()), Some(1_000), "kept near");
    assert_eq!(b.get(&k), None, "the older far copy was served");
}

#[test]
fn an_abandoned_lease_costs_the_fleet_one_wait() {
    let mc = Memcached::start();
    let lease_wait = 300 * MS;
    let make = || {
        NearFar::<String, String>::builder()
            .far(client(&[mc.addr()]))
            .namespace("lease")
            .lease_wait(lease_wait)
            .build()
            .unwrap()
    };
    // A holder that won the lease and died: its placeholder stays for the
    // lease TTL (10 s), filled by nobody.
    let holder = client(&[mc.addr()]);
    let won = holder.get_or_lease::<String>("lease:k", Duration::from_secs(10));
    assert!(matches!(won, Ok(Lease::Won { previous: None, .. })));

    // Four new processes in a row ask for the key.
    let stats: Vec<_> = (0..4)
        .map(|i| {
            let nf = make();
            let value = nf.get_with("k".to_string(), || format!("loaded by {i}"));
            assert_eq!(value, "loaded by 0");
            nf.stats()
        })
        .collect();
    let total = |f: fn(&nearfar::NearFarStats) -> u64| stats.iter().map(f).sum::<u64>();
    assert_eq!(total(|s| s.lease_waits), 1, "{stats:#?}");
    assert_eq!(total(|s| s.lease_takeovers), 1);
    assert_eq!(total(|s| s.lease_timeouts), 0);
    assert_eq!(total(|s| s.loader_calls), 1);
    assert!(stats[1..].iter().all(|s| s.far_hits == 1));
}

#[test]
fn a_lease_request_lost_in_a_stall_is_cleaned_up_by_its_sender() {
    let mc = Memcached::start();
    let make = || {
        NearFar::<String, String>::builder()
            .far(client(&[mc.addr()]))
            .namespace("stall")
            .lease_wait(Duration::from_secs(1))
            .build()
            .unwrap()
    };
    let a = make();
    mc.pause();
    // The lease request times out; memcached runs it when it resumes,
    // leaving a placeholder that nobody fills.
    assert_eq!(a.get_with("k".to_string(), || "local".into()), "local");
    mc.resume();
    let raw = client(&[mc.addr()]);
    let deadline = Instant::now() + Duration::from_secs(5);
    while raw.peek_lease_cas("stall:k").unwrap() != Some(Lease::Wait) {
        assert!(
            Instant::now() < deadline,
            "the stalled lease request never ran"
        );
        thread::sleep(10 * MS);
    }
    // Its sender's next request cleans the placeholder up ...
    assert_eq!(a.get(&"other".to_string()), None);
    // ... so a new process does not wait on it.
    let b = make();
    assert_eq!(b.get_with("k".to_string(), || "fresh".into()), "fresh");
    assert_eq!(b.stats().lease_waits, 0, "{:#?}", b.stats());
}

/// A server that answers the first request with a won lease (`mg ... N`)
/// and then goes silent, keeping every connection open; returns its
/// address and the request lines it received (data blocks left out).
fn wins_then_stalls() -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use std::io::{BufRead, BufReader, Write};
    use std::sync::{Arc, Mutex};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let lines = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&lines);
    thread::spawn(move || {
        // Bounded: a handful of connections, each read until it closes
        // or goes quiet for 5 s.
        for stream in listener.incoming().take(8) {
            let Ok(stream) = stream else { return };
            let seen = Arc::clone(&seen);
            thread::spawn(move || {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let mut writer = stream.try_clone().unwrap();
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { return };
                    if !line.starts_with("m") {
                        continue; // a data block
                    }
                    let first = {
                        let mut seen = seen.lock().unwrap();
                        seen.push(line.clone());
                        seen.len() == 1
                    };
                    if first {
                        // Echo the key and opaque token the request carries,
                        // as memcached does, so the reply matches it.
                        let mut reply = String::from("VA 0 c7 t10 f0 W");
                        let mut tokens = line.split_whitespace().skip(1);
                        let key = tokens.next().unwrap_or_default();
                        for token in tokens {
                            if token == "k" {
                                reply.push_str(&format!(" k{key}"));
                            } else if token.starts_with('O') {
                                reply.push_str(&format!(" {token}"));
                            }
                        }
                        reply.push_str("\r\n\r\n");
                        let _ = writer.write_all(reply.as_bytes());
                    }
                }
            });
        }
    });
    (addr, lines)
}

#[test]
fn a_call_stops_asking_a_server_that_stopped_answering() {
    let (addr, lines) = wins_then_stalls();
    let c = Client::builder()
        .servers([addr.as_str()])
        .io_timeout(100 * MS)
        .build()
        .unwrap();
    let nf: NearFar<String, String> = NearFar::builder()
        .far(c)
        .circuit_breaker(0, Duration::from_secs(1))
        .build()
        .unwrap();
    // The lease is won; the store after the loader times out; the lease
    // release that would follow is not sent: it would wait out the same
    // silent server a second time.
    assert_eq!(nf.get_with("k".to_string(), || "v".into()), "v");
    let lines = lines.lock().unwrap().clone();
    let kinds: Vec<&str> = lines.iter().map(|l| &l[..2]).collect();
    assert_eq!(kinds, ["mg", "ms"], "{lines:?}");
}

#[test]
fn waiters_timing_out_together_take_an_old_lease_over_once() {
    let mc = Memcached::start();
    let make = |wait: Duration| {
        NearFar::<String, String>::builder()
            .far(client(&[mc.addr()]))
            .namespace("herd")
            .lease_wait(wait)
            .build()
            .unwrap()
    };
    // A holder that won the lease and hangs in its loader.
    let holder = client(&[mc.addr()]);
    let won = holder.get_or_lease::<String>("herd:k", Duration::from_secs(10));
    assert!(matches!(won, Ok(Lease::Won { .. })));

    // Three processes wait on it, time out together: one takes it over and
    // loads; the others must wait for that one, not take over in turn
    // (each deleting the placeholder of the one before, so every load's
    // store is refused and each loads for itself).
    const WAITERS: usize = 3;
    let barrier = std::sync::Barrier::new(WAITERS);
    let waiters: Vec<_> = (0..WAITERS).map(|_| make(300 * MS)).collect();
    let values: Vec<String> = thread::scope(|s| {
        let handles: Vec<_> = waiters
            .iter()
            .enumerate()
            .map(|(i, nf)| {
                let barrier = &barrier;
                s.spawn(move || {
                    barrier.wait();
                    nf.get_with("k".to_string(), || {
                        thread::sleep(100 * MS);
                        format!("loaded by {i}")
                    })
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let total =
        |f: fn(&nearfar::NearFarStats) -> u64| waiters.iter().map(|nf| f(&nf.stats())).sum::<u64>();
    assert_eq!(total(|s| s.loader_calls), 1, "{values:?}");
    assert_eq!(total(|s| s.lease_takeovers), 1);
    assert!(values.iter().all(|v| v == &values[0]), "{values:?}");
    assert_eq!(make(MS).get(&"k".to_string()), Some(values[0].clone()));
}

#[test]
fn a_key_written_through_two_stand_ins_is_not_read_from_the_first() {
    let servers = [Memcached::start(), Memcached::start(), Memcached::start()];
    let addrs: Vec<String> = servers.iter().map(Memcached::addr).collect();
    let clock = MockClock::new();
    let c = client_on(&addrs, &clock);
    let index_of = |label: String| addrs.iter().position(|a| *a == label).unwrap();
    // A key whose home is server 0.
    let key = (0..1_000)
        .map(|i| format!("key-{i}"))
        .find(|k| c.server_for(k).unwrap() == addrs[0])
        .expect("a key on server 0");
    c.set(&key, "v1", MINUTE).unwrap();

    servers[0].pause();
    mark_dead(&c, &addrs[0], &key);
    let first = index_of(c.server_for(&key).unwrap());
    c.set(&key, "v2", MINUTE).unwrap(); // to the first stand-in
    servers[first].pause();
    mark_dead(&c, &addrs[first], &key);
    c.set(&key, "v3", MINUTE).unwrap(); // to the second stand-in
    assert_ne!(index_of(c.server_for(&key).unwrap()), first);

    // The first stand-in comes back while the home server is still out:
    // reads of the key go to it, and must not find v2 there.
    servers[first].resume();
    clock.advance(Duration::from_millis(1_100));
    let mut read = Vec::new();
    for _ in 0..4 {
        // The home server's probe times out once; the reads after it go to
        // the first stand-in.
        read.push(c.get::<String>(&key).ok().flatten());
    }
    servers[0].resume();
    assert!(
        !read.iter().any(|v| v.as_deref() == Some("v2")),
        "the first stand-in served the write the second one replaced: {read:?}"
    );
    assert!(
        read.contains(&None) || read.contains(&Some("v3".into())),
        "{read:?}"
    );
}

#[test]
fn a_server_that_will_not_forget_is_ejected_rather_than_read() {
    // memcached with flush_all disabled (-F) cannot be emptied, and an
    // overflowing record (a limit of 0 here) asks for exactly that.
    let mc = Memcached::start_with(&["-F"]);
    let servers = [mc.addr()];
    let clock = MockClock::new();
    let c = settings(&servers)
        .pending_invalidations(0)
        .clock(clock.clone())
        .build()
        .unwrap();
    c.set("k", "v1", MINUTE).unwrap();
    mc.pause();
    assert!(c.set("k", "v2", MINUTE).is_err()); // owed: a flush
    mc.resume();
    // The flush is refused: no read may return the older value, and the
    // server is ejected, as one that does not answer is.
    for _ in 0..3 {
        let got = c.get::<String>("k");
        assert!(!matches!(got, Ok(Some(ref v)) if v == "v1"), "{got:?}");
    }
    assert!(c.is_marked_dead(&mc.addr()));
}

#[test]
fn a_lease_wait_runs_on_the_injected_clock() {
    let mc = Memcached::start();
    let clock = MockClock::new();
    // A ten-second lease wait, on a clock that only moves when told to: the
    // waiter's pauses advance it, so the test waits for nothing real.
    let nf: NearFar<String, String> = NearFar::builder()
        .far(client(&[mc.addr()]))
        .namespace("mock")
        .lease_wait(Duration::from_secs(10))
        .lease_ttl(Duration::from_secs(60)) // as the holder's lease below
        .clock(clock.clone())
        .build()
        .unwrap();
    let holder = client(&[mc.addr()]);
    let won = holder.get_or_lease::<String>("mock:k", Duration::from_secs(60));
    assert!(matches!(won, Ok(Lease::Won { .. })));
    let started = Instant::now();
    assert_eq!(nf.get_with("k".to_string(), || "v".into()), "v");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "slept in real time: {:?}",
        started.elapsed()
    );
    assert!(clock.elapsed() >= Duration::from_secs(10));
    let s = nf.stats();
    assert_eq!(
        (s.lease_waits, s.lease_takeovers, s.loader_calls),
        (1, 1, 1)
    );
}
