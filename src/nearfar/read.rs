//! The read path after the near tier, on the flows of
//! [`flow::read`](super::flow::read): revalidating a near copy against the
//! far item's CAS, and reading memcached (then the fallback pool) on a
//! miss. What the flows decide to keep near is kept here. Written once for
//! both handles: `async fn`s over a driver [`Mode`].

use std::hash::Hash;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::call::Call;
use super::drive::{self, Mode};
use super::flow::read::{Read, Revalidate, Revalidated};
use super::flow::token::GiveBack;
use super::generation::FarCall;
use super::inner::{Entry, FarClient, Inner};
use super::stats::bump;
use super::{FarKey, nanos};
use crate::memcached::Cas;

/// What a revalidation found.
pub(super) enum Check<V> {
    /// The far item is unchanged (or could not be checked): serve this.
    Keep(V),
    /// Changed or gone: fetch again.
    Changed,
    /// Stale (invalidated), and this check took its recompute token (the
    /// item's CAS unique).
    WonStale(V, Cas),
}

impl<K, V, Cl> Inner<K, V, Cl>
where
    K: Hash + Eq + Clone + FarKey + Send + Sync + 'static,
    V: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
    Cl: FarClient,
{
    /// `get` after its near lookup: `entry` is the near copy (of another
    /// generation, or due for the generation check or revalidation), or
    /// `None` after a miss.
    pub(super) async fn get_slow<M: Mode<Client = Cl>>(
        &self,
        key: &K,
        entry: Option<Entry<V>>,
    ) -> Option<V> {
        let far = self.far_call::<M>().await;
        let entry = self.current_copy(key, entry, self.generation_of(far.as_ref()));
        let Some(far) = far else {
            return entry.map(|e| e.value);
        };
        let Some(entry) = entry else {
            return self.read_far::<M>(&far, key).await;
        };
        if !self.revalidation_due(&entry) {
            // Here for the generation check only, which found no change.
            return Some(entry.value);
        }
        match self.revalidate::<M>(&far, key, entry).await {
            Check::Keep(v) => Some(v),
            Check::Changed => {
                self.near.drop_copy(key);
                self.read_far::<M>(&far, key).await
            }
            Check::WonStale(v, cas) => {
                // This read took the stale item's recompute token and has no
                // loader: hand it back so the next `get_with` recomputes.
                self.near.drop_copy(key);
                if let Some(fkey) = self.key_of(&far, key) {
                    self.give_back_token::<M>(&far, &fkey, cas).await;
                }
                bump(&self.counters.stale_serves);
                Some(v)
            }
        }
    }

    /// Checks a near entry (of `far`'s generation) due for revalidation
    /// against the far item's CAS.
    pub(super) async fn revalidate<M: Mode<Client = Cl>>(
        &self,
        far: &FarCall<'_, Cl>,
        key: &K,
        entry: Entry<V>,
    ) -> Check<V> {
        let Some(fkey) = self.key_of(far, key) else {
            return Check::Keep(entry.value);
        };
        let generation = self.write_generation(key).load(Ordering::Acquire);
        let mut flow = Revalidate::new(self.ctx(far), &fkey, entry.cas);
        match drive::run::<M, V, _>(far, &self.timer, &mut flow).await {
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
    fn refresh(&self, key: &K, generation: u64, entry: Entry<V>, far_left: Option<Duration>) -> V {
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

    /// Reads `key` from memcached, then the fallback pool.
    async fn read_far<M: Mode<Client = Cl>>(&self, far: &FarCall<'_, Cl>, key: &K) -> Option<V> {
        let fkey = self.key_of(far, key)?;
        let seen = self.write_generation(key).load(Ordering::Acquire);
        let mut flow = Read::<V>::new(self.ctx(far), &fkey);
        let served = drive::run::<M, V, _>(far, &self.timer, &mut flow).await?;
        if let Some(keep) = served.keep {
            let value = served.value.clone();
            self.put_near(key, seen, far.generation, value, keep);
        }
        Some(served.value)
    }

    /// Hands back the recompute token of the stale item `fkey` (see
    /// [`GiveBack`]).
    pub(super) async fn give_back_token<M: Mode<Client = Cl>>(
        &self,
        far: &Call<'_, Cl>,
        fkey: &str,
        cas: Cas,
    ) {
        let mut flow = GiveBack::new(fkey, cas);
        drive::run::<M, V, _>(far, &self.timer, &mut flow).await;
    }
}
