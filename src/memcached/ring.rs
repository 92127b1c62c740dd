//! Key distribution: which server of a pool holds a key.
//!
//! Two placements are offered, each matching an existing client byte for byte
//! so that Rust and non-Rust clients sharing one pool agree on every key:
//!
//! * [`Distribution::Ketama`] — libmemcached's *weighted* ketama continuum
//!   (`MEMCACHED_BEHAVIOR_KETAMA_WEIGHTED`), which is also what libketama and
//!   spymemcached's `KETAMA_HASH` compute.
//! * [`Distribution::Rendezvous`] — pymemcache's `HashClient` default,
//!   highest-random-weight hashing with murmur3.
//!
//! The lookups are pure functions of the server list and the key; they never
//! allocate.
//!
//! Two inputs must be given as those clients give them for the placements
//! to agree:
//!
//! * The key is the caller's key *without* the client's key prefix: both
//!   pymemcache's `HashClient` (which passes its `key_prefix` down to the
//!   per-server clients and hashes the bare key) and libmemcached (unless
//!   `MEMCACHED_BEHAVIOR_HASH_WITH_NAMESPACE` is set) place a key by its
//!   unprefixed form. The client strips its prefix before looking up.
//! * A server's label is `host:port`, with an IPv6 host written without
//!   brackets (`::1:11211`): pymemcache names its nodes `"%s:%s" % (host,
//!   port)` after stripping the brackets, and libmemcached's ketama point
//!   labels use the bare host name (`::1-0`, or `::1:11212-0` off the
//!   default port). A unix socket is labelled by its path.

use std::borrow::Cow;

use md5::{Digest, Md5};

/// How keys are spread over the servers of a pool.
///
/// The default is [`Distribution::Ketama`]: it honours server weights and is
/// the placement most memcached clients (libmemcached, pylibmc, spymemcached,
/// php-memcached with `libketama_compatible`) agree on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Distribution {
    /// libmemcached's weighted ketama consistent hashing (MD5 continuum).
    ///
    /// Each server gets a number of points on a 32-bit circle proportional to
    /// its weight; a key belongs to the first point at or after the MD5 hash
    /// of the key. Adding or removing a server moves only the keys next to
    /// its points.
    ///
    /// This is the placement of libmemcached with
    /// `MEMCACHED_BEHAVIOR_KETAMA_WEIGHTED` (pylibmc: `"ketama_weighted": True`),
    /// which libmemcached also switches to on its own as soon as one server
    /// has a weight above 1. Servers on port 11211 are labelled by host alone
    /// (an IPv6 host without brackets, as libmemcached stores it), and keys
    /// are hashed without the key prefix, as libmemcached hashes them unless
    /// `MEMCACHED_BEHAVIOR_HASH_WITH_NAMESPACE` is set.
    #[default]
    Ketama,
    /// pymemcache's rendezvous (highest random weight) hashing.
    ///
    /// Every server scores a key with `murmur3_32("{server}-{key}")`; the
    /// highest score wins. Server weights are ignored, as in pymemcache.
    /// Server labels are written as pymemcache names its nodes (`host:port`,
    /// an IPv6 host without brackets), and keys hash without any key prefix,
    /// as pymemcache hashes them. Text hashes as pymemcache's murmur3 reads a
    /// Python `str`: one byte per character, its code point's low byte (for
    /// ASCII, its bytes; for other text, not the UTF-8 sent on the wire).
    /// Keys that are not UTF-8 hash as their bytes.
    Rendezvous,
}

/// The bytes pymemcache's murmur3 reads for `text` as a Python `str`: the low
/// byte of each character's code point, one per character (it masks each
/// `ord(c)` to 8 bits, and the length it mixes in counts characters). The
/// same bytes for ASCII; input that is not UTF-8 is taken as it is.
fn as_python_str(text: &[u8]) -> Cow<'_, [u8]> {
    if text.is_ascii() {
        return Cow::Borrowed(text);
    }
    match std::str::from_utf8(text) {
        // Truncation intended: the low byte is what pymemcache hashes.
        Ok(text) => Cow::Owned(text.chars().map(|c| u32::from(c) as u8).collect()),
        Err(_) => Cow::Borrowed(text),
    }
}

/// The memcached port libmemcached leaves out of ketama point labels.
const DEFAULT_PORT: &str = "11211";

/// Points per server in libmemcached's weighted ketama
/// (`MEMCACHED_POINTS_PER_SERVER_KETAMA`).
const POINTS_PER_SERVER: f32 = 160.0;

