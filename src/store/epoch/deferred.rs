//! Retired work: what a writer hands over ([`Deferred`]), and the ready
//! works one look at the queue takes out and runs after its lock
//! (`Ready`).

use std::collections::VecDeque;
use std::sync::Arc;

use super::TAKE;
use crate::shim::{AtomicU64, Ordering};
use crate::store::slab::Mailbox;

/// Work that runs once no reader can reach what it frees.
pub(crate) enum Deferred {
    /// Slots unlinked from a shard, delivered to its mailbox (where its
    /// writers take them for reuse). Only an `Arc` of the mailbox: harmless
    /// if it runs after the cache is gone.
    Slots(Arc<Mailbox>, Box<[(u32, u32)]>),
    /// A heap value to drop and free (an index table replaced on growth),
    /// as a pointer and its drop function: never a `Box` while readers may
    /// still hold references into it.
    Free {
        ptr: *mut (),
        drop: unsafe fn(*mut ()),
    },
}

// SAFETY: `Slots` is Send by its fields. `Free` is built only by
// `Deferred::free`, which takes a `T: Send` it owns: running its drop on
// another thread is what `T: Send` allows.
unsafe impl Send for Deferred {}

impl Deferred {
    /// Work that drops the `Box<T>` at `ptr`.
    ///
    /// # Safety
    /// `ptr` comes from `Box::into_raw`, and nothing but this work will
    /// free it: after it is retired, only readers pinned before it was
    /// unlinked use it, and only by shared reference.
    pub(crate) unsafe fn free<T: Send + 'static>(ptr: *mut T) -> Self {
        /// Drops the box.
        ///
        /// # Safety
        /// `ptr` is the `Box<T>` given to `free`, dropped once.
        unsafe fn drop_box<T>(ptr: *mut ()) {
            // SAFETY: the caller's: a `Box<T>` from `Box::into_raw` that no
            // one else frees, run once (the queue pops it once).
            drop(unsafe { Box::from_raw(ptr.cast::<T>()) });
        }
        Deferred::Free {
            ptr: ptr.cast(),
            drop: drop_box::<T>,
        }
    }

    /// Runs the work. Runs no user code: a delivery to a mailbox, or the
    /// drop of a crate-internal value (an index table).
    pub(super) fn run(self) {
        match self {
            Deferred::Slots(mailbox, batch) => mailbox.deliver(&batch),
            // SAFETY: built by `free` (its contract); popped from the queue
            // once, so run once.
            Deferred::Free { ptr, drop } => unsafe { drop(ptr) },
        }
    }
}

/// Ready work taken out of the queue under its lock, run after it.
#[derive(Default)]
pub(super) struct Ready {
    works: [Option<Deferred>; TAKE],
}

impl Ready {
    /// Takes up to `TAKE` works ready at `epoch` from the front of the
    /// queue (tags are in order), and leaves the queue's length in
    /// `queued` (the collector's hint). Returns whether more may be ready.
    pub(super) fn take(
        &mut self,
        queue: &mut VecDeque<(u64, Deferred)>,
        epoch: u64,
        queued: &AtomicU64,
    ) -> bool {
        for slot in &mut self.works {
            match queue.front() {
                Some(&(tag, _)) if tag + 2 <= epoch => {
                    *slot = queue.pop_front().map(|(_, work)| work);
                }
                _ => break,
            }
        }
        queued.store(queue.len() as u64, Ordering::Relaxed);
        matches!(queue.front(), Some(&(tag, _)) if tag + 2 <= epoch)
    }

    pub(super) fn run(self) {
        for work in self.works.into_iter().flatten() {
            work.run();
        }
    }
}
