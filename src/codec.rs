//! Value codecs: how typed values become bytes and memcached flags, and back.
//!
//! [`DefaultCodec`] writes the formats pymemcache (Python) reads and reads the
//! ones it writes, so Rust and Python processes can share keys:
//!
//! | value | bytes on the wire | flags |
//! |---|---|---|
//! | string (`String`, `&str`, `char`, ...) | UTF-8 | [`FLAG_TEXT`] (16) |
//! | integer (`i8`..`i128`, `u8`..`u128`) | ASCII decimal | [`FLAG_INTEGER`] (2) |
//! | bytes (`Vec<u8>`, `&[u8]`, `[u8; N]`, `serialize_bytes`) | raw | [`FLAG_BYTES`] (0) |
//! | anything else | bincode 2 (standard config) | [`FLAG_BINCODE`] (256) |
//!
//! Values above an optional size threshold are zlib-compressed and marked with
//! [`FLAG_COMPRESSED`] (8), as pymemcache's compressing serde does.

use std::fmt;
use std::io::{Read, Write};

use serde::de::{self, DeserializeOwned, DeserializeSeed, IntoDeserializer, Visitor};
use serde::ser::{self, Impossible, Serialize};
use serde::{Deserializer, Serializer};

/// Why a value could not be encoded or decoded.
///
/// Decoding errors never panic: a value written by another client in a format
/// this codec does not understand is reported here (the near/far layer treats
/// it as a miss).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CodecError {
    /// The value could not be serialized (the serializer's message).
    Encode(String),
    /// The stored bytes are not a valid encoding of the requested type (the deserializer's message).
    Decode(String),
    /// The item's flags name an encoding this codec does not read (for example Python pickle, flag 1).
    UnsupportedFlags(u32),
    /// Decoding (or decompressing) would exceed the configured size limit.
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// Compressed data was corrupt.
    Compression(String),
}

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CodecError::Encode(m) => write!(f, "cannot encode value: {m}"),
            CodecError::Decode(m) => write!(f, "cannot decode value: {m}"),
            CodecError::UnsupportedFlags(fl) => write!(f, "unsupported item flags {fl:#x}"),
            CodecError::TooLarge { limit } => {
                write!(f, "value exceeds the {limit}-byte decode limit")
            }
            CodecError::Compression(m) => write!(f, "corrupt compressed value: {m}"),
        }
    }
}

impl std::error::Error for CodecError {}

// Flag values are pymemcache's (`pymemcache/serde.py`), which keeps them
// compatible with python-memcached.

/// Flags of a raw byte string (pymemcache `FLAG_BYTES`).
pub const FLAG_BYTES: u32 = 0;
/// Flags of a Python pickle (pymemcache `FLAG_PICKLE`); never read or written here.
pub const FLAG_PICKLE: u32 = 1 << 0;
/// Flags of an integer in ASCII decimal (pymemcache `FLAG_INTEGER`).
pub const FLAG_INTEGER: u32 = 1 << 1;
/// Flags of a Python 2 `long` in ASCII decimal (pymemcache `FLAG_LONG`); read as an integer.
pub const FLAG_LONG: u32 = 1 << 2;
/// Bit set on top of the others when the value is zlib-compressed (pymemcache `FLAG_COMPRESSED`).
pub const FLAG_COMPRESSED: u32 = 1 << 3;
/// Flags of UTF-8 text (pymemcache `FLAG_TEXT`).
pub const FLAG_TEXT: u32 = 1 << 4;
/// Flags of a serde value in bincode 2 (standard configuration).
///
/// This crate's own flag: pymemcache uses bits 0 to 4 only, so this bit marks
/// values only Rust readers understand (pymemcache returns them as raw bytes).
pub const FLAG_BINCODE: u32 = 1 << 8;

/// The decode size limit [`DefaultCodec`] starts with: 64 MiB.
pub const DEFAULT_MAX_DECODED_SIZE: usize = 64 << 20;

/// Deepest nesting a bincode value may have; deeper input is rejected
/// rather than risking the stack on recursive types.
const MAX_DEPTH: usize = 128;

/// An encoded value: the bytes to store and the memcached flags to store with them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    /// The item's data block.
    pub data: Vec<u8>,
    /// The item's client flags, telling readers how `data` is encoded.
    pub flags: u32,
}

