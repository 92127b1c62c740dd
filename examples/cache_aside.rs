//! Cache-aside in front of a slow database, with several threads.
//!
//! ```text
//! cargo run --release --example cache_aside                     # near tier only
//! MEMCACHED_SERVERS=127.0.0.1:11211 cargo run --release --example cache_aside
//! ```
//!
//! Eight threads serve 2,000 requests each for 1,000 users, popular users
//! far more often (a Zipf-like mix). A database query takes 5 ms. With
//! `MEMCACHED_SERVERS` set, the cache also uses memcached (a second run then
//! finds the users there and barely touches the database).

use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use nearfar::memcached::Client;
use nearfar::{Cache, NearFar};

const THREADS: u64 = 8;
const REQUESTS_PER_THREAD: u64 = 2_000;
const USERS: u64 = 1_000;
const QUERY_COST: Duration = Duration::from_millis(5);

/// The slow database.
struct Database {
    queries: AtomicU64,
}

impl Database {
    fn load_user(&self, id: u64) -> Result<String, String> {
        self.queries.fetch_add(1, Ordering::Relaxed);
        thread::sleep(QUERY_COST);
        Ok(format!("{{\"id\":{id},\"name\":\"user{id}\"}}"))
    }
}

/// A cheap Zipf-like picker: rank = USERS^u - 1 for a uniform u.
fn pick(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    let u = (*state >> 11) as f64 / (1u64 << 53) as f64;
    ((USERS as f64).powf(u) - 1.0) as u64 % USERS
}

fn main() {
    let mut builder = NearFar::builder()
        .near(Cache::builder().max_entries(500))
        .near_ttl(Duration::from_secs(60))
        .namespace("example:aside:v1");
    match std::env::var("MEMCACHED_SERVERS") {
        Ok(servers) => {
            let client = Client::builder()
                .servers(servers.split(',').map(str::trim))
                .connect_timeout(Duration::from_millis(200))
                .io_timeout(Duration::from_millis(200))
                .build()
                .expect("MEMCACHED_SERVERS: a comma-separated host:port list");
            println!("two tiers: near (500 entries) + memcached at {servers}");
            builder = builder.far(client);
        }
        Err(_) => println!("near tier only (set MEMCACHED_SERVERS to add memcached)"),
    }
    let users: NearFar<u64, String> = builder.build().expect("valid settings");
    let db = Database {
        queries: AtomicU64::new(0),
    };

    let start = Instant::now();
    thread::scope(|s| {
        for t in 0..THREADS {
            let (users, db) = (users.clone(), &db);
            s.spawn(move || {
                let mut rng = 0x9e37_79b9_7f4a_7c15 ^ (t + 1);
                for _ in 0..REQUESTS_PER_THREAD {
                    let id = pick(&mut rng);
                    let user = users
                        .try_get_with(id, || db.load_user(id))
                        .expect("the database does not fail here");
                    assert!(user.contains(&format!("\"id\":{id},")));
                }
            });
        }
    });
    let elapsed = start.elapsed();
    let total = THREADS * REQUESTS_PER_THREAD;
    let s = users.stats();
    println!("{total} requests in {elapsed:?}");
    println!(
        "database queries: {} (without a cache: {total}, about {:?} of querying)",
        db.queries.load(Ordering::Relaxed),
        QUERY_COST * total as u32
    );
    println!(
        "near hits {}, far hits {}, far misses {}, coalesced waits {}, far errors {}",
        s.near_hits, s.far_hits, s.far_misses, s.coalesced_waits, s.far_errors
    );
}
