//! Request encoders. Each appends one complete request to the caller's buffer.
//!
//! Every key comes in as a [`ValidKey`] and every other field is a number or
//! a fixed token, so no encoder can emit a line break or a stray space in the
//! middle of a command line.

use super::ValidKey;

const CRLF: &[u8] = b"\r\n";
const NOREPLY: &[u8] = b" noreply";

/// Appends `n` in decimal, without allocating.
fn push_u64(out: &mut Vec<u8>, mut n: u64) {
    // u64::MAX has 20 decimal digits.
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        // `n % 10` is below 10, so the cast cannot truncate.
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[start..]);
}

/// Appends `" <n>"`.
fn push_arg(out: &mut Vec<u8>, n: u64) {
    out.push(b' ');
    push_u64(out, n);
}

/// Appends `" <letter>"` when `on`.
fn push_flag(out: &mut Vec<u8>, on: bool, letter: u8) {
    if on {
        out.push(b' ');
        out.push(letter);
    }
}

/// Appends `" <letter><n>"` when `value` is set.
fn push_token(out: &mut Vec<u8>, value: Option<u64>, letter: u8) {
    if let Some(n) = value {
        out.push(b' ');
        out.push(letter);
        push_u64(out, n);
    }
}

fn push_key(out: &mut Vec<u8>, key: ValidKey<'_>) {
    out.push(b' ');
    out.extend_from_slice(key.as_bytes());
}

fn push_noreply(out: &mut Vec<u8>, noreply: bool) {
    if noreply {
        out.extend_from_slice(NOREPLY);
    }
}

fn encode_retrieval<'k>(
    out: &mut Vec<u8>,
    command: &[u8],
    keys: impl IntoIterator<Item = ValidKey<'k>>,
) -> usize {
    let start = out.len();
    out.extend_from_slice(command);
    let mut count = 0;
    for key in keys {
        push_key(out, key);
        count += 1;
    }
    if count == 0 {
        // `get` with no key is a protocol error: send nothing instead.
        out.truncate(start);
    } else {
        out.extend_from_slice(CRLF);
    }
    count
}

/// Appends `get <key>*\r\n` and returns how many keys it holds.
///
/// With no keys nothing is written and 0 is returned: the server would answer
/// a bare `get` with `ERROR`. The reply is zero or more
/// [`Reply::Value`](super::Reply::Value) frames, then [`Reply::End`](super::Reply::End).
pub fn encode_get<'k>(out: &mut Vec<u8>, keys: impl IntoIterator<Item = ValidKey<'k>>) -> usize {
    encode_retrieval(out, b"get", keys)
}

/// Appends `gets <key>*\r\n` (like [`encode_get`], but each value carries its CAS).
///
/// With no keys nothing is written and 0 is returned.
pub fn encode_gets<'k>(out: &mut Vec<u8>, keys: impl IntoIterator<Item = ValidKey<'k>>) -> usize {
    encode_retrieval(out, b"gets", keys)
}

/// A classic text storage command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StoreCommand {
    /// `set`: store unconditionally.
    Set,
    /// `add`: store only if the key is absent.
    Add,
    /// `replace`: store only if the key is present.
    Replace,
    /// `append`: add the data after the existing value (flags and exptime are ignored by the server).
    Append,
    /// `prepend`: add the data before the existing value (flags and exptime are ignored by the server).
    Prepend,
    /// `cas`: store only if the item's CAS unique still equals this one.
    Cas(u64),
}

impl StoreCommand {
    fn name(self) -> &'static [u8] {
        match self {
            StoreCommand::Set => b"set",
            StoreCommand::Add => b"add",
            StoreCommand::Replace => b"replace",
            StoreCommand::Append => b"append",
            StoreCommand::Prepend => b"prepend",
            StoreCommand::Cas(_) => b"cas",
        }
    }
}