/// Turns typed values into memcached items (bytes plus flags) and back.
///
/// # Examples
///
/// ```
/// use nearfar::codec::{Codec, DefaultCodec, FLAG_TEXT};
///
/// let codec = DefaultCodec::default();
/// let item = codec.encode("héllo")?;
/// assert_eq!((item.data.as_slice(), item.flags), ("h\u{e9}llo".as_bytes(), FLAG_TEXT));
/// let back: String = codec.decode(&item.data, item.flags)?;
/// assert_eq!(back, "héllo");
/// # Ok::<(), nearfar::codec::CodecError>(())
/// ```
pub trait Codec: Send + Sync + 'static {
    /// Encodes `value`.
    ///
    /// # Errors
    ///
    /// [`CodecError::Encode`] when the value cannot be serialized (for
    /// example a map whose `Serialize` fails).
    fn encode<T: Serialize + ?Sized>(&self, value: &T) -> Result<Encoded, CodecError>;

    /// Decodes an item's `data` stored with `flags` into a `T`.
    ///
    /// # Errors
    ///
    /// [`CodecError::UnsupportedFlags`] when the flags name a format this
    /// codec does not read, [`CodecError::TooLarge`] when the value (or its
    /// decompressed form) exceeds the size limit, [`CodecError::Compression`]
    /// for corrupt compressed data, and [`CodecError::Decode`] when the bytes
    /// are not a valid `T`.
    fn decode<T: DeserializeOwned>(&self, data: &[u8], flags: u32) -> Result<T, CodecError>;
}

/// The pymemcache-compatible codec (see the [module docs](self) for the mapping).
///
/// Decoding, by flags (after inflating [`FLAG_COMPRESSED`] values):
///
/// * [`FLAG_TEXT`]: the UTF-8 string, into a `String` (or `Option<String>`,
///   a one-character `char`, a newtype around a string, a unit-only enum by
///   variant name, or any type that deserializes from a string).
/// * [`FLAG_INTEGER`] and [`FLAG_LONG`]: the decimal integer (surrounding ASCII
///   whitespace and a sign allowed), into any integer type that holds it
///   (out of range is a decode error), a float, or a `String` holding the digits.
/// * [`FLAG_BYTES`]: the raw bytes, into `Vec<u8>` (a sequence of `u8`),
///   a bytes type such as `serde_bytes::ByteBuf`, a `[u8; N]` of exactly that
///   length, or a `String` when the bytes are UTF-8 (some Python setups store
///   text that way).
/// * [`FLAG_BINCODE`]: bincode 2, standard configuration; trailing bytes are an error.
///   Input is not trusted: lengths it claims are never allocated up front
///   (nor passed on as size hints above 4096 or the input's length), values
///   nested deeper than 128 levels are refused, and so are values with more
///   elements than 64 per input byte plus 65,536 (zero-sized elements such
///   as `()` take no input, so a short value could otherwise claim 2^60).
///   Encoding does not check that budget: a collection of more than 65,536
///   zero-sized elements encodes in a few bytes but does not decode.
/// * anything else, such as pymemcache's pickles ([`FLAG_PICKLE`]):
///   [`CodecError::UnsupportedFlags`].
///
/// # Examples
///
/// ```
/// use nearfar::codec::{Codec, DefaultCodec, FLAG_COMPRESSED, FLAG_INTEGER};
///
/// let codec = DefaultCodec::new().with_compression_threshold(Some(1024));
///
/// let item = codec.encode(&-42i64)?;
/// assert_eq!((item.data.as_slice(), item.flags), (&b"-42"[..], FLAG_INTEGER));
/// assert_eq!(codec.decode::<i32>(&item.data, item.flags)?, -42);
///
/// let big = vec![7u32; 10_000];
/// let item = codec.encode(&big)?;
/// assert!(item.flags & FLAG_COMPRESSED != 0);
/// assert_eq!(codec.decode::<Vec<u32>>(&item.data, item.flags)?, big);
/// # Ok::<(), nearfar::codec::CodecError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefaultCodec {
    compression_threshold: Option<usize>,
    max_decoded_size: usize,
}

impl Default for DefaultCodec {
    /// No compression; a decode limit of [`DEFAULT_MAX_DECODED_SIZE`].
    fn default() -> DefaultCodec {
        DefaultCodec {
            compression_threshold: None,
            max_decoded_size: DEFAULT_MAX_DECODED_SIZE,
        }
    }
}

