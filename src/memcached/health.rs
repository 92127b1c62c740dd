//! Whether a server (or a whole far tier) is worth asking: one circuit, used
//! by the client for each server (dead-server ejection) and by `NearFar`
//! for its far tier (the circuit breaker), and the one verdict an error
//! gives on it.
//!
//! Closed, every request goes through. After `threshold` consecutive
//! failures (no answer, or an answer that made no sense: see
//! [`Verdict`]) the circuit opens for `cooldown`: requests skip it at once.
//! When the cooldown is over exactly one caller wins [`Pass::Probe`], and
//! claiming it moves the deadline on by another cooldown, so the others
//! keep skipping until the probe's outcome is known or, if none is ever
//! recorded, until another probe is due. An answer closes the circuit; a
//! failure opens it again for a full cooldown.
//!
//! # Two circuits in a row
//!
//! `NearFar`'s breaker sits in front of the client, whose servers have
//! circuits of their own: a request the breaker lets through may still be
//! refused by the client, unsent, with `Error::AllServersDown`
//! ([`Verdict::HeldOut`]). Stacked naively the two cooldowns add up: a
//! breaker probe that reaches the client while the client's own probe is
//! not due yet (or was just taken by another of its callers: a second
//! cache over the same client) is refused, counts as a failure, and holds
//! the far tier out for another whole cooldown, during which the client's
//! probe falls due but nobody asks. Recovery then takes up to the sum of
//! the two cooldowns instead of the longer one. So:
//!
//! - the breaker claims its probe only when the client would send it
//!   ([`Circuit::pass_when`], asked of the client's own circuits): until
//!   then its calls skip as when it is open, and the first call once both
//!   are due probes both;
//! - a breaker probe the client refused anyway (another caller of the
//!   client took its probe meanwhile) proves nothing: it is given back, not
//!   counted as a failure ([`Circuit::record`]).
//!
//! Then the far tier is asked again as soon as the later of the two is
//! due: with the defaults (1 s each) memcached coming back is used again
//! within about one second, not two, and each server still gets one probe
//! per cooldown, sent by the client. The client's own verdicts are
//! unchanged: it never records `AllServersDown` (no server was asked).
//!
//! The circuit is sans-IO: every method that needs the time takes `now`,
//! nanoseconds on the owner's clock (an injected [`Clock`](crate::Clock)
//! makes it testable without sleeping).

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use super::error::Error;

/// What a request's outcome says about the server it went to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The server answered (a value, a miss, a refusal, `SERVER_ERROR`):
    /// it is up.
    Up,
    /// No answer (refused or failed connect, I/O error, timeout), or an
    /// answer that made no sense: count it against the server.
    Down,
    /// Nothing was sent: the client's own circuits hold every server out
    /// (`Error::AllServersDown`). The client never records it (it has no
    /// server to record it against); for a circuit in front of the client
    /// (`NearFar`'s breaker) it is a failure when that circuit was closed
    /// (the far tier is down, as far as anyone knows) and proves nothing
    /// for a probe (see [`Circuit::record`]).
    HeldOut,
    /// Nothing was sent (an invalid key, a value too large, a codec error),
    /// or the outcome proves nothing (all connections busy, or a TLS
    /// handshake that failed: see [`Error::verdict`]): neither.
    Unknown,
}

impl Error {
    /// What this error says about the server's health: the one place that
    /// decides it, for the client's dead-server ejection and for
    /// `NearFar`'s circuit breaker alike.
    ///
    /// A failed TLS handshake ([`Error::Tls`]: a certificate not trusted, a
    /// port without TLS) says nothing of the server's health: it is a
    /// mismatch of configurations, and every connection fails the same way
    /// until one side changes. Counted as a failure it would eject the
    /// server (and open `NearFar`'s breaker), and callers would then be
    /// told [`Error::AllServersDown`] instead of what is wrong; so it is
    /// [`Verdict::Unknown`], and each request to the server reports it.
    /// (A socket that fails during the handshake is an [`Error::Connect`],
    /// [`Verdict::Down`] as any failed connect.)
    pub(crate) fn verdict(&self) -> Verdict {
        match self {
            Error::Io(_) | Error::Timeout | Error::Connect { .. } | Error::Protocol(_) => {
                Verdict::Down
            }
            Error::AllServersDown => Verdict::HeldOut,
            Error::Server(_) | Error::NotStored | Error::Client(_) => Verdict::Up,
            Error::PoolTimeout
            | Error::Codec(_)
            | Error::InvalidKey { .. }
            | Error::ValueTooLarge { .. }
            | Error::Config(_) => Verdict::Unknown,
            #[cfg(feature = "tls")]
            Error::Tls { .. } => Verdict::Unknown,
        }
    }

