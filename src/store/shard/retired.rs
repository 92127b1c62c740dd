//! Memory held by retired values, and the bound on it.
//!
//! An evicted, replaced or removed value is not dropped when it leaves the
//! index: a reader that reached it before may still be cloning it. It is
//! retired (see `slab::Mailbox`) and dropped once the epoch has moved on
//! twice past every reader pinned at the time, which in batches can take a
//! while. Until then it holds its memory, and with large values that was
//! most of the memory: a 16 MiB cache of 2 MiB values held 72 of them.
//!
//! So a shard whose values own memory (they have drop glue) and whose weight
//! is bounded counts its retired weight beside its live weight, and keeps
//! their sum within its [`MemoryBound`]: `max_weight` plus a quarter. An
//! insert that would go past it
//! 1. evicts until the live weight alone leaves room for the new entry
//!    within the bound, hands every slot it holds back to the epoch, and
//!    returns without storing;
//! 2. with the shard unlocked and the thread unpinned, pushes the epoch
//!    along and drops what comes back ([`wait_for_reclaim`]);
//! 3. tries once more, and is refused if the sum still has no room: a
//!    reader pinned all along (a slow eviction listener, an `iter` cloning
//!    a big shard) keeps the retired values alive, and the bound is kept by
//!    storing nothing new rather than by breaking it.
//!
//! The new value itself is the caller's until it is stored, so at any
//! moment the memory a cache's values hold is at most 1.25x `max_weight`,
//! plus the values callers are inserting.

use std::hash::{BuildHasher, Hash};
use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::store::epoch::{self, Guard};

use super::{NIL, Shard, State, WriteCtx};
use crate::shim::yield_now;
use crate::store::RemovalCause;
use crate::store::local;

/// The most a shard's values may weigh, live and retired together.
#[derive(Clone, Copy)]
pub(crate) struct MemoryBound {
    /// `u128::MAX`: not bounded (no weight bound, or values that own no
    /// memory besides their slot, where retiring frees nothing).
    cap: u128,
    /// The shard's live weight budget.
    budget: u128,
    /// `cap != u128::MAX`, kept apart: tested on every write (a 16-byte
    /// compare of `cap` took five instructions, this takes two).
    bounded: bool,
}

impl MemoryBound {
    /// The bound for a shard with weight budget `max_weight` (`u64::MAX`:
    /// none), whose values own memory if `owns_memory`.
    pub(crate) fn new(max_weight: u64, owns_memory: bool) -> Self {
        let budget = u128::from(max_weight);
        let cap = if max_weight == u64::MAX || !owns_memory {
            u128::MAX
        } else {
            budget + budget / 4
        };
        MemoryBound {
            cap,
            budget,
            bounded: cap != u128::MAX,
        }
    }

    /// Whether there is a bound (else retired weight need not be counted).
    #[inline]
    pub(crate) fn bounded(&self) -> bool {
        self.bounded
    }

    /// Whether `live` and `retired` weight leave room for `weight` more.
    /// (u128: sums of u64 weights over at most 2^30 slots cannot overflow.)
    #[inline]
    pub(crate) fn admits(&self, live: u128, retired: u128, weight: u64) -> bool {
        live + retired + u128::from(weight) <= self.cap
    }

    /// Whether making room by evicting is worth it: only while what is
    /// retired is within the slack over the budget. Past that, the epoch is
    /// likely held back, and evicting more would lose entries while freeing
    /// nothing.
    #[inline]
    pub(crate) fn worth_evicting(&self, retired: u128) -> bool {
        retired <= self.cap - self.budget
    }

    /// Whether the sum is within the bound (for the invariant checks).
    pub(crate) fn holds(&self, live: u128, retired: u128) -> bool {
        live + retired <= self.cap
    }
}

/// Immediate retries, then retries after a yield, before sleeping.
const SPINS: u32 = 4;
const YIELDS: u32 = 8;
/// How long an insert waits for the epoch before it is refused. Readers
/// pin for a lookup and a clone, but a thread preempted while pinned holds
/// the epoch for a scheduler slice or a few, more on a loaded machine:
/// this covers those, so only a reader that really stalls gets inserts
/// refused.
const PATIENCE: Duration = Duration::from_millis(100);
/// How long it waits instead within `STALL_MEMORY` of a wait that ran out
/// of patience: enough for a reader's clone of a large value.
const BRIEF: Duration = Duration::from_millis(2);
const STALL_MEMORY: Duration = Duration::from_secs(1);
/// The sleeps between pushes double from the first up to the longest.
const FIRST_SLEEP: Duration = Duration::from_micros(20);
const LONGEST_SLEEP: Duration = Duration::from_millis(5);

/// When the last wait ran out of patience, in nanoseconds since `ANCHOR`
/// (0: never). A stalled reader holds back the epoch that every cache
/// shares, and while it does, each insert needing memory back would wait
/// `PATIENCE` out: after one has, the others wait `BRIEF`ly for a while.
/// Relaxed: a hint, it orders nothing.
static STALLED_AT: AtomicU64 = AtomicU64::new(0);
static ANCHOR: LazyLock<Instant> = LazyLock::new(Instant::now);

fn nanos_since_anchor() -> u64 {
    // Never 0 (the "never" mark); saturates after 584 years.
    u64::try_from(ANCHOR.elapsed().as_nanos())
        .unwrap_or(u64::MAX)
        .max(1)
}

/// How long to wait: patiently, unless a wait ran out recently.
fn budget() -> Duration {
    let stalled_at = STALLED_AT.load(Ordering::Relaxed);
    let recent = stalled_at != 0
        && nanos_since_anchor().saturating_sub(stalled_at) < STALL_MEMORY.as_nanos() as u64;
    if recent { BRIEF } else { PATIENCE }
}

