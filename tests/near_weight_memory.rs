//! `max_weight` bounds the memory the values hold, not only their weight.
//!
//! A value the cache evicts or replaces stays allocated until no reader can
//! still be reading it (epoch reclamation). Those retired values count
//! against the bound too: with a weigher that returns the value's size, the
//! bytes held by the cache's values, live and retired together, stay within
//! 1.25 x `max_weight`.
//!
//! Measured here with a global allocator that counts the bytes held in
//! large allocations (the value buffers; nothing else in these tests
//! allocates 64 KiB or more at once), and their peak. On top of the cache's
//! share the peak may include values the test itself holds:
//! * the value being inserted, built by the caller before `insert` and
//!   counted from then on (the cache admits it only once the shard's live
//!   and retired weight leave room for it, so while it waits it is the
//!   caller's, and once it is linked the cache is within 1.25x with it);
//! * in the tests with a reader, the clone that `get` returns, until the
//!   reader drops it.
//!
//! Its own test binary, for the global allocator; the tests take a lock so
//! that one runs at a time.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::Duration;

use nearfar::Cache;

/// Allocations at least this large are counted.
const LARGE: usize = 64 << 10;

/// The system allocator, counting the bytes held in large allocations.
struct Counting;

static HELD: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn add(size: usize) {
    if size >= LARGE {
        let now = HELD.fetch_add(size, Ordering::SeqCst) + size;
        PEAK.fetch_max(now, Ordering::SeqCst);
    }
}

fn sub(size: usize) {
    if size >= LARGE {
        HELD.fetch_sub(size, Ordering::SeqCst);
    }
}

// SAFETY: forwards every call to `System` unchanged, only counting sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        add(layout.size());
        // SAFETY: the caller's obligations are `System::alloc`'s.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        add(layout.size());
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        sub(layout.size());
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        sub(layout.size());
        add(new_size);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// One test at a time: they share the counters.
static SERIAL: Mutex<()> = Mutex::new(());

/// A cache bounded to `max_weight` bytes of `Vec<u8>` values.
fn byte_cache(max_weight: u64) -> Cache<u64, Vec<u8>> {
    Cache::builder()
        .max_weight(max_weight)
        .weigher(|_, v: &Vec<u8>| v.len() as u64)
        .build()
}

/// Starts a measurement: the peak restarts from what is held now.
fn start() -> usize {
    let held = HELD.load(Ordering::SeqCst);
    PEAK.store(held, Ordering::SeqCst);
    held
}

/// The most `max_weight`'s values may hold: 1.25x.
fn allowance(max_weight: u64) -> usize {
    (max_weight + max_weight / 4) as usize
}

/// Inserts `inserts` distinct keys with `value_len`-byte values, and checks
/// the peak held while doing it and what is held once it is done.
/// `readers_slack` is the number of values readers may hold as clones.
fn fill_and_check(
    cache: &Cache<u64, Vec<u8>>,
    max_weight: u64,
    value_len: usize,
    inserts: u64,
    baseline: usize,
    readers_slack: usize,
) {
    for k in 0..inserts {
        cache.insert(k, vec![0u8; value_len]);
    }
    // Saturating: an earlier test's retired values may be freed meanwhile.
    let peak = PEAK.load(Ordering::SeqCst).saturating_sub(baseline);
    // One value in flight (the one being inserted), plus the readers'.
    let bound = allowance(max_weight) + (1 + readers_slack) * value_len;
    eprintln!(
        "max_weight {} MiB, {} KiB values: peak {:.1} MiB ({:.2}x), bound {} MiB",
        max_weight >> 20,
        value_len >> 10,
        peak as f64 / (1 << 20) as f64,
        peak as f64 / max_weight as f64,
        bound >> 20
    );
    assert!(
        peak <= bound,
        "peak {peak} bytes held for a max_weight of {max_weight} \
         ({:.2}x; the bound is {bound})",
        peak as f64 / max_weight as f64
    );
    assert!(cache.weight() <= max_weight);
    // Also checks, under each shard's lock, live + retired against 1.25x.
    cache.check_invariants().unwrap();
    let s = cache.stats();
    eprintln!("  {} of {inserts} inserts refused", s.rejected);
    assert!(s.inserts > 0, "nothing was stored: {s:?}");
}

