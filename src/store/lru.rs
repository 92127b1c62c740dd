//! The segmented LRU policy of one shard: memcached's HOT / WARM / COLD,
//! with S3-FIFO's probation and ghost where measurement said so.
//!
//! * New entries enter HOT, a small probation segment (3% of the budget) —
//!   or WARM directly when the shard recently evicted the same key from
//!   probation (the shard's ghost table), or while the shard is filling and
//!   WARM is below its cap (so a loop over more keys than fit keeps a part
//!   of them instead of cycling everything through HOT; see `Lru::insert`).
//! * A hit never moves anything: it only bumps the entry's use count (two
//!   bits in the slot, memcached's ACTIVE bit widened; no lock, and no write
//!   once the count is full). Entries move only at list tails, under the lock,
//!   and each pass over a tail spends one use:
//!   - HOT over its share: a used tail is promoted to WARM, an unused one is
//!     evicted (so one-hit entries never push proven ones out);
//!   - WARM over its cap (90%): a used tail goes back to WARM's head, an
//!     unused one is demoted to COLD;
//!   - otherwise eviction takes COLD's tail, rescuing it to WARM if used (as
//!     memcached does).
//! * memcached's own caps (HOT 20%, WARM 40%) lost 3–4 points of hit ratio to
//!   quick_cache and moka on Zipf streams; `HOT_PERCENT` and `WARM_PERCENT`
//!   record the measurement.
//!
//! The lists link slot indices through a writer-only side array, so this module
//! is plain safe code but for one thing: links of indices the lists already
//! hold are read and written without a bounds check (see `Lru::held`), and so
//! are the side arrays' entries of the slots the caller promises room was
//! made for (`Lru::pos`, `Lru::link_mut`: the unsafe methods); the use counts
//! are reached through [`UseCounts`].

use super::slab::NIL;

/// HOT's and WARM's shares of the budget, in percent. memcached uses 20 and
/// 40; measured on Zipf streams (s = 0.99 and 1.2, 1M keys, 100k entries) a
/// small probation segment and a large WARM keep one-hit entries from pushing
/// out proven ones: 20/40 gave hit ratios 0.785 / 0.955, 3/90 gives
/// 0.826 / 0.964 (quick_cache 0.822 / 0.971, moka 0.824 / 0.966 on the same
/// streams). COLD holds the rest: entries demoted from WARM, on a last chance.
const HOT_PERCENT: u128 = 3;
const WARM_PERCENT: u128 = 90;

/// `percent` of `budget`, at least 1.
fn share(budget: u64, percent: u128) -> u64 {
    ((u128::from(budget) * percent / 100) as u64).max(1)
}

/// Segment numbers.
pub(crate) const HOT: u8 = 0;
pub(crate) const WARM: u8 = 1;
pub(crate) const COLD: u8 = 2;
/// Expired entries kept for `keep_expired` (fail-safe copies): invisible to
/// reads, the first evicted, oldest first.
pub(crate) const STALE: u8 = 3;

/// How many list moves one eviction may make before it evicts whatever is at
/// the tail, used or not. Keeps an insert's worst case bounded even while
/// readers keep using the entries it meets.
const MAX_MOVES: usize = 32;

/// Access to the entries' use counts, which live in the slots.
pub(crate) trait UseCounts {
    /// Takes one use off the entry's count and returns the count it had.
    fn decay(&self, idx: u32) -> u32;
}

/// Whether the entry was used since it last passed a tail (spending one use).
#[inline]
fn used(bits: &impl UseCounts, idx: u32) -> bool {
    bits.decay(idx) > 0
}

const SEG_SHIFT: u32 = 30;
const IDX_MASK: u32 = (1 << SEG_SHIFT) - 1;

/// Doubly-linked list links of one slot; the top two bits of `prev` hold the
/// segment, so indices are limited to 2^30 per shard.
#[derive(Clone, Copy, Default)]
struct Link {
    prev: u32,
    next: u32,
}

