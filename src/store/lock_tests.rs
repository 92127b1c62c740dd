//! User code around the shard lock: keys' and values' `Drop` and `Clone`
//! that use the cache, panics in `Drop`, and the epoch moved by writers alone.
//! Each would deadlock (or leak) if it ran under a shard lock it needs. A
//! deadlock fails the test through a bounded wait rather than hanging it.

use std::hash::{Hash, Hasher};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::Duration;

use super::{Cache, epoch};

/// Runs `f` on a thread and returns its result, or fails the test if it
/// has not finished within 20 s (a deadlock).
fn within_20s<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(20))
        .unwrap_or_else(|_| panic!("{what}: still blocked after 20 s (deadlock)"))
}

/// A key whose `Drop` can call back into the cache.
struct HookKey {
    id: u32,
    on_drop: Option<Box<dyn FnOnce() + Send + Sync>>,
}

impl HookKey {
    fn plain(id: u32) -> Self {
        HookKey { id, on_drop: None }
    }
}

impl PartialEq for HookKey {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}

impl Eq for HookKey {}

impl Hash for HookKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.id.hash(state);
    }
}

impl Drop for HookKey {
    fn drop(&mut self) {
        if let Some(hook) = self.on_drop.take() {
            hook();
        }
    }
}

#[test]
fn a_superseded_loads_key_is_dropped_after_the_unlock() {
    let value = within_20s("superseded load", || {
        let cache: Cache<HookKey, u32> = Cache::builder().max_entries(100).shards(1).build();
        let in_drop = cache.clone();
        let key = HookKey {
            id: 1,
            // A write to the only shard: needs its lock.
            on_drop: Some(Box::new(move || {
                in_drop.remove(&HookKey::plain(999));
            })),
        };
        let writer = cache.clone();
        cache.get_or_insert_with(key, || {
            // Supersedes the load: its key and value are not stored.
            writer.insert(HookKey::plain(1), 5);
            7
        })
    });
    assert_eq!(value, 7);
}

/// A value whose `Clone` takes the shard lock (through a write).
struct LockingClone {
    cache: Arc<Mutex<Option<Cache<u32, LockingClone>>>>,
}

impl Clone for LockingClone {
    fn clone(&self) -> Self {
        if let Some(cache) = self.cache.lock().unwrap().clone() {
            cache.remove(&999);
        }
        LockingClone {
            cache: Arc::clone(&self.cache),
        }
    }
}

#[test]
fn iter_clones_outside_the_lock() {
    within_20s("a clone that writes, during iter", || {
        let handle = Arc::new(Mutex::new(None));
        let cache: Cache<u32, LockingClone> = Cache::builder().max_entries(100).shards(1).build();
        cache.insert(
            1,
            LockingClone {
                cache: Arc::clone(&handle),
            },
        );
        *handle.lock().unwrap() = Some(cache.clone());
        assert_eq!(cache.iter().count(), 1);
        // Let the handle go so the cache can drop.
        *handle.lock().unwrap() = None;
    });
}

static PANIC_ON_DROP: AtomicBool = AtomicBool::new(false);

/// A key whose `Drop` panics once when armed, if it is the stored copy
/// (`true`) rather than a lookup's.
struct PanickyKey(u32, bool);

