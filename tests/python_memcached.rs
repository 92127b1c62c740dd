//! python-memcached (`memcache.Client`, PyPI `python-memcached`, Debian
//! `python3-memcache`) as a peer, versions 1.62 and 1.59: values both ways
//! through real memcached, and key placement over several weighted
//! servers, a dead one included, against `Distribution::PythonMemcached`
//! (1.60 and later) and `Distribution::PythonMemcachedLegacy` (1.59,
//! Debian 12's).
//!
//! python-memcached's flags (its `_val_to_store_info`, `_recv_value`):
//! bytes 0, `str` 16 (UTF-8), `int` 2 (decimal), a Python 2 `long` 4, zlib
//! on top 8 (only when `set` is given `min_compress_len`, never for an
//! `int`), anything else a pickle 1 (`bool` and `float` included: it checks
//! exact types). The peers run in the venv `bash .ci/deps` makes
//! (tests/common/python.rs).
#![cfg(feature = "memcached")]

#[path = "common/memcached.rs"]
mod server;

#[path = "common/python.rs"]
mod python;

use std::collections::HashMap;
use std::time::Duration;

use nearfar::codec::{
    Codec, CodecError, DefaultCodec, FLAG_BYTES, FLAG_COMPRESSED, FLAG_INTEGER, FLAG_PICKLE,
    FLAG_TEXT,
};
use nearfar::memcached::{Client, ClientBuilder, Distribution, Error};
use serde::{Deserialize, Serialize};
use server::Memcached;

const MINUTE: Duration = Duration::from_secs(60);

/// Servers and weights of the placement tests: the first has weight 1, so
/// the two versions' hashes of 0 and 1 land on different servers.
const WEIGHTS: [u32; 4] = [1, 3, 2, 5];

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Profile {
    id: u64,
    name: String,
}

/// A client over `servers`, with [`WEIGHTS`], placing as `distribution`.
fn builder(servers: &[Memcached], distribution: Distribution) -> ClientBuilder {
    Client::builder()
        .servers(
            servers
                .iter()
                .zip(WEIGHTS)
                .map(|(s, w)| format!("{}:{w}", s.addr())),
        )
        .distribution(distribution)
}

/// The arguments of [`CLIENT`] for `servers`: `port:weight` each.
fn server_args(servers: &[Memcached]) -> Vec<String> {
    servers
        .iter()
        .zip(WEIGHTS)
        .map(|(s, w)| format!("{}:{w}", s.port()))
        .collect()
}

/// The Python side of the placement tests: `memcache.Client` over the
/// servers given as `port:weight` arguments after the first (the step).
const CLIENT: &str = r#"
import sys, memcache
servers = [("127.0.0.1:%s" % a.split(":")[0], int(a.split(":")[1])) for a in sys.argv[2:]]
c = memcache.Client(servers)
def where(key):
    server, _ = c._get_server(key.encode("utf8"))
    return "127.0.0.1:%d" % server.port
"#;

/// A way to run a python-memcached script: 1.62, or 1.59.
type Peer = fn(&str, &[String]) -> String;

/// Both versions: their values code is the same; their server hash is not.
const PEERS: [Peer; 2] = [python::run, python::run_legacy];

#[test]
fn python_memcached_reads_what_rust_writes() {
    for run in PEERS {
        reads_what_rust_writes(run);
    }
}