#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
struct Segment {
    head: u32,
    tail: u32,
    len: usize,
    /// Sum of the entries' weights: u128, so u64 weights cannot overflow it
    /// (an unbounded weighted cache takes any u64 weight). Kept only in a
    /// weighted shard: elsewhere every entry weighs 1, the sum is `len`.
    weight: u128,
}

/// A linked entry's place in the lists as [`Lru::linked`] read it: valid
/// until the lists change. (Stale, it would corrupt the lists, not memory:
/// every index a link names was held once, and `links` never shrinks.)
#[derive(Clone, Copy)]
pub(crate) struct Linked(Link);

impl Linked {
    /// The segment the entry is in.
    #[inline(always)]
    pub(crate) fn segment(self) -> u8 {
        (self.0.prev >> SEG_SHIFT) as u8
    }
}

/// HOT / WARM / COLD lists over one shard's slots.
#[cfg_attr(test, derive(Clone))]
pub(crate) struct Lru {
    links: Vec<Link>,
    /// Per-slot position in the shard's index: the writer's alone, as the
    /// links, so it costs no byte in the slot readers share. A side array
    /// of its own: in `Link` (12 bytes) every link's address took one more
    /// instruction (an evicting insert ~658 instructions, against ~630).
    positions: Vec<u32>,
    /// Per-slot weights; empty when every entry weighs 1 (count-bounded cache).
    weights: Vec<u64>,
    weighted: bool,
    segs: [Segment; 4],
    /// Sums over the segments, kept current so the bound check on every
    /// write reads two fields instead of adding three segments up (the
    /// weight, as the segments', only in a weighted shard).
    len: usize,
    weight: u128,
    hot_cap: u128,
    warm_cap: u128,
    /// The same caps in entries, from the entry bound: a weighted shard may
    /// be held by its entry count rather than its weight. In a shard that
    /// is not weighted, the lesser of the two caps (weight is count there).
    hot_len_cap: usize,
    warm_len_cap: usize,
    /// The weight budget and the entry bound.
    budget: u128,
    max_len: usize,
    /// Whether the shard has reached its bound since it was last empty: new
    /// entries fill WARM only before that (see [`Lru::insert`]).
    filled: bool,
}

/// The largest slot index the lists can hold.
pub(crate) const MAX_INDEX: u32 = IDX_MASK;

impl Lru {
    /// Lists for a shard whose weight budget is `budget` and entry bound
    /// `max_len` (for a count-bounded shard, the same number).
    pub(crate) fn new(budget: u64, max_len: usize, weighted: bool) -> Self {
        // At most max_len (< 2^64), so the cast back is exact.
        let len_share = |percent| ((max_len as u128 * percent / 100) as usize).max(1);
        // Unweighted, a weight cap is an entry cap: keep the stricter one
        // as the entry cap, and compare counts only.
        let cap = |percent| {
            let by_len = len_share(percent);
            if weighted {
                by_len
            } else {
                by_len.min(usize::try_from(share(budget, percent)).unwrap_or(usize::MAX))
            }
        };
        Lru {
            links: Vec::new(),
            positions: Vec::new(),
            weights: Vec::new(),
            weighted,
            segs: [Segment::default(); 4],
            len: 0,
            weight: 0,
            hot_cap: u128::from(share(budget, HOT_PERCENT)),
            warm_cap: u128::from(share(budget, WARM_PERCENT)),
            hot_len_cap: cap(HOT_PERCENT),
            warm_len_cap: cap(WARM_PERCENT),
            budget: u128::from(budget),
            max_len,
            filled: false,
        }
    }

    /// Whether HOT is over its share, by weight or by count.
    #[inline]
    fn hot_over(&self) -> bool {
        let s = &self.segs[HOT as usize];
        s.len > self.hot_len_cap || (self.weighted && s.weight > self.hot_cap)
    }

