//! The slot arena of one shard.
//!
//! Entries live inline in slots addressed by `u32` index. Slots are stored in
//! chunks that never move once allocated (chunk `c` holds `base << c` slots),
//! so a reader holding an index can reach its slot without a lock. Index `0` is
//! never handed out: it is [`NIL`], the "no slot" link value, which lets freshly
//! zeroed memory be a valid array of empty slots.
//!
//! # Who may touch what
//! * `key` and `value` are written once, by the writer that took the slot off
//!   the free list, before the slot is published (linked into the index with a
//!   `Release` store). While published and until reclaimed they are only read.
//! * `expires` (a [`Stamp`]: four bytes against the shard's base, see
//!   `store::expiry`) is written there too, and again, shifted, by a rebase
//!   of its shard (under the lock, published or not).
//! * `uses` is the use count, bumped by readers with a plain relaxed store;
//!   `flags` ([`LIVE`], [`HAS_VALUE`]) and `generation` belong to the writer.
//!   They are separate atomics so that a reader's store can never overwrite
//!   a writer's update (and no reader needs a locked instruction).
//!
//! A slot unlinked from the index may still be read by readers that reached it
//! earlier. It is therefore reused only after the epoch (`store::epoch`) says
//! every such reader has finished: see [`Mailbox`].

use std::cell::UnsafeCell;
use std::mem::MaybeUninit;
use std::sync::Arc;

use super::epoch::{self, Deferred};
use super::expiry::{Base, Stamp};
use super::local;

use crate::shim::{AtomicPtr, AtomicU8, AtomicU16, AtomicU32, Ordering};

/// The "no slot" index: marks empty links and never-used index lanes.
pub(crate) const NIL: u32 = 0;

/// The use count saturates here: memcached's ACTIVE bit widened to 0..=3 as
/// in S3-FIFO. Readers add one on a hit while it is below the cap (so a hot
/// entry stops writing its line); the writer takes one off each time the
/// entry reaches a list tail, and uses what was left to decide where it goes.
pub(crate) const MAX_USES: u8 = 3;
/// The slot is linked into the index and the LRU lists.
pub(crate) const LIVE: u8 = 1 << 0;
/// `key` and `value` are initialised and not yet dropped.
pub(crate) const HAS_VALUE: u8 = 1 << 1;

/// The largest number of chunks a slab can have (indices are `u32`).
const MAX_CHUNKS: usize = 32;

/// One entry's storage.
///
/// `repr(C)` with the key and the fields a lookup reads first, so a hit's key
/// comparison, state and expiry share the slot's first cache line and the
/// value follows. Its header is 8 bytes (uses, flags, generation, expiry):
/// with an 8-byte key and a value aligned to 8, a slot is key + value + 8.
/// (Where the index holds the slot is the writer's alone: it is kept in the
/// LRU's side array, `Lru::pos`, not here.)
#[repr(C)]
pub(crate) struct Slot<K, V> {
    key: UnsafeCell<MaybeUninit<K>>,
    /// Use count (readers), see [`MAX_USES`].
    uses: AtomicU8,
    /// [`LIVE`] and [`HAS_VALUE`] (writer).
    pub(crate) flags: AtomicU8,
    /// Bumped every time the slot is reused, so a stale `(index,
    /// generation)` pair is detectable (writer).
    generation: AtomicU16,
    /// Expiry against the shard's base (see `store::expiry`), 0 = never.
    expires: Stamp,
    value: UnsafeCell<MaybeUninit<V>>,
}

impl<K, V> Slot<K, V> {
    #[cfg(shuttle)]
    fn empty() -> Self {
        Slot {
            key: UnsafeCell::new(MaybeUninit::uninit()),
            value: UnsafeCell::new(MaybeUninit::uninit()),
            expires: Stamp::never(),
            uses: AtomicU8::new(0),
            flags: AtomicU8::new(0),
            generation: AtomicU16::new(0),
        }
    }

    /// The entry's key.
    ///
    /// # Safety
    /// The slot must hold a value (`HAS_VALUE`) and must not be reclaimed while
    /// the returned reference lives: the caller either holds the shard lock
    /// with the slot live, or is pinned and reached the slot through the index.
    #[inline]
    pub(crate) unsafe fn key(&self) -> &K {
        // SAFETY: initialised (HAS_VALUE) and not dropped or rewritten while the
        // caller's lock or epoch guard keeps the slot from being reclaimed.
        unsafe { (*self.key.get()).assume_init_ref() }
    }

