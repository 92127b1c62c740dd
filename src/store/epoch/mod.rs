//! Epoch-based reclamation of the near tier's own: what lets readers walk
//! the index and read slots with no lock while writers unlink and reuse them.
//!
//! The scheme is the classic one: Fraser's epoch-based reclamation
//! ("Practical lock-freedom", 2004), in the form crossbeam-epoch gave it (a
//! global epoch, per-thread records holding the epoch a thread is pinned
//! at, garbage freed two epochs after it was retired). It replaced
//! crossbeam-epoch here because of what a hit and a hand-over cost through
//! it (benches/RESULTS.md): its pin and unpin reach a thread-local of its
//! own through calls the compiler does not inline, and each hand-over of a
//! batch sealed a 2 KiB bag. Here the thread's record is reached through
//! the store's one thread-local (`local.rs`), and retired work goes to one
//! shared queue, one entry per batch.
//!
//! # The algorithm
//!
//! * A global epoch `E` (a counter; it only grows, by one at a time).
//! * A registry of records, one per thread that uses a cache (plus
//!   temporary ones, below). A record is allocated once and never freed: a
//!   thread that exits releases it, and a later thread reuses it. Its
//!   `state` word is `epoch << 1 | PINNED` while its thread is pinned,
//!   `HELD` while a thread holds it unpinned, `FREE` while no thread does.
//! * **Pin** (`Collector::pin`): if the thread's state (its own word, read
//!   relaxed) says pinned already, count one more nested guard; else load
//!   `E` and publish `E << 1 | PINNED` with a SeqCst read-modify-write (a
//!   `swap`: on x86 an `xchg`, a full barrier), or on other targets a
//!   store followed by a SeqCst fence. On x86 Linux the pins of a
//!   thread's fast path (`Collector::pin_held`) are a plain store
//!   instead, and each advance supplies the barrier they skip (`barrier`:
//!   `membarrier`). **Unpin** (dropping a [`Guard`]): a nested one only
//!   counts down; the last one is a Release store of the record's idle
//!   state (`HELD`, or `FREE` for a record no thread-local
//!   holds: the unpin gives it back). Both live in one word, `leave`, so
//!   an unpin reads one field.
//! * **Retire** (`Collector::retire`): after unlinking (under the shard
//!   lock), a writer hands the work ([`Deferred`]: a batch of slots for its
//!   shard's mailbox, or an old index table to free) to the shared queue,
//!   tagged with `E` read after a SeqCst fence. The queue is a mutex-guarded
//!   deque; tags are read under its lock, so they are in order.
//! * **Advance** (`Collector::try_advance`): load `E`, SeqCst fence (and,
//!   with the asymmetric barrier, `membarrier`), scan every record; if
//!   none is pinned at an epoch other than `E`, move `E` to `E + 1` (a
//!   compare-exchange: one advance per value).
//! * **Collect**: work tagged `t` runs once `E >= t + 2`, outside the
//!   queue's lock. Writers try to advance and collect on every hand-over
//!   (`retire`; with the asymmetric barrier and other threads about, once
//!   `ADVANCE_AT` works wait: `Collector::advance`), and `collect` is
//!   called by writers waiting for memory (`shard::retired`) and before a
//!   slab grows (`Shard::alloc`).
//!
//! # Invariants
//!
//! 1. Work retired with tag `t` runs only after `E` reached `t + 2`, and
//!    every advance scanned all records and found none pinned at an older
//!    epoch.
//! 2. A thread pinned while it could reach an object (it loaded a pointer
//!    or index to it before the unlink was visible to it, or it was pinned
//!    before unlinking it itself) holds `E` at most one past the object's
//!    tag until it unpins: the object is not freed before that (the proof
//!    is at `try_advance`).
//! 3. A record is used by one thread at a time: taken by a compare-exchange
//!    of its state from `FREE` (Acquire), given back by a Release store of
//!    `FREE`; its non-atomic field (`leave`) is touched only by
//!    the thread holding it, and only that thread writes its state.
//! 4. A record is given back only when it is unpinned and no guard of it is
//!    left: when its thread-local handle is dropped with no guard alive,
//!    or when the last guard of a record whose handle is gone is dropped
//!    (a temporary record, or one whose thread-local was torn down first:
//!    its idle state is `FREE`, so that guard's unpin gives it back).
//! 5. Nothing of a thread's stays behind when it exits: retired work is in
//!    the shared queue from the moment it is handed over, and any later
//!    collect by any thread runs it.
//!
//! # What may hold reclamation back
//!
//! A thread pinned for long (an eviction listener that blocks, an `iter`
//! cloning a large shard) keeps `E` within one of its epoch, so nothing
//! retired from then on runs until it unpins. `shard::retired` bounds the
//! memory that can pile up meanwhile and refuses inserts after its
//! patience; the thread stalled is never waited for without bound.
//!
//! # `unprotected`
//!
//! [`unprotected`] is a guard that pins nothing, for writers that only
//! touch what their shard's lock protects (the current table, linked
//! slots). Nothing read through it may be used after the lock is released,
//! and nothing is ever deferred through a guard (retiring needs none), so
//! it cannot free anything early.
//!
//! # Under shuttle
//!
//! The atomics and the queue's mutex come from `shim`, the thread-local
//! from shuttle's `thread_local!`, and the collector is a shuttle lazy
//! static (fresh for each execution): shuttle explores pins, advances and
//! collects like any other step. Records are leaked per execution there.
//! Every pin keeps its full barrier under shuttle (`barrier`): shuttle
//! models SeqCst fences, not `membarrier`, so the asymmetric mode is
//! argued in `barrier` and exercised by real threads (`tests.rs`), not by
//! schedules.

