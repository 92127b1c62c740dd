//! Values written by this client read back in Python's pymemcache 4.0, and
//! the other way round, through one real memcached.
//!
//! pymemcache side: `pymemcache.client.base.Client` with
//! `serde=pymemcache.serde.compressed_serde` (its pickle serde, flags 0 for
//! bytes, 2 for int, 16 for str, plus zlib and flag 8 above 400 bytes), with
//! `pickle_serde` (no compression), and with no serde at all (the default
//! `Client()`: every value `str(value)` with flags 0). The peer runs in the
//! venv `bash .ci/deps` makes (tests/common/python.rs).
//! python-memcached is in tests/python_memcached.rs.
#![cfg(feature = "memcached")]

#[path = "common/memcached.rs"]
mod server;

#[path = "common/python.rs"]
mod python;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

use nearfar::codec::{
    Codec, CodecError, DefaultCodec, FLAG_BINCODE, FLAG_BYTES, FLAG_COMPRESSED, FLAG_INTEGER,
    FLAG_TEXT,
};
use nearfar::memcached::{Client, Distribution, Error};
use serde::{Deserialize, Serialize};
use server::Memcached;

const MINUTE: Duration = Duration::from_secs(60);

/// Runs `script` with `port` as `sys.argv[1]`; returns its stdout.
fn python(script: &str, port: u16) -> String {
    python::run(script, &[port.to_string()])
}

/// Runs `script` with `args` as `sys.argv[1..]`; returns its stdout.
fn python_with_args(script: &str, args: &[String]) -> String {
    python::run(script, args)
}

/// A value only Rust readers understand (bincode, flag 256).
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Profile {
    id: u64,
    name: String,
    tags: Vec<String>,
}

fn profile() -> Profile {
    Profile {
        id: 42,
        name: "zoë".into(),
        tags: vec!["python".into(); 60],
    }
}

#[test]
fn python_reads_what_rust_writes() {
    let mc = Memcached::start();
    let c = Client::builder()
        .servers([mc.addr()])
        .codec(DefaultCodec::new().with_compression_threshold(Some(400)))
        .build()
        .unwrap();
    c.set("str", "héllo wörld", MINUTE).unwrap();
    c.set("int", &-1234567890123i64, MINUTE).unwrap();
    c.set("bytes", &b"\x00\x01\xfe\xff".to_vec(), MINUTE)
        .unwrap();
    c.set("long", &python::long_text(), MINUTE).unwrap();
    c.set("long_bytes", &python::long_bytes(), MINUTE).unwrap();
    c.set("profile", &profile(), MINUTE).unwrap();
    for (key, flags) in [
        ("long", FLAG_TEXT | FLAG_COMPRESSED),
        ("long_bytes", FLAG_BYTES | FLAG_COMPRESSED),
        ("profile", FLAG_BINCODE | FLAG_COMPRESSED),
    ] {
        let (data, got) = c.get_raw(key).unwrap().unwrap();
        assert_eq!(got, flags, "{key}");
        assert!(data.len() < 400, "{key} compressed");
    }
    // What the profile is in bincode, for Python to compare with.
    let bincode = hex(&DefaultCodec::new().encode(&profile()).unwrap().data);

    // pymemcache 4.0's compressing serde, as the module's instance and as
    // a CompressedSerde of its own, reads every value, compressed or not.
    let script = r#"
import sys
from pymemcache.client.base import Client
from pymemcache import serde
for s in (serde.compressed_serde, serde.CompressedSerde()):
    c = Client(("127.0.0.1", int(sys.argv[1])), serde=s)
    assert c.get("str") == "héllo wörld", repr(c.get("str"))
    assert c.get("int") == -1234567890123, repr(c.get("int"))
    assert c.get("bytes") == b"\x00\x01\xfe\xff", repr(c.get("bytes"))
    assert c.get("long") == "the quick brown fox jumps over the lazy dog; " * 40, repr(c.get("long"))[:80]
    assert c.get("long_bytes") == bytes(i % 7 for i in range(2000))
    # Rust's own values come back as their (inflated) bincode bytes.
    assert c.get("profile") == bytes.fromhex(sys.argv[2]), c.get("profile")[:40]
print("ok")
"#;
    assert_eq!(
        python::run(script, &[mc.port().to_string(), bincode]).trim(),
        "ok"
    );

    // Without it (pickle_serde, as pymemcache 3.x's python_memcache_*
    // functions), uncompressed values read, compressed ones do not: what
    // the codec docs say about keeping compression off for such readers.
    let script = r#"
import sys, zlib
from pymemcache.client.base import Client
from pymemcache import serde
c = Client(("127.0.0.1", int(sys.argv[1])), serde=serde.pickle_serde)
assert c.get("str") == "héllo wörld"
assert c.get("int") == -1234567890123
assert c.get("bytes") == b"\x00\x01\xfe\xff"
try:
    c.get("long")
    raise SystemExit("compressed text read without CompressedSerde")
except UnicodeDecodeError:
    pass
c = Client(("127.0.0.1", int(sys.argv[1])), serde=serde.pickle_serde)
assert zlib.decompress(c.get("long_bytes")) == bytes(i % 7 for i in range(2000))
print("ok")
"#;
    assert_eq!(python(script, mc.port()).trim(), "ok");
}

