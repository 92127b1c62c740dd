//! The near tier's snapshot: `Cache::save` / `Cache::load` round trips,
//! TTLs across downtime (a `MockClock`: its wall time moves with it), the
//! hottest entries kept by a smaller cache, the bounds, every kind of bad
//! file refused with nothing loaded, and saves that fail leaving the
//! previous file whole.
#![cfg(feature = "snapshot")]

#[path = "common/dir.rs"]
mod dir;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use dir::TestDir as Dir;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use nearfar::{Cache, MockClock, SnapshotError};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Profile {
    name: String,
    visits: u32,
    tags: Vec<String>,
}

fn profile(i: u32) -> Profile {
    Profile {
        name: format!("user {i}"),
        visits: i * 3,
        tags: vec!["a".into(); (i % 3) as usize],
    }
}

#[test]
fn a_snapshot_round_trips_keys_values_and_counts() {
    let dir = Dir::new("snapshot-round-trip");
    let path = dir.file("near.snap");
    let cache: Cache<String, Profile> = Cache::new(1_000);
    for i in 0..500 {
        cache.insert(format!("k{i}"), profile(i));
    }
    let saved = cache.save(&path).unwrap();
    assert_eq!(saved.entries, 500);
    assert_eq!(saved.bytes, std::fs::metadata(&path).unwrap().len());

    let restarted: Cache<String, Profile> = Cache::new(1_000);
    let loaded = restarted.load(&path).unwrap();
    assert_eq!(
        (
            loaded.stored,
            loaded.expired,
            loaded.no_room,
            loaded.present
        ),
        (500, 0, 0, 0)
    );
    for i in 0..500 {
        assert_eq!(restarted.peek(&format!("k{i}")), Some(profile(i)));
    }
    restarted.check_invariants().unwrap();
    // Only the snapshot is left in the directory: no temporary file.
    assert_eq!(dir.files(), ["near.snap"]);
}

#[test]
fn ttls_go_on_counting_while_the_process_is_down() {
    let dir = Dir::new("snapshot-ttl");
    let path = dir.file("near.snap");
    let clock = MockClock::new();
    let cache: Cache<String, i32> = Cache::builder()
        .max_entries(100)
        .clock(clock.clone())
        .build();
    cache.insert_with_ttl("long".into(), 1, Duration::from_secs(100));
    cache.insert_with_ttl("short".into(), 2, Duration::from_secs(30));
    cache.insert("forever".into(), 3);
    clock.advance(Duration::from_secs(10));
    cache.save(&path).unwrap();

    // Down for 25 s: "short" had 20 s left when saved.
    clock.advance(Duration::from_secs(25));
    let restarted: Cache<String, i32> = Cache::builder()
        .max_entries(100)
        .clock(clock.clone())
        .build();
    let loaded = restarted.load(&path).unwrap();
    assert_eq!((loaded.stored, loaded.expired), (2, 1));
    assert_eq!(restarted.get("short"), None);
    // "long": 100 s from its insert, of which 35 s are gone.
    clock.advance(Duration::from_secs(64));
    assert_eq!(restarted.get("long"), Some(1));
    clock.advance(Duration::from_secs(1));
    assert_eq!(restarted.get("long"), None);
    // Saved without a TTL: it takes the loading cache's default (none).
    clock.advance(Duration::from_secs(10_000));
    assert_eq!(restarted.get("forever"), Some(3));

    // A cache with a default TTL gives it to the entries saved without one.
    let with_ttl: Cache<String, i32> = Cache::builder()
        .max_entries(100)
        .time_to_live(Duration::from_secs(5))
        .clock(clock.clone())
        .build();
    with_ttl.load(&path).unwrap();
    assert_eq!(with_ttl.get("forever"), Some(3));
    clock.advance(Duration::from_secs(5));
    assert_eq!(with_ttl.get("forever"), None);
}

