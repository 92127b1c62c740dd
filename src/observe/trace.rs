//! The `tracing` side: key digests for span fields.

use std::fmt;

/// A key's digest for a span field: 16 hex digits of its 64-bit FNV-1a
/// hash (the same in every process, so spans of one key correlate across
/// a fleet; never the key).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Digest(u64);

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The digest of `key`.
pub(crate) fn digest(key: &[u8]) -> Digest {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    Digest(
        key.iter()
            .fold(OFFSET, |h, &b| (h ^ u64::from(b)).wrapping_mul(PRIME)),
    )
}

#[cfg(test)]
mod tests {
    use super::digest;

    #[test]
    fn a_digest_is_fnv1a_in_16_hex_digits() {
        // The FNV-1a 64 test vectors.
        assert_eq!(digest(b"").to_string(), "cbf29ce484222325");
        assert_eq!(digest(b"a").to_string(), "af63dc4c8601ec8c");
        assert_eq!(digest(b"foobar").to_string(), "85944171f73967e8");
    }
}
