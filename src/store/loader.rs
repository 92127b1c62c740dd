//! In-flight loads: the `get_or_insert_with` family runs one loader per missing
//! key while other callers for that key wait for its result.
//!
//! The first caller to miss registers an [`InFlight`] in the key's shard (under
//! the shard lock) and runs its loader with no lock held. Later callers find
//! the registration and wait on it. The leader then publishes one of:
//! * a value — waiters return it;
//! * an error — waiters whose error type matches return the same `Arc<E>`,
//!   others retry;
//! * abandonment (the loader panicked) — waiters retry, and one of them becomes
//!   the next leader. The panic itself propagates to the leader's caller only.

use std::any::Any;
use std::sync::Arc;

use crate::shim::{Condvar, Mutex, ThreadId, current_thread};

/// A shared error from a failed load, type-erased so waiters with any error
/// type can look at it.
pub(crate) type SharedError = Arc<dyn Any + Send + Sync>;

enum LoadState<V> {
    Pending,
    Done(V),
    Failed(SharedError),
    Abandoned,
}

/// What a waiter gets when the load it waited for ends.
pub(crate) enum Outcome<V> {
    Value(V),
    Failed(SharedError),
    Retry,
}

/// One load in progress.
pub(crate) struct InFlight<V> {
    state: Mutex<LoadState<V>>,
    done: Condvar,
    leader: ThreadId,
}

impl<V> InFlight<V> {
    /// A pending load led by the calling thread.
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(InFlight {
            state: Mutex::new(LoadState::Pending),
            done: Condvar::new(),
            leader: current_thread().id(),
        })
    }

    /// Whether the calling thread is the one running this load's loader (a
    /// loader that asks the cache for its own key would wait on itself).
    pub(crate) fn led_by_current_thread(&self) -> bool {
        self.leader == current_thread().id()
    }

    /// Blocks until the load ends.
    pub(crate) fn wait(&self) -> Outcome<V>
    where
        V: Clone,
    {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            match &*state {
                LoadState::Pending => {
                    state = self.done.wait(state).unwrap_or_else(|e| e.into_inner());
                }
                LoadState::Done(v) => return Outcome::Value(v.clone()),
                LoadState::Failed(e) => return Outcome::Failed(Arc::clone(e)),
                LoadState::Abandoned => return Outcome::Retry,
            }
        }
    }

    fn finish(&self, outcome: LoadState<V>) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        *state = outcome;
        drop(state);
        self.done.notify_all();
    }

    /// Publishes the loaded value to the waiters.
    pub(crate) fn succeed(&self, value: V) {
        self.finish(LoadState::Done(value));
    }

    /// Publishes the loader's error to the waiters.
    pub(crate) fn fail(&self, error: SharedError) {
        self.finish(LoadState::Failed(error));
    }

    /// Releases the waiters with nothing (the loader panicked).
    pub(crate) fn abandon(&self) {
        self.finish(LoadState::Abandoned);
    }
}

/// A registration in a shard's table of loads in progress.
pub(crate) struct Load<K, V> {
    pub(crate) hash: u64,
    pub(crate) key: K,
    pub(crate) flight: Arc<InFlight<V>>,
    /// Set when the key was inserted or removed while the loader ran: the
    /// write is newer than what the loader computed, so the loaded value
    /// goes to the callers but is not stored over it.
    pub(crate) superseded: bool,
}