impl DefaultCodec {
    /// The default codec: no compression, 64 MiB decode limit.
    pub fn new() -> DefaultCodec {
        DefaultCodec::default()
    }

    /// Compresses encoded values longer than `threshold` bytes with zlib
    /// (kept only when that makes them shorter); `None` turns compression off.
    ///
    /// pymemcache's compressing serde uses a threshold of 400.
    #[must_use]
    pub fn with_compression_threshold(mut self, threshold: Option<usize>) -> DefaultCodec {
        self.compression_threshold = threshold;
        self
    }

    /// Refuses to decode values whose stored or decompressed size exceeds
    /// `limit` bytes (with [`CodecError::TooLarge`]).
    #[must_use]
    pub fn with_max_decoded_size(mut self, limit: usize) -> DefaultCodec {
        self.max_decoded_size = limit;
        self
    }

    /// The compression threshold, if compression is on.
    pub fn compression_threshold(&self) -> Option<usize> {
        self.compression_threshold
    }

    /// The decode size limit in bytes.
    pub fn max_decoded_size(&self) -> usize {
        self.max_decoded_size
    }

    fn compress(&self, encoded: &mut Encoded) -> Result<(), CodecError> {
        let Some(threshold) = self.compression_threshold else {
            return Ok(());
        };
        if encoded.data.len() <= threshold {
            return Ok(());
        }
        let mut encoder = flate2::write::ZlibEncoder::new(
            Vec::with_capacity(encoded.data.len() / 2),
            flate2::Compression::default(),
        );
        let compressed = encoder
            .write_all(&encoded.data)
            .and_then(|()| encoder.finish())
            .map_err(|e| CodecError::Encode(format!("zlib: {e}")))?;
        if compressed.len() < encoded.data.len() {
            encoded.data = compressed;
            encoded.flags |= FLAG_COMPRESSED;
        }
        Ok(())
    }

    /// Inflates zlib `data`, reading at most one byte past the limit so a
    /// small bomb cannot expand without bound.
    fn inflate(&self, data: &[u8]) -> Result<Vec<u8>, CodecError> {
        let limit = self.max_decoded_size;
        let mut out = Vec::new();
        flate2::read::ZlibDecoder::new(data)
            .take((limit as u64).saturating_add(1))
            .read_to_end(&mut out)
            .map_err(|e| CodecError::Compression(e.to_string()))?;
        if out.len() > limit {
            return Err(CodecError::TooLarge { limit });
        }
        Ok(out)
    }
}

impl Codec for DefaultCodec {
    fn encode<T: Serialize + ?Sized>(&self, value: &T) -> Result<Encoded, CodecError> {
        let mut encoded = match value.serialize(Probe) {
            Ok(Plain::Text(data)) => Encoded {
                data,
                flags: FLAG_TEXT,
            },
            Ok(Plain::Integer(data)) => Encoded {
                data,
                flags: FLAG_INTEGER,
            },
            Ok(Plain::Bytes(data)) => Encoded {
                data,
                flags: FLAG_BYTES,
            },
            Err(NotPlain) => Encoded {
                data: bincode::serde::encode_to_vec(value, bincode::config::standard())
                    .map_err(|e| CodecError::Encode(e.to_string()))?,
                flags: FLAG_BINCODE,
            },
        };
        self.compress(&mut encoded)?;
        Ok(encoded)
    }

    fn decode<T: DeserializeOwned>(&self, data: &[u8], flags: u32) -> Result<T, CodecError> {
        let format = flags & !FLAG_COMPRESSED;
        if !matches!(
            format,
            FLAG_BYTES | FLAG_TEXT | FLAG_INTEGER | FLAG_LONG | FLAG_BINCODE
        ) {
            return Err(CodecError::UnsupportedFlags(flags));
        }
        let limit = self.max_decoded_size;
        if data.len() > limit {
            return Err(CodecError::TooLarge { limit });
        }
        let inflated;
        let data = if flags & FLAG_COMPRESSED != 0 {
            inflated = self.inflate(data)?;
            inflated.as_slice()
        } else {
            data
        };
        let decoded = match format {
            FLAG_BYTES => T::deserialize(BytesDeserializer(data)),
            FLAG_TEXT => {
                let text = std::str::from_utf8(data)
                    .map_err(|e| CodecError::Decode(format!("text value is not UTF-8: {e}")))?;
                T::deserialize(TextDeserializer(text))
            }
            FLAG_INTEGER | FLAG_LONG => T::deserialize(IntDeserializer::parse(data)?),
            _ => return decode_bincode(data),
        };
        decoded.map_err(|e| CodecError::Decode(e.0))
    }
}

