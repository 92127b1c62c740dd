//! A snapshot's records decoded: the file's bytes verified (`format`), its
//! kind and types checked, every record decoded, or an error and nothing.
//! Works on bytes: `Cache::load` and NearFar's loads read the file and
//! come here, and so does the fuzz target (`__fuzz_snapshot`).

use std::any::type_name;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::de::DeserializeOwned;

use super::SnapshotError;
use super::format::{self, Header, Kind, Reader};
use crate::codec::{Codec, DefaultCodec};

/// A snapshot's entries, verified and decoded, their TTLs shortened by the
/// time since it was saved.
pub(crate) struct Entries<K, V> {
    /// The namespace's generation it was saved in (0 from a plain cache).
    #[cfg_attr(
        not(feature = "memcached"),
        allow(dead_code, reason = "NearFar's (feature memcached)")
    )]
    pub(crate) generation: u64,
    /// Hottest first: key, value, the TTL left now (`None`: none), and the
    /// use count.
    pub(crate) items: Vec<(K, V, Option<Duration>, u8)>,
    /// Entries left out: their TTL ran out since.
    pub(crate) expired: u64,
}

/// Reads, verifies and decodes the entries file at `path`, at wall-clock
/// time `now` (see [`decode_entries`]).
#[cfg_attr(
    not(feature = "memcached"),
    allow(dead_code, reason = "NearFar's snapshot (feature memcached)")
)]
pub(crate) fn read_entries<K, V>(
    path: &Path,
    now: SystemTime,
) -> Result<Entries<K, V>, SnapshotError>
where
    K: DeserializeOwned,
    V: DeserializeOwned,
{
    decode_entries(&format::read(path)?, now)
}

/// Verifies and decodes the entries `file`, at wall-clock time `now`
/// (every entry, those expired included, must decode: a file is loaded
/// whole or not at all).
pub(super) fn decode_entries<K, V>(
    file: &[u8],
    now: SystemTime,
) -> Result<Entries<K, V>, SnapshotError>
where
    K: DeserializeOwned,
    V: DeserializeOwned,
{
    let verified = format::verify(file)?;
    let header = &verified.header;
    check_type(header, Kind::Entries, type_name::<K>(), type_name::<V>())?;
    // Time spent down counts; a wall clock set back since counts as none,
    // and so does a save time this platform's clock cannot represent (a
    // damaged header: `checked_add`, so it is no panic).
    let since = UNIX_EPOCH
        .checked_add(Duration::from_nanos(header.saved_at))
        .and_then(|saved| now.duration_since(saved).ok())
        .unwrap_or(Duration::ZERO);
    let codec = DefaultCodec::new();
    let mut records = verified.records;
    let mut items = Vec::with_capacity(capacity(header.count, records.len()));
    let mut expired = 0;
    for _ in 0..header.count {
        let ttl = records.u64()?;
        let uses = records.u8()?;
        let key: K = read_item(&mut records, &codec)?;
        let value: V = read_item(&mut records, &codec)?;
        let ttl = match ttl {
            0 => None,
            nanos => match Duration::from_nanos(nanos).checked_sub(since) {
                Some(left) if !left.is_zero() => Some(left),
                _ => {
                    expired += 1;
                    continue;
                }
            },
        };
        items.push((key, value, ttl, uses));
    }
    end(&records)?;
    Ok(Entries {
        generation: header.generation,
        items,
        expired,
    })
}

/// Reads, verifies and decodes the keys file at `path`: its generation
/// and keys, hottest first.
#[cfg_attr(
    not(feature = "memcached"),
    allow(dead_code, reason = "NearFar's key preload (feature memcached)")
)]
pub(crate) fn read_keys<K: DeserializeOwned>(path: &Path) -> Result<(u64, Vec<K>), SnapshotError> {
    decode_keys(&format::read(path)?)
}

/// Verifies and decodes the keys `file`, as [`read_keys`].
pub(super) fn decode_keys<K: DeserializeOwned>(
    file: &[u8],
) -> Result<(u64, Vec<K>), SnapshotError> {
    let verified = format::verify(file)?;
    let header = &verified.header;
    check_type(header, Kind::Keys, type_name::<K>(), "")?;
    let codec = DefaultCodec::new();
    let mut records = verified.records;
    let mut keys = Vec::with_capacity(capacity(header.count, records.len()));
    for _ in 0..header.count {
        keys.push(read_item(&mut records, &codec)?);
    }
    end(&records)?;
    Ok((header.generation, keys))
}

/// Room to reserve for `count` records in `bytes` (every record takes 8
/// bytes at least: a count the bytes cannot hold is not believed).
fn capacity(count: u64, bytes: usize) -> usize {
    usize::try_from(count).unwrap_or(usize::MAX).min(bytes / 8)
}

fn check_type(
    header: &Header<'_>,
    kind: Kind,
    key: &str,
    value: &str,
) -> Result<(), SnapshotError> {
    let (key, value) = (
        format::cut(key, usize::from(u16::MAX)),
        format::cut(value, usize::from(u16::MAX)),
    );
    if header.kind != kind || header.key_type != key || header.value_type != value {
        return Err(SnapshotError::WrongType {
            expected: kind.describe(key, value),
            found: header.kind.describe(header.key_type, header.value_type),
        });
    }
    Ok(())
}

fn read_item<T: DeserializeOwned>(
    records: &mut Reader<'_>,
    codec: &DefaultCodec,
) -> Result<T, SnapshotError> {
    let flags = records.u32()?;
    let len = records.u32()?;
    let data = records.take(usize::try_from(len).unwrap_or(usize::MAX))?;
    Ok(codec.decode(data, flags)?)
}

/// Every record read: nothing may follow the count the header gives.
fn end(records: &Reader<'_>) -> Result<(), SnapshotError> {
    if records.is_empty() {
        Ok(())
    } else {
        Err(SnapshotError::Malformed(format!(
            "{} bytes after the last record",
            records.len()
        )))
    }
}
