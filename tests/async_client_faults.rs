//! The async client under cancellation and faults: requests dropped
//! mid-flight, a memcached killed, paused or ejected under load, writes a
//! server missed; on both tokio runtimes.
#![cfg(feature = "tokio")]

#[path = "common/memcached.rs"]
mod server;

#[path = "common/runtimes.rs"]
mod runtimes;

use std::collections::HashMap;
use std::future::{Future, poll_fn};
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nearfar::MockClock;
use nearfar::memcached::{AsyncClient, Client, Error};
use runtimes::{blocking, on_both_runtimes, wait_until};
use server::Memcached;
use tokio::task::JoinSet;

const MINUTE: Duration = Duration::from_secs(60);

/// The I/O (and connect) timeout of the fault tests' clients.
const IO: Duration = Duration::from_millis(200);

/// Their request timeout: the default, twice the I/O timeout.
const REQUEST: Duration = Duration::from_millis(400);

/// What a call may overrun its bound by on a loaded 2-core machine (a
/// bound on the worst call, not a speed target).
const SLACK: Duration = Duration::from_millis(200);

/// The count of connections `mc` has accepted since it started, read on
/// `probe`'s own (pooled, reused) connection.
fn total_connections(probe: &Client) -> u64 {
    probe.stats().unwrap()[0].1["total_connections"]
        .parse()
        .unwrap()
}

fn get_hits(probe: &Client) -> u64 {
    probe.stats().unwrap()[0].1["get_hits"].parse().unwrap()
}

/// A small deterministic generator (xorshift64*), seeded per run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

// ---- cancellation ---------------------------------------------------------

/// Polls `future` up to `polls` times, yielding to the runtime between
/// polls (so the connection's tasks write and read meanwhile); `None` if
/// it was still pending, and is then dropped mid-flight.
async fn poll_then_drop<F: Future>(future: F, polls: u64) -> Option<F::Output> {
    let mut future = pin!(future);
    for i in 0..polls {
        if i > 0 {
            tokio::task::yield_now().await;
        }
        if let Poll::Ready(output) = poll_fn(|cx| Poll::Ready(future.as_mut().poll(cx))).await {
            return Some(output);
        }
    }
    None
}

/// The value of key `i`: its own, of one of several sizes (some replies
/// span several reads).
fn value_of(i: usize) -> String {
    let pad = if i % 7 == 0 { 20_000 } else { i % 50 };
    format!("value-{i}-{}", "x".repeat(pad))
}

fn key_of(i: usize) -> String {
    format!("key-{i}")
}

/// What became of one request.
enum Outcome {
    /// It finished, and its value was its key's; `hits` keys read.
    Done { hits: u64 },
    /// It was dropped before it finished.
    Dropped,
}