use std::cell::Cell;
use std::collections::VecDeque;
use std::marker::PhantomData;
use std::ptr;
use std::sync::PoisonError;

mod barrier;
mod deferred;

use crate::shim::{AtomicPtr, AtomicU64, Mutex, Ordering, fence};
pub(crate) use deferred::Deferred;
use deferred::Ready;

#[cfg(all(test, shuttle))]
mod shuttle_tests;
#[cfg(all(test, not(shuttle)))]
mod tests;

/// The low bit of a record's state: its thread is pinned.
const PINNED: u64 = 1;
/// A record's state while a thread holds it, unpinned.
const HELD: u64 = 0;
/// A record's state while no thread holds it (`PINNED` clear, so scans
/// skip it as they skip `HELD`).
const FREE: u64 = 2;
/// What each nested guard adds to a record's `leave`: above both idle
/// states, so `leave < NEST` means no nested guard.
const NEST: u64 = 4;
/// How many ready entries one look at the queue takes out.
const TAKE: usize = 8;

/// One cache-line pair, so the epoch every pin reads shares its line with
/// nothing writers or pins write.
#[repr(align(128))]
struct Padded<T>(T);

/// The epoch, the registry of records and the queue of retired work.
pub(crate) struct Collector {
    epoch: Padded<AtomicU64>,
    /// The registry: a list of records, pushed at the head, never shrunk.
    records: AtomicPtr<Record>,
    /// Retired work with its tag, oldest first.
    queue: Mutex<VecDeque<(u64, Deferred)>>,
    /// The queue's length as its last user left it (a hint read without
    /// the lock: see `advance`).
    queued: AtomicU64,
}

/// With the asymmetric barrier and other threads about, how many works
/// wait before a hand-over advances (`Collector::advance`): 8 kept the
/// 1-thread rows' cache misses, but cost the 2-thread write rows 10-20%.
/// A slab grows by at most `FLUSH_EVERY` slots between two advances
/// (its growth advances at once: `Shard::alloc`).
const ADVANCE_AT: u64 = 64;

