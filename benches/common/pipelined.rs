//! The ceiling of `async_far`: a minimal pipelined memcached client.
//!
//! One connection. Callers encode their request into a `Vec` and queue it
//! with a oneshot sender for the reply; a writer task takes the first
//! queued request, drains every other one queued meanwhile into the same
//! buffer, hands their reply senders (in order) to the reader over a
//! channel, and sends the buffer in one `write`. The reader task frames
//! the replies in order and completes each caller's oneshot. No deadlines,
//! no opaque tokens, no health, no reconnect, no codec: what any pipelined
//! client must at least do, so the most an async client can reach on one
//! connection.
//!
//! Single gets are meta gets (`mg <key> v`), sets meta sets
//! (`ms <key> <len>`), batches one text multi-get (`get k1 k2 ...`).

use std::io::Write as _;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, oneshot};

/// What a reply looks like, so the reader knows where it ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// `VA <len> ...\r\n<data>\r\n` or `EN\r\n`.
    MetaGet,
    /// One line: `HD`, `NS`, ...
    MetaSet,
    /// `VALUE <key> <flags> <len>\r\n<data>\r\n`..., then `END\r\n`.
    MultiGet,
}

/// A reply, as the caller gets it.
#[derive(Debug)]
pub enum Reply {
    /// A single get: the value, or `None` on a miss.
    Value(Option<Vec<u8>>),
    /// A set: whether the server stored it.
    Stored(bool),
    /// A multi-get: the values found, in the order the server sent them.
    Values(Vec<Vec<u8>>),
}

struct Request {
    bytes: Vec<u8>,
    kind: Kind,
    reply: oneshot::Sender<Reply>,
}

type Pending = (Kind, oneshot::Sender<Reply>);

/// A handle on the connection; clone it for each task.
#[derive(Clone)]
pub struct Pipelined {
    queue: mpsc::UnboundedSender<Request>,
}

impl Pipelined {
    /// Connects to `addr` (`host:port`) and spawns the writer and reader
    /// tasks on the current runtime.
    pub async fn connect(addr: &str) -> std::io::Result<Pipelined> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (read, write) = stream.into_split();
        let (queue, queued) = mpsc::unbounded_channel();
        let (sent, pending) = mpsc::unbounded_channel();
        tokio::spawn(write_loop(write, queued, sent));
        tokio::spawn(read_loop(read, pending));
        Ok(Pipelined { queue })
    }

    async fn call(&self, bytes: Vec<u8>, kind: Kind) -> Reply {
        let (reply, replied) = oneshot::channel();
        self.queue
            .send(Request { bytes, kind, reply })
            .unwrap_or_else(|_| panic!("the pipelined connection's writer is gone"));
        replied
            .await
            .expect("the pipelined connection closed before replying")
    }

    /// `mg <key> v`: the value, or `None` on a miss.
    pub async fn get(&self, key: &str) -> Option<Vec<u8>> {
        let mut bytes = Vec::with_capacity(key.len() + 8);
        bytes.extend_from_slice(b"mg ");
        bytes.extend_from_slice(key.as_bytes());
        bytes.extend_from_slice(b" v\r\n");
        match self.call(bytes, Kind::MetaGet).await {
            Reply::Value(value) => value,
            other => panic!("mg answered with {other:?}"),
        }
    }

    /// `ms <key> <len>`: whether it was stored.
    pub async fn set(&self, key: &str, value: &[u8]) -> bool {
        let mut bytes = Vec::with_capacity(key.len() + value.len() + 20);
        write!(bytes, "ms {key} {}\r\n", value.len()).expect("write to a Vec");
        bytes.extend_from_slice(value);
        bytes.extend_from_slice(b"\r\n");
        match self.call(bytes, Kind::MetaSet).await {
            Reply::Stored(stored) => stored,
            other => panic!("ms answered with {other:?}"),
        }
    }

    /// `get k1 k2 ...`: the values found.
    pub async fn get_multi(&self, keys: &[impl AsRef<str>]) -> Vec<Vec<u8>> {
        let mut bytes =
            Vec::with_capacity(keys.iter().map(|k| k.as_ref().len() + 1).sum::<usize>() + 8);
        bytes.extend_from_slice(b"get");
        for key in keys {
            bytes.push(b' ');
            bytes.extend_from_slice(key.as_ref().as_bytes());
        }
        bytes.extend_from_slice(b"\r\n");
        match self.call(bytes, Kind::MultiGet).await {
            Reply::Values(values) => values,
            other => panic!("get answered with {other:?}"),
        }
    }
}

