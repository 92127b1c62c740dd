//! The load path: `get_with` after its near lookup, on the flow of
//! [`flow::load`](super::flow::load) (the lease, the fallback pool, the
//! caller's loader, the store), coalesced per key by the near tier, or near
//! only without a far tier. Written once for both handles: `async fn`s over
//! a driver [`Mode`].

use std::future::Future;
use std::hash::Hash;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::FarKey;
use super::drive::{self, Mode};
use super::flow::Ctx;
use super::flow::load::{Load, Store};
use super::generation::FarCall;
use super::inner::{Entry, FarClient, Inner};
use super::read::Check;
use super::stats::bump;
use crate::memcached::Cas;
use crate::store::Sharing;

impl<K, V, Cl> Inner<K, V, Cl>
where
    K: Hash + Eq + Clone + FarKey + Send + Sync + 'static,
    V: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
    Cl: FarClient,
{
    /// `try_get_with` after its near lookup: `entry` is the near copy (of
    /// another generation, or due for the generation check or
    /// revalidation), or `None` after a miss (counted by that lookup: the
    /// load does not look again). Says how the value is to be loaded, or
    /// gives it when the copy is current.
    pub(super) async fn plan_load<'c, M: Mode<Client = Cl>>(
        &'c self,
        key: &K,
        entry: Option<Entry<V>>,
    ) -> Plan<'c, V, Cl> {
        let mut won_stale = None;
        let far = self.far_call::<M>().await;
        let generation = self.generation_of(far.as_ref());
        if let Some(entry) = self.current_copy(key, entry, generation) {
            // Revalidated only with a far tier.
            let Some(far) = far.as_ref().filter(|_| self.revalidation_due(&entry)) else {
                return Plan::Done(entry.value);
            };
            match self.revalidate::<M>(far, key, entry).await {
                Check::Keep(v) => return Plan::Done(v),
                Check::Changed => {}
                Check::WonStale(_, cas) => won_stale = Some(cas),
            }
            self.near.drop_copy(key);
        }
        self.plan(far, key, won_stale, None)
    }

    /// The plan of a load of `key` through `far` (`None`: near only, in the
    /// generation known); `won_stale` and `recache` as [`Plan::Far`] says.
    pub(super) fn plan<'c>(
        &'c self,
        far: Option<FarCall<'c, Cl>>,
        key: &K,
        won_stale: Option<Cas>,
        recache: Option<Duration>,
    ) -> Plan<'c, V, Cl> {
        let generation = self.generation_of(far.as_ref());
        match far.and_then(|far| Some((self.key_of(&far, key)?, far))) {
            Some((fkey, far)) => Plan::Far {
                far,
                fkey,
                won_stale,
                recache,
            },
            None => Plan::NearOnly(generation),
        }
    }

    /// The near tier's loader of a [`Plan::NearOnly`] load: `load`'s value,
    /// near for `near_ttl`, of the namespace's `generation`. An `insert` or
    /// `remove` of the key while it runs supersedes the load in the near
    /// tier: its value goes to its callers only.
    pub(super) async fn load_near<E>(
        &self,
        generation: u64,
        load: impl Future<Output = Result<V, E>>,
    ) -> Result<(Entry<V>, Option<Duration>), E> {
        bump(&self.counters.loader_calls);
        let value = load.await?;
        let entry = self.entry(value, 0, self.near_ttl, generation);
        Ok((entry, self.near_ttl))
    }

    /// The near tier's loader of a [`Plan::Far`] load (see [`Load`]): run
    /// once per key in this process at a time, told by the near tier
    /// whether its value is shared. An `insert` or `remove` of this key by
    /// this cache while the load runs writes the near tier after the far
    /// one, which marks the load superseded: its value (maybe read before
    /// that far write) goes to its callers and is not kept near.
    ///
    /// The same for the namespace's generation: a newer one taken while the
    /// load runs clears the near tier, which supersedes it. One taken after
    /// the plan was made but before this load was registered (so the clear
    /// did not see it) is the one this load uses: `key`'s far key is made
    /// again in it, so no caller that joins the load after the clear is
    /// given a value of the older generation.
    pub(super) async fn load_far<M: Mode<Client = Cl>, E>(
        &self,
        key: &K,
        plan: &Plan<'_, V, Cl>,
        sharing: Sharing,
        load: impl Future<Output = Result<V, E>>,
    ) -> Result<(Entry<V>, Option<Duration>), E> {
        let (far, planned, won_stale, recache) = match plan {
            Plan::Far {
                far,
                fkey,
                won_stale,
                recache,
            } => (far, fkey, *won_stale, *recache),
            Plan::NearOnly(generation) => return self.load_near(*generation, load).await,
            // Not given one (its caller returns the value), but a load all
            // the same if it were.
            Plan::Done(_) => return self.load_near(self.generations.current(), load).await,
        };
        // Registered with the near tier now: a generation taken since the
        // plan, and before that, is seen here (the clear that followed it
        // locked the shard before this load's registration did).
        let generation = self.generations.current();
        let renamed;
        let (ctx, fkey, won_stale) = if generation == far.generation {
            (self.ctx(far), planned.as_str(), won_stale)
        } else {
            let Some(fkey) = self.key_at(far, generation, key) else {
                return self.load_near(generation, load).await;
            };
            renamed = fkey;
            // The stale token was the old key's: that item is never read
            // again.
            let ctx = Ctx {
                generation,
                ..self.ctx(far)
            };
            (ctx, renamed.as_str(), None)
        };
        let mut flow = match recache {
            Some(window) => Load::refresh(ctx, fkey, window),
            None if sharing == Sharing::Unshared => {
                // This caller's wait on a load of this process was refused
                // (loaders waiting on each other in a cycle): that load's
                // leader holds the memcached lease, so polling it would
                // only wait out `lease_wait`. Load here; store far only
                // with a recompute token this caller holds.
                let store = won_stale.map_or(Store::Skip, Store::Stale);
                Load::compute(ctx, fkey, store)
            }
            None => Load::new(ctx, fkey, won_stale),
        };
        let (entry, ttl) = drive::drive::<M, V, _, E>(far, &self.timer, &mut flow, load).await?;
        Ok((entry, Some(ttl)))
    }

    /// After the coalesced load of `plan`; `ran`: whether this caller's
    /// loader ran. If another caller of this process loaded, it saw the
    /// item stale and served it, so the recompute token this caller holds
    /// would go unused: it is handed back.
    pub(super) async fn after_load<M: Mode<Client = Cl>>(&self, plan: &Plan<'_, V, Cl>, ran: bool) {
        if let Plan::Far {
            far,
            fkey,
            won_stale: Some(cas),
            ..
        } = plan
            && !ran
        {
            self.give_back_token::<M>(far, fkey, *cas).await;
        }
    }
}

/// How a `try_get_with` that missed the near tier (or found its copy
/// changed) loads the value.
pub(super) enum Plan<'c, V, Cl> {
    /// It does not: the near copy is current.
    Done(V),
    /// In the near tier only, in the namespace's generation known (if
    /// any): no far tier, a key it cannot hold, or a generation not known
    /// yet.
    NearOnly(u64),
    /// Through the far tier, as `fkey` (in `far`'s generation);
    /// `won_stale`: the recompute token of a stale far item that a
    /// revalidation took; `recache`: a refresh-ahead of a live near copy,
    /// which asks for the recompute token of a far value with less than
    /// this left (see `refresh.rs`).
    Far {
        far: FarCall<'c, Cl>,
        fkey: String,
        won_stale: Option<Cas>,
        recache: Option<Duration>,
    },
}
