//! The hot paths' per-thread state in one thread-local: the thread's epoch
//! handle and its stats stripe number.
//!
//! `crossbeam_epoch::pin()` reaches crossbeam's own thread-local through a
//! function the compiler does not inline, and the stats stripe was a second
//! thread-local; holding both here makes a lookup's pin one inlined access.
//! The handle is registered with a collector of nearfar's own, not
//! crossbeam's default one: a pin or a flush collects garbage, and with the
//! default collector that could be any crate's, running its destructors
//! (user code, maybe using this cache) while a writer holds a shard lock. The
//! garbage deferred here runs no user code: slot batches go back to their
//! shard's mailbox, and replaced index tables are freed. It also keeps other
//! crates' long pins from holding back nearfar's slot reuse.

use std::sync::LazyLock;

use crossbeam_epoch::{Collector, Guard, LocalHandle};

use super::stats::Owner;

struct Local {
    handle: LocalHandle,
    owner: Owner,
}

/// The epoch every cache's readers pin and every cache's retired memory
/// waits on.
static COLLECTOR: LazyLock<Collector> = LazyLock::new(Collector::new);

thread_local! {
    static LOCAL: Local = Local {
        handle: COLLECTOR.register(),
        owner: Owner::take(),
    };
}

/// Pins the current thread; also returns its stats stripe number. While the
/// thread-local is being torn down (a `Drop` of another thread-local using a
/// cache), falls back to a handle registered for this pin alone and the
/// shared stripe.
#[inline]
pub(crate) fn pin() -> (Guard, usize) {
    LOCAL
        .try_with(|local| (local.handle.pin(), local.owner.0))
        .unwrap_or_else(|_| (COLLECTOR.register().pin(), usize::MAX))
}

/// Whether the current thread is pinned already (a listener, an `iter`):
/// it then holds the epoch back itself. False while the thread-local is
/// being torn down (nothing of this thread's can be pinned then).
pub(crate) fn is_pinned() -> bool {
    LOCAL
        .try_with(|local| local.handle.is_pinned())
        .unwrap_or(false)
}
