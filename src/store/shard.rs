//! One shard: a hash index over a slot arena, the segmented LRU, and the write
//! path. Readers walk the index with no lock under an epoch guard; writers hold
//! the shard's mutex.
//!
//! # The index
//! An F14-style table of slot indices (see `index`). Writers publish a slot
//! with `Release` stores into the index; readers load with `Acquire`, so
//! everything written into the slot before it was published is visible to
//! them.
//!
//! Unlinked slots are retired through the epoch (see `slab::Mailbox`), so a
//! reader that reached a slot can finish reading it even if it is removed
//! meanwhile: such a read is ordered before the removal.
//!
//! Two writer actions can make a concurrent lookup miss a key that is
//! present: growing the index (a new table is built and swapped in) and the
//! index's refills (an entry moves to a lane nearer its home). Both are
//! bracketed by a sequence counter (a seqlock that only the miss path checks):
//! a miss that overlapped one walks again, and after two more overlaps
//! takes the lock.

use std::borrow::Borrow;
use std::hash::{BuildHasher, Hash};
use std::sync::{Arc, PoisonError};

use super::RemovalCause;
use super::epoch::Guard;
use super::expiry::{self, Base};
use super::index::Index;
use super::loader::Load;
use super::local;
use super::lru::{Lru, UseCounts};
use super::slab::{LIVE, Mailbox, NIL, Slab, Slot, has_drop_glue};
use super::stats::WriteCounters;
use super::ttl::{TimeSource, is_expired};
use crate::shim::{AtomicPtr, AtomicU32, Mutex, MutexGuard, Ordering, fence};
pub(crate) use export::Restored;
use retired::MemoryBound;
use unlink::Ghost;

/// A snapshot's side: entries copied out hottest first, restored only
/// where they fit (a child module: it reads the shard's private state).
mod export;
/// The insert: the common path inlined, the rare ones out of line (a
/// child module, as above).
mod insert;
/// The memory bound over live and retired values (a child module: it
/// reads the shard's private state).
mod retired;
/// How entries leave the shard: unlinking and retiring, eviction,
/// expiry, removal, and the ghost history (a child module, as above).
mod unlink;

/// The most entries a shard's first index is sized for (about 7 MiB,
/// allocated with `calloc`, so pages are committed only as entries land in
/// them); larger bounds start there and grow as entries arrive. Sizing the index
/// for the bound up front spares a growing cache the copies and the freed
/// tables (which the allocator tends to keep resident).
const INITIAL_ENTRIES: usize = 1 << 20;
/// Slab growths between two hand-overs to (or pushes of) the epoch.
const FLUSH_EVERY: u32 = 64;
/// The most unlinked slots a shard holds back before handing them to the
/// epoch in one deferred call.
const MAX_RETIRE_BATCH: usize = 64;
/// How many slots the expiry sweep looks at per write.
const SWEEP_PER_WRITE: u32 = 8;

/// The writer-side state, behind the shard's mutex.
pub(crate) struct State<K, V> {
    pub(crate) lru: Lru,
    free: Vec<u32>,
    /// Slots unlinked and not yet handed to the epoch: they go in batches of
    /// `retire_batch`, so the epoch's bookkeeping (a deferred call, a
    /// mailbox delivery) is paid once per batch, not once per eviction.
    /// Holding a slot back is always safe: it only delays its reuse.
    retired: Vec<(u32, u32)>,
    /// The weight of every slot unlinked whose value is not dropped yet
    /// (held back in `retired`, waiting for the epoch, or in the mailbox):
    /// memory the values still hold (see `retired`).
    retired_weight: u128,
    /// How many retired slots make a batch (smaller for small shards, so
    /// slots held back never make up much of the slab).
    retire_batch: usize,
    /// Reused buffer for slots coming back from the mailbox.
    scratch: Vec<(u32, u32)>,
    /// Slab growths past its first chunk since the epoch was last pushed.
    grown_since_flush: u32,
    /// Removals the eviction listener must hear about, when there is one.
    pub(crate) notices: Vec<(u32, RemovalCause)>,
    /// Whether there is a listener to record `notices` for.
    notify: bool,
    ghost: Ghost,
    /// Loads in progress for keys of this shard.
    pub(crate) loads: Vec<Load<K, V>>,
    /// Number of live entries that have an expiry (0: skip the sweep).
    expiring: usize,
    sweep_cursor: u32,
}