#[test]
fn requests_dropped_mid_flight_never_shift_another_callers_reply() {
    const KEYS: usize = 1_000;
    const REQUESTS: usize = 10_000;
    const WAVE: usize = 500;
    on_both_runtimes(|rt| async move {
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
            | 1;
        let mc = Memcached::start();
        let probe = Client::builder()
            .servers([mc.addr()])
            .pool_size(1)
            .build()
            .unwrap();
        let connections_before = total_connections(&probe);
        let a = Client::builder()
            .servers([mc.addr()])
            .pool_size(2)
            .io_timeout(Duration::from_secs(2))
            .build_async()
            .unwrap();
        let values: Vec<String> = (0..KEYS).map(value_of).collect();
        let items: Vec<(String, &String)> = values
            .iter()
            .enumerate()
            .map(|(i, v)| (key_of(i), v))
            .collect();
        a.set_many(&items, MINUTE).await.unwrap();
        let hits_before = get_hits(&probe);

        let mut rng = Rng(seed);
        let (mut done, mut dropped, mut done_hits) = (0u64, 0u64, 0u64);
        for _ in 0..REQUESTS / WAVE {
            let mut wave = JoinSet::new();
            let mut to_abort = Vec::new();
            for _ in 0..WAVE {
                let r = rng.next();
                let k = (r % KEYS as u64) as usize;
                let how = (r >> 20) % 8;
                let polls = 1 + (r >> 40) % 3;
                let micros = (r >> 44) % 300;
                let a = a.clone();
                let check = move |got: Option<String>| {
                    assert_eq!(
                        got.as_deref(),
                        Some(value_of(k).as_str()),
                        "{rt}, seed {seed}: {}",
                        key_of(k)
                    );
                };
                let task = wave.spawn(async move {
                    let key = key_of(k);
                    match how {
                        // Half run to their end.
                        0..=3 => {
                            check(a.get::<String>(&key).await.unwrap());
                            Outcome::Done { hits: 1 }
                        }
                        // Polled a few times, then dropped.
                        4 => match poll_then_drop(a.get::<String>(&key), polls).await {
                            Some(got) => {
                                check(got.unwrap());
                                Outcome::Done { hits: 1 }
                            }
                            None => Outcome::Dropped,
                        },
                        // A timeout shorter than any round trip.
                        5 => match tokio::time::timeout(
                            Duration::from_micros(micros),
                            a.get::<String>(&key),
                        )
                        .await
                        {
                            Ok(got) => {
                                check(got.unwrap());
                                Outcome::Done { hits: 1 }
                            }
                            Err(_) => Outcome::Dropped,
                        },
                        // A batch (a multi-frame reply), dropped midway.
                        6 => {
                            let keys = [key_of(k), key_of((k + 1) % KEYS), key_of((k + 2) % KEYS)];
                            match poll_then_drop(a.get_many::<String>(&keys), polls).await {
                                Some(got) => {
                                    let got: HashMap<String, String> = got.unwrap();
                                    assert_eq!(got.len(), 3, "{rt}, seed {seed}");
                                    for (i, key) in
                                        [k, (k + 1) % KEYS, (k + 2) % KEYS].into_iter().zip(&keys)
                                    {
                                        assert_eq!(
                                            got[key],
                                            value_of(i),
                                            "{rt}, seed {seed}: {key}"
                                        );
                                    }
                                    Outcome::Done { hits: 3 }
                                }
                                None => Outcome::Dropped,
                            }
                        }
                        // Aborted from outside (below), wherever it is.
                        _ => {
                            check(a.get::<String>(&key).await.unwrap());
                            Outcome::Done { hits: 1 }
                        }
                    }
                });
                if how == 7 {
                    to_abort.push(task);
                }
            }
            for _ in 0..(rng.next() % 4) {
                tokio::task::yield_now().await;
            }
            for task in to_abort {
                task.abort();
            }
            while let Some(joined) = wave.join_next().await {
                match joined {
                    Ok(Outcome::Done { hits }) => {
                        done += 1;
                        done_hits += hits;
                    }
                    Ok(Outcome::Dropped) => dropped += 1,
                    Err(e) if e.is_cancelled() => dropped += 1,
                    Err(e) => panic!("{rt}, seed {seed}: a request task failed: {e}"),
                }
            }
        }
        assert_eq!(done + dropped, REQUESTS as u64);
        // Of the half that could be dropped, many were.
        assert!(
            dropped >= 1_000,
            "{rt}: only {dropped} of {REQUESTS} were dropped"
        );
        // Some dropped requests had been sent: the server answered more
        // keys than the callers received. Their replies were read and
        // thrown away, in step.
        let sent_and_dropped = get_hits(&probe) - hits_before - done_hits;
        assert!(
            sent_and_dropped > 0,
            "{rt}: no request was dropped mid-flight"
        );
        eprintln!(
            "{rt}: {done} done, {dropped} dropped ({sent_and_dropped} keys of them answered and discarded)"
        );

        // No cancellation now: every reply is the caller's own, on the
        // same two connections, never closed and reopened.
        let mut round = JoinSet::new();
        for t in 0..250 {
            let a = a.clone();
            round.spawn(async move {
                for j in 0..8 {
                    let k = (t * 8 + j) % KEYS;
                    let got = a.get::<String>(&key_of(k)).await.unwrap();
                    assert_eq!(got, Some(value_of(k)), "{}", key_of(k));
                }
            });
        }
        while let Some(joined) = round.join_next().await {
            joined.unwrap_or_else(|e| panic!("{rt}, seed {seed}: after cancellation: {e}"));
        }
        let opened = total_connections(&probe) - connections_before;
        assert_eq!(
            opened, 2,
            "{rt}: {opened} connections opened for pool_size(2)"
        );
    });
}

