//! Requests as values, for any driver: what a request to one server sends,
//! how its reply is framed, and what the reply means. Pure: no socket, no
//! clock, no waiting.
//!
//! An [`Exchange`] encodes its request into a [`MetaRequest`] (registering
//! each meta command's opaque token and key in [`Tags`], which every meta
//! reply must match), says how its reply is [framed](Framing), takes the
//! reply frame by frame ([`Exchange::feed`]) and gives its result
//! ([`Exchange::finish`]). The blocking connection (`conn.rs`) runs one
//! exchange at a time; the tokio connection (`tokio/mux.rs`) pipelines
//! many, framing each reply with the same [`Framer`] and matching it with
//! the same [`Tags`]. Single-key [`Command`]s run as exchanges through
//! [`Single`]; the batches and whole-server requests are in
//! [`batch`] and [`server`].

use super::command::Command;
use super::error::{Error, Result};
use super::protocol::{MetaStatus, Reply, ReturnFlags, ValidKey};

pub(crate) mod batch;
pub(crate) mod server;

/// Keys up to this long are kept inline for a request's first command.
const INLINE_KEY: usize = 64;

/// The meta commands of a request: the opaque token and key each one's
/// reply must echo.
///
/// Replies come in request order; a quiet command may send none, so a
/// reply may skip ahead to a later command, never back.
///
/// Most requests hold one command with a short key: its key is kept inline,
/// so registering it allocates nothing (the async client makes a `Tags`
/// per request).
#[derive(Debug)]
pub(crate) struct Tags {
    /// The first command's token; the i-th carries `first + i` (wrapping).
    first: u32,
    /// How many commands are registered.
    count: usize,
    /// The first command's key, when it is at most `INLINE_KEY` bytes
    /// (`first_len`); else it is the first of `keys`.
    first_key: [u8; INLINE_KEY],
    first_len: Option<usize>,
    /// The other commands' keys, end to end: the j-th ends at `ends[j]`.
    keys: Vec<u8>,
    ends: Vec<usize>,
    /// The first command whose reply may still come: replies come in
    /// request order, so the earlier ones were answered (or were quiet).
    next: usize,
}

impl Default for Tags {
    fn default() -> Self {
        Tags {
            first: 0,
            count: 0,
            first_key: [0; INLINE_KEY],
            first_len: None,
            keys: Vec::new(),
            ends: Vec::new(),
            next: 0,
        }
    }
}

impl Tags {
    pub(crate) fn clear(&mut self) {
        self.count = 0;
        self.first_len = None;
        self.keys.clear();
        self.ends.clear();
        self.next = 0;
    }

    /// Registers a command for `key` whose token is `opaque` (the next one
    /// after the last registered, when there is one).
    pub(crate) fn push(&mut self, key: &[u8], opaque: u32) {
        if self.count == 0 {
            self.first = opaque;
            if let Some(inline) = self.first_key.get_mut(..key.len()) {
                inline.copy_from_slice(key);
                self.first_len = Some(key.len());
                self.count = 1;
                return;
            }
        }
        self.keys.extend_from_slice(key);
        self.ends.push(self.keys.len());
        self.count += 1;
    }

    /// The key of the `index`-th command registered.
    fn key(&self, index: usize) -> Option<&[u8]> {
        if index >= self.count {
            return None;
        }
        let spilled = match self.first_len {
            Some(len) if index == 0 => return self.first_key.get(..len),
            Some(_) => index - 1,
            None => index,
        };
        let start = spilled
            .checked_sub(1)
            .and_then(|before| self.ends.get(before))
            .copied()
            .unwrap_or(0);
        self.keys.get(start..*self.ends.get(spilled)?)
    }

    /// Whether a meta reply with `flags` answers a command still awaiting
    /// its reply; if so, it and every command before it are settled.
    pub(crate) fn answer(&mut self, flags: &ReturnFlags<'_>) -> bool {
        let Some(opaque) = flags.opaque else {
            return false;
        };
        let Ok(index) = usize::try_from(opaque.wrapping_sub(self.first)) else {
            return false;
        };
        if index < self.next || flags.base64_key {
            return false;
        }
        let Some(key) = self.key(index) else {
            return false;
        };
        let key_matches = flags.key.is_none_or(|echoed| key == echoed);
        if key_matches {
            self.next = index + 1;
        }
        key_matches
    }
}

/// A request being built: the buffer to encode into, and the registry of
/// the meta commands it holds.
pub(crate) struct MetaRequest<'r> {
    out: &'r mut Vec<u8>,
    tags: &'r mut Tags,
    next_opaque: &'r mut u32,
}