impl<K, V> State<K, V> {
    /// Marks the loads in progress for `key` as superseded by a write (an
    /// insert or removal of the key): their values must not be stored over
    /// it. Costs one `is_empty` test when nothing is loading.
    #[inline]
    pub(crate) fn supersede_loads<Q>(&mut self, hash: u64, key: &Q)
    where
        K: std::borrow::Borrow<Q>,
        Q: Eq + ?Sized,
    {
        if self.loads.is_empty() {
            return;
        }
        for load in &mut self.loads {
            if load.hash == hash && load.key.borrow() == key {
                load.superseded = true;
            }
        }
    }
}

/// What one write operation needs from the cache.
pub(crate) struct WriteCtx<'a, S> {
    pub(crate) hasher: &'a S,
    pub(crate) time: &'a TimeSource,
    /// The time, read on first need (0 = not read yet).
    now: std::cell::Cell<u64>,
}

impl<'a, S> WriteCtx<'a, S> {
    pub(crate) fn new(hasher: &'a S, time: &'a TimeSource) -> Self {
        WriteCtx {
            hasher,
            time,
            now: std::cell::Cell::new(0),
        }
    }

    /// The current time, read once per operation and only if needed.
    pub(crate) fn now(&self) -> u64 {
        if self.now.get() == 0 {
            self.now.set(self.time.now());
        }
        self.now.get()
    }
}

/// A lock-free miss that a move (refill or resize) overlapped.
struct Overlapped;

/// A lookup's result: the slot index and the slot holding the key.
type Found<'g, K, V> = Option<(u32, &'g Slot<K, V>)>;

/// How an insert went. A refused entry's key and value go back through
/// the insert's `refused` (written only then): handed back inside this,
/// they made every outcome 80 bytes, copied through memory on each insert.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Inserted {
    /// A new key, stored in this slot.
    New(u32),
    Replaced,
    /// Heavier than the shard's whole budget, or no memory left for it
    /// while retired values wait for a stalled reader: handed back,
    /// nothing stored.
    Rejected,
    /// Not stored yet: the shard's values, live and retired, leave no room
    /// for it. Room is being made: `Shard::reclaim_for`, then insert again
    /// (as the last try).
    Reclaim,
}

/// An entry to store, as its caller computed it before locking (user
/// code, the clock): one argument for the three.
#[derive(Clone, Copy)]
pub(crate) struct Entry {
    pub(crate) hash: u64,
    /// Its expiry stamp (0: never).
    pub(crate) expires: u64,
    pub(crate) weight: u64,
}

/// Whether an insert may still wait for memory to come back.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Try {
    First,
    Last,
}

/// `repr(C)`, aligned to a cache-line pair: the fields every lookup reads
/// (table, move sequence, the slab's first chunk pointers) share the first
/// line, and nothing writers touch on each insert sits in it. (That line
/// is also what keeps a lookup's loads here apart, modulo 4 KiB, from its
/// stores to its epoch record and stats stripe: see `epoch::Record`.)
#[repr(C, align(128))]
pub(crate) struct Shard<K, V> {
    /// The current index: never null; replaced only under the lock, the
    /// old one retired through the epoch.
    table: AtomicPtr<Index>,
    move_seq: AtomicU32,
    /// What its slots' expiry codes count from (see `expiry`): read by a
    /// hit on an entry with a TTL, written only by a rebase.
    pub(crate) base: Base,
    pub(crate) slab: Slab<K, V>,
    mailbox: Arc<Mailbox>,
    state: Mutex<State<K, V>>,
    pub(crate) counters: WriteCounters,
    max_entries: usize,
    max_weight: u64,
    /// The most entries the shard holds: `max_entries`, or in a shard that
    /// is not weighted (every entry weighs 1), the lesser of it and
    /// `max_weight`, so that its bound check is one compare.
    len_bound: usize,
    /// Whether entries have weights of their own (else each weighs 1).
    weighted: bool,
    /// Slab chunk 0's capacity: before growing past it, nudge the epoch.
    first_chunk: usize,
    /// Entries the first index holds without growing. Tables are only
    /// ever replaced by larger ones, so below this an insert needs no look
    /// at the table's room (`ensure_room`).
    first_room: usize,
    /// What the live and retired values may weigh together.
    memory: MemoryBound,
    /// Entries lighter than this are admitted with no further check: they
    /// weigh at most `max_weight`, the shard takes entries, and it has no
    /// memory bound. 0 where every insert is checked (`Shard::admits`).
    admit_below: u64,
}

