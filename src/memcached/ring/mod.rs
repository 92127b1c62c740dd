//! Key distribution: which server of a pool holds a key.
//!
//! Three placements are offered, each matching an existing client byte for
//! byte so that Rust and non-Rust clients sharing one pool agree on every key:
//!
//! * [`Distribution::Ketama`] — libmemcached's *weighted* ketama continuum
//!   (`MEMCACHED_BEHAVIOR_KETAMA_WEIGHTED`), which is also what libketama and
//!   spymemcached's `KETAMA_HASH` compute (`ketama.rs`).
//! * [`Distribution::Rendezvous`] — pymemcache's `HashClient` default,
//!   highest-random-weight hashing with murmur3 (`rendezvous.rs`).
//! * [`Distribution::PythonMemcached`] (and its `Legacy` form) —
//!   python-memcached's CRC-32 hash modulo a weighted bucket list
//!   (`python_memcached.rs`).
//!
//! The lookups are pure functions of the server list, the key and which
//! servers are live; they do not allocate (but for a rendezvous key that is
//! not ASCII).
//!
//! Two inputs must be given as those clients give them for the placements
//! to agree:
//!
//! * The key is the caller's key *without* the client's key prefix for
//!   ketama and rendezvous: both pymemcache's `HashClient` (which passes its
//!   `key_prefix` down to the per-server clients and hashes the bare key)
//!   and libmemcached (unless `MEMCACHED_BEHAVIOR_HASH_WITH_NAMESPACE` is
//!   set) place a key by its unprefixed form. python-memcached hashes the
//!   key it sends, its `key_prefix` (of `get_multi`, `set_multi`) included.
//!   [`Distribution::hashes_key_prefix`] says which; the client passes the
//!   key accordingly.
//! * A server's label is `host:port`, with an IPv6 host written without
//!   brackets (`::1:11211`): pymemcache names its nodes `"%s:%s" % (host,
//!   port)` after stripping the brackets, and libmemcached's ketama point
//!   labels use the bare host name (`::1-0`, or `::1:11212-0` off the
//!   default port). A unix socket is labelled by its path.
//!   python-memcached places by list order and weight alone.

mod ketama;
mod python_memcached;
mod rendezvous;

use ketama::Continuum;
use python_memcached::Buckets;
use rendezvous::Rendezvous;

/// How keys are spread over the servers of a pool.
///
/// The default is [`Distribution::Ketama`]: it honours server weights and is
/// the placement most memcached clients (libmemcached, pylibmc, spymemcached,
/// php-memcached with `libketama_compatible`) agree on.
///
/// # Examples
///
/// Sharing a pool with Python processes that use python-memcached as
/// `memcache.Client([("10.0.0.1:11211", 2), "10.0.0.2:11211"])`:
///
/// ```
/// use nearfar::memcached::{Client, Distribution};
///
/// let client = Client::builder()
///     .servers(["10.0.0.1:11211:2", "10.0.0.2:11211"]) // same order, same weights
///     .distribution(Distribution::PythonMemcached)
///     .build()?; // connects lazily
/// assert_eq!(client.server_for("user:42")?, "10.0.0.1:11211");
/// # Ok::<(), nearfar::memcached::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Distribution {
    /// libmemcached's weighted ketama consistent hashing (MD5 continuum).
    ///
    /// Each server gets a number of points on a 32-bit circle proportional to
    /// its weight; a key belongs to the first point at or after the MD5 hash
    /// of the key. Adding or removing a server moves only the keys next to
    /// its points.
    ///
    /// This is the placement of libmemcached with
    /// `MEMCACHED_BEHAVIOR_KETAMA_WEIGHTED` (pylibmc: `"ketama_weighted": True`),
    /// which libmemcached also switches to on its own as soon as one server
    /// has a weight above 1. Servers on port 11211 are labelled by host alone
    /// (an IPv6 host without brackets, as libmemcached stores it), and keys
    /// are hashed without the key prefix, as libmemcached hashes them unless
    /// `MEMCACHED_BEHAVIOR_HASH_WITH_NAMESPACE` is set.
    #[default]
    Ketama,
    /// pymemcache's rendezvous (highest random weight) hashing.
    ///
    /// Every server scores a key with `murmur3_32("{server}-{key}")`; the
    /// highest score wins. Server weights are ignored, as in pymemcache.
    /// Server labels are written as pymemcache names its nodes (`host:port`,
    /// an IPv6 host without brackets), and keys hash without any key prefix,
    /// as pymemcache hashes them. Text hashes as pymemcache's murmur3 reads a
    /// Python `str`: one byte per character, its code point's low byte (for
    /// ASCII, its bytes; for other text, not the UTF-8 sent on the wire).
    /// Keys that are not UTF-8 hash as their bytes.
    Rendezvous,
    /// python-memcached's placement (`memcache.Client`), version 1.60 and
    /// later.
    ///
    /// A key's hash is bits 16 to 30 of the CRC-32 of its bytes; the key
    /// goes to bucket `hash % n` of a list that holds each server `weight`
    /// times, in the order the servers are given. So give this client the
    /// servers in the order, and with the weights, the Python clients are
    /// given: `memcache.Client([("10.0.0.1:11211", 2), "10.0.0.2:11211"])`
    /// is `.servers(["10.0.0.1:11211:2", "10.0.0.2:11211"])` here. Server
    /// names do not matter. A dead server's keys are rehashed as python-memcached
    /// does (the hash of the text `"{hash}{i}"` for try `i`); where it
    /// gives up, after ten dead picks, this client takes the first live
    /// server in list order. Adding or removing a server moves most keys.
    ///
    /// Keys hash *with* the key prefix: python-memcached hashes the key it
    /// sends, with the `key_prefix` its `get_multi` and `set_multi` take.
    PythonMemcached,
    /// python-memcached's placement as versions 1.59 and earlier compute
    /// it (Debian 12's `python3-memcache` is 1.59): as
    /// [`Distribution::PythonMemcached`], but a key whose hash is 0 (about
    /// one in 32,768) is taken as 1, and so moves to the next bucket.
    PythonMemcachedLegacy,
}

