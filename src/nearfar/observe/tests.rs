//! The metrics and spans of a `NearFar`: loader runs, far requests (to a
//! server that is not there: nothing listens on 127.0.0.1:1), breakers.

use std::time::Duration;

use crate::memcached::Client;
use crate::{Cache, MockClock, NearFar};

/// A `NearFar` named "nf" whose far tier refuses every connection, its
/// breaker opening after 2 failures; on `clock`.
fn refused(clock: &MockClock) -> NearFar<String, u32> {
    let client = Client::builder()
        .servers(["127.0.0.1:1"])
        .retry_attempts(1)
        .dead_timeout(Duration::from_secs(60))
        .clock(clock.clone())
        .build()
        .unwrap();
    NearFar::builder()
        .near(Cache::builder().max_entries(100).clock(clock.clone()))
        .far(client)
        .namespace("ns")
        .circuit_breaker(2, Duration::from_secs(10))
        .clock(clock.clone())
        .name("nf")
        .build()
        .unwrap()
}

/// The same over the async client, on a current-thread runtime.
#[cfg(feature = "tokio")]
fn refused_async(clock: &MockClock) -> crate::AsyncNearFar<String, u32> {
    let client = Client::builder()
        .servers(["127.0.0.1:1"])
        .retry_attempts(1)
        .dead_timeout(Duration::from_secs(60))
        .clock(clock.clone())
        .build_async()
        .unwrap();
    crate::AsyncNearFar::builder()
        .near(Cache::builder().max_entries(100).clock(clock.clone()))
        .far(client)
        .namespace("ns")
        .circuit_breaker(2, Duration::from_secs(10))
        .clock(clock.clone())
        .name("nf")
        .build()
        .unwrap()
}

/// Runs `test` on a current-thread runtime (on this thread, so a
/// subscriber set for it sees its spans).
#[cfg(feature = "tokio")]
fn on_runtime<F: std::future::Future>(test: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(test)
}

#[cfg(feature = "metrics")]
mod metrics {
    use std::panic::{AssertUnwindSafe, catch_unwind};
    use std::time::Duration;

    use super::refused;
    use crate::observe::tests::{TestRecorder, built_with};
    use crate::{MockClock, NearFar};

    #[test]
    fn loader_runs_are_counted_timed_and_their_failures_counted() {
        let rec = TestRecorder::default();
        let clock = MockClock::new();
        let cache: NearFar<u32, u32> = built_with(&rec, || {
            NearFar::builder()
                .clock(clock.clone())
                .name("loads")
                .build()
                .unwrap()
        });
        let slow = || {
            clock.advance(Duration::from_millis(5));
            7
        };
        assert_eq!(cache.get_with(1, slow), 7);
        assert_eq!(cache.get_with(1, || unreachable!("a near hit")), 7);
        assert!(cache.try_get_with(2, || Err::<u32, _>("down")).is_err());
        let panicked = catch_unwind(AssertUnwindSafe(|| cache.get_with(3, || panic!("bug"))));
        assert!(panicked.is_err());
        let seconds = rec.samples("nearfar_loader_seconds{name=loads}").unwrap();
        assert_eq!(seconds.len(), 3, "{seconds:?}");
        assert!((seconds[0] - 0.005).abs() < 1e-9, "{seconds:?}");
        cache.publish_metrics();
        assert_eq!(cache.stats().loader_errors, 2);
        assert_eq!(
            rec.counter("nearfar_loader_calls_total{name=loads}"),
            Some(3)
        );
        assert_eq!(
            rec.counter("nearfar_loader_errors_total{name=loads}"),
            Some(2)
        );
        // The near tier publishes under the NearFar's name.
        assert_eq!(rec.counter("nearfar_near_hits_total{name=loads}"), Some(1));
        assert_eq!(rec.counter("nearfar_near_loads_total{name=loads}"), Some(3));
    }

