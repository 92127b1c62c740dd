//! What a `NearFar` and an `AsyncNearFar` are: the near tier, the far tier
//! over either client, the settings and counters, and the helpers every
//! call uses (the near-tier side of a read: due, write generations, keeping
//! a far value near). Shared by both handles; only the drivers differ.

use std::fmt;
use std::hash::{BuildHasher, Hash, RandomState};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::call::Call;
use super::fail_safe::FailSafe;
use super::flow::Ctx;
use super::flow::read::Keep;
use super::generation::{FarCall, Generations};
use super::observe::Servers;
use super::stats::{Counters, NearFarStats};
use super::warm::Warm;
use super::{FarKey, key, nanos};
use crate::Cache;
use crate::clock::Timer;
use crate::memcached::health::Circuit;

/// How many write generations keys are spread over (see `Inner::gens`): a
/// write to one key makes a far read of another key in its stripe, running
/// at the same time, skip its near fill (it is fetched again on the next
/// `get`), so stripes are many (8 KiB of counters).
pub(super) const GENERATIONS: usize = 1024;

/// A near-tier entry: the value and what revalidation needs.
#[derive(Clone, Debug)]
pub(crate) struct Entry<V> {
    pub(super) value: V,
    /// When the value was fetched or last revalidated (ns since `epoch`).
    pub(super) checked: u64,
    /// When the near copy expires (ns since `epoch`; `u64::MAX`: never).
    pub(super) expires: u64,
    /// The far item's CAS unique when known, else 0 (never a real CAS).
    pub(super) cas: u64,
    /// For a value served by the fail-safe after a failed load: when it
    /// first expired (ns since `epoch`); 0 for a fresh value.
    pub(super) stale_since: u64,
    /// How long the load that made it took (ns; 0: unknown): scales how
    /// early refresh-ahead may start (XFetch).
    pub(super) delta: u64,
    /// The namespace's generation the entry was read or loaded under (see
    /// `generation.rs`): served only while it is the one known.
    pub(super) generation: u64,
}

impl<V> Entry<V> {
    /// An entry for `value` fetched at `now` under the namespace's
    /// `generation`, near for `ttl` (`None`: no bound).
    pub(super) fn at(now: u64, value: V, cas: u64, ttl: Option<Duration>, generation: u64) -> Self {
        Entry {
            value,
            checked: now,
            expires: ttl.map_or(u64::MAX, |t| now.saturating_add(nanos(t))),
            cas,
            stale_since: 0,
            delta: 0,
            generation,
        }
    }
}

/// What a `NearFar` needs of its far client beyond the requests it sends.
pub(crate) trait FarClient: fmt::Debug + Send + Sync + Servers + 'static {
    /// The client's key prefix (far keys must fit memcached's limit with it).
    fn key_prefix(&self) -> &str;
    /// Records that the write of `key` was skipped (see
    /// `Client::owe_invalidation`).
    fn owe_invalidation(&self, key: &str);
}

impl FarClient for crate::memcached::Client {
    fn key_prefix(&self) -> &str {
        crate::memcached::Client::key_prefix(self)
    }

    fn owe_invalidation(&self, key: &str) {
        crate::memcached::Client::owe_invalidation(self, key);
    }
}

#[cfg(feature = "tokio")]
impl FarClient for crate::memcached::AsyncClient {
    fn key_prefix(&self) -> &str {
        crate::memcached::AsyncClient::key_prefix(self)
    }

    fn owe_invalidation(&self, key: &str) {
        crate::memcached::AsyncClient::owe_invalidation(self, key);
    }
}

/// The far tier and its settings, over client `Cl`.
pub(super) struct Far<Cl> {
    pub(super) client: Cl,
    pub(super) breaker: Circuit,
    pub(super) fallback: Option<(Cl, Circuit)>,
    /// The longer key prefix of the client and the fallback client: every
    /// far key must fit memcached's limit with either.
    pub(super) prefix_len: usize,
    pub(super) namespace: String,
    pub(super) far_ttl: Duration,
    pub(super) lease_ttl: Duration,
    pub(super) lease_wait: Duration,
    pub(super) stale_on_remove: Option<Duration>,
}

