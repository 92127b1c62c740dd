//! The hot paths' per-thread state in one thread-local: the thread's epoch
//! handle and its stats stripe number.
//!
//! `crossbeam_epoch::pin()` reaches crossbeam's own thread-local through a
//! function the compiler does not inline, and the stats stripe was a second
//! thread-local; holding both here makes a lookup's pin one inlined access.
//! The handle is registered with crossbeam's default collector, so garbage
//! deferred through it is collected with everyone else's.

use crossbeam_epoch::{Guard, LocalHandle};

use super::stats::Owner;

struct Local {
    handle: LocalHandle,
    owner: Owner,
}

thread_local! {
    static LOCAL: Local = Local {
        handle: crossbeam_epoch::default_collector().register(),
        owner: Owner::take(),
    };
}

/// Pins the current thread; also returns its stats stripe number. While the
/// thread-local is being torn down (a `Drop` of another thread-local using a
/// cache), falls back to crossbeam's pin and the shared stripe.
#[inline]
pub(crate) fn pin() -> (Guard, usize) {
    LOCAL
        .try_with(|local| (local.handle.pin(), local.owner.0))
        .unwrap_or_else(|_| (crossbeam_epoch::pin(), usize::MAX))
}