#[test]
fn rust_reads_what_python_writes() {
    let mc = Memcached::start();
    let script = r#"
import sys
from pymemcache.client.base import Client
from pymemcache import serde
c = Client(("127.0.0.1", int(sys.argv[1])), serde=serde.compressed_serde)
c.set("str", "héllo wörld")
c.set("int", 4242424242)
c.set("neg", -7)
c.set("bytes", b"\x00\x01\xfe\xff")
c.set("long", "the quick brown fox jumps over the lazy dog; " * 40)
c.set("count", "10")
# pymemcache sends sets with noreply: a reply on the same connection means
# the server has applied them (else this process may exit first).
c.get("count")
print("ok")
"#;
    assert_eq!(python(script, mc.port()).trim(), "ok");

    let c = Client::builder().servers([mc.addr()]).build().unwrap();
    assert_eq!(
        c.get::<String>("str").unwrap().as_deref(),
        Some("héllo wörld")
    );
    assert_eq!(c.get::<i64>("int").unwrap(), Some(4_242_424_242));
    assert_eq!(c.get::<i64>("neg").unwrap(), Some(-7));
    assert_eq!(
        c.get::<Vec<u8>>("bytes").unwrap(),
        Some(b"\x00\x01\xfe\xff".to_vec())
    );
    let (_, flags) = c.get_raw("long").unwrap().unwrap();
    assert_eq!(
        flags & FLAG_COMPRESSED,
        FLAG_COMPRESSED,
        "python compressed it"
    );
    assert_eq!(c.get::<String>("long").unwrap(), Some(python::long_text()));
    // Counters are shared too.
    assert_eq!(c.incr("count", 5).unwrap(), Some(15));
    let got = c.get_many::<String>(&["str", "long", "missing"]).unwrap();
    assert_eq!(got.len(), 2);
}

/// The requested type of an untyped-bytes refusal, or a panic.
fn untyped<T: serde::de::DeserializeOwned + std::fmt::Debug>(c: &Client, key: &str) -> String {
    match c.get::<T>(key) {
        Err(Error::Codec(CodecError::UntypedBytes { requested })) => requested,
        other => panic!("{key}: {other:?}, not UntypedBytes"),
    }
}