/// Appends only the command line of a storage command:
/// `<command> <key> <flags> <exptime> <len> [<cas unique>] [noreply]\r\n`.
///
/// The caller must follow it with exactly `len` data bytes and `\r\n`; this
/// split lets the I/O layer send a large value with a vectored write instead
/// of copying it. [`encode_store`] writes all three parts.
pub fn encode_store_header(
    out: &mut Vec<u8>,
    command: StoreCommand,
    key: ValidKey<'_>,
    flags: u32,
    exptime: u32,
    len: usize,
    noreply: bool,
) {
    out.extend_from_slice(command.name());
    push_key(out, key);
    push_arg(out, u64::from(flags));
    push_arg(out, u64::from(exptime));
    push_arg(out, len as u64);
    if let StoreCommand::Cas(unique) = command {
        push_arg(out, unique);
    }
    push_noreply(out, noreply);
    out.extend_from_slice(CRLF);
}

/// Appends a whole storage command: the command line, `data` and `\r\n`.
///
/// The reply is `STORED`, `NOT_STORED`, `EXISTS` or `NOT_FOUND` (none with
/// `noreply`, unless the server refuses the command). Checking `data` against
/// the server's item size limit is the caller's job.
pub fn encode_store(
    out: &mut Vec<u8>,
    command: StoreCommand,
    key: ValidKey<'_>,
    flags: u32,
    exptime: u32,
    data: &[u8],
    noreply: bool,
) {
    out.reserve(data.len() + 64);
    encode_store_header(out, command, key, flags, exptime, data.len(), noreply);
    out.extend_from_slice(data);
    out.extend_from_slice(CRLF);
}

/// Appends `delete <key> [noreply]\r\n`. The reply is `DELETED` or `NOT_FOUND`.
pub fn encode_delete(out: &mut Vec<u8>, key: ValidKey<'_>, noreply: bool) {
    out.extend_from_slice(b"delete");
    push_key(out, key);
    push_noreply(out, noreply);
    out.extend_from_slice(CRLF);
}

/// Appends `touch <key> <exptime> [noreply]\r\n`. The reply is `TOUCHED` or `NOT_FOUND`.
pub fn encode_touch(out: &mut Vec<u8>, key: ValidKey<'_>, exptime: u32, noreply: bool) {
    out.extend_from_slice(b"touch");
    push_key(out, key);
    push_arg(out, u64::from(exptime));
    push_noreply(out, noreply);
    out.extend_from_slice(CRLF);
}

fn encode_incr_decr(
    out: &mut Vec<u8>,
    command: &[u8],
    key: ValidKey<'_>,
    delta: u64,
    noreply: bool,
) {
    out.extend_from_slice(command);
    push_key(out, key);
    push_arg(out, delta);
    push_noreply(out, noreply);
    out.extend_from_slice(CRLF);
}

/// Appends `incr <key> <delta> [noreply]\r\n`.
///
/// The reply is the new value as a [`Reply::Number`](super::Reply::Number), or
/// `NOT_FOUND`. The server wraps around at 2^64.
pub fn encode_incr(out: &mut Vec<u8>, key: ValidKey<'_>, delta: u64, noreply: bool) {
    encode_incr_decr(out, b"incr", key, delta, noreply);
}

/// Appends `decr <key> <delta> [noreply]\r\n`.
///
/// The reply is the new value as a [`Reply::Number`](super::Reply::Number), or
/// `NOT_FOUND`. The server stops at 0.
pub fn encode_decr(out: &mut Vec<u8>, key: ValidKey<'_>, delta: u64, noreply: bool) {
    encode_incr_decr(out, b"decr", key, delta, noreply);
}

/// Appends `flush_all [delay] [noreply]\r\n`. The reply is `OK`.
pub fn encode_flush_all(out: &mut Vec<u8>, delay: Option<u32>, noreply: bool) {
    out.extend_from_slice(b"flush_all");
    if let Some(delay) = delay {
        push_arg(out, u64::from(delay));
    }
    push_noreply(out, noreply);
    out.extend_from_slice(CRLF);
}

/// Appends `version\r\n`. The reply is [`Reply::Version`](super::Reply::Version).
pub fn encode_version(out: &mut Vec<u8>) {
    out.extend_from_slice(b"version\r\n");
}

