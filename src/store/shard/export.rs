//! A shard's side of a snapshot (see `store::export`): its entries copied
//! out hottest first, and an entry restored only where it fits without
//! evicting anything.

use std::cmp::Reverse;
use std::hash::{BuildHasher, Hash};

use crate::store::epoch::Guard;

use super::super::local;
use super::super::lru::{COLD, HOT, WARM};
use super::super::slab::Slot;
use super::super::ttl::is_expired;
use super::{Entry, Inserted, Shard, State, Try, WriteCtx};

/// What became of an entry offered to [`Shard::restore`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Restored {
    /// Stored.
    Stored,
    /// Not stored: the key is present (its value is newer than a snapshot's).
    Present,
    /// Not stored: the shard is at its entry or weight bound (or its
    /// memory bound), and a restore evicts nothing.
    NoRoom,
}

impl<K, V> Shard<K, V> {
    /// Runs `copy` on every live, unexpired entry (its key, value, expiry
    /// stamp and use count), hottest first. The entries are picked under the lock,
    /// which is released before `copy` runs: `copy` runs pinned, as
    /// [`Shard::snapshot`]'s clones do, so readers never wait and writers
    /// only for the pick.
    ///
    /// Hottest first means: by use count (the entry's uses since it last
    /// passed a list tail: an entry used again outlives an unused one,
    /// whatever its segment), then WARM (the entries that proved
    /// themselves), COLD (demoted from WARM, on a last chance), HOT (the
    /// probation segment, whose unused entries are the first evicted), each
    /// from head (the latest arrived) to tail (the next to move). Kept
    /// expired entries are left out.
    pub(crate) fn export<T>(
        &self,
        now: u64,
        copy: &mut impl FnMut(&K, &V, u64, u8) -> T,
    ) -> Vec<T> {
        let guard = local::pin();
        let mut picked: Vec<(u8, &Slot<K, V>, u64)> = {
            let st = self.lock();
            let mut picked = Vec::with_capacity(st.lru.len());
            for seg in [WARM, COLD, HOT] {
                for idx in st.lru.head_to_tail(seg) {
                    let slot = self.slot(idx);
                    let expires = self.expires(slot);
                    if !is_expired(expires, now) {
                        picked.push((slot.uses(), slot, expires));
                    }
                }
            }
            picked
        };
        // After the lock, as the copies: stable, so the segment order stays
        // within each use count.
        picked.sort_by_key(|&(uses, ..)| Reverse(uses));
        let copied = picked
            .into_iter()
            // SAFETY: linked when picked, while `guard` was pinned: even if
            // unlinked since, not reclaimed before it drops.
            .map(|(uses, slot, expires)| unsafe { copy(slot.key(), slot.value(), expires, uses) })
            .collect();
        drop(guard);
        copied
    }

    /// Stores `key -> value` only if the key is absent and the shard has
    /// room for it as it is: under its entry and weight bounds with it, and
    /// its memory bound too. Unlike an insert it never evicts: a snapshot
    /// offers its hottest entries first, so what does not fit is colder
    /// than what is already stored. The entry goes to the tail of WARM (of
    /// COLD once WARM is full: see `Lru::place_restored`), so the shard's
    /// lists come back in the snapshot's order, with the use count it had.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn restore<S: BuildHasher>(
        &self,
        st: &mut State<K, V>,
        ctx: &WriteCtx<'_, S>,
        hash: u64,
        key: K,
        value: V,
        expires: u64,
        weight: u64,
        uses: u8,
        guard: &Guard,
    ) -> Restored
    where
        K: Hash + Eq,
    {
        if self.find_locked(hash, &key, guard).is_some() {
            return Restored::Present;
        }
        let room = st.lru.len() < self.max_entries
            && st.lru.weight() + u128::from(weight) <= u128::from(self.max_weight)
            && self.memory_for(st, weight);
        if !room {
            return Restored::NoRoom;
        }
        let entry = Entry {
            hash,
            expires,
            weight,
        };
        // The last try: the memory was checked, so nothing waits.
        let mut refused = None;
        match self.insert(st, ctx, entry, key, value, &mut refused, Try::Last, guard) {
            Inserted::New(idx) => {
                st.lru.place_restored(idx);
                self.slot(idx).set_uses(uses);
                Restored::Stored
            }
            // Absent (checked above), so not replaced.
            Inserted::Replaced => Restored::Stored,
            // (What came back in `refused` is dropped with it.)
            Inserted::Rejected | Inserted::Reclaim => Restored::NoRoom,
        }
    }
}