#[test]
fn rust_reads_what_pymemcache_default_client_writes() {
    // pymemcache's Client() with no serde: every value is `str(value)`
    // (bytes as they are) with flags 0, so no type is recorded.
    let mc = Memcached::start();
    let script = r#"
import sys
from pymemcache.client.base import Client
c = Client(("127.0.0.1", int(sys.argv[1])))
c.set("int", 42)
c.set("neg", -7)
c.set("big", 2**100)
c.set("str", "hello world")
# Its encoding is ASCII unless one is given.
u = Client(("127.0.0.1", int(sys.argv[1])), encoding="utf-8")
u.set("utf8", "héllo wörld")
# Sets go with noreply: a reply on each connection means the server has
# applied them (else this process may exit first).
u.get("utf8")
c.set("bytes", b"\x00\x01\xfe\xff")
c.set("list", [1, 2, 3])
c.set("float", 1.5)
c.set("bool", True)
c.set("dict", {"a": 1})
c.get("dict")
print("ok")
"#;
    assert_eq!(python(script, mc.port()).trim(), "ok");
    let c = Client::builder().servers([mc.addr()]).build().unwrap();
    for key in ["int", "list", "float"] {
        assert_eq!(c.get_raw(key).unwrap().unwrap().1, FLAG_BYTES, "{key}");
    }
    // Integers, as any integer type that holds them.
    assert_eq!(c.get::<i64>("int").unwrap(), Some(42));
    assert_eq!(c.get::<u8>("int").unwrap(), Some(42));
    assert_eq!(c.get::<i32>("neg").unwrap(), Some(-7));
    assert_eq!(c.get::<u128>("big").unwrap(), Some(1 << 100));
    assert!(matches!(
        c.get::<u8>("neg"),
        Err(Error::Codec(CodecError::Decode(_)))
    ));
    assert!(matches!(
        c.get::<i64>("str"),
        Err(Error::Codec(CodecError::Decode(_)))
    ));
    // Text and bytes.
    assert_eq!(
        c.get::<String>("str").unwrap().as_deref(),
        Some("hello world")
    );
    assert_eq!(
        c.get::<String>("utf8").unwrap().as_deref(),
        Some("héllo wörld")
    );
    assert_eq!(
        c.get::<Vec<u8>>("bytes").unwrap(),
        Some(b"\x00\x01\xfe\xff".to_vec())
    );
    assert_eq!(
        c.get::<String>("list").unwrap().as_deref(),
        Some("[1, 2, 3]")
    );
    assert_eq!(
        c.get::<Vec<u8>>("list").unwrap(),
        Some(b"[1, 2, 3]".to_vec())
    );
    // Anything else is refused, never a wrong value ([91, 49, 44, ...]).
    assert_eq!(untyped::<Vec<i64>>(&c, "list"), "a sequence of i64");
    assert_eq!(untyped::<f64>(&c, "float"), "f64");
    assert_eq!(untyped::<bool>(&c, "bool"), "a boolean");
    assert_eq!(
        untyped::<std::collections::HashMap<String, i64>>(&c, "dict"),
        "a map"
    );
    // get_many reports the same error rather than a wrong value.
    assert!(matches!(
        c.get_many::<Vec<i64>>(&["list", "missing"]),
        Err(Error::Codec(CodecError::UntypedBytes { .. }))
    ));
}

#[test]
fn pymemcache_default_client_reads_what_rust_writes() {
    let mc = Memcached::start();
    let c = Client::builder().servers([mc.addr()]).build().unwrap();
    c.set("int", &-1234i64, MINUTE).unwrap();
    c.set("str", "héllo", MINUTE).unwrap();
    c.set("bytes", &b"\x00\xff".to_vec(), MINUTE).unwrap();
    c.set("profile", &profile(), MINUTE).unwrap();
    let bincode = hex(&DefaultCodec::new().encode(&profile()).unwrap().data);
    // With no serde, pymemcache returns every value's raw bytes.
    let script = r#"
import sys
from pymemcache.client.base import Client
c = Client(("127.0.0.1", int(sys.argv[1])))
assert c.get("int") == b"-1234" and int(c.get("int")) == -1234, c.get("int")
assert c.get("str") == "héllo".encode(), c.get("str")
assert c.get("bytes") == b"\x00\xff", c.get("bytes")
assert c.get("profile") == bytes.fromhex(sys.argv[2])
print("ok")
"#;
    assert_eq!(
        python::run(script, &[mc.port().to_string(), bincode]).trim(),
        "ok"
    );
}