/// Appends `stats [<arg>]*\r\n` (for example `stats` or `stats settings`).
///
/// Each argument is a single token, checked by the same rules as a key. The
/// reply is [`Reply::Stat`](super::Reply::Stat) lines, then
/// [`Reply::End`](super::Reply::End).
pub fn encode_stats<'k>(out: &mut Vec<u8>, args: impl IntoIterator<Item = ValidKey<'k>>) {
    out.extend_from_slice(b"stats");
    for arg in args {
        push_key(out, arg);
    }
    out.extend_from_slice(CRLF);
}

/// Flags for a meta get, `mg <key> <flags>*\r\n`.
///
/// Each `bool` asks for one return flag; each `Some` adds a flag with a token.
/// The default asks for nothing: a hit then answers a bare `HD`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct MetaGetFlags {
    /// `v`: return the value (the reply becomes `VA <size> ...` plus a data block).
    pub value: bool,
    /// `c`: return the item's CAS unique.
    pub cas: bool,
    /// `f`: return the item's client flags.
    pub flags: bool,
    /// `t`: return the remaining TTL in seconds (`-1` for none).
    pub ttl: bool,
    /// `s`: return the item's size.
    pub size: bool,
    /// `k`: return the key.
    pub key: bool,
    /// `h`: return whether the item was hit before (`0` or `1`).
    pub hit: bool,
    /// `l`: return the seconds since the item was last accessed.
    pub last_access: bool,
    /// `O<opaque>`: a number the server echoes back, to match pipelined replies.
    pub opaque: Option<u32>,
    /// `q`: quiet mode, suppress the `EN` reply on a miss.
    pub quiet: bool,
    /// `N<ttl>`: on a miss, create an empty item with this TTL and hand the
    /// caller the win flag `W` (it should recompute the value).
    pub vivify_ttl: Option<u32>,
    /// `R<ttl>`: if the remaining TTL is below this, hand one caller the win
    /// flag `W` so it recomputes the value early.
    pub recache_ttl: Option<u32>,
    /// `T<ttl>`: update the item's TTL.
    pub update_ttl: Option<u32>,
}

impl MetaGetFlags {
    /// These flags, asking for the key (`k`) and carrying `opaque` (`O`):
    /// what a reply must echo to be matched to its request.
    #[must_use]
    pub fn tagged(self, opaque: u32) -> MetaGetFlags {
        MetaGetFlags {
            key: true,
            opaque: Some(opaque),
            ..self
        }
    }
}

/// Appends `mg <key> <flags>*\r\n`.
///
/// The reply is `VA` (with a value), `HD` (hit, no value asked), or `EN`
/// (miss), as [`Reply::Meta`](super::Reply::Meta).
pub fn encode_meta_get(out: &mut Vec<u8>, key: ValidKey<'_>, flags: &MetaGetFlags) {
    out.extend_from_slice(b"mg");
    push_key(out, key);
    push_flag(out, flags.value, b'v');
    push_flag(out, flags.cas, b'c');
    push_flag(out, flags.flags, b'f');
    push_flag(out, flags.ttl, b't');
    push_flag(out, flags.size, b's');
    push_flag(out, flags.key, b'k');
    push_flag(out, flags.hit, b'h');
    push_flag(out, flags.last_access, b'l');
    push_token(out, flags.opaque.map(u64::from), b'O');
    push_flag(out, flags.quiet, b'q');
    push_token(out, flags.vivify_ttl.map(u64::from), b'N');
    push_token(out, flags.recache_ttl.map(u64::from), b'R');
    push_token(out, flags.update_ttl.map(u64::from), b'T');
    out.extend_from_slice(CRLF);
}

/// The storage mode of a meta set (its `M` flag).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum MetaSetMode {
    /// Store unconditionally (the server's default; no `M` flag is sent).
    #[default]
    Set,
    /// `ME`: store only if the key is absent (like `add`).
    Add,
    /// `MR`: store only if the key is present (like `replace`).
    Replace,
    /// `MA`: append to the existing value.
    Append,
    /// `MP`: prepend to the existing value.
    Prepend,
}