/// A pool of servers laid out for one [`Distribution`].
///
/// Servers are identified by their index in the list the ring was built from.
#[derive(Debug, Clone)]
pub(crate) struct Ring {
    distribution: Distribution,
    labels: Vec<String>,
    placement: Placement,
}

#[derive(Debug, Clone)]
enum Placement {
    /// Sorted by point, then by server index (libmemcached's tie order).
    Ketama(Vec<(u32, u32)>),
    /// One murmur3 state per server, already fed `"{label}-"`.
    Rendezvous(Vec<Murmur3>),
}

impl Ring {
    /// Builds a ring over `servers`, each given as `(label, weight)`.
    ///
    /// A label is `host:port` (a host without a port means port 11211; an
    /// IPv6 host is written without brackets, `::1:11211`) or a unix socket
    /// path. A weight of 0 counts as 1, as in libmemcached.
    /// Rendezvous ignores weights.
    pub(crate) fn new<S: AsRef<str>>(
        distribution: Distribution,
        servers: impl IntoIterator<Item = (S, u32)>,
    ) -> Ring {
        let (labels, weights): (Vec<String>, Vec<u32>) = servers
            .into_iter()
            .map(|(label, weight)| (label.as_ref().to_owned(), weight.max(1)))
            .unzip();
        let placement = match distribution {
            Distribution::Ketama => Placement::Ketama(ketama_continuum(&labels, &weights)),
            Distribution::Rendezvous => Placement::Rendezvous(
                labels
                    .iter()
                    .map(|label| {
                        let mut state = Murmur3::new(0);
                        state.update(&as_python_str(label.as_bytes()));
                        state.update(b"-");
                        state
                    })
                    .collect(),
            ),
        };
        Ring {
            distribution,
            labels,
            placement,
        }
    }

    /// Builds a ring over `labels`, every server with weight 1.
    #[cfg_attr(
        not(test),
        expect(
            dead_code,
            reason = "used by the ring tests; the client routes with server_for_live"
        )
    )]
    pub(crate) fn unweighted<S: AsRef<str>>(
        distribution: Distribution,
        labels: impl IntoIterator<Item = S>,
    ) -> Ring {
        Ring::new(distribution, labels.into_iter().map(|label| (label, 1)))
    }

    /// The placement this ring uses.
    pub(crate) fn distribution(&self) -> Distribution {
        self.distribution
    }

    /// Number of servers.
    pub(crate) fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the ring has no server.
    #[cfg_attr(
        not(test),
        expect(
            dead_code,
            reason = "used by the ring tests; the client routes with server_for_live"
        )
    )]
    pub(crate) fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The label server `index` was given.
    #[cfg_attr(
        not(test),
        expect(
            dead_code,
            reason = "used by the ring tests; the client routes with server_for_live"
        )
    )]
    pub(crate) fn label(&self, index: usize) -> Option<&str> {
        self.labels.get(index).map(String::as_str)
    }

    /// The index of the server that holds `key`, or `None` for an empty ring.
    #[cfg_attr(
        not(test),
        expect(
            dead_code,
            reason = "used by the ring tests; the client routes with server_for_live"
        )
    )]
    pub(crate) fn server_for(&self, key: &[u8]) -> Option<usize> {
        self.server_for_live(key, |_| true)
    }

    /// Like [`Ring::server_for`], skipping the servers `is_live` rejects.
    ///
    /// Ketama walks clockwise from the key's point past the points of dead
    /// servers to the next live one; rendezvous takes the best-scoring live
    /// server. Either way a key whose server is live stays where it is, and
    /// the keys of a dead server spread over the others. `None` when no
    /// server is live. (Under ketama a server whose tiny weight earned it no
    /// point takes every key once it is the only live one.)
    ///
    /// (libmemcached's auto-eject instead rebuilds the continuum without the
    /// dead servers, which also shifts a few keys between live servers; the
    /// walk keeps them still.)
    pub(crate) fn server_for_live(
        &self,
        key: &[u8],
        is_live: impl Fn(usize) -> bool,
    ) -> Option<usize> {
        match &self.placement {
            Placement::Ketama(points) => {
                let hash = ketama_hash(key);
                let start = points.partition_point(|&(point, _)| point < hash);
                // Clockwise from the key: the points at or after its hash,
                // then, wrapping around, the ones before it.
                let (wrapped, ahead) = points.split_at(start);
                ahead
                    .iter()
                    .chain(wrapped)
                    .map(|&(_, server)| server as usize)
                    .find(|&server| is_live(server))
                    // A server whose weight earned it no point still takes
                    // keys once it is the only one left.
                    .or_else(|| (0..self.labels.len()).find(|&server| is_live(server)))
            }
            Placement::Rendezvous(states) => {
                let key = as_python_str(key);
                let mut best: Option<(u32, usize)> = None;
                for (index, prefix) in states.iter().enumerate() {
                    if !is_live(index) {
                        continue;
                    }
                    let mut state = *prefix;
                    state.update(&key);
                    let score = state.finish();
                    // Ties go to the larger label, as pymemcache's `max(str(node), ...)`.
                    let wins = match best {
                        None => true,
                        Some((best_score, best_index)) => {
                            score > best_score
                                || (score == best_score
                                    && self.labels[index] > self.labels[best_index])
                        }
                    };
                    if wins {
                        best = Some((score, index));
                    }
                }
                best.map(|(_, index)| index)
            }
        }
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

/// Builds libmemcached's weighted ketama continuum.
///
/// Facts from libmemcached (`update_continuum` in `libmemcached/hosts.cc`):
/// a server of weight `w` out of a total `W` over `n` servers gets
/// `floor(w / W * 160 / 4 * n + 1e-10) * 4` points, computed in `float`;
/// the MD5 digest of label `host-i` (or `host:port-i`), `i` from 0, gives four
/// points, the little-endian `u32`s of digest bytes 0..4, 4..8, 8..12, 12..16;
/// points are sorted by value, then by server index.
fn ketama_continuum(labels: &[String], weights: &[u32]) -> Vec<(u32, u32)> {
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
    points
}

/// libmemcached's MD5 key hash: the first four digest bytes, little-endian.
pub(crate) fn ketama_hash(key: &[u8]) -> u32 {
    let digest = Md5::digest(key);
    u32::from_le_bytes([digest[0], digest[1], digest[2], digest[3]])
}

/// MurmurHash3 x86_32 of `data`.
#[allow(
    dead_code,
    reason = "the one-shot form is used by tests and kept for callers"
)]
pub(crate) fn murmur3_32(data: &[u8], seed: u32) -> u32 {
    let mut state = Murmur3::new(seed);
    state.update(data);
    state.finish()
}

