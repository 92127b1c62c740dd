//! The hash index of one shard: key hash -> slot index, read without a lock.
//!
//! The layout follows folly's F14 tables: the table is an array of 64-byte
//! chunks, each one cache line holding 12 lanes. A chunk's first 16 bytes are
//! the lanes' tag bytes (eight bits of the key's hash, 0 = empty lane) and an
//! overflow count; the other 48 are the lanes' slot indices. A lookup loads one
//! line, compares all tags at once (SWAR over two words) and looks at the slot
//! of each matching lane only, so it reads about 1.004 slots per hit and about
//! 0.04 per miss (a chained index read 1.38 and 0.76 at our load).
//!
//! A key's home chunk is picked by its hash. When the home chunk is full, the
//! key goes to the next chunk with a free lane, and every chunk it passed
//! counts one more overflow. A lookup stops at the first chunk whose overflow
//! count is 0, so a removal clears its lane's tag and takes its overflow back
//! from the chunks before it, and no tombstone is needed. A count that reaches
//! 255 stays there (lookups past it just probe one chunk further), as in F14.
//!
//! F14 leaves displaced keys where they are. Under a cache's constant churn
//! that lets overflow pile up: simulated at 80% load, a miss probed 8.8
//! chunks on average. So each lane also records how far it is from its home
//! (two bits: 0, 1, 2, or "3 or more"), and when a removal frees a lane in a
//! chunk others overflowed past, [`Index::refill`] pulls a displaced entry
//! from the next two chunks back into it (and so on down the run). At the
//! 75% load the shard sizes for, that keeps hits at ~1.05 chunks and misses
//! at ~1.4. A move can make a concurrent lookup miss a key that is present,
//! so the shard brackets it with the same sequence counter as a resize.
//!
//! # Concurrency
//! Writers hold the shard lock; readers take none. Every field is an atomic:
//! * an insert stores the slot index (`Release`, after the slot was filled),
//!   raises the overflow counts it passed, and then stores the tag word
//!   (`Release`); a reader loads the tag words with `Acquire`, so a tag it sees
//!   comes with the index and slot written before it;
//! * a replacement (same key, new slot) only swaps the lane's index
//!   (`Release`), so the key is never absent;
//! * a removal clears the tag. The lane's old index stays behind: a reader
//!   that loaded the tag word before the removal still reaches the old slot,
//!   which the epoch keeps readable, and that read is ordered before the
//!   removal. Every candidate is confirmed by comparing the slot's key, so a
//!   stale or reused lane can cost a wasted compare, never a wrong answer.
//!
//! Growing the table (weighted and unbounded shards only) builds a new one and
//! swaps it in; the shard brackets that with its resize sequence.
//!
//! The module's parts: `chunk` (the 64-byte chunk, its tag matching, the
//! chunk array's allocation), `write` (insert, replace, remove and the
//! overflow and displacement bookkeeping), `refill` (moving displaced
//! entries back towards home) and `check` (the table's invariants, for
//! tests); lookups and the table's sizing are here.

use super::cold;
use super::slab::NIL;
use crate::shim::Ordering;
use chunk::{Chunks, matches};

/// The table's invariants (tests and fuzzing).
mod check;
/// The chunk layout, tag matching, the chunk array.
mod chunk;
/// Displaced entries pulled back towards home.
mod refill;
#[cfg(test)]
mod tests;
/// Insert, replace, remove; overflow counts and displacements.
mod write;

