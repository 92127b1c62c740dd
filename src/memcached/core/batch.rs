//! The plans of the batches (`get_many`, `set_many`): every key checked and
//! routed before anything is sent, then each server's share cut into
//! round trips. Pure; the drivers run each chunk as an exchange.

use std::ops::Range;

use serde::Serialize;

use super::{Core, KeyBuf};
use crate::codec::{Codec, Encoded};
use crate::memcached::error::{Error, Result};
use crate::memcached::protocol::ValidKey;

/// Keys sent per round trip by `get_many`: bounds the request line and how
/// much reply is buffered at once.
pub(crate) const GET_MANY_CHUNK: usize = 128;

/// Items sent per round trip by `set_many` ...
const SET_MANY_CHUNK: usize = 128;

/// ... and about how many bytes (one larger item still goes alone): bounds
/// the request buffered in memory and what the server must take at once.
const SET_MANY_CHUNK_BYTES: usize = 1024 * 1024;

/// How many of the leading items, of the sizes given, make one chunk: at
/// most `max_items`, and no more bytes than `max_bytes` unless the first
/// item alone is larger. Zero only when there are no items.
pub(crate) fn chunk_len(
    sizes: impl Iterator<Item = usize>,
    max_items: usize,
    max_bytes: usize,
) -> usize {
    let mut bytes = 0usize;
    let mut count = 0;
    for size in sizes.take(max_items) {
        bytes = bytes.saturating_add(size);
        if count > 0 && bytes > max_bytes {
            break;
        }
        count += 1;
    }
    count
}

/// The keys of a batch, prefixed and validated, and grouped by server.
#[derive(Debug)]
pub(crate) struct Batch {
    bytes: Vec<u8>,
    ranges: Vec<Range<usize>>,
    /// Key indices, per server index.
    pub(crate) groups: Vec<Vec<usize>>,
}

impl Batch {
    pub(crate) fn key(&self, index: usize) -> Result<ValidKey<'_>> {
        let range = self.ranges.get(index).cloned().unwrap_or_default();
        let bytes = self.bytes.get(range).unwrap_or_default();
        Ok(ValidKey::new(bytes)?)
    }

    /// The keys of `indices`.
    pub(crate) fn keys(&self, indices: &[usize]) -> Result<Vec<ValidKey<'_>>> {
        indices.iter().map(|&index| self.key(index)).collect()
    }

    /// The servers with keys, and their keys' indices.
    pub(crate) fn groups(&self) -> impl Iterator<Item = (usize, &[usize])> {
        self.groups
            .iter()
            .enumerate()
            .filter(|(_, indices)| !indices.is_empty())
            .map(|(server, indices)| (server, indices.as_slice()))
    }
}

/// The items of a `set_many`, encoded and size-checked, before routing.
pub(crate) struct Items {
    pub(crate) batch: Batch,
    encoded: Vec<Encoded>,
    pub(crate) exptime: u32,
}

impl Items {
    /// The `(key, data, flags)` of `indices`, for a
    /// [`SetItems`](crate::memcached::exchange::batch::SetItems) exchange.
    pub(crate) fn chunk(&self, indices: &[usize]) -> Result<Vec<(ValidKey<'_>, &[u8], u32)>> {
        indices
            .iter()
            .map(|&index| {
                let item = &self.encoded[index];
                Ok((self.batch.key(index)?, item.data.as_slice(), item.flags))
            })
            .collect()
    }

    /// The leading indices of `rest` that make one round trip: at most 128
    /// items or about 1 MiB (one larger item goes alone).
    pub(crate) fn next_chunk<'r>(&self, rest: &'r [usize]) -> (&'r [usize], &'r [usize]) {
        // The bytes an item takes on the wire: its value, key and header.
        let wire_size = |index: usize| {
            self.encoded
                .get(index)
                .map_or(0, |item| item.data.len())
                .saturating_add(self.batch.ranges.get(index).map_or(0, Range::len))
                .saturating_add(48)
        };
        let len = chunk_len(
            rest.iter().map(|&index| wire_size(index)),
            SET_MANY_CHUNK,
            SET_MANY_CHUNK_BYTES,
        );
        rest.split_at(len.clamp(1, rest.len()))
    }
}

