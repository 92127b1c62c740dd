//! Warm restarts of a `NearFar` or `AsyncNearFar` (one copy for both):
//! the near tier saved to a snapshot, and its hottest keys to a preload
//! list, on a schedule and when the last handle is dropped; loaded when
//! the cache is built, the preload's keys read again from memcached in the
//! background.
//!
//! * **When to save** is [`Schedule`]'s decision, a pure function of `now`
//!   on the `NearFar`'s clock (tested with a `MockClock`).
//! * **Who saves**: a thread of its own, `nearfar-snapshot`, for both
//!   handles. A save reads the whole near tier and writes a file: on a
//!   caller's path it would stall that call for milliseconds, and an idle
//!   process would never save; on a tokio worker it would block the
//!   runtime. The thread sleeps on a condition variable until the next
//!   save is due (polling every [`POLL`] when a clock is injected, whose
//!   time it cannot sleep on), and is woken, stopped and joined when the
//!   cache is dropped, which then saves once more on the dropping thread.
//! * **The preload** runs [`Inner::preload`], written once over the driver
//!   [`Mode`]: on a thread of its own (`nearfar-preload`) for a `NearFar`,
//!   on a task of the runtime for an `AsyncNearFar`. It holds the cache
//!   weakly (a dropped cache stops it at its next batch), gives up at the
//!   first batch the far tier fails or skips (breaker open), and never
//!   makes a caller wait: a caller meanwhile misses near and reads far as
//!   usual.

use std::hash::Hash;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::drive::{self, Mode};
use super::flow::preload::Batch;
use super::generation::Generations;
use super::inner::{Entry, FarClient, Inner};
use super::stats::bump;
use super::{FarKey, nanos};
use crate::Cache;
use crate::clock::Timer;
use crate::codec::{CodecError, DefaultCodec};
use crate::snapshot::{self, SnapshotError};
use crate::store::Restored;

/// How often the saver looks at an injected clock (whose time it cannot
/// sleep on: a `MockClock` moves when a test says so).
const POLL: Duration = Duration::from_millis(10);
/// How many keys one far request of the preload asks for (the client cuts
/// it into multi-key gets of 128 per server round trip).
pub(super) const PRELOAD_BATCH: usize = 1024;
/// How often the preload list is saved when no snapshot sets the period.
pub(super) const DEFAULT_SAVE_EVERY: Duration = Duration::from_secs(60);

/// When the saver saves: every `every` ns on the `NearFar`'s clock, counted
/// from the last save (a save that took long, or a clock that jumped, does
/// not make the next ones come in a burst).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Schedule {
    every: u64,
    next: u64,
}

impl Schedule {
    /// The schedule of a saver started at `now`: its first save is due one
    /// period later.
    pub(super) fn new(every: u64, now: u64) -> Self {
        let every = every.max(1);
        Schedule {
            every,
            next: now.saturating_add(every),
        }
    }

    /// Whether a save is due at `now`; if so, the next is due a period
    /// after `now`.
    pub(super) fn due(&mut self, now: u64) -> bool {
        if now < self.next {
            return false;
        }
        self.next = now.saturating_add(self.every);
        true
    }

    /// Nanoseconds from `now` to the next save (0: due).
    pub(super) fn until(&self, now: u64) -> u64 {
        self.next.saturating_sub(now)
    }
}

/// Where a `NearFar` keeps its near tier across restarts (its builder's
/// `snapshot` and `preload` settings), and the functions that save and load
/// it: set by those builder methods, whose bounds they need (a `NearFar`'s
/// keys need not be `Serialize` otherwise).
pub(super) struct Files<K, V> {
    /// The snapshot of entries.
    pub(super) snapshot: Option<PathBuf>,
    /// The preload list of keys.
    pub(super) preload: Option<PathBuf>,
    /// The saver's period.
    pub(super) every: Option<Duration>,
    /// Set with either file.
    pub(super) io: Option<Io<K, V>>,
}

impl<K, V> Default for Files<K, V> {
    fn default() -> Self {
        Files {
            snapshot: None,
            preload: None,
            every: None,
            io: None,
        }
    }
}

/// A `NearFar`'s near tier.
type Near<K, V> = Cache<K, Entry<V>>;

/// Saves a near tier's entries of the generation known to the files.
type SaveFn<K, V> = fn(&Near<K, V>, &Generations, &Paths) -> Result<(), SnapshotError>;
/// Loads a snapshot into a near tier (the near TTL caps the entries'):
/// how many entries it stored.
type RestoreFn<K, V> =
    fn(&Near<K, V>, &Timer, Option<Duration>, &Path) -> Result<u64, SnapshotError>;

