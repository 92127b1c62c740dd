//! NearFar against real memcached, writes and removals racing a load: what
//! another instance (or a clone) writes or removes while a loader runs, a
//! failed load releases, an undecodable value is replaced, a lease is
//! taken over, or a fallback copy is made, is never undone by that load.
#![cfg(feature = "memcached")]

#[path = "common/memcached.rs"]
mod server;

#[path = "common/nearfar_setup.rs"]
mod nearfar_setup;

use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use nearfar::NearFar;
use nearfar_setup::{MS, blocked_load, client, instance, k, stale_instance};
use server::Memcached;

/// Runs `a.get_with(key)` with a loader blocked on a channel, calls
/// `meanwhile` while it is blocked, then lets it return "v1".
fn load_racing(a: &NearFar<String, String>, key: &str, meanwhile: impl FnOnce()) {
    let (go_tx, loader) = blocked_load(a.clone(), key, "v1");
    meanwhile();
    go_tx.send(()).unwrap();
    assert_eq!(
        loader.join().unwrap(),
        "v1",
        "the loader's caller gets its value"
    );
}

#[test]
fn a_write_or_removal_during_a_load_is_not_undone() {
    let mc = Memcached::start();
    let fresh = || instance(&mc, "race");
    let a = fresh();

    // Another instance writes while a's loader runs.
    let b = fresh();
    load_racing(&a, "ins", || b.insert(k("ins"), k("v2")));
    assert_eq!(fresh().get(&k("ins")).as_deref(), Some("v2"));
    assert_eq!(a.get(&k("ins")).as_deref(), Some("v2"));

    // Another instance removes (the placeholder) while a's loader runs.
    load_racing(&a, "rm", || b.remove(&k("rm")));
    assert_eq!(fresh().get(&k("rm")), None);
    assert_eq!(a.get(&k("rm")), None);

    // The same instance (a clone) writes, then removes, meanwhile.
    let same = a.clone();
    load_racing(&a, "ins-here", || same.insert(k("ins-here"), k("v2")));
    assert_eq!(fresh().get(&k("ins-here")).as_deref(), Some("v2"));
    assert_eq!(a.get(&k("ins-here")).as_deref(), Some("v2"));
    load_racing(&a, "rm-here", || same.remove(&k("rm-here")));
    assert_eq!(fresh().get(&k("rm-here")), None);
    assert_eq!(a.get(&k("rm-here")), None);

    // A value written before the load is removed while a stale item is
    // being recomputed (stale_on_remove): the recompute does not return it.
    let swr = || stale_instance(&mc, "race-swr");
    let (a, b) = (swr(), swr());
    b.insert(k("s"), k("v0"));
    b.remove(&k("s"));
    load_racing(&a, "s", || b.insert(k("s"), k("v2")));
    assert_eq!(swr().get(&k("s")).as_deref(), Some("v2"));
    assert_eq!(a.get(&k("s")).as_deref(), Some("v2"));
}

#[test]
fn a_placeholder_removed_with_stale_on_remove_is_never_served() {
    let mc = Memcached::start();
    let mk = || -> NearFar<String, String> {
        NearFar::builder()
            .far(client(&mc))
            .namespace("swr-placeholder")
            .stale_on_remove(Duration::from_secs(30))
            .lease_wait(Duration::from_secs(10))
            .lease_ttl(Duration::from_secs(30))
            .build()
            .unwrap()
    };
    let (a, b, c, d) = (mk(), mk(), mk(), mk());
    // a holds the lease (its loader blocked) while b removes the key.
    load_racing(&a, "k", || {
        b.remove(&k("k"));
        // A reader without a loader finds nothing (not an empty string)...
        assert_eq!(d.get(&k("k")), None);
        assert_eq!(d.get(&k("k")), None);
        // ...and the next get_with runs its loader, without waiting.
        let start = Instant::now();
        assert_eq!(c.get_with(k("k"), || k("from c")), "from c");
        assert!(start.elapsed() < Duration::from_secs(5));
        assert_eq!(c.stats().loader_calls, 1);
        assert_eq!(d.get_with(k("k"), || unreachable!()), "from c");
    });
    // a's value was loaded before the removal: c's stays.
    assert_eq!(mk().get(&k("k")).as_deref(), Some("from c"));
}

