//! Randomized schedules of the collector under shuttle (`--cfg shuttle`,
//! run with the store's: `cargo test --lib shuttle_`). Each execution has a
//! collector of its own (leaked), except where the thread-local path is
//! the point (the store's global one is fresh per execution under shuttle).

use std::sync::Arc;

use shuttle::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use shuttle::thread;

use super::{Collector, Deferred};
use crate::store::slab::Mailbox;

const ITERATIONS: usize = 20_000;

fn collector() -> &'static Collector {
    Box::leak(Box::new(Collector::new()))
}

/// Sets its flag when dropped: the "memory" of an object, freed.
struct Marker(Arc<AtomicBool>);

impl Drop for Marker {
    fn drop(&mut self) {
        assert!(!self.0.swap(true, Ordering::SeqCst), "freed twice");
    }
}

/// Two objects, 0 reachable at first; `flags[i]`: object `i` was freed.
struct Objects {
    current: AtomicUsize,
    flags: [Arc<AtomicBool>; 2],
}

impl Objects {
    fn new() -> Arc<Self> {
        Arc::new(Objects {
            current: AtomicUsize::new(0),
            flags: [Arc::default(), Arc::default()],
        })
    }

    /// Unlinks object 0 (1 is reachable instead) and retires it.
    fn replace_and_retire(&self, c: &Collector) {
        self.current.store(1, Ordering::Release);
        let ptr = Box::into_raw(Box::new(Marker(Arc::clone(&self.flags[0]))));
        // SAFETY: fresh from `Box::into_raw`, freed only by this work.
        c.retire(unsafe { Deferred::free(ptr) });
    }

    fn freed(&self, i: usize) -> bool {
        self.flags[i].load(Ordering::SeqCst)
    }
}

#[test]
fn shuttle_a_reader_pinned_across_advances_never_sees_its_object_freed() {
    shuttle::check_random(
        || {
            let c = collector();
            let objects = Objects::new();
            let reader = {
                let objects = Arc::clone(&objects);
                thread::spawn(move || {
                    let handle = c.register();
                    let guard = c.pin(&handle);
                    let i = objects.current.load(Ordering::Acquire);
                    for _ in 0..3 {
                        // The reader pushes the epoch too, while pinned.
                        c.collect();
                        assert!(!objects.freed(i), "object {i} freed under a pin");
                    }
                    drop(guard);
                })
            };
            let writer = {
                let objects = Arc::clone(&objects);
                thread::spawn(move || {
                    let handle = c.register();
                    objects.replace_and_retire(c);
                    for _ in 0..3 {
                        c.collect();
                    }
                    drop(handle);
                })
            };
            let pusher = thread::spawn(move || {
                for _ in 0..3 {
                    c.collect();
                }
            });
            reader.join().unwrap();
            writer.join().unwrap();
            pusher.join().unwrap();
            // Every reader unpinned: two advances free what was retired.
            c.collect();
            c.collect();
            assert!(
                objects.freed(0),
                "retired object not freed once readers left"
            );
            assert!(!objects.freed(1));
        },
        ITERATIONS,
    );
}

#[test]
fn shuttle_a_reader_pinned_at_any_epoch_never_sees_its_object_freed() {
    // Readers pinning before and after the unlink, at several epochs
    // (they push it too): whatever a reader loads, the new object or the
    // old one, it is not freed under its pin.
    shuttle::check_random(
        || {
            let c = collector();
            let objects = Objects::new();
            let readers: Vec<_> = (0..3)
                .map(|_| {
                    let objects = Arc::clone(&objects);
                    thread::spawn(move || {
                        let handle = c.register();
                        for _ in 0..3 {
                            let guard = c.pin(&handle);
                            let i = objects.current.load(Ordering::Acquire);
                            // Readers push the epoch too: pins at different
                            // epochs overlap the retire.
                            c.collect();
                            assert!(!objects.freed(i), "object {i} freed under a pin");
                            drop(guard);
                        }
                    })
                })
                .collect();
            objects.replace_and_retire(c);
            for _ in 0..4 {
                c.collect();
            }
            for reader in readers {
                reader.join().unwrap();
            }
        },
        ITERATIONS,
    );
}

#[test]
fn shuttle_nested_pins_hold_the_object_until_the_last_guard() {
    shuttle::check_random(
        || {
            let c = collector();
            let objects = Objects::new();
            let reader = {
                let objects = Arc::clone(&objects);
                thread::spawn(move || {
                    let handle = c.register();
                    let outer = c.pin(&handle);
                    let i = objects.current.load(Ordering::Acquire);
                    let inner = c.pin(&handle);
                    // Dropped out of order: the inner guard still pins.
                    drop(outer);
                    c.collect();
                    assert!(!objects.freed(i), "object {i} freed under the inner pin");
                    let again = c.pin(&handle);
                    drop(inner);
                    c.collect();
                    assert!(!objects.freed(i), "object {i} freed under a re-nested pin");
                    drop(again);
                })
            };
            objects.replace_and_retire(c);
            c.collect();
            c.collect();
            reader.join().unwrap();
            c.collect();
            c.collect();
            assert!(objects.freed(0), "not freed after the last guard");
        },
        ITERATIONS,
    );
}

#[test]
fn shuttle_a_batch_handed_over_by_a_thread_that_exits_is_reclaimed() {
    // Through the store's thread-local and global collector: the thread's
    // record is given back by its thread-local's destructor, and its batch,
    // in the shared queue, is run by others' collects.
    shuttle::check_random(
        || {
            let mailbox = Arc::new(Mailbox::default());
            let leaver = {
                let mailbox = Arc::clone(&mailbox);
                thread::spawn(move || {
                    let guard = crate::store::local::pin();
                    super::retire(
                        Deferred::Slots(mailbox, vec![(5, 1)].into_boxed_slice()),
                        crate::store::local::holds_record(),
                    );
                    drop(guard);
                })
            };
            let other = thread::spawn(move || {
                let guard = crate::store::local::pin();
                super::collect();
                drop(guard);
                super::collect();
            });
            leaver.join().unwrap();
            other.join().unwrap();
            let c = super::collector();
            // Both threads' records were given back when they exited.
            let mut at = c.records.load(Ordering::Acquire).cast_const();
            // SAFETY: registry records are never freed.
            while let Some(record) = unsafe { at.as_ref() } {
                assert_eq!(
                    record.state.load(Ordering::Acquire),
                    super::FREE,
                    "an exited thread's record is still held"
                );
                at = record.next;
            }
            super::collect();
            super::collect();
            let mut got = Vec::new();
            mailbox.take(&mut got);
            assert_eq!(got, vec![(5, 1)], "the exited thread's batch was lost");
        },
        ITERATIONS,
    );
}
