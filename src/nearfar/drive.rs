//! The blocking driver of the far-tier flows (see [`flow`](super::flow)):
//! far requests through [`Call`] on the blocking client, waits on the
//! `NearFar`'s clock, the caller's loader run in place.
//!
//! An async driver is the same two functions with `.await` on the client's
//! requests, the wait and the loader.

use std::convert::Infallible;
use std::marker::PhantomData;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::call::Call;
use super::flow::{FarOp, FarReply, Flow, Input, Seen, Step};
use crate::clock::Timer;

/// Performs one far request: the `Client` method the op names, through
/// the call's breaker (see [`Call::attempt`]).
pub(super) fn perform<V>(call: &Call<'_>, op: FarOp<'_, V>) -> FarReply<V>
where
    V: Serialize + DeserializeOwned,
{
    let pool = op.pool();
    match op {
        FarOp::GetOrLease { key, lease_ttl } => FarReply::Lease(
            call.attempt(pool, |c| c.get_or_lease_seen::<V>(key, lease_ttl))
                .map(|r| {
                    r.map(|(lease, s)| {
                        (
                            lease,
                            Seen {
                                cas: s.cas,
                                ttl: s.ttl,
                            },
                        )
                    })
                }),
        ),
        FarOp::PeekLease { key } => FarReply::Peek(call.attempt(pool, |c| c.peek_lease::<V>(key))),
        FarOp::PeekLeaseCas { key } => {
            FarReply::PeekCas(call.attempt(pool, |c| c.peek_lease_cas(key)))
        }
        FarOp::MetaGet { key, .. } => FarReply::Item(call.attempt(pool, |c| c.meta_get::<V>(key))),
        FarOp::Add { key, value, ttl } => {
            FarReply::Done(call.attempt(pool, |c| c.add(key, value, ttl)))
        }
        FarOp::Cas {
            key,
            value,
            ttl,
            cas,
        } => FarReply::Done(call.attempt(pool, |c| c.cas(key, value, ttl, cas))),
        FarOp::CompareAndSet {
            key,
            value,
            ttl,
            cas,
        } => FarReply::Stored(call.attempt(pool, |c| c.compare_and_set(key, value, ttl, cas))),
        FarOp::SetReturningCas { key, value, ttl } => {
            FarReply::Set(call.attempt(pool, |c| c.set_returning_cas(key, value, ttl)))
        }
        FarOp::Delete { key, .. } => FarReply::Done(call.attempt(pool, |c| c.delete(key))),
        FarOp::DeleteIfCas { key, cas } => {
            FarReply::Done(call.attempt(pool, |c| c.delete_if_cas(key, cas)))
        }
        FarOp::Invalidate { key, stale_for } => {
            FarReply::Done(call.attempt(pool, |c| c.invalidate(key, stale_for)))
        }
        FarOp::InvalidateIfCas {
            key,
            stale_for,
            cas,
        } => FarReply::Done(call.attempt(pool, |c| c.invalidate_if_cas(key, stale_for, cas))),
        FarOp::Owe { key, .. } => {
            call.owe(pool, key);
            FarReply::Owed
        }
    }
}

/// Runs `flow` to its end; `load` is the caller's loader, run when the
/// flow asks. Its error ends the flow, and so does a panic: either way what
/// the flow holds (see [`Flow::take_held`]) is released first.
pub(super) fn drive<V, F, E>(
    call: &Call<'_>,
    timer: &Timer,
    flow: &mut F,
    load: impl FnOnce() -> Result<V, E>,
) -> Result<F::Out, E>
where
    V: Serialize + DeserializeOwned,
    F: Flow<V>,
{
    let mut load = Some(load);
    let guard = Release {
        call,
        timer,
        flow,
        values: PhantomData,
    };
    let mut input = Input::Start;
    loop {
        input = match guard.flow.resume(input, timer.now()) {
            Step::Far(op) => Input::Far(perform(call, op)),
            Step::Wait(pause) => {
                timer.sleep(pause);
                Input::Waited
            }
            Step::Load => match load.take() {
                Some(load) => Input::Loaded(load()?),
                None => unreachable!("a flow asked to load twice"),
            },
            Step::Done(out) => return Ok(out),
        };
    }
}

/// Runs `flow`, one that never loads, to its end.
pub(super) fn run<V, F>(call: &Call<'_>, timer: &Timer, flow: &mut F) -> F::Out
where
    V: Serialize + DeserializeOwned,
    F: Flow<V>,
{
    let never = || -> Result<V, Infallible> { unreachable!("this flow loads nothing") };
    match drive(call, timer, flow, never) {
        Ok(out) => out,
        Err(never) => match never {},
    }
}

/// Releases what a flow holds when dropped: on a loader's error, or while
/// a panic unwinds (a loader's, or a value's `Serialize` or
/// `Deserialize`). A flow that ended holds nothing.
struct Release<'c, 'f, V, F: Flow<V>> {
    call: &'c Call<'c>,
    timer: &'c Timer,
    flow: &'f mut F,
    values: PhantomData<fn() -> V>,
}

impl<V, F: Flow<V>> Drop for Release<'_, '_, V, F> {
    fn drop(&mut self) {
        if let Some(mut held) = self.flow.take_held() {
            // What it holds is released the same whatever `V` is.
            run::<(), _>(self.call, self.timer, &mut held);
        }
    }
}