    /// Whether WARM is over its cap, by weight or by count.
    #[inline]
    fn warm_over(&self) -> bool {
        let s = &self.segs[WARM as usize];
        s.len > self.warm_len_cap || (self.weighted && s.weight > self.warm_cap)
    }

    /// The weight of segment `seg` (its length, when not weighted).
    #[inline]
    fn seg_weight(&self, seg: u8) -> u128 {
        let s = &self.segs[seg as usize];
        if self.weighted {
            s.weight
        } else {
            s.len as u128
        }
    }

    /// Makes room in the side arrays for slot `idx`.
    pub(crate) fn reserve_slot(&mut self, idx: u32, hint: usize) {
        let need = idx as usize + 1;
        if self.links.len() < need {
            if self.links.capacity() < need {
                // Grow to the slab's next chunk boundary at once (`hint`), not
                // by doubling, so the side array never overshoots the slab.
                self.links.reserve_exact(hint.max(need) - self.links.len());
                self.positions
                    .reserve_exact(hint.max(need) - self.positions.len());
                if self.weighted {
                    self.weights
                        .reserve_exact(hint.max(need) - self.weights.len());
                }
            }
            self.links.resize(need, Link::default());
            self.positions.resize(need, 0);
            if self.weighted {
                self.weights.resize(need, 0);
            }
        }
    }

    /// Number of entries in all lists.
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Total weight of all entries.
    #[inline]
    pub(crate) fn weight(&self) -> u128 {
        if self.weighted {
            self.weight
        } else {
            self.len as u128
        }
    }

    /// The weight recorded for `idx`.
    #[inline]
    pub(crate) fn weight_of(&self, idx: u32) -> u64 {
        if self.weighted {
            self.weights[idx as usize]
        } else {
            1
        }
    }

    /// Where the shard's index holds slot `idx` (as last set). Unchecked:
    /// a bounds check cost ~2 instructions per access, twice per eviction.
    ///
    /// # Safety
    /// `reserve_slot` made room for `idx` (every index the shard's slab
    /// handed out).
    #[inline]
    pub(crate) unsafe fn pos(&self, idx: u32) -> u32 {
        debug_assert!((idx as usize) < self.positions.len());
        // SAFETY: in bounds (the caller's obligation).
        unsafe { *self.positions.get_unchecked(idx as usize) }
    }

    /// Records where the shard's index holds slot `idx`.
    ///
    /// # Safety
    /// As for [`Lru::pos`].
    #[inline]
    pub(crate) unsafe fn set_pos(&mut self, idx: u32, pos: u32) {
        debug_assert!((idx as usize) < self.positions.len());
        // SAFETY: in bounds (the caller's obligation).
        unsafe { *self.positions.get_unchecked_mut(idx as usize) = pos };
    }

    /// The segment `idx` is in (meaningful only while it is linked).
    #[inline]
    pub(crate) fn segment_of(&self, idx: u32) -> u8 {
        (self.links[idx as usize].prev >> SEG_SHIFT) as u8
    }

    /// The place of `idx`, a linked entry, in the lists: read once by an
    /// eviction for both its segment (the ghost's test) and its removal
    /// ([`Lru::remove_linked`]). Read twice, the index's atomic stores in
    /// between kept the compiler from merging the two reads and their
    /// bounds checks (~5 instructions per evicting insert, callgrind).
    ///
    /// # Safety
    /// As for [`Lru::pos`].
    #[inline(always)]
    pub(crate) unsafe fn linked(&self, idx: u32) -> Linked {
        debug_assert!((idx as usize) < self.links.len());
        // SAFETY: in bounds (the caller's obligation): `reserve_slot`
        // resizes `links` with `positions`.
        Linked(unsafe { *self.links.get_unchecked(idx as usize) })
    }

    #[inline]
    fn prev(&self, idx: u32) -> u32 {
        self.links[idx as usize].prev & IDX_MASK
    }

    #[inline]
    fn next(&self, idx: u32) -> u32 {
        self.links[idx as usize].next
    }

