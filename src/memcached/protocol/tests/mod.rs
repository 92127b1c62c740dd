//! The protocol's unit tests: keys, exptime and the encoders here; the
//! reply parser in `parse.rs` (whole frames, streaming, malformed input).

use std::time::Duration;

use super::*;

mod parse;

const MAX: usize = 1024 * 1024;

fn key(k: &str) -> ValidKey<'_> {
    ValidKey::try_from(k).expect("test key is valid")
}

/// Parses `input`, which must hold exactly one frame, and checks that every
/// strict prefix of it asks for more bytes.
fn parse_whole(input: &[u8]) -> Reply<'_> {
    let (reply, consumed) = parse_reply(input, MAX)
        .expect("valid reply")
        .expect("complete reply");
    assert_eq!(consumed, input.len(), "frame length of {input:?}");
    for cut in 0..input.len() {
        assert_eq!(
            parse_reply(&input[..cut], MAX),
            Ok(None),
            "prefix of {cut} bytes of {input:?}"
        );
    }
    reply
}

fn parse_err(input: &[u8]) -> ProtocolError {
    match parse_reply(input, MAX) {
        Err(e) => e,
        other => panic!("expected an error for {input:?}, got {other:?}"),
    }
}

fn meta<'a>(status: MetaStatus<'a>, flags: ReturnFlags<'a>) -> Reply<'a> {
    Reply::Meta(MetaReply { status, flags })
}

// ---------------------------------------------------------------- keys

#[test]
fn keys_are_validated() {
    assert_eq!(validate_key(b"user:42"), Ok(()));
    assert_eq!(validate_key("ключ".as_bytes()), Ok(()));
    assert_eq!(validate_key(&[b'a'; MAX_KEY_LEN]), Ok(()));
    assert_eq!(validate_key(b"~!@#$%^&*()_+{}|:\"<>?"), Ok(()));
    assert_eq!(validate_key(b""), Err(KeyError::Empty));
    assert_eq!(
        validate_key(&[b'a'; MAX_KEY_LEN + 1]),
        Err(KeyError::TooLong { len: 251 })
    );
    assert_eq!(
        validate_key(b"a b"),
        Err(KeyError::ForbiddenByte {
            byte: b' ',
            index: 1
        })
    );
    for byte in (0u8..=0x20).chain([0x7f]) {
        let k = [b'k', byte, b'k'];
        assert_eq!(
            validate_key(&k),
            Err(KeyError::ForbiddenByte { byte, index: 1 }),
            "byte {byte:#x}"
        );
    }
}

#[test]
fn injection_is_impossible() {
    for evil in [
        &b"k\r\nflush_all"[..],
        b"k\nflush_all",
        b"k\rflush_all",
        b"k noreply",
        b"k\0",
        b"\r\n",
        b"k\tx",
    ] {
        assert!(ValidKey::new(evil).is_err(), "{evil:?} accepted");
    }
    assert!(ValidKey::try_from("k\r\nflush_all").is_err());
    // A valid key is passed through unchanged.
    assert_eq!(key("a:b").as_bytes(), b"a:b");
}

// ---------------------------------------------------------------- exptime

#[test]
fn exptime_conversion() {
    let now = 1_700_000_000;
    assert_eq!(exptime(Duration::ZERO, now), 0);
    assert_eq!(exptime(Duration::from_millis(1), now), 1);
    assert_eq!(exptime(Duration::from_millis(500), now), 1);
    assert_eq!(exptime(Duration::from_secs(1), now), 1);
    assert_eq!(exptime(Duration::from_millis(1500), now), 2);
    assert_eq!(exptime(Duration::from_secs(60), now), 60);
    assert_eq!(exptime(Duration::from_secs(2_592_000), now), 2_592_000);
    // Just over 30 days, or a fraction over: absolute time.
    assert_eq!(
        exptime(Duration::from_secs(2_592_001), now),
        1_700_000_000 + 2_592_001
    );
    assert_eq!(
        exptime(Duration::from_millis(2_592_000_001), now),
        1_700_000_000 + 2_592_001
    );
    // Capped at i32::MAX: memcached reads the field as a signed 32-bit
    // number, and anything larger would turn negative (already expired).
    assert_eq!(MAX_EXPTIME, 2_147_483_647);
    let century = Duration::from_secs(100 * 365 * 86_400);
    assert_eq!(exptime(century, now), MAX_EXPTIME);
    assert_eq!(
        exptime(Duration::from_secs(u64::from(MAX_EXPTIME)), 0),
        MAX_EXPTIME
    );
    assert_eq!(
        exptime(Duration::from_secs(u64::from(MAX_EXPTIME) + 1), 0),
        MAX_EXPTIME
    );
    assert_eq!(exptime(Duration::from_secs(u64::MAX), now), MAX_EXPTIME);
    assert_eq!(exptime(Duration::MAX, now), MAX_EXPTIME);
    assert_eq!(
        exptime(Duration::from_secs(40 * 86_400), u64::MAX),
        MAX_EXPTIME
    );
}

