//! The memcached client's error type.

use std::fmt;
use std::io;

use super::protocol::{KeyError, ProtocolError, Reply};
use crate::codec::CodecError;

/// A `Result` whose error defaults to the memcached client's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a memcached operation failed.
///
/// The variants keep apart what a caller reacts to differently: a transient
/// fault worth retrying ([`Error::is_retryable`]), a connection that is out of
/// step and must be closed ([`Error::drops_connection`]), the server's own
/// refusal, and mistakes in the request itself.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// Reading from or writing to the connection failed.
    ///
    /// A plain TCP connection that the server reset or closed before its
    /// first reply (on the connection's first request) keeps the error's
    /// kind (`ConnectionReset`, `UnexpectedEof`, ...) and says in its
    /// message: "is the server expecting TLS?". memcached serving TLS
    /// (`-Z`) drops a connection whose first bytes are not a TLS handshake,
    /// and that is all a client without TLS sees of it; a server that
    /// died or restarted just then looks the same, hence a question. Use
    /// `ClientBuilder::tls` or `tls_ca_file` (feature `tls`) for such a
    /// server.
    Io(io::Error),
    /// The server did not answer within the configured time.
    Timeout,
    /// The reply could not be parsed, or did not fit the request: the
    /// connection's byte stream can no longer be trusted.
    Protocol(ProtocolError),
    /// `SERVER_ERROR <message>`: the server could not carry out the request
    /// (for example, out of memory or an item too large for its slabs).
    Server(String),
    /// The server declined to store the item (`NS`, `NOT_STORED`) where the
    /// call has no `false` to report it with: [`Client::set`](super::Client::set),
    /// [`Client::set_raw`](super::Client::set_raw) and
    /// [`Client::set_many`](super::Client::set_many).
    NotStored,
    /// `CLIENT_ERROR <message>`, or `ERROR`: the server refused the request as
    /// ill-formed or unknown (a client bug, or a command the server lacks).
    ///
    /// The connection it came on is closed ([`Error::drops_connection`]):
    /// a server that does not understand a request may answer it more than
    /// once (a meta set sent to a server without meta commands draws one
    /// `ERROR` for its command line and another for its data line), so the
    /// client cannot tell where the next reply starts.
    Client(String),
    /// The value could not be encoded, or the stored bytes decoded.
    Codec(CodecError),
    /// The key cannot be sent to memcached.
    InvalidKey {
        /// Which rule the key breaks.
        reason: KeyError,
    },
    /// The encoded value does not fit memcached's item size limit under
    /// its key (see [`ClientBuilder::max_item_size`](super::ClientBuilder::max_item_size)).
    ValueTooLarge {
        /// The value's size in bytes.
        size: usize,
        /// The largest value the key can hold, in bytes: the item size
        /// limit less the key and memcached's item overhead.
        max: usize,
    },
    /// The key's server, and every fallback, is marked down.
    AllServersDown,
    /// Connecting to a server failed, or the server turned the new
    /// connection away: memcached at its connection limit (`-c`) answers
    /// `ERROR Too many open connections` and closes the socket, which is
    /// reported here rather than as [`Error::Client`].
    Connect {
        /// The server's address, as configured.
        server: String,
        /// The underlying failure.
        source: io::Error,
    },
    /// No pooled connection became free within the configured time.
    PoolTimeout,
    /// The client's configuration is invalid.
    Config(ConfigError),
    /// The TLS handshake with a server failed (feature `tls`): its
    /// certificate does not verify against the trusted CAs and the server
    /// name (`source` is then [`rustls::Error::InvalidCertificate`]), it
    /// does not speak TLS on that port
    /// ([`rustls::Error::InvalidMessage`]), or it refused the client's
    /// offer (an alert).
    ///
    /// Not retryable: every connection to that server fails the same way
    /// until the configuration on one side changes. Nor does it count
    /// against the server's health: the server is not ejected, so every
    /// request to it reports this error rather than
    /// [`Error::AllServersDown`]. A socket that fails or times out during
    /// the handshake is an [`Error::Connect`].
    #[cfg(feature = "tls")]
    Tls {
        /// The server's address, as configured.
        server: String,
        /// What the TLS layer refused.
        source: rustls::Error,
    },
}

