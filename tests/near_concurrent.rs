//! The near tier under concurrency: loader coalescing, bounds, and readers
//! racing writers, evictions and index resizes. Loops are bounded in count.

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use nearfar::Cache;

const THREADS: usize = 8;

#[test]
fn concurrent_misses_run_the_loader_once() {
    for round in 0..20u64 {
        let cache: Cache<u64, u64> = Cache::new(100);
        let calls = Arc::new(AtomicUsize::new(0));
        let barrier = Arc::new(Barrier::new(THREADS));
        let handles: Vec<_> = (0..THREADS)
            .map(|_| {
                let (cache, calls, barrier) =
                    (cache.clone(), Arc::clone(&calls), Arc::clone(&barrier));
                thread::spawn(move || {
                    barrier.wait();
                    cache.get_or_insert_with(round, || {
                        calls.fetch_add(1, Ordering::SeqCst);
                        thread::sleep(Duration::from_millis(20));
                        round * 10
                    })
                })
            })
            .collect();
        for h in handles {
            assert_eq!(h.join().unwrap(), round * 10);
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1, "round {round}");
        let s = cache.stats();
        assert_eq!(s.loads, 1);
        assert_eq!(s.loads + s.load_waits + s.hits, THREADS as u64, "{s:?}");
    }
}

#[test]
fn a_failing_loader_shares_its_error_with_its_waiters() {
    let cache: Cache<u32, u32> = Cache::new(100);
    let calls = Arc::new(AtomicUsize::new(0));
    let barrier = Arc::new(Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS)
        .map(|_| {
            let (cache, calls, barrier) = (cache.clone(), Arc::clone(&calls), Arc::clone(&barrier));
            thread::spawn(move || {
                barrier.wait();
                let waits = cache.clone();
                cache.try_get_or_insert_with(1, move || {
                    calls.fetch_add(1, Ordering::SeqCst);
                    // Fail only once every other caller waits on this load
                    // (bounded: a miss shows as extra loader runs).
                    for _ in 0..2_000 {
                        if waits.stats().load_waits >= THREADS as u64 - 1 {
                            break;
                        }
                        thread::sleep(Duration::from_millis(5));
                    }
                    Err::<u32, String>("db down".into())
                })
            })
        })
        .collect();
    let errors: Vec<Arc<String>> = handles
        .into_iter()
        .map(|h| h.join().unwrap().unwrap_err())
        .collect();
    // One run; its very error (the same allocation) reached every waiter.
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(*errors[0], "db down");
    for e in &errors {
        assert!(Arc::ptr_eq(e, &errors[0]), "a waiter got another error");
    }
    assert!(!cache.contains_key(&1), "errors are not cached");
}

#[test]
fn a_panicking_loader_releases_waiters_who_retry() {
    let cache: Cache<u32, u32> = Cache::new(100);
    let calls = Arc::new(AtomicUsize::new(0));
    let barrier = Arc::new(Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS)
        .map(|_| {
            let (cache, calls, barrier) = (cache.clone(), Arc::clone(&calls), Arc::clone(&barrier));
            thread::spawn(move || {
                barrier.wait();
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    cache.get_or_insert_with(1, || {
                        let n = calls.fetch_add(1, Ordering::SeqCst);
                        thread::sleep(Duration::from_millis(30));
                        if n == 0 {
                            panic!("first loader fails");
                        }
                        42
                    })
                }))
            })
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(
        results.iter().filter(|r| r.is_err()).count(),
        1,
        "only the panicking caller sees the panic"
    );
    assert!(results.iter().flatten().all(|&v| v == 42));
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "one retry after the panic, coalesced"
    );
    assert_eq!(cache.get(&1), Some(42));
}