// ---- a server killed, paused, ejected --------------------------------------

/// A client with the fault tests' short timeouts: dead after 2 failures,
/// probed again after 300 ms.
fn faulty_client(servers: &[String]) -> AsyncClient {
    Client::builder()
        .servers(servers)
        .pool_size(2)
        .io_timeout(IO)
        .connect_timeout(IO)
        .retry_attempts(2)
        .dead_timeout(Duration::from_millis(300))
        .build_async()
        .unwrap()
}

/// Tasks writing and reading their own fresh keys in a loop, timing every
/// call, until stopped.
struct Load {
    shared: Arc<LoadState>,
    tasks: JoinSet<()>,
}

#[derive(Default)]
struct LoadState {
    stop: AtomicBool,
    ok: AtomicU64,
    failed: AtomicU64,
    /// The longest call so far, in microseconds.
    worst: AtomicU64,
    /// What no call may give: a wrong value, an untyped or unexpected error.
    wrong: Mutex<Vec<String>>,
}

impl LoadState {
    /// Times `call`, counts its outcome; `Some` with its value if it worked.
    async fn timed<T>(&self, call: impl Future<Output = Result<T, Error>>) -> Option<T> {
        let started = Instant::now();
        let result = call.await;
        let took = started.elapsed().as_micros() as u64;
        self.worst.fetch_max(took, Ordering::Relaxed);
        match result {
            Ok(value) => {
                self.ok.fetch_add(1, Ordering::Relaxed);
                Some(value)
            }
            Err(e) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                // Transport failures only: a protocol error (a reply taken
                // out of step) or a refusal would be a bug.
                if !e.is_retryable() {
                    self.wrong.lock().unwrap().push(format!("{e:?}"));
                }
                // Paces a task whose calls fail at once (server marked
                // dead), so it does not spin.
                tokio::time::sleep(Duration::from_millis(5)).await;
                None
            }
        }
    }
}

impl Load {
    /// Starts `tasks` tasks on `client`. With `lossy`, a value written may
    /// be gone when read back (the server restarted in between).
    fn start(client: &AsyncClient, tasks: usize, lossy: bool) -> Load {
        let shared = Arc::new(LoadState::default());
        let mut set = JoinSet::new();
        for t in 0..tasks {
            let (client, state) = (client.clone(), Arc::clone(&shared));
            set.spawn(async move {
                for i in 0..1_000_000u64 {
                    if state.stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let (key, value) = (format!("load:{t}:{i}"), format!("{t}/{i}"));
                    if state
                        .timed(client.set(&key, &value, MINUTE))
                        .await
                        .is_none()
                    {
                        continue;
                    }
                    match state.timed(client.get::<String>(&key)).await {
                        Some(Some(got)) if got == value => {}
                        Some(None) if lossy => {}
                        Some(other) => {
                            let mut wrong = state.wrong.lock().unwrap();
                            wrong.push(format!("{key}: {other:?}, not {value}"));
                        }
                        None => {}
                    }
                }
            });
        }
        Load { shared, tasks: set }
    }

    fn ok(&self) -> u64 {
        self.shared.ok.load(Ordering::Relaxed)
    }

    fn failed(&self) -> u64 {
        self.shared.failed.load(Ordering::Relaxed)
    }

    /// Stops the tasks and returns the longest call any made; fails the
    /// test on a panic, a wrong value or an unexpected error.
    async fn stop(mut self, rt: &str) -> Duration {
        self.shared.stop.store(true, Ordering::Relaxed);
        while let Some(joined) = self.tasks.join_next().await {
            joined.unwrap_or_else(|e| panic!("{rt}: a load task failed: {e}"));
        }
        let wrong = self.shared.wrong.lock().unwrap();
        assert!(
            wrong.is_empty(),
            "{rt}: {} wrong results: {:?}",
            wrong.len(),
            &wrong[..wrong.len().min(5)]
        );
        Duration::from_micros(self.shared.worst.load(Ordering::Relaxed))
    }
}

