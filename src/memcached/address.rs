//! Where a server listens: its configured address parsed into a
//! [`ServerSpec`] (TCP host and port, or a unix socket path, with a weight),
//! and the labels it is shown and hashed by.

use super::error::ConfigError;

/// The memcached port used when an address names none.
const DEFAULT_PORT: u16 = 11211;

/// Where a server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Address {
    /// A TCP host and port (the host is resolved at each connect).
    Tcp {
        /// A host name or IP address (IPv6 without brackets).
        host: String,
        /// The port.
        port: u16,
    },
    /// A unix domain socket path.
    Unix(String),
}

/// One configured server: its address, labels and weight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ServerSpec {
    pub(crate) address: Address,
    /// The label shown to users and in errors: `host:port` (IPv6 in
    /// brackets, so the port stands apart) or the path.
    pub(crate) label: String,
    pub(crate) weight: u32,
}

impl ServerSpec {
    /// The label the ring hashes: `host:port` with an IPv6 host *without*
    /// brackets (`::1:11211`), or the socket path.
    ///
    /// This is how the clients the ring matches name a server: pymemcache's
    /// `HashClient` formats its nodes as `"%s:%s" % (host, port)` after
    /// stripping the brackets, and libmemcached keeps IPv6 host names
    /// unbracketed in its ketama point labels (`::1-0`, `::1:11212-0`).
    pub(crate) fn ring_label(&self) -> String {
        match &self.address {
            Address::Tcp { host, port } => format!("{host}:{port}"),
            Address::Unix(path) => path.clone(),
        }
    }

