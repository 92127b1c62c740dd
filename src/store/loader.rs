//! In-flight loads: the `get_or_insert_with` family runs one loader per missing
//! key while other callers for that key wait for its result. This file holds
//! the whole engine: the registry of loads in progress ([`InFlight`],
//! [`Load`]), the wait-for graph, and the `Cache` methods that claim a
//! missed key, lead its load or wait for it, and store the value.
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
//! [`InFlight::enter_wait`]), and its loader is told so by its argument,
//! [`Sharing::Unshared`]. A load that ends removes the edges of its
//! waiters before it wakes them, so every edge in the graph is a thread
//! really blocked on a load still running, and every cycle found is a real
//! deadlock.
//!
//! Only a waiter blocks: claiming a key takes the shard's lock and nothing
//! else, and a load's outcome is published to whoever holds its
//! `InFlight`. A waiter that awaits instead of blocking would wait on that
//! same outcome and keep the rest (its wait-for edge then names a task, not
//! a thread).

use std::any::Any;
use std::hash::{BuildHasher, Hash};
use std::sync::Arc;
use std::task::Waker;
use std::time::Duration;

use super::shard::{Entry, Shard, Try};
use super::stats::bump;
use super::ttl::{TimeSource, is_expired};
use super::{Cache, Sharing, Touch, local};
use crate::shim::{Condvar, Mutex, ThreadId, current_thread};

mod awaiting;
mod patience;

pub(crate) use patience::Patience;

/// A shared error from a failed load, type-erased so waiters with any error
/// type can look at it.
pub(crate) type SharedError = Arc<dyn Any + Send + Sync>;

enum LoadState<V> {
    Pending,
    Done(V),
    Failed(SharedError),
    Abandoned,
}

