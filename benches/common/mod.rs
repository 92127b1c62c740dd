//! Code shared by the near-tier benches: the cache adapters, the key
//! generators (SplitMix64 + Zipf), the trace reader and the replay loops.
//!
//! Each bench file uses a different subset, hence the `dead_code` allowance.
//! The sampler and the trace parsers are unit-tested through
//! `bench_common.rs` (the `bench_common` test target of this package),
//! which includes this file.
#![allow(dead_code)]

use std::fs::File;
use std::hash::Hash;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

// ---------------------------------------------------------------------------
// Cache adapters
// ---------------------------------------------------------------------------

/// The value every bench stores unless it says otherwise: 64 bytes, as a
/// typical small cached record.
pub type Value = [u8; 64];

/// The value stored under `key`: distinct per key so no cache can share it.
pub fn value_for(key: u64) -> Value {
    let mut v = [0u8; 64];
    v[..8].copy_from_slice(&key.to_le_bytes());
    v
}

/// The one interface the benches drive: a bounded (or, for dashmap, unbounded)
/// concurrent `u64 -> V` map.
pub trait BenchCache<V>: Send + Sync + Sized {
    /// A cache holding at most `capacity` entries.
    fn with_capacity(capacity: usize) -> Self;
    fn get(&self, key: u64) -> Option<V>;
    fn insert(&self, key: u64, value: V);
    /// Entries resident now (after any pending maintenance).
    fn len(&self) -> usize;
    /// Bring the cache to the state a synchronous cache is in after `insert`
    /// returns: evictions applied, the bound holding. A no-op for every cache
    /// but the moka family, whose policy work is buffered and applied later.
    fn settle(&self) {}
}

impl<V: Clone + Send + Sync + 'static> BenchCache<V> for nearfar::Cache<u64, V> {
    fn with_capacity(capacity: usize) -> Self {
        nearfar::Cache::new(capacity)
    }
    fn get(&self, key: u64) -> Option<V> {
        nearfar::Cache::get(self, &key)
    }
    fn insert(&self, key: u64, value: V) {
        nearfar::Cache::insert(self, key, value)
    }
    fn len(&self) -> usize {
        nearfar::Cache::len(self)
    }
}

impl<V: Clone + Send + Sync + 'static> BenchCache<V> for quick_cache::sync::Cache<u64, V> {
    fn with_capacity(capacity: usize) -> Self {
        quick_cache::sync::Cache::new(capacity)
    }
    fn get(&self, key: u64) -> Option<V> {
        quick_cache::sync::Cache::get(self, &key)
    }
    fn insert(&self, key: u64, value: V) {
        quick_cache::sync::Cache::insert(self, key, value)
    }
    fn len(&self) -> usize {
        quick_cache::sync::Cache::len(self)
    }
}

impl<V: Clone + Send + Sync + 'static> BenchCache<V> for moka::sync::Cache<u64, V> {
    fn with_capacity(capacity: usize) -> Self {
        moka::sync::Cache::new(capacity as u64)
    }
    fn get(&self, key: u64) -> Option<V> {
        moka::sync::Cache::get(self, &key)
    }
    fn insert(&self, key: u64, value: V) {
        moka::sync::Cache::insert(self, key, value)
    }
    fn len(&self) -> usize {
        self.run_pending_tasks();
        self.entry_count() as usize
    }
    fn settle(&self) {
        self.run_pending_tasks();
    }
}

impl<V: Clone + Send + Sync + 'static> BenchCache<V> for mini_moka::sync::Cache<u64, V> {
    fn with_capacity(capacity: usize) -> Self {
        mini_moka::sync::Cache::new(capacity as u64)
    }
    fn get(&self, key: u64) -> Option<V> {
        mini_moka::sync::Cache::get(self, &key)
    }
    fn insert(&self, key: u64, value: V) {
        mini_moka::sync::Cache::insert(self, key, value)
    }
    fn len(&self) -> usize {
        self.settle();
        self.entry_count() as usize
    }
    fn settle(&self) {
        mini_moka::sync::ConcurrentCacheExt::sync(self);
    }
}

