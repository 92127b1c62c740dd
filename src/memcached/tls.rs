//! TLS to memcached (feature `tls`): the settings both drivers use, the
//! server name each connection presents, what a failed handshake means,
//! and the blocking driver's handshake.
//!
//! memcached serves TLS when started with `-Z` (OpenSSL on its side). The
//! client side is rustls with the `ring` provider. A connection is TCP
//! first, then the handshake, both within the connect timeout and the
//! call's deadline; then the connection's stream (`conn.rs`'s `Stream`, or
//! the async connection's reader and writer halves) carries TLS records,
//! and nothing above it knows.
//!
//! The server name checked against the server's certificate is the host
//! of its address (an IP address is checked against the certificate's IP
//! address names), unless [`ClientBuilder::tls_server_name`] gives one
//! for every server. memcached serves its unix sockets without TLS even
//! under `-Z`, so a TLS client refuses a unix socket path at build rather
//! than talk to it in the clear.
//!
//! [`ClientBuilder::tls_server_name`]: super::ClientBuilder::tls_server_name

use std::fmt;
use std::io;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

use super::address::{Address, ServerSpec};
use super::conn::time_left;
use super::error::{ConfigError, Error, Result};

/// Where a builder's TLS configuration comes from.
#[derive(Debug, Clone)]
pub(crate) enum TlsSource {
    /// A configuration the caller made.
    Config(Arc<ClientConfig>),
    /// A PEM file of CA certificates to trust, read at build.
    CaFile(PathBuf),
}

/// A client's TLS settings: its configuration and, when set, the one
/// server name every server's certificate is checked against.
#[derive(Clone)]
pub(crate) struct Tls {
    config: Arc<ClientConfig>,
    name: Option<ServerName<'static>>,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls")
            .field("server_name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Tls {
    /// The settings from `source` (a CA file is read now) and the name
    /// override `name`, checked against every server in `servers`.
    ///
    /// # Errors
    ///
    /// [`ConfigError::TlsCaFile`] when the CA file cannot be read or holds
    /// no certificate; [`ConfigError::TlsServerName`] when `name`, or a
    /// server's host when no name is given, cannot be a TLS server name;
    /// [`ConfigError::TlsUnixSocket`] for a unix socket server.
    pub(crate) fn new(
        source: &TlsSource,
        name: Option<&str>,
        servers: &[ServerSpec],
    ) -> Result<Tls, ConfigError> {
        let name = name.map(server_name).transpose()?;
        let config = match source {
            TlsSource::Config(config) => Arc::clone(config),
            TlsSource::CaFile(path) => config_trusting(path)?,
        };
        let tls = Tls { config, name };
        for server in servers {
            tls.server_name(server)?;
        }
        Ok(tls)
    }

    /// The configuration a connection's handshake runs with.
    #[cfg(feature = "tokio")]
    pub(crate) fn config(&self) -> &Arc<ClientConfig> {
        &self.config
    }

    /// The name `server`'s certificate must carry: the override, or the
    /// server's host.
    ///
    /// # Errors
    ///
    /// As [`Tls::new`] (which checked every server: a client built never
    /// fails here).
    pub(crate) fn server_name(
        &self,
        server: &ServerSpec,
    ) -> Result<ServerName<'static>, ConfigError> {
        match (&server.address, &self.name) {
            (Address::Unix(path), _) => Err(ConfigError::TlsUnixSocket { path: path.clone() }),
            (Address::Tcp { .. }, Some(name)) => Ok(name.clone()),
            (Address::Tcp { host, .. }, None) => server_name(host),
        }
    }