impl<V: Clone> LoadState<V> {
    /// What a waiter gets, once the load has ended.
    fn ended(&self) -> Option<Outcome<V>> {
        match self {
            LoadState::Pending => None,
            LoadState::Done(v) => Some(Outcome::Value(v.clone())),
            LoadState::Failed(e) => Some(Outcome::Failed(Arc::clone(e))),
            LoadState::Abandoned => Some(Outcome::Retry),
        }
    }
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

/// A load's state, and the tasks awaiting it (see [`InFlight::outcome`]).
struct Watched<V> {
    state: LoadState<V>,
    wakers: Vec<Waker>,
}

/// One load in progress.
pub(crate) struct InFlight<V> {
    state: Mutex<Watched<V>>,
    done: Condvar,
    /// The thread running the loader; `None` for an async loader, which
    /// may run on any thread (see [`InFlight::enter_wait`]).
    leader: Option<ThreadId>,
    /// Set (SeqCst) when the load ends, before its waiters' edges are taken
    /// out of the wait-for graph (see `finish` and `enter_wait`).
    ended: std::sync::atomic::AtomicBool,
}

impl<V> InFlight<V> {
    /// A pending load led by the calling thread, or by an async task
    /// (`by_task`).
    pub(crate) fn new(by_task: bool) -> Arc<Self> {
        Arc::new(InFlight {
            state: Mutex::new(Watched {
                state: LoadState::Pending,
                wakers: Vec::new(),
            }),
            done: Condvar::new(),
            leader: (!by_task).then(|| current_thread().id()),
            ended: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Whether the calling thread is the one running this load's loader (a
    /// loader that asks the cache for its own key would wait on itself).
    pub(crate) fn led_by_current_thread(&self) -> bool {
        self.leader == Some(current_thread().id())
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
        let Some(leader) = self.leader else {
            // An async loader blocks no thread: no cycle of blocked threads
            // runs through it (a thread blocking on it from inside the
            // executor that should run it is the caller's deadlock).
            return Some(WaitEdge { waiter: me, load });
        };
        let mut waits = waits();
        if self.ended.load(std::sync::atomic::Ordering::SeqCst) {
            // Over already: nothing to wait for, so no edge (and no walk,
            // which could meet the leader blocked on something new and see
            // a cycle where there is none).
            return Some(WaitEdge { waiter: me, load });
        }
        let mut at = leader;
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
            leader,
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
            match state.state.ended() {
                Some(outcome) => return outcome,
                None => state = self.done.wait(state).unwrap_or_else(|e| e.into_inner()),
            }
        }
    }

    /// The load's outcome once it has ended; until then `None`, with `waker`
    /// registered to be woken when it ends. Never blocks (beyond the short
    /// lock): the awaiting counterpart of [`InFlight::wait`].
    pub(crate) fn outcome(&self, waker: &Waker) -> Option<Outcome<V>>
    where
        V: Clone,
    {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let outcome = state.state.ended();
        if outcome.is_none() && !state.wakers.iter().any(|w| w.will_wake(waker)) {
            // Under the lock that `finish` takes to set the outcome and to
            // take the wakers: either it sees this waker, or this poll saw
            // the outcome.
            state.wakers.push(waker.clone());
        }
        outcome
    }

    fn finish(&self, outcome: LoadState<V>) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.state = outcome;
        let wakers = std::mem::take(&mut state.wakers);
        drop(state);
        // Woken outside the lock: a waker may run code of its executor.
        for waker in wakers {
            waker.wake();
        }
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
        let guard = local::pin();
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
            let entry = Entry {
                hash,
                expires,
                weight: w,
            };
            let mut refused = None;
            shard.insert(st, ctx, entry, key, stored, &mut refused, Try::Last, &guard);
            Landed::Left(refused.map(|(k, v)| (Some(k), v)))
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

/// The key of a missed lookup, for [`Cache::load_missed`]: owned already, or
/// borrowed with its clone fn, called only to register a load (a caller that
/// waits on another's load needs no key of its own).
pub(super) enum MissedKey<'a, K> {
    Owned(K),
    Borrowed(&'a K, fn(&K) -> K),
}

/// What [`Cache::claim`] found for a missed key, under its shard's lock.
enum Claim<'a, K, V> {
    /// A value stored since the caller's lookup.
    Stored(V),
    /// A load this caller registered, and so leads.
    Lead(Arc<InFlight<V>>),
    /// Another caller's load of the key, to wait for; the key comes back
    /// for the next claim, should that load give nothing.
    Wait(Arc<InFlight<V>>, MissedKey<'a, K>),
}

// The engine of the `get_or_insert_with` family. A missed key is claimed
// under its shard's lock (`claim`: a value stored since, or a load to lead,
// or one to wait for), and the rest runs with no lock held: the leader runs
// the loader (`lead`), a waiter blocks on the load (`InFlight::enter_wait`,
// then `InFlight::wait`). Only that last step blocks; a waiter that awaits
// instead would replace it and keep the rest.
impl<K, V, S> Cache<K, V, S>
where
    K: Hash + Eq,
    V: Clone,
    S: BuildHasher,
{
    /// The `get_or_insert_with` family's engine: `load` returns the value and
    /// an optional TTL (`None`: the cache's default).
    pub(super) fn load_once<E>(
        &self,
        key: K,
        load: impl FnOnce(Sharing) -> Result<(V, Option<Duration>), E>,
    ) -> Result<V, Arc<E>>
    where
        E: Send + Sync + 'static,
    {
        let hash = self.inner.hasher.hash_one(&key);
        if let Some(v) = self.lookup(hash, &key, Touch::Use, V::clone) {
            return Ok(v);
        }
        self.load_missed(hash, MissedKey::Owned(key), load)
    }

    /// The `get_or_insert_with` family for a caller that has just looked
    /// `key` up itself and missed (the miss is counted once, by that
    /// lookup): goes straight to the coalesced load, whose check under the
    /// lock still returns a value stored since. `load` is told whether its
    /// value is shared (see [`Sharing`]) and returns the value and an
    /// optional TTL (`None`: the cache's default).
    ///
    /// The store's API for a cache layered over it (`NearFar`), which looks
    /// the key up itself first.
    #[allow(
        dead_code,
        reason = "the store's API for a layered cache, unused without one: see `LAYERED`"
    )]
    ///
    /// With `patience`, a caller that waits for another caller's load of
    /// `key` waits that long at most, then returns what `patience.instead`
    /// gives (when it gives nothing, it waits on).
    pub(crate) fn load_after_miss<E>(
        &self,
        key: K,
        load: impl FnOnce(Sharing) -> Result<(V, Option<Duration>), E>,
        patience: Option<Patience<'_, V>>,
    ) -> Result<V, Arc<E>>
    where
        E: Send + Sync + 'static,
    {
        let hash = self.inner.hasher.hash_one(&key);
        self.load_missed_patiently(hash, MissedKey::Owned(key), load, patience)
    }

    /// The slow half of [`load_once`](Self::load_once), after a lookup of
    /// `key` (hashing to `hash`) missed and counted the miss.
    pub(super) fn load_missed<E>(
        &self,
        hash: u64,
        key: MissedKey<'_, K>,
        load: impl FnOnce(Sharing) -> Result<(V, Option<Duration>), E>,
    ) -> Result<V, Arc<E>>
    where
        E: Send + Sync + 'static,
    {
        self.load_missed_patiently(hash, key, load, None)
    }

    /// [`load_missed`](Self::load_missed), a wait on another caller's load
    /// bounded by `patience` (see [`load_after_miss`](Self::load_after_miss)).
    fn load_missed_patiently<E>(
        &self,
        hash: u64,
        key: MissedKey<'_, K>,
        load: impl FnOnce(Sharing) -> Result<(V, Option<Duration>), E>,
        patience: Option<Patience<'_, V>>,
    ) -> Result<V, Arc<E>>
    where
        E: Send + Sync + 'static,
    {
        let shard = self.shard(hash);
        let mut key = key;
        let flight = loop {
            let waiting = match self.claim(shard, hash, key, false) {
                Claim::Stored(v) => return Ok(v),
                Claim::Lead(flight) => break flight,
                Claim::Wait(flight, k) => {
                    key = k;
                    flight
                }
            };
            assert!(
                !waiting.led_by_current_thread(),
                "nearfar: a loader asked the cache for its own key; it would wait for itself forever"
            );
            let Some(_edge) = waiting.enter_wait() else {
                // The leader waits, maybe through other loads, for a load
                // this thread leads: waiting would deadlock. Load for this
                // caller alone; the leader's value is the one stored.
                bump(&shard.counters.loads, 1);
                return load(Sharing::Unshared).map(|(v, _)| v).map_err(Arc::new);
            };
            let outcome = match &patience {
                None => waiting.wait(),
                Some(patience) => {
                    let now = self.inner.time.now();
                    let wait = u64::try_from(patience.wait.as_nanos()).unwrap_or(u64::MAX);
                    match waiting.wait_until(&self.inner.time, now.saturating_add(wait)) {
                        Some(outcome) => outcome,
                        None => match (patience.instead)() {
                            Some(v) => return Ok(v),
                            None => waiting.wait(),
                        },
                    }
                }
            };
            match outcome {
                Outcome::Value(v) => return Ok(v),
                Outcome::Failed(e) => {
                    if let Ok(e) = e.downcast::<E>() {
                        return Err(e);
                    }
                }
                Outcome::Retry => {}
            }
        };
        self.lead(shard, hash, flight, load)
    }

    /// Under `shard`'s lock: a value stored for `key` since the caller's
    /// lookup, or else the load of `key` in progress to wait for, or else a
    /// new load, registered for this caller to lead. Blocks on nothing but
    /// the lock.
    fn claim<'a>(
        &self,
        shard: &Shard<K, V>,
        hash: u64,
        key: MissedKey<'a, K>,
        by_task: bool,
    ) -> Claim<'a, K, V> {
        let k: &K = match &key {
            MissedKey::Owned(k) => k,
            MissedKey::Borrowed(k, _) => k,
        };
        let guard = local::pin();
        let st = shard.lock();
        // Someone may have stored it since our lookup.
        if let Some((_, slot)) = shard.walk(hash, k, &guard) {
            let exp = shard.expires(slot);
            if exp == 0 || !is_expired(exp, self.inner.time.now()) {
                // Cloned after the unlock (user code stays out of
                // the critical section).
                drop(st);
                // SAFETY: reached through the index while pinned:
                // even if unlinked now, not reclaimed before `guard`
                // drops.
                return Claim::Stored(unsafe { slot.value() }.clone());
            }
        }
        // Not a superseded load: its value predates a write the
        // caller may have made itself (a `remove`, then this call),
        // and will not be stored. Such a key gets a new load.
        match st
            .loads
            .iter()
            .find(|l| l.hash == hash && !l.superseded && l.key == *k)
        {
            Some(load) => {
                bump(&shard.counters.load_waits, 1);
                Claim::Wait(Arc::clone(&load.flight), key)
            }
            None => {
                let mut st = st;
                let flight = InFlight::new(by_task);
                bump(&shard.counters.loads, 1);
                let key = match key {
                    MissedKey::Owned(key) => key,
                    MissedKey::Borrowed(key, clone) => clone(key),
                };
                st.loads.push(Load {
                    hash,
                    key,
                    flight: Arc::clone(&flight),
                    superseded: false,
                });
                Claim::Lead(flight)
            }
        }
    }

