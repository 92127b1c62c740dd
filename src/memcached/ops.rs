//! Every single-key operation of a client, as the command it sends: its
//! checks before sending (the value's encoding and size, the TTL's
//! exptime) and what its reply gives. Pure. [`Client`](super::Client) and
//! `AsyncClient` both call these and hand the
//! command to their driver, so the two APIs cannot drift apart: each of
//! their methods is one line over the function of the same name here.

use std::borrow::Cow;
use std::marker::PhantomData;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::command::{
    Arithmetic, Cas, CasOnly, Command, Delete, Get, GetItem, GetRaw, Lease, LeaseRead, MetaItem,
    Seen, Store, Stored, Then, Touch,
};
use super::core::{Core, exptime_now};
use super::error::{Error, Result};
use super::protocol::{
    ArithmeticMode, MetaArithmeticFlags, MetaDeleteFlags, MetaSetFlags, MetaSetMode, ProtocolError,
    ReturnFlags,
};
use crate::codec::Codec;

// ---- reads ---------------------------------------------------------------

pub(crate) fn get<C: Codec, V: DeserializeOwned>(core: &Core<C>) -> Get<'_, C, V> {
    Get {
        codec: &core.codec,
        value: PhantomData,
    }
}

pub(crate) fn meta_get<C: Codec, V: DeserializeOwned>(core: &Core<C>) -> GetItem<'_, C, V> {
    GetItem {
        codec: &core.codec,
        value: PhantomData,
    }
}

pub(crate) fn gets<C: Codec, V: DeserializeOwned>(
    core: &Core<C>,
) -> impl Command<Output = Option<(V, Cas)>> + use<'_, C, V> {
    Then {
        cmd: meta_get::<C, V>(core),
        then: |item: Option<MetaItem<V>>| Ok(item.map(|item| (item.value, item.cas))),
    }
}

pub(crate) fn cas_only() -> CasOnly {
    CasOnly
}

pub(crate) fn get_raw() -> GetRaw {
    GetRaw
}

// ---- removal, expiry, counters -------------------------------------------

pub(crate) fn delete() -> Delete {
    Delete {
        flags: MetaDeleteFlags::default(),
    }
}

pub(crate) fn delete_if_cas(cas: Cas) -> Delete {
    Delete {
        flags: MetaDeleteFlags {
            compare_cas: Some(cas.0),
            ..MetaDeleteFlags::default()
        },
    }
}

pub(crate) fn touch(ttl: Duration) -> Touch {
    Touch {
        exptime: exptime_now(ttl),
    }
}

/// `incr`/`decr` as a meta arithmetic command (`ma`), whose reply, unlike
/// the text commands', carries the key and token to match.
pub(crate) fn arithmetic(delta: u64, incr: bool) -> Arithmetic {
    Arithmetic {
        flags: MetaArithmeticFlags {
            mode: if incr {
                ArithmeticMode::Incr
            } else {
                ArithmeticMode::Decr
            },
            delta: Some(delta),
            value: true,
            ..MetaArithmeticFlags::default()
        },
    }
}

/// Marks `key` stale for `stale_ttl` (at least a second) rather than
/// deleting it, if its CAS is `cas` when one is given.
pub(crate) fn invalidate(stale_ttl: Duration, cas: Option<Cas>) -> Delete {
    Delete {
        flags: MetaDeleteFlags {
            invalidate: true,
            ttl: Some(exptime_now(stale_ttl).max(1)),
            compare_cas: cas.map(|cas| cas.0),
            ..MetaDeleteFlags::default()
        },
    }
}

// ---- writes --------------------------------------------------------------

/// The meta set flags of a store with client `flags`, `ttl`, `mode` and an
/// optional CAS to compare.
fn store_flags(
    flags: u32,
    ttl: Duration,
    mode: MetaSetMode,
    compare_cas: Option<u64>,
) -> MetaSetFlags {
    MetaSetFlags {
        mode,
        ttl: Some(exptime_now(ttl)),
        client_flags: Some(flags),
        compare_cas,
        ..MetaSetFlags::default()
    }
}

/// A store of `value`, encoded by the client's codec, with `mode` and an
/// optional CAS to compare; `Ok(true)` when stored.
pub(crate) fn store_value<C: Codec, V: Serialize + ?Sized>(
    core: &Core<C>,
    value: &V,
    ttl: Duration,
    mode: MetaSetMode,
    cas: Option<Cas>,
) -> Result<impl Command<Output = bool> + use<C, V>> {
    let encoded = core.codec.encode(value)?;
    let flags = store_flags(encoded.flags, ttl, mode, cas.map(|cas| cas.0));
    Ok(Then {
        cmd: Store {
            data: Cow::Owned(encoded.data),
            flags,
        },
        then: |stored| Ok(matches!(stored, Stored::Yes(_))),
    })
}

