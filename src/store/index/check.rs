//! The table's invariants, checked against its entries' hashes (tests and
//! fuzzing), and the walk over every entry they use.

use super::{FAR, Index, LANES, OVERFLOW_SHIFT, SATURATED, position, split, tag};
use crate::shim::Ordering;
use crate::store::slab::NIL;

impl Index {
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
