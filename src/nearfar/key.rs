//! Far keys: how a typed key becomes a memcached key.

use md5::{Digest, Md5};
use serde::Serialize;

use crate::codec::{Codec, DefaultCodec, FLAG_INTEGER, FLAG_TEXT};
use crate::memcached::protocol::{MAX_KEY_LEN, validate_key};

/// Renders a key as text for the far tier.
///
/// Implemented for every [`Serialize`] type: strings as they are, integers
/// in decimal, anything else (structs, tuples, byte strings, ...) as the hex
/// of its [`DefaultCodec`] encoding (bincode). [`NearFar`](super::NearFar)
/// puts `namespace + ":"` in front; a result memcached cannot take is
/// replaced by a digest (see [`NearFar::far_key`](super::NearFar::far_key)).
///
/// Strings and integers render as they are, so that other languages'
/// clients (pymemcache's `str(key)`) name the same items. The rendering is
/// one-to-one within a key type whose values all serialize as the same kind
/// (all strings, all integers, or all structures), which is every type
/// deriving `Serialize` but one: an enum marked `#[serde(untagged)]` (or a
/// hand-written `Serialize`) that mixes kinds can render two keys alike — a
/// string `"7"` and the integer `7` both become `7`, a string `"0102"` and
/// the pair `(1u8, 2u8)` both `0102` — and two such keys then share one
/// memcached item. Keep such key types tagged (serde's default), or give
/// each kind its own namespace. (Two caches with different key types
/// sharing one namespace meet the same limit.)
///
/// # Examples
///
/// ```
/// use nearfar::FarKey;
///
/// assert_eq!("user:42".far_key().as_deref(), Some("user:42"));
/// assert_eq!(42u64.far_key().as_deref(), Some("42"));
/// assert_eq!((1u8, 2u8).far_key().as_deref(), Some("0102"));
/// ```
pub trait FarKey {
    /// The key's text form, or `None` when it cannot be rendered (its
    /// `Serialize` implementation failed): such a key stays in the near
    /// tier only.
    fn far_key(&self) -> Option<String>;
}

impl<T: Serialize + ?Sized> FarKey for T {
    fn far_key(&self) -> Option<String> {
        let encoded = DefaultCodec::new().encode(self).ok()?;
        match encoded.flags {
            FLAG_TEXT | FLAG_INTEGER => String::from_utf8(encoded.data).ok(),
            _ => Some(hex(&encoded.data)),
        }
    }
}

/// Lower-case hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    out
}

/// Length of the digest form's tail: `#` and 32 hex digits.
pub(crate) const DIGEST_LEN: usize = 33;

/// The longest generation tag (see [`full_key`]): `#g`, the 20 digits of
/// a `u64`, and `:`.
pub(crate) const MAX_GENERATION_TAG: usize = 23;

/// The memcached key for `rendered` under `namespace` in `generation` of
/// the namespace (see `NearFar::invalidate_all`), for a client whose own
/// key prefix is `prefix_len` bytes long.
///
/// `namespace + ":" + tag + rendered` (no `":"` with no namespace), where
/// `tag` is empty in generation 0 (the keys of a namespace never
/// invalidated: what other clients, pymemcache's `str(key)`, name too) and
/// `"#g" + generation + ":"` after it. A rendered key that would make that
/// too long for memcached (250 bytes with the prefix), is empty, holds a
/// byte memcached refuses (space, control bytes, DEL) or starts with `#`
/// is replaced by `"#" + hex(md5(rendered))`. Rendered keys starting with
/// `#` are digested too, so that no plain key can spell a digest or a
/// generation tag: after the namespace, `#g<digits>:` can only be a tag,
/// and `#` followed by 32 hex digits only a digest.
pub(crate) fn full_key(
    namespace: &str,
    prefix_len: usize,
    generation: u64,
    rendered: &str,
) -> String {
    let sep = usize::from(!namespace.is_empty());
    let tag = if generation == 0 {
        String::new()
    } else {
        format!("#g{generation}:")
    };
    let plain_len = prefix_len + namespace.len() + sep + tag.len() + rendered.len();
    // `validate_key` also refuses an empty key; the length it checks is
    // the rendered part's alone, within `plain_len`'s.
    let plain = !rendered.starts_with('#')
        && plain_len <= MAX_KEY_LEN
        && validate_key(rendered.as_bytes()).is_ok();
    let mut out =
        String::with_capacity(namespace.len() + sep + tag.len() + rendered.len().min(DIGEST_LEN));
    out.push_str(namespace);
    if sep == 1 {
        out.push(':');
    }
    out.push_str(&tag);
    if plain {
        out.push_str(rendered);
    } else {
        out.push('#');
        out.push_str(&hex(&Md5::digest(rendered.as_bytes())));
    }
    out
}

