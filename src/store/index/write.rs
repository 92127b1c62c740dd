//! The writer's side of the table (under the shard lock): insert, replace,
//! remove, and the overflow counts and displacements they keep.

use super::chunk::{Chunk, matches};
use super::{
    DISPLACEMENT_SHIFT, FAR, Index, LANES, OVERFLOW_SHIFT, SATURATED, position, split, tag,
};
use crate::shim::Ordering;

impl Index {
    /// Adds `idx` for `hash` (the key must not be in the table) and returns
    /// its position, or `None` when every lane is taken. Writer only.
    // Always inlined: outlined (as `#[inline]` left it), its call cost ~15
    // instructions of an evicting insert's ~900 (callgrind).
    #[inline(always)]
    pub(crate) fn insert(&self, hash: u64, idx: u32) -> Option<u32> {
        let home = self.home(hash);
        let mut at = home;
        for _ in 0..self.chunks.len() {
            debug_assert!(at < self.chunks.len());
            // SAFETY: `at < len`: `home` is below `len` and `next` wraps to
            // 0 at `len` (as in `probe`; spares each chunk and the publish
            // a bounds check: ~5 instructions per insert of a new key).
            let chunk = unsafe { self.chunks.get_unchecked(at) };
            let low = chunk.low.load(Ordering::Relaxed);
            let high = chunk.high.load(Ordering::Relaxed);
            // A free lane is one whose tag is 0, the empty mark.
            let free = matches(low, high, 0);
            if free == 0 {
                at = self.next(at);
                continue;
            }
            let lane = free.trailing_zeros() as usize;
            // Passed chunks count the overflow before the entry is visible,
            // so no reader can see the entry yet stop short of it later.
            let mut passed = home;
            let mut displacement = 0;
            while passed != at {
                self.add_overflow(passed, 1);
                passed = self.next(passed);
                displacement += 1;
            }
            Self::publish_in(chunk, lane, idx, tag(hash), displacement);
            return Some(position(at, lane));
        }
        None
    }

    /// Fills the free `lane` of `chunk`, which the caller has at hand.
    /// Writer only.
    #[inline(always)]
    pub(super) fn publish_in(chunk: &Chunk, lane: usize, idx: u32, tag: u8, displacement: u64) {
        // Release: the slot was filled before this; a reader that finds the
        // tag (Release below) or, after a later replacement, loads the index
        // directly sees a complete slot.
        chunk.slots[lane].store(idx, Ordering::Release);
        // The displacement first: readers ignore it, and for lanes 8..12 the
        // tag store below rewrites the same word.
        let shift = DISPLACEMENT_SHIFT + 2 * lane as u32;
        let high = chunk.high.load(Ordering::Relaxed);
        let high = (high & !(FAR << shift)) | (displacement.min(FAR) << shift);
        // Release, though readers ignore displacements: this word also
        // holds the tags of lanes 8..12, and a reader whose Acquire load
        // reads this store must still see those lanes' indices.
        chunk.high.store(high, Ordering::Release);
        let (word, shift) = chunk.tag_word(lane);
        let bits = word.load(Ordering::Relaxed) | (u64::from(tag) << shift);
        // Release: publishes the lane (see above).
        word.store(bits, Ordering::Release);
    }

    /// Clears the tag and the displacement of `lane` in chunk `at` (so a
    /// nonzero displacement always belongs to a tagged lane). Writer only.
    #[inline]
    pub(super) fn clear(&self, at: usize, lane: usize) {
        let chunk = &self.chunks[at];
        let high = chunk.high.load(Ordering::Relaxed);
        // Release: as in `publish`, this word holds other lanes' tags.
        chunk.high.store(
            high & !(FAR << (DISPLACEMENT_SHIFT + 2 * lane as u32)),
            Ordering::Release,
        );
        let (word, shift) = chunk.tag_word(lane);
        let bits = word.load(Ordering::Relaxed) & !(0xFF << shift);
        // Release is not needed for a removal (readers that still see the
        // old tag read an epoch-protected slot), but costs nothing on x86
        // and keeps every tag-word store alike.
        word.store(bits, Ordering::Release);
    }

