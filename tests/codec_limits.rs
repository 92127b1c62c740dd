//! The value codec against hostile input: bincode garbage and length
//! claims, nesting and zero-sized elements, compression (and corrupt or
//! bomb-sized zlib), decoded size limits, and random input that must never
//! panic. Wire forms and round trips are in codec.rs.
#![cfg(feature = "memcached")]

#[path = "common/codec_values.rs"]
mod codec_values;

use std::collections::HashMap;
use std::fmt;

use codec_values::{
    ByteBuf, Kind, Nest, User, codec, decode, encode, round_trip, round_trip_with, user, zlib,
};
use nearfar::codec::{
    Codec, CodecError, DefaultCodec, FLAG_BINCODE, FLAG_BYTES, FLAG_COMPRESSED, FLAG_INTEGER,
    FLAG_LONG, FLAG_PICKLE, FLAG_TEXT,
};
use serde::{Deserialize, Deserializer};

// --- Bincode from untrusted bytes ---------------------------------------------

#[test]
fn bincode_garbage_is_a_decode_error() {
    for data in [&b""[..], b"\xff\xff\xff", b"\x07abc"] {
        assert!(
            matches!(
                decode::<User>(data, FLAG_BINCODE),
                Err(CodecError::Decode(_))
            ),
            "{data:?}"
        );
    }
    // A valid value followed by junk.
    let mut item = encode(&user());
    item.data.push(0);
    assert!(matches!(
        decode::<User>(&item.data, item.flags),
        Err(CodecError::Decode(_))
    ));
}

#[test]
fn bincode_length_claims_do_not_allocate() {
    // A varint length of 2^60 (0xfd: u64 follows) with nothing behind it:
    // every owned string and byte target must fail cleanly, not allocate.
    let claim = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0x10];
    assert!(matches!(
        decode::<String>(&claim, FLAG_BINCODE),
        Err(CodecError::Decode(_))
    ));
    assert!(matches!(
        decode::<ByteBuf>(&claim, FLAG_BINCODE),
        Err(CodecError::Decode(_))
    ));
    assert!(matches!(
        decode::<Vec<u8>>(&claim, FLAG_BINCODE),
        Err(CodecError::Decode(_))
    ));
    assert!(matches!(
        decode::<Vec<String>>(&claim, FLAG_BINCODE),
        Err(CodecError::Decode(_))
    ));
    let mut nested = vec![1u8];
    nested.extend_from_slice(&claim);
    assert!(matches!(
        decode::<Option<String>>(&nested, FLAG_BINCODE),
        Err(CodecError::Decode(_))
    ));
}

#[test]
fn bincode_nesting_is_bounded() {
    // `Nest::Node` is variant 1, `Nest::Leaf` variant 0.
    let mut shallow = vec![1u8; 50];
    shallow.push(0);
    let value: Nest = decode(&shallow, FLAG_BINCODE).unwrap();
    let mut depth = 0;
    let mut at = &value;
    while let Nest::Node(next) = at {
        depth += 1;
        at = next;
    }
    assert_eq!(depth, 50);

    let mut deep = vec![1u8; 1_000_000];
    deep.push(0);
    assert!(matches!(
        decode::<Nest>(&deep, FLAG_BINCODE),
        Err(CodecError::Decode(_))
    ));
}

/// A sequence type that preallocates whatever length hint it is given, as
/// serde's documentation shows for custom collections.
#[derive(Debug, PartialEq)]
struct TrustsHint(Vec<u64>);