/// A thread's record. Aligned to a cache-line pair: a pin writes `state`,
/// scans read it, and no two threads' records share a line.
///
/// `repr(C)`, its fields in the pair's second line: a pin's and an
/// unpin's stores to `state` are the only stores of every lookup at an
/// address that does not change (with the stats stripe's), and a load
/// issued soon after a store to the same address modulo 4 KiB waits for
/// it on x86 (4K aliasing). Other 128-aligned structures a lookup reads
/// keep their read fields in their first line (a shard's, the global
/// epoch), so none of them can alias `state`. At offset 0, `state` fell on
/// the 4 KiB offset of some shard's first line for 1 record in 8 (records
/// and shards are 128-aligned, shards 1 KiB apart), and the hits on that
/// shard waited: `hit_cost time` gave 40 to 85 ns a hit instead of ~30,
/// for the same binary, in the runs where the thread's record fell there.
#[repr(C, align(128))]
pub(crate) struct Record {
    _first_line: [u8; 64],
    /// `epoch << 1 | PINNED`, `HELD` or `FREE`. Written only by the
    /// thread holding the record (and by the compare-exchange taking it).
    state: AtomicU64,
    /// What the next unpin does, in one word so that it reads one field:
    /// the idle state (below [`NEST`]) plus `NEST` for each live guard past
    /// the first. The idle state is what the last unpin stores: `HELD`
    /// while a thread-local handle holds the record, `FREE` for a
    /// temporary record or once the handle is gone (the unpin gives the
    /// record back). Only the holder touches it.
    leave: Cell<u64>,
    /// The next record in the registry; set before the record is published
    /// and never changed.
    next: *const Record,
    /// The record's place in the registry, counted from 0 in the order
    /// records were made (set with `next`, never changed). The free record
    /// with the lowest number is reused before a new one is made, so the
    /// numbers of the records in use stay low: the stats stripe a holder
    /// counts on (`stats.rs`).
    number: usize,
}

// The layout `Record`'s doc argues: `state` in the pair's second line.
#[cfg(not(shuttle))]
const _: () = assert!(std::mem::offset_of!(Record, state) == 64);

// SAFETY: the atomic is shared as an atomic; `leave` is touched only by
// the thread holding the record (invariant 3: the hand-over between
// holders is a Release store and an Acquire compare-exchange of `state`,
// so each holder sees the last one's writes); `next` is written
// before the record is published (Release) and only read after.
unsafe impl Sync for Record {}
// SAFETY: as above; a record is reached only through `&'static Record`.
unsafe impl Send for Record {}

impl Record {
    /// Gives the record back to the registry (invariant 4: unpinned, no
    /// guard left).
    #[cold]
    fn release(&self) {
        debug_assert!(self.leave.get() < NEST, "released with a nested guard");
        // Release: the next holder's Acquire compare-exchange sees this
        // holder's writes to the non-atomic fields.
        self.state.store(FREE, Ordering::Release);
    }

    /// One more nested guard (out of the hot path's line).
    #[cold]
    #[inline(never)]
    fn nest(&self) {
        self.leave.set(self.leave.get() + NEST);
    }

    /// A nested guard dropped; `leave` is the word's value (at least
    /// `NEST`).
    #[cold]
    #[inline(never)]
    fn unnest(&self, leave: u64) {
        self.leave.set(leave - NEST);
    }

    /// Sets the idle state (`HELD` or `FREE`), keeping the nested count.
    fn set_idle(&self, idle: u64) {
        let leave = self.leave.get();
        self.leave.set(leave - leave % NEST + idle);
    }

    /// Whether the holder is pinned. Only for the holder: it reads its own
    /// last write.
    #[inline(always)]
    fn pinned(&self) -> bool {
        self.state.load(Ordering::Relaxed) & PINNED != 0
    }
}

/// A thread's hold on a record: lives in the thread-local (`local.rs`).
/// Dropping it gives the record back (at once, or when its last guard is
/// dropped).
pub(crate) struct Handle {
    record: &'static Record,
}

impl Handle {
    /// Whether the thread holds a guard of this handle's record.
    #[inline]
    pub(crate) fn is_pinned(&self) -> bool {
        self.record.pinned()
    }

