//! The load path: a near miss that `get_with` fills, through memcached's
//! lease (one loader across processes), the fallback pool, then the
//! caller's loader, and the stores that follow.

use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::call::{Call, Failure, Pool};
use super::stats::bump;
use super::{Entry, FIRST_PAUSE, FarKey, MAX_PAUSE, NearFar, OnDrop};
use crate::memcached::{Cas, Lease};

/// How [`NearFar::compute`] stores a loaded value in the far tier.
#[derive(Clone, Copy)]
pub(super) enum Store {
    /// Not at all: the far tier is down, a lease wait timed out (see
    /// [`NearFarBuilder::lease_wait`]), or the far value stayed undecodable.
    Skip,
    /// Over the lease placeholder this caller won (its CAS unique), if it
    /// is still there: filled from the fallback pool when that has the key,
    /// released if the load fails.
    Placeholder(Cas),
    /// Over the stale item whose recompute token this caller holds (its CAS
    /// unique), if it is still unchanged.
    Stale(Cas),
}

impl<K, V> NearFar<K, V>
where
    K: Hash + Eq + Clone + FarKey + Send + Sync + 'static,
    V: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
{
    /// Hands back the recompute token of the stale item `fkey` (CAS unique
    /// `cas` when taken), which a read without a loader took (memcached
    /// gives it to any reader of a stale item): marking the item stale again
    /// clears the token, and doing so for the time it had left keeps its
    /// staleness bounded. A stale lease placeholder (removed while a load
    /// held it) has no value to serve: it is deleted, if still the same.
    pub(super) fn give_back_token(&self, far: &Call<'_>, fkey: &str, cas: Cas) {
        let seen = far.run(|c| c.peek_lease_cas(fkey));
        match seen {
            Some(Some(Lease::Hit {
                stale: true,
                ttl: Some(left),
                cas: seen,
                ..
            })) if !left.is_zero() => {
                // Only the item just read: a value written since is fresh
                // and must not be marked stale.
                far.run(|c| c.invalidate_if_cas(fkey, left, seen));
            }
            Some(Some(Lease::Wait)) => {
                far.run(|c| c.delete_if_cas(fkey, cas));
            }
            _ => {}
        }
    }

    /// Reads `fkey` from the fallback pool; a value found is copied into the
    /// far tier (over our own placeholder, `placeholder` its CAS unique, if
    /// it is still there; else `add`) and returned with the TTL for the copy
    /// and what became of it: stored (`Some(true)`), refused (`Some(false)`:
    /// the key was written or removed meanwhile, so the value may be
    /// outdated and must not be kept near, as with a refused `cas` of a
    /// load), or not stored (`None`: the far tier failed or was skipped).
    pub(super) fn read_fallback(
        &self,
        far: &Call<'_>,
        fkey: &str,
        placeholder: Option<Cas>,
    ) -> Option<(V, Duration, Option<bool>)> {
        let item = far.run_on(Pool::Fallback, |c| c.meta_get::<V>(fkey))??;
        bump(&self.inner.counters.fallback_hits);
        let ttl = fallback_ttl(item.ttl, far.far_ttl);
        let stored = far.run(|c| match placeholder {
            Some(cas) => c.cas(fkey, &item.value, ttl, cas),
            None => c.add(fkey, &item.value, ttl),
        });
        Some((item.value, ttl, stored))
    }

    /// `try_get_with` without a far tier (or for a key it cannot hold). An
    /// `insert` or `remove` of the key while `load` runs supersedes the
    /// load in the near tier: its value goes to its callers only.
    pub(super) fn load_near_only<E>(
        &self,
        key: &K,
        load: impl FnOnce() -> Result<V, E>,
    ) -> Result<V, Arc<E>>
    where
        E: Send + Sync + 'static,
    {
        let inner = &*self.inner;
        let near_ttl = inner.near_ttl;
        // Called after `try_get_with_ref`'s own lookup missed (and counted
        // it): the load does not look again.
        // Shared or not, the near tier is all there is: nothing to skip.
        let result = inner.near.load_after_miss(key.clone(), |_| {
            bump(&inner.counters.loader_calls);
            load().map(|v| (self.entry(v, 0, near_ttl), near_ttl))
        });
        result.map(|entry| entry.value)
    }

    /// The near tier's loader for `fkey`: memcached (with a lease), then
    /// `load`. Runs once per key in this process at a time.
    pub(super) fn load_through<E>(
        &self,
        far: &Call<'_>,
        fkey: &str,
        won_stale: Option<Cas>,
        load: impl FnOnce() -> Result<V, E>,
    ) -> Result<(Entry<V>, Duration), E> {
        let counters = &self.inner.counters;
        if let Some(cas) = won_stale {
            // A revalidation already took the stale item's recompute token.
            return self.compute(far, fkey, Store::Stale(cas), load);
        }
        // The placeholder waited on, and since when: each one is given
        // `lease_wait` (a new one is a new holder, alive a moment ago).
        let mut watched: Option<(Cas, u64)> = None;
        let mut pause = FIRST_PAUSE;
        let mut waited = false;
        let mut cleared = false;
        let mut took_over = false;
        loop {
            let lease = far.attempt(Pool::Far, |c| c.get_or_lease_seen::<V>(fkey, far.lease_ttl));
            match lease {
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
                        self.stale_ttl()
                    } else {
                        bump(&counters.far_hits);
                        self.bound(ttl)
                    };
                    return Ok((self.entry(value, cas.0, Some(ttl)), ttl));
                }
                Ok(Some((Lease::Won { previous, cas }, _))) => {
                    let store = if previous.is_none() {
                        bump(&counters.far_misses);
                        Store::Placeholder(cas)
                    } else {
                        Store::Stale(cas)
                    };
                    return self.compute(far, fkey, store, load);
                }
                Ok(Some((Lease::Wait, placeholder))) => {
                    if !waited {
                        waited = true;
                        bump(&counters.lease_waits);
                    }
                    let now = self.inner.timer.now();
                    let since = match watched {
                        Some((cas, since)) if cas == placeholder.cas => since,
                        _ => watched.insert((placeholder.cas, now)).1,
                    };
                    let elapsed = Duration::from_nanos(now.saturating_sub(since));
                    let abandoned = elapsed >= far.lease_wait
                        || lease_age(far.lease_ttl, placeholder.ttl) > far.lease_wait;
                    if abandoned && !took_over {
                        // The holder is gone (or slower than `lease_wait`):
                        // take its lease over, so the fleet pays for an
                        // abandoned lease at most once. Deleted only if it
                        // is still that placeholder (of waiters timing out
                        // together, one succeeds; the others then find the
                        // new placeholder, a live holder, and wait for it);
                        // then lease again: this caller wins (and fills the
                        // far tier for everyone), or finds the value or the
                        // placeholder of the one that did.
                        took_over = true;
                        if far.run(|c| c.delete_if_cas(fkey, placeholder.cas)) == Some(true) {
                            bump(&counters.lease_takeovers);
                        }
                        continue;
                    }
                    if abandoned {
                        // A second placeholder outlived `lease_wait` after
                        // this caller's takeover: load here rather than
                        // wait again. No store is safe here: `add` would
                        // land after a removal that deleted the winner's
                        // placeholder (undoing it), and there is no CAS to
                        // store against. The far tier is filled by the
                        // winner.
                        bump(&counters.lease_timeouts);
                        return self.compute(far, fkey, Store::Skip, load);
                    }
                    self.inner.timer.sleep(pause.min(far.lease_wait - elapsed));
                    pause = (pause * 2).min(MAX_PAUSE);
                }
                // An undecodable far value: delete it (only if it is still
                // the item just read), then lease again, so the value loaded
                // here is stored over its own placeholder by CAS and a write
                // or removal meanwhile is not undone. Undecodable again
                // (another writer's format): load locally, store nothing.
                Err(Failure::Codec) if !cleared => {
                    cleared = true;
                    let seen = far.run(|c| c.peek_lease_cas(fkey));
                    match seen {
                        Some(Some(Lease::Hit { cas, .. } | Lease::Won { cas, .. })) => {
                            far.run(|c| c.delete_if_cas(fkey, cas));
                        }
                        // Gone, or being computed: read again.
                        Some(Some(Lease::Wait) | None) => {}
                        None => return self.compute(far, fkey, Store::Skip, load),
                    }
                }
                Err(Failure::Codec) => return self.compute(far, fkey, Store::Skip, load),
                // The far tier is down (or the breaker open): load locally.
                Ok(None) | Err(_) => return self.compute(far, fkey, Store::Skip, load),
            }
        }
    }

    /// Runs `load` and stores its value far as `store` says. When a
    /// conditional store finds the item changed or gone (another caller
    /// wrote or removed the key while `load` ran), the value is returned
    /// with a zero near TTL: kept nowhere, as it may be outdated.
    ///
    /// A lease this caller holds is given up whenever its value does not
    /// reach the far tier: the loader failed or panicked, or the store
    /// failed (a value over the item size limit, a codec error, a timeout,
    /// the breaker open). Otherwise every other process would wait out
    /// `lease_wait` for a value that never comes, until the lease lapses.
    pub(super) fn compute<E>(
        &self,
        far: &Call<'_>,
        fkey: &str,
        store: Store,
        load: impl FnOnce() -> Result<V, E>,
    ) -> Result<(Entry<V>, Duration), E> {
        let counters = &self.inner.counters;
        let placeholder = match store {
            Store::Placeholder(cas) => Some(cas),
            _ => None,
        };
        // Deletes the lease placeholder unless disarmed: only the
        // placeholder (by its CAS unique), never a value written over it
        // meanwhile; through the breaker, like every far call.
        let release = placeholder.map(|cas| {
            OnDrop(Some(move || {
                far.run(|c| c.delete_if_cas(fkey, cas));
            }))
        });
        // Hands back the recompute token of a stale item unless disarmed:
        // the stale value must not be served for all of its stale time with
        // no one recomputing it.
        let give_back = match store {
            Store::Stale(cas) => Some(OnDrop(Some(move || self.give_back_token(far, fkey, cas)))),
            _ => None,
        };
        // Disarms both guards once the far tier took the value or refused
        // it (a refusal means the item changed: the placeholder or token is
        // gone); with `None` (not stored) they run as they drop.
        let settle = |outcome: Option<bool>| {
            if outcome.is_some() {
                std::mem::forget(release);
                std::mem::forget(give_back);
            }
        };
        if placeholder.is_some() {
            if let Some((value, ttl, stored)) = self.read_fallback(far, fkey, placeholder) {
                settle(stored);
                if stored == Some(false) {
                    // Refused far: for this caller only.
                    return Ok((self.entry(value, 0, None), Duration::ZERO));
                }
                let ttl = self.bound(Some(ttl));
                return Ok((self.entry(value, 0, Some(ttl)), ttl));
            }
        }
        bump(&counters.loader_calls);
        let value = load()?;
        let ttl = far.far_ttl;
        // Stored: `Some(Some(cas))` with the item's new CAS unique (kept
        // near, so a revalidation finds it unchanged); refused:
        // `Some(None)`; not stored: `None`.
        let kept = match store {
            Store::Skip => None,
            Store::Placeholder(cas) | Store::Stale(cas) => {
                far.run(|c| c.compare_and_set(fkey, &value, ttl, cas))
            }
        };
        settle(kept.map(|stored| stored.is_some()));
        if kept == Some(None) {
            return Ok((self.entry(value, 0, None), Duration::ZERO));
        }
        // Loaded locally or not, a near copy never outlives `far_ttl`.
        let ttl = self.bound(Some(far.far_ttl));
        let cas = kept.flatten().map_or(0, |c| c.0);
        Ok((self.entry(value, cas, Some(ttl)), ttl))
    }
}

/// How long ago, at least, a lease placeholder was made, given what it
/// has `left` to live and that it was made for `lease_ttl` (as every
/// `NearFar` sharing the namespace should be configured). memcached counts
/// whole seconds and rounds the lease TTL up, so a second is taken off:
/// a placeholder made just now never looks old.
pub(super) fn lease_age(lease_ttl: Duration, left: Option<Duration>) -> Duration {
    let made_for = lease_ttl.as_secs() + u64::from(lease_ttl.subsec_nanos() > 0);
    let left = left.map_or(made_for, |l| l.as_secs());
    Duration::from_secs(made_for.saturating_sub(left).saturating_sub(1))
}

/// The TTL for a copy of a fallback item that has `left` to live (`None`:
/// never expires), bounded by `far_ttl`. A reported 0 (an item in its last
/// second) becomes 1 s: a TTL of 0 would be sent as exptime 0, "never".
pub(super) fn fallback_ttl(left: Option<Duration>, far_ttl: Duration) -> Duration {
    left.map_or(far_ttl, |left| left.max(Duration::from_secs(1)))
        .min(far_ttl)
}
