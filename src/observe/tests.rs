//! A recorder for the metrics tests: every handle it registers is kept
//! under its key, rendered `metric{label=value,...}` (labels in order), so
//! a test reads what a cache published. Installed with
//! `metrics::with_local_recorder` around a cache's build: the handles keep
//! reporting to it afterwards.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use metrics::{
    Counter, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder, SharedString, Unit,
};

#[derive(Default)]
struct Samples(Mutex<Vec<f64>>);

impl HistogramFn for Samples {
    fn record(&self, value: f64) {
        self.0.lock().unwrap().push(value);
    }
}

/// Counters and gauges (as `AtomicU64`: a gauge holds an `f64`'s bits)
/// and histograms (their samples), by rendered key.
#[derive(Default)]
pub(crate) struct TestRecorder {
    counters: Mutex<BTreeMap<String, Arc<AtomicU64>>>,
    gauges: Mutex<BTreeMap<String, Arc<AtomicU64>>>,
    histograms: Mutex<BTreeMap<String, Arc<Samples>>>,
}

fn render(key: &Key) -> String {
    let labels: Vec<String> = key
        .labels()
        .map(|l| format!("{}={}", l.key(), l.value()))
        .collect();
    format!("{}{{{}}}", key.name(), labels.join(","))
}

impl TestRecorder {
    /// A counter's value; `None` if it was never registered.
    pub(crate) fn counter(&self, key: &str) -> Option<u64> {
        let counters = self.counters.lock().unwrap();
        counters.get(key).map(|c| c.load(Ordering::Relaxed))
    }

    /// A gauge's value; `None` if it was never registered.
    pub(crate) fn gauge(&self, key: &str) -> Option<f64> {
        let gauges = self.gauges.lock().unwrap();
        gauges
            .get(key)
            .map(|g| f64::from_bits(g.load(Ordering::Relaxed)))
    }

    /// A histogram's samples; `None` if it was never registered.
    pub(crate) fn samples(&self, key: &str) -> Option<Vec<f64>> {
        let histograms = self.histograms.lock().unwrap();
        histograms.get(key).map(|h| h.0.lock().unwrap().clone())
    }

    /// The keys of every registered histogram with samples.
    pub(crate) fn sampled(&self) -> Vec<String> {
        let histograms = self.histograms.lock().unwrap();
        histograms
            .iter()
            .filter(|(_, h)| !h.0.lock().unwrap().is_empty())
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// The keys of every registered counter that is not zero.
    pub(crate) fn moved(&self) -> Vec<String> {
        let counters = self.counters.lock().unwrap();
        counters
            .iter()
            .filter(|(_, c)| c.load(Ordering::Relaxed) != 0)
            .map(|(k, _)| k.clone())
            .collect()
    }
}

impl Recorder for TestRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        let mut counters = self.counters.lock().unwrap();
        Counter::from_arc(Arc::clone(counters.entry(render(key)).or_default()))
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        let mut gauges = self.gauges.lock().unwrap();
        Gauge::from_arc(Arc::clone(gauges.entry(render(key)).or_default()))
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        let mut histograms = self.histograms.lock().unwrap();
        Histogram::from_arc(Arc::clone(histograms.entry(render(key)).or_default()))
    }
}

/// Builds with `recorder` installed (on this thread, for the build only).
pub(crate) fn built_with<T>(recorder: &TestRecorder, build: impl FnOnce() -> T) -> T {
    metrics::with_local_recorder(recorder, build)
}

mod near {
    use std::time::Duration;

    use super::{TestRecorder, built_with};
    use crate::{Cache, MockClock};