/// The saving and loading of a near tier of `K -> Entry<V>`.
pub(super) struct Io<K, V> {
    save: SaveFn<K, V>,
    restore: RestoreFn<K, V>,
    read_keys: fn(&Path) -> Result<Vec<K>, SnapshotError>,
}

impl<K, V> Clone for Io<K, V> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<K, V> Copy for Io<K, V> {}

impl<K, V> Io<K, V>
where
    K: Hash + Eq + Serialize + DeserializeOwned,
    V: Clone + Serialize + DeserializeOwned,
{
    /// The functions for keys and values that serialize.
    pub(super) fn new() -> Self {
        Io {
            save: save_files::<K, V>,
            restore: restore::<K, V>,
            read_keys: |path| snapshot::read_keys::<K>(path).map(|(_, keys)| keys),
        }
    }
}

/// The files a save writes.
#[derive(Debug, Clone)]
struct Paths {
    snapshot: Option<PathBuf>,
    preload: Option<PathBuf>,
}

/// The counters of [`NearFarStats`](super::NearFarStats) that are this module's: shared with
/// the saver's thread, and held by the cache's own counters (which read
/// them into its stats and publish them).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(super) restored: AtomicU64,
    pub(super) preloaded: AtomicU64,
    pub(super) saves: AtomicU64,
    pub(super) errors: AtomicU64,
}

/// Stops a preload (joins its thread, or aborts its task).
pub(super) type Stopper = Box<dyn FnOnce() + Send>;

/// A save of the near tier's files, counted.
type Save = Arc<dyn Fn() -> Result<(), SnapshotError> + Send + Sync>;

/// What a `NearFar`'s warm restarts run: the saver, the preload, their
/// counters. Dropped with the cache: stops the preload, stops and joins
/// the saver, then saves once more.
pub(super) struct Warm {
    counters: Arc<Counters>,
    save: Option<Save>,
    saver: Option<Saver>,
    preload_stop: Arc<AtomicBool>,
    preload: Mutex<Option<Stopper>>,
}

impl Warm {
    /// Nothing saved or preloaded.
    pub(super) fn off() -> Warm {
        Warm {
            counters: Arc::default(),
            save: None,
            saver: None,
            preload_stop: Arc::default(),
            preload: Mutex::new(None),
        }
    }

    /// Its counters, for the cache's own (see [`Counters`]).
    pub(super) fn counters(&self) -> Arc<Counters> {
        Arc::clone(&self.counters)
    }
}

impl Drop for Warm {
    fn drop(&mut self) {
        self.preload_stop.store(true, Ordering::Relaxed);
        let stopper = self
            .preload
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(stop) = stopper {
            stop();
        }
        // Joined before the last save: two saves never race for the file.
        drop(self.saver.take());
        if let Some(save) = &self.save {
            let _ = save();
        }
    }
}

