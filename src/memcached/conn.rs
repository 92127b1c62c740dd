//! One connection to one server: a blocking socket, a reused write buffer,
//! and a reused read buffer fed to the pure reply parser.
//!
//! The only logic here is the I/O loop: write the request, then read until
//! [`parse_reply`] returns a whole frame, within the I/O timeout. What a
//! frame means for the request is decided by the caller (the client), which
//! receives each frame through a closure while it still borrows the buffer.
//!
//! # Matching replies to requests
//!
//! Every meta command the client sends carries an opaque token (`O`, from
//! a per-connection counter) and asks for its key back (`k`): each is
//! registered with [`MetaRequest::tag`] as the request is built. memcached
//! echoes both on every meta reply, and [`Conn::recv`] checks each meta
//! reply against the commands still awaiting one before the caller sees
//! it: the token must be that of one of them (a later one than any already
//! answered, as replies come in order; quiet commands skip theirs), and the
//! key, when echoed, that command's key. A reply that matches nothing (a
//! late answer to an earlier request, a reply no request asked for, one
//! without a token) fails with [`ProtocolError::UnmatchedReply`], which
//! drops the connection. Text requests ([`Conn::request`]) register
//! nothing, so no meta reply is accepted for them; the client matches the
//! keys of a multi-key `get`'s `VALUE` lines itself. Replies that carry no
//! token by design (`MN`, and the error lines `ERROR`, `CLIENT_ERROR`,
//! `SERVER_ERROR`) are left to the caller, as are the text replies of
//! `version`, `stats` and `flush_all`, which name no key.
//!
//! # Timeouts
//!
//! Two limits bound a request. The I/O timeout bounds inactivity: a
//! request fails with [`Error::Timeout`] when no byte could be written or
//! read for `io_timeout`, and every write or read that moves bytes pushes
//! that limit back to `io_timeout` from then, so a large multi-get reply
//! that keeps streaming is not cut off half way. The call's deadline bounds
//! the whole: the client computes it once per call (`request_timeout` from
//! the call's start) and hands it to every connection the call uses
//! ([`Conn::bound`]), so a server trickling bytes can hold a caller no
//! longer than that, however many requests the call makes. Every read and
//! write, the first included, waits no longer than the nearer of the two.
//! Connecting is bounded by the connect timeout and the deadline alike,
//! its TLS handshake included (feature `tls`: see `tls.rs`).

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
#[cfg(unix)]
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use super::address::{Address, ServerSpec};
use super::error::{Error, Result, before_first_reply};
use super::exchange::{Exchange, Framed, Framer, MetaRequest, Tags};
use super::protocol::{MetaStatus, ProtocolError, Reply, parse_reply};

/// The read buffer's starting size. Most replies are far smaller; larger
/// values grow the buffer as they arrive.
const INITIAL_READ_BUF: usize = 16 * 1024;

/// After a request that grew the read buffer beyond this, it is shrunk back,
/// so one large value does not pin memory in every pooled connection.
const RETAINED_READ_BUF: usize = 256 * 1024;

/// The write buffer's starting capacity.
const INITIAL_WRITE_BUF: usize = 1024;

/// After a request that grew the write buffer beyond this (a large value, or
/// a large `set_many` batch), it is shrunk back, as the read buffer is.
const RETAINED_WRITE_BUF: usize = 256 * 1024;

/// How far a socket timeout may overshoot the request's deadline before it
/// is shortened to fit (a `setsockopt` per read would cost more than the
/// precision is worth); also at most a twentieth of the I/O timeout.
const TIMEOUT_SLACK: Duration = Duration::from_millis(5);

