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
//! [`InFlight::enter_wait`]). A load that ends removes the edges of its
//! waiters before it wakes them, so every edge in the graph is a thread
//! really blocked on a load still running, and every cycle found is a real
//! deadlock.

use std::any::Any;
use std::hash::{BuildHasher, Hash};
use std::sync::Arc;
use std::time::Duration;

use super::shard::{Inserted, Shard, Try};
use super::ttl::TimeSource;
use super::{Cache, local};
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

/// One edge of the wait-for graph: `waiter` is blocked on the load at
/// address `load` (an `InFlight`, kept alive by the waiter's `Arc`), which
/// `leader` runs.
#[derive(Clone, Copy)]
struct Edge {
    waiter: ThreadId,
    leader: ThreadId,
    load: usize,
}

// The wait-for graph: one edge per thread blocked in `InFlight::wait`. As
// many entries as threads are blocked at once, so a vector. A std mutex even
// under shuttle: it is held only for short walks, across no scheduling
// point. Under shuttle, a fresh graph for every execution (thread ids are
// reused across executions and across tests running in parallel).
#[cfg(not(shuttle))]
static WAITS: std::sync::Mutex<Vec<Edge>> = std::sync::Mutex::new(Vec::new());
#[cfg(shuttle)]
shuttle::lazy_static! {
    static ref WAITS: std::sync::Mutex<Vec<Edge>> = std::sync::Mutex::new(Vec::new());
}

/// How many edges the graph holds, so that a load that ends with no one
/// waiting skips the graph's lock. Written under the lock; SeqCst, so that
/// a waiter's edge added before `finish` reads this is seen (see `finish`).
static EDGES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

fn waits() -> std::sync::MutexGuard<'static, Vec<Edge>> {
    WAITS.lock().unwrap_or_else(|e| e.into_inner())
}

/// Updates [`EDGES`] after a change to the graph (under its lock).
fn count_edges(waits: &[Edge]) {
    EDGES.store(waits.len(), std::sync::atomic::Ordering::SeqCst);
}

/// A wait recorded in the wait-for graph; removed when dropped (after the
/// wait, or as a panic unwinds), unless the load's end removed it first.
pub(crate) struct WaitEdge {
    waiter: ThreadId,
    load: usize,
}

impl Drop for WaitEdge {
    fn drop(&mut self) {
        let mut waits = waits();
        if let Some(at) = waits
            .iter()
            .position(|e| e.waiter == self.waiter && e.load == self.load)
        {
            waits.swap_remove(at);
            count_edges(&waits);
        }
    }
}

// Set while this thread runs a loader whose wait was refused (see
// `run_unshared`). Under shuttle, its thread-local (tasks share OS threads).
#[cfg(not(shuttle))]
std::thread_local! {
    static UNSHARED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}
#[cfg(shuttle)]
shuttle::thread_local! {
    static UNSHARED: std::cell::Cell<bool> = std::cell::Cell::new(false);
}

/// Runs a loader for a caller whose wait on another caller's load was
/// refused (it would close a cycle): its value goes to this caller only.
/// A loader that itself coordinates with other processes (`NearFar`'s
/// memcached lease, held by the blocked leader of this process) asks
/// [`take_unshared`] and skips that coordination.
pub(crate) fn run_unshared<R>(load: impl FnOnce() -> R) -> R {
    with_flag(true, load)
}

/// Runs `load` with this thread's unshared flag set to `unshared`, then
/// restores it (also when `load` panics).
fn with_flag<R>(unshared: bool, load: impl FnOnce() -> R) -> R {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            UNSHARED.with(|f| f.set(self.0));
        }
    }
    let _restore = Restore(UNSHARED.with(|f| f.replace(unshared)));
    load()
}

/// Runs the loader of a registered (shared) load: with the flag of
/// [`run_unshared`] clear, so that a shared load nested in an unshared
/// one's loader is not taken for unshared.
pub(crate) fn run_shared<R>(load: impl FnOnce() -> R) -> R {
    with_flag(false, load)
}

/// Whether the loader now starting runs for one caller only (see
/// [`run_unshared`]); clears the flag, so loads nested in it are shared as
/// usual.
#[cfg(feature = "memcached")]
pub(crate) fn take_unshared() -> bool {
    UNSHARED.with(|f| f.replace(false))
}

/// One load in progress.
pub(crate) struct InFlight<V> {
    state: Mutex<LoadState<V>>,
    done: Condvar,
    leader: ThreadId,
    /// Set (SeqCst) when the load ends, before its waiters' edges are taken
    /// out of the wait-for graph (see `finish` and `enter_wait`).
    ended: std::sync::atomic::AtomicBool,
}

