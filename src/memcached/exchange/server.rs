//! The exchanges that concern a whole server: `flush_all`, `version` and
//! `stats`. Their text replies name no key, so nothing is tagged.

use std::collections::HashMap;

use super::{Exchange, Framing, MetaRequest, no_reply};
use crate::memcached::error::{Error, Result};
use crate::memcached::protocol::{Reply, encode_flush_all, encode_stats, encode_version};

/// `flush_all`: empties the server.
#[derive(Default)]
pub(crate) struct FlushAll {
    out: Option<Result<()>>,
}

impl Exchange for FlushAll {
    type Output = ();

    fn encode(&self, request: &mut MetaRequest<'_>) -> Result<()> {
        encode_flush_all(request.out(), None, false);
        Ok(())
    }

    fn framing(&self) -> Framing {
        Framing::Replies(1)
    }

    fn feed(&mut self, reply: Reply<'_>) -> Result<()> {
        self.out = Some(match reply {
            Reply::Ok => Ok(()),
            other => Err(Error::from_reply(&other)),
        });
        Ok(())
    }

    fn finish(self) -> Result<()> {
        self.out.unwrap_or_else(|| Err(no_reply()))
    }
}

/// `version`: the server's version string.
#[derive(Default)]
pub(crate) struct Version {
    out: Option<Result<String>>,
}

impl Exchange for Version {
    type Output = String;

    fn encode(&self, request: &mut MetaRequest<'_>) -> Result<()> {
        encode_version(request.out());
        Ok(())
    }

    fn framing(&self) -> Framing {
        Framing::Replies(1)
    }

    fn feed(&mut self, reply: Reply<'_>) -> Result<()> {
        self.out = Some(match reply {
            Reply::Version(v) => Ok(String::from_utf8_lossy(v).into_owned()),
            other => Err(Error::from_reply(&other)),
        });
        Ok(())
    }

    fn finish(self) -> Result<String> {
        self.out.unwrap_or_else(|| Err(no_reply()))
    }
}

/// `stats`: the server's general statistics, by name.
#[derive(Default)]
pub(crate) struct Stats {
    stats: HashMap<String, String>,
}

impl Exchange for Stats {
    type Output = HashMap<String, String>;

    fn encode(&self, request: &mut MetaRequest<'_>) -> Result<()> {
        encode_stats(request.out(), []);
        Ok(())
    }

    fn framing(&self) -> Framing {
        Framing::UntilEnd
    }

    fn feed(&mut self, reply: Reply<'_>) -> Result<()> {
        match reply {
            Reply::Stat { name, value } => {
                self.stats.insert(
                    String::from_utf8_lossy(name).into_owned(),
                    String::from_utf8_lossy(value).into_owned(),
                );
                Ok(())
            }
            Reply::End => Ok(()),
            other => Err(Error::from_reply(&other)),
        }
    }

    fn finish(self) -> Result<HashMap<String, String>> {
        Ok(self.stats)
    }
}
