//! The value codec: pymemcache-compatible wire forms, round trips, and
//! reading values other clients wrote (text, integers, untyped bytes,
//! pickles). Hostile input, compression and size limits are in
//! codec_limits.rs.
#![cfg(feature = "memcached")]

#[path = "common/codec_values.rs"]
mod codec_values;

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;

use codec_values::{ByteBuf, Kind, Nest, User, codec, decode, encode, round_trip, user, zlib};
use nearfar::codec::{
    Codec, CodecError, Encoded, FLAG_BINCODE, FLAG_BYTES, FLAG_COMPRESSED, FLAG_INTEGER, FLAG_LONG,
    FLAG_PICKLE, FLAG_TEXT,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize, Serializer};

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct UserName(String);

#[derive(Debug, PartialEq, Serialize, Deserialize)]
enum Color {
    Red,
    Green,
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