/// The memcached key of `namespace`'s generation counter:
/// `namespace + ":#generation"` (`#generation` with no namespace). No data
/// key can spell it: rendered keys starting with `#` are digested, and
/// `#generation` is neither a digest nor a generation tag.
pub(crate) fn generation_key(namespace: &str) -> String {
    if namespace.is_empty() {
        "#generation".to_string()
    } else {
        format!("{namespace}:#generation")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_plain_and_structured_keys() {
        assert_eq!("abc".far_key().as_deref(), Some("abc"));
        assert_eq!(String::from("x y").far_key().as_deref(), Some("x y"));
        assert_eq!((-5i32).far_key().as_deref(), Some("-5"));
        assert_eq!((1u16, "a").far_key().as_deref(), Some("010161"));
    }

    #[test]
    fn digests_what_memcached_cannot_take() {
        assert_eq!(full_key("ns", 0, 0, "k"), "ns:k");
        assert_eq!(full_key("", 0, 0, "k"), "k");
        let digest = |s: &str| hex(&Md5::digest(s.as_bytes()));
        assert_eq!(
            full_key("ns", 0, 0, "a b"),
            format!("ns:#{}", digest("a b"))
        );
        assert_eq!(full_key("ns", 0, 0, ""), format!("ns:#{}", digest("")));
        assert_eq!(full_key("ns", 0, 0, "#x"), format!("ns:#{}", digest("#x")));
        assert_eq!(
            full_key("ns", 0, 0, "a\x7f"),
            format!("ns:#{}", digest("a\x7f"))
        );
        let long = "k".repeat(247);
        assert_eq!(full_key("ns", 0, 0, &long), format!("ns:{long}"));
        assert_eq!(
            full_key("ns", 1, 0, &long),
            format!("ns:#{}", digest(&long))
        );
        assert_eq!(full_key("", 0, 0, &"k".repeat(251)).len(), DIGEST_LEN);
    }

    #[test]
    fn a_generation_is_a_tag_no_plain_key_can_spell() {
        let digest = |s: &str| hex(&Md5::digest(s.as_bytes()));
        assert_eq!(full_key("ns", 0, 1, "k"), "ns:#g1:k");
        assert_eq!(full_key("", 0, 7, "k"), "#g7:k");
        assert_eq!(
            full_key("ns", 0, 3, "a b"),
            format!("ns:#g3:#{}", digest("a b"))
        );
        // Generation 0 keeps the keys other clients name.
        assert_eq!(full_key("ns", 0, 0, "k"), "ns:k");
        // A key that spells a tag is digested: it cannot meet a tagged key.
        assert_eq!(
            full_key("ns", 0, 0, "#g1:k"),
            format!("ns:#{}", digest("#g1:k"))
        );
        // The tag counts toward the limit: a key that fits untagged is
        // digested once tagged.
        let long = "k".repeat(247);
        assert_eq!(full_key("ns", 0, 0, &long), format!("ns:{long}"));
        assert_eq!(
            full_key("ns", 0, 1, &long),
            format!("ns:#g1:#{}", digest(&long))
        );
        // The longest tag with the longest namespace the builder allows
        // (prefix + namespace + 1 + tag + digest = 250) fits.
        let ns = "n".repeat(MAX_KEY_LEN - 1 - MAX_GENERATION_TAG - DIGEST_LEN);
        let key = full_key(&ns, 0, u64::MAX - 1, &"k".repeat(300));
        assert_eq!(key.len(), MAX_KEY_LEN);
        assert_eq!(format!("#g{}:", u64::MAX).len(), MAX_GENERATION_TAG);
        assert_eq!(generation_key("ns"), "ns:#generation");
        assert_eq!(generation_key(""), "#generation");
    }
}
