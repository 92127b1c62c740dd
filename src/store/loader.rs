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
//!
//! Loaders may ask the cache (any cache) for other keys, and so wait on
//! other loads. Waits across threads can form a cycle: thread A's loader
//! for key 1 waits for key 2, whose loader, in thread B, waits for key 1.
//! Every wait is recorded in a process-wide wait-for graph (blocked thread
//! -> thread leading the load it waits for), and a wait that would close a
//! cycle is refused: that caller runs its own loader instead (see
//! [`InFlight::enter_wait`]). A waiter whose load has ended but who has not
//! woken yet still has its edge, so now and then a wait is refused that
//! would not have deadlocked; that costs one extra loader run, never a
//! wrong value.

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

/// The wait-for graph of blocked loads: `(waiter, leader)` for every thread
/// blocked in [`InFlight::wait`], with the thread leading the load it waits
/// for. As many entries as threads are blocked at once, so a vector. A std
/// mutex even under shuttle: it is held only for a short walk, across no
/// scheduling point.
static WAITS: std::sync::Mutex<Vec<(ThreadId, ThreadId)>> = std::sync::Mutex::new(Vec::new());

/// A wait recorded in the wait-for graph; removed when dropped (after the
/// wait, or as a panic unwinds).
pub(crate) struct WaitEdge {
    waiter: ThreadId,
}

impl Drop for WaitEdge {
    fn drop(&mut self) {
        let mut waits = WAITS.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(at) = waits.iter().position(|&(w, _)| w == self.waiter) {
            waits.swap_remove(at);
        }
    }
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

    /// Records that the calling thread is about to wait for this load, or
    /// returns `None` if that would close a cycle of threads whose loaders
    /// wait on each other (the leader is blocked, directly or through other
    /// blocked leaders, on a load this thread leads): waiting would
    /// deadlock. The caller must not be the leader itself (see
    /// [`led_by_current_thread`](Self::led_by_current_thread)).
    ///
    /// Sound without races: edges are added and checked under one lock, so
    /// of the threads closing a cycle, the last to add its edge sees all the
    /// others'. A leader not in the graph is running (not blocked), so no
    /// cycle runs through it.
    pub(crate) fn enter_wait(&self) -> Option<WaitEdge> {
        let me = current_thread().id();
        let mut waits = WAITS.lock().unwrap_or_else(|e| e.into_inner());
        let mut at = self.leader;
        // Each blocked thread has one edge, so a walk longer than the graph
        // has entries is already in a cycle that does not reach us (it
        // cannot be: every cycle is refused as it closes), but bound it.
        for _ in 0..=waits.len() {
            if at == me {
                return None;
            }
            match waits.iter().find(|&&(w, _)| w == at) {
                Some(&(_, leader)) => at = leader,
                None => break,
            }
        }
        waits.push((me, self.leader));
        Some(WaitEdge { waiter: me })
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
