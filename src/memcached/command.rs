//! Single-key commands as values: what each sends, and what its reply
//! means. Pure: no socket, no clock, no sleeping. A driver (today the
//! blocking client's `single`) routes the key, sends [`Command::encode`]'s
//! bytes on a connection and hands the matched reply to [`Command::read`];
//! an async driver runs the same commands.

use std::borrow::Cow;
use std::marker::PhantomData;
use std::time::Duration;

use serde::de::DeserializeOwned;

use super::error::{Error, Result};
use super::protocol::{
    MetaArithmeticFlags, MetaDeleteFlags, MetaGetFlags, MetaReply, MetaSetFlags, MetaSetMode,
    MetaStatus, ProtocolError, RemainingTtl, Reply, ReturnFlags, ValidKey, encode_meta_arithmetic,
    encode_meta_delete, encode_meta_get, encode_meta_set, parse_counter,
};
use crate::codec::Codec;

/// A CAS unique: the version stamp memcached gives each stored item.
///
/// Read it with [`Client::gets`](super::Client::gets),
/// [`Client::meta_get`](super::Client::meta_get) or
/// [`Client::cas_only`](super::Client::cas_only), or get it back from a
/// write with [`Client::set_returning_cas`](super::Client::set_returning_cas)
/// or [`Client::compare_and_set`](super::Client::compare_and_set); pass it to
/// [`Client::cas`](super::Client::cas) or `compare_and_set` to store only if
/// the item was not changed since.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cas(pub u64);

/// A value read by [`Client::meta_get`](super::Client::meta_get), with its
/// CAS unique and remaining TTL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaItem<V> {
    /// The decoded value.
    pub value: V,
    /// The item's CAS unique.
    pub cas: Cas,
    /// The time the item has left to live; `None` when it never expires.
    pub ttl: Option<Duration>,
}

/// The outcome of [`Client::get_or_lease`](super::Client::get_or_lease): a
/// value, or who should compute it.
///
/// Built on memcached's meta get with the vivify (`N`) flag: on a miss the
/// server creates an empty placeholder and hands exactly one caller the win
/// flag (`W`); callers arriving meanwhile see the placeholder with `Z` (win
/// taken). After [`Client::invalidate`](super::Client::invalidate) the old
/// value is kept but marked stale (`X`), and again one caller wins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lease<V> {
    /// A value to use. `stale` is set when the item was invalidated and
    /// another caller is already recomputing it: the value may be outdated.
    Hit {
        /// The decoded value.
        value: V,
        /// The item's CAS unique.
        cas: Cas,
        /// Whether the value was marked stale.
        stale: bool,
        /// The time the item has left to live; `None` when it never expires.
        ttl: Option<Duration>,
    },
    /// This caller holds the lease: compute the value and store it with
    /// [`Client::cas`](super::Client::cas) and `cas`, so that a write or
    /// removal made while it was computed is not undone (`Ok(false)`: keep
    /// the value to yourself).
    ///
    /// `previous` is the value still stored when there is one (after an
    /// invalidation, or an early recache), which may be served meanwhile.
    Won {
        /// The outdated value, if the item had one that decodes as `V`
        /// (`None` as well when the stored bytes do not decode: the lease
        /// is not lost to a codec error).
        previous: Option<V>,
        /// The CAS unique of the placeholder or outdated item.
        cas: Cas,
    },
    /// Another caller holds the lease and no value exists yet: wait and
    /// retry, or compute without storing.
    Wait,
}

/// The CAS unique and remaining TTL (`None`: never expires) of an item read
/// through a lease request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Seen {
    pub(crate) cas: Cas,
    pub(crate) ttl: Option<Duration>,
}

/// The outcome of a meta set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stored {
    /// `HD`: stored, with the new CAS unique when the reply has one.
    Yes(Option<Cas>),
    /// `NS`, `EX` or `NF`: the server declined to store it.
    No,
}

