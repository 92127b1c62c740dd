//! The read flows: a near copy revalidated by CAS ([`Revalidate`]), and
//! `get` after a near miss ([`Read`]): memcached, then the fallback pool
//! ([`Fallback`], which a load uses too).

use std::time::Duration;

use super::token::GiveBack;
use super::{Ctx, FarOp, Flow, Input, Next, unexpected};
use crate::memcached::{Cas, Lease};
use crate::nearfar::stats::bump;

/// What a revalidation found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::nearfar) enum Revalidated {
    /// Unchanged (`Some` far TTL left, or `None`: unknown or never
    /// expires), or not checkable (the far tier is unusable: keep serving
    /// the copy until its near TTL, checked again only after another
    /// period, not on every read while the outage lasts).
    Keep(Option<Duration>),
    /// Changed or gone: fetch again.
    Changed,
    /// Stale (invalidated), and this check took its recompute token (the
    /// item's CAS unique).
    WonStale(Cas),
}

/// Checks a near copy (the far item's CAS unique `cas` when taken; 0:
/// unknown, never a real CAS) against the far item.
#[derive(Debug)]
pub(in crate::nearfar) struct Revalidate<'a> {
    ctx: Ctx<'a>,
    key: &'a str,
    cas: u64,
    asked: bool,
}

impl<'a> Revalidate<'a> {
    pub(in crate::nearfar) fn new(ctx: Ctx<'a>, key: &'a str, cas: u64) -> Self {
        Revalidate {
            ctx,
            key,
            cas,
            asked: false,
        }
    }
}

impl<V> Flow<V> for Revalidate<'_> {
    type Out = Revalidated;

    fn advance(&mut self, input: Input<V>, _now: u64) -> Next<Revalidated> {
        let counters = self.ctx.counters;
        let reply = match (self.asked, input) {
            (false, Input::Start) => {
                self.asked = true;
                bump(&counters.revalidations);
                return Next::Far;
            }
            (true, Input::Far(reply)) => reply.peek_cas(),
            _ => unexpected("Revalidate"),
        };
        Next::Done(match reply {
            Ok(Some(Some(Lease::Hit {
                cas,
                stale: false,
                ttl,
                ..
            }))) if cas.0 == self.cas => Revalidated::Keep(ttl),
            Ok(None) | Err(_) => Revalidated::Keep(None),
            Ok(Some(Some(Lease::Won { cas, .. }))) => {
                bump(&counters.revalidations_changed);
                Revalidated::WonStale(cas)
            }
            Ok(Some(_)) => {
                bump(&counters.revalidations_changed);
                Revalidated::Changed
            }
        })
    }

    fn request(&self) -> FarOp<'_, V> {
        FarOp::PeekLeaseCas { key: self.key }
    }
}

/// A value a read serves, and whether to keep it near.
#[derive(Debug, PartialEq, Eq)]
pub(in crate::nearfar) struct Served<V> {
    pub(in crate::nearfar) value: V,
    /// Keep a copy near (with the far item's CAS unique, 0 when unknown,
    /// for this TTL), unless this `NearFar` wrote the key meanwhile.
    pub(in crate::nearfar) keep: Option<Keep>,
}

/// How a value read from the far tier is kept near.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::nearfar) struct Keep {
    pub(in crate::nearfar) cas: u64,
    pub(in crate::nearfar) ttl: Duration,
}

/// `get` after a near miss: memcached, then the fallback pool. `None`: a
/// miss (or a far failure).
#[derive(Debug)]
pub(in crate::nearfar) struct Read<'a, V> {
    ctx: Ctx<'a>,
    key: &'a str,
    state: ReadState<'a, V>,
}

#[derive(Debug)]
enum ReadState<'a, V> {
    Start,
    Peeking,
    /// A stale item whose recompute token this read took: no loader here,
    /// so it is handed back (the next `get_with` wins), and `previous`
    /// served.
    GivingBack {
        give_back: GiveBack<'a>,
        previous: Option<V>,
    },
    Fallback(Fallback<'a, V>),
    Done,
}

impl<'a, V> Read<'a, V> {
    pub(in crate::nearfar) fn new(ctx: Ctx<'a>, key: &'a str) -> Self {
        Read {
            ctx,
            key,
            state: ReadState::Start,
        }
    }

    fn done(&mut self, served: Option<Served<V>>) -> Next<Option<Served<V>>> {
        self.state = ReadState::Done;
        Next::Done(served)
    }

    /// Passes `input` to the child flow running.
    fn forward(&mut self, input: Input<V>, now: u64) -> Next<Option<Served<V>>> {
        let ctx = self.ctx;
        match &mut self.state {
            ReadState::GivingBack {
                give_back,
                previous,
            } => match Flow::<V>::advance(give_back, input, now).pending() {
                Ok(next) => next,
                Err(()) => {
                    let previous = previous.take();
                    if previous.is_some() {
                        bump(&ctx.counters.stale_serves);
                    }
                    self.done(previous.map(|value| Served { value, keep: None }))
                }
            },
            ReadState::Fallback(fallback) => match fallback.advance(input, now).pending() {
                Ok(next) => next,
                Err(found) => {
                    // A far failure (`None`) keeps the copy near, as a
                    // load does.
                    let served = found.map(|found| Served {
                        keep: (found.stored != Some(false)).then(|| Keep {
                            cas: 0,
                            ttl: ctx.bound(Some(found.ttl)),
                        }),
                        value: found.value,
                    });
                    self.done(served)
                }
            },
            _ => unexpected("Read"),
        }
    }
}

