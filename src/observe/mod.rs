//! Observability: the metrics a cache publishes (feature `metrics`) and the
//! spans it opens (feature `tracing`), and their stable names.
//!
//! # Metrics (feature `metrics`)
//!
//! Every metric goes through the [`metrics`](https://docs.rs/metrics)
//! facade: nearfar links the facade only, and the application installs a
//! recorder (an exporter: Prometheus, StatsD, ...). Every metric carries a
//! `name` label, the cache's name ([`CacheBuilder::name`](crate::CacheBuilder::name),
//! `NearFarBuilder::name`; `"default"` unless set), so several caches
//! in one process are told apart.
//!
//! **Install the recorder before building the caches.** A cache registers
//! its metric handles once, when it is built; with no recorder installed
//! then, its handles do nothing for its whole life (each costs a branch).
//!
//! **Published, not counted twice.** The cache's always-on counters
//! ([`Stats`](crate::Stats), and `NearFarStats`) are what the counters
//! and gauges report: a cache publishes them as absolute values
//! (`Counter::absolute`, `Gauge::set`) at most once per [`PUBLISH_INTERVAL`]
//! on its clock, when a path that does work anyway passes by: a write
//! (every 64th of a shard), a lookup (every 256th hit or miss of a
//! thread), a far request, a load. A near hit thus writes nothing shared
//! for the metrics: a Prometheus counter bumped on every hit would be one
//! atomic shared by every core. What a cache counted since its last
//! publication shows at its next one; an idle cache publishes nothing, so
//! call `publish_metrics` (on [`Cache`](crate::Cache::publish_metrics),
//! `NearFar` or `AsyncNearFar`) for exact figures, say before a scrape.
//! Per-event metrics (the histograms, `nearfar_far_errors_total`) are
//! recorded when their event happens: those paths cost microseconds anyway.
//!
//! | metric | kind | labels | what it counts |
//! |---|---|---|---|
//! | `nearfar_near_hits_total` | counter | `name` | near-tier lookups that found a live entry ([`Stats::hits`](crate::Stats::hits)) |
//! | `nearfar_near_misses_total` | counter | `name` | near-tier lookups that found nothing or an expired entry |
//! | `nearfar_near_inserts_total` | counter | `name` | new keys stored near |
//! | `nearfar_near_updates_total` | counter | `name` | values replaced for keys present |
//! | `nearfar_near_rejected_total` | counter | `name` | inserts refused (too heavy, or no memory while a reader stalls) |
//! | `nearfar_near_evictions_total` | counter | `name`, `cause` = `capacity` / `expired` / `removed` | entries that left the near tier, by cause |
//! | `nearfar_near_loads_total` | counter | `name` | loads run by the near tier (the `get_or_insert_with` family; for a `NearFar`, one per coalesced load) |
//! | `nearfar_near_load_waits_total` | counter | `name` | callers that waited for another caller's load in this process |
//! | `nearfar_near_entries` | gauge | `name` | entries held near |
//! | `nearfar_near_weight` | gauge | `name` | their total weight |
//! | `nearfar_far_hits_total` | counter | `name` | near misses answered by memcached |
//! | `nearfar_far_misses_total` | counter | `name` | far lookups that found nothing |
//! | `nearfar_far_errors_total` | counter | `name`, `kind` (see below) | far requests that failed, by kind (recorded per event) |
//! | `nearfar_far_request_seconds` | histogram | `name`, `command` (see below) | each far request's time, from its breaker's pass to its outcome |
//! | `nearfar_loader_calls_total` | counter | `name` | runs of a `NearFar` caller's loader |
//! | `nearfar_loader_errors_total` | counter | `name` | of those, the ones that returned an error or panicked |
//! | `nearfar_loader_seconds` | histogram | `name` | each loader run's time (recorded per event) |
//! | `nearfar_lease_waits_total` | counter | `name` | callers that waited on another process's memcached lease |
//! | `nearfar_lease_timeouts_total` | counter | `name` | lease waits that ended loading without storing |
//! | `nearfar_lease_takeovers_total` | counter | `name` | abandoned leases taken over |
//! | `nearfar_stale_serves_total` | counter | `name` | values served although memcached marked them stale |
//! | `nearfar_fail_safe_serves_total` | counter | `name` | failed loads answered with the key's last value |
//! | `nearfar_refresh_aheads_total` | counter | `name` | refreshes refresh-ahead started |
//! | `nearfar_generation_checks_total` | counter | `name` | checks of the namespace's generation (`generation_check`) |
//! | `nearfar_invalidations_total` | counter | `name` | newer namespace generations taken (each cleared the near tier) |
//! | `nearfar_revalidations_total` | counter | `name` | near copies checked against the far item's CAS |
//! | `nearfar_revalidations_changed_total` | counter | `name` | of those, the ones found changed or gone |
//! | `nearfar_fallback_hits_total` | counter | `name` | values copied from the fallback pool |
//! | `nearfar_restored_total` | counter | `name` | near entries loaded from the snapshot when the cache was built |
//! | `nearfar_preloaded_total` | counter | `name` | values the key preload read from memcached into the near tier |
//! | `nearfar_snapshot_saves_total` | counter | `name` | snapshot and preload saves |
//! | `nearfar_snapshot_errors_total` | counter | `name` | saves that failed, and files that did not load at build |
//! | `nearfar_breaker_open` | gauge | `name`, `pool` = `far` / `fallback` | 1 while `NearFar`'s circuit breaker for the pool is open |
//! | `nearfar_breaker_trips_total` | counter | `name`, `pool` | times that breaker opened |
//! | `nearfar_breaker_skips_total` | counter | `name`, `pool` | far requests it turned away |
//! | `nearfar_server_down` | gauge | `name`, `pool`, `server` (`host:port`) | 1 while the far client holds the server dead (its per-server circuit: dead-server ejection) |
//!
//! Every [`Cache`](crate::Cache) publishes the `nearfar_near_*` metrics; a
//! `NearFar`'s near tier publishes them under the `NearFar`'s name, and the
//! `NearFar` the rest. A plain `Cache`'s loader runs are
//! `nearfar_near_loads_total`. Histograms are in seconds, timed on the
//! cache's clock (`NearFarBuilder::clock`: a `MockClock` in a test times
//! what it was advanced by).
//!
//! `kind` of `nearfar_far_errors_total` is one of `io`, `timeout`,
//! `connect`, `protocol`, `server`, `not_stored`, `client`, `codec`,
//! `invalid_key`, `value_too_large`, `all_servers_down`, `pool_timeout`,
//! `config`, `tls` (one per variant of the far client's `memcached::Error`;
//! `tls` with feature `tls`). `command` of `nearfar_far_request_seconds` names the client
//! method: `get_or_lease`, `peek_lease`, `peek_lease_cas`, `meta_get`, `add`,
//! `cas`, `compare_and_set`, `set`, `delete`, `delete_if_cas`,
//! `invalidate`, `invalidate_if_cas`, `get_raw`, `incr`, `add_counter`
//! (those three: the namespace's generation counter), `get_many` (a
//! batch of the key preload, `NearFarBuilder::preload`).
//!
//! Far writes have no counter of their own: the `_count` of
//! `nearfar_far_request_seconds` for `set`, `add`, `cas` and
//! `compare_and_set` counts them (attempted; `nearfar_far_errors_total`
//! the failed ones).
//!
//! The names below are stable: a new metric may be added, none renamed.
//!
//! # Spans (feature `tracing`)
//!
//! At `DEBUG`, with target `nearfar`:
//!
//! * `nearfar.far`, around each far request of a `NearFar`: fields `name`
//!   (the cache's), `command` (as above), `pool`, `server` (where the key
//!   goes now), `key` (its digest) and, once it ended, `outcome`
//!   (`ok`, or the error's kind);
//! * `nearfar.load`, around each run of a `NearFar` caller's loader:
//!   `name`, `key` (its digest) and `outcome` (`ok`, `error`, `panic`).
//!
//! A key is never written to a span: `key` is a digest, 16 hex digits of
//! the 64-bit FNV-1a hash of the far key (the rendered key for a `NearFar`
//! without a far tier), the same in every process. Fields are computed only
//! when a subscriber wants the span.

