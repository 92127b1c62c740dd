//! Fuzzes the value codec's decoder: values read back from memcached are
//! untrusted (any client, in any language, may have written them).
//!
//! Properties checked on arbitrary bytes and flags, for a spread of target
//! types (plain, nested, recursive, zero-sized, and one that preallocates
//! whatever length hint it is given):
//! * decoding never panics, aborts or runs away (libFuzzer's own memory and
//!   time limits catch the last two);
//! * whatever decodes, encodes again and decodes back to an equal value.
#![no_main]

use std::collections::BTreeMap;
use std::fmt;

use libfuzzer_sys::fuzz_target;
use nearfar::codec::{
    Codec, CodecError, DefaultCodec, FLAG_BINCODE, FLAG_BYTES, FLAG_COMPRESSED, FLAG_INTEGER,
    FLAG_LONG, FLAG_PICKLE, FLAG_TEXT,
};
use serde::de::{DeserializeOwned, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

/// A recursive value with every serde shape in it.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
enum Tree {
    Leaf,
    Number(i64),
    Text(String),
    Pair(Box<Tree>, Box<Tree>),
    List(Vec<Tree>),
    Map(BTreeMap<String, Tree>),
    Record {
        id: u32,
        tag: Option<char>,
        units: Vec<()>,
    },
}

/// Preallocates what the input's length hint says, as serde's docs show.
#[derive(Debug, PartialEq, Serialize)]
struct TrustsHint(Vec<u32>);

impl<'de> Deserialize<'de> for TrustsHint {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Elements;
        impl<'de> Visitor<'de> for Elements {
            type Value = TrustsHint;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a sequence of u32")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<TrustsHint, A::Error> {
                let mut v = Vec::with_capacity(seq.size_hint().unwrap_or(0));
                while let Some(x) = seq.next_element()? {
                    v.push(x);
                }
                Ok(TrustsHint(v))
            }
        }
        d.deserialize_seq(Elements)
    }
}

const FLAGS: [u32; 8] = [
    FLAG_BYTES,
    FLAG_PICKLE,
    FLAG_INTEGER,
    FLAG_LONG,
    FLAG_TEXT,
    FLAG_BINCODE,
    FLAG_BINCODE | FLAG_COMPRESSED,
    FLAG_TEXT | FLAG_COMPRESSED,
];

/// Decodes as `T`; if that works, checks the value survives a round trip.
fn check<T: Serialize + DeserializeOwned + PartialEq + fmt::Debug>(
    codec: &DefaultCodec,
    data: &[u8],
    flags: u32,
) {
    let Ok(value) = codec.decode::<T>(data, flags) else {
        return;
    };
    // Some decodable values cannot be encoded (a float NaN is fine, but
    // e.g. a map with non-string keys in text form is not): skip those.
    let Ok(again) = codec.encode(&value) else {
        return;
    };
    let back: T = match codec.decode(&again.data, again.flags) {
        Ok(back) => back,
        // The element budget scales with the input's length, and bincode
        // accepts lengths written longer than needed: a value with many
        // zero-sized elements decoded from such input may exceed the budget
        // of its shorter, canonical encoding.
        Err(CodecError::Decode(why))
            if again.data.len() < data.len() && why.contains("more elements than a") =>
        {
            return;
        }
        Err(e) => panic!("an encoded value does not decode: {e}"),
    };
    assert_eq!(back, value, "round trip changed the value");
}

fuzz_target!(|input: &[u8]| {
    let Some((&selector, data)) = input.split_first() else {
        return;
    };
    let flags = FLAGS[usize::from(selector) % FLAGS.len()];
    // A small decompression limit half the time, to reach the limit paths.
    let codec = if selector & 0x80 != 0 {
        DefaultCodec::new().with_max_decoded_size(4096)
    } else {
        DefaultCodec::new()
    };
    check::<String>(&codec, data, flags);
    check::<Vec<u8>>(&codec, data, flags);
    check::<i64>(&codec, data, flags);
    check::<u128>(&codec, data, flags);
    check::<Option<String>>(&codec, data, flags);
    check::<[u8; 4]>(&codec, data, flags);
    check::<Vec<u64>>(&codec, data, flags);
    check::<Vec<()>>(&codec, data, flags);
    check::<BTreeMap<String, u32>>(&codec, data, flags);
    check::<Tree>(&codec, data, flags);
    check::<TrustsHint>(&codec, data, flags);
    // Floats: NaN is not equal to itself, so only check they do not panic.
    let _ = codec.decode::<f64>(data, flags);
});
