//! Memory while the epoch is held back. A thread pinned for a long time
//! (here: inside an eviction listener, which runs pinned) stops every freed
//! slot from being reused until it unpins, so other threads' inserts grow
//! the slab by about a slot each. That much is the price of epoch-based
//! reclamation; this checks the cache adds little on top of it.
//!
//! Its own test binary: it counts the bytes the process holds through a
//! global allocator, which other tests running beside it would disturb.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::thread;

use nearfar::Cache;

/// The system allocator, counting the bytes currently held.
struct Counting;

static HELD: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call to `System` unchanged, only counting sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        HELD.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller's obligations are `System::alloc`'s.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        HELD.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        HELD.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        HELD.fetch_sub(layout.size(), Ordering::Relaxed);
        HELD.fetch_add(new_size, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

#[test]
fn a_stalled_listener_costs_about_a_slot_per_insert() {
    const CAPACITY: u64 = 1_000;
    const INSERTS: u64 = 20_000;
    let stall = Arc::new(AtomicBool::new(false));
    let (entered_tx, entered_rx) = mpsc::channel::<()>();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let release_rx = std::sync::Mutex::new(release_rx);
    let listener_stall = Arc::clone(&stall);
    let cache: Cache<u64, u64> = Cache::builder()
        .max_entries(CAPACITY as usize)
        .shards(1)
        .eviction_listener(move |_, _, _| {
            if listener_stall.swap(false, Ordering::SeqCst) {
                entered_tx.send(()).unwrap();
                // Pinned until released.
                release_rx.lock().unwrap().recv().unwrap();
            }
        })
        .build();
    for k in 0..CAPACITY {
        cache.insert(k, k);
    }
    // Warm the evicting path, so its steady allocations are made.
    for k in CAPACITY..4 * CAPACITY {
        cache.insert(k, k);
    }

    stall.store(true, Ordering::SeqCst);
    let stalled = {
        let cache = cache.clone();
        // Evicts, so its listener runs and stalls.
        thread::spawn(move || cache.insert(u64::MAX, 0))
    };
    entered_rx
        .recv_timeout(std::time::Duration::from_secs(20))
        .expect("the eviction listener never ran");
    let before = HELD.load(Ordering::SeqCst);
    for k in 0..INSERTS {
        cache.insert(1_000_000 + k, k);
    }
    let grown = HELD.load(Ordering::SeqCst).saturating_sub(before);
    release_tx.send(()).unwrap();
    stalled.join().unwrap();

    assert_eq!(cache.len(), CAPACITY as usize);
    // A slot of a u64 -> u64 cache is a few dozen bytes, and the slab grows
    // in chunks that double (so up to twice what is used). Allow 200 bytes
    // an insert: a hand-over to the epoch per insert cost ~2 KiB each when
    // the epoch was crossbeam-epoch's (a sealed bag), which is what this
    // guards against.
    let per_insert = grown as f64 / INSERTS as f64;
    eprintln!("{per_insert:.0} bytes held per insert while stalled");
    assert!(
        per_insert < 200.0,
        "{grown} bytes held after {INSERTS} inserts while the epoch was \
         stalled: {per_insert:.0} per insert"
    );
}