enum Stream {
    Tcp(TcpStream),
    #[cfg(unix)]
    Unix(UnixStream),
    /// TLS over TCP (feature `tls`): the socket's timeouts bound its reads
    /// and writes as they bound a plain socket's. Reads go through rustls's
    /// stream; writes make records ([`Stream::write`]) that [`Conn::send`]
    /// sends ([`Stream::send_held`]).
    #[cfg(feature = "tls")]
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Stream {
    fn set_read_timeout(&self, timeout: Duration) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_read_timeout(Some(timeout)),
            #[cfg(unix)]
            Stream::Unix(s) => s.set_read_timeout(Some(timeout)),
            #[cfg(feature = "tls")]
            Stream::Tls(s) => s.sock.set_read_timeout(Some(timeout)),
        }
    }

    fn set_write_timeout(&self, timeout: Duration) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_write_timeout(Some(timeout)),
            #[cfg(unix)]
            Stream::Unix(s) => s.set_write_timeout(Some(timeout)),
            #[cfg(feature = "tls")]
            Stream::Tls(s) => s.sock.set_write_timeout(Some(timeout)),
        }
    }

    fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_nonblocking(nonblocking),
            #[cfg(unix)]
            Stream::Unix(s) => s.set_nonblocking(nonblocking),
            #[cfg(feature = "tls")]
            Stream::Tls(s) => s.sock.set_nonblocking(nonblocking),
        }
    }

    /// Whether bytes written are still held above the socket: TLS records
    /// not sent yet ([`Stream::write`] only makes them).
    fn holds_writes(&self) -> bool {
        match self {
            #[cfg(feature = "tls")]
            Stream::Tls(s) => s.conn.wants_write(),
            _ => false,
        }
    }

    /// Sends some of what [`Stream::holds_writes`]: one socket write,
    /// within the socket's write timeout (its error, a timeout included,
    /// is the caller's). `Ok(0)` when nothing is held.
    fn send_held(&mut self) -> io::Result<usize> {
        match self {
            #[cfg(feature = "tls")]
            Stream::Tls(s) => {
                let s = &mut **s;
                s.conn.write_tls(&mut s.sock)
            }
            _ => Ok(0),
        }
    }

    fn shutdown(&self) {
        // Best effort: the socket is being dropped anyway (a TLS stream
        // sends no close_notify: memcached reads the end of stream alike).
        let _ = match self {
            Stream::Tcp(s) => s.shutdown(Shutdown::Both),
            #[cfg(unix)]
            Stream::Unix(s) => s.shutdown(Shutdown::Both),
            #[cfg(feature = "tls")]
            Stream::Tls(s) => s.sock.shutdown(Shutdown::Both),
        };
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            #[cfg(unix)]
            Stream::Unix(s) => s.read(buf),
            #[cfg(feature = "tls")]
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            #[cfg(unix)]
            Stream::Unix(s) => s.write(buf),
            // Into TLS records, held until `send_held` sends them: no
            // I/O here (rustls's own stream would also read when a write
            // blocks, waiting past the write's deadline).
            #[cfg(feature = "tls")]
            Stream::Tls(s) => s.conn.writer().write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Connection settings shared by every connection of a client.
#[derive(Debug, Clone)]
pub(crate) struct ConnConfig {
    pub(crate) connect_timeout: Duration,
    pub(crate) io_timeout: Duration,
    /// The largest data block accepted in a reply.
    pub(crate) max_value: usize,
    /// TLS on every connection (feature `tls`).
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<super::tls::Tls>,
}

impl ConnConfig {
    /// Whether connections run TLS (never without feature `tls`).
    #[cfg(feature = "tokio")]
    pub(crate) fn is_tls(&self) -> bool {
        #[cfg(feature = "tls")]
        return self.tls.is_some();
        #[cfg(not(feature = "tls"))]
        false
    }
}

/// One open connection.
pub(crate) struct Conn {
    stream: Stream,
    /// The server's label, for [`Error::Connect`] when the server turns the
    /// connection away.
    server: String,
    /// The request being built; sent whole by [`Conn::send`].
    wbuf: Vec<u8>,
    /// Received bytes: `rbuf[pos..filled]` is not parsed yet. The vector's
    /// length is its usable size; bytes past `filled` are scratch.
    rbuf: Vec<u8>,
    pos: usize,
    filled: usize,
    io_timeout: Duration,
    max_value: usize,
    /// When the request in flight fails unless more bytes move by then.
    deadline: Instant,
    /// When the call using the connection fails whatever moves (set by
    /// [`Conn::bound`]): the deadline is never pushed past this.
    cap: Instant,
    /// The socket's read and write timeouts in force.
    read_timeout: Duration,
    write_timeout: Duration,
    /// When the connection last went back to the pool.
    idle_since: Instant,
    /// The meta commands of the request in flight, awaiting replies.
    tags: Tags,
    /// The opaque token of the next meta command sent on this connection.
    next_opaque: u32,
    /// Whether the server has sent a byte on this connection yet.
    answered: bool,
}

/// A connection back in use within this time of its last request skips the
/// liveness check: a server that closed it (a restart, an idle timeout) did
/// so while it sat idle, and no restart completes this fast. Back-to-back
/// requests then pay one clock read instead of three system calls.
const CHECK_AFTER_IDLE: Duration = Duration::from_millis(1);

impl fmt::Debug for Conn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Conn")
            .field("buffered", &(self.filled - self.pos))
            .finish_non_exhaustive()
    }
}

