//! The warm-restart settings of [`NearFarBuilder`]: the near tier's
//! snapshot on disk and the key preload from memcached (see
//! `nearfar/warm.rs`).

use std::hash::Hash;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::super::warm::Io;
use super::NearFarBuilder;

/// Warm restarts (feature `snapshot`, which `memcached` turns on): for
/// keys and values that serialize.
impl<K, V, Cl> NearFarBuilder<K, V, Cl>
where
    K: Hash + Eq + Serialize + DeserializeOwned,
    V: Clone + Serialize + DeserializeOwned,
{
    /// Warm restarts from disk: saves the near tier to the file at `path`
    /// every `every` (on this cache's [`clock`](Self::clock)) and when its
    /// last handle is dropped, and loads it when the cache is built, if
    /// the file is there. A restarted process then serves what it held
    /// before from its first call, without a far read.
    ///
    /// The file is [`Cache::save`](crate::Cache::save)'s: written
    /// atomically (a crash during a save leaves the previous one),
    /// checksummed, hottest entries first;
    /// loaded within the near tier's bounds, each entry with what was left
    /// of its near TTL when saved less the time since (the process's
    /// downtime counts; never longer than [`near_ttl`](Self::near_ttl)),
    /// and served only while the namespace's generation is the one it was
    /// saved in (see [`generation_check`](Self::generation_check)): an
    /// `invalidate_all` while the process was down is not undone. A
    /// restored entry has no CAS: the first revalidation
    /// ([`revalidate_after`](Self::revalidate_after), counted from the
    /// load) refetches it.
    ///
    /// Saves run on a thread of their own (`nearfar-snapshot`), for a
    /// `NearFar` and an `AsyncNearFar` alike, so no call waits for one;
    /// the last save runs on the thread that drops the last handle. A
    /// file that does not load (cut short, changed, of other types) is
    /// counted in [`NearFarStats::snapshot_errors`](crate::NearFarStats::snapshot_errors),
    /// the cache starts cold, and the next save replaces it. Values fail
    /// the save if they do not serialize. Counted:
    /// [`restored`](crate::NearFarStats::restored),
    /// [`snapshot_saves`](crate::NearFarStats::snapshot_saves).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use nearfar::NearFar;
    ///
    /// let path = std::env::temp_dir().join(format!("nearfar-doc-nf-{}", std::process::id()));
    /// let cache: NearFar<u32, String> = NearFar::builder()
    ///     .snapshot(&path, Duration::from_secs(60))
    ///     .build()?;
    /// cache.insert(1, "one".into());
    /// drop(cache); // saved
    ///
    /// let restarted: NearFar<u32, String> = NearFar::builder()
    ///     .snapshot(&path, Duration::from_secs(60))
    ///     .build()?;
    /// assert_eq!(restarted.stats().restored, 1);
    /// assert_eq!(restarted.get(&1).as_deref(), Some("one"));
    /// # drop(restarted);
    /// # std::fs::remove_file(&path).unwrap();
    /// # Ok::<(), nearfar::NearFarError>(())
    /// ```
    pub fn snapshot(mut self, path: impl Into<PathBuf>, every: Duration) -> Self {
        self.files.snapshot = Some(path.into());
        self.files.every = Some(every);
        self.files.io = Some(Io::new());
        self
    }

    /// Warm restarts from memcached (Hazelcast's "preloader", without
    /// values on disk): saves the near tier's keys, hottest first, to the
    /// file at `path` (when the [`snapshot`](Self::snapshot) is saved, or
    /// every 60 s without one, and when the last handle is dropped); when
    /// the cache is built, reads them again from the far tier in the
    /// background, in `get_many` batches of 1024 keys, and keeps the values
    /// found near. A restarted process is warm after a few round trips,
    /// with no copy of values on disk to go stale or leak.
    ///
    /// The preload runs on a thread of its own (`nearfar-preload`) for a
    /// `NearFar`, on a task of the current tokio runtime for an
    /// `AsyncNearFar` (none when built outside one). No call waits for it:
    /// a key not preloaded yet is read far as usual. It reads only keys not
    /// near already (those the snapshot restored), keeps values as a `get`
    /// would (for [`near_ttl`](Self::near_ttl), bounded by
    /// [`far_ttl`](Self::far_ttl)), and stops at the first batch the far
    /// tier fails or its breaker skips, or when the cache is dropped. Its
    /// values are counted in
    /// [`NearFarStats::preloaded`](crate::NearFarStats::preloaded). Without
    /// a far tier nothing is preloaded.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use nearfar::{NearFar, memcached::Client};
    ///
    /// let client = Client::builder().servers(["127.0.0.1:11211"]).build()?;
    /// let users: NearFar<u64, String> = NearFar::builder()
    ///     .far(client)
    ///     .namespace("users")
    ///     .near_ttl(Duration::from_secs(30))
    ///     .preload("/var/lib/myapp/users.keys")
    ///     .build()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn preload(mut self, path: impl Into<PathBuf>) -> Self {
        self.files.preload = Some(path.into());
        self.files.io = Some(Io::new());
        self
    }
}
