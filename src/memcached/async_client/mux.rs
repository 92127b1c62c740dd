//! One multiplexed connection to one server: many tasks' requests share
//! it, pipelined as they arrive.
//!
//! A caller encodes its request straight into the connection's outbox
//! ([`MuxConn::send`]: one buffer that every caller appends to, with the
//! [`Tags`] its meta replies must echo and its [`Framing`]) and awaits the
//! bytes of its whole reply. The writer task takes the whole outbox at
//! each turn and sends it in one `write` (write coalescing), after putting
//! its requests on the in-flight queue in the same order. The reader task
//! parses what the server sends ([`parse_reply`]), matches each frame to
//! the request at the head of the queue (its opaque token and key, as the
//! blocking connection does), frames it with the request's [`Framer`], and
//! hands the whole reply to the request's caller ([`Answer`]: its bytes,
//! and its first frame as parsed here, so that the caller, who decodes it
//! (see `pool.rs`), need not parse it again).
//!
//! # Cancellation
//!
//! A caller may drop its future at any point (a `tokio::time::timeout`, a
//! `select!`). Its request, once queued, is written all the same and keeps
//! its place in the in-flight queue, and its reply is read and discarded. Replies are matched in order and by token, so a
//! dropped request never shifts another's reply: no task ever receives
//! another key's value.
//!
//! # Deadlines
//!
//! Each request carries its call's deadline, and the connection keeps
//! time for all of them with one timer (the reader's): a request is told
//! [`Error::Timeout`] at its deadline (by the writer if it is still
//! queued then), and its reply is read and dropped when it comes. No
//! request arms a timer of its own.
//!
//! # Failures
//!
//! A reply that matches nothing, bytes that do not parse, an `ERROR` /
//! `CLIENT_ERROR` line, end of stream, a failed write, or a server that
//! moves no byte for `io_timeout` while requests wait: the connection is
//! closed, and every request still in flight on it fails (with an I/O
//! error, or [`Error::Timeout`]: the server may have applied it). The pool
//! opens a new connection for the next request.

use std::collections::VecDeque;
use std::future::{Future, poll_fn};
use std::io;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{Notify, oneshot};

use super::connect::{Reader, Writer, open};
use crate::memcached::address::{Address, ServerSpec};
use crate::memcached::conn::{ConnConfig, refuses_connection};
use crate::memcached::error::{Error, Result, before_first_reply};
use crate::memcached::exchange::{Framed, Framer, Framing, MetaRequest, Tags};
use crate::memcached::protocol::{MetaSpans, MetaStatus, ProtocolError, Reply, parse_reply};

/// The read buffer's starting size; it grows for large replies.
const INITIAL_READ_BUF: usize = 16 * 1024;

/// A write buffer grown past this (a burst of large requests) is not kept.
const RETAINED_WRITE_BUF: usize = 512 * 1024;

/// A request encoded into the outbox and not yet written, and where its
/// reply goes.
struct Queued {
    /// The meta commands in it, whose replies must echo their tokens.
    tags: Tags,
    framing: Framing,
    /// When the call it belongs to fails with [`Error::Timeout`] if no
    /// reply has come: enforced by the connection (see the module docs).
    deadline: Instant,
    /// The whole reply's bytes (its frames end to end), or why none came.
    reply: Replied,
}

/// Requests encoded and not yet written: callers append to it (under its
/// lock, no allocation of their own), the writer takes all of it at once.
struct Outbox {
    buf: Vec<u8>,
    jobs: Vec<Queued>,
    /// The opaque token of the next meta command encoded: counted under
    /// the outbox's lock, so every command on the connection has its own,
    /// in the order they are written (wrapping after 2^32).
    next_opaque: u32,
    /// No more requests: the connection is closed, or its last handle gone.
    shut: bool,
}

/// Where a request's reply goes: its frames, end to end, as read.
pub(crate) type Replied = oneshot::Sender<Result<Answer>>;

/// A request's whole reply, as the reader hands it over.
pub(crate) struct Answer {
    /// Its frames, end to end: its part of the read buffer, not a copy.
    pub(crate) bytes: Bytes,
    /// Its first frame as the reader parsed it, when that is a meta reply
    /// (most replies are one): the caller reads it back from `bytes`
    /// without parsing it again.
    pub(crate) first: Option<MetaSpans>,
}

