//! Fuzzes the memcached reply parser and the key-checked encoders.
//!
//! Properties checked on arbitrary bytes:
//! * no parser entry point panics;
//! * a parsed frame is non-empty and no longer than the input;
//! * parsing is prefix-stable: whatever a prefix of the input parses to (a
//!   frame or an error) the whole input parses to the same, so reading more
//!   bytes never changes a result already given;
//! * walking the input as a pipeline always makes progress;
//! * a key that passes validation never lets an encoder emit a line break
//!   before the end of the command line.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nearfar::memcached::__fuzz_protocol::{
    self as protocol, MetaArithmeticFlags, MetaDeleteFlags, MetaGetFlags, MetaSetFlags,
    StoreCommand, ValidKey,
};

/// Limits on the data block size: none allowed, small, and effectively unbounded.
const LIMITS: [usize; 3] = [0, 16, usize::MAX];

/// How many prefixes to check per input (keeps each run quadratic only in a small bound).
const MAX_PREFIXES: usize = 512;

fuzz_target!(|data: &[u8]| {
    for max in LIMITS {
        let whole = protocol::parse_reply(data, max);
        if let Ok(Some((_, consumed))) = &whole {
            assert!(*consumed > 0, "empty frame");
            assert!(*consumed <= data.len(), "consumed past the end");
        }

        // Prefix stability.
        for cut in 0..=data.len().min(MAX_PREFIXES) {
            match protocol::parse_reply(&data[..cut], max) {
                Ok(None) => {}
                Ok(Some(prefix)) => assert_eq!(whole, Ok(Some(prefix)), "prefix {cut}"),
                Err(e) => assert_eq!(whole, Err(e), "prefix {cut}"),
            }
        }

        // Pipelined frames: each step consumes something and stays in bounds.
        let mut pos = 0;
        while let Ok(Some((_, consumed))) = protocol::parse_reply(&data[pos..], max) {
            assert!(consumed > 0 && consumed <= data.len() - pos);
            pos += consumed;
        }
    }

    let _ = protocol::parse_counter(data);

    // Keys: the input up to its first `|`, tried as a key.
    let candidate = data.split(|&b| b == b'|').next().unwrap_or_default();
    match ValidKey::new(candidate) {
        Ok(key) => {
            assert!(!key.as_bytes().is_empty() && key.as_bytes().len() <= protocol::MAX_KEY_LEN);
            assert!(key.as_bytes().iter().all(|&b| b > b' ' && b != 0x7f));
            let mut out = Vec::new();
            protocol::encode_get(&mut out, [key, key]);
            check_one_line(&out);
            out.clear();
            protocol::encode_store_header(&mut out, StoreCommand::Cas(7), key, 1, 2, 3, true);
            check_one_line(&out);
            out.clear();
            protocol::encode_delete(&mut out, key, false);
            check_one_line(&out);
            out.clear();
            protocol::encode_touch(&mut out, key, 5, false);
            check_one_line(&out);
            out.clear();
            protocol::encode_incr(&mut out, key, u64::MAX, true);
            check_one_line(&out);
            out.clear();
            let get = MetaGetFlags {
                value: true,
                opaque: Some(1),
                vivify_ttl: Some(30),
                ..MetaGetFlags::default()
            };
            protocol::encode_meta_get(&mut out, key, &get);
            check_one_line(&out);
            out.clear();
            protocol::encode_meta_set_header(&mut out, key, 9, &MetaSetFlags::default());
            check_one_line(&out);
            out.clear();
            protocol::encode_meta_delete(&mut out, key, &MetaDeleteFlags::default());
            check_one_line(&out);
            out.clear();
            protocol::encode_meta_arithmetic(&mut out, key, &MetaArithmeticFlags::default());
            check_one_line(&out);
        }
        Err(_) => assert!(protocol::validate_key(candidate).is_err()),
    }
});

/// The buffer is exactly one command line: `\r\n` at the end and nowhere else.
fn check_one_line(out: &[u8]) {
    assert!(out.ends_with(b"\r\n"));
    let body = &out[..out.len() - 2];
    assert!(!body.contains(&b'\r') && !body.contains(&b'\n'), "{out:?}");
}
