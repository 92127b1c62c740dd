//! Opening a multiplexed connection's stream: TCP, a unix socket, or TLS
//! over TCP (feature `tls`), as the reader and writer halves its two tasks
//! own. Connecting, the TLS handshake included, is bounded by the connect
//! timeout and by the call's deadline, whichever comes first, as the
//! blocking connection's is; a handshake cut short says so.

use std::io;
use std::pin::Pin;
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite};

use crate::memcached::address::{Address, ServerSpec};
use crate::memcached::conn::{ConnConfig, later};
use crate::memcached::error::{Error, Result};

/// The connection's read half, owned by its reader task.
pub(super) type Reader = Pin<Box<dyn AsyncRead + Send>>;
/// The connection's write half, owned by its writer task. It may hold
/// bytes back (TLS records) until flushed.
pub(super) type Writer = Pin<Box<dyn AsyncWrite + Send>>;

/// Connects to `server` within the connect timeout and by `deadline`
/// (the call's), whichever comes first.
///
/// # Errors
///
/// [`Error::Connect`] when connecting fails or times out (the TLS
/// handshake included: its message then names the handshake);
/// [`Error::Tls`] when the handshake fails.
pub(super) async fn open(
    server: &ServerSpec,
    config: &ConnConfig,
    deadline: Instant,
) -> Result<(Reader, Writer)> {
    let connect_by = later(Instant::now(), config.connect_timeout).min(deadline);
    match &server.address {
        Address::Tcp { host, port } => {
            let connect = tokio::net::TcpStream::connect((host.as_str(), *port));
            let stream = tokio::time::timeout_at(connect_by.into(), connect)
                .await
                .map_err(|_| timed_out(server))?
                .map_err(|e| connect_error(server, e))?;
            stream
                .set_nodelay(true)
                .map_err(|e| connect_error(server, e))?;
            #[cfg(feature = "tls")]
            if let Some(tls) = &config.tls {
                let name = tls.server_name(server)?;
                let connector =
                    tokio_rustls::TlsConnector::from(std::sync::Arc::clone(tls.config()));
                let handshake = connector.connect(name, stream);
                let stream = tokio::time::timeout_at(connect_by.into(), handshake)
                    .await
                    .map_err(|_| crate::memcached::tls::handshake_timed_out(server))?
                    .map_err(|e| crate::memcached::tls::handshake_error(server, e))?;
                let (read, write) = tokio::io::split(stream);
                return Ok((Box::pin(read), Box::pin(write)));
            }
            let (read, write) = stream.into_split();
            Ok((Box::pin(read), Box::pin(write)))
        }
        // Bounded as the blocking connect is not (see
        // `ClientBuilder::connect_timeout`), at no cost here.
        #[cfg(unix)]
        Address::Unix(path) => {
            let connect = tokio::net::UnixStream::connect(path);
            let stream = tokio::time::timeout_at(connect_by.into(), connect)
                .await
                .map_err(|_| timed_out(server))?
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

/// The error for a connect (before any handshake) not done in time.
fn timed_out(server: &ServerSpec) -> Error {
    connect_error(
        server,
        io::Error::new(
            io::ErrorKind::TimedOut,
            "connect timeout or request deadline reached",
        ),
    )
}

fn connect_error(server: &ServerSpec, source: io::Error) -> Error {
    Error::Connect {
        server: server.label.clone(),
        source,
    }
}