impl Conn {
    /// Opens a connection to `server`, bounded by the connect timeout and
    /// by the call's `deadline`, whichever comes first.
    ///
    /// The timeout covers every address the host resolves to together:
    /// each attempt gets only what the earlier ones left. (Name resolution
    /// itself is the system resolver's and is not bounded here.) The
    /// connection's requests are bounded by `deadline` until
    /// [`Conn::bound`] sets another.
    ///
    /// A unix socket is connected with a plain blocking `connect`, which
    /// the timeout does not bound: `std` connects a `UnixStream` before
    /// any option can be set on it, and a bounded connect would need a
    /// non-blocking socket made through `libc`. Such a connect fails at
    /// once when nothing listens on the path; it waits only while the
    /// listener's accept backlog is full (on Linux, until there is room).
    pub(crate) fn connect(
        server: &ServerSpec,
        config: &ConnConfig,
        deadline: Instant,
    ) -> Result<Conn> {
        let connect_error = |source: io::Error| Error::Connect {
            server: server.label.clone(),
            source,
        };
        let stream = match &server.address {
            Address::Tcp { host, port } => {
                let addrs = (host.as_str(), *port)
                    .to_socket_addrs()
                    .map_err(connect_error)?;
                let mut last =
                    io::Error::new(io::ErrorKind::NotFound, "address resolved to nothing");
                let mut connected = None;
                let connect_by = later(Instant::now(), config.connect_timeout).min(deadline);
                for addr in addrs {
                    let Some(remaining) = time_left(connect_by) else {
                        last = io::Error::new(
                            io::ErrorKind::TimedOut,
                            "connect timeout or request deadline reached",
                        );
                        break;
                    };
                    match TcpStream::connect_timeout(&addr, remaining) {
                        Ok(stream) => {
                            connected = Some(stream);
                            break;
                        }
                        Err(e) => last = e,
                    }
                }
                let stream = connected.ok_or_else(|| connect_error(last))?;
                stream.set_nodelay(true).map_err(connect_error)?;
                #[cfg(feature = "tls")]
                if let Some(tls) = &config.tls {
                    let stream = tls.handshake(server, stream, connect_by)?;
                    return Conn::over(Stream::Tls(Box::new(stream)), server, config, deadline);
                }
                Stream::Tcp(stream)
            }
            #[cfg(unix)]
            Address::Unix(path) => Stream::Unix(UnixStream::connect(path).map_err(connect_error)?),
            #[cfg(not(unix))]
            Address::Unix(_) => {
                return Err(connect_error(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "unix sockets are not supported on this platform",
                )));
            }
        };
        Conn::over(stream, server, config, deadline)
    }

    /// A connection over `stream`, connected to `server`.
    fn over(
        stream: Stream,
        server: &ServerSpec,
        config: &ConnConfig,
        deadline: Instant,
    ) -> Result<Conn> {
        stream
            .set_read_timeout(config.io_timeout)
            .and_then(|()| stream.set_write_timeout(config.io_timeout))
            .map_err(|source| Error::Connect {
                server: server.label.clone(),
                source,
            })?;
        Ok(Conn {
            stream,
            server: server.label.clone(),
            wbuf: Vec::with_capacity(INITIAL_WRITE_BUF),
            rbuf: vec![0; INITIAL_READ_BUF],
            pos: 0,
            filled: 0,
            io_timeout: config.io_timeout,
            max_value: config.max_value,
            deadline: Instant::now(),
            cap: deadline,
            read_timeout: config.io_timeout,
            write_timeout: config.io_timeout,
            idle_since: Instant::now(),
            tags: Tags::default(),
            next_opaque: 1,
            answered: false,
        })
    }

    /// Whether a connection that sat idle in the pool can still carry a
    /// request, checked without blocking and before anything is sent.
    ///
    /// A connection is dead when the server closed it (a restart closes
    /// every connection), when the socket reports an error, or when bytes
    /// are waiting that no request asked for (the stream is out of step).
    /// Only a read that would block proves it alive. A dead connection may
    /// have lost a byte to the check: it must be dropped, not used.
    ///
    /// A connection checked in less than [`CHECK_AFTER_IDLE`] ago is not
    /// probed (the probe costs three system calls; a busy pool reuses
    /// connections within microseconds): only bytes already buffered are
    /// caught then. Every error that could leave the stream out of step
    /// drops the connection before it is checked in, so what the skip can
    /// miss is a server sending replies nobody asked for.
    pub(crate) fn is_alive(&mut self) -> bool {
        if self.filled == self.pos && self.idle_since.elapsed() < CHECK_AFTER_IDLE {
            return true;
        }
        if self.filled != self.pos || self.stream.set_nonblocking(true).is_err() {
            return false;
        }
        let mut byte = [0u8; 1];
        let alive = loop {
            match self.stream.read(&mut byte) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // End of stream, unsolicited data, or a socket error.
                _ => break false,
            }
        };
        alive && self.stream.set_nonblocking(false).is_ok()
    }

    /// Starts a request (empty); each meta command in it is registered with
    /// [`MetaRequest::tag`] so that its reply can be matched to it (a text
    /// request registers nothing, and gets no meta reply).
    pub(crate) fn meta_request(&mut self) -> MetaRequest<'_> {
        self.tags.clear();
        self.wbuf.clear();
        MetaRequest::new(&mut self.wbuf, &mut self.tags, &mut self.next_opaque)
    }

    /// Bounds the requests sent from now on by the call's `deadline`.
    pub(crate) fn bound(&mut self, deadline: Instant) {
        self.cap = deadline;
    }

    /// Sends the request built in [`Conn::meta_request`] and starts its
    /// inactivity timer, within the call's deadline ([`Conn::bound`]).
    pub(crate) fn send(&mut self) -> Result<()> {
        if self.filled != self.pos {
            // Bytes nobody asked for: the stream is out of step.
            return Err(Error::Protocol(ProtocolError::UnexpectedReply {
                reply: "unsolicited data",
            }));
        }
        // Timeouts shortened for an earlier request's deadline go back to
        // the full length (rare: it takes a request that nearly timed out).
        if self.read_timeout < self.io_timeout {
            self.stream.set_read_timeout(self.io_timeout)?;
            self.read_timeout = self.io_timeout;
        }
        if self.write_timeout < self.io_timeout {
            self.stream.set_write_timeout(self.io_timeout)?;
            self.write_timeout = self.io_timeout;
        }
        self.progressed();
        let mut sent = 0;
        // A TLS stream takes bytes into records without I/O and holds them
        // (`Stream::holds_writes`): what it holds is sent first, one socket
        // write at a time, each within the timeouts as a plain write is.
        while sent < self.wbuf.len() || self.stream.holds_writes() {
            let remaining = self.remaining()?;
            if self.overshoots(remaining, self.write_timeout) {
                self.stream.set_write_timeout(remaining)?;
                self.write_timeout = remaining;
            }
            let written = if self.stream.holds_writes() {
                self.stream.send_held()
            } else {
                let written = self.stream.write(&self.wbuf[sent..]);
                if let Ok(n) = written {
                    sent += n;
                }
                written
            };
            match written {
                Ok(0) => return Err(Error::Io(io::Error::from(io::ErrorKind::WriteZero))),
                Ok(_) => self.progressed(),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if is_timeout(&e) => {
                    // Woke at the deadline, or early on a timeout set for a
                    // tighter one: the next round decides.
                    let remaining = self.remaining()?;
                    self.stream.set_write_timeout(remaining)?;
                    self.write_timeout = remaining;
                }
                Err(e) => return Err(self.failed(e)),
            }
        }
        Ok(())
    }

    /// The error for a read or write that failed with `e`: a socket
    /// timeout is [`Error::Timeout`]; a plain TCP connection ended before
    /// the server's first byte gets the hint of [`before_first_reply`].
    fn failed(&self, e: io::Error) -> Error {
        if is_timeout(&e) {
            Error::Timeout
        } else if !self.answered && matches!(self.stream, Stream::Tcp(_)) {
            Error::Io(before_first_reply(e))
        } else {
            Error::Io(e)
        }
    }

    /// Shrinks buffers that a large request or reply grew past what is
    /// worth keeping. Called when the connection goes back to the pool, so
    /// idle connections do not pin memory; stamps when it went idle.
    pub(crate) fn trim(&mut self) {
        self.idle_since = Instant::now();
        if self.wbuf.capacity() > RETAINED_WRITE_BUF {
            self.wbuf = Vec::with_capacity(INITIAL_WRITE_BUF);
        } else {
            self.wbuf.clear();
        }
        // Unparsed bytes are kept: the connection is out of step, and the
        // liveness check drops it.
        if self.pos == self.filled {
            self.pos = 0;
            self.filled = 0;
            if self.rbuf.len() > RETAINED_READ_BUF {
                self.rbuf.truncate(INITIAL_READ_BUF);
                self.rbuf.shrink_to_fit();
            }
        }
    }

    /// The time left before the request's deadline, or [`Error::Timeout`].
    fn remaining(&self) -> Result<Duration> {
        time_left(self.deadline).ok_or(Error::Timeout)
    }

    /// Whether a socket timeout of `current` would wait past the deadline
    /// `remaining` away by more than the slack.
    fn overshoots(&self, remaining: Duration, current: Duration) -> bool {
        let slack = TIMEOUT_SLACK.min(self.io_timeout / 20);
        remaining.saturating_add(slack) < current
    }

    /// Bytes moved (or the request starts): it may now wait `io_timeout`
    /// from here, within the call's deadline.
    fn progressed(&mut self) {
        self.deadline = later(Instant::now(), self.io_timeout).min(self.cap);
    }

    /// Runs `exchange` on this connection: sends its request, then feeds
    /// it its reply frame by frame, up to where its [`Framer`] says the
    /// reply ends. The result is the exchange's; an error that
    /// [drops the connection](Error::drops_connection) leaves it out of step.
    pub(crate) fn exchange<E: Exchange>(&mut self, mut exchange: E) -> Result<E::Output> {
        exchange.encode(&mut self.meta_request())?;
        self.send()?;
        let mut framer = Framer::new(exchange.framing());
        loop {
            let framed = self.recv(|reply| {
                let framed = framer.push(&reply);
                exchange.feed(reply)?;
                Ok(framed)
            })?;
            match framed {
                Framed::More => {}
                Framed::Whole => return exchange.finish(),
                // The exchange's result says why; it drops the connection
                // (an `ERROR` or `CLIENT_ERROR` reply is a client error).
                Framed::Broken => {
                    return exchange.finish().and(Err(Error::Protocol(
                        ProtocolError::UnexpectedReply { reply: "error" },
                    )));
                }
            }
        }
    }

    /// Reads the next reply frame and hands it to `f`, returning what `f` does.
    ///
    /// The frame borrows the read buffer, so `f` copies out what it keeps.
    ///
    /// A meta reply (other than `MN`) that matches no command of the
    /// request awaiting a reply fails with [`ProtocolError::UnmatchedReply`]
    /// instead, without calling `f` (see the module docs).
    ///
    /// A server that turned the connection away (memcached at its
    /// connection limit writes `ERROR Too many open connections` and
    /// closes the socket) fails with [`Error::Connect`] instead, without
    /// calling `f`: the request was never served, and the connection must
    /// be dropped and counted against the server, as a refused connect is.
    pub(crate) fn recv<T>(&mut self, f: impl FnOnce(Reply<'_>) -> Result<T>) -> Result<T> {
        loop {
            match parse_reply(&self.rbuf[self.pos..self.filled], self.max_value)? {
                Some((Reply::Error(message), _)) if refuses_connection(message) => {
                    let message = String::from_utf8_lossy(message).into_owned();
                    return Err(Error::Connect {
                        server: self.server.clone(),
                        source: io::Error::new(
                            io::ErrorKind::ConnectionRefused,
                            format!("the server turned the connection away: {message}"),
                        ),
                    });
                }
                Some((reply, used)) => {
                    self.pos += used;
                    if let Reply::Meta(meta) = &reply
                        && meta.status != MetaStatus::NoOp
                        && !self.tags.answer(&meta.flags)
                    {
                        return Err(Error::Protocol(ProtocolError::UnmatchedReply {
                            reply: reply.name(),
                        }));
                    }
                    return f(reply);
                }
                None => self.fill()?,
            }
        }
    }

    /// Reads more bytes into the buffer, within the request's deadline.
    fn fill(&mut self) -> Result<()> {
        if self.pos == self.filled {
            self.pos = 0;
            self.filled = 0;
        } else if self.filled == self.rbuf.len() {
            if self.pos > 0 {
                self.rbuf.copy_within(self.pos..self.filled, 0);
                self.filled -= self.pos;
                self.pos = 0;
            } else {
                let grown = self.rbuf.len().saturating_mul(2);
                self.rbuf.resize(grown, 0);
            }
        }
        loop {
            let remaining = self.remaining()?;
            if self.overshoots(remaining, self.read_timeout) {
                self.stream.set_read_timeout(remaining)?;
                self.read_timeout = remaining;
            }
            match self.stream.read(&mut self.rbuf[self.filled..]) {
                Ok(0) => {
                    return Err(self.failed(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "server closed the connection",
                    )));
                }
                Ok(n) => {
                    self.answered = true;
                    self.filled += n;
                    self.progressed();
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if is_timeout(&e) => {
                    // As in `send`: at the deadline, or early on a timeout
                    // set for a tighter one.
                    let remaining = self.remaining()?;
                    self.stream.set_read_timeout(remaining)?;
                    self.read_timeout = remaining;
                }
                Err(e) => return Err(self.failed(e)),
            }
        }
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.stream.shutdown();
    }
}