/// The saver's thread, and the flag and condition variable that stop it.
struct Saver {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl Saver {
    /// Runs `save` on `schedule` (times on `timer`) on a thread of its own.
    fn start(save: Save, every: Duration, timer: Timer) -> Option<Saver> {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let flag = Arc::clone(&stop);
        // Counted from now, not from when the thread gets to run.
        let mut schedule = Schedule::new(nanos(every), timer.now());
        let thread = std::thread::Builder::new()
            .name("nearfar-snapshot".into())
            .spawn(move || {
                let (lock, wake) = &*flag;
                let mut stopped = lock.lock().unwrap_or_else(PoisonError::into_inner);
                while !*stopped {
                    let now = timer.now();
                    if schedule.due(now) {
                        drop(stopped);
                        let _ = save();
                        stopped = lock.lock().unwrap_or_else(PoisonError::into_inner);
                        continue;
                    }
                    let mut wait = Duration::from_nanos(schedule.until(now));
                    if timer.is_injected() {
                        wait = wait.min(POLL);
                    }
                    stopped = wake
                        .wait_timeout(stopped, wait)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                }
            })
            // No thread to be had: the cache still saves when dropped.
            .ok()?;
        Some(Saver {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Saver {
    fn drop(&mut self) {
        let (lock, wake) = &*self.stop;
        *lock.lock().unwrap_or_else(PoisonError::into_inner) = true;
        wake.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Whether `entry` belongs in a snapshot: a value of the namespace's
/// `generation` (others are never served again), not a fail-safe copy.
fn current<V>(entry: &Entry<V>, generation: u64) -> bool {
    entry.generation == generation && entry.stale_since == 0
}

/// Saves `near`'s entries of the namespace's generation to `files`: the
/// snapshot, the preload list, or both, from one pass over the near tier.
fn save_files<K, V>(
    near: &Near<K, V>,
    generations: &Generations,
    files: &Paths,
) -> Result<(), SnapshotError>
where
    K: Hash + Eq + Serialize,
    V: Clone + Serialize,
{
    let codec = DefaultCodec::new();
    let generation = generations.current();
    let saved_at = near.wall_time();
    let shards = near.export(|key, entry, ttl, uses| {
        if !current(entry, generation) {
            return (None, None);
        }
        let entry_record = files
            .snapshot
            .as_ref()
            .map(|_| snapshot::entry_record(&codec, key, &entry.value, ttl, uses));
        let key_record = files
            .preload
            .as_ref()
            .map(|_| snapshot::key_record(&codec, key, uses));
        (entry_record, key_record)
    });
    let (mut entries, mut keys) = (Vec::new(), Vec::new());
    for shard in shards {
        let (e, k): (Vec<_>, Vec<_>) = shard.into_iter().unzip();
        entries.push(e.into_iter().flatten().collect());
        keys.push(k.into_iter().flatten().collect());
    }
    if let Some(path) = &files.snapshot {
        snapshot::write_entries::<K, V>(path, saved_at, generation, entries)?;
    }
    if let Some(path) = &files.preload {
        snapshot::write_keys::<K>(path, saved_at, generation, keys)?;
    }
    Ok(())
}

/// Sets up a cache's warm restarts: loads the snapshot into `near` (the
/// entries of the generation they were saved in; `near_ttl` caps their
/// TTL), reads the preload list (its keys are returned, to preload), and
/// starts the saver. A file that is
/// missing is a first start; one that does not load is counted in
/// `snapshot_errors` and the cache starts cold (the next save replaces it).
pub(super) fn start<K, V>(
    near: &Near<K, V>,
    generations: &Arc<Generations>,
    timer: &Timer,
    near_ttl: Option<Duration>,
    files: Files<K, V>,
) -> (Warm, Vec<K>)
where
    K: Send + Sync + 'static,
    V: Send + Sync + 'static,
{
    let mut warm = Warm::off();
    let mut preload = Vec::new();
    let Some(io) = files.io else {
        return (warm, preload);
    };
    let counters = &warm.counters;
    if let Some(path) = &files.snapshot {
        match (io.restore)(near, timer, near_ttl, path) {
            Ok(n) => counters.restored.store(n, Ordering::Relaxed),
            Err(e) if is_missing(&e) => {}
            Err(_) => bump(&counters.errors),
        }
    }
    if let Some(path) = &files.preload {
        match (io.read_keys)(path) {
            Ok(keys) => preload = keys,
            Err(e) if is_missing(&e) => {}
            Err(_) => bump(&counters.errors),
        }
    }
    let every = files.every.unwrap_or(DEFAULT_SAVE_EVERY);
    let paths = Paths {
        snapshot: files.snapshot,
        preload: files.preload,
    };
    let (near, generations, counters) =
        (near.clone(), Arc::clone(generations), Arc::clone(counters));
    let save: Save = Arc::new(move || {
        // A `Serialize` that panics fails the save, not the saver (nor a
        // drop).
        let saved = catch_unwind(AssertUnwindSafe(|| (io.save)(&near, &generations, &paths)))
            .unwrap_or_else(|_| {
                Err(SnapshotError::Codec(CodecError::Encode(
                    "a key or value panicked while it was serialized".into(),
                )))
            });
        bump(match saved {
            Ok(()) => &counters.saves,
            Err(_) => &counters.errors,
        });
        saved
    });
    warm.saver = Saver::start(Arc::clone(&save), every, timer.clone());
    warm.save = Some(save);
    (warm, preload)
}

/// Whether a load failed only because the file is not there (yet).
fn is_missing(e: &SnapshotError) -> bool {
    matches!(e, SnapshotError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
}

/// Loads the snapshot at `path` into `near`: how many entries it stored.
fn restore<K, V>(
    near: &Near<K, V>,
    timer: &Timer,
    near_ttl: Option<Duration>,
    path: &Path,
) -> Result<u64, SnapshotError>
where
    K: Hash + Eq + DeserializeOwned,
    V: Clone + DeserializeOwned,
{
    let entries = snapshot::read_entries::<K, V>(path, near.wall_time())?;
    let mut stored = 0;
    for (key, value, ttl, uses) in entries.items {
        // Never longer than the near TTL set now (it may have shrunk).
        let ttl = match (ttl, near_ttl) {
            (Some(left), Some(bound)) => Some(left.min(bound)),
            (left, bound) => left.or(bound),
        };
        let entry = Entry::at(timer.now(), value, 0, ttl, entries.generation);
        if near.restore(key, entry, ttl, uses) == Restored::Stored {
            stored += 1;
        }
    }
    Ok(stored)
}

impl<K, V, Cl> Inner<K, V, Cl>
where
    K: Hash + Eq + Clone + FarKey + Send + Sync + 'static,
    V: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
    Cl: FarClient,
{
    /// Starts the preload of `keys` with `spawn` (a thread or a task
    /// running [`Inner::preload`]), unless there are none.
    pub(super) fn start_preload(
        self: &Arc<Self>,
        keys: Vec<K>,
        spawn: impl FnOnce(Weak<Self>, Vec<K>, Arc<AtomicBool>) -> Option<Stopper>,
    ) {
        if keys.is_empty() || self.far.is_none() {
            return;
        }
        let stop = Arc::clone(&self.warm.preload_stop);
        if let Some(stopper) = spawn(Arc::downgrade(self), keys, stop) {
            *self
                .warm
                .preload
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(stopper);
        }
    }

    /// The preload: reads `keys` (hottest first) from memcached in
    /// batches of [`PRELOAD_BATCH`] and keeps the values found near, until
    /// the keys run out, `stop` is set, the cache is dropped, or a batch
    /// fails or is skipped.
    pub(super) async fn preload<M: Mode<Client = Cl>>(
        inner: Weak<Self>,
        keys: Vec<K>,
        stop: Arc<AtomicBool>,
    ) {
        for batch in keys.chunks(PRELOAD_BATCH) {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            let Some(inner) = inner.upgrade() else {
                return;
            };
            if !inner.preload_batch::<M>(batch).await {
                return;
            }
        }
    }

    /// One batch of the preload: the keys not near yet, read with one
    /// `get_many`, the hits kept near as a `get` would keep them (unless
    /// written meanwhile: see [`Inner::keep_near`]), for the near TTL
    /// bounded by the far TTL (a multi-key get does not tell what is left
    /// of an item's). Whether to go on.
    async fn preload_batch<M: Mode<Client = Cl>>(&self, keys: &[K]) -> bool {
        let Some(far) = self.far_call::<M>().await else {
            return false;
        };
        let mut wanted = Vec::with_capacity(keys.len());
        for key in keys {
            if self.near.contains_key(key) {
                continue;
            }
            if let Some(fkey) = self.key_of(&far, key) {
                let seen = self.write_generation(key).load(Ordering::Acquire);
                wanted.push((key, fkey, seen));
            }
        }
        if wanted.is_empty() {
            return true;
        }
        let fkeys: Vec<String> = wanted.iter().map(|(_, fkey, _)| fkey.clone()).collect();
        let mut batch = Batch::new(&fkeys);
        let Some(mut found) = drive::run::<M, V, _>(&far, &self.timer, &mut batch).await else {
            return false;
        };
        let ttl = self.bound(Some(far.far_ttl));
        for (key, fkey, seen) in wanted {
            if let Some(value) = found.remove(&fkey) {
                let entry = self.entry(value, 0, Some(ttl), far.generation);
                self.keep_near(key, seen, entry, ttl);
                bump(&self.warm.counters.preloaded);
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::Schedule;

    #[test]
    fn saves_come_one_period_after_the_last() {
        let mut s = Schedule::new(100, 1_000);
        assert!(!s.due(1_099));
        assert_eq!(s.until(1_050), 50);
        assert!(s.due(1_100));
        assert!(!s.due(1_150));
        // A late look (a long save, a jump of the clock): one save, then
        // a period from it, not a burst to catch up.
        assert!(s.due(5_000));
        assert!(!s.due(5_001));
        assert_eq!(s.until(5_001), 99);
        assert!(s.due(5_100));
    }

    #[test]
    fn a_zero_period_is_taken_as_one_nanosecond() {
        let mut s = Schedule::new(0, 10);
        assert!(s.due(11));
        assert!(!s.due(11));
    }
}
