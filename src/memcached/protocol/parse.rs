//! The incremental reply parser.
//!
//! [`parse_reply`] looks at the front of a buffer and returns one reply frame
//! and the number of bytes it took, `Ok(None)` if the frame is not complete
//! yet, or an error if the bytes cannot be a memcached reply. Every decision
//! depends only on the bytes of the frame itself, so feeding more bytes never
//! changes a result already given, and a malformed frame is an error however
//! it is split.

use super::ProtocolError;

/// The longest reply line accepted, `\r\n` included.
///
/// Real reply lines are far shorter (a `VALUE` line with a 250-byte key is
/// about 310 bytes); a peer that sends more without a line end is not a
/// memcached server, and the parser reports [`ProtocolError::LineTooLong`]
/// instead of asking for more bytes forever.
pub const MAX_LINE_LEN: usize = 8192;

/// One item of a `get`/`gets` reply: `VALUE <key> <flags> <bytes> [<cas>]\r\n<data>\r\n`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Item<'a> {
    /// The item's key.
    pub key: &'a [u8],
    /// The client flags stored with the item.
    pub flags: u32,
    /// The CAS unique (present in `gets` replies).
    pub cas: Option<u64>,
    /// The value, borrowed from the parsed buffer.
    pub data: &'a [u8],
}

/// The remaining time-to-live a meta reply reports (its `t` flag).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RemainingTtl {
    /// `t-1`: the item never expires.
    Never,
    /// The item expires in this many seconds.
    Seconds(u32),
}

/// The return flags of a meta reply.
///
/// Only the flags the request asked for are present; unknown flags from a
/// newer server are skipped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReturnFlags<'a> {
    /// `c`: the item's CAS unique.
    pub cas: Option<u64>,
    /// `f`: the item's client flags.
    pub client_flags: Option<u32>,
    /// `t`: the remaining TTL.
    pub ttl: Option<RemainingTtl>,
    /// `s`: the item's size in bytes.
    pub size: Option<u64>,
    /// `k`: the key, borrowed from the parsed buffer.
    pub key: Option<&'a [u8]>,
    /// `b`: the returned key is base64-encoded.
    pub base64_key: bool,
    /// `O`: the opaque number echoed from the request.
    pub opaque: Option<u32>,
    /// `h`: whether the item had been hit before this request.
    pub hit_before: Option<bool>,
    /// `l`: seconds since the item was last accessed.
    pub last_access: Option<u32>,
    /// `W`: this client won the right to recompute the value (after a miss
    /// with `N`, a recache with `R`, or on a stale item).
    pub won: bool,
    /// `X`: the item is stale (invalidated); its value may be outdated.
    pub stale: bool,
    /// `Z`: another client already holds the win flag; do not recompute.
    pub win_taken: bool,
}

/// The status code of a meta reply, with the data block for `VA`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaStatus<'a> {
    /// `VA <size>`: success with a value, borrowed from the parsed buffer.
    Value(&'a [u8]),
    /// `HD`: success without a value (hit, stored, deleted, ...).
    Success,
    /// `EN`: `mg` miss.
    Miss,
    /// `NF`: not found (`md`, `ma`, CAS or append `ms`).
    NotFound,
    /// `NS`: not stored (`ms` mode condition failed).
    NotStored,
    /// `EX`: CAS mismatch.
    Exists,
    /// `MN`: the answer to `mn`.
    NoOp,
}

/// A meta command reply: a status and its return flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetaReply<'a> {
    /// The status code (and value).
    pub status: MetaStatus<'a>,
    /// The return flags.
    pub flags: ReturnFlags<'a>,
}