/// `set`: a store that must land (`Error::NotStored` otherwise).
pub(crate) fn set<C: Codec, V: Serialize + ?Sized>(
    core: &Core<C>,
    value: &V,
    ttl: Duration,
) -> Result<impl Command<Output = ()> + use<C, V>> {
    Ok(Then {
        cmd: store_value(core, value, ttl, MetaSetMode::Set, None)?,
        then: must_store,
    })
}

/// `set_raw`: bytes and client flags stored as given.
pub(crate) fn set_raw(data: &[u8], flags: u32, ttl: Duration) -> impl Command<Output = ()> + '_ {
    let flags = store_flags(flags, ttl, MetaSetMode::Set, None);
    Then {
        cmd: Store {
            data: Cow::Borrowed(data),
            flags,
        },
        then: |stored| must_store(matches!(stored, Stored::Yes(_))),
    }
}

fn must_store(stored: bool) -> Result<()> {
    if stored {
        Ok(())
    } else {
        Err(Error::NotStored)
    }
}

/// A store of `value` (compared with `cas` when given) that returns the
/// new item's CAS unique: `Ok(None)` when it was not stored.
pub(crate) fn store_returning_cas<C: Codec, V: Serialize + ?Sized>(
    core: &Core<C>,
    value: &V,
    ttl: Duration,
    cas: Option<Cas>,
) -> Result<impl Command<Output = Option<Cas>> + use<C, V>> {
    let encoded = core.codec.encode(value)?;
    let flags = MetaSetFlags {
        return_cas: true,
        ..store_flags(encoded.flags, ttl, MetaSetMode::Set, cas.map(|cas| cas.0))
    };
    Ok(Then {
        cmd: Store {
            data: Cow::Owned(encoded.data),
            flags,
        },
        then: |stored| match stored {
            Stored::Yes(Some(cas)) => Ok(Some(cas)),
            Stored::Yes(None) => Err(ProtocolError::Malformed { reply: "HD" }.into()),
            Stored::No => Ok(None),
        },
    })
}

/// `set_returning_cas`: a `set` that gives the new CAS unique.
pub(crate) fn set_returning_cas<C: Codec, V: Serialize + ?Sized>(
    core: &Core<C>,
    value: &V,
    ttl: Duration,
) -> Result<impl Command<Output = Cas> + use<C, V>> {
    Ok(Then {
        cmd: store_returning_cas(core, value, ttl, None)?,
        then: |cas: Option<Cas>| cas.ok_or(Error::NotStored),
    })
}

// ---- leases --------------------------------------------------------------

/// A lease request (`mg <key> N`): the value, or who computes it, with the
/// item's CAS and TTL; `recache_within` adds the early-recache token (`R`).
pub(crate) fn lease<C: Codec, V: DeserializeOwned>(
    core: &Core<C>,
    lease_ttl: Duration,
    recache_within: Option<Duration>,
) -> impl Command<Output = (Lease<V>, Seen)> + use<'_, C, V> {
    let read = LeaseRead {
        vivify: Some(exptime_now(lease_ttl).max(1)),
        recache_ttl: recache_within.map(|within| exptime_now(within).max(1)),
        with_value: true,
        decode: move |data: &[u8], flags: &ReturnFlags<'_>| core.decode::<V>(data, flags),
    };
    Then {
        cmd: read,
        // With `N` the server answers every request with an item.
        then: |read: Option<(Lease<V>, Seen)>| {
            read.ok_or(Error::Protocol(ProtocolError::UnexpectedReply {
                reply: "EN",
            }))
        },
    }
}

/// A lease's state without asking for one: `None` when the key holds
/// nothing.
pub(crate) fn peek_lease<C: Codec, V: DeserializeOwned>(
    core: &Core<C>,
) -> impl Command<Output = Option<Lease<V>>> + use<'_, C, V> {
    Then {
        cmd: LeaseRead {
            vivify: None,
            recache_ttl: None,
            with_value: true,
            decode: move |data: &[u8], flags: &ReturnFlags<'_>| core.decode::<V>(data, flags),
        },
        then: |read: Option<(Lease<V>, Seen)>| Ok(read.map(|(lease, _)| lease)),
    }
}

/// [`peek_lease`] without the value (its size tells a placeholder apart).
pub(crate) fn peek_lease_cas() -> impl Command<Output = Option<Lease<()>>> {
    Then {
        cmd: LeaseRead {
            vivify: None,
            recache_ttl: None,
            with_value: false,
            decode: |_: &[u8], _: &ReturnFlags<'_>| Ok(()),
        },
        then: |read: Option<(Lease<()>, Seen)>| Ok(read.map(|(lease, _)| lease)),
    }
}
