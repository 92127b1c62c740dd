//! The pin's barrier, made asymmetric where the platform allows it.
//!
//! A pin must not let its thread's loads pass its store of the pinned
//! state (step 3 of the proof at `Collector::try_advance`). The classic
//! way is a full barrier in every pin: on x86 a locked `xchg`, which waits
//! for the thread's store buffer to drain (measured: removing it took a hit
//! from ~26.5 to ~23.5 ns, `hit_cost time`, and lifted every row of the
//! interleaved table by 5 to 10%).
//!
//! Pins are many and advances are few, so the cost can be moved: on x86
//! Linux, a pin through a thread's [`Held`](super::Held) is a plain store,
//! and each advance first runs `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)`,
//! which makes every CPU running a thread of the process execute a full
//! barrier before the call returns (threads not running have passed one:
//! a context switch is one). This is the asymmetric barrier userspace RCU
//! builds on (liburcu's membarrier flavour, folly's
//! `asymmetricHeavyBarrier`); the argument for the epoch is below. It
//! costs 0.1 to 0.35 µs per advance on the CI machine, and interrupts
//! the other CPUs running the process's threads, so advances are spaced
//! (`Collector::advance`).
//!
//! # Why a pin with no barrier is safe (`try_advance`'s proof, completed)
//!
//! A pin through a `Held` has no Fp: P is a plain store, which x86 may
//! hold in the CPU's store buffer while the loads after it read memory
//! (the only reordering x86 makes: loads are not reordered with loads,
//! stores not with stores, and a locked instruction or `mfence` drains
//! the buffer). The names are those of `Collector::try_advance`'s proof:
//! O unlinked by U, then tagged `t` by a load after the writer's fence
//! Fw; A the advance from `t + 1` to `t + 2`, with its fence F; R a
//! reader pinned by P that reads a location M before U (so it can reach
//! O). In place of Fp, A runs `membarrier` after F and before its scan:
//! for each CPU running a thread of the process, at some instant T_R
//! during the call, that CPU drains its store buffer (a full barrier,
//! sent by interrupt); a thread not running has an empty one.
//!
//! U is in memory before the tag load: drained by Fw when the thread that
//! unlinked O hands its batch over; else by that thread's unlock of the
//! shard (its stores reach memory in order, U before the unlock, and the
//! next holder's lock reads the unlock before that holder's Fw).
//!
//! * If R's CPU executed P before T_R, P is in memory by T_R, so the
//!   scan (after the call) reads P or a later state of R's (R's record
//!   is in the list it walks: published by a locked compare-exchange
//!   before R's first pin). If it reads P with `e == t + 1`: R's load of
//!   `E` read `t + 1`, stored (locked compare-exchange, so in memory at
//!   once) after the writer's tag load read `t`, with U in memory
//!   already (above). R's read of M comes after its load of `E` (x86
//!   does not reorder loads), so it read memory after U was there: it
//!   saw U, against the premise. So the scan reads an older epoch (no
//!   advance) or R's unpin, a store after R's reads, as before.
//! * If R executed P after T_R, its read of M came later still, and
//!   U was in memory before T_R: before the tag load read `t`; `t + 1`
//!   was stored after that, and A's load of `E` read it before F and the
//!   call. So R saw U: against the premise.
//!
//! So, as with Fp, the scan never lets `E` reach `t + 2` while such an
//! R is pinned. Pins through a handle (`pin`, `pin_temporary`) keep
//! their barrier and are covered by `try_advance`'s proof; a mix of both
//! kinds is covered by both. The writer's own reads after the unlink (a
//! listener) are covered as there: its pin P came before U and Fw, which
//! drained it.
//!
//! The mode is decided once, before any pin can skip its barrier and
//! before any advance ([`asymmetric`] runs the registration the first time
//! it is asked, and every caller waits for that answer), and never
//! changes. Where the kernel refuses the registration with an error (too
//! old, or a seccomp filter that returns one), or off x86 Linux, or under
//! shuttle, every pin keeps its full barrier and advances run none. (A
//! seccomp filter that kills the process on `membarrier` instead would
//! kill it at its first pin: Android before API 29 does that to apps,
//! which is why Android keeps the full barrier.)

/// The asymmetric barrier: x86 Linux, outside shuttle and miri. x86 only: the argument above is made in x86's memory model
/// (TSO), where a pin's store is the only access its loads may pass.
#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86", target_arch = "x86_64"),
    not(shuttle),
    not(miri)
))]
mod imp {
    use std::sync::OnceLock;

    /// `linux/membarrier.h`.
    const MEMBARRIER_CMD_QUERY: libc::c_long = 0;
    const MEMBARRIER_CMD_PRIVATE_EXPEDITED: libc::c_long = 1 << 3;
    const MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED: libc::c_long = 1 << 4;

    static MODE: OnceLock<bool> = OnceLock::new();

    fn membarrier(cmd: libc::c_long) -> libc::c_long {
        // SAFETY: `membarrier(cmd, flags)` takes two integers and touches
        // no memory of the caller's; an unknown command or an unsupported
        // kernel is refused with an error code (or ENOSYS), not undefined.
        unsafe { libc::syscall(libc::SYS_membarrier, cmd, 0 as libc::c_long) }
    }

    /// Whether pins may skip their barrier: the kernel has the expedited
    /// private command and registered the process for it.
    pub(in crate::store::epoch) fn asymmetric() -> bool {
        *MODE.get_or_init(|| {
            let supported = membarrier(MEMBARRIER_CMD_QUERY);
            supported >= 0
                && supported & MEMBARRIER_CMD_PRIVATE_EXPEDITED != 0
                && membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) == 0
        })
    }

    /// The advance's side: a full barrier on every CPU running a thread of
    /// the process, when pins skip theirs. False if the kernel refused it
    /// (once registered, only for want of memory: `ENOMEM`): the caller
    /// must not advance then.
    pub(in crate::store::epoch) fn heavy() -> bool {
        !asymmetric() || membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) == 0
    }
}

/// Elsewhere: every pin has its full barrier.
#[cfg(not(all(
    target_os = "linux",
    any(target_arch = "x86", target_arch = "x86_64"),
    not(shuttle),
    not(miri)
)))]
mod imp {
    pub(in crate::store::epoch) fn asymmetric() -> bool {
        false
    }

    pub(in crate::store::epoch) fn heavy() -> bool {
        true
    }
}

pub(super) use imp::{asymmetric, heavy};

/// Whether a pin through a `Held` skips its barrier (on the platforms of
/// the asymmetric barrier; `Handle::held` gives a `Held` there only once
/// the kernel registered the process).
pub(super) const LIGHT: bool = cfg!(all(
    target_os = "linux",
    any(target_arch = "x86", target_arch = "x86_64"),
    not(shuttle),
    not(miri)
));
