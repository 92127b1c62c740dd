//! The load path: a near miss that `get_with` fills, on the flow of
//! [`flow::load`](super::flow::load) (the lease, the fallback pool, the
//! caller's loader, the store), or near only without a far tier.

use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::call::Call;
use super::drive;
use super::flow::load::{Load, Store};
use super::stats::bump;
use super::{Entry, FarKey, NearFar};
use crate::memcached::Cas;

impl<K, V> NearFar<K, V>
where
    K: Hash + Eq + Clone + FarKey + Send + Sync + 'static,
    V: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
{
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
    /// `load` (see [`Load`]). Runs once per key in this process at a time.
    pub(super) fn load_through<E>(
        &self,
        far: &Call<'_>,
        fkey: &str,
        won_stale: Option<Cas>,
        load: impl FnOnce() -> Result<V, E>,
    ) -> Result<(Entry<V>, Duration), E> {
        let mut flow = Load::new(self.ctx(far), fkey, won_stale);
        drive::drive(far, &self.inner.timer, &mut flow, load)
    }

    /// Runs `load` and stores its value far as `store` says (see
    /// [`Load::compute`]).
    pub(super) fn compute<E>(
        &self,
        far: &Call<'_>,
        fkey: &str,
        store: Store,
        load: impl FnOnce() -> Result<V, E>,
    ) -> Result<(Entry<V>, Duration), E> {
        let mut flow = Load::compute(self.ctx(far), fkey, store);
        drive::drive(far, &self.inner.timer, &mut flow, load)
    }
}