/// dashmap with the same hasher nearfar uses: no eviction, so it is the
/// speed ceiling (it grows to every key it is given; `capacity` only
/// pre-sizes it).
pub type DashMapAhash<V> = dashmap::DashMap<u64, V, ahash::RandomState>;

impl<V: Clone + Send + Sync + 'static> BenchCache<V> for DashMapAhash<V> {
    fn with_capacity(capacity: usize) -> Self {
        dashmap::DashMap::with_capacity_and_hasher(capacity, ahash::RandomState::new())
    }
    fn get(&self, key: u64) -> Option<V> {
        dashmap::DashMap::get(self, &key).map(|r| r.value().clone())
    }
    fn insert(&self, key: u64, value: V) {
        dashmap::DashMap::insert(self, key, value);
    }
    fn len(&self) -> usize {
        dashmap::DashMap::len(self)
    }
}

/// The caches under comparison, by name, so a bench can loop over them and a
/// child process can be told which one to build.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Nearfar,
    QuickCache,
    Moka,
    MiniMoka,
    DashMap,
}

impl Kind {
    /// Every cache, dashmap last (it is the no-eviction ceiling).
    pub const ALL: &'static [Kind] = &[
        Kind::Nearfar,
        Kind::QuickCache,
        Kind::Moka,
        Kind::MiniMoka,
        Kind::DashMap,
    ];

    /// The caches that evict: the ones a hit ratio means something for.
    pub const EVICTING: &'static [Kind] =
        &[Kind::Nearfar, Kind::QuickCache, Kind::Moka, Kind::MiniMoka];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Nearfar => "nearfar",
            Kind::QuickCache => "quick_cache",
            Kind::Moka => "moka",
            Kind::MiniMoka => "mini-moka",
            Kind::DashMap => "dashmap",
        }
    }

    pub fn from_name(name: &str) -> Option<Kind> {
        Kind::ALL.iter().copied().find(|k| k.name() == name)
    }

    /// Calls `f.visit::<C>()` with `C` the cache type this kind names.
    pub fn visit<V, F>(self, f: F) -> F::Output
    where
        V: Clone + Send + Sync + 'static,
        F: Visitor<V>,
    {
        match self {
            Kind::Nearfar => f.visit::<nearfar::Cache<u64, V>>(self),
            Kind::QuickCache => f.visit::<quick_cache::sync::Cache<u64, V>>(self),
            Kind::Moka => f.visit::<moka::sync::Cache<u64, V>>(self),
            Kind::MiniMoka => f.visit::<mini_moka::sync::Cache<u64, V>>(self),
            Kind::DashMap => f.visit::<DashMapAhash<V>>(self),
        }
    }
}

/// Something to do with a cache type chosen at run time (see [`Kind::visit`]).
pub trait Visitor<V> {
    type Output;
    fn visit<C: BenchCache<V> + 'static>(self, kind: Kind) -> Self::Output;
}

// ---------------------------------------------------------------------------
// Key generation
// ---------------------------------------------------------------------------

/// SplitMix64 (Steele, Lea & Flood, 2014): tiny, fast, and plenty for
/// drawing benchmark keys.
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1), with 53 bits of precision.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// Zipf(s) over ranks `1..=n`: P(rank = k) = k^-s / H(n, s). Sampling is by
/// inverse transform over a precomputed CDF (one binary search per draw),
/// which is exact up to f64 rounding.
pub struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    pub fn new(n: usize, s: f64) -> Self {
        assert!(n > 0, "Zipf needs at least one rank");
        let mut cdf = Vec::with_capacity(n);
        let mut sum = 0.0f64;
        for k in 1..=n {
            sum += (k as f64).powf(-s);
            cdf.push(sum);
        }
        for c in &mut cdf {
            *c /= sum;
        }
        // Guard the top against rounding so every u in [0, 1) finds a rank.
        *cdf.last_mut().expect("n > 0") = 1.0;
        Zipf { cdf }
    }

    /// The theoretical probability of `rank` (1-based).
    pub fn probability(&self, rank: usize) -> f64 {
        let below = if rank >= 2 { self.cdf[rank - 2] } else { 0.0 };
        self.cdf[rank - 1] - below
    }

    /// A rank in `1..=n`.
    pub fn sample(&self, rng: &mut SplitMix64) -> u64 {
        let u = rng.next_f64();
        self.cdf.partition_point(|&c| c <= u) as u64 + 1
    }
}

