//! Many keys at once: `get_many` and `set_many`, grouped by server and
//! sent in pipelined chunks, the servers in parallel.

use std::collections::HashMap;
use std::ops::Range;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Client, IDEMPOTENT, KeyBuf, exptime_now};
use crate::codec::{Codec, Encoded};
use crate::memcached::error::{Error, Result};
use crate::memcached::protocol::{
    MetaReply, MetaSetFlags, MetaStatus, ProtocolError, Reply, ValidKey, encode_get,
    encode_meta_noop, encode_meta_set,
};

/// Keys sent per round trip by [`Client::get_many`]: bounds the request line
/// and how much reply is buffered at once.
const GET_MANY_CHUNK: usize = 128;

/// Items sent per round trip by [`Client::set_many`] ...
const SET_MANY_CHUNK: usize = 128;

/// ... and about how many bytes (one larger item still goes alone): bounds
/// the request buffered in memory and what the server must take at once.
const SET_MANY_CHUNK_BYTES: usize = 1024 * 1024;

/// How many of the leading items, of the sizes given, make one chunk: at
/// most `max_items`, and no more bytes than `max_bytes` unless the first
/// item alone is larger. Zero only when there are no items.
pub(super) fn chunk_len(
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

impl<C: Codec> Client<C> {
    // ---- batches --------------------------------------------------------

    /// Reads many keys at once; the map holds the hits, by key as given.
    ///
    /// Keys are grouped by server; each server gets its keys in one
    /// multi-key `get` (128 keys per round trip), and the servers are queried
    /// in parallel. (A multi-key `get` costs memcached 1.6.18 less than the
    /// same keys as pipelined quiet meta gets: about 0.45x the time for 100
    /// keys, measured in `benches/far.rs`.)
    ///
    /// # Errors
    ///
    /// [`Error::InvalidKey`] if any key is invalid (nothing is sent), and the
    /// first error of any server (the whole call fails: a cache caller may
    /// treat that as all misses). A value that does not decode fails the call
    /// with [`Error::Codec`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # let client = nearfar::memcached::Client::builder().servers(["127.0.0.1:11211"]).build()?;
    /// let names = client.get_many::<String>(&["user:1", "user:2", "user:3"])?;
    /// for (key, name) in &names {
    ///     println!("{key} = {name}");
    /// }
    /// # Ok::<(), nearfar::memcached::Error>(())
    /// ```
    pub fn get_many<V: DeserializeOwned + Send>(
        &self,
        keys: &[impl AsRef<str>],
    ) -> Result<HashMap<String, V>> {
        self.fetch_many(keys, |data, flags| {
            Ok(self.inner.codec.decode::<V>(data, flags)?)
        })
    }

    /// Like [`Client::get_many`], without decoding: the map holds each hit's
    /// bytes and client flags.
    ///
    /// # Errors
    ///
    /// As [`Client::get_many`], without codec errors.
    pub fn get_many_raw(
        &self,
        keys: &[impl AsRef<str>],
    ) -> Result<HashMap<String, (Vec<u8>, u32)>> {
        self.fetch_many(keys, |data, flags| Ok((data.to_vec(), flags)))
    }

    fn fetch_many<V: Send>(
        &self,
        keys: &[impl AsRef<str>],
        decode: impl Fn(&[u8], u32) -> Result<V> + Sync,
    ) -> Result<HashMap<String, V>> {
        let batch = self.batch(keys.iter().map(AsRef::as_ref))?;
        let deadline = self.deadline();
        let found = self.per_server(&batch, |server, indices| {
            self.get_group(server, &batch, indices, &decode, deadline)
        })?;
        let mut out = HashMap::with_capacity(found.len());
        for (index, value) in found {
            if let Some(key) = keys.get(index) {
                out.insert(key.as_ref().to_owned(), value);
            }
        }
        Ok(out)
    }

    /// Stores many values with one TTL, grouped by server: each server gets
    /// its items pipelined, in round trips of at most 128 items or about
    /// 1 MiB, and the servers are written in parallel.
    ///
    /// # Errors
    ///
    /// Every key and value is checked and encoded before anything is sent:
    /// [`Error::InvalidKey`], [`Error::Codec`] and [`Error::ValueTooLarge`]
    /// refuse the whole batch. After that, the first error of any server
    /// ([`Error::NotStored`] for an item the server declined to store); the
    /// other items may have been stored.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # let client = nearfar::memcached::Client::builder().servers(["127.0.0.1:11211"]).build()?;
    /// client.set_many(&[("a", &1u32), ("b", &2u32)], Duration::from_secs(60))?;
    /// # Ok::<(), nearfar::memcached::Error>(())
    /// ```
    pub fn set_many<K: AsRef<str>, V: Serialize + ?Sized>(
        &self,
        items: &[(K, &V)],
        ttl: Duration,
    ) -> Result<()> {
        // Encoded and size-checked before routing: routing may claim the
        // probe of a server whose dead period just ended, and a refused
        // batch would leave that probe unresolved (the server kept out for
        // another dead period).
        let encoded = items
            .iter()
            .map(|(_, value)| {
                let encoded = self.inner.codec.encode(*value)?;
                self.check_size(encoded.data.len())?;
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
        // Keys sent to a stand-in: the servers ahead of it owe them, as in
        // `single`: recorded before sending and again once done.
        let owe_ahead = || {
            for (server, indices) in batch.groups.iter().enumerate() {
                for key in indices.iter().filter_map(|&index| batch.key(index).ok()) {
                    let key = key.as_bytes();
                    self.owe_ahead(self.placement(key), key, Some(server), Some(server));
                }
            }
        };
        owe_ahead();
        let exptime = exptime_now(ttl);
        let deadline = self.deadline();
        // The bytes an item takes on the wire: its value, key and header.
        let wire_size = |index: usize| {
            encoded
                .get(index)
                .map_or(0, |item| item.data.len())
                .saturating_add(batch.ranges.get(index).map_or(0, Range::len))
                .saturating_add(48)
        };
        let result = self.per_server(&batch, |server, indices| {
            let mut rest = indices;
            let mut first_error = None;
            while !rest.is_empty() {
                let len = chunk_len(
                    rest.iter().map(|&index| wire_size(index)),
                    SET_MANY_CHUNK,
                    SET_MANY_CHUNK_BYTES,
                );
                let (chunk, tail) = rest.split_at(len.clamp(1, rest.len()));
                match self.set_chunk(server, &batch, &encoded, chunk, exptime, deadline) {
                    Ok(()) => {}
                    Err(e) if e.leaves_doubt() => {
                        // This chunk may or may not have landed, and the
                        // rest of the server's items were never sent: the
                        // server owes all of them.
                        for &index in rest {
                            if let Ok(key) = batch.key(index) {
                                self.owe(server, key.as_bytes(), None);
                            }
                        }
                        return Err(e);
                    }
                    // The server answered (an item declined, a refusal):
                    // the call reports it, and the other chunks still go,
                    // so no item is left unsent by another's refusal.
                    Err(e) => {
                        first_error.get_or_insert(e);
                    }
                }
                rest = tail;
            }
            first_error.map_or(Ok(Vec::<()>::new()), Err)
        });
        owe_ahead();
        result?;
        Ok(())
    }

    /// One round trip of [`Client::set_many`]: the items `chunk` (indices
    /// into `batch` and `encoded`) as quiet meta sets, then a no-op.
    fn set_chunk(
        &self,
        server: usize,
        batch: &Batch,
        encoded: &[Encoded],
        chunk: &[usize],
        exptime: u32,
        deadline: Instant,
    ) -> Result<()> {
        self.on_server(server, IDEMPOTENT, deadline, |conn| {
            let mut request = conn.meta_request();
            for &index in chunk {
                // Batch indices all come from the same item list.
                let item = &encoded[index];
                let key = batch.key(index)?;
                let flags = MetaSetFlags {
                    ttl: Some(exptime),
                    client_flags: Some(item.flags),
                    quiet: true,
                    ..MetaSetFlags::default()
                };
                let opaque = request.tag(key);
                encode_meta_set(request.out(), key, &item.data, &flags.tagged(opaque));
            }
            encode_meta_noop(request.out());
            conn.send()?;
            let mut first_error = None;
            while !conn.recv(|reply| match reply {
                Reply::Meta(MetaReply {
                    status: MetaStatus::NoOp,
                    ..
                }) => Ok(true),
                Reply::Meta(MetaReply {
                    status: MetaStatus::NotStored,
                    ..
                }) => {
                    first_error.get_or_insert(Error::NotStored);
                    Ok(false)
                }
                // The server carried on after it: the rest of the replies
                // still come, so read on to the no-op.
                Reply::ServerError(_) => {
                    first_error.get_or_insert(Error::from_reply(&reply));
                    Ok(false)
                }
                // `ERROR` and `CLIENT_ERROR` (a command the server lacks, a
                // bad data chunk) can come with more replies than there
                // were requests: stop here, and the connection is closed.
                other => Err(Error::from_reply(&other)),
            })? {}
            first_error.map_or(Ok(()), Err)
        })
    }

    /// Prefixes, validates and routes every key of a batch.
    fn batch<'k>(&self, keys: impl Iterator<Item = &'k str>) -> Result<Batch> {
        let mut batch = Batch {
            bytes: Vec::new(),
            ranges: Vec::new(),
            groups: vec![Vec::new(); self.inner.pools.len()],
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
        let now = self.now();
        let mut probing = Vec::new();
        for (index, range) in batch.ranges.iter().enumerate() {
            let key = batch.bytes.get(range.clone()).unwrap_or_default();
            let server = self.route_at(self.placement(key), now, &mut probing)?;
            batch.groups[server].push(index);
        }
        Ok(batch)
    }

    /// Runs `op` for every server that has keys in `batch`, in parallel
    /// threads when there are several, and concatenates the results.
    ///
    /// A server whose thread the OS refuses to start is done on the
    /// calling thread instead.
    fn per_server<T: Send>(
        &self,
        batch: &Batch,
        op: impl Fn(usize, &[usize]) -> Result<Vec<T>> + Sync,
    ) -> Result<Vec<T>> {
        let mut groups = batch
            .groups
            .iter()
            .enumerate()
            .filter(|(_, indices)| !indices.is_empty());
        let Some((first_server, first)) = groups.next() else {
            return Ok(Vec::new());
        };
        let rest: Vec<_> = groups.collect();
        if rest.is_empty() {
            return op(first_server, first);
        }
        let op = &op;
        std::thread::scope(|scope| {
            let mut handles = Vec::with_capacity(rest.len());
            let mut unspawned = Vec::new();
            for (server, indices) in rest {
                match std::thread::Builder::new().spawn_scoped(scope, move || op(server, indices)) {
                    Ok(handle) => handles.push(handle),
                    Err(_) => unspawned.push((server, indices)),
                }
            }
            let mut out = op(first_server, first);
            let mut merge = |result: Result<Vec<T>>| match (&mut out, result) {
                (Ok(all), Ok(more)) => all.extend(more),
                (Ok(_), Err(e)) => out = Err(e),
                (Err(_), _) => {}
            };
            for (server, indices) in unspawned {
                merge(op(server, indices));
            }
            for handle in handles {
                merge(
                    handle
                        .join()
                        .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
                );
            }
            out
        })
    }

    /// One server's part of [`Client::get_many`]: `(key index, value)` pairs.
    fn get_group<V>(
        &self,
        server: usize,
        batch: &Batch,
        indices: &[usize],
        decode: &impl Fn(&[u8], u32) -> Result<V>,
        deadline: Instant,
    ) -> Result<Vec<(usize, V)>> {
        let mut found = Vec::with_capacity(indices.len());
        for chunk in indices.chunks(GET_MANY_CHUNK) {
            let mut got = self.on_server(server, IDEMPOTENT, deadline, |conn| {
                let keys = chunk
                    .iter()
                    .map(|&index| batch.key(index))
                    .collect::<Result<Vec<_>>>()?;
                encode_get(conn.request(), keys.iter().copied());
                conn.send()?;
                let mut hits = Vec::new();
                let mut first_error = None;
                // Hits come back in request order: match each to the next
                // requested key with its name.
                let mut cursor = 0;
                while !conn.recv(|reply| match reply {
                    Reply::End => Ok(true),
                    Reply::Value(item) => {
                        let offset = keys[cursor..]
                            .iter()
                            .position(|key| key.as_bytes() == item.key)
                            .ok_or(ProtocolError::UnexpectedReply { reply: "VALUE" })?;
                        cursor += offset;
                        let index = chunk[cursor];
                        cursor += 1;
                        // Keep reading to the end even when a value does
                        // not decode, so the connection stays in step.
                        match decode(item.data, item.flags) {
                            Ok(value) => hits.push((index, value)),
                            Err(e) => {
                                first_error.get_or_insert(e);
                            }
                        }
                        Ok(false)
                    }
                    other => Err(Error::from_reply(&other)),
                })? {}
                first_error.map_or(Ok(hits), Err)
            })?;
            found.append(&mut got);
        }
        Ok(found)
    }
}

/// The keys of a batch, prefixed and validated, and grouped by server.
struct Batch {
    bytes: Vec<u8>,
    ranges: Vec<Range<usize>>,
    /// Key indices, per server index.
    groups: Vec<Vec<usize>>,
}

impl Batch {
    fn key(&self, index: usize) -> Result<ValidKey<'_>> {
        let range = self.ranges.get(index).cloned().unwrap_or_default();
        let bytes = self.bytes.get(range).unwrap_or_default();
        Ok(ValidKey::new(bytes)?)
    }
}
