//! pymemcache's rendezvous hashing (highest random weight, murmur3).

use std::borrow::Cow;

/// One murmur3 state per server, already fed `"{label}-"`.
#[derive(Debug, Clone)]
pub(super) struct Rendezvous {
    states: Vec<Murmur3>,
}

impl Rendezvous {
    pub(super) fn new(labels: &[String]) -> Rendezvous {
        let states = labels
            .iter()
            .map(|label| {
                let mut state = Murmur3::new(0);
                state.update(&as_python_str(label.as_bytes()));
                state.update(b"-");
                state
            })
            .collect();
        Rendezvous { states }
    }

    /// The best-scoring live server; `labels` break ties.
    pub(super) fn server_for_live(
        &self,
        labels: &[String],
        key: &[u8],
        is_live: impl Fn(usize) -> bool,
    ) -> Option<usize> {
        let key = as_python_str(key);
        let mut best: Option<(u32, usize)> = None;
        for (index, prefix) in self.states.iter().enumerate() {
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
                        || (score == best_score && labels[index] > labels[best_index])
                }
            };
            if wins {
                best = Some((score, index));
            }
        }
        best.map(|(_, index)| index)
    }
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

/// MurmurHash3 x86_32 of `data`.
#[cfg(test)]
fn murmur3_32(data: &[u8], seed: u32) -> u32 {
    let mut state = Murmur3::new(seed);
    state.update(data);
    state.finish()
}

/// Incremental MurmurHash3 x86_32: feeding `a` then `b` equals hashing `a ++ b`.
///
/// Algorithm as published by Austin Appleby (public domain, `MurmurHash3.cpp`).
#[derive(Debug, Clone, Copy)]
struct Murmur3 {
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
    fn new(seed: u32) -> Murmur3 {
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
    fn update(&mut self, mut data: &[u8]) {
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
    fn finish(&self) -> u32 {
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
    use super::super::tests::{header_servers, rows};
    use super::super::{Distribution, Ring};
    use super::*;

    const RENDEZVOUS: &str = include_str!("../../../tests/vectors/rendezvous.tsv");

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
}
