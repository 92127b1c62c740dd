//! Whole-cluster operations of the async client, and what it knows of its
//! servers.

use std::collections::HashMap;

use super::AsyncClient;
use super::batch::join_all;
use crate::codec::Codec;
use crate::memcached::error::Result;
use crate::memcached::exchange::Exchange;
use crate::memcached::exchange::server::{FlushAll, Stats, Version};

impl<C: Codec> AsyncClient<C> {
    /// Runs the exchange `make` builds on every server, dead ones included,
    /// concurrently and each within its own request timeout, and collects
    /// `(server label, result)`; fails with the first error after trying
    /// all.
    async fn on_every_server<E: Exchange>(
        &self,
        make: impl Fn() -> E,
    ) -> Result<Vec<(String, E::Output)>> {
        let make = &make;
        let each = self
            .inner
            .servers
            .iter()
            .enumerate()
            .map(|(index, server)| async move {
                let deadline = self.inner.deadline();
                let result = self.on_server(index, true, deadline, make).await;
                result.map(|value| (server.spec.label.clone(), value))
            });
        join_all(each.collect()).await.into_iter().collect()
    }

    /// Removes every item from every server (`flush_all`).
    ///
    /// # Errors
    ///
    /// The first error of any server, after all were tried.
    pub async fn flush_all(&self) -> Result<()> {
        self.on_every_server(FlushAll::default).await?;
        Ok(())
    }

    /// Each server's label and version string.
    ///
    /// # Errors
    ///
    /// The first error of any server, after all were tried.
    pub async fn version(&self) -> Result<Vec<(String, String)>> {
        self.on_every_server(Version::default).await
    }

    /// Each server's label and general statistics (`stats`), by name.
    ///
    /// # Errors
    ///
    /// The first error of any server, after all were tried.
    pub async fn stats(&self) -> Result<Vec<(String, HashMap<String, String>)>> {
        self.on_every_server(Stats::default).await
    }

    /// The prefix put in front of every key; empty when none was set.
    pub fn key_prefix(&self) -> &str {
        self.inner.key_prefix()
    }

    /// The configured servers' labels, in order.
    pub fn servers(&self) -> Vec<String> {
        self.inner.labels()
    }

    /// The label of the server `key` is sent to now, skipping servers
    /// marked dead.
    ///
    /// # Errors
    ///
    /// As [`Client::server_for`](crate::memcached::Client::server_for).
    pub fn server_for(&self, key: &str) -> Result<String> {
        self.inner.server_for(key)
    }

    /// Whether the server labelled `server` is marked dead now.
    pub fn is_marked_dead(&self, server: &str) -> bool {
        self.inner.is_marked_dead(server)
    }

    /// Records that the write of `key` was skipped by the caller: see
    /// [`Core::owe_invalidation`](crate::memcached::core::Core::owe_invalidation).
    #[allow(dead_code, reason = "AsyncNearFar's breaker")]
    pub(crate) fn owe_invalidation(&self, key: &str) {
        self.inner.owe_invalidation(key);
    }

    /// Whether a request would be sent now: see
    /// [`Core::can_send`](crate::memcached::core::Core::can_send).
    pub(crate) fn can_send(&self) -> bool {
        self.inner.can_send()
    }
}