/// Coalesces every queued request into one write.
async fn write_loop(
    mut stream: OwnedWriteHalf,
    mut queued: mpsc::UnboundedReceiver<Request>,
    sent: mpsc::UnboundedSender<Pending>,
) {
    let mut buf = Vec::with_capacity(64 * 1024);
    while let Some(first) = queued.recv().await {
        // As nearfar's writer does: tokio runs a task just woken at once, so
        // without this yield each request would go in a write of its own on
        // a multi-thread runtime. The ceiling must coalesce as well as the
        // client it bounds.
        tokio::task::yield_now().await;
        buf.clear();
        let mut next = Some(first);
        while let Some(request) = next.take() {
            buf.extend_from_slice(&request.bytes);
            // Before the write: the reader must know of a request before
            // its reply can arrive.
            if sent.send((request.kind, request.reply)).is_err() {
                return;
            }
            if buf.len() < 256 * 1024 {
                next = queued.try_recv().ok();
            }
        }
        if stream.write_all(&buf).await.is_err() {
            return;
        }
    }
}

/// Frames replies in order and completes each caller.
async fn read_loop(mut stream: OwnedReadHalf, mut pending: mpsc::UnboundedReceiver<Pending>) {
    let mut buf = vec![0u8; 64 * 1024];
    let (mut pos, mut filled) = (0usize, 0usize);
    let mut head: Option<Pending> = None;
    loop {
        while pos < filled {
            if head.is_none() {
                head = pending.try_recv().ok();
            }
            let Some((kind, _)) = &head else {
                panic!("the server sent a reply nobody asked for");
            };
            let Some((reply, used)) = parse(*kind, &buf[pos..filled]) else {
                break;
            };
            pos += used;
            if let Some((_, caller)) = head.take() {
                // The caller may have gone: its reply is dropped.
                let _ = caller.send(reply);
            }
        }
        if pos == filled {
            (pos, filled) = (0, 0);
        } else if filled == buf.len() {
            if pos > 0 {
                buf.copy_within(pos..filled, 0);
                filled -= pos;
                pos = 0;
            } else {
                buf.resize(buf.len() * 2, 0);
            }
        }
        match stream.read(&mut buf[filled..]).await {
            Ok(0) | Err(_) => return,
            Ok(n) => filled += n,
        }
    }
}

/// The end of the line starting at `from` (the index of its `\r`).
fn line_end(buf: &[u8], from: usize) -> Option<usize> {
    buf[from..]
        .windows(2)
        .position(|w| w == b"\r\n")
        .map(|at| from + at)
}

fn number(field: Option<&[u8]>) -> usize {
    let field = field.expect("a length field");
    std::str::from_utf8(field)
        .ok()
        .and_then(|s| s.parse().ok())
        .expect("a decimal length")
}

/// One whole reply of `kind` at the start of `buf`, and its length; `None`
/// if it has not all arrived.
fn parse(kind: Kind, buf: &[u8]) -> Option<(Reply, usize)> {
    match kind {
        Kind::MetaSet => {
            let end = line_end(buf, 0)?;
            Some((Reply::Stored(buf.starts_with(b"HD")), end + 2))
        }
        Kind::MetaGet => {
            let end = line_end(buf, 0)?;
            if buf.starts_with(b"EN") {
                return Some((Reply::Value(None), end + 2));
            }
            assert!(buf.starts_with(b"VA "), "unexpected mg reply");
            let len = number(buf[3..end].split(|&b| b == b' ').next());
            let data = end + 2;
            if buf.len() < data + len + 2 {
                return None;
            }
            Some((
                Reply::Value(Some(buf[data..data + len].to_vec())),
                data + len + 2,
            ))
        }
        Kind::MultiGet => {
            let mut values = Vec::new();
            let mut at = 0;
            loop {
                let end = line_end(buf, at)?;
                let line = &buf[at..end];
                if line == b"END" {
                    return Some((Reply::Values(values), end + 2));
                }
                assert!(line.starts_with(b"VALUE "), "unexpected get reply");
                // VALUE <key> <flags> <bytes> [<cas>]
                let len = number(line.split(|&b| b == b' ').nth(3));
                let data = end + 2;
                if buf.len() < data + len + 2 {
                    return None;
                }
                values.push(buf[data..data + len].to_vec());
                at = data + len + 2;
            }
        }
    }
}