// The layout the doc above argues (for any K and V: the slab's first
// fields are a length and pointers).
#[cfg(not(shuttle))]
const _: () = assert!(
    std::mem::offset_of!(Shard<u64, u64>, move_seq) < 64
        && std::mem::offset_of!(Shard<u64, u64>, slab) + Slab::<u64, u64>::LOOKUP_END <= 64
);

impl<K, V> UseCounts for Slab<K, V> {
    #[inline]
    fn decay(&self, idx: u32) -> u32 {
        // SAFETY: the LRU only holds indices of live slots, handed out by this
        // slab; the caller holds the shard lock (the LRU is behind it).
        unsafe { self.slot(idx) }.decay()
    }
}

impl<K, V> Shard<K, V> {
    /// A shard holding at most `max_entries` entries and `max_weight` weight.
    pub(crate) fn new(max_entries: usize, max_weight: u64, weighted: bool, notify: bool) -> Self {
        // Size the index for the entry bound when there is one; weighted or
        // unbounded shards start small and grow.
        let expected = if max_entries < usize::MAX {
            max_entries
        } else {
            64
        };
        // A large bound does not allocate its whole index up front: it starts
        // at INITIAL_ENTRIES at most and doubles as entries arrive. One more
        // than the bound: an insert links its entry before it evicts.
        let first_room = expected.min(INITIAL_ENTRIES) + 1;
        let index = Index::for_entries(first_room);
        let budget = if weighted {
            max_weight
        } else {
            max_weight.min(max_entries as u64)
        };
        let slab = Slab::new(expected.saturating_add(expected / 16 + 16));
        let first_chunk = slab.first_chunk_len();
        let memory = MemoryBound::new(max_weight, has_drop_glue::<K, V>());
        Shard {
            table: AtomicPtr::new(Box::into_raw(Box::new(index))),
            move_seq: AtomicU32::new(0),
            base: Base::new(),
            first_chunk,
            first_room,
            slab,
            mailbox: Arc::new(Mailbox::default()),
            state: Mutex::new(State {
                lru: Lru::new(budget, max_entries, weighted),
                free: Vec::new(),
                retired: Vec::new(),
                retired_weight: 0,
                retire_batch: (first_chunk / 16).clamp(1, MAX_RETIRE_BATCH),
                scratch: Vec::new(),
                grown_since_flush: 0,
                notices: Vec::new(),
                loads: Vec::new(),
                notify,
                ghost: Ghost::new(expected),
                expiring: 0,
                sweep_cursor: 1,
            }),
            counters: WriteCounters::new(weighted),
            max_entries,
            max_weight,
            len_bound: if weighted {
                max_entries
            } else {
                max_entries.min(usize::try_from(max_weight).unwrap_or(usize::MAX))
            },
            weighted,
            memory,
            admit_below: if max_entries == 0 || memory.bounded() {
                0
            } else {
                max_weight.saturating_add(1)
            },
        }
    }

    /// Whether the shard holds more entries or weight than its bounds allow.
    #[inline]
    fn over_bound(&self, st: &State<K, V>) -> bool {
        // Unweighted, the weight is the entry count: `len_bound` covers both.
        st.lru.len() > self.len_bound
            || (self.weighted && st.lru.weight() > u128::from(self.max_weight))
    }

    /// The heaviest entry this shard admits.
    pub(crate) fn max_weight(&self) -> u64 {
        self.max_weight
    }

    /// The slot at `idx` for the holder of the lock or a pinned reader.
    #[inline]
    fn slot(&self, idx: u32) -> &Slot<K, V> {
        // SAFETY: every index this module passes comes from the index, the LRU
        // or the free list, all of which only hold indices this slab handed
        // out, or is one the slab handed out below its high-water mark (a
        // rebase's or a sweep's walk, under the lock); they are read after
        // the Acquire load (or the lock) that made them visible.
        unsafe { self.slab.slot(idx) }
    }

    /// The expiry (clock ns, 0 = never) of `slot`, one of this shard's.
    #[inline(always)]
    pub(crate) fn expires(&self, slot: &Slot<K, V>) -> u64 {
        slot.expires(&self.base)
    }

