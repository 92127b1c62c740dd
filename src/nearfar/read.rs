//! The read path after the near tier: revalidating a near copy against the
//! far item's CAS, and reading memcached (then the fallback pool) on a miss.

use std::hash::Hash;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::call::Call;
use super::stats::bump;
use super::{Check, Entry, FarKey, NearFar, STALE_NEAR_TTL, nanos};
use crate::memcached::Lease;

impl<K, V> NearFar<K, V>
where
    K: Hash + Eq + Clone + FarKey + Send + Sync + 'static,
    V: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
{
    /// Checks a near entry due for revalidation against the far item's CAS.
    pub(super) fn revalidate(&self, far: &Call<'_>, key: &K, entry: Entry<V>) -> Check<V> {
        let inner = &*self.inner;
        let Some(fkey) = self.key_of(far, key) else {
            return Check::Keep(entry.value);
        };
        let counters = &inner.counters;
        bump(&counters.revalidations);
        let generation = self.generation(key).load(Ordering::Acquire);
        let Some(seen) = far.run(|c| c.peek_lease_cas(&fkey)) else {
            // Far tier unusable: keep serving the copy until its near TTL,
            // and check it again only after another period (not on every
            // read while the outage lasts).
            return Check::Keep(self.refresh(key, generation, entry, None));
        };
        match seen {
            Some(Lease::Hit {
                cas,
                stale: false,
                ttl,
                ..
            }) if cas.0 == entry.cas => Check::Keep(self.refresh(key, generation, entry, ttl)),
            Some(Lease::Won { cas, .. }) => {
                bump(&counters.revalidations_changed);
                Check::WonStale(entry.value, cas)
            }
            _ => {
                bump(&counters.revalidations_changed);
                Check::Changed
            }
        }
    }

    /// Marks a near entry checked now, for no longer than it had left (nor
    /// `far_left`, what the far item has left when known), and returns its
    /// value. `generation`: the key's write generation before the check.
    pub(super) fn refresh(
        &self,
        key: &K,
        generation: u64,
        entry: Entry<V>,
        far_left: Option<Duration>,
    ) -> V {
        let now = self.now();
        let near_left = entry.expires.saturating_sub(now);
        let ttl = Duration::from_nanos(near_left).min(self.bound(far_left));
        let value = entry.value.clone();
        let refreshed = Entry {
            checked: now,
            expires: now.saturating_add(nanos(ttl)),
            ..entry
        };
        // Written again rather than updated in place: a shared timestamp in
        // every entry would cost each near hit an atomic on a shared cache
        // line.
        self.keep_near(key, generation, refreshed, ttl);
        value
    }

    /// `get` with a near entry due for revalidation.
    #[cold]
    pub(super) fn get_revalidate(&self, key: &K, entry: Entry<V>) -> Option<V> {
        let Some(far) = self.call() else {
            return Some(entry.value);
        };
        match self.revalidate(&far, key, entry) {
            Check::Keep(v) => Some(v),
            Check::Changed => {
                self.inner.near.drop_copy(key);
                self.read_far(&far, key)
            }
            Check::WonStale(v, cas) => {
                // This read took the stale item's recompute token and has no
                // loader: hand it back so the next `get_with` recomputes.
                self.inner.near.drop_copy(key);
                if let Some(fkey) = self.key_of(&far, key) {
                    self.give_back_token(&far, &fkey, cas);
                }
                bump(&self.inner.counters.stale_serves);
                Some(v)
            }
        }
    }

    /// `get` after a near miss: memcached, then the fallback pool.
    #[cold]
    pub(super) fn get_far(&self, key: &K) -> Option<V> {
        self.read_far(&self.call()?, key)
    }

    /// Reads `key` from memcached, then the fallback pool.
    pub(super) fn read_far(&self, far: &Call<'_>, key: &K) -> Option<V> {
        let inner = &*self.inner;
        let fkey = self.key_of(far, key)?;
        let counters = &inner.counters;
        let generation = self.generation(key).load(Ordering::Acquire);
        match far.run(|c| c.peek_lease::<V>(&fkey))? {
            Some(Lease::Hit {
                value,
                cas,
                stale,
                ttl,
            }) => {
                if stale {
                    bump(&counters.stale_serves);
                    self.put_near(key, generation, value.clone(), 0, Some(STALE_NEAR_TTL));
                } else {
                    bump(&counters.far_hits);
                    self.put_near(key, generation, value.clone(), cas.0, ttl);
                }
                Some(value)
            }
            Some(Lease::Won { previous, cas }) => {
                // A stale item whose recompute token this read took: no
                // loader here, so hand it back (the next `get_with` wins).
                self.give_back_token(far, &fkey, cas);
                if previous.is_some() {
                    bump(&counters.stale_serves);
                }
                previous
            }
            Some(Lease::Wait) | None => {
                bump(&counters.far_misses);
                let (value, ttl, stored) = self.read_fallback(far, &fkey, None)?;
                // A far failure (`None`) keeps the copy near, as a load does.
                if stored != Some(false) {
                    self.put_near(key, generation, value.clone(), 0, Some(ttl));
                }
                Some(value)
            }
        }
    }
}