// Histograms and digests are `NearFar`'s (feature `memcached`).
#[cfg(feature = "metrics")]
#[cfg_attr(not(feature = "memcached"), allow(dead_code, reason = "NearFar's"))]
mod facade;
#[cfg(feature = "metrics")]
#[cfg_attr(
    not(feature = "memcached"),
    allow(unused_imports, reason = "NearFar's")
)]
pub(crate) use facade::{Throttle, counter, gauge, histogram};

#[cfg(all(test, feature = "metrics"))]
pub(crate) mod tests;

#[cfg(feature = "tracing")]
#[cfg_attr(not(feature = "memcached"), allow(dead_code, reason = "NearFar's"))]
mod trace;
#[cfg(feature = "tracing")]
#[cfg_attr(
    not(feature = "memcached"),
    allow(unused_imports, reason = "NearFar's")
)]
pub(crate) use trace::digest;

use std::time::Duration;

/// The most often a cache publishes its counters (on its own clock), when
/// something passes by; `publish_metrics` publishes at once.
pub const PUBLISH_INTERVAL: Duration = Duration::from_secs(1);

/// The label every metric carries: the cache's name.
pub const NAME_LABEL: &str = "name";

/// The name of a cache whose builder was given none.
pub const DEFAULT_NAME: &str = "default";