    /// A copy of the handle's record, for a thread-local that can be read
    /// without a lazy-init check (see [`Collector::pin_held`]).
    /// `None` where a pin through a `Held` would skip its barrier
    /// (`barrier::LIGHT`) but the kernel refused the asymmetric barrier:
    /// the thread then pins through the handle, with its barrier.
    #[inline]
    pub(crate) fn held(&self) -> Option<Held> {
        (!barrier::LIGHT || barrier::asymmetric()).then_some(Held {
            record: self.record,
            _not_send: PhantomData,
        })
    }
}

/// A [`Handle`]'s record, not owning it: what the pin's fast path reads
/// (`local.rs`). Neither `Send` nor `Sync`: it stays on the handle's thread.
#[derive(Clone, Copy)]
pub(crate) struct Held {
    record: &'static Record,
    _not_send: PhantomData<*const ()>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.record.set_idle(FREE);
        if !self.record.pinned() {
            self.record.release();
        }
        // Else a guard outlives the thread-local (it cannot in the store:
        // guards live on the stack of the call that pinned): its drop
        // gives the record back.
    }
}

/// A pin of the current thread: while it lives, nothing the thread reaches
/// is freed (invariant 2). References read under it are bound to its
/// borrow, as with crossbeam's guard. Not `Send` nor `Sync` (its marker is a raw
/// pointer): it must be dropped on the thread that pinned.
pub(crate) struct Guard {
    /// The pinned record; for [`unprotected`]'s guard (never dropped),
    /// `NOBODY`.
    record: &'static Record,
    _not_send: PhantomData<*const ()>,
}

impl Guard {
    /// The number of the pinned record (see `Record::number`): while the
    /// guard lives, no other thread holds that record, so no other thread
    /// uses that number. `usize::MAX` for [`unprotected`]'s guard.
    #[inline(always)]
    pub(crate) fn holder(&self) -> usize {
        // (Set before the record was published, never written after.)
        self.record.number
    }
}

impl Drop for Guard {
    #[inline]
    fn drop(&mut self) {
        // A dropped guard was made by `pin_record`, so `record` is a
        // registry record held by this thread: the guard is neither Send
        // nor Sync, and a record is given back only when its last guard is
        // dropped (invariant 4). (The unprotected guard lives in a static
        // and is only lent out, so it is never dropped.)
        let record = self.record;
        let leave = record.leave.get();
        if leave >= NEST {
            record.unnest(leave);
        } else {
            // Release: every read made under the pin happens before a scan
            // that reads this store (Acquire), and so before the advance
            // that scan allows and anything freed after it; and if it is
            // `FREE`, before the next holder's use (invariant 3).
            record.state.store(leave, Ordering::Release);
        }
    }
}

/// The guard [`unprotected`] lends out.
struct Unprotected(Guard);

// SAFETY: its record is `NOBODY`, which no one pins or changes, and it is
// never dropped (a static); `Guard` is !Sync only so that a real pin stays
// on its thread.
unsafe impl Sync for Unprotected {}

/// The record of [`unprotected`]'s guard: in no registry, never pinned,
/// taken or written; numbered past every stats stripe.
static NOBODY: Record = Record {
    _first_line: [0; 64],
    state: AtomicU64::new(FREE),
    leave: Cell::new(FREE),
    next: ptr::null(),
    number: usize::MAX,
};

static UNPROTECTED: Unprotected = Unprotected(Guard {
    record: &NOBODY,
    _not_send: PhantomData,
});

/// A guard that pins nothing.
///
/// # Safety
/// Only for a caller holding the lock of the shard it reads: what it reads
/// through this guard (the current table, linked slots) must be something
/// no one can unlink while the lock is held, and must not be used after the
/// lock is released. (Retiring needs no guard, so nothing can be deferred
/// through it.)
#[inline]
pub(crate) unsafe fn unprotected() -> &'static Guard {
    &UNPROTECTED.0
}

