//! python-memcached's placement: a CRC-32 hash modulo a weighted bucket list.
//!
//! Facts from python-memcached (`memcache.py`: `cmemcache_hash`,
//! `Client._init_buckets`, `Client._get_server`): a key's hash is bits 16
//! to 30 of the CRC-32 of its bytes (`((crc32(key) & 0xffffffff) >> 16) &
//! 0x7fff`; up to 1.59 a hash of 0 is taken as 1, from 1.60 on it stays 0);
//! the bucket list holds each server `weight` times, in the order given;
//! the key goes to bucket `hash % len(buckets)`. When that server is dead,
//! the hash becomes the hash of the ASCII text `str(hash) + str(i)`, for
//! `i` from 0, up to ten tries in all (`_SERVER_RETRIES`), after which
//! python-memcached gives up on the key.

use std::io::Write;

/// How many buckets python-memcached tries before it gives up on a key.
const SERVER_RETRIES: u32 = 10;

/// The bucket list, kept as each server's end in it (a server of weight
/// `w` fills `w` buckets), so a weight costs no memory.
#[derive(Debug, Clone)]
pub(super) struct Buckets {
    /// The running sum of the weights, one per server.
    ends: Vec<u64>,
    /// python-memcached 1.59 and earlier: a hash of 0 counts as 1.
    zero_as_one: bool,
}

impl Buckets {
    /// The buckets of servers of `weights`, hashing as python-memcached
    /// 1.59 and earlier do when `zero_as_one`, as 1.60 and later otherwise.
    pub(super) fn new(weights: &[u32], zero_as_one: bool) -> Buckets {
        let ends = weights
            .iter()
            .scan(0u64, |end, &weight| {
                *end += u64::from(weight);
                Some(*end)
            })
            .collect();
        Buckets { ends, zero_as_one }
    }

    /// python-memcached's server for `key` among the live ones: the key's
    /// bucket, rehashed past dead servers as `_get_server` does. Where
    /// python-memcached gives up (ten dead picks in a row), the first live
    /// server in list order, so the request still has a server (no Python
    /// client reads such a key: it gets no server there). `None` when no
    /// server is live.
    pub(super) fn server_for_live(
        &self,
        key: &[u8],
        is_live: impl Fn(usize) -> bool,
    ) -> Option<usize> {
        let mut hash = self.hash(key);
        for i in 0..SERVER_RETRIES {
            let server = self.server_of(hash)?;
            if is_live(server) {
                return Some(server);
            }
            hash = self.rehash(hash, i);
        }
        (0..self.ends.len()).find(|&server| is_live(server))
    }

    /// The server of bucket `hash % len(buckets)`.
    fn server_of(&self, hash: u32) -> Option<usize> {
        let total = *self.ends.last()?;
        if total == 0 {
            return None;
        }
        let bucket = u64::from(hash) % total;
        Some(self.ends.partition_point(|&end| end <= bucket))
    }

    /// `cmemcache_hash`: bits 16 to 30 of the CRC-32.
    fn hash(&self, data: &[u8]) -> u32 {
        let hash = (crc32fast::hash(data) >> 16) & 0x7fff;
        if hash == 0 && self.zero_as_one {
            1
        } else {
            hash
        }
    }

    /// The hash of try `i + 1`: of the text `str(hash) + str(i)`.
    fn rehash(&self, hash: u32, i: u32) -> u32 {
        // Two decimal u32s take at most 20 bytes.
        let mut text = [0u8; 20];
        let mut rest = &mut text[..];
        // Cannot fail: the buffer holds any two u32s.
        let _ = write!(rest, "{hash}{i}");
        let len = 20 - rest.len();
        self.hash(&text[..len])
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{header_servers, keys, rows, unhex};
    use super::super::{Distribution, Placement, Ring};
    use super::*;

    const VECTORS: &str = include_str!("../../../tests/vectors/python_memcached.tsv");

    /// The servers that are dead in the vectors' column `set` (0: none).
    fn dead_set(set: usize) -> Vec<&'static str> {
        if set == 0 {
            return Vec::new();
        }
        VECTORS
            .lines()
            .filter_map(|line| line.strip_prefix("# dead\t"))
            .find_map(|line| {
                let (n, servers) = line.split_once('\t')?;
                (n.parse::<usize>().ok()? == set).then(|| servers.split(',').collect())
            })
            .expect("dead set listed")
    }