/// Why a client configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// A server address could not be parsed.
    InvalidAddress {
        /// The address as given.
        address: String,
    },
    /// Two addresses name the same server (`10.0.0.1` and
    /// `10.0.0.1:11211`, say): each server is listed once, and given more
    /// of the keys by a weight (`host:port:weight`).
    DuplicateServer {
        /// The later address, as given.
        address: String,
        /// The earlier address naming the same server, as given.
        first: String,
        /// The server both name, as the client shows it (`host:port`, or
        /// the socket path).
        server: String,
    },
    /// A setting is out of its allowed range.
    InvalidSetting {
        /// The setting's name.
        setting: &'static str,
        /// What the allowed range is.
        expected: &'static str,
    },
    /// The configuration names no server.
    NoServers,
    /// The CA file given to
    /// [`ClientBuilder::tls_ca_file`](super::ClientBuilder::tls_ca_file)
    /// could not be read, or holds no usable PEM certificate (feature `tls`).
    #[cfg(feature = "tls")]
    TlsCaFile {
        /// The file.
        path: std::path::PathBuf,
        /// What was wrong with it.
        reason: String,
    },
    /// A name that cannot be a TLS server name (a DNS name or an IP
    /// address): the one given to
    /// [`ClientBuilder::tls_server_name`](super::ClientBuilder::tls_server_name),
    /// or, when none is, a server's host (feature `tls`).
    #[cfg(feature = "tls")]
    TlsServerName {
        /// The name.
        name: String,
    },
    /// TLS was asked for with a unix socket server: memcached serves its
    /// unix sockets without TLS, even with `-Z`, so the client refuses
    /// rather than talk to it in the clear (feature `tls`). Use a client
    /// without TLS for it.
    #[cfg(feature = "tls")]
    TlsUnixSocket {
        /// The socket's path.
        path: String,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::InvalidAddress { address } => {
                write!(f, "invalid server address {address:?}")
            }
            ConfigError::DuplicateServer {
                address,
                first,
                server,
            } => write!(
                f,
                "server address {address:?} is a duplicate: {first:?} names the same server \
                 ({server}); list each server once, with a weight (host:port:weight) to give \
                 it more keys"
            ),
            ConfigError::InvalidSetting { setting, expected } => {
                write!(f, "invalid {setting}: expected {expected}")
            }
            ConfigError::NoServers => f.write_str("no memcached server configured"),
            #[cfg(feature = "tls")]
            ConfigError::TlsCaFile { path, reason } => {
                write!(f, "cannot use the TLS CA file {}: {reason}", path.display())
            }
            #[cfg(feature = "tls")]
            ConfigError::TlsServerName { name } => write!(
                f,
                "{name:?} cannot be a TLS server name (a DNS name or an IP address): \
                 give one with tls_server_name"
            ),
            #[cfg(feature = "tls")]
            ConfigError::TlsUnixSocket { path } => write!(
                f,
                "TLS cannot be used with the unix socket {path}: memcached serves unix \
                 sockets without TLS; use a client without TLS for it"
            ),
        }
    }
}

impl std::error::Error for ConfigError {}

/// An I/O error that ended a plain TCP connection before the server's
/// first byte, as [`Error::Io`] describes: its kind kept, `e` its source,
/// and the hint in its message. Other kinds (a timeout, a refused write)
/// are returned as they are. Both drivers call it, each knowing whether
/// its connection has been answered yet.
pub(crate) fn before_first_reply(e: io::Error) -> io::Error {
    match e.kind() {
        io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::BrokenPipe
        | io::ErrorKind::UnexpectedEof => io::Error::new(e.kind(), Unanswered(e)),
        _ => e,
    }
}

/// See [`before_first_reply`].
#[derive(Debug)]
struct Unanswered(io::Error);

impl fmt::Display for Unanswered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}, before any reply on a new connection: is the server expecting TLS? \
             (memcached started with -Z drops a connection whose first bytes are not \
             a TLS handshake)",
            self.0
        )
    }
}

impl std::error::Error for Unanswered {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

impl Error {
    /// The error for a reply the request being answered cannot accept.
    ///
    /// The server's error lines become [`Error::Client`] (`ERROR`,
    /// `CLIENT_ERROR`) or [`Error::Server`] (`SERVER_ERROR`) with the server's
    /// message; any other reply becomes [`ProtocolError::UnexpectedReply`].
    /// Meant for the catch-all arm of the connection layer's reply `match`.
    /// (The connection layer itself turns memcached's `ERROR Too many open
    /// connections` into [`Error::Connect`] before a reply reaches the caller.)
    pub fn from_reply(reply: &Reply<'_>) -> Error {
        let text = |message: &[u8]| String::from_utf8_lossy(message).into_owned();
        match reply {
            Reply::Error([]) => Error::Client("unknown command".into()),
            Reply::Error(message) | Reply::ClientError(message) => Error::Client(text(message)),
            Reply::ServerError(message) => Error::Server(text(message)),
            other => Error::Protocol(ProtocolError::UnexpectedReply {
                reply: other.name(),
            }),
        }
    }

