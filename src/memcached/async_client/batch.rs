//! `get_many` and `set_many` for the async client: the core's plans, each
//! server's chunks run as exchanges, the servers concurrently.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::AsyncClient;
use crate::codec::Codec;
use crate::memcached::core::batch::GET_MANY_CHUNK;
use crate::memcached::core::exptime_now;
use crate::memcached::error::Result;
use crate::memcached::exchange::batch::{GetKeys, SetItems};

/// Batch requests may be sent again after a stale connection (reads, and
/// unconditional sets).
const IDEMPOTENT: bool = true;

impl<C: Codec> AsyncClient<C> {
    /// Reads many keys at once; the map holds the hits, by key as given.
    /// See [`Client::get_many`](crate::memcached::Client::get_many): the
    /// same batching, the servers queried concurrently.
    ///
    /// # Errors
    ///
    /// As [`Client::get_many`](crate::memcached::Client::get_many).
    pub async fn get_many<V: DeserializeOwned + Send>(
        &self,
        keys: &[impl AsRef<str>],
    ) -> Result<HashMap<String, V>> {
        let codec = &self.inner.codec;
        self.fetch_many(keys, |data, flags| Ok(codec.decode::<V>(data, flags)?))
            .await
    }

    /// Like [`AsyncClient::get_many`], without decoding: the map holds each
    /// hit's bytes and client flags.
    ///
    /// # Errors
    ///
    /// As [`AsyncClient::get_many`], without codec errors.
    pub async fn get_many_raw(
        &self,
        keys: &[impl AsRef<str>],
    ) -> Result<HashMap<String, (Vec<u8>, u32)>> {
        self.fetch_many(keys, |data, flags| Ok((data.to_vec(), flags)))
            .await
    }

    async fn fetch_many<V>(
        &self,
        keys: &[impl AsRef<str>],
        decode: impl Fn(&[u8], u32) -> Result<V>,
    ) -> Result<HashMap<String, V>> {
        let batch = self.inner.batch(keys.iter().map(AsRef::as_ref))?;
        let deadline = self.inner.deadline();
        let decode = &decode;
        let batch = &batch;
        let groups = batch.groups().map(|(server, indices)| async move {
            let mut found = Vec::with_capacity(indices.len());
            for chunk in indices.chunks(GET_MANY_CHUNK) {
                let keys = batch.keys(chunk)?;
                let get = || GetKeys::new(keys.clone(), chunk, decode);
                found.append(&mut self.on_server(server, IDEMPOTENT, deadline, get).await?);
            }
            Ok::<_, crate::memcached::error::Error>(found)
        });
        let mut out = HashMap::new();
        for found in join_all(groups.collect()).await {
            for (index, value) in found? {
                if let Some(key) = keys.get(index) {
                    out.insert(key.as_ref().to_owned(), value);
                }
            }
        }
        Ok(out)
    }

    /// Stores many values with one TTL. See
    /// [`Client::set_many`](crate::memcached::Client::set_many): the same
    /// checks and chunks, the servers written concurrently.
    ///
    /// # Errors
    ///
    /// As [`Client::set_many`](crate::memcached::Client::set_many).
    pub async fn set_many<K: AsRef<str>, V: Serialize + ?Sized>(
        &self,
        items: &[(K, &V)],
        ttl: Duration,
    ) -> Result<()> {
        let items = self.inner.set_items(items, exptime_now(ttl))?;
        let items = &items;
        let batch = &items.batch;
        self.inner.owe_ahead_of(batch);
        let deadline = self.inner.deadline();
        let groups = batch.groups().map(|(server, indices)| async move {
            let mut rest = indices;
            let mut first_error = None;
            while !rest.is_empty() {
                let (chunk, tail) = items.next_chunk(rest);
                let pairs = items.chunk(chunk)?;
                let set = || SetItems::new(pairs.clone(), items.exptime);
                if let Err(e) = self.on_server(server, IDEMPOTENT, deadline, set).await {
                    if self.inner.set_chunk_failed(server, batch, rest, &e) {
                        return Err(e);
                    }
                    first_error.get_or_insert(e);
                }
                rest = tail;
            }
            first_error.map_or(Ok(()), Err)
        });
        let results = join_all(groups.collect()).await;
        self.inner.owe_ahead_of(batch);
        results.into_iter().collect()
    }
}

/// Polls every future in `futures` until all are done; their outputs in
/// order. (A server's share of a batch per future: a handful.)
pub(super) async fn join_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(move |cx: &mut Context<'_>| {
        let mut pending = false;
        for (future, output) in futures.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(cx) {
                    Poll::Ready(value) => *output = Some(value),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(outputs.iter_mut().filter_map(Option::take).collect())
        }
    })
    .await
}
