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
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # let client = nearfar::memcached::Client::builder().servers(["127.0.0.1:11211"]).build()?;
    /// // A test starting from empty servers.
    /// client.set("greeting", "hello", Duration::from_secs(60))?;
    /// client.flush_all()?;
    /// assert_eq!(client.get::<String>("greeting")?, None);
    /// # Ok::<(), nearfar::memcached::Error>(())
    /// ```
    pub fn flush_all(&self) -> Result<()> {
        self.on_every_server(FlushAll::default)?;
        Ok(())
    }

    /// Each server's label and version string.
    ///
    /// # Errors
    ///
    /// The first error of any server, after all were tried.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # let client = nearfar::memcached::Client::builder().servers(["127.0.0.1:11211"]).build()?;
    /// let versions = client.version()?;
    /// assert_eq!(versions.len(), client.servers().len()); // each server answered
    /// for (server, version) in &versions {
    ///     println!("{server} runs memcached {version}"); // 127.0.0.1:11211 ... 1.6.18
    /// }
    /// # Ok::<(), nearfar::memcached::Error>(())
    /// ```
    pub fn version(&self) -> Result<Vec<(String, String)>> {
        self.on_every_server(Version::default)
    }

    /// Each server's label and general statistics (`stats`), by name.
    ///
    /// # Errors
    ///
    /// The first error of any server, after all were tried.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # let client = nearfar::memcached::Client::builder().servers(["127.0.0.1:11211"]).build()?;
    /// for (server, stats) in client.stats()? {
    ///     let items = stats.get("curr_items").map_or("?", String::as_str);
    ///     let memory = stats.get("bytes").map_or("?", String::as_str);
    ///     println!("{server}: {items} items in {memory} bytes");
    /// }
    /// # Ok::<(), nearfar::memcached::Error>(())
    /// ```
    pub fn stats(&self) -> Result<Vec<(String, HashMap<String, String>)>> {
        self.on_every_server(Stats::default)
    }

    /// The prefix put in front of every key (see
    /// [`ClientBuilder::key_prefix`](super::ClientBuilder::key_prefix)); empty when none was set.
    ///
    /// # Examples
    ///
    /// ```
    /// use nearfar::memcached::Client;
    ///
    /// let client = Client::builder()
    ///     .servers(["127.0.0.1:11211"])
    ///     .key_prefix("billing:v2:")
    ///     .build()?;
    /// assert_eq!(client.key_prefix(), "billing:v2:");
    /// // client.get("invoice:7") reads the server's "billing:v2:invoice:7".
    /// # Ok::<(), nearfar::memcached::Error>(())
    /// ```
    pub fn key_prefix(&self) -> &str {
        self.inner.key_prefix()
    }

    /// The configured servers' labels (`host:port` or socket path), in order.
    ///
    /// # Examples
    ///
    /// ```
    /// use nearfar::memcached::Client;
    ///
    /// let client = Client::builder()
    ///     .servers(["10.0.0.1", "10.0.0.2:11212:2", "[::1]:11211", "/run/memcached.sock"])
    ///     .build()?; // connects lazily: no server needs to be up yet
    /// assert_eq!(
    ///     client.servers(),
    ///     ["10.0.0.1:11211", "10.0.0.2:11212", "[::1]:11211", "/run/memcached.sock"]
    /// );
    /// # Ok::<(), nearfar::memcached::Error>(())
    /// ```
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
    ///
    /// # Examples
    ///
    /// ```
    /// use nearfar::memcached::{Client, Error};
    ///
    /// let servers = ["10.0.0.1:11211", "10.0.0.2:11211", "10.0.0.3:11211"];
    /// let client = Client::builder().servers(servers).build()?; // connects lazily
    /// let server = client.server_for("user:42")?;
    /// assert!(servers.contains(&server.as_str()));
    /// // The prefix does not move keys between servers.
    /// let prefixed = Client::builder().servers(servers).key_prefix("app:").build()?;
    /// assert_eq!(prefixed.server_for("user:42")?, server);
    /// assert!(matches!(client.server_for("no spaces"), Err(Error::InvalidKey { .. })));
    /// # Ok::<(), nearfar::memcached::Error>(())
    /// ```
    pub fn server_for(&self, key: &str) -> Result<String> {
        self.inner.server_for(key)
    }

    /// Whether the server labelled `server` is marked dead now.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use nearfar::MockClock;
    /// use nearfar::memcached::{Client, Error};
    ///
    /// let down = "/nonexistent/memcached.sock"; // a server that cannot be reached
    /// let clock = MockClock::new();
    /// let client = Client::builder()
    ///     .servers([down])
    ///     .retry_attempts(1)
    ///     .dead_timeout(Duration::from_secs(5))
    ///     .clock(clock.clone())
    ///     .build()?;
    /// assert!(!client.is_marked_dead(down)); // nothing has failed yet
    ///
    /// assert!(matches!(client.get::<String>("k"), Err(Error::Connect { .. })));
    /// assert!(client.is_marked_dead(down));
    /// // Left out: no request is sent to it for `dead_timeout`.
    /// assert!(matches!(client.get::<String>("k"), Err(Error::AllServersDown)));
    /// clock.advance(Duration::from_secs(5));
    /// assert!(!client.is_marked_dead(down)); // due for a probe
    /// # Ok::<(), nearfar::memcached::Error>(())
    /// ```
    pub fn is_marked_dead(&self, server: &str) -> bool {
        self.inner.is_marked_dead(server)
    }
}
