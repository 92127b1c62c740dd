//! The policy's moves at the lists' tails: WARM kept within its cap
//! (`rebalance`), promotions of used tails, and the choice of the entry to
//! evict (`victim`); the rules are in the parent module's docs.

use super::{COLD, HOT, Lru, MAX_MOVES, STALE, UseCounts, WARM, used};
use crate::store::slab::NIL;

impl Lru {
    /// Keeps WARM within its cap. HOT's overflow is settled by eviction (an
    /// unused HOT tail is evicted, not demoted), so nothing moves for it here.
    #[inline]
    pub(crate) fn rebalance(&mut self, bits: &impl UseCounts) {
        // Tested here, inlined: WARM is rarely over its cap at this point
        // (promotions rebalance as they go), and the call was most of the cost.
        if self.warm_over() {
            self.rebalance_warm(bits, MAX_MOVES);
        }
    }

    fn rebalance_warm(&mut self, bits: &impl UseCounts, mut budget: usize) {
        // A used WARM tail is bumped to WARM's head; each bump spends a use,
        // and the budget ends a run of entries that keep being used.
        while self.warm_over() {
            if budget == 0 {
                self.demote_warm_excess();
                return;
            }
            let tail = self.segs[WARM as usize].tail;
            let to = if used(bits, tail) && self.segs[WARM as usize].len > 1 {
                WARM
            } else {
                COLD
            };
            self.move_tail(WARM, to);
            budget -= 1;
        }
    }

    /// Past [`Lru::rebalance_warm`]'s budget: demotes WARM's tails without
    /// looking at their counts, so the cap holds. Out of line: rarely
    /// reached, and as a second loop after the first one, its set-up ran
    /// on every rebalance (~17 instructions a call, ~3.4 per evicting
    /// insert at 0.99 cache-aside, callgrind).
    #[cold]
    #[inline(never)]
    fn demote_warm_excess(&mut self) {
        while self.warm_over() {
            self.move_tail(WARM, COLD);
        }
    }

    /// Promotes a used entry, the tail of segment `from`, to WARM's head.
    fn promote(&mut self, bits: &impl UseCounts, from: u8) {
        self.move_tail(from, WARM);
        self.rebalance_warm(bits, 4);
    }

    /// Picks the entry to evict, leaving it linked (the caller unlinks it with
    /// [`Lru::remove_linked`]); [`NIL`] when no entry but `spare` is left. A kept
    /// expired entry ([`STALE`]'s tail) goes first; else entries move
    /// between segments on the way, as their use counts say:
    /// 1. while HOT is over its share, its tail is promoted to WARM if it was
    ///    used, else it is the victim (an unused HOT entry never reaches COLD);
    /// 2. otherwise COLD's tail: promoted if used, else the victim;
    /// 3. COLD empty: WARM's tail is bumped if used, else demoted to COLD.
    ///
    /// `spare` (the entry the current insert wrote, or [`NIL`]) is never
    /// picked: an insert must not evict its own entry.
    // Always inlined, with the rest out of line (`victim_from`): most
    // evictions take an unused HOT tail at the first look, and as a call
    // (saved registers, its arguments, an `Option` back) the whole of it
    // cost ~28 instructions per evicting insert (704.8 -> 676.9, callgrind).
    // NIL for none, not an `Option`: the quick victim's `Some` was tested
    // again where the two ways met (~3 instructions per evicting insert).
    #[inline(always)]
    pub(crate) fn victim(&mut self, bits: &impl UseCounts, spare: u32) -> u32 {
        // Called only when the shard is over its bound: it has filled.
        self.filled = true;
        // The first look of `victim_from`'s loop when nothing is STALE and
        // HOT is over its share: its tail is the victim unless used (then
        // promoted: one of the moves) or `spare`.
        if self.segs[STALE as usize].tail == NIL && self.hot_over() {
            let hot = self.segs[HOT as usize].tail;
            if hot != NIL && hot != spare {
                if !used(bits, hot) {
                    return hot;
                }
                self.promote(bits, HOT);
                return self.victim_from(bits, spare, MAX_MOVES - 1);
            }
        }
        self.victim_from(bits, spare, MAX_MOVES)
    }

    /// [`Lru::victim`], making at most `moves` list moves before it
    /// evicts whatever is at the tail.
    #[inline(never)]
    pub(super) fn victim_from(&mut self, bits: &impl UseCounts, spare: u32, moves: usize) -> u32 {
        // Kept expired entries go first, whatever their use.
        let mut stale = self.segs[STALE as usize].tail;
        if stale != NIL && stale == spare {
            stale = self.prev(stale);
        }
        if stale != NIL {
            return stale;
        }
        for _ in 0..moves {
            let hot = self.segs[HOT as usize].tail;
            let cold = self.segs[COLD as usize].tail;
            let warm = self.segs[WARM as usize].tail;
            let hot_over = self.hot_over();
            if hot != NIL && (hot_over || (cold == NIL && warm == NIL)) {
                if hot == spare {
                    if self.segs[HOT as usize].len > 1 {
                        self.move_tail(HOT, HOT);
                        continue;
                    }
                } else if used(bits, hot) {
                    self.promote(bits, HOT);
                    continue;
                } else {
                    return hot;
                }
            }
            if cold != NIL {
                if cold == spare || used(bits, cold) {
                    // Used since it got here (or just written): rescue it, as
                    // memcached does.
                    self.promote(bits, COLD);
                    continue;
                }
                return cold;
            }
            if warm != NIL && !(warm == spare && self.segs[WARM as usize].len == 1) {
                let to = if (warm == spare || used(bits, warm)) && self.segs[WARM as usize].len > 1
                {
                    WARM
                } else {
                    COLD
                };
                self.move_tail(WARM, to);
                continue;
            }
            // Only HOT entries within its share (or just `spare`) are left.
            if hot != NIL && hot != spare {
                return hot;
            }
            return NIL;
        }
        // Every tail we met was used: evict the coldest tail regardless,
        // stepping past `spare`.
        [HOT, COLD, WARM, STALE]
            .into_iter()
            .find_map(|seg| {
                let tail = self.segs[seg as usize].tail;
                match tail {
                    NIL => None,
                    t if t == spare => Some(self.prev(t)).filter(|&p| p != NIL),
                    t => Some(t),
                }
            })
            .unwrap_or(NIL)
    }
}
