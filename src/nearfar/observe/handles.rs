//! A `NearFar`'s metric handles (feature `metrics`): registered once, when
//! it is built, and published from its counters (see [`crate::observe`]).

use metrics::{Counter, Gauge, Histogram};

use super::super::NearFarStats;
use super::super::inner::{Far, FarClient};
use super::{COMMANDS, KINDS, Servers};
use crate::observe::{self as o, Throttle, counter, gauge, histogram};

/// The handles of one pool's breaker and servers.
#[derive(Debug)]
struct PoolHandles {
    open: Gauge,
    trips: Counter,
    skips: Counter,
    /// Each server's label and its `nearfar_server_down` gauge.
    servers: Vec<(String, Gauge)>,
}

impl PoolHandles {
    fn new(name: &str, pool: &'static str, servers: Vec<String>) -> Self {
        let labels = [("pool", pool)];
        PoolHandles {
            open: gauge(
                o::BREAKER_OPEN,
                "1 while NearFar's circuit breaker for the pool is open.",
                name,
                &labels,
            ),
            trips: counter(o::BREAKER_TRIPS, "Times the breaker opened.", name, &labels),
            skips: counter(
                o::BREAKER_SKIPS,
                "Far requests the breaker turned away.",
                name,
                &labels,
            ),
            servers: servers
                .into_iter()
                .map(|server| {
                    let g = gauge(
                        o::SERVER_DOWN,
                        "1 while the far client holds the server dead.",
                        name,
                        &[("pool", pool), ("server", &server)],
                    );
                    (server, g)
                })
                .collect(),
        }
    }

    fn publish(&self, breaker: &crate::memcached::health::Circuit, client: &impl Servers) {
        use std::sync::atomic::Ordering;
        self.open.set(if breaker.is_open() { 1.0 } else { 0.0 });
        self.trips.absolute(breaker.trips.load(Ordering::Relaxed));
        self.skips.absolute(breaker.skips.load(Ordering::Relaxed));
        for (server, down) in &self.servers {
            down.set(if client.is_down(server) { 1.0 } else { 0.0 });
        }
    }
}

/// Every handle of a `NearFar`, and the throttle of its publishing.
#[derive(Debug)]
pub(super) struct Handles {
    throttle: Throttle,
    far_hits: Counter,
    far_misses: Counter,
    loader_calls: Counter,
    loader_errors: Counter,
    lease_waits: Counter,
    lease_timeouts: Counter,
    lease_takeovers: Counter,
    stale_serves: Counter,
    fail_safe_serves: Counter,
    refresh_aheads: Counter,
    generation_checks: Counter,
    invalidations: Counter,
    revalidations: Counter,
    revalidations_changed: Counter,
    fallback_hits: Counter,
    restored: Counter,
    preloaded: Counter,
    snapshot_saves: Counter,
    snapshot_errors: Counter,
    /// By command (see [`COMMANDS`]).
    request_seconds: Vec<Histogram>,
    /// By kind (see [`KINDS`]).
    errors: Vec<Counter>,
    loader_seconds: Histogram,
    /// The far pool's, then the fallback's.
    pools: Vec<PoolHandles>,
}

impl Handles {
    pub(super) fn new<Cl: FarClient>(name: &str, far: Option<&Far<Cl>>) -> Self {
        let c = |metric, help| counter(metric, help, name, &[]);
        let mut pools = Vec::new();
        if let Some(far) = far {
            pools.push(PoolHandles::new(name, "far", far.client.labels()));
            if let Some((old, _)) = &far.fallback {
                pools.push(PoolHandles::new(name, "fallback", old.labels()));
            }
        }
        Handles {
            throttle: Throttle::new(),
            far_hits: c(o::FAR_HITS, "Near misses answered by memcached."),
            far_misses: c(o::FAR_MISSES, "Far lookups that found nothing."),
            loader_calls: c(o::LOADER_CALLS, "Runs of a caller's loader."),
            loader_errors: c(o::LOADER_ERRORS, "Loader runs that failed or panicked."),
            lease_waits: c(o::LEASE_WAITS, "Waits on another process's lease."),
            lease_timeouts: c(o::LEASE_TIMEOUTS, "Lease waits that loaded unstored."),
            lease_takeovers: c(o::LEASE_TAKEOVERS, "Abandoned leases taken over."),
            stale_serves: c(o::STALE_SERVES, "Values served marked stale."),
            fail_safe_serves: c(o::FAIL_SAFE_SERVES, "Failed loads served the last value."),
            refresh_aheads: c(o::REFRESH_AHEADS, "Refreshes started ahead of expiry."),
            generation_checks: c(
                o::GENERATION_CHECKS,
                "Checks of the namespace's generation.",
            ),
            invalidations: c(o::INVALIDATIONS, "Newer namespace generations taken."),
            revalidations: c(o::REVALIDATIONS, "Near copies checked by CAS."),
            revalidations_changed: c(o::REVALIDATIONS_CHANGED, "Checks that found a change."),
            fallback_hits: c(o::FALLBACK_HITS, "Values copied from the fallback pool."),
            restored: c(o::RESTORED, "Near entries loaded from the snapshot."),
            preloaded: c(o::PRELOADED, "Values the key preload read near."),
            snapshot_saves: c(o::SNAPSHOT_SAVES, "Snapshot and preload saves."),
            snapshot_errors: c(o::SNAPSHOT_ERRORS, "Failed saves and unloadable files."),
            request_seconds: COMMANDS
                .iter()
                .map(|&command| {
                    histogram(
                        o::FAR_REQUEST_SECONDS,
                        "Far request times, by command.",
                        name,
                        &[("command", command)],
                    )
                })
                .collect(),
            errors: KINDS
                .iter()
                .map(|&kind| {
                    counter(
                        o::FAR_ERRORS,
                        "Failed far requests, by kind.",
                        name,
                        &[("kind", kind)],
                    )
                })
                .collect(),
            loader_seconds: histogram(o::LOADER_SECONDS, "Loader run times.", name, &[]),
            pools,
        }
    }

