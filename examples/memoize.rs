//! The main job: memoise an expensive function in process memory.
//!
//! Run with `cargo run --release --example memoize` (no server needed).
//!
//! Four threads ask for the prices of 5,000 products, most often for a few
//! popular ones (a Zipf-like mix, as real traffic is). Computing a price takes
//! about a millisecond. One attribute memoises it, in a cache with room for a
//! fifth of the products: concurrent misses of one product run one
//! computation (the others wait for it), repeats of the popular products are
//! served from memory, and a rarely asked product may be evicted and
//! computed again later.

use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

const THREADS: u64 = 4;
const REQUESTS_PER_THREAD: u64 = 5_000;
const PRODUCTS: u64 = 5_000;
const COST: Duration = Duration::from_millis(1);

/// How many times the function body really ran.
static COMPUTED: AtomicU64 = AtomicU64::new(0);

/// The expensive function: pretend to query a pricing service. Memoised in
/// process memory, with room for a fifth of the products.
#[nearfar::memoize(max_entries = 1000)]
fn price(product: u64) -> u64 {
    COMPUTED.fetch_add(1, Ordering::Relaxed);
    thread::sleep(COST);
    1_000 + product * 37 % 9_000
}

/// A cheap Zipf-like product picker: rank = PRODUCTS^u - 1 for uniform u.
fn pick(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    let u = (*state >> 11) as f64 / (1u64 << 53) as f64;
    ((PRODUCTS as f64).powf(u) as u64)
        .saturating_sub(1)
        .min(PRODUCTS - 1)
}

fn main() {
    let started = Instant::now();
    thread::scope(|s| {
        for t in 0..THREADS {
            s.spawn(move || {
                let mut rng = 0x9e37_79b9_7f4a_7c15 ^ (t + 1);
                for _ in 0..REQUESTS_PER_THREAD {
                    let product = pick(&mut rng);
                    assert_eq!(price(product), 1_000 + product * 37 % 9_000);
                }
            });
        }
    });
    let elapsed = started.elapsed();

    let requests = THREADS * REQUESTS_PER_THREAD;
    let computed = COMPUTED.load(Ordering::Relaxed);
    let uncached = COST * requests as u32 / THREADS as u32;
    let stats = price_cache().stats();
    println!("nearfar memoize example");
    println!("  requests           {requests} from {THREADS} threads");
    println!(
        "  computations       {computed} ({:.1}% of requests)",
        100.0 * computed as f64 / requests as f64
    );
    println!("  wall time          {elapsed:.2?} (about {uncached:.2?} without the cache)");
    println!(
        "  time saved         {:.2?}",
        uncached.saturating_sub(elapsed)
    );
    println!(
        "  hits / misses      {} / {} (hit ratio {:.1}%)",
        stats.hits,
        stats.misses,
        100.0 * stats.hit_ratio()
    );
    println!(
        "  coalesced waits    {} (threads that waited for another's computation)",
        stats.load_waits
    );
    println!("  evicted            {}", stats.evicted_capacity);
    println!("  entries            {} (bound 1000)", stats.entries);
}
