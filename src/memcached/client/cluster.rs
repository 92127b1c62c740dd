//! Whole-cluster operations and what the client knows of its servers.

use std::collections::HashMap;

use super::{Client, IDEMPOTENT, KeyBuf};
use crate::codec::Codec;
use crate::memcached::conn::Conn;
use crate::memcached::error::{Error, Result};
use crate::memcached::protocol::{Reply, encode_flush_all, encode_stats, encode_version};

impl<C: Codec> Client<C> {
    // ---- whole-cluster operations -------------------------------------

    /// Runs `op` on every server, dead ones included, one after another and
    /// each within its own request timeout, and collects `(server label,
    /// result)`; fails with the first error after trying all.
    fn on_every_server<T>(&self, op: impl Fn(&mut Conn) -> Result<T>) -> Result<Vec<(String, T)>> {
        let mut out = Vec::with_capacity(self.inner.pools.len());
        let mut first_error = None;
        for (index, pool) in self.inner.pools.iter().enumerate() {
            match self.on_server(index, IDEMPOTENT, self.deadline(), &op) {
                Ok(value) => out.push((pool.spec.label.clone(), value)),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map_or(Ok(out), Err)
    }

    /// Removes every item from every server (`flush_all`).
    ///
    /// # Errors
    ///
    /// The first error of any server, after all were tried.
    pub fn flush_all(&self) -> Result<()> {
        self.on_every_server(flush_all_on)?;
        Ok(())
    }

    /// Each server's label and version string.
    ///
    /// # Errors
    ///
    /// The first error of any server, after all were tried.
    pub fn version(&self) -> Result<Vec<(String, String)>> {
        self.on_every_server(|conn| {
            encode_version(conn.request());
            conn.send()?;
            conn.recv(|reply| match reply {
                Reply::Version(v) => Ok(String::from_utf8_lossy(v).into_owned()),
                other => Err(Error::from_reply(&other)),
            })
        })
    }

    /// Each server's label and general statistics (`stats`), by name.
    ///
    /// # Errors
    ///
    /// The first error of any server, after all were tried.
    pub fn stats(&self) -> Result<Vec<(String, HashMap<String, String>)>> {
        self.on_every_server(|conn| {
            encode_stats(conn.request(), []);
            conn.send()?;
            let mut stats = HashMap::new();
            while !conn.recv(|reply| match reply {
                Reply::Stat { name, value } => {
                    stats.insert(
                        String::from_utf8_lossy(name).into_owned(),
                        String::from_utf8_lossy(value).into_owned(),
                    );
                    Ok(false)
                }
                Reply::End => Ok(true),
                other => Err(Error::from_reply(&other)),
            })? {}
            Ok(stats)
        })
    }

    /// The prefix put in front of every key (see
    /// [`ClientBuilder::key_prefix`](super::ClientBuilder::key_prefix)); empty when none was set.
    pub fn key_prefix(&self) -> &str {
        // Checked to be a valid key part (so ASCII) when the client was built.
        std::str::from_utf8(&self.inner.prefix).unwrap_or_default()
    }

    /// The configured servers' labels (`host:port` or socket path), in order.
    pub fn servers(&self) -> Vec<String> {
        self.inner
            .pools
            .iter()
            .map(|p| p.spec.label.clone())
            .collect()
    }

    /// The label of the server `key` is sent to now, skipping servers
    /// marked dead.
    ///
    /// The key is placed as given, without the key prefix (which only
    /// changes the key stored on the server), so the answer is the same
    /// with or without a prefix, and the same as pymemcache's `HashClient`
    /// or libmemcached gives for that key over the same servers.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidKey`] (the prefixed key is checked), or
    /// [`Error::AllServersDown`].
    pub fn server_for(&self, key: &str) -> Result<String> {
        let mut buf = KeyBuf::new();
        let valid = self.key(key, &mut buf)?;
        let now = self.now();
        // Only looks: claims no probe of a server whose dead period is over.
        let server = self
            .pick(self.placement(valid.as_bytes()), |i| {
                self.inner
                    .pools
                    .get(i)
                    .is_some_and(|p| p.health.is_routable(now))
            })
            .ok_or(Error::AllServersDown)?;
        Ok(self.inner.pools[server].spec.label.clone())
    }

    /// Whether the server labelled `server` is marked dead now.
    pub fn is_marked_dead(&self, server: &str) -> bool {
        let now = self.now();
        self.inner
            .pools
            .iter()
            .any(|p| p.spec.label == server && !p.health.is_routable(now))
    }
}

/// Sends `flush_all` on `conn` and reads its `OK`.
pub(super) fn flush_all_on(conn: &mut Conn) -> Result<()> {
    encode_flush_all(conn.request(), None, false);
    conn.send()?;
    conn.recv(|reply| match reply {
        Reply::Ok => Ok(()),
        other => Err(Error::from_reply(&other)),
    })
}