/// A two-tier cache's state, over far client `Cl`.
pub(super) struct Inner<K, V, Cl> {
    pub(super) near: Cache<K, Entry<V>>,
    pub(super) far: Option<Far<Cl>>,
    pub(super) near_ttl: Option<Duration>,
    /// `revalidate_after` in ns; `u64::MAX` when off (or no far tier).
    pub(super) revalidate: u64,
    /// Serving the last value when a load fails (`None`: off).
    pub(super) fail_safe: Option<FailSafe>,
    /// Refresh-ahead's threshold, the share of a near copy's TTL after
    /// which a hit refreshes it (`None`: off).
    pub(super) refresh_ahead: Option<f64>,
    /// Per stripe of keys (as `gens`): until when a refresh of a key in it
    /// is claimed (ns; 0 or past: free).
    pub(super) refreshing: Box<[AtomicU64]>,
    /// The clock of every timed decision: revalidation, the breaker.
    pub(super) timer: Timer,
    pub(super) counters: Counters,
    /// Write generations, one per stripe of keys: `insert` and `remove` bump
    /// their key's after the far write and before the near one. A `get`
    /// that read the far tier before such a bump does not keep what it
    /// read near. (`get_with` loads need no generation: the near tier marks
    /// a load superseded when its key is written or removed meanwhile.)
    pub(super) gens: Box<[AtomicU64]>,
    pub(super) gen_hasher: RandomState,
    /// The namespace's generation (`invalidate_all`): not the per-key write
    /// generations above, but the one every far key of the namespace
    /// carries (see `generation.rs`). Shared with the snapshot's saver,
    /// which saves the entries of the generation known.
    pub(super) generations: Arc<Generations>,
    /// Warm restarts: the snapshot's saver and the key preload (see
    /// `warm.rs`). Last: dropped after the rest, it saves once more.
    pub(super) warm: Warm,
}

impl<K, V, Cl: FarClient> fmt::Debug for Inner<K, V, Cl> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("NearFar");
        d.field("name", &self.counters.observe.name());
        d.field("near", &self.near);
        if let Some(far) = &self.far {
            d.field("far", &far.client)
                .field("namespace", &far.namespace)
                .field("breaker_open", &far.breaker.is_open())
                .field("generation", &self.generations.known());
        }
        d.finish_non_exhaustive()
    }
}