/// Number of distinct keys in the synthetic workloads.
pub const ZIPF_KEYS: usize = 1_000_000;
/// Cache capacity in the synthetic workloads.
pub const CAPACITY: usize = 100_000;

/// `len` keys drawn Zipf(s) over `ZIPF_KEYS` ranks. A rank is scrambled
/// into a key by a fixed odd multiplier (a bijection on u64) so hot keys are
/// not also numerically adjacent; the seed fixes the stream, so every cache
/// sees the same one.
pub fn zipf_stream(s: f64, len: usize, seed: u64) -> Vec<u64> {
    let zipf = Zipf::new(ZIPF_KEYS, s);
    let mut rng = SplitMix64::new(seed);
    (0..len)
        .map(|_| zipf.sample(&mut rng).wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .collect()
}

// ---------------------------------------------------------------------------
// Replay loops
// ---------------------------------------------------------------------------

/// Hit/miss counts of one replay.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub hits: u64,
    pub misses: u64,
}

impl Counts {
    pub fn miss_ratio(self) -> f64 {
        self.misses as f64 / (self.hits + self.misses).max(1) as f64
    }
    pub fn hit_ratio(self) -> f64 {
        1.0 - self.miss_ratio()
    }
}

/// Cache-aside: `get`, and on a miss `insert`. With `settle`, the cache's
/// deferred maintenance runs after every insert (see [`BenchCache::settle`]),
/// which is what hit-ratio measurements want and throughput ones do not.
pub fn cache_aside<V, C: BenchCache<V>>(
    cache: &C,
    keys: &[u64],
    make: impl Fn(u64) -> V,
    settle: bool,
) -> Counts {
    let mut counts = Counts::default();
    for &k in keys {
        if std::hint::black_box(cache.get(k)).is_some() {
            counts.hits += 1;
        } else {
            counts.misses += 1;
            cache.insert(k, make(k));
            if settle {
                cache.settle();
            }
        }
    }
    counts
}

/// Mixed 90/10: every tenth operation is an insert of its key, the others
/// are gets. Returns the hits among the gets.
pub fn mixed_90_10<V, C: BenchCache<V>>(cache: &C, keys: &[u64], make: impl Fn(u64) -> V) -> u64 {
    let mut hits = 0;
    for (i, &k) in keys.iter().enumerate() {
        if i % 10 == 9 {
            cache.insert(k, make(k));
        } else if std::hint::black_box(cache.get(k)).is_some() {
            hits += 1;
        }
    }
    hits
}

/// Only `get`s: the read-only row replays keys every cache holds, so every
/// read is a hit. Returns the hits.
pub fn read_only<V, C: BenchCache<V>>(cache: &C, keys: &[u64]) -> u64 {
    let mut hits = 0;
    for &k in keys {
        if std::hint::black_box(cache.get(k)).is_some() {
            hits += 1;
        }
    }
    hits
}

/// The replay workloads of the throughput benches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    /// `get`; on a miss, `insert`.
    CacheAside,
    /// 90% `get`, 10% `insert`.
    Mixed,
    /// `get` only, of keys the cache holds (see [`read_only`]).
    ReadOnly,
}

impl Workload {
    /// The two workloads of `near`; `interleaved` adds [`Workload::ReadOnly`].
    pub const ALL: [Workload; 2] = [Workload::CacheAside, Workload::Mixed];