    /// Runs the handshake on `tcp`, connected to `server`, by `connect_by`
    /// (the connect timeout's end, or the call's deadline if sooner).
    ///
    /// # Errors
    ///
    /// [`Error::Tls`] when the handshake fails ([`handshake_error`]);
    /// [`Error::Connect`] when the socket fails, or the handshake is not
    /// done by `connect_by`.
    pub(crate) fn handshake(
        &self,
        server: &ServerSpec,
        mut tcp: TcpStream,
        connect_by: Instant,
    ) -> Result<StreamOwned<ClientConnection, TcpStream>> {
        let name = self.server_name(server)?;
        let mut tls = ClientConnection::new(Arc::clone(&self.config), name)
            .map_err(|source| tls_error(server, source))?;
        while tls.is_handshaking() {
            let Some(remaining) = time_left(connect_by) else {
                return Err(handshake_timed_out(server));
            };
            tcp.set_read_timeout(Some(remaining))
                .and_then(|()| tcp.set_write_timeout(Some(remaining)))
                .map_err(|e| handshake_error(server, e))?;
            match tls.complete_io(&mut tcp) {
                Ok(_) => {}
                // Woken by the timeout (the loop's top decides) or a signal.
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) => {}
                Err(e) => return Err(handshake_error(server, e)),
            }
        }
        Ok(StreamOwned::new(tls, tcp))
    }
}

/// The error for a handshake with `server` that failed with `e`: the TLS
/// layer's own refusal ([`Error::Tls`]: a certificate not trusted, a server
/// that does not speak TLS), or the socket's ([`Error::Connect`]).
pub(crate) fn handshake_error(server: &ServerSpec, e: io::Error) -> Error {
    if let Some(source) = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        return tls_error(server, source.clone());
    }
    let source = match e.kind() {
        io::ErrorKind::UnexpectedEof => io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the server closed the connection during the TLS handshake",
        ),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
            return handshake_timed_out(server);
        }
        _ => e,
    };
    Error::Connect {
        server: server.label.clone(),
        source,
    }
}

/// The error for a handshake not done within the connect timeout or the
/// call's deadline.
pub(crate) fn handshake_timed_out(server: &ServerSpec) -> Error {
    Error::Connect {
        server: server.label.clone(),
        source: io::Error::new(
            io::ErrorKind::TimedOut,
            "TLS handshake not done within the connect timeout or the request deadline",
        ),
    }
}

fn tls_error(server: &ServerSpec, source: rustls::Error) -> Error {
    Error::Tls {
        server: server.label.clone(),
        source,
    }
}

/// What to check, after a handshake failed with `e`, when its message
/// alone may not say it (for [`Error::Tls`]'s message).
pub(crate) fn hint(e: &rustls::Error) -> &'static str {
    use rustls::CertificateError as C;
    match e {
        rustls::Error::InvalidCertificate(C::UnknownIssuer | C::BadSignature) => {
            "; the server's certificate is not signed by a CA the client trusts \
             (see ClientBuilder::tls_ca_file)"
        }
        rustls::Error::InvalidCertificate(
            C::NotValidForName | C::NotValidForNameContext { .. },
        ) => {
            "; the server's certificate does not name the server as the client \
             addresses it (see ClientBuilder::tls_server_name)"
        }
        rustls::Error::InvalidMessage(_) => {
            "; the server does not speak TLS on that port (memcached serves TLS with -Z)"
        }
        _ => "",
    }
}

/// `name` as a TLS server name: a DNS name, or an IP address.
fn server_name(name: &str) -> Result<ServerName<'static>, ConfigError> {
    ServerName::try_from(name.to_owned()).map_err(|_| ConfigError::TlsServerName {
        name: name.to_owned(),
    })
}

/// The crypto provider of the configurations made here: the process
/// default, if the application installed one
/// (`CryptoProvider::install_default`: aws-lc-rs, say, for its
/// post-quantum key exchange), else ring's.
///
/// Named rather than left to rustls's own choice by crate features, which
/// fails when a dependency tree turns on both of its providers and no
/// default is installed. rustls 0.23.48 deprecated ring's provider for its
/// lack of post-quantum key exchange; it is kept because aws-lc-rs needs
/// cmake to build (see Cargo.toml).
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    rustls::crypto::CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| {
            #[allow(deprecated)]
            Arc::new(rustls::crypto::ring::default_provider())
        })
}

