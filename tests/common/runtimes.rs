//! Test helper: runs one async test body on both tokio runtimes.
//!
//! Include it with `#[path = "common/runtimes.rs"] mod runtimes;` (in a
//! test file built only with the `tokio` feature). The crate's optional
//! tokio dependency has `rt-multi-thread` for this; there is no `macros`
//! feature, so no `#[tokio::test]`.
#![allow(dead_code)]

use std::future::Future;
use std::time::{Duration, Instant};

/// How long one run of a test body may take before it fails (not a speed
/// target: a bound, so that a hang is a failure and not a stuck CI job).
pub const RUN_LIMIT: Duration = Duration::from_secs(40);

/// Runs `body` to its end on a multi-thread runtime with 2 workers, then
/// on a current-thread runtime; `body` gets the runtime's name (for
/// messages). Each run is bounded by [`RUN_LIMIT`].
pub fn on_both_runtimes<F, Fut>(body: F)
where
    F: Fn(&'static str) -> Fut,
    Fut: Future<Output = ()>,
{
    let multi = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("multi-thread runtime");
    let current = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("current-thread runtime");
    for (name, runtime) in [("multi-thread", multi), ("current-thread", current)] {
        runtime.block_on(async {
            if tokio::time::timeout(RUN_LIMIT, body(name)).await.is_err() {
                panic!("{name} runtime: the test did not finish within {RUN_LIMIT:?}");
            }
        });
        // Ends the connections' tasks of this run's clients.
        runtime.shutdown_timeout(Duration::from_secs(1));
    }
}

/// Runs `f` (which may block: it starts, stops or signals a server) on
/// tokio's blocking pool, so the runtime's own threads keep driving the
/// client meanwhile, even on a current-thread runtime.
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f)
        .await
        .expect("a blocking helper panicked")
}

/// Polls `done` every few milliseconds until it holds; fails the test with
/// `what` after `limit`.
pub async fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "not within {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