impl<C: Codec> Core<C> {
    /// Prefixes, validates and routes every key of a batch.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidKey`] for any key (nothing is routed then), or
    /// [`Error::AllServersDown`].
    pub(crate) fn batch<'k>(&self, keys: impl Iterator<Item = &'k str>) -> Result<Batch> {
        let mut batch = Batch {
            bytes: Vec::new(),
            ranges: Vec::new(),
            groups: vec![Vec::new(); self.servers.len()],
        };
        let mut buf = KeyBuf::new();
        for key in keys {
            let valid = self.key(key, &mut buf)?;
            let start = batch.bytes.len();
            batch.bytes.extend_from_slice(valid.as_bytes());
            batch.ranges.push(start..batch.bytes.len());
        }
        // Routed once every key is known valid, so a refused batch claims
        // no probe of a dead server.
        let now = self.lazy_now();
        let mut probing = Vec::new();
        for (index, range) in batch.ranges.iter().enumerate() {
            let key = batch.bytes.get(range.clone()).unwrap_or_default();
            let server = self.route_at(self.placement(key), &now, &mut probing)?;
            batch.groups[server].push(index);
        }
        Ok(batch)
    }

    /// Plans a `set_many` of `items` with `exptime`: every value encoded and
    /// size-checked, then every key routed. Keys sent to a stand-in leave
    /// the servers ahead of it owing them, as in [`Core::begin`]: the driver
    /// calls [`Core::owe_ahead_of`] before sending and again once done.
    ///
    /// # Errors
    ///
    /// [`Error::Codec`], [`Error::ValueTooLarge`] or [`Error::InvalidKey`]
    /// for any item (nothing is sent); [`Error::AllServersDown`], after
    /// which every server that would hold a key owes it.
    pub(crate) fn set_items<K: AsRef<str>, V: Serialize + ?Sized>(
        &self,
        items: &[(K, &V)],
        exptime: u32,
    ) -> Result<Items> {
        // Encoded and size-checked before routing: routing may claim the
        // probe of a server whose dead period just ended, and a refused
        // batch would leave that probe unresolved (the server kept out for
        // another dead period).
        let encoded = items
            .iter()
            .map(|(key, value)| {
                let encoded = self.codec.encode(*value)?;
                let key_len = self.prefix.len() + key.as_ref().len();
                self.check_size(key_len, encoded.data.len())?;
                Ok(encoded)
            })
            .collect::<Result<Vec<_>>>()?;
        let batch = match self.batch(items.iter().map(|(k, _)| k.as_ref())) {
            Err(Error::AllServersDown) => {
                // Every key was valid (routing comes after the checks):
                // the servers holding them owe their invalidation.
                for (key, _) in items {
                    self.owe_invalidation(key.as_ref());
                }
                return Err(Error::AllServersDown);
            }
            batch => batch?,
        };
        Ok(Items {
            batch,
            encoded,
            exptime,
        })
    }

    /// Records the keys of `batch` as owed by the servers ahead of the one
    /// each was routed to (written to a stand-in).
    pub(crate) fn owe_ahead_of(&self, batch: &Batch) {
        for (server, indices) in batch.groups() {
            for key in indices.iter().filter_map(|&index| batch.key(index).ok()) {
                let key = key.as_bytes();
                self.owe_ahead(self.placement(key), key, Some(server), Some(server));
            }
        }
    }

    /// A `set_many` chunk to `server` failed with `error`, `rest` being the
    /// chunk and every item after it: whether the server's share stops
    /// here. A failure with doubt (the chunk may or may not have landed,
    /// and the rest was never sent) leaves the server owing all of `rest`,
    /// and stops; an answer (an item declined, a refusal) lets the other
    /// chunks still go, so no item is left unsent by another's refusal.
    pub(crate) fn set_chunk_failed(
        &self,
        server: usize,
        batch: &Batch,
        rest: &[usize],
        error: &Error,
    ) -> bool {
        if !error.leaves_doubt() {
            return false;
        }
        for &index in rest {
            if let Ok(key) = batch.key(index) {
                self.owe(server, key.as_bytes(), None);
            }
        }
        true
    }
}
