//! The load flow: a near miss that `get_with` fills, through memcached's
//! lease (one loader across processes), the fallback pool, then the
//! caller's loader, and the store that follows.

use std::time::Duration;

use super::read::{Fallback, Found};
use super::token::Held;
use super::{Ctx, FarOp, Flow, Input, Next, Seen, unexpected};
use crate::memcached::{Cas, Lease};
use crate::nearfar::Entry;
use crate::nearfar::call::Failure;
use crate::nearfar::stats::bump;

/// The first and the longest pause between polls of a held lease.
pub(in crate::nearfar) const FIRST_PAUSE: Duration = Duration::from_millis(1);
pub(in crate::nearfar) const MAX_PAUSE: Duration = Duration::from_millis(50);

/// What a load gives the near tier: the entry and its near TTL (zero: the
/// value goes to its callers and is kept nowhere, as it may be outdated).
pub(in crate::nearfar) type Loaded<V> = (Entry<V>, Duration);

/// How a loaded value is stored in the far tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::nearfar) enum Store {
    /// Not at all: the far tier is down, a lease wait timed out (see
    /// [`NearFarBuilder::lease_wait`](crate::nearfar::NearFarBuilder::lease_wait)),
    /// or the far value stayed undecodable.
    Skip,
    /// Over the lease placeholder this caller won (its CAS unique), if it
    /// is still there: filled from the fallback pool when that has the key,
    /// released if the load fails.
    Placeholder(Cas),
    /// Over the stale item whose recompute token this caller holds (its CAS
    /// unique), if it is still unchanged.
    Stale(Cas),
}

/// The near tier's loader for a key: memcached (with a lease), then the
/// caller's loader. Runs once per key in this process at a time.
///
/// When a conditional store finds the item changed or gone (another caller
/// wrote or removed the key while the loader ran), the value is returned
/// with a zero near TTL. What the load holds (see [`Held`]) is released
/// whenever its value does not reach the far tier: the store failed (a
/// value over the item size limit, a codec error, a timeout, the breaker
/// open) or, through [`Flow::take_held`], the loader failed or panicked.
#[derive(Debug)]
pub(in crate::nearfar) struct Load<'a, V> {
    ctx: Ctx<'a>,
    key: &'a str,
    state: LoadState<'a, V>,
    store: Store,
    /// Released unless the far tier took the value or refused it (a
    /// refusal means the item changed: the placeholder or token is gone).
    held: Option<Held<'a>>,
    /// The placeholder waited on, and since when: each one is given
    /// `lease_wait` (a new one is a new holder, alive a moment ago).
    watched: Option<(Cas, u64)>,
    pause: Duration,
    waited: bool,
    cleared: bool,
    took_over: bool,
    /// A refresh-ahead: the lease asks for the recompute token of a far
    /// value with less than this left, and a held lease is not waited for.
    recache: Option<Duration>,
}

#[derive(Debug)]
enum LoadState<'a, V> {
    /// Not started: lease first (`None`), or compute and store as this says.
    Start(Option<Store>),
    Leasing,
    /// Deleting an abandoned placeholder (its CAS unique).
    TakingOver(Cas),
    /// Peeking at an undecodable item's CAS.
    Peeking,
    /// Deleting the undecodable item (its CAS unique).
    Clearing(Cas),
    /// Pausing before polling a held lease again.
    Waiting,
    Fallback(Fallback<'a, V>),
    Loading,
    Storing {
        value: V,
        cas: Cas,
    },
    /// Releasing what the load held, then done with `out`.
    Releasing {
        held: Held<'a>,
        out: Loaded<V>,
    },
    Done,
}

impl<'a, V> Load<'a, V> {
    /// A load after a near miss. `won_stale`: a revalidation already took
    /// the stale item's recompute token (its CAS unique).
    pub(in crate::nearfar) fn new(ctx: Ctx<'a>, key: &'a str, won_stale: Option<Cas>) -> Self {
        Self::with(ctx, key, LoadState::Start(won_stale.map(Store::Stale)))
    }

