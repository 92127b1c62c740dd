//! How entries leave a shard. Each is unlinked from the index and the LRU,
//! then retired: held back in a batch, handed to the epoch, its slot reused
//! once no reader can still see it (memory the retired values hold:
//! `retired`). Eviction to the shard's bounds, the expiry sweep, `remove`
//! and `retain` all go through `Shard::unlink`; the ghost history keeps
//! fingerprints of keys evicted on probation.

use std::borrow::Borrow;
use std::hash::{BuildHasher, Hash};

use crate::store::epoch::Guard;

use super::{Index, Shard, State, WriteCtx};
use crate::shim::{Ordering, fence};
use crate::store::RemovalCause;
use crate::store::lru::{HOT, Lru};
use crate::store::slab::{LIVE, NIL, Slot, has_drop_glue, retire};
use crate::store::stats::bump;
use crate::store::ttl::is_expired;

/// Fingerprints of keys recently evicted for capacity, so that a key coming
/// back soon skips HOT and enters WARM (the ghost queue of S3-FIFO and
/// CLOCK-Pro, kept as a direct-mapped table: a newer eviction overwrites an
/// older one in the same place, which ages the history for free).
pub(super) struct Ghost {
    slots: Box<[u16]>,
    /// `slots.len() - 1` (the length is a power of two): kept, as the
    /// mask `place` takes, it is one operand of an `and`; computed from
    /// the length, it cost ~3 instructions a use, two uses per evicting
    /// insert (callgrind).
    mask: usize,
}

impl Ghost {
    /// Room for a quarter of the shard's entries (2 bytes each, so half a
    /// byte per entry): measured on Zipf streams, larger ghosts admitted too
    /// many returning keys to WARM and lowered the hit ratio.
    pub(super) fn new(entries: usize) -> Self {
        let len = (entries / 4).clamp(64, 1 << 22).next_power_of_two();
        Ghost {
            slots: vec![0; len].into_boxed_slice(),
            mask: len - 1,
        }
    }

    /// Where `hash` lives and its fingerprint (never 0, the empty mark),
    /// from the hash times an odd constant, so weak hashers spread too.
    #[inline]
    fn place(&self, hash: u64) -> (usize, u16) {
        let mixed = hash.wrapping_mul(0xA076_1D64_78BD_642F);
        let at = (mixed >> 32) as usize & self.mask;
        (at, ((mixed >> 16) as u16) | 1)
    }

    fn remember(&mut self, hash: u64) {
        let (at, fp) = self.place(hash);
        *self.slot(at) = fp;
    }

    /// Whether `hash` was evicted recently (and forgets it).
    pub(super) fn recall(&mut self, hash: u64) -> bool {
        let (at, fp) = self.place(hash);
        let slot = self.slot(at);
        let hit = *slot == fp;
        if hit {
            *slot = 0;
        }
        hit
    }

    /// The fingerprint slot at `at`, a place from [`Ghost::place`].
    /// Unchecked: with the test for an empty table (which `new` never
    /// makes) that kept the check away, the ghost cost an evicting insert
    /// ~4 instructions more (callgrind).
    #[inline(always)]
    fn slot(&mut self, at: usize) -> &mut u16 {
        debug_assert!(at < self.slots.len());
        // SAFETY: `place` masks with `mask`, which `new` set to `len - 1`,
        // and neither changes after, so `at` is below `len`.
        unsafe { self.slots.get_unchecked_mut(at) }
    }
}

impl<K, V> Shard<K, V> {
    /// Unlinks live slot `idx` from the index and the LRU and retires it.
    // Always inlined: once per eviction, and as a call (saved registers,
    // its arguments) it cost ~25 instructions of an evicting insert's ~830
    // (callgrind).
    #[inline(always)]
    pub(super) fn unlink<S: BuildHasher>(
        &self,
        st: &mut State<K, V>,
        ctx: &WriteCtx<'_, S>,
        idx: u32,
        cause: RemovalCause,
        guard: &Guard,
    ) where
        K: Hash,
    {
        self.unlink_slot(st, ctx, idx, self.slot(idx), cause, guard);
    }

    /// [`Shard::unlink`] of `idx` whose slot, `slot`, the caller has at
    /// hand (an eviction looked at its expiry): looked up again, it cost
    /// ~5 instructions per evicting insert (653.2 -> 648.5, callgrind).
    #[inline(always)]
    fn unlink_slot<S: BuildHasher>(
        &self,
        st: &mut State<K, V>,
        ctx: &WriteCtx<'_, S>,
        idx: u32,
        slot: &Slot<K, V>,
        cause: RemovalCause,
        guard: &Guard,
    ) where
        K: Hash,
    {
        // SAFETY: live slot under the lock.
        let key = unsafe { slot.key() };
        // SAFETY: for both, a live slot (the caller's), so one the slab
        // handed out and linked: `reserve_slot` made room for it.
        let (linked, pos) = unsafe { (st.lru.linked(idx), st.lru.pos(idx)) };
        // Remember keys evicted on probation (never proven by a second use):
        // if one comes back soon it skips HOT. User code (Hash) runs before
        // anything changes.
        let ghost = (cause == RemovalCause::Capacity && linked.segment() == HOT)
            .then(|| ctx.hasher.hash_one(key));
        let table = self.table(guard);
        if table.remove(pos, || ghost.unwrap_or_else(|| ctx.hasher.hash_one(key))) {
            self.refill(&mut st.lru, table, pos);
        }
        if let Some(hash) = ghost {
            st.ghost.remember(hash);
        }
        // SAFETY: `linked` was read from this shard's `Lru` above, and the
        // lists are as it read them: only positions changed.
        unsafe { st.lru.remove_linked(idx, linked) };
        self.retire_slot(st, idx, slot, cause);
    }