/// Publishes a pin: `state` becomes `value`, then a full barrier, so that no
/// load made under the pin is performed before the store is visible.
#[inline(always)]
fn publish_pin(state: &AtomicU64, value: u64) {
    #[cfg(all(
        any(target_arch = "x86", target_arch = "x86_64"),
        not(miri),
        not(shuttle)
    ))]
    {
        // A SeqCst swap is a locked `xchg`: a full barrier for the hardware,
        // and an acquire for the compiler (no later load moves above it).
        // It stands for the store-then-SeqCst-fence below, which the C++
        // model names; it is cheaper than `mfence` (crossbeam-epoch relies
        // on the same property of x86 for its pin).
        state.swap(value, Ordering::SeqCst);
    }
    #[cfg(not(all(
        any(target_arch = "x86", target_arch = "x86_64"),
        not(miri),
        not(shuttle)
    )))]
    {
        // Release, as the swap above is: a scan that reads this pin (Acquire)
        // is ordered after the unpin before it (step 3 of the proof at
        // `try_advance`, "or a later pin").
        state.store(value, Ordering::Release);
        fence(Ordering::SeqCst);
    }
}

impl Collector {
    /// A collector with no record and nothing retired.
    pub(crate) const fn new() -> Self {
        Collector {
            epoch: Padded(AtomicU64::new(0)),
            records: AtomicPtr::new(ptr::null_mut()),
            queue: Mutex::new(VecDeque::new()),
            queued: AtomicU64::new(0),
        }
    }

    /// A record for the calling thread's thread-local.
    pub(crate) fn register(&'static self) -> Handle {
        Handle {
            record: self.acquire(true),
        }
    }

    /// Pins the thread holding `handle` (made by this collector's
    /// `register`).
    #[inline(always)]
    pub(crate) fn pin(&self, handle: &Handle) -> Guard {
        self.pin_record(handle.record, false)
    }

    /// Pins the thread holding the handle `held` was copied from, as
    /// [`pin`](Self::pin) does.
    ///
    /// # Safety
    /// That handle (made by this collector's `register`) is still alive:
    /// once it is dropped the record may be given back and taken by
    /// another thread, and two holders' pins would corrupt its state.
    /// (`Held` is not `Send`, so the caller is the handle's thread.)
    #[inline(always)]
    pub(crate) unsafe fn pin_held(&self, held: Held) -> Guard {
        // (A `Held` exists where pins skip their barrier only with the
        // asymmetric barrier on: `Handle::held`.)
        self.pin_record(held.record, barrier::LIGHT)
    }

    /// Pins with a record taken for this pin alone (the thread-local is
    /// being torn down); the record is given back when the guard drops.
    #[cold]
    pub(crate) fn pin_temporary(&'static self) -> Guard {
        self.pin_record(self.acquire(false), false)
    }

    /// Pins `record`'s thread: with no barrier if `light` (the advances
    /// run the other half: `barrier`), else with its full barrier.
    #[inline(always)]
    fn pin_record(&self, record: &'static Record, light: bool) -> Guard {
        if record.pinned() {
            record.nest();
        } else {
            // Acquire: pairs with the advance that stored this value (see
            // `try_advance`, step 3 of the proof).
            let epoch = self.epoch.0.load(Ordering::Acquire);
            if light {
                // Release, as `publish_pin`'s store; the compiler fence
                // keeps the loads made under the pin below the store in
                // the code (the CPU may still perform them first: see
                // `barrier`).
                record.state.store(epoch << 1 | PINNED, Ordering::Release);
                std::sync::atomic::compiler_fence(Ordering::SeqCst);
            } else {
                publish_pin(&record.state, epoch << 1 | PINNED);
            }
        }
        Guard {
            record,
            _not_send: PhantomData,
        }
    }

