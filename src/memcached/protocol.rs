//! The memcached wire protocol: pure encoders and an incremental reply parser.
//!
//! Nothing here does I/O, keeps time or allocates per call beyond growing the
//! caller's buffer. The connection layer owns the sockets; this module only
//! turns requests into bytes and bytes into replies.
//!
//! * Keys are checked once, by [`ValidKey::new`]; every encoder takes a
//!   [`ValidKey`], so a key holding a space, `\r`, `\n` or any other control
//!   byte can never reach the wire (no `"k\r\nflush_all"` injection).
//! * Encoders append to a caller's `Vec<u8>`: the classic text commands
//!   ([`encode_get`], [`encode_store`], [`encode_delete`], ...) and the meta
//!   commands ([`encode_meta_get`], [`encode_meta_set`], [`encode_meta_delete`],
//!   [`encode_meta_arithmetic`], [`encode_meta_noop`]) with typed flag structs.
//! * [`parse_reply`] reads one reply frame (a line, or a line and its data
//!   block) from the front of a buffer. It returns `Ok(None)` while the frame
//!   is incomplete, and borrows keys and values from the buffer (no copy).
//! * [`exptime`] turns a [`Duration`] into memcached's `exptime` field.
//!
//! The flags used are those memcached 1.6.18 accepts.

use std::fmt;
use std::time::Duration;

mod encode;
mod parse;
#[cfg(test)]
mod tests;

pub use encode::{
    ArithmeticMode, MetaArithmeticFlags, MetaDeleteFlags, MetaGetFlags, MetaSetFlags, MetaSetMode,
    StoreCommand, encode_decr, encode_delete, encode_flush_all, encode_get, encode_gets,
    encode_incr, encode_meta_arithmetic, encode_meta_delete, encode_meta_get, encode_meta_noop,
    encode_meta_set, encode_meta_set_header, encode_stats, encode_store, encode_store_header,
    encode_touch, encode_version,
};
#[cfg(any(feature = "tokio", test))]
pub(crate) use parse::MetaSpans;
pub use parse::{
    Item, MAX_LINE_LEN, MetaReply, MetaStatus, RemainingTtl, Reply, ReturnFlags, parse_counter,
    parse_reply,
};

/// The longest key memcached accepts, in bytes.
pub const MAX_KEY_LEN: usize = 250;

/// The longest relative expiry memcached accepts (30 days, in seconds).
///
/// A larger `exptime` is read by the server as an absolute unix time.
pub const MAX_RELATIVE_EXPTIME: u64 = 60 * 60 * 24 * 30;

/// The largest `exptime` memcached reads correctly: `i32::MAX` (as an absolute
/// time, 2038-01-19). The server parses the field as a signed 32-bit number,
/// so a larger value turns negative and means "already expired".
pub const MAX_EXPTIME: u32 = i32::MAX as u32;

/// Why a key was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeyError {
    /// The key is empty.
    Empty,
    /// The key is longer than [`MAX_KEY_LEN`] bytes.
    TooLong {
        /// The key's length in bytes.
        len: usize,
    },
    /// The key holds a space, a control byte (`\r`, `\n`, ...) or DEL (0x7f).
    ForbiddenByte {
        /// The offending byte.
        byte: u8,
        /// Its offset in the key.
        index: usize,
    },
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::Empty => f.write_str("key is empty"),
            KeyError::TooLong { len } => {
                write!(f, "key is {len} bytes long, the limit is {MAX_KEY_LEN}")
            }
            KeyError::ForbiddenByte { byte, index } => {
                write!(f, "key has forbidden byte {byte:#04x} at offset {index}")
            }
        }
    }
}

impl std::error::Error for KeyError {}

/// Checks that `key` can be sent to memcached as a key.
///
/// A valid key is 1 to [`MAX_KEY_LEN`] bytes long and holds no byte at or
/// below 0x20 (space and every control character, `\r` and `\n` included)
/// and no DEL (0x7f). Bytes above 0x7f are allowed, as memcached allows them.
///
/// # Errors
///
/// Returns the first rule the key breaks, as a [`KeyError`].
pub fn validate_key(key: &[u8]) -> Result<(), KeyError> {
    if key.is_empty() {
        return Err(KeyError::Empty);
    }
    if key.len() > MAX_KEY_LEN {
        return Err(KeyError::TooLong { len: key.len() });
    }
    match key.iter().position(|&b| b <= b' ' || b == 0x7f) {
        Some(index) => Err(KeyError::ForbiddenByte {
            byte: key[index],
            index,
        }),
        None => Ok(()),
    }
}

/// A key that passed [`validate_key`]: the only kind of key the encoders take.
///
/// It can be made only through [`ValidKey::new`] (or its `TryFrom` forms), so
/// holding one proves the bytes are safe to put on a command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ValidKey<'a>(&'a [u8]);

impl<'a> ValidKey<'a> {
    /// Validates `key` and wraps it.
    ///
    /// # Errors
    ///
    /// Returns a [`KeyError`] when the key is empty, too long, or holds a
    /// forbidden byte (see [`validate_key`]).
    pub fn new(key: &'a [u8]) -> Result<Self, KeyError> {
        validate_key(key)?;
        Ok(ValidKey(key))
    }

    /// The key's bytes.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.0
    }
}

