//! The cache's write path: a write locks one shard, runs under the lock,
//! and is settled after it (unlinked slots retired, gauges updated, the
//! lock released, then the eviction listener told). Inserts, with their
//! one retry after memory is reclaimed, removals, `clear` and `retain` go
//! through it.

use std::borrow::Borrow;
use std::hash::{BuildHasher, Hash};
use std::time::Duration;

use super::epoch::{self, Guard};

use super::metrics::WRITE_TICK;
use super::shard::{Entry, Inserted, Shard, State, Try, WriteCtx};
use super::ttl::TimeSource;
use super::{Cache, Origin, local};
use crate::observe;

impl<K, V, S> Cache<K, V, S>
where
    K: Hash + Eq,
    V: Clone,
    S: BuildHasher,
{
    /// Removes every entry.
    ///
    /// Loads in progress (the `get_or_insert_with` family) are superseded:
    /// their values go to their callers, and are not stored after the
    /// clear.
    pub fn clear(&self) {
        for shard in self.inner.shards.iter() {
            let guard = local::pin();
            self.write(shard, &guard, |st, ctx| {
                for load in &mut st.loads {
                    load.superseded = true;
                }
                shard.retain(st, ctx, &mut |_, _| false, &guard)
            });
        }
    }

    /// Keeps only the entries for which `keep` returns true (expired entries
    /// are removed too). `keep` runs with the entry's shard locked, so it
    /// must not call back into this cache.
    ///
    /// ```
    /// let cache = nearfar::Cache::new(100);
    /// for i in 0..10 { cache.insert(i, i * i); }
    /// cache.retain(|k, _| k % 2 == 0);
    /// assert_eq!(cache.len(), 5);
    /// ```
    pub fn retain(&self, mut keep: impl FnMut(&K, &V) -> bool) {
        for shard in self.inner.shards.iter() {
            let guard = local::pin();
            self.write(shard, &guard, |st, ctx| {
                shard.retain(st, ctx, &mut keep, &guard)
            });
        }
    }

    /// Reclaims an expired entry met by a reader, if its shard is free.
    #[cold]
    pub(super) fn reclaim_expired(
        &self,
        shard: &Shard<K, V>,
        idx: u32,
        generation: u32,
        guard: &Guard,
    ) {
        if let Some(mut st) = shard.try_lock() {
            let ctx = WriteCtx::new(&self.inner.hasher, &self.inner.time);
            shard.remove_if_expired(&mut st, &ctx, idx, generation, guard);
            self.end_write(shard, st, guard);
        }
    }

    /// Runs a write operation on `shard` and settles it: retires what it
    /// unlinked, updates the gauges, unlocks, then tells the listener.
    ///
    /// `guard` is the one the operation loads with under the lock. It must
    /// be really pinned (not `epoch::unprotected`) when the cache has a
    /// listener, which reads removed slots after the unlock, and when the
    /// caller reads them afterwards (`remove`).
    // Always inlined: with the insert's retry after a reclaim as a second
    // call site the compiler outlined it, which cost ~60 instructions per
    // insert (callgrind, `interleaved one nearfar`).
    #[inline(always)]
    pub(super) fn write<R>(
        &self,
        shard: &Shard<K, V>,
        guard: &Guard,
        op: impl FnOnce(&mut State<K, V>, &WriteCtx<'_, S>) -> R,
    ) -> R {
        let mut st = shard.lock_for_write();
        let ctx = WriteCtx::new(&self.inner.hasher, &self.inner.time);
        let result = op(&mut st, &ctx);
        self.end_write(shard, st, guard);
        result
    }

    // Always inlined: once per write, and as a call (prologue, epilogue,
    // its arguments) it cost ~25 instructions per insert (callgrind).
    #[inline(always)]
    fn end_write(
        &self,
        shard: &Shard<K, V>,
        mut st: crate::shim::MutexGuard<'_, State<K, V>>,
        // Unused: witnesses the pin the listener's reads below rely on.
        _guard: &Guard,
    ) {
        shard.finish_write(&mut st);
        let notices = if st.notices.is_empty() {
            Vec::new()
        } else {
            std::mem::take(&mut st.notices)
        };
        let publish = observe::every(WRITE_TICK, || shard.counters.wrote());
        drop(st);
        if publish {
            self.metrics_due();
        }
        if let Some(listener) = &self.inner.listener {
            for (idx, cause) in notices {
                // SAFETY: retired during this operation while `_guard` was
                // pinned (a real pin whenever there is a listener, see
                // `write`), so not reclaimed before it drops; it still
                // holds its key and value.
                let slot = unsafe { shard.slab.slot(idx) };
                // SAFETY: as above.
                let (k, v) = unsafe { (slot.key(), slot.value()) };
                listener(k, v, cause);
            }
        }
    }

    /// Stores `key -> value`; hands them back if refused.
    // Always inlined, into each public insert: with `origin` and `ttl`
    // known there, an insert costs ~13 instructions less than through a
    // call (callgrind, a rewrite: 339.7 -> 326.8).
    #[inline(always)]
    pub(super) fn insert_inner(
        &self,
        key: K,
        value: V,
        ttl: Option<Duration>,
        origin: Origin,
    ) -> Result<(), (K, V)> {
        let hash = self.inner.hasher.hash_one(&key);
        let weight = self.inner.weigher.as_ref().map_or(1, |w| w(&key, &value));
        let expires = ttl.map_or(0, |ttl| {
            TimeSource::expiry(self.inner.time.now(), Some(ttl))
        });
        let shard = self.shard(hash);
        let entry = Entry {
            hash,
            expires,
            weight,
        };
        let mut refused = None;
        let inserted = self.insert_once(shard, entry, key, value, &mut refused, origin, Try::First);
        // Stored: nothing came back.
        let Some((key, value)) = refused else {
            return Ok(());
        };
        // A copy of a value held elsewhere is not worth waiting for the
        // epoch: a read filling the cache never blocks (the next read
        // fetches it again).
        if inserted == Inserted::Reclaim && origin == Origin::Write {
            return self.insert_after_reclaim(shard, hash, expires, weight, key, value);
        }
        Err((key, value))
    }

    /// An insert that found no memory for its entry: made room, now waits
    /// for it to come back, unpinned (see `shard::retired`), and tries once
    /// more. Out of line: the common insert stays as short as it was.
    #[cold]
    #[inline(never)]
    #[allow(clippy::too_many_arguments)]
    fn insert_after_reclaim(
        &self,
        shard: &Shard<K, V>,
        // Not an `Entry`: passed by reference, it kept the caller's on the
        // stack (stored on every insert).
        hash: u64,
        expires: u64,
        weight: u64,
        key: K,
        value: V,
    ) -> Result<(), (K, V)> {
        shard.reclaim_for(weight);
        let entry = Entry {
            hash,
            expires,
            weight,
        };
        let mut refused = None;
        // (Only a write waits for memory: see `insert_inner`.)
        self.insert_once(
            shard,
            entry,
            key,
            value,
            &mut refused,
            Origin::Write,
            Try::Last,
        );
        refused.map_or(Ok(()), Err)
    }

    /// One try of [`insert_inner`](Self::insert_inner); the thread is pinned
    /// only while it runs.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn insert_once(
        &self,
        shard: &Shard<K, V>,
        entry: Entry,
        key: K,
        value: V,
        refused: &mut Option<(K, V)>,
        origin: Origin,
        attempt: Try,
    ) -> Inserted {
        // An insert reads only what its shard's lock protects: the current
        // table (swapped only under the lock) and linked slots (unlinked only
        // under it). What it hands to the epoch, it hands with a guard pinned
        // for that (`Shard::retire_pending`, the growth paths). So it pins
        // only when a listener will read removed slots after the unlock:
        // they must stay readable until then.
        let pinned;
        let guard: &Guard = if self.inner.listener.is_some() {
            pinned = local::pin();
            &pinned
        } else {
            // SAFETY: `Shard::insert` uses it only under the shard lock, to
            // load the current table and reach linked slots, none of which
            // can be swapped out, unlinked or reclaimed while the lock is
            // held, and used for nothing after the unlock (retiring takes
            // no guard, so nothing is deferred through it).
            unsafe { epoch::unprotected() }
        };
        // `write`, spelled out: through its closure the captures were built
        // on the stack on every insert (~20 instructions, callgrind).
        let mut st = shard.lock_for_write();
        if origin == Origin::Write {
            st.supersede_loads(entry.hash, &key);
        }
        let ctx = WriteCtx::new(&self.inner.hasher, &self.inner.time);
        let inserted = shard.insert(&mut st, &ctx, entry, key, value, refused, attempt, guard);
        self.end_write(shard, st, guard);
        inserted
    }

    /// Removes `key` and applies `then` to the value it held, if any.
    pub(super) fn remove_inner<Q, R>(
        &self,
        key: &Q,
        origin: Origin,
        then: impl FnOnce(&V) -> R,
    ) -> Option<R>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.inner.hasher.hash_one(key);
        let shard = self.shard(hash);
        let guard = local::pin();
        let slot = self.write(shard, &guard, |st, ctx| {
            if origin == Origin::Write {
                st.supersede_loads(hash, key);
            }
            shard.remove(st, ctx, hash, key, &guard)
        })?;
        // SAFETY: retired while `guard` is pinned, so still readable.
        Some(then(unsafe { slot.value() }))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    #[test]
    fn a_fill_does_not_supersede_a_load_but_an_insert_does() {
        let cache = super::Cache::new(100);
        let ttl = std::time::Duration::from_secs(60);
        // A copy read from elsewhere landing while the load runs: the load's
        // value (computed, maybe newer) is still stored.
        let got = cache.get_or_insert_with(1, || {
            cache.fill_with_ttl(1, "filled", ttl);
            "loaded"
        });
        assert_eq!(got, "loaded");
        assert_eq!(cache.get(&1), Some("loaded"));
        // A write does supersede it.
        let got = cache.get_or_insert_with(2, || {
            cache.insert_with_ttl(2, "written", ttl);
            "loaded"
        });
        assert_eq!(got, "loaded");
        assert_eq!(cache.get(&2), Some("written"));
    }

    #[test]
    fn a_dropped_copy_does_not_supersede_a_load_but_a_remove_does() {
        let cache = super::Cache::new(100);
        cache.insert(1, "old");
        // A stale copy dropped while the load runs: the load (fetching a
        // fresher value) still stores its value.
        let got = cache.get_or_insert_with(2, || {
            cache.drop_copy(&2);
            cache.drop_copy(&1);
            "loaded"
        });
        assert_eq!(got, "loaded");
        assert_eq!((cache.get(&1), cache.get(&2)), (None, Some("loaded")));
        // A removal is a write: the load's value goes to its caller only.
        let got = cache.get_or_insert_with(3, || {
            cache.remove(&3);
            "loaded"
        });
        assert_eq!(got, "loaded");
        assert_eq!(cache.get(&3), None);
    }

    #[test]
    fn a_removed_value_is_dropped_after_the_epoch_and_a_later_write() {
        let marker = Arc::new(());
        let cache = super::Cache::builder().max_entries(1000).shards(1).build();
        for k in 0..10u32 {
            cache.insert(k, Arc::clone(&marker));
        }
        assert_eq!(Arc::strong_count(&marker), 11);
        let removed = cache.remove(&3).expect("present");
        drop(removed);
        // Writes that retire nothing (removing an absent key still takes the
        // shard's mailbox, where the epoch delivers reclaimed slots) and
        // epoch pushes, until the value is dropped or 10 s pass: other
        // tests' threads, descheduled while pinned on a loaded machine, can
        // hold the epoch back for a while. Without the hand-over in `remove`
        // the slot would wait for 63 more retirements, which never come.
        let start = std::time::Instant::now();
        let mut writes = 0;
        while Arc::strong_count(&marker) > 10
            && start.elapsed() < std::time::Duration::from_secs(10)
        {
            super::epoch::collect();
            assert_eq!(cache.remove(&999), None);
            writes += 1;
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert_eq!(
            Arc::strong_count(&marker),
            10,
            "not dropped after {writes} writes"
        );
    }
}
