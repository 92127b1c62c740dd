//! What a `NearFar` publishes and traces (see [`crate::observe`]): its
//! name, its metric handles (registered once, when it is built), the hooks
//! around each far request ([`Call`](super::call::Call) calls them for
//! both drivers) and each run of a caller's loader, and the publishing of
//! its counters ([`NearFarStats`](super::NearFarStats) and the breakers'
//! state) at most once per interval. Without the `metrics` and `tracing`
//! features the hooks compile to nothing; every `cfg` of `nearfar` for
//! them is in this file.
// What only one of the two features reads (the metrics' labels, the
// spans' server) is unused with the other alone, or with neither.
#![cfg_attr(
    not(all(feature = "metrics", feature = "tracing")),
    allow(dead_code, reason = "parts are read by one feature only")
)]

use std::future::Future;
use std::hash::Hash;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::FarKey;
use super::call::Pool;
use super::flow::FarOp;
use super::inner::{Far, FarClient, Inner};
use super::load::Plan;
use super::stats::{Counters, bump};
use crate::clock::Timer;
use crate::memcached;

/// What a far client tells of its servers: for the `server` of a far
/// request's span and the servers' `nearfar_server_down` gauges.
pub(crate) trait Servers {
    /// The configured servers' labels.
    fn labels(&self) -> Vec<String>;
    /// Whether the client holds `label` dead now.
    fn is_down(&self, label: &str) -> bool;
    /// The server `key` goes to now, if any.
    fn server_of(&self, key: &str) -> Option<String>;
}

impl Servers for memcached::Client {
    fn labels(&self) -> Vec<String> {
        self.servers()
    }
    fn is_down(&self, label: &str) -> bool {
        self.is_marked_dead(label)
    }
    fn server_of(&self, key: &str) -> Option<String> {
        self.server_for(key).ok()
    }
}

#[cfg(feature = "tokio")]
impl Servers for memcached::AsyncClient {
    fn labels(&self) -> Vec<String> {
        self.servers()
    }
    fn is_down(&self, label: &str) -> bool {
        self.is_marked_dead(label)
    }
    fn server_of(&self, key: &str) -> Option<String> {
        self.server_for(key).ok()
    }
}

/// The `command` label of each far request, by [`FarOp`] (the client
/// method it calls).
const COMMANDS: [&str; 16] = [
    "get_or_lease",
    "peek_lease",
    "peek_lease_cas",
    "meta_get",
    "add",
    "cas",
    "compare_and_set",
    "set",
    "delete",
    "delete_if_cas",
    "invalidate",
    "invalidate_if_cas",
    "get_raw",
    "incr",
    "add_counter",
    "get_many",
];

/// The `kind` label of each far error, by `memcached::Error` variant.
const KINDS: [&str; 14] = [
    "io",
    "timeout",
    "protocol",
    "server",
    "not_stored",
    "client",
    "codec",
    "invalid_key",
    "value_too_large",
    "all_servers_down",
    "connect",
    "pool_timeout",
    "config",
    // Feature `tls` (registered without it too, and never counted then).
    "tls",
];

/// The index of `e`'s kind in [`KINDS`].
fn kind(e: &memcached::Error) -> usize {
    use memcached::Error as E;
    match e {
        E::Io(_) => 0,
        E::Timeout => 1,
        E::Protocol(_) => 2,
        E::Server(_) => 3,
        E::NotStored => 4,
        E::Client(_) => 5,
        E::Codec(_) => 6,
        E::InvalidKey { .. } => 7,
        E::ValueTooLarge { .. } => 8,
        E::AllServersDown => 9,
        E::Connect { .. } => 10,
        E::PoolTimeout => 11,
        E::Config(_) => 12,
        #[cfg(feature = "tls")]
        E::Tls { .. } => 13,
    }
}

/// The `pool` label.
fn pool_label(pool: Pool) -> &'static str {
    match pool {
        Pool::Far => "far",
        Pool::Fallback => "fallback",
    }
}

/// A far request about to be made: its command (an index in
/// [`COMMANDS`]) and far key.
#[derive(Clone, Copy, Debug)]
pub(super) struct Request<'a> {
    command: usize,
    key: &'a str,
}

impl Request<'_> {
    /// A request of no particular command or key.
    #[cfg(test)]
    pub(super) fn unnamed() -> Self {
        Request {
            command: 0,
            key: "",
        }
    }
}