#[test]
fn expired_and_kept_expired_entries_are_not_saved() {
    let dir = Dir::new("snapshot-expired");
    let path = dir.file("near.snap");
    let clock = MockClock::new();
    let cache = Cache::builder()
        .max_entries(100)
        .keep_expired(Duration::from_secs(3600))
        .clock(clock.clone())
        .build();
    cache.insert_with_ttl(1, 1, Duration::from_secs(5));
    cache.insert_with_ttl(2, 2, Duration::from_secs(50));
    clock.advance(Duration::from_secs(10));
    assert!(cache.get_stale(&1).is_some(), "kept as a fail-safe copy");
    assert_eq!(cache.save(&path).unwrap().entries, 1);
}

#[test]
fn a_smaller_cache_loads_the_hottest_entries() {
    let dir = Dir::new("snapshot-hottest");
    let path = dir.file("near.snap");
    let cache: Cache<u32, u64> = Cache::builder().max_entries(4_000).shards(4).build();
    for k in 0..2_000u32 {
        cache.insert(k, u64::from(k));
    }
    // The hot set: every tenth key, read again and again.
    let hot: Vec<u32> = (0..2_000).filter(|k| k % 10 == 3).collect();
    for _ in 0..3 {
        for k in &hot {
            assert!(cache.get(k).is_some());
        }
    }
    cache.save(&path).unwrap();

    // A cache a fifth of the size, with shards of its own.
    let small: Cache<u32, u64> = Cache::builder().max_entries(400).shards(8).build();
    let loaded = small.load(&path).unwrap();
    assert_eq!((loaded.stored, loaded.no_room), (400, 1_600));
    assert_eq!(small.len(), 400);
    let missing: Vec<&u32> = hot.iter().filter(|k| !small.contains_key(k)).collect();
    assert!(missing.is_empty(), "hot keys not loaded: {missing:?}");
    small.check_invariants().unwrap();

    // The order survives a second restart: saved again from the small
    // cache (where the loaded entries are unused), the hot keys come first
    // still, so a cache of just their number takes them all.
    small.save(&path).unwrap();
    let tiny: Cache<u32, u64> = Cache::builder().max_entries(200).shards(1).build();
    tiny.load(&path).unwrap();
    assert_eq!(hot.iter().filter(|k| tiny.contains_key(k)).count(), 200);
}

#[test]
fn the_weight_bound_holds_on_load() {
    let dir = Dir::new("snapshot-weight");
    let path = dir.file("near.snap");
    let weigh = |_: &u32, v: &String| v.len() as u64;
    let cache = Cache::builder().max_weight(10_000).weigher(weigh).build();
    for k in 0..500u32 {
        cache.insert(k, "x".repeat(1 + (k % 20) as usize));
    }
    let before = cache.weight();
    cache.save(&path).unwrap();

    let light = Cache::builder().max_weight(1_000).weigher(weigh).build();
    let loaded = light.load(&path).unwrap();
    assert!(light.weight() <= 1_000, "weight {}", light.weight());
    assert!(light.weight() > 900, "room left unused: {}", light.weight());
    assert_eq!(loaded.stored as usize, light.len());
    assert_eq!(loaded.stored + loaded.no_room, 500);
    assert!(before > 1_000);
    light.check_invariants().unwrap();
}

#[test]
fn keys_present_keep_their_value() {
    let dir = Dir::new("snapshot-present");
    let path = dir.file("near.snap");
    let cache: Cache<u32, &'static str> = Cache::new(100);
    cache.insert(1, "old");
    cache.insert(2, "old");
    cache.save(&path).unwrap();
    let live: Cache<u32, String> = Cache::new(100);
    live.insert(1, "new".into());
    let loaded = live.load(&path);
    // &'static str does not deserialize: the types must be the same.
    assert!(matches!(loaded, Err(SnapshotError::WrongType { .. })));
    let cache: Cache<u32, String> = Cache::new(100);
    cache.insert(1, "old".into());
    cache.insert(2, "old".into());
    cache.save(&path).unwrap();
    let loaded = live.load(&path).unwrap();
    assert_eq!((loaded.stored, loaded.present), (1, 1));
    assert_eq!(live.get(&1).as_deref(), Some("new"));
    assert_eq!(live.get(&2).as_deref(), Some("old"));
}

