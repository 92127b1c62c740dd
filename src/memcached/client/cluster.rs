//! Whole-cluster operations and what the client knows of its servers.

use std::collections::HashMap;

use super::{Client, IDEMPOTENT};
use crate::codec::Codec;
use crate::memcached::error::Result;
use crate::memcached::exchange::Exchange;
use crate::memcached::exchange::server::{FlushAll, Stats, Version};

impl<C: Codec> Client<C> {
    // ---- whole-cluster operations -------------------------------------

    /// Runs `op` on every server, dead ones included, one after another and
    /// each within its own request timeout, and collects `(server label,
    /// result)`; fails with the first error after trying all.
    fn on_every_server<E: Exchange>(
        &self,
        exchange: impl Fn() -> E,
    ) -> Result<Vec<(String, E::Output)>> {
        let mut out = Vec::with_capacity(self.inner.servers.len());
        let mut first_error = None;
        for (index, server) in self.inner.servers.iter().enumerate() {
            let deadline = self.inner.deadline();
            match self.on_server(index, IDEMPOTENT, deadline, |conn| {
                conn.exchange(exchange())
            }) {
                Ok(value) => out.push((server.spec.label.clone(), value)),
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
        self.on_every_server(FlushAll::default)?;
        Ok(())
    }

    /// Each server's label and version string.
    ///
    /// # Errors
    ///
    /// The first error of any server, after all were tried.
    pub fn version(&self) -> Result<Vec<(String, String)>> {
        self.on_every_server(Version::default)
    }

    /// Each server's label and general statistics (`stats`), by name.
    ///
    /// # Errors
    ///
    /// The first error of any server, after all were tried.
    pub fn stats(&self) -> Result<Vec<(String, HashMap<String, String>)>> {
        self.on_every_server(Stats::default)
    }

    /// The prefix put in front of every key (see
    /// [`ClientBuilder::key_prefix`](super::ClientBuilder::key_prefix)); empty when none was set.
    pub fn key_prefix(&self) -> &str {
        self.inner.key_prefix()
    }

    /// The configured servers' labels (`host:port` or socket path), in order.
    pub fn servers(&self) -> Vec<String> {
        self.inner.labels()
    }

    /// The label of the server `key` is sent to now, skipping servers
    /// marked dead.
    ///
    /// Under ketama and rendezvous the key is placed as given, without the
    /// key prefix (which only changes the key stored on the server), so the
    /// answer is the same with or without a prefix, and the same as
    /// pymemcache's `HashClient` or libmemcached gives for that key over the
    /// same servers. Under [`Distribution::PythonMemcached`] the prefixed
    /// key is placed, as python-memcached places it (see
    /// [`ClientBuilder::key_prefix`]).
    ///
    /// [`Distribution::PythonMemcached`]: crate::memcached::Distribution::PythonMemcached
    /// [`ClientBuilder::key_prefix`]: crate::memcached::ClientBuilder::key_prefix
    ///
    /// # Errors
    ///
    /// [`Error::InvalidKey`](crate::memcached::Error::InvalidKey) (the prefixed key is checked), or
    /// [`Error::AllServersDown`](crate::memcached::Error::AllServersDown).
    pub fn server_for(&self, key: &str) -> Result<String> {
        self.inner.server_for(key)
    }

    /// Whether the server labelled `server` is marked dead now.
    pub fn is_marked_dead(&self, server: &str) -> bool {
        self.inner.is_marked_dead(server)
    }
}
