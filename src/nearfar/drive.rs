//! The drivers of the far-tier flows (see [`flow`](super::flow)): one loop
//! ([`drive`], [`run`]) over a [`Mode`], which says how a step is
//! performed. [`Blocking`] performs far requests on the blocking client,
//! waits on the `NearFar`'s clock and runs the caller's loader in place;
//! the tokio mode (`tokio.rs`) awaits the async client, tokio's timers and
//! the loader's future. The loop and every decision around it (in
//! `read.rs`, `load.rs`, `write.rs`) are written once, as `async fn`s:
//! in blocking mode every future they await is ready when first polled,
//! and [`block_on`] runs them on the calling thread.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::FarClient;
use super::call::Call;
use super::flow::token::Held;
use super::flow::{FarOp, FarReply, Flow, Input, Seen, Step};
use crate::clock::Timer;
use crate::memcached::Client;

/// How a driver performs a flow's steps: the blocking or the async way.
pub(super) trait Mode {
    /// The far tier's client.
    type Client: FarClient;

    /// Performs one far request: the client method the op names, through
    /// the call's breaker.
    async fn perform<V>(call: &Call<'_, Self::Client>, op: FarOp<'_, V>) -> FarReply<V>
    where
        V: Serialize + DeserializeOwned + Send + Sync;

    /// Waits `pause` (a flow's [`Step::Wait`]).
    async fn pause(timer: &Timer, pause: Duration);

    /// Releases what a flow held when it is dropped unfinished (a panic
    /// unwinding, or its future dropped): see [`Flow::take_held`].
    fn release_dropped(call: &Call<'_, Self::Client>, timer: &Timer, held: Held<'_>);
}

/// The far request an op names, performed through `$call`'s breaker with
/// `$attempt` and, for the async client, `.await`: the one mapping from
/// [`FarOp`] to client methods, shared by both modes.
macro_rules! perform {
    ($call:expr, $op:expr, $attempt:ident $(, $await:tt)?) => {{
        let call = $call;
        let op = $op;
        let pool = op.pool();
        let request = op.request();
        match op {
            FarOp::GetOrLease { key, lease_ttl, recache } => FarReply::Lease(
                call.$attempt(pool, request, |c| c.get_or_lease_seen::<V>(key, lease_ttl, recache))$(.$await)?
                    .map(|r| r.map(|(lease, s)| (lease, Seen { cas: s.cas, ttl: s.ttl }))),
            ),
            FarOp::PeekLease { key } => {
                FarReply::Peek(call.$attempt(pool, request, |c| c.peek_lease::<V>(key))$(.$await)?)
            }
            FarOp::PeekLeaseCas { key } => {
                FarReply::PeekCas(call.$attempt(pool, request, |c| c.peek_lease_cas(key))$(.$await)?)
            }
            FarOp::MetaGet { key, .. } => {
                FarReply::Item(call.$attempt(pool, request, |c| c.meta_get::<V>(key))$(.$await)?)
            }
            FarOp::Add { key, value, ttl } => {
                FarReply::Done(call.$attempt(pool, request, |c| c.add(key, value, ttl))$(.$await)?)
            }
            FarOp::Cas { key, value, ttl, cas } => {
                FarReply::Done(call.$attempt(pool, request, |c| c.cas(key, value, ttl, cas))$(.$await)?)
            }
            FarOp::CompareAndSet { key, value, ttl, cas } => FarReply::Stored(
                call.$attempt(pool, request, |c| c.compare_and_set(key, value, ttl, cas))$(.$await)?,
            ),
            FarOp::SetReturningCas { key, value, ttl } => FarReply::Set(
                call.$attempt(pool, request, |c| c.set_returning_cas(key, value, ttl))$(.$await)?,
            ),
            FarOp::Delete { key, .. } => {
                FarReply::Done(call.$attempt(pool, request, |c| c.delete(key))$(.$await)?)
            }
            FarOp::DeleteIfCas { key, cas } => {
                FarReply::Done(call.$attempt(pool, request, |c| c.delete_if_cas(key, cas))$(.$await)?)
            }
            FarOp::Invalidate { key, stale_for } => {
                FarReply::Done(call.$attempt(pool, request, |c| c.invalidate(key, stale_for))$(.$await)?)
            }
            FarOp::InvalidateIfCas { key, stale_for, cas } => FarReply::Done(
                call.$attempt(pool, request, |c| c.invalidate_if_cas(key, stale_for, cas))$(.$await)?,
            ),
            FarOp::Owe { key, .. } => {
                call.owe(pool, key);
                FarReply::Owed
            }
            FarOp::GetRaw { key } => {
                FarReply::Raw(call.$attempt(pool, request, |c| c.get_raw(key))$(.$await)?)
            }
            FarOp::Incr { key, delta } => {
                FarReply::Counter(call.$attempt(pool, request, |c| c.incr(key, delta))$(.$await)?)
            }
            FarOp::AddCounter { key, value } => FarReply::Done(
                call.$attempt(pool, request, |c| c.add(key, &value, ::std::time::Duration::ZERO))$(.$await)?,
            ),
            FarOp::GetMany { keys } => {
                FarReply::Many(call.$attempt(pool, request, |c| c.get_many::<V>(keys))$(.$await)?)
            }
        }
    }};
}
#[cfg_attr(
    not(feature = "tokio"),
    allow(unused_imports, reason = "the tokio mode uses it too")
)]
pub(super) use perform;