    /// The entry's value.
    ///
    /// # Safety
    /// As for [`Slot::key`].
    #[inline]
    pub(crate) unsafe fn value(&self) -> &V {
        // SAFETY: as in `key`.
        unsafe { (*self.value.get()).assume_init_ref() }
    }

    /// The entry's expiry (clock nanoseconds, 0 = never), its shard's
    /// `base` given. Lock-free (see `store::expiry`'s "Ordering"); it means
    /// the entry's expiry while the slot holds one (the caller holds the
    /// lock with the slot live, or is pinned and reached it through the
    /// index).
    #[inline(always)]
    pub(crate) fn expires(&self, base: &Base) -> u64 {
        self.expires.get(base)
    }

    /// Whether the entry expires at all (without decoding when).
    #[inline]
    pub(crate) fn has_expiry(&self) -> bool {
        self.expires.is_set()
    }

    /// The expiry's code, to shift in a rebase (under the shard lock).
    pub(crate) fn stamp(&self) -> &Stamp {
        &self.expires
    }

    /// Stores a new entry in a free slot and marks it `LIVE | HAS_VALUE` with
    /// the next generation; `expires` is its expiry's code (`expiry::encode`
    /// against the shard's base). The slot is not yet reachable by readers.
    ///
    /// # Safety
    /// The caller owns the slot exclusively: it came off the free list (or was
    /// never used) and holds no value.
    #[inline]
    pub(crate) unsafe fn fill(&self, key: K, value: V, expires: u32) {
        // SAFETY: exclusive ownership (caller's obligation): no reader can
        // reach the slot, so these plain writes race with nothing.
        unsafe {
            (*self.key.get()).write(key);
            (*self.value.get()).write(value);
        }
        self.expires.set(expires);
        // Relaxed (the expiry's too): the slot becomes visible to readers
        // only through the Release store that links it, which orders these
        // stores before it.
        let generation = self.generation.load(Ordering::Relaxed).wrapping_add(1);
        self.generation.store(generation, Ordering::Relaxed);
        self.uses.store(0, Ordering::Relaxed);
        self.flags.store(LIVE | HAS_VALUE, Ordering::Relaxed);
    }

    /// Records a use (a hit): adds one to the use count unless it is full.
    /// A plain load and store (Relaxed): two readers racing may count one
    /// use, and a reader may undo the writer's concurrent decay; the count is
    /// a hint that publishes nothing, and no other field shares its atomic.
    #[inline]
    pub(crate) fn touch(&self) {
        let uses = self.uses.load(Ordering::Relaxed);
        if uses < MAX_USES {
            self.uses.store(uses + 1, Ordering::Relaxed);
        }
    }

    /// Starts a slot that replaces `old` (same key) with `old`'s use count
    /// plus one: a rewrite is a use, and the entry keeps its standing. A hot
    /// key's new slot then starts at the cap, so readers on other cores
    /// never write its line. Writer only, before the slot is published.
    #[inline]
    pub(crate) fn inherit_uses(&self, old: &Self) {
        let uses = old.uses.load(Ordering::Relaxed);
        // min(uses + 1, MAX_USES), in fewer instructions than a saturating
        // add and a min (and without overflow, whatever `uses` is).
        self.uses
            .store(uses.min(MAX_USES - 1) + 1, Ordering::Relaxed);
    }

    /// The use count now (a hint, as every read of it).
    #[inline]
    pub(crate) fn uses(&self) -> u8 {
        self.uses.load(Ordering::Relaxed)
    }

    /// Sets the use count (capped): an entry restored from a snapshot takes
    /// the count it had. Writer only.
    pub(crate) fn set_uses(&self, uses: u8) {
        self.uses.store(uses.min(MAX_USES), Ordering::Relaxed);
    }

    /// Takes one use off the count and returns the count it had. Writer only.
    #[inline]
    pub(crate) fn decay(&self) -> u32 {
        let uses = self.uses.load(Ordering::Relaxed);
        if uses > 0 {
            self.uses.store(uses - 1, Ordering::Relaxed);
        }
        u32::from(uses)
    }

    /// The slot's current generation.
    #[inline]
    pub(crate) fn generation(&self) -> u32 {
        u32::from(self.generation.load(Ordering::Relaxed))
    }

