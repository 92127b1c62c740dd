//! An entry's expiry in four bytes: whole milliseconds (or, far off, whole
//! seconds) after its shard's base, rounded up, so an entry never expires
//! early. One place decides the encoding, its rounding and its rebase.
//!
//! The rest of the store sees expiries as the clock's nanoseconds since the
//! cache was built, plus one (`ttl`), 0 meaning never: [`Stamp::get`] decodes
//! to exactly that. Expiry is thus kept to the millisecond: a stamp decodes
//! to the first whole millisecond after the base at or past the exact expiry
//! (past 2^31 ms from the base, the first whole second).
//!
//! # The code
//! | code | expires at (clock ns) |
//! |---|---|
//! | 0 | never |
//! | `1 ..= 2^31 - 1` | `base + code` ms |
//! | `2^31 + s`, `s < 2^31 - 1` | `base + s` seconds (`s = 0`: at the base, so already past) |
//! | `u32::MAX` | `u64::MAX`: further than any clock reading can reach |
//!
//! Decoding is exact u64 arithmetic (saturating), so a read never wraps.
//!
//! # Rebase
//! The base is a shard's; it starts at the cache's creation. Once `now` is
//! [`REBASE_AFTER`] (2^30 ms, ~12.4 days) past it, the next write that
//! encodes an expiry first moves it forward by whole seconds, to about
//! [`KEEP_BEHIND`] (2^29 ms, ~6.2 days) before `now`, and shifts every slot's
//! code by as much (live or retired: readers may still be reading a retired
//! slot). So a TTL under 2^30 ms always fits the millisecond range. An expiry
//! already before the new base becomes "at the base" (past, never 0): exact
//! for every expiry `keep_expired` can still care about when it keeps entries
//! at most ~6.2 days; a longer `keep_expired` may keep an entry that expired
//! more than ~6.2 days before a rebase up to that much longer.
//!
//! # Ordering (the rebase against a lock-free reader)
//! The writer, under the shard lock, stores every shifted code (Relaxed),
//! then the new base (Release). A reader loads a non-zero code, then the base
//! (Acquire), then the code again, and decodes that second code with that
//! base:
//! * the reader sees the new base: the Acquire makes the shifted codes
//!   stored before it visible, so it reads a shifted code (or one shifted by
//!   a later rebase, which decodes earlier: see below): correct;
//! * the reader sees the old base: it reads the old code (correct) or a
//!   shifted one, which decoded against the old base comes out Δ earlier: a
//!   spurious "expired" (a miss, which the writer re-checks before removing
//!   anything, with the current base), never a stale hit.
//!
//! A code of 0 (never) is never shifted to or from anything else, so a reader
//! that loads 0 needs no base: a cache without TTLs pays one load and a test
//! per hit, as before.

use crate::shim::{AtomicU32, AtomicU64, Ordering};

/// Nanoseconds per millisecond.
const MS: u64 = 1_000_000;
/// Nanoseconds per second.
const SECOND: u64 = 1_000_000_000;
/// The top bit of a code: its unit is the second.
const SECONDS: u32 = 1 << 31;
/// Expires at the base: the smallest code that is already past.
const AT_BASE: u32 = SECONDS;
/// Expires at `u64::MAX`, beyond the second range.
const END: u32 = u32::MAX;
/// The largest count of milliseconds a code holds.
const MAX_MS: u64 = (SECONDS - 1) as u64;
/// The largest count of seconds a code holds (`END` excluded).
const MAX_SECONDS: u64 = (END - 1 - SECONDS) as u64;
/// How far past the base `now` may be before a write rebases (2^30 ms).
pub(crate) const REBASE_AFTER: u64 = (1 << 30) * MS;
/// Where a rebase puts the base: about this far before `now` (2^29 ms).
pub(crate) const KEEP_BEHIND: u64 = (1 << 29) * MS;

/// The code for an expiry `expires` (clock ns, 0 = never) against `base`,
/// rounded up to the unit. An expiry at or before the base is "at the base".
#[inline]
pub(crate) const fn encode(expires: u64, base: u64) -> u32 {
    if expires == 0 {
        return 0;
    }
    let after = expires.saturating_sub(base);
    if after == 0 {
        return AT_BASE;
    }
    let ms = after.div_ceil(MS);
    if ms <= MAX_MS {
        return ms as u32;
    }
    let s = after.div_ceil(SECOND);
    if s <= MAX_SECONDS {
        return SECONDS | s as u32;
    }
    END
}