    pub fn name(self) -> &'static str {
        match self {
            Workload::CacheAside => "cache_aside",
            Workload::Mixed => "mixed_90_10",
            Workload::ReadOnly => "read_only",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        [Workload::CacheAside, Workload::Mixed, Workload::ReadOnly]
            .into_iter()
            .find(|w| w.name() == name)
    }

    /// Replays `keys` once on this thread.
    pub fn run<C: BenchCache<Value>>(self, cache: &C, keys: &[u64]) {
        match self {
            Workload::CacheAside => {
                std::hint::black_box(cache_aside(cache, keys, value_for, false));
            }
            Workload::Mixed => {
                std::hint::black_box(mixed_90_10(cache, keys, value_for));
            }
            Workload::ReadOnly => {
                std::hint::black_box(read_only(cache, keys));
            }
        }
    }

    /// Replays `keys`, split into `threads` disjoint slices run at once.
    pub fn run_batch<C: BenchCache<Value>>(self, cache: &C, keys: &[u64], threads: usize) {
        if threads == 1 {
            self.run(cache, keys);
            return;
        }
        std::thread::scope(|scope| {
            for part in keys.chunks(keys.len().div_ceil(threads)) {
                scope.spawn(move || self.run(cache, part));
            }
        });
    }
}

// ---------------------------------------------------------------------------
// Traces
// ---------------------------------------------------------------------------

/// The on-disk formats in `shared/traces` (see `shared/README.md`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TraceFormat {
    /// Text lines `start count ignored reqno`, standing for keys
    /// `start .. start+count-1` (ARC traces).
    Arc,
    /// One decimal key per line; lines starting with `*` and blank lines
    /// are skipped (LIRS traces).
    Lirs,
    /// One decimal u64 per line.
    Text,
    /// Big-endian i32 keys, no header (cache2k traces).
    I32Be,
}

/// Where the real traces are: `$NEARFAR_TRACES`, else `../shared/traces`
/// beside the repository (as CI checks it out).
pub fn traces_dir() -> PathBuf {
    match std::env::var_os("NEARFAR_TRACES") {
        Some(dir) => PathBuf::from(dir),
        // This package sits in benches/, one level below the repository.
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/traces"),
    }
}

/// The format of a trace file, from the folder it sits in (which names the
/// trace's origin) and its extension under any compression suffix.
pub fn trace_format(path: &Path) -> Option<TraceFormat> {
    let name = path.file_name()?.to_str()?;
    let stem = name
        .strip_suffix(".zst")
        .or_else(|| name.strip_suffix(".xz"))
        .or_else(|| name.strip_suffix(".gz"))
        .unwrap_or(name);
    let dir = path.parent()?.file_name()?.to_str()?;
    match (dir, Path::new(stem).extension()?.to_str()?) {
        ("arc", "lis") => Some(TraceFormat::Arc),
        ("lirs", "trace") => Some(TraceFormat::Lirs),
        ("cache2k", "trace") => Some(TraceFormat::I32Be),
        ("libcachesim", "txt") => Some(TraceFormat::Text),
        _ => None,
    }
}

