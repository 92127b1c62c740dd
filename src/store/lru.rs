//! The segmented LRU policy of one shard, as in memcached (HOT / WARM / COLD).
//!
//! * New entries enter HOT (or WARM, when the shard recently evicted the same
//!   key: see `ghost` in the shard).
//! * A hit never moves anything: it only sets the entry's ACTIVE bit (in the
//!   slot, without a lock). Entries move only at list tails, under the lock:
//!   - HOT over its cap: tail goes to WARM if active (bit cleared), else COLD;
//!   - WARM over its cap: tail goes back to WARM's head if active (bit cleared),
//!     else to COLD;
//!   - eviction takes COLD's tail; an active one is rescued to WARM instead.
//! * HOT and WARM are capped at 20% and 40% of the shard's weight budget
//!   (memcached's defaults); COLD takes the rest.
//!
//! The lists link slot indices through a writer-only side array, so this module
//! is plain safe code; the ACTIVE bits are reached through [`ActiveBits`].

use super::slab::NIL;

/// Segment numbers.
pub(crate) const HOT: u8 = 0;
pub(crate) const WARM: u8 = 1;
pub(crate) const COLD: u8 = 2;

/// How many list moves one eviction may make before it evicts whatever is at
/// the tail, active or not. Keeps an insert's worst case bounded even while
/// readers keep re-setting ACTIVE bits.
const MAX_MOVES: usize = 32;

/// Access to the ACTIVE bits, which live in the slots.
pub(crate) trait ActiveBits {
    /// Clears the entry's ACTIVE bit and says whether it was set.
    fn take_active(&self, idx: u32) -> bool;
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
    weight: u64,
}

/// HOT / WARM / COLD lists over one shard's slots.
pub(crate) struct Lru {
    links: Vec<Link>,
    /// Per-slot weights; empty when every entry weighs 1 (count-bounded cache).
    weights: Vec<u64>,
    weighted: bool,
    segs: [Segment; 3],
    hot_cap: u64,
    warm_cap: u64,
}

/// The largest slot index the lists can hold.
pub(crate) const MAX_INDEX: u32 = IDX_MASK;

