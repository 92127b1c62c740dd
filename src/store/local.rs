//! The hot paths' per-thread state: the thread's epoch record (see
//! `epoch`), whose number is also the thread's stats stripe.
//!
//! A lookup's pin is one load of a constant-initialised thread-local (a
//! copy of the record), the nesting check in the record, a load of the
//! global epoch and one store (on x86 Linux a plain one, the epoch's
//! advances running `membarrier`; elsewhere a SeqCst swap: see
//! `epoch::barrier`); the stats stripe is the record's
//! number, read through the guard. The record belongs to nearfar's own
//! collector: its garbage runs no user code (slot batches go back to their
//! shard's mailbox, replaced index tables are freed), no other crate's
//! garbage runs inside a cache, and no other crate's pins hold back
//! nearfar's slot reuse.

use std::cell::Cell;

use super::epoch::{self, Guard, Handle, Held};

// The thread's record, once its handle is made: a constant-initialised
// thread-local without drop glue, so reading it is one load with no
// lazy-init or destructor-state check (the handle's thread-local has
// both). `Some` only while `LOCAL`'s handle is alive: set by `pin_first`
// from inside `LOCAL`, cleared by `Local::drop` before the handle is.
crate::shim::thread_local! {
    static HELD: Cell<Option<Held>> = const { Cell::new(None) };
}

struct Local {
    handle: Handle,
}

impl Drop for Local {
    fn drop(&mut self) {
        // Before the handle gives its record back (the field drops after
        // this): from now on a pin takes the slow path and, `LOCAL` being
        // gone, a temporary record. (`try_with`: std never destroys a
        // thread-local without drop glue, but shuttle tears down every
        // one of a task, in its own order; once `HELD` is gone no one
        // reads it.)
        let _ = HELD.try_with(|held| held.set(None));
    }
}

// Under shuttle, shuttle's thread-locals: one per shuttle thread (they all
// run on one OS thread), so each has a record of its own.
crate::shim::thread_local! {
    static LOCAL: Local = Local {
        handle: epoch::collector().register(),
    };
}

/// Pins the current thread. While the thread-local is being torn down (a
/// `Drop` of another thread-local using a cache), falls back to a record
/// taken for this pin alone.
#[inline]
pub(crate) fn pin() -> Guard {
    // (`try_with`: never fails under std, see `Local::drop`.)
    match HELD.try_with(Cell::get).ok().flatten() {
        // SAFETY: `HELD` is `Some` only while the handle it was copied from
        // is alive (see `HELD`), and it is this thread's (a thread-local).
        Some(held) => unsafe { epoch::collector().pin_held(held) },
        None => pin_first(),
    }
}

/// The first pin of a thread (or one after its thread-local was torn
/// down): makes the handle if needed and keeps a copy of its record.
#[cold]
#[inline(never)]
fn pin_first() -> Guard {
    LOCAL
        .try_with(|local| {
            // (None where the kernel refused the asymmetric barrier: every
            // pin comes here then, and pins with its full barrier.)
            let _ = HELD.try_with(|held| held.set(local.handle.held()));
            epoch::collector().pin(&local.handle)
        })
        .unwrap_or_else(|_| epoch::collector().pin_temporary())
}

/// Whether the current thread holds a record through its fast path (it
/// has pinned, so it is one of the threads an advance's `membarrier`
/// interrupts when running): what a hand-over tells the epoch
/// (`epoch::retire`). A writer that never read holds none.
pub(crate) fn holds_record() -> bool {
    HELD.try_with(|held| held.get().is_some()).unwrap_or(false)
}

/// Whether the current thread is pinned already (a listener, an `iter`):
/// it then holds the epoch back itself. False while the thread-local is
/// being torn down (a temporary record's pin is not seen from here).
pub(crate) fn is_pinned() -> bool {
    LOCAL
        .try_with(|local| local.handle.is_pinned())
        .unwrap_or(false)
}

#[cfg(all(test, not(shuttle)))]
mod tests {
    use std::cell::RefCell;
    use std::sync::Arc;

    use crate::Cache;

    /// Uses a cache from its `Drop`, which runs while the thread's
    /// thread-locals are torn down.
    struct UsesCacheOnDrop(Option<Arc<Cache<u32, u32>>>);

    impl Drop for UsesCacheOnDrop {
        fn drop(&mut self) {
            if let Some(cache) = self.0.take() {
                cache.insert(2, 20);
                assert_eq!(cache.get(&1), Some(10));
                assert_eq!(cache.get(&2), Some(20));
            }
        }
    }

    thread_local! {
        static LATE: RefCell<UsesCacheOnDrop> = const { RefCell::new(UsesCacheOnDrop(None)) };
    }

    #[test]
    fn a_cache_used_while_the_thread_local_is_torn_down_still_pins() {
        let cache = Arc::new(Cache::new(100));
        let inner = Arc::clone(&cache);
        std::thread::spawn(move || {
            // Registered before the store's thread-locals (first touched
            // below), so on the usual platforms dropped after them: its
            // reads and writes then pin with a temporary record (checked
            // by hand: they do here).
            LATE.with(|late| late.borrow_mut().0 = Some(Arc::clone(&inner)));
            inner.insert(1, 10);
            assert_eq!(inner.get(&1), Some(10));
        })
        .join()
        .expect("the thread's teardown did not panic");
        assert_eq!(
            cache.get(&2),
            Some(20),
            "the write made during teardown landed"
        );
        let stats = cache.stats();
        assert_eq!(
            stats.hits, 4,
            "every read counted, before and during teardown"
        );
    }
}