    /// Handles that report nowhere (registered with no recorder).
    pub(super) fn detached() -> Self {
        Handles {
            throttle: Throttle::new(),
            far_hits: Counter::noop(),
            far_misses: Counter::noop(),
            loader_calls: Counter::noop(),
            loader_errors: Counter::noop(),
            lease_waits: Counter::noop(),
            lease_timeouts: Counter::noop(),
            lease_takeovers: Counter::noop(),
            stale_serves: Counter::noop(),
            fail_safe_serves: Counter::noop(),
            refresh_aheads: Counter::noop(),
            generation_checks: Counter::noop(),
            invalidations: Counter::noop(),
            revalidations: Counter::noop(),
            revalidations_changed: Counter::noop(),
            fallback_hits: Counter::noop(),
            restored: Counter::noop(),
            preloaded: Counter::noop(),
            snapshot_saves: Counter::noop(),
            snapshot_errors: Counter::noop(),
            request_seconds: COMMANDS.iter().map(|_| Histogram::noop()).collect(),
            errors: KINDS.iter().map(|_| Counter::noop()).collect(),
            loader_seconds: Histogram::noop(),
            pools: Vec::new(),
        }
    }

    /// Whether the counters are due for publishing at `now` (claims it).
    pub(super) fn due(&self, now: u64) -> bool {
        self.throttle.due(now)
    }

    /// A far request of `command` took `nanos`.
    pub(super) fn request(&self, command: usize, nanos: u64) {
        self.request_seconds[command].record(seconds(nanos));
    }

    /// A far request failed with an error of `kind`.
    pub(super) fn error(&self, kind: usize) {
        self.errors[kind].increment(1);
    }

    /// A loader run took `nanos`.
    pub(super) fn loaded(&self, nanos: u64) {
        self.loader_seconds.record(seconds(nanos));
    }

    /// Publishes `s` and the state of `far`'s breakers and servers.
    pub(super) fn publish<Cl: FarClient>(&self, s: &NearFarStats, far: Option<&Far<Cl>>) {
        self.far_hits.absolute(s.far_hits);
        self.far_misses.absolute(s.far_misses);
        self.loader_calls.absolute(s.loader_calls);
        self.loader_errors.absolute(s.loader_errors);
        self.lease_waits.absolute(s.lease_waits);
        self.lease_timeouts.absolute(s.lease_timeouts);
        self.lease_takeovers.absolute(s.lease_takeovers);
        self.stale_serves.absolute(s.stale_serves);
        self.fail_safe_serves.absolute(s.fail_safe_serves);
        self.refresh_aheads.absolute(s.refresh_aheads);
        self.generation_checks.absolute(s.generation_checks);
        self.invalidations.absolute(s.invalidations);
        self.revalidations.absolute(s.revalidations);
        self.revalidations_changed.absolute(s.revalidations_changed);
        self.fallback_hits.absolute(s.fallback_hits);
        self.restored.absolute(s.restored);
        self.preloaded.absolute(s.preloaded);
        self.snapshot_saves.absolute(s.snapshot_saves);
        self.snapshot_errors.absolute(s.snapshot_errors);
        let Some(far) = far else {
            return;
        };
        if let Some(pool) = self.pools.first() {
            pool.publish(&far.breaker, &far.client);
        }
        if let (Some(pool), Some((old, breaker))) = (self.pools.get(1), &far.fallback) {
            pool.publish(breaker, old);
        }
    }
}

/// Nanoseconds as seconds.
fn seconds(nanos: u64) -> f64 {
    nanos as f64 / 1e9
}
