//! `insert` and `remove` after the near tier's part: their far half on the
//! flows of [`flow::write`](super::flow::write), then the near write.
//! Written once for both handles: `async fn`s over a driver [`Mode`].

use std::hash::Hash;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::FarKey;
use super::drive::{self, Mode};
use super::flow::write::{Insert, Remove};
use super::inner::{FarClient, Inner};

impl<K, V, Cl> Inner<K, V, Cl>
where
    K: Hash + Eq + Clone + FarKey + Send + Sync + 'static,
    V: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
    Cl: FarClient,
{
    /// Stores `value` under `key` in both tiers: far first, then near.
    ///
    /// While the namespace's generation is not known (no check answered
    /// since this process started: the far tier down), the far write is not
    /// made, as no far key can be named: only the near tier is written.
    pub(super) async fn insert<M: Mode<Client = Cl>>(&self, key: K, value: V) {
        // The CAS unique memcached gave our write: a revalidation of this
        // entry then finds the item unchanged (0: unknown, always refetched).
        let mut cas = None;
        let far = self.far_call::<M>().await;
        let generation = self.generation_of(far.as_ref());
        if let Some(far) = far {
            if let Some(fkey) = self.key_of(&far, &key) {
                let mut flow = Insert::new(&fkey, &value, far.far_ttl);
                cas = drive::run::<M, V, _>(&far, &self.timer, &mut flow).await;
            }
        }
        self.insert_near(key, value, cas.map_or(0, |c| c.0), generation);
    }

    /// Removes `key` from both tiers (near, far, near again: see
    /// [`Inner::removed`]); far only in the generation known, as `insert`.
    pub(super) async fn remove<M: Mode<Client = Cl>>(&self, key: &K) {
        self.near.remove(key);
        if let Some(far) = self.far_call::<M>().await {
            if let Some(fkey) = self.key_of(&far, key) {
                let mut flow = Remove::new(&fkey, far.stale_on_remove);
                drive::run::<M, V, _>(&far, &self.timer, &mut flow).await;
            }
        }
        self.removed(key);
    }
}