    /// Drops the key and value of a retired slot.
    ///
    /// # Safety
    /// The caller owns the slot exclusively (the epoch has passed since it was
    /// unlinked, so no reader can hold a reference) and it holds a value.
    unsafe fn drop_contents(&self) {
        /// Drops the value when the key's drop is done, even by unwinding.
        struct DropValue<'a, V>(&'a UnsafeCell<MaybeUninit<V>>);
        impl<V> Drop for DropValue<'_, V> {
            fn drop(&mut self) {
                // SAFETY: made only below, from a slot whose value the
                // caller of `drop_contents` guarantees initialised and
                // exclusively owned; this guard runs once.
                unsafe { (*self.0.get()).assume_init_drop() }
            }
        }
        // Clear HAS_VALUE first: if K's or V's Drop panics, the slab's own Drop
        // must not drop them a second time.
        self.flags.store(0, Ordering::Relaxed);
        let value = DropValue(&self.value);
        // SAFETY: initialised (caller) and exclusively owned (caller), so
        // nobody reads it during or after the drop.
        unsafe { (*self.key.get()).assume_init_drop() };
        drop(value);
    }
}

/// Chunked, never-moving storage for one shard's slots.
///
/// `repr(C)`: what every lookup reads (`first_len`, the first chunk pointers)
/// comes first, in one cache line; `high_water`, which writers bump, comes
/// after the pointer array.
#[repr(C)]
pub(crate) struct Slab<K, V> {
    /// log2 of the size of chunk 0.
    shift: u32,
    /// The size of chunk 0 (`1 << shift`), kept so the common lookup is
    /// one compare.
    first_len: u32,
    chunks: [AtomicPtr<Slot<K, V>>; MAX_CHUNKS],
    /// One past the highest index ever handed out; slots at or above it were
    /// never touched (their pages may not even be resident).
    high_water: AtomicU32,
}

impl<K, V> Slab<K, V> {
    /// Where what a lookup reads of a slab ends (`first_len` and chunk 0's
    /// pointer): the shard keeps it in its first cache line.
    #[cfg(not(shuttle))]
    pub(crate) const LOOKUP_END: usize =
        std::mem::offset_of!(Self, chunks) + std::mem::size_of::<AtomicPtr<Slot<K, V>>>();
}

// SAFETY: a Slab hands out `&K` and `&V` to readers on any thread (so K and V
// must be Sync) and drops them on whichever thread reclaims or drops the slab
// (so they must be Send). The interior mutability is governed by the protocol
// in the module docs: plain fields are written only while exclusively owned.
unsafe impl<K: Send + Sync, V: Send + Sync> Sync for Slab<K, V> {}
// SAFETY: as above; moving the slab moves ownership of the entries.
unsafe impl<K: Send, V: Send> Send for Slab<K, V> {}

impl<K, V> Slab<K, V> {
    /// A slab whose first chunk has room for at least `first_chunk` slots.
    /// Nothing is allocated until a slot is needed.
    pub(crate) fn new(first_chunk: usize) -> Self {
        let first = first_chunk.clamp(8, 1 << 24).next_power_of_two();
        Slab {
            chunks: std::array::from_fn(|_| AtomicPtr::new(std::ptr::null_mut())),
            shift: first.trailing_zeros(),
            first_len: first as u32,
            // Index 0 is NIL and never handed out.
            high_water: AtomicU32::new(1),
        }
    }

    /// Chunk number and offset of `idx`.
    #[inline]
    fn locate(&self, idx: u32) -> (usize, usize) {
        // Chunk c covers [base * (2^c - 1), base * (2^(c+1) - 1)).
        let scaled = (idx as u64 >> self.shift) + 1;
        let chunk = 63 - scaled.leading_zeros() as usize;
        let start = ((1u64 << chunk) - 1) << self.shift;
        (chunk, (idx as u64 - start) as usize)
    }

    /// Number of slots in chunk `c`.
    #[inline]
    fn chunk_len(&self, chunk: usize) -> usize {
        1usize << (self.shift as usize + chunk)
    }