/// The blocking mode: the blocking client, the clock's sleep, loaders run
/// in place. Every future it gives is ready when first polled.
pub(super) struct Blocking;

impl Mode for Blocking {
    type Client = Client;

    async fn perform<V>(call: &Call<'_, Client>, op: FarOp<'_, V>) -> FarReply<V>
    where
        V: Serialize + DeserializeOwned + Send + Sync,
    {
        perform!(call, op, attempt_as)
    }

    async fn pause(timer: &Timer, pause: Duration) {
        timer.sleep(pause);
    }

    fn release_dropped(call: &Call<'_, Client>, timer: &Timer, mut held: Held<'_>) {
        // What it holds is released the same whatever `V` is.
        block_on(run::<Blocking, (), _>(call, timer, &mut held));
    }
}

/// Runs `flow` to its end; `load` is the caller's loader, awaited when the
/// flow asks. Its error ends the flow, and so does a panic or the future
/// being dropped: what the flow holds (see [`Flow::take_held`]) is
/// released first (on a panic or a drop, as [`Mode::release_dropped`]
/// can).
pub(super) async fn drive<M, V, F, E>(
    call: &Call<'_, M::Client>,
    timer: &Timer,
    flow: &mut F,
    load: impl Future<Output = Result<V, E>>,
) -> Result<F::Out, E>
where
    M: Mode,
    V: Serialize + DeserializeOwned + Send + Sync,
    F: Flow<V>,
{
    let mut load = Some(load);
    let mut guard = Release::<M, V, F> {
        call,
        timer,
        flow: Some(flow),
        values: std::marker::PhantomData,
    };
    let mut input = Input::Start;
    loop {
        let Some(flow) = guard.flow.as_deref_mut() else {
            unreachable!("the flow is taken only at the end");
        };
        input = match flow.resume(input, timer.now()) {
            Step::Far(op) => Input::Far(M::perform(call, op).await),
            Step::Wait(pause) => {
                M::pause(timer, pause).await;
                Input::Waited
            }
            Step::Load => match load.take() {
                Some(load) => match load.await {
                    Ok(value) => Input::Loaded(value),
                    Err(e) => {
                        let flow = guard.flow.take();
                        if let Some(mut held) = flow.and_then(|f| f.take_held()) {
                            run::<M, (), _>(call, timer, &mut held).await;
                        }
                        return Err(e);
                    }
                },
                None => unreachable!("a flow asked to load twice"),
            },
            Step::Done(out) => return Ok(out),
        };
    }
}

/// Runs `flow`, one that never loads, to its end.
pub(super) async fn run<M, V, F>(call: &Call<'_, M::Client>, timer: &Timer, flow: &mut F) -> F::Out
where
    M: Mode,
    V: Serialize + DeserializeOwned + Send + Sync,
    F: Flow<V>,
{
    let mut input = Input::Start;
    loop {
        input = match flow.resume(input, timer.now()) {
            Step::Far(op) => Input::Far(M::perform(call, op).await),
            Step::Wait(pause) => {
                M::pause(timer, pause).await;
                Input::Waited
            }
            Step::Load => unreachable!("this flow loads nothing"),
            Step::Done(out) => return out,
        };
    }
}

/// Releases what a flow holds when dropped unfinished: while a panic
/// unwinds (a loader's, or a value's `Serialize` or `Deserialize`), or
/// when the future driving it is dropped. A flow that ended, or whose
/// loader failed (released then), holds nothing.
struct Release<'c, 'f, M: Mode, V, F: Flow<V>> {
    call: &'c Call<'c, M::Client>,
    timer: &'c Timer,
    flow: Option<&'f mut F>,
    values: std::marker::PhantomData<fn() -> V>,
}

impl<M: Mode, V, F: Flow<V>> Drop for Release<'_, '_, M, V, F> {
    fn drop(&mut self) {
        if let Some(held) = self.flow.as_deref_mut().and_then(|f| f.take_held()) {
            M::release_dropped(self.call, self.timer, held);
        }
    }
}

/// Runs `future` to its end on this thread. The blocking mode's futures are
/// ready when first polled, so that poll uses a waker that does nothing
/// (nothing to allocate); should a future ever not be ready, the thread is
/// parked, with a waker that unparks it, until it is.
pub(super) fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    if let Poll::Ready(out) = future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        return out;
    }
    let waker = Waker::from(Arc::new(Unpark(thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
        thread::park();
    }
}

/// Wakes a thread parked in [`block_on`].
struct Unpark(Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}