impl<'a> TryFrom<&'a [u8]> for ValidKey<'a> {
    type Error = KeyError;

    fn try_from(key: &'a [u8]) -> Result<Self, KeyError> {
        ValidKey::new(key)
    }
}

impl<'a> TryFrom<&'a str> for ValidKey<'a> {
    type Error = KeyError;

    fn try_from(key: &'a str) -> Result<Self, KeyError> {
        ValidKey::new(key.as_bytes())
    }
}

impl AsRef<[u8]> for ValidKey<'_> {
    fn as_ref(&self) -> &[u8] {
        self.0
    }
}

/// Converts a time-to-live into memcached's `exptime` field.
///
/// * A zero `ttl` gives 0, which memcached reads as "never expires".
/// * A `ttl` of at most 30 days ([`MAX_RELATIVE_EXPTIME`]) is sent as relative
///   seconds. A fractional second is rounded up, so 500 ms becomes 1 s rather
///   than 0 ("never").
/// * A longer `ttl` must be sent as an absolute unix time, because the server
///   reads any larger number that way: `now_unix_secs + ttl`, rounded up and
///   capped at [`MAX_EXPTIME`] (`i32::MAX`, January 2038).
///
/// The cap matters: memcached parses `exptime` (and the meta `T`, `N` and `R`
/// flags) as a signed 32-bit number, so anything above `i32::MAX` would wrap
/// to a negative time and the item would be stored already expired.
///
/// `now_unix_secs` is the caller's current unix time in seconds; passing it in
/// keeps this function pure. It is used only for TTLs over 30 days.
pub fn exptime(ttl: Duration, now_unix_secs: u64) -> u32 {
    if ttl.is_zero() {
        return 0;
    }
    let secs = ttl
        .as_secs()
        .saturating_add(u64::from(ttl.subsec_nanos() > 0));
    if secs <= MAX_RELATIVE_EXPTIME {
        // At most 2,592,000: always fits.
        return u32::try_from(secs).unwrap_or(u32::MAX);
    }
    let absolute = now_unix_secs
        .saturating_add(secs)
        .min(u64::from(MAX_EXPTIME));
    u32::try_from(absolute).unwrap_or(MAX_EXPTIME)
}

/// A reply that could not be parsed, or that does not fit the request.
///
/// After any of these the connection's byte stream can no longer be trusted:
/// it must be closed, not returned to a pool.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProtocolError {
    /// No line end within [`MAX_LINE_LEN`] bytes.
    LineTooLong {
        /// The limit that was exceeded, in bytes.
        limit: usize,
    },
    /// A `\n` not preceded by `\r`.
    BadLineEnding,
    /// The line does not start with any reply memcached sends.
    UnknownReply {
        /// The start of the line (at most 32 bytes, lossily decoded), for diagnosis.
        line: String,
    },
    /// A known reply with missing, extra or ill-formed fields.
    Malformed {
        /// The reply's name (`"VALUE"`, `"VA"`, ...).
        reply: &'static str,
    },
    /// A numeric field that is not a plain decimal number of the expected width.
    BadNumber {
        /// The field's name.
        field: &'static str,
    },
    /// A meta flag token that does not start with a letter, or whose value is ill-formed.
    BadMetaFlag {
        /// The token's first byte.
        flag: u8,
    },
    /// A data block announced as larger than the caller's limit.
    DataTooLarge {
        /// The announced size, in bytes.
        size: u64,
        /// The caller's limit, in bytes.
        max: usize,
    },
    /// A data block not followed by `\r\n`.
    MissingDataTerminator,
    /// A well-formed reply that the request being answered cannot produce
    /// (for example `STORED` in answer to `get`). Raised by the connection layer.
    UnexpectedReply {
        /// The reply's name, as given by [`Reply::name`].
        reply: &'static str,
    },
    /// A meta reply whose opaque token (`O`) or key (`k`) is not that of
    /// any request awaiting a reply on the connection, or that carries no
    /// token though its request did: an answer to another request, or one
    /// nobody asked for. Raised by the connection layer.
    UnmatchedReply {
        /// The reply's name, as given by [`Reply::name`].
        reply: &'static str,
    },
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::LineTooLong { limit } => {
                write!(f, "reply line longer than {limit} bytes")
            }
            ProtocolError::BadLineEnding => f.write_str("reply line ends in a bare \\n"),
            ProtocolError::UnknownReply { line } => write!(f, "unknown reply {line:?}"),
            ProtocolError::Malformed { reply } => write!(f, "malformed {reply} reply"),
            ProtocolError::BadNumber { field } => write!(f, "bad number in field {field}"),
            ProtocolError::BadMetaFlag { flag } => {
                write!(f, "bad meta flag token starting with {flag:#04x}")
            }
            ProtocolError::DataTooLarge { size, max } => {
                write!(f, "data block of {size} bytes exceeds the {max}-byte limit")
            }
            ProtocolError::MissingDataTerminator => {
                f.write_str("data block is not followed by \\r\\n")
            }
            ProtocolError::UnexpectedReply { reply } => {
                write!(f, "unexpected {reply} reply for this request")
            }
            ProtocolError::UnmatchedReply { reply } => {
                write!(f, "{reply} reply matches no request in flight")
            }
        }
    }
}

impl std::error::Error for ProtocolError {}