impl Lru {
    /// Lists for a shard whose weight budget is `budget`.
    pub(crate) fn new(budget: u64, weighted: bool) -> Self {
        Lru {
            links: Vec::new(),
            weights: Vec::new(),
            weighted,
            segs: [Segment::default(); 3],
            hot_cap: (budget / 5).max(1),
            warm_cap: (budget / 5 * 2).max(1),
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
                if self.weighted {
                    self.weights
                        .reserve_exact(hint.max(need) - self.weights.len());
                }
            }
            self.links.resize(need, Link::default());
            if self.weighted {
                self.weights.resize(need, 0);
            }
        }
    }

    /// Number of entries in all lists.
    pub(crate) fn len(&self) -> usize {
        self.segs.iter().map(|s| s.len).sum()
    }

    /// Total weight of all entries.
    pub(crate) fn weight(&self) -> u64 {
        self.segs.iter().map(|s| s.weight).sum()
    }

    /// The weight recorded for `idx`.
    pub(crate) fn weight_of(&self, idx: u32) -> u64 {
        if self.weighted {
            self.weights[idx as usize]
        } else {
            1
        }
    }

    /// The segment `idx` is in (meaningful only while it is linked).
    pub(crate) fn segment_of(&self, idx: u32) -> u8 {
        (self.links[idx as usize].prev >> SEG_SHIFT) as u8
    }

    fn prev(&self, idx: u32) -> u32 {
        self.links[idx as usize].prev & IDX_MASK
    }

    fn next(&self, idx: u32) -> u32 {
        self.links[idx as usize].next
    }

    fn set_prev(&mut self, idx: u32, prev: u32) {
        let link = &mut self.links[idx as usize];
        link.prev = (link.prev & !IDX_MASK) | prev;
    }

    /// Links `idx` at the head of `seg`.
    fn push_head(&mut self, seg: u8, idx: u32, weight: u64) {
        let old_head = self.segs[seg as usize].head;
        self.links[idx as usize] = Link {
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
        s.weight += weight;
    }

    /// Unlinks `idx` from whatever segment it is in.
    fn unlink(&mut self, idx: u32) -> (u8, u64) {
        let seg = self.segment_of(idx);
        let weight = self.weight_of(idx);
        let (prev, next) = (self.prev(idx), self.next(idx));
        if prev != NIL {
            self.links[prev as usize].next = next;
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
        s.weight -= weight;
        (seg, weight)
    }

    fn move_to(&mut self, idx: u32, seg: u8) {
        let (_, weight) = self.unlink(idx);
        self.push_head(seg, idx, weight);
    }

    /// Adds a new entry: to WARM if `warm` (a returning key), else to HOT.
    pub(crate) fn insert(&mut self, idx: u32, weight: u64, warm: bool) {
        if self.weighted {
            self.weights[idx as usize] = weight;
        }
        self.push_head(if warm { WARM } else { HOT }, idx, weight);
    }

    /// Removes an entry (explicit remove, expiry, or eviction by the caller).
    /// Returns its weight.
    pub(crate) fn remove(&mut self, idx: u32) -> u64 {
        self.unlink(idx).1
    }

    /// `new` takes `old`'s place (same segment and position) with a new weight.
    pub(crate) fn replace(&mut self, old: u32, new: u32, weight: u64) {
        let link = self.links[old as usize];
        let seg = self.segment_of(old);
        let old_weight = self.weight_of(old);
        self.links[new as usize] = link;
        if self.weighted {
            self.weights[new as usize] = weight;
        }
        let (prev, next) = (link.prev & IDX_MASK, link.next);
        if prev != NIL {
            self.links[prev as usize].next = new;
        } else {
            self.segs[seg as usize].head = new;
        }
        if next != NIL {
            self.set_prev(next, new);
        } else {
            self.segs[seg as usize].tail = new;
        }
        let s = &mut self.segs[seg as usize];
        s.weight = s.weight - old_weight + weight;
    }

    /// Moves tails until HOT and WARM are within their caps.
    pub(crate) fn rebalance(&mut self, bits: &impl ActiveBits) {
        // Every move takes an entry out of HOT, so this ends within HOT's length.
        while self.segs[HOT as usize].weight > self.hot_cap {
            let tail = self.segs[HOT as usize].tail;
            let to = if bits.take_active(tail) { WARM } else { COLD };
            self.move_to(tail, to);
        }
        self.rebalance_warm(bits, MAX_MOVES);
    }

    fn rebalance_warm(&mut self, bits: &impl ActiveBits, mut budget: usize) {
        // An active WARM tail is bumped to WARM's head; each bump clears a bit,
        // so the budget also ends a run of entries that keep being re-activated.
        while self.segs[WARM as usize].weight > self.warm_cap && budget > 0 {
            let tail = self.segs[WARM as usize].tail;
            let to = if bits.take_active(tail) && self.segs[WARM as usize].len > 1 {
                WARM
            } else {
                COLD
            };
            self.move_to(tail, to);
            budget -= 1;
        }
        // Past the budget, demote without looking at the bits so the cap holds.
        while self.segs[WARM as usize].weight > self.warm_cap {
            let tail = self.segs[WARM as usize].tail;
            self.move_to(tail, COLD);
        }
    }

    /// Picks the entry to evict, leaving it linked (the caller unlinks it with
    /// [`Lru::remove`]); `None` when no entry but `spare` is left. Moves
    /// entries between segments on the way, as their ACTIVE bits say.
    /// `spare` (the entry the current insert added, or [`NIL`]) is never
    /// picked: an insert must not evict its own entry.
    pub(crate) fn victim(&mut self, bits: &impl ActiveBits, spare: u32) -> Option<u32> {
        for _ in 0..MAX_MOVES {
            let cold = self.segs[COLD as usize].tail;
            if cold != NIL {
                if cold == spare || bits.take_active(cold) {
                    // Used since it got here (or just added): rescue it, as
                    // memcached does.
                    self.move_to(cold, WARM);
                    self.rebalance_warm(bits, 4);
                    continue;
                }
                return Some(cold);
            }
            // COLD is empty: feed it from HOT's tail, else WARM's.
            let hot = self.segs[HOT as usize].tail;
            if hot != NIL && (hot != spare || self.segs[HOT as usize].len > 1) {
                let to = if bits.take_active(hot) { WARM } else { COLD };
                self.move_to(hot, to);
                continue;
            }
            let warm = self.segs[WARM as usize].tail;
            if warm == NIL || (warm == spare && self.segs[WARM as usize].len == 1) {
                // Only `spare` is left (in HOT or WARM).
                return (hot != NIL && hot != spare).then_some(hot);
            }
            let to = if bits.take_active(warm) && self.segs[WARM as usize].len > 1 {
                WARM
            } else {
                COLD
            };
            self.move_to(warm, to);
        }
        // Every tail we met was active: evict the coldest tail regardless,
        // stepping past `spare`.
        [COLD, HOT, WARM].into_iter().find_map(|seg| {
            let tail = self.segs[seg as usize].tail;
            match tail {
                NIL => None,
                t if t == spare => Some(self.prev(t)).filter(|&p| p != NIL),
                t => Some(t),
            }
        })
    }

    /// Every linked index, coldest segment first, tail to head.
    pub(crate) fn indices(&self) -> impl Iterator<Item = u32> + '_ {
        [COLD, WARM, HOT].into_iter().flat_map(move |seg| {
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

    /// Checks the lists' structure: links are mutual, counts and weights add
    /// up, every entry is in the segment it says. For tests and fuzzing.
    pub(crate) fn check(&self) -> Result<(), String> {
        for seg in [HOT, WARM, COLD] {
            let s = self.segs[seg as usize];
            let (mut len, mut weight, mut prev, mut cur) = (0usize, 0u64, NIL, s.head);
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
                weight += self.weight_of(cur);
                if len > self.links.len() {
                    return Err(format!("seg {seg} has a cycle"));
                }
                prev = cur;
                cur = self.next(cur);
            }
            if prev != s.tail || len != s.len || weight != s.weight {
                return Err(format!(
                    "seg {seg}: tail {}/{prev} len {}/{len} weight {}/{weight}",
                    s.tail, s.len, s.weight
                ));
            }
        }
        Ok(())
    }

    #[cfg(test)]
    fn evict(&mut self, bits: &impl ActiveBits) -> Option<(u32, u64)> {
        let idx = self.victim(bits, NIL)?;
        Some((idx, self.remove(idx)))
    }

    #[cfg(test)]
    fn seg_lens(&self) -> [usize; 3] {
        [self.segs[0].len, self.segs[1].len, self.segs[2].len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::collections::HashSet;

    #[derive(Default)]
    struct Bits(RefCell<HashSet<u32>>);
    impl ActiveBits for Bits {
        fn take_active(&self, idx: u32) -> bool {
            self.0.borrow_mut().remove(&idx)
        }
    }

    fn lru_with(n: u32, budget: u64) -> Lru {
        let mut lru = Lru::new(budget, false);
        for i in 1..=n {
            lru.reserve_slot(i, 0);
            lru.insert(i, 1, false);
        }
        lru
    }

    #[test]
    fn inactive_entries_are_evicted_in_insertion_order() {
        let bits = Bits::default();
        let mut lru = lru_with(10, 10);
        lru.rebalance(&bits);
        lru.check().unwrap();
        let order: Vec<u32> = (0..10).map(|_| lru.evict(&bits).unwrap().0).collect();
        assert_eq!(order, (1..=10).collect::<Vec<_>>());
        assert_eq!(lru.evict(&bits), None);
        lru.check().unwrap();
    }

    #[test]
    fn active_entries_survive_eviction() {
        let bits = Bits::default();
        let mut lru = lru_with(10, 10);
        lru.rebalance(&bits);
        bits.0.borrow_mut().extend([1, 2]);
        let evicted: Vec<u32> = (0..3).map(|_| lru.evict(&bits).unwrap().0).collect();
        assert_eq!(evicted, vec![3, 4, 5]);
        lru.check().unwrap();
        // 1 and 2 were rescued to WARM with their bits cleared.
        assert_eq!(lru.segment_of(1), WARM);
        assert_eq!(lru.segment_of(2), WARM);
    }

    #[test]
    fn caps_hold_after_rebalance() {
        let bits = Bits::default();
        let mut lru = lru_with(100, 100);
        bits.0.borrow_mut().extend(1..=100);
        lru.rebalance(&bits);
        lru.check().unwrap();
        let [hot, warm, _] = lru.seg_lens();
        assert!(hot <= 20, "hot {hot}");
        assert!(warm <= 40, "warm {warm}");
        assert_eq!(lru.len(), 100);
    }

    #[test]
    fn replace_keeps_position_and_updates_weight() {
        let bits = Bits::default();
        let mut lru = Lru::new(100, true);
        for i in 1..=3 {
            lru.reserve_slot(i, 0);
            lru.insert(i, 10, false);
        }
        lru.reserve_slot(9, 0);
        lru.replace(2, 9, 25);
        lru.check().unwrap();
        assert_eq!(lru.weight(), 45);
        assert_eq!(lru.indices().collect::<Vec<_>>(), vec![1, 9, 3]);
        assert_eq!(lru.evict(&bits), Some((1, 10)));
        assert_eq!(lru.evict(&bits), Some((9, 25)));
    }

    #[test]
    fn the_spared_entry_is_never_the_victim() {
        struct Always;
        impl ActiveBits for Always {
            fn take_active(&self, _: u32) -> bool {
                true
            }
        }
        for n in 1..6u32 {
            let mut lru = lru_with(n, 1);
            for spare in 1..=n {
                let v = lru.victim(&Always, spare);
                assert_ne!(v, Some(spare));
                assert_eq!(v.is_none(), n == 1, "n {n} spare {spare}");
                lru.check().unwrap();
            }
        }
    }

    #[test]
    fn eviction_terminates_when_everything_stays_active() {
        struct Always;
        impl ActiveBits for Always {
            fn take_active(&self, _: u32) -> bool {
                true
            }
        }
        let mut lru = lru_with(50, 50);
        for _ in 0..50 {
            assert!(lru.evict(&Always).is_some());
            lru.check().unwrap();
        }
        assert_eq!(lru.len(), 0);
    }
}