fn decode_bincode<T: DeserializeOwned>(data: &[u8]) -> Result<T, CodecError> {
    // bincode's slice decoder, behind `Guarded`: see there for why.
    let budget = Budget::for_input(data.len());
    let seed = Guarded {
        inner: std::marker::PhantomData::<T>,
        depth: 0,
        budget: &budget,
    };
    let (value, used) =
        bincode::serde::seed_decode_from_slice(seed, data, bincode::config::standard())
            .map_err(|e| CodecError::Decode(e.to_string()))?;
    if used != data.len() {
        return Err(CodecError::Decode(format!(
            "{} trailing bytes after the bincode value",
            data.len() - used
        )));
    }
    Ok(value)
}

// ---------------------------------------------------------------------------
// Encoding: find out whether a value is a plain string, integer or bytes.

/// A value pymemcache stores natively, already in its wire form.
enum Plain {
    Text(Vec<u8>),
    Integer(Vec<u8>),
    Bytes(Vec<u8>),
}

/// "Not a plain value": the probe gives up and the value goes to bincode.
#[derive(Debug)]
struct NotPlain;

impl fmt::Display for NotPlain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not a plain string, integer or byte string")
    }
}

impl std::error::Error for NotPlain {}

impl ser::Error for NotPlain {
    fn custom<T: fmt::Display>(_msg: T) -> NotPlain {
        NotPlain
    }
}

/// Serializer methods that reject the value.
macro_rules! reject {
    ($($method:ident $(<$generic:ident>)? ($($arg:ident: $ty:ty),*) -> $ret:ty;)*) => {
        $(
            fn $method $(<$generic: ?Sized + Serialize>)? (self, $($arg: $ty),*) -> Result<$ret, NotPlain> {
                Err(NotPlain)
            }
        )*
    };
}