/// The expiry (clock ns, 0 = never) a `code` stands for against `base`.
#[inline]
pub(crate) const fn decode(code: u32, base: u64) -> u64 {
    match code {
        0 => 0,
        END => u64::MAX,
        c if c & SECONDS == 0 => base.saturating_add(c as u64 * MS),
        c => base.saturating_add((c & !SECONDS) as u64 * SECOND),
    }
}

/// `code` against a base moved `delta` (whole seconds, in ns) later: the
/// same expiry, or "at the base" if it is before the new base.
#[inline]
pub(crate) const fn shift(code: u32, delta: u64) -> u32 {
    match code {
        0 | END => code,
        c if c & SECONDS == 0 => {
            let ms = delta / MS;
            if c as u64 > ms {
                (c as u64 - ms) as u32
            } else {
                AT_BASE
            }
        }
        c => {
            let s = delta / SECOND;
            let have = (c & !SECONDS) as u64;
            if have > s {
                SECONDS | (have - s) as u32
            } else {
                AT_BASE
            }
        }
    }
}

/// How far (whole seconds, in ns) to move the base at `now`: `None` while
/// it is less than [`REBASE_AFTER`] behind.
#[inline]
pub(crate) const fn rebase_by(base: u64, now: u64) -> Option<u64> {
    if now.saturating_sub(base) < REBASE_AFTER {
        return None;
    }
    let behind = now - base - KEEP_BEHIND;
    Some(behind / SECOND * SECOND)
}

/// A shard's base: clock nanoseconds (as `ttl`'s `now`) that its slots'
/// codes count from. Written only under the shard lock (a rebase).
pub(crate) struct Base(AtomicU64);

impl Base {
    /// A base at the cache's creation (`ttl`'s `now` then: 1).
    pub(crate) fn new() -> Self {
        Base(AtomicU64::new(1))
    }

    /// The base, for the shard's writer (under the lock: it alone stores it).
    #[inline]
    pub(crate) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    /// Publishes a new base, after every code was shifted to it (see the
    /// module's "Ordering"). Under the shard lock.
    pub(crate) fn set(&self, base: u64) {
        // Release: a reader whose Acquire load sees this base sees the
        // shifted codes stored before it.
        self.0.store(base, Ordering::Release);
    }
}

/// A slot's expiry code (see the module docs). All-zero bytes are "never".
pub(crate) struct Stamp(AtomicU32);

impl Stamp {
    /// A stamp that never expires.
    #[cfg(shuttle)]
    pub(crate) fn never() -> Self {
        Stamp(AtomicU32::new(0))
    }

    /// The expiry (clock ns, 0 = never) against `base`, the slot's shard's.
    /// Lock-free: see the module's "Ordering".
    #[inline(always)]
    pub(crate) fn get(&self, base: &Base) -> u64 {
        // Relaxed: only whether it is 0 is used, and that never changes
        // while the slot is published.
        if self.0.load(Ordering::Relaxed) == 0 {
            return 0;
        }
        self.decode_against(base)
    }

    /// [`Stamp::get`] of a code that is not 0. Inlined: the hit tests for
    /// an expiry first, on a branch of its own laid out of the way, so a
    /// hit without a TTL never meets this; out of line it cost a hit with
    /// one ~3 instructions more (callgrind).
    #[inline(always)]
    fn decode_against(&self, base: &Base) -> u64 {
        // Acquire, then the code again: see the module's "Ordering".
        let base = base.0.load(Ordering::Acquire);
        decode(self.0.load(Ordering::Relaxed), base)
    }

    /// Whether the entry expires at all (its code is not 0).
    #[inline]
    pub(crate) fn is_set(&self) -> bool {
        self.0.load(Ordering::Relaxed) != 0
    }

    /// Stores `code`: before the slot is published, or a rebase's shift
    /// (under the shard lock, see the module's "Ordering").
    #[inline]
    pub(crate) fn set(&self, code: u32) {
        self.0.store(code, Ordering::Relaxed);
    }

    /// Shifts the code to a base `delta` later (a rebase, under the lock).
    pub(crate) fn shift(&self, delta: u64) {
        let code = self.0.load(Ordering::Relaxed);
        if code != 0 {
            self.0.store(shift(code, delta), Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests;
