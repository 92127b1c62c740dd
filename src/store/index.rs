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

use super::slab::NIL;
use crate::shim::{AtomicU32, AtomicU64, Ordering};

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
/// The top bits of the four tag bytes of `Chunk::high` (lanes 8..12), as
/// [`zero_bytes`] marks them.
const HIGH_TAGS: u64 = 0x8080_8080;
/// Bits per lane in a position: `chunk << LANE_BITS | lane`.
const LANE_BITS: u32 = 4;
/// The most chunks a table can have (positions are `u32`).
const MAX_CHUNKS: usize = 1 << (32 - LANE_BITS);

const ONES: u64 = 0x0101_0101_0101_0101;
const LOW7: u64 = 0x7F7F_7F7F_7F7F_7F7F;

/// Marks (with the byte's top bit) exactly the zero bytes of `x`.
#[inline]
fn zero_bytes(x: u64) -> u64 {
    // Per byte: the low seven bits plus 0x7F carries into bit 7 iff they are
    // not all zero (and never out of the byte); or-ing `x` adds bit 7 itself.
    // What is left clear is a zero byte.
    !(((x & LOW7).wrapping_add(LOW7)) | x | LOW7)
}

/// The index's own mix of a key's hash. The index reads two different
/// parts of it (the home chunk from the top 32 bits, the tag from bits
/// 24..32), and a hasher with weak bits there (an identity hash of small
/// integers, say) would otherwise put every key in one chunk with one tag.
/// A multiply by an odd constant spreads the low bits upwards; it is a
/// bijection, so keys with distinct hashes keep distinct mixes.
#[inline]
fn mix(hash: u64) -> u64 {
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
    ((mix(hash) >> 24) as u8).max(1)
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

/// One cache line: 12 tags, an overflow count and 12 slot indices.
#[repr(C, align(64))]
struct Chunk {
    /// Tags of lanes 0..8, lane `i` in byte `i` (0 = empty).
    low: AtomicU64,
    /// Tags of lanes 8..12 in bytes 0..4; the overflow count in byte 4; the
    /// lanes' displacements (writer-only) in bits 40..64.
    high: AtomicU64,
    /// Slot index of each lane (meaningful while its tag is set).
    slots: [AtomicU32; LANES],
}

impl Chunk {
    #[cfg(shuttle)]
    fn new() -> Self {
        Chunk {
            low: AtomicU64::new(0),
            high: AtomicU64::new(0),
            slots: std::array::from_fn(|_| AtomicU32::new(NIL)),
        }
    }

    /// The tag word holding `lane` and the lane's bit offset in it.
    #[inline]
    fn tag_word(&self, lane: usize) -> (&AtomicU64, u32) {
        if lane < 8 {
            (&self.low, 8 * lane as u32)
        } else {
            (&self.high, 8 * (lane as u32 - 8))
        }
    }
}

/// Bit `i` set for each lane `i` whose tag is `tag`, given a chunk's two
/// tag words. On x86-64 one SSE2 compare does all twelve lanes.
#[cfg(target_arch = "x86_64")]
#[inline]
fn matches(low: u64, high: u64, tag: u8) -> u32 {
    use std::arch::x86_64::{_mm_cmpeq_epi8, _mm_movemask_epi8, _mm_set_epi64x, _mm_set1_epi8};
    // SAFETY: these intrinsics need SSE2, which every x86-64 CPU has (it is
    // in the target's baseline features); they touch no memory.
    let mask = unsafe {
        let bytes = _mm_set_epi64x(high as i64, low as i64);
        _mm_movemask_epi8(_mm_cmpeq_epi8(bytes, _mm_set1_epi8(tag as i8)))
    };
    mask as u32 & ((1 << LANES) - 1)
}

/// Bit `i` set for each lane `i` whose tag is `tag`.
#[cfg(not(target_arch = "x86_64"))]
#[inline]
fn matches(low: u64, high: u64, tag: u8) -> u32 {
    matches_swar(low, high, tag)
}

/// [`matches`] without SIMD: exact zero-byte tests on the XORed words.
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
#[inline]
fn matches_swar(low: u64, high: u64, tag: u8) -> u32 {
    let pattern = u64::from(tag) * ONES;
    // Gathers the top bit of each byte into the low byte (bit i from byte i).
    let gather =
        |marked: u64| (((marked >> 7) & ONES).wrapping_mul(0x0102_0408_1020_4080) >> 56) as u32;
    gather(zero_bytes(low ^ pattern)) | (gather(zero_bytes(high ^ pattern) & HIGH_TAGS) << 8)
}

/// The chunk array of one table: `len` empty chunks, 64-byte aligned.
///
/// Off shuttle it is allocated zeroed (all-zero bytes are empty chunks) with
/// 16-byte alignment and aligned to 64 by hand: the system allocator serves
/// zeroed requests of alignment up to 16 with `calloc`, whose fresh pages are
/// committed only as entries land in them, but zero-fills larger alignments
/// byte by byte, which would commit a large table up front.
#[cfg(not(shuttle))]
struct Chunks {
    /// The first chunk (64-byte aligned, inside the allocation at `raw`).
    first: std::ptr::NonNull<Chunk>,
    len: usize,
    /// The allocation, as the allocator returned it.
    raw: std::ptr::NonNull<u8>,
}

// SAFETY: `Chunks` owns its chunks as a `Box<[Chunk]>` would, and `Chunk` is
// made of atomics (Send + Sync); the raw pointers are never shared elsewhere.
#[cfg(not(shuttle))]
unsafe impl Send for Chunks {}
// SAFETY: as above; `&Chunks` only hands out `&[Chunk]`.
#[cfg(not(shuttle))]
unsafe impl Sync for Chunks {}

#[cfg(not(shuttle))]
impl Chunks {
    /// Slack for aligning a 16-aligned allocation up to 64.
    const SLACK: usize = 64 - 16;

    fn layout(len: usize) -> std::alloc::Layout {
        let size = len
            .checked_mul(std::mem::size_of::<Chunk>())
            .and_then(|bytes| bytes.checked_add(Self::SLACK))
            .expect("index size overflows usize");
        std::alloc::Layout::from_size_align(size, 16).expect("index layout")
    }

    fn new(len: usize) -> Self {
        assert!(len >= 1, "an index has at least one chunk");
        let layout = Self::layout(len);
        // SAFETY: the layout has non-zero size (at least one 64-byte chunk).
        let raw = unsafe { std::alloc::alloc_zeroed(layout) };
        let Some(raw) = std::ptr::NonNull::new(raw) else {
            std::alloc::handle_alloc_error(layout);
        };
        // 16-aligned, so at most SLACK bytes short of the next 64 boundary.
        let offset = (64 - (raw.as_ptr() as usize % 64)) % 64;
        // SAFETY: `offset <= SLACK`, and the allocation has `SLACK` bytes
        // beyond the `len` chunks, so the aligned chunks stay inside it.
        let first = unsafe { raw.add(offset) }.cast::<Chunk>();
        Chunks { first, len, raw }
    }
}

#[cfg(not(shuttle))]
impl std::ops::Deref for Chunks {
    type Target = [Chunk];

    #[inline]
    fn deref(&self) -> &[Chunk] {
        // SAFETY: `first` points at `len` chunks inside a live, zero-filled
        // allocation this value owns; all-zero bytes are a valid `Chunk`
        // (atomics of 0: no tags, no overflow, every index NIL), and they are
        // only ever changed through the atomics.
        unsafe { std::slice::from_raw_parts(self.first.as_ptr(), self.len) }
    }
}

#[cfg(not(shuttle))]
impl Drop for Chunks {
    fn drop(&mut self) {
        // SAFETY: `raw` came from `alloc_zeroed` with this very layout (same
        // `len`), and chunks need no drop of their own (plain atomics).
        unsafe { std::alloc::dealloc(self.raw.as_ptr(), Self::layout(self.len)) }
    }
}

/// The chunk array under shuttle, whose atomics are not plain integers.
#[cfg(shuttle)]
struct Chunks(Box<[Chunk]>);

#[cfg(shuttle)]
impl Chunks {
    fn new(len: usize) -> Self {
        Chunks((0..len).map(|_| Chunk::new()).collect())
    }
}

#[cfg(shuttle)]
impl std::ops::Deref for Chunks {
    type Target = [Chunk];

    fn deref(&self) -> &[Chunk] {
        &self.0
    }
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
    #[inline(always)]
    pub(crate) fn find<R>(
        &self,
        hash: u64,
        mut hit: impl FnMut(u32, u32) -> Option<R>,
    ) -> Option<R> {
        let tag = tag(hash);
        let mut at = self.home(hash);
        // Chunks left to probe. A table has at least one chunk (`Chunks::new`
        // asserts it), so the first probe needs no test: the loop tests at
        // its end.
        let mut left = self.chunks.len();
        loop {
            debug_assert!(at < self.chunks.len());
            // SAFETY: `at < len`: `home` scales a 32-bit value by `len >= 1`
            // and keeps the top 32 bits of the product, which is below
            // `len`, and `next` wraps to 0 at `len`. (Spares the lookup a
            // bounds check per chunk.)
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
                    return Some(found);
                }
                lanes &= lanes - 1;
            }
            left -= 1;
            if (high >> OVERFLOW_SHIFT) & SATURATED == 0 || left == 0 {
                return None;
            }
            at = self.next(at);
        }
    }

    /// Adds `idx` for `hash` (the key must not be in the table) and returns
    /// its position, or `None` when every lane is taken. Writer only.
    // Always inlined: outlined (as `#[inline]` left it), its call cost ~15
    // instructions of an evicting insert's ~900 (callgrind).
    #[inline(always)]
    pub(crate) fn insert(&self, hash: u64, idx: u32) -> Option<u32> {
        let home = self.home(hash);
        let mut at = home;
        for _ in 0..self.chunks.len() {
            let chunk = &self.chunks[at];
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
            self.publish(at, lane, idx, tag(hash), displacement);
            return Some(position(at, lane));
        }
        None
    }

    /// Fills the free `lane` of chunk `at`. Writer only.
    #[inline]
    fn publish(&self, at: usize, lane: usize, idx: u32, tag: u8, displacement: u64) {
        let chunk = &self.chunks[at];
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
    fn clear(&self, at: usize, lane: usize) {
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
    #[inline]
    pub(crate) fn replace(&self, pos: u32, idx: u32) {
        let (chunk, lane) = split(pos);
        // Release: readers that load this index see the new slot filled.
        self.chunks[chunk].slots[lane].store(idx, Ordering::Release);
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
    #[inline]
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

    /// The recorded displacement of a lane.
    #[inline]
    fn displacement(&self, at: usize, lane: usize) -> u64 {
        (self.chunks[at].high.load(Ordering::Relaxed) >> (DISPLACEMENT_SHIFT + 2 * lane as u32))
            & FAR
    }

    /// A chunk's overflow count.
    #[inline]
    fn overflow(&self, at: usize) -> u64 {
        (self.chunks[at].high.load(Ordering::Relaxed) >> OVERFLOW_SHIFT) & SATURATED
    }

    /// Adjusts a chunk's overflow count, leaving a saturated one alone and
    /// never going below 0.
    #[inline]
    fn add_overflow(&self, chunk: usize, delta: i32) {
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

    /// Every `(position, slot index)` in the table. Writer only.
    pub(crate) fn entries(&self) -> impl Iterator<Item = (u32, u32)> + '_ {
        self.chunks.iter().enumerate().flat_map(|(c, chunk)| {
            let low = chunk.low.load(Ordering::Relaxed);
            let high = chunk.high.load(Ordering::Relaxed);
            (0..LANES).filter_map(move |lane| {
                let (word, shift) = if lane < 8 {
                    (low, 8 * lane)
                } else {
                    (high, 8 * (lane - 8))
                };
                ((word >> shift) & 0xFF != 0)
                    .then(|| (position(c, lane), chunk.slots[lane].load(Ordering::Relaxed)))
            })
        })
    }

    /// Checks the table against the hashes of its entries: tags match, every
    /// entry is reachable from its home, and each overflow count equals the
    /// number of entries probing past its chunk (or is saturated). For tests.
    pub(crate) fn check(&self, hash_of: impl Fn(u32) -> u64) -> Result<(), String> {
        let n = self.chunks.len();
        let mut passing = vec![0u64; n];
        let mut seen = std::collections::HashSet::new();
        for (pos, idx) in self.entries() {
            if !seen.insert(idx) {
                return Err(format!("slot {idx} is in the index twice"));
            }
            let hash = hash_of(idx);
            let (at, lane) = split(pos);
            let (word, shift) = self.chunks[at].tag_word(lane);
            let stored = (word.load(Ordering::Relaxed) >> shift) as u8;
            if stored != tag(hash) {
                return Err(format!(
                    "slot {idx} at {pos}: tag {stored}, hash says {}",
                    tag(hash)
                ));
            }
            let mut c = self.home(hash);
            let mut steps = 0;
            while c != at {
                passing[c] += 1;
                c = self.next(c);
                steps += 1;
                if steps > n {
                    return Err(format!("slot {idx} unreachable from its home"));
                }
            }
            let recorded = self.displacement(at, lane);
            if recorded != (steps as u64).min(FAR) {
                return Err(format!(
                    "slot {idx}: displacement {recorded}, actually {steps}"
                ));
            }
            let found = self.find(hash, |p, i| (i == idx).then_some(p));
            if found != Some(pos) {
                return Err(format!(
                    "slot {idx} at {pos} not found by a lookup ({found:?})"
                ));
            }
        }
        for (c, chunk) in self.chunks.iter().enumerate() {
            let (low, high) = (
                chunk.low.load(Ordering::Relaxed),
                chunk.high.load(Ordering::Relaxed),
            );
            for lane in 0..LANES {
                let tagged = if lane < 8 {
                    (low >> (8 * lane)) & 0xFF
                } else {
                    (high >> (8 * (lane - 8))) & 0xFF
                } != 0;
                if !tagged && self.displacement(c, lane) != 0 {
                    return Err(format!("chunk {c} lane {lane}: empty with a displacement"));
                }
                if tagged && chunk.slots[lane].load(Ordering::Relaxed) == NIL {
                    return Err(format!("chunk {c} lane {lane}: tagged with no slot"));
                }
            }
            let count = (chunk.high.load(Ordering::Relaxed) >> OVERFLOW_SHIFT) & SATURATED;
            if count != passing[c] && count != SATURATED {
                return Err(format!(
                    "chunk {c}: overflow {count}, {} entries pass it",
                    passing[c]
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// Removes `idx` as the shard does (refilling), keeping `placed` current.
    fn remove(index: &Index, placed: &mut HashMap<u32, (u64, u32)>, idx: u32) {
        let (hash, pos) = placed.remove(&idx).unwrap();
        if index.remove(pos, || hash) {
            index.refill(pos, |moved, to| placed.get_mut(&moved).unwrap().1 = to);
        }
    }

    /// A hash whose home chunk (of `chunks`) is `home` and whose tag is `tag`.
    fn hash_for(home: usize, chunks: usize, tag: u8, salt: u64) -> u64 {
        // The home is (mix >> 32) * chunks >> 32: pick the mix's top half
        // inside `home`'s range, its tag byte, and salt in the low bits.
        let top = ((home as u64) << 32).div_ceil(chunks as u64);
        let mixed = (top << 32) | (u64::from(tag) << 24) | (salt & 0xFF_FFFF);
        mixed.wrapping_mul(UNMIX)
    }

    #[test]
    fn hash_for_inverts_the_mix() {
        assert_eq!(mix(1u64.wrapping_mul(UNMIX)), 1);
        let h = hash_for(3, 7, 0x42, 9);
        assert_eq!(tag(h), 0x42);
    }

    #[test]
    fn an_identity_hash_of_small_integers_spreads() {
        let index = Index::for_entries(10_000);
        let n = index.chunks.len();
        let mut per_chunk = vec![0usize; n];
        let mut tags = std::collections::HashSet::new();
        for k in 0..10_000u64 {
            per_chunk[index.home(k)] += 1;
            tags.insert(tag(k));
        }
        let fullest = per_chunk.iter().max().copied().unwrap_or(0);
        assert!(
            fullest <= 2 * LANES,
            "a chunk is home to {fullest} of 10,000 keys"
        );
        assert!(tags.len() > 200, "only {} distinct tags", tags.len());
    }

    #[test]
    fn zero_bytes_marks_exactly_the_zero_bytes() {
        for byte in 0..=255u64 {
            for at in 0..8 {
                let filler = 0x11u64 * ONES;
                let x = (filler & !(0xFF << (8 * at))) | (byte << (8 * at));
                let marked = zero_bytes(x);
                let expect = if byte == 0 { 0x80 << (8 * at) } else { 0 };
                assert_eq!(marked, expect, "byte {byte:#x} at {at}");
            }
        }
        // A zero byte next to a 0x01 byte (the classic false positive of the
        // cheaper test) must not mark the 0x01.
        assert_eq!(zero_bytes(0x1111_1111_1111_0100), 0x80);
        assert_eq!(zero_bytes(0x8000_0000_0000_0000), 0x0080_8080_8080_8080);
        assert_eq!(zero_bytes(0x0101_0101_0101_0101), 0);
    }

    #[test]
    fn matches_finds_exactly_the_equal_lanes() {
        let mut rng = 0x1234_5678_9ABC_DEF0u64;
        for _ in 0..10_000 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let tags: [u8; LANES] = std::array::from_fn(|i| ((rng >> (5 * i)) & 3) as u8);
            let low = (0..8).fold(0u64, |w, i| w | u64::from(tags[i]) << (8 * i));
            // Bytes past the four high tags hold other data: never matched.
            let high = (0..4).fold(rng & !0xFFFF_FFFF, |w, i| {
                w | u64::from(tags[8 + i]) << (8 * i)
            });
            for tag in 1..=3u8 {
                let expect = (0..LANES)
                    .filter(|&i| tags[i] == tag)
                    .fold(0u32, |m, i| m | 1 << i);
                assert_eq!(matches(low, high, tag), expect, "tags {tags:?}, tag {tag}");
                assert_eq!(
                    matches_swar(low, high, tag),
                    expect,
                    "SWAR: tags {tags:?}, tag {tag}"
                );
            }
        }
    }

    #[test]
    fn tags_are_never_zero() {
        // A hash whose mix has a zero tag byte still gets tag 1.
        assert_eq!(tag(0), 1);
        assert_eq!(tag(hash_for(0, 1, 0, 5)), 1);
        assert_eq!(tag(hash_for(0, 1, 0xFF, 5)), 0xFF);
    }

    #[test]
    fn home_spreads_over_any_chunk_count() {
        for chunks in [1usize, 2, 3, 7, 1303] {
            let index = Index::for_entries(chunks * LOAD_NUM / LOAD_DEN);
            let n = index.chunks.len();
            for home in 0..n {
                assert_eq!(index.home(hash_for(home, n, 9, 0)), home, "{chunks} chunks");
            }
        }
    }

    #[test]
    fn insert_find_replace_remove() {
        let index = Index::for_entries(100);
        let mut placed = HashMap::new();
        for i in 1..=90u32 {
            let hash = u64::from(i).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            let pos = index.insert(hash, i).expect("room");
            placed.insert(i, (hash, pos));
        }
        index.check(|idx| placed[&idx].0).unwrap();
        for (&i, &(hash, pos)) in &placed {
            assert_eq!(
                index.find(hash, |p, idx| (idx == i).then_some(p)),
                Some(pos)
            );
        }
        // Replacing keeps the position and hands out the new slot.
        let (hash, pos) = placed.remove(&7).unwrap();
        index.replace(pos, 1007);
        placed.insert(1007, (hash, pos));
        assert_eq!(
            index.find(hash, |_, idx| (idx == 1007).then_some(())),
            Some(())
        );
        assert_eq!(index.find(hash, |_, idx| (idx == 7).then_some(())), None);
        index.check(|idx| placed[&idx].0).unwrap();
        // Removing every other entry leaves the rest findable.
        let evens: Vec<u32> = placed.keys().copied().filter(|i| i % 2 == 0).collect();
        for i in evens {
            let hash = placed[&i].0;
            remove(&index, &mut placed, i);
            assert_eq!(index.find(hash, |_, idx| (idx == i).then_some(())), None);
        }
        index.check(|idx| placed[&idx].0).unwrap();
        assert_eq!(index.entries().count(), placed.len());
    }

    #[test]
    fn full_home_chunks_overflow_and_counts_come_back() {
        // Five chunks; 30 keys all homed in chunk 3 fill it, spill into 4,
        // wrap to 0, and so on.
        let index = Index::for_entries(5 * LOAD_NUM / LOAD_DEN);
        let n = index.chunks.len();
        assert_eq!(n, 5);
        let mut placed = HashMap::new();
        for i in 1..=30u32 {
            let hash = hash_for(3, n, 0x42, u64::from(i));
            let pos = index.insert(hash, i).expect("room");
            placed.insert(i, (hash, pos));
        }
        index.check(|idx| placed[&idx].0).unwrap();
        let chunk_of = |pos: u32| split(pos).0;
        assert_eq!(
            placed.values().filter(|(_, p)| chunk_of(*p) == 3).count(),
            LANES
        );
        assert_eq!(
            placed.values().filter(|(_, p)| chunk_of(*p) == 0).count(),
            30 - 2 * LANES
        );
        // All share one tag, so every lookup checks candidates in order.
        for (&i, &(hash, _)) in &placed {
            assert!(
                index
                    .find(hash, |_, idx| (idx == i).then_some(()))
                    .is_some()
            );
        }
        // A miss with the same home walks to the end of the overflow run.
        let mut visited = 0;
        let miss = index.find(hash_for(3, n, 0x42, 999), |_, _| {
            visited += 1;
            None::<()>
        });
        assert_eq!((miss, visited), (None, 30));
        // Remove the wrapped ones first, then the rest: counts return to 0.
        let mut order: Vec<u32> = placed.keys().copied().collect();
        order.sort_by_key(|i| {
            std::cmp::Reverse(chunk_of(placed[i].1) + 10 * usize::from(chunk_of(placed[i].1) == 0))
        });
        for i in order {
            remove(&index, &mut placed, i);
            index.check(|idx| placed[&idx].0).unwrap();
        }
        for c in 0..n {
            assert_eq!(index.overflow(c), 0);
        }
        // A key homed in chunk 3 now needs a single probe to miss.
        let mut visited = 0;
        index.find(hash_for(3, n, 0x42, 999), |_, _| {
            visited += 1;
            None::<()>
        });
        assert_eq!(visited, 0);
    }

    #[test]
    fn a_full_table_refuses_and_a_saturated_count_stays() {
        let index = Index::for_entries(1);
        assert_eq!(index.chunks.len(), 1);
        for i in 1..=LANES as u32 {
            assert!(index.insert(u64::from(i) << 40, i).is_some());
        }
        assert_eq!(index.insert(99 << 40, 99), None);

        let index = Index::for_entries(2 * LOAD_NUM / LOAD_DEN);
        for _ in 0..300 {
            index.add_overflow(0, 1);
        }
        index.add_overflow(0, -1);
        assert_eq!(index.overflow(0), SATURATED);
        // Never below zero either.
        index.add_overflow(1, -1);
        assert_eq!(index.overflow(1), 0);
    }

    #[test]
    fn room_follows_the_load_limit() {
        let index = Index::for_entries(1000);
        assert!(index.has_room(1000));
        let chunks = index.chunks.len();
        assert!(!index.has_room(chunks * LANES));
        assert!(chunks * LOAD_NUM / LOAD_DEN >= 1000);
    }

    #[test]
    fn a_removal_pulls_displaced_entries_back_home() {
        let index = Index::for_entries(4 * LOAD_NUM / LOAD_DEN);
        let n = index.chunks.len();
        let mut placed = HashMap::new();
        // 12 keys fill chunk 1; 6 more overflow into chunk 2.
        for i in 1..=18u32 {
            let hash = hash_for(1, n, 0x10 + i as u8, u64::from(i));
            placed.insert(i, (hash, index.insert(hash, i).unwrap()));
        }
        assert_eq!(index.overflow(1), 6);
        // Removing three home entries pulls three displaced ones back.
        for i in [2, 5, 9] {
            remove(&index, &mut placed, i);
            index.check(|idx| placed[&idx].0).unwrap();
        }
        assert_eq!(index.overflow(1), 3);
        let home = placed.values().filter(|(_, p)| split(*p).0 == 1).count();
        assert_eq!(home, LANES);
        // Once none is displaced, a miss homed in chunk 1 stops there.
        for i in 13..=18 {
            if placed.get(&i).is_some_and(|(_, p)| split(*p).0 == 2) {
                remove(&index, &mut placed, i);
            }
        }
        assert_eq!(index.overflow(1), 0);
        index.check(|idx| placed[&idx].0).unwrap();
        let mut visited = 0;
        index.find(hash_for(1, n, 0x10, 999), |_, _| {
            visited += 1;
            None::<()>
        });
        assert_eq!(visited, 0, "the probe stops at the home chunk");
    }
}
