//! Value codecs: how typed values become bytes and memcached flags, and back.
//!
//! [`DefaultCodec`] writes the formats Python's memcached clients read and
//! reads the ones they write, so Rust and Python processes can share keys.
//! The flags are those pymemcache and python-memcached agree on:
//!
//! | value | bytes on the wire | flags |
//! |---|---|---|
//! | string (`String`, `&str`, `char`, ...) | UTF-8 | [`FLAG_TEXT`] (16) |
//! | integer (`i8`..`i128`, `u8`..`u128`) | ASCII decimal | [`FLAG_INTEGER`] (2) |
//! | bytes (`Vec<u8>`, `&[u8]`, `[u8; N]`, `serialize_bytes`) | raw | [`FLAG_BYTES`] (0) |
//! | anything else | bincode 2 (standard config) | [`FLAG_BINCODE`] (256) |
//!
//! Values above an optional size threshold are zlib-compressed and marked with
//! [`FLAG_COMPRESSED`] (8), as pymemcache's `CompressedSerde` and
//! python-memcached (given `min_compress_len`) do.
//!
//! # Python clients
//!
//! Which Python setups share values with this codec, both ways (each row
//! is checked against the real client in `tests/memcached_interop.rs` and
//! `tests/python_memcached.rs`, pymemcache 3.x excepted: its serializer and
//! deserializer are the functions 4.0 wraps in `pickle_serde`):
//!
//! | Python client | what it writes, read here | what this codec writes, read there |
//! |---|---|---|
//! | pymemcache 4.0, `serde=pymemcache.serde.compressed_serde` (a `CompressedSerde()`) | `str`, `int`, `bytes`; zlib above 400 bytes | all of it, compressed or not |
//! | pymemcache 4.0 `serde=pymemcache.serde.pickle_serde`; 3.x `serializer=python_memcache_serializer, deserializer=python_memcache_deserializer` | `str`, `int`, `bytes` | all of it uncompressed: leave compression off (a compressed string fails to decode there, compressed bytes come back still compressed) |
//! | pymemcache's default `Client()` (no serde) | every value as `str(value)` with flags 0: read as bytes, a string, or an integer | every value as raw bytes (a string's UTF-8, an integer's digits) |
//! | python-memcached (`memcache.Client`) 1.59 to 1.62 | `str`, `int`, `bytes`, zlib with `min_compress_len` | all of it, compressed or not |
//!
//! In every row, what only Rust reads is written as [`FLAG_BINCODE`]
//! (pymemcache returns its raw bytes, python-memcached raises
//! `ValueError: Unknown flags on get`), and what only Python reads is a
//! pickle ([`FLAG_PICKLE`]: other Python objects, `bool` and `float`
//! included, under every serde above but the default `Client`), which this
//! codec refuses with [`CodecError::UnsupportedFlags`]. Flags 0 records no
//! type, so untyped bytes read here as bytes, a string or an integer only
//! ([`CodecError::UntypedBytes`] otherwise). memcached's counters (`incr`,
//! `decr`) are ASCII decimal and keep the flags they were stored with: read
//! them as an integer.
//!
//! Keys are placed as Python places them with
//! [`Distribution::Rendezvous`](crate::memcached::Distribution::Rendezvous)
//! (pymemcache's `HashClient`) and
//! [`Distribution::PythonMemcached`](crate::memcached::Distribution::PythonMemcached)
//! (python-memcached).

use std::fmt;

use serde::de::DeserializeOwned;
use serde::ser::Serialize;

mod decode;
mod encode;
mod guarded;
mod zlib;

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
    /// The item holds untyped bytes ([`FLAG_BYTES`], flags 0) and was read
    /// as a type they cannot be told apart from.
    ///
    /// Flags 0 records no type: Python's bytes have it, but so does every
    /// value pymemcache's default `Client` (no serde) stores, as
    /// `str(value)`, and every counter memcached creates. Such bytes read
    /// as bytes, as a string (when UTF-8) and as an integer (when ASCII
    /// decimal); reading them as anything else (a float, a bool, a
    /// sequence of anything but `u8`, a struct, a map, an enum) would be a
    /// guess: a Python list stored as `b"[1, 2]"` read as a `Vec<i64>`
    /// would give one number per byte. The same bytes give the same error
    /// on every read, so a retry does not help; read the key as
    /// `Vec<u8>` or `String`, or have the writer record a type (a serde
    /// such as pymemcache's `pickle_serde` for text and integers).
    UntypedBytes {
        /// What the read asked for, as serde describes it (`a boolean`,
        /// `a sequence of i64`, `struct User`).
        requested: String,
    },
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
            CodecError::UntypedBytes { requested } => write!(
                f,
                "the item is untyped bytes (flags 0), readable as bytes, a string \
                 or a decimal integer, not as {requested}"
            ),
        }
    }
}