/// Flags for a meta set, `ms <key> <datalen> <flags>*\r\n<data>\r\n`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct MetaSetFlags {
    /// `M<mode>`: the storage mode.
    pub mode: MetaSetMode,
    /// `T<ttl>`: the item's exptime (see [`exptime`](super::exptime)); none means 0, never expire.
    pub ttl: Option<u32>,
    /// `F<flags>`: the client flags stored with the item.
    pub client_flags: Option<u32>,
    /// `C<cas>`: store only if the item's CAS unique equals this one.
    pub compare_cas: Option<u64>,
    /// `I`: invalidate; with `C`, a CAS older than the item's marks it stale instead of failing.
    pub invalidate: bool,
    /// `c`: return the new item's CAS unique.
    pub return_cas: bool,
    /// `q`: quiet mode, suppress the `HD` reply on success.
    pub quiet: bool,
    /// `k`: return the key (memcached 1.6 echoes it on every reply).
    pub key: bool,
    /// `O<opaque>`: a number the server echoes back.
    pub opaque: Option<u32>,
}

impl MetaSetFlags {
    /// These flags, asking for the key (`k`) and carrying `opaque` (`O`):
    /// what a reply must echo to be matched to its request.
    #[must_use]
    pub fn tagged(self, opaque: u32) -> MetaSetFlags {
        MetaSetFlags {
            key: true,
            opaque: Some(opaque),
            ..self
        }
    }
}

/// Appends only the command line of a meta set: `ms <key> <len> <flags>*\r\n`.
///
/// The caller must follow it with exactly `len` data bytes and `\r\n`
/// ([`encode_meta_set`] writes all three).
pub fn encode_meta_set_header(
    out: &mut Vec<u8>,
    key: ValidKey<'_>,
    len: usize,
    flags: &MetaSetFlags,
) {
    out.extend_from_slice(b"ms");
    push_key(out, key);
    push_arg(out, len as u64);
    push_token(out, flags.ttl.map(u64::from), b'T');
    push_token(out, flags.client_flags.map(u64::from), b'F');
    push_token(out, flags.compare_cas, b'C');
    push_flag(out, flags.invalidate, b'I');
    push_flag(out, flags.return_cas, b'c');
    push_flag(out, flags.quiet, b'q');
    push_flag(out, flags.key, b'k');
    push_token(out, flags.opaque.map(u64::from), b'O');
    let mode = match flags.mode {
        MetaSetMode::Set => None,
        MetaSetMode::Add => Some(b'E'),
        MetaSetMode::Replace => Some(b'R'),
        MetaSetMode::Append => Some(b'A'),
        MetaSetMode::Prepend => Some(b'P'),
    };
    if let Some(mode) = mode {
        out.extend_from_slice(&[b' ', b'M', mode]);
    }
    out.extend_from_slice(CRLF);
}

/// Appends a whole meta set: the command line, `data` and `\r\n`.
///
/// The reply is `HD` (stored), `NS` (not stored), `EX` (CAS mismatch) or `NF`
/// (not found, for CAS or append/prepend), as [`Reply::Meta`](super::Reply::Meta).
pub fn encode_meta_set(out: &mut Vec<u8>, key: ValidKey<'_>, data: &[u8], flags: &MetaSetFlags) {
    out.reserve(data.len() + 64);
    encode_meta_set_header(out, key, data.len(), flags);
    out.extend_from_slice(data);
    out.extend_from_slice(CRLF);
}

/// Flags for a meta delete, `md <key> <flags>*\r\n`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct MetaDeleteFlags {
    /// `C<cas>`: delete only if the item's CAS unique equals this one.
    pub compare_cas: Option<u64>,
    /// `I`: invalidate: mark the item stale instead of removing it.
    pub invalidate: bool,
    /// `T<ttl>`: with `I`, the stale item's new TTL.
    pub ttl: Option<u32>,
    /// `q`: quiet mode, suppress the `HD` reply on success.
    pub quiet: bool,
    /// `k`: return the key (memcached 1.6 echoes it on every reply).
    pub key: bool,
    /// `O<opaque>`: a number the server echoes back.
    pub opaque: Option<u32>,
}

impl MetaDeleteFlags {
    /// These flags, asking for the key (`k`) and carrying `opaque` (`O`):
    /// what a reply must echo to be matched to its request.
    #[must_use]
    pub fn tagged(self, opaque: u32) -> MetaDeleteFlags {
        MetaDeleteFlags {
            key: true,
            opaque: Some(opaque),
            ..self
        }
    }
}