/// A saved snapshot of 100 entries, and its bytes.
fn saved(dir: &Dir) -> (PathBuf, Vec<u8>) {
    let path = dir.file("good.snap");
    let cache: Cache<u32, String> = Cache::new(1_000);
    for k in 0..100 {
        cache.insert(k, format!("value {k}"));
    }
    cache.save(&path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    (path, bytes)
}

/// Loads `bytes` as a snapshot into a fresh cache: the error, and that
/// nothing was loaded.
fn load_bad(dir: &Dir, bytes: &[u8]) -> SnapshotError {
    let path = dir.file("bad.snap");
    std::fs::write(&path, bytes).unwrap();
    let cache: Cache<u32, String> = Cache::new(1_000);
    let e = cache.load(&path).expect_err("a bad file must be refused");
    assert_eq!(cache.len(), 0, "{e}: nothing may be loaded");
    assert!(!e.is_retryable());
    assert!(!e.to_string().is_empty());
    e
}

#[test]
fn a_truncated_file_is_refused_whole() {
    let dir = Dir::new("snapshot-truncated");
    let (_, bytes) = saved(&dir);
    for len in [bytes.len() - 1, bytes.len() / 2, 60, 20, 5] {
        let e = load_bad(&dir, &bytes[..len]);
        assert!(
            matches!(e, SnapshotError::Truncated { found, .. } if found == len as u64),
            "cut at {len}: {e:?}"
        );
    }
    assert!(matches!(
        load_bad(&dir, &[]),
        SnapshotError::Truncated { .. }
    ));
}

#[test]
fn a_flipped_byte_is_refused_whole() {
    let dir = Dir::new("snapshot-flipped");
    let (_, bytes) = saved(&dir);
    // In the body (a value), in the header (the record count), at the end
    // (the checksum itself).
    for at in [bytes.len() / 2, 35, bytes.len() - 1] {
        let mut bad = bytes.clone();
        bad[at] ^= 0x01;
        let e = load_bad(&dir, &bad);
        assert!(
            matches!(e, SnapshotError::Checksum { .. }),
            "byte {at}: {e:?}"
        );
    }
    // Every byte: always an error, never a partial load (or a panic).
    for at in 0..bytes.len() {
        let mut bad = bytes.clone();
        bad[at] ^= 0x80;
        load_bad(&dir, &bad);
    }
}

#[test]
fn another_version_or_another_file_is_refused() {
    let dir = Dir::new("snapshot-version");
    let (_, bytes) = saved(&dir);
    let mut newer = bytes.clone();
    newer[8..12].copy_from_slice(&2u32.to_le_bytes());
    assert!(matches!(
        load_bad(&dir, &newer),
        SnapshotError::Version {
            found: 2,
            supported: 1
        }
    ));
    assert!(matches!(
        load_bad(&dir, b"PK\x03\x04 a zip file, say, not a snapshot"),
        SnapshotError::NotASnapshot
    ));
    let mut trailing = bytes;
    trailing.extend_from_slice(b"more");
    assert!(matches!(
        load_bad(&dir, &trailing),
        SnapshotError::Malformed(_)
    ));
}

#[test]
fn a_snapshot_of_other_types_is_refused() {
    let dir = Dir::new("snapshot-types");
    let (path, _) = saved(&dir);
    let keys_differ: Cache<u64, String> = Cache::new(1_000);
    let e = keys_differ.load(&path).unwrap_err();
    assert!(
        matches!(&e, SnapshotError::WrongType { expected, found }
            if expected.contains("u64") && found.contains("u32")),
        "{e:?}"
    );
    assert_eq!(keys_differ.len(), 0);
    let values_differ: Cache<u32, Profile> = Cache::new(1_000);
    assert!(matches!(
        values_differ.load(&path),
        Err(SnapshotError::WrongType { .. })
    ));
    assert_eq!(values_differ.len(), 0);
}

/// A value whose `Serialize` fails while `POISON` is set.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Fragile(#[serde(serialize_with = "fragile")] u32);

static POISON: AtomicBool = AtomicBool::new(false);

fn fragile<S: serde::Serializer>(v: &u32, s: S) -> Result<S::Ok, S::Error> {
    if POISON.load(Ordering::Relaxed) && *v == 77 {
        return Err(serde::ser::Error::custom("cannot serialize 77 now"));
    }
    s.serialize_u32(*v)
}

#[test]
fn a_failed_save_leaves_the_previous_snapshot_whole() {
    let dir = Dir::new("snapshot-crash");
    let path = dir.file("near.snap");
    let cache: Cache<u32, Fragile> = Cache::new(1_000);
    for k in 0..100 {
        cache.insert(k, Fragile(k));
    }
    cache.save(&path).unwrap();
    let good = std::fs::read(&path).unwrap();

    // A save that fails midway (a value that does not serialize).
    cache.insert(1_000, Fragile(5));
    POISON.store(true, Ordering::Relaxed);
    let e = cache.save(&path).unwrap_err();
    POISON.store(false, Ordering::Relaxed);
    assert!(matches!(e, SnapshotError::Codec(_)), "{e:?}");
    assert_eq!(
        std::fs::read(&path).unwrap(),
        good,
        "the old snapshot is whole"
    );
    assert_eq!(dir.files(), ["near.snap"], "no temporary file left");

    // A save that crashed mid-write leaves a temporary file: loads read the
    // previous snapshot, and the next save goes through.
    let leftover = dir.file(".near.snap.4242-0.tmp");
    std::fs::write(&leftover, &good[..good.len() / 3]).unwrap();
    let restarted: Cache<u32, Fragile> = Cache::new(1_000);
    assert_eq!(restarted.load(&path).unwrap().stored, 100);
    assert_eq!(cache.save(&path).unwrap().entries, 101);

    // A directory that does not exist: an I/O error (worth a retry once
    // it does), nothing written.
    let e = cache.save(dir.file("missing/near.snap")).unwrap_err();
    assert!(matches!(&e, SnapshotError::Io { path, .. } if path.starts_with(dir.path())));
    assert!(e.is_retryable());
    let missing = cache.load(dir.file("none.snap")).unwrap_err();
    assert!(
        matches!(&missing, SnapshotError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    );
}

#[test]
fn saves_run_while_readers_and_writers_go_on() {
    let dir = Dir::new("snapshot-concurrent");
    let path = dir.file("near.snap");
    let cache: Arc<Cache<u64, u64>> = Arc::new(Cache::new(5_000));
    for k in 0..5_000 {
        cache.insert(k, k);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..2u64)
        .map(|t| {
            let (cache, stop) = (Arc::clone(&cache), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut k = t;
                let mut ops = 0u64;
                while !stop.load(Ordering::Relaxed) || ops < 10_000 {
                    if k % 4 == 0 {
                        cache.insert(k % 8_000, k);
                    } else {
                        cache.get(&(k % 8_000));
                    }
                    k = k
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407)
                        >> 1;
                    ops += 1;
                }
            })
        })
        .collect();
    for _ in 0..5 {
        let saved = cache.save(&path).unwrap();
        assert!(saved.entries > 4_000 && saved.entries <= 5_000);
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    cache.check_invariants().unwrap();
    let restarted: Cache<u64, u64> = Cache::new(5_000);
    let loaded = restarted.load(&path).unwrap();
    let values: HashMap<u64, u64> = restarted.iter().collect();
    assert_eq!(values.len() as u64, loaded.stored);
}

#[test]
fn relative_paths_are_saved_in_the_current_directory() {
    // A bare file name: the temporary file goes next to it, in ".".
    let name = format!("nearfar-relative-{}.snap", std::process::id());
    let cache: Cache<u8, u8> = Cache::new(10);
    cache.insert(1, 1);
    cache.save(&name).unwrap();
    let restarted: Cache<u8, u8> = Cache::new(10);
    assert_eq!(restarted.load(Path::new(&name)).unwrap().stored, 1);
    std::fs::remove_file(&name).unwrap();
}
