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

use std::cell::Cell;
use std::ops::Deref;

use super::stats::{Counters, bump};
use super::{Far, OnDrop};
use crate::clock::Timer;
use crate::memcached::health::{Circuit, Pass};
use crate::memcached::{self, Client};

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

/// Which pool a request goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Pool {
    /// The far tier.
    Far,
    /// The old pool given to [`fallback`](super::NearFarBuilder::fallback).
    Fallback,
}

/// The far tier, for the length of one `NearFar` call.
pub(super) struct Call<'a> {
    far: &'a Far,
    counters: &'a Counters,
    timer: &'a Timer,
    /// Per pool (`Pool as usize`): a request of this call went unanswered,
    /// so the call sends that pool nothing more.
    gave_up: [Cell<bool>; 2],
}

impl Deref for Call<'_> {
    type Target = Far;

    fn deref(&self) -> &Far {
        self.far
    }
}

impl<'a> Call<'a> {
    pub(super) fn new(far: &'a Far, counters: &'a Counters, timer: &'a Timer) -> Call<'a> {
        Call {
            far,
            counters,
            timer,
            gave_up: [Cell::new(false), Cell::new(false)],
        }
    }

    /// The pool's client and breaker; `None` for a fallback not configured.
    fn pool(&self, pool: Pool) -> Option<(&'a Client, &'a Circuit)> {
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

    /// Runs a request on `pool`: `Ok(Some(_))` answered, `Ok(None)` skipped
    /// (breaker open, this call gave up on the pool, or no such pool),
    /// `Err` failed, with what kind of failure. What the outcome says
    /// of the server is the error's [`verdict`](memcached::Error), recorded
    /// in the pool's circuit breaker on the `NearFar`'s clock.
    pub(super) fn attempt<T>(
        &self,
        pool: Pool,
        op: impl FnOnce(&Client) -> memcached::Result<T>,
    ) -> Result<Option<T>, Failure> {
        let Some((client, breaker)) = self.pool(pool) else {
            return Ok(None);
        };
        let gave_up = &self.gave_up[pool as usize];
        if gave_up.get() {
            return Ok(None);
        }
        let pass = breaker.pass(self.timer.now());
        if pass == Pass::Skip {
            return Ok(None);
        }
        // A panic in the call (a value's Serialize or Deserialize) must not
        // keep the probe: the breaker would stay open for a cooldown more.
        let probe = (pass == Pass::Probe).then(|| OnDrop(Some(|| breaker.release(pass))));
        let result = op(client);
        std::mem::forget(probe);
        let e = match result {
            Ok(v) => {
                breaker.success();
                return Ok(Some(v));
            }
            Err(e) => e,
        };
        breaker.record(e.verdict(), pass, self.timer.now());
        if matches!(e, memcached::Error::Codec(_)) {
            bump(&self.counters.decode_errors);
            return Err(Failure::Codec);
        }
        bump(&self.counters.far_errors);
        if e.leaves_doubt() {
            // No answer (or garbage, or no connection to be had): asking
            // again within this call would wait on the same server again.
            gave_up.set(true);
            Err(Failure::Owed)
        } else {
            Err(Failure::Refused)
        }
    }
}