fn reads_what_rust_writes(run: Peer) {
    let mc = Memcached::start();
    let c = Client::builder()
        .servers([mc.addr()])
        .codec(DefaultCodec::new().with_compression_threshold(Some(400)))
        .build()
        .unwrap();
    c.set("str", "héllo wörld", MINUTE).unwrap();
    c.set("int", &-1234567890123i64, MINUTE).unwrap();
    c.set("big", &u128::MAX, MINUTE).unwrap();
    c.set("bytes", &b"\x00\x01\xfe\xff".to_vec(), MINUTE)
        .unwrap();
    c.set("long", &python::long_text(), MINUTE).unwrap();
    c.set("long_bytes", &python::long_bytes(), MINUTE).unwrap();
    c.set("count", &10u64, MINUTE).unwrap();
    c.set(
        "profile",
        &Profile {
            id: 1,
            name: "x".into(),
        },
        MINUTE,
    )
    .unwrap();
    assert_eq!(
        c.get_raw("long").unwrap().unwrap().1,
        FLAG_TEXT | FLAG_COMPRESSED
    );
    assert_eq!(
        c.get_raw("long_bytes").unwrap().unwrap().1,
        FLAG_BYTES | FLAG_COMPRESSED
    );

    let script = r#"
import sys, memcache
c = memcache.Client(["127.0.0.1:" + sys.argv[1]])
assert c.get("str") == "héllo wörld", repr(c.get("str"))
assert c.get("int") == -1234567890123, repr(c.get("int"))
assert c.get("big") == 2**128 - 1, repr(c.get("big"))
assert c.get("bytes") == b"\x00\x01\xfe\xff", repr(c.get("bytes"))
assert c.get("long") == "the quick brown fox jumps over the lazy dog; " * 40
assert c.get("long_bytes") == bytes(i % 7 for i in range(2000))
assert c.incr("count", 5) == 15
multi = c.get_multi(["str", "int", "missing"])
assert multi == {"str": "héllo wörld", "int": -1234567890123}, multi
# Rust's own format (flag 256) is not python-memcached's.
try:
    c.get("profile")
    raise SystemExit("read a bincode value")
except ValueError as e:
    assert "Unknown flags on get: 100" in str(e), e
print("ok")
"#;
    assert_eq!(run(script, &[mc.port().to_string()]).trim(), "ok");
    assert_eq!(c.get::<u64>("count").unwrap(), Some(15));
}

#[test]
fn rust_reads_what_python_memcached_writes() {
    for run in PEERS {
        reads_what_python_writes(run);
    }
}

fn reads_what_python_writes(run: Peer) {
    let mc = Memcached::start();
    let script = r#"
import sys, memcache
c = memcache.Client(["127.0.0.1:" + sys.argv[1]])
assert c.set("str", "héllo wörld")
assert c.set("int", 4242424242)
assert c.set("neg", -7)
assert c.set("big", 2**100)
assert c.set("bytes", b"\x00\x01\xfe\xff")
assert c.set("long", "the quick brown fox jumps over the lazy dog; " * 40, min_compress_len=100)
assert c.set("long_bytes", bytes(i % 7 for i in range(2000)), min_compress_len=100)
assert c.set("long_int", 10**300, min_compress_len=100)
assert c.set("count", 10)
assert c.incr("count", 5) == 15
assert c.set("text_count", "20")
assert c.incr("text_count") == 21
assert c.set("list", [1, 2, 3])
assert c.set("float", 1.5)
assert c.set("bool", True)
assert c.set("big_dict", {"k%d" % i: "v" * 10 for i in range(100)}, min_compress_len=100)
print("ok")
"#;
    assert_eq!(run(script, &[mc.port().to_string()]).trim(), "ok");

    let c = Client::builder().servers([mc.addr()]).build().unwrap();
    let flags = |key: &str| c.get_raw(key).unwrap().unwrap().1;
    assert_eq!(flags("str"), FLAG_TEXT);
    assert_eq!(flags("int"), FLAG_INTEGER);
    assert_eq!(flags("bytes"), FLAG_BYTES);
    assert_eq!(flags("long"), FLAG_TEXT | FLAG_COMPRESSED);
    assert_eq!(flags("long_bytes"), FLAG_BYTES | FLAG_COMPRESSED);
    assert_eq!(flags("long_int"), FLAG_INTEGER, "never compresses an int");
    assert_eq!(flags("list"), FLAG_PICKLE);

    assert_eq!(
        c.get::<String>("str").unwrap().as_deref(),
        Some("héllo wörld")
    );
    assert_eq!(c.get::<u32>("int").unwrap(), Some(4_242_424_242));
    assert_eq!(c.get::<i8>("neg").unwrap(), Some(-7));
    assert_eq!(c.get::<u128>("big").unwrap(), Some(1 << 100));
    assert!(matches!(
        c.get::<u128>("long_int"),
        Err(Error::Codec(CodecError::Decode(_)))
    ));
    assert_eq!(
        c.get::<String>("long_int").unwrap(),
        Some(format!("1{}", "0".repeat(300)))
    );
    assert_eq!(
        c.get::<Vec<u8>>("bytes").unwrap(),
        Some(b"\x00\x01\xfe\xff".to_vec())
    );
    assert_eq!(c.get::<String>("long").unwrap(), Some(python::long_text()));
    assert_eq!(
        c.get::<Vec<u8>>("long_bytes").unwrap(),
        Some(python::long_bytes())
    );
    // Counters: an int counts as one; text stays text.
    assert_eq!(c.get::<u64>("count").unwrap(), Some(15));
    assert_eq!(c.incr("count", 1).unwrap(), Some(16));
    assert_eq!(
        c.get::<String>("text_count").unwrap().as_deref(),
        Some("21")
    );
    // Pickles are Python's alone: a typed error, compressed or not.
    for (key, flags) in [
        ("list", FLAG_PICKLE),
        ("float", FLAG_PICKLE),
        ("bool", FLAG_PICKLE),
        ("big_dict", FLAG_PICKLE | FLAG_COMPRESSED),
    ] {
        match c.get::<Vec<i64>>(key) {
            Err(Error::Codec(CodecError::UnsupportedFlags(got))) => assert_eq!(got, flags, "{key}"),
            other => panic!("{key}: {other:?}"),
        }
    }
    assert!(matches!(
        c.get::<f64>("float"),
        Err(Error::Codec(CodecError::UnsupportedFlags(1)))
    ));
}

