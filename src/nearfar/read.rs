//! The read path after the near tier, on the flows of
//! [`flow::read`](super::flow::read): revalidating a near copy against the
//! far item's CAS, and reading memcached (then the fallback pool) on a
//! miss. What the flows decide to keep near is kept here.

use std::hash::Hash;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::call::Call;
use super::drive;
use super::flow::read::{Read, Revalidate, Revalidated};
use super::flow::token::GiveBack;
use super::stats::bump;
use super::{Check, Entry, FarKey, NearFar, nanos};
use crate::memcached::Cas;

impl<K, V> NearFar<K, V>
where
    K: Hash + Eq + Clone + FarKey + Send + Sync + 'static,
    V: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
{
    /// Checks a near entry due for revalidation against the far item's CAS.
    pub(super) fn revalidate(&self, far: &Call<'_>, key: &K, entry: Entry<V>) -> Check<V> {
        let Some(fkey) = self.key_of(far, key) else {
            return Check::Keep(entry.value);
        };
        let generation = self.generation(key).load(Ordering::Acquire);
        let mut flow = Revalidate::new(self.ctx(far), &fkey, entry.cas);
        match drive::run::<V, _>(far, &self.inner.timer, &mut flow) {
            Revalidated::Keep(far_left) => {
                Check::Keep(self.refresh(key, generation, entry, far_left))
            }
            Revalidated::Changed => Check::Changed,
            Revalidated::WonStale(cas) => Check::WonStale(entry.value, cas),
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
        let fkey = self.key_of(far, key)?;
        let generation = self.generation(key).load(Ordering::Acquire);
        let mut flow = Read::<V>::new(self.ctx(far), &fkey);
        let served = drive::run(far, &self.inner.timer, &mut flow)?;
        if let Some(keep) = served.keep {
            self.put_near(key, generation, served.value.clone(), keep);
        }
        Some(served.value)
    }

    /// Hands back the recompute token of the stale item `fkey` (see
    /// [`GiveBack`]).
    pub(super) fn give_back_token(&self, far: &Call<'_>, fkey: &str, cas: Cas) {
        drive::run::<V, _>(far, &self.inner.timer, &mut GiveBack::new(fkey, cas));
    }
}
