//! One `NearFar` call's use of the far tier: every far request of the call
//! goes through [`Call`], which runs it through the pool's circuit breaker,
//! counts its failures, and gives up on a pool for the rest of the call
//! once a request to it went unanswered.
//!
//! Giving up bounds what one call can wait: a stalled or trickling server
//! makes the call's first request to it fail after the client's
//! [`request_timeout`](crate::memcached::ClientBuilder), and the call sends
//! it nothing more (a lease release, a store after the loader, a token
//! handed back): those are skipped as if the breaker were open, so a write
//! they would have made is recorded as owed by the client.

use std::ops::Deref;
use std::sync::atomic::{AtomicBool, Ordering};

use super::observe::{Request, Started};
use super::stats::{Counters, bump};
use super::{Far, FarClient};
use crate::clock::Timer;
use crate::memcached::health::{Circuit, Pass};
use crate::memcached::{self, Client};

/// What a pool's breaker asks of the pool's client before it lets a probe
/// through: whether the client would send a request now, or refuse it
/// unsent because its own circuits hold every server out. A breaker probe
/// waits for the client's (see the module docs of
/// [`health`](crate::memcached::health), "Two circuits in a row").
pub(super) trait Sends {
    /// Whether a request would be sent now (claims nothing).
    fn can_send(&self) -> bool;
}

impl Sends for Client {
    fn can_send(&self) -> bool {
        Client::can_send(self)
    }
}

#[cfg(feature = "tokio")]
impl Sends for crate::memcached::AsyncClient {
    fn can_send(&self) -> bool {
        crate::memcached::AsyncClient::can_send(self)
    }
}

/// How a far request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Failure {
    /// The value did not encode (nothing was sent) or the reply did not
    /// decode.
    Codec,
    /// It may or may not have reached the server (a timeout, a dropped
    /// connection, no server up): the client recorded a write as owed (see
    /// [`ClientBuilder::pending_invalidations`](memcached::ClientBuilder::pending_invalidations)).
    Owed,
    /// Refused before sending (a value over the item limit) or by the
    /// server: nothing changed there, and nothing was recorded.
    Refused,
}

impl Failure {
    /// What a far request's error means for the flow that sent it.
    pub(super) fn of(e: &memcached::Error) -> Failure {
        if matches!(e, memcached::Error::Codec(_)) {
            Failure::Codec
        } else if e.leaves_doubt() {
            Failure::Owed
        } else {
            Failure::Refused
        }
    }
}

/// Which pool a request goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Pool {
    /// The far tier.
    Far,
    /// The old pool given to [`fallback`](super::NearFarBuilder::fallback).
    Fallback,
}

/// The far tier, for the length of one `NearFar` call, over client `Cl`
/// (the blocking [`Client`] or, with feature `tokio`, the `AsyncClient`).
pub(super) struct Call<'a, Cl> {
    far: &'a Far<Cl>,
    counters: &'a Counters,
    timer: &'a Timer,
    /// Per pool (`Pool as usize`): a request of this call went unanswered,
    /// so the call sends that pool nothing more.
    gave_up: [AtomicBool; 2],
}

impl<Cl> Deref for Call<'_, Cl> {
    type Target = Far<Cl>;

    fn deref(&self) -> &Far<Cl> {
        self.far
    }
}

/// A request let through a pool's breaker ([`Call::begin`]): the client to
/// send it with, and the pass to record its outcome against. Dropped
/// without [`Call::finish`] (a panic in the request, or its future
/// dropped), it gives a probe back: the breaker would otherwise stay open
/// for another cooldown.
pub(super) struct Attempt<'a, Cl> {
    pub(super) client: &'a Cl,
    breaker: &'a Circuit,
    pass: Pass,
    pool: Pool,
    finished: bool,
    /// Its metrics and span (see `observe.rs`).
    pub(super) observed: Started,
}

impl<Cl> Drop for Attempt<'_, Cl> {
    fn drop(&mut self) {
        if !self.finished && self.pass == Pass::Probe {
            self.breaker.release(self.pass);
        }
    }
}

impl<'a, Cl: FarClient> Call<'a, Cl> {
    pub(super) fn new(far: &'a Far<Cl>, counters: &'a Counters, timer: &'a Timer) -> Self {
        Call {
            far,
            counters,
            timer,
            gave_up: [AtomicBool::new(false), AtomicBool::new(false)],
        }
    }