    /// The slot at `idx`.
    ///
    /// # Safety
    /// `idx` must be a non-NIL index below the high-water mark, observed
    /// through the index's Acquire loads (or under the shard lock) after the
    /// writer that handed it out, so that its chunk pointer is visible.
    #[inline]
    pub(crate) unsafe fn slot(&self, idx: u32) -> &Slot<K, V> {
        // Chunk 0 holds nearly every slot of an entry-bounded cache: its
        // slots skip the chunk arithmetic, and have a path of their own (one
        // shared with the other chunks cost a hit three instructions to
        // merge the two: callgrind).
        if idx < self.first_len {
            // SAFETY: as below, with chunk 0 and `idx < first_len`, its length.
            unsafe { self.slot_in(0, idx as usize) }
        } else {
            // Off the path of chunk 0 (merged with it, the 80-byte slot's
            // address cost a hit a jump and a spill: callgrind).
            super::cold();
            let (chunk, offset) = self.locate(idx);
            // SAFETY: `locate` gives `idx`'s chunk and an offset within it;
            // the rest is the caller's obligation, as below.
            unsafe { self.slot_in(chunk, offset) }
        }
    }

    /// Slot `offset` of chunk `chunk`.
    ///
    /// # Safety
    /// The chunk was allocated (its slot's index handed out, and the caller
    /// reached that index as [`Slab::slot`] requires) and `offset` is below
    /// its length.
    #[inline(always)]
    unsafe fn slot_in(&self, chunk: usize, offset: usize) -> &Slot<K, V> {
        // Acquire pairs with the Release store in `allocate_chunk`; on the
        // paths that reach here it is already implied by the Acquire load that
        // produced the index, and costs nothing extra on x86.
        let base = self.chunks[chunk].load(Ordering::Acquire);
        debug_assert!(!base.is_null(), "slot in unallocated chunk {chunk}");
        // SAFETY: the chunk was allocated before the index was handed out
        // (caller's obligation), `offset` is within it (caller's obligation),
        // and chunks are never freed before the slab.
        unsafe { &*base.add(offset) }
    }

    /// Hands out the never-used index at the high-water mark, allocating its
    /// chunk when needed. Returns `None` when the `u32` index space is full.
    /// Must be called under the shard lock (single writer).
    #[inline]
    pub(crate) fn grow(&self) -> Option<u32> {
        let idx = self.high_water.load(Ordering::Relaxed);
        if idx == u32::MAX {
            return None;
        }
        let (chunk, _) = self.locate(idx);
        if chunk >= MAX_CHUNKS {
            return None;
        }
        if self.chunks[chunk].load(Ordering::Relaxed).is_null() {
            self.allocate_chunk(chunk);
        }
        self.high_water.store(idx + 1, Ordering::Relaxed);
        Some(idx)
    }

    /// Number of slots in the first chunk.
    #[inline]
    pub(crate) fn first_chunk_len(&self) -> usize {
        self.chunk_len(0)
    }

    /// One past the highest index handed out so far.
    #[inline]
    pub(crate) fn high_water(&self) -> u32 {
        self.high_water.load(Ordering::Relaxed)
    }

    #[cfg(not(shuttle))]
    fn allocate_chunk(&self, chunk: usize) {
        let len = self.chunk_len(chunk);
        let layout = std::alloc::Layout::array::<Slot<K, V>>(len).expect("slab chunk layout");
        let ptr = if layout.size() == 0 {
            std::ptr::NonNull::<Slot<K, V>>::dangling().as_ptr()
        } else {
            // SAFETY: the layout has non-zero size. All-zero bytes are a valid
            // empty slot: MaybeUninit fields accept any bytes, the atomics
            // (`expires` is one) are plain integers (0 = no flags / never). Large
            // zeroed allocations come from fresh pages, so untouched slots cost
            // no resident memory.
            unsafe { std::alloc::alloc_zeroed(layout) as *mut Slot<K, V> }
        };
        if ptr.is_null() {
            std::alloc::handle_alloc_error(layout);
        }
        // Release: a reader that later observes an index in this chunk (via
        // the Release store that publishes the slot) also observes the pointer.
        self.chunks[chunk].store(ptr, Ordering::Release);
    }

    #[cfg(shuttle)]
    fn allocate_chunk(&self, chunk: usize) {
        // shuttle's atomics are not plain integers, so build the slots properly.
        let len = self.chunk_len(chunk);
        let boxed: Box<[Slot<K, V>]> = (0..len).map(|_| Slot::empty()).collect();
        let ptr = Box::into_raw(boxed) as *mut Slot<K, V>;
        self.chunks[chunk].store(ptr, Ordering::Release);
    }

