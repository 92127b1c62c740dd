//! One chunk of the table (a cache line of tags, an overflow count and slot
//! indices), matching a tag against all its lanes at once, and the chunk
//! array's allocation.

use super::LANES;
use crate::shim::{AtomicU32, AtomicU64};
#[cfg(shuttle)]
use crate::store::slab::NIL;

/// The top bits of the four tag bytes of `Chunk::high` (lanes 8..12), as
/// [`zero_bytes`] marks them.
const HIGH_TAGS: u64 = 0x8080_8080;

pub(super) const ONES: u64 = 0x0101_0101_0101_0101;
const LOW7: u64 = 0x7F7F_7F7F_7F7F_7F7F;

/// Marks (with the byte's top bit) exactly the zero bytes of `x`.
#[inline]
pub(super) fn zero_bytes(x: u64) -> u64 {
    // Per byte: the low seven bits plus 0x7F carries into bit 7 iff they are
    // not all zero (and never out of the byte); or-ing `x` adds bit 7 itself.
    // What is left clear is a zero byte.
    !(((x & LOW7).wrapping_add(LOW7)) | x | LOW7)
}

/// One cache line: 12 tags, an overflow count and 12 slot indices.
#[repr(C, align(64))]
pub(super) struct Chunk {
    /// Tags of lanes 0..8, lane `i` in byte `i` (0 = empty).
    pub(super) low: AtomicU64,
    /// Tags of lanes 8..12 in bytes 0..4; the overflow count in byte 4; the
    /// lanes' displacements (writer-only) in bits 40..64.
    pub(super) high: AtomicU64,
    /// Slot index of each lane (meaningful while its tag is set).
    pub(super) slots: [AtomicU32; LANES],
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
    pub(super) fn tag_word(&self, lane: usize) -> (&AtomicU64, u32) {
        if lane < 8 {
            (&self.low, 8 * lane as u32)
        } else {
            (&self.high, 8 * (lane as u32 - 8))
        }
    }
}

/// Bit `i` set for each lane `i` whose tag is `tag` (below 256: a tag byte
/// widened, which spares the lookup a zero-extension), given a chunk's two
/// tag words. On x86-64 one SSE2 compare does all twelve lanes.
#[cfg(target_arch = "x86_64")]
#[inline]
pub(super) fn matches(low: u64, high: u64, tag: u32) -> u32 {
    use std::arch::x86_64::{_mm_cmpeq_epi8, _mm_movemask_epi8, _mm_set_epi64x, _mm_set1_epi32};
    // The tag in all four bytes of a word, then in all four words: one
    // multiply and a dword shuffle (a byte broadcast takes SSE2 three
    // shuffles).
    debug_assert!(tag <= 0xFF, "a tag is a byte");
    let pattern = (tag * 0x0101_0101) as i32;
    // SAFETY: these intrinsics need SSE2, which every x86-64 CPU has (it is
    // in the target's baseline features); they touch no memory.
    let mask = unsafe {
        let bytes = _mm_set_epi64x(high as i64, low as i64);
        _mm_movemask_epi8(_mm_cmpeq_epi8(bytes, _mm_set1_epi32(pattern)))
    };
    mask as u32 & ((1 << LANES) - 1)
}

/// Bit `i` set for each lane `i` whose tag is `tag` (below 256).
#[cfg(not(target_arch = "x86_64"))]
#[inline]
pub(super) fn matches(low: u64, high: u64, tag: u32) -> u32 {
    debug_assert!(tag <= 0xFF, "a tag is a byte");
    matches_swar(low, high, tag as u8)
}

/// [`matches`] without SIMD: exact zero-byte tests on the XORed words.
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
#[inline]
pub(super) fn matches_swar(low: u64, high: u64, tag: u8) -> u32 {
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
pub(super) struct Chunks {
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

    pub(super) fn new(len: usize) -> Self {
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
pub(super) struct Chunks(Box<[Chunk]>);

#[cfg(shuttle)]
impl Chunks {
    pub(super) fn new(len: usize) -> Self {
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