    /// A load that asks for no lease: it runs the loader and stores as
    /// `store` says.
    pub(in crate::nearfar) fn compute(ctx: Ctx<'a>, key: &'a str, store: Store) -> Self {
        Self::with(ctx, key, LoadState::Start(Some(store)))
    }

    /// A refresh-ahead of a near copy still live: the far value if another
    /// process already refreshed it (it has more than `recache` left), else
    /// the loader, stored over the recompute token memcached hands one
    /// process (`mg ... R`). Never waits on another process's lease: with a
    /// placeholder held (the far item gone, being computed elsewhere) it
    /// loads here and stores nothing far.
    pub(in crate::nearfar) fn refresh(ctx: Ctx<'a>, key: &'a str, recache: Duration) -> Self {
        let mut load = Self::with(ctx, key, LoadState::Start(None));
        load.recache = Some(recache);
        load
    }

    fn with(ctx: Ctx<'a>, key: &'a str, state: LoadState<'a, V>) -> Self {
        Load {
            ctx,
            key,
            state,
            store: Store::Skip,
            held: None,
            watched: None,
            pause: FIRST_PAUSE,
            waited: false,
            cleared: false,
            took_over: false,
            recache: None,
        }
    }

    fn lease(&mut self) -> Next<Loaded<V>> {
        self.state = LoadState::Leasing;
        Next::Far
    }

    fn on_lease(&mut self, reply: super::Reply<(Lease<V>, Seen)>, now: u64) -> Next<Loaded<V>> {
        let counters = self.ctx.counters;
        match reply {
            Ok(Some((
                Lease::Hit {
                    value,
                    cas,
                    stale,
                    ttl,
                },
                _,
            ))) => {
                let ttl = if stale {
                    bump(&counters.stale_serves);
                    self.ctx.stale_ttl()
                } else {
                    bump(&counters.far_hits);
                    self.ctx.bound(ttl)
                };
                self.finish((self.ctx.entry(now, value, cas.0, Some(ttl)), ttl), now)
            }
            Ok(Some((Lease::Won { previous, cas }, _))) => {
                let store = if previous.is_none() {
                    bump(&counters.far_misses);
                    Store::Placeholder(cas)
                } else {
                    Store::Stale(cas)
                };
                self.begin_compute(store, now)
            }
            Ok(Some((Lease::Wait, placeholder))) => self.on_wait(placeholder, now),
            // An undecodable far value: delete it (only if it is still the
            // item just read), then lease again, so the value loaded here
            // is stored over its own placeholder by CAS and a write or
            // removal meanwhile is not undone. Undecodable again (another
            // writer's format): load locally, store nothing.
            Err(Failure::Codec) if !self.cleared => {
                self.cleared = true;
                self.state = LoadState::Peeking;
                Next::Far
            }
            // The far tier is down (or the breaker open): load locally.
            Ok(None) | Err(_) => self.begin_compute(Store::Skip, now),
        }
    }

    /// Another caller holds the lease: wait for it, or take it over.
    fn on_wait(&mut self, placeholder: Seen, now: u64) -> Next<Loaded<V>> {
        let ctx = self.ctx;
        if self.recache.is_some() {
            // A refresh waits for no one: its callers hold a live copy.
            return self.begin_compute(Store::Skip, now);
        }
        if !self.waited {
            self.waited = true;
            bump(&ctx.counters.lease_waits);
        }
        let since = match self.watched {
            Some((cas, since)) if cas == placeholder.cas => since,
            _ => self.watched.insert((placeholder.cas, now)).1,
        };
        let elapsed = Duration::from_nanos(now.saturating_sub(since));
        let abandoned =
            elapsed >= ctx.lease_wait || lease_age(ctx.lease_ttl, placeholder.ttl) > ctx.lease_wait;
        if abandoned && !self.took_over {
            // The holder is gone (or slower than `lease_wait`): take its
            // lease over, so the fleet pays for an abandoned lease at most
            // once. Deleted only if it is still that placeholder (of
            // waiters timing out together, one succeeds; the others then
            // find the new placeholder, a live holder, and wait for it);
            // then lease again: this caller wins (and fills the far tier
            // for everyone), or finds the value or the placeholder of the
            // one that did.
            self.took_over = true;
            self.state = LoadState::TakingOver(placeholder.cas);
            return Next::Far;
        }
        if abandoned {
            // A second placeholder outlived `lease_wait` after this
            // caller's takeover: load here rather than wait again. No store
            // is safe here: `add` would land after a removal that deleted
            // the winner's placeholder (undoing it), and there is no CAS to
            // store against. The far tier is filled by the winner.
            bump(&ctx.counters.lease_timeouts);
            return self.begin_compute(Store::Skip, now);
        }
        let pause = self.pause.min(ctx.lease_wait - elapsed);
        self.pause = (self.pause * 2).min(MAX_PAUSE);
        self.state = LoadState::Waiting;
        Next::Wait(pause)
    }

