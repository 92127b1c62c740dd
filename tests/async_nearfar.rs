//! AsyncNearFar against real memcached processes: one load per key across
//! tasks and instances (the near tier's coalescing and memcached's lease,
//! waited on with tokio timers), far failures that never reach a caller
//! (memcached killed, stopped, restarted mid-load), and the same results as
//! the blocking NearFar, on both tokio runtimes.
#![cfg(feature = "tokio")]

#[path = "common/memcached.rs"]
mod server;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use nearfar::memcached::{AsyncClient, Client};
use nearfar::{AsyncNearFar, NearFar};
use server::Memcached;

const MS: Duration = Duration::from_millis(1);

/// The client's I/O timeout in these tests.
const IO: Duration = Duration::from_millis(200);

/// The most a `get_with` may take while memcached fails: one far request
/// that waits out the I/O timeout, the loader (20 ms), and scheduling slack.
const BOUND: Duration = Duration::from_millis(200 + 20 + 150);

/// Runs `test` on a multi-thread runtime (2 workers), then on a
/// current-thread runtime.
fn on_both_runtimes<F: Future<Output = ()>>(test: impl Fn() -> F) {
    let multi = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    multi.block_on(test());
    let current = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    current.block_on(test());
}

fn client(addr: &str) -> AsyncClient {
    Client::builder()
        .servers([addr])
        .io_timeout(IO)
        .connect_timeout(IO)
        .dead_timeout(200 * MS)
        .pool_size(2)
        .build_async()
        .expect("client")
}

fn instance(addr: &str, namespace: &str) -> AsyncNearFar<u64, String> {
    AsyncNearFar::builder()
        .far(client(addr))
        .namespace(namespace)
        .lease_wait(Duration::from_secs(5))
        .build()
        .expect("AsyncNearFar")
}

/// A namespace no other run of these tests shares.
fn fresh(prefix: &str) -> String {
    static RUN: AtomicUsize = AtomicUsize::new(0);
    format!("{prefix}{}", RUN.fetch_add(1, Ordering::Relaxed))
}

#[test]
fn a_thousand_tasks_one_missing_key_one_load() {
    let mc = Memcached::start();
    on_both_runtimes(|| {
        let nf = instance(&mc.addr(), &fresh("coalesce"));
        async move {
            let loads = Arc::new(AtomicUsize::new(0));
            let tasks: Vec<_> = (0..1_000)
                .map(|_| {
                    let (nf, loads) = (nf.clone(), Arc::clone(&loads));
                    tokio::spawn(async move {
                        nf.get_with(7, || async move {
                            loads.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(50 * MS).await;
                            "seven".to_string()
                        })
                        .await
                    })
                })
                .collect();
            for task in tasks {
                assert_eq!(task.await.expect("task"), "seven");
            }
            assert_eq!(loads.load(Ordering::SeqCst), 1);
            assert_eq!(nf.stats().loader_calls, 1);
        }
    });
}

#[test]
fn four_instances_sixty_four_tasks_each_one_loader_call() {
    let mc = Memcached::start();
    on_both_runtimes(|| {
        let namespace = fresh("fleet");
        let instances: Vec<_> = (0..4).map(|_| instance(&mc.addr(), &namespace)).collect();
        async move {
            let loads = Arc::new(AtomicUsize::new(0));
            let mut tasks = Vec::new();
            for nf in &instances {
                for _ in 0..64 {
                    let (nf, loads) = (nf.clone(), Arc::clone(&loads));
                    tasks.push(tokio::spawn(async move {
                        nf.get_with(42, || async move {
                            loads.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(100 * MS).await;
                            "answer".to_string()
                        })
                        .await
                    }));
                }
            }
            for task in tasks {
                assert_eq!(task.await.expect("task"), "answer");
            }
            assert_eq!(loads.load(Ordering::SeqCst), 1, "one load across the fleet");
            let lease_waits: u64 = instances.iter().map(|nf| nf.stats().lease_waits).sum();
            assert!(lease_waits >= 3, "the other instances waited on the lease");
        }
    });
}