    /// A free record of the registry, or a new one. `owned`: held by a
    /// thread-local handle (else given back when its last guard drops).
    fn acquire(&'static self, owned: bool) -> &'static Record {
        let idle = if owned { HELD } else { FREE };
        // The free record with the lowest number, so that the numbers of
        // the records in use stay as low as they can: they are the stats
        // stripes, and a number past a cache's stripes counts on its shared
        // one. (The list runs from the newest record, numbered highest, so
        // the last free one met is the lowest. Taking the first met, after a
        // burst of threads, gave every later thread a high number: two
        // threads reading counted on one shared line, and lost half their
        // speed in the interleaved bench.) A lost race for it looks again.
        loop {
            let mut lowest = None;
            // Acquire: every record reached was published by a Release
            // compare-exchange of the head (read-modify-writes, so the
            // head's release sequence covers the earlier ones).
            let mut at = self.records.load(Ordering::Acquire).cast_const();
            // SAFETY: registry records are never freed (`&'static`).
            while let Some(record) = unsafe { at.as_ref() } {
                if record.state.load(Ordering::Relaxed) == FREE {
                    lowest = Some(record);
                }
                at = record.next;
            }
            let Some(record) = lowest else { break };
            // Acquire on success: this holder sees the last one's writes to
            // `leave` (invariant 3). `HELD`, not pinned: scans
            // skip it.
            if record
                .state
                .compare_exchange(FREE, HELD, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                record.leave.set(idle);
                return record;
            }
        }
        let record = Box::into_raw(Box::new(Record {
            _first_line: [0; 64],
            state: AtomicU64::new(HELD),
            leave: Cell::new(idle),
            next: ptr::null(),
            number: 0,
        }));
        // Acquire (here and on a failed exchange): `head`'s fields, read
        // below for its number, are as its maker wrote them before its
        // Release compare-exchange published it.
        let mut head = self.records.load(Ordering::Acquire);
        loop {
            // SAFETY: `head` is null or a registry record: never freed, and
            // published (its fields visible, see the Acquire above); its
            // `number` is never written after. The head was made last, so
            // it has the highest number.
            let number = unsafe { head.as_ref() }.map_or(0, |h| h.number + 1);
            // SAFETY: `record` is ours alone until the compare-exchange below
            // publishes it.
            unsafe {
                (*record).next = head.cast_const();
                (*record).number = number;
            }
            // Release: a scan or an `acquire` that reaches the record sees
            // its fields as written here.
            match self
                .records
                .compare_exchange(head, record, Ordering::Release, Ordering::Acquire)
            {
                // SAFETY: leaked (never freed), and from now on only read.
                Ok(_) => return unsafe { &*record },
                Err(now) => head = now,
            }
        }
    }

    /// Moves the epoch on by one if no thread is pinned at an older one.
    ///
    /// # Why a retired object is never freed under a reader
    ///
    /// Take an object O unlinked by a store U (under a shard lock), then
    /// retired by that writer: U, SeqCst fence Fw, load of `E` = `t` (the
    /// tag). O is freed only after some collector read `E >= t + 2`
    /// (Acquire), so after the advance A from `t + 1` to `t + 2`: load
    /// `E = t + 1` (Acquire), SeqCst fence F, scan (Acquire loads),
    /// compare-exchange to `t + 2` (Release). Take a reader R whose pin is
    /// P (the store of its state, then the full barrier Fp) and that reads,
    /// while pinned, a location M that U overwrote, seeing the value before
    /// U (so it can reach O). In the single total order S of SeqCst fences:
    ///
    /// 1. Fp precedes Fw: R's read of M is coherence-ordered before U, Fp
    ///    happens before that read and U before Fw, and two SeqCst fences
    ///    so placed are ordered that way in S ([atomics.order] p4).
    /// 2. Fw precedes F: the tag load (after Fw) read `t`, which is before
    ///    the store of `t + 1` in `E`'s modification order; that store
    ///    happens before F (A's Acquire load read it: the compare-exchange
    ///    that wrote it is a Release). Same rule.
    /// 3. So Fp precedes F, and A's scan (after F) reads R's state no
    ///    older than P: were it older, the same rule would put F before Fp.
    ///    If it reads P, R is pinned at the epoch `e` it loaded before P,
    ///    and A goes on only if `e == t + 1`. But then R's load of `E`
    ///    (Acquire) read the store of `t + 1`, which happens before Fp, and
    ///    the writer's tag load, after Fw, read `t`, older: that puts Fw
    ///    before Fp in S, against step 1. So the scan reads R's unpin (or a
    ///    later pin): R's reads under the pin happen before its Release
    ///    unpin, the scan reads it (or a later Release store or
    ///    read-modify-write of the record, which the unpin happens before)
    ///    with Acquire, and A's Release store of `t + 2` (read by the
    ///    freeing collector with Acquire) carries that to the free. A record
    ///    the scan does not reach at all was published (Release
    ///    compare-exchange of the list's head, before R's pin) after the
    ///    head the scan loaded: the same rule puts F before Fp again.
    ///
    /// A reader that pinned after the scan's fence F is the same case from
    /// the other side: Fw precedes F precedes Fp, so by step 1's rule its
    /// reads of M are not coherence-ordered before U: it sees U (or later)
    /// and cannot reach O. The writer's own reads after the unlink (an
    /// eviction listener reading the slots it removed) are covered too: it
    /// pinned (P) before U, so P happens before F and every scan after F
    /// sees it pinned at an epoch `<= t`, which holds `E` at `t + 1`.
    ///
    /// # With the asymmetric barrier (x86 Linux)
    ///
    /// Pins through a `Held` have no Fp there: `barrier`'s module doc
    /// carries the argument that each advance's `membarrier` (after F,
    /// before the scan) stands for it.
    pub(crate) fn try_advance(&self) {
        self.advance(true, true);
    }

    /// [`try_advance`](Self::try_advance) if `now`; else (a hand-over,
    /// with the asymmetric barrier and a record held by a thread other
    /// than the caller, who says whether it holds one) only once at least
    /// `ADVANCE_AT` works wait. A `membarrier` interrupts every other CPU
    /// running a thread of the process (on a VM, an exit each): run on
    /// every hand-over, it cost the 2- to 16-thread write rows of the
    /// interleaved table 10 to 20%. Alone, a thread pays only the call
    /// (~0.1 µs) and advances at once: its slots come back still cached.
    fn advance(&self, now: bool, caller_holds: bool) {
        // Acquire: step 2 (the store of this value happens before F).
        let epoch = self.epoch.0.load(Ordering::Acquire);
        fence(Ordering::SeqCst);
        if barrier::asymmetric() {
            // A first scan, with no barrier: a thread seen pinned at an
            // older epoch blocks the advance anyway (not advancing is safe),
            // so the `membarrier` is spared (a reader preempted while pinned
            // had made every hand-over run one for nothing).
            let Some(holders) = self.scan(epoch) else {
                return;
            };
            let others = holders - u64::from(caller_holds && holders > 0);
            if !now && others > 0 && self.queued.load(Ordering::Relaxed) < ADVANCE_AT {
                return;
            }
            // Pins that skipped their barrier get it here (the proof's last
            // part); if the kernel refused, advancing would not be safe.
            if !barrier::heavy() {
                return;
            }
        }
        if self.scan(epoch).is_none() {
            return;
        }
        // Release: a pin or a collect that reads the new epoch (Acquire)
        // sees everything the scan ordered before it. A failure means
        // another thread advanced from this epoch: nothing to do.
        let _ =
            self.epoch
                .0
                .compare_exchange(epoch, epoch + 1, Ordering::Release, Ordering::Relaxed);
    }

    /// The scan of `try_advance`'s proof (step 3): `None` if a record is
    /// pinned at an epoch other than `epoch`, else how many records a
    /// thread holds.
    fn scan(&self, epoch: u64) -> Option<u64> {
        let mut holders = 0;
        let mut at = self.records.load(Ordering::Acquire).cast_const();
        // SAFETY: registry records are never freed.
        while let Some(record) = unsafe { at.as_ref() } {
            // Acquire: pairs with the Release unpin (step 3).
            let state = record.state.load(Ordering::Acquire);
            if state & PINNED != 0 && state >> 1 != epoch {
                return None;
            }
            holders += u64::from(state != FREE);
            at = record.next;
        }
        Some(holders)
    }

    /// [`retire_by`](Self::retire_by) for a caller that holds a record.
    #[cfg(test)]
    pub(crate) fn retire(&self, work: Deferred) {
        self.retire_by(work, true);
    }

    /// Hands `work` over, to run once no reader can reach what it frees;
    /// also advances the epoch if it can (spaced: see `advance`, for
    /// which `caller_holds` says whether the calling thread holds a
    /// record; a writer that never read holds none) and runs what is
    /// ready.
    ///
    /// Call after the unlink that made what `work` frees unreachable (the
    /// SeqCst fence below orders the two). Needs no guard: the caller may
    /// be pinned or not.
    pub(crate) fn retire_by(&self, work: Deferred, caller_holds: bool) {
        // (The waits for memory and a slab's growth `collect`: at once.)
        self.advance(false, caller_holds);
        let mut ready = Ready::default();
        let more = {
            let mut queue = self.lock_queue();
            // Fw of `try_advance`'s proof: orders the unlink before the tag.
            fence(Ordering::SeqCst);
            // Acquire: also what decides readiness below (pairs with the
            // advance's Release).
            let epoch = self.epoch.0.load(Ordering::Acquire);
            queue.push_back((epoch, work));
            ready.take(&mut queue, epoch, &self.queued)
        };
        ready.run();
        if more {
            self.run_ready();
        }
    }

    /// Advances the epoch if it can, then runs the retired work that is
    /// ready.
    pub(crate) fn collect(&self) {
        self.try_advance();
        self.run_ready();
    }

    /// Runs every retired work whose tag is two epochs old.
    fn run_ready(&self) {
        loop {
            let mut ready = Ready::default();
            let more = {
                let mut queue = self.lock_queue();
                // Acquire: pairs with the advance that stored it (the free
                // happens after the scan that allowed it).
                let epoch = self.epoch.0.load(Ordering::Acquire);
                ready.take(&mut queue, epoch, &self.queued)
            };
            // Outside the queue's lock (a delivery takes a mailbox's).
            ready.run();
            if !more {
                return;
            }
        }
    }

    fn lock_queue(&self) -> crate::shim::MutexGuard<'_, VecDeque<(u64, Deferred)>> {
        // Poisoning cannot leave the queue inconsistent: no code that can
        // panic runs under the lock but the deque's own (an allocation).
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The current epoch (tests).
    #[cfg(all(test, not(shuttle)))]
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.0.load(Ordering::Acquire)
    }

