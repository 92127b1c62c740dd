//! Fail-safe: when a load fails (the loader errs or panics, or, for an
//! `AsyncNearFar`, outlasts `loader_timeout`; for a `NearFar`, a caller
//! waiting for another thread's load waits longer than `loader_timeout`:
//! the store's `Patience`) and the near tier still keeps
//! the key's last value, expired less than `max_stale` ago, that value is
//! served instead, and kept near for `fail_safe_backoff` so the loader is
//! tried again at most once per backoff. Written once for both handles: the
//! load is a future over a driver [`Mode`] (a blocking one is ready at its
//! first poll).

use std::any::Any;
use std::future::{Future, poll_fn};
use std::hash::Hash;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::drive::Mode;
use super::inner::{Entry, FarClient, Inner};
use super::load::Plan;
use super::stats::bump;
use super::{FarKey, nanos};
use crate::store::Sharing;

/// The fail-safe settings (see `NearFarBuilder::fail_safe`).
#[derive(Debug, Clone, Copy)]
pub(super) struct FailSafe {
    /// How long after its expiry a value may still be served, in ns.
    pub(super) max_stale: u64,
    /// How long a value served this way is kept near before the loader is
    /// tried again.
    pub(super) backoff: Duration,
    /// How long an async load, or a blocking caller's wait for another
    /// thread's load, may take before a stale value is served.
    pub(super) loader_timeout: Option<Duration>,
}

/// What the near tier's loader of a failed-over key gives: the entry and
/// its near TTL, or the loader's error.
type Loaded<V, E> = Result<(Entry<V>, Option<Duration>), E>;

impl<K, V, Cl> Inner<K, V, Cl>
where
    K: Hash + Eq + Clone + FarKey + Send + Sync + 'static,
    V: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
    Cl: FarClient,
{
    /// The near tier's loader of `plan` ([`Inner::load_far`]), failing over
    /// to the key's last value when fail-safe is on: a panic in the loader
    /// is caught (and resumed when there is no value to serve), and with
    /// `timeout` (async only) a load that outlasts it serves the last value
    /// if there is one (it is dropped then; without one it runs on). The
    /// entry of a load that succeeds keeps how long it took (refresh-ahead
    /// starts earlier for keys that take longer: see `refresh.rs`).
    pub(super) async fn load_fail_safe<M: Mode<Client = Cl>, E>(
        &self,
        key: &K,
        plan: &Plan<'_, V, Cl>,
        sharing: Sharing,
        load: impl Future<Output = Result<V, E>>,
        timeout: Option<Duration>,
    ) -> Loaded<V, E> {
        let start = self.now();
        let load = self.observed_load(key, plan, load);
        let loading = self.load_far::<M, E>(key, plan, sharing, load);
        let mut loaded = match self.fail_safe {
            None => loading.await,
            Some(_) => self.fail_over::<M, E>(key, loading, timeout).await,
        };
        if let Ok((entry, _)) = &mut loaded
            && entry.stale_since == 0
        {
            // How long the load took: refresh-ahead starts earlier for
            // keys that take longer (see `refresh.rs`).
            entry.delta = self.now().saturating_sub(start);
        }
        loaded
    }

    /// `loading`, failing over to `key`'s last value (see
    /// [`Inner::load_fail_safe`]).
    async fn fail_over<M: Mode<Client = Cl>, E>(
        &self,
        key: &K,
        loading: impl Future<Output = Loaded<V, E>>,
        timeout: Option<Duration>,
    ) -> Loaded<V, E> {
        let mut loading = pin!(loading);
        // On the injected clock, as every timed decision (never in the
        // blocking mode, whose pause blocks: its caller passes `None`).
        let mut timeout = timeout.map(|d| Box::pin(M::pause(&self.timer, d)));
        let outcome = poll_fn(|cx| {
            // A panic in the loader ends this poll, not the caller's call.
            match catch_unwind(AssertUnwindSafe(|| loading.as_mut().poll(cx))) {
                Ok(Poll::Pending) => {}
                Ok(Poll::Ready(loaded)) => return Poll::Ready(Ok(loaded)),
                Err(panic) => return Poll::Ready(Err(Failed::Panicked(panic))),
            }
            if let Some(sleep) = &mut timeout
                && sleep.as_mut().poll(cx).is_ready()
            {
                timeout = None;
                if let Some(served) = self.fail_safe_entry(key) {
                    return Poll::Ready(Err(Failed::Served(served)));
                }
            }
            Poll::Pending
        })
        .await;
        match outcome {
            Ok(Ok(loaded)) => Ok(loaded),
            Ok(Err(e)) => self.fail_safe_entry(key).ok_or(e),
            Err(Failed::Served(served)) => Ok(served),
            Err(Failed::Panicked(panic)) => match self.fail_safe_entry(key) {
                Some(served) => Ok(served),
                None => resume_unwind(panic),
            },
        }
    }

    /// The key's last value, if the near tier keeps it and it expired less
    /// than `max_stale` ago (counting from its first expiry, however often
    /// it was served since): as the entry to keep near for the backoff.
    pub(super) fn fail_safe_entry(&self, key: &K) -> Option<(Entry<V>, Option<Duration>)> {
        let fail_safe = self.fail_safe?;
        let (entry, age) = self.near.get_stale(key)?;
        let now = self.now();
        let since = if entry.stale_since != 0 {
            entry.stale_since
        } else {
            now.saturating_sub(nanos(age)).max(1)
        };
        if now.saturating_sub(since) >= fail_safe.max_stale {
            return None;
        }
        bump(&self.counters.fail_safe_serves);
        let backoff = fail_safe.backoff;
        let served = Entry {
            stale_since: since,
            checked: now,
            expires: now.saturating_add(nanos(backoff)),
            // Not the far item's: a revalidation finds it changed.
            cas: 0,
            ..entry
        };
        Some((served, Some(backoff)))
    }
}

/// Why a fail-safe load ended without the loader's outcome.
enum Failed<V> {
    /// The loader panicked.
    Panicked(Box<dyn Any + Send>),
    /// It outlasted `loader_timeout`: the last value is served.
    Served((Entry<V>, Option<Duration>)),
}