#[test]
fn same_results_as_the_blocking_near_far() {
    let mc = Memcached::start();
    let namespace = fresh("same");
    let blocking: NearFar<u64, String> = NearFar::builder()
        .far(
            Client::builder()
                .servers([mc.addr()])
                .build()
                .expect("client"),
        )
        .namespace(&namespace)
        .build()
        .expect("NearFar");
    on_both_runtimes(|| {
        let nf = instance(&mc.addr(), &namespace);
        let blocking = blocking.clone();
        async move {
            nf.insert(1, "one".to_string()).await;
            // Written far by the async instance, read by the blocking one.
            blocking.remove_near(&1);
            assert_eq!(blocking.get(&1).as_deref(), Some("one"));
            blocking.insert(2, "two".to_string());
            assert_eq!(nf.get(&2).await.as_deref(), Some("two"));
            nf.remove(&2).await;
            blocking.remove_near(&2);
            assert_eq!(blocking.get(&2), None);
            let failed = nf
                .try_get_with(3, || async { Err::<String, _>("no") })
                .await;
            assert_eq!(*failed.expect_err("the loader's error"), "no");
            let loaded = nf.try_get_with(3, || async { Ok::<_, &str>("three".into()) });
            assert_eq!(loaded.await.expect("loaded"), "three");
            nf.remove_near(&3);
            assert_eq!(nf.get(&3).await.as_deref(), Some("three"), "from memcached");
            nf.remove(&1).await;
            nf.remove(&3).await;
        }
    });
}

#[test]
fn far_failures_mid_load_never_reach_a_caller() {
    let mut mc = Memcached::start();
    let addr = mc.addr();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let nf = AsyncNearFar::<u64, String>::builder()
        .far(client(&addr))
        .namespace(fresh("faults"))
        .circuit_breaker(3, 200 * MS)
        .build()
        .expect("AsyncNearFar");
    let worst = |calls: Vec<tokio::task::JoinHandle<(String, Duration)>>| async move {
        let mut worst = Duration::ZERO;
        for call in calls {
            let (value, took) = call.await.expect("task");
            assert!(value.starts_with("v"), "{value}");
            worst = worst.max(took);
        }
        worst
    };
    let load_all = |round: u64, nf: &AsyncNearFar<u64, String>| {
        (0..64u64)
            .map(|k| {
                let nf = nf.clone();
                tokio::spawn(async move {
                    let start = Instant::now();
                    let key = round * 1_000 + k;
                    let value = nf
                        .get_with(key, || async move {
                            tokio::time::sleep(20 * MS).await;
                            format!("v{key}")
                        })
                        .await;
                    (value, start.elapsed())
                })
            })
            .collect::<Vec<_>>()
    };
    rt.block_on(async {
        // Stopped (SIGSTOP) while loads run: every call still returns its
        // value, none waits much past the client's request timeout.
        let calls = load_all(1, &nf);
        tokio::time::sleep(5 * MS).await;
        mc.pause();
        let took = worst(calls).await;
        assert!(took <= BOUND, "worst call {took:?}");
        let calls = load_all(2, &nf);
        let took = worst(calls).await;
        assert!(took <= BOUND, "worst call while stopped {took:?}");
        mc.resume();
    });
    // Killed mid-load, then restarted: no caller sees an error, and the far
    // tier is used again once the breaker's cooldown is over.
    rt.block_on(async {
        let calls = load_all(3, &nf);
        mc.stop();
        let took = worst(calls).await;
        assert!(took <= BOUND, "worst call {took:?}");
    });
    mc.restart();
    rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            nf.insert(9, "v9".to_string()).await;
            nf.remove_near(&9);
            if nf.get(&9).await.as_deref() == Some("v9") {
                break;
            }
            assert!(Instant::now() < deadline, "the far tier never came back");
            tokio::time::sleep(50 * MS).await;
        }
    });
}

