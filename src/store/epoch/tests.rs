//! The collector's unit tests, each on a collector of its own (the global
//! one is shared with every other test of the binary).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::thread;

use super::{Collector, Deferred, Record, barrier, unprotected};
use crate::store::slab::Mailbox;

fn collector() -> &'static Collector {
    Box::leak(Box::new(Collector::new()))
}

/// The records of `c`'s registry.
fn records(c: &Collector) -> Vec<&'static Record> {
    let mut out = Vec::new();
    let mut at = c.records.load(Ordering::Acquire).cast_const();
    // SAFETY: registry records are never freed.
    while let Some(record) = unsafe { at.as_ref() } {
        out.push(record);
        at = record.next;
    }
    out
}

fn delivered(mailbox: &Mailbox) -> Vec<(u32, u32)> {
    let mut out = Vec::new();
    mailbox.take(&mut out);
    out
}

fn batch(mailbox: &Arc<Mailbox>, idx: u32) -> Deferred {
    Deferred::Slots(Arc::clone(mailbox), vec![(idx, 1)].into_boxed_slice())
}

/// Sets its flag when dropped.
struct Marker(Arc<AtomicBool>);

impl Drop for Marker {
    fn drop(&mut self) {
        assert!(!self.0.swap(true, Ordering::SeqCst), "dropped twice");
    }
}

fn marker() -> (Deferred, Arc<AtomicBool>) {
    let flag = Arc::new(AtomicBool::new(false));
    let ptr = Box::into_raw(Box::new(Marker(Arc::clone(&flag))));
    // SAFETY: fresh from `Box::into_raw`, freed only by this work.
    (unsafe { Deferred::free(ptr) }, flag)
}

#[test]
fn retired_work_runs_two_epochs_after_its_tag() {
    let c = collector();
    let mailbox = Arc::new(Mailbox::default());
    c.retire(batch(&mailbox, 7));
    let tag = c.epoch();
    assert_eq!(c.pending(), 1);
    c.collect();
    assert_eq!(c.epoch(), tag + 1);
    assert!(
        delivered(&mailbox).is_empty(),
        "ran one epoch after its tag"
    );
    c.collect();
    assert_eq!(c.epoch(), tag + 2);
    assert_eq!(delivered(&mailbox), vec![(7, 1)]);
    assert_eq!(c.pending(), 0);
}

#[test]
fn a_pinned_thread_holds_the_epoch_within_one_of_its_own() {
    let c = collector();
    let handle = c.register();
    let guard = c.pin(&handle);
    let pinned_at = c.epoch();
    let (work, freed) = marker();
    c.retire(work);
    for _ in 0..10 {
        c.collect();
    }
    assert_eq!(c.epoch(), pinned_at + 1, "the epoch passed a pinned thread");
    assert!(!freed.load(Ordering::SeqCst), "freed under a pin");
    drop(guard);
    c.collect();
    c.collect();
    assert!(freed.load(Ordering::SeqCst), "not freed once unpinned");
}

#[test]
fn an_unpinned_thread_holds_nothing_back() {
    let c = collector();
    let _handle = c.register();
    let start = c.epoch();
    for _ in 0..5 {
        c.collect();
    }
    assert_eq!(c.epoch(), start + 5);
}

#[test]
fn nested_pins_unpin_with_the_last_guard_in_any_order() {
    let c = collector();
    let handle = c.register();
    let outer = c.pin(&handle);
    let inner = c.pin(&handle);
    let at = c.epoch();
    drop(outer);
    assert!(handle.is_pinned(), "unpinned with a guard left");
    for _ in 0..4 {
        c.collect();
    }
    assert_eq!(c.epoch(), at + 1, "the inner pin did not hold the epoch");
    drop(inner);
    assert!(!handle.is_pinned());
    c.collect();
    assert_eq!(c.epoch(), at + 2);
}

#[test]
fn a_nested_pin_keeps_the_first_pins_epoch() {
    let c = collector();
    let handle = c.register();
    let outer = c.pin(&handle);
    let state = handle.record.state.load(Ordering::Relaxed);
    c.collect();
    let inner = c.pin(&handle);
    assert_eq!(
        handle.record.state.load(Ordering::Relaxed),
        state,
        "a nested pin moved the thread's epoch past what it may hold"
    );
    drop(inner);
    drop(outer);
    assert_eq!(handle.record.state.load(Ordering::Relaxed), super::HELD);
}