impl PartialEq for PanickyKey {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

impl Eq for PanickyKey {}

impl Hash for PanickyKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

impl Drop for PanickyKey {
    fn drop(&mut self) {
        if self.1 && PANIC_ON_DROP.swap(false, Ordering::SeqCst) {
            panic!("stored PanickyKey({}) dropped", self.0);
        }
    }
}

#[test]
fn a_panic_in_a_reclaimed_keys_drop_loses_no_value_and_no_slot() {
    let cache: Cache<PanickyKey, Arc<()>> = Cache::builder().max_entries(1000).shards(1).build();
    let first = Arc::new(());
    let watch = Arc::downgrade(&first);
    cache.insert(PanickyKey(1, true), first);
    cache.insert(PanickyKey(2, false), Arc::new(()));
    PANIC_ON_DROP.store(true, Ordering::SeqCst);
    drop(cache.remove(&PanickyKey(1, false)));
    drop(cache.remove(&PanickyKey(2, false)));
    // Push the epoch until both slots are delivered (each remove handed its
    // own batch over, maybe at different epochs), so that one write takes
    // them together; then write, and meet the panic (bounded: a loaded
    // machine may hold the epoch back).
    let shard = &cache.inner.shards[0];
    for _ in 0..10_000 {
        if shard.mail_waiting() == 2 {
            break;
        }
        epoch::collect();
        thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(
        shard.mail_waiting(),
        2,
        "the removed slots were never delivered"
    );
    let mut panicked = false;
    for _ in 0..10_000 {
        if catch_unwind(AssertUnwindSafe(|| cache.remove(&PanickyKey(1000, false)))).is_err() {
            panicked = true;
            break;
        }
        thread::sleep(Duration::from_millis(1));
    }
    assert!(panicked, "the removed slots were never reclaimed");
    // The panicking key's value was dropped all the same.
    assert!(
        watch.upgrade().is_none(),
        "the value outlived its key's panic"
    );
    // And both slots went back to the free list: two inserts reuse them.
    let slab = &cache.inner.shards[0].slab;
    let high = slab.high_water();
    cache.insert(PanickyKey(10, false), Arc::new(()));
    cache.insert(PanickyKey(11, false), Arc::new(()));
    assert_eq!(slab.high_water(), high, "the reclaimed slots were lost");
}

/// A value that counts its drops.
#[derive(Clone)]
struct Counted(Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn evicting_inserts_alone_move_the_epoch() {
    // Writers advance the epoch and run what is ready as they hand batches
    // over (on every hand-over here: no other thread holds a record), with
    // no reader and no explicit collect: evicted values get
    // dropped by the inserts themselves. (Other crates' garbage cannot run
    // here at all: the collector is nearfar's own, see `epoch`.)
    let cache: Cache<u64, Counted> = Cache::builder().max_entries(100).shards(1).build();
    let dropped = Arc::new(AtomicUsize::new(0));
    for k in 0..100_000u64 {
        cache.insert(k, Counted(Arc::clone(&dropped)));
    }
    assert!(
        dropped.load(Ordering::SeqCst) > 50_000,
        "the epoch hardly moved: {} evicted values dropped",
        dropped.load(Ordering::SeqCst)
    );
}

static PANIC_ON_HASH: AtomicBool = AtomicBool::new(false);

/// A key whose `Hash` panics, when armed, for ids below 100 (the stored
/// ones), so an eviction that hashes its victim panics half-way.
#[derive(PartialEq, Eq)]
struct HashPanics(u32);

impl Hash for HashPanics {
    fn hash<H: Hasher>(&self, state: &mut H) {
        if self.0 < 100 && PANIC_ON_HASH.load(Ordering::SeqCst) {
            panic!("hashing HashPanics({})", self.0);
        }
        self.0.hash(state);
    }
}

#[test]
fn a_refused_insert_restores_a_bound_a_panic_left_exceeded() {
    let cache: Cache<HashPanics, u64> = Cache::builder()
        .max_weight(100)
        .weigher(|_, w: &u64| *w)
        .shards(1)
        .build();
    for id in 0..10 {
        cache.insert(HashPanics(id), 10);
    }
    // An eviction that hashes its victim (to remember it) panics after the
    // new entry is linked: the shard is left over its bound.
    PANIC_ON_HASH.store(true, Ordering::SeqCst);
    let mut over = false;
    for id in 100..200 {
        let _ = catch_unwind(AssertUnwindSafe(|| cache.insert(HashPanics(id), 10)));
        if cache.inner.shards[0].lock().lru.weight() > 100 {
            over = true;
            break;
        }
    }
    PANIC_ON_HASH.store(false, Ordering::SeqCst);
    assert!(
        over,
        "no eviction hashed its victim: the setup did not work"
    );
    // Too heavy to ever fit: refused, and the shard is back within bound.
    assert!(cache.try_insert(HashPanics(1000), 1000).is_err());
    let weight = cache.inner.shards[0].lock().lru.weight();
    assert!(weight <= 100, "weight {weight} after a refused insert");
}
