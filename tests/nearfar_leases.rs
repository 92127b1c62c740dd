//! NearFar's leases against real memcached: stale-while-revalidate, a
//! loader that fails, panics or hangs, a value the far tier refuses, and
//! loaders waiting on each other. Each hands its lease or recompute token
//! back, so no other process waits for a value that never comes.
#![cfg(feature = "memcached")]

#[path = "common/memcached.rs"]
mod server;

#[path = "common/nearfar_setup.rs"]
mod nearfar_setup;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::thread;
use std::time::{Duration, Instant};

use nearfar::memcached::Client;
use nearfar::{Cache, NearFar};
use nearfar_setup::{MS, blocked_load, client, instance, k, stale_instance};
use server::Memcached;

#[test]
fn stale_on_remove_serves_stale_while_one_recomputes() {
    let mc = Memcached::start();
    let mk = || stale_instance(&mc, "swr");
    let (a, b, c, d) = (mk(), mk(), mk(), mk());
    assert_eq!(a.get_with(k("report"), || k("v1")), "v1");
    a.remove(&k("report"));
    assert_eq!(
        a.get(&k("report")).as_deref(),
        Some("v1"),
        "stale until recomputed"
    );

    // b wins the recompute; while its loader runs, c is served the stale value.
    let (go_tx, recompute) = blocked_load(b, "report", "v2");
    assert_eq!(c.get_with(k("report"), || unreachable!()), "v1");
    assert_eq!(c.stats().stale_serves, 1);
    go_tx.send(()).unwrap();
    assert_eq!(recompute.join().unwrap(), "v2");
    assert_eq!(d.get(&k("report")).as_deref(), Some("v2"));
    assert_eq!(d.stats().stale_serves, 0);
}

#[test]
fn a_failed_or_panicking_loader_releases_the_lease() {
    let mc = Memcached::start();
    let mk = || -> NearFar<String, String> {
        NearFar::builder()
            .far(client(&mc))
            .namespace("release")
            .lease_wait(Duration::from_secs(5))
            .build()
            .unwrap()
    };
    let (a, b) = (mk(), mk());
    let err = a.try_get_with(k("e"), || Err::<String, _>("db down"));
    assert_eq!(*err.unwrap_err(), "db down");
    let start = Instant::now();
    assert_eq!(b.get_with(k("e"), || k("ok")), "ok");
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "no wait on a dead lease"
    );
    assert_eq!(b.stats().lease_waits, 0);

    let panicked = catch_unwind(AssertUnwindSafe(|| {
        a.get_with(k("p"), || panic!("loader bug"))
    }));
    assert!(panicked.is_err());
    let start = Instant::now();
    assert_eq!(b.get_with(k("p"), || k("ok")), "ok");
    assert!(start.elapsed() < Duration::from_secs(2));
    assert_eq!(b.stats().lease_waits, 0);
    // a is still usable after its loader panicked.
    assert_eq!(a.get_with(k("p"), || unreachable!()), "ok");
}

#[test]
fn a_hung_lease_holder_is_taken_over_after_lease_wait() {
    let mc = Memcached::start();
    let mk = |wait: Duration| -> NearFar<String, String> {
        NearFar::builder()
            .far(client(&mc))
            .namespace("hung")
            .lease_wait(wait)
            .build()
            .unwrap()
    };
    let (a, b) = (mk(Duration::from_secs(5)), mk(300 * MS));
    let (go_tx, holder) = blocked_load(a, "slow", "from a");
    let start = Instant::now();
    assert_eq!(b.get_with(k("slow"), || k("from b")), "from b");
    let waited = start.elapsed();
    assert!(
        waited >= 300 * MS && waited < Duration::from_secs(2),
        "{waited:?}"
    );
    let s = b.stats();
    assert_eq!(
        (
            s.lease_waits,
            s.lease_takeovers,
            s.lease_timeouts,
            s.loader_calls
        ),
        (1, 1, 0, 1)
    );
    // b took the lease over and filled the far tier for everyone.
    assert_eq!(mk(MS).get(&k("slow")).as_deref(), Some("from b"));
    go_tx.send(()).unwrap();
    // a's late store is refused by its CAS: its value stays its own.
    assert_eq!(holder.join().unwrap(), "from a");
    assert_eq!(mk(MS).get(&k("slow")).as_deref(), Some("from b"));
}

#[test]
fn a_failed_recompute_of_a_stale_item_hands_its_token_back() {
    let mc = Memcached::start();
    let mk = || stale_instance(&mc, "swr-fail");
    let (a, b, c) = (mk(), mk(), mk());
    for key in ["err", "panic"] {
        a.insert(k(key), k("v0"));
        a.remove(&k(key));
        // b takes the stale item's recompute token, and its loader fails.
        if key == "err" {
            let err = b.try_get_with(k(key), || Err::<String, _>("db down"));
            assert_eq!(*err.unwrap_err(), "db down");
        } else {
            let panicked = catch_unwind(AssertUnwindSafe(|| {
                b.get_with(k(key), || panic!("loader bug"))
            }));
            assert!(panicked.is_err());
        }
        // The next caller recomputes rather than being served "v0".
        let before = c.stats().loader_calls;
        assert_eq!(c.get_with(k(key), || k("v1")), "v1");
        assert_eq!(c.stats().loader_calls, before + 1);
        assert_eq!(mk().get(&k(key)).as_deref(), Some("v1"));
    }
}