/// What a single-key request does to its item: whether it may be sent
/// again after a stale pooled connection (see `Pool::run`), and whether a
/// failure leaves the server owing an invalidation of the key (see
/// [`pending`](super::pending)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// Reads only: safe to send twice.
    Read,
    /// Changes state a resend would change again (a recompute token, a
    /// counter), and nothing a stale copy could undo.
    ReadOnce,
    /// Writes or removes the item, unconditionally: safe to send twice.
    Write,
    /// Writes conditionally (a CAS, `add`): not sent twice.
    WriteOnce,
    /// Asks for a lease (`mg ... N`): creates a placeholder on a miss, so
    /// not sent twice, and a failed one leaves its server owing the key
    /// (the placeholder may still be made). No value is written: servers
    /// ahead in the failover order owe nothing for it.
    Lease,
}

impl Access {
    pub(crate) fn idempotent(self) -> bool {
        matches!(self, Access::Read | Access::Write)
    }

    pub(crate) fn writes(self) -> bool {
        matches!(self, Access::Write | Access::WriteOnce)
    }
}

/// One single-key request and the meaning of its reply.
pub(crate) trait Command {
    /// What the reply becomes.
    type Output;

    /// What the request does to its item.
    fn access(&self) -> Access;

    /// Appends the request for `key`, carrying `opaque` (and asking for the
    /// key back), which its reply must echo to be matched to it.
    fn encode(&self, out: &mut Vec<u8>, key: ValidKey<'_>, opaque: u32);

    /// The result its (matched) reply gives.
    ///
    /// # Errors
    ///
    /// The server's error lines as [`Error::from_reply`] maps them, a reply
    /// this request cannot get as a protocol error, and codec errors.
    fn read(&self, reply: Reply<'_>) -> Result<Self::Output>;

    /// The size of the value it stores, if it stores one: checked against
    /// the item size limit before it is routed (`Core::begin`).
    fn stored_len(&self) -> Option<usize> {
        None
    }
}

/// The meta status of a reply, `None` for any other reply.
pub(crate) fn meta_status<'a>(reply: &Reply<'a>) -> Option<MetaStatus<'a>> {
    match reply {
        Reply::Meta(meta) => Some(meta.status),
        _ => None,
    }
}

pub(crate) fn cas_of(flags: &ReturnFlags<'_>) -> Result<Cas> {
    flags
        .cas
        .map(Cas)
        .ok_or(Error::Protocol(ProtocolError::Malformed { reply: "VA" }))
}

pub(crate) fn ttl_of(flags: &ReturnFlags<'_>) -> Result<Option<Duration>> {
    match flags.ttl {
        Some(RemainingTtl::Never) => Ok(None),
        Some(RemainingTtl::Seconds(secs)) => Ok(Some(Duration::from_secs(u64::from(secs)))),
        None => Err(Error::Protocol(ProtocolError::Malformed { reply: "VA" })),
    }
}

fn client_flags_of(flags: &ReturnFlags<'_>) -> Result<u32> {
    flags
        .client_flags
        .ok_or(Error::Protocol(ProtocolError::Malformed { reply: "VA" }))
}

/// Decodes a value with `codec` and the reply's client flags.
pub(crate) fn decode<C: Codec, V: DeserializeOwned>(
    codec: &C,
    data: &[u8],
    flags: &ReturnFlags<'_>,
) -> Result<V> {
    Ok(codec.decode(data, client_flags_of(flags)?)?)
}

/// A value reply's data and flags, `None` for a miss.
fn value_or_miss<'r>(reply: Reply<'r>) -> Result<Option<(&'r [u8], ReturnFlags<'r>)>> {
    match reply {
        Reply::Meta(MetaReply {
            status: MetaStatus::Value(data),
            flags,
        }) => Ok(Some((data, flags))),
        Reply::Meta(MetaReply {
            status: MetaStatus::Miss,
            ..
        }) => Ok(None),
        other => Err(Error::from_reply(&other)),
    }
}

/// `mg <key> v f`: the value, decoded.
pub(crate) struct Get<'c, C, V> {
    pub(crate) codec: &'c C,
    pub(crate) value: PhantomData<fn() -> V>,
}