/// One reply frame.
///
/// Multi-frame replies arrive as several frames: a `get` answer is zero or
/// more [`Reply::Value`] then [`Reply::End`]; a `stats` answer is
/// [`Reply::Stat`] lines then [`Reply::End`]. Which frames are acceptable
/// depends on the request, which the connection layer knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reply<'a> {
    /// `VALUE ...` and its data block.
    Value(Item<'a>),
    /// `END`: the end of a `get` or `stats` reply.
    End,
    /// `STAT <name> <value>`.
    Stat {
        /// The statistic's name.
        name: &'a [u8],
        /// The rest of the line (may be empty).
        value: &'a [u8],
    },
    /// `STORED`.
    Stored,
    /// `NOT_STORED`.
    NotStored,
    /// `EXISTS`.
    Exists,
    /// `NOT_FOUND`.
    NotFound,
    /// `DELETED`.
    Deleted,
    /// `TOUCHED`.
    Touched,
    /// `OK`.
    Ok,
    /// The new value after `incr`/`decr`.
    Number(u64),
    /// `VERSION <version>`.
    Version(&'a [u8]),
    /// A meta reply (`VA`, `HD`, `EN`, `NF`, `NS`, `EX`, `MN`).
    Meta(MetaReply<'a>),
    /// `ERROR [<message>]`: the server did not know the command.
    Error(&'a [u8]),
    /// `CLIENT_ERROR <message>`: the server refused the request.
    ClientError(&'a [u8]),
    /// `SERVER_ERROR <message>`: the server could not carry out the request.
    ServerError(&'a [u8]),
}

impl<'a> MetaReply<'a> {
    /// The value of a `VA` reply (borrowed from the parsed buffer), `None`
    /// for every other status.
    pub fn value(&self) -> Option<&'a [u8]> {
        match self.status {
            MetaStatus::Value(data) => Some(data),
            _ => None,
        }
    }
}

impl Reply<'_> {
    /// The reply's wire name (`"VALUE"`, `"STORED"`, `"VA"`, `"<number>"`, ...),
    /// for error messages such as [`ProtocolError::UnexpectedReply`].
    pub fn name(&self) -> &'static str {
        match self {
            Reply::Value(_) => "VALUE",
            Reply::End => "END",
            Reply::Stat { .. } => "STAT",
            Reply::Stored => "STORED",
            Reply::NotStored => "NOT_STORED",
            Reply::Exists => "EXISTS",
            Reply::NotFound => "NOT_FOUND",
            Reply::Deleted => "DELETED",
            Reply::Touched => "TOUCHED",
            Reply::Ok => "OK",
            Reply::Number(_) => "<number>",
            Reply::Version(_) => "VERSION",
            Reply::Meta(meta) => match meta.status {
                MetaStatus::Value(_) => "VA",
                MetaStatus::Success => "HD",
                MetaStatus::Miss => "EN",
                MetaStatus::NotFound => "NF",
                MetaStatus::NotStored => "NS",
                MetaStatus::Exists => "EX",
                MetaStatus::NoOp => "MN",
            },
            Reply::Error(_) => "ERROR",
            Reply::ClientError(_) => "CLIENT_ERROR",
            Reply::ServerError(_) => "SERVER_ERROR",
        }
    }
}

/// A parsed meta reply kept as positions in its frame, so that a driver
/// that parsed the frame (to find where it ends and whose it is) can hand
/// it on with the frame's bytes, and the receiver reads it back with
/// [`MetaSpans::resolve`] instead of parsing it again.
#[cfg(any(feature = "tokio", test))]
#[derive(Debug, Clone, Copy)]
pub(crate) struct MetaSpans {
    /// The status, with an empty value in place of a `VA`'s data.
    status: MetaStatus<'static>,
    /// Where a `VA`'s data is: start and length.
    value: Option<(usize, usize)>,
    /// The return flags, without the key.
    flags: ReturnFlags<'static>,
    /// Where the echoed key is: start and length.
    key: Option<(usize, usize)>,
    /// The frame's length.
    len: usize,
}

#[cfg(any(feature = "tokio", test))]
impl MetaSpans {
    /// `meta`, parsed from the front of `frame` as a frame of `len` bytes:
    /// `None` if a part of it is not inside `frame` (not parsed from it).
    pub(crate) fn new(meta: &MetaReply<'_>, frame: &[u8], len: usize) -> Option<MetaSpans> {
        let (status, value) = match meta.status {
            MetaStatus::Value(data) => (MetaStatus::Value(&[]), Some(span(data, frame)?)),
            MetaStatus::Success => (MetaStatus::Success, None),
            MetaStatus::Miss => (MetaStatus::Miss, None),
            MetaStatus::NotFound => (MetaStatus::NotFound, None),
            MetaStatus::NotStored => (MetaStatus::NotStored, None),
            MetaStatus::Exists => (MetaStatus::Exists, None),
            MetaStatus::NoOp => (MetaStatus::NoOp, None),
        };
        let key = match meta.flags.key {
            Some(key) => Some(span(key, frame)?),
            None => None,
        };
        Some(MetaSpans {
            status,
            value,
            flags: ReturnFlags {
                key: None,
                ..meta.flags
            },
            key,
            len,
        })
    }

    /// The frame's length.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The reply again, its parts borrowed from `frame` (the bytes it was
    /// parsed from, moved or shared since): `None` if `frame` is too short.
    pub(crate) fn resolve<'a>(&self, frame: &'a [u8]) -> Option<MetaReply<'a>> {
        let part = |(start, len): (usize, usize)| frame.get(start..start.checked_add(len)?);
        let status = match self.value {
            Some(value) => MetaStatus::Value(part(value)?),
            None => self.status,
        };
        let key = match self.key {
            Some(key) => Some(part(key)?),
            None => None,
        };
        Some(MetaReply {
            status,
            flags: ReturnFlags { key, ..self.flags },
        })
    }
}

