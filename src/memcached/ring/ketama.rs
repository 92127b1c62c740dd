//! libmemcached's weighted ketama continuum (MD5 points on a 32-bit circle).

use md5::{Digest, Md5};

/// The memcached port libmemcached leaves out of ketama point labels.
const DEFAULT_PORT: &str = "11211";

/// Points per server in libmemcached's weighted ketama
/// (`MEMCACHED_POINTS_PER_SERVER_KETAMA`).
const POINTS_PER_SERVER: f32 = 160.0;

/// The points of every server, clockwise.
#[derive(Debug, Clone)]
pub(super) struct Continuum {
    /// Sorted by point, then by server index (libmemcached's tie order).
    points: Vec<(u32, u32)>,
    servers: usize,
}

impl Continuum {
    /// Builds libmemcached's weighted ketama continuum.
    ///
    /// Facts from libmemcached (`update_continuum` in `libmemcached/hosts.cc`):
    /// a server of weight `w` out of a total `W` over `n` servers gets
    /// `floor(w / W * 160 / 4 * n + 1e-10) * 4` points, computed in `float`;
    /// the MD5 digest of label `host-i` (or `host:port-i`), `i` from 0, gives four
    /// points, the little-endian `u32`s of digest bytes 0..4, 4..8, 8..12, 12..16;
    /// points are sorted by value, then by server index.
    pub(super) fn new(labels: &[String], weights: &[u32]) -> Continuum {
        let total: u64 = weights.iter().map(|&w| u64::from(w)).sum();
        let servers = labels.len() as f32;
        let mut points = Vec::new();
        for (index, (label, &weight)) in labels.iter().zip(weights).enumerate() {
            let Ok(index) = u32::try_from(index) else {
                break;
            };
            // Single-precision on purpose: libmemcached rounds in `float`, and the
            // floor sits right at integer boundaries for equal weights.
            let pct = weight as f32 / total as f32;
            let hashes = (pct * POINTS_PER_SERVER / 4.0 * servers + 1e-10_f32).floor() as u32;
            let host = ketama_host(label);
            points.reserve(hashes as usize * 4);
            for i in 0..hashes {
                let digest = Md5::digest(format!("{host}-{i}").as_bytes());
                for word in digest.chunks_exact(4) {
                    let point = u32::from_le_bytes([word[0], word[1], word[2], word[3]]);
                    points.push((point, index));
                }
            }
        }
        points.sort_unstable();
        Continuum {
            points,
            servers: labels.len(),
        }
    }

    /// The first live server clockwise from the key's point.
    pub(super) fn server_for_live(
        &self,
        key: &[u8],
        is_live: impl Fn(usize) -> bool,
    ) -> Option<usize> {
        let hash = ketama_hash(key);
        let start = self.points.partition_point(|&(point, _)| point < hash);
        // Clockwise from the key: the points at or after its hash,
        // then, wrapping around, the ones before it.
        let (wrapped, ahead) = self.points.split_at(start);
        ahead
            .iter()
            .chain(wrapped)
            .map(|&(_, server)| server as usize)
            .find(|&server| is_live(server))
            // A server whose weight earned it no point still takes
            // keys once it is the only one left.
            .or_else(|| (0..self.servers).find(|&server| is_live(server)))
    }
}

/// The host part of a ketama point label: libmemcached writes `host-i` for
/// the default port and `host:port-i` otherwise; a unix socket has port 0.
fn ketama_host(label: &str) -> String {
    if label.starts_with('/') {
        return format!("{label}:0");
    }
    match label.rsplit_once(':') {
        Some((host, DEFAULT_PORT)) => host.to_owned(),
        Some((_, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => {
            label.to_owned()
        }
        // No port given: memcached's default.
        _ => label.to_owned(),
    }
}

/// libmemcached's MD5 key hash: the first four digest bytes, little-endian.
fn ketama_hash(key: &[u8]) -> u32 {
    let digest = Md5::digest(key);
    u32::from_le_bytes([digest[0], digest[1], digest[2], digest[3]])
}

#[cfg(test)]
mod tests {
    use super::super::tests::{header_servers, keys, rows, unhex};
    use super::super::{Distribution, Placement, Ring};
    use super::*;

    const KETAMA: &str = include_str!("../../../tests/vectors/ketama.tsv");

    #[test]
    fn ketama_matches_libmemcached_vectors() {
        let servers = header_servers(KETAMA, "server");
        assert_eq!(servers.len(), 8);
        let ring = Ring::new(Distribution::Ketama, servers.iter().copied());
        let cases = rows(KETAMA);
        assert_eq!(cases.len(), 99);
        for case in cases {
            let key = unhex(case[0]);
            assert_eq!(
                ketama_hash(&key),
                case[1].parse::<u32>().unwrap(),
                "hash of {}",
                case[0]
            );
            let server = ring.server_for(&key).unwrap();
            let host = ring.label(server).unwrap().strip_suffix(":11211").unwrap();
            assert_eq!(host, case[2], "server of {}", case[0]);
        }
    }

    #[test]
    fn ketama_point_counts_follow_weights() {
        let servers = header_servers(KETAMA, "server");
        let ring = Ring::new(Distribution::Ketama, servers.iter().copied());
        let Placement::Ketama(continuum) = &ring.placement else {
            unreachable!()
        };
        let mut per_server = [0usize; 8];
        for &(_, server) in &continuum.points {
            per_server[server as usize] += 1;
        }
        // total weight 4300: 600/4300*40*8 = 44.65 -> 44 hashes -> 176 points, ...
        assert_eq!(per_server[0], 176);
        assert_eq!(per_server[7], 28);
        assert!(continuum.points.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn ketama_labels() {
        assert_eq!(ketama_host("10.0.1.1:11211"), "10.0.1.1");
        assert_eq!(ketama_host("cache:11212"), "cache:11212");
        assert_eq!(ketama_host("cache"), "cache");
        assert_eq!(ketama_host("/run/memcached.sock"), "/run/memcached.sock:0");
        // IPv6 hosts come unbracketed, as libmemcached stores host names.
        assert_eq!(ketama_host("::1:11211"), "::1");
        assert_eq!(ketama_host("fe80::1:11212"), "fe80::1:11212");
    }

    #[test]
    fn pointless_server_still_serves_when_alone() {
        // 1 / 10001 of 320 points rounds down to none.
        let ring = Ring::new(Distribution::Ketama, [("tiny:1", 1), ("huge:1", 10_000)]);
        assert_eq!(ring.server_for(b"k"), Some(1));
        assert_eq!(ring.server_for_live(b"k", |s| s == 0), Some(0));
        assert_eq!(ring.server_for_live(b"k", |_| false), None);
    }

    #[test]
    fn ketama_spreads_by_weight() {
        let ring = Ring::new(Distribution::Ketama, [("a:1", 1), ("b:1", 3)]);
        let mut counts = [0usize; 2];
        for key in keys() {
            counts[ring.server_for(&key).unwrap()] += 1;
        }
        // 3:1 weights; allow generous slack for a 2000-key sample.
        assert!(counts[1] > 2 * counts[0], "{counts:?}");
    }
}