/// Appends `md <key> <flags>*\r\n`.
///
/// The reply is `HD` (deleted), `NF` (not found) or `EX` (CAS mismatch).
pub fn encode_meta_delete(out: &mut Vec<u8>, key: ValidKey<'_>, flags: &MetaDeleteFlags) {
    out.extend_from_slice(b"md");
    push_key(out, key);
    push_token(out, flags.compare_cas, b'C');
    push_flag(out, flags.invalidate, b'I');
    push_token(out, flags.ttl.map(u64::from), b'T');
    push_flag(out, flags.quiet, b'q');
    push_flag(out, flags.key, b'k');
    push_token(out, flags.opaque.map(u64::from), b'O');
    out.extend_from_slice(CRLF);
}

/// The direction of a meta arithmetic command (its `M` flag).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum ArithmeticMode {
    /// `MI`: increment (the server's default; no `M` flag is sent).
    #[default]
    Incr,
    /// `MD`: decrement (stops at 0).
    Decr,
}

/// Flags for a meta arithmetic command, `ma <key> <flags>*\r\n`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct MetaArithmeticFlags {
    /// `M<mode>`: increment or decrement.
    pub mode: ArithmeticMode,
    /// `D<delta>`: the amount (the server's default is 1).
    pub delta: Option<u64>,
    /// `N<ttl>`: on a miss, create the item with this TTL (auto-vivify).
    pub vivify_ttl: Option<u32>,
    /// `J<initial>`: the value an auto-vivified item starts with (default 0).
    pub initial: Option<u64>,
    /// `T<ttl>`: update the item's TTL.
    pub update_ttl: Option<u32>,
    /// `v`: return the new value (the reply becomes `VA` with the number as data).
    pub value: bool,
    /// `c`: return the item's CAS unique.
    pub cas: bool,
    /// `t`: return the remaining TTL.
    pub ttl: bool,
    /// `q`: quiet mode, suppress the `HD` reply on success.
    pub quiet: bool,
    /// `k`: return the key (memcached 1.6 echoes it on every reply).
    pub key: bool,
    /// `O<opaque>`: a number the server echoes back.
    pub opaque: Option<u32>,
}

impl MetaArithmeticFlags {
    /// These flags, asking for the key (`k`) and carrying `opaque` (`O`):
    /// what a reply must echo to be matched to its request.
    #[must_use]
    pub fn tagged(self, opaque: u32) -> MetaArithmeticFlags {
        MetaArithmeticFlags {
            key: true,
            opaque: Some(opaque),
            ..self
        }
    }
}

/// Appends `ma <key> <flags>*\r\n`.
///
/// The reply is `HD`, or `VA` with the new value as decimal data when
/// [`MetaArithmeticFlags::value`] is set (read it with
/// [`parse_counter`](super::parse_counter)), or `NF` (not found).
pub fn encode_meta_arithmetic(out: &mut Vec<u8>, key: ValidKey<'_>, flags: &MetaArithmeticFlags) {
    out.extend_from_slice(b"ma");
    push_key(out, key);
    if flags.mode == ArithmeticMode::Decr {
        out.extend_from_slice(b" MD");
    }
    push_token(out, flags.delta, b'D');
    push_token(out, flags.vivify_ttl.map(u64::from), b'N');
    push_token(out, flags.initial, b'J');
    push_token(out, flags.update_ttl.map(u64::from), b'T');
    push_flag(out, flags.value, b'v');
    push_flag(out, flags.cas, b'c');
    push_flag(out, flags.ttl, b't');
    push_flag(out, flags.quiet, b'q');
    push_flag(out, flags.key, b'k');
    push_token(out, flags.opaque.map(u64::from), b'O');
    out.extend_from_slice(CRLF);
}

/// Appends `mn\r\n`, the meta no-op.
///
/// The server answers `MN` after every earlier reply on the connection, so it
/// marks the end of a pipeline of quiet (`q`) meta commands.
pub fn encode_meta_noop(out: &mut Vec<u8>) {
    out.extend_from_slice(b"mn\r\n");
}
