//! Fuzzes the snapshot file's reader: a snapshot is read back from disk,
//! where anything may have written or damaged it.
//!
//! The first byte picks the mode.
//!
//! * **Bytes** (even): the rest of the input loaded as an entries snapshot
//!   into caches of three key and value types, and read as a key preload
//!   list of two, as it is and again with its length and checksums sealed
//!   over it (so changed bytes reach the decoder). Every load gives `Ok` or
//!   a typed `SnapshotError`, never a panic or an abort; a refused file
//!   leaves the cache empty; a load allocates at most a bounded multiple of
//!   the input's size at its peak (zlib's ratio, see `ALLOCATION_FACTOR`);
//!   libFuzzer's own limits catch hangs.
//! * **Structured** (odd): an arbitrary list of entries (with or without a
//!   TTL) in a `Cache<String, Vec<u8>>` or a `Cache<u64, u64>`, saved; the
//!   file is checked against the format's layout (it holds exactly the
//!   cache's entries); then bytes are set, inserted or removed at arbitrary
//!   places, the file sealed again (or not), the clock moved on, and the
//!   file loaded into a new cache. Unchanged, every entry comes back with
//!   its value, and expires when its TTL would have. Changed, the load is
//!   `Ok` or a typed error with nothing loaded; if `Ok`, the cache's
//!   invariants hold, and every record before the first changed byte (in a
//!   file whose header is unchanged) was loaded as it was saved, or counted
//!   as expired. (Records from the first change on may decode to other
//!   values: with the checksums sealed again, the file is a valid one.)
#![no_main]

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashMap;
use std::fmt::Debug;
use std::hash::Hash;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use nearfar::codec::{Codec, DefaultCodec};
use nearfar::snapshot::__fuzz_snapshot as snapshot;
use nearfar::{Cache, MockClock, SnapshotError};
use serde::Serialize;
use serde::de::DeserializeOwned;

// ---- Allocation accounting ----

/// Counts the bytes allocated and their peak, for the bound on a load's.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(by: usize) {
    let live = LIVE.fetch_add(by, Ordering::Relaxed) + by;
    PEAK.fetch_max(live, Ordering::Relaxed);
}

// SAFETY: every call is forwarded to `System` with the caller's arguments;
// the counters only observe.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract, forwarded.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract, forwarded.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract, forwarded.
        unsafe { System.dealloc(p, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's contract, forwarded.
        let q = unsafe { System.realloc(p, layout, new_size) };
        if !q.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            grew(new_size);
        }
        q
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// How many times its input's size a load may allocate at its peak: zlib
/// inflates at most about 1032 to 1 (what the codec's decompression of a
/// flag-8 value may reach), and a growing buffer doubles.
const ALLOCATION_FACTOR: usize = 4096;
/// What any load may allocate besides: the inflater's state, a shard's
/// first slab chunk and index growth, error messages.
const ALLOCATION_BASE: usize = 1 << 20;

/// `f`'s result, and the most it allocated at once beyond what was live
/// before it (the counters are global: the target runs one thread).
fn peak_of<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let out = f();
    (out, PEAK.load(Ordering::Relaxed).saturating_sub(before))
}

// ---- Bytes ----

/// A cache to load into: one shard, room for any file of the input sizes
/// fuzzed, on a mock clock.
fn cache<K: Hash + Eq, V: Clone>(clock: &MockClock) -> Cache<K, V> {
    Cache::builder()
        .max_entries(4096)
        .shards(1)
        .clock(clock.clone())
        .build()
}

/// Loads `file` as a snapshot of `(K, V)`: `Ok` (the cache as the load
/// says), or an error and an empty cache; its allocation within bound.
fn load_any<K, V>(file: &[u8])
where
    K: Hash + Eq + DeserializeOwned,
    V: Clone + DeserializeOwned,
{
    let clock = MockClock::new();
    let cache = cache::<K, V>(&clock);
    let (loaded, peak) = peak_of(|| snapshot::load(&cache, file));
    check_allocation(peak, file.len());
    match loaded {
        Ok(loaded) => {
            assert_eq!(loaded.stored, cache.len() as u64, "{loaded:?}");
            cache.check_invariants().unwrap();
        }
        Err(e) => refused(&cache, &e),
    }
}

/// Reads `file` as a key preload list of `K`.
fn keys_any<K: DeserializeOwned>(file: &[u8]) {
    let (read, peak) = peak_of(|| snapshot::read_keys::<K>(file));
    check_allocation(peak, file.len());
    if let Err(e) = read {
        typed(&e);
    }
}

fn check_allocation(peak: usize, input: usize) {
    let bound = ALLOCATION_BASE + ALLOCATION_FACTOR * input;
    assert!(
        peak <= bound,
        "a load of {input} bytes allocated {peak} at its peak (bound {bound})"
    );
}