#[test]
fn a_killed_server_fails_calls_fast_and_is_reconnected_after_restart() {
    on_both_runtimes(|rt| async move {
        let mc = Arc::new(Mutex::new(Memcached::start()));
        let addr = mc.lock().unwrap().addr();
        let a = faulty_client(std::slice::from_ref(&addr));
        let load = Load::start(&a, 16, true);
        wait_until(
            "calls answered before the kill",
            Duration::from_secs(5),
            || load.ok() >= 200,
        )
        .await;

        let server = Arc::clone(&mc);
        blocking(move || server.lock().unwrap().stop()).await;
        let failed = load.failed();
        wait_until(
            "calls failing after the kill",
            Duration::from_secs(5),
            || load.failed() >= failed + 64,
        )
        .await;
        wait_until("the server marked dead", Duration::from_secs(5), || {
            a.is_marked_dead(&addr)
        })
        .await;
        assert!(matches!(
            a.get::<String>("any").await,
            Err(Error::AllServersDown | Error::Connect { .. })
        ));

        let server = Arc::clone(&mc);
        blocking(move || server.lock().unwrap().restart()).await;
        // Past the dead period, a probe reconnects: calls work again,
        // with no help from the test.
        let ok = load.ok();
        wait_until(
            "calls answered after the restart",
            Duration::from_secs(5),
            || load.ok() >= ok + 200,
        )
        .await;
        let worst = load.stop(rt).await;
        eprintln!("{rt}: worst call around a kill: {worst:?}");
        assert!(worst <= IO + SLACK, "{rt}: a call took {worst:?}");
        a.set("after", "restart", MINUTE).await.unwrap();
        assert_eq!(
            a.get::<String>("after").await.unwrap().as_deref(),
            Some("restart")
        );
        assert!(!a.is_marked_dead(&addr));
    });
}

#[test]
fn a_paused_server_holds_no_call_past_the_request_timeout() {
    on_both_runtimes(|rt| async move {
        let mc = Arc::new(Memcached::start());
        let addr = mc.addr();
        let a = faulty_client(std::slice::from_ref(&addr));
        let load = Load::start(&a, 16, false);
        wait_until(
            "calls answered before the pause",
            Duration::from_secs(5),
            || load.ok() >= 200,
        )
        .await;

        let server = Arc::clone(&mc);
        blocking(move || server.pause()).await;
        let failed = load.failed();
        wait_until(
            "calls timing out during the pause",
            Duration::from_secs(5),
            || load.failed() >= failed + 64,
        )
        .await;
        wait_until("the server marked dead", Duration::from_secs(5), || {
            a.is_marked_dead(&addr)
        })
        .await;
        let started = Instant::now();
        let result = a.get::<String>("during").await;
        assert!(
            result.as_ref().is_err_and(Error::is_retryable),
            "{rt}: {result:?}"
        );
        assert!(started.elapsed() <= REQUEST + SLACK);

        let server = Arc::clone(&mc);
        blocking(move || server.resume()).await;
        let ok = load.ok();
        wait_until(
            "calls answered after the resume",
            Duration::from_secs(5),
            || load.ok() >= ok + 200,
        )
        .await;
        let worst = load.stop(rt).await;
        eprintln!("{rt}: worst call around a pause: {worst:?}");
        assert!(worst <= REQUEST + SLACK, "{rt}: a call took {worst:?}");
        a.set("after", "resume", MINUTE).await.unwrap();
        assert_eq!(
            a.get::<String>("after").await.unwrap().as_deref(),
            Some("resume")
        );
    });
}