    /// Takes on what `store` holds, then reads the fallback pool (with a
    /// placeholder to fill) or runs the loader.
    fn begin_compute(&mut self, store: Store, now: u64) -> Next<Loaded<V>> {
        self.store = store;
        self.held = match store {
            Store::Skip => None,
            Store::Placeholder(cas) => Some(Held::placeholder(self.key, cas)),
            Store::Stale(cas) => Some(Held::token(self.key, cas)),
        };
        match store {
            Store::Placeholder(cas) => {
                let fallback = Fallback::new(self.ctx, self.key, Some(cas));
                self.fallback(fallback, Input::Start, now)
            }
            _ => self.load(),
        }
    }

    fn fallback(
        &mut self,
        mut fallback: Fallback<'a, V>,
        input: Input<V>,
        now: u64,
    ) -> Next<Loaded<V>> {
        match fallback.advance(input, now).pending() {
            Ok(next) => {
                self.state = LoadState::Fallback(fallback);
                next
            }
            Err(None) => self.load(),
            Err(Some(Found { value, ttl, stored })) => {
                self.settle(stored);
                let out = if stored == Some(false) {
                    // Refused far: for this caller only.
                    (self.ctx.entry(now, value, 0, None), Duration::ZERO)
                } else {
                    let ttl = self.ctx.bound(Some(ttl));
                    (self.ctx.entry(now, value, 0, Some(ttl)), ttl)
                };
                self.finish(out, now)
            }
        }
    }

    fn load(&mut self) -> Next<Loaded<V>> {
        bump(&self.ctx.counters.loader_calls);
        self.state = LoadState::Loading;
        Next::Load
    }

    /// The store of the loaded `value` came back `kept`: `Some(Some(cas))`
    /// stored, with the item's new CAS unique (kept near, so a revalidation
    /// finds it unchanged); `Some(None)` refused; `None` not stored.
    fn stored(&mut self, value: V, kept: Option<Option<Cas>>, now: u64) -> Next<Loaded<V>> {
        self.settle(kept.map(|stored| stored.is_some()));
        if kept == Some(None) {
            return self.finish((self.ctx.entry(now, value, 0, None), Duration::ZERO), now);
        }
        // Loaded locally or not, a near copy never outlives `far_ttl`.
        let ttl = self.ctx.bound(Some(self.ctx.far_ttl));
        let cas = kept.flatten().map_or(0, |c| c.0);
        self.finish((self.ctx.entry(now, value, cas, Some(ttl)), ttl), now)
    }

    /// The far tier took the value or refused it (`Some`): nothing held is
    /// to be released.
    fn settle(&mut self, outcome: Option<bool>) {
        if outcome.is_some() {
            self.held = None;
        }
    }

    /// Done with `out`, after releasing what is still held.
    fn finish(&mut self, out: Loaded<V>, now: u64) -> Next<Loaded<V>> {
        match self.held.take() {
            Some(held) => self.release(held, out, Input::Start, now),
            None => Next::Done(out),
        }
    }