impl<V> InFlight<V> {
    /// A pending load led by the calling thread.
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(InFlight {
            state: Mutex::new(LoadState::Pending),
            done: Condvar::new(),
            leader: current_thread().id(),
            ended: std::sync::atomic::AtomicBool::new(false),
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
        let load = self as *const Self as usize;
        let mut waits = waits();
        if self.ended.load(std::sync::atomic::Ordering::SeqCst) {
            // Over already: nothing to wait for, so no edge (and no walk,
            // which could meet the leader blocked on something new and see
            // a cycle where there is none).
            return Some(WaitEdge { waiter: me, load });
        }
        let mut at = self.leader;
        // Each blocked thread has one edge, so a walk longer than the graph
        // has entries is already in a cycle that does not reach us (it
        // cannot be: every cycle is refused as it closes), but bound it.
        for _ in 0..=waits.len() {
            if at == me {
                return None;
            }
            match waits.iter().find(|e| e.waiter == at) {
                Some(e) => at = e.leader,
                None => break,
            }
        }
        waits.push(Edge {
            waiter: me,
            leader: self.leader,
            load,
        });
        count_edges(&waits);
        // If the load ended before `finish` could see this edge (it reads
        // `EDGES` after setting `ended`; all SeqCst), take the edge out now:
        // the graph never shows a thread blocked on a load that has ended.
        if self.ended.load(std::sync::atomic::Ordering::SeqCst) {
            waits.pop();
            count_edges(&waits);
        }
        Some(WaitEdge { waiter: me, load })
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
        // The waiters are not blocked on this load any more: take their
        // edges out before waking them, so that until they run, the graph
        // does not show them blocked (a wait through one would be refused
        // as a cycle that is not there). `ended` first: a waiter whose edge
        // the load of `EDGES` below does not see stored it after that load,
        // so it sees `ended` and takes its edge out itself (`enter_wait`).
        self.ended.store(true, std::sync::atomic::Ordering::SeqCst);
        // (Under shuttle, always: `EDGES` is process-wide, and parallel
        // tests' executions would overwrite each other's counts.)
        if cfg!(shuttle) || EDGES.load(std::sync::atomic::Ordering::SeqCst) != 0 {
            let load = self as *const Self as usize;
            let mut waits = waits();
            waits.retain(|e| e.load != load);
            count_edges(&waits);
        }
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

impl<K, V, S> Cache<K, V, S>
where
    K: Hash + Eq,
    V: Clone,
    S: BuildHasher,
{
    /// Stores the value a load this caller leads produced, as one write
    /// that also removes the load's registration (so no caller can miss
    /// both). The weigher runs once, on the first try (`weight` keeps it).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn store_loaded(
        &self,
        shard: &Shard<K, V>,
        hash: u64,
        flight: &Arc<InFlight<V>>,
        stored: V,
        ttl: Option<Duration>,
        weight: &mut Option<u64>,
        attempt: Try,
    ) -> Landed<K, V> {
        let (guard, _) = local::pin();
        self.write(shard, &guard, |st, ctx| {
            let Some(pos) = st.loads.iter().position(|l| Arc::ptr_eq(&l.flight, flight)) else {
                return Landed::Left(Some((None, stored)));
            };
            // The weigher runs before anything changes.
            let w = *weight.get_or_insert_with(|| {
                self.inner
                    .weigher
                    .as_ref()
                    .map_or(1, |w| w(&st.loads[pos].key, &stored))
            });
            let superseded = st.loads[pos].superseded;
            if !superseded
                && ttl != Some(Duration::ZERO)
                && attempt == Try::First
                && !shard.memory_for(st, w)
            {
                // The registration stays until the value lands.
                shard.make_room(st, ctx, w, &guard);
                return Landed::Reclaim(stored);
            }
            let Load { key, .. } = st.loads.swap_remove(pos);
            if superseded || ttl == Some(Duration::ZERO) {
                // Superseded: the key was written or removed while the
                // loader ran, and that write is newer. Expired on arrival:
                // storing it could only evict a live entry.
                return Landed::Left(Some((Some(key), stored)));
            }
            let expires = match ttl.or(self.inner.default_ttl) {
                Some(ttl) if ttl != Duration::MAX => TimeSource::expiry(ctx.now(), Some(ttl)),
                _ => 0,
            };
            // The memory check is done (or this is the last try): stored
            // or refused, not handed back for another try.
            match shard.insert(st, ctx, hash, key, stored, expires, w, Try::Last, &guard) {
                Inserted::Rejected(k, v) | Inserted::Reclaim(k, v) => {
                    Landed::Left(Some((Some(k), v)))
                }
                Inserted::New | Inserted::Replaced => Landed::Left(None),
            }
        })
    }
}

/// What [`Cache::store_loaded`] did with a loaded value.
pub(super) enum Landed<K, V> {
    /// Stored, or not to be stored: what is left to drop.
    Left(Option<(Option<K>, V)>),
    /// Not stored yet: no memory for it (see `Inserted::Reclaim`).
    Reclaim(V),
}