/// Where `part` lies in `within`: its start and length, if it lies there.
#[cfg(any(feature = "tokio", test))]
fn span(part: &[u8], within: &[u8]) -> Option<(usize, usize)> {
    // Addresses compared, never dereferenced.
    let start = (part.as_ptr() as usize).checked_sub(within.as_ptr() as usize)?;
    (start.checked_add(part.len())? <= within.len()).then_some((start, part.len()))
}

/// The outcome of one parse step: a frame and its length, or "need more bytes".
type Parsed<'a> = Result<Option<(Reply<'a>, usize)>, ProtocolError>;

/// Parses one reply frame from the front of `buf`.
///
/// Returns `Ok(Some((reply, consumed)))` when a whole frame is present
/// (`consumed` bytes, `\r\n` included, always at least 3 and at most
/// `buf.len()`), or `Ok(None)` when `buf` holds only the start of a frame:
/// read more and call again with the same start. Replies sent back to back
/// (pipelining) are read by calling again on `&buf[consumed..]`.
///
/// `max_value` bounds the size of a data block (`VALUE` or `VA`): a larger
/// announced size is an error, raised before any byte of the block arrives,
/// so a hostile peer cannot make the caller buffer without limit.
///
/// # Errors
///
/// Any byte sequence that is not a memcached reply gives a [`ProtocolError`]:
/// an unknown reply, a malformed or overlong line, a bad number, a data block
/// over `max_value` or not followed by `\r\n`. The connection must then be
/// closed. Error lines sent by the server (`ERROR`, `CLIENT_ERROR`,
/// `SERVER_ERROR`) are not parse errors: they are returned as replies.
pub fn parse_reply(buf: &[u8], max_value: usize) -> Parsed<'_> {
    let Some((line, line_len)) = next_line(buf)? else {
        return Ok(None);
    };
    let (head, rest) = match line.iter().position(|&b| b == b' ') {
        Some(space) => (&line[..space], &line[space + 1..]),
        None => (line, &line[line.len()..]),
    };
    let bare = |reply: Reply<'static>, name: &'static str| -> Parsed<'static> {
        if is_blank(rest) {
            Ok(Some((reply, line_len)))
        } else {
            Err(ProtocolError::Malformed { reply: name })
        }
    };
    match head {
        b"VALUE" => parse_value(buf, rest, line_len, max_value),
        b"END" => bare(Reply::End, "END"),
        b"STAT" => parse_stat(rest, line_len),
        b"STORED" => bare(Reply::Stored, "STORED"),
        b"NOT_STORED" => bare(Reply::NotStored, "NOT_STORED"),
        b"EXISTS" => bare(Reply::Exists, "EXISTS"),
        b"NOT_FOUND" => bare(Reply::NotFound, "NOT_FOUND"),
        b"DELETED" => bare(Reply::Deleted, "DELETED"),
        b"TOUCHED" => bare(Reply::Touched, "TOUCHED"),
        b"OK" => bare(Reply::Ok, "OK"),
        b"VERSION" => Ok(Some((Reply::Version(rest), line_len))),
        b"ERROR" => Ok(Some((Reply::Error(rest), line_len))),
        b"CLIENT_ERROR" => Ok(Some((Reply::ClientError(rest), line_len))),
        b"SERVER_ERROR" => Ok(Some((Reply::ServerError(rest), line_len))),
        b"VA" => parse_meta_value(buf, rest, line_len, max_value),
        b"HD" => parse_meta(MetaStatus::Success, rest, line_len),
        b"EN" => parse_meta(MetaStatus::Miss, rest, line_len),
        b"NF" => parse_meta(MetaStatus::NotFound, rest, line_len),
        b"NS" => parse_meta(MetaStatus::NotStored, rest, line_len),
        b"EX" => parse_meta(MetaStatus::Exists, rest, line_len),
        b"MN" => parse_meta(MetaStatus::NoOp, rest, line_len),
        _ if head.first().is_some_and(u8::is_ascii_digit) => {
            // incr/decr: the new value, possibly padded with trailing spaces.
            if !is_blank(rest) {
                return Err(ProtocolError::Malformed { reply: "<number>" });
            }
            let value = parse_u64(head, "incr/decr value")?;
            Ok(Some((Reply::Number(value), line_len)))
        }
        _ => Err(ProtocolError::UnknownReply {
            line: String::from_utf8_lossy(&line[..line.len().min(32)]).into_owned(),
        }),
    }
}