impl std::error::Error for CodecError {}

// Flag values are pymemcache's (`pymemcache/serde.py`), which keeps them
// compatible with python-memcached.

/// Flags of a raw byte string (pymemcache `FLAG_BYTES`), and of any value
/// stored with no type recorded (see [`CodecError::UntypedBytes`]).
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
/// This crate's own flag: Python's clients use bits 0 to 4 only, so this bit
/// marks values only Rust readers understand (pymemcache returns them as raw
/// bytes, python-memcached raises `ValueError`).
pub const FLAG_BINCODE: u32 = 1 << 8;

/// The decode size limit [`DefaultCodec`] starts with: 64 MiB.
pub const DEFAULT_MAX_DECODED_SIZE: usize = 64 << 20;

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
    /// for corrupt compressed data, [`CodecError::UntypedBytes`] when
    /// untyped bytes (flags 0) are read as a type they cannot be told apart
    /// from, and [`CodecError::Decode`] when the bytes are not a valid `T`.
    fn decode<T: DeserializeOwned>(&self, data: &[u8], flags: u32) -> Result<T, CodecError>;
}

/// The codec Python's memcached clients share values with (see the
/// [module docs](self) for the mapping and which Python setups read what).
///
/// Decoding, by flags (after inflating [`FLAG_COMPRESSED`] values):
///
/// * [`FLAG_TEXT`]: the UTF-8 string, into a `String` (or `Option<String>`,
///   a one-character `char`, a newtype around a string, a unit-only enum by
///   variant name, or any type that deserializes from a string).
/// * [`FLAG_INTEGER`] and [`FLAG_LONG`]: the decimal integer (surrounding ASCII
///   whitespace and a sign allowed), into any integer type that holds it
///   (out of range is a decode error), a float, or a `String` holding the digits.
/// * [`FLAG_BYTES`]: untyped bytes, into what they can only be: bytes
///   (`Vec<u8>` or another sequence of `u8`, a bytes type such as
///   `serde_bytes::ByteBuf`, a `[u8; N]` of exactly that length), a
///   `String` when they are UTF-8, or any integer type when they are ASCII
///   decimal (pymemcache's default `Client` stores text and integers that
///   way, and memcached creates counters with flags 0). Any other target
///   (a float, a bool, a sequence of anything but `u8`, a struct, a map,
///   an enum) is [`CodecError::UntypedBytes`], never a guess. (Empty bytes
///   read as an empty sequence of any type: with no element, nothing tells
///   the reader's element type.)
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
/// use nearfar::codec::{
///     Codec, CodecError, DefaultCodec, FLAG_BYTES, FLAG_COMPRESSED, FLAG_INTEGER,
/// };
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
///
/// // Untyped bytes (flags 0), as pymemcache's default Client stores 42 and [1, 2].
/// assert_eq!(codec.decode::<u16>(b"42", FLAG_BYTES)?, 42);
/// assert!(matches!(
///     codec.decode::<Vec<i64>>(b"[1, 2]", FLAG_BYTES),
///     Err(CodecError::UntypedBytes { .. })
/// ));
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
    /// pymemcache's `CompressedSerde` uses a threshold of 400. Only the
    /// Python setups that decompress read such values (see the
    /// [module docs](self)): pymemcache's `CompressedSerde` and
    /// python-memcached, not pymemcache without it.
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
}

impl Codec for DefaultCodec {
    fn encode<T: Serialize + ?Sized>(&self, value: &T) -> Result<Encoded, CodecError> {
        let mut encoded = match encode::plain(value) {
            Some(plain) => plain,
            None => Encoded {
                data: bincode::serde::encode_to_vec(value, bincode::config::standard())
                    .map_err(|e| CodecError::Encode(e.to_string()))?,
                flags: FLAG_BINCODE,
            },
        };
        if let Some(threshold) = self.compression_threshold {
            if encoded.data.len() > threshold {
                // Kept only when it is shorter.
                if let Some(compressed) = zlib::compress(&encoded.data)? {
                    encoded.data = compressed;
                    encoded.flags |= FLAG_COMPRESSED;
                }
            }
        }
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
            inflated = zlib::inflate(data, limit)?;
            inflated.as_slice()
        } else {
            data
        };
        match format {
            FLAG_BINCODE => guarded::decode_bincode(data),
            _ => decode::native(format, data),
        }
    }
}