    /// Sets the `prev` of `idx`, an index the lists hold (every caller
    /// passes a head or a neighbour: see [`Lru::held`]).
    #[inline]
    fn set_prev(&mut self, idx: u32, prev: u32) {
        let link = self.held_mut(idx);
        link.prev = (link.prev & !IDX_MASK) | prev;
    }

    /// The link of `idx`, an index the lists hold: a segment's head or
    /// tail, or a linked entry's `prev` or `next` (not NIL). Unchecked:
    /// the bounds checks on the links the policy follows were ~9
    /// instructions of an evicting insert and ~4 of a rewrite (callgrind).
    #[inline(always)]
    fn held(&self, idx: u32) -> &Link {
        debug_assert!((idx as usize) < self.links.len(), "{idx} is not held");
        // SAFETY: an index enters the lists only through `push_head`,
        // `push_tail` or `replace`, each of which first writes its link at
        // `idx`, in bounds: checked (`push_tail`), or an index
        // `reserve_slot` made room for (`link_mut`'s callers' obligation),
        // and `links` never shrinks (`reserve_slot` only grows it; nothing
        // else resizes it): so every index the lists hold is below
        // `links.len()`.
        unsafe { self.links.get_unchecked(idx as usize) }
    }

    /// [`Lru::held`], to write.
    #[inline(always)]
    fn held_mut(&mut self, idx: u32) -> &mut Link {
        debug_assert!((idx as usize) < self.links.len(), "{idx} is not held");
        // SAFETY: as in `held`.
        unsafe { self.links.get_unchecked_mut(idx as usize) }
    }

    /// The link of `idx`, to write before it enters the lists. Unchecked:
    /// once per insert of a new key and per rewrite, the bounds check was
    /// ~2 instructions of each (callgrind).
    ///
    /// # Safety
    /// As for [`Lru::pos`]: `reserve_slot` made room for `idx`.
    #[inline(always)]
    unsafe fn link_mut(&mut self, idx: u32) -> &mut Link {
        debug_assert!((idx as usize) < self.links.len());
        // SAFETY: in bounds (the caller's obligation).
        unsafe { self.links.get_unchecked_mut(idx as usize) }
    }

    /// Links `idx` at the head of `seg`.
    ///
    /// # Safety
    /// As for [`Lru::link_mut`].
    #[inline]
    unsafe fn push_head(&mut self, seg: u8, idx: u32, weight: u64) {
        // SAFETY: the caller's obligation.
        unsafe { self.push_head_as(seg, idx, weight, self.weighted) }
    }

    /// [`Lru::push_head`] in a shard that is `weighted` or not (the
    /// caller tested it, and passes a constant).
    ///
    /// # Safety
    /// As for [`Lru::link_mut`].
    #[inline(always)]
    unsafe fn push_head_as(&mut self, seg: u8, idx: u32, weight: u64, weighted: bool) {
        let old_head = self.segs[seg as usize].head;
        // SAFETY: the caller's obligation.
        *unsafe { self.link_mut(idx) } = Link {
            prev: (u32::from(seg) << SEG_SHIFT) | NIL,
            next: old_head,
        };
        if old_head != NIL {
            self.set_prev(old_head, idx);
        }
        let s = &mut self.segs[seg as usize];
        s.head = idx;
        if s.tail == NIL {
            s.tail = idx;
        }
        s.len += 1;
        self.len += 1;
        if weighted {
            s.weight += u128::from(weight);
            self.weight += u128::from(weight);
        }
    }

    /// Links `idx` at the tail of `seg`.
    fn push_tail(&mut self, seg: u8, idx: u32, weight: u64) {
        let old_tail = self.segs[seg as usize].tail;
        self.links[idx as usize] = Link {
            prev: (u32::from(seg) << SEG_SHIFT) | old_tail,
            next: NIL,
        };
        if old_tail != NIL {
            self.held_mut(old_tail).next = idx;
        }
        let s = &mut self.segs[seg as usize];
        s.tail = idx;
        if s.head == NIL {
            s.head = idx;
        }
        s.len += 1;
        self.len += 1;
        // Weight sums only where they bound (see `push_head`).
        if self.weighted {
            s.weight += u128::from(weight);
            self.weight += u128::from(weight);
        }
    }