impl<C: Codec, V: DeserializeOwned> Command for Get<'_, C, V> {
    type Output = Option<V>;

    fn access(&self) -> Access {
        Access::Read
    }

    fn encode(&self, out: &mut Vec<u8>, key: ValidKey<'_>, opaque: u32) {
        encode_value_get(out, key, opaque);
    }

    fn read(&self, reply: Reply<'_>) -> Result<Option<V>> {
        value_or_miss(reply)?
            .map(|(data, flags)| decode(self.codec, data, &flags))
            .transpose()
    }
}

/// `mg <key> v f c t`: the value, decoded, with its CAS and TTL.
pub(crate) struct GetItem<'c, C, V> {
    pub(crate) codec: &'c C,
    pub(crate) value: PhantomData<fn() -> V>,
}

impl<C: Codec, V: DeserializeOwned> Command for GetItem<'_, C, V> {
    type Output = Option<MetaItem<V>>;

    fn access(&self) -> Access {
        Access::Read
    }

    fn encode(&self, out: &mut Vec<u8>, key: ValidKey<'_>, opaque: u32) {
        let flags = MetaGetFlags {
            value: true,
            flags: true,
            cas: true,
            ttl: true,
            ..MetaGetFlags::default()
        };
        encode_meta_get(out, key, &flags.tagged(opaque));
    }

    fn read(&self, reply: Reply<'_>) -> Result<Option<MetaItem<V>>> {
        value_or_miss(reply)?
            .map(|(data, flags)| {
                Ok(MetaItem {
                    value: decode(self.codec, data, &flags)?,
                    cas: cas_of(&flags)?,
                    ttl: ttl_of(&flags)?,
                })
            })
            .transpose()
    }
}

/// `mg <key> v f`: the bytes and client flags, undecoded.
pub(crate) struct GetRaw;

impl Command for GetRaw {
    type Output = Option<(Vec<u8>, u32)>;

    fn access(&self) -> Access {
        Access::Read
    }

    fn encode(&self, out: &mut Vec<u8>, key: ValidKey<'_>, opaque: u32) {
        encode_value_get(out, key, opaque);
    }

    fn read(&self, reply: Reply<'_>) -> Result<Self::Output> {
        value_or_miss(reply)?
            .map(|(data, flags)| Ok((data.to_vec(), client_flags_of(&flags)?)))
            .transpose()
    }
}

/// `mg <key> v f`, tagged: a plain value read ([`Get`], [`GetRaw`]).
fn encode_value_get(out: &mut Vec<u8>, key: ValidKey<'_>, opaque: u32) {
    let flags = MetaGetFlags {
        value: true,
        flags: true,
        ..MetaGetFlags::default()
    };
    encode_meta_get(out, key, &flags.tagged(opaque));
}

/// `mg <key> c`: the CAS unique only.
pub(crate) struct CasOnly;

impl Command for CasOnly {
    type Output = Option<Cas>;

    fn access(&self) -> Access {
        Access::Read
    }

    fn encode(&self, out: &mut Vec<u8>, key: ValidKey<'_>, opaque: u32) {
        let flags = MetaGetFlags {
            cas: true,
            ..MetaGetFlags::default()
        };
        encode_meta_get(out, key, &flags.tagged(opaque));
    }

    fn read(&self, reply: Reply<'_>) -> Result<Option<Cas>> {
        match reply {
            Reply::Meta(MetaReply {
                status: MetaStatus::Success,
                flags,
            }) => cas_of(&flags).map(Some),
            Reply::Meta(MetaReply {
                status: MetaStatus::Miss,
                ..
            }) => Ok(None),
            other => Err(Error::from_reply(&other)),
        }
    }
}

/// `mg <key> T<exptime>`: a new TTL (unlike the text `touch`, its reply
/// carries the key and token to match); `false` for a miss.
pub(crate) struct Touch {
    pub(crate) exptime: u32,
}

impl Command for Touch {
    type Output = bool;

    /// Not recorded as a write: a touch the server missed leaves no older
    /// value to be read.
    fn access(&self) -> Access {
        Access::Read
    }

