//! Helpers shared by the value codec's tests (codec.rs, codec_limits.rs):
//! the default codec and round trips through it, the value types they
//! encode, and zlib compression done the way Python does it.
//!
//! Include it with `#[path = "common/codec_values.rs"] mod codec_values;`.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;

use nearfar::codec::{Codec, CodecError, DefaultCodec, Encoded};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The default codec (no compression, the default size limit).
pub fn codec() -> DefaultCodec {
    DefaultCodec::default()
}

/// `value` encoded by [`codec`].
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Encoded {
    codec().encode(value).unwrap()
}

/// Encodes and decodes `value` with [`codec`], checks it comes back equal,
/// and returns the flags it was stored with.
pub fn round_trip<T: Serialize + DeserializeOwned + PartialEq + fmt::Debug>(value: &T) -> u32 {
    round_trip_with(&codec(), value)
}

/// [`round_trip`] with `codec`.
pub fn round_trip_with<C: Codec, T: Serialize + DeserializeOwned + PartialEq + fmt::Debug>(
    codec: &C,
    value: &T,
) -> u32 {
    let item = codec.encode(value).unwrap();
    let back: T = codec.decode(&item.data, item.flags).unwrap();
    assert_eq!(&back, value);
    item.flags
}

/// `data` stored with `flags`, decoded by [`codec`] as a `T`.
pub fn decode<T: DeserializeOwned>(data: &[u8], flags: u32) -> Result<T, CodecError> {
    codec().decode(data, flags)
}

/// A bytes type in the style of `serde_bytes::ByteBuf`: serializes with
/// `serialize_bytes`, deserializes through `deserialize_byte_buf`.
#[derive(Debug, PartialEq)]
pub struct ByteBuf(pub Vec<u8>);

impl Serialize for ByteBuf {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for ByteBuf {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<ByteBuf, D::Error> {
        struct Bytes;
        impl serde::de::Visitor<'_> for Bytes {
            type Value = ByteBuf;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<ByteBuf, E> {
                Ok(ByteBuf(v.to_vec()))
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<ByteBuf, E> {
                Ok(ByteBuf(v))
            }
        }
        deserializer.deserialize_byte_buf(Bytes)
    }
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub struct User {
    pub id: u64,
    pub name: String,
    pub tags: Vec<String>,
    pub score: Option<f64>,
    pub kind: Kind,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub enum Kind {
    Guest,
    Member(u32),
    Admin {
        level: i8,
        scopes: BTreeMap<String, bool>,
    },
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub enum Nest {
    Leaf,
    Node(Box<Nest>),
}

/// A `User` with a field of every kind filled in.
pub fn user() -> User {
    User {
        id: 7,
        name: "zoë".into(),
        tags: vec!["a".into(), String::new()],
        score: Some(-1.5),
        kind: Kind::Admin {
            level: -3,
            scopes: [("read".to_owned(), true), ("write".to_owned(), false)].into(),
        },
    }
}

/// `data` compressed with zlib at its best level, as Python's
/// `zlib.compress` writes it.
pub fn zlib(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}