/// Whether the message of an `ERROR` line says the server is out of
/// connections: memcached's `Too many open connections` (sent at accept time
/// to a connection over its `-c` limit, which it then closes), or any
/// similar "too many ... connections" text.
pub(crate) fn refuses_connection(message: &[u8]) -> bool {
    let text = String::from_utf8_lossy(message).to_ascii_lowercase();
    text.find("too many")
        .is_some_and(|at| text[at..].contains("connection"))
}

/// `now + duration`, or a year from now when that is past what an
/// [`Instant`] can hold (a configured `Duration::MAX` must not panic).
pub(crate) fn later(now: Instant, duration: Duration) -> Instant {
    now.checked_add(duration)
        .or_else(|| now.checked_add(Duration::from_secs(365 * 86_400)))
        .unwrap_or(now)
}

/// The time left before `deadline`; `None` once it has come.
pub(crate) fn time_left(deadline: Instant) -> Option<Duration> {
    deadline
        .checked_duration_since(Instant::now())
        .filter(|d| !d.is_zero())
}

/// Whether a socket error is its timeout running out.
fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memcached::protocol::ValidKey;

    #[test]
    fn large_requests_and_replies_do_not_pin_buffers() {
        use std::net::TcpListener;

        use crate::memcached::protocol::MetaStatus;

        const BIG: usize = 1024 * 1024;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            let mut request = vec![0; BIG + 64];
            let mut got = 0;
            while got < BIG + 2 {
                match stream.read(&mut request[got..]) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => got += n,
                }
            }
            let mut reply = format!("VA {BIG} f0 kbig O1\r\n").into_bytes();
            reply.resize(reply.len() + BIG, b'v');
            reply.extend_from_slice(b"\r\n");
            let _ = stream.write_all(&reply);
        });
        let spec = ServerSpec::parse(&format!("127.0.0.1:{port}")).unwrap();
        let config = ConnConfig {
            connect_timeout: Duration::from_secs(5),
            io_timeout: Duration::from_secs(5),
            max_value: 2 * BIG,
            #[cfg(feature = "tls")]
            tls: None,
        };
        let mut conn = Conn::connect(
            &spec,
            &config,
            later(Instant::now(), Duration::from_secs(10)),
        )
        .unwrap();
        let mut request = conn.meta_request();
        assert_eq!(request.tag(ValidKey::new(b"big").unwrap()), 1);
        let out = request.out();
        out.resize(BIG, b'r');
        out.extend_from_slice(b"\r\n");
        conn.send().unwrap();
        let len = conn
            .recv(|reply| match reply {
                Reply::Meta(meta) => match meta.status {
                    MetaStatus::Value(data) => Ok(data.len()),
                    _ => Ok(0),
                },
                _ => Ok(0),
            })
            .unwrap();
        assert_eq!(len, BIG);
        assert!(conn.wbuf.capacity() > RETAINED_WRITE_BUF);
        assert!(conn.rbuf.len() > RETAINED_READ_BUF);
        conn.trim();
        assert!(conn.wbuf.capacity() <= RETAINED_WRITE_BUF);
        assert!(conn.rbuf.len() <= RETAINED_READ_BUF);
        server.join().unwrap();
    }

    #[test]
    fn every_meta_command_gets_its_own_token() {
        use std::net::TcpListener;

        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let spec = ServerSpec::parse(&format!("127.0.0.1:{port}")).unwrap();
        let config = ConnConfig {
            connect_timeout: Duration::from_secs(5),
            io_timeout: Duration::from_secs(5),
            max_value: 1024,
            #[cfg(feature = "tls")]
            tls: None,
        };
        let deadline = later(Instant::now(), Duration::from_secs(10));
        let mut conn = Conn::connect(&spec, &config, deadline).unwrap();
        let key = ValidKey::new(b"k").unwrap();
        let mut request = conn.meta_request();
        assert_eq!((request.tag(key), request.tag(key)), (1, 2));
        let mut request = conn.meta_request();
        assert_eq!(request.tag(key), 3);
        conn.next_opaque = u32::MAX;
        let mut request = conn.meta_request();
        assert_eq!((request.tag(key), request.tag(key)), (u32::MAX, 0));
        drop(listener);
    }

    #[test]
    fn connection_limit_messages() {
        assert!(refuses_connection(b"Too many open connections"));
        assert!(refuses_connection(b"too many connections"));
        assert!(!refuses_connection(b""));
        assert!(!refuses_connection(b"unknown command"));
        assert!(!refuses_connection(b"too many tokens"));
    }
}