/// Sends one text-protocol line to `mc`; returns the reply's first line.
fn raw_command(mc: &Memcached, line: &str) -> String {
    let stream = TcpStream::connect(mc.addr()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    (&stream).write_all(line.as_bytes()).unwrap();
    let mut reply = String::new();
    BufReader::new(&stream).read_line(&mut reply).unwrap();
    reply
}

#[test]
fn counters_are_shared_both_ways() {
    let mc = Memcached::start();
    let c = Client::builder().servers([mc.addr()]).build().unwrap();
    // A counter Python stores with no serde (flags 0) and counts up;
    // this client reads it as an integer, counts on, and Python reads that.
    // Then Python counts it down, shorter.
    let script = r#"
import sys
from pymemcache.client.base import Client
c = Client(("127.0.0.1", int(sys.argv[1])))
if sys.argv[2] == "start":
    c.set("hits", 10)
    assert c.incr("hits", 5) == 15
else:
    assert c.get("hits") == b"16", c.get("hits")
    assert c.decr("hits", 10) == 6
    assert c.incr("rust", 5) == 15
print("ok")
"#;
    let run = |step: &str| python::run(script, &[mc.port().to_string(), step.to_string()]);
    assert_eq!(run("start").trim(), "ok");
    assert_eq!(
        c.get_raw("hits").unwrap().unwrap(),
        (b"15".to_vec(), FLAG_BYTES)
    );
    assert_eq!(c.get::<u64>("hits").unwrap(), Some(15));
    assert_eq!(c.incr("hits", 1).unwrap(), Some(16));
    // A counter this client stores (flags 2), for Python to count up.
    c.set("rust", &10u64, MINUTE).unwrap();
    assert_eq!(run("then").trim(), "ok");
    assert_eq!(c.get::<u8>("hits").unwrap(), Some(6));
    assert_eq!(c.get::<i64>("rust").unwrap(), Some(15));
    assert_eq!(
        c.get_raw("rust").unwrap().unwrap().1,
        FLAG_INTEGER,
        "incr keeps the flags"
    );

    // A counter memcached creates itself (meta arithmetic, autovivified
    // with an initial value) has flags 0 too.
    assert_eq!(raw_command(&mc, "ma fresh N0 J7 v\r\n"), "VA 1\r\n");
    assert_eq!(
        c.get_raw("fresh").unwrap().unwrap(),
        (b"7".to_vec(), FLAG_BYTES)
    );
    assert_eq!(c.get::<u32>("fresh").unwrap(), Some(7));
}

#[test]
fn hash_client_with_a_key_prefix_shares_the_pool() {
    // pymemcache's HashClient with a key prefix and this client with the
    // same prefix, over the same three servers: each finds what the other
    // wrote, because both place a key by its unprefixed form.
    let servers: Vec<Memcached> = (0..3).map(|_| Memcached::start()).collect();
    let c = Client::builder()
        .servers(servers.iter().map(Memcached::addr))
        .distribution(Distribution::Rendezvous)
        .key_prefix("app:")
        .build()
        .unwrap();
    for i in 0..100 {
        c.set(&format!("rust:{i}"), &format!("r{i}"), MINUTE)
            .unwrap();
    }
    let script = r#"
import sys
from pymemcache.client.hash import HashClient
from pymemcache import serde
servers = [("127.0.0.1", int(p)) for p in sys.argv[1:]]
c = HashClient(servers, key_prefix=b"app:", serde=serde.compressed_serde)
missing = [i for i in range(100) if c.get("rust:%d" % i) != "r%d" % i]
assert not missing, "python misses %r" % missing
for i in range(100):
    assert c.set("py:%d" % i, "p%d" % i)
# The sets went with noreply: a get of each, on its server's connection,
# means the server has applied it.
for i in range(100):
    assert c.get("py:%d" % i) == "p%d" % i
for i in range(100):
    print("py:%d\t%s:%s" % ((i,) + c._get_client("py:%d" % i).server))
"#;
    let ports: Vec<String> = servers.iter().map(|s| s.port().to_string()).collect();
    let out = python_with_args(script, &ports);
    let mut placed = 0;
    for line in out.lines() {
        let (key, node) = line.split_once('\t').expect("key<TAB>node");
        assert_eq!(c.server_for(key).unwrap(), node, "{key}");
        placed += 1;
    }
    assert_eq!(placed, 100);
    let keys: Vec<String> = (0..100).map(|i| format!("py:{i}")).collect();
    let got: std::collections::HashMap<String, String> = c.get_many(&keys).unwrap();
    assert_eq!(got.len(), 100);
    assert_eq!(got["py:7"], "p7");
}

#[test]
fn ipv6_servers_are_placed_as_pymemcache_places_them() {
    // pymemcache names an IPv6 node "::1:11211" (no brackets) and hashes
    // that name with the key. Placement only: nothing is connected.
    let script = r#"
import sys
from pymemcache.client.hash import HashClient
servers = [("::1", 11211), ("::1", 11212), ("fe80::1", 11211), ("127.0.0.1", 11213)]
c = HashClient(servers)
for i in range(300):
    key = "k%d" % i
    print("%s\t%s" % (key, c.hasher.get_node(key)))
"#;
    let c = Client::builder()
        .servers([
            "[::1]:11211",
            "[::1]:11212",
            "[fe80::1]:11211",
            "127.0.0.1:11213",
        ])
        .distribution(Distribution::Rendezvous)
        .build()
        .unwrap();
    let out = python_with_args(script, &[]);
    let mut checked = 0;
    for line in out.lines() {
        let (key, node) = line.split_once('\t').expect("key<TAB>node");
        // This client shows IPv6 servers bracketed; pymemcache does not.
        let ours = c.server_for(key).unwrap().replace(['[', ']'], "");
        assert_eq!(ours, node, "{key}");
        checked += 1;
    }
    assert_eq!(checked, 300);
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
