//! Refills: when a removal frees a lane that others overflowed past, a
//! displaced entry from the next two chunks moves back into it (module docs
//! of `index`).

use super::{DISPLACEMENT_SHIFT, Index, position, split};
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
    pub(crate) fn refill(&self, pos: u32, mut moved: impl FnMut(u32, u32)) {
        let (mut at, mut lane) = split(pos);
        // Bounded: each step moves the hole one or two chunks down the run.
        for _ in 0..self.chunks.len() {
            if self.overflow(at) == 0 {
                return;
            }
            let Some((from, from_lane, distance)) = self.displaced_past(at) else {
                return;
            };
            let chunk = &self.chunks[from];
            let idx = chunk.slots[from_lane].load(Ordering::Relaxed);
            let (word, shift) = chunk.tag_word(from_lane);
            let tag = (word.load(Ordering::Relaxed) >> shift) as u8;
            let displacement = self.displacement(from, from_lane) - distance as u64;
            self.publish(at, lane, idx, tag, displacement);
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

    /// An entry in the next two chunks whose probe passed `at`: its chunk,
    /// lane, and distance from `at`.
    #[inline]
    fn displaced_past(&self, at: usize) -> Option<(usize, usize, usize)> {
        // Low and high bit of each lane's 2-bit displacement, at bit 2*lane.
        const EVEN: u64 = 0x55_5555;
        let mut from = at;
        for distance in 1..=2usize.min(self.chunks.len() - 1) {
            from = self.next(from);
            let d = self.chunks[from].high.load(Ordering::Relaxed) >> DISPLACEMENT_SHIFT;
            let (low, high) = (d & EVEN, (d >> 1) & EVEN);
            // Displacement 1 or 2 for distance 1, exactly 2 for distance 2;
            // never FAR (3), whose exact distance is unknown. Cleared lanes
            // have displacement 0, so every match is a tagged lane.
            let movable = if distance == 1 {
                low ^ high
            } else {
                high & !low
            };
            if movable != 0 {
                return Some((from, (movable.trailing_zeros() / 2) as usize, distance));
            }
        }
        None
    }
}