/// Rejecting methods shared by both probes.
macro_rules! reject_compound {
    () => {
        reject! {
            serialize_bool(_v: bool) -> Self::Ok;
            serialize_f32(_v: f32) -> Self::Ok;
            serialize_f64(_v: f64) -> Self::Ok;
            serialize_none() -> Self::Ok;
            serialize_some<T>(_v: &T) -> Self::Ok;
            serialize_unit() -> Self::Ok;
            serialize_unit_struct(_name: &'static str) -> Self::Ok;
            serialize_unit_variant(_name: &'static str, _index: u32, _variant: &'static str) -> Self::Ok;
            serialize_newtype_variant<T>(_name: &'static str, _index: u32, _variant: &'static str, _v: &T) -> Self::Ok;
            serialize_tuple_struct(_name: &'static str, _len: usize) -> Self::SerializeTupleStruct;
            serialize_tuple_variant(_name: &'static str, _index: u32, _variant: &'static str, _len: usize) -> Self::SerializeTupleVariant;
            serialize_map(_len: Option<usize>) -> Self::SerializeMap;
            serialize_struct(_name: &'static str, _len: usize) -> Self::SerializeStruct;
            serialize_struct_variant(_name: &'static str, _index: u32, _variant: &'static str, _len: usize) -> Self::SerializeStructVariant;
        }
    };
}

/// Serializer that recognises the top-level shapes pymemcache stores natively.
///
/// It copies out the wire bytes on success, so a plain value is serialized
/// once; anything else stops at its first call.
struct Probe;

macro_rules! probe_integer {
    ($($method:ident: $ty:ty),*) => {
        $(
            fn $method(self, v: $ty) -> Result<Plain, NotPlain> {
                Ok(Plain::Integer(v.to_string().into_bytes()))
            }
        )*
    };
}

impl Serializer for Probe {
    type Ok = Plain;
    type Error = NotPlain;
    type SerializeSeq = ByteSeq;
    type SerializeTuple = ByteSeq;
    type SerializeTupleStruct = Impossible<Plain, NotPlain>;
    type SerializeTupleVariant = Impossible<Plain, NotPlain>;
    type SerializeMap = Impossible<Plain, NotPlain>;
    type SerializeStruct = Impossible<Plain, NotPlain>;
    type SerializeStructVariant = Impossible<Plain, NotPlain>;

    probe_integer!(
        serialize_i8: i8, serialize_i16: i16, serialize_i32: i32, serialize_i64: i64,
        serialize_i128: i128, serialize_u8: u8, serialize_u16: u16, serialize_u32: u32,
        serialize_u64: u64, serialize_u128: u128
    );

    reject_compound!();

    fn serialize_char(self, v: char) -> Result<Plain, NotPlain> {
        Ok(Plain::Text(v.encode_utf8(&mut [0; 4]).as_bytes().to_vec()))
    }

    fn serialize_str(self, v: &str) -> Result<Plain, NotPlain> {
        Ok(Plain::Text(v.as_bytes().to_vec()))
    }

    fn serialize_bytes(self, v: &[u8]) -> Result<Plain, NotPlain> {
        Ok(Plain::Bytes(v.to_vec()))
    }

    fn serialize_newtype_struct<T: ?Sized + Serialize>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<Plain, NotPlain> {
        // Transparent, as in every serde format: `struct Name(String)` is text.
        value.serialize(self)
    }

    fn serialize_seq(self, len: Option<usize>) -> Result<ByteSeq, NotPlain> {
        Ok(ByteSeq(Vec::with_capacity(len.unwrap_or(0))))
    }

    fn serialize_tuple(self, len: usize) -> Result<ByteSeq, NotPlain> {
        Ok(ByteSeq(Vec::with_capacity(len)))
    }
}

/// A sequence (or array) collected as bytes while every element is a `u8`.
struct ByteSeq(Vec<u8>);

impl ser::SerializeSeq for ByteSeq {
    type Ok = Plain;
    type Error = NotPlain;

    fn serialize_element<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), NotPlain> {
        self.0.push(value.serialize(ByteProbe)?);
        Ok(())
    }

    fn end(self) -> Result<Plain, NotPlain> {
        Ok(Plain::Bytes(self.0))
    }
}

impl ser::SerializeTuple for ByteSeq {
    type Ok = Plain;
    type Error = NotPlain;

    fn serialize_element<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), NotPlain> {
        ser::SerializeSeq::serialize_element(self, value)
    }

    fn end(self) -> Result<Plain, NotPlain> {
        ser::SerializeSeq::end(self)
    }
}

/// Serializer accepting a single `u8` and nothing else.
struct ByteProbe;

impl Serializer for ByteProbe {
    type Ok = u8;
    type Error = NotPlain;
    type SerializeSeq = Impossible<u8, NotPlain>;
    type SerializeTuple = Impossible<u8, NotPlain>;
    type SerializeTupleStruct = Impossible<u8, NotPlain>;
    type SerializeTupleVariant = Impossible<u8, NotPlain>;
    type SerializeMap = Impossible<u8, NotPlain>;
    type SerializeStruct = Impossible<u8, NotPlain>;
    type SerializeStructVariant = Impossible<u8, NotPlain>;

    fn serialize_u8(self, v: u8) -> Result<u8, NotPlain> {
        Ok(v)
    }

    reject_compound!();

    reject! {
        serialize_i8(_v: i8) -> u8;
        serialize_i16(_v: i16) -> u8;
        serialize_i32(_v: i32) -> u8;
        serialize_i64(_v: i64) -> u8;
        serialize_i128(_v: i128) -> u8;
        serialize_u16(_v: u16) -> u8;
        serialize_u32(_v: u32) -> u8;
        serialize_u64(_v: u64) -> u8;
        serialize_u128(_v: u128) -> u8;
        serialize_char(_v: char) -> u8;
        serialize_str(_v: &str) -> u8;
        serialize_bytes(_v: &[u8]) -> u8;
        serialize_newtype_struct<T>(_name: &'static str, _v: &T) -> u8;
        serialize_seq(_len: Option<usize>) -> Self::SerializeSeq;
        serialize_tuple(_len: usize) -> Self::SerializeTuple;
    }
}

// ---------------------------------------------------------------------------
// Decoding the pymemcache-native formats.

/// A deserialization failure message.
#[derive(Debug)]
struct DeError(String);

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> DeError {
        DeError(msg.to_string())
    }
}

/// A [`FLAG_TEXT`] value.
struct TextDeserializer<'de>(&'de str);

