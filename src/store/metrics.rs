//! The near tier's metrics (see [`crate::observe`]): its name, and its
//! [`Stats`](super::Stats) published to the `metrics` facade as absolute values, at
//! most once per [`PUBLISH_INTERVAL`](crate::observe::PUBLISH_INTERVAL)
//! on the cache's clock. The lookup and the write paths look at the
//! throttle every [`READ_TICK`]th read of a thread and [`WRITE_TICK`]th
//! write of a shard (their own counts: no shared memory written for it);
//! without the `metrics` feature they never do.

use super::Cache;

/// A thread's hits (and, apart, misses) between two looks at the throttle.
pub(super) const READ_TICK: u64 = 256;

/// A shard's writes between two looks at the throttle.
pub(super) const WRITE_TICK: u64 = 64;

/// A cache's name and, with the `metrics` feature, its metric handles,
/// registered when it is built.
///
/// One pointer in the cache's `Inner`, with or without the feature: the
/// fields a lookup reads keep their places (when the handles sat in
/// `Inner`, the time source moved to another cache line and a hit took
/// ~15% longer on this machine, for the same instructions).
pub(super) struct NearMetrics(Box<Named>);

struct Named {
    name: Box<str>,
    #[cfg(feature = "metrics")]
    handles: Handles,
}

#[cfg(feature = "metrics")]
struct Handles {
    throttle: crate::observe::Throttle,
    hits: metrics::Counter,
    misses: metrics::Counter,
    inserts: metrics::Counter,
    updates: metrics::Counter,
    rejected: metrics::Counter,
    evicted_capacity: metrics::Counter,
    evicted_expired: metrics::Counter,
    evicted_removed: metrics::Counter,
    loads: metrics::Counter,
    load_waits: metrics::Counter,
    entries: metrics::Gauge,
    weight: metrics::Gauge,
}

#[cfg(feature = "metrics")]
impl Handles {
    fn new(name: &str) -> Self {
        use crate::observe::{self as o, counter, gauge};
        let c = |metric, help| counter(metric, help, name, &[]);
        let evicted = |cause| {
            counter(
                o::NEAR_EVICTIONS,
                "Entries that left the near tier, by cause.",
                name,
                &[("cause", cause)],
            )
        };
        Handles {
            throttle: o::Throttle::new(),
            hits: c(o::NEAR_HITS, "Near-tier lookups that found a live entry."),
            misses: c(o::NEAR_MISSES, "Near-tier lookups that found none."),
            inserts: c(o::NEAR_INSERTS, "New keys stored in the near tier."),
            updates: c(o::NEAR_UPDATES, "Values replaced for keys present."),
            rejected: c(o::NEAR_REJECTED, "Near-tier inserts refused."),
            evicted_capacity: evicted("capacity"),
            evicted_expired: evicted("expired"),
            evicted_removed: evicted("removed"),
            loads: c(o::NEAR_LOADS, "Loads run by the near tier."),
            load_waits: c(o::NEAR_LOAD_WAITS, "Waits on another caller's load."),
            entries: gauge(o::NEAR_ENTRIES, "Entries held near.", name, &[]),
            weight: gauge(o::NEAR_WEIGHT, "Total weight held near.", name, &[]),
        }
    }

    fn publish(&self, s: &super::Stats) {
        self.hits.absolute(s.hits);
        self.misses.absolute(s.misses);
        self.inserts.absolute(s.inserts);
        self.updates.absolute(s.updates);
        self.rejected.absolute(s.rejected);
        self.evicted_capacity.absolute(s.evicted_capacity);
        self.evicted_expired.absolute(s.evicted_expired);
        self.evicted_removed.absolute(s.evicted_removed);
        self.loads.absolute(s.loads);
        self.load_waits.absolute(s.load_waits);
        // As f64: exact up to 2^53.
        self.entries.set(s.entries as f64);
        self.weight.set(s.weight as f64);
    }
}

impl NearMetrics {
    /// The metrics of a cache named `name`, registered with the recorder
    /// installed now.
    pub(super) fn new(name: Box<str>) -> Self {
        NearMetrics(Box::new(Named {
            #[cfg(feature = "metrics")]
            handles: Handles::new(&name),
            name,
        }))
    }

    pub(super) fn name(&self) -> &str {
        &self.0.name
    }
}

impl<K, V, S> Cache<K, V, S> {
    /// The cache's name ([`CacheBuilder::name`](super::CacheBuilder::name);
    /// `"default"` unless set): the `name` label of its metrics.
    ///
    /// ```
    /// let cache: nearfar::Cache<u32, u32> = nearfar::Cache::builder().name("sessions").build();
    /// assert_eq!(cache.name(), "sessions");
    /// assert_eq!(nearfar::Cache::<u32, u32>::new(10).name(), "default");
    /// ```
    pub fn name(&self) -> &str {
        self.inner.metrics.name()
    }

    /// Publishes the cache's counters to the `metrics` facade now (see
    /// [`crate::observe`]): what it counted since its last publication
    /// shows at once, as when the cache is idle. Without the `metrics`
    /// feature it does nothing.
    ///
    /// ```
    /// let cache = nearfar::Cache::new(10);
    /// cache.insert(1, "one");
    /// cache.publish_metrics(); // before a scrape, say
    /// ```
    pub fn publish_metrics(&self) {
        #[cfg(feature = "metrics")]
        self.inner.metrics.0.handles.publish(&self.stats());
    }

    /// After a read counted as its thread's `n`th hit (or miss): every
    /// [`READ_TICK`]th, the metrics may be due (never without the
    /// `metrics` feature).
    #[inline(always)]
    pub(super) fn counted(&self, n: u64) {
        if crate::observe::every(READ_TICK, || n) {
            self.metrics_due();
        }
    }

    /// Publishes the counters if they are due (see [`crate::observe`]):
    /// called by the lookups and writes every so many of them.
    #[cold]
    #[inline(never)]
    pub(super) fn metrics_due(&self) {
        #[cfg(feature = "metrics")]
        {
            let handles = &self.inner.metrics.0.handles;
            if handles.throttle.due(self.inner.time.now()) {
                handles.publish(&self.stats());
            }
        }
    }
}
