//! What a caller gives back: a stale item's recompute token it took
//! without a loader to use it ([`GiveBack`]), and what a load holds until
//! its value reaches the far tier ([`Held`]).

use std::time::Duration;

use super::{FarOp, Flow, Input, Next, unexpected};
use crate::memcached::{Cas, Lease};

/// Hands back the recompute token of the stale item `key` (CAS unique
/// `cas` when taken), which a read without a loader took (memcached gives
/// it to any reader of a stale item): marking the item stale again clears
/// the token, and doing so for the time it had left keeps its staleness
/// bounded. A stale lease placeholder (removed while a load held it) has no
/// value to serve: it is deleted, if still the same.
#[derive(Debug)]
pub(in crate::nearfar) struct GiveBack<'k> {
    key: &'k str,
    cas: Cas,
    state: GiveBackState,
}

#[derive(Debug)]
enum GiveBackState {
    Start,
    /// Asked for the item's CAS, TTL and state.
    Peeking,
    /// Marking it stale again: for `left`, if still `seen`.
    Marking {
        left: Duration,
        seen: Cas,
    },
    /// Deleting the stale placeholder.
    Deleting,
    Done,
}

impl<'k> GiveBack<'k> {
    pub(in crate::nearfar) fn new(key: &'k str, cas: Cas) -> Self {
        GiveBack {
            key,
            cas,
            state: GiveBackState::Start,
        }
    }
}

impl<V> Flow<V> for GiveBack<'_> {
    type Out = ();

    fn advance(&mut self, input: Input<V>, _now: u64) -> Next<()> {
        self.state = match (&self.state, input) {
            (GiveBackState::Start, Input::Start) => GiveBackState::Peeking,
            (GiveBackState::Peeking, Input::Far(reply)) => match reply.peek_cas() {
                Ok(Some(Some(Lease::Hit {
                    stale: true,
                    ttl: Some(left),
                    cas: seen,
                    ..
                }))) if !left.is_zero() => {
                    // Only the item just read: a value written since is
                    // fresh and must not be marked stale.
                    GiveBackState::Marking { left, seen }
                }
                Ok(Some(Some(Lease::Wait))) => GiveBackState::Deleting,
                _ => GiveBackState::Done,
            },
            (GiveBackState::Marking { .. } | GiveBackState::Deleting, Input::Far(_)) => {
                GiveBackState::Done
            }
            _ => unexpected("GiveBack"),
        };
        match self.state {
            GiveBackState::Done => Next::Done(()),
            _ => Next::Far,
        }
    }

    fn request(&self) -> FarOp<'_, V> {
        let key = self.key;
        match self.state {
            GiveBackState::Peeking => FarOp::PeekLeaseCas { key },
            GiveBackState::Marking { left, seen } => FarOp::InvalidateIfCas {
                key,
                stale_for: left,
                cas: seen,
            },
            GiveBackState::Deleting => FarOp::DeleteIfCas { key, cas: self.cas },
            GiveBackState::Start | GiveBackState::Done => unexpected("GiveBack"),
        }
    }
}

/// What a load holds until its value reaches the far tier, and gives up
/// otherwise (the loader failed or panicked, or the store failed): else
/// every other process would wait out `lease_wait` for a value that never
/// comes, or serve a stale value for all of its stale time with no one
/// recomputing it.
#[derive(Debug)]
pub(in crate::nearfar) enum Held<'k> {
    /// The lease placeholder this load won (its CAS unique): deleted only
    /// if it is still the placeholder, never a value written over it.
    Placeholder { key: &'k str, cas: Cas, sent: bool },
    /// The recompute token of a stale item: handed back.
    Token(GiveBack<'k>),
}

impl<'k> Held<'k> {
    pub(super) fn placeholder(key: &'k str, cas: Cas) -> Self {
        Held::Placeholder {
            key,
            cas,
            sent: false,
        }
    }

    pub(super) fn token(key: &'k str, cas: Cas) -> Self {
        Held::Token(GiveBack::new(key, cas))
    }

    /// What is held, owned: to be released from the start by a driver that
    /// cannot release it where the flow was dropped (the async one, on a
    /// task of its own). Releasing again what was partly released changes
    /// nothing: each step is conditional on the item's CAS.
    #[cfg(feature = "tokio")]
    pub(in crate::nearfar) fn to_owned(&self) -> Released {
        match self {
            Held::Placeholder { key, cas, .. } => Released {
                key: (*key).to_owned(),
                cas: *cas,
                token: false,
            },
            Held::Token(give_back) => Released {
                key: give_back.key.to_owned(),
                cas: give_back.cas,
                token: true,
            },
        }
    }
}

/// A [`Held`] owned (see `Held::to_owned`).
#[cfg(feature = "tokio")]
#[derive(Debug, Clone)]
pub(in crate::nearfar) struct Released {
    key: String,
    cas: Cas,
    token: bool,
}

#[cfg(feature = "tokio")]
impl Released {
    /// The flow that releases it, from its start.
    pub(in crate::nearfar) fn held(&self) -> Held<'_> {
        if self.token {
            Held::token(&self.key, self.cas)
        } else {
            Held::placeholder(&self.key, self.cas)
        }
    }
}

impl<V> Flow<V> for Held<'_> {
    type Out = ();

    fn advance(&mut self, input: Input<V>, now: u64) -> Next<()> {
        match self {
            Held::Placeholder { sent, .. } => match (*sent, input) {
                (false, Input::Start) => {
                    *sent = true;
                    Next::Far
                }
                (true, Input::Far(_)) => Next::Done(()),
                _ => unexpected("Held"),
            },
            Held::Token(give_back) => Flow::<V>::advance(give_back, input, now),
        }
    }

    fn request(&self) -> FarOp<'_, V> {
        match self {
            Held::Placeholder { key, cas, .. } => FarOp::DeleteIfCas { key, cas: *cas },
            Held::Token(give_back) => give_back.request(),
        }
    }
}
