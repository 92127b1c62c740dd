//! Warm restarts (feature `snapshot`): a near tier saved to a file and
//! loaded into a new process's cache, with [`Cache::save`] and
//! [`Cache::load`].
//!
//! * **TTLs go on counting while the process is down.** A snapshot records
//!   when it was saved on the wall clock (the cache's clock:
//!   [`Clock::wall_time`](crate::Clock::wall_time)) and what was left of
//!   each entry's TTL then; the load takes the time since off, and skips
//!   the entries that expired meanwhile.
//! * **The hottest first.** Entries are listed by how likely the cache was
//!   to keep them (use count, then segment: see [`Cache::save`]), and a
//!   load stores them in that order without evicting anything: loaded into
//!   a smaller cache, a snapshot fills it with its hottest entries, and the
//!   entry and weight bounds hold.
//! * **All or nothing.** A file that is cut short, has a byte changed, is
//!   of another format version or of other key and value types is refused
//!   with a [`SnapshotError`] before a single entry is stored: the file is
//!   read whole, checked (a magic, a version, CRC-32 checksums over its
//!   header and its body) and decoded, then loaded.
//! * **Saved atomically.** The file is written under a temporary name next
//!   to it, flushed to disk and renamed over the old one: a crash or an
//!   error during a save leaves the previous snapshot as it was.
//! * **Readers never wait.** Saving copies each shard's entries out, the
//!   shard locked only while they are picked (lookups take no lock at all),
//!   then encodes them and writes the file with no lock held.
//!
//! Keys and values go through the [`codec`](crate::codec) (the
//! [`DefaultCodec`]: text, integers and bytes as such, anything else in
//! bincode 2). The layout of the file is in the `format` module's docs.

mod format;
mod read;

use std::any::type_name;
use std::cmp::Reverse;
use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Cache;
use crate::codec::{Codec, CodecError, DefaultCodec};
use crate::store::Restored;
use format::{Header, Kind};
#[cfg_attr(
    not(feature = "memcached"),
    allow(unused_imports, reason = "NearFar's warm restarts (feature memcached)")
)]
pub(crate) use read::{read_entries, read_keys};

/// Why a snapshot could not be saved or loaded. Nothing was loaded when
/// [`Cache::load`] returns one, and a failed [`Cache::save`] left the
/// previous file as it was.
#[derive(Debug)]
#[non_exhaustive]
pub enum SnapshotError {
    /// Reading, writing, flushing or renaming a file failed (`path` is the
    /// file the operation was on: the snapshot, or the temporary file a
    /// save writes first). A retry may help (a full disk, permissions).
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The file does not start as a snapshot does: it is something else.
    NotASnapshot,
    /// The file is of another version of the format than this build
    /// reads (it was written by another version of nearfar).
    Version {
        /// The file's version.
        found: u32,
        /// The version this build reads and writes.
        supported: u32,
    },
    /// The file is shorter than its header says: it was cut off (a copy
    /// that did not finish, a full disk).
    Truncated {
        /// The length the header implies, in bytes.
        expected: u64,
        /// The file's length.
        found: u64,
    },
    /// A checksum does not match: bytes of the file changed after it was
    /// written.
    Checksum {
        /// The checksum the file carries.
        stored: u32,
        /// The checksum of the bytes as they are.
        computed: u32,
    },
    /// The checksums match but the content does not parse (bytes after
    /// its end, a record that runs out): not a file nearfar wrote.
    Malformed(String),
    /// The file holds other types than asked for (keys and values are
    /// told apart by their Rust type names), or keys only where entries
    /// were asked for, or the other way round.
    WrongType {
        /// What the caller reads.
        expected: String,
        /// What the file holds.
        found: String,
    },
    /// A key or value did not encode (saving: its `Serialize` failed), or
    /// an entry of the file did not decode into its type (loading). Not
    /// worth a retry.
    Codec(CodecError),
}

