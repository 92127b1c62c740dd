//! `NearFar`'s far-tier decisions as sans-IO flows: state machines that
//! say what to do next (a far request, a wait, a run of the caller's
//! loader) and are told what came of it, but never call the client, never
//! sleep and never read a clock (every input comes with `now`).
//!
//! A driver runs a flow: it asks for the next [`Step`], performs it and
//! feeds the outcome back as an [`Input`], until the flow is
//! [`Step::Done`]. The blocking driver is [`super::drive`]; an async one
//! is the same loop with `.await`s. The near tier is not a flow's
//! business: a flow's result says what to keep near, and its caller (in
//! `read.rs` and `load.rs`) does.
//!
//! The flows:
//!
//! * [`read::Revalidate`]: a near copy due for revalidation, checked by CAS;
//! * [`read::Read`]: `get` after a near miss: memcached, then the fallback
//!   pool ([`read::Fallback`]);
//! * [`load::Load`]: `get_with` after a near miss: the lease, a wait for
//!   another holder or its takeover, the fallback pool, the loader, the
//!   store by CAS, and the release of what the load held
//!   ([`token::Held`]) when its value does not reach the far tier;
//! * [`token::GiveBack`]: a stale item's recompute token handed back;
//! * [`write::Insert`] and [`write::Remove`]: the far half of `insert` and
//!   `remove`, with the invalidations a skipped write leaves owed;
//! * [`generation::Check`] and [`generation::Bump`]: the namespace's
//!   generation counter read (and restored if lost) or bumped
//!   (`invalidate_all`);
//! * [`preload::Batch`]: a batch of the key preload read at once.

pub(super) mod generation;
pub(super) mod load;
pub(super) mod preload;
pub(super) mod read;
pub(super) mod token;
pub(super) mod write;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::time::Duration;

use super::call::{Failure, Pool};
use super::inner::Entry;
use super::stats::Counters;
use crate::memcached::{Cas, Lease, MetaItem};

/// How long a value memcached marked stale is kept in the near tier.
pub(super) const STALE_NEAR_TTL: Duration = Duration::from_secs(1);

/// A far request's outcome as [`Call::attempt`](super::call::Call::attempt)
/// gives it: `Ok(Some(_))` answered, `Ok(None)` skipped (breaker open, the
/// call gave up on the pool, or no such pool), `Err` failed (counted and
/// recorded in the breaker already).
pub(super) type Reply<T> = Result<Option<T>, Failure>;

/// What a lease request saw of the item: its CAS unique and remaining TTL
/// (`None`: never expires). For [`Lease::Wait`], those of the placeholder
/// another caller holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Seen {
    pub(super) cas: Cas,
    pub(super) ttl: Option<Duration>,
}