impl<'r> MetaRequest<'r> {
    /// A request appended to `out`, its commands registered in `tags` with
    /// tokens counted on from `next_opaque`.
    pub(crate) fn new(
        out: &'r mut Vec<u8>,
        tags: &'r mut Tags,
        next_opaque: &'r mut u32,
    ) -> MetaRequest<'r> {
        MetaRequest {
            out,
            tags,
            next_opaque,
        }
    }

    /// Registers the next meta command of the request, for `key`: returns
    /// the opaque token it must carry (`O`, with `k` asked for: see
    /// `tagged` on the protocol's flag structs), which its reply must echo
    /// along with the key.
    pub(crate) fn tag(&mut self, key: ValidKey<'_>) -> u32 {
        let opaque = *self.next_opaque;
        *self.next_opaque = opaque.wrapping_add(1);
        self.tags.push(key.as_bytes(), opaque);
        opaque
    }

    /// The buffer to encode the request into.
    pub(crate) fn out(&mut self) -> &mut Vec<u8> {
        self.out
    }
}

/// Where a request's reply ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// One reply per command: this many frames.
    Replies(usize),
    /// Frames up to `END` (a text `get`, `stats`).
    UntilEnd,
    /// Frames up to `MN` (quiet meta commands, then `mn`).
    UntilNoop,
}

/// What the frame just taken means for the reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framed {
    /// More frames belong to the reply.
    More,
    /// The reply is whole.
    Whole,
    /// The reply ends here, and the connection cannot be trusted after it:
    /// `ERROR` or `CLIENT_ERROR`, after which memcached may send more (or
    /// fewer) frames than were asked for, or a frame a text request cannot
    /// get.
    Broken,
}

/// Follows one request's reply frame by frame: the one place that knows
/// where a reply ends.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Framer {
    framing: Framing,
    seen: usize,
}

impl Framer {
    pub(crate) fn new(framing: Framing) -> Framer {
        Framer { framing, seen: 0 }
    }

    /// Takes the next frame of the reply.
    pub(crate) fn push(&mut self, reply: &Reply<'_>) -> Framed {
        self.seen += 1;
        match (self.framing, reply) {
            (_, Reply::Error(_) | Reply::ClientError(_)) => Framed::Broken,
            (Framing::Replies(n), _) if self.seen >= n => Framed::Whole,
            (Framing::Replies(_), _) => Framed::More,
            (Framing::UntilEnd, Reply::End) => Framed::Whole,
            (Framing::UntilEnd, Reply::Value(_) | Reply::Stat { .. }) => Framed::More,
            (Framing::UntilEnd, Reply::ServerError(_)) => Framed::Whole,
            (Framing::UntilEnd, _) => Framed::Broken,
            (Framing::UntilNoop, Reply::Meta(meta)) if meta.status == MetaStatus::NoOp => {
                Framed::Whole
            }
            (Framing::UntilNoop, Reply::Meta(_) | Reply::ServerError(_)) => Framed::More,
            (Framing::UntilNoop, _) => Framed::Broken,
        }
    }
}

/// One request to one server and the meaning of its reply.
pub(crate) trait Exchange {
    /// What the reply becomes.
    type Output;

    /// Appends the request, registering each meta command.
    ///
    /// # Errors
    ///
    /// A key that is not valid (checked earlier by every caller).
    fn encode(&self, request: &mut MetaRequest<'_>) -> Result<()>;

    /// Where the reply ends.
    fn framing(&self) -> Framing;

    /// Takes the next frame of the reply (matched to its command, when it
    /// is a meta reply).
    ///
    /// # Errors
    ///
    /// A frame that makes the rest of the reply meaningless: the exchange
    /// stops there, and fails with this error.
    fn feed(&mut self, reply: Reply<'_>) -> Result<()>;

    /// The result, once the whole reply was fed.
    ///
    /// # Errors
    ///
    /// What the reply said went wrong.
    fn finish(self) -> Result<Self::Output>;
}

/// The error of an exchange finished with no reply fed to it (a driver
/// bug: a whole reply has at least one frame).
pub(crate) fn no_reply() -> Error {
    Error::Protocol(super::protocol::ProtocolError::Malformed { reply: "no reply" })
}

/// A single-key [`Command`] as an exchange.
pub(crate) struct Single<'a, Cmd: Command> {
    cmd: &'a Cmd,
    key: ValidKey<'a>,
    out: Option<Result<Cmd::Output>>,
}

impl<'a, Cmd: Command> Single<'a, Cmd> {
    pub(crate) fn new(cmd: &'a Cmd, key: ValidKey<'a>) -> Single<'a, Cmd> {
        Single {
            cmd,
            key,
            out: None,
        }
    }
}

impl<Cmd: Command> Exchange for Single<'_, Cmd> {
    type Output = Cmd::Output;

    fn encode(&self, request: &mut MetaRequest<'_>) -> Result<()> {
        let opaque = request.tag(self.key);
        self.cmd.encode(request.out(), self.key, opaque);
        Ok(())
    }

    fn framing(&self) -> Framing {
        Framing::Replies(1)
    }

    fn feed(&mut self, reply: Reply<'_>) -> Result<()> {
        self.out = Some(self.cmd.read(reply));
        Ok(())
    }

    fn finish(self) -> Result<Cmd::Output> {
        self.out.unwrap_or_else(|| Err(no_reply()))
    }
}

#[cfg(test)]
mod tests;