impl SnapshotError {
    fn io(path: &Path, source: std::io::Error) -> SnapshotError {
        SnapshotError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// Whether trying again may succeed: only for I/O errors. The others
    /// are in the file or the data, and stay the same.
    ///
    /// ```
    /// let e = nearfar::SnapshotError::NotASnapshot;
    /// assert!(!e.is_retryable());
    /// ```
    pub fn is_retryable(&self) -> bool {
        matches!(self, SnapshotError::Io { .. })
    }
}

impl fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SnapshotError::Io { path, source } => {
                write!(f, "snapshot I/O on {}: {source}", path.display())
            }
            SnapshotError::NotASnapshot => f.write_str("not a nearfar snapshot file"),
            SnapshotError::Version { found, supported } => write!(
                f,
                "snapshot of format version {found}; this build reads version {supported}"
            ),
            SnapshotError::Truncated { expected, found } => write!(
                f,
                "snapshot cut short: {found} bytes where its header says {expected}"
            ),
            SnapshotError::Checksum { stored, computed } => write!(
                f,
                "snapshot corrupt: checksum {computed:#010x} where the file says {stored:#010x}"
            ),
            SnapshotError::Malformed(why) => write!(f, "snapshot malformed: {why}"),
            SnapshotError::WrongType { expected, found } => {
                write!(f, "snapshot holds {found}, not {expected}")
            }
            SnapshotError::Codec(e) => write!(f, "snapshot entry: {e}"),
        }
    }
}

impl std::error::Error for SnapshotError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SnapshotError::Io { source, .. } => Some(source),
            SnapshotError::Codec(e) => Some(e),
            _ => None,
        }
    }
}

impl From<CodecError> for SnapshotError {
    fn from(e: CodecError) -> Self {
        SnapshotError::Codec(e)
    }
}

/// What [`Cache::save`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Saved {
    /// Entries (or keys) in the file.
    pub entries: u64,
    /// The file's length in bytes.
    pub bytes: u64,
}

/// What [`Cache::load`] did with a snapshot's entries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Loaded {
    /// Entries stored.
    pub stored: u64,
    /// Entries whose TTL ran out since the snapshot was saved: skipped.
    pub expired: u64,
    /// Entries skipped because the cache was at its bound (by entries,
    /// weight or memory) in their shard: the snapshot's colder ones.
    pub no_room: u64,
    /// Entries whose key the cache holds already: skipped (the value in
    /// the cache is newer).
    pub present: u64,
}

impl<K, V, S> Cache<K, V, S>
where
    K: Hash + Eq + Serialize,
    V: Clone + Serialize,
    S: BuildHasher,
{
    /// Saves the cache's live entries to the file at `path`, hottest first,
    /// with what is left of their TTLs, replacing the file atomically (see
    /// the [module docs](crate::snapshot)). Returns how many entries and
    /// bytes were written.
    ///
    /// Lookups go on as usual meanwhile (they take no lock); each shard is
    /// locked only while its entries are picked, then they are encoded and
    /// written with no lock held. Expired entries (those `keep_expired`
    /// keeps included) are left out.
    ///
    /// "Hottest first" is the order the cache would evict them in,
    /// reversed: entries used since they last passed a list tail first
    /// (the most used first), then the protected WARM segment, then COLD,
    /// then the HOT probation segment, each from the latest arrived. Across
    /// shards the lists are interleaved by rank.
    ///
    /// # Errors
    /// [`SnapshotError::Codec`] when a key or value does not encode, and
    /// [`SnapshotError::Io`] when the file cannot be written; the file at
    /// `path` is then as it was.
    ///
    /// # Examples
    ///
    /// ```
    /// use nearfar::Cache;
    ///
    /// let path = std::env::temp_dir().join(format!("nearfar-doc-save-{}", std::process::id()));
    /// let cache: Cache<String, u64> = Cache::new(1_000);
    /// cache.insert("answer".into(), 42);
    /// let saved = cache.save(&path)?;
    /// assert_eq!(saved.entries, 1);
    ///
    /// // Another process (or a new cache) loads it.
    /// let restarted: Cache<String, u64> = Cache::new(1_000);
    /// let loaded = restarted.load(&path)?;
    /// assert_eq!(loaded.stored, 1);
    /// assert_eq!(restarted.get("answer"), Some(42));
    /// # std::fs::remove_file(&path).unwrap();
    /// # Ok::<(), nearfar::SnapshotError>(())
    /// ```
    pub fn save(&self, path: impl AsRef<Path>) -> Result<Saved, SnapshotError> {
        write_file(path.as_ref(), self.save_bytes()?)
    }

    /// The snapshot file [`save`](Self::save) writes, as bytes, and its
    /// number of entries.
    fn save_bytes(&self) -> Result<(Vec<u8>, u64), SnapshotError> {
        let codec = DefaultCodec::new();
        let saved_at = self.wall_time();
        let shards =
            self.export(|key, value, ttl, uses| entry_record(&codec, key, value, ttl, uses));
        encode_entries::<K, V>(saved_at, 0, shards)
    }
}

