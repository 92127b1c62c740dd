//! Resident memory per entry: 1,000,000 entries of `u64 -> [u8; 64]` in a
//! cache of capacity 1,000,000, for every cache.
//!
//! Each cache is measured in a fresh child process (this bench re-executes
//! itself with `--child NAME`), which reads VmRSS before building the cache
//! and after filling it, so no cache pays for another's freed-but-kept heap.
//! Bytes per entry divide the growth by the entries actually resident at the
//! end (a cache may evict a little below its nominal capacity); "overhead"
//! subtracts the 72 bytes of key and value.
//!
//! Run: `cargo bench --bench memory`. Under `cargo test --benches` (no
//! `--bench` argument) it fills 10,000 entries instead.
#![allow(missing_docs)]

mod common;

use std::process::Command;

use common::{BenchCache, Kind, Visitor, rss_bytes, value_for};

/// Bytes of one entry's payload: a u64 key and a `[u8; 64]` value.
const PAYLOAD: f64 = 72.0;

/// Builds a cache of capacity `n`, fills it with `n` distinct keys, and
/// returns (entries resident, RSS growth in bytes).
struct Fill(usize);

impl Visitor<common::Value> for Fill {
    type Output = (usize, u64);

    fn visit<C: BenchCache<common::Value> + 'static>(self, _kind: Kind) -> (usize, u64) {
        let n = self.0;
        let before = rss_bytes().expect("read RSS");
        let cache = C::with_capacity(n);
        for k in 0..n as u64 {
            // Spread the keys as real ids would be, not 0..n in order.
            let key = k.wrapping_mul(0x9E37_79B9_7F4A_7C15);
            cache.insert(key, value_for(key));
        }
        cache.settle();
        let len = cache.len();
        let after = rss_bytes().expect("read RSS");
        std::hint::black_box(&cache);
        (len, after.saturating_sub(before))
    }
}

fn child(name: &str, n: usize) {
    let kind = Kind::from_name(name).unwrap_or_else(|| panic!("unknown cache {name:?}"));
    let (len, grown) = kind.visit(Fill(n));
    // One machine-readable line for the parent.
    println!("{len} {grown}");
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let full = args.iter().any(|a| a == "--bench");
    let n = if full { 1_000_000 } else { 10_000 };
    if let Some(i) = args.iter().position(|a| a == "--child") {
        child(&args[i + 1], n);
        return;
    }
    let exe = std::env::current_exe().expect("current_exe");
    println!("### RSS per entry, {n} x (u64 -> [u8; 64]), capacity {n}\n");
    println!("| cache | entries resident | RSS growth (MiB) | bytes/entry | overhead/entry |");
    println!("|---|---|---|---|---|");
    for &kind in Kind::ALL {
        let mut cmd = Command::new(&exe);
        if full {
            cmd.arg("--bench");
        }
        let out = cmd
            .args(["--child", kind.name()])
            .output()
            .expect("run child");
        assert!(
            out.status.success(),
            "child for {} failed: {}",
            kind.name(),
            String::from_utf8_lossy(&out.stderr)
        );
        let line = String::from_utf8_lossy(&out.stdout);
        let mut fields = line
            .split_whitespace()
            .map(|f| f.parse::<u64>().expect("child output"));
        let (len, grown) = (fields.next().unwrap_or(0), fields.next().unwrap_or(0));
        let per_entry = grown as f64 / len.max(1) as f64;
        println!(
            "| {} | {len} | {:.1} | {per_entry:.1} | {:.1} |",
            kind.name(),
            grown as f64 / (1 << 20) as f64,
            per_entry - PAYLOAD
        );
    }
}
