//! The exchanges of the batches: one chunk of `get_many` (a multi-key text
//! `get`), one chunk of `set_many` (quiet meta sets, then a no-op), and one
//! chunk of a server's owed invalidations (meta deletes).

use super::{Exchange, Framing, MetaRequest};
use crate::memcached::command::meta_status;
use crate::memcached::error::{Error, Result};
use crate::memcached::protocol::{
    MetaDeleteFlags, MetaSetFlags, MetaStatus, ProtocolError, Reply, ValidKey, encode_get,
    encode_meta_delete, encode_meta_noop, encode_meta_set,
};

/// One chunk of a multi-key read: `keys[i]` is the key of batch index
/// `indices[i]`; each hit is decoded by `decode` into `(index, value)`.
pub(crate) struct GetKeys<'a, V, D> {
    pub(crate) keys: Vec<ValidKey<'a>>,
    pub(crate) indices: &'a [usize],
    pub(crate) decode: &'a D,
    /// The next key a `VALUE` may name: hits come back in request order.
    cursor: usize,
    hits: Vec<(usize, V)>,
    first_error: Option<Error>,
}

impl<'a, V, D: Fn(&[u8], u32) -> Result<V>> GetKeys<'a, V, D> {
    pub(crate) fn new(keys: Vec<ValidKey<'a>>, indices: &'a [usize], decode: &'a D) -> Self {
        GetKeys {
            keys,
            indices,
            decode,
            cursor: 0,
            hits: Vec::new(),
            first_error: None,
        }
    }
}

impl<V, D: Fn(&[u8], u32) -> Result<V>> Exchange for GetKeys<'_, V, D> {
    type Output = Vec<(usize, V)>;

    fn encode(&self, request: &mut MetaRequest<'_>) -> Result<()> {
        encode_get(request.out(), self.keys.iter().copied());
        Ok(())
    }

    fn framing(&self) -> Framing {
        Framing::UntilEnd
    }

    fn feed(&mut self, reply: Reply<'_>) -> Result<()> {
        match reply {
            Reply::End => Ok(()),
            Reply::Value(item) => {
                // Match each hit to the next requested key with its name.
                let offset = self.keys[self.cursor..]
                    .iter()
                    .position(|key| key.as_bytes() == item.key)
                    .ok_or(ProtocolError::UnexpectedReply { reply: "VALUE" })?;
                self.cursor += offset;
                let index = self.indices[self.cursor];
                self.cursor += 1;
                // Read on to the end even when a value does not decode, so
                // the connection stays in step.
                match (self.decode)(item.data, item.flags) {
                    Ok(value) => self.hits.push((index, value)),
                    Err(e) => {
                        self.first_error.get_or_insert(e);
                    }
                }
                Ok(())
            }
            other => Err(Error::from_reply(&other)),
        }
    }

    fn finish(self) -> Result<Vec<(usize, V)>> {
        self.first_error.map_or(Ok(self.hits), Err)
    }
}

/// One chunk of a multi-key write: each `(key, data, flags)` as a quiet meta
/// set with client flags `flags` and expiry `exptime`, then a no-op that
/// ends the reply.
pub(crate) struct SetItems<'a> {
    pub(crate) items: Vec<(ValidKey<'a>, &'a [u8], u32)>,
    pub(crate) exptime: u32,
    first_error: Option<Error>,
}

impl<'a> SetItems<'a> {
    pub(crate) fn new(items: Vec<(ValidKey<'a>, &'a [u8], u32)>, exptime: u32) -> Self {
        SetItems {
            items,
            exptime,
            first_error: None,
        }
    }
}

impl Exchange for SetItems<'_> {
    type Output = ();

    fn encode(&self, request: &mut MetaRequest<'_>) -> Result<()> {
        for &(key, data, client_flags) in &self.items {
            let flags = MetaSetFlags {
                ttl: Some(self.exptime),
                client_flags: Some(client_flags),
                quiet: true,
                ..MetaSetFlags::default()
            };
            let opaque = request.tag(key);
            encode_meta_set(request.out(), key, data, &flags.tagged(opaque));
        }
        encode_meta_noop(request.out());
        Ok(())
    }

    fn framing(&self) -> Framing {
        Framing::UntilNoop
    }

    fn feed(&mut self, reply: Reply<'_>) -> Result<()> {
        match meta_status(&reply) {
            Some(MetaStatus::NoOp) => Ok(()),
            Some(MetaStatus::NotStored) => {
                self.first_error.get_or_insert(Error::NotStored);
                Ok(())
            }
            // The server carried on after it: the rest of the replies still
            // come, so read on to the no-op.
            _ if matches!(reply, Reply::ServerError(_)) => {
                self.first_error.get_or_insert(Error::from_reply(&reply));
                Ok(())
            }
            // `ERROR` and `CLIENT_ERROR` (a command the server lacks, a bad
            // data chunk) can come with more replies than there were
            // requests: stop here, and the connection is closed.
            _ => Err(Error::from_reply(&reply)),
        }
    }

    fn finish(self) -> Result<()> {
        self.first_error.map_or(Ok(()), Err)
    }
}

/// Deletes keys in one pipelined round trip (a server settling what it
/// owes). Reads every reply before it fails, so the connection stays in
/// step unless the error itself drops it.
pub(crate) struct DeleteKeys<'a> {
    pub(crate) keys: &'a [(Box<[u8]>, u64)],
    first_error: Option<Error>,
}

impl<'a> DeleteKeys<'a> {
    pub(crate) fn new(keys: &'a [(Box<[u8]>, u64)]) -> Self {
        DeleteKeys {
            keys,
            first_error: None,
        }
    }
}

impl Exchange for DeleteKeys<'_> {
    type Output = ();

    fn encode(&self, request: &mut MetaRequest<'_>) -> Result<()> {
        for (key, _) in self.keys {
            let key = ValidKey::new(key)?;
            let opaque = request.tag(key);
            let flags = MetaDeleteFlags::default().tagged(opaque);
            encode_meta_delete(request.out(), key, &flags);
        }
        Ok(())
    }

    fn framing(&self) -> Framing {
        Framing::Replies(self.keys.len())
    }

    fn feed(&mut self, reply: Reply<'_>) -> Result<()> {
        match meta_status(&reply) {
            Some(MetaStatus::Success | MetaStatus::NotFound) => Ok(()),
            // The server carries on after it: read the other replies.
            _ if matches!(reply, Reply::ServerError(_)) => {
                self.first_error.get_or_insert(Error::from_reply(&reply));
                Ok(())
            }
            _ => Err(Error::from_reply(&reply)),
        }
    }

    fn finish(self) -> Result<()> {
        self.first_error.map_or(Ok(()), Err)
    }
}