impl<'a, V> FarOp<'a, V> {
    /// What a request performing this op is, for its metrics and span.
    pub(super) fn request(&self) -> Request<'a> {
        let (command, key) = match *self {
            FarOp::GetOrLease { key, .. } => (0, key),
            FarOp::PeekLease { key } => (1, key),
            FarOp::PeekLeaseCas { key } => (2, key),
            FarOp::MetaGet { key, .. } => (3, key),
            FarOp::Add { key, .. } => (4, key),
            FarOp::Cas { key, .. } => (5, key),
            FarOp::CompareAndSet { key, .. } => (6, key),
            FarOp::SetReturningCas { key, .. } => (7, key),
            // An owed invalidation sends nothing: never observed.
            FarOp::Delete { key, .. } | FarOp::Owe { key, .. } => (8, key),
            FarOp::DeleteIfCas { key, .. } => (9, key),
            FarOp::Invalidate { key, .. } => (10, key),
            FarOp::InvalidateIfCas { key, .. } => (11, key),
            FarOp::GetRaw { key } => (12, key),
            FarOp::Incr { key, .. } => (13, key),
            FarOp::AddCounter { key, .. } => (14, key),
            // A batch: its span and digest name its first key.
            FarOp::GetMany { keys } => (15, keys.first().map_or("", String::as_str)),
        };
        Request { command, key }
    }
}

/// A far request under way (see [`Observe::start`]): when it started and
/// its span.
#[derive(Debug)]
pub(super) struct Started {
    #[cfg(feature = "metrics")]
    at: u64,
    #[cfg(feature = "metrics")]
    command: usize,
    #[cfg(feature = "tracing")]
    span: tracing::Span,
}

impl Started {
    /// Runs the (blocking) request `f` inside the request's span.
    pub(super) fn within<R>(&self, f: impl FnOnce() -> R) -> R {
        #[cfg(feature = "tracing")]
        let _entered = self.span.enter();
        f()
    }

    /// The (async) request `fut`, inside the request's span.
    #[cfg_attr(
        not(feature = "tokio"),
        allow(dead_code, reason = "the async driver's")
    )]
    pub(super) fn traced<F: Future>(&self, fut: F) -> impl Future<Output = F::Output> {
        #[cfg(feature = "tracing")]
        let fut = tracing::Instrument::instrument(fut, self.span.clone());
        fut
    }
}

/// A `NearFar`'s name and, with the `metrics` feature, its handles.
#[derive(Debug)]
pub(crate) struct Observe {
    name: Box<str>,
    #[cfg(feature = "metrics")]
    handles: handles::Handles,
}

/// Registers nothing: the counters of a test's flow, or a stand-in for
/// the real ones until they are set (`Counters::observed`).
impl Default for Observe {
    fn default() -> Self {
        Observe {
            name: crate::observe::DEFAULT_NAME.into(),
            #[cfg(feature = "metrics")]
            handles: handles::Handles::detached(),
        }
    }
}

impl Observe {
    /// The name and handles of a `NearFar` named `name` over `far`,
    /// registered with the recorder installed now.
    pub(super) fn new<Cl: FarClient>(name: Box<str>, far: Option<&Far<Cl>>) -> Self {
        #[cfg(not(feature = "metrics"))]
        let _ = far;
        Observe {
            #[cfg(feature = "metrics")]
            handles: handles::Handles::new(&name, far),
            name,
        }
    }

    /// The `NearFar`'s name.
    pub(super) fn name(&self) -> &str {
        &self.name
    }

    /// A far request let through `pool`'s breaker at `now` (ns on the
    /// `NearFar`'s clock), to be sent by `client`.
    pub(super) fn start<Cl: FarClient>(
        &self,
        request: Request<'_>,
        pool: Pool,
        client: &Cl,
        now: u64,
    ) -> Started {
        #[cfg(not(feature = "metrics"))]
        let _ = now;
        #[cfg(not(feature = "tracing"))]
        let _ = (request, pool, client);
        Started {
            #[cfg(feature = "metrics")]
            at: now,
            #[cfg(feature = "metrics")]
            command: request.command,
            #[cfg(feature = "tracing")]
            span: tracing::debug_span!(
                target: "nearfar",
                "nearfar.far",
                name = &*self.name,
                command = COMMANDS[request.command],
                pool = pool_label(pool),
                server = client.server_of(request.key).as_deref().unwrap_or("none"),
                key = %crate::observe::digest(request.key.as_bytes()),
                outcome = tracing::field::Empty,
            ),
        }
    }
}

impl Counters {
    /// After a far request that `started`, with `result`: its time and
    /// error kind recorded, its span told the outcome, and the counters
    /// published if due.
    pub(super) fn far_done<T, Cl: FarClient>(
        &self,
        started: &Started,
        result: &memcached::Result<T>,
        far: &Far<Cl>,
        timer: &Timer,
    ) {
        #[cfg(feature = "tracing")]
        started.span.record(
            "outcome",
            result.as_ref().map_or_else(|e| KINDS[kind(e)], |_| "ok"),
        );
        #[cfg(feature = "metrics")]
        {
            let now = timer.now();
            let handles = &self.observe.handles;
            handles.request(started.command, now.saturating_sub(started.at));
            if let Err(e) = result {
                handles.error(kind(e));
            }
            self.publish_if_due(now, Some(far));
        }
        #[cfg(not(feature = "metrics"))]
        let _ = (started, result, far, timer);
    }

