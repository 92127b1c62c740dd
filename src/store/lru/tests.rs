//! The segmented LRU's unit tests (a file of their own: `lru.rs` stays short).

use super::*;
use std::cell::RefCell;
use std::collections::HashMap;

#[derive(Default)]
struct Bits(RefCell<HashMap<u32, u32>>);
impl Bits {
    fn set(&self, idx: impl IntoIterator<Item = u32>) {
        self.0.borrow_mut().extend(idx.into_iter().map(|i| (i, 1)));
    }
}
impl UseCounts for Bits {
    fn decay(&self, idx: u32) -> u32 {
        let mut m = self.0.borrow_mut();
        let c = m.entry(idx).or_default();
        let was = *c;
        *c = c.saturating_sub(1);
        was
    }
}

fn lru_with(n: u32, budget: u64) -> Lru {
    let mut lru = Lru::new(budget, budget as usize, false);
    for i in 1..=n {
        lru.reserve_slot(i, 0);
        lru.add(i, 1, false);
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
fn stale_entries_are_evicted_first_earliest_first_whatever_their_use() {
    let bits = Bits::default();
    let mut lru = lru_with(10, 10);
    lru.rebalance(&bits);
    lru.stale(7);
    lru.stale(4);
    lru.stale(7); // again: stays where it was
    bits.set([4, 7]);
    lru.check().unwrap();
    assert_eq!(lru.segment_of(4), STALE);
    // `spare` is never picked, not even from STALE.
    assert_eq!(lru.victim(&bits, 7), 4);
    let order: Vec<u32> = (0..4).map(|_| lru.evict(&bits).unwrap().0).collect();
    assert_eq!(order, vec![7, 4, 1, 2]);
    lru.check().unwrap();
    assert_eq!(lru.indices().count(), 6);
}

#[test]
fn a_replaced_stale_entry_leaves_the_stale_list_for_warm() {
    let bits = Bits::default();
    let mut lru = lru_with(4, 4);
    lru.stale(2);
    lru.reserve_slot(9, 0);
    lru.replace_checked(2, 9, 1);
    lru.check().unwrap();
    assert_eq!(lru.segment_of(9), WARM);
    assert_eq!(lru.len(), 4);
    // Nothing is stale now: the first victim is an ordinary one.
    assert_ne!(lru.evict(&bits).map(|v| v.0), Some(9));
    lru.check().unwrap();
}

#[test]
fn restored_entries_fill_warm_from_the_head_then_cold() {
    let mut lru = Lru::new(10, 10, false);
    for i in 1..=10 {
        lru.reserve_slot(i, 0);
        lru.add(i, 1, false);
        lru.place_restored(i);
    }
    lru.check().unwrap();
    // WARM's cap is 9: the first nine, in order from its head.
    assert_eq!(
        lru.head_to_tail(WARM).collect::<Vec<_>>(),
        (1..=9).collect::<Vec<_>>()
    );
    assert_eq!(lru.head_to_tail(COLD).collect::<Vec<_>>(), vec![10]);
    assert_eq!(lru.seg_lens(), [0, 9, 1]);
}

#[test]
fn active_entries_survive_eviction() {
    let bits = Bits::default();
    let mut lru = lru_with(10, 10);
    lru.rebalance(&bits);
    bits.set([1, 2]);
    let evicted: Vec<u32> = (0..3).map(|_| lru.evict(&bits).unwrap().0).collect();
    assert_eq!(evicted, vec![3, 4, 5]);
    lru.check().unwrap();
    // 1 and 2 (filled into WARM) were used: bumped to its head instead.
    assert_eq!(lru.segment_of(1), WARM);
    assert_eq!(lru.segment_of(2), WARM);
}

#[test]
fn probation_overflow_is_evicted_first_and_warm_stays_capped() {
    let bits = Bits::default();
    // Filling: the first 90 (WARM's cap) enter WARM, the rest HOT.
    let mut lru = lru_with(100, 100);
    assert_eq!(lru.seg_lens(), [10, 90, 0]);
    // Past the budget every new entry enters HOT, far over its 3% share.
    for i in 101..=120 {
        lru.reserve_slot(i, 0);
        lru.add(i, 1, false);
    }
    assert_eq!(lru.seg_lens(), [30, 90, 0]);
    // Unused tails go first.
    assert_eq!(lru.evict(&bits), Some((91, 1)));
    // Used entries at HOT's tail are promoted to WARM instead, and WARM
    // stays at its 90% cap by demoting its oldest (unused) to COLD.
    bits.set(92..=100);
    assert_eq!(lru.evict(&bits), Some((101, 1)));
    lru.check().unwrap();
    assert_eq!(lru.segment_of(92), WARM);
    assert_eq!(lru.segment_of(1), COLD, "the oldest WARM entry was demoted");
    assert_eq!(lru.seg_lens(), [19, 90, 9]);
}

#[test]
fn only_a_filling_shard_admits_to_warm() {
    let bits = Bits::default();
    let mut lru = lru_with(10, 10);
    lru.reserve_slot(11, 0);
    lru.add(11, 1, false);
    assert!(lru.evict(&bits).is_some(), "full: the shard has filled");
    // Room made by removals afterwards does not reopen WARM.
    lru.remove(5);
    lru.remove(6);
    lru.reserve_slot(12, 0);
    lru.add(12, 1, false);
    assert_eq!(lru.segment_of(12), HOT);
    // Emptied, it fills afresh.
    for idx in lru.indices().collect::<Vec<_>>() {
        lru.remove(idx);
    }
    lru.add(12, 1, false);
    assert_eq!(lru.segment_of(12), WARM);
    lru.check().unwrap();
}

#[test]
fn a_loop_over_more_keys_than_fit_keeps_hitting_part_of_them() {
    // Keys 1..=1000 in a loop, 100 fit: every key comes back only after
    // 999 others. An LRU (or a policy that admits everything through
    // one probation list) never hits; keeping what filled WARM does.
    let bits = Bits::default();
    let mut lru = Lru::new(100, 100, false);
    let mut resident = std::collections::HashSet::new();
    let mut hits = 0;
    for round in 0..3 {
        for k in 1..=1000u32 {
            if resident.contains(&k) {
                bits.set([k]);
                hits += u32::from(round > 0);
                continue;
            }
            lru.reserve_slot(k, 0);
            lru.add(k, 1, false);
            resident.insert(k);
            while lru.len() > 100 {
                let (gone, _) = lru.evict(&bits).unwrap();
                resident.remove(&gone);
            }
        }
    }
    lru.check().unwrap();
    // WARM's 90 entries hit on each of the last two rounds.
    assert!(hits >= 2 * 89, "{hits} hits");
}

#[test]
fn replace_keeps_position_and_updates_weight() {
    let bits = Bits::default();
    let mut lru = Lru::new(100, 100, true);
    for i in 1..=3 {
        lru.reserve_slot(i, 0);
        lru.add(i, 10, false);
    }
    lru.reserve_slot(9, 0);
    lru.replace_checked(2, 9, 25);
    lru.check().unwrap();
    assert_eq!(lru.weight(), 45);
    assert_eq!(lru.indices().collect::<Vec<_>>(), vec![1, 9, 3]);
    assert_eq!(lru.evict(&bits), Some((1, 10)));
    assert_eq!(lru.evict(&bits), Some((9, 25)));
}

#[test]
fn the_spared_entry_is_never_the_victim() {
    struct Always;
    impl UseCounts for Always {
        fn decay(&self, _: u32) -> u32 {
            3
        }
    }
    for n in 1..6u32 {
        let mut lru = lru_with(n, 1);
        for spare in 1..=n {
            let v = lru.victim(&Always, spare);
            assert_ne!(v, spare);
            assert_eq!(v == NIL, n == 1, "n {n} spare {spare}");
            lru.check().unwrap();
        }
    }
}

#[test]
fn eviction_terminates_when_everything_stays_active() {
    struct Always;
    impl UseCounts for Always {
        fn decay(&self, _: u32) -> u32 {
            3
        }
    }
    let mut lru = lru_with(50, 50);
    for _ in 0..50 {
        assert!(lru.evict(&Always).is_some());
        lru.check().unwrap();
    }
    assert_eq!(lru.len(), 0);
}

#[test]
fn moving_a_tail_matches_unlinking_and_pushing_it() {
    // Every (from, to) pair, `from` of 1 to 3 entries and `to` of 0 to 2,
    // weighted or not:
    // `move_tail` leaves the lists, counts and weights `move_to` would.
    for weighted in [false, true] {
        for from in [HOT, WARM, COLD, STALE] {
            for to in [HOT, WARM, COLD, STALE] {
                let others = if to == from { 0..=0 } else { 0..=2 };
                for (len, others) in (1..=3u32).flat_map(|l| others.clone().map(move |o| (l, o))) {
                    let mut lru = Lru::new(100, 100, weighted);
                    for i in 1..=8 {
                        lru.reserve_slot(i, 0);
                    }
                    // `len` entries in `from`, `others` in `to` when it differs.
                    let segs = std::iter::repeat_n(from, len as usize)
                        .chain(std::iter::repeat_n(to, others));
                    for (idx, seg) in (1..).zip(segs) {
                        if weighted {
                            lru.weights[idx as usize] = u64::from(idx) * 10;
                        }
                        // SAFETY: room made for 1..=8 above; `idx` is at most 5.
                        unsafe { lru.push_head(seg, idx, u64::from(idx) * 10) };
                    }
                    let mut expected = Lru::new(100, 100, weighted);
                    expected.links.clone_from(&lru.links);
                    expected.weights.clone_from(&lru.weights);
                    (expected.segs, expected.len, expected.weight) =
                        (lru.segs, lru.len, lru.weight);
                    let tail = lru.segs[from as usize].tail;
                    expected.move_to(tail, to);
                    lru.move_tail(from, to);
                    lru.check().unwrap();
                    assert_eq!(
                        lru.segs, expected.segs,
                        "{from} -> {to}, {len} {others} {weighted}"
                    );
                    assert_eq!((lru.len, lru.weight), (expected.len, expected.weight));
                    for seg in [HOT, WARM, COLD, STALE] {
                        assert_eq!(
                            lru.head_to_tail(seg).collect::<Vec<_>>(),
                            expected.head_to_tail(seg).collect::<Vec<_>>()
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn the_inlined_first_look_picks_what_the_full_walk_would() {
    // `victim` looks at HOT's tail itself before calling `victim_from`; on
    // random lists and use counts, it must pick the same entry and leave
    // the lists as `victim_from` alone does.
    let mut x = 0x5EED_u64;
    let mut rand = |n: u32| {
        x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        (x >> 33) as u32 % n
    };
    for case in 0..400 {
        let budget = 4 + rand(60);
        let weighted = case % 2 == 1;
        let mut lru = Lru::new(u64::from(budget) * 3, budget as usize, weighted);
        let bits = Bits::default();
        let mut next = 1;
        // Fill past the bound, evicting as a shard does, so that the lists
        // are in a shard's shapes: filling, full, with stale entries.
        for _ in 0..rand(3 * budget) + 1 {
            lru.reserve_slot(next, 0);
            lru.add(next, 1 + u64::from(rand(3)), rand(8) == 0);
            next += 1;
            if rand(3) == 0 {
                bits.set((1..next).filter(|_| rand(4) == 0));
            }
            if rand(10) == 0 {
                if let Some(&idx) = lru.indices().collect::<Vec<_>>().get(rand(next) as usize) {
                    lru.stale(idx);
                }
            }
            while lru.len() > budget as usize {
                lru.evict(&bits).unwrap();
            }
        }
        let held: Vec<u32> = lru.indices().collect();
        // None, HOT's tail (the inlined look's own case), or any entry.
        let spare = match rand(4) {
            0 => NIL,
            1 => lru.segs[HOT as usize].tail,
            _ => held[rand(held.len() as u32) as usize],
        };
        let (mut full, full_bits) = (lru.clone(), Bits(RefCell::new(bits.0.borrow().clone())));
        let picked = lru.victim(&bits, spare);
        let walked = full.victim_from(&full_bits, spare, MAX_MOVES);
        assert_eq!(picked, walked, "case {case}: spare {spare}");
        assert_eq!(lru.segs, full.segs, "case {case}");
        assert_eq!(
            lru.indices().collect::<Vec<_>>(),
            full.indices().collect::<Vec<_>>(),
            "case {case}"
        );
        assert_eq!(*bits.0.borrow(), *full_bits.0.borrow(), "case {case}");
        lru.check().unwrap();
    }
}