impl<'de> Deserializer<'de> for TextDeserializer<'de> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_borrowed_str(self.0)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        // A unit variant named by the text.
        visitor.visit_enum(IntoDeserializer::<DeError>::into_deserializer(self.0))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple tuple_struct map struct identifier ignored_any
    }
}

/// A parsed [`FLAG_INTEGER`] value.
struct IntDeserializer<'de> {
    digits: &'de str,
    value: Integer,
}

#[derive(Clone, Copy)]
enum Integer {
    Negative(i128),
    NonNegative(u128),
}

impl<'de> IntDeserializer<'de> {
    /// Parses ASCII decimal as Python's `int()` would for what pymemcache
    /// writes: optional surrounding whitespace, an optional sign, digits.
    fn parse(data: &'de [u8]) -> Result<IntDeserializer<'de>, CodecError> {
        let invalid = || {
            let shown = String::from_utf8_lossy(&data[..data.len().min(40)]).into_owned();
            CodecError::Decode(format!("integer value is not a decimal integer: {shown:?}"))
        };
        let digits = std::str::from_utf8(data)
            .map_err(|_| invalid())?
            .trim_ascii();
        let unsigned = digits.strip_prefix(['-', '+']).unwrap_or(digits);
        if unsigned.is_empty() || !unsigned.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid());
        }
        let out_of_range = || CodecError::Decode(format!("integer {digits} is out of range"));
        let value = if digits.starts_with('-') {
            Integer::Negative(digits.parse().map_err(|_| out_of_range())?)
        } else {
            Integer::NonNegative(unsigned.parse().map_err(|_| out_of_range())?)
        };
        Ok(IntDeserializer { digits, value })
    }
}

impl<'de> Deserializer<'de> for IntDeserializer<'de> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        // serde's integer visitors range-check, so narrower targets work.
        match self.value {
            Integer::NonNegative(v) => match u64::try_from(v) {
                Ok(v) => visitor.visit_u64(v),
                Err(_) => visitor.visit_u128(v),
            },
            Integer::Negative(v) => match i64::try_from(v) {
                Ok(v) => visitor.visit_i64(v),
                Err(_) => visitor.visit_i128(v),
            },
        }
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_borrowed_str(self.digits)
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_borrowed_str(self.digits)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor.visit_newtype_struct(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char
        bytes byte_buf unit unit_struct seq tuple tuple_struct map struct enum identifier ignored_any
    }
}

/// A [`FLAG_BYTES`] value.
struct BytesDeserializer<'de>(&'de [u8]);

impl<'de> BytesDeserializer<'de> {
    fn visit_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let mut seq = de::value::SeqDeserializer::new(self.0.iter().copied());
        let value = visitor.visit_seq(&mut seq)?;
        // Leftover bytes (a `[u8; 2]` from three bytes) are an error.
        seq.end()?;
        Ok(value)
    }

    fn text<V: Visitor<'de>>(&self, visitor: &V) -> Result<&'de str, DeError> {
        std::str::from_utf8(self.0)
            .map_err(|_| de::Error::invalid_value(de::Unexpected::Bytes(self.0), visitor))
    }
}

impl<'de> Deserializer<'de> for BytesDeserializer<'de> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_borrowed_bytes(self.0)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_byte_buf(self.0.to_vec())
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.visit_seq(visitor)
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.visit_seq(visitor)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let text = self.text(&visitor)?;
        visitor.visit_borrowed_str(text)
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor.visit_newtype_struct(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64
        bytes unit unit_struct tuple_struct map struct enum identifier ignored_any
    }
}

// ---------------------------------------------------------------------------
// Guarding bincode.
//
// bincode 2 decodes an owned `String` or byte buffer by allocating the length
// the input claims *before* checking that many bytes follow (only a const
// `with_limit` config would stop it, and our limit is a runtime setting), so
// eight bytes of garbage could request gigabytes. `Guarded` wraps bincode's
// deserializer at every level and turns those requests into their borrowed
// forms, which bincode bounds by the input. It also caps the nesting depth,
// so a recursive type fed crafted input cannot overflow the stack; caps the
// length hints sequences and maps pass on, which bincode takes from the
// input unchecked (a `Deserialize` that preallocates what the hint says, as
// serde's own docs show, would otherwise panic on capacity overflow or abort
// the process on a failed allocation); and bounds the number of elements
// decoded, since zero-sized elements (`()`, unit structs) consume no input:
// nine bytes claiming 2^60 of them would loop for ever.