impl<K, V, S> Cache<K, V, S>
where
    K: Hash + Eq + DeserializeOwned,
    V: Clone + DeserializeOwned,
    S: BuildHasher,
{
    /// Loads the snapshot at `path` (written by [`save`](Self::save)) into
    /// this cache, hottest entries first, without evicting anything: an
    /// entry goes in while its shard has room for it under the cache's
    /// entry, weight and memory bounds, and keys the cache holds already
    /// keep their value. Each entry gets what was left of its TTL when the
    /// snapshot was saved less the time since (on the wall clock of this
    /// cache's clock, see [`Clock::wall_time`](crate::Clock::wall_time));
    /// those with nothing left are skipped, and an entry saved without a
    /// TTL gets this cache's default, as with [`insert`](Self::insert).
    /// Loads of a key in progress are not superseded.
    ///
    /// # Errors
    /// Before anything is stored (a file is read and checked whole first):
    /// [`SnapshotError::Io`] when the file cannot be read;
    /// [`SnapshotError::NotASnapshot`], [`SnapshotError::Version`],
    /// [`SnapshotError::Truncated`], [`SnapshotError::Checksum`] or
    /// [`SnapshotError::Malformed`] when it is not a whole snapshot of this
    /// format; [`SnapshotError::WrongType`] when it holds other key or value
    /// types; [`SnapshotError::Codec`] when an entry does not decode.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use nearfar::{Cache, MockClock};
    ///
    /// let path = std::env::temp_dir().join(format!("nearfar-doc-load-{}", std::process::id()));
    /// let clock = MockClock::new();
    /// let cache = Cache::builder().max_entries(100).clock(clock.clone()).build();
    /// cache.insert_with_ttl(1u32, "one".to_string(), Duration::from_secs(60));
    /// cache.save(&path)?;
    ///
    /// clock.advance(Duration::from_secs(45)); // the process is down for 45 s
    /// let restarted: Cache<u32, String> =
    ///     Cache::builder().max_entries(100).clock(clock.clone()).build();
    /// restarted.load(&path)?;
    /// clock.advance(Duration::from_secs(14));
    /// assert_eq!(restarted.get(&1).as_deref(), Some("one"));
    /// clock.advance(Duration::from_secs(1)); // 60 s since it was written
    /// assert_eq!(restarted.get(&1), None);
    /// # std::fs::remove_file(&path).unwrap();
    /// # Ok::<(), nearfar::SnapshotError>(())
    /// ```
    pub fn load(&self, path: impl AsRef<Path>) -> Result<Loaded, SnapshotError> {
        self.load_bytes(&format::read(path.as_ref())?)
    }

    /// Loads the snapshot file `file`, as [`load`](Self::load) does the
    /// file it reads: decoded whole first, then stored.
    fn load_bytes(&self, file: &[u8]) -> Result<Loaded, SnapshotError> {
        let entries = read::decode_entries::<K, V>(file, self.wall_time())?;
        let mut loaded = Loaded {
            expired: entries.expired,
            ..Loaded::default()
        };
        for (key, value, ttl, uses) in entries.items {
            match self.restore(key, value, ttl, uses) {
                Restored::Stored => loaded.stored += 1,
                Restored::Present => loaded.present += 1,
                Restored::NoRoom => loaded.no_room += 1,
            }
        }
        Ok(loaded)
    }
}

// ---- The crate's API for NearFar's snapshot and key preload ----

/// A key or value as a record holds it: its codec's flags, length, bytes.
fn push_item(
    record: &mut Vec<u8>,
    codec: &DefaultCodec,
    item: &(impl Serialize + ?Sized),
) -> Result<(), CodecError> {
    let encoded = codec.encode(item)?;
    let len = u32::try_from(encoded.data.len())
        .map_err(|_| CodecError::Encode(format!("{} bytes: over 4 GiB", encoded.data.len())))?;
    record.extend_from_slice(&encoded.flags.to_le_bytes());
    record.extend_from_slice(&len.to_le_bytes());
    record.extend_from_slice(&encoded.data);
    Ok(())
}