    #[test]
    fn warm_restarts_are_counted() {
        let dir = std::env::temp_dir().join(format!(
            "nearfar-observe-warm-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("near.snap");
        let hour = Duration::from_secs(3600);
        let first: NearFar<u32, u32> = NearFar::builder().snapshot(&path, hour).build().unwrap();
        for k in 0..10 {
            first.insert(k, k);
        }
        // Saved when the last handle is dropped.
        drop(first);
        let rec = TestRecorder::default();
        let second: NearFar<u32, u32> = built_with(&rec, || {
            NearFar::builder()
                .name("warm")
                .snapshot(&path, hour)
                .build()
                .unwrap()
        });
        assert_eq!(second.stats().restored, 10);
        second.publish_metrics();
        assert_eq!(rec.counter("nearfar_restored_total{name=warm}"), Some(10));
        assert_eq!(
            rec.counter("nearfar_snapshot_errors_total{name=warm}"),
            Some(0)
        );
        assert_eq!(rec.counter("nearfar_preloaded_total{name=warm}"), Some(0));
        drop(second);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn far_requests_are_timed_by_command_their_errors_counted_by_kind_and_the_breaker_shown() {
        let rec = TestRecorder::default();
        let clock = MockClock::new();
        let cache = built_with(&rec, || refused(&clock));
        let open = "nearfar_breaker_open{name=nf,pool=far}";
        assert_eq!(rec.gauge(open), Some(0.0), "registered at build");
        for _ in 0..3 {
            assert_eq!(cache.get(&"k".to_string()), None);
        }
        // Two requests failed (the breaker opened after them), the third
        // was skipped: each failure recorded as it happened, the counters
        // published by the first request's end.
        let sampled = rec.sampled();
        assert_eq!(
            sampled,
            ["nearfar_far_request_seconds{name=nf,command=peek_lease}"]
        );
        assert_eq!(rec.samples(&sampled[0]).map(|s| s.len()), Some(2));
        // The first found no server listening, and the client marked it
        // dead: the second found no server to go to.
        let errors = "nearfar_far_errors_total{name=nf,kind=";
        assert_eq!(
            rec.moved(),
            [
                format!("{errors}all_servers_down}}"),
                format!("{errors}connect}}")
            ]
        );
        assert_eq!(rec.counter(&format!("{errors}connect}}")), Some(1));
        assert_eq!(rec.counter(&format!("{errors}all_servers_down}}")), Some(1));
        assert_eq!(
            rec.gauge(open),
            Some(0.0),
            "published before the breaker opened"
        );
        cache.publish_metrics();
        assert_eq!(rec.gauge(open), Some(1.0));
        assert_eq!(
            rec.counter("nearfar_breaker_trips_total{name=nf,pool=far}"),
            Some(1)
        );
        assert_eq!(
            rec.counter("nearfar_breaker_skips_total{name=nf,pool=far}"),
            Some(1)
        );
        let down = "nearfar_server_down{name=nf,pool=far,server=127.0.0.1:1}";
        // The client marked it dead at its first failure.
        assert_eq!(rec.gauge(down), Some(1.0));
        clock.advance(Duration::from_secs(61));
        cache.publish_metrics();
        assert_eq!(rec.gauge(down), Some(0.0), "its dead period is over");
    }

    #[cfg(feature = "tokio")]
    #[test]
    fn the_async_driver_s_far_requests_and_loads_are_observed_the_same() {
        let rec = TestRecorder::default();
        let clock = MockClock::new();
        let cache = built_with(&rec, || super::refused_async(&clock));
        super::on_runtime(async {
            assert_eq!(cache.get_with("k".into(), || async { 7 }).await, 7);
        });
        let far = "nearfar_far_request_seconds{name=nf,command=get_or_lease}";
        assert_eq!(rec.samples(far).map(|s| s.len()), Some(1));
        assert_eq!(
            rec.counter("nearfar_far_errors_total{name=nf,kind=connect}"),
            Some(1)
        );
        assert_eq!(
            rec.samples("nearfar_loader_seconds{name=nf}")
                .map(|s| s.len()),
            Some(1)
        );
        cache.publish_metrics();
        assert_eq!(rec.counter("nearfar_loader_calls_total{name=nf}"), Some(1));
        assert_eq!(rec.counter("nearfar_near_loads_total{name=nf}"), Some(1));
    }
}

#[cfg(feature = "tracing")]
mod spans {
    use std::collections::BTreeMap;
    use std::fmt;
    use std::sync::{Arc, Mutex};

    use tracing::field::{Field, Visit};
    use tracing::span::{Attributes, Id, Record};
    use tracing::{Event, Metadata, Subscriber};

    use super::refused;
    use crate::MockClock;
    use crate::observe::digest;

    /// Each span opened: its name and its fields, as recorded.
    type Spans = Arc<Mutex<Vec<(&'static str, BTreeMap<&'static str, String>)>>>;

    /// A subscriber that keeps every span (`Id` n is `spans[n - 1]`).
    struct Keep(Spans);

    struct Fields<'a>(&'a mut BTreeMap<&'static str, String>);

    impl Visit for Fields<'_> {
        fn record_str(&mut self, field: &Field, value: &str) {
            self.0.insert(field.name(), value.to_owned());
        }
        fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
            self.0.insert(field.name(), format!("{value:?}"));
        }
    }

    impl Subscriber for Keep {
        fn enabled(&self, _: &Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, span: &Attributes<'_>) -> Id {
            let mut fields = BTreeMap::new();
            span.record(&mut Fields(&mut fields));
            let mut spans = self.0.lock().unwrap();
            spans.push((span.metadata().name(), fields));
            Id::from_u64(spans.len() as u64)
        }
        fn record(&self, span: &Id, values: &Record<'_>) {
            let mut spans = self.0.lock().unwrap();
            let at = usize::try_from(span.into_u64()).unwrap() - 1;
            values.record(&mut Fields(&mut spans[at].1));
        }
        fn record_follows_from(&self, _: &Id, _: &Id) {}
        fn event(&self, _: &Event<'_>) {}
        fn enter(&self, _: &Id) {}
        fn exit(&self, _: &Id) {}
    }

    #[test]
    fn far_requests_and_loads_are_spanned_with_the_key_digested() {
        let spans = Spans::default();
        let clock = MockClock::new();
        let cache = refused(&clock);
        let secret = "card:4111-1111".to_string();
        tracing::subscriber::with_default(Keep(Arc::clone(&spans)), || {
            assert_eq!(cache.get_with(secret.clone(), || 7), 7);
            assert!(
                cache
                    .try_get_with("other".into(), || Err::<u32, _>("down"))
                    .is_err()
            );
        });
        let spans = spans.lock().unwrap().clone();
        let far_key = cache.far_key(&secret).unwrap();
        let key = digest(far_key.as_bytes()).to_string();
        assert_eq!(key.len(), 16);
        for (_, fields) in &spans {
            assert!(
                fields.values().all(|v| !v.contains("4111")),
                "a raw key in {fields:?}"
            );
            assert_eq!(fields["name"], "nf");
        }
        let (far, loads): (Vec<_>, Vec<_>) = spans.iter().partition(|(n, _)| *n == "nearfar.far");
        // The far tier refuses: the breaker opens after two requests.
        assert_eq!(far.len(), 2, "{spans:?}");
        let first = &far[0].1;
        assert_eq!(first["command"], "get_or_lease");
        assert_eq!(first["pool"], "far");
        assert_eq!(first["server"], "127.0.0.1:1");
        assert_eq!(first["key"], key);
        assert_eq!(first["outcome"], "connect");
        assert_eq!(far[1].1["outcome"], "all_servers_down");
        assert_eq!(loads.len(), 2, "{spans:?}");
        assert!(loads.iter().all(|(n, _)| *n == "nearfar.load"));
        assert_eq!(loads[0].1["key"], key);
        assert_eq!(loads[0].1["outcome"], "ok");
        assert_eq!(loads[1].1["outcome"], "error");
    }

    #[cfg(feature = "tokio")]
    #[test]
    fn the_async_driver_s_far_requests_are_spanned_too() {
        let spans = Spans::default();
        let clock = MockClock::new();
        let cache = super::refused_async(&clock);
        tracing::subscriber::with_default(Keep(Arc::clone(&spans)), || {
            super::on_runtime(async {
                assert_eq!(cache.get_with("k".into(), || async { 7 }).await, 7);
            });
        });
        let spans = spans.lock().unwrap().clone();
        let names: Vec<_> = spans.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, ["nearfar.far", "nearfar.load"], "{spans:?}");
        assert_eq!(spans[0].1["outcome"], "connect");
        assert_eq!(spans[1].1["outcome"], "ok");
    }
}