    /// Pulls entries displaced past the freed lane `pos` back towards home.
    /// Moves can make a concurrent lookup miss, so they are bracketed by the
    /// sequence counter, as a resize is (see `find`).
    fn refill(&self, lru: &mut Lru, table: &Index, pos: u32) {
        let seq = self.move_seq.load(Ordering::Relaxed);
        self.move_seq.store(seq.wrapping_add(1), Ordering::Relaxed);
        // Release fence: no move below is visible before the odd value.
        fence(Ordering::Release);
        // SAFETY: the index holds only slots the slab handed out.
        table.refill(pos, |idx, to| unsafe { lru.set_pos(idx, to) });
        // Release: a reader that sees the even value sees the moves done.
        self.move_seq.store(seq.wrapping_add(2), Ordering::Release);
    }

    /// Marks an already-unlinked slot, `idx` (its `slot`, which the caller
    /// has at hand: looking a slot up again costs ~7 instructions), dead
    /// and queues it for the epoch.
    // Always inlined: small, on every eviction, and outlined once it
    // gained the retired-weight count.
    #[inline(always)]
    pub(super) fn retire_slot(
        &self,
        st: &mut State<K, V>,
        idx: u32,
        slot: &Slot<K, V>,
        cause: RemovalCause,
    ) {
        // Relaxed load and store (no RMW needed): only the lock holder
        // writes `flags`, and readers do not look at LIVE.
        let flags = slot.flags.load(Ordering::Relaxed);
        slot.flags.store(flags & !LIVE, Ordering::Relaxed);
        if slot.has_expiry() {
            st.expiring -= 1;
        }
        st.retired.push((idx, slot.generation()));
        self.count_retired(st, idx);
        let counter = match cause {
            RemovalCause::Capacity => &self.counters.evicted_capacity,
            RemovalCause::Expired => &self.counters.evicted_expired,
            RemovalCause::Removed => &self.counters.evicted_removed,
            RemovalCause::Replaced => &self.counters.updates,
        };
        bump(counter, 1);
        if st.notify {
            st.notices.push((idx, cause));
        }
    }

    /// Hands every slot held back in `retired` to the epoch (retiring
    /// needs no pin: the operation's guard may be unprotected, see `write`).
    pub(super) fn retire_pending(&self, st: &mut State<K, V>) {
        let batch = std::mem::replace(&mut st.retired, Vec::with_capacity(st.retire_batch));
        retire(&self.mailbox, batch);
    }

    /// Counts a refused entry. The shard may be over its bound after a
    /// panic in an earlier eviction (see `lock`): every insert, refused or
    /// not, leaves it within.
    #[cold]
    pub(super) fn reject_restoring_bound<S: BuildHasher>(
        &self,
        st: &mut State<K, V>,
        ctx: &WriteCtx<'_, S>,
        guard: &Guard,
    ) where
        K: Hash,
    {
        if self.over_bound(st) {
            self.enforce_bound(st, ctx, NIL, guard);
        }
        bump(&self.counters.rejected, 1);
    }

    /// Rebalances segments, then evicts until the shard is within its
    /// bounds, never picking `spare` (the entry just written).
    // Always inlined: with a second (cold) caller the compiler outlined it,
    // and the call cost ~1% of an evicting workload's instructions.
    #[inline(always)]
    pub(super) fn enforce_bound<S: BuildHasher>(
        &self,
        st: &mut State<K, V>,
        ctx: &WriteCtx<'_, S>,
        spare: u32,
        guard: &Guard,
    ) where
        K: Hash,
    {
        st.lru.rebalance(&self.slab);
        while self.over_bound(st) {
            let victim = st.lru.victim(&self.slab, spare);
            if victim == NIL {
                break;
            }
            // `unlink` hashes the key (user code) before it changes anything.
            let slot = self.slot(victim);
            let expired = expired_at(self.expires(slot), ctx);
            let cause = if expired {
                RemovalCause::Expired
            } else {
                RemovalCause::Capacity
            };
            self.unlink_slot(st, ctx, victim, slot, cause, guard);
        }
        // The next write to this shard starts its eviction at these tails,
        // whose slots (use counts, keys) are usually cold by now: start
        // fetching them, so that write does not wait on memory. (Not
        // WARM's: it is looked at only when a promotion overfills WARM.)
        // (An empty segment's NIL tail prefetches slot 0: harmless, and
        // cheaper than the test.)
        for tail in st.lru.eviction_tails() {
            self.slab.prefetch(tail);
        }
        // Likewise the slot the next insert will fill.
        if let Some(&next) = st.free.last() {
            self.slab.prefetch(next);
        }
    }