    fn encode(&self, out: &mut Vec<u8>, key: ValidKey<'_>, opaque: u32) {
        let flags = MetaGetFlags {
            update_ttl: Some(self.exptime),
            ..MetaGetFlags::default()
        };
        encode_meta_get(out, key, &flags.tagged(opaque));
    }

    fn read(&self, reply: Reply<'_>) -> Result<bool> {
        match meta_status(&reply) {
            Some(MetaStatus::Success) => Ok(true),
            Some(MetaStatus::Miss) => Ok(false),
            _ => Err(Error::from_reply(&reply)),
        }
    }
}

/// `ma <key> ...`: an increment or decrement, the new number back; `None`
/// for a miss.
pub(crate) struct Arithmetic {
    pub(crate) flags: MetaArithmeticFlags,
}

impl Command for Arithmetic {
    type Output = Option<u64>;

    fn access(&self) -> Access {
        Access::ReadOnce
    }

    fn encode(&self, out: &mut Vec<u8>, key: ValidKey<'_>, opaque: u32) {
        encode_meta_arithmetic(out, key, &self.flags.tagged(opaque));
    }

    fn read(&self, reply: Reply<'_>) -> Result<Option<u64>> {
        match meta_status(&reply) {
            Some(MetaStatus::Value(number)) => Ok(Some(parse_counter(number)?)),
            Some(MetaStatus::NotFound) => Ok(None),
            _ => Err(Error::from_reply(&reply)),
        }
    }
}

/// `md <key> ...`: a removal, or with `I` a stale-marking; `false` when the
/// key held nothing or its CAS did not match.
pub(crate) struct Delete {
    pub(crate) flags: MetaDeleteFlags,
}

impl Command for Delete {
    type Output = bool;

    fn access(&self) -> Access {
        if self.flags.compare_cas.is_some() {
            Access::WriteOnce
        } else {
            Access::Write
        }
    }

    fn encode(&self, out: &mut Vec<u8>, key: ValidKey<'_>, opaque: u32) {
        encode_meta_delete(out, key, &self.flags.tagged(opaque));
    }

    fn read(&self, reply: Reply<'_>) -> Result<bool> {
        match meta_status(&reply) {
            Some(MetaStatus::Success) => Ok(true),
            Some(MetaStatus::NotFound | MetaStatus::Exists) => Ok(false),
            _ => Err(Error::from_reply(&reply)),
        }
    }
}

/// `ms <key> <len> ...`: a store of already encoded bytes (checked against
/// the item limit, with its key, by `Core::begin`: see `stored_len`).
pub(crate) struct Store<'d> {
    pub(crate) data: Cow<'d, [u8]>,
    pub(crate) flags: MetaSetFlags,
}

impl Command for Store<'_> {
    type Output = Stored;

    fn access(&self) -> Access {
        if self.flags.compare_cas.is_none() && self.flags.mode != MetaSetMode::Add {
            Access::Write
        } else {
            Access::WriteOnce
        }
    }

    fn encode(&self, out: &mut Vec<u8>, key: ValidKey<'_>, opaque: u32) {
        encode_meta_set(out, key, &self.data, &self.flags.tagged(opaque));
    }

    fn stored_len(&self) -> Option<usize> {
        Some(self.data.len())
    }

    fn read(&self, reply: Reply<'_>) -> Result<Stored> {
        match reply {
            Reply::Meta(MetaReply {
                status: MetaStatus::Success,
                flags,
            }) => Ok(Stored::Yes(flags.cas.map(Cas))),
            Reply::Meta(MetaReply {
                status: MetaStatus::NotStored | MetaStatus::Exists | MetaStatus::NotFound,
                ..
            }) => Ok(Stored::No),
            other => Err(Error::from_reply(&other)),
        }
    }
}

/// The meta get behind the lease family: `vivify` and `recache_ttl` are the
/// `N` and `R` tokens; `with_value` asks for the data block (else the item's
/// size tells a placeholder apart); `decode` turns a value's bytes into `V`.
pub(crate) struct LeaseRead<F> {
    pub(crate) vivify: Option<u32>,
    pub(crate) recache_ttl: Option<u32>,
    pub(crate) with_value: bool,
    pub(crate) decode: F,
}