impl<'de> Deserialize<'de> for TrustsHint {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Elements;
        impl<'de> serde::de::Visitor<'de> for Elements {
            type Value = TrustsHint;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a sequence of u64")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<TrustsHint, A::Error> {
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

#[test]
fn bincode_length_hints_are_capped() {
    // 2^60 elements claimed (capacity overflow: a panic), and 2^40 (a failed
    // allocation of 8 TiB: the process aborts), nothing behind either.
    for claim in [
        [0xfd, 0, 0, 0, 0, 0, 0, 0, 0x10],
        [0xfd, 0, 0, 0, 0, 0, 1, 0, 0],
    ] {
        let got = std::panic::catch_unwind(|| decode::<TrustsHint>(&claim, FLAG_BINCODE));
        assert!(
            matches!(got, Ok(Err(CodecError::Decode(_)))),
            "{claim:?}: {got:?}"
        );
    }
    // A real sequence still decodes through it, longer than the hint cap.
    let values: Vec<u64> = (0..10_000).collect();
    let bytes = encode(&values);
    assert_eq!(
        decode::<TrustsHint>(&bytes.data, bytes.flags).unwrap(),
        TrustsHint(values)
    );
}

#[test]
fn bincode_zero_sized_elements_are_bounded() {
    // 2^60 `()` elements claimed: they take no input, so only a count stops
    // the decode. Run on a thread so a regression fails instead of hanging.
    let claim = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0x10];
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(decode::<Vec<()>>(&claim, FLAG_BINCODE).map(|v| v.len()));
    });
    let got = rx
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("decoding 2^60 claimed unit elements did not stop");
    assert!(matches!(got, Err(CodecError::Decode(_))), "{got:?}");
    // Sane counts of zero-sized elements still decode.
    let units = vec![(); 1000];
    let bytes = encode(&units);
    assert_eq!(decode::<Vec<()>>(&bytes.data, bytes.flags).unwrap(), units);
    // And many small elements: half a million u16s.
    let many: Vec<u16> = (0..500_000u32).map(|i| i as u16).collect();
    assert_eq!(round_trip(&many), FLAG_BINCODE);
}

// --- Compression and limits ---------------------------------------------------

#[test]
fn compression_applies_above_the_threshold_when_it_helps() {
    let codec = DefaultCodec::new().with_compression_threshold(Some(100));
    assert_eq!(codec.compression_threshold(), Some(100));

    let small = "a".repeat(100);
    assert_eq!(codec.encode(&small).unwrap().flags, FLAG_TEXT);

    let text = "a".repeat(1000);
    let item = codec.encode(&text).unwrap();
    assert_eq!(item.flags, FLAG_TEXT | FLAG_COMPRESSED);
    assert!(item.data.len() < 100);
    assert_eq!(round_trip_with(&codec, &text), FLAG_TEXT | FLAG_COMPRESSED);
    assert_eq!(
        round_trip_with(&codec, &vec![user(), user(), user(), user()]),
        FLAG_BINCODE | FLAG_COMPRESSED
    );
    assert_eq!(
        round_trip_with(&codec, &u128::MAX),
        FLAG_INTEGER,
        "short values stay plain"
    );

    // Incompressible bytes are stored as they are.
    let mut state = 1u64;
    let noise: Vec<u8> = (0..4096).map(|_| next(&mut state) as u8).collect();
    assert_eq!(round_trip_with(&codec, &noise), FLAG_BYTES);

    // Off by default.
    assert_eq!(codec_flags_default(&text), FLAG_TEXT);
}

fn codec_flags_default(value: &str) -> u32 {
    codec().encode(value).unwrap().flags
}

#[test]
fn python_zlib_output_decodes() {
    // python3 -c 'import zlib; print(zlib.compress(("pymemcache compressed value " * 20).encode()).hex())'
    let compressed = hex(
        "789c2ba8cc4dcd4d4e4cce485548cecf2d284a2d2e4e4d51284bcc294d552818951b95439303003807d819",
    );
    let text: String = decode(&compressed, FLAG_TEXT | FLAG_COMPRESSED).unwrap();
    assert_eq!(text, "pymemcache compressed value ".repeat(20));
    // Flag 8 alone: compressed raw bytes.
    let bytes: Vec<u8> = decode(&compressed, FLAG_COMPRESSED).unwrap();
    assert_eq!(bytes, text.as_bytes());
}

#[test]
fn corrupt_compressed_data_is_a_compression_error() {
    let mut compressed = zlib(&[b'x'; 1000]);
    let end = compressed.len() - 1;
    compressed[end] ^= 0xff; // breaks the adler32 trailer
    compressed[3] ^= 0x55;
    assert!(matches!(
        decode::<Vec<u8>>(&compressed, FLAG_COMPRESSED),
        Err(CodecError::Compression(_))
    ));
    assert!(matches!(
        decode::<Vec<u8>>(b"not zlib", FLAG_COMPRESSED),
        Err(CodecError::Compression(_))
    ));
}