    /// Runs the loader for a load this caller registered, and publishes the
    /// outcome to the cache and the waiters.
    fn lead<E>(
        &self,
        shard: &Shard<K, V>,
        hash: u64,
        flight: Arc<InFlight<V>>,
        load: impl FnOnce(Sharing) -> Result<(V, Option<Duration>), E>,
    ) -> Result<V, Arc<E>>
    where
        E: Send + Sync + 'static,
    {
        // Armed until the outcome is published: a panic anywhere before that
        // (the loader, the weigher, a Drop, the listener, a clone) releases
        // the waiters instead of leaving them blocked on a load that ended.
        let abandon = Abandon {
            shard,
            flight: &flight,
        };
        let result = self.publish(shard, hash, &flight, load(Sharing::Shared), true);
        std::mem::forget(abandon);
        result
    }

    /// Publishes a load's outcome: stores the value (as one write that also
    /// removes the registration), or removes the registration after an
    /// error, and hands the outcome to the waiters. With `wait_for_memory`
    /// a value that finds no memory at once waits for retired values to be
    /// freed and tries again (as `insert` does).
    fn publish<E>(
        &self,
        shard: &Shard<K, V>,
        hash: u64,
        flight: &Arc<InFlight<V>>,
        loaded: Result<(V, Option<Duration>), E>,
        wait_for_memory: bool,
    ) -> Result<V, Arc<E>>
    where
        E: Send + Sync + 'static,
    {
        match loaded {
            Ok((value, ttl)) => {
                // Cloned before locking: user code (and a panic in it) stays
                // out of the critical section.
                let stored = value.clone();
                let mut weight = None;
                let first =
                    self.store_loaded(shard, hash, flight, stored, ttl, &mut weight, Try::First);
                let leftover = match first {
                    Landed::Left(leftover) => leftover,
                    Landed::Reclaim(stored) if !wait_for_memory => {
                        drop(take_registration(shard, flight));
                        Some((None, stored))
                    }
                    Landed::Reclaim(stored) => {
                        // No memory for it yet: as in `insert_inner`.
                        shard.reclaim_for(weight.unwrap_or(1));
                        match self.store_loaded(
                            shard,
                            hash,
                            flight,
                            stored,
                            ttl,
                            &mut weight,
                            Try::Last,
                        ) {
                            Landed::Left(leftover) => leftover,
                            Landed::Reclaim(stored) => Some((None, stored)),
                        }
                    }
                };
                // What the write left unstored (a superseded load's key and
                // value, or a rejected entry) is dropped after the unlock:
                // their Drop may use the cache.
                drop(leftover);
                // Only waiters hold other references now (registration removed).
                if Arc::strong_count(flight) > 1 {
                    flight.succeed(value.clone());
                }
                Ok(value)
            }
            Err(error) => {
                let error = Arc::new(error);
                drop(take_registration(shard, flight));
                flight.fail(Arc::clone(&error) as SharedError);
                Err(error)
            }
        }
    }
}

/// Releases a load's waiters if its leader stops before publishing an
/// outcome: the loader (or anything after it) panicked, or the leader's
/// future was dropped.
struct Abandon<'a, K, V> {
    shard: &'a Shard<K, V>,
    flight: &'a Arc<InFlight<V>>,
}

impl<K, V> Drop for Abandon<'_, K, V> {
    fn drop(&mut self) {
        let registration = take_registration(self.shard, self.flight);
        drop(registration);
        self.flight.abandon();
    }
}

/// Removes a load's registration from its shard (returned so the key is
/// dropped after the lock).
fn take_registration<K, V>(shard: &Shard<K, V>, flight: &Arc<InFlight<V>>) -> Option<Load<K, V>> {
    let mut st = shard.lock();
    let pos = st
        .loads
        .iter()
        .position(|l| Arc::ptr_eq(&l.flight, flight))?;
    Some(st.loads.swap_remove(pos))
}

#[cfg(all(test, not(shuttle)))]
mod tests;