/// The memcached server of `memoised_through_async_near_far` (set before
/// the store is first used).
static MEMO_ADDR: std::sync::OnceLock<String> = std::sync::OnceLock::new();

static MEMO_STORE: std::sync::LazyLock<AsyncNearFar<u64, String>> =
    std::sync::LazyLock::new(|| instance(MEMO_ADDR.get().expect("address set"), &fresh("memo")));

static MEMO_RUNS: AtomicUsize = AtomicUsize::new(0);

#[nearfar::memoize(store = MEMO_STORE)]
async fn render(id: u64) -> String {
    MEMO_RUNS.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(20 * MS).await;
    format!("page {id}")
}

#[test]
fn memoised_through_async_near_far() {
    let mc = Memcached::start();
    MEMO_ADDR.set(mc.addr()).expect("set once");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        // Concurrent callers share one run, and the future is Send.
        let calls: Vec<_> = (0..32).map(|_| tokio::spawn(render(5))).collect();
        for call in calls {
            assert_eq!(call.await.expect("task"), "page 5");
        }
        assert_eq!(MEMO_RUNS.load(Ordering::SeqCst), 1);
        // The result is in memcached: a near miss finds it there.
        MEMO_STORE.remove_near(&5);
        assert_eq!(render(5).await, "page 5");
        assert_eq!(MEMO_RUNS.load(Ordering::SeqCst), 1);
        assert_eq!(MEMO_STORE.stats().far_hits, 1);
    });
}

#[test]
fn lease_waits_run_on_the_injected_clock() {
    // A lease abandoned by another process: the waiter takes it over after
    // `lease_wait` (30 s) on the NearFar's mock clock, without waiting
    // 30 s of real time.
    let mc = Memcached::start();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let clock = nearfar::MockClock::new();
    let nf = AsyncNearFar::<u64, String>::builder()
        .far(client(&mc.addr()))
        .namespace(fresh("mock"))
        .lease_wait(Duration::from_secs(30))
        .lease_ttl(Duration::from_secs(120))
        .clock(clock)
        .build()
        .expect("AsyncNearFar");
    let fkey = nf.far_key(&1).expect("far key");
    let other = Client::builder()
        .servers([mc.addr()])
        .build()
        .expect("client");
    let lease = other.get_or_lease::<String>(&fkey, Duration::from_secs(120));
    assert!(
        matches!(lease, Ok(nearfar::memcached::Lease::Won { .. })),
        "{lease:?}"
    );
    let started = Instant::now();
    let value = rt.block_on(nf.get_with(1, || async { "mine".to_string() }));
    assert_eq!(value, "mine");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let stats = nf.stats();
    assert_eq!(
        (stats.lease_waits, stats.lease_takeovers),
        (1, 1),
        "{stats:?}"
    );
}

/// A load whose future is dropped while it holds the memcached lease (a
/// `tokio::time::timeout` around `get_with`) releases it on a task of its
/// own: another process then loads at once instead of waiting out
/// `lease_wait` (5 s here) for a placeholder no one will fill.
#[test]
fn a_dropped_load_releases_its_lease() {
    let mc = Memcached::start();
    on_both_runtimes(|| async {
        let ns = fresh("drop");
        let (a, b) = (instance(&mc.addr(), &ns), instance(&mc.addr(), &ns));
        let dropped = tokio::time::timeout(
            Duration::from_millis(100),
            a.get_with(7, std::future::pending::<String>),
        )
        .await;
        assert!(
            dropped.is_err(),
            "the loader never ends: the call is dropped"
        );
        // The release runs on its own task: give it the moment it needs.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let started = Instant::now();
        let value = b.get_with(7, || async { "b's".to_string() }).await;
        let took = started.elapsed();
        assert_eq!(value, "b's");
        assert!(
            took < Duration::from_secs(2),
            "the placeholder was still there: waited {took:?}"
        );
        assert_eq!(b.stats().lease_waits, 0, "nothing to wait for");
    });
}
