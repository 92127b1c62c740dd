//! Refills: when a removal frees a lane that others overflowed past, a
//! displaced entry from the next two chunks moves back into it (module docs
//! of `index`).

use super::chunk::Chunk;
use super::{DISPLACEMENT_SHIFT, FAR, Index, OVERFLOW_SHIFT, SATURATED, position, split};
use crate::shim::Ordering;

impl Index {
    /// Refills the free lane at `pos` with an entry that overflowed past it,
    /// and the lane that one leaves with another, down the run. `moved(idx,
    /// position)` hears of each move. Writer only.
    ///
    /// Each move publishes the entry in its new lane before clearing the old
    /// one, but a lookup can still read the new chunk before the move and
    /// the old one after it, and miss: the caller makes concurrent misses
    /// retry (see the module docs).
    ///
    /// # Panics
    /// If `pos` is not a position in this table.
    pub(crate) fn refill(&self, pos: u32, mut moved: impl FnMut(u32, u32)) {
        let (mut at, mut lane) = split(pos);
        // The one bounds check: every chunk below is `at` or reached from it
        // by `next`, which wraps at `len`. (Checked at each access, the
        // refills cost ~3 instructions more per evicting insert.)
        assert!(
            at < self.chunks.len(),
            "refill of a position past the table"
        );
        // Bounded: each step moves the hole one or two chunks down the run.
        for _ in 0..self.chunks.len() {
            // SAFETY: `at < len` (above, and `displaced_past` returns chunks
            // reached by `next`).
            let hole = unsafe { self.chunk(at) };
            if (hole.high.load(Ordering::Relaxed) >> OVERFLOW_SHIFT) & SATURATED == 0 {
                return;
            }
            // SAFETY: as above.
            let Some((from, from_lane, distance)) = (unsafe { self.displaced_past(at) }) else {
                return;
            };
            // SAFETY: `displaced_past` returns a chunk below `len`.
            let chunk = unsafe { self.chunk(from) };
            let idx = chunk.slots[from_lane].load(Ordering::Relaxed);
            let (word, shift) = chunk.tag_word(from_lane);
            let tag = (word.load(Ordering::Relaxed) >> shift) as u8;
            let recorded = (chunk.high.load(Ordering::Relaxed)
                >> (DISPLACEMENT_SHIFT + 2 * from_lane as u32))
                & FAR;
            Self::publish_in(hole, lane, idx, tag, recorded - distance as u64);
            self.clear(from, from_lane);
            // It no longer passes the chunks from the hole up to its old one.
            let mut passed = at;
            while passed != from {
                self.add_overflow(passed, -1);
                passed = self.next(passed);
            }
            moved(idx, position(at, lane));
            (at, lane) = (from, from_lane);
        }
    }

    /// Chunk `at`, unchecked.
    ///
    /// # Safety
    /// `at < self.chunks.len()`.
    #[inline(always)]
    unsafe fn chunk(&self, at: usize) -> &Chunk {
        debug_assert!(at < self.chunks.len());
        // SAFETY: in bounds (the caller's obligation).
        unsafe { self.chunks.get_unchecked(at) }
    }

    /// An entry in the next two chunks whose probe passed `at`: its chunk,
    /// lane, and distance from `at`. The two chunks are looked at one after
    /// the other, not in a loop over the distance: the loop's bookkeeping
    /// was most of a refill that found nothing to move.
    ///
    /// # Safety
    /// `at < self.chunks.len()`.
    #[inline(always)]
    unsafe fn displaced_past(&self, at: usize) -> Option<(usize, usize, usize)> {
        // Low and high bit of each lane's 2-bit displacement, at bit 2*lane.
        const EVEN: u64 = 0x55_5555;
        let len = self.chunks.len();
        // The lanes' displacements in chunk `c` (below `len`: `next` of a
        // chunk below it), as their low and high bits.
        let bits = |c: usize| {
            // SAFETY: `c` is `next` of a chunk below `len`, so below it.
            let d = unsafe { self.chunk(c) }.high.load(Ordering::Relaxed) >> DISPLACEMENT_SHIFT;
            (d & EVEN, (d >> 1) & EVEN)
        };
        // Cleared lanes have displacement 0, so every match is a tagged
        // lane; FAR (3) is never moved: its exact distance is unknown.
        if len < 2 {
            return None;
        }
        // Distance 1: displacement 1 or 2.
        let first = self.next(at);
        let (low, high) = bits(first);
        let movable = low ^ high;
        if movable != 0 {
            return Some((first, (movable.trailing_zeros() / 2) as usize, 1));
        }
        if len < 3 {
            return None;
        }
        // Distance 2: displacement exactly 2.
        let second = self.next(first);
        let (low, high) = bits(second);
        let movable = high & !low;
        if movable != 0 {
            return Some((second, (movable.trailing_zeros() / 2) as usize, 2));
        }
        None
    }
}