    /// Drops the contents of reclaimed slots. Must only be given slots whose
    /// epoch has passed (they come out of the [`Mailbox`]).
    ///
    /// If a key's or value's `Drop` panics, the rest of the batch is still
    /// dropped (a second panic aborts, as in a slice's drop), so every slot
    /// comes out empty either way.
    pub(crate) fn drop_reclaimed(&self, reclaimed: &[(u32, u32)]) {
        if has_drop_glue::<K, V>() {
            self.drop_reclaimed_guarded(reclaimed);
        } else {
            // Nothing to drop: dropping a key and value without drop glue
            // leaves their bytes as they were, so HAS_VALUE stays true, and
            // nothing reads it for such types anyway (only `drop_one` and
            // the slab's `Drop`, both behind `has_drop_glue`). `fill`
            // rewrites the flags; LIVE was cleared at retirement.
            // (A loop over the batch here cost ~13 instructions per insert,
            // callgrind.)
            #[cfg(debug_assertions)]
            for &(idx, generation) in reclaimed {
                // SAFETY: a retired slot of this slab (the caller's
                // obligation), so its chunk exists.
                let slot = unsafe { self.slot(idx) };
                debug_assert_eq!(slot.generation(), generation, "slot {idx} retired twice");
            }
        }
    }

    /// Empties one reclaimed slot.
    ///
    /// # Safety
    /// `idx` was retired from this slab, the epoch has released it, and only
    /// the caller received it from the mailbox.
    #[inline]
    unsafe fn drop_one(&self, idx: u32, generation: u32) {
        // SAFETY: `idx` was handed out by this slab (it was retired from it).
        let slot = unsafe { self.slot(idx) };
        debug_assert_eq!(slot.generation(), generation, "slot {idx} retired twice");
        if slot.flags.load(Ordering::Relaxed) & HAS_VALUE != 0 {
            // SAFETY: the epoch passed since the slot was unlinked, so no
            // reader holds a reference; the writer stopped using it when it
            // retired it; only this caller received it from the mailbox
            // (the caller's obligations).
            unsafe { slot.drop_contents() };
        }
    }

    /// [`drop_reclaimed`](Self::drop_reclaimed) when a `Drop` may unwind.
    fn drop_reclaimed_guarded(&self, reclaimed: &[(u32, u32)]) {
        /// The part of the batch not dropped yet; drops it if unwinding.
        struct Rest<'a, K, V> {
            slab: &'a Slab<K, V>,
            rest: &'a [(u32, u32)],
        }
        impl<K, V> Rest<'_, K, V> {
            fn drop_next(&mut self) -> bool {
                let Some((&(idx, generation), tail)) = self.rest.split_first() else {
                    return false;
                };
                // Advanced first: if this drop panics, the guard goes on
                // from the next slot.
                self.rest = tail;
                // SAFETY: a batch from the mailbox (`drop_reclaimed`'s
                // caller), each slot in it once.
                unsafe { self.slab.drop_one(idx, generation) };
                true
            }
        }
        impl<K, V> Drop for Rest<'_, K, V> {
            fn drop(&mut self) {
                while self.drop_next() {}
            }
        }
        let mut rest = Rest {
            slab: self,
            rest: reclaimed,
        };
        while rest.drop_next() {}
    }
}

/// Whether dropping a key or a value runs code: reclaiming slots then runs
/// user code, which the shard must not do under its lock.
#[inline]
pub(crate) const fn has_drop_glue<K, V>() -> bool {
    std::mem::needs_drop::<K>() || std::mem::needs_drop::<V>()
}