    /// How many retired works wait (tests).
    #[cfg(all(test, not(shuttle)))]
    pub(crate) fn pending(&self) -> usize {
        self.lock_queue().len()
    }
}

impl Drop for Collector {
    /// Runs the work still queued. The global collector is a static and
    /// never dropped; a collector is dropped only when no thread can pin
    /// it any more (a test's own; under shuttle, the execution's at its
    /// end), so no reader is left to protect.
    fn drop(&mut self) {
        let queue = std::mem::take(self.queue.get_mut().unwrap_or_else(PoisonError::into_inner));
        for (_, work) in queue {
            work.run();
        }
    }
}

#[cfg(not(shuttle))]
static COLLECTOR: Collector = Collector::new();

/// The collector of every cache: their readers pin it, their writers
/// retire to it. Nearfar's own, so no other crate's garbage ever runs
/// inside a cache (under a shard lock), and no other crate's pins hold
/// back its reuse.
#[cfg(not(shuttle))]
#[inline(always)]
pub(crate) fn collector() -> &'static Collector {
    &COLLECTOR
}

#[cfg(shuttle)]
shuttle::lazy_static! {
    static ref COLLECTOR: Collector = Collector::new();
}

/// The collector of every cache (under shuttle: one per execution).
#[cfg(shuttle)]
pub(crate) fn collector() -> &'static Collector {
    &COLLECTOR
}

/// Hands `work` to the global collector: see [`Collector::retire_by`]
/// (`caller_holds`: whether the calling thread holds a record,
/// `local::holds_record`).
pub(crate) fn retire(work: Deferred, caller_holds: bool) {
    collector().retire_by(work, caller_holds);
}

/// Advances the global epoch if it can and runs what is ready.
pub(crate) fn collect() {
    collector().collect();
}