/// A request written and not yet answered.
struct InFlight {
    /// When its batch was written.
    sent: Instant,
    /// When its caller stops waiting (see [`Queued::deadline`]).
    deadline: Instant,
    tags: Tags,
    framer: Framer,
    /// `None` once its caller was told its deadline passed: the reply is
    /// still read (the stream stays in step), and dropped.
    reply: Option<Replied>,
}

/// Why a connection was closed: given (as an [`Error`]) to every request
/// still in flight on it.
#[derive(Debug, Clone)]
enum Closed {
    /// End of stream, or a read or write that failed.
    Io(io::ErrorKind, String),
    /// No byte moved for `io_timeout` while requests waited.
    Timeout,
    /// The server sent what no request can get.
    Protocol(ProtocolError),
    /// The server turned the connection away (at its connection limit).
    Refused(String),
}

impl Closed {
    fn error(&self, server: &str) -> Error {
        match self {
            Closed::Io(kind, message) => Error::Io(io::Error::new(*kind, message.clone())),
            Closed::Timeout => Error::Timeout,
            Closed::Protocol(e) => Error::Protocol(e.clone()),
            Closed::Refused(message) => Error::Connect {
                server: server.to_owned(),
                source: io::Error::new(
                    io::ErrorKind::ConnectionRefused,
                    format!("the server turned the connection away: {message}"),
                ),
            },
        }
    }
}

/// What the writer and reader tasks share.
struct Shared {
    /// The server's label, for errors.
    server: String,
    /// Plain TCP (no TLS, no unix socket): ended before the server's
    /// first byte, it gets the hint of [`before_first_reply`].
    plain: bool,
    /// Requests written, oldest first, with when the oldest was sent.
    in_flight: Mutex<Queue>,
    /// Set once the connection is closed: new jobs fail at once.
    closed: AtomicBool,
    /// Notified when the connection is closed: wakes the writer, which
    /// then shuts the socket (see [`unless_closed`]).
    closing: Notify,
    /// Notified when a request is written whose deadline comes before the
    /// reader's next wake: the reader rearms its timer.
    rearm: Notify,
    /// What callers have queued for the writer.
    outbox: Mutex<Outbox>,
    /// Notified when the outbox gets its first request (or is shut): wakes
    /// the writer.
    wake: Notify,
}

#[derive(Default)]
struct Queue {
    jobs: VecDeque<InFlight>,
    /// When the head of the queue started waiting: its send, or the last
    /// byte read for it, whichever is later.
    waiting_since: Option<Instant>,
    /// When bytes last came from the server.
    last_read: Option<Instant>,
    /// No request still awaited has a deadline before this (it may be
    /// earlier than any: the reader then looks again).
    earliest: Option<Instant>,
    /// When the reader next wakes to check deadlines and stalls.
    wake_at: Option<Instant>,
    /// Why the connection was closed, once it is.
    closed: Option<Closed>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // A queue and two stamps, consistent at every unlock.
        self.in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn outbox(&self) -> MutexGuard<'_, Outbox> {
        // A buffer and a list, consistent at every unlock (requests are
        // encoded by the crate's own encoders, which do not panic).
        self.outbox.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Why the connection closes after a read or write failed with `e`
    /// (see [`Shared::plain`]).
    fn failed(&self, e: io::Error) -> Closed {
        let e = if self.plain && self.lock().last_read.is_none() {
            before_first_reply(e)
        } else {
            e
        };
        Closed::Io(e.kind(), e.to_string())
    }

    /// Closes the connection for `why` (once: the first reason stands) and
    /// fails every request in flight.
    fn close(&self, why: Closed) {
        let in_flight = {
            let mut queue = self.lock();
            if queue.closed.is_none() {
                queue.closed = Some(why);
            }
            // Release pairs with the Acquire load in `is_closed`: a caller
            // that sees the flag finds the reason set.
            self.closed.store(true, Ordering::Release);
            std::mem::take(&mut queue.jobs)
        };
        let queued = {
            let mut outbox = self.outbox();
            outbox.shut = true;
            outbox.buf.clear();
            std::mem::take(&mut outbox.jobs)
        };
        // The writer is the one waiter (a stored permit if it is busy).
        self.closing.notify_one();
        let why = self.lock().closed.clone();
        let replies = in_flight
            .into_iter()
            .filter_map(|job| job.reply)
            .chain(queued.into_iter().map(|job| job.reply));
        for reply in replies {
            let error = why
                .as_ref()
                .map_or(Error::Timeout, |w| w.error(&self.server));
            // The caller may have gone: nothing to tell then.
            let _ = reply.send(Err(error));
        }
    }
}