#[test]
fn a_temporary_record_is_given_back_and_reused() {
    let c = collector();
    let guard = c.pin_temporary();
    let at = c.epoch();
    for _ in 0..3 {
        c.collect();
    }
    assert_eq!(c.epoch(), at + 1, "a temporary pin did not hold the epoch");
    drop(guard);
    let [record] = records(c)[..] else {
        panic!("one record expected")
    };
    assert_eq!(
        record.state.load(Ordering::Relaxed),
        super::FREE,
        "not given back"
    );
    drop(c.pin_temporary());
    drop(c.register());
    assert_eq!(records(c).len(), 1, "the free record was not reused");
}

#[test]
fn a_handle_dropped_under_a_live_guard_is_given_back_by_the_guard() {
    let c = collector();
    let handle = c.register();
    let guard = c.pin(&handle);
    let record = handle.record;
    drop(handle);
    assert_ne!(
        record.state.load(Ordering::Relaxed),
        super::FREE,
        "given back pinned"
    );
    let other = c.register();
    assert!(
        !std::ptr::eq(other.record, record),
        "a pinned record reused"
    );
    drop(guard);
    assert_eq!(record.state.load(Ordering::Relaxed), super::FREE);
}

#[test]
fn a_thread_that_exits_gives_its_record_back_and_its_work_still_runs() {
    let c = collector();
    let mailbox = Arc::new(Mailbox::default());
    {
        let mailbox = Arc::clone(&mailbox);
        thread::spawn(move || {
            let handle = c.register();
            let guard = c.pin(&handle);
            c.retire(batch(&mailbox, 3));
            drop(guard);
        })
        .join()
        .unwrap();
    }
    assert!(
        records(c)
            .iter()
            .all(|r| r.state.load(Ordering::Relaxed) == super::FREE)
    );
    c.collect();
    c.collect();
    assert_eq!(delivered(&mailbox), vec![(3, 1)]);
}

#[test]
fn more_ready_work_than_one_take_all_runs() {
    let c = collector();
    let mailbox = Arc::new(Mailbox::default());
    let handle = c.register();
    let guard = c.pin(&handle);
    for idx in 0..(3 * super::TAKE as u32) {
        c.retire(batch(&mailbox, idx));
    }
    drop(guard);
    c.collect();
    c.collect();
    let mut got = delivered(&mailbox);
    got.sort_unstable();
    assert_eq!(got.len(), 3 * super::TAKE);
    assert_eq!(c.pending(), 0);
}

#[test]
fn unprotected_pins_nothing_and_is_never_dropped() {
    // SAFETY: nothing is read through it.
    let guard = unsafe { unprotected() };
    assert!(std::ptr::eq(guard.record, &super::NOBODY));
    // Its record is in no registry, and pinning a collector leaves it be.
    let c = collector();
    let handle = c.register();
    let pinned = c.pin(&handle);
    assert!(records(c).iter().all(|r| !std::ptr::eq(*r, &super::NOBODY)));
    assert_eq!(super::NOBODY.state.load(Ordering::Relaxed), super::FREE);
    assert_eq!(guard.holder(), usize::MAX, "past every stats stripe");
    drop(pinned);
}

#[test]
fn work_still_queued_runs_when_its_collector_is_dropped() {
    let c = Collector::new();
    let (work, freed) = marker();
    c.retire(work);
    assert!(!freed.load(Ordering::SeqCst));
    drop(c);
    assert!(freed.load(Ordering::SeqCst), "queued work leaked");
}

/// Readers pin, load the current box and check it is whole; a writer
/// swaps boxes in and retires the old ones. A box freed under a reader
/// would show a poisoned value (or fail under a sanitizer).
#[test]
fn readers_never_see_a_retired_box_freed() {
    readers_and_a_retiring_writer(false);
}

/// The same through the pin of a thread's fast path (`pin_held`), which on
/// x86 Linux skips its barrier (the advances' `membarrier` stands for it:
/// a missing `membarrier` is too rare a window for this test to see; it
/// catches a fast path that publishes no pin).
#[test]
fn readers_pinned_without_a_barrier_never_see_a_retired_box_freed() {
    readers_and_a_retiring_writer(true);
}