/// Python writes keys over four weighted servers and tells where each
/// went; this client, placing as `distribution`, agrees on every key, reads
/// them all, and writes keys Python then reads. Keys with a prefix go
/// through `get_multi`/`set_multi` with `key_prefix` both ways.
fn placement_agrees(distribution: Distribution, run: Peer) {
    let servers: Vec<Memcached> = (0..4).map(|_| Memcached::start()).collect();
    let c = builder(&servers, distribution).build().unwrap();
    // "k25" hashes to 0: the versions part on it.
    let keys: Vec<String> = (0..300)
        .map(|i| format!("k{i}"))
        .chain(["café".into(), "ключ".into()])
        .collect();
    let script = format!(
        "{CLIENT}{}",
        r#"
if sys.argv[1] == "write":
    for key in ["k%d" % i for i in range(300)] + ["café", "ключ"]:
        assert c.set(key, "py-" + key)
        print("%s\t%s" % (key, where(key)))
    c.set_multi({"m%d" % i: i for i in range(50)}, key_prefix="app:")
else:
    missing = [k for k in ["k%d" % i for i in range(300)] if c.get("rust-" + k) != k]
    assert not missing, "python misses %r" % missing
    got = c.get_multi(["r%d" % i for i in range(50)], key_prefix="app:")
    assert got == {"r%d" % i: i for i in range(50)}, got
    print("ok")
"#
    );
    let mut args = vec!["write".to_string()];
    args.extend(server_args(&servers));
    let out = run(&script, &args);
    let mut placed = HashMap::new();
    for line in out.lines() {
        let (key, server) = line.split_once('\t').expect("key<TAB>server");
        assert_eq!(
            c.server_for(key).unwrap(),
            server,
            "{distribution:?}: {key}"
        );
        placed.insert(key.to_string(), server.to_string());
    }
    assert_eq!(placed.len(), keys.len());
    // Every server got keys (weights 1:3:2:5 over 302 keys).
    for s in &servers {
        assert!(
            placed.values().any(|p| *p == s.addr()),
            "{} unused",
            s.addr()
        );
    }
    // The key where the versions part.
    let zero = if distribution == Distribution::PythonMemcached {
        servers[0].addr()
    } else {
        servers[1].addr()
    };
    assert_eq!(placed["k25"], zero, "{distribution:?}");
    // This client finds all of them where Python put them.
    let got: HashMap<String, String> = c.get_many(&keys).unwrap();
    assert_eq!(got.len(), keys.len());
    assert_eq!(got["ключ"], "py-ключ");
    // Prefixed keys place by the prefixed key, as python-memcached's
    // *_multi with key_prefix do.
    let prefixed = builder(&servers, distribution)
        .key_prefix("app:")
        .build()
        .unwrap();
    let names: Vec<String> = (0..50).map(|i| format!("m{i}")).collect();
    let got: HashMap<String, i64> = prefixed.get_many(&names).unwrap();
    assert_eq!(got.len(), 50, "{distribution:?}: prefixed keys found");
    assert_eq!(got["m7"], 7);

    // And the other way.
    for i in 0..300 {
        c.set(&format!("rust-k{i}"), &format!("k{i}"), MINUTE)
            .unwrap();
    }
    let items: Vec<(String, i64)> = (0..50).map(|i| (format!("r{i}"), i)).collect();
    let items: Vec<(&str, &i64)> = items.iter().map(|(k, v)| (k.as_str(), v)).collect();
    prefixed.set_many(&items, MINUTE).unwrap();
    args[0] = "read".into();
    assert_eq!(run(&script, &args).trim(), "ok");
}