    /// Whether a write that failed with this error may or may not have
    /// reached the server (or may still land): a failure a retry could
    /// cure, or a reply that made no sense. Not a refusal made before
    /// sending, nor the server's own answer (`SERVER_ERROR`,
    /// `CLIENT_ERROR`, not stored), which the caller is told of and which
    /// changed nothing it did not report. Decides what the client records
    /// as owed (see [`pending`](super::pending)) and when a `NearFar` call
    /// gives up on a pool.
    ///
    /// A failed TLS handshake counts, as a failed connect does: the write
    /// never reached the server, whose older copy must not be read if the
    /// handshake works again later (a certificate put right on the server).
    pub(crate) fn leaves_doubt(&self) -> bool {
        self.is_retryable() || matches!(self, Error::Protocol(_)) || self.is_tls()
    }
}

/// What [`Circuit::pass`] granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pass {
    /// Closed: go ahead.
    Closed,
    /// The cooldown is over and this caller holds the single probe: report
    /// its outcome ([`Circuit::success`], [`Circuit::failure`], or
    /// [`Circuit::release`] when it proved nothing).
    Probe,
    /// Open, or another caller holds the probe: skip it.
    Skip,
}

/// A failure count, and the time until which the circuit is open.
#[derive(Debug)]
pub(crate) struct Circuit {
    /// Consecutive failures that open it; 0: it never opens.
    threshold: u32,
    cooldown: u64,
    failures: AtomicU32,
    /// `now` until which the circuit is open; 0: closed.
    open_until: AtomicU64,
    /// Times it opened from closed.
    pub(crate) trips: AtomicU64,
    /// Requests it turned away.
    pub(crate) skips: AtomicU64,
}

// Orderings: the circuit guards no other memory. Its fields are hints that
// callers read and write independently, so Relaxed suffices throughout;
// the compare-exchanges make "one caller trips it" and "one caller probes"
// exact.
impl Circuit {
    /// A closed circuit that opens after `threshold` consecutive failures
    /// (0: never) for `cooldown`.
    pub(crate) fn new(threshold: u32, cooldown: Duration) -> Circuit {
        Circuit {
            threshold,
            cooldown: u64::try_from(cooldown.as_nanos()).unwrap_or(u64::MAX),
            failures: AtomicU32::new(0),
            open_until: AtomicU64::new(0),
            trips: AtomicU64::new(0),
            skips: AtomicU64::new(0),
        }
    }

    /// The deadline of a cooldown starting at `now` (never 0, "closed").
    fn reopen_at(&self, now: u64) -> u64 {
        now.saturating_add(self.cooldown).max(1)
    }

    /// Whether a request may go through at `now` (see [`Pass`]).
    pub(crate) fn pass(&self, now: u64) -> Pass {
        let until = self.open_until.load(Ordering::Relaxed);
        if until == 0 {
            return Pass::Closed;
        }
        if now >= until {
            match self.open_until.compare_exchange(
                until,
                self.reopen_at(now),
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Pass::Probe,
                // Closed meanwhile by an answer.
                Err(0) => return Pass::Closed,
                Err(_) => {}
            }
        }
        self.skips.fetch_add(1, Ordering::Relaxed);
        Pass::Skip
    }

    /// As [`Circuit::pass`], for a circuit in front of another one (the
    /// client's servers' circuits): a due probe is claimed only if `ready()`
    /// says what lies behind would send it now; if not, the caller skips,
    /// as while the cooldown runs, and the probe stays due. `ready` is asked
    /// only when a probe is due.
    pub(crate) fn pass_when(&self, now: u64, ready: impl FnOnce() -> bool) -> Pass {
        let until = self.open_until.load(Ordering::Relaxed);
        if until != 0 && now >= until && !ready() {
            self.skips.fetch_add(1, Ordering::Relaxed);
            return Pass::Skip;
        }
        self.pass(now)
    }