// ---------------------------------------------------------------- encoders

fn encoded(f: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut out = b"prior".to_vec();
    f(&mut out);
    // Encoders append; they never clobber what the buffer held.
    assert_eq!(&out[..5], b"prior");
    out.split_off(5)
}

#[test]
fn encode_retrievals() {
    assert_eq!(
        encoded(|o| assert_eq!(encode_get(o, [key("foo")]), 1)),
        b"get foo\r\n"
    );
    assert_eq!(
        encoded(|o| assert_eq!(encode_get(o, [key("a"), key("b"), key("c")]), 3)),
        b"get a b c\r\n"
    );
    assert_eq!(
        encoded(|o| assert_eq!(encode_gets(o, [key("a"), key("b")]), 2)),
        b"gets a b\r\n"
    );
    assert_eq!(encoded(|o| assert_eq!(encode_get(o, []), 0)), b"");
    assert_eq!(encoded(|o| assert_eq!(encode_gets(o, []), 0)), b"");
}

#[test]
fn encode_storage_commands() {
    let k = key("foo");
    let cases: [(StoreCommand, &[u8]); 6] = [
        (StoreCommand::Set, b"set foo 5 60 3\r\nbar\r\n"),
        (StoreCommand::Add, b"add foo 5 60 3\r\nbar\r\n"),
        (StoreCommand::Replace, b"replace foo 5 60 3\r\nbar\r\n"),
        (StoreCommand::Append, b"append foo 5 60 3\r\nbar\r\n"),
        (StoreCommand::Prepend, b"prepend foo 5 60 3\r\nbar\r\n"),
        (StoreCommand::Cas(123), b"cas foo 5 60 3 123\r\nbar\r\n"),
    ];
    for (command, expected) in cases {
        assert_eq!(
            encoded(|o| encode_store(o, command, k, 5, 60, b"bar", false)),
            expected
        );
    }
    assert_eq!(
        encoded(|o| encode_store(o, StoreCommand::Set, k, 0, 0, b"", true)),
        b"set foo 0 0 0 noreply\r\n\r\n"
    );
    assert_eq!(
        encoded(|o| encode_store(
            o,
            StoreCommand::Cas(u64::MAX),
            k,
            u32::MAX,
            u32::MAX,
            b"a\r\nb",
            true
        )),
        b"cas foo 4294967295 4294967295 4 18446744073709551615 noreply\r\na\r\nb\r\n"
    );
    // The header alone, for a vectored write of the data.
    assert_eq!(
        encoded(|o| encode_store_header(o, StoreCommand::Set, k, 1, 2, 1_000_000, false)),
        b"set foo 1 2 1000000\r\n"
    );
}

#[test]
fn encode_other_text_commands() {
    let k = key("foo");
    assert_eq!(encoded(|o| encode_delete(o, k, false)), b"delete foo\r\n");
    assert_eq!(
        encoded(|o| encode_delete(o, k, true)),
        b"delete foo noreply\r\n"
    );
    assert_eq!(
        encoded(|o| encode_touch(o, k, 300, false)),
        b"touch foo 300\r\n"
    );
    assert_eq!(
        encoded(|o| encode_touch(o, k, 0, true)),
        b"touch foo 0 noreply\r\n"
    );
    assert_eq!(encoded(|o| encode_incr(o, k, 1, false)), b"incr foo 1\r\n");
    assert_eq!(
        encoded(|o| encode_decr(o, k, 10, true)),
        b"decr foo 10 noreply\r\n"
    );
    assert_eq!(
        encoded(|o| encode_flush_all(o, None, false)),
        b"flush_all\r\n"
    );
    assert_eq!(
        encoded(|o| encode_flush_all(o, Some(10), false)),
        b"flush_all 10\r\n"
    );
    assert_eq!(
        encoded(|o| encode_flush_all(o, Some(0), true)),
        b"flush_all 0 noreply\r\n"
    );
    assert_eq!(encoded(encode_version), b"version\r\n");
    assert_eq!(encoded(|o| encode_stats(o, [])), b"stats\r\n");
    assert_eq!(
        encoded(|o| encode_stats(o, [key("settings")])),
        b"stats settings\r\n"
    );
    assert_eq!(
        encoded(|o| encode_stats(o, [key("cachedump"), key("1"), key("10")])),
        b"stats cachedump 1 10\r\n"
    );
}