/// A configuration (TLS 1.2 and 1.3, no client certificate, the crypto
/// [`provider`]) that trusts the CA certificates in the PEM file at `path`,
/// and only them.
fn config_trusting(path: &Path) -> Result<Arc<ClientConfig>, ConfigError> {
    let refused = |reason: String| ConfigError::TlsCaFile {
        path: path.to_owned(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<std::result::Result<Vec<_>, _>>())
        .map_err(|e| refused(e.to_string()))?;
    let mut roots = RootCertStore::empty();
    let (_, unusable) = roots.add_parsable_certificates(certs);
    if roots.is_empty() {
        return Err(refused(if unusable == 0 {
            "no PEM certificate in it".to_owned()
        } else {
            format!("none of its {unusable} certificates could be used as a CA")
        }));
    }
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| refused(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(address: &str) -> ServerSpec {
        ServerSpec::parse(address).unwrap()
    }

    fn any_config() -> TlsSource {
        let config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(RootCertStore::empty())
            .with_no_client_auth();
        TlsSource::Config(Arc::new(config))
    }

    #[test]
    fn server_names_come_from_hosts_or_the_override() {
        let servers = [
            spec("cache.example:11211"),
            spec("127.0.0.1:1"),
            spec("[::1]:2"),
        ];
        let tls = Tls::new(&any_config(), None, &servers).unwrap();
        let names: Vec<String> = servers
            .iter()
            .map(|s| tls.server_name(s).unwrap().to_str().into_owned())
            .collect();
        assert_eq!(names, ["cache.example", "127.0.0.1", "::1"]);
        assert!(matches!(
            tls.server_name(&servers[1]).unwrap(),
            ServerName::IpAddress(_)
        ));

        let tls = Tls::new(&any_config(), Some("memcached.internal"), &servers).unwrap();
        for server in &servers {
            assert_eq!(
                tls.server_name(server).unwrap().to_str(),
                "memcached.internal"
            );
        }
    }

    #[test]
    fn bad_names_and_unix_sockets_are_refused_at_build() {
        let servers = [spec("127.0.0.1:1")];
        assert_eq!(
            Tls::new(&any_config(), Some("not a name"), &servers).unwrap_err(),
            ConfigError::TlsServerName {
                name: "not a name".into()
            }
        );
        let unix = [spec("127.0.0.1:1"), spec("/run/memcached.sock")];
        let e = Tls::new(&any_config(), Some("memcached.internal"), &unix).unwrap_err();
        assert_eq!(
            e,
            ConfigError::TlsUnixSocket {
                path: "/run/memcached.sock".into()
            }
        );
        assert!(e.to_string().contains("/run/memcached.sock"), "{e}");
    }

    #[test]
    fn ca_files_that_cannot_be_used() {
        let dir = std::env::temp_dir().join(format!("nearfar-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let servers = [spec("127.0.0.1:1")];
        let missing = dir.join("missing.pem");
        let e = Tls::new(&TlsSource::CaFile(missing.clone()), None, &servers).unwrap_err();
        assert!(
            matches!(&e, ConfigError::TlsCaFile { path, .. } if *path == missing),
            "{e:?}"
        );
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "no certificate here\n").unwrap();
        let e = Tls::new(&TlsSource::CaFile(empty), None, &servers).unwrap_err();
        assert!(e.to_string().contains("no PEM certificate"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn handshake_errors_are_typed_and_hinted() {
        let server = spec("127.0.0.1:1");
        let untrusted = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let e = handshake_error(
            &server,
            io::Error::new(io::ErrorKind::InvalidData, untrusted),
        );
        assert!(matches!(&e, Error::Tls { server, .. } if server == "127.0.0.1:1"));
        let message = e.to_string();
        assert!(message.contains("127.0.0.1:1"), "{message}");
        assert!(message.contains("tls_ca_file"), "{message}");
        assert!(!e.is_retryable());

        let e = handshake_error(&server, io::Error::from(io::ErrorKind::UnexpectedEof));
        assert!(
            matches!(&e, Error::Connect { .. }) && e.is_retryable(),
            "{e:?}"
        );
        let e = handshake_error(&server, io::Error::from(io::ErrorKind::WouldBlock));
        assert!(e.to_string().contains("TLS handshake not done"), "{e}");
    }
}
