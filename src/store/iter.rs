//! [`Iter`]: clones of a cache's entries, one shard's copy at a time.

use std::fmt;

use super::Cache;

/// Iterator over clones of a cache's entries; see [`Cache::iter`].
pub struct Iter<'a, K, V, S> {
    pub(super) cache: &'a Cache<K, V, S>,
    pub(super) next_shard: usize,
    pub(super) buffer: std::vec::IntoIter<(K, V)>,
}

impl<K, V, S> Iterator for Iter<'_, K, V, S>
where
    K: Clone,
    V: Clone,
{
    type Item = (K, V);

    fn next(&mut self) -> Option<(K, V)> {
        loop {
            if let Some(entry) = self.buffer.next() {
                return Some(entry);
            }
            let shard = self.cache.inner.shards.get(self.next_shard)?;
            self.next_shard += 1;
            self.buffer = shard.snapshot(self.cache.inner.time.now()).into_iter();
        }
    }
}

impl<K, V, S> fmt::Debug for Iter<'_, K, V, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Iter")
            .field("next_shard", &self.next_shard)
            .finish_non_exhaustive()
    }
}