    /// Unlinks `idx` from whatever segment it is in.
    #[inline]
    fn unlink(&mut self, idx: u32) -> (u8, u64) {
        let link = self.links[idx as usize];
        self.unlink_inlined(idx, link)
    }

    /// [`Lru::unlink`] of `idx`, whose link `link` the caller read,
    /// always inlined: for `remove_linked`, once per eviction, where the
    /// call cost ~4 instructions per evicting insert (676.9 -> 672.7,
    /// callgrind). The rarer callers keep the call.
    // One test of `weighted` for the weight and the sums, each way
    // specialized (two cost ~2 instructions more per eviction).
    #[inline(always)]
    fn unlink_inlined(&mut self, idx: u32, link: Link) -> (u8, u64) {
        if self.weighted {
            let weight = self.weights[idx as usize];
            self.unlink_as(link, weight, true)
        } else {
            self.unlink_as(link, 1, false)
        }
    }

    /// [`Lru::unlink_inlined`] of the entry whose link is `link` and
    /// weight `weight`, in a shard that is `weighted` or not (a constant in
    /// each caller).
    #[inline(always)]
    fn unlink_as(&mut self, link: Link, weight: u64, weighted: bool) -> (u8, u64) {
        let seg = (link.prev >> SEG_SHIFT) as u8;
        let (prev, next) = (link.prev & IDX_MASK, link.next);
        if prev != NIL {
            self.held_mut(prev).next = next;
        } else {
            self.segs[seg as usize].head = next;
        }
        if next != NIL {
            self.set_prev(next, prev);
        } else {
            self.segs[seg as usize].tail = prev;
        }
        let s = &mut self.segs[seg as usize];
        s.len -= 1;
        self.len -= 1;
        if weighted {
            s.weight -= u128::from(weight);
            self.weight -= u128::from(weight);
        }
        (seg, weight)
    }

    #[inline]
    fn move_to(&mut self, idx: u32, seg: u8) {
        let (_, weight) = self.unlink(idx);
        // SAFETY: `unlink` read its link checked, so `idx < links.len()`.
        unsafe { self.push_head(seg, idx, weight) };
    }

    /// Moves the tail of segment `from` (not empty) to the head of `to`:
    /// what `move_to` does with it, in fewer steps. Every move the policy
    /// makes is of a tail (promotions, WARM's bumps and demotions), and a
    /// tail has no next link to mend; a move within one segment (a bump) is
    /// a rotation, which changes no count or weight, and a move between two
    /// changes neither total.
    // Always inlined: every caller but one names both segments, which
    // leaves a few instructions of each move; outlined, the moves cost ~9
    // instructions more per evicting insert (672.7 -> 663.9, callgrind).
    #[inline(always)]
    fn move_tail(&mut self, from: u8, to: u8) {
        let idx = self.segs[from as usize].tail;
        debug_assert_ne!(idx, NIL, "move_tail of an empty segment");
        let prev = self.held(idx).prev & IDX_MASK;
        let head = self.segs[to as usize].head;
        if from == to {
            if head == idx {
                // Its only entry: already at the head.
                return;
            }
            // `prev` is not NIL: the segment has another entry, the head.
            self.held_mut(prev).next = NIL;
            self.segs[from as usize].tail = prev;
        } else {
            if prev != NIL {
                self.held_mut(prev).next = NIL;
            } else {
                self.segs[from as usize].head = NIL;
            }
            let weight = u128::from(self.weight_of(idx));
            let s = &mut self.segs[from as usize];
            s.tail = prev;
            s.len -= 1;
            let t = &mut self.segs[to as usize];
            t.len += 1;
            if t.tail == NIL {
                t.tail = idx;
            }
            if self.weighted {
                self.segs[from as usize].weight -= weight;
                self.segs[to as usize].weight += weight;
            }
        }
        *self.held_mut(idx) = Link {
            prev: (u32::from(to) << SEG_SHIFT) | NIL,
            next: head,
        };
        if head != NIL {
            self.set_prev(head, idx);
        }
        self.segs[to as usize].head = idx;
    }

