//! The hot paths' per-thread state in one thread-local: the thread's epoch
//! record (see `epoch`), whose number is also the thread's stats stripe.
//!
//! A lookup's pin is one inlined access to this thread-local, the nesting
//! check in the thread's record, a load of the global epoch and one SeqCst
//! swap; the stats stripe is the record's number, read through the guard. The record belongs to nearfar's
//! own collector: its garbage runs no user code (slot batches go back to
//! their shard's mailbox, replaced index tables are freed), no other
//! crate's garbage runs inside a cache, and no other crate's pins hold
//! back nearfar's slot reuse.

use super::epoch::{self, Guard, Handle};

struct Local {
    handle: Handle,
}

// Under shuttle, shuttle's thread-local: one per shuttle thread (they all
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
    LOCAL
        .try_with(|local| epoch::collector().pin(&local.handle))
        .unwrap_or_else(|_| epoch::collector().pin_temporary())
}

/// Whether the current thread is pinned already (a listener, an `iter`):
/// it then holds the epoch back itself. False while the thread-local is
/// being torn down (a temporary record's pin is not seen from here).
pub(crate) fn is_pinned() -> bool {
    LOCAL
        .try_with(|local| local.handle.is_pinned())
        .unwrap_or(false)
}