#[test]
fn a_value_the_far_tier_refuses_gives_the_lease_or_token_back() {
    let mc = Memcached::start();
    // Over memcached's default 1 MiB item limit: the far store fails (the
    // client refuses it before sending), the loaded value is served here.
    let huge = || "x".repeat(2 << 20);

    // A lease won on a miss: released, so the next process loads at once
    // instead of waiting out `lease_wait` for a value that never comes.
    let mk = || -> NearFar<String, String> {
        NearFar::builder()
            .far(client(&mc))
            .namespace("refused")
            .lease_wait(Duration::from_secs(5))
            .build()
            .unwrap()
    };
    let (a, b) = (mk(), mk());
    assert_eq!(a.get_with(k("big"), huge).len(), 2 << 20);
    assert_eq!(a.stats().far_errors, 1, "the refused store is counted");
    let start = Instant::now();
    assert_eq!(b.get_with(k("big"), || k("small")), "small");
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "no wait on a lease whose value never reached memcached"
    );
    assert_eq!(b.stats().lease_waits, 0);
    assert_eq!(mk().get(&k("big")).as_deref(), Some("small"));

    // A stale item's recompute token: handed back, so the next caller
    // recomputes rather than being served the stale value.
    let swr = || stale_instance(&mc, "refused-swr");
    let (a, b, c) = (swr(), swr(), swr());
    a.insert(k("s"), k("v0"));
    a.remove(&k("s"));
    assert_eq!(b.get_with(k("s"), huge).len(), 2 << 20);
    let before = c.stats().loader_calls;
    assert_eq!(c.get_with(k("s"), || k("v1")), "v1");
    assert_eq!(c.stats().loader_calls, before + 1);
    assert_eq!(swr().get(&k("s")).as_deref(), Some("v1"));
}

#[test]
fn a_fallback_copy_the_far_tier_refuses_gives_the_lease_back() {
    let old = Memcached::start();
    let new = Memcached::start();
    client(&old)
        .set("fbr:k", &"y".repeat(4096), Duration::from_secs(60))
        .unwrap();
    // The new pool's client admits items of at most 1 KiB: the copy of the
    // old pool's 4 KiB item fails.
    let small_items = || {
        Client::builder()
            .servers([new.addr()])
            .io_timeout(200 * MS)
            .max_item_size(1024)
            .build()
            .unwrap()
    };
    let mk = || -> NearFar<String, String> {
        NearFar::builder()
            .far(small_items())
            .fallback(client(&old))
            .namespace("fbr")
            .lease_wait(Duration::from_secs(5))
            .build()
            .unwrap()
    };
    let (a, b) = (mk(), mk());
    assert_eq!(a.get_with(k("k"), || unreachable!()).len(), 4096);
    // b finds no lease held: it reads the old pool too, without waiting.
    let start = Instant::now();
    assert_eq!(b.get_with(k("k"), || unreachable!()).len(), 4096);
    assert!(start.elapsed() < Duration::from_secs(2));
    assert_eq!(b.stats().lease_waits, 0);
}

#[test]
fn loaders_waiting_on_each_other_do_not_wait_out_the_lease() {
    let mc = Memcached::start();
    let a: NearFar<String, String> = NearFar::builder()
        .far(client(&mc))
        .namespace("cycle")
        .lease_wait(Duration::from_secs(5))
        .build()
        .unwrap();
    let both_loading = std::sync::Arc::new(std::sync::Barrier::new(2));
    let start = Instant::now();
    // x's loader needs y, y's loader needs x, each asked once both loads
    // run: the call closing the cycle loads for itself, and must not poll
    // the memcached lease its own process's blocked leader holds.
    let handles: Vec<_> = [("x", "y"), ("y", "x")]
        .into_iter()
        .map(|(mine, other)| {
            let (a, both_loading) = (a.clone(), both_loading.clone());
            thread::spawn(move || {
                a.get_with(k(mine), || {
                    both_loading.wait();
                    a.get_with(k(other), || format!("{other}0")) + "+"
                })
            })
        })
        .collect();
    let got: Vec<String> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(
        start.elapsed() < Duration::from_millis(2500),
        "took {:?}",
        start.elapsed()
    );
    // One of the two used the other's stored value, the other its own.
    assert!(got == ["y0+", "y0++"] || got == ["x0++", "x0+"], "{got:?}");
    assert_eq!(a.get(&k("x")).as_deref(), Some(got[0].as_str()));
    assert_eq!(a.get(&k("y")).as_deref(), Some(got[1].as_str()));
}

#[test]
fn a_shared_load_inside_a_loader_run_for_one_caller_still_fills_memcached() {
    let mc = Memcached::start();
    let nf = instance(&mc, "inner");
    // A plain cache whose two loaders wait on each other: the caller that
    // closes the cycle runs its loader for itself. That loader asks the
    // NearFar for another key: a shared load of its own, which must go
    // through memcached as usual (lease, then store).
    let cache: Cache<u32, String> = Cache::new(10);
    let both_loading = std::sync::Arc::new(std::sync::Barrier::new(2));
    let handles: Vec<_> = [(1u32, 2u32, "za"), (2, 1, "zb")]
        .into_iter()
        .map(|(mine, other, far_key)| {
            let (cache, nf, both_loading) = (cache.clone(), nf.clone(), both_loading.clone());
            thread::spawn(move || {
                cache.get_or_insert_with(mine, || {
                    both_loading.wait();
                    cache.get_or_insert_with(other, || {
                        nf.get_with(k(far_key), || format!("{far_key} computed"))
                    })
                })
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    // Exactly one inner loader ran (the refused caller's); its NearFar load
    // stored the value far.
    let raw = client(&mc);
    let stored: Vec<Option<String>> = ["inner:za", "inner:zb"]
        .iter()
        .map(|key| raw.get::<String>(key).unwrap())
        .collect();
    assert_eq!(nf.stats().loader_calls, 1);
    assert!(
        stored == [Some(k("za computed")), None] || stored == [None, Some(k("zb computed"))],
        "{stored:?}"
    );
}