/// Incremental MurmurHash3 x86_32: feeding `a` then `b` equals hashing `a ++ b`.
///
/// Algorithm as published by Austin Appleby (public domain, `MurmurHash3.cpp`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Murmur3 {
    h: u32,
    tail: [u8; 4],
    tail_len: usize,
    // The algorithm mixes in the length modulo 2^32.
    len: u32,
}

const C1: u32 = 0xcc9e_2d51;
const C2: u32 = 0x1b87_3593;

impl Murmur3 {
    /// A fresh state.
    pub(crate) fn new(seed: u32) -> Murmur3 {
        Murmur3 {
            h: seed,
            tail: [0; 4],
            tail_len: 0,
            len: 0,
        }
    }

    fn scramble(k: u32) -> u32 {
        k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2)
    }

    fn block(&mut self, block: [u8; 4]) {
        self.h ^= Murmur3::scramble(u32::from_le_bytes(block));
        self.h = self
            .h
            .rotate_left(13)
            .wrapping_mul(5)
            .wrapping_add(0xe654_6b64);
    }

    /// Feeds more bytes.
    pub(crate) fn update(&mut self, mut data: &[u8]) {
        self.len = self.len.wrapping_add(data.len() as u32);
        if self.tail_len > 0 {
            let take = (4 - self.tail_len).min(data.len());
            self.tail[self.tail_len..self.tail_len + take].copy_from_slice(&data[..take]);
            self.tail_len += take;
            data = &data[take..];
            if self.tail_len < 4 {
                return;
            }
            self.block(self.tail);
            self.tail_len = 0;
        }
        let mut blocks = data.chunks_exact(4);
        for block in &mut blocks {
            self.block([block[0], block[1], block[2], block[3]]);
        }
        let rest = blocks.remainder();
        self.tail[..rest.len()].copy_from_slice(rest);
        self.tail_len = rest.len();
    }

    /// The hash of everything fed so far.
    pub(crate) fn finish(&self) -> u32 {
        let mut h = self.h;
        if self.tail_len > 0 {
            let mut last = [0u8; 4];
            last[..self.tail_len].copy_from_slice(&self.tail[..self.tail_len]);
            h ^= Murmur3::scramble(u32::from_le_bytes(last));
        }
        h ^= self.len;
        h ^= h >> 16;
        h = h.wrapping_mul(0x85eb_ca6b);
        h ^= h >> 13;
        h = h.wrapping_mul(0xc2b2_ae35);
        h ^ (h >> 16)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Data lines of a vector file: tab-separated columns, `#` lines skipped.
    fn rows(text: &str) -> Vec<Vec<&str>> {
        text.lines()
            .filter(|line| !line.starts_with('#') && !line.is_empty())
            .map(|line| line.split('\t').collect())
            .collect()
    }

    /// `# server\thost:port\tweight` (or `# node\thost:port`) header lines.
    fn header_servers<'a>(text: &'a str, tag: &str) -> Vec<(&'a str, u32)> {
        text.lines()
            .filter_map(|line| line.strip_prefix("# "))
            .map(|line| line.split('\t').collect::<Vec<_>>())
            .filter(|cols| cols[0] == tag)
            .map(|cols| (cols[1], cols.get(2).map_or(1, |w| w.parse().unwrap())))
            .collect()
    }

    fn unhex(hex: &str) -> Vec<u8> {
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect()
    }

    const KETAMA: &str = include_str!("../../tests/vectors/ketama.tsv");
    const RENDEZVOUS: &str = include_str!("../../tests/vectors/rendezvous.tsv");

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
        let Placement::Ketama(points) = &ring.placement else {
            unreachable!()
        };
        let mut per_server = [0usize; 8];
        for &(_, server) in points {
            per_server[server as usize] += 1;
        }
        // total weight 4300: 600/4300*40*8 = 44.65 -> 44 hashes -> 176 points, ...
        assert_eq!(per_server[0], 176);
        assert_eq!(per_server[7], 28);
        assert!(points.windows(2).all(|w| w[0] <= w[1]));
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
    fn murmur3_known_values() {
        // Published MurmurHash3_x86_32 test values.
        let cases: &[(&[u8], u32, u32)] = &[
            (b"", 0, 0),
            (b"", 1, 0x514e_28b7),
            (b"", 0xffff_ffff, 0x81f1_6f39),
            (b"\0\0\0\0", 0, 0x2362_f9de),
            (b"\xff\xff\xff\xff", 0, 0x7629_3b50),
            (b"\x21\x43\x65\x87", 0, 0xf55b_516b),
            (b"\x21\x43\x65\x87", 0x5082_edee, 0x2362_f9de),
            (b"\x21\x43\x65", 0, 0x7e4a_8634),
            (b"\x21\x43", 0, 0xa0f7_b07a),
            (b"\x21", 0, 0x7266_1cf4),
            (b"\0\0\0", 0, 0x85f0_b427),
            (b"\0\0", 0, 0x30f4_c306),
            (b"\0", 0, 0x514e_28b7),
            (b"aaaa", 0x9747_b28c, 0x5a97_808a),
            (b"aaa", 0x9747_b28c, 0x283e_0130),
            (b"aa", 0x9747_b28c, 0x5d21_1726),
            (b"a", 0x9747_b28c, 0x7fa0_9ea6),
            (b"abcd", 0x9747_b28c, 0xf047_8627),
            (b"abc", 0x9747_b28c, 0xc84a_62dd),
            (b"ab", 0x9747_b28c, 0x7487_5592),
            (b"Hello, world!", 0x9747_b28c, 0x2488_4cba),
            (
                b"The quick brown fox jumps over the lazy dog",
                0x9747_b28c,
                0x2fa8_26cd,
            ),
        ];
        for &(data, seed, want) in cases {
            assert_eq!(murmur3_32(data, seed), want, "{data:?} seed {seed:#x}");
        }
    }

    #[test]
    fn murmur3_incremental_equals_one_shot() {
        let data: Vec<u8> = (0u8..=40).map(|b| b.wrapping_mul(37)).collect();
        for len in 0..data.len() {
            let whole = murmur3_32(&data[..len], 7);
            for a in 0..=len {
                for b in a..=len {
                    let mut state = Murmur3::new(7);
                    state.update(&data[..a]);
                    state.update(&data[a..b]);
                    state.update(&data[b..len]);
                    assert_eq!(state.finish(), whole, "len {len} split {a}/{b}");
                }
            }
        }
    }

    #[test]
    fn rendezvous_matches_pymemcache_vectors() {
        let nodes = header_servers(RENDEZVOUS, "node");
        assert_eq!(nodes.len(), 5);
        let ring = Ring::new(Distribution::Rendezvous, nodes.iter().copied());
        let cases = rows(RENDEZVOUS);
        assert_eq!(cases.len(), 204);
        for case in cases {
            let key = case[0].as_bytes();
            let mut concatenated = format!("{}-", nodes[0].0).into_bytes();
            concatenated.extend_from_slice(key);
            assert_eq!(
                murmur3_32(&concatenated, 0),
                case[1].parse::<u32>().unwrap(),
                "murmur of {}",
                case[0]
            );
            let server = ring.server_for(key).unwrap();
            assert_eq!(ring.label(server).unwrap(), case[2], "node of {}", case[0]);
        }
    }

    #[test]
    fn rendezvous_hashes_text_as_pymemcache_reads_a_str() {
        // From pymemcache 4.0.0 (`RendezvousHash(nodes).get_node(key)` and
        // `murmur3_32(nodes[0] + "-" + key)`, with `allow_unicode_keys`):
        // its murmur3 takes each character's low byte, not the UTF-8.
        let nodes = [
            "127.0.0.1:11211",
            "127.0.0.1:11212",
            "127.0.0.1:11213",
            "10.0.0.5:11211",
            "cache-a.internal:11211",
        ];
        let ring = Ring::unweighted(Distribution::Rendezvous, nodes);
        for (key, node, score) in [
            ("café", "cache-a.internal:11211", 352_669_618u32),
            ("ключ", "127.0.0.1:11212", 2_333_149_025),
            ("日本語キー", "10.0.0.5:11211", 1_561_339_640),
            ("naïve:1", "127.0.0.1:11212", 1_845_007_868),
            ("émoji😀", "127.0.0.1:11211", 2_582_837_147),
            ("plain", "127.0.0.1:11211", 4_254_435_275),
        ] {
            let text = format!("{}-{key}", nodes[0]);
            assert_eq!(
                murmur3_32(&as_python_str(text.as_bytes()), 0),
                score,
                "score of {key}"
            );
            let server = ring.server_for(key.as_bytes()).unwrap();
            assert_eq!(ring.label(server).unwrap(), node, "node of {key}");
        }
        // Bytes that are not UTF-8 hash as they are.
        assert_eq!(as_python_str(b"\xff\xfe"), &b"\xff\xfe"[..]);
    }

    #[test]
    fn rendezvous_ties_go_to_the_larger_label() {
        // Two servers with one label score every key equally; the comparison
        // must then be on labels, and identical labels keep the first.
        let ring = Ring::unweighted(Distribution::Rendezvous, ["b:1", "b:1"]);
        assert_eq!(ring.server_for(b"k"), Some(0));
    }

    #[test]
    fn empty_ring_has_no_server() {
        for distribution in [Distribution::Ketama, Distribution::Rendezvous] {
            let ring = Ring::unweighted(distribution, Vec::<String>::new());
            assert!(ring.is_empty());
            assert_eq!(ring.server_for(b"key"), None);
        }
    }

    #[test]
    fn default_is_ketama() {
        assert_eq!(Distribution::default(), Distribution::Ketama);
    }

    fn keys() -> impl Iterator<Item = Vec<u8>> {
        (0..2000u32).map(|i| format!("user:{i}:profile").into_bytes())
    }

    #[test]
    fn ejection_moves_only_the_dead_servers_keys() {
        let labels = [
            "10.0.0.1:11211",
            "10.0.0.2:11211",
            "10.0.0.3:11212",
            "/tmp/mc.sock",
        ];
        for distribution in [Distribution::Ketama, Distribution::Rendezvous] {
            let ring = Ring::new(distribution, labels.iter().copied().zip([1, 2, 1, 3]));
            for dead in 0..labels.len() {
                let mut moved = 0;
                for key in keys() {
                    let before = ring.server_for(&key).unwrap();
                    let after = ring.server_for_live(&key, |s| s != dead).unwrap();
                    assert_ne!(after, dead);
                    if before == dead {
                        moved += 1;
                    } else {
                        assert_eq!(after, before, "{distribution:?}: a live server's key moved");
                    }
                }
                assert!(moved > 0, "{distribution:?}: server {dead} held no key");
            }
            assert_eq!(ring.server_for_live(b"k", |_| false), None);
            // Only one live server: everything goes there.
            for key in keys().take(50) {
                assert_eq!(ring.server_for_live(&key, |s| s == 2), Some(2));
            }
        }
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
