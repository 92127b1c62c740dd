//! The value codec: pymemcache-compatible wire forms, round trips, and
//! hostile input.
#![cfg(feature = "memcached")]

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io::Write;

use nearfar::codec::{
    Codec, CodecError, DefaultCodec, Encoded, FLAG_BINCODE, FLAG_BYTES, FLAG_COMPRESSED,
    FLAG_INTEGER, FLAG_LONG, FLAG_PICKLE, FLAG_TEXT,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

fn codec() -> DefaultCodec {
    DefaultCodec::default()
}

fn encode<T: Serialize + ?Sized>(value: &T) -> Encoded {
    codec().encode(value).unwrap()
}

fn round_trip<T: Serialize + DeserializeOwned + PartialEq + fmt::Debug>(value: &T) -> u32 {
    round_trip_with(&codec(), value)
}

fn round_trip_with<C: Codec, T: Serialize + DeserializeOwned + PartialEq + fmt::Debug>(
    codec: &C,
    value: &T,
) -> u32 {
    let item = codec.encode(value).unwrap();
    let back: T = codec.decode(&item.data, item.flags).unwrap();
    assert_eq!(&back, value);
    item.flags
}

fn decode<T: DeserializeOwned>(data: &[u8], flags: u32) -> Result<T, CodecError> {
    codec().decode(data, flags)
}

/// A bytes type in the style of `serde_bytes::ByteBuf`: serializes with
/// `serialize_bytes`, deserializes through `deserialize_byte_buf`.
#[derive(Debug, PartialEq)]
struct ByteBuf(Vec<u8>);

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
struct User {
    id: u64,
    name: String,
    tags: Vec<String>,
    score: Option<f64>,
    kind: Kind,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
enum Kind {
    Guest,
    Member(u32),
    Admin {
        level: i8,
        scopes: BTreeMap<String, bool>,
    },
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct UserName(String);

#[derive(Debug, PartialEq, Serialize, Deserialize)]
enum Color {
    Red,
    Green,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
enum Nest {
    Leaf,
    Node(Box<Nest>),
}

fn user() -> User {
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

// --- Wire forms pymemcache writes and reads ---------------------------------

#[test]
fn strings_are_utf8_with_the_text_flag() {
    let want = Encoded {
        data: b"h\xc3\xa9llo".to_vec(),
        flags: FLAG_TEXT,
    };
    assert_eq!(encode("héllo"), want);
    assert_eq!(encode(&String::from("héllo")), want);
    assert_eq!(encode(&Cow::Borrowed("héllo")), want);
    assert_eq!(encode(&UserName("héllo".into())), want);
    assert_eq!(encode(&'é').data, "é".as_bytes());
    assert_eq!(encode(&'é').flags, FLAG_TEXT);
    assert_eq!(encode("").data, b"");
}

#[test]
fn integers_are_ascii_decimal_with_the_integer_flag() {
    assert_eq!(
        encode(&42),
        Encoded {
            data: b"42".to_vec(),
            flags: FLAG_INTEGER
        }
    );
    assert_eq!(encode(&-42i8).data, b"-42");
    assert_eq!(encode(&u128::MAX).data, u128::MAX.to_string().as_bytes());
    assert_eq!(encode(&i128::MIN).data, i128::MIN.to_string().as_bytes());
    assert_eq!(encode(&0u8).data, b"0");
}

#[test]
fn bytes_are_raw_with_flag_zero() {
    let want = Encoded {
        data: vec![0, 1],
        flags: FLAG_BYTES,
    };
    assert_eq!(encode(&b"\x00\x01"[..]), want);
    assert_eq!(encode(&vec![0u8, 1]), want);
    assert_eq!(encode(&[0u8, 1]), want);
    assert_eq!(encode(&ByteBuf(vec![0, 1])), want);
    assert_eq!(encode(&Vec::<u8>::new()).data, b"");
}

#[test]
fn other_values_use_bincode_with_our_flag() {
    assert_eq!(FLAG_BINCODE, 256);
    for flags in [
        encode(&user()).flags,
        encode(&true).flags,
        encode(&1.5f64).flags,
        encode(&Some("x")).flags,
        encode(&vec![1u16, 2]).flags,
        encode(&vec!["a"]).flags,
        encode(&Color::Red).flags,
        encode(&()).flags,
    ] {
        assert_eq!(flags, FLAG_BINCODE);
    }
}

#[test]
fn serialize_failures_are_encode_errors() {
    struct Fails;
    impl Serialize for Fails {
        fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
            Err(serde::ser::Error::custom("refused"))
        }
    }
    match codec().encode(&Fails) {
        Err(CodecError::Encode(message)) => assert!(message.contains("refused"), "{message}"),
        other => panic!("{other:?}"),
    }
}

// --- Round trips ------------------------------------------------------------

#[test]
fn integers_of_every_width_round_trip() {
    macro_rules! each {
        ($($ty:ty),*) => {$(
            for v in [<$ty>::MIN, <$ty>::MAX, 0 as $ty, 1 as $ty, <$ty>::MIN / 2] {
                assert_eq!(round_trip(&v), FLAG_INTEGER, "{}", stringify!($ty));
                assert_eq!(encode(&v).data, v.to_string().as_bytes());
            }
        )*};
    }
    each!(
        i8, i16, i32, i64, i128, isize, u8, u16, u32, u64, u128, usize
    );
    assert_eq!(round_trip(&-1i64), FLAG_INTEGER);
}

#[test]
fn plain_values_round_trip() {
    assert_eq!(round_trip(&String::from("héllo wörld")), FLAG_TEXT);
    assert_eq!(round_trip(&String::new()), FLAG_TEXT);
    assert_eq!(round_trip(&'ß'), FLAG_TEXT);
    assert_eq!(round_trip(&UserName("x".into())), FLAG_TEXT);
    assert_eq!(round_trip(&vec![0u8, 255, 10]), FLAG_BYTES);
    assert_eq!(round_trip(&[9u8; 4]), FLAG_BYTES);
    assert_eq!(round_trip(&ByteBuf(vec![1, 2, 3])), FLAG_BYTES);
    assert_eq!(round_trip(&Vec::<String>::new()), FLAG_BYTES);
}

#[test]
fn structured_values_round_trip() {
    assert_eq!(round_trip(&user()), FLAG_BINCODE);
    round_trip(&Kind::Guest);
    round_trip(&Kind::Member(3));
    round_trip(&Some(String::from("x")));
    round_trip(&None::<String>);
    round_trip(&Some(Some(5u8)));
    round_trip(&vec![Some(1i32), None]);
    round_trip(&(1u8, "two".to_owned(), 3.0f32));
    round_trip(&HashMap::from([(1u32, vec![user()])]));
    round_trip(&Nest::Node(Box::new(Nest::Node(Box::new(Nest::Leaf)))));
    round_trip(&vec![vec![1u8, 2], vec![]]);
    round_trip(&f64::MIN_POSITIVE);
    round_trip(&false);
    round_trip(&());
}

// --- Decoding values other clients wrote --------------------------------------

#[test]
fn text_decodes_into_string_like_targets() {
    assert_eq!(decode::<String>(b"abc", FLAG_TEXT).unwrap(), "abc");
    assert_eq!(
        decode::<Option<String>>(b"abc", FLAG_TEXT).unwrap(),
        Some("abc".into())
    );
    assert_eq!(decode::<Color>(b"Green", FLAG_TEXT).unwrap(), Color::Green);
    assert!(matches!(
        decode::<User>(b"abc", FLAG_TEXT),
        Err(CodecError::Decode(_))
    ));
    assert!(matches!(
        decode::<i64>(b"12", FLAG_TEXT),
        Err(CodecError::Decode(_))
    ));
    assert!(matches!(
        decode::<String>(b"\xff", FLAG_TEXT),
        Err(CodecError::Decode(_))
    ));
}

#[test]
fn python_integers_decode() {
    assert_eq!(decode::<i64>(b"-7", FLAG_INTEGER).unwrap(), -7);
    assert_eq!(decode::<i64>(b" 12\n", FLAG_INTEGER).unwrap(), 12);
    assert_eq!(decode::<u8>(b"+255", FLAG_INTEGER).unwrap(), 255);
    assert_eq!(decode::<u64>(b"123", FLAG_LONG).unwrap(), 123);
    assert_eq!(decode::<f64>(b"3", FLAG_INTEGER).unwrap(), 3.0);
    assert_eq!(decode::<String>(b"42", FLAG_INTEGER).unwrap(), "42");
    assert_eq!(
        decode::<u128>(u128::MAX.to_string().as_bytes(), FLAG_INTEGER).unwrap(),
        u128::MAX
    );
    for (data, flags) in [
        (&b"300"[..], FLAG_INTEGER),
        (b"-1", FLAG_INTEGER),
        (b"", FLAG_INTEGER),
        (b"-", FLAG_INTEGER),
        (b"1.5", FLAG_INTEGER),
        (b"12a", FLAG_LONG),
        (b"340282366920938463463374607431768211456", FLAG_INTEGER),
    ] {
        assert!(
            matches!(decode::<u8>(data, flags), Err(CodecError::Decode(_))),
            "{data:?}"
        );
    }
    assert!(matches!(
        decode::<User>(b"1", FLAG_INTEGER),
        Err(CodecError::Decode(_))
    ));
    // Python's integers have no bound: past 128 bits they still read as
    // their digits.
    let huge = format!("-1{}", "0".repeat(300));
    assert_eq!(
        decode::<String>(huge.as_bytes(), FLAG_INTEGER).unwrap(),
        huge
    );
    assert_eq!(
        decode::<i128>(huge.as_bytes(), FLAG_INTEGER),
        Err(CodecError::Decode(format!(
            "integer -1{}... (301 digits) is out of range",
            "0".repeat(38)
        )))
    );
}

#[test]
fn raw_bytes_decode_into_byte_and_text_targets() {
    assert_eq!(decode::<Vec<u8>>(b"\x00\x01", FLAG_BYTES).unwrap(), [0, 1]);
    assert_eq!(
        decode::<ByteBuf>(b"\x00\x01", FLAG_BYTES).unwrap(),
        ByteBuf(vec![0, 1])
    );
    assert_eq!(decode::<[u8; 2]>(b"ab", FLAG_BYTES).unwrap(), *b"ab");
    assert!(matches!(
        decode::<[u8; 2]>(b"abc", FLAG_BYTES),
        Err(CodecError::Decode(_))
    ));
    // Text some Python setups store without the text flag.
    assert_eq!(decode::<String>("é".as_bytes(), FLAG_BYTES).unwrap(), "é");
    assert!(matches!(
        decode::<String>(b"\xc3", FLAG_BYTES),
        Err(CodecError::Decode(_))
    ));
    assert_eq!(
        decode::<User>(b"abc", FLAG_BYTES),
        Err(CodecError::UntypedBytes {
            requested: "struct User".into()
        })
    );
}

/// The error a flags-0 read as `T` must give.
fn untyped<T: DeserializeOwned + fmt::Debug>(data: &[u8]) -> String {
    match decode::<T>(data, FLAG_BYTES) {
        Err(CodecError::UntypedBytes { requested }) => requested,
        other => panic!(
            "{data:?} as {}: {other:?}, not UntypedBytes",
            std::any::type_name::<T>()
        ),
    }
}

#[test]
fn untyped_decimal_reads_as_every_integer_type() {
    // pymemcache's default Client stores `42` as b"42" with flags 0, and
    // memcached's counters are digits; whitespace around them is allowed.
    macro_rules! each {
        ($($ty:ty),*) => {$(
            assert_eq!(decode::<$ty>(b"42", FLAG_BYTES).unwrap(), 42, "{}", stringify!($ty));
            assert_eq!(decode::<$ty>(b"5  ", FLAG_BYTES).unwrap(), 5, "{}", stringify!($ty));
            assert_eq!(
                decode::<$ty>(<$ty>::MAX.to_string().as_bytes(), FLAG_BYTES).unwrap(),
                <$ty>::MAX
            );
            assert_eq!(
                decode::<$ty>(<$ty>::MIN.to_string().as_bytes(), FLAG_BYTES).unwrap(),
                <$ty>::MIN
            );
        )*};
    }
    each!(
        i8, i16, i32, i64, i128, isize, u8, u16, u32, u64, u128, usize
    );
    assert_eq!(decode::<i64>(b"-7", FLAG_BYTES).unwrap(), -7);
    assert_eq!(
        decode::<Option<u64>>(b"18446744073709551615", FLAG_BYTES).unwrap(),
        Some(u64::MAX)
    );
    #[derive(Debug, PartialEq, Deserialize)]
    struct Count(u32);
    assert_eq!(decode::<Count>(b"12", FLAG_BYTES).unwrap(), Count(12));
    // Compressed untyped digits too.
    assert_eq!(decode::<u64>(&zlib(b"123"), FLAG_COMPRESSED).unwrap(), 123);
    // The same bytes still read as text and as bytes.
    assert_eq!(decode::<String>(b"42", FLAG_BYTES).unwrap(), "42");
    assert_eq!(decode::<Vec<u8>>(b"42", FLAG_BYTES).unwrap(), b"42");

    // Not decimal, or out of range: decode errors naming the value.
    for (data, want) in [
        (
            &b"hello"[..],
            "untyped value (flags 0) is not a decimal integer: \"hello\"",
        ),
        (
            b"1.5",
            "untyped value (flags 0) is not a decimal integer: \"1.5\"",
        ),
        (
            b"",
            "untyped value (flags 0) is not a decimal integer: \"\"",
        ),
        (
            b"\xff",
            "untyped value (flags 0) is not a decimal integer: \"\u{fffd}\"",
        ),
    ] {
        assert_eq!(
            decode::<i64>(data, FLAG_BYTES),
            Err(CodecError::Decode(want.into()))
        );
    }
    assert!(matches!(
        decode::<u8>(b"300", FLAG_BYTES),
        Err(CodecError::Decode(m)) if m.contains("300")
    ));
    assert!(matches!(
        decode::<u32>(b"-1", FLAG_BYTES),
        Err(CodecError::Decode(_))
    ));
}

#[test]
fn untyped_bytes_refuse_what_they_cannot_be_told_apart_from() {
    // pymemcache's default Client stores `[1, 2, 3]` as b"[1, 2, 3]": read
    // as numbers it used to give one per byte ([91, 49, 44, ...]).
    assert_eq!(untyped::<Vec<i64>>(b"[1, 2, 3]"), "a sequence of i64");
    assert_eq!(untyped::<Vec<u16>>(b"\x01\x02"), "a sequence of u16");
    assert_eq!(untyped::<Vec<i8>>(b"\x01"), "a sequence of i8");
    assert_eq!(untyped::<Vec<char>>(b"ab"), "a sequence of a character");
    assert_eq!(untyped::<Vec<String>>(b"ab"), "a sequence of a string");
    assert_eq!(untyped::<[u32; 2]>(b"ab"), "a sequence of u32");
    assert_eq!(untyped::<(u8, u16)>(b"ab"), "a sequence of u16");
    assert_eq!(untyped::<Vec<Option<u8>>>(b"ab"), "a sequence of option");
    assert_eq!(untyped::<f64>(b"1.5"), "f64");
    assert_eq!(untyped::<f32>(b"1"), "f32");
    assert_eq!(untyped::<bool>(b"True"), "a boolean");
    assert_eq!(untyped::<()>(b""), "unit");
    assert_eq!(untyped::<User>(b"{}"), "struct User");
    assert_eq!(untyped::<Color>(b"Red"), "enum Color");
    assert_eq!(untyped::<HashMap<String, i64>>(b"{}"), "a map");
    assert_eq!(untyped::<Option<Vec<i64>>>(b"[1]"), "a sequence of i64");
    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Pair(u8, u8);
    assert_eq!(untyped::<Pair>(b"ab"), "tuple struct Pair");
    // The message says what to do.
    let message = CodecError::UntypedBytes {
        requested: "a sequence of i64".into(),
    }
    .to_string();
    assert_eq!(
        message,
        "the item is untyped bytes (flags 0), readable as bytes, a string or a \
         decimal integer, not as a sequence of i64"
    );

    // What they can be still reads: bytes in every form, text.
    assert_eq!(
        decode::<Vec<u8>>(b"[1, 2, 3]", FLAG_BYTES).unwrap(),
        b"[1, 2, 3]"
    );
    assert_eq!(
        decode::<std::collections::VecDeque<u8>>(b"ab", FLAG_BYTES).unwrap(),
        [b'a', b'b']
    );
    assert_eq!(
        decode::<Box<[u8]>>(b"ab", FLAG_BYTES).unwrap().as_ref(),
        b"ab"
    );
    #[derive(Debug, PartialEq, Deserialize)]
    struct Byte(u8);
    assert_eq!(
        decode::<Vec<Byte>>(b"ab", FLAG_BYTES).unwrap(),
        [Byte(b'a'), Byte(b'b')]
    );
    assert_eq!(decode::<char>("é".as_bytes(), FLAG_BYTES).unwrap(), 'é');
    assert_eq!(
        decode::<Option<String>>(b"[1, 2, 3]", FLAG_BYTES).unwrap(),
        Some("[1, 2, 3]".into())
    );
    assert_eq!(
        decode::<UserName>(b"zoe", FLAG_BYTES).unwrap(),
        UserName("zoe".into())
    );
    decode::<serde::de::IgnoredAny>(b"anything", FLAG_BYTES).unwrap();
    // Nothing to tell an element type by: empty bytes are an empty sequence.
    assert_eq!(
        decode::<Vec<i64>>(b"", FLAG_BYTES).unwrap(),
        Vec::<i64>::new()
    );
}

#[test]
fn pickles_and_unknown_flags_are_unsupported() {
    assert_eq!(
        decode::<String>(b"\x80\x04K\x01.", FLAG_PICKLE),
        Err(CodecError::UnsupportedFlags(FLAG_PICKLE))
    );
    assert_eq!(
        decode::<String>(b"x", FLAG_PICKLE | FLAG_COMPRESSED),
        Err(CodecError::UnsupportedFlags(9))
    );
    for flags in [32, FLAG_TEXT | FLAG_INTEGER, 1 << 9, u32::MAX] {
        assert_eq!(
            decode::<String>(b"x", flags),
            Err(CodecError::UnsupportedFlags(flags))
        );
    }
}

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

fn zlib(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}