#[test]
fn placement_matches_python_memcached() {
    placement_agrees(Distribution::PythonMemcached, python::run);
}

#[test]
fn placement_matches_python_memcached_1_59() {
    placement_agrees(Distribution::PythonMemcachedLegacy, python::run_legacy);
}

/// With one server down, python-memcached rehashes that server's keys;
/// this client, once it has marked the server dead, sends them where
/// python-memcached does, both ways.
fn dead_server_rehash_agrees(distribution: Distribution, run: Peer) {
    let mut servers: Vec<Memcached> = (0..4).map(|_| Memcached::start()).collect();
    let c = builder(&servers, distribution)
        .retry_attempts(1)
        .dead_timeout(Duration::from_secs(600))
        .build()
        .unwrap();
    let dead = servers[1].addr();
    let keys: Vec<String> = (0..300).map(|i| format!("d{i}")).collect();
    let homed: Vec<&String> = keys
        .iter()
        .filter(|k| c.server_for(k).unwrap() == dead)
        .collect();
    assert!(
        homed.len() > 30,
        "{} keys on the server to stop",
        homed.len()
    );

    servers[1].stop();
    // One failed request marks it dead (retry_attempts 1).
    assert!(c.get::<String>(homed[0]).is_err());
    assert!(c.is_marked_dead(&dead));

    let script = format!(
        "{CLIENT}{}",
        r#"
if sys.argv[1] == "write":
    for i in range(300):
        key = "d%d" % i
        assert c.set(key, "py"), key
        print("%s\t%s" % (key, where(key)))
else:
    missing = [i for i in range(300) if c.get("rust-d%d" % i) != i]
    assert not missing, "python misses %r" % missing
    print("ok")
"#
    );
    let mut args = vec!["write".to_string()];
    args.extend(server_args(&servers));
    let out = run(&script, &args);
    let mut moved = 0;
    for line in out.lines() {
        let (key, server) = line.split_once('\t').expect("key<TAB>server");
        assert_ne!(server, dead);
        assert_eq!(
            c.server_for(key).unwrap(),
            server,
            "{distribution:?}: {key}"
        );
        if homed.iter().any(|k| *k == key) {
            moved += 1;
        }
    }
    assert_eq!(moved, homed.len());
    let got: HashMap<String, String> = c.get_many(&keys).unwrap();
    assert_eq!(got.len(), keys.len(), "{distribution:?}: all found");

    for (i, key) in keys.iter().enumerate() {
        c.set(&format!("rust-{key}"), &(i as u64), MINUTE).unwrap();
    }
    args[0] = "read".into();
    assert_eq!(run(&script, &args).trim(), "ok");
}

#[test]
fn dead_server_rehash_matches_python_memcached() {
    dead_server_rehash_agrees(Distribution::PythonMemcached, python::run);
}

#[test]
fn dead_server_rehash_matches_python_memcached_1_59() {
    dead_server_rehash_agrees(Distribution::PythonMemcachedLegacy, python::run_legacy);
}

#[test]
fn codec_values_match_python_memcached_bytes() {
    // The wire forms themselves: python-memcached's _val_to_store_info
    // and this codec's encode agree byte for byte on what both write.
    let codec = DefaultCodec::new();
    let script = r#"
import memcache
c = memcache.Client([])
for v in ("héllo", -42, 2**70, b"\x00\xff", "", 0):
    flags, _, data = c._val_to_store_info(v, 0)
    print("%d\t%s" % (flags, data.hex()))
"#;
    let ours = [
        codec.encode("héllo").unwrap(),
        codec.encode(&-42i64).unwrap(),
        codec.encode(&(1u128 << 70)).unwrap(),
        codec.encode(&b"\x00\xff"[..]).unwrap(),
        codec.encode("").unwrap(),
        codec.encode(&0u8).unwrap(),
    ];
    for run in PEERS {
        let out = run(script, &[]);
        let theirs: Vec<&str> = out.lines().collect();
        assert_eq!(theirs.len(), ours.len());
        for (line, item) in theirs.iter().zip(&ours) {
            let hex: String = item.data.iter().map(|b| format!("{b:02x}")).collect();
            assert_eq!(*line, format!("{}\t{hex}", item.flags));
        }
    }
}