impl<V, F: Fn(&[u8], &ReturnFlags<'_>) -> Result<V>> Command for LeaseRead<F> {
    type Output = Option<(Lease<V>, Seen)>;

    /// With `N` a lease: a request that failed may still create a
    /// placeholder nobody fills, so its server owes the key.
    fn access(&self) -> Access {
        if self.vivify.is_some() {
            Access::Lease
        } else {
            Access::ReadOnce
        }
    }

    fn encode(&self, out: &mut Vec<u8>, key: ValidKey<'_>, opaque: u32) {
        let flags = MetaGetFlags {
            value: self.with_value,
            flags: true,
            cas: true,
            ttl: true,
            size: !self.with_value,
            vivify_ttl: self.vivify,
            recache_ttl: self.recache_ttl,
            ..MetaGetFlags::default()
        };
        encode_meta_get(out, key, &flags.tagged(opaque));
    }

    fn read(&self, reply: Reply<'_>) -> Result<Self::Output> {
        let with_value = self.with_value;
        let (data, flags) = match reply {
            Reply::Meta(MetaReply {
                status: MetaStatus::Value(data),
                flags,
            }) if with_value => (data, flags),
            Reply::Meta(MetaReply {
                status: MetaStatus::Success,
                flags,
            }) if !with_value => (&[][..], flags),
            Reply::Meta(MetaReply {
                status: MetaStatus::Miss,
                ..
            }) => return Ok(None),
            other => return Err(Error::from_reply(&other)),
        };
        let cas = cas_of(&flags)?;
        let seen = Seen {
            cas,
            ttl: ttl_of(&flags)?,
        };
        let empty = if with_value {
            data.is_empty()
        } else {
            flags.size == Some(0)
        };
        // A vivified placeholder: empty with client flags 0, stale or not (a
        // placeholder invalidated while its lease is held is still no value).
        let placeholder = empty && flags.client_flags == Some(0);
        if flags.won {
            // The server handed this caller the lease: keep it even when the
            // outdated value does not decode (written by another client, or
            // an older version of `V`).
            let previous = if placeholder {
                None
            } else {
                match (self.decode)(data, &flags) {
                    Ok(value) => Some(value),
                    Err(Error::Codec(_)) => None,
                    Err(e) => return Err(e),
                }
            };
            Ok(Some((Lease::Won { previous, cas }, seen)))
        } else if placeholder && (flags.win_taken || flags.stale) {
            Ok(Some((Lease::Wait, seen)))
        } else {
            let hit = Lease::Hit {
                value: (self.decode)(data, &flags)?,
                cas,
                stale: flags.stale,
                ttl: seen.ttl,
            };
            Ok(Some((hit, seen)))
        }
    }
}

/// A command whose result is turned into another by `then` (an operation's
/// own reading of a command's outcome: a declined store as an error, say).
pub(crate) struct Then<Cmd, F> {
    pub(crate) cmd: Cmd,
    pub(crate) then: F,
}

impl<Cmd: Command, T, F: Fn(Cmd::Output) -> Result<T>> Command for Then<Cmd, F> {
    type Output = T;

    fn access(&self) -> Access {
        self.cmd.access()
    }

    fn encode(&self, out: &mut Vec<u8>, key: ValidKey<'_>, opaque: u32) {
        self.cmd.encode(out, key, opaque);
    }

    fn read(&self, reply: Reply<'_>) -> Result<T> {
        self.cmd.read(reply).and_then(&self.then)
    }