#[test]
fn bound_never_exceeded_under_concurrent_inserts() {
    let cache: Cache<u64, u64> = Cache::builder().max_entries(1000).build();
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (cache, stop) = (cache.clone(), Arc::clone(&stop));
        thread::spawn(move || {
            let mut max_seen = 0;
            while !stop.load(Ordering::Relaxed) {
                max_seen = max_seen.max(cache.len());
            }
            max_seen
        })
    };
    let writers: Vec<_> = (0..4u64)
        .map(|t| {
            let cache = cache.clone();
            thread::spawn(move || {
                for i in 0..50_000u64 {
                    let k = (i * 7919 + t * 13) % 20_000;
                    cache.insert(k, k);
                    if let Some(v) = cache.get(&(k / 2)) {
                        assert_eq!(v, k / 2);
                    }
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    assert!(watcher.join().unwrap() <= 1000);
    assert!(cache.len() <= 1000);
    cache.check_invariants().unwrap();
}

/// Readers check that every value they get belongs to its key while writers
/// replace, remove and evict entries and the index of a weighted cache grows:
/// a slot reused too early would show up as a wrong or torn value.
#[test]
fn readers_never_see_a_reused_slot() {
    #[derive(Clone)]
    struct Val {
        key: u64,
        body: Arc<Vec<u64>>,
    }
    for round in 0..3 {
        let cache: Cache<u64, Val> = Cache::builder()
            .max_weight(40_000)
            .weigher(|_, v: &Val| v.body.len() as u64)
            .build();
        let stop = Arc::new(AtomicBool::new(false));
        let readers: Vec<_> = (0..3)
            .map(|_| {
                let (cache, stop) = (cache.clone(), Arc::clone(&stop));
                thread::spawn(move || {
                    let mut seen = 0u64;
                    let mut i = 0u64;
                    while !stop.load(Ordering::Relaxed) && i < 20_000_000 {
                        let k = (i * 2_654_435_761) % 8_192;
                        if let Some(v) = cache.get(&k) {
                            assert_eq!(v.key, k);
                            assert!(v.body.iter().all(|&x| x == k), "torn value for {k}");
                            seen += 1;
                        }
                        i += 1;
                    }
                    seen
                })
            })
            .collect();
        for i in 0..200_000u64 {
            let k = (i * 40_503 + round) % 8_192;
            match i % 10 {
                0 => {
                    cache.remove(&k);
                }
                _ => cache.insert(
                    k,
                    Val {
                        key: k,
                        body: Arc::new(vec![k; 1 + (i % 13) as usize]),
                    },
                ),
            }
        }
        stop.store(true, Ordering::Relaxed);
        let seen: u64 = readers.into_iter().map(|r| r.join().unwrap()).sum();
        assert!(seen > 0, "readers should have hit something");
        assert!(cache.weight() <= 40_000);
        cache.check_invariants().unwrap();
    }
}

/// Reviewer's case: a panic after the loader returned (here in the weigher,
/// then in the listener) must release the waiters, not leave them blocked.
#[test]
fn a_panic_after_the_loader_releases_waiters() {
    for panic_in_listener in [false, true] {
        let armed = Arc::new(AtomicBool::new(true));
        let trip = Arc::clone(&armed);
        let boom = move || {
            if trip.swap(false, Ordering::SeqCst) {
                panic!("injected");
            }
        };
        let boom2 = boom.clone();
        let cache: Cache<u32, u32> = if panic_in_listener {
            Cache::builder()
                .max_entries(1)
                .shards(1)
                .eviction_listener(move |_, _, _| boom())
                .build()
        } else {
            Cache::builder()
                .max_entries(100)
                .weigher(move |_, _| {
                    boom2();
                    1
                })
                .build()
        };
        if panic_in_listener {
            cache.insert(0, 0); // the load's insert will evict this one
        }
        let barrier = Arc::new(Barrier::new(THREADS));
        let handles: Vec<_> = (0..THREADS)
            .map(|_| {
                let (cache, barrier) = (cache.clone(), Arc::clone(&barrier));
                thread::spawn(move || {
                    barrier.wait();
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        cache.get_or_insert_with(1, || {
                            thread::sleep(Duration::from_millis(20));
                            11
                        })
                    }))
                })
            })
            .collect();
        let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert_eq!(
            results.iter().filter(|r| r.is_err()).count(),
            1,
            "one caller saw the injected panic"
        );
        assert!(results.iter().flatten().all(|&v| v == 11));
        assert_eq!(cache.get_or_insert_with(1, || 99), 11);
        cache.check_invariants().unwrap();
    }
}

// ---- The index's moves (refills, growth) against lock-free readers ----
//
// The shard's index is F14-style: a key whose home chunk (12 lanes) is full
// overflows to the next chunk, and a removal pulls such displaced keys back
// into the freed lane (a refill). A reader that read the home chunk before a
// move and the next one after it walks past the key; the shard's move
// sequence must make that miss retry under the lock. These tests force
// displacement with a hasher that puts groups of keys in one home chunk with
// one tag, and check that keys never removed are never missed.

/// Lanes in one index chunk.
const LANES: u64 = 12;
/// Per collision group: members `0..LANES` are transient (they fill the home
/// chunk first and are churned), `LANES..LANES + STABLE_PER_GROUP` stable
/// (inserted after, so displaced into the next chunk; never removed).
const STABLE_PER_GROUP: u64 = 6;
/// The tag every colliding key shares (byte 3 of the index's mix).
const TAG: u64 = 0x5A;
/// The inverse (mod 2^64) of the odd multiplier the index mixes hashes
/// with (`store::index::mix`): a hash of `m * UNMIX` mixes to `m`, so a test
/// can choose the mixed value's home chunk (top 32 bits) and tag (bits
/// 24..32) directly.
const UNMIX: u64 = {
    let a = 0x9E37_79B9_7F4A_7C15u64;
    // Newton's iteration for the inverse of an odd number mod 2^64.
    let mut x = a;
    let mut i = 0;
    while i < 6 {
        x = x.wrapping_mul(2u64.wrapping_sub(a.wrapping_mul(x)));
        i += 1;
    }
    x
};

/// Keys from here up are fillers with well-spread hashes.
const FILLER: u64 = 1 << 40;

/// Colliding key `member` of `group`.
fn member_key(group: u64, member: u64) -> u64 {
    (group << 8) | member
}

/// The stable keys of `group`.
fn stable_of(group: u64) -> impl Iterator<Item = u64> {
    (LANES..LANES + STABLE_PER_GROUP).map(move |m| member_key(group, m))
}

/// Hashes a `u64` key so that, after the index's mix, every colliding key
/// of group `g` out of `groups` has tag [`TAG`] and the top 32 bits
/// `ceil(g * 2^32 / groups)`: its home chunk (`top32 * chunks >> 32`) is
/// the same for the whole group,
/// and the groups spread evenly over the table whatever its size. Fillers
/// hash anywhere. (Tests use one shard, so the shard bits do not matter.)
#[derive(Clone, Copy)]
struct Collide {
    groups: u64,
}

struct CollideHasher {
    groups: u64,
    key: u64,
}

impl Hasher for CollideHasher {
    fn finish(&self) -> u64 {
        let k = self.key;
        if k >= FILLER {
            return k.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
        let top = ((k >> 8) << 32).div_ceil(self.groups);
        ((top << 32) | (TAG << 24) | (k & 0xFF_FFFF)).wrapping_mul(UNMIX)
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.key = (self.key << 8) | u64::from(b);
        }
    }
    fn write_u64(&mut self, k: u64) {
        self.key = k;
    }
}

impl BuildHasher for Collide {
    type Hasher = CollideHasher;
    fn build_hasher(&self) -> CollideHasher {
        CollideHasher {
            groups: self.groups,
            key: 0,
        }
    }
}

/// The value stored under `k` (never changes).
fn value_of(k: u64) -> u64 {
    k.wrapping_mul(3) + 1
}

/// Inserts every group's transient keys, then its stable ones, which find
/// the home chunk full and overflow into the next.
fn fill_groups(cache: &Cache<u64, u64, Collide>, groups: u64) {
    for g in 0..groups {
        for m in 0..LANES {
            cache.insert(member_key(g, m), value_of(member_key(g, m)));
        }
    }
    for g in 0..groups {
        for k in stable_of(g) {
            cache.insert(k, value_of(k));
        }
    }
}

/// Looks up `keys`, recording each miss or wrong value in `wrong`.
fn check_stable(
    cache: &Cache<u64, u64, Collide>,
    keys: impl Iterator<Item = u64>,
    wrong: &mut Vec<(u64, Option<u64>)>,
) {
    for k in keys {
        let got = cache.get(&k);
        if got != Some(value_of(k)) {
            wrong.push((k, got));
        }
    }
}

/// Fails with a sample of `misses` if there are any.
fn assert_no_misses(misses: &[(u64, Option<u64>)]) {
    assert!(
        misses.is_empty(),
        "{} lookups of stable keys failed, e.g. {:?}",
        misses.len(),
        &misses[..misses.len().min(5)]
    );
}

/// Two writers churn transient keys (each removal from a home chunk refills
/// the lane with a displaced stable key) while two readers look up the
/// stable keys, which must always be found with their value. Each reader
/// follows one writer's progress through the groups, so it is looking at
/// the keys that are moving. Once home a key does not move again, so each
/// round is short and starts from a fresh cache with the stable keys in
/// overflow: half of a round's removals move a stable key.
#[test]
fn refills_never_hide_a_stable_key() {
    const GROUPS: u64 = 10;
    // Each writer removes and re-inserts its 60 keys once a round: about
    // 50_000 operations per writer in all.
    const ROUNDS: usize = 420;
    // 383 entries: 43 chunks, so the groups' home chunks are 4 or 5 apart
    // and one group's overflow stays out of the next one's home.
    const MAX_ENTRIES: usize = 383;
    // A reader's lookups per round, at most.
    const MAX_READS: usize = 200_000;
    let mut misses = Vec::new();
    let mut ops = [0usize; 2];
    for _ in 0..ROUNDS {
        let cache: Cache<u64, u64, Collide> = Cache::builder()
            .max_entries(MAX_ENTRIES)
            .shards(1)
            .hasher(Collide { groups: GROUPS })
            .build();
        fill_groups(&cache, GROUPS);
        // The group each writer is churning; GROUPS once it is done.
        let progress = [AtomicU64::new(0), AtomicU64::new(0)];
        let barrier = Barrier::new(4);
        thread::scope(|s| {
            let readers: Vec<_> = progress
                .iter()
                .map(|progress| {
                    let (cache, barrier) = (&cache, &barrier);
                    s.spawn(move || {
                        barrier.wait();
                        let mut wrong = Vec::new();
                        for _ in 0..MAX_READS / STABLE_PER_GROUP as usize {
                            let g = progress.load(Ordering::Relaxed);
                            if g == GROUPS {
                                break;
                            }
                            check_stable(cache, stable_of(g), &mut wrong);
                        }
                        wrong
                    })
                })
                .collect();
            let writers: Vec<_> = (0..2u64)
                .map(|w| {
                    let (cache, barrier, progress) = (&cache, &barrier, &progress[w as usize]);
                    s.spawn(move || {
                        barrier.wait();
                        // Writer w churns members [6w, 6w + 6) of each group.
                        let mine = w * LANES / 2..(w + 1) * LANES / 2;
                        for g in 0..GROUPS {
                            progress.store(g, Ordering::Relaxed);
                            for m in mine.clone() {
                                let k = member_key(g, m);
                                assert_eq!(cache.remove(&k), Some(value_of(k)));
                            }
                        }
                        progress.store(GROUPS, Ordering::Relaxed);
                        for g in 0..GROUPS {
                            for m in mine.clone() {
                                cache.insert(member_key(g, m), value_of(member_key(g, m)));
                            }
                        }
                        2 * GROUPS as usize * mine.count()
                    })
                })
                .collect();
            for r in readers {
                misses.extend(r.join().unwrap());
            }
            for (w, h) in writers.into_iter().enumerate() {
                ops[w] += h.join().unwrap();
            }
        });
        check_stable(&cache, (0..GROUPS).flat_map(stable_of), &mut misses);
        assert_eq!(cache.len(), (GROUPS * (LANES + STABLE_PER_GROUP)) as usize);
        cache.check_invariants().unwrap();
    }
    assert!(ops.iter().all(|&n| n >= 50_000), "{ops:?}");
    assert_no_misses(&misses);
}

/// The index of a weighted cache starts small (72 entries) and doubles as
/// entries arrive. One writer pulls some displaced stable keys home, adds
/// fillers so the index grows (rebuilt in LRU order, which displaces the
/// other stable keys again behind the older transient ones), pulls those
/// home in the new table, then keeps adding fillers through several more
/// growths; two readers look up the stable keys all the while.
#[test]
fn growth_and_refills_never_hide_a_stable_key() {
    const ROUNDS: usize = 300;
    // 54 colliding keys (the homes are chunks 0, 2 and 5 of the first 8).
    const GROUPS: u64 = 3;
    // The index holds 72 entries before its first growth; after it, about
    // 150, 310 and 630.
    const FIRST_GROWTH: u64 = 72;
    const FILLERS: u64 = 700;
    const MAX_READS: usize = 2_000_000;
    let mut misses = Vec::new();
    for _ in 0..ROUNDS {
        let cache: Cache<u64, u64, Collide> = Cache::builder()
            .max_weight(1 << 30)
            .weigher(|_, _| 1)
            .shards(1)
            .hasher(Collide { groups: GROUPS })
            .build();
        fill_groups(&cache, GROUPS);
        // Fillers up to one short of the first growth.
        let colliding = GROUPS * (LANES + STABLE_PER_GROUP);
        let mut fillers = FILLER..FILLER + FILLERS;
        for k in fillers
            .by_ref()
            .take((FIRST_GROWTH - 1 - colliding) as usize)
        {
            cache.insert(k, value_of(k));
        }
        let done = AtomicBool::new(false);
        let barrier = Barrier::new(3);
        thread::scope(|s| {
            let readers: Vec<_> = (0..2)
                .map(|_| {
                    s.spawn(|| {
                        barrier.wait();
                        let mut wrong = Vec::new();
                        let per_pass = (GROUPS * STABLE_PER_GROUP) as usize;
                        for _ in 0..MAX_READS / per_pass {
                            if done.load(Ordering::Relaxed) {
                                break;
                            }
                            check_stable(&cache, (0..GROUPS).flat_map(stable_of), &mut wrong);
                        }
                        wrong
                    })
                })
                .collect();
            s.spawn(|| {
                barrier.wait();
                let remove = |members: std::ops::Range<u64>| {
                    for g in 0..GROUPS {
                        for m in members.clone() {
                            let k = member_key(g, m);
                            assert_eq!(cache.remove(&k), Some(value_of(k)));
                        }
                    }
                };
                // Three stable keys a group go home, three stay displaced.
                remove(0..3);
                // The index grows: the 9 older transient keys a group go
                // home first, then the stable ones (3 home, 3 displaced).
                for k in fillers.by_ref().take(8) {
                    cache.insert(k, value_of(k));
                }
                // Refills in the new table pull the displaced ones home.
                remove(3..LANES);
                for g in 0..GROUPS {
                    for m in 0..LANES {
                        cache.insert(member_key(g, m), value_of(member_key(g, m)));
                    }
                }
                // More growths while readers read.
                for k in fillers {
                    cache.insert(k, value_of(k));
                }
                done.store(true, Ordering::Relaxed);
            });
            for r in readers {
                misses.extend(r.join().unwrap());
            }
        });
        check_stable(&cache, (0..GROUPS).flat_map(stable_of), &mut misses);
        assert_eq!(cache.len(), (colliding + FILLERS) as usize);
        cache.check_invariants().unwrap();
    }
    assert_no_misses(&misses);
}

#[test]
fn an_insert_from_another_thread_during_a_load_is_kept() {
    let cache: Cache<u64, &str> = Cache::new(100);
    let started = Arc::new(Barrier::new(2));
    let written = Arc::new(Barrier::new(2));
    let loader = {
        let (cache, started, written) = (cache.clone(), Arc::clone(&started), Arc::clone(&written));
        thread::spawn(move || {
            cache.get_or_insert_with(7, || {
                started.wait();
                // Hold the load open until the other thread has written.
                written.wait();
                "loaded"
            })
        })
    };
    started.wait();
    cache.insert(7, "written");
    written.wait();
    assert_eq!(loader.join().unwrap(), "loaded");
    assert_eq!(cache.get(&7), Some("written"));
}

/// One thread per `(mine, other, own, base)`: each loads `mine`, whose loader,
/// once every thread is loading, asks for `other` (loading `own` if it must)
/// and adds `base`. Returns `(mine, value)` per thread, failing the test if
/// they have not all finished within 10 s (a deadlock).
fn load_in_a_cycle(cache: &Cache<u32, u32>, loads: &[(u32, u32, u32, u32)]) -> Vec<(u32, u32)> {
    use std::sync::mpsc;
    let all_loading = Arc::new(Barrier::new(loads.len()));
    let (done_tx, done_rx) = mpsc::channel();
    for &(mine, other, own, base) in loads {
        let (cache, all_loading, done_tx) =
            (cache.clone(), Arc::clone(&all_loading), done_tx.clone());
        thread::spawn(move || {
            let v = cache.get_or_insert_with(mine, || {
                all_loading.wait();
                cache.get_or_insert_with(other, || own) + base
            });
            done_tx.send((mine, v)).unwrap();
        });
    }
    (0..loads.len())
        .map(|_| {
            done_rx
                .recv_timeout(Duration::from_secs(10))
                .expect("loaders deadlocked")
        })
        .collect()
}

#[test]
fn loaders_waiting_on_each_other_across_threads_do_not_deadlock() {
    for round in 0..20 {
        let cache: Cache<u32, u32> = Cache::new(100);
        // Thread A loads key 1, whose loader needs key 2; thread B loads key
        // 2, whose loader needs key 1. Each asks once both are loading, so
        // each waits for the other's load: a cycle.
        let mut got = [0u32; 3];
        for (k, v) in load_in_a_cycle(&cache, &[(1, 2, 20, 1), (2, 1, 10, 100)]) {
            got[k as usize] = v;
        }
        // Whichever thread closed the cycle loaded the other key for itself
        // (unstored); the other thread's load then used its stored value.
        let (one, two) = (got[1], got[2]);
        assert!(
            (one, two) == (21, 121) || (one, two) == (111, 110),
            "round {round}: key 1 -> {one}, key 2 -> {two}"
        );
        assert_eq!((cache.get(&1), cache.get(&2)), (Some(one), Some(two)));
    }
}

#[test]
fn a_cycle_of_three_loaders_does_not_deadlock() {
    for round in 0..20 {
        let cache: Cache<u32, u32> = Cache::new(100);
        // Key k's loader needs key (k + 1) % 3: 0 -> 1 -> 2 -> 0.
        let loads: Vec<_> = (0..3u32).map(|k| (k, (k + 1) % 3, 1000, 1)).collect();
        for (k, v) in load_in_a_cycle(&cache, &loads) {
            // Each thread led its own key's load, so its value is stored.
            assert_eq!(cache.get(&k), Some(v), "round {round}");
        }
    }
}

#[test]
fn nested_loads_across_threads_run_each_loader_once() {
    // A memoised recursion (no cycle: each key needs smaller keys only) run
    // by several threads at once, each climbing from its own start so they
    // meet: loads wait on loads, and a wait on a thread whose load has just
    // ended must not look like a cycle (which runs a loader a second time).
    fn fib(cache: &Cache<u64, u64>, runs: &AtomicUsize, n: u64) -> u64 {
        if n < 2 {
            return n;
        }
        cache.get_or_insert_with(n, || {
            runs.fetch_add(1, Ordering::SeqCst);
            let (a, b) = (fib(cache, runs, n - 1), fib(cache, runs, n - 2));
            // Some work, so that loads overlap.
            let mut x = a;
            for i in 0..2_000u64 {
                x = x.wrapping_mul(31).wrapping_add(i ^ b);
            }
            std::hint::black_box(x);
            a.wrapping_add(b)
        })
    }
    const N: u64 = 200;
    for round in 0..40 {
        let cache: Cache<u64, u64> = Cache::new(1_000);
        let runs = Arc::new(AtomicUsize::new(0));
        let handles: Vec<_> = (0..THREADS as u64)
            .map(|t| {
                let (cache, runs) = (cache.clone(), Arc::clone(&runs));
                thread::spawn(move || {
                    for m in t * 3..=N {
                        fib(&cache, &runs, m);
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(
            runs.load(Ordering::SeqCst),
            N as usize - 1,
            "round {round}: every key from 2 to {N} loaded once"
        );
    }
}

/// Starts `get_or_insert_with(key, ..)` on another thread, its loader held
/// until the returned sender sends (at most 10 s); returns once the loader
/// runs, with the sender and the caller's handle.
fn held_load(
    cache: &Cache<u32, &'static str>,
    key: u32,
    value: &'static str,
) -> (
    std::sync::mpsc::Sender<()>,
    thread::JoinHandle<&'static str>,
) {
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let cache = cache.clone();
    let handle = thread::spawn(move || {
        cache.get_or_insert_with(key, || {
            started_tx.send(()).unwrap();
            go_rx.recv_timeout(Duration::from_secs(10)).unwrap();
            value
        })
    });
    started_rx.recv().unwrap();
    (go_tx, handle)
}

#[test]
fn a_call_after_a_remove_does_not_join_the_load_it_superseded() {
    let cache: Cache<u32, &str> = Cache::new(100);
    let (go, slow) = held_load(&cache, 1, "old");
    // The slow load began before this removal: what it computes is older.
    cache.remove(&1);
    assert_eq!(cache.get_or_insert_with(1, || "fresh"), "fresh");
    go.send(()).unwrap();
    assert_eq!(slow.join().unwrap(), "old");
    assert_eq!(cache.get(&1), Some("fresh"));

    // clear() supersedes a load in progress as well.
    let (go, slow) = held_load(&cache, 2, "before clear");
    cache.clear();
    go.send(()).unwrap();
    assert_eq!(slow.join().unwrap(), "before clear");
    assert_eq!(cache.get(&2), None, "not stored after the clear");
}
