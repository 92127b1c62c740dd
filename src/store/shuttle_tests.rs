//! Randomized-schedule tests of the concurrent core under shuttle
//! (`RUSTFLAGS="--cfg shuttle" cargo test --lib shuttle_`). The shim swaps the
//! atomics, mutexes and condvars for shuttle's, so shuttle controls every
//! interleaving of readers, writers, evictions and loads, and explores many.
//!
//! The epoch (`epoch`) is explored too: its atomics and queue lock come from
//! the shim, each shuttle thread has its own thread-local and so its own
//! record, and the collector is fresh for each execution. Its own schedules
//! are in `epoch/shuttle_tests.rs`.

use std::future::Future;
use std::sync::Arc;

use shuttle::sync::atomic::{AtomicUsize, Ordering};
use shuttle::thread;

use super::Cache;
use super::index::UNMIX;

const ITERATIONS: usize = 20_000;

#[test]
fn shuttle_readers_see_old_or_new_values_only() {
    shuttle::check_random(
        || {
            let cache: Cache<u32, (u32, u32)> = Cache::builder().max_entries(2).shards(1).build();
            cache.insert(1, (1, 1));
            let writer = {
                let cache = cache.clone();
                thread::spawn(move || {
                    cache.insert(1, (1, 2));
                    cache.insert(2, (2, 2));
                    cache.insert(3, (3, 3)); // evicts something
                    cache.remove(&1);
                })
            };
            let reader = {
                let cache = cache.clone();
                thread::spawn(move || {
                    for k in [1, 2, 3, 1] {
                        if let Some((key, v)) = cache.get(&k) {
                            assert_eq!(key, k, "value of another key");
                            assert!(
                                v == key || (k == 1 && v <= 2),
                                "impossible value {v} for {k}"
                            );
                        }
                    }
                })
            };
            writer.join().unwrap();
            reader.join().unwrap();
            assert!(cache.len() <= 2);
            assert_eq!(cache.get(&1), None);
            cache.check_invariants().unwrap();
        },
        ITERATIONS,
    );
}

