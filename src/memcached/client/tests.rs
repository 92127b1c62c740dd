use std::time::{SystemTime, UNIX_EPOCH};

use super::*;
use crate::memcached::core::batch::chunk_len;
use crate::memcached::core::{KeyBuf, exptime_now};
use crate::memcached::error::{ConfigError, Error};
use crate::memcached::protocol::KeyError;

fn client(prefix: &str) -> Client {
    Client::builder()
        .servers(["127.0.0.1:1"])
        .key_prefix(prefix)
        .build()
        .unwrap()
}

#[test]
fn keys_are_prefixed_and_checked() {
    let c = client("app:");
    let mut buf = KeyBuf::new();
    assert_eq!(c.inner.key("k", &mut buf).unwrap().as_bytes(), b"app:k");
    assert!(matches!(
        c.inner.key("", &mut buf),
        Err(Error::InvalidKey {
            reason: KeyError::Empty
        })
    ));
    assert!(matches!(
        c.inner.key("k\r\nflush_all", &mut buf),
        Err(Error::InvalidKey {
            reason: KeyError::ForbiddenByte { byte: b'\r', .. }
        })
    ));
    let long = "x".repeat(247);
    assert!(matches!(
        c.inner.key(&long, &mut buf),
        Err(Error::InvalidKey {
            reason: KeyError::TooLong { len: 251 }
        })
    ));
    assert!(c.inner.key(&long[1..], &mut buf).is_ok());
}

#[test]
fn build_refuses_bad_settings() {
    let bad = [
        Client::builder().build(),
        Client::builder().servers(["h:1"]).pool_size(0).build(),
        Client::builder()
            .servers(["h:1"])
            .io_timeout(Duration::ZERO)
            .build(),
        Client::builder().servers(["h:1"]).retry_attempts(0).build(),
        Client::builder()
            .servers(["h:1"])
            .request_timeout(Duration::ZERO)
            .build(),
        Client::builder().servers(["h:1"]).max_item_size(0).build(),
        // More than memcached can store: unbounded reply buffering.
        Client::builder()
            .servers(["h:1"])
            .max_item_size(MAX_ITEM_SIZE_LIMIT + 1)
            .build(),
        Client::builder()
            .servers(["h:1"])
            .max_item_size(usize::MAX)
            .build(),
        Client::builder().servers(["h:1"]).key_prefix("a b").build(),
        Client::builder().servers(["h:1", "h:1"]).build(),
        Client::builder().servers(["h:x"]).build(),
    ];
    for result in bad {
        assert!(matches!(result, Err(Error::Config(_))), "{result:?}");
    }
    // memcached's own upper limit is allowed.
    assert!(
        Client::builder()
            .servers(["h:1"])
            .max_item_size(MAX_ITEM_SIZE_LIMIT)
            .build()
            .is_ok()
    );
}

#[test]
fn a_zero_dead_timeout_is_refused() {
    // A server marked dead would be due for its probe at once: every
    // request would still go to it, and ejection would do nothing.
    let zero = Client::builder()
        .servers(["h:1"])
        .dead_timeout(Duration::ZERO)
        .build();
    match zero {
        Err(Error::Config(e @ ConfigError::InvalidSetting { setting, .. })) => {
            assert_eq!(setting, "dead_timeout");
            assert!(e.to_string().contains("non-zero"), "{e}");
        }
        other => panic!("expected dead_timeout refused, got {other:?}"),
    }
    let shortest = Client::builder()
        .servers(["h:1"])
        .dead_timeout(Duration::from_nanos(1))
        .build();
    assert!(shortest.is_ok(), "{shortest:?}");
}

#[test]
fn a_server_listed_twice_is_reported_as_a_duplicate() {
    let cases = [
        (
            &["10.0.0.1:11211", "10.0.0.2", "10.0.0.1"][..],
            "10.0.0.1",
            "10.0.0.1:11211",
            "10.0.0.1:11211",
        ),
        (
            &["[::1]", "[::1]:11211:3"][..],
            "[::1]:11211:3",
            "[::1]",
            "[::1]:11211",
        ),
        (
            &["/run/mc.sock", "/run/mc.sock:2"][..],
            "/run/mc.sock:2",
            "/run/mc.sock",
            "/run/mc.sock",
        ),
    ];
    for (servers, later, earlier, label) in cases {
        let e = Client::builder().servers(servers).build().unwrap_err();
        match &e {
            Error::Config(ConfigError::DuplicateServer {
                address,
                first,
                server,
            }) => assert_eq!(
                (address.as_str(), first.as_str(), server.as_str()),
                (later, earlier, label)
            ),
            other => panic!("{servers:?}: expected a duplicate, got {other:?}"),
        }
        let message = e.to_string();
        assert!(message.contains("duplicate"), "{message}");
        assert!(message.contains(&format!("{later:?}")), "{message}");
        assert!(!e.is_retryable());
    }
    // Distinct servers on one host are not duplicates.
    assert!(
        Client::builder()
            .servers(["h:1", "h:2", "h"])
            .build()
            .is_ok()
    );
}

#[test]
fn exptime_is_relative_up_to_30_days() {
    assert_eq!(exptime_now(Duration::ZERO), 0);
    assert_eq!(exptime_now(Duration::from_secs(60)), 60);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let abs = u64::from(exptime_now(Duration::from_secs(31 * 86_400)));
    assert!(abs >= now + 31 * 86_400 && abs <= now + 31 * 86_400 + 5);
}

#[test]
fn set_many_chunks_by_count_and_bytes() {
    let small = || std::iter::repeat(100);
    assert_eq!(chunk_len(small().take(300), 128, 1 << 20), 128);
    assert_eq!(chunk_len(small().take(5), 128, 1 << 20), 5);
    assert_eq!(chunk_len(std::iter::empty(), 128, 1 << 20), 0);
    // 400 KB items: two fit in 1 MiB, the third starts the next chunk.
    assert_eq!(chunk_len(std::iter::repeat(400_000), 128, 1 << 20), 2);
    // One item over the limit still goes, alone.
    assert_eq!(chunk_len([2 << 20, 10].into_iter(), 128, 1 << 20), 1);
    assert_eq!(chunk_len([10, 2 << 20].into_iter(), 128, 1 << 20), 1);
    assert_eq!(chunk_len([usize::MAX, usize::MAX].into_iter(), 128, 1), 1);
}

#[test]
fn client_is_send_sync_clone() {
    fn check<T: Send + Sync + Clone>() {}
    check::<Client>();
}