    /// The code to store for an entry expiring at `expires` (clock ns, not
    /// 0: a code of 0 is "never"), under the lock: rebases first when the
    /// base is too far behind (see `expiry`).
    #[inline]
    pub(crate) fn expiry_code<S>(&self, ctx: &WriteCtx<'_, S>, expires: u64) -> u32 {
        debug_assert_ne!(expires, 0, "0 (never) needs no code");
        let base = self.base.get();
        // `expires` is at least the caller's `now`: while it is within
        // REBASE_AFTER of the base, so is `now`, and the clock is not read.
        if expires.saturating_sub(base) >= expiry::REBASE_AFTER {
            // (The time source, not `ctx`: passing `ctx` out of line made
            // every insert build it in memory, ~6 instructions.)
            return self.rebase_and_encode(ctx.time, expires);
        }
        expiry::encode(expires, base)
    }

    /// `expiry_code` far from the base: rebases if `now` is too far past
    /// it, then encodes. Out of line: TTLs of ~12 days and more only.
    #[cold]
    #[inline(never)]
    fn rebase_and_encode(&self, time: &TimeSource, expires: u64) -> u32 {
        let base = self.base.get();
        if let Some(delta) = expiry::rebase_by(base, time.now()) {
            // Every slot handed out: the live ones, and the retired ones a
            // reader may still be reading (free slots are refilled before
            // being read: shifting them is harmless). Once per ~6 days.
            for idx in 1..self.slab.high_water() {
                self.slot(idx).stamp().shift(delta);
            }
            // After the codes: see `expiry`'s "Ordering".
            self.base.set(base + delta);
        }
        expiry::encode(expires, self.base.get())
    }

