//! The async loader family of the near tier: `Cache::get_or_insert_async`
//! and `try_get_or_insert_async`. One load per key however many callers
//! await it; waiters park no thread and are woken when it ends; a leader
//! dropped mid-load (cancelled) or panicking releases them to load again.
//! Driven here by a minimal executor per thread (no runtime needed).

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self};
use std::time::Duration;

use nearfar::Cache;

#[path = "common/executor.rs"]
mod executor;
use executor::block_on;

/// Counts wake-ups.
#[derive(Default)]
struct Count(AtomicUsize);

impl Wake for Count {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// Pending until `open` is set (polled again by whoever owns it).
async fn gate(open: Arc<AtomicBool>) {
    std::future::poll_fn(|cx| {
        if open.load(Ordering::SeqCst) {
            Poll::Ready(())
        } else {
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    })
    .await
}

#[test]
fn concurrent_callers_share_one_load() {
    const CALLERS: usize = 8;
    let cache: Cache<u32, String> = Cache::new(100);
    let loads = AtomicUsize::new(0);
    let barrier = Barrier::new(CALLERS);
    let values: Vec<String> = thread::scope(|s| {
        let handles: Vec<_> = (0..CALLERS)
            .map(|i| {
                let (cache, loads, barrier) = (&cache, &loads, &barrier);
                s.spawn(move || {
                    barrier.wait();
                    block_on(cache.get_or_insert_async(7, async move {
                        loads.fetch_add(1, Ordering::SeqCst);
                        thread::sleep(Duration::from_millis(50));
                        format!("loaded by {i}")
                    }))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(loads.load(Ordering::SeqCst), 1);
    assert!(values.iter().all(|v| v == &values[0]), "{values:?}");
    assert_eq!(cache.get(&7), Some(values[0].clone()));
    assert_eq!(cache.stats().loads, 1);
}

#[test]
fn a_waiter_is_woken_when_the_load_ends() {
    let cache: Cache<u32, u32> = Cache::new(100);
    let open = Arc::new(AtomicBool::new(false));
    let noop = Context::from_waker(Waker::noop());
    let mut leader = pin!(cache.get_or_insert_async(1, {
        let open = Arc::clone(&open);
        async move {
            gate(open).await;
            10
        }
    }));
    let mut cx = noop;
    assert!(leader.as_mut().poll(&mut cx).is_pending());

    let woken = Arc::new(Count::default());
    let waker = Waker::from(Arc::clone(&woken));
    let mut wcx = Context::from_waker(&waker);
    let mut waiter = pin!(cache.get_or_insert_async(1, async { unreachable!() }));
    assert!(waiter.as_mut().poll(&mut wcx).is_pending(), "it awaits");
    assert_eq!(woken.0.load(Ordering::SeqCst), 0);

    open.store(true, Ordering::SeqCst);
    assert_eq!(leader.as_mut().poll(&mut cx), Poll::Ready(10));
    assert_eq!(woken.0.load(Ordering::SeqCst), 1, "the load's end woke it");
    assert_eq!(waiter.as_mut().poll(&mut wcx), Poll::Ready(10));
}

#[test]
fn a_cancelled_leader_releases_its_waiters() {
    let cache: Cache<u32, &str> = Cache::new(100);
    let never = Arc::new(AtomicBool::new(false));
    let mut cx = Context::from_waker(Waker::noop());
    {
        let mut leader = Box::pin(cache.get_or_insert_async(1, {
            let never = Arc::clone(&never);
            async move {
                gate(never).await;
                "from the cancelled leader"
            }
        }));
        assert!(leader.as_mut().poll(&mut cx).is_pending());
        let mut waiter = pin!(cache.get_or_insert_async(1, async { "from the waiter" }));
        assert!(waiter.as_mut().poll(&mut cx).is_pending());
        drop(leader); // a timeout, say
        // Released: it loads itself.
        assert_eq!(
            waiter.as_mut().poll(&mut cx),
            Poll::Ready("from the waiter")
        );
    }
    assert_eq!(cache.get(&1), Some("from the waiter"));
    assert_eq!(cache.stats().loads, 2);
}

#[test]
fn a_panicking_loader_fails_its_caller_only() {
    let cache: Cache<u32, u32> = Cache::new(100);
    let mut cx = Context::from_waker(Waker::noop());
    let open = Arc::new(AtomicBool::new(false));
    let mut leader = Box::pin(cache.get_or_insert_async(1, {
        let open = Arc::clone(&open);
        async move {
            gate(open).await;
            panic!("loader bug");
        }
    }));
    assert!(leader.as_mut().poll(&mut cx).is_pending());
    let mut waiter = pin!(cache.get_or_insert_async(1, async { 2 }));
    assert!(waiter.as_mut().poll(&mut cx).is_pending());
    open.store(true, Ordering::SeqCst);
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _ = leader.as_mut().poll(&mut cx);
    }));
    assert!(panicked.is_err());
    assert_eq!(waiter.as_mut().poll(&mut cx), Poll::Ready(2));
    assert_eq!(cache.get(&1), Some(2));
}

#[test]
fn an_error_is_shared_with_the_waiters_and_not_cached() {
    let cache: Cache<u32, u32> = Cache::new(100);
    let mut cx = Context::from_waker(Waker::noop());
    let open = Arc::new(AtomicBool::new(false));
    let mut leader = Box::pin(cache.try_get_or_insert_async(1, {
        let open = Arc::clone(&open);
        async move {
            gate(open).await;
            Err::<u32, String>("db down".into())
        }
    }));
    assert!(leader.as_mut().poll(&mut cx).is_pending());
    let mut waiter = pin!(cache.try_get_or_insert_async(1, async { Ok::<u32, String>(3) }));
    assert!(waiter.as_mut().poll(&mut cx).is_pending());
    open.store(true, Ordering::SeqCst);
    let Poll::Ready(Err(first)) = leader.as_mut().poll(&mut cx) else {
        panic!("the leader's error")
    };
    let Poll::Ready(Err(shared)) = waiter.as_mut().poll(&mut cx) else {
        panic!("the waiter gets the same error")
    };
    assert!(Arc::ptr_eq(&first, &shared));
    assert!(!cache.contains_key(&1));
    assert_eq!(
        block_on(cache.try_get_or_insert_async(1, async { Ok::<u32, String>(4) })).unwrap(),
        4
    );
}

#[test]
fn a_blocking_caller_waits_on_an_async_load() {
    // The async leader runs on some thread; a blocking caller elsewhere
    // waits for it (no false "waits for itself" verdict).
    let cache: Cache<u32, u32> = Cache::new(100);
    let started = Barrier::new(2);
    thread::scope(|s| {
        let leader = s.spawn(|| {
            block_on(cache.get_or_insert_async(5, async {
                started.wait();
                thread::sleep(Duration::from_millis(50));
                50
            }))
        });
        started.wait();
        assert_eq!(cache.get_or_insert_with(5, || unreachable!()), 50);
        assert_eq!(leader.join().unwrap(), 50);
    });
}