    /// Publishes the counters if due at `now` (see [`crate::observe`]).
    fn publish_if_due<Cl: FarClient>(&self, now: u64, far: Option<&Far<Cl>>) {
        #[cfg(feature = "metrics")]
        if self.observe.handles.due(now) {
            self.publish(far);
        }
        #[cfg(not(feature = "metrics"))]
        let _ = (now, far);
    }

    /// Publishes the counters now.
    pub(super) fn publish<Cl: FarClient>(&self, far: Option<&Far<Cl>>) {
        #[cfg(feature = "metrics")]
        self.observe
            .handles
            .publish(&self.snapshot(crate::Stats::default(), 0, 0), far);
        #[cfg(not(feature = "metrics"))]
        let _ = far;
    }
}

impl<K, V, Cl> Inner<K, V, Cl>
where
    K: Hash + Eq + Clone + FarKey + Send + Sync + 'static,
    V: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
    Cl: FarClient,
{
    /// Publishes the near tier's counters and this cache's now.
    pub(super) fn publish_metrics(&self) {
        self.near.publish_metrics();
        self.counters.publish(self.far.as_ref());
    }

    /// A caller's loader, observed: a panic or an error counted in
    /// `loader_errors`, its time recorded, its span entered (`key`'s
    /// digest: the far key of `plan`, or the rendered key), and the
    /// counters published if due. It runs when the load asks for it, as
    /// `load` would.
    pub(super) async fn observed_load<E>(
        &self,
        key: &K,
        plan: &Plan<'_, V, Cl>,
        load: impl Future<Output = Result<V, E>>,
    ) -> Result<V, E> {
        #[cfg(not(feature = "tracing"))]
        let _ = (key, plan);
        #[cfg(feature = "tracing")]
        let span = tracing::debug_span!(
            target: "nearfar",
            "nearfar.load",
            name = self.counters.observe.name(),
            key = %crate::observe::digest(match plan {
                Plan::Far { fkey, .. } => fkey.clone(),
                _ => key.far_key().unwrap_or_default(),
            }.as_bytes()),
            outcome = tracing::field::Empty,
        );
        #[cfg(feature = "tracing")]
        let load = tracing::Instrument::instrument(load, span.clone());
        let mut run = Run {
            inner: self,
            started: self.now(),
            ended: false,
            #[cfg(feature = "tracing")]
            span,
        };
        let result = load.await;
        run.ended = true;
        run.end(if result.is_ok() { "ok" } else { "error" });
        result
    }
}

/// A loader run under way: ended by [`Run::end`], or by its drop while a
/// panic unwinds (counted as a failed run) or when it is cancelled (an
/// async `loader_timeout`: not counted).
struct Run<'i, K, V, Cl> {
    inner: &'i Inner<K, V, Cl>,
    started: u64,
    ended: bool,
    #[cfg(feature = "tracing")]
    span: tracing::Span,
}

impl<K, V, Cl: FarClient> Run<'_, K, V, Cl> {
    fn end(&self, outcome: &'static str) {
        let inner = self.inner;
        if outcome != "ok" {
            bump(&inner.counters.loader_errors);
        }
        #[cfg(feature = "tracing")]
        self.span.record("outcome", outcome);
        #[cfg(feature = "metrics")]
        {
            let now = inner.timer.now();
            let handles = &inner.counters.observe.handles;
            handles.loaded(now.saturating_sub(self.started));
            inner.counters.publish_if_due(now, inner.far.as_ref());
        }
    }
}

impl<K, V, Cl> Drop for Run<'_, K, V, Cl> {
    fn drop(&mut self) {
        if !self.ended && std::thread::panicking() {
            // As `end`, but for the publishing, which needs the far
            // client's type (`Cl: FarClient`, which a `Drop` cannot ask
            // for): the next far request or load publishes it.
            let inner = self.inner;
            bump(&inner.counters.loader_errors);
            #[cfg(feature = "tracing")]
            self.span.record("outcome", "panic");
            #[cfg(feature = "metrics")]
            inner
                .counters
                .observe
                .handles
                .loaded(inner.timer.now().saturating_sub(self.started));
        }
    }
}

#[cfg(feature = "metrics")]
mod handles;

#[cfg(all(test, any(feature = "metrics", feature = "tracing")))]
mod tests;