/// Every trace under `dir` (one level of subfolders) with a known format,
/// sorted by path.
pub fn list_traces(dir: &Path) -> io::Result<Vec<(PathBuf, TraceFormat)>> {
    let mut out = Vec::new();
    for sub in std::fs::read_dir(dir)? {
        let sub = sub?.path();
        if !sub.is_dir() {
            continue;
        }
        for file in std::fs::read_dir(&sub)? {
            let file = file?.path();
            if let Some(format) = trace_format(&file) {
                out.push((file, format));
            }
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// The file's bytes, decompressed by extension (.zst, .xz, .gz).
pub fn open_decompressed(path: &Path) -> io::Result<Vec<u8>> {
    let file = BufReader::new(File::open(path)?);
    let mut out = Vec::new();
    match path.extension().and_then(|e| e.to_str()) {
        Some("zst") => {
            let mut dec = ruzstd::decoding::StreamingDecoder::new(file)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
            dec.read_to_end(&mut out)?;
        }
        Some("xz") => {
            let mut file = file;
            lzma_rs::xz_decompress(&mut file, &mut out)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
        }
        Some("gz") => {
            flate2::read::MultiGzDecoder::new(file).read_to_end(&mut out)?;
        }
        _ => {
            let mut file = file;
            file.read_to_end(&mut out)?;
        }
    }
    Ok(out)
}

fn bad_line(line: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("bad trace line: {line:?}"),
    )
}

fn parse_u64(field: Option<&str>, line: &str) -> io::Result<u64> {
    field
        .and_then(|f| f.parse().ok())
        .ok_or_else(|| bad_line(line))
}

/// The key sequence of a decompressed trace.
pub fn parse_trace(bytes: &[u8], format: TraceFormat) -> io::Result<Vec<u64>> {
    let mut keys = Vec::new();
    if format == TraceFormat::I32Be {
        if bytes.len() % 4 != 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "i32be trace length is not a multiple of 4",
            ));
        }
        keys.extend(
            bytes
                .chunks_exact(4)
                // Reinterpret as u32 so negative keys stay distinct.
                .map(|c| i32::from_be_bytes([c[0], c[1], c[2], c[3]]) as u32 as u64),
        );
        return Ok(keys);
    }
    for line in bytes.lines() {
        let line = line?;
        let line = line.trim();
        match format {
            TraceFormat::Arc => {
                if line.is_empty() {
                    continue;
                }
                let mut fields = line.split_ascii_whitespace();
                let start = parse_u64(fields.next(), line)?;
                let count = parse_u64(fields.next(), line)?;
                keys.extend(start..start + count);
            }
            TraceFormat::Lirs => {
                if line.is_empty() || line.starts_with('*') {
                    continue;
                }
                keys.push(parse_u64(Some(line), line)?);
            }
            TraceFormat::Text => {
                if line.is_empty() {
                    continue;
                }
                keys.push(parse_u64(Some(line), line)?);
            }
            TraceFormat::I32Be => unreachable!("handled above"),
        }
    }
    Ok(keys)
}

/// Reads, decompresses and parses one trace.
pub fn read_trace(path: &Path, format: TraceFormat) -> io::Result<Vec<u64>> {
    parse_trace(&open_decompressed(path)?, format)
}

/// Number of distinct items in `items`.
pub fn unique_count<T: Hash + Eq>(items: &[T]) -> usize {
    items.iter().collect::<std::collections::HashSet<_>>().len()
}

// ---------------------------------------------------------------------------
// Memory
// ---------------------------------------------------------------------------