    /// Looks at up to `budget` slots past the sweep cursor and reclaims the
    /// expired ones, so dead entries do not hold memory until evicted.
    pub(super) fn sweep<S: BuildHasher>(
        &self,
        st: &mut State<K, V>,
        ctx: &WriteCtx<'_, S>,
        budget: u32,
        guard: &Guard,
    ) where
        K: Hash,
    {
        if st.expiring == 0 {
            return;
        }
        let high = self.slab.high_water();
        for _ in 0..budget {
            let mut idx = st.sweep_cursor;
            if idx >= high {
                idx = 1;
            }
            st.sweep_cursor = idx + 1;
            if self.slot(idx).flags.load(Ordering::Relaxed) & LIVE != 0 {
                self.end_if_expired(st, ctx, idx, guard);
            }
        }
    }

    /// Ends live slot `idx` if it has expired: kept as a fail-safe copy (on
    /// the list evicted first) while `keep_expired` allows, else unlinked.
    fn end_if_expired<S: BuildHasher>(
        &self,
        st: &mut State<K, V>,
        ctx: &WriteCtx<'_, S>,
        idx: u32,
        guard: &Guard,
    ) where
        K: Hash,
    {
        let expires = self.expires(self.slot(idx));
        if !expired_at(expires, ctx) {
            return;
        }
        if ctx.time.kept(expires, ctx.now()) {
            st.lru.stale(idx);
        } else {
            self.unlink(st, ctx, idx, RemovalCause::Expired, guard);
        }
    }

    /// Reclaims `idx` if it is still the live slot for its key and expired
    /// (or, while `keep_expired` keeps it, moves it to the list evicted
    /// first).
    pub(crate) fn remove_if_expired<S: BuildHasher>(
        &self,
        st: &mut State<K, V>,
        ctx: &WriteCtx<'_, S>,
        idx: u32,
        generation: u32,
        guard: &Guard,
    ) where
        K: Hash,
    {
        let slot = self.slot(idx);
        if slot.flags.load(Ordering::Relaxed) & LIVE != 0 && slot.generation() == generation {
            self.end_if_expired(st, ctx, idx, guard);
        }
    }

    /// Removes `key`, returning the retired slot (readable until `guard` drops).
    pub(crate) fn remove<'g, Q, S: BuildHasher>(
        &'g self,
        st: &mut State<K, V>,
        ctx: &WriteCtx<'_, S>,
        hash: u64,
        key: &Q,
        guard: &'g Guard,
    ) -> Option<&'g Slot<K, V>>
    where
        K: Borrow<Q> + Hash,
        Q: Eq + ?Sized,
    {
        let (idx, _, slot) = self.find_locked(hash, key, guard)?;
        let expired = expired_at(self.expires(slot), ctx);
        self.unlink_slot(
            st,
            ctx,
            idx,
            slot,
            if expired {
                RemovalCause::Expired
            } else {
                RemovalCause::Removed
            },
            guard,
        );
        // A removed value is dropped once no reader can see it, not after a
        // batch of later removals: hand what is held back to the epoch now.
        // Only when dropping it runs code (`Drop`): otherwise an early drop
        // changes nothing anyone can see, and the hand-over costs a deferred
        // call and a flush of the epoch's queue on every remove.
        if has_drop_glue::<K, V>() {
            self.retire_pending(st);
        }
        (!expired).then_some(slot)
    }

    /// Removes every entry for which `keep` says false (and every expired one).
    pub(crate) fn retain<S: BuildHasher>(
        &self,
        st: &mut State<K, V>,
        ctx: &WriteCtx<'_, S>,
        keep: &mut dyn FnMut(&K, &V) -> bool,
        guard: &Guard,
    ) where
        K: Hash,
    {
        let all: Vec<u32> = st.lru.indices().collect();
        for idx in all {
            let slot = self.slot(idx);
            // SAFETY: live slots (collected under the lock, which we hold).
            let (k, v) = unsafe { (slot.key(), slot.value()) };
            let exp = self.expires(slot);
            let cause = if expired_at(exp, ctx) {
                RemovalCause::Expired
            } else if !keep(k, v) {
                RemovalCause::Removed
            } else {
                continue;
            };
            self.unlink(st, ctx, idx, cause, guard);
        }
        // `clear` and `retain` hand everything they removed to the epoch at
        // once rather than keeping up to a batch of values alive.
        if !st.retired.is_empty() {
            self.retire_pending(st);
        }
    }
}

/// Whether `expires` has passed, reading the clock only for entries that expire.
fn expired_at<S>(expires: u64, ctx: &WriteCtx<'_, S>) -> bool {
    expires != 0 && is_expired(expires, ctx.now())
}