impl<V> Flow<V> for Read<'_, V> {
    type Out = Option<Served<V>>;

    fn advance(&mut self, input: Input<V>, now: u64) -> Next<Self::Out> {
        let ctx = self.ctx;
        let counters = ctx.counters;
        match (&self.state, input) {
            (ReadState::Start, Input::Start) => {
                self.state = ReadState::Peeking;
                Next::Far
            }
            (ReadState::Peeking, Input::Far(reply)) => match reply.peek() {
                Ok(Some(Some(Lease::Hit {
                    value,
                    cas,
                    stale,
                    ttl,
                }))) => {
                    let keep = if stale {
                        bump(&counters.stale_serves);
                        Keep {
                            cas: 0,
                            ttl: ctx.stale_ttl(),
                        }
                    } else {
                        bump(&counters.far_hits);
                        Keep {
                            cas: cas.0,
                            ttl: ctx.bound(ttl),
                        }
                    };
                    self.done(Some(Served {
                        value,
                        keep: Some(keep),
                    }))
                }
                Ok(Some(Some(Lease::Won { previous, cas }))) => {
                    self.state = ReadState::GivingBack {
                        give_back: GiveBack::new(self.key, cas),
                        previous,
                    };
                    self.forward(Input::Start, now)
                }
                Ok(Some(Some(Lease::Wait) | None)) => {
                    bump(&counters.far_misses);
                    self.state = ReadState::Fallback(Fallback::new(ctx, self.key, None));
                    self.forward(Input::Start, now)
                }
                Ok(None) | Err(_) => self.done(None),
            },
            (ReadState::GivingBack { .. } | ReadState::Fallback(_), input) => {
                self.forward(input, now)
            }
            _ => unexpected("Read"),
        }
    }

    fn request(&self) -> FarOp<'_, V> {
        match &self.state {
            ReadState::Peeking => FarOp::PeekLease { key: self.key },
            ReadState::GivingBack { give_back, .. } => give_back.request(),
            ReadState::Fallback(fallback) => fallback.request(),
            _ => unexpected("Read"),
        }
    }
}

/// A value found in the fallback pool, and what became of its copy in the
/// far tier.
#[derive(Debug, PartialEq, Eq)]
pub(in crate::nearfar) struct Found<V> {
    pub(in crate::nearfar) value: V,
    /// The TTL the copy was given: what the item had left, within
    /// `far_ttl`.
    pub(in crate::nearfar) ttl: Duration,
    /// Stored (`Some(true)`), refused (`Some(false)`: the key was written
    /// or removed meanwhile, so the value may be outdated and must not be
    /// kept near, as with a refused `cas` of a load), or not stored
    /// (`None`: the far tier failed or was skipped).
    pub(in crate::nearfar) stored: Option<bool>,
}

/// Reads the key from the fallback pool; a value found is copied into the
/// far tier: over the lease placeholder this caller holds (`placeholder`,
/// its CAS unique), if it is still there; else by `add`.
#[derive(Debug)]
pub(in crate::nearfar) struct Fallback<'a, V> {
    ctx: Ctx<'a>,
    key: &'a str,
    placeholder: Option<Cas>,
    state: FallbackState<V>,
}

#[derive(Debug)]
enum FallbackState<V> {
    Start,
    Reading,
    Copying { value: V, ttl: Duration },
    Done,
}

impl<'a, V> Fallback<'a, V> {
    pub(in crate::nearfar) fn new(ctx: Ctx<'a>, key: &'a str, placeholder: Option<Cas>) -> Self {
        Fallback {
            ctx,
            key,
            placeholder,
            state: FallbackState::Start,
        }
    }
}

impl<V> Flow<V> for Fallback<'_, V> {
    type Out = Option<Found<V>>;

    fn advance(&mut self, input: Input<V>, _now: u64) -> Next<Self::Out> {
        let state = std::mem::replace(&mut self.state, FallbackState::Done);
        match (state, input) {
            (FallbackState::Start, Input::Start) => {
                self.state = FallbackState::Reading;
                Next::Far
            }
            (FallbackState::Reading, Input::Far(reply)) => {
                let Ok(Some(Some(item))) = reply.item() else {
                    return Next::Done(None);
                };
                bump(&self.ctx.counters.fallback_hits);
                let ttl = fallback_ttl(item.ttl, self.ctx.far_ttl);
                self.state = FallbackState::Copying {
                    value: item.value,
                    ttl,
                };
                Next::Far
            }
            (FallbackState::Copying { value, ttl }, Input::Far(reply)) => {
                let stored = reply.done().ok().flatten();
                Next::Done(Some(Found { value, ttl, stored }))
            }
            _ => unexpected("Fallback"),
        }
    }

    fn request(&self) -> FarOp<'_, V> {
        let key = self.key;
        match &self.state {
            FallbackState::Reading => FarOp::MetaGet {
                pool: crate::nearfar::call::Pool::Fallback,
                key,
            },
            FallbackState::Copying { value, ttl } => match self.placeholder {
                Some(cas) => FarOp::Cas {
                    key,
                    value,
                    ttl: *ttl,
                    cas,
                },
                None => FarOp::Add {
                    key,
                    value,
                    ttl: *ttl,
                },
            },
            _ => unexpected("Fallback"),
        }
    }
}

/// The TTL for a copy of a fallback item that has `left` to live (`None`:
/// never expires), bounded by `far_ttl`. A reported 0 (an item in its last
/// second) becomes 1 s: a TTL of 0 would be sent as exptime 0, "never".
pub(in crate::nearfar) fn fallback_ttl(left: Option<Duration>, far_ttl: Duration) -> Duration {
    left.map_or(far_ttl, |left| left.max(Duration::from_secs(1)))
        .min(far_ttl)
}