#[test]
fn a_failed_load_releases_only_its_placeholder() {
    let mc = Memcached::start();
    let (a, b) = (instance(&mc, "release-cas"), instance(&mc, "release-cas"));
    let (started_tx, started_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let a2 = a.clone();
    let loader = thread::spawn(move || {
        a2.try_get_with(k("k"), || {
            started_tx.send(()).unwrap();
            go_rx.recv().unwrap();
            Err::<String, _>("db down")
        })
    });
    started_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    // b writes over a's placeholder while a's loader runs, then it fails.
    b.insert(k("k"), k("v2"));
    go_tx.send(()).unwrap();
    assert_eq!(*loader.join().unwrap().unwrap_err(), "db down");
    assert_eq!(
        instance(&mc, "release-cas").get(&k("k")).as_deref(),
        Some("v2"),
        "the release did not delete b's value"
    );
}

#[test]
fn replacing_an_undecodable_value_does_not_undo_a_write_or_removal() {
    let mc = Memcached::start();
    let raw = client(&mc);
    let fresh = || instance(&mc, "dec-race");
    let (a, b) = (fresh(), fresh());
    let garbage = |key: &str| {
        // Text flags, not UTF-8: no `String` decodes from it.
        raw.set_raw(key, &[0xff, 0xfe], 16, Duration::from_secs(60))
            .unwrap();
    };

    // Another instance writes while a loads over the undecodable value.
    garbage("dec-race:ins");
    load_racing(&a, "ins", || b.insert(k("ins"), k("v2")));
    assert_eq!(fresh().get(&k("ins")).as_deref(), Some("v2"));
    assert_eq!(a.get(&k("ins")).as_deref(), Some("v2"));

    // Another instance removes while a loads over the undecodable value.
    garbage("dec-race:rm");
    load_racing(&a, "rm", || b.remove(&k("rm")));
    assert_eq!(fresh().get(&k("rm")), None);
    assert_eq!(a.get(&k("rm")), None);
    assert!(a.stats().decode_errors >= 2);
}

#[test]
fn a_lease_timeout_load_does_not_undo_a_removal() {
    let mc = Memcached::start();
    let mk = |wait: Duration| -> NearFar<String, String> {
        NearFar::builder()
            .far(client(&mc))
            .namespace("hung-rm")
            .lease_wait(wait)
            .build()
            .unwrap()
    };
    let (a, b, c) = (
        mk(Duration::from_secs(5)),
        mk(100 * MS),
        mk(Duration::from_secs(5)),
    );
    // a wins the lease and hangs; b waits out its lease_wait, takes the
    // lease over and loads.
    let (go_a, holder) = blocked_load(a, "k", "from a");
    let (go_b, late) = blocked_load(b.clone(), "k", "from b");
    assert_eq!(b.stats().lease_takeovers, 1);
    // The key is removed (b's placeholder with it) while b's loader runs.
    c.remove(&k("k"));
    go_b.send(()).unwrap();
    assert_eq!(late.join().unwrap(), "from b", "b's caller gets its value");
    assert_eq!(mk(MS).get(&k("k")), None, "b stored after the removal");
    go_a.send(()).unwrap();
    assert_eq!(holder.join().unwrap(), "from a");
    assert_eq!(mk(MS).get(&k("k")), None, "a stored after the removal");
}

/// A `String` whose decoding, while [`GATE`] is armed, says so and waits:
/// holds a fallback-pool read between the read and the far store.
#[derive(Debug, Clone, PartialEq)]
struct Gated(String);

type Gate = (mpsc::Sender<()>, mpsc::Receiver<()>);
static GATE: std::sync::Mutex<Option<Gate>> = std::sync::Mutex::new(None);

impl serde::Serialize for Gated {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> serde::Deserialize<'de> for Gated {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = String::deserialize(d)?;
        let gate = GATE.lock().unwrap().take();
        if let Some((started, go)) = gate {
            started.send(()).unwrap();
            go.recv().unwrap();
        }
        Ok(Gated(value))
    }
}

#[test]
fn a_fallback_fill_refused_far_is_not_kept_near() {
    let old = Memcached::start();
    let new = Memcached::start();
    let mk = || -> NearFar<String, Gated> {
        NearFar::builder()
            .far(client(&new))
            .fallback(client(&old))
            .namespace("fb-race")
            .build()
            .unwrap()
    };
    let (a, b) = (mk(), mk());
    let old_raw = client(&old);
    let v = |s: &str| Gated(k(s));
    // `read` reads `key` through a with its fallback decode held, while
    // `meanwhile` runs; a's caller gets the old pool's value.
    let race =
        |key: &str, read: fn(&NearFar<String, Gated>, String) -> Gated, meanwhile: &dyn Fn()| {
            old_raw
                .set(&format!("fb-race:{key}"), "old", Duration::from_secs(60))
                .unwrap();
            let (started_tx, started_rx) = mpsc::channel();
            let (go_tx, go_rx) = mpsc::channel();
            *GATE.lock().unwrap() = Some((started_tx, go_rx));
            let (a2, key2) = (a.clone(), k(key));
            let reader = thread::spawn(move || read(&a2, key2));
            started_rx.recv_timeout(Duration::from_secs(10)).unwrap();
            meanwhile();
            go_tx.send(()).unwrap();
            assert_eq!(reader.join().unwrap(), v("old"));
        };
    let with = |a: &NearFar<String, Gated>, key| a.get_with(key, || unreachable!());
    let get = |a: &NearFar<String, Gated>, key| a.get(&key).unwrap();

    // A load's fill over its placeholder, a write meanwhile.
    race("w", with, &|| b.insert(k("w"), v("v2")));
    assert_eq!(a.get(&k("w")), Some(v("v2")));
    // A load's fill over its placeholder, a removal meanwhile.
    race("r", with, &|| b.remove(&k("r")));
    assert_eq!(a.get(&k("r")), None);
    // A get's fill (`add`), a write meanwhile.
    race("g", get, &|| b.insert(k("g"), v("v2")));
    assert_eq!(a.get(&k("g")), Some(v("v2")));
}