#[test]
fn the_keys_of_a_dead_server_go_to_the_other() {
    on_both_runtimes(|rt| async move {
        let (first, second) = (Memcached::start(), Memcached::start());
        let addrs = [first.addr(), second.addr()];
        let a = Client::builder()
            .servers(&addrs)
            .io_timeout(IO)
            .connect_timeout(IO)
            .retry_attempts(2)
            .dead_timeout(MINUTE)
            .build_async()
            .unwrap();
        let keys: Vec<String> = (0..100).map(|i| format!("key-{i}")).collect();
        let on = |server: &str| -> Vec<String> {
            keys.iter()
                .filter(|k| a.server_for(k).unwrap() == server)
                .cloned()
                .collect()
        };
        let (on_first, on_second) = (on(&addrs[0]), on(&addrs[1]));
        assert!(!on_first.is_empty() && !on_second.is_empty());
        for key in &keys {
            a.set(key, "v1", MINUTE).await.unwrap();
        }

        blocking(move || drop(first)).await;
        let probe = &on_first[0];
        for _ in 0..10 {
            if a.is_marked_dead(&addrs[0]) {
                break;
            }
            let started = Instant::now();
            let result = a.get::<String>(probe).await;
            assert!(
                matches!(result, Err(Error::Io(_) | Error::Connect { .. })),
                "{rt}: {result:?}"
            );
            assert!(started.elapsed() <= REQUEST + SLACK);
        }
        assert!(a.is_marked_dead(&addrs[0]), "{rt}: never marked dead");
        assert!(!a.is_marked_dead(&addrs[1]));
        assert_eq!(a.servers(), addrs);

        // Every key now goes to the live server, and works there.
        let only_second = Client::builder().servers([&addrs[1]]).build().unwrap();
        for key in &keys {
            assert_eq!(a.server_for(key).unwrap(), addrs[1], "{key}");
        }
        for key in &on_first {
            assert_eq!(a.get::<String>(key).await.unwrap(), None, "{key}");
            a.set(key, "v2", MINUTE).await.unwrap();
            assert_eq!(a.get::<String>(key).await.unwrap().as_deref(), Some("v2"));
            assert_eq!(
                only_second.get::<String>(key).unwrap().as_deref(),
                Some("v2")
            );
        }
        for key in &on_second {
            assert_eq!(a.get::<String>(key).await.unwrap().as_deref(), Some("v1"));
        }
        let got: HashMap<String, String> = a.get_many(&keys).await.unwrap();
        assert_eq!(got.len(), keys.len());
    });
}

#[test]
fn writes_a_server_missed_are_invalidated_before_it_serves_again() {
    on_both_runtimes(|rt| async move {
        let mc = Arc::new(Memcached::start());
        let clock = MockClock::new();
        let a = Client::builder()
            .servers([mc.addr()])
            .io_timeout(IO)
            .connect_timeout(IO)
            .retry_attempts(2)
            .dead_timeout(Duration::from_secs(1))
            .clock(clock.clone())
            .build_async()
            .unwrap();
        let pause = |mc: &Arc<Memcached>| {
            let mc = Arc::clone(mc);
            blocking(move || mc.pause())
        };
        let resume = |mc: &Arc<Memcached>| {
            let mc = Arc::clone(mc);
            blocking(move || mc.resume())
        };

        // A write that timed out (one failure: not marked dead): the key
        // is deleted on the server before its next request. (The write
        // itself may still land late, from the stalled connection: never
        // the older value.)
        a.set("k", "v1", MINUTE).await.unwrap();
        pause(&mc).await;
        let result = a.set("k", "v2", MINUTE).await;
        assert!(matches!(result, Err(Error::Timeout)), "{rt}: {result:?}");
        resume(&mc).await;
        assert_ne!(
            a.get::<String>("k").await.unwrap().as_deref(),
            Some("v1"),
            "{rt}"
        );

        // A write never sent (the server marked dead): the older copy is
        // gone when the server is back, for this client and any other.
        a.set("j", "v1", MINUTE).await.unwrap();
        pause(&mc).await;
        for _ in 0..2 {
            assert!(a.get::<String>("probe").await.is_err());
        }
        assert!(a.is_marked_dead(&mc.addr()), "{rt}");
        assert!(matches!(
            a.set("j", "v2", MINUTE).await,
            Err(Error::AllServersDown)
        ));
        assert!(matches!(a.delete("k").await, Err(Error::AllServersDown)));
        resume(&mc).await;
        clock.advance(Duration::from_millis(1_100));
        assert_eq!(
            a.get::<String>("j").await.unwrap(),
            None,
            "{rt}: the older j came back"
        );
        let other = Client::builder().servers([mc.addr()]).build().unwrap();
        assert_eq!(other.get::<String>("j").unwrap(), None, "{rt}");
        assert_eq!(other.get::<String>("k").unwrap(), None, "{rt}");
        assert!(!a.is_marked_dead(&mc.addr()));
    });
}