/// One entry (or key) of a file being written, encoded, with the use
/// count the entries are ordered by.
pub(crate) struct Record {
    uses: u8,
    bytes: Vec<u8>,
}

/// The record of an entry with `ttl` left (`None`: no expiry) and use
/// count `uses`.
pub(crate) fn entry_record<K, V>(
    codec: &DefaultCodec,
    key: &K,
    value: &V,
    ttl: Option<Duration>,
    uses: u8,
) -> Result<Record, CodecError>
where
    K: Serialize + ?Sized,
    V: Serialize + ?Sized,
{
    let mut bytes = Vec::with_capacity(48);
    // At least 1 ns: 0 means "no TTL", and an entry with nothing left was
    // not exported.
    let ttl = ttl.map_or(0, |t| {
        u64::try_from(t.as_nanos()).unwrap_or(u64::MAX).max(1)
    });
    bytes.extend_from_slice(&ttl.to_le_bytes());
    bytes.push(uses);
    push_item(&mut bytes, codec, key)?;
    push_item(&mut bytes, codec, value)?;
    Ok(Record { uses, bytes })
}

/// The record of a key (a preload list's) of use count `uses`.
#[cfg_attr(
    not(feature = "memcached"),
    allow(dead_code, reason = "NearFar's key preload (feature memcached)")
)]
pub(crate) fn key_record<K: Serialize + ?Sized>(
    codec: &DefaultCodec,
    key: &K,
    uses: u8,
) -> Result<Record, CodecError> {
    let mut bytes = Vec::with_capacity(16);
    push_item(&mut bytes, codec, key)?;
    Ok(Record { uses, bytes })
}

/// Writes a file of entries of `(K, V)` saved at `saved_at`, of the
/// namespace's `generation` (0 for a plain cache), from each shard's
/// records, hottest first (see [`interleave`]).
#[cfg_attr(
    not(feature = "memcached"),
    allow(dead_code, reason = "NearFar's snapshot (feature memcached)")
)]
pub(crate) fn write_entries<K, V>(
    path: &Path,
    saved_at: SystemTime,
    generation: u64,
    shards: Records,
) -> Result<Saved, SnapshotError> {
    write_file(path, encode_entries::<K, V>(saved_at, generation, shards)?)
}

/// The file [`write_entries`] writes, and its number of entries.
fn encode_entries<K, V>(
    saved_at: SystemTime,
    generation: u64,
    shards: Records,
) -> Result<(Vec<u8>, u64), SnapshotError> {
    let types = (type_name::<K>(), type_name::<V>());
    encode(Kind::Entries, types, saved_at, generation, shards)
}

/// Writes a file of keys `K` (a preload list), as [`write_entries`].
#[cfg_attr(
    not(feature = "memcached"),
    allow(dead_code, reason = "NearFar's key preload (feature memcached)")
)]
pub(crate) fn write_keys<K>(
    path: &Path,
    saved_at: SystemTime,
    generation: u64,
    shards: Records,
) -> Result<Saved, SnapshotError> {
    let types = (type_name::<K>(), "");
    write_file(
        path,
        encode(Kind::Keys, types, saved_at, generation, shards)?,
    )
}

/// Each shard's records, hottest first, as `Cache::export` makes them (a
/// record that did not encode fails the save).
pub(crate) type Records = Vec<Vec<Result<Record, CodecError>>>;

/// Writes the file `encode` made at `path`, atomically.
fn write_file(path: &Path, (file, entries): (Vec<u8>, u64)) -> Result<Saved, SnapshotError> {
    format::write_atomically(path, &file)?;
    Ok(Saved {
        entries,
        bytes: file.len() as u64,
    })
}

/// The file of `kind` for `shards`' records, and its number of records.
fn encode(
    kind: Kind,
    (key_type, value_type): (&str, &str),
    saved_at: SystemTime,
    generation: u64,
    shards: Records,
) -> Result<(Vec<u8>, u64), SnapshotError> {
    let shards = shards
        .into_iter()
        .map(|records| records.into_iter().collect::<Result<Vec<_>, _>>())
        .collect::<Result<Vec<_>, _>>()?;
    let mut records = Vec::with_capacity(shards.iter().flatten().map(|r| r.bytes.len()).sum());
    let mut count = 0u64;
    for record in interleave(&shards) {
        records.extend_from_slice(&record.bytes);
        count += 1;
    }
    let header = Header {
        kind,
        saved_at: nanos_since_epoch(saved_at),
        generation,
        count,
        key_type,
        value_type,
    };
    Ok((format::encode(&header, &records), count))
}