/// After the inserts: what the cache's values hold (the test holds none).
fn check_settled(max_weight: u64, baseline: usize, readers_slack_bytes: usize) {
    let held = HELD.load(Ordering::SeqCst).saturating_sub(baseline);
    assert!(
        held <= allowance(max_weight) + readers_slack_bytes,
        "{held} bytes held after the inserts for a max_weight of {max_weight} \
         ({:.2}x)",
        held as f64 / max_weight as f64
    );
}

fn single_threaded(max_weight: u64, value_len: usize, inserts: u64) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let baseline = start();
    let cache = byte_cache(max_weight);
    fill_and_check(&cache, max_weight, value_len, inserts, baseline, 0);
    check_settled(max_weight, baseline, 0);
    drop(cache);
    assert_eq!(
        HELD.load(Ordering::SeqCst),
        baseline,
        "dropped with the cache"
    );
}

fn with_a_reader(max_weight: u64, value_len: usize, inserts: u64) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let baseline = start();
    let cache = byte_cache(max_weight);
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (cache, stop) = (cache.clone(), Arc::clone(&stop));
        thread::spawn(move || {
            // Reads the keys most recently written (bounded by the writer's
            // progress), so many lookups hit and clone a value.
            let mut reads = 0u64;
            while !stop.load(Ordering::Relaxed) && reads < 50_000_000 {
                let newest = cache.stats().inserts;
                for k in newest.saturating_sub(8)..newest {
                    // A hit clones the value while pinned; the clone is
                    // dropped at once.
                    drop(cache.get(&k));
                    reads += 1;
                }
                reads += 1;
            }
        })
    };
    fill_and_check(&cache, max_weight, value_len, inserts, baseline, 1);
    stop.store(true, Ordering::Relaxed);
    reader.join().unwrap();
    // The reader has stopped: one more write to the cache hands back what
    // its last pins held.
    cache.insert(u64::MAX, vec![0u8; value_len]);
    check_settled(max_weight, baseline, 0);
}

#[test]
fn two_mib_values_in_a_16_mib_cache_hold_at_most_1_25x() {
    single_threaded(16 << 20, 2 << 20, 2_000);
}

#[test]
fn eight_mib_values_in_a_64_mib_cache_hold_at_most_1_25x() {
    single_threaded(64 << 20, 8 << 20, 200);
}

#[test]
fn two_mib_values_with_a_concurrent_reader_hold_at_most_1_25x() {
    with_a_reader(16 << 20, 2 << 20, 1_000);
}

#[test]
fn eight_mib_values_with_a_concurrent_reader_hold_at_most_1_25x() {
    with_a_reader(64 << 20, 8 << 20, 100);
}

#[test]
fn loaded_values_hold_at_most_1_25x() {
    const MAX: u64 = 16 << 20;
    const LEN: usize = 2 << 20;
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let baseline = start();
    let cache = byte_cache(MAX);
    for k in 0..500u64 {
        // The loader's value is cloned once to be stored: two copies while
        // it lands, the caller's (returned) and the cache's.
        let v = cache.get_or_insert_with(k, || vec![0u8; LEN]);
        assert_eq!(v.len(), LEN);
    }
    // Saturating: an earlier test's retired values may be freed meanwhile.
    let peak = PEAK.load(Ordering::SeqCst).saturating_sub(baseline);
    eprintln!("loaded: peak {:.2}x", peak as f64 / MAX as f64);
    assert!(
        peak <= allowance(MAX) + LEN,
        "peak {peak} ({:.2}x) storing loaded values",
        peak as f64 / MAX as f64
    );
    cache.check_invariants().unwrap();
    check_settled(MAX, baseline, 0);
}

