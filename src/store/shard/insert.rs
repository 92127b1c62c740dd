//! The insert: its common path, small enough to be inlined into the
//! cache's inserts, and its rare ones out of line (a refusal, no memory,
//! a full index, a slab to grow). Measured with callgrind, per rewrite of
//! a present key: the whole insert inlined spilled registers and cost
//! more than as a call; split this way, it costs less inlined.

use std::hash::{BuildHasher, Hash};

use crate::shim::{Ordering, fence};
use crate::store::RemovalCause;
use crate::store::epoch::{self, Deferred, Guard};
use crate::store::index::Index;
use crate::store::local;
use crate::store::lru::MAX_INDEX;
use crate::store::slab::has_drop_glue;
use crate::store::stats::bump;

use super::{Entry, FLUSH_EVERY, Inserted, SWEEP_PER_WRITE, Shard, State, Try, WriteCtx};

impl<K, V> Shard<K, V> {
    /// A free slot index, reusing reclaimed slots before growing the slab.
    #[inline(always)]
    fn alloc(&self, st: &mut State<K, V>) -> Option<u32> {
        if let Some(idx) = st.free.pop() {
            return Some(idx);
        }
        self.alloc_slow(st)
    }

    /// `alloc` with an empty free list: takes the mailbox, or grows the
    /// slab. Out of line: once per batch of retired slots (or per slot
    /// while the cache fills), and it keeps the insert it is part of small.
    #[inline(never)]
    fn alloc_slow(&self, st: &mut State<K, V>) -> Option<u32> {
        // Reclaiming under the lock only when it runs no user code (no Drop);
        // otherwise the next write's `lock_for_write` reclaims, lock-free.
        if !has_drop_glue::<K, V>() {
            let mut reclaimed = std::mem::take(&mut st.scratch);
            self.mailbox.take(&mut reclaimed);
            self.slab.drop_reclaimed(&reclaimed);
            self.recycle(st, &reclaimed);
            reclaimed.clear();
            st.scratch = reclaimed;
            if let Some(idx) = st.free.pop() {
                return Some(idx);
            }
            // About to grow. Now and then (not on every growth), let the
            // slots held back start their way to reuse and push the epoch
            // along. (With crossbeam-epoch each hand-over sealed a ~2 KiB
            // bag freed only once the epoch moved on: done per growth, a
            // thread pinned for long made every insert elsewhere cost 2 KiB
            // besides its slot. A hand-over is one queue entry now, but the
            // batches are still what the memory bound counts.) In between, the
            // slab grows (its pages are committed only as they are used);
            // `finish_write` still hands over every full batch.
            st.grown_since_flush += 1;
            if st.grown_since_flush >= FLUSH_EVERY {
                st.grown_since_flush = 0;
                // Not while removal notices are pending: the listener reads
                // those slots after the lock, relying on the pin of the
                // operation that removed them, which a panic may have
                // dropped already (leaving the notices behind).
                if !st.retired.is_empty() && st.notices.is_empty() {
                    self.retire_pending(st);
                }
                // At once, whatever the spacing of hand-overs (see
                // `epoch::ADVANCE_AT`): slots held back must not make the
                // slab grow without bound. (Within the first chunk there is
                // nothing to push: the cache is filling.)
                if self.slab.high_water() as usize >= self.first_chunk {
                    epoch::collect();
                }
            }
        }
        if self.slab.high_water() > MAX_INDEX {
            return None;
        }
        let idx = self.slab.grow()?;
        let next_chunk_end = (idx as usize + 1).next_power_of_two().max(self.first_chunk);
        st.lru.reserve_slot(idx, next_chunk_end);
        Some(idx)
    }

