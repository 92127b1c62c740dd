//! Value codecs: how typed values become bytes and memcached flags, and back.

use std::fmt;

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
