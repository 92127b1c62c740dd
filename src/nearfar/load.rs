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
use super::call::Call;
use super::drive::{self, Mode};
use super::flow::load::{Load, Store};
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
    /// `try_get_with` after its near lookup: `entry` is the near copy (due
    /// for revalidation), or `None` after a miss (counted by that lookup:
    /// the load does not look again). Says how the value is to be loaded,
    /// or gives it when a revalidation found the copy current.
    pub(super) async fn plan_load<'c, M: Mode<Client = Cl>>(
        &'c self,
        key: &K,
        entry: Option<Entry<V>>,
    ) -> Plan<'c, V, Cl> {
        let mut won_stale = None;
        let far = self.call();
        if let Some(entry) = entry {
            // Due only with a far tier.
            let Some(far) = &far else {
                return Plan::Done(entry.value);
            };
            match self.revalidate::<M>(far, key, entry).await {
                Check::Keep(v) => return Plan::Done(v),
                Check::Changed => {}
                Check::WonStale(_, cas) => won_stale = Some(cas),
            }
            self.near.drop_copy(key);
        }
        match far.and_then(|far| Some((self.key_of(&far, key)?, far))) {
            Some((fkey, far)) => Plan::Far {
                far,
                fkey,
                won_stale,
            },
            None => Plan::NearOnly,
        }
    }

    /// The near tier's loader of a [`Plan::NearOnly`] load: `load`'s value,
    /// near for `near_ttl`. An `insert` or `remove` of the key while it
    /// runs supersedes the load in the near tier: its value goes to its
    /// callers only.
    pub(super) async fn load_near<E>(
        &self,
        load: impl Future<Output = Result<V, E>>,
    ) -> Result<(Entry<V>, Option<Duration>), E> {
        bump(&self.counters.loader_calls);
        let value = load.await?;
        Ok((self.entry(value, 0, self.near_ttl), self.near_ttl))
    }

    /// The near tier's loader of a [`Plan::Far`] load (see [`Load`]): run
    /// once per key in this process at a time, told by the near tier
    /// whether its value is shared. An `insert` or `remove` of this key by
    /// this cache while the load runs writes the near tier after the far
    /// one, which marks the load superseded: its value (maybe read before
    /// that far write) goes to its callers and is not kept near.
    pub(super) async fn load_far<M: Mode<Client = Cl>, E>(
        &self,
        plan: &Plan<'_, V, Cl>,
        sharing: Sharing,
        load: impl Future<Output = Result<V, E>>,
    ) -> Result<(Entry<V>, Option<Duration>), E> {
        let Plan::Far {
            far,
            fkey,
            won_stale,
        } = plan
        else {
            return self.load_near(load).await;
        };
        let mut flow = if sharing == Sharing::Unshared {
            // This caller's wait on a load of this process was refused
            // (loaders waiting on each other in a cycle): that load's
            // leader holds the memcached lease, so polling it would only
            // wait out `lease_wait`. Load here; store far only with a
            // recompute token this caller holds.
            let store = won_stale.map_or(Store::Skip, Store::Stale);
            Load::compute(self.ctx(far), fkey, store)
        } else {
            Load::new(self.ctx(far), fkey, *won_stale)
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
    /// It does not: a revalidation found the near copy current.
    Done(V),
    /// In the near tier only: no far tier, or a key it cannot hold.
    NearOnly,
    /// Through the far tier, as `fkey`; `won_stale`: the recompute token of
    /// a stale far item that a revalidation took.
    Far {
        far: Call<'c, Cl>,
        fkey: String,
        won_stale: Option<Cas>,
    },
}