    #[test]
    fn matches_python_memcached_vectors() {
        let servers = header_servers(VECTORS, "server");
        assert_eq!(servers.len(), 4);
        let cases = rows(VECTORS);
        assert_eq!(cases.len(), 253);
        for (distribution, hash_column, first_column) in [
            (Distribution::PythonMemcached, 1, 3),
            (Distribution::PythonMemcachedLegacy, 2, 6),
        ] {
            let ring = Ring::new(distribution, servers.iter().copied());
            let Placement::PythonMemcached(buckets) = &ring.placement else {
                unreachable!()
            };
            for case in &cases {
                let key = unhex(case[0]);
                assert_eq!(
                    buckets.hash(&key),
                    case[hash_column].parse::<u32>().unwrap(),
                    "{distribution:?}: hash of {}",
                    case[0]
                );
                for set in 0..3 {
                    let dead = dead_set(set);
                    let is_live = |s: usize| !dead.contains(&servers[s].0);
                    let server = ring.server_for_live(&key, is_live).unwrap();
                    let label = ring.label(server).unwrap();
                    let want = case[first_column + set];
                    if want == "-" {
                        // python-memcached gave up; this client takes the
                        // first live server.
                        assert_eq!(Some(server), (0..4).find(|&s| is_live(s)));
                    } else {
                        assert_eq!(
                            label, want,
                            "{distribution:?}: server of {} with {dead:?} dead",
                            case[0]
                        );
                    }
                }
            }
        }
        // The vectors hold a key whose hash is 0, where the versions part,
        // and keys python-memcached gives up on.
        assert!(cases.iter().any(|case| case[1] == "0" && case[2] == "1"));
        assert!(cases.iter().any(|case| case[5] == "-"));
    }

    #[test]
    fn the_rehash_hashes_the_decimal_text() {
        let buckets = Buckets::new(&[1], false);
        for (hash, i) in [(0, 0), (7, 3), (32_767, 9), (u32::MAX, u32::MAX)] {
            assert_eq!(
                buckets.rehash(hash, i),
                buckets.hash(format!("{hash}{i}").as_bytes())
            );
        }
        // crc32(b"") is 0: the versions part on it.
        assert_eq!(Buckets::new(&[1], false).hash(b""), 0);
        assert_eq!(Buckets::new(&[1], true).hash(b""), 1);
    }

    #[test]
    fn buckets_follow_weights_in_list_order() {
        let buckets = Buckets::new(&[2, 1, 3], false);
        let servers: Vec<usize> = (0..12).map(|h| buckets.server_of(h).unwrap()).collect();
        assert_eq!(servers, [0, 0, 1, 2, 2, 2, 0, 0, 1, 2, 2, 2]);
        assert_eq!(Buckets::new(&[], false).server_of(5), None);
    }

    #[test]
    fn a_live_servers_keys_stay_and_a_dead_ones_spread() {
        let ring = Ring::new(
            Distribution::PythonMemcached,
            [("a:1", 1), ("b:1", 2), ("c:1", 1)],
        );
        let mut counts = [0usize; 3];
        for key in keys() {
            let home = ring.server_for(&key).unwrap();
            counts[home] += 1;
            let moved = ring.server_for_live(&key, |s| s != 1).unwrap();
            assert_ne!(moved, 1);
            if home != 1 {
                assert_eq!(moved, home);
            }
        }
        // Weights 1:2:1 over 2000 keys.
        assert!(counts[1] > counts[0] + counts[2] / 2, "{counts:?}");
        assert_eq!(ring.server_for_live(b"k", |_| false), None);
        for key in keys().take(50) {
            assert_eq!(ring.server_for_live(&key, |s| s == 2), Some(2));
        }
    }
}