impl Distribution {
    /// Whether keys are placed by their prefixed form (the key as sent,
    /// the client's [`key_prefix`](super::ClientBuilder::key_prefix)
    /// included): python-memcached's placements. Ketama and rendezvous
    /// place a key by the key as given, as libmemcached and pymemcache do.
    pub(crate) fn hashes_key_prefix(self) -> bool {
        matches!(
            self,
            Distribution::PythonMemcached | Distribution::PythonMemcachedLegacy
        )
    }
}

/// A pool of servers laid out for one [`Distribution`].
///
/// Servers are identified by their index in the list the ring was built from.
#[derive(Debug, Clone)]
pub(crate) struct Ring {
    distribution: Distribution,
    labels: Vec<String>,
    placement: Placement,
}

#[derive(Debug, Clone)]
enum Placement {
    Ketama(Continuum),
    Rendezvous(Rendezvous),
    PythonMemcached(Buckets),
}

impl Ring {
    /// Builds a ring over `servers`, each given as `(label, weight)`.
    ///
    /// A label is `host:port` (a host without a port means port 11211; an
    /// IPv6 host is written without brackets, `::1:11211`) or a unix socket
    /// path. A weight of 0 counts as 1, as in libmemcached.
    /// Rendezvous ignores weights.
    pub(crate) fn new<S: AsRef<str>>(
        distribution: Distribution,
        servers: impl IntoIterator<Item = (S, u32)>,
    ) -> Ring {
        let (labels, weights): (Vec<String>, Vec<u32>) = servers
            .into_iter()
            .map(|(label, weight)| (label.as_ref().to_owned(), weight.max(1)))
            .unzip();
        let placement = match distribution {
            Distribution::Ketama => Placement::Ketama(Continuum::new(&labels, &weights)),
            Distribution::Rendezvous => Placement::Rendezvous(Rendezvous::new(&labels)),
            Distribution::PythonMemcached => {
                Placement::PythonMemcached(Buckets::new(&weights, false))
            }
            Distribution::PythonMemcachedLegacy => {
                Placement::PythonMemcached(Buckets::new(&weights, true))
            }
        };
        Ring {
            distribution,
            labels,
            placement,
        }
    }

    /// Builds a ring over `labels`, every server with weight 1.
    #[cfg_attr(
        not(test),
        expect(
            dead_code,
            reason = "used by the ring tests; the client routes with server_for_live"
        )
    )]
    pub(crate) fn unweighted<S: AsRef<str>>(
        distribution: Distribution,
        labels: impl IntoIterator<Item = S>,
    ) -> Ring {
        Ring::new(distribution, labels.into_iter().map(|label| (label, 1)))
    }

    /// The placement this ring uses.
    pub(crate) fn distribution(&self) -> Distribution {
        self.distribution
    }

    /// Number of servers.
    pub(crate) fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the ring has no server.
    #[cfg_attr(
        not(test),
        expect(
            dead_code,
            reason = "used by the ring tests; the client routes with server_for_live"
        )
    )]
    pub(crate) fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The label server `index` was given.
    #[cfg_attr(
        not(test),
        expect(
            dead_code,
            reason = "used by the ring tests; the client routes with server_for_live"
        )
    )]
    pub(crate) fn label(&self, index: usize) -> Option<&str> {
        self.labels.get(index).map(String::as_str)
    }

    /// The index of the server that holds `key`, or `None` for an empty ring.
    #[cfg_attr(
        not(test),
        expect(
            dead_code,
            reason = "used by the ring tests; the client routes with server_for_live"
        )
    )]
    pub(crate) fn server_for(&self, key: &[u8]) -> Option<usize> {
        self.server_for_live(key, |_| true)
    }

    /// Like [`Ring::server_for`], skipping the servers `is_live` rejects.
    ///
    /// Ketama walks clockwise from the key's point past the points of dead
    /// servers to the next live one; rendezvous takes the best-scoring live
    /// server; python-memcached rehashes the key. Either way a key whose
    /// server is live stays where it is, and the keys of a dead server
    /// spread over the others. `None` when no server is live. (Under ketama
    /// a server whose tiny weight earned it no point takes every key once
    /// it is the only live one.)
    ///
    /// (libmemcached's auto-eject instead rebuilds the continuum without the
    /// dead servers, which also shifts a few keys between live servers; the
    /// walk keeps them still.)
    pub(crate) fn server_for_live(
        &self,
        key: &[u8],
        is_live: impl Fn(usize) -> bool,
    ) -> Option<usize> {
        match &self.placement {
            Placement::Ketama(continuum) => continuum.server_for_live(key, is_live),
            Placement::Rendezvous(rendezvous) => {
                rendezvous.server_for_live(&self.labels, key, is_live)
            }
            Placement::PythonMemcached(buckets) => buckets.server_for_live(key, is_live),
        }
    }
}

#[cfg(test)]
mod tests;