/// The two tests above: readers pin through `pin_held` if `light`, else
/// through `pin`.
fn readers_and_a_retiring_writer(light: bool) {
    const LIVE: u64 = 0x5eed_cafe;
    struct Boxed(AtomicU64);
    impl Drop for Boxed {
        fn drop(&mut self) {
            self.0.store(0xdead, Ordering::Relaxed);
        }
    }
    let c = collector();
    let current = Arc::new(AtomicPtr::new(Box::into_raw(Box::new(Boxed(
        AtomicU64::new(LIVE),
    )))));
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(AtomicUsize::new(0));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (current, stop, seen) =
                (Arc::clone(&current), Arc::clone(&stop), Arc::clone(&seen));
            thread::spawn(move || {
                let handle = c.register();
                let held = handle.held();
                if light && barrier::LIGHT {
                    assert!(
                        held.is_some(),
                        "the kernel refused membarrier: no pin here skips its barrier"
                    );
                }
                while !stop.load(Ordering::Relaxed) {
                    let guard = match held {
                        // SAFETY: `handle` is alive, on this thread.
                        Some(held) if light => unsafe { c.pin_held(held) },
                        _ => c.pin(&handle),
                    };
                    let ptr = current.load(Ordering::Acquire);
                    for _ in 0..16 {
                        // SAFETY: loaded while pinned: not freed before
                        // `guard` drops.
                        let value = unsafe { &*ptr }.0.load(Ordering::Relaxed);
                        assert_eq!(value, LIVE, "a retired box was freed under a pin");
                    }
                    drop(guard);
                    seen.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    // The swaps below take a millisecond or two: with the rest of the
    // suite running, the readers may not have been scheduled by then, and
    // the test would check nothing. Start once they read (bounded).
    let started = std::time::Instant::now();
    while seen.load(Ordering::Relaxed) < 2 {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "the readers never ran"
        );
        thread::yield_now();
    }
    for _ in 0..20_000 {
        let new = Box::into_raw(Box::new(Boxed(AtomicU64::new(LIVE))));
        let old = current.swap(new, Ordering::AcqRel);
        // SAFETY: from `Box::into_raw`, unreachable now, retired once.
        c.retire(unsafe { Deferred::free(old) });
    }
    stop.store(true, Ordering::Relaxed);
    for reader in readers {
        reader.join().unwrap();
    }
    assert!(seen.load(Ordering::Relaxed) > 0);
    c.collect();
    c.collect();
    assert_eq!(c.pending(), 0, "retired boxes left after every reader left");
    // SAFETY: the last box, never retired.
    drop(unsafe { Box::from_raw(current.load(Ordering::Relaxed)) });
}

#[test]
fn holders_are_numbered_densely_and_a_freed_number_is_reused() {
    let c = collector();
    let (a, b) = (c.register(), c.register());
    let (ga, gb) = (c.pin(&a), c.pin(&b));
    let mut numbers = [ga.holder(), gb.holder()];
    numbers.sort_unstable();
    assert_eq!(numbers, [0, 1], "the first two records are 0 and 1");
    let freed = ga.holder();
    drop(ga);
    drop(a);
    // The freed record (and its number) is taken before a new one is made.
    let again = c.register();
    assert_eq!(c.pin(&again).holder(), freed);
    let third = c.register();
    assert_eq!(c.pin(&third).holder(), 2);
    // A temporary record for one pin is numbered like any other.
    let temporary = c.pin_temporary();
    assert_eq!(temporary.holder(), 3);
    drop(gb);
    drop(temporary);
    drop(b);
    // Now 1 and 3 are free (0 and 2 held): the lowest is taken first,
    // though the list meets 3 (the newest) first.
    let low = c.register();
    assert_eq!(c.pin(&low).holder(), 1);
    let next = c.register();
    assert_eq!(c.pin(&next).holder(), 3);
}

/// Where pins can skip their barrier and the kernel registered the
/// process, a handle gives its thread the fast path (`held`), and an
/// advance's half of the barrier runs (`membarrier`, which the kernel
/// does not refuse once the process is registered).
#[test]
fn with_the_asymmetric_barrier_handles_give_the_fast_path_and_membarrier_runs() {
    let c = collector();
    let handle = c.register();
    assert_eq!(
        handle.held().is_some(),
        !barrier::LIGHT || barrier::asymmetric(),
        "a fast path whose pins skip a barrier no advance supplies"
    );
    if barrier::asymmetric() {
        assert!(barrier::heavy(), "membarrier refused after registration");
    }
}