impl<K, V> Drop for Slab<K, V> {
    fn drop(&mut self) {
        let high = *self.high_water.get_mut();
        if has_drop_glue::<K, V>() {
            for idx in 1..high {
                // SAFETY: below the high-water mark, so its chunk exists; `&mut
                // self` means no reader or writer is left.
                let slot = unsafe { self.slot(idx) };
                if slot.flags.load(Ordering::Relaxed) & HAS_VALUE != 0 {
                    // SAFETY: exclusive (`&mut self`) and holds a value.
                    unsafe { slot.drop_contents() };
                }
            }
        }
        for chunk in 0..MAX_CHUNKS {
            let ptr = *self.chunks[chunk].get_mut();
            if ptr.is_null() {
                continue;
            }
            let len = self.chunk_len(chunk);
            #[cfg(not(shuttle))]
            {
                let layout =
                    std::alloc::Layout::array::<Slot<K, V>>(len).expect("slab chunk layout");
                if layout.size() != 0 {
                    // SAFETY: allocated in `allocate_chunk` with this layout;
                    // the slots' contents were dropped above.
                    unsafe { std::alloc::dealloc(ptr as *mut u8, layout) };
                }
            }
            #[cfg(shuttle)]
            {
                // SAFETY: created by `Box::into_raw` of a slice of this length.
                drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(ptr, len)) });
            }
        }
    }
}

/// Where retired slots come back once the epoch says no reader can see them.
///
/// A writer that unlinks slots hands their `(index, generation)` to the
/// epoch in a batch (`epoch::Deferred::Slots`), which, once no reader can
/// reach them, only pushes them into this mailbox. The batch holds an `Arc`
/// to the mailbox alone (not to the slab), so it is harmless if it runs
/// after the cache is gone, and `K`/`V` need not be `'static`. Writers drain
/// the mailbox, drop the entries and put the slots on their free list.
///
/// It uses std's mutex and atomic even under shuttle: the critical sections
/// are a Vec append and a take, with nothing for shuttle to explore, and
/// they run inside the collector's work, often under a shard lock.
#[derive(Default)]
pub(crate) struct Mailbox {
    ready: std::sync::Mutex<Vec<(u32, u32)>>,
    count: std::sync::atomic::AtomicUsize,
}

impl Mailbox {
    /// Called from the epoch collector: these slots are now unreachable.
    pub(crate) fn deliver(&self, slots: &[(u32, u32)]) {
        let mut ready = self.ready.lock().unwrap_or_else(|e| e.into_inner());
        ready.extend_from_slice(slots);
        // Relaxed: `count` is only a hint for `take`; the data itself is
        // handed over under the mutex.
        self.count
            .store(ready.len(), std::sync::atomic::Ordering::Relaxed);
    }