    /// Adds a new entry: to WARM if `warm` (a returning key), or while the
    /// shard fills (from empty until it first reaches its bound) and WARM
    /// has room below its cap; else to HOT. Room made later by removals or
    /// expiry does not reopen WARM: new entries there would skip probation.
    ///
    /// Filling WARM first keeps a loop or a scan from flushing the whole
    /// cache (quick_cache admits to its protected ring while it has room):
    /// once the shard is full, new entries pass through HOT and WARM's
    /// entries stay until used ones are promoted over its cap. Measured
    /// (miss ratio, capacity 10% of the trace's keys): LIRS loop 100% ->
    /// 91.0%, scan 99.9% -> 91.3%, gli 95.7% -> 84.2%, cs 97.8% -> 92.4%
    /// (quick_cache 90.3 / 90.8 / 84.0 / 93.0). The cost: WARM starts with
    /// unproven entries, which leave only as used ones are promoted, so a
    /// drifting working set is followed more slowly: ARC P3 64.7% -> 70.1%
    /// (quick_cache 69.9%), Zipf hit ratios -0.15 / -0.09 points. Filling
    /// WARM only to half its cap landed halfway on every trace.
    // The common case inlined (a full shard, a key not seen lately: HOT),
    // the rest out of line: inlined whole it cost ~14 instructions more per
    // evicting insert than as a call; split, ~11 less (664.4 -> 653.2).
    ///
    /// # Safety
    /// As for [`Lru::pos`]: `reserve_slot` made room for `idx`.
    #[inline(always)]
    pub(crate) unsafe fn insert(&mut self, idx: u32, weight: u64, warm: bool) {
        if self.filled && !warm {
            // One test of `weighted` for the weight and the sums (two cost
            // ~2 instructions more per insert of a new key).
            if self.weighted {
                self.weights[idx as usize] = weight;
                // SAFETY: the caller's obligation.
                unsafe { self.push_head_as(HOT, idx, weight, true) };
            } else {
                // SAFETY: the caller's obligation.
                unsafe { self.push_head_as(HOT, idx, weight, false) };
            }
        } else {
            // SAFETY: the caller's obligation.
            unsafe { self.insert_filling(idx, weight, warm) };
        }
    }

    /// [`Lru::insert`] of a returning key, or while the shard fills.
    ///
    /// # Safety
    /// As for [`Lru::insert`].
    #[inline(never)]
    unsafe fn insert_filling(&mut self, idx: u32, weight: u64, warm: bool) {
        if self.weighted {
            self.weights[idx as usize] = weight;
        }
        let w = u128::from(weight);
        let filling = !self.filled
            && self.len < self.max_len
            && self.weight() + w <= self.budget
            && self.segs[WARM as usize].len < self.warm_len_cap
            && self.seg_weight(WARM) + w <= self.warm_cap;
        // SAFETY: the caller's obligation.
        unsafe { self.push_head(if warm || filling { WARM } else { HOT }, idx, weight) };
    }

    /// Removes an entry (explicit remove, expiry, or eviction by the caller)
    /// whose place `linked` the caller read ([`Lru::linked`]) with no list
    /// change since. Returns its weight.
    ///
    /// # Safety
    /// `linked` was read from this `Lru` (its links are followed unchecked:
    /// they name indices this `Lru` held, which its arrays still cover).
    #[inline(always)]
    pub(crate) unsafe fn remove_linked(&mut self, idx: u32, linked: Linked) -> u64 {
        let weight = self.unlink_inlined(idx, linked.0).1;
        if self.len == 0 {
            // Empty again (cleared, or everything expired): fill afresh.
            self.filled = false;
        }
        weight
    }