    /// Stores `key -> value`, replacing any current value, then restores the
    /// bound by evicting. `entry` was computed by the caller before locking.
    /// A refused key and value are put in `refused` (which the caller
    /// passes in empty), stored ones are not.
    ///
    /// Only the common path is here: the rare ones (a refusal, no memory,
    /// a full index, a slab to grow) are calls out of line, so that this
    /// body stays small enough to inline into its callers without spilling
    /// (inlined whole, with them, it cost ~25 instructions more per rewrite
    /// than as a call; split, it is cheaper inlined than called).
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn insert<S: BuildHasher>(
        &self,
        st: &mut State<K, V>,
        ctx: &WriteCtx<'_, S>,
        entry: Entry,
        key: K,
        value: V,
        refused: &mut Option<(K, V)>,
        attempt: Try,
        guard: &Guard,
    ) -> Inserted
    where
        K: Hash + Eq,
    {
        let Entry {
            hash,
            expires,
            weight,
        } = entry;
        // One compare admits the usual entry (see `admit_below`).
        if weight >= self.admit_below && !self.admits(st, weight) {
            let reclaim = self.refuse(st, ctx, hash, weight, &key, attempt, guard);
            *refused = Some((key, value));
            return if reclaim {
                Inserted::Reclaim
            } else {
                Inserted::Rejected
            };
        }
        let existing = self.find_locked(hash, &key, guard);
        if existing.is_none() && st.lru.len() >= self.first_room {
            // Hashes every key when it grows: user code, before any change.
            self.ensure_room(st, ctx, guard);
        }
        let Some(idx) = self.alloc(st) else {
            bump(&self.counters.rejected, 1);
            *refused = Some((key, value));
            return Inserted::Rejected;
        };
        let slot = self.slot(idx);
        // One test of `expires` for both (two cost ~2 instructions more).
        let code = if expires != 0 {
            st.expiring += 1;
            self.expiry_code(ctx, expires)
        } else {
            0
        };
        // SAFETY: `alloc` returned a slot no one else holds: fresh from the
        // slab, or reclaimed after its epoch passed.
        unsafe { slot.fill(key, value, code) };
        let table = self.table(guard);
        let (outcome, grew) = match existing {
            Some((old, pos, old_slot)) => {
                // The new slot takes the old one's place in the index and list.
                // SAFETY: `idx` came from `alloc`: handed out by the slab,
                // with room made for it (`reserve_slot`) when it was.
                unsafe { st.lru.set_pos(idx, pos) };
                slot.inherit_uses(old_slot);
                // SAFETY: `find_locked` found `pos` in the current table
                // under the lock, and `table` is that table: only
                // `ensure_room` swaps it, and only when the key is absent.
                unsafe { table.replace(pos, idx) };
                // SAFETY: as above.
                let grew = weight > unsafe { st.lru.replace(old, idx, weight) };
                self.retire_slot(st, old, old_slot, RemovalCause::Replaced);
                (Inserted::Replaced, grew)
            }
            None => {
                // `ensure_room` left a free lane: an index at its largest
                // holds 2^28 chunks of 12 lanes, more than the 2^30 slots
                // the LRU can address, so the slab runs out first.
                let pos = table
                    .insert(hash, idx)
                    .expect("the index has a free lane after ensure_room");
                // SAFETY: as above.
                unsafe { st.lru.set_pos(idx, pos) };
                let returning = st.ghost.recall(hash);
                // SAFETY: as above.
                unsafe { st.lru.insert(idx, weight, returning) };
                bump(&self.counters.inserts, 1);
                (Inserted::New(idx), true)
            }
        };
        // A replacement that weighs no more than the entry it replaced
        // leaves every segment and the shard within bounds, if they were:
        // nothing to move or evict (the common rewrite of a hot key stays
        // cheap). They may not be: a `Hash` that panicked while an earlier
        // insert evicted left its entry linked and the victim in place.
        if grew || self.over_bound(st) {
            self.enforce_bound(st, ctx, idx, guard);
        }
        self.sweep(st, ctx, SWEEP_PER_WRITE, guard);
        outcome
    }