    /// Whether requests go through at `now` without probing (not open, or
    /// its cooldown is over): for looking, not for sending.
    pub(crate) fn is_routable(&self, now: u64) -> bool {
        let until = self.open_until.load(Ordering::Relaxed);
        until == 0 || now >= until
    }

    /// Whether the circuit is open (a probe counts as open until it
    /// succeeds).
    pub(crate) fn is_open(&self) -> bool {
        self.open_until.load(Ordering::Relaxed) != 0
    }

    /// The server answered: closes the circuit. Costs two loads when it
    /// is closed already.
    pub(crate) fn success(&self) {
        if self.failures.load(Ordering::Relaxed) != 0 {
            self.failures.store(0, Ordering::Relaxed);
        }
        if self.open_until.load(Ordering::Relaxed) != 0 {
            self.open_until.store(0, Ordering::Relaxed);
        }
    }

    /// A request failed at `now` ([`Verdict::Down`]). Returns `true` when
    /// this opened the circuit (from closed: the `threshold`-th failure in a
    /// row), or opened it again (a failure while it was open, a probe's
    /// above all: a full cooldown from now).
    pub(crate) fn failure(&self, now: u64) -> bool {
        if self.threshold == 0 {
            return false;
        }
        let until = self.open_until.load(Ordering::Relaxed);
        if until != 0 {
            self.open_until
                .store(self.reopen_at(now), Ordering::Relaxed);
            return true;
        }
        let failures = self
            .failures
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1);
        if failures < self.threshold {
            return false;
        }
        // Of callers failing at once, one trips it.
        let tripped = self
            .open_until
            .compare_exchange(0, self.reopen_at(now), Ordering::Relaxed, Ordering::Relaxed)
            .is_ok();
        if tripped {
            self.failures.store(0, Ordering::Relaxed);
            self.trips.fetch_add(1, Ordering::Relaxed);
        }
        tripped
    }

    /// A probe that proved nothing ([`Verdict::Unknown`], or a panic in the
    /// caller's code): the next caller probes at once. Nothing for another
    /// pass.
    pub(crate) fn release(&self, pass: Pass) {
        if pass == Pass::Probe {
            // 1 is in the past of every `now` but 0: due for a probe. Only
            // if no outcome came in meanwhile.
            let until = self.open_until.load(Ordering::Relaxed);
            if until != 0 {
                let _ = self.open_until.compare_exchange(
                    until,
                    1,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                );
            }
        }
    }

    /// Records `verdict` for a request that went through with `pass` at
    /// `now`; returns [`Circuit::failure`]'s answer.
    ///
    /// [`Verdict::HeldOut`] (the client behind sent nothing) counts as a
    /// failure for a request that passed a closed circuit, and gives a
    /// probe back: the probe reached no server, so it neither closes the
    /// circuit nor holds it open for another cooldown (see the module docs,
    /// "Two circuits in a row").
    pub(crate) fn record(&self, verdict: Verdict, pass: Pass, now: u64) -> bool {
        match (verdict, pass) {
            (Verdict::Up, _) => {
                self.success();
                false
            }
            (Verdict::Down, _) | (Verdict::HeldOut, Pass::Closed | Pass::Skip) => self.failure(now),
            (Verdict::Unknown, _) | (Verdict::HeldOut, Pass::Probe) => {
                self.release(pass);
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: u64 = 1_000_000_000;

    #[test]
    fn opens_after_threshold_and_probes_once() {
        let c = Circuit::new(2, Duration::from_secs(10));
        assert_eq!(c.pass(0), Pass::Closed);
        assert!(!c.failure(0));
        assert_eq!(c.pass(0), Pass::Closed);
        assert!(c.failure(SECOND));
        assert!(c.is_open() && !c.is_routable(2 * SECOND));
        assert_eq!(c.pass(2 * SECOND), Pass::Skip);

        // The cooldown is over: one probe, the others are kept away.
        let over = 11 * SECOND + 1;
        assert!(c.is_routable(over));
        assert_eq!(c.pass(over), Pass::Probe);
        assert!(!c.is_routable(over));
        assert_eq!(c.pass(over), Pass::Skip);
        assert_eq!(c.pass(over + SECOND), Pass::Skip);

        // The probe failed: open again at once, for a full cooldown.
        assert!(c.failure(over + SECOND));
        assert_eq!(c.pass(over + 5 * SECOND), Pass::Skip);
        let over = over + 11 * SECOND + 1;
        assert_eq!(c.pass(over), Pass::Probe);

        // The probe succeeded: closed for everyone.
        c.success();
        assert_eq!(c.pass(over), Pass::Closed);
        assert!(!c.is_open());
        assert_eq!(c.trips.load(Ordering::Relaxed), 1);
        assert_eq!(c.skips.load(Ordering::Relaxed), 4);

        // A probe whose outcome is never recorded lets another try later.
        assert!(!c.failure(over));
        assert!(c.failure(over));
        let over = over + 10 * SECOND;
        assert_eq!(c.pass(over), Pass::Probe);
        assert_eq!(c.pass(over + 10 * SECOND), Pass::Probe);
    }

    #[test]
    fn a_released_probe_neither_closes_nor_extends() {
        let c = Circuit::new(1, Duration::from_secs(3600));
        assert!(c.failure(0));
        let later = 3600 * SECOND;
        assert_eq!(c.pass(later), Pass::Probe);
        c.release(Pass::Probe);
        assert!(c.is_open(), "a probe that reached no server closes nothing");
        assert_eq!(c.pass(later), Pass::Probe, "the next caller probes at once");
        c.success();
        assert!(!c.is_open());
        c.release(Pass::Closed);
        assert_eq!(c.pass(later), Pass::Closed);
    }

    #[test]
    fn verdicts_drive_it() {
        let c = Circuit::new(1, Duration::from_secs(1));
        assert!(!c.record(Verdict::Unknown, Pass::Closed, 0));
        assert!(!c.record(Verdict::Up, Pass::Closed, 0));
        assert!(c.record(Verdict::Down, Pass::Closed, 0));
        assert!(c.is_open());
        let pass = c.pass(2 * SECOND);
        assert_eq!(pass, Pass::Probe);
        assert!(!c.record(Verdict::Up, pass, 2 * SECOND));
        assert!(!c.is_open());
        assert_eq!(Error::Timeout.verdict(), Verdict::Down);
        assert_eq!(Error::NotStored.verdict(), Verdict::Up);
        assert_eq!(Error::PoolTimeout.verdict(), Verdict::Unknown);
    }

    #[test]
    fn failures_at_once_trip_it_once_and_one_caller_probes() {
        const THREADS: usize = 8;
        for _ in 0..50 {
            let c = Circuit::new(1, Duration::from_secs(1));
            let barrier = std::sync::Barrier::new(THREADS);
            let probes = AtomicU32::new(0);
            std::thread::scope(|s| {
                for _ in 0..THREADS {
                    s.spawn(|| {
                        barrier.wait();
                        c.failure(0);
                    });
                }
            });
            assert_eq!(c.trips.load(Ordering::Relaxed), 1);
            std::thread::scope(|s| {
                for _ in 0..THREADS {
                    s.spawn(|| {
                        barrier.wait();
                        if c.pass(2 * SECOND) == Pass::Probe {
                            probes.fetch_add(1, Ordering::Relaxed);
                        }
                    });
                }
            });
            assert_eq!(probes.load(Ordering::Relaxed), 1);
        }
    }

    #[test]
    fn zero_threshold_never_opens() {
        let c = Circuit::new(0, Duration::from_secs(1));
        for _ in 0..10 {
            assert!(!c.failure(0));
        }
        assert_eq!(c.pass(0), Pass::Closed);
    }

    /// Two caches' breakers in front of one client's circuit of its one
    /// server (`NearFar`s sharing a `Client`), driven on a [`MockClock`]:
    /// each breaker's caller calls every `tick`; the server answers from
    /// `back` on. The first breaker opened at 0 with the server's circuit,
    /// the second at `phase`. `gated`: a breaker's probe waits for the
    /// client's ([`Circuit::pass_when`]) and a refusal gives it back
    /// ([`Verdict::HeldOut`]); else a breaker passes on its own and counts
    /// a refusal as a failure (the circuits stacked). Returns when each
    /// breaker's caller first got an answer, and when each request reached
    /// the server.
    fn layered(gated: bool, phase: u64, back: u64) -> ([u64; 2], Vec<u64>) {
        use crate::clock::{MockClock, Timer};
        use std::sync::Arc;

        const TICK: u64 = SECOND / 100;
        let clock = MockClock::new();
        let timer = Timer::new(Some(Arc::new(clock.clone())));
        let breakers = [(); 2].map(|()| Circuit::new(5, Duration::from_secs(1)));
        let server = Circuit::new(2, Duration::from_secs(1));
        let mut asked = Vec::new();
        let mut answered = [None; 2];
        let mut opened = [false; 2];
        server.failure(0);
        server.failure(0);
        while timer.now() < back + 10 * SECOND {
            let now = timer.now();
            for (i, breaker) in breakers.iter().enumerate() {
                if !opened[i] && now >= i as u64 * phase {
                    opened[i] = true;
                    for _ in 0..5 {
                        breaker.failure(now);
                    }
                }
                let pass = if gated {
                    breaker.pass_when(now, || server.is_routable(now))
                } else {
                    breaker.pass(now)
                };
                if pass == Pass::Skip {
                    continue;
                }
                let verdict = match server.pass(now) {
                    Pass::Skip => Error::AllServersDown.verdict(),
                    sent => {
                        asked.push(now);
                        let up = if now >= back {
                            Verdict::Up
                        } else {
                            Verdict::Down
                        };
                        server.record(up, sent, now);
                        up
                    }
                };
                let verdict = match verdict {
                    Verdict::HeldOut if !gated => Verdict::Down,
                    v => v,
                };
                breaker.record(verdict, pass, now);
                if verdict == Verdict::Up && answered[i].is_none() {
                    answered[i] = Some(now);
                }
            }
            if let [Some(a), Some(b)] = answered {
                return ([a, b], asked);
            }
            clock.advance(Duration::from_nanos(TICK));
        }
        panic!("never recovered (gated: {gated}, phase {phase}, back {back})");
    }

    #[test]
    fn a_breaker_in_front_of_the_client_adds_no_cooldown_of_its_own() {
        let ms = SECOND / 1000;
        let mut worst = 0;
        let mut worst_stacked = 0;
        for phase in (0..1000).step_by(90).map(|p| p * ms) {
            for back in (1000..4000).step_by(70).map(|b| b * ms) {
                let (up, mut asked) = layered(true, phase, back);
                worst = worst.max(up[0].max(up[1]) - back);
                // One request reaches the dead server per cooldown at most.
                asked.retain(|&at| at < back);
                for pair in asked.windows(2) {
                    assert!(pair[1] - pair[0] >= SECOND, "{asked:?}");
                }
                let (up, _) = layered(false, phase, back);
                worst_stacked = worst_stacked.max(up[0].max(up[1]) - back);
            }
        }
        // One cooldown (both are 1 s), and a tick of the load.
        assert!(worst <= SECOND + 10 * ms, "recovered {worst} ns after");
        // Stacked, a probe refused by the client held a cache out for a
        // cooldown of its own.
        assert!(worst_stacked > 3 * SECOND / 2, "{worst_stacked}");
    }

    #[test]
    fn a_due_probe_waits_until_what_lies_behind_would_send_it() {
        let c = Circuit::new(1, Duration::from_secs(1));
        assert_eq!(c.pass_when(0, || unreachable!("closed")), Pass::Closed);
        assert!(c.failure(0));
        assert_eq!(
            c.pass_when(SECOND / 2, || unreachable!("not due")),
            Pass::Skip
        );
        // Due, but the client would refuse: skip, and the probe stays due.
        assert_eq!(c.pass_when(SECOND, || false), Pass::Skip);
        assert!(c.is_routable(SECOND));
        assert_eq!(c.skips.load(Ordering::Relaxed), 2);
        assert_eq!(c.pass_when(SECOND, || true), Pass::Probe);
        // Refused anyway (another caller took the client's probe): given
        // back, not a failure.
        assert!(!c.record(Verdict::HeldOut, Pass::Probe, SECOND));
        assert!(c.is_open() && c.is_routable(SECOND));
        assert_eq!(c.pass_when(SECOND, || true), Pass::Probe);
        assert!(!c.record(Verdict::Up, Pass::Probe, SECOND));
        assert!(!c.is_open());
        // Through a closed circuit, a refusal is a failure.
        assert!(c.record(Verdict::HeldOut, Pass::Closed, 2 * SECOND));
        assert!(!c.is_routable(2 * SECOND));
        assert_eq!(Error::AllServersDown.verdict(), Verdict::HeldOut);
    }
}