#[test]
fn rewriting_a_key_evicts_no_other_to_free_memory() {
    const MAX: u64 = 64 << 20;
    const LEN: usize = 8 << 20;
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let baseline = start();
    // One shard of 8 entries; a quarter of slack holds 2 retired values.
    let cache: Cache<u64, Vec<u8>> = Cache::builder()
        .max_weight(MAX)
        .weigher(|_, v: &Vec<u8>| v.len() as u64)
        .shards(1)
        .build();
    for k in 0..8 {
        cache.insert(k, vec![0u8; LEN]);
    }
    for round in 0..50u64 {
        cache.insert(round % 2, vec![0u8; LEN]);
    }
    // The rewrites waited for their old values to be freed instead.
    assert_eq!(cache.stats().evicted_capacity, 0, "{:?}", cache.stats());
    assert!((0..8).all(|k| cache.contains_key(&k)));
    // Saturating: an earlier test's retired values may be freed meanwhile.
    let peak = PEAK.load(Ordering::SeqCst).saturating_sub(baseline);
    assert!(peak <= allowance(MAX) + LEN, "peak {peak}");
    check_settled(MAX, baseline, 0);
}

#[test]
fn a_too_heavy_entry_is_refused_without_evicting() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let cache = byte_cache(16 << 20);
    let max = cache.max_entry_weight() as usize;
    cache.insert(1, vec![0u8; max]);
    assert!(cache.try_insert(2, vec![0u8; max + 1]).is_err());
    assert!(
        cache.contains_key(&1),
        "an entry refused for its weight evicts nothing"
    );
    assert_eq!(cache.stats().evicted_capacity, 0);
}

#[test]
fn small_values_stay_within_1_25x() {
    // 32 entries per shard: retired values are handed over in batches.
    single_threaded(16 << 20, 64 << 10, 20_000);
}

#[test]
fn small_values_with_a_concurrent_reader_stay_within_1_25x() {
    with_a_reader(16 << 20, 64 << 10, 20_000);
}

#[test]
fn a_stalled_reader_gets_inserts_refused_not_the_bound_broken() {
    const MAX: u64 = 16 << 20;
    const LEN: usize = 2 << 20;
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let baseline = start();
    let stall = Arc::new(AtomicBool::new(false));
    let (entered_tx, entered_rx) = mpsc::channel::<()>();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let release_rx = Mutex::new(release_rx);
    let listener_stall = Arc::clone(&stall);
    let cache: Cache<u64, Vec<u8>> = Cache::builder()
        .max_weight(MAX)
        .weigher(|_, v: &Vec<u8>| v.len() as u64)
        .eviction_listener(move |_, _, _| {
            if listener_stall.swap(false, Ordering::SeqCst) {
                entered_tx.send(()).unwrap();
                // Pinned (the listener runs pinned) until released.
                release_rx.lock().unwrap().recv().unwrap();
            }
        })
        .build();
    for k in 0..100 {
        cache.insert(k, vec![0u8; LEN]);
    }
    stall.store(true, Ordering::SeqCst);
    let stalled = {
        let cache = cache.clone();
        // Evicts, so its listener runs and stalls.
        thread::spawn(move || cache.insert(1_000, vec![0u8; LEN]))
    };
    entered_rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the eviction listener never ran");
    let rejected_before = cache.stats().rejected;
    for k in 2_000..2_100 {
        cache.insert(k, vec![0u8; LEN]);
    }
    // Saturating: an earlier test's retired values may be freed meanwhile.
    let peak = PEAK.load(Ordering::SeqCst).saturating_sub(baseline);
    let held = HELD.load(Ordering::SeqCst).saturating_sub(baseline);
    let rejected = cache.stats().rejected - rejected_before;
    release_tx.send(()).unwrap();
    stalled.join().unwrap();
    eprintln!(
        "stalled: peak {:.2}x, {rejected} of 100 inserts refused",
        peak as f64 / MAX as f64
    );
    // Two values in flight: the stalled thread's and this thread's.
    assert!(
        peak <= allowance(MAX) + 2 * LEN,
        "peak {peak} ({:.2}x) while a reader was stalled",
        peak as f64 / MAX as f64
    );
    assert!(held <= allowance(MAX) + LEN, "{held} held while stalled");
    assert!(
        rejected > 0,
        "every insert was admitted while nothing could be freed"
    );
    // Released: inserts are admitted again, and memory comes back.
    for k in 3_000..3_100 {
        cache.insert(k, vec![0u8; LEN]);
    }
    assert!(
        cache.contains_key(&3_099),
        "admitted once the reader unpinned"
    );
    check_settled(MAX, baseline, 0);
}