/// This process's resident set size in bytes (VmRSS from /proc/self/status).
pub fn rss_bytes() -> io::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map(|kb| kb * 1024)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no VmRSS in /proc/self/status"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_is_deterministic_and_uniformish() {
        let mut a = SplitMix64::new(7);
        let mut b = SplitMix64::new(7);
        let xs: Vec<f64> = (0..100_000).map(|_| a.next_f64()).collect();
        assert!(xs.iter().all(|&x| (0.0..1.0).contains(&x)));
        assert_eq!(a.next_u64(), {
            for _ in 0..100_000 {
                b.next_f64();
            }
            b.next_u64()
        });
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        assert!((mean - 0.5).abs() < 0.005, "mean {mean}");
    }

    /// H(n, s) by direct summation, independently of the sampler's CDF.
    fn harmonic(n: usize, s: f64) -> f64 {
        (1..=n).map(|k| (k as f64).powf(-s)).sum()
    }

    fn check_frequencies(s: f64) {
        let n = 1_000_000;
        let zipf = Zipf::new(n, s);
        let h = harmonic(n, s);
        let draws = 2_000_000u64;
        let mut rng = SplitMix64::new(42);
        let mut counts = [0u64; 11];
        for _ in 0..draws {
            let r = zipf.sample(&mut rng);
            assert!((1..=n as u64).contains(&r));
            if r <= 10 {
                counts[r as usize] += 1;
            }
        }
        for rank in [1usize, 2, 10] {
            let p = (rank as f64).powf(-s) / h;
            assert!((zipf.probability(rank) - p).abs() < 1e-12);
            let expected = p * draws as f64;
            let sigma = (draws as f64 * p * (1.0 - p)).sqrt();
            let got = counts[rank] as f64;
            assert!(
                (got - expected).abs() < 5.0 * sigma,
                "s={s} rank {rank}: got {got}, expected {expected:.0} ± {sigma:.0}"
            );
        }
    }

    #[test]
    fn zipf_rank_frequencies_match_theory_s099() {
        check_frequencies(0.99);
    }

    #[test]
    fn zipf_rank_frequencies_match_theory_s12() {
        check_frequencies(1.2);
    }

    #[test]
    fn zipf_stream_keys_are_distinct_per_rank() {
        let keys = zipf_stream(0.99, 10_000, 1);
        assert_eq!(keys, zipf_stream(0.99, 10_000, 1));
        assert!(unique_count(&keys) > 1_000);
    }

    #[test]
    fn parses_arc() {
        let keys = parse_trace(b"10 3 0 1\n\n7 1 0 2\n", TraceFormat::Arc).unwrap();
        assert_eq!(keys, [10, 11, 12, 7]);
    }

    #[test]
    fn parses_lirs() {
        let keys = parse_trace(b"*comment\n5\n\n 6 \n*\n5\n", TraceFormat::Lirs).unwrap();
        assert_eq!(keys, [5, 6, 5]);
    }

    #[test]
    fn parses_text_and_rejects_garbage() {
        assert_eq!(
            parse_trace(b"1\n18446744073709551615\n", TraceFormat::Text).unwrap(),
            [1, u64::MAX]
        );
        assert!(parse_trace(b"1\nx\n", TraceFormat::Text).is_err());
    }

    #[test]
    fn parses_i32be() {
        let keys = parse_trace(&[0, 0, 1, 0, 0xff, 0xff, 0xff, 0xff], TraceFormat::I32Be).unwrap();
        assert_eq!(keys, [256, u32::MAX as u64]);
        assert!(parse_trace(&[0, 0, 1], TraceFormat::I32Be).is_err());
    }

    #[test]
    fn formats_from_paths() {
        let f = |p: &str| trace_format(Path::new(p));
        assert_eq!(f("t/arc/OLTP.lis.zst"), Some(TraceFormat::Arc));
        assert_eq!(f("t/lirs/loop.trace.gz"), Some(TraceFormat::Lirs));
        assert_eq!(f("t/cache2k/web07.trace.xz"), Some(TraceFormat::I32Be));
        assert_eq!(
            f("t/libcachesim/cloudPhysicsIO.txt"),
            Some(TraceFormat::Text)
        );
        assert_eq!(f("t/cache2k/LICENSE.txt"), None);
    }

    #[test]
    fn cache_aside_counts_on_every_peer() {
        struct Check;
        impl Visitor<u64> for Check {
            type Output = ();
            fn visit<C: BenchCache<u64> + 'static>(self, kind: Kind) {
                let cache = C::with_capacity(1_000);
                let keys: Vec<u64> = (0..50).chain(0..50).collect();
                let counts = cache_aside(&cache, &keys, |k| k, true);
                assert_eq!(
                    counts,
                    Counts {
                        hits: 50,
                        misses: 50
                    },
                    "{}",
                    kind.name()
                );
                assert_eq!(cache.get(3), Some(3), "{}", kind.name());
                assert_eq!(cache.len(), 50, "{}", kind.name());
            }
        }
        for &kind in Kind::ALL {
            kind.visit(Check);
        }
    }
}