/// One multiplexed connection: a handle to its writer and reader tasks.
/// Dropping the last handle closes the connection once the requests in
/// flight are answered.
pub(crate) struct MuxConn {
    shared: Arc<Shared>,
}

impl MuxConn {
    /// Opens a connection to `server` within the connect timeout and by
    /// the call's `deadline`, and starts its writer and reader tasks on
    /// the current runtime.
    pub(crate) async fn connect(
        server: &ServerSpec,
        config: &ConnConfig,
        deadline: Instant,
    ) -> Result<MuxConn> {
        let (read, write) = open(server, config, deadline).await?;
        let shared = Arc::new(Shared {
            server: server.label.clone(),
            plain: matches!(server.address, Address::Tcp { .. }) && !config.is_tls(),
            in_flight: Mutex::new(Queue::default()),
            closed: AtomicBool::new(false),
            closing: Notify::new(),
            rearm: Notify::new(),
            outbox: Mutex::new(Outbox {
                buf: Vec::new(),
                jobs: Vec::new(),
                next_opaque: 1,
                shut: false,
            }),
            wake: Notify::new(),
        });
        let (writer, reader) = (Ended(Arc::clone(&shared)), Ended(Arc::clone(&shared)));
        let config = config.clone();
        // Each task holds its guard to the end (dropped with the task).
        tokio::spawn(async move {
            write_loop(write, Arc::clone(&writer.0)).await;
            drop(writer);
        });
        tokio::spawn(async move {
            read_loop(read, Arc::clone(&reader.0), config).await;
            drop(reader);
        });
        Ok(MuxConn { shared })
    }

    /// Whether the connection was closed (a new one is needed).
    pub(crate) fn is_closed(&self) -> bool {
        // Acquire pairs with the Release store in `Shared::close`.
        self.shared.closed.load(Ordering::Acquire)
    }