impl<K, V, Cl> Inner<K, V, Cl>
where
    K: Hash + Eq + Clone + FarKey + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    Cl: FarClient,
{
    /// The far tier for one call (see [`Call`]); `None` without one.
    pub(super) fn call(&self) -> Option<Call<'_, Cl>> {
        self.far
            .as_ref()
            .map(|far| Call::new(far, &self.counters, &self.timer))
    }

    /// The settings and counters the far-tier flows of call `far` decide
    /// with.
    pub(super) fn ctx(&self, far: &FarCall<'_, Cl>) -> Ctx<'_> {
        Ctx {
            counters: &self.counters,
            far_ttl: far.far_ttl,
            lease_ttl: far.lease_ttl,
            lease_wait: far.lease_wait,
            near_ttl: self.near_ttl,
            generation: far.generation,
        }
    }

    /// Nanoseconds since the epoch, on the revalidation clock.
    pub(super) fn now(&self) -> u64 {
        self.timer.now()
    }

    /// [`now`](Self::now), read cheaply and up to a kernel tick behind
    /// (see `Timer::recent`): what a near hit's checks (revalidation or
    /// refresh due?) read, so that a near hit does not pay the precise
    /// clock's read and its stall. A check a tick late only starts the
    /// slow path a tick later.
    #[inline]
    pub(super) fn recent(&self) -> u64 {
        self.timer.recent()
    }

    /// Whether a near hit on `entry` takes the slow path: the entry is of
    /// another generation than the one known (not to be served), the
    /// namespace's generation check is due (the slow path makes it), or the
    /// entry is due for revalidation. The hot path's cost: one atomic load
    /// and, only with `generation_check` or `revalidate_after`, the clock.
    #[inline]
    pub(super) fn due(&self, entry: &Entry<V>) -> bool {
        self.due_at(entry, &mut None)
    }

    /// [`due`](Self::due), with the clock read at most once across the
    /// checks of one lookup: `now` holds it once read (see
    /// [`Inner::lookup`]).
    #[inline]
    pub(super) fn due_at(&self, entry: &Entry<V>, now: &mut Option<u64>) -> bool {
        if entry.generation != self.generations.current() {
            return true;
        }
        let (after, next) = (self.revalidate, self.generations.next_check());
        if after == u64::MAX && next == u64::MAX {
            return false;
        }
        let now = *now.get_or_insert_with(|| self.recent());
        now >= next || now.saturating_sub(entry.checked) >= after
    }

    /// Whether `entry` is due for revalidation.
    pub(super) fn revalidation_due(&self, entry: &Entry<V>) -> bool {
        let after = self.revalidate;
        after != u64::MAX && self.now().saturating_sub(entry.checked) >= after
    }

    /// `entry` if it is of `generation` (the call's), else `None`, its copy
    /// dropped from the near tier: a near copy from before the namespace's
    /// generation changed is never served.
    pub(super) fn current_copy(
        &self,
        key: &K,
        entry: Option<Entry<V>>,
        generation: u64,
    ) -> Option<Entry<V>> {
        match entry {
            Some(e) if e.generation != generation => {
                self.near.drop_copy(key);
                None
            }
            entry => entry,
        }
    }

    /// The stripe of keys `key` is in (of `gens` and `refreshing`).
    pub(super) fn stripe(&self, key: &K) -> usize {
        // The remainder is below `GENERATIONS`, so it fits a usize.
        (self.gen_hasher.hash_one(key) % GENERATIONS as u64) as usize
    }

    /// The write generation of `key`'s stripe.
    pub(super) fn write_generation(&self, key: &K) -> &AtomicU64 {
        &self.gens[self.stripe(key)]
    }

    /// The far key of `key` in call `far`'s generation, `None` when it
    /// cannot be rendered.
    pub(super) fn key_of(&self, far: &FarCall<'_, Cl>, key: &K) -> Option<String> {
        self.key_at(far, far.generation, key)
    }

    /// The far key of `key` in the namespace's `generation`, `None` when it
    /// cannot be rendered.
    pub(super) fn key_at(&self, far: &Far<Cl>, generation: u64, key: &K) -> Option<String> {
        let rendered = key.far_key()?;
        Some(key::full_key(
            &far.namespace,
            far.prefix_len,
            generation,
            &rendered,
        ))
    }

    /// An entry for `value` fetched now under the namespace's `generation`,
    /// near for `ttl` (`None`: no bound).
    pub(super) fn entry(
        &self,
        value: V,
        cas: u64,
        ttl: Option<Duration>,
        generation: u64,
    ) -> Entry<V> {
        Entry::at(self.now(), value, cas, ttl, generation)
    }

    /// The near TTL of a value with `far_left` left in memcached.
    pub(super) fn bound(&self, far_left: Option<Duration>) -> Duration {
        let near = self.near_ttl.unwrap_or(Duration::MAX);
        near.min(far_left.unwrap_or(Duration::MAX))
    }

    /// Keeps `value`, read from the far tier in the namespace's
    /// `generation`, near as `keep` says; `seen` is the key's write
    /// generation before the read.
    pub(super) fn put_near(&self, key: &K, seen: u64, generation: u64, value: V, keep: Keep) {
        let entry = self.entry(value, keep.cas, Some(keep.ttl), generation);
        self.keep_near(key, seen, entry, keep.ttl);
    }

    /// Stores `entry`, made from a far read, near for `ttl`, unless this
    /// cache wrote or removed `key` since the read began (its write
    /// generation is no longer `seen`): the read may predate that write, and
    /// storing it would undo it here. A write landing between the check and
    /// the store is caught by the second check. The same for the
    /// namespace's generation: an entry read under one that is no longer
    /// known is not kept (it would not be served anyway: see `due`).
    pub(super) fn keep_near(&self, key: &K, seen: u64, entry: Entry<V>, ttl: Duration) {
        let write = self.write_generation(key);
        let of = entry.generation;
        let current = || write.load(Ordering::Acquire) == seen && self.generations.current() == of;
        if !current() {
            return;
        }
        // A fill, not a write: it does not supersede a `get_with` load of
        // the key in progress (which may have computed a newer value).
        self.near.fill_with_ttl(key.clone(), entry, ttl);
        if !current() {
            self.near.drop_copy(key);
        }
    }

    /// Writes `value` near after an `insert` (its far write done, in the
    /// namespace's `generation`, `cas` the CAS memcached gave it, if known),
    /// bumping the key's write generation first. Written under a generation
    /// that is no longer known (an invalidation seen meanwhile), the entry
    /// is not served: the invalidation wins over the write it overlapped,
    /// here as in every other process.
    pub(super) fn insert_near(&self, key: K, value: V, cas: u64, generation: u64) {
        let Some(far) = &self.far else {
            // A load of the key running meanwhile is superseded by this
            // write (the near tier sees to it) and does not store over it.
            let entry = self.entry(value, 0, self.near_ttl, generation);
            match self.near_ttl {
                Some(ttl) => self.near.insert_with_ttl(key, entry, ttl),
                None => self.near.insert(key, entry),
            }
            return;
        };
        // After the far write, before the near one: a far read that began
        // before the far write (a `get` filling the near tier) sees the bump
        // and keeps nothing near. (A `get_with` load in progress is
        // superseded by the near write below.)
        self.write_generation(&key).fetch_add(1, Ordering::AcqRel);
        let ttl = self.bound(Some(far.far_ttl));
        let entry = self.entry(value, cas, Some(ttl), generation);
        self.near.insert_with_ttl(key, entry, ttl);
    }

    /// Ends a `remove` after its far removal: a `get` of this process that
    /// read the old value before it sees the generation bump and keeps
    /// nothing near, one that already filled the near tier is undone by the
    /// removal, and a `get_with` load still running is superseded by it.
    pub(super) fn removed(&self, key: &K) {
        self.write_generation(key).fetch_add(1, Ordering::AcqRel);
        self.near.remove(key);
    }

    /// The far key of `key`, as `far_key` on the handles shows it: in the
    /// generation known (`None` before one is).
    pub(super) fn far_key(&self, key: &K) -> Option<String> {
        self.key_at(self.far.as_ref()?, self.generations.known()?, key)
    }

    /// Whether the far tier's circuit breaker is open now.
    pub(super) fn far_breaker_open(&self) -> bool {
        self.far.as_ref().is_some_and(|f| f.breaker.is_open())
    }

    /// A snapshot of the counters.
    pub(super) fn stats(&self) -> NearFarStats {
        let (trips, skips) = self.far.as_ref().map_or((0, 0), |f| {
            let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
            let mut trips = load(&f.breaker.trips);
            let mut skips = load(&f.breaker.skips);
            if let Some((_, b)) = &f.fallback {
                trips += load(&b.trips);
                skips += load(&b.skips);
            }
            (trips, skips)
        });
        self.counters.snapshot(self.near.stats(), trips, skips)
    }
}