    #[test]
    fn a_cache_publishes_at_its_64th_write_or_256th_read_once_per_interval() {
        let rec = TestRecorder::default();
        let clock = MockClock::new();
        let cache: Cache<u32, u32> = built_with(&rec, || {
            Cache::builder()
                .max_entries(10_000)
                .shards(1)
                .clock(clock.clone())
                .name("users")
                .build()
        });
        let inserts = "nearfar_near_inserts_total{name=users}";
        let hits = "nearfar_near_hits_total{name=users}";
        assert_eq!(rec.counter(inserts), Some(0), "registered at build");
        for k in 0..63 {
            cache.insert(k, k);
        }
        assert_eq!(rec.counter(inserts), Some(0), "nothing published yet");
        cache.insert(63, 63);
        assert_eq!(rec.counter(inserts), Some(64), "the 64th write publishes");
        assert_eq!(rec.gauge("nearfar_near_entries{name=users}"), Some(64.0));
        for k in 64..128 {
            cache.insert(k, k);
        }
        assert_eq!(rec.counter(inserts), Some(64), "not again within a second");
        clock.advance(Duration::from_secs(1));
        for k in 128..192 {
            cache.insert(k, k);
        }
        assert_eq!(rec.counter(inserts), Some(192));
        // Reads: each thread's 256th looks at the throttle.
        for _ in 0..255 {
            assert_eq!(cache.get(&1), Some(1));
        }
        assert_eq!(rec.counter(hits), Some(0), "still within the second");
        clock.advance(Duration::from_secs(1));
        assert_eq!(rec.counter(hits), Some(0));
        cache.get(&1);
        assert_eq!(rec.counter(hits), Some(256), "the 256th hit publishes");
        assert_eq!(cache.stats().hits, 256);
    }

    #[test]
    fn evictions_are_published_by_cause_and_publish_metrics_is_at_once() {
        let rec = TestRecorder::default();
        let clock = MockClock::new();
        let cache: Cache<u32, u32> = built_with(&rec, || {
            Cache::builder()
                .max_entries(2)
                .shards(1)
                .clock(clock.clone())
                .build()
        });
        cache.insert(1, 1);
        cache.insert(2, 2);
        cache.insert(3, 3); // evicts one to stay within 2
        cache.remove(&3);
        cache.insert_with_ttl(4, 4, Duration::from_secs(1));
        clock.advance(Duration::from_secs(2));
        assert_eq!(cache.get(&4), None); // expired, reclaimed
        assert_eq!(cache.get(&5), None);
        let evictions = |cause| {
            rec.counter(&format!(
                "nearfar_near_evictions_total{{name=default,cause={cause}}}"
            ))
        };
        assert_eq!(evictions("capacity"), Some(0), "not published yet");
        cache.publish_metrics();
        let s = cache.stats();
        assert_eq!(
            (s.evicted_capacity, s.evicted_removed, s.evicted_expired),
            (1, 1, 1)
        );
        assert_eq!(evictions("capacity"), Some(1));
        assert_eq!(evictions("removed"), Some(1));
        assert_eq!(evictions("expired"), Some(1));
        assert_eq!(
            rec.counter("nearfar_near_misses_total{name=default}"),
            Some(2)
        );
        assert_eq!(
            rec.counter("nearfar_near_inserts_total{name=default}"),
            Some(4)
        );
        assert_eq!(rec.gauge("nearfar_near_entries{name=default}"), Some(1.0));
        assert_eq!(rec.gauge("nearfar_near_weight{name=default}"), Some(1.0));
    }

    #[test]
    fn two_caches_publish_under_their_own_names() {
        let rec = TestRecorder::default();
        let (a, b) = built_with(&rec, || {
            let a: Cache<u8, u8> = Cache::builder().name("a").build();
            let b: Cache<u8, u8> = Cache::builder().name("b").build();
            (a, b)
        });
        a.insert(1, 1);
        b.get(&1);
        a.publish_metrics();
        b.publish_metrics();
        assert_eq!(rec.counter("nearfar_near_inserts_total{name=a}"), Some(1));
        assert_eq!(rec.counter("nearfar_near_inserts_total{name=b}"), Some(0));
        assert_eq!(rec.counter("nearfar_near_misses_total{name=b}"), Some(1));
        assert_eq!(rec.counter("nearfar_near_misses_total{name=a}"), Some(0));
    }

    #[test]
    fn a_cache_built_with_no_recorder_publishes_nowhere() {
        let rec = TestRecorder::default();
        let cache: Cache<u8, u8> = Cache::builder().name("unrecorded").build();
        built_with(&rec, || {
            cache.insert(1, 1);
            cache.publish_metrics();
        });
        assert!(rec.moved().is_empty(), "{:?}", rec.moved());
    }
}