/// Lanes per chunk.
pub(crate) const LANES: usize = 12;
/// A table holds at most this many entries per chunk on average (75% of
/// the lanes, as `LOAD_NUM / LOAD_DEN`) before it must grow: past that the
/// share of keys displaced from their home chunk climbs quickly (simulated
/// with churn and refills: 1.05 / 1.34 chunks per hit / miss at 75%,
/// 1.08 / 1.69 at 80%).
const LOAD_NUM: usize = 9;
const LOAD_DEN: usize = 1;
/// An overflow count that reached this value never changes again.
const SATURATED: u64 = 0xFF;
/// Bit offset of the overflow count in `Chunk::high`.
const OVERFLOW_SHIFT: u32 = 32;
/// Bit offset of the lanes' displacements in `Chunk::high` (2 bits a lane).
const DISPLACEMENT_SHIFT: u32 = 40;
/// The displacement recorded for entries 3 or more chunks from home (such
/// entries are not moved by refills: their exact distance is unknown).
const FAR: u64 = 3;
/// Bits per lane in a position: `chunk << LANE_BITS | lane`.
const LANE_BITS: u32 = 4;
/// The most chunks a table can have (positions are `u32`).
const MAX_CHUNKS: usize = 1 << (32 - LANE_BITS);

/// The index's mix of a key's hash. The index reads two different parts
/// of it (the home chunk from the top 32 bits, the tag from bits 24..32),
/// and a hasher with weak bits there (an identity hash of small integers,
/// say) would otherwise put every key in one chunk with one tag. The cache
/// picks the shard from it too (`store::shard_of`: one multiply for both).
/// A multiply by an odd constant spreads the low bits upwards; it is a
/// bijection, so keys with distinct hashes keep distinct mixes.
#[inline]
pub(crate) fn mix(hash: u64) -> u64 {
    hash.wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// The inverse (mod 2^64) of [`mix`]'s multiplier: a hash of `m * UNMIX`
/// mixes to `m`, so tests can choose the home chunk and the tag directly.
#[cfg(test)]
pub(crate) const UNMIX: u64 = {
    let a = 0x9E37_79B9_7F4A_7C15u64;
    // Newton's iteration for the inverse of an odd number mod 2^64.
    let mut x = a;
    let mut i = 0;
    while i < 6 {
        x = x.wrapping_mul(2u64.wrapping_sub(a.wrapping_mul(x)));
        i += 1;
    }
    x
};

/// The tag of `hash`: a byte of its mix, never 0 (the empty mark).
#[inline]
pub(crate) fn tag(hash: u64) -> u8 {
    wide_tag(hash) as u8
}

/// [`tag`] in a `u32` (what [`matches`] takes: the lookup then needs no
/// zero-extension before it spreads the tag over the lanes).
#[inline]
fn wide_tag(hash: u64) -> u32 {
    ((mix(hash) as u32) >> 24).max(1)
}

/// A slot's place in the table.
#[inline]
fn position(chunk: usize, lane: usize) -> u32 {
    ((chunk as u32) << LANE_BITS) | lane as u32
}

#[inline]
fn split(pos: u32) -> (usize, usize) {
    (
        (pos >> LANE_BITS) as usize,
        (pos & ((1 << LANE_BITS) - 1)) as usize,
    )
}

/// The table.
pub(crate) struct Index {
    chunks: Chunks,
}

impl Index {
    /// A table with room for `entries` entries without growing.
    pub(crate) fn for_entries(entries: usize) -> Self {
        let chunks = entries
            .saturating_mul(LOAD_DEN)
            .div_ceil(LOAD_NUM)
            .clamp(1, MAX_CHUNKS);
        Index {
            chunks: Chunks::new(chunks),
        }
    }

    /// Whether `entries` entries fit without growing.
    #[inline]
    pub(crate) fn has_room(&self, entries: usize) -> bool {
        entries <= self.chunks.len() * LOAD_NUM / LOAD_DEN
    }

    /// Whether the table is as large as it can be.
    pub(crate) fn at_max(&self) -> bool {
        self.chunks.len() >= MAX_CHUNKS
    }

    /// The chunk a probe for `hash` starts at: the mix's top 32 bits scaled
    /// onto the chunk count (any count works, so tables need not be powers
    /// of two).
    #[inline]
    fn home(&self, hash: u64) -> usize {
        (((mix(hash) >> 32) * self.chunks.len() as u64) >> 32) as usize
    }

    #[inline]
    fn next(&self, chunk: usize) -> usize {
        if chunk + 1 == self.chunks.len() {
            0
        } else {
            chunk + 1
        }
    }

    /// Probes for `hash`, calling `hit(position, slot index)` for each lane
    /// whose tag matches, in probe order, until it returns `Some`.
    ///
    /// Lock-free. `hit` must confirm the candidate (compare the slot's key):
    /// the index only narrows the search.
    ///
    /// The home chunk is probed here, inlined into the caller; the chunks
    /// past it (a displaced key, or a miss behind an overflow: ~5% of hits)
    /// in [`find_on`](Self::find_on), out of line, so a hit in its home
    /// chunk keeps no probe state (chunk count left, next chunk) live.
    #[inline(always)]
    pub(crate) fn find<R>(
        &self,
        hash: u64,
        mut hit: impl FnMut(u32, u32) -> Option<R>,
    ) -> Option<R> {
        let tag = wide_tag(hash);
        let at = self.home(hash);
        match self.probe(at, tag, &mut hit) {
            Probed::Found(found) => Some(found),
            Probed::End => None,
            Probed::Overflowed => {
                cold();
                self.find_on(at, tag, hit)
            }
        }
    }

    /// The chunks after `home`, for [`find`](Self::find).
    #[inline(always)]
    fn find_on<R>(
        &self,
        home: usize,
        tag: u32,
        mut hit: impl FnMut(u32, u32) -> Option<R>,
    ) -> Option<R> {
        let mut at = home;
        // Each other chunk at most once (`home` was probed).
        for _ in 1..self.chunks.len() {
            at = self.next(at);
            match self.probe(at, tag, &mut hit) {
                Probed::Found(found) => return Some(found),
                Probed::End => return None,
                Probed::Overflowed => {}
            }
        }
        None
    }

    /// Probes chunk `at` for `tag`: `hit` on each matching lane, in lane
    /// order, until it returns `Some`.
    #[inline(always)]
    fn probe<R>(
        &self,
        at: usize,
        tag: u32,
        hit: &mut impl FnMut(u32, u32) -> Option<R>,
    ) -> Probed<R> {
        debug_assert!(at < self.chunks.len());
        // SAFETY: `at < len`: `home` scales a 32-bit value by `len >= 1`
        // and keeps the top 32 bits of the product, which is below `len`,
        // and `next` wraps to 0 at `len`. (Spares the lookup a bounds check
        // per chunk.)
        let chunk = unsafe { self.chunks.get_unchecked(at) };
        // Acquire: pairs with the Release store of a tag word, so the
        // lane's index and the slot it names are visible (module docs).
        let low = chunk.low.load(Ordering::Acquire);
        let high = chunk.high.load(Ordering::Acquire);
        let mut lanes = matches(low, high, tag);
        while lanes != 0 {
            let lane = lanes.trailing_zeros() as usize;
            // Acquire: a replacement publishes a new slot with this store.
            let idx = chunk.slots[lane].load(Ordering::Acquire);
            // Never NIL: a lane's index is stored (not NIL) before its
            // tag is first set, and only ever replaced by another slot's
            // index; a removal clears the tag and leaves the index.
            debug_assert_ne!(idx, NIL, "a tagged lane without a slot");
            if let Some(found) = hit(position(at, lane), idx) {
                return Probed::Found(found);
            }
            // A false candidate (another key with the same tag): about one
            // hit in 250.
            cold();
            lanes &= lanes - 1;
        }
        if (high >> OVERFLOW_SHIFT) & SATURATED == 0 {
            Probed::End
        } else {
            Probed::Overflowed
        }
    }
}

/// What probing one chunk gave.
enum Probed<R> {
    /// `hit` returned this.
    Found(R),
    /// No key for the tag is in the table past this chunk.
    End,
    /// Keys overflowed past this chunk: probe on.
    Overflowed,
}