    /// Whether an entry of `weight` may be stored: within the heaviest the
    /// shard admits, and with memory for it (see `retired`).
    #[inline]
    fn admits(&self, st: &State<K, V>, weight: u64) -> bool {
        weight <= self.max_weight && self.max_entries != 0 && self.memory_for(st, weight)
    }

    /// An entry `admits` refused: too heavy to ever fit, or no memory for
    /// it now. Makes room and returns true (`Inserted::Reclaim`) when it may
    /// wait for memory; else refuses it and returns false. Out of line: no
    /// common insert comes here.
    #[cold]
    #[inline(never)]
    #[allow(clippy::too_many_arguments)]
    fn refuse<S: BuildHasher>(
        &self,
        st: &mut State<K, V>,
        ctx: &WriteCtx<'_, S>,
        // Not an `Entry`: passed by reference, it kept the caller's on the
        // stack (stored and copied on every insert).
        hash: u64,
        weight: u64,
        key: &K,
        attempt: Try,
        guard: &Guard,
    ) -> bool
    where
        K: Hash + Eq,
    {
        let too_heavy = weight > self.max_weight || self.max_entries == 0;
        // (Something too heavy is refused at once, whatever the memory.)
        if !too_heavy && attempt == Try::First {
            self.make_room(st, ctx, weight, guard);
            return true;
        }
        // Too heavy to ever fit, or no memory for it. The caller asked to
        // overwrite the key, so the old value must not survive either.
        if let Some((idx, _, _)) = self.find_locked(hash, key, guard) {
            self.unlink(st, ctx, idx, RemovalCause::Replaced, guard);
        }
        self.reject_restoring_bound(st, ctx, guard);
        false
    }

    /// Doubles the index when one more entry would not fit. Out of line:
    /// only an insert of a new key into a shard past its first index's
    /// room comes here.
    #[cold]
    #[inline(never)]
    fn ensure_room<S: BuildHasher>(
        &self,
        st: &mut State<K, V>,
        ctx: &WriteCtx<'_, S>,
        guard: &Guard,
    ) where
        K: Hash,
    {
        let old = self.table(guard);
        if old.has_room(st.lru.len() + 1) || old.at_max() {
            return;
        }
        // Hash every key first: user code runs before anything changes.
        let placed: Vec<(u32, u64)> = st
            .lru
            .indices()
            // SAFETY: the LRU holds live slots only.
            .map(|idx| (idx, ctx.hasher.hash_one(unsafe { self.slot(idx).key() })))
            .collect();
        // Seqlock write side: odd while the table is being replaced. The
        // Release fence keeps what follows from being seen before the odd value.
        let seq = self.move_seq.load(Ordering::Relaxed);
        self.move_seq.store(seq.wrapping_add(1), Ordering::Relaxed);
        fence(Ordering::Release);
        // Double, but never past the shard's bound (an entry-bounded shard
        // that started below its bound grows to fit it exactly).
        let len = st.lru.len() + 1;
        let new = Index::for_entries(
            len.saturating_mul(2)
                .min(self.max_entries.saturating_add(1))
                .max(len),
        );
        for &(idx, hash) in &placed {
            // Sized for at least one more entry than it gets here.
            let pos = new
                .insert(hash, idx)
                .expect("a new index has room for every entry");
            // SAFETY: a slot the LRU holds, so one the slab handed out.
            unsafe { st.lru.set_pos(idx, pos) };
        }
        // Release: readers that load the new table see its entries.
        let old = self
            .table
            .swap(Box::into_raw(Box::new(new)), Ordering::Release);
        self.move_seq.store(seq.wrapping_add(2), Ordering::Release);
        // SAFETY: `old` came from `Box::into_raw` (`new`, or an earlier
        // swap), and is unreachable now: swapped out under the lock, so no
        // one else retires or frees it. Readers that loaded it are pinned,
        // and the epoch frees it only after they unpin; they hold only
        // shared references to it.
        epoch::retire(unsafe { Deferred::free(old) }, local::holds_record());
    }
}