#[test]
fn zip_bombs_hit_the_limit() {
    let limit = 1 << 20;
    let codec = DefaultCodec::new().with_max_decoded_size(limit);
    assert_eq!(codec.max_decoded_size(), limit);

    let bomb = zlib(&vec![0u8; 4 << 20]);
    assert!(bomb.len() < 8 << 10);
    assert_eq!(
        codec.decode::<Vec<u8>>(&bomb, FLAG_COMPRESSED),
        Err(CodecError::TooLarge { limit })
    );
    assert_eq!(
        codec.decode::<Vec<u8>>(&bomb, FLAG_BINCODE | FLAG_COMPRESSED),
        Err(CodecError::TooLarge { limit })
    );

    // Exactly at the limit is fine, one past is not.
    let at = zlib(&vec![7u8; limit]);
    assert_eq!(
        codec.decode::<Vec<u8>>(&at, FLAG_COMPRESSED).unwrap().len(),
        limit
    );
    let past = zlib(&vec![7u8; limit + 1]);
    assert_eq!(
        codec.decode::<Vec<u8>>(&past, FLAG_COMPRESSED),
        Err(CodecError::TooLarge { limit })
    );
}

#[test]
fn stored_values_over_the_limit_are_refused() {
    let codec = DefaultCodec::new().with_max_decoded_size(4);
    assert_eq!(
        codec.decode::<Vec<u8>>(b"1234", FLAG_BYTES).unwrap(),
        b"1234"
    );
    assert_eq!(
        codec.decode::<Vec<u8>>(b"12345", FLAG_BYTES),
        Err(CodecError::TooLarge { limit: 4 })
    );
    assert_eq!(
        codec.decode::<String>(b"12345", FLAG_TEXT),
        Err(CodecError::TooLarge { limit: 4 })
    );
}

// --- No input panics ----------------------------------------------------------

#[test]
fn arbitrary_input_never_panics() {
    let codec = DefaultCodec::new().with_max_decoded_size(1 << 16);
    let flag_choices = [
        FLAG_BYTES,
        FLAG_TEXT,
        FLAG_INTEGER,
        FLAG_LONG,
        FLAG_BINCODE,
        FLAG_PICKLE,
        FLAG_COMPRESSED,
        FLAG_TEXT | FLAG_COMPRESSED,
        FLAG_BINCODE | FLAG_COMPRESSED,
    ];
    let seeds: Vec<Vec<u8>> = vec![
        encode(&user()).data,
        encode(&Nest::Node(Box::new(Nest::Leaf))).data,
        zlib(&encode(&user()).data),
        b"12345".to_vec(),
    ];
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    for round in 0..20_000 {
        let mut data = if round % 2 == 0 {
            let len = (next(&mut state) % 48) as usize;
            (0..len).map(|_| next(&mut state) as u8).collect()
        } else {
            // Mutate a valid value: flip, cut or extend a few bytes.
            let mut data = seeds[(next(&mut state) % seeds.len() as u64) as usize].clone();
            for _ in 0..1 + next(&mut state) % 3 {
                let at = (next(&mut state) as usize) % data.len().max(1);
                match next(&mut state) % 3 {
                    0 if !data.is_empty() => data[at] ^= 1 << (next(&mut state) % 8),
                    1 => data.truncate(at),
                    _ => data.push(next(&mut state) as u8),
                }
            }
            data
        };
        if round % 7 == 0 {
            data.insert(0, 0xfd);
        }
        let flags = if round % 11 == 0 {
            next(&mut state) as u32
        } else {
            flag_choices[(next(&mut state) % flag_choices.len() as u64) as usize]
        };
        let _ = codec.decode::<String>(&data, flags);
        let _ = codec.decode::<i64>(&data, flags);
        let _ = codec.decode::<u8>(&data, flags);
        let _ = codec.decode::<Vec<u8>>(&data, flags);
        let _ = codec.decode::<ByteBuf>(&data, flags);
        let _ = codec.decode::<User>(&data, flags);
        let _ = codec.decode::<Nest>(&data, flags);
        let _ = codec.decode::<Option<Vec<String>>>(&data, flags);
        let _ = codec.decode::<HashMap<String, Kind>>(&data, flags);
        let _ = codec.decode::<(char, bool, f32)>(&data, flags);
    }
}

// --- Helpers ------------------------------------------------------------------

/// xorshift64*: a deterministic stream for the property tests.
fn next(state: &mut u64) -> u64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    state.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}