/// Parses the decimal number in the data block of an `ma ... v` reply (or any
/// counter value): ASCII digits, optionally followed by spaces.
///
/// # Errors
///
/// [`ProtocolError::BadNumber`] if `data` is not a decimal number that fits in a `u64`.
pub fn parse_counter(data: &[u8]) -> Result<u64, ProtocolError> {
    let end = data
        .iter()
        .rposition(|&b| b != b' ')
        .map_or(0, |last| last + 1);
    parse_u64(&data[..end], "counter")
}

/// Finds the first line of `buf`: returns it without `\r\n`, and its length with `\r\n`.
fn next_line(buf: &[u8]) -> Result<Option<(&[u8], usize)>, ProtocolError> {
    let window = &buf[..buf.len().min(MAX_LINE_LEN)];
    match memchr::memchr(b'\n', window) {
        None if buf.len() >= MAX_LINE_LEN => Err(ProtocolError::LineTooLong {
            limit: MAX_LINE_LEN,
        }),
        None => Ok(None),
        Some(newline) => match newline.checked_sub(1) {
            Some(cr) if window[cr] == b'\r' => Ok(Some((&window[..cr], newline + 1))),
            _ => Err(ProtocolError::BadLineEnding),
        },
    }
}

fn is_blank(bytes: &[u8]) -> bool {
    bytes.iter().all(|&b| b == b' ')
}

/// Splits on spaces, skipping empty fields.
fn fields(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    bytes
        .split(|&b| b == b' ')
        .filter(|field| !field.is_empty())
}

/// A strict unsigned decimal: digits only, no sign, no overflow.
fn parse_u64(digits: &[u8], field: &'static str) -> Result<u64, ProtocolError> {
    if digits.is_empty() {
        return Err(ProtocolError::BadNumber { field });
    }
    digits.iter().try_fold(0u64, |acc, &b| {
        if !b.is_ascii_digit() {
            return Err(ProtocolError::BadNumber { field });
        }
        acc.checked_mul(10)
            .and_then(|acc| acc.checked_add(u64::from(b - b'0')))
            .ok_or(ProtocolError::BadNumber { field })
    })
}

fn parse_u32(digits: &[u8], field: &'static str) -> Result<u32, ProtocolError> {
    u32::try_from(parse_u64(digits, field)?).map_err(|_| ProtocolError::BadNumber { field })
}

/// Takes the `size`-byte data block that follows a `line_len`-byte line.
///
/// Returns the block and the frame's total length (line, block and `\r\n`).
fn data_block(
    buf: &[u8],
    line_len: usize,
    size: u64,
    max_value: usize,
) -> Result<Option<(&[u8], usize)>, ProtocolError> {
    let too_large = ProtocolError::DataTooLarge {
        size,
        max: max_value,
    };
    let size = match usize::try_from(size) {
        Ok(size) if size <= max_value => size,
        _ => return Err(too_large),
    };
    let data_end = line_len.checked_add(size).ok_or(too_large.clone())?;
    let frame_end = data_end.checked_add(2).ok_or(too_large)?;
    let (Some(data), Some(terminator)) =
        (buf.get(line_len..data_end), buf.get(data_end..frame_end))
    else {
        return Ok(None);
    };
    if terminator != b"\r\n" {
        return Err(ProtocolError::MissingDataTerminator);
    }
    Ok(Some((data, frame_end)))
}