/// One far request, named after the [`Client`](crate::memcached::Client)
/// method that performs it. Values to store are borrowed from the flow.
#[derive(Debug)]
pub(super) enum FarOp<'a, V> {
    /// `get_or_lease_seen(key, lease_ttl)`: the value, or the lease.
    GetOrLease {
        key: &'a str,
        lease_ttl: Duration,
        /// With refresh-ahead: win the recompute token of a value with less
        /// than this left (`mg ... R`).
        recache: Option<Duration>,
    },
    /// `peek_lease(key)`: the value, taking a stale item's token at most.
    PeekLease { key: &'a str },
    /// `peek_lease_cas(key)`: as `PeekLease`, without the value bytes.
    PeekLeaseCas { key: &'a str },
    /// `meta_get(key)` on `pool` (the fallback pool).
    MetaGet { pool: Pool, key: &'a str },
    /// `add(key, value, ttl)`.
    Add {
        key: &'a str,
        value: &'a V,
        ttl: Duration,
    },
    /// `cas(key, value, ttl, cas)`.
    Cas {
        key: &'a str,
        value: &'a V,
        ttl: Duration,
        cas: Cas,
    },
    /// `compare_and_set(key, value, ttl, cas)`: as `Cas`, with the new CAS.
    CompareAndSet {
        key: &'a str,
        value: &'a V,
        ttl: Duration,
        cas: Cas,
    },
    /// `set_returning_cas(key, value, ttl)`.
    SetReturningCas {
        key: &'a str,
        value: &'a V,
        ttl: Duration,
    },
    /// `delete(key)` on `pool`.
    Delete { pool: Pool, key: &'a str },
    /// `delete_if_cas(key, cas)`.
    DeleteIfCas { key: &'a str, cas: Cas },
    /// `invalidate(key, stale_for)`: marks the item stale.
    Invalidate { key: &'a str, stale_for: Duration },
    /// `invalidate_if_cas(key, stale_for, cas)`.
    InvalidateIfCas {
        key: &'a str,
        stale_for: Duration,
        cas: Cas,
    },
    /// `owe_invalidation(key)` on `pool`'s client: no request, the client
    /// records that the server must forget `key` before it serves again.
    Owe { pool: Pool, key: &'a str },
    /// `get_raw(key)`: the namespace's generation counter, as stored.
    GetRaw { key: &'a str },
    /// `incr(key, delta)`: bumps the generation counter.
    Incr { key: &'a str, delta: u64 },
    /// `add(key, &value, Duration::ZERO)`: creates the generation counter
    /// (a number, so `incr` works on it), never expiring.
    AddCounter { key: &'a str, value: u64 },
    /// `get_many(keys)`: the preload's batch read ([`preload::Batch`]).
    GetMany { keys: &'a [String] },
}

impl<V> FarOp<'_, V> {
    /// The pool the request goes to.
    pub(super) fn pool(&self) -> Pool {
        match self {
            FarOp::MetaGet { pool, .. } | FarOp::Delete { pool, .. } | FarOp::Owe { pool, .. } => {
                *pool
            }
            _ => Pool::Far,
        }
    }
}

/// The outcome of a [`FarOp`], one variant per reply type.
#[derive(Debug)]
pub(super) enum FarReply<V> {
    /// Of `GetOrLease`.
    Lease(Reply<(Lease<V>, Seen)>),
    /// Of `PeekLease`.
    Peek(Reply<Option<Lease<V>>>),
    /// Of `PeekLeaseCas`.
    PeekCas(Reply<Option<Lease<()>>>),
    /// Of `MetaGet`.
    Item(Reply<Option<MetaItem<V>>>),
    /// Of `Add`, `Cas`, `Delete`, `DeleteIfCas`, `Invalidate`,
    /// `InvalidateIfCas`: whether the server did it.
    Done(Reply<bool>),
    /// Of `CompareAndSet`: the new CAS unique, `None` when refused.
    Stored(Reply<Option<Cas>>),
    /// Of `SetReturningCas`.
    Set(Reply<Cas>),
    /// Of `Owe`.
    Owed,
    /// Of `GetRaw`: the bytes and client flags.
    Raw(Reply<Option<(Vec<u8>, u32)>>),
    /// Of `Incr`: the new number, `None` when the key holds nothing.
    Counter(Reply<Option<u64>>),
    /// Of `GetMany`: the hits, by far key.
    Many(Reply<HashMap<String, V>>),
}

/// A reply of another kind than the request: a driver bug.
#[cold]
fn mismatch(asked: &str) -> ! {
    unreachable!("a flow asked for {asked} and was answered something else")
}

impl<V> FarReply<V> {
    pub(super) fn lease(self) -> Reply<(Lease<V>, Seen)> {
        match self {
            FarReply::Lease(r) => r,
            _ => mismatch("a lease"),
        }
    }

    pub(super) fn peek(self) -> Reply<Option<Lease<V>>> {
        match self {
            FarReply::Peek(r) => r,
            _ => mismatch("a peek"),
        }
    }

    pub(super) fn peek_cas(self) -> Reply<Option<Lease<()>>> {
        match self {
            FarReply::PeekCas(r) => r,
            _ => mismatch("a CAS peek"),
        }
    }

    pub(super) fn item(self) -> Reply<Option<MetaItem<V>>> {
        match self {
            FarReply::Item(r) => r,
            _ => mismatch("an item"),
        }
    }

    pub(super) fn done(self) -> Reply<bool> {
        match self {
            FarReply::Done(r) => r,
            _ => mismatch("a write or removal"),
        }
    }

    pub(super) fn stored(self) -> Reply<Option<Cas>> {
        match self {
            FarReply::Stored(r) => r,
            _ => mismatch("a compare-and-set"),
        }
    }

    pub(super) fn set(self) -> Reply<Cas> {
        match self {
            FarReply::Set(r) => r,
            _ => mismatch("a set"),
        }
    }

    pub(super) fn raw(self) -> Reply<Option<(Vec<u8>, u32)>> {
        match self {
            FarReply::Raw(r) => r,
            _ => mismatch("raw bytes"),
        }
    }

    pub(super) fn counter(self) -> Reply<Option<u64>> {
        match self {
            FarReply::Counter(r) => r,
            _ => mismatch("a counter"),
        }
    }

    pub(super) fn many(self) -> Reply<HashMap<String, V>> {
        match self {
            FarReply::Many(r) => r,
            _ => mismatch("many values"),
        }
    }
}

/// What a flow asks its driver for.
#[derive(Debug)]
pub(super) enum Step<'a, V, Out> {
    /// Perform this request; answer [`Input::Far`].
    Far(FarOp<'a, V>),
    /// Wait this long on the clock; answer [`Input::Waited`].
    Wait(Duration),
    /// Run the caller's loader; answer [`Input::Loaded`] (or, when it fails
    /// or panics, drop the flow after releasing what
    /// [`Flow::take_held`] returns).
    Load,
    /// The flow is over.
    Done(Out),
}

/// What a driver tells a flow.
#[derive(Debug)]
pub(super) enum Input<V> {
    /// The first call: nothing happened yet.
    Start,
    /// The reply to the [`Step::Far`] asked.
    Far(FarReply<V>),
    /// The [`Step::Wait`] is over.
    Waited,
    /// The loader's value.
    Loaded(V),
}

/// A flow's next step without its request, which [`Flow::request`] renders
/// from the flow's state: a parent flow can forward to a child flow and
/// still change its own state when the child is done.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Next<Out> {
    Far,
    Wait(Duration),
    Load,
    Done(Out),
}

impl<Out> Next<Out> {
    /// A child flow's step for its parent: `Err` with its result when it
    /// is done, else the same step.
    pub(super) fn pending<P>(self) -> Result<Next<P>, Out> {
        match self {
            Next::Far => Ok(Next::Far),
            Next::Wait(d) => Ok(Next::Wait(d)),
            Next::Load => Ok(Next::Load),
            Next::Done(out) => Err(out),
        }
    }
}

/// A sans-IO flow over values `V`.
pub(super) trait Flow<V> {
    /// The flow's result.
    type Out;

    /// Takes `input` (at `now`, ns on the `NearFar`'s clock) and moves on.
    fn advance(&mut self, input: Input<V>, now: u64) -> Next<Self::Out>;

    /// The request the flow waits on, after [`Flow::advance`] said
    /// [`Next::Far`].
    fn request(&self) -> FarOp<'_, V>;

    /// What the flow holds that must be released if it is dropped before
    /// it is done (its loader failed or a panic unwinds): a lease
    /// placeholder or a stale item's recompute token. Taken: asking again
    /// gives `None`.
    fn take_held(&mut self) -> Option<token::Held<'_>> {
        None
    }

    /// [`Flow::advance`], with the request rendered: what a driver calls.
    fn resume(&mut self, input: Input<V>, now: u64) -> Step<'_, V, Self::Out> {
        match self.advance(input, now) {
            Next::Far => Step::Far(self.request()),
            Next::Wait(d) => Step::Wait(d),
            Next::Load => Step::Load,
            Next::Done(out) => Step::Done(out),
        }
    }
}

/// The settings and counters a flow decides with: no client, no near tier.
#[derive(Clone, Copy)]
pub(super) struct Ctx<'a> {
    pub(super) counters: &'a Counters,
    pub(super) far_ttl: Duration,
    pub(super) lease_ttl: Duration,
    pub(super) lease_wait: Duration,
    pub(super) near_ttl: Option<Duration>,
    /// The namespace's generation the flow's far keys carry: the
    /// generation of every near entry it makes.
    pub(super) generation: u64,
}

impl std::fmt::Debug for Ctx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx")
            .field("far_ttl", &self.far_ttl)
            .field("lease_ttl", &self.lease_ttl)
            .field("lease_wait", &self.lease_wait)
            .field("near_ttl", &self.near_ttl)
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

impl Ctx<'_> {
    /// The near TTL of a value with `far_left` left in memcached.
    pub(super) fn bound(&self, far_left: Option<Duration>) -> Duration {
        let near = self.near_ttl.unwrap_or(Duration::MAX);
        near.min(far_left.unwrap_or(Duration::MAX))
    }

    /// The near TTL of a value memcached marked stale.
    pub(super) fn stale_ttl(&self) -> Duration {
        self.bound(Some(STALE_NEAR_TTL))
    }

    /// A near entry for `value` read or loaded at `now`, in this flow's
    /// generation (see [`Entry::at`]).
    pub(super) fn entry<V>(&self, now: u64, value: V, cas: u64, ttl: Option<Duration>) -> Entry<V> {
        Entry::at(now, value, cas, ttl, self.generation)
    }
}

/// An input a flow does not expect in its state: a driver bug.
#[cold]
pub(super) fn unexpected(flow: &str) -> ! {
    unreachable!("{flow}: an input its state does not expect")
}