    /// Queues a request: `encode` appends it to the outbox (tagging its meta
    /// commands with tokens of this connection), whose reply, framed by
    /// `framing`, or the connection's failure, or [`Error::Timeout`] at
    /// `deadline`, comes through `reply`.
    ///
    /// Once queued a request is written, even if its caller goes (its reply
    /// is then read and dropped).
    ///
    /// # Errors
    ///
    /// What `encode` returns (nothing is queued then).
    pub(crate) fn send(
        &self,
        encode: impl FnOnce(&mut MetaRequest<'_>) -> Result<()>,
        framing: Framing,
        deadline: Instant,
        reply: Replied,
    ) -> Result<()> {
        let mut tags = Tags::default();
        let mut guard = self.shared.outbox();
        let outbox = &mut *guard;
        if outbox.shut {
            drop(guard);
            let why = self.shared.lock().closed.clone();
            let why = why.unwrap_or(Closed::Io(
                io::ErrorKind::BrokenPipe,
                "connection closed".into(),
            ));
            let _ = reply.send(Err(why.error(&self.shared.server)));
            return Ok(());
        }
        let start = outbox.buf.len();
        if let Err(e) = encode(&mut MetaRequest::new(
            &mut outbox.buf,
            &mut tags,
            &mut outbox.next_opaque,
        )) {
            outbox.buf.truncate(start);
            return Err(e);
        }
        let first = outbox.jobs.is_empty();
        outbox.jobs.push(Queued {
            tags,
            framing,
            deadline,
            reply,
        });
        drop(guard);
        if first {
            self.shared.wake.notify_one();
        }
        Ok(())
    }

    /// Closes the connection (a reply left it out of step): every request
    /// in flight on it fails.
    pub(crate) fn close(&self) {
        self.shared
            .close(Closed::Protocol(ProtocolError::UnexpectedReply {
                reply: "a reply its request could not take",
            }));
    }
}

impl Drop for MuxConn {
    /// The last handle: the writer writes what is queued, then shuts the
    /// socket's write half; the reader reads the replies in flight, then
    /// the server's end of stream.
    fn drop(&mut self) {
        self.shared.outbox().shut = true;
        self.shared.wake.notify_one();
    }
}

/// Closes the connection when one of its tasks ends, however it ends:
/// when it returns (already closed then), and when its runtime shuts down
/// and drops it midway. Requests queued or in flight then fail at once,
/// and the pool opens a new connection (on the runtime of the next
/// request) rather than queue requests no task will write or time.
struct Ended(Arc<Shared>);

impl Drop for Ended {
    fn drop(&mut self) {
        if !self.0.closed.load(Ordering::Acquire) {
            self.0.close(Closed::Io(
                io::ErrorKind::BrokenPipe,
                "the connection's task ended (its runtime shut down)".into(),
            ));
        }
    }
}

/// Writes what callers queue in the outbox, all of it at each turn.
async fn write_loop(mut stream: Writer, shared: Arc<Shared>) {
    let mut buf = Vec::with_capacity(16 * 1024);
    let mut taken = Vec::new();
    loop {
        {
            let outbox = shared.outbox();
            if outbox.shut && outbox.jobs.is_empty() {
                break;
            }
        }
        if unless_closed(&shared, shared.wake.notified())
            .await
            .is_none()
        {
            break;
        }
        // Woken by the first request, the writer runs at once (tokio runs
        // a task just woken next); letting the tasks already runnable go
        // first lets their requests join this write.
        tokio::task::yield_now().await;
        {
            let mut outbox = shared.outbox();
            std::mem::swap(&mut outbox.buf, &mut buf);
            std::mem::swap(&mut outbox.jobs, &mut taken);
        }
        if taken.is_empty() {
            continue;
        }
        // One clock read per write, not per request.
        let sent = Instant::now();
        {
            let mut queue = shared.lock();
            if queue.closed.is_some() {
                break;
            }
            for job in taken.drain(..) {
                let reply = if job.reply.is_closed() {
                    // Its caller went: the reply is read and dropped.
                    None
                } else if job.deadline <= sent {
                    // Its call's time ran out while it was queued.
                    let _ = job.reply.send(Err(Error::Timeout));
                    None
                } else {
                    if queue.earliest.is_none_or(|at| job.deadline < at) {
                        queue.earliest = Some(job.deadline);
                        if queue.wake_at.is_none_or(|at| job.deadline < at) {
                            shared.rearm.notify_one();
                        }
                    }
                    Some(job.reply)
                };
                if queue.jobs.is_empty() {
                    queue.waiting_since = Some(sent);
                }
                queue.jobs.push_back(InFlight {
                    sent,
                    deadline: job.deadline,
                    tags: job.tags,
                    framer: Framer::new(job.framing),
                    reply,
                });
            }
        }
        // Flushed too: a TLS stream may hold the last records back.
        let write = async {
            stream.write_all(&buf).await?;
            stream.flush().await
        };
        match unless_closed(&shared, write).await {
            Some(Ok(())) => {}
            Some(Err(e)) => {
                shared.close(shared.failed(e));
                break;
            }
            // Closed meanwhile (a stalled server): what it held has failed.
            None => break,
        }
        buf.clear();
        if buf.capacity() > RETAINED_WRITE_BUF {
            buf = Vec::with_capacity(16 * 1024);
        }
    }
    // The last handle is gone, or the connection closed: requests queued
    // meanwhile (none once shut by the last handle) fail, and the socket's
    // write half shuts down.
    let queued = {
        let mut outbox = shared.outbox();
        outbox.shut = true;
        std::mem::take(&mut outbox.jobs)
    };
    for job in queued.into_iter().chain(taken) {
        let why = shared.lock().closed.clone();
        let why = why.unwrap_or(Closed::Io(
            io::ErrorKind::BrokenPipe,
            "connection closed".into(),
        ));
        let _ = job.reply.send(Err(why.error(&shared.server)));
    }
    let _ = stream.shutdown().await;
}

/// `future`'s output, or `None` once the connection is closed.
///
/// The writer waits through this, so that a connection closed by the
/// reader (a reply out of step, garbage, an `ERROR` line, a stall) or by a
/// caller ends its writer at once, and with it the socket (the reader has
/// dropped its half by then, or will at the server's end of stream).
/// Without it the writer would wait for a job or for the last handle to
/// go, which the pool drops only when a request next takes the slot: the
/// socket stayed open, and the server kept its end, until then.
async fn unless_closed<T>(shared: &Shared, future: impl Future<Output = T>) -> Option<T> {
    let mut future = pin!(future);
    let mut closing = pin!(shared.closing.notified());
    poll_fn(|cx| {
        // The flag covers a close whose permit an earlier wait consumed.
        if closing.as_mut().poll(cx).is_ready() || shared.closed.load(Ordering::Acquire) {
            return Poll::Ready(None);
        }
        future.as_mut().poll(cx).map(Some)
    })
    .await
}

/// Reads replies and hands each whole one to its job, until the
/// connection fails or every handle is gone and nothing is in flight.
async fn read_loop(mut stream: Reader, shared: Arc<Shared>, config: ConnConfig) {
    let mut buf = BytesMut::with_capacity(INITIAL_READ_BUF);
    // Replies completed by one read, handed over once the queue is unlocked.
    let mut answered: Vec<(Replied, Answer)> = Vec::new();
    // The head request's first frame, parsed.
    let mut first = None;
    // `buf[..pos]`: the frames of the head request's reply taken so far
    // (its reply starts at `buf[0]`); `buf[pos..]`: not parsed yet.
    let mut pos = 0;
    let why = loop {
        // Every whole frame buffered, matched under one lock; the callers
        // are told after it is released.
        let mut broken = None;
        {
            let mut queue = shared.lock();
            loop {
                let (reply, used) = match parse_reply(&buf[pos..], config.max_value) {
                    Ok(Some(frame)) => frame,
                    Ok(None) => break,
                    Err(e) => {
                        broken = Some(Closed::Protocol(e));
                        break;
                    }
                };
                if pos == 0 {
                    // A reply's first frame (it starts at `buf[0]`): kept
                    // parsed for its caller, when it is a meta reply.
                    first = match &reply {
                        Reply::Meta(meta) => MetaSpans::new(meta, &buf, used),
                        _ => None,
                    };
                }
                let delivered = match deliver(&mut queue, &reply) {
                    Ok(delivered) => delivered,
                    Err(why) => {
                        broken = Some(why);
                        break;
                    }
                };
                pos += used;
                let (to, more) = match delivered {
                    Delivered::More => continue,
                    Delivered::Whole(to) => (to, true),
                    Delivered::Broken(to) => (to, false),
                };
                // The reply, handed over without a copy: its part of the
                // read buffer.
                let bytes = buf.split_to(pos).freeze();
                pos = 0;
                if let Some(to) = to {
                    let first = first.take();
                    answered.push((to, Answer { bytes, first }));
                }
                if !more {
                    // `ERROR` / `CLIENT_ERROR`: the reply goes to its caller,
                    // whose result is that error; what follows cannot be
                    // trusted.
                    broken = Some(Closed::Protocol(ProtocolError::UnexpectedReply {
                        reply: "error line",
                    }));
                    break;
                }
            }
        }
        for (to, answer) in answered.drain(..) {
            // Its caller may have gone (cancelled): the reply is dropped.
            let _ = to.send(Ok(answer));
        }
        if let Some(why) = broken {
            break why;
        }
        if shared.closed.load(Ordering::Acquire) {
            // Closed by the writer or a caller: its reason stands.
            break Closed::Timeout;
        }
        // Room for the next read (the allocation is reused once the
        // replies handed out of it are dropped).
        buf.reserve(INITIAL_READ_BUF);
        match read_some(&mut stream, &mut buf, &shared, config.io_timeout).await {
            Ok(0) => {
                break shared.failed(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "server closed the connection",
                ));
            }
            Ok(_) => {
                let now = Instant::now();
                let mut queue = shared.lock();
                queue.last_read = Some(now);
                if !queue.jobs.is_empty() {
                    queue.waiting_since = Some(now);
                }
            }
            Err(why) => break why,
        }
    };
    shared.close(why);
}