/// Most elements a length hint passed on may claim (and never more than
/// the input has bytes).
const MAX_SIZE_HINT: usize = 4096;

/// Element visits allowed per input byte, plus [`ELEMENT_FLOOR`]. Each
/// element that is not zero-sized takes at least a byte; nesting through
/// tuples and structs adds a visit per level, so legitimate values stay far
/// below this.
const ELEMENTS_PER_BYTE: usize = 64;

/// Element visits allowed whatever the input's length.
const ELEMENT_FLOOR: usize = 1 << 16;

/// What one decode may still spend, shared by every level of it.
struct Budget {
    /// Sequence elements and map keys left to visit.
    elements: std::cell::Cell<usize>,
    /// The input's length in bytes.
    input_len: usize,
}

impl Budget {
    fn for_input(input_len: usize) -> Self {
        Budget {
            elements: std::cell::Cell::new(
                input_len
                    .saturating_mul(ELEMENTS_PER_BYTE)
                    .saturating_add(ELEMENT_FLOOR),
            ),
            input_len,
        }
    }

    /// Takes one element visit, or fails when none are left.
    fn spend<E: de::Error>(&self) -> Result<(), E> {
        let left = self.elements.get();
        if left == 0 {
            return Err(E::custom(format_args!(
                "more elements than a {}-byte value can hold",
                self.input_len
            )));
        }
        self.elements.set(left - 1);
        Ok(())
    }

    /// A length hint from the input, capped (see [`MAX_SIZE_HINT`]).
    fn cap_hint(&self, hint: Option<usize>) -> Option<usize> {
        hint.map(|h| h.min(self.input_len).min(MAX_SIZE_HINT))
    }
}

/// A bincode deserializer, seed, visitor or access wrapped at `depth`.
struct Guarded<'b, T> {
    inner: T,
    depth: usize,
    budget: &'b Budget,
}

impl<'b, T> Guarded<'b, T> {
    fn wrap<U>(&self, inner: U) -> Guarded<'b, U> {
        Guarded {
            inner,
            depth: self.depth,
            budget: self.budget,
        }
    }

    fn nested<U, E: de::Error>(&self, inner: U) -> Result<Guarded<'b, U>, E> {
        if self.depth >= MAX_DEPTH {
            return Err(E::custom(format_args!(
                "value nested deeper than {MAX_DEPTH} levels"
            )));
        }
        Ok(Guarded {
            inner,
            depth: self.depth + 1,
            budget: self.budget,
        })
    }
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Guarded<'_, S> {
    type Value = S::Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<S::Value, D::Error> {
        let deserializer = self.wrap(deserializer);
        self.inner.deserialize(deserializer)
    }
}

