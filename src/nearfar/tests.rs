//! Unit tests of `NearFar` that need no memcached (see `tests/nearfar_*.rs`).

use super::*;

#[test]
fn handle_is_send_sync_clone() {
    fn check<T: Send + Sync + Clone + 'static>() {}
    check::<NearFar<String, Vec<u8>>>();
    check::<NearFar<(u32, String), String>>();
}

#[test]
fn build_checks_settings() {
    let err = |b: NearFarBuilder<u8, u8>| b.build().unwrap_err();
    assert!(matches!(
        err(NearFar::builder().namespace("a\nb")),
        Error::InvalidSetting {
            setting: "namespace",
            ..
        }
    ));
    assert!(matches!(
        err(NearFar::builder().namespace("n".repeat(201))),
        Error::InvalidSetting {
            setting: "namespace",
            ..
        }
    ));
    assert!(matches!(
        err(NearFar::builder().far_ttl(Duration::ZERO)),
        Error::InvalidSetting {
            setting: "far_ttl",
            ..
        }
    ));
    assert!(matches!(
        err(NearFar::builder().circuit_breaker(3, Duration::ZERO)),
        Error::InvalidSetting {
            setting: "circuit_breaker",
            ..
        }
    ));
    let client = Client::builder()
        .servers(["127.0.0.1:1"])
        .key_prefix("p".repeat(200))
        .build()
        .unwrap();
    assert!(matches!(
        err(NearFar::builder().far(client).namespace("n".repeat(20))),
        Error::InvalidSetting {
            setting: "namespace",
            ..
        }
    ));
    assert!(
        NearFar::<u8, u8>::builder()
            .namespace("ok:v1")
            .build()
            .is_ok()
    );
}

#[test]
fn far_tier_down_never_fails_a_caller() {
    // Nothing listens on port 1: every far call fails fast.
    let client = Client::builder()
        .servers(["127.0.0.1:1"])
        .connect_timeout(Duration::from_millis(50))
        .build()
        .unwrap();
    let nf: NearFar<u32, String> = NearFar::builder()
        .far(client)
        .circuit_breaker(2, Duration::from_secs(60))
        .build()
        .unwrap();
    for i in 0..20 {
        assert_eq!(nf.get_with(i, || i.to_string()), i.to_string());
        assert_eq!(nf.get(&i), Some(i.to_string()));
        nf.insert(i + 100, "x".into());
        nf.remove(&(i + 100));
    }
    let s = nf.stats();
    assert_eq!(s.far_errors, 2, "{s:?}");
    assert_eq!(s.breaker_trips, 1);
    assert!(nf.far_breaker_open());
}