/// `nearfar_near_hits_total`: near-tier lookups that found a live entry.
pub const NEAR_HITS: &str = "nearfar_near_hits_total";
/// `nearfar_near_misses_total`: near-tier lookups that found none.
pub const NEAR_MISSES: &str = "nearfar_near_misses_total";
/// `nearfar_near_inserts_total`: new keys stored near.
pub const NEAR_INSERTS: &str = "nearfar_near_inserts_total";
/// `nearfar_near_updates_total`: values replaced for keys present.
pub const NEAR_UPDATES: &str = "nearfar_near_updates_total";
/// `nearfar_near_rejected_total`: inserts refused.
pub const NEAR_REJECTED: &str = "nearfar_near_rejected_total";
/// `nearfar_near_evictions_total{cause}`: entries gone, by cause.
pub const NEAR_EVICTIONS: &str = "nearfar_near_evictions_total";
/// `nearfar_near_loads_total`: loads run by the near tier.
pub const NEAR_LOADS: &str = "nearfar_near_loads_total";
/// `nearfar_near_load_waits_total`: waits on another caller's load.
pub const NEAR_LOAD_WAITS: &str = "nearfar_near_load_waits_total";
/// `nearfar_near_entries`: entries held near (gauge).
pub const NEAR_ENTRIES: &str = "nearfar_near_entries";
/// `nearfar_near_weight`: their total weight (gauge).
pub const NEAR_WEIGHT: &str = "nearfar_near_weight";
/// `nearfar_far_hits_total`: near misses answered by memcached.
pub const FAR_HITS: &str = "nearfar_far_hits_total";
/// `nearfar_far_misses_total`: far lookups that found nothing.
pub const FAR_MISSES: &str = "nearfar_far_misses_total";
/// `nearfar_far_errors_total{kind}`: failed far requests, by kind.
pub const FAR_ERRORS: &str = "nearfar_far_errors_total";
/// `nearfar_far_request_seconds{command}`: far request times (histogram).
pub const FAR_REQUEST_SECONDS: &str = "nearfar_far_request_seconds";
/// `nearfar_loader_calls_total`: runs of a caller's loader.
pub const LOADER_CALLS: &str = "nearfar_loader_calls_total";
/// `nearfar_loader_errors_total`: loader runs that failed or panicked.
pub const LOADER_ERRORS: &str = "nearfar_loader_errors_total";
/// `nearfar_loader_seconds`: loader run times (histogram).
pub const LOADER_SECONDS: &str = "nearfar_loader_seconds";
/// `nearfar_lease_waits_total`: waits on another process's lease.
pub const LEASE_WAITS: &str = "nearfar_lease_waits_total";
/// `nearfar_lease_timeouts_total`: lease waits that loaded unstored.
pub const LEASE_TIMEOUTS: &str = "nearfar_lease_timeouts_total";
/// `nearfar_lease_takeovers_total`: abandoned leases taken over.
pub const LEASE_TAKEOVERS: &str = "nearfar_lease_takeovers_total";
/// `nearfar_stale_serves_total`: values served marked stale.
pub const STALE_SERVES: &str = "nearfar_stale_serves_total";
/// `nearfar_fail_safe_serves_total`: failed loads served the last value.
pub const FAIL_SAFE_SERVES: &str = "nearfar_fail_safe_serves_total";
/// `nearfar_refresh_aheads_total`: refreshes started ahead of expiry.
pub const REFRESH_AHEADS: &str = "nearfar_refresh_aheads_total";
/// `nearfar_generation_checks_total`: checks of the namespace's generation.
pub const GENERATION_CHECKS: &str = "nearfar_generation_checks_total";
/// `nearfar_invalidations_total`: newer namespace generations taken.
pub const INVALIDATIONS: &str = "nearfar_invalidations_total";
/// `nearfar_revalidations_total`: near copies checked by CAS.
pub const REVALIDATIONS: &str = "nearfar_revalidations_total";
/// `nearfar_revalidations_changed_total`: checks that found a change.
pub const REVALIDATIONS_CHANGED: &str = "nearfar_revalidations_changed_total";
/// `nearfar_fallback_hits_total`: values copied from the fallback pool.
pub const FALLBACK_HITS: &str = "nearfar_fallback_hits_total";
/// `nearfar_restored_total`: near entries loaded from the snapshot.
pub const RESTORED: &str = "nearfar_restored_total";
/// `nearfar_preloaded_total`: values the key preload read into the near tier.
pub const PRELOADED: &str = "nearfar_preloaded_total";
/// `nearfar_snapshot_saves_total`: snapshot and preload saves.
pub const SNAPSHOT_SAVES: &str = "nearfar_snapshot_saves_total";
/// `nearfar_snapshot_errors_total`: failed saves, and files that did not load.
pub const SNAPSHOT_ERRORS: &str = "nearfar_snapshot_errors_total";
/// `nearfar_breaker_open{pool}`: 1 while the pool's breaker is open (gauge).
pub const BREAKER_OPEN: &str = "nearfar_breaker_open";
/// `nearfar_breaker_trips_total{pool}`: times the breaker opened.
pub const BREAKER_TRIPS: &str = "nearfar_breaker_trips_total";
/// `nearfar_breaker_skips_total{pool}`: requests the breaker turned away.
pub const BREAKER_SKIPS: &str = "nearfar_breaker_skips_total";
/// `nearfar_server_down{pool, server}`: 1 while the client holds the
/// server dead (gauge).
pub const SERVER_DOWN: &str = "nearfar_server_down";

/// Whether a path that has just counted its `count`th event (hit, miss,
/// write) should see if the cache's counters are due for publishing: every
/// `every`th (a power of two). Never without the `metrics` feature, where
/// `count` is not even computed.
#[inline(always)]
pub(crate) fn every(every: u64, count: impl FnOnce() -> u64) -> bool {
    cfg!(feature = "metrics") && count() & (every - 1) == 0
}
