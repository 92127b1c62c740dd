//! Values written by this client read back in Python's pymemcache, and the
//! other way round, through one real memcached.
//!
//! pymemcache side: `pymemcache.client.base.Client` with
//! `serde=pymemcache.serde.compressed_serde` (its pickle serde, flags 0 for
//! bytes, 2 for int, 16 for str, plus zlib and flag 8 above 400 bytes).
#![cfg(feature = "memcached")]

#[path = "common/memcached.rs"]
mod server;

use std::process::Command;
use std::time::Duration;

use nearfar::codec::{DefaultCodec, FLAG_COMPRESSED, FLAG_TEXT};
use nearfar::memcached::{Client, Distribution};
use server::Memcached;

const MINUTE: Duration = Duration::from_secs(60);

/// Runs `script` with `port` as `sys.argv[1]`; returns its stdout.
fn python(script: &str, port: u16) -> String {
    python_with_args(script, &[port.to_string()])
}

/// Runs `script` with `args` as `sys.argv[1..]`; returns its stdout.
fn python_with_args(script: &str, args: &[String]) -> String {
    let probe = Command::new("python3")
        .args(["-c", "import pymemcache"])
        .output();
    match probe {
        Err(e) => panic!(
            "python3 not found ({e}): install Python 3 and run `pip install pymemcache` \
             to run the interop tests"
        ),
        Ok(out) if !out.status.success() => panic!(
            "pymemcache is not installed for python3: run `pip install pymemcache`\n{}",
            String::from_utf8_lossy(&out.stderr)
        ),
        Ok(_) => {}
    }
    let out = Command::new("python3")
        .args(["-c", script])
        .args(args)
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "python failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn long_text() -> String {
    "the quick brown fox jumps over the lazy dog; ".repeat(40)
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
    c.set("long", &long_text(), MINUTE).unwrap();
    let (data, flags) = c.get_raw("long").unwrap().unwrap();
    assert_eq!(flags, FLAG_TEXT | FLAG_COMPRESSED);
    assert!(data.len() < long_text().len());

    let script = r#"
import sys
from pymemcache.client.base import Client
from pymemcache import serde
c = Client(("127.0.0.1", int(sys.argv[1])), serde=serde.compressed_serde)
assert c.get("str") == "héllo wörld", repr(c.get("str"))
assert c.get("int") == -1234567890123, repr(c.get("int"))
assert c.get("bytes") == b"\x00\x01\xfe\xff", repr(c.get("bytes"))
assert c.get("long") == "the quick brown fox jumps over the lazy dog; " * 40, repr(c.get("long"))[:80]
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
    assert_eq!(c.get::<String>("long").unwrap(), Some(long_text()));
    // Counters are shared too.
    assert_eq!(c.incr("count", 5).unwrap(), Some(15));
    let got = c.get_many::<String>(&["str", "long", "missing"]).unwrap();
    assert_eq!(got.len(), 2);
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