    /// Whether the same request may succeed if retried (on another
    /// connection, or after a pause).
    ///
    /// True for I/O failures, timeouts, failed or refused connects (a server
    /// at its connection limit included), pool timeouts and servers marked
    /// down. False for mistakes in the request (invalid key,
    /// value too large, codec errors, configuration), for the server's
    /// refusals (`CLIENT_ERROR`, `ERROR`, `SERVER_ERROR`), for protocol
    /// errors, which a retry would more likely repeat than cure, and for a
    /// failed TLS handshake (a certificate not trusted: a configuration
    /// that a retry does not change).
    ///
    /// It says nothing of whether a retry is safe. After an I/O error or a
    /// timeout the server may have carried out the request: resending an
    /// `incr`, an `append` or an `add` may apply it twice (or see its own
    /// first attempt as a conflict). The client itself resends only requests
    /// that are safe to repeat, and only when the failure came before any
    /// byte of the reply.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Io(_)
            | Error::Timeout
            | Error::Connect { .. }
            | Error::PoolTimeout
            | Error::AllServersDown => true,
            Error::Protocol(_)
            | Error::Server(_)
            | Error::NotStored
            | Error::Client(_)
            | Error::Codec(_)
            | Error::InvalidKey { .. }
            | Error::ValueTooLarge { .. }
            | Error::Config(_) => false,
            #[cfg(feature = "tls")]
            Error::Tls { .. } => false,
        }
    }

    /// Whether the connection the error happened on must be closed rather
    /// than returned to the pool.
    ///
    /// True for I/O failures, timeouts (a late reply would be read as the
    /// answer to the next request), protocol errors and the server's
    /// `ERROR` and `CLIENT_ERROR` lines ([`Error::Client`]): in each, the
    /// client no longer knows where the next reply starts. True as well for
    /// [`Error::Connect`], whose connection, if one was opened, the server
    /// turned away, and for a failed TLS handshake. `SERVER_ERROR` ([`Error::Server`]), a declined store and
    /// the caller's own mistakes leave the connection in step.
    pub fn drops_connection(&self) -> bool {
        matches!(
            self,
            Error::Io(_)
                | Error::Timeout
                | Error::Protocol(_)
                | Error::Client(_)
                | Error::Connect { .. }
        ) || self.is_tls()
    }

    /// Whether this is a failed TLS handshake ([`Error::Tls`]; never
    /// without feature `tls`).
    pub(crate) fn is_tls(&self) -> bool {
        #[cfg(feature = "tls")]
        if let Error::Tls { .. } = self {
            return true;
        }
        false
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io(e) => write!(f, "memcached I/O error: {e}"),
            Error::Timeout => f.write_str("memcached request timed out"),
            Error::Protocol(e) => write!(f, "memcached protocol error: {e}"),
            Error::Server(m) => write!(f, "memcached server error: {m}"),
            Error::NotStored => f.write_str("memcached did not store the item"),
            Error::Client(m) => write!(f, "memcached refused the request: {m}"),
            Error::Codec(e) => write!(f, "value codec error: {e}"),
            Error::InvalidKey { reason } => write!(f, "invalid memcached key: {reason}"),
            Error::ValueTooLarge { size, max } => {
                write!(
                    f,
                    "value of {size} bytes is over the {max} bytes memcached's item limit leaves for it under its key"
                )
            }
            Error::AllServersDown => f.write_str("all memcached servers are down"),
            Error::Connect { server, source } => {
                write!(f, "cannot connect to memcached at {server}: {source}")
            }
            Error::PoolTimeout => f.write_str("timed out waiting for a pooled connection"),
            Error::Config(e) => write!(f, "invalid memcached client configuration: {e}"),
            #[cfg(feature = "tls")]
            Error::Tls { server, source } => write!(
                f,
                "TLS handshake with memcached at {server} failed: {source}{}",
                super::tls::hint(source)
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(e) | Error::Connect { source: e, .. } => Some(e),
            Error::Protocol(e) => Some(e),
            Error::Codec(e) => Some(e),
            Error::InvalidKey { reason } => Some(reason),
            Error::Config(e) => Some(e),
            #[cfg(feature = "tls")]
            Error::Tls { source, .. } => Some(source),
            Error::Timeout
            | Error::Server(_)
            | Error::NotStored
            | Error::Client(_)
            | Error::ValueTooLarge { .. }
            | Error::AllServersDown
            | Error::PoolTimeout => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io(e)
    }
}

impl From<ProtocolError> for Error {
    fn from(e: ProtocolError) -> Self {
        Error::Protocol(e)
    }
}