    /// Points the entry at `pos` to slot `idx` (same key, new slot). Writer only.
    ///
    /// # Safety
    /// `pos` is a position this table gave for an entry (from `find` or
    /// `insert`), so its chunk and lane are in range. (Unchecked: once per
    /// rewrite, the two bounds checks were ~5 of its ~307 instructions.)
    #[inline]
    pub(crate) unsafe fn replace(&self, pos: u32, idx: u32) {
        let (chunk, lane) = split(pos);
        debug_assert!(chunk < self.chunks.len() && lane < LANES);
        // SAFETY: `pos` came from this table (the caller's obligation):
        // `position` built it from a chunk below `len` and a lane below
        // `LANES`, and `split` takes them apart again.
        let slot = unsafe { self.chunks.get_unchecked(chunk).slots.get_unchecked(lane) };
        // Release: readers that load this index see the new slot filled.
        slot.store(idx, Ordering::Release);
    }

    /// Removes the entry at `pos`. Writer only. Returns whether others
    /// overflowed past its chunk: then the caller should [`refill`] the
    /// freed lane (bracketed by its sequence counter).
    ///
    /// The overflow counts it lowers are found from the lane's recorded
    /// displacement, or, for an entry 3 or more chunks from home, from
    /// `hash`. With an inconsistent `Hash` impl (`hash` not what it was at
    /// insert) the counts of the wrong chunks may be lowered: later lookups
    /// may then miss displaced keys, as a std `HashMap` may, but nothing
    /// unsafe follows (every candidate is still checked against its slot).
    ///
    /// [`refill`]: Index::refill
    // Always inlined: once per eviction, and as a call (with the closure
    // built on the stack for it) it cost ~24 instructions of an evicting
    // insert's ~650 (callgrind, `interleaved one nearfar 0.99 cache_aside`).
    #[inline(always)]
    pub(crate) fn remove(&self, pos: u32, hash: impl FnOnce() -> u64) -> bool {
        let (at, lane) = split(pos);
        // `hash` may run user code: before anything changes.
        let mut passed = match self.displacement(at, lane) {
            FAR => self.home(hash()),
            // `d` chunks before `at`, wrapping (no division on this path).
            d => match at.checked_sub(d as usize) {
                Some(home) => home,
                None => at + self.chunks.len() - d as usize,
            },
        };
        self.clear(at, lane);
        while passed != at {
            self.add_overflow(passed, -1);
            passed = self.next(passed);
        }
        self.overflow(at) != 0
    }

    /// The recorded displacement of a lane.
    #[inline]
    pub(super) fn displacement(&self, at: usize, lane: usize) -> u64 {
        (self.chunks[at].high.load(Ordering::Relaxed) >> (DISPLACEMENT_SHIFT + 2 * lane as u32))
            & FAR
    }

    /// A chunk's overflow count.
    #[inline]
    pub(super) fn overflow(&self, at: usize) -> u64 {
        (self.chunks[at].high.load(Ordering::Relaxed) >> OVERFLOW_SHIFT) & SATURATED
    }

    /// Adjusts a chunk's overflow count, leaving a saturated one alone and
    /// never going below 0.
    #[inline]
    pub(super) fn add_overflow(&self, chunk: usize, delta: i32) {
        let word = &self.chunks[chunk].high;
        let high = word.load(Ordering::Relaxed);
        let count = (high >> OVERFLOW_SHIFT) & SATURATED;
        let new = match delta {
            _ if count == SATURATED => return,
            1 => count + 1,
            _ if count == 0 => return,
            _ => count - 1,
        };
        let high = (high & !(SATURATED << OVERFLOW_SHIFT)) | (new << OVERFLOW_SHIFT);
        // Release: an increment must be visible no later than the entry it
        // is for (the tag store that follows is also Release).
        word.store(high, Ordering::Release);
    }
}