    fn stored_len(&self) -> Option<usize> {
        self.cmd.stored_len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::DefaultCodec;
    use crate::memcached::protocol::parse_reply;

    /// Runs `cmd` pure: its request for `key` with opaque 7, and what the
    /// reply `bytes` means to it.
    fn run<Cmd: Command>(cmd: &Cmd, key: &str, bytes: &[u8]) -> (String, Result<Cmd::Output>) {
        let mut out = Vec::new();
        cmd.encode(&mut out, ValidKey::new(key.as_bytes()).unwrap(), 7);
        let (reply, used) = parse_reply(bytes, 1 << 20).unwrap().unwrap();
        assert_eq!(used, bytes.len());
        (String::from_utf8(out).unwrap(), cmd.read(reply))
    }

    #[test]
    fn a_get_asks_for_value_flags_key_and_token_and_decodes() {
        let codec = DefaultCodec::default();
        let get = Get::<_, String> {
            codec: &codec,
            value: PhantomData,
        };
        let (request, hit) = run(&get, "k", b"VA 2 f16 kk O7\r\nhi\r\n");
        assert!(request.starts_with("mg k ") && request.ends_with("\r\n"));
        for flag in [" v", " f", " k", " O7"] {
            assert!(request.contains(flag), "{request:?} lacks {flag}");
        }
        assert_eq!(hit.unwrap().as_deref(), Some("hi"));
        assert_eq!(run(&get, "k", b"EN\r\n").1.unwrap(), None);
        assert!(matches!(
            run(&get, "k", b"SERVER_ERROR out of memory\r\n").1,
            Err(Error::Server(_))
        ));
    }

    #[test]
    fn stores_and_deletes_say_what_they_do_to_the_item() {
        let set = Store {
            data: Cow::Borrowed(b"v"),
            flags: MetaSetFlags::default(),
        };
        assert_eq!(set.access(), Access::Write);
        let cas = Store {
            data: Cow::Borrowed(b"v"),
            flags: MetaSetFlags {
                compare_cas: Some(1),
                return_cas: true,
                ..MetaSetFlags::default()
            },
        };
        assert_eq!(cas.access(), Access::WriteOnce);
        let (request, stored) = run(&cas, "k", b"HD c9 kk O7\r\n");
        assert!(request.starts_with("ms k 1 ") && request.ends_with("\r\nv\r\n"));
        assert_eq!(stored.unwrap(), Stored::Yes(Some(Cas(9))));
        assert_eq!(run(&cas, "k", b"EX\r\n").1.unwrap(), Stored::No);

        let delete = Delete {
            flags: MetaDeleteFlags::default(),
        };
        assert_eq!(delete.access(), Access::Write);
        assert!(run(&delete, "k", b"HD\r\n").1.unwrap());
        assert!(!run(&delete, "k", b"NF\r\n").1.unwrap());
    }

    #[test]
    fn a_lease_read_tells_a_placeholder_a_win_and_a_value_apart() {
        let lease = LeaseRead {
            vivify: Some(10),
            recache_ttl: None,
            with_value: true,
            decode: |data: &[u8], _: &ReturnFlags<'_>| Ok(data.to_vec()),
        };
        assert_eq!(lease.access(), Access::Lease);
        let (request, won) = run(&lease, "k", b"VA 0 c5 t10 f0 W\r\n\r\n");
        assert!(request.contains(" N10"), "{request:?}");
        let (won, seen) = won.unwrap().unwrap();
        assert_eq!(
            won,
            Lease::Won {
                previous: None,
                cas: Cas(5)
            }
        );
        assert_eq!(seen.ttl, Some(Duration::from_secs(10)));
        let wait = run(&lease, "k", b"VA 0 c5 t9 f0 Z\r\n\r\n")
            .1
            .unwrap()
            .unwrap();
        assert_eq!(wait.0, Lease::Wait);
        let hit = run(&lease, "k", b"VA 2 c6 t60 f16\r\nhi\r\n")
            .1
            .unwrap()
            .unwrap();
        assert_eq!(
            hit.0,
            Lease::Hit {
                value: b"hi".to_vec(),
                cas: Cas(6),
                stale: false,
                ttl: Some(Duration::from_secs(60)),
            }
        );
        // A value without its CAS is malformed, never a hit with CAS 0.
        assert!(matches!(
            run(&lease, "k", b"VA 2 t60 f16\r\nhi\r\n").1,
            Err(Error::Protocol(_))
        ));
    }
}