    /// How many slots are waiting (tests).
    #[cfg(all(test, not(shuttle)))]
    pub(crate) fn waiting(&self) -> usize {
        self.ready.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether slots may be waiting (a hint: `take` is exact).
    #[inline]
    pub(crate) fn has_mail(&self) -> bool {
        self.count.load(std::sync::atomic::Ordering::Relaxed) != 0
    }

    /// Takes every delivered slot (cheap when there is none).
    pub(crate) fn take(&self, into: &mut Vec<(u32, u32)>) {
        if self.count.load(std::sync::atomic::Ordering::Relaxed) == 0 {
            return;
        }
        let mut ready = self.ready.lock().unwrap_or_else(|e| e.into_inner());
        into.append(&mut ready);
        self.count.store(0, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Hands a batch of unlinked slots to the epoch: one entry in the
/// collector's queue, which also advances the epoch if it can and runs
/// what is ready. Call after unlinking them.
pub(crate) fn retire(mailbox: &Arc<Mailbox>, slots: Vec<(u32, u32)>) {
    if slots.is_empty() {
        return;
    }
    epoch::retire(
        Deferred::Slots(Arc::clone(mailbox), slots.into_boxed_slice()),
        local::holds_record(),
    );
}

impl<K, V> Slab<K, V> {
    /// Hints the CPU to fetch slot `idx`'s first cache line. Any index will
    /// do, NIL or never handed out: only the address is computed (a
    /// prefetch never faults and reads nothing architecturally), so it
    /// needs none of [`Slab::slot`]'s obligations. A slot of chunk 0 (nearly
    /// all, in an entry-bounded cache) costs a compare, a multiply and the
    /// prefetch: through `slot`, with its checks, the eviction's three
    /// prefetches cost ~10 instructions more (callgrind).
    #[inline(always)]
    pub(crate) fn prefetch(&self, idx: u32) {
        if idx < self.first_len {
            // Relaxed: an address to prefetch, never dereferenced.
            prefetch_line(
                self.chunks[0]
                    .load(Ordering::Relaxed)
                    .wrapping_add(idx as usize),
            );
        } else {
            self.prefetch_past_first(idx);
        }
    }

    /// [`Slab::prefetch`] of a slot past chunk 0. Out of line: merged with
    /// chunk 0's path, it cost that one two instructions more.
    #[cold]
    #[inline(never)]
    fn prefetch_past_first(&self, idx: u32) {
        let (chunk, offset) = self.locate(idx);
        if let Some(base) = self.chunks.get(chunk) {
            // Relaxed: as above.
            prefetch_line(base.load(Ordering::Relaxed).wrapping_add(offset));
        }
    }
}

/// Hints the CPU to fetch the cache line at `at`: any address will do (a
/// prefetch never faults, and `at` is never dereferenced).
#[inline(always)]
fn prefetch_line<T>(at: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `_mm_prefetch` is an SSE instruction, in every x86-64 CPU's
    // baseline; a prefetch never faults and reads nothing architecturally,
    // whatever the address.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(at.cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = at;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locate_covers_index_space_without_gaps() {
        let slab: Slab<u64, u64> = Slab::new(8);
        let mut expected = (0usize, 0usize);
        for idx in 0..10_000u32 {
            let got = slab.locate(idx);
            assert_eq!(got, expected, "index {idx}");
            expected.1 += 1;
            if expected.1 == slab.chunk_len(expected.0) {
                expected = (expected.0 + 1, 0);
            }
        }
    }

    #[test]
    fn a_slot_is_its_key_and_value_and_eight_bytes() {
        // The memory bench's entry (u64 -> [u8; 64]): 80 bytes, not 88.
        assert_eq!(std::mem::size_of::<Slot<u64, [u8; 64]>>(), 8 + 64 + 8);
        assert_eq!(std::mem::size_of::<Slot<u32, u32>>(), 4 + 4 + 8);
    }

    #[test]
    fn a_replacing_slot_inherits_one_more_use_up_to_the_cap() {
        let slab: Slab<u32, u32> = Slab::new(8);
        let (old, new) = (slab.grow().unwrap(), slab.grow().unwrap());
        // SAFETY: freshly grown, exclusively ours.
        let (old, new) = unsafe {
            slab.slot(old).fill(1, 1, 0);
            slab.slot(new).fill(1, 2, 0);
            (slab.slot(old), slab.slot(new))
        };
        new.inherit_uses(old);
        assert_eq!(new.decay(), 1, "a rewrite of an unused entry is one use");
        for _ in 0..MAX_USES {
            old.touch();
        }
        new.inherit_uses(old);
        assert_eq!(new.decay(), u32::from(MAX_USES), "capped, not past it");
    }

    #[test]
    fn grow_fill_and_drop_run_destructors_once() {
        let counter = Arc::new(());
        {
            let slab: Slab<u32, Arc<()>> = Slab::new(8);
            for i in 0..100u32 {
                let idx = slab.grow().unwrap();
                assert_eq!(idx, i + 1, "index 0 is reserved");
                // SAFETY: freshly grown, exclusively ours.
                unsafe { slab.slot(idx).fill(i, Arc::clone(&counter), 0) };
            }
            assert_eq!(Arc::strong_count(&counter), 101);
            slab.drop_reclaimed(&[(5, 1)]);
            assert_eq!(Arc::strong_count(&counter), 100);
        }
        assert_eq!(Arc::strong_count(&counter), 1);
    }

    #[test]
    fn generation_advances_on_reuse() {
        let slab: Slab<u32, u32> = Slab::new(8);
        let idx = slab.grow().unwrap();
        // SAFETY: exclusively ours throughout.
        let slot = unsafe { slab.slot(idx) };
        // SAFETY: as above.
        unsafe { slot.fill(1, 1, 0) };
        let g1 = slot.generation();
        slab.drop_reclaimed(&[(idx, g1)]);
        // SAFETY: as above; reclaimed so empty again.
        unsafe { slot.fill(2, 2, 0) };
        assert_eq!(slot.generation(), g1 + 1);
    }

    #[test]
    fn mailbox_hands_over_everything_once() {
        let mb = Mailbox::default();
        mb.deliver(&[(1, 1), (2, 1)]);
        mb.deliver(&[(3, 4)]);
        let mut out = Vec::new();
        mb.take(&mut out);
        assert_eq!(out, vec![(1, 1), (2, 1), (3, 4)]);
        out.clear();
        mb.take(&mut out);
        assert!(out.is_empty());
    }
}
