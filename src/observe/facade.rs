//! The `metrics` facade's side: registering handles (once, when a cache is
//! built) and the throttle that publishes a cache's counters at most once
//! per [`PUBLISH_INTERVAL`](super::PUBLISH_INTERVAL).

use std::sync::atomic::{AtomicU64, Ordering};

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Label, Level, Metadata, SharedString};

use super::NAME_LABEL;

/// What the recorder is told of the call site that registers a handle.
static METADATA: Metadata<'static> = Metadata::new("nearfar", Level::INFO, Some("nearfar"));

/// The key of `metric` for the cache `name`, with `extra` labels.
fn key(metric: &'static str, name: &str, extra: &[(&'static str, &str)]) -> Key {
    let labels = std::iter::once(Label::new(NAME_LABEL, name.to_owned()))
        .chain(extra.iter().map(|&(k, v)| Label::new(k, v.to_owned())));
    Key::from_parts(metric, labels.collect::<Vec<_>>())
}

/// Registers counter `metric` of cache `name` with the recorder installed
/// now (a no-op handle without one), and describes it with `help`.
pub(crate) fn counter(
    metric: &'static str,
    help: &'static str,
    name: &str,
    extra: &[(&'static str, &str)],
) -> Counter {
    metrics::with_recorder(|r| {
        r.describe_counter(
            KeyName::from_const_str(metric),
            None,
            SharedString::const_str(help),
        );
        r.register_counter(&key(metric, name, extra), &METADATA)
    })
}

/// As [`counter`], for a gauge.
pub(crate) fn gauge(
    metric: &'static str,
    help: &'static str,
    name: &str,
    extra: &[(&'static str, &str)],
) -> Gauge {
    metrics::with_recorder(|r| {
        r.describe_gauge(
            KeyName::from_const_str(metric),
            None,
            SharedString::const_str(help),
        );
        r.register_gauge(&key(metric, name, extra), &METADATA)
    })
}

/// As [`counter`], for a histogram of seconds.
pub(crate) fn histogram(
    metric: &'static str,
    help: &'static str,
    name: &str,
    extra: &[(&'static str, &str)],
) -> Histogram {
    metrics::with_recorder(|r| {
        r.describe_histogram(
            KeyName::from_const_str(metric),
            Some(metrics::Unit::Seconds),
            SharedString::const_str(help),
        );
        r.register_histogram(&key(metric, name, extra), &METADATA)
    })
}

/// When a cache last published (ns on its clock; `NEVER` before the
/// first time): lets one caller per interval publish.
#[derive(Debug)]
pub(crate) struct Throttle {
    last: AtomicU64,
}

const NEVER: u64 = u64::MAX;

impl Throttle {
    pub(crate) fn new() -> Self {
        Throttle {
            last: AtomicU64::new(NEVER),
        }
    }

    /// Whether the caller should publish at `now` (ns on the cache's
    /// clock): the first call does, then one caller per interval. Claims
    /// the interval for that caller.
    pub(crate) fn due(&self, now: u64) -> bool {
        // Relaxed: a hint; the compare-exchange makes one caller win.
        let last = self.last.load(Ordering::Relaxed);
        let interval = u64::try_from(super::PUBLISH_INTERVAL.as_nanos()).unwrap_or(u64::MAX);
        if last != NEVER && now.saturating_sub(last) < interval {
            return false;
        }
        self.last
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::Throttle;

    #[test]
    fn a_throttle_lets_the_first_caller_then_one_per_interval_through() {
        let t = Throttle::new();
        assert!(t.due(5));
        assert!(!t.due(5));
        assert!(!t.due(999_999_999));
        assert!(t.due(1_000_000_005));
        assert!(!t.due(1_000_000_006));
    }
}