/// Reads what the server sends, and keeps time meanwhile: a request that
/// waits for its reply makes the connection fail `io_timeout` after it was
/// sent or the last byte came for it, whichever is later (a stalled
/// server), and a request whose call's deadline passes is told so at once
/// (its reply, when it comes, is read and dropped). When idle, it wakes
/// every `io_timeout` to look again.
async fn read_some(
    stream: &mut Reader,
    into: &mut BytesMut,
    shared: &Shared,
    io_timeout: Duration,
) -> Result<usize, Closed> {
    loop {
        let mut read = pin!(stream.read_buf(&mut *into));
        loop {
            let until = {
                let mut queue = shared.lock();
                if queue.closed.is_some() {
                    return Err(Closed::Timeout);
                }
                let now = Instant::now();
                let stall_at = match queue.waiting_since.filter(|_| !queue.jobs.is_empty()) {
                    Some(since) if now >= since + io_timeout => return Err(Closed::Timeout),
                    Some(since) => since + io_timeout,
                    None => now + io_timeout,
                };
                if queue.earliest.is_some_and(|at| at <= now) {
                    expire(&mut queue, now);
                }
                let until = queue.earliest.map_or(stall_at, |at| at.min(stall_at));
                queue.wake_at = Some(until);
                until
            };
            // A request written meanwhile with an earlier deadline notifies
            // this (a permit is kept if it comes before the wait).
            let mut rearmed = pin!(shared.rearm.notified());
            let mut timer = pin!(tokio::time::sleep_until(until.into()));
            let woke = poll_fn(|cx| {
                if let Poll::Ready(result) = read.as_mut().poll(cx) {
                    return Poll::Ready(Some(result));
                }
                if rearmed.as_mut().poll(cx).is_ready() || timer.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(None);
                }
                Poll::Pending
            })
            .await;
            match woke {
                Some(Ok(n)) => return Ok(n),
                // Read again.
                Some(Err(e)) if e.kind() == io::ErrorKind::Interrupted => break,
                Some(Err(e)) => return Err(shared.failed(e)),
                // A deadline, a stall to check, or a new request's deadline.
                None => {}
            }
        }
    }
}

