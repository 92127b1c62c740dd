//! Opening a multiplexed connection's stream: TCP, a unix socket, or TLS
//! over TCP (feature `tls`), as the reader and writer halves its two tasks
//! own. Connecting, the TLS handshake included, is bounded by the connect
//! timeout (and by the call's deadline, which the pool applies).

use std::io;
use std::pin::Pin;

use tokio::io::{AsyncRead, AsyncWrite};

use crate::memcached::address::{Address, ServerSpec};
use crate::memcached::conn::ConnConfig;
use crate::memcached::error::{Error, Result};

/// The connection's read half, owned by its reader task.
pub(super) type Reader = Pin<Box<dyn AsyncRead + Send>>;
/// The connection's write half, owned by its writer task. It may hold
/// bytes back (TLS records) until flushed.
pub(super) type Writer = Pin<Box<dyn AsyncWrite + Send>>;

/// Connects to `server` within the connect timeout.
///
/// # Errors
///
/// [`Error::Connect`] when connecting fails or times out (the TLS
/// handshake included); [`Error::Tls`] when the handshake fails.
pub(super) async fn open(server: &ServerSpec, config: &ConnConfig) -> Result<(Reader, Writer)> {
    tokio::time::timeout(config.connect_timeout, connect(server, config))
        .await
        .map_err(|_| {
            connect_error(
                server,
                io::Error::new(io::ErrorKind::TimedOut, "connect timeout reached"),
            )
        })?
}

async fn connect(server: &ServerSpec, config: &ConnConfig) -> Result<(Reader, Writer)> {
    match &server.address {
        Address::Tcp { host, port } => {
            let stream = tokio::net::TcpStream::connect((host.as_str(), *port))
                .await
                .map_err(|e| connect_error(server, e))?;
            stream
                .set_nodelay(true)
                .map_err(|e| connect_error(server, e))?;
            #[cfg(feature = "tls")]
            if let Some(tls) = &config.tls {
                let name = tls.server_name(server)?;
                let connector =
                    tokio_rustls::TlsConnector::from(std::sync::Arc::clone(tls.config()));
                let stream = connector
                    .connect(name, stream)
                    .await
                    .map_err(|e| crate::memcached::tls::handshake_error(server, e))?;
                let (read, write) = tokio::io::split(stream);
                return Ok((Box::pin(read), Box::pin(write)));
            }
            #[cfg(not(feature = "tls"))]
            let _ = config;
            let (read, write) = stream.into_split();
            Ok((Box::pin(read), Box::pin(write)))
        }
        #[cfg(unix)]
        Address::Unix(path) => {
            let stream = tokio::net::UnixStream::connect(path)
                .await
                .map_err(|e| connect_error(server, e))?;
            let (read, write) = stream.into_split();
            Ok((Box::pin(read), Box::pin(write)))
        }
        #[cfg(not(unix))]
        Address::Unix(_) => Err(connect_error(
            server,
            io::Error::new(
                io::ErrorKind::Unsupported,
                "unix sockets are not supported on this platform",
            ),
        )),
    }
}

fn connect_error(server: &ServerSpec, source: io::Error) -> Error {
    Error::Connect {
        server: server.label.clone(),
        source,
    }
}