macro_rules! guard_deserialize {
    ($($method:ident $(=> $target:ident)? ($($arg:ident: $ty:ty),*);)*) => {
        $(
            fn $method<V: Visitor<'de>>(self, $($arg: $ty,)* visitor: V) -> Result<V::Value, D::Error> {
                let visitor = self.wrap(visitor);
                guard_deserialize!(@call self.inner, $method $(=> $target)?, ($($arg,)* visitor))
            }
        )*
    };
    (@call $inner:expr, $method:ident => $target:ident, ($($args:expr),*)) => {
        $inner.$target($($args),*)
    };
    (@call $inner:expr, $method:ident, ($($args:expr),*)) => {
        $inner.$method($($args),*)
    };
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Guarded<'_, D> {
    type Error = D::Error;

    guard_deserialize! {
        deserialize_any();
        deserialize_bool();
        deserialize_i8();
        deserialize_i16();
        deserialize_i32();
        deserialize_i64();
        deserialize_i128();
        deserialize_u8();
        deserialize_u16();
        deserialize_u32();
        deserialize_u64();
        deserialize_u128();
        deserialize_f32();
        deserialize_f64();
        deserialize_char();
        deserialize_str();
        // The two redirections this wrapper exists for.
        deserialize_string => deserialize_str();
        deserialize_bytes();
        deserialize_byte_buf => deserialize_bytes();
        deserialize_option();
        deserialize_unit();
        deserialize_unit_struct(name: &'static str);
        deserialize_newtype_struct(name: &'static str);
        deserialize_seq();
        deserialize_tuple(len: usize);
        deserialize_tuple_struct(name: &'static str, len: usize);
        deserialize_map();
        deserialize_struct(name: &'static str, fields: &'static [&'static str]);
        deserialize_enum(name: &'static str, variants: &'static [&'static str]);
        deserialize_identifier();
        deserialize_ignored_any();
    }

    fn is_human_readable(&self) -> bool {
        self.inner.is_human_readable()
    }
}

macro_rules! guard_visit {
    ($($method:ident($ty:ty);)*) => {
        $(
            fn $method<E: de::Error>(self, v: $ty) -> Result<V::Value, E> {
                self.inner.$method(v)
            }
        )*
    };
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Guarded<'_, V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.expecting(f)
    }

    guard_visit! {
        visit_bool(bool);
        visit_i8(i8);
        visit_i16(i16);
        visit_i32(i32);
        visit_i64(i64);
        visit_i128(i128);
        visit_u8(u8);
        visit_u16(u16);
        visit_u32(u32);
        visit_u64(u64);
        visit_u128(u128);
        visit_f32(f32);
        visit_f64(f64);
        visit_char(char);
        visit_str(&str);
        visit_borrowed_str(&'de str);
        visit_string(String);
        visit_bytes(&[u8]);
        visit_borrowed_bytes(&'de [u8]);
        visit_byte_buf(Vec<u8>);
    }

    fn visit_none<E: de::Error>(self) -> Result<V::Value, E> {
        self.inner.visit_none()
    }

    fn visit_unit<E: de::Error>(self) -> Result<V::Value, E> {
        self.inner.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<V::Value, D::Error> {
        let deserializer = self.nested(deserializer)?;
        self.inner.visit_some(deserializer)
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<V::Value, D::Error> {
        let deserializer = self.nested(deserializer)?;
        self.inner.visit_newtype_struct(deserializer)
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        let seq = self.nested(seq)?;
        self.inner.visit_seq(seq)
    }

    fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        let map = self.nested(map)?;
        self.inner.visit_map(map)
    }

    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<V::Value, A::Error> {
        let data = self.nested(data)?;
        self.inner.visit_enum(data)
    }
}

impl<'de, A: de::SeqAccess<'de>> de::SeqAccess<'de> for Guarded<'_, A> {
    type Error = A::Error;

    fn next_element_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, A::Error> {
        self.budget.spend()?;
        let seed = self.wrap(seed);
        self.inner.next_element_seed(seed)
    }

    fn size_hint(&self) -> Option<usize> {
        self.budget.cap_hint(self.inner.size_hint())
    }
}

impl<'de, A: de::MapAccess<'de>> de::MapAccess<'de> for Guarded<'_, A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        self.budget.spend()?;
        let seed = self.wrap(seed);
        self.inner.next_key_seed(seed)
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, A::Error> {
        let seed = self.wrap(seed);
        self.inner.next_value_seed(seed)
    }

    fn size_hint(&self) -> Option<usize> {
        self.budget.cap_hint(self.inner.size_hint())
    }
}

impl<'b, 'de, A: de::EnumAccess<'de>> de::EnumAccess<'de> for Guarded<'b, A> {
    type Error = A::Error;
    type Variant = Guarded<'b, A::Variant>;

    fn variant_seed<S: DeserializeSeed<'de>>(
        self,
        seed: S,
    ) -> Result<(S::Value, Guarded<'b, A::Variant>), A::Error> {
        let (depth, budget) = (self.depth, self.budget);
        let seed = self.wrap(seed);
        let (value, variant) = self.inner.variant_seed(seed)?;
        Ok((
            value,
            Guarded {
                inner: variant,
                depth,
                budget,
            },
        ))
    }
}

impl<'de, A: de::VariantAccess<'de>> de::VariantAccess<'de> for Guarded<'_, A> {
    type Error = A::Error;

    fn unit_variant(self) -> Result<(), A::Error> {
        self.inner.unit_variant()
    }

    fn newtype_variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<S::Value, A::Error> {
        let seed = self.wrap(seed);
        self.inner.newtype_variant_seed(seed)
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, A::Error> {
        let visitor = self.wrap(visitor);
        self.inner.tuple_variant(len, visitor)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        let visitor = self.wrap(visitor);
        self.inner.struct_variant(fields, visitor)
    }
}