impl From<CodecError> for Error {
    fn from(e: CodecError) -> Self {
        Error::Codec(e)
    }
}

impl From<KeyError> for Error {
    fn from(reason: KeyError) -> Self {
        Error::InvalidKey { reason }
    }
}

impl From<ConfigError> for Error {
    fn from(e: ConfigError) -> Self {
        Error::Config(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn retryable_and_connection_dropping_kinds() {
        let io = || Error::Io(io::Error::new(io::ErrorKind::ConnectionReset, "reset"));
        assert!(io().is_retryable() && io().drops_connection());
        assert!(Error::Timeout.is_retryable() && Error::Timeout.drops_connection());
        let protocol = Error::Protocol(ProtocolError::BadLineEnding);
        assert!(!protocol.is_retryable() && protocol.drops_connection());
        assert!(Error::AllServersDown.is_retryable());
        assert!(!Error::AllServersDown.drops_connection());
        assert!(Error::PoolTimeout.is_retryable());
        let connect = Error::Connect {
            server: "127.0.0.1:11211".into(),
            source: io::Error::from(io::ErrorKind::ConnectionRefused),
        };
        assert!(connect.is_retryable() && connect.drops_connection());
        // An `ERROR` or `CLIENT_ERROR` line may be followed by more replies
        // than the request asked for: never reuse the connection after one.
        let client = Error::Client("bad command line format".into());
        assert!(!client.is_retryable() && client.drops_connection());

        let key = Error::from(KeyError::Empty);
        let too_large = Error::ValueTooLarge { size: 2, max: 1 };
        let codec = Error::from(CodecError::UnsupportedFlags(1));
        let server = Error::Server("out of memory storing object".into());
        for e in [key, too_large, codec, server, Error::NotStored] {
            assert!(!e.is_retryable(), "{e:?}");
            assert!(!e.drops_connection(), "{e:?}");
        }
    }

    #[test]
    fn error_replies_map_to_error_kinds() {
        assert!(matches!(
            Error::from_reply(&Reply::Error(b"")),
            Error::Client(m) if m == "unknown command"
        ));
        assert!(matches!(
            Error::from_reply(&Reply::ClientError(b"bad data chunk")),
            Error::Client(m) if m == "bad data chunk"
        ));
        assert!(matches!(
            Error::from_reply(&Reply::ServerError(b"out of memory")),
            Error::Server(m) if m == "out of memory"
        ));
        let e = Error::from_reply(&Reply::Stored);
        assert!(matches!(
            e,
            Error::Protocol(ProtocolError::UnexpectedReply { reply: "STORED" })
        ));
        assert!(e.drops_connection());
    }

    #[test]
    fn a_connection_ended_before_any_reply_hints_at_tls() {
        for kind in [
            io::ErrorKind::ConnectionReset,
            io::ErrorKind::ConnectionAborted,
            io::ErrorKind::BrokenPipe,
            io::ErrorKind::UnexpectedEof,
        ] {
            let e = Error::Io(before_first_reply(io::Error::new(kind, "gone")));
            let Error::Io(io) = &e else { unreachable!() };
            assert_eq!(io.kind(), kind);
            let message = e.to_string();
            assert!(
                message.starts_with("memcached I/O error: gone, "),
                "{message}"
            );
            assert!(
                message.contains("is the server expecting TLS?"),
                "{message}"
            );
            // As retryable as before, and the original error is its source.
            assert!(e.is_retryable() && e.drops_connection());
            let inner = io.get_ref().and_then(|inner| inner.source());
            assert_eq!(inner.map(ToString::to_string).as_deref(), Some("gone"));
        }
        let refused = before_first_reply(io::Error::from(io::ErrorKind::PermissionDenied));
        assert!(!refused.to_string().contains("TLS"), "{refused}");
        assert!(refused.get_ref().is_none());
    }

    #[test]
    fn sources_and_messages() {
        let e = Error::from(KeyError::TooLong { len: 300 });
        assert!(matches!(
            e,
            Error::InvalidKey {
                reason: KeyError::TooLong { len: 300 }
            }
        ));
        assert_eq!(
            e.to_string(),
            "invalid memcached key: key is 300 bytes long, the limit is 250"
        );
        assert!(e.source().is_some());

        let e = Error::from(io::Error::other("boom"));
        assert_eq!(e.source().map(ToString::to_string).as_deref(), Some("boom"));
        assert!(Error::Timeout.source().is_none());
        assert_eq!(
            Error::Server("out of memory".into()).to_string(),
            "memcached server error: out of memory"
        );
        let e = Error::from(ConfigError::NoServers);
        assert!(e.source().is_some());
    }
}