/// A refused load stored nothing, and its error says why in words.
fn refused<K: Hash + Eq, V: Clone>(cache: &Cache<K, V>, e: &SnapshotError) {
    assert_eq!(cache.len(), 0, "a refused file ({e}) loaded entries");
    typed(e);
}

/// Every error is one of the documented kinds, with a message, and none
/// is retryable (they are in the bytes, not the I/O).
fn typed(e: &SnapshotError) {
    assert!(!e.to_string().is_empty());
    assert!(!e.is_retryable(), "{e}");
    if let SnapshotError::Io { .. } = e {
        panic!("I/O error from bytes: {e}");
    }
}

fn bytes(file: &[u8]) {
    let mut sealed = file.to_vec();
    snapshot::seal(&mut sealed);
    for file in [file, &sealed[..]] {
        load_any::<String, Vec<u8>>(file);
        load_any::<u64, u64>(file);
        load_any::<(u8, String), Option<Vec<u16>>>(file);
        keys_any::<String>(file);
        keys_any::<u64>(file);
    }
}

// ---- Structured ----

/// A change to a saved file; positions are taken modulo its length.
#[derive(Debug, Arbitrary)]
enum Change {
    Set { at: u16, byte: u8 },
    Insert { at: u16, bytes: Vec<u8> },
    Remove { at: u16, len: u8 },
}

#[derive(Debug, Arbitrary)]
struct Structured<K, V> {
    /// Key, value, TTL in seconds (None: no TTL).
    entries: Vec<(K, V, Option<u8>)>,
    changes: Vec<Change>,
    /// Whether the changed file gets its length and checksums sealed again.
    seal: bool,
    /// Seconds the process is down between the save and the load.
    down: u8,
}

/// Header bytes the checksums and the body's length do not cover (the
/// magic, version, kind, save time, generation and count).
const FIXED_HEADER: usize = 40;
/// Header bytes, its checksum included; and the body's checksum after.
const HEADER: usize = 52;
const TRAILER: usize = 4;

/// One record of a saved file, read by the layout the format documents.
struct Record<K, V> {
    /// Offset of the byte after it, in the file.
    end: usize,
    key: K,
    value: V,
    /// TTL in nanoseconds; 0: none.
    ttl: u64,
}

/// The records of a file `save` wrote, parsed independently of the crate's
/// reader, by the layout in the format's docs, and where the first starts.
fn parse<K: DeserializeOwned, V: DeserializeOwned>(file: &[u8]) -> (usize, Vec<Record<K, V>>) {
    let codec = DefaultCodec::new();
    let u32_at = |at: usize| u32::from_le_bytes(file[at..at + 4].try_into().unwrap());
    let u64_at = |at: usize| u64::from_le_bytes(file[at..at + 8].try_into().unwrap());
    assert_eq!(&file[..8], b"nearfar\x1a");
    let count = u64_at(32);
    assert_eq!(u64_at(40) as usize, file.len() - HEADER - TRAILER);
    let mut at = HEADER;
    for _ in 0..2 {
        let len = u16::from_le_bytes([file[at], file[at + 1]]);
        at += 2 + usize::from(len);
    }
    let start = at;
    let item = |at: &mut usize| {
        let (flags, len) = (u32_at(*at), u32_at(*at + 4) as usize);
        let data = &file[*at + 8..*at + 8 + len];
        *at += 8 + len;
        (data, flags)
    };
    let mut records = Vec::new();
    for _ in 0..count {
        let ttl = u64_at(at);
        let uses = file[at + 8];
        assert!(uses <= 3, "use count {uses}");
        at += 9;
        let (data, flags) = item(&mut at);
        let key = codec.decode(data, flags).unwrap();
        let (data, flags) = item(&mut at);
        let value = codec.decode(data, flags).unwrap();
        records.push(Record {
            end: at,
            key,
            value,
            ttl,
        });
    }
    assert_eq!(at, file.len() - TRAILER, "bytes after the last record");
    (start, records)
}

fn apply(file: &mut Vec<u8>, changes: &[Change]) {
    for change in changes {
        let at = |at: u16| usize::from(at) % (file.len() + 1);
        match change {
            Change::Set { at: a, byte } => {
                if !file.is_empty() {
                    let a = usize::from(*a) % file.len();
                    file[a] = *byte;
                }
            }
            Change::Insert { at: a, bytes } => {
                let a = at(*a);
                file.splice(a..a, bytes.iter().copied());
            }
            Change::Remove { at: a, len } => {
                let a = at(*a);
                let end = (a + usize::from(*len)).min(file.len());
                file.drain(a..end);
            }
        }
    }
}