    /// Places an entry restored from a snapshot (just inserted): at WARM's
    /// tail while WARM is under its cap with it, else at COLD's tail. A
    /// snapshot is restored hottest first, so the lists come back in its
    /// order from head to tail (what the snapshot listed first is at the
    /// heads again), and entries past WARM's cap wait in COLD, which an
    /// eviction reaches only after HOT's overflow, coldest first.
    pub(crate) fn place_restored(&mut self, idx: u32) {
        let (_, weight) = self.unlink(idx);
        let w = u128::from(weight);
        let warm = &self.segs[WARM as usize];
        let seg = if warm.len < self.warm_len_cap && warm.weight + w <= self.warm_cap {
            WARM
        } else {
            COLD
        };
        self.push_tail(seg, idx, weight);
    }

    /// Moves an expired entry kept for `keep_expired` to the list evicted
    /// first (at its head: the entries staled earliest go first).
    pub(crate) fn stale(&mut self, idx: u32) {
        if self.segment_of(idx) != STALE {
            self.move_to(idx, STALE);
        }
    }

    /// `new` takes `old`'s place (same segment and position) with a new weight,
    /// unless `old` was a kept expired entry: a fresh value for its key
    /// enters WARM (a returning key), not the list evicted first. Returns
    /// `old`'s weight.
    // Always inlined: once per rewrite, and outlined (once the insert
    // around it was inlined into `Cache::insert`) the call cost ~10
    // instructions per rewrite.
    ///
    /// # Safety
    /// As for [`Lru::pos`]: `reserve_slot` made room for `new`.
    #[inline(always)]
    pub(crate) unsafe fn replace(&mut self, old: u32, new: u32, weight: u64) -> u64 {
        let seg = self.segment_of(old);
        if seg == STALE {
            let (_, old_weight) = self.unlink(old);
            if self.weighted {
                self.weights[new as usize] = weight;
            }
            // SAFETY: the caller's obligation.
            unsafe { self.push_head(WARM, new, weight) };
            return old_weight;
        }
        let link = self.links[old as usize];
        let old_weight = self.weight_of(old);
        // SAFETY: the caller's obligation.
        *unsafe { self.link_mut(new) } = link;
        if self.weighted {
            self.weights[new as usize] = weight;
        }
        let (prev, next) = (link.prev & IDX_MASK, link.next);
        if prev != NIL {
            self.held_mut(prev).next = new;
        } else {
            self.segs[seg as usize].head = new;
        }
        if next != NIL {
            self.set_prev(next, new);
        } else {
            self.segs[seg as usize].tail = new;
        }
        // Same weight (always, in a count-bounded cache): no sums to touch.
        if self.weighted && old_weight != weight {
            let s = &mut self.segs[seg as usize];
            s.weight = s.weight - u128::from(old_weight) + u128::from(weight);
            self.weight = self.weight - u128::from(old_weight) + u128::from(weight);
        }
        old_weight
    }

    /// The tails of HOT and COLD ([`NIL`] when empty): where the next
    /// eviction will look first.
    #[inline]
    pub(crate) fn eviction_tails(&self) -> [u32; 2] {
        [self.segs[HOT as usize].tail, self.segs[COLD as usize].tail]
    }