/// `VALUE <key> <flags> <bytes> [<cas unique>]` and its data block.
fn parse_value<'a>(buf: &'a [u8], rest: &'a [u8], line_len: usize, max_value: usize) -> Parsed<'a> {
    let malformed = ProtocolError::Malformed { reply: "VALUE" };
    let mut fields = fields(rest);
    let (Some(key), Some(flags), Some(size)) = (fields.next(), fields.next(), fields.next()) else {
        return Err(malformed);
    };
    let cas = fields
        .next()
        .map(|cas| parse_u64(cas, "VALUE cas"))
        .transpose()?;
    if fields.next().is_some() {
        return Err(malformed);
    }
    let flags = parse_u32(flags, "VALUE flags")?;
    let size = parse_u64(size, "VALUE bytes")?;
    let Some((data, consumed)) = data_block(buf, line_len, size, max_value)? else {
        return Ok(None);
    };
    let item = Item {
        key,
        flags,
        cas,
        data,
    };
    Ok(Some((Reply::Value(item), consumed)))
}

/// `STAT <name> <value>`: the value is the rest of the line.
fn parse_stat(rest: &[u8], line_len: usize) -> Parsed<'_> {
    let (name, value) = match rest.iter().position(|&b| b == b' ') {
        Some(space) => (&rest[..space], &rest[space + 1..]),
        None => (rest, &rest[rest.len()..]),
    };
    if name.is_empty() {
        return Err(ProtocolError::Malformed { reply: "STAT" });
    }
    Ok(Some((Reply::Stat { name, value }, line_len)))
}

/// `VA <size> <flags>*` and its data block.
fn parse_meta_value<'a>(
    buf: &'a [u8],
    rest: &'a [u8],
    line_len: usize,
    max_value: usize,
) -> Parsed<'a> {
    let mut fields = fields(rest);
    let size = fields
        .next()
        .ok_or(ProtocolError::Malformed { reply: "VA" })?;
    let size = parse_u64(size, "VA size")?;
    let flags = return_flags(fields)?;
    let Some((data, consumed)) = data_block(buf, line_len, size, max_value)? else {
        return Ok(None);
    };
    let reply = MetaReply {
        status: MetaStatus::Value(data),
        flags,
    };
    Ok(Some((Reply::Meta(reply), consumed)))
}

/// A meta reply without a data block.
fn parse_meta<'a>(status: MetaStatus<'a>, rest: &'a [u8], line_len: usize) -> Parsed<'a> {
    let flags = return_flags(fields(rest))?;
    Ok(Some((Reply::Meta(MetaReply { status, flags }), line_len)))
}

/// Reads meta return flags: each field is a letter and an optional token.
fn return_flags<'a>(
    fields: impl Iterator<Item = &'a [u8]>,
) -> Result<ReturnFlags<'a>, ProtocolError> {
    let mut flags = ReturnFlags::default();
    for field in fields {
        let Some((&letter, token)) = field.split_first() else {
            continue;
        };
        let bad = || ProtocolError::BadMetaFlag { flag: letter };
        match letter {
            b'b' => flags.base64_key = true,
            b'c' => flags.cas = Some(parse_u64(token, "meta c")?),
            b'f' => flags.client_flags = Some(parse_u32(token, "meta f")?),
            b's' => flags.size = Some(parse_u64(token, "meta s")?),
            b'l' => flags.last_access = Some(parse_u32(token, "meta l")?),
            b'O' => flags.opaque = Some(parse_u32(token, "meta O")?),
            b't' => {
                flags.ttl = Some(if token == b"-1" {
                    RemainingTtl::Never
                } else {
                    RemainingTtl::Seconds(parse_u32(token, "meta t")?)
                });
            }
            b'h' => {
                flags.hit_before = Some(match token {
                    b"0" => false,
                    b"1" => true,
                    _ => return Err(bad()),
                });
            }
            b'k' => {
                if token.is_empty() {
                    return Err(bad());
                }
                flags.key = Some(token);
            }
            b'W' => flags.won = true,
            b'X' => flags.stale = true,
            b'Z' => flags.win_taken = true,
            // A flag this client never asks for (or a newer server's): skip it.
            _ if letter.is_ascii_alphabetic() => {}
            _ => return Err(bad()),
        }
    }
    Ok(flags)
}