/// Tells every request whose call's deadline has come by `now` that it
/// timed out, and recomputes the earliest deadline still awaited.
fn expire(queue: &mut Queue, now: Instant) {
    let mut earliest = None;
    for job in &mut queue.jobs {
        if job.reply.is_none() {
            continue;
        }
        if job.deadline <= now {
            if let Some(reply) = job.reply.take() {
                let _ = reply.send(Err(Error::Timeout));
            }
        } else if earliest.is_none_or(|at| job.deadline < at) {
            earliest = Some(job.deadline);
        }
    }
    queue.earliest = earliest;
}

/// What a frame did to the request at the head of the queue.
enum Delivered {
    /// More frames belong to its reply.
    More,
    /// Its reply is whole: to be handed to its caller (`None`: the caller
    /// was told its deadline passed, or went).
    Whole(Option<Replied>),
    /// Its reply ends with an `ERROR` / `CLIENT_ERROR` line, after which
    /// the connection cannot be trusted.
    Broken(Option<Replied>),
}

/// Takes `reply`, a frame, for the request at the head of the in-flight
/// `queue`: matches it (token and key), frames it, and takes the request
/// off the queue when its reply is whole. An error closes the connection.
fn deliver(queue: &mut Queue, reply: &Reply<'_>) -> Result<Delivered, Closed> {
    if let Reply::Error(message) = reply
        && refuses_connection(message)
    {
        return Err(Closed::Refused(
            String::from_utf8_lossy(message).into_owned(),
        ));
    }
    let Some(head) = queue.jobs.front_mut() else {
        // Bytes nobody asked for: the stream is out of step.
        return Err(Closed::Protocol(ProtocolError::UnexpectedReply {
            reply: "unsolicited data",
        }));
    };
    if let Reply::Meta(meta) = reply
        && meta.status != MetaStatus::NoOp
        && !head.tags.answer(&meta.flags)
    {
        return Err(Closed::Protocol(ProtocolError::UnmatchedReply {
            reply: reply.name(),
        }));
    }
    let framed = head.framer.push(reply);
    if framed == Framed::More {
        return Ok(Delivered::More);
    }
    let to = queue.jobs.pop_front().and_then(|done| done.reply);
    // The next request has waited since its send or the last bytes read,
    // whichever is later (no clock read per reply).
    let last_read = queue.last_read;
    queue.waiting_since = queue
        .jobs
        .front()
        .map(|next| last_read.map_or(next.sent, |read| read.max(next.sent)));
    Ok(if framed == Framed::Broken {
        Delivered::Broken(to)
    } else {
        Delivered::Whole(to)
    })
}