/// Pushes the epoch (and collects what it frees) until `reclaimed` says
/// enough came back, or the wait's budget runs out. `reclaimed` drops what
/// the epoch delivered and reports whether there is room now. Returns its
/// last answer.
///
/// Each push needs every pinned thread to have seen the current epoch. A
/// thread that is pinned itself (a listener inserting) can push it once at
/// most: it tries once and does not wait for itself.
pub(crate) fn wait_for_reclaim(mut reclaimed: impl FnMut() -> bool) -> bool {
    let pinned = local::is_pinned();
    let budget = budget();
    let start = Instant::now();
    let mut sleep = FIRST_SLEEP;
    // Bounded by the budget; the count bounds it too, should the clock
    // misbehave (100 ms takes under 30 sleeps).
    for round in 0..SPINS + YIELDS + 64 {
        // Advances the epoch if it can and runs the retired work that is
        // old enough: it delivers slots to their shard's mailbox, which
        // `reclaimed` empties. It does not pin.
        epoch::collect();
        if reclaimed() {
            if STALLED_AT.load(Ordering::Relaxed) != 0 {
                STALLED_AT.store(0, Ordering::Relaxed);
            }
            return true;
        }
        if pinned {
            return false;
        }
        if round < SPINS {
            std::hint::spin_loop();
        } else if round < SPINS + YIELDS {
            yield_now();
        } else if start.elapsed() < budget {
            if cfg!(shuttle) {
                // Every task runs on one OS thread: sleeping would stall
                // the reader too. Let the scheduler pick instead.
                yield_now();
            } else {
                std::thread::sleep(sleep);
            }
            sleep = (sleep * 2).min(LONGEST_SLEEP);
        } else {
            break;
        }
    }
    STALLED_AT.store(nanos_since_anchor(), Ordering::Relaxed);
    false
}

impl<K, V> Shard<K, V> {
    /// Counts a slot just retired (`retire_slot`) as memory still held.
    /// Only with a bound: unbounded shards skip the bookkeeping.
    #[inline]
    pub(super) fn count_retired(&self, st: &mut State<K, V>, idx: u32) {
        if self.memory.bounded() {
            // The LRU keeps a removed slot's weight until the slot is reused.
            st.retired_weight += u128::from(st.lru.weight_of(idx));
        }
    }

    /// Puts reclaimed slots, their contents dropped, on the free list: the
    /// memory their values held is free.
    #[inline]
    pub(super) fn recycle(&self, st: &mut State<K, V>, slots: &[(u32, u32)]) {
        if !self.memory.bounded() {
            st.free.extend(slots.iter().map(|&(idx, _)| idx));
            return;
        }
        for &(idx, _) in slots {
            let weight = u128::from(st.lru.weight_of(idx));
            debug_assert!(weight <= st.retired_weight, "slot {idx} recycled twice");
            st.retired_weight = st.retired_weight.saturating_sub(weight);
            st.free.push(idx);
        }
    }

    /// Whether the shard's values, live and retired, leave room for an
    /// entry of `weight` (see `retired`). Always, without a bound.
    #[inline]
    pub(crate) fn memory_for(&self, st: &State<K, V>, weight: u64) -> bool {
        !self.memory.bounded()
            || self
                .memory
                .admits(st.lru.weight(), st.retired_weight, weight)
    }

    /// For an entry of `weight` that does not fit in memory: evicts until
    /// the live entries alone leave room for it within the bound (unless
    /// enough is retired already that the epoch looks stalled), and hands
    /// every slot held back to the epoch, so that `reclaim_for` can free
    /// them. Only what the memory needs: once it is stored, the insert
    /// evicts down to the weight budget as usual.
    #[cold]
    pub(crate) fn make_room<S: BuildHasher>(
        &self,
        st: &mut State<K, V>,
        ctx: &WriteCtx<'_, S>,
        weight: u64,
        guard: &Guard,
    ) where
        K: Hash,
    {
        if self.memory.worth_evicting(st.retired_weight) {
            st.lru.rebalance(&self.slab);
            while !self.memory.admits(st.lru.weight(), 0, weight) {
                let victim = st.lru.victim(&self.slab, NIL);
                if victim == NIL {
                    break;
                }
                self.unlink(st, ctx, victim, RemovalCause::Capacity, guard);
            }
        }
        if !st.retired.is_empty() {
            // Safe with removal notices pending (unlike the hand-over in
            // `alloc`): this runs inside a write whose guard is really
            // pinned whenever there is a listener, and no user code runs
            // between here and `end_write` taking the notices, so they are
            // read under that pin (a panic cannot leave them behind with
            // their slots handed over).
            self.retire_pending(st);
        }
    }

    /// After an insert found no room (`Inserted::Reclaim`), with the shard
    /// unlocked and, if possible, the thread unpinned: pushes the epoch
    /// along and drops the retired values it releases, until the shard has
    /// room for an entry of `weight` or a stalled reader makes it give up.
    /// Returns whether there is room.
    #[cold]
    pub(crate) fn reclaim_for(&self, weight: u64) -> bool {
        wait_for_reclaim(|| {
            // Drops what the mailbox holds (outside the lock) and recycles it.
            let mut st = self.lock_for_write();
            if !st.retired.is_empty() && st.notices.is_empty() {
                // Retired by other writers meanwhile.
                self.retire_pending(&mut st);
            }
            self.memory_for(&st, weight)
        })
    }
}