/// The shards' lists merged into one, hottest first. Each list is in its
/// shard's order, most used first: the merge takes the entries by use
/// count, and among those of one count by rank, an entry's place among its
/// shard's entries of that count as a share of their number (the 10th of
/// 100 ranks with the 1st of 10), so any prefix of the result holds about
/// the same share of each shard's hottest entries. (A loading cache need
/// not have the saving cache's shards: it reads the one list.)
fn interleave(shards: &[Vec<Record>]) -> impl Iterator<Item = &Record> {
    let mut order: Vec<(Reverse<u8>, u64, usize, usize)> =
        Vec::with_capacity(shards.iter().map(Vec::len).sum());
    for (shard, list) in shards.iter().enumerate() {
        let mut start = 0;
        for run in list.chunk_by(|a, b| a.uses == b.uses) {
            let len = run.len() as u128;
            for (i, record) in run.iter().enumerate() {
                // Below 2^32: i < len.
                let rank = (((i as u128) << 32) / len) as u64;
                order.push((Reverse(record.uses), rank, shard, start + i));
            }
            start += run.len();
        }
    }
    order.sort_unstable();
    order
        .into_iter()
        .map(move |(_, _, shard, i)| &shards[shard][i])
}

fn nanos_since_epoch(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// **Not part of nearfar's API: no stability guarantee, may change in any
/// release.** Snapshots as bytes, with no file: the loads and the save that
/// [`Cache::load`], [`Cache::save`] and `NearFar`'s key preload run on the
/// bytes of a file, and a way to make changed bytes pass the checksums,
/// reachable only so that the fuzz target (`fuzz/`) can drive them from
/// outside the crate.
#[doc(hidden)]
pub mod __fuzz_snapshot {
    use std::hash::{BuildHasher, Hash};

    use serde::Serialize;
    use serde::de::DeserializeOwned;

    use super::{Loaded, SnapshotError, format, read};
    use crate::Cache;

    /// The bytes [`Cache::save`] writes.
    pub fn save<K, V, S>(cache: &Cache<K, V, S>) -> Result<Vec<u8>, SnapshotError>
    where
        K: Hash + Eq + Serialize,
        V: Clone + Serialize,
        S: BuildHasher,
    {
        cache.save_bytes().map(|(file, _)| file)
    }

    /// [`Cache::load`] of a file holding `file`.
    pub fn load<K, V, S>(cache: &Cache<K, V, S>, file: &[u8]) -> Result<Loaded, SnapshotError>
    where
        K: Hash + Eq + DeserializeOwned,
        V: Clone + DeserializeOwned,
        S: BuildHasher,
    {
        cache.load_bytes(file)
    }

    /// A key preload list's generation and keys, as `NearFar` reads them.
    pub fn read_keys<K: DeserializeOwned>(file: &[u8]) -> Result<(u64, Vec<K>), SnapshotError> {
        read::decode_keys(file)
    }

    /// Writes the body's length and both checksums into `file` for the
    /// bytes it holds, so a changed file passes them and reaches decoding.
    pub fn seal(file: &mut [u8]) {
        format::seal(file);
    }
}

#[cfg(test)]
mod tests {
    use super::{Record, interleave};

    fn list(records: &[(u8, u8)]) -> Vec<Record> {
        records
            .iter()
            .map(|&(uses, tag)| Record {
                uses,
                bytes: vec![tag],
            })
            .collect()
    }

    #[test]
    fn lists_interleave_by_use_count_then_rank() {
        let shards = vec![
            list(&[(0, 10), (0, 11), (0, 12), (0, 13)]),
            list(&[(0, 20), (0, 21)]),
            vec![],
        ];
        let merged: Vec<u8> = interleave(&shards).map(|r| r.bytes[0]).collect();
        assert_eq!(merged, vec![10, 20, 11, 12, 21, 13]);
        let shards = vec![
            list(&[(3, 10), (1, 11), (0, 12)]),
            list(&[(2, 20), (2, 21), (2, 22), (0, 23)]),
        ];
        let merged: Vec<u8> = interleave(&shards).map(|r| r.bytes[0]).collect();
        assert_eq!(merged, vec![10, 20, 21, 22, 11, 12, 23]);
    }
}