    /// Every linked index, coldest segment first, tail to head.
    pub(crate) fn indices(&self) -> impl Iterator<Item = u32> + '_ {
        [STALE, COLD, WARM, HOT].into_iter().flat_map(move |seg| {
            let mut cur = self.segs[seg as usize].tail;
            std::iter::from_fn(move || {
                (cur != NIL).then(|| {
                    let idx = cur;
                    cur = self.prev(idx);
                    idx
                })
            })
        })
    }

    /// The entries of segment `seg`, from its head (the latest arrived) to
    /// its tail (where the next eviction or demotion looks).
    pub(crate) fn head_to_tail(&self, seg: u8) -> impl Iterator<Item = u32> + '_ {
        let mut cur = self.segs[seg as usize].head;
        std::iter::from_fn(move || {
            (cur != NIL).then(|| {
                let idx = cur;
                cur = self.next(idx);
                idx
            })
        })
    }

    /// Checks the lists' structure: links are mutual, counts and weights add
    /// up, every entry is in the segment it says. For tests and fuzzing.
    pub(crate) fn check(&self) -> Result<(), String> {
        for seg in [HOT, WARM, COLD, STALE] {
            let s = self.segs[seg as usize];
            let (mut len, mut weight, mut prev, mut cur) = (0usize, 0u128, NIL, s.head);
            while cur != NIL {
                if self.prev(cur) != prev {
                    return Err(format!(
                        "seg {seg}: {cur}.prev = {} != {prev}",
                        self.prev(cur)
                    ));
                }
                if self.segment_of(cur) != seg {
                    return Err(format!("{cur} in seg {seg} says {}", self.segment_of(cur)));
                }
                len += 1;
                weight += u128::from(self.weight_of(cur));
                if len > self.links.len() {
                    return Err(format!("seg {seg} has a cycle"));
                }
                prev = cur;
                cur = self.next(cur);
            }
            let recorded = if self.weighted { s.weight } else { 0 };
            let weight = if self.weighted { weight } else { 0 };
            if prev != s.tail || len != s.len || weight != recorded {
                return Err(format!(
                    "seg {seg}: tail {}/{prev} len {}/{len} weight {}/{weight}",
                    s.tail, s.len, s.weight
                ));
            }
        }
        let (len, weight) = (
            self.segs.iter().map(|s| s.len).sum(),
            self.segs.iter().map(|s| s.weight).sum(),
        );
        if (self.len, self.weight) != (len, weight) || (!self.weighted && self.weight != 0) {
            return Err(format!(
                "totals {}/{} but segments add up to {len}/{weight}",
                self.len, self.weight
            ));
        }
        Ok(())
    }

    #[cfg(test)]
    fn evict(&mut self, bits: &impl UseCounts) -> Option<(u32, u64)> {
        let idx = self.victim(bits, NIL);
        (idx != NIL).then(|| (idx, self.remove(idx)))
    }

    /// [`Lru::insert`] of `idx`, with room made for it (checked).
    #[cfg(test)]
    fn add(&mut self, idx: u32, weight: u64, warm: bool) {
        assert!((idx as usize) < self.links.len(), "no room for {idx}");
        // SAFETY: `idx < links.len()` (just checked), which is `positions.len()`.
        unsafe { self.insert(idx, weight, warm) }
    }

    /// [`Lru::replace`] of `old` by `new`, with room made for it (checked).
    #[cfg(test)]
    fn replace_checked(&mut self, old: u32, new: u32, weight: u64) -> u64 {
        assert!((new as usize) < self.links.len(), "no room for {new}");
        // SAFETY: as in `add`.
        unsafe { self.replace(old, new, weight) }
    }

    /// [`Lru::remove_linked`] of `idx`, a linked entry (checked).
    #[cfg(test)]
    fn remove(&mut self, idx: u32) -> u64 {
        assert!((idx as usize) < self.links.len(), "{idx} is not linked");
        // SAFETY: `idx < links.len()` (just checked), which is
        // `positions.len()`; `linked` is read from this `Lru`.
        unsafe { self.remove_linked(idx, self.linked(idx)) }
    }

    #[cfg(test)]
    fn seg_lens(&self) -> [usize; 3] {
        [self.segs[0].len, self.segs[1].len, self.segs[2].len]
    }
}

/// The policy's moves: WARM kept within its cap, promotions, the victim.
mod evict;
#[cfg(test)]
mod tests;
