//! The TLS settings of [`ClientBuilder`] (feature `tls`).

use std::sync::Arc;

use super::ClientBuilder;
use crate::codec::Codec;
use crate::memcached::rustls;
use crate::memcached::tls::TlsSource;

impl<C: Codec> ClientBuilder<C> {
    /// Connects to every server over TLS (feature `tls`), with `config`
    /// (made with [`rustls`], re-exported as
    /// [`nearfar::memcached::rustls`](crate::memcached::rustls): a client
    /// certificate for memcached's `ssl_verify_mode`, other roots, other
    /// protocol versions). Replaces an earlier [`tls_ca_file`](Self::tls_ca_file).
    ///
    /// Each server's certificate is checked against the host of its
    /// address (an IP address against the certificate's IP address
    /// names), unless [`tls_server_name`](Self::tls_server_name) gives
    /// another name. memcached serves TLS when started with `-Z -o
    /// ssl_chain_cert=FILE,ssl_key=FILE`.
    ///
    /// Connecting, the handshake included, is bounded by the
    /// [connect timeout](Self::connect_timeout) and the call's
    /// [deadline](Self::request_timeout). A handshake that fails (a
    /// certificate not trusted, a port without TLS) fails the request with
    /// [`Error::Tls`](crate::memcached::Error::Tls), which names the server, is not retryable, and does
    /// not eject the server: every request to it reports it.
    ///
    /// The other way round, a client without TLS on a port that serves
    /// only TLS, memcached drops the connection at the first request: a
    /// retryable [`Error::Io`](crate::memcached::Error::Io) whose message
    /// asks "is the server expecting TLS?" (it cannot be told for certain
    /// from a server that died just then).
    ///
    /// `build` refuses a unix socket server with TLS
    /// ([`ConfigError::TlsUnixSocket`](crate::memcached::ConfigError::TlsUnixSocket)): memcached serves its unix sockets
    /// without TLS even with `-Z`, and the client does not fall back to the
    /// clear without being asked. Use a client without TLS for it.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use nearfar::memcached::{Client, rustls};
    ///
    /// // The CAs that signed the servers' certificates go in here
    /// // (`roots.add`), a client certificate below (`with_client_auth_cert`).
    /// let roots = rustls::RootCertStore::empty();
    /// let config = rustls::ClientConfig::builder()
    ///     .with_root_certificates(roots)
    ///     .with_no_client_auth();
    /// let client = Client::builder()
    ///     .servers(["cache-1.internal:11211", "10.0.0.2:11211"])
    ///     .tls(Arc::new(config))
    ///     .build()?;
    /// # Ok::<(), nearfar::memcached::Error>(())
    /// ```
    pub fn tls(mut self, config: Arc<rustls::ClientConfig>) -> Self {
        self.tls = Some(TlsSource::Config(config));
        self
    }

    /// Connects to every server over TLS (feature `tls`), trusting the CA
    /// certificates in the PEM file at `path` and only them (TLS 1.2 and
    /// 1.3, no client certificate, the crypto provider the application
    /// installed as rustls's process default or else ring's; for more, see
    /// [`tls`](Self::tls), which this replaces and whose notes apply).
    ///
    /// The file is read by `build`.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use nearfar::memcached::Client;
    ///
    /// let client = Client::builder()
    ///     .servers(["cache-1.internal:11211"])
    ///     .tls_ca_file("/etc/memcached/ca.pem")
    ///     .build()?;
    /// # Ok::<(), nearfar::memcached::Error>(())
    /// ```
    pub fn tls_ca_file(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.tls = Some(TlsSource::CaFile(path.into()));
        self
    }

    /// The name every server's certificate is checked against (a DNS name
    /// or an IP address), instead of each server's host (feature `tls`):
    /// for servers reached by addresses their certificates do not name
    /// (one certificate for the whole pool, say). `build` refuses it
    /// without [`tls`](Self::tls) or [`tls_ca_file`](Self::tls_ca_file).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use nearfar::memcached::Client;
    ///
    /// let client = Client::builder()
    ///     .servers(["10.0.0.1:11211", "10.0.0.2:11211"])
    ///     .tls_ca_file("/etc/memcached/ca.pem")
    ///     .tls_server_name("memcached.internal")
    ///     .build()?;
    /// # Ok::<(), nearfar::memcached::Error>(())
    /// ```
    pub fn tls_server_name(mut self, name: impl Into<String>) -> Self {
        self.tls_server_name = Some(name.into());
        self
    }
}