/// Where `changed` first differs from `file` in the records (past the type
/// names, before the body's checksum): `None` when it is `file`; `Some(0)`
/// when the header's fixed fields or the type names differ; the file's
/// length when only the body's length or the checksums do.
fn first_change(file: &[u8], changed: &[u8], records_start: usize) -> Option<usize> {
    if changed == file {
        return None;
    }
    if changed.len() < HEADER + TRAILER || changed[..FIXED_HEADER] != file[..FIXED_HEADER] {
        return Some(0);
    }
    let (a, b) = (
        &file[HEADER..file.len() - TRAILER],
        &changed[HEADER..changed.len() - TRAILER],
    );
    let same = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    if same == a.len() && a.len() == b.len() {
        return Some(file.len());
    }
    let at = HEADER + same;
    Some(if at < records_start { 0 } else { at })
}

fn structured<K, V>(input: Structured<K, V>)
where
    K: Hash + Eq + Clone + Debug + Serialize + DeserializeOwned,
    V: Clone + PartialEq + Debug + Serialize + DeserializeOwned,
{
    let clock = MockClock::new();
    let saving = cache::<K, V>(&clock);
    let mut ttls = HashMap::new();
    for (key, value, ttl) in input.entries {
        match ttl {
            Some(secs) => {
                let ttl = Duration::from_secs(u64::from(secs) + 1);
                saving.insert_with_ttl(key.clone(), value, ttl);
                ttls.insert(key, ttl.as_nanos() as u64);
            }
            None => {
                saving.insert(key.clone(), value);
                ttls.insert(key, 0);
            }
        }
    }
    let held: HashMap<K, V> = saving.iter().collect();
    let file = snapshot::save(&saving).expect("a cache of these types saves");
    let (records_start, records) = parse::<K, V>(&file);
    // The file holds exactly what the cache held, with the TTLs given.
    assert_eq!(records.len(), held.len());
    for r in &records {
        assert_eq!(held.get(&r.key), Some(&r.value), "{:?}", r.key);
        assert_eq!(ttls[&r.key], r.ttl, "{:?}", r.key);
    }

    let mut changed = file.clone();
    apply(&mut changed, &input.changes);
    if input.seal {
        snapshot::seal(&mut changed);
    }
    let down = Duration::from_secs(u64::from(input.down));
    clock.advance(down);
    let down = down.as_nanos() as u64;
    let expired = |r: &Record<K, V>| r.ttl != 0 && r.ttl <= down;

    let loading = cache::<K, V>(&clock);
    let (loaded, peak) = peak_of(|| snapshot::load(&loading, &changed));
    check_allocation(peak, changed.len());
    let first = first_change(&file, &changed, records_start);
    let loaded = match loaded {
        Ok(loaded) => loaded,
        Err(e) => {
            assert!(first.is_some(), "the file as saved is refused: {e}");
            refused(&loading, &e);
            return;
        }
    };
    loading.check_invariants().unwrap();
    assert_eq!(loaded.stored, loading.len() as u64);
    let before = |r: &&Record<K, V>| first.is_none_or(|at| r.end <= at);
    let intact: Vec<&Record<K, V>> = records.iter().filter(before).collect();
    let intact_expired = intact.iter().filter(|r| expired(r)).count() as u64;
    assert!(loaded.expired >= intact_expired, "{loaded:?}");
    for r in intact.iter().filter(|r| !expired(r)) {
        assert_eq!(loading.get(&r.key).as_ref(), Some(&r.value), "{:?}", r.key);
    }
    if first.is_some() {
        return;
    }
    // Unchanged: all of it, and nothing else; then each entry expires when
    // its TTL would have, had the process never stopped.
    assert_eq!(loaded.expired, intact_expired);
    assert_eq!(loaded.stored + loaded.expired, records.len() as u64);
    assert_eq!((loaded.present, loaded.no_room), (0, 0));
    let mut left: Vec<(u64, &K)> = records
        .iter()
        .filter(|r| r.ttl != 0 && !expired(r))
        .map(|r| (r.ttl - down, &r.key))
        .collect();
    left.sort_unstable_by_key(|&(left, _)| left);
    let mut since = 0;
    for run in left.chunk_by(|a, b| a.0 == b.0) {
        let ttl = run[0].0;
        clock.advance(Duration::from_nanos(ttl - 1 - since));
        for (_, key) in run {
            assert!(loading.get(key).is_some(), "{key:?} expired early");
        }
        clock.advance(Duration::from_nanos(1));
        since = ttl;
        for (_, key) in run {
            assert!(loading.get(key).is_none(), "{key:?} outlived its TTL");
        }
    }
}

fuzz_target!(|input: &[u8]| {
    let Some((&mode, rest)) = input.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        bytes(rest);
        return;
    }
    let u = Unstructured::new(rest);
    if mode & 2 == 0 {
        if let Ok(input) = Structured::<String, Vec<u8>>::arbitrary_take_rest(u) {
            structured(input);
        }
    } else if let Ok(input) = Structured::<u64, u64>::arbitrary_take_rest(u) {
        structured(input);
    }
});
