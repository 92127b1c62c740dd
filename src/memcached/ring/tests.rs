//! The ring tests every placement shares, and the vector files' readers.

use super::{Distribution, Ring};

/// Data lines of a vector file: tab-separated columns, `#` lines skipped.
pub(super) fn rows(text: &str) -> Vec<Vec<&str>> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| line.split('\t').collect())
        .collect()
}

/// `# server\thost:port\tweight` (or `# node\thost:port`) header lines.
pub(super) fn header_servers<'a>(text: &'a str, tag: &str) -> Vec<(&'a str, u32)> {
    text.lines()
        .filter_map(|line| line.strip_prefix("# "))
        .map(|line| line.split('\t').collect::<Vec<_>>())
        .filter(|cols| cols[0] == tag)
        .map(|cols| (cols[1], cols.get(2).map_or(1, |w| w.parse().unwrap())))
        .collect()
}

pub(super) fn unhex(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

pub(super) fn keys() -> impl Iterator<Item = Vec<u8>> {
    (0..2000u32).map(|i| format!("user:{i}:profile").into_bytes())
}

const ALL: [Distribution; 4] = [
    Distribution::Ketama,
    Distribution::Rendezvous,
    Distribution::PythonMemcached,
    Distribution::PythonMemcachedLegacy,
];

#[test]
fn empty_ring_has_no_server() {
    for distribution in ALL {
        let ring = Ring::unweighted(distribution, Vec::<String>::new());
        assert!(ring.is_empty());
        assert_eq!(ring.server_for(b"key"), None);
    }
}

#[test]
fn default_is_ketama() {
    assert_eq!(Distribution::default(), Distribution::Ketama);
}

#[test]
fn only_python_memcached_hashes_the_key_prefix() {
    assert!(!Distribution::Ketama.hashes_key_prefix());
    assert!(!Distribution::Rendezvous.hashes_key_prefix());
    assert!(Distribution::PythonMemcached.hashes_key_prefix());
    assert!(Distribution::PythonMemcachedLegacy.hashes_key_prefix());
}

#[test]
fn ejection_moves_only_the_dead_servers_keys() {
    let labels = [
        "10.0.0.1:11211",
        "10.0.0.2:11211",
        "10.0.0.3:11212",
        "/tmp/mc.sock",
    ];
    for distribution in ALL {
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
