//! The store's API for a snapshot: what `crate::snapshot` (feature
//! `snapshot`: the file, the codec) needs of a cache, compiled in every
//! build with everything passed as arguments, as the `LAYERED` API is (see
//! `mod.rs`): the entries copied out per shard, hottest first, with what
//! is left of their TTL; an entry restored only where it fits without
//! evicting; and the wall-clock time on the cache's clock. Without the
//! feature nothing calls them: hence the `allow(dead_code)` on each.

use std::hash::{BuildHasher, Hash};
use std::time::{Duration, SystemTime};

use super::shard::Restored;
use super::ttl::TimeSource;
use super::{Cache, local};

impl<K, V, S> Cache<K, V, S>
where
    K: Hash + Eq,
    V: Clone,
    S: BuildHasher,
{
    /// For each shard, `copy` of each of its live, unexpired entries, hottest
    /// first (see `Shard::export` for the order): its key, its value, what
    /// is left of its TTL (`None`: it never expires) and its use count
    /// (0 to 3: its uses since it last passed a list tail). Each shard is
    /// locked only while its entries are picked; `copy` runs after, with
    /// the thread pinned (as [`iter`](Cache::iter)'s clones do), so readers
    /// never wait and writers wait only for the pick.
    #[allow(
        dead_code,
        reason = "the store's API for a snapshot, unused without the feature"
    )]
    pub(crate) fn export<T>(
        &self,
        mut copy: impl FnMut(&K, &V, Option<Duration>, u8) -> T,
    ) -> Vec<Vec<T>> {
        self.inner
            .shards
            .iter()
            .map(|shard| {
                let now = self.inner.time.now();
                shard.export(now, &mut |key, value, expires, uses| {
                    let left = (expires != 0).then(|| Duration::from_nanos(expires - now));
                    copy(key, value, left, uses)
                })
            })
            .collect()
    }

    /// Stores `key -> value` for `ttl` (`None`: the cache's default TTL,
    /// as `insert` would), with use count `uses`, if the key is absent and
    /// its shard has room for it without evicting (see `Shard::restore`). Supersedes no load in
    /// progress: a snapshot's value is no newer than what a load computes.
    #[allow(
        dead_code,
        reason = "the store's API for a snapshot, unused without the feature"
    )]
    pub(crate) fn restore(&self, key: K, value: V, ttl: Option<Duration>, uses: u8) -> Restored {
        let hash = self.inner.hasher.hash_one(&key);
        let weight = self.inner.weigher.as_ref().map_or(1, |w| w(&key, &value));
        let expires = match ttl.or(self.inner.default_ttl) {
            Some(ttl) => TimeSource::expiry(self.inner.time.now(), Some(ttl)),
            None => 0,
        };
        let shard = self.shard(hash);
        let guard = local::pin();
        self.write(shard, &guard, |st, ctx| {
            shard.restore(st, ctx, hash, key, value, expires, weight, uses, &guard)
        })
    }

    /// The wall-clock time on the cache's clock (see `Clock::wall_time`):
    /// what a snapshot records, to count the time until it is loaded.
    #[allow(
        dead_code,
        reason = "the store's API for a snapshot, unused without the feature"
    )]
    pub(crate) fn wall_time(&self) -> SystemTime {
        self.inner.time.wall()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::{Cache, MockClock};
    use super::Restored;

    #[test]
    fn a_restore_evicts_nothing_and_keeps_present_keys() {
        let cache = Cache::builder().max_entries(4).shards(1).build();
        cache.insert(1, "live");
        assert_eq!(cache.restore(1, "snapshot", None, 0), Restored::Present);
        for k in 2..=4 {
            assert_eq!(cache.restore(k, "snapshot", None, 0), Restored::Stored);
        }
        assert_eq!(cache.restore(5, "snapshot", None, 0), Restored::NoRoom);
        assert_eq!(cache.len(), 4);
        assert_eq!(cache.get(&1), Some("live"));
        assert_eq!(cache.stats().evicted_capacity, 0);
        cache.check_invariants().unwrap();
    }

    #[test]
    fn a_restore_stays_within_the_weight_bound() {
        let cache = Cache::builder()
            .max_weight(10)
            .weigher(|_: &u32, v: &String| v.len() as u64)
            .shards(1)
            .build();
        assert_eq!(cache.restore(1, "x".repeat(6), None, 0), Restored::Stored);
        assert_eq!(cache.restore(2, "x".repeat(6), None, 0), Restored::NoRoom);
        // A lighter one further down the snapshot still fits.
        assert_eq!(cache.restore(3, "x".repeat(4), None, 0), Restored::Stored);
        assert_eq!(cache.weight(), 10);
    }

    #[test]
    fn export_is_hottest_first_with_the_ttl_left() {
        let clock = MockClock::new();
        let cache = Cache::builder()
            .max_entries(100)
            .shards(1)
            .clock(clock.clone())
            .build();
        for k in 0..10u32 {
            cache.insert_with_ttl(k, k, Duration::from_secs(100));
        }
        cache.insert(10, 10);
        // Used entries come first, the most used first.
        for _ in 0..3 {
            cache.get(&7);
        }
        cache.get(&3);
        clock.advance(Duration::from_secs(40));
        let shards = cache.export(|k, v, ttl, _| (*k, *v, ttl));
        let entries = &shards[0];
        assert_eq!(entries.len(), 11);
        assert_eq!(entries[0], (7, 7, Some(Duration::from_secs(60))));
        assert_eq!(entries[1].0, 3);
        // Then WARM from its head: the latest inserted first.
        assert_eq!(entries[2], (10, 10, None));
        assert_eq!(entries[3].0, 9);
    }
}