    /// The pool's client and breaker; `None` for a fallback not configured.
    /// The client of `pool`, if the call has one.
    #[cfg(feature = "tokio")]
    pub(super) fn client(&self, pool: Pool) -> Option<&'a Cl> {
        self.pool(pool).map(|(client, _)| client)
    }

    fn pool(&self, pool: Pool) -> Option<(&'a Cl, &'a Circuit)> {
        match pool {
            Pool::Far => Some((&self.far.client, &self.far.breaker)),
            Pool::Fallback => self.far.fallback.as_ref().map(|(c, b)| (c, b)),
        }
    }

    /// Records that `pool` must forget `fkey` before it serves again: a
    /// write of it was skipped.
    pub(super) fn owe(&self, pool: Pool, fkey: &str) {
        if let Some((client, _)) = self.pool(pool) {
            client.owe_invalidation(fkey);
        }
    }

    /// Lets `request` to `pool` through, or not: `None` when it is skipped
    /// (breaker open, this call gave up on the pool, or no such pool).
    ///
    /// Once the breaker's cooldown is over, its probe is claimed only when
    /// the client would send it: while the client's own circuits hold every
    /// server out, the call skips (see [`Sends`]).
    pub(super) fn begin(&self, pool: Pool, request: Request<'_>) -> Option<Attempt<'a, Cl>>
    where
        Cl: Sends,
    {
        let (client, breaker) = self.pool(pool)?;
        // Relaxed: a flag of this call, read and set by its own steps.
        if self.gave_up[pool as usize].load(Ordering::Relaxed) {
            return None;
        }
        let now = self.timer.now();
        let pass = breaker.pass_when(now, || client.can_send());
        (pass != Pass::Skip).then(|| Attempt {
            client,
            breaker,
            pass,
            pool,
            finished: false,
            observed: self.counters.observe.start(request, pool, client, now),
        })
    }

    /// Records how an attempted request went: `Ok(Some(_))` answered, `Err`
    /// failed, with what kind of failure. What the outcome says of the
    /// server is the error's [`verdict`](memcached::Error), recorded in the
    /// pool's circuit breaker on the `NearFar`'s clock.
    pub(super) fn finish<T>(
        &self,
        mut attempt: Attempt<'_, Cl>,
        result: memcached::Result<T>,
    ) -> Result<Option<T>, Failure> {
        attempt.finished = true;
        self.counters
            .far_done(&attempt.observed, &result, self.far, self.timer);
        let breaker = attempt.breaker;
        let e = match result {
            Ok(v) => {
                breaker.success();
                return Ok(Some(v));
            }
            Err(e) => e,
        };
        breaker.record(e.verdict(), attempt.pass, self.timer.now());
        let failure = Failure::of(&e);
        match failure {
            Failure::Codec => bump(&self.counters.decode_errors),
            Failure::Owed => {
                bump(&self.counters.far_errors);
                // No answer (or garbage, or no connection to be had): asking
                // again within this call would wait on the same server again.
                self.gave_up[attempt.pool as usize].store(true, Ordering::Relaxed);
            }
            Failure::Refused => bump(&self.counters.far_errors),
        }
        Err(failure)
    }
}

impl Call<'_, Client> {
    /// Runs a request on `pool` through its breaker (see [`Call::begin`]
    /// and [`Call::finish`]): `Ok(Some(_))` answered, `Ok(None)` skipped,
    /// `Err` failed.
    pub(super) fn attempt_as<T>(
        &self,
        pool: Pool,
        request: Request<'_>,
        op: impl FnOnce(&Client) -> memcached::Result<T>,
    ) -> Result<Option<T>, Failure> {
        let Some(attempt) = self.begin(pool, request) else {
            return Ok(None);
        };
        let result = attempt.observed.within(|| op(attempt.client));
        self.finish(attempt, result)
    }

    /// [`attempt_as`](Self::attempt_as) a request of no particular command
    /// or key (the tests' far requests).
    #[cfg(test)]
    pub(super) fn attempt<T>(
        &self,
        pool: Pool,
        op: impl FnOnce(&Client) -> memcached::Result<T>,
    ) -> Result<Option<T>, Failure> {
        self.attempt_as(pool, Request::unnamed(), op)
    }
}