    /// Parses `host[:port[:weight]]`, `[v6addr][:port[:weight]]`, or a unix
    /// socket path (starting with `/`, optionally followed by `:weight`),
    /// with any ASCII whitespace around it (a list split at its commas)
    /// left out.
    pub(crate) fn parse(given: &str) -> std::result::Result<ServerSpec, ConfigError> {
        let invalid = || ConfigError::InvalidAddress {
            address: given.to_owned(),
        };
        let text = given.trim_matches(|c: char| c.is_ascii_whitespace());
        let parse_weight = |w: &str| match w.parse::<u32>() {
            Ok(weight) if weight > 0 => Ok(weight),
            _ => Err(invalid()),
        };
        let parse_port = |p: &str| match p.parse::<u16>() {
            Ok(port) if port > 0 && p.bytes().all(|b| b.is_ascii_digit()) => Ok(port),
            _ => Err(invalid()),
        };
        // Other whitespace around it (a no-break space) is more likely a
        // paste gone wrong than a name: refused, as spaces within it are.
        if text.is_empty() || text.trim() != text {
            return Err(invalid());
        }
        if text.starts_with('/') {
            // A path may itself hold ':'; only an all-digit tail is a weight.
            let (path, weight) = match text.rsplit_once(':') {
                Some((path, w)) if !w.is_empty() && w.bytes().all(|b| b.is_ascii_digit()) => {
                    (path, parse_weight(w)?)
                }
                _ => (text, 1),
            };
            if path.len() <= 1 {
                return Err(invalid());
            }
            return Ok(ServerSpec {
                address: Address::Unix(path.to_owned()),
                label: path.to_owned(),
                weight,
            });
        }
        let (host, rest) = if let Some(bracketed) = text.strip_prefix('[') {
            let (host, rest) = bracketed.split_once(']').ok_or_else(invalid)?;
            if host.is_empty() || host.contains('[') {
                return Err(invalid());
            }
            match rest {
                "" => (host, None),
                _ => (host, Some(rest.strip_prefix(':').ok_or_else(invalid)?)),
            }
        } else {
            match text.split_once(':') {
                Some((host, rest)) => (host, Some(rest)),
                None => (text, None),
            }
        };
        if host.is_empty() || host.bytes().any(|b| b <= b' ' || b == b'/') {
            return Err(invalid());
        }
        let (port, weight) = match rest {
            None => (DEFAULT_PORT, 1),
            Some(rest) => match rest.split_once(':') {
                None => (parse_port(rest)?, 1),
                Some((port, weight)) => (parse_port(port)?, parse_weight(weight)?),
            },
        };
        let label = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        Ok(ServerSpec {
            address: Address::Tcp {
                host: host.to_owned(),
                port,
            },
            label,
            weight,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(text: &str) -> (String, u16, String, u32) {
        let spec = ServerSpec::parse(text).unwrap();
        match spec.address {
            Address::Tcp { host, port } => (host, port, spec.label, spec.weight),
            Address::Unix(_) => panic!("{text} parsed as a unix socket"),
        }
    }

    #[test]
    fn parses_addresses() {
        assert_eq!(
            tcp("127.0.0.1:11211"),
            ("127.0.0.1".into(), 11211, "127.0.0.1:11211".into(), 1)
        );
        assert_eq!(
            tcp("cache-1:11212:3"),
            ("cache-1".into(), 11212, "cache-1:11212".into(), 3)
        );
        assert_eq!(
            tcp("localhost"),
            ("localhost".into(), 11211, "localhost:11211".into(), 1)
        );
        assert_eq!(tcp("[::1]:9:2"), ("::1".into(), 9, "[::1]:9".into(), 2));
        assert_eq!(tcp("[::1]"), ("::1".into(), 11211, "[::1]:11211".into(), 1));

        // The ring hashes IPv6 hosts without brackets, as pymemcache and
        // libmemcached name them; other labels are unchanged.
        let ring_label = |text: &str| ServerSpec::parse(text).unwrap().ring_label();
        assert_eq!(ring_label("[::1]:9:2"), "::1:9");
        assert_eq!(ring_label("[fe80::1]"), "fe80::1:11211");
        assert_eq!(ring_label("127.0.0.1:11211"), "127.0.0.1:11211");
        assert_eq!(ring_label("cache-1"), "cache-1:11211");
        assert_eq!(ring_label("/run/mc.sock:4"), "/run/mc.sock");

        let unix = ServerSpec::parse("/run/mc.sock:4").unwrap();
        assert_eq!(unix.address, Address::Unix("/run/mc.sock".into()));
        assert_eq!((unix.label.as_str(), unix.weight), ("/run/mc.sock", 4));
        let unix = ServerSpec::parse("/run/mc.sock").unwrap();
        assert_eq!((unix.label.as_str(), unix.weight), ("/run/mc.sock", 1));
    }

    #[test]
    fn ignores_ascii_whitespace_around_addresses() {
        assert_eq!(
            tcp(" 127.0.0.1:11211 "),
            ("127.0.0.1".into(), 11211, "127.0.0.1:11211".into(), 1)
        );
        assert_eq!(
            tcp("\t cache-1:11212:3\r\n"),
            ("cache-1".into(), 11212, "cache-1:11212".into(), 3)
        );
        assert_eq!(tcp(" [::1]:9 "), ("::1".into(), 9, "[::1]:9".into(), 1));
        let unix = ServerSpec::parse("  /run/mc.sock:4\n").unwrap();
        assert_eq!(unix.address, Address::Unix("/run/mc.sock".into()));
        assert_eq!((unix.label.as_str(), unix.weight), ("/run/mc.sock", 4));
        // Only around it: within, and other whitespace around it, is refused,
        // and the error shows the address as given.
        for bad in [
            " ",
            "\t\n",
            " host :1",
            "host: 1",
            "\u{a0}host:1",
            "host:1\u{2003}",
        ] {
            assert_eq!(
                ServerSpec::parse(bad),
                Err(ConfigError::InvalidAddress {
                    address: bad.to_owned()
                }),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn refuses_bad_addresses() {
        for bad in [
            "",
            "host:",
            "host:0",
            "host:70000",
            "host:+1",
            "host:1:0",
            "host:1:x",
            "host:1:2:3",
            ":11211",
            "[::1",
            "[::1]x",
            "/",
            "h st:1",
        ] {
            assert!(ServerSpec::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
