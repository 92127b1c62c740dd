//! The index's unit tests.

use super::chunk::{ONES, matches_swar, zero_bytes};
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
            assert_eq!(
                matches(low, high, u32::from(tag)),
                expect,
                "tags {tags:?}, tag {tag}"
            );
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
    // SAFETY: `pos` is the position `insert` gave above.
    unsafe { index.replace(pos, 1007) };
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