    /// The current index, readable while `guard` is pinned, or while the
    /// shard lock is held (writers may pass `epoch::unprotected()`: see
    /// `Cache::insert_inner`).
    #[inline]
    fn table<'g>(&self, _guard: &'g Guard) -> &'g Index {
        // Acquire: pairs with the Release swap that installed the table, so
        // its chunks are visible. (Writers, under the lock, need no more.)
        let table = self.table.load(Ordering::Acquire);
        // SAFETY: the pointer is never null (set in `new`, replaced only by a
        // non-null table under the shard lock) and comes from `Box::into_raw`.
        // A replaced table is freed only through the epoch, once no guard
        // pinned when it was swapped out is left (`epoch`'s invariant 2): a
        // pinned caller's table outlives its guard, whose borrow bounds
        // `'g`; a caller holding the lock (maybe with `unprotected`) loaded
        // the current table, which no one can swap out (let alone free)
        // until the lock is released. Only shared references are made.
        unsafe { &*table }
    }

    /// Lock-free lookup. The returned slot holds `key`; it may have been
    /// unlinked concurrently (the lookup is then ordered before the removal)
    /// and may be expired: the caller checks. `guard` must be a real pin
    /// (not `epoch::unprotected`), taken by this thread: the retry, which
    /// pins again, relies on it to keep what it finds.
    #[inline]
    pub(crate) fn find<'g, Q>(&'g self, hash: u64, key: &Q, guard: &'g Guard) -> Found<'g, K, V>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        // One inlined walk on the fast path; the retries are out of line.
        match self.try_find(hash, key, guard) {
            Ok(found) => found,
            // The retry pins on its own (a nested pin of the same record,
            // so it holds the epoch no later than `guard` does): taking
            // `guard`'s address for it made every hit spill the guard to
            // the stack. While `guard` lives, so does the record's pin, and
            // the slot found stays unreclaimed (see `Slot::key`).
            Err(Overlapped) => self.find_retry(hash, key).map(|idx| (idx, self.slot(idx))),
        }
    }

    /// One lock-free walk. A hit is confirmed by the key compare, whatever
    /// moves overlap it; a miss counts only if no move overlapped the walk.
    #[inline(always)]
    fn try_find<'g, Q>(
        &'g self,
        hash: u64,
        key: &Q,
        guard: &'g Guard,
    ) -> Result<Found<'g, K, V>, Overlapped>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        // Acquire: pairs with the Release that ends a move, so an even value
        // here means the table pointer loaded below is at least that new.
        let seq = self.move_seq.load(Ordering::Acquire);
        let found = self.walk(hash, key, guard);
        if found.is_some() {
            return Ok(found);
        }
        // Acquire fence: if the walk saw anything a resize or refill
        // changed, its odd store (before its Release fence) is visible now.
        fence(Ordering::Acquire);
        if seq & 1 == 0 && self.move_seq.load(Ordering::Relaxed) == seq {
            Ok(None)
        } else {
            Err(Overlapped)
        }
    }

    /// A move overlapped a lock-free miss: walk again a few times while no
    /// move is running, then with the lock held (moves are short, and
    /// refills happen on many evictions, so readers rarely need the lock).
    #[cold]
    #[inline(never)]
    fn find_retry<Q>(&self, hash: u64, key: &Q) -> Option<u32>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        let guard = local::pin();
        for _ in 0..2 {
            std::hint::spin_loop();
            if let Ok(found) = self.try_find(hash, key, &guard) {
                return found.map(|(idx, _)| idx);
            }
        }
        // With the lock held no move can overlap.
        let _state = self.lock();
        self.walk(hash, key, &guard).map(|(idx, _)| idx)
    }

    #[inline(always)]
    pub(crate) fn walk<'g, Q>(&'g self, hash: u64, key: &Q, guard: &'g Guard) -> Found<'g, K, V>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        // The index's Acquire loads make the slot's key, value and expiry
        // visible.
        self.table(guard).find(hash, |_, idx| {
            let slot = self.slot(idx);
            // SAFETY: an indexed slot holds a value; we are pinned, so even if
            // it is unlinked now it is not reclaimed before `guard` is dropped.
            (unsafe { slot.key() }.borrow() == key).then_some((idx, slot))
        })
    }

    /// Locks the writer side. A panic in user code (Hash, Eq, a weigher)
    /// while it was held cannot leave it inconsistent: user code runs before
    /// each mutation it guards, so poisoning is ignored. (One panic leaves
    /// the shard consistent but over its bound: a `Hash` of an eviction
    /// victim, run after the new entry is linked. The next insert to the
    /// shard evicts back under it.)
    pub(crate) fn lock(&self) -> MutexGuard<'_, State<K, V>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Tries to lock without waiting.
    pub(crate) fn try_lock(&self) -> Option<MutexGuard<'_, State<K, V>>> {
        match self.state.try_lock() {
            Ok(g) => Some(g),
            Err(std::sync::TryLockError::Poisoned(p)) => Some(p.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        }
    }

    /// Frees the slots the epoch has released since the last write: drops
    /// their contents (with no lock held, so a `Drop` impl that uses the cache
    /// cannot deadlock), then locks and puts them on the free list.
    pub(crate) fn lock_for_write(&self) -> MutexGuard<'_, State<K, V>> {
        // With nothing to drop, `alloc` takes the mail under the lock, into
        // a reused buffer, when it needs a slot.
        if !has_drop_glue::<K, V>() || !self.mailbox.has_mail() {
            return self.lock();
        }
        /// Slots taken from the mailbox; put on the free list even if
        /// dropping their contents unwinds (they come out empty either way:
        /// see `drop_reclaimed`), or they would be lost to the shard.
        struct Taken<'a, K, V> {
            shard: &'a Shard<K, V>,
            slots: Vec<(u32, u32)>,
        }
        impl<K, V> Drop for Taken<'_, K, V> {
            fn drop(&mut self) {
                if !self.slots.is_empty() {
                    let mut st = self.shard.lock();
                    self.shard.recycle(&mut st, &self.slots);
                }
            }
        }
        let mut taken = Taken {
            shard: self,
            slots: Vec::new(),
        };
        self.mailbox.take(&mut taken.slots);
        if !taken.slots.is_empty() {
            self.slab.drop_reclaimed(&taken.slots);
        }
        let mut st = self.lock();
        self.recycle(&mut st, &taken.slots);
        // Recycled: the guard has nothing left to do.
        taken.slots.clear();
        st
    }

    /// Hands a full batch of unlinked slots to the epoch and updates the
    /// gauges. Call before unlocking.
    pub(crate) fn finish_write(&self, st: &mut State<K, V>) {
        if st.retired.len() >= st.retire_batch {
            self.retire_pending(st);
        }
        bump_to(&self.counters.entries, st.lru.len() as u64);
        // Unweighted, the weight is the entry count: no gauge of its own
        // (see `WriteCounters::weight`).
        if self.weighted {
            bump_to(
                &self.counters.weight,
                u64::try_from(st.lru.weight()).unwrap_or(u64::MAX),
            );
        }
    }

    /// Under the lock: the live slot index holding `key`, its position in
    /// the index, and the slot (looked up again by a rewrite, it cost ~5
    /// instructions: callgrind).
    // Always inlined: with a second caller in the insert's (cold) refusal
    // it was outlined, and the call cost ~20 instructions per insert.
    #[inline(always)]
    fn find_locked<Q>(&self, hash: u64, key: &Q, guard: &Guard) -> Option<(u32, u32, &Slot<K, V>)>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        self.table(guard).find(hash, |pos, idx| {
            let slot = self.slot(idx);
            // SAFETY: indexed slots hold values; the lock keeps them indexed.
            (unsafe { slot.key() }.borrow() == key).then_some((idx, pos, slot))
        })
    }

    /// Clones every live, unexpired entry: picked under the lock, cloned
    /// after it (user code stays out of the critical section).
    pub(crate) fn snapshot(&self, now: u64) -> Vec<(K, V)>
    where
        K: Clone,
        V: Clone,
    {
        let guard = local::pin();
        let live: Vec<&Slot<K, V>> = {
            let st = self.lock();
            st.lru
                .indices()
                .map(|idx| self.slot(idx))
                .filter(|slot| !is_expired(self.expires(slot), now))
                .collect()
        };
        let entries = live
            .into_iter()
            // SAFETY: linked when picked, while `guard` was pinned: even if
            // unlinked since, not reclaimed before it drops.
            .map(|slot| unsafe { (slot.key().clone(), slot.value().clone()) })
            .collect();
        drop(guard);
        entries
    }

    /// Slots delivered to the mailbox and not taken yet (tests).
    #[cfg(all(test, not(shuttle)))]
    pub(crate) fn mail_waiting(&self) -> usize {
        self.mailbox.waiting()
    }

    /// Checks the shard's invariants: the LRU's structure, that the index and
    /// the LRU hold the same slots, that every such slot is LIVE, and that
    /// the bounds hold. For tests and fuzzing.
    pub(crate) fn check<S: BuildHasher>(&self, hasher: &S) -> Result<(), String>
    where
        K: Hash,
    {
        let st = self.lock();
        st.lru.check()?;
        if self.over_bound(&st) {
            return Err(format!(
                "bound exceeded: {} entries, weight {}",
                st.lru.len(),
                st.lru.weight()
            ));
        }
        if !self.memory.holds(st.lru.weight(), st.retired_weight) {
            return Err(format!(
                "memory bound exceeded: weight {} live, {} retired",
                st.lru.weight(),
                st.retired_weight
            ));
        }
        let guard = local::pin();
        let table = self.table(&guard);
        let mut in_index = Vec::new();
        for (pos, idx) in table.entries() {
            let slot = self.slot(idx);
            if slot.flags.load(Ordering::Relaxed) & LIVE == 0 {
                return Err(format!("slot {idx} indexed but not LIVE"));
            }
            // SAFETY: the index holds only slots the slab handed out.
            if unsafe { st.lru.pos(idx) } != pos {
                return Err(format!("slot {idx} at {pos} records another position"));
            }
            in_index.push(idx);
        }
        // SAFETY: indexed slots are LIVE (checked above), so they hold values.
        table.check(|idx| hasher.hash_one(unsafe { self.slot(idx).key() }))?;
        let mut in_lru: Vec<u32> = st.lru.indices().collect();
        in_index.sort_unstable();
        in_lru.sort_unstable();
        if in_index != in_lru {
            return Err(format!(
                "index has {} slots, LRU has {}",
                in_index.len(),
                in_lru.len()
            ));
        }
        let mut free = st.free.clone();
        free.sort_unstable();
        if free.iter().any(|f| in_lru.binary_search(f).is_ok()) {
            return Err("a free slot is still linked".into());
        }
        Ok(())
    }
}

#[inline]
fn bump_to(counter: &crate::shim::AtomicU64, value: u64) {
    counter.store(value, Ordering::Relaxed);
}

impl<K, V> Drop for Shard<K, V> {
    fn drop(&mut self) {
        // SAFETY: `&mut self`: no reader or writer is left, so the current
        // table (from `Box::into_raw`, never retired: only replaced ones
        // are) can be freed directly; the slab frees the entries in its
        // own Drop.
        drop(unsafe { Box::from_raw(self.table.load(Ordering::Relaxed)) });
    }
}
