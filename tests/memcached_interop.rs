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
use nearfar::memcached::Client;
use server::Memcached;

const MINUTE: Duration = Duration::from_secs(60);

/// Runs `script` with `port` as `sys.argv[1]`; returns its stdout.
fn python(script: &str, port: u16) -> String {
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
        .args(["-c", script, &port.to_string()])
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