fn loader_runs_once() {
    let cache: Cache<u32, u32> = Cache::new(10);
    let calls = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = (0..3)
        .map(|_| {
            let (cache, calls) = (cache.clone(), Arc::clone(&calls));
            thread::spawn(move || {
                cache.get_or_insert_with(7, || {
                    calls.fetch_add(1, Ordering::SeqCst);
                    thread::yield_now();
                    70
                })
            })
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap(), 70);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[test]
fn shuttle_loader_runs_once_per_key_pct() {
    // PCT: prioritised schedules that reach deep orderings random ones miss.
    shuttle::check_pct(loader_runs_once, ITERATIONS, 3);
}

#[test]
fn shuttle_loader_runs_once_per_key() {
    shuttle::check_random(loader_runs_once, ITERATIONS);
}

#[test]
fn shuttle_concurrent_writers_keep_bound_and_structure() {
    shuttle::check_random(
        || {
            let cache: Cache<u32, u32> = Cache::builder().max_entries(3).shards(1).build();
            let handles: Vec<_> = (0..2u32)
                .map(|t| {
                    let cache = cache.clone();
                    thread::spawn(move || {
                        for i in 0..4 {
                            let k = (i + t * 2) % 5;
                            cache.insert(k, k);
                            assert!(cache.len() <= 3);
                            if let Some(v) = cache.get(&(k + 1)) {
                                assert_eq!(v, k + 1);
                            }
                        }
                    })
                })
                .collect();
            for h in handles {
                h.join().unwrap();
            }
            cache.check_invariants().unwrap();
        },
        ITERATIONS,
    );
}

/// Values that own memory in a weight-bounded shard: every insert evicts,
/// finds the retired value in the way of the memory bound, makes room and
/// waits for the epoch (`retired`), while another writer and a reader run.
/// The bound (live + retired within 1.25x, checked under the lock) and the
/// values seen must hold in every interleaving.
#[test]
fn shuttle_writers_waiting_for_memory_keep_the_bound() {
    shuttle::check_random(
        || {
            let cache: Cache<u32, Vec<u32>> = Cache::builder()
                .max_weight(8)
                .weigher(|_, v: &Vec<u32>| v.len() as u64)
                .shards(1)
                .build();
            let writers: Vec<_> = (0..2u32)
                .map(|t| {
                    let cache = cache.clone();
                    thread::spawn(move || {
                        for i in 0..3 {
                            let k = t * 10 + i;
                            cache.insert(k, vec![k; 4]);
                            assert!(cache.weight() <= 8);
                            cache.check_invariants().unwrap();
                        }
                    })
                })
                .collect();
            let reader = {
                let cache = cache.clone();
                thread::spawn(move || {
                    for k in [0, 10, 1, 11, 2, 12] {
                        if let Some(v) = cache.get(&k) {
                            assert_eq!(v, vec![k; 4], "value of another key");
                        }
                    }
                })
            };
            for h in writers {
                h.join().unwrap();
            }
            reader.join().unwrap();
            cache.check_invariants().unwrap();
        },
        ITERATIONS / 4,
    );
}

// ---- The index's moves (refills, growth) against lock-free readers ----
//
// A refill moves a displaced entry to a lane nearer its home; a reader that
// read the nearer chunk before the move and the farther one after it walks
// past the entry. `Shard::find` must notice (the move sequence changed) and
// look again under the lock. These tests force displacement with a hasher
// that sends many keys to one home chunk with one tag, so every removal of
// a key there pulls a displaced key home while readers look for it.

/// Keys below this are "colliding": home chunk 0 (the top 32 bits of the
/// index's mix are 0, so chunk 0 whatever the chunk count) and tag [`TAG`].
/// Keys from here up hash all over the table.
const SPREAD: u32 = 1 << 20;
/// The one tag every colliding key shares.
const TAG: u64 = 0x5A;

/// The hash of key `k`: see [`SPREAD`]. The mix's low 24 bits still differ
/// per key (only the home chunk and the tag are forced).
fn placed_hash(k: u32) -> u64 {
    if k < SPREAD {
        ((TAG << 24) | u64::from(k)).wrapping_mul(UNMIX)
    } else {
        u64::from(k).wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }
}

/// A `BuildHasher` giving each `u32` key its [`placed_hash`].
#[derive(Clone, Copy, Default)]
struct Placed;

struct PlacedHasher(u64);

impl std::hash::Hasher for PlacedHasher {
    fn finish(&self) -> u64 {
        placed_hash(self.0 as u32)
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }
    fn write_u32(&mut self, k: u32) {
        self.0 = u64::from(k);
    }
}

impl std::hash::BuildHasher for Placed {
    type Hasher = PlacedHasher;
    fn build_hasher(&self) -> PlacedHasher {
        PlacedHasher(0)
    }
}

/// The value stored under `k` (never changes).
fn value_of(k: u32) -> u64 {
    u64::from(k) * 3 + 1
}

/// Transient keys: 12 of them fill home chunk 0 (one chunk's lanes).
const TRANSIENT: std::ops::Range<u32> = 0..12;
/// Stable keys: inserted after the transient ones, so displaced to chunk 1;
/// never removed.
const STABLE: std::ops::Range<u32> = 100..104;

/// Inserts the transient keys, then the stable ones (which overflow).
fn fill_displaced(cache: &Cache<u32, u64, Placed>) {
    for k in TRANSIENT.chain(STABLE) {
        cache.insert(k, value_of(k));
    }
}

/// Readers that must find every stable key, every time.
fn spawn_stable_readers(
    cache: &Cache<u32, u64, Placed>,
    readers: u32,
) -> Vec<thread::JoinHandle<()>> {
    (0..readers)
        .map(|r| {
            let cache = cache.clone();
            thread::spawn(move || {
                for pass in 0..2 {
                    for i in 0..STABLE.len() as u32 {
                        // Readers go round in different orders.
                        let k = STABLE.start + (i + r + pass) % STABLE.len() as u32;
                        assert_eq!(
                            cache.get(&k),
                            Some(value_of(k)),
                            "stable key {k} missed during a move"
                        );
                    }
                }
            })
        })
        .collect()
}

/// Two writers each remove two transient keys (each removal refills a
/// displaced stable key into the freed lane of chunk 0), then put them back;
/// two readers look up the stable keys throughout.
fn refills_keep_stable_keys_visible() {
    // 64 entries: 8 chunks, no eviction of the 16 keys.
    let cache: Cache<u32, u64, Placed> = Cache::builder()
        .max_entries(64)
        .shards(1)
        .hasher(Placed)
        .build();
    fill_displaced(&cache);
    let readers = spawn_stable_readers(&cache, 2);
    let writers: Vec<_> = (0..2u32)
        .map(|w| {
            let cache = cache.clone();
            thread::spawn(move || {
                let mine = [2 * w, 2 * w + 1];
                for t in mine {
                    assert_eq!(cache.remove(&t), Some(value_of(t)));
                }
                for t in mine {
                    cache.insert(t, value_of(t));
                }
            })
        })
        .collect();
    for h in writers.into_iter().chain(readers) {
        h.join().unwrap();
    }
    for k in TRANSIENT.chain(STABLE) {
        assert_eq!(cache.get(&k), Some(value_of(k)), "key {k} lost");
    }
    assert_eq!(cache.len(), TRANSIENT.len() + STABLE.len());
    cache.check_invariants().unwrap();
}

#[test]
fn shuttle_refills_never_hide_a_stable_key() {
    shuttle::check_random(refills_keep_stable_keys_visible, ITERATIONS);
}

#[test]
fn shuttle_refills_never_hide_a_stable_key_pct() {
    shuttle::check_pct(refills_keep_stable_keys_visible, ITERATIONS, 3);
}

/// A weighted shard's index starts with 8 chunks (72 entries) and doubles
/// when full: one writer crosses that line while another refills displaced
/// stable keys and readers look them up.
fn growth_keeps_stable_keys_visible() {
    let cache: Cache<u32, u64, Placed> = Cache::builder()
        .max_weight(1 << 20)
        .weigher(|_, _| 1)
        .shards(1)
        .hasher(Placed)
        .build();
    fill_displaced(&cache);
    // Up to 71 entries: the index is one short of full.
    let fillers = SPREAD..SPREAD + 71 - (TRANSIENT.len() + STABLE.len()) as u32;
    for k in fillers.clone() {
        cache.insert(k, value_of(k));
    }
    let readers = spawn_stable_readers(&cache, 2);
    let grower = {
        let cache = cache.clone();
        let more = fillers.end..fillers.end + 3;
        thread::spawn(move || {
            for k in more {
                cache.insert(k, value_of(k));
            }
        })
    };
    let churner = {
        let cache = cache.clone();
        thread::spawn(move || {
            for t in [0, 1] {
                assert_eq!(cache.remove(&t), Some(value_of(t)));
            }
            for t in [0, 1] {
                cache.insert(t, value_of(t));
            }
        })
    };
    for h in [grower, churner].into_iter().chain(readers) {
        h.join().unwrap();
    }
    for k in STABLE {
        assert_eq!(cache.get(&k), Some(value_of(k)), "stable key {k} lost");
    }
    assert_eq!(cache.len(), 74);
    cache.check_invariants().unwrap();
}

#[test]
fn shuttle_growth_never_hides_a_stable_key() {
    shuttle::check_random(growth_keeps_stable_keys_visible, ITERATIONS / 4);
}

#[test]
fn shuttle_growth_never_hides_a_stable_key_pct() {
    shuttle::check_pct(growth_keeps_stable_keys_visible, ITERATIONS / 4, 3);
}

/// Two callers await a load (and one blocks on it) while it runs: no
/// schedule loses a wake-up (shuttle reports the waiter stuck forever as a
/// deadlock) or runs the loader twice.
fn async_waiters_are_woken_once_loaded() {
    let cache: Cache<u32, u32> = Cache::new(10);
    let calls = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = (0..3)
        .map(|i| {
            let (cache, calls) = (cache.clone(), Arc::clone(&calls));
            thread::spawn(move || {
                let load = || {
                    calls.fetch_add(1, Ordering::SeqCst);
                    thread::yield_now();
                    70
                };
                if i == 0 {
                    cache.get_or_insert_with(7, load)
                } else {
                    shuttle::future::block_on(cache.get_or_insert_async(7, async { load() }))
                }
            })
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap(), 70);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[test]
fn shuttle_async_waiters_are_woken_once_loaded() {
    shuttle::check_random(async_waiters_are_woken_once_loaded, ITERATIONS);
}

#[test]
fn shuttle_async_waiters_are_woken_once_loaded_pct() {
    shuttle::check_pct(async_waiters_are_woken_once_loaded, ITERATIONS, 3);
}

#[test]
fn shuttle_a_dropped_async_leader_releases_its_waiter() {
    shuttle::check_random(
        || {
            let cache: Cache<u32, &str> = Cache::new(10);
            let leader = {
                let cache = cache.clone();
                thread::spawn(move || {
                    // Polled once (it claims the key and parks in its
                    // loader), then dropped: a cancelled caller.
                    let mut leader = Box::pin(cache.get_or_insert_async(7, async {
                        std::future::pending::<()>().await;
                        "never"
                    }));
                    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
                    let _ = leader.as_mut().poll(&mut cx);
                    thread::yield_now();
                })
            };
            let waiter = {
                let cache = cache.clone();
                thread::spawn(move || {
                    shuttle::future::block_on(cache.get_or_insert_async(7, async { "waiter" }))
                })
            };
            leader.join().unwrap();
            assert_eq!(waiter.join().unwrap(), "waiter");
            assert_eq!(cache.get(&7), Some("waiter"));
        },
        ITERATIONS,
    );
}

/// A waiter with patience (`Patience`, NearFar's blocking `loader_timeout`)
/// on an injected clock that a third thread advances past its deadline:
/// in every interleaving the waiter returns, with the leader's value or
/// (only once the clock passed its deadline) the one it is offered; the
/// leader's value is stored; the loader runs once.
fn patient_waiter_returns_and_the_leaders_value_is_stored() {
    use std::time::Duration;

    use super::Patience;
    use crate::MockClock;

    let clock = MockClock::new();
    let cache: Cache<u32, u32> = Cache::builder()
        .max_entries(10)
        .shards(1)
        .clock(clock.clone())
        .build();
    let calls = Arc::new(AtomicUsize::new(0));
    let load = |cache: Cache<u32, u32>, calls: Arc<AtomicUsize>, patient: bool| {
        let clock = clock.clone();
        thread::spawn(move || {
            let instead = || {
                assert!(clock.elapsed() >= Duration::from_secs(1), "gave up early");
                Some(99)
            };
            let patience = patient.then(|| Patience {
                wait: Duration::from_secs(1),
                instead: &instead,
            });
            let loader = |_| {
                calls.fetch_add(1, Ordering::SeqCst);
                thread::yield_now();
                Ok::<_, ()>((10, None))
            };
            cache.load_after_miss(7, loader, patience).unwrap()
        })
    };
    let a = load(cache.clone(), Arc::clone(&calls), true);
    let b = load(cache.clone(), Arc::clone(&calls), true);
    let advancer = {
        let clock = clock.clone();
        thread::spawn(move || clock.advance(Duration::from_secs(2)))
    };
    let got = [a.join().unwrap(), b.join().unwrap()];
    advancer.join().unwrap();
    assert!(got.contains(&10), "no caller led the load: {got:?}");
    assert!(got.iter().all(|&v| v == 10 || v == 99), "{got:?}");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(cache.get(&7), Some(10));
}

#[test]
fn shuttle_a_patient_waiter_returns_and_the_leaders_value_is_stored() {
    shuttle::check_random(
        patient_waiter_returns_and_the_leaders_value_is_stored,
        ITERATIONS,
    );
}

#[test]
fn shuttle_a_patient_waiter_returns_and_the_leaders_value_is_stored_pct() {
    shuttle::check_pct(
        patient_waiter_returns_and_the_leaders_value_is_stored,
        ITERATIONS,
        3,
    );
}

/// A reader racing a rebase of the expiry base (see `store::expiry`): an
/// entry already expired is never returned, whichever of the old and new
/// base and codes it sees; one still live may be missed (a spurious
/// "expired"), never one past its time.
fn a_rebase_never_revives_an_expired_entry() {
    use std::time::Duration;

    use crate::clock::MockClock;

    const DAY: Duration = Duration::from_secs(86_400);
    let clock = MockClock::new();
    let cache: Cache<u32, u32> = Cache::builder()
        .max_entries(16)
        .shards(1)
        .clock(clock.clone())
        .build();
    // Expired 3 days before the rebase: decoded against the new base with
    // its old code, it would look alive for 3.8 more days.
    cache.insert_with_ttl(1, 1, 10 * DAY);
    // Live through the rebase.
    cache.insert_with_ttl(2, 2, 14 * DAY);
    clock.advance(13 * DAY);
    let base = cache.inner.shards[0].base.get();
    let writer = {
        let cache = cache.clone();
        // A write with a TTL, 13 days on: rebases first.
        thread::spawn(move || cache.insert_with_ttl(3, 3, Duration::from_secs(60)))
    };
    let reader = {
        let cache = cache.clone();
        thread::spawn(move || {
            for _ in 0..2 {
                assert_eq!(cache.get(&1), None, "an expired entry returned");
                assert!(matches!(cache.get(&2), None | Some(2)));
            }
        })
    };
    writer.join().unwrap();
    reader.join().unwrap();
    assert!(cache.inner.shards[0].base.get() > base, "the write rebased");
    assert_eq!(cache.get(&1), None);
    assert_eq!(cache.get(&2), Some(2), "live after the rebase");
    assert_eq!(cache.get(&3), Some(3));
    cache.check_invariants().unwrap();
}

#[test]
fn shuttle_a_rebase_never_revives_an_expired_entry() {
    shuttle::check_random(a_rebase_never_revives_an_expired_entry, ITERATIONS);
}

#[test]
fn shuttle_a_rebase_never_revives_an_expired_entry_pct() {
    shuttle::check_pct(a_rebase_never_revives_an_expired_entry, ITERATIONS, 3);
}