#[test]
fn encode_meta_get_flags() {
    let k = key("foo");
    assert_eq!(
        encoded(|o| encode_meta_get(o, k, &MetaGetFlags::default())),
        b"mg foo\r\n"
    );
    let value = MetaGetFlags {
        value: true,
        flags: true,
        ..MetaGetFlags::default()
    };
    assert_eq!(
        encoded(|o| encode_meta_get(o, k, &value)),
        b"mg foo v f\r\n"
    );
    let all = MetaGetFlags {
        value: true,
        cas: true,
        flags: true,
        ttl: true,
        size: true,
        key: true,
        hit: true,
        last_access: true,
        opaque: Some(7),
        quiet: true,
        vivify_ttl: Some(30),
        recache_ttl: Some(10),
        update_ttl: Some(600),
    };
    assert_eq!(
        encoded(|o| encode_meta_get(o, k, &all)),
        b"mg foo v c f t s k h l O7 q N30 R10 T600\r\n"
    );
    let value = MetaGetFlags {
        value: true,
        ..MetaGetFlags::default()
    };
    assert_eq!(
        encoded(|o| encode_meta_get(o, k, &value.tagged(12))),
        b"mg foo v k O12\r\n"
    );
}

#[test]
fn encode_meta_set_flags() {
    let k = key("foo");
    assert_eq!(
        encoded(|o| encode_meta_set(o, k, b"hi", &MetaSetFlags::default())),
        b"ms foo 2\r\nhi\r\n"
    );
    let flags = MetaSetFlags {
        ttl: Some(90),
        client_flags: Some(1),
        ..MetaSetFlags::default()
    };
    assert_eq!(
        encoded(|o| encode_meta_set(o, k, b"hi", &flags)),
        b"ms foo 2 T90 F1\r\nhi\r\n"
    );
    let modes = [
        (MetaSetMode::Add, &b" ME"[..]),
        (MetaSetMode::Replace, b" MR"),
        (MetaSetMode::Append, b" MA"),
        (MetaSetMode::Prepend, b" MP"),
    ];
    for (mode, token) in modes {
        let flags = MetaSetFlags {
            mode,
            ..MetaSetFlags::default()
        };
        let mut expected = b"ms foo 1".to_vec();
        expected.extend_from_slice(token);
        expected.extend_from_slice(b"\r\nx\r\n");
        assert_eq!(encoded(|o| encode_meta_set(o, k, b"x", &flags)), expected);
    }
    let all = MetaSetFlags {
        mode: MetaSetMode::Replace,
        ttl: Some(0),
        client_flags: Some(u32::MAX),
        compare_cas: Some(99),
        invalidate: true,
        return_cas: true,
        quiet: true,
        key: true,
        opaque: Some(1),
    };
    assert_eq!(
        encoded(|o| encode_meta_set(o, k, b"", &all)),
        b"ms foo 0 T0 F4294967295 C99 I c q k O1 MR\r\n\r\n"
    );
    assert_eq!(
        encoded(|o| encode_meta_set(o, k, b"x", &flags.tagged(4_000_000_000))),
        b"ms foo 1 T90 F1 k O4000000000\r\nx\r\n"
    );
    assert_eq!(
        encoded(|o| encode_meta_set_header(o, k, 10, &MetaSetFlags::default())),
        b"ms foo 10\r\n"
    );
}

#[test]
fn encode_meta_delete_arithmetic_noop() {
    let k = key("foo");
    assert_eq!(
        encoded(|o| encode_meta_delete(o, k, &MetaDeleteFlags::default())),
        b"md foo\r\n"
    );
    let flags = MetaDeleteFlags {
        compare_cas: Some(5),
        invalidate: true,
        ttl: Some(30),
        quiet: true,
        key: true,
        opaque: Some(9),
    };
    assert_eq!(
        encoded(|o| encode_meta_delete(o, k, &flags)),
        b"md foo C5 I T30 q k O9\r\n"
    );
    assert_eq!(
        encoded(|o| encode_meta_delete(o, k, &MetaDeleteFlags::default().tagged(0))),
        b"md foo k O0\r\n"
    );
    assert_eq!(
        encoded(|o| encode_meta_arithmetic(o, k, &MetaArithmeticFlags::default())),
        b"ma foo\r\n"
    );
    let flags = MetaArithmeticFlags {
        mode: ArithmeticMode::Decr,
        delta: Some(3),
        vivify_ttl: Some(60),
        initial: Some(100),
        update_ttl: Some(120),
        value: true,
        cas: true,
        ttl: true,
        quiet: true,
        key: true,
        opaque: Some(4),
    };
    assert_eq!(
        encoded(|o| encode_meta_arithmetic(o, k, &flags)),
        b"ma foo MD D3 N60 J100 T120 v c t q k O4\r\n"
    );
    let incr = MetaArithmeticFlags {
        delta: Some(2),
        value: true,
        ..MetaArithmeticFlags::default()
    };
    assert_eq!(
        encoded(|o| encode_meta_arithmetic(o, k, &incr)),
        b"ma foo D2 v\r\n"
    );
    assert_eq!(
        encoded(|o| encode_meta_arithmetic(o, k, &incr.tagged(u32::MAX))),
        b"ma foo D2 v k O4294967295\r\n"
    );
    assert_eq!(encoded(encode_meta_noop), b"mn\r\n");
}