    fn release(
        &mut self,
        mut held: Held<'a>,
        out: Loaded<V>,
        input: Input<V>,
        now: u64,
    ) -> Next<Loaded<V>> {
        match Flow::<V>::advance(&mut held, input, now).pending() {
            Ok(next) => {
                self.state = LoadState::Releasing { held, out };
                next
            }
            Err(()) => Next::Done(out),
        }
    }
}

impl<V> Flow<V> for Load<'_, V> {
    type Out = Loaded<V>;

    fn advance(&mut self, input: Input<V>, now: u64) -> Next<Loaded<V>> {
        // Each arm sets the state it leaves the flow in (`Done` unless
        // said otherwise).
        let state = std::mem::replace(&mut self.state, LoadState::Done);
        match (state, input) {
            (LoadState::Start(None), Input::Start) => self.lease(),
            (LoadState::Start(Some(store)), Input::Start) => self.begin_compute(store, now),
            (LoadState::Leasing, Input::Far(reply)) => self.on_lease(reply.lease(), now),
            (LoadState::TakingOver(_), Input::Far(reply)) => {
                if reply.done() == Ok(Some(true)) {
                    bump(&self.ctx.counters.lease_takeovers);
                }
                self.lease()
            }
            (LoadState::Waiting, Input::Waited) => self.lease(),
            (LoadState::Peeking, Input::Far(reply)) => match reply.peek_cas() {
                Ok(Some(Some(Lease::Hit { cas, .. } | Lease::Won { cas, .. }))) => {
                    self.state = LoadState::Clearing(cas);
                    Next::Far
                }
                // Gone, or being computed: read again.
                Ok(Some(Some(Lease::Wait) | None)) => self.lease(),
                Ok(None) | Err(_) => self.begin_compute(Store::Skip, now),
            },
            (LoadState::Clearing(_), Input::Far(_)) => self.lease(),
            (LoadState::Fallback(fallback), input) => self.fallback(fallback, input, now),
            (LoadState::Loading, Input::Loaded(value)) => match self.store {
                Store::Skip => self.stored(value, None, now),
                Store::Placeholder(cas) | Store::Stale(cas) => {
                    self.state = LoadState::Storing { value, cas };
                    Next::Far
                }
            },
            (LoadState::Storing { value, .. }, Input::Far(reply)) => {
                let kept = reply.stored().ok().flatten();
                self.stored(value, kept, now)
            }
            (LoadState::Releasing { held, out }, input) => self.release(held, out, input, now),
            _ => unexpected("Load"),
        }
    }

    fn request(&self) -> FarOp<'_, V> {
        let key = self.key;
        match &self.state {
            LoadState::Leasing => FarOp::GetOrLease {
                key,
                lease_ttl: self.ctx.lease_ttl,
                recache: self.recache,
            },
            LoadState::TakingOver(cas) | LoadState::Clearing(cas) => {
                FarOp::DeleteIfCas { key, cas: *cas }
            }
            LoadState::Peeking => FarOp::PeekLeaseCas { key },
            LoadState::Fallback(fallback) => fallback.request(),
            LoadState::Storing { value, cas } => FarOp::CompareAndSet {
                key,
                value,
                ttl: self.ctx.far_ttl,
                cas: *cas,
            },
            LoadState::Releasing { held, .. } => held.request(),
            _ => unexpected("Load"),
        }
    }

    fn take_held(&mut self) -> Option<Held<'_>> {
        self.held.take()
    }
}

/// How long ago, at least, a lease placeholder was made, given what it
/// has `left` to live and that it was made for `lease_ttl` (as every
/// `NearFar` sharing the namespace should be configured). memcached counts
/// whole seconds and rounds the lease TTL up, so a second is taken off:
/// a placeholder made just now never looks old.
pub(in crate::nearfar) fn lease_age(lease_ttl: Duration, left: Option<Duration>) -> Duration {
    let made_for = lease_ttl.as_secs() + u64::from(lease_ttl.subsec_nanos() > 0);
    let left = left.map_or(made_for, |l| l.as_secs());
    Duration::from_secs(made_for.saturating_sub(left).saturating_sub(1))
}
