//! Two tiers against memcached: two `NearFar` instances stand for two
//! processes sharing one memcached.
//!
//! ```text
//! memcached -u nobody -p 11211 &   # or: apt-get install memcached
//! cargo run --example near_far
//! MEMCACHED_SERVERS=10.0.0.1:11211,10.0.0.2:11211 cargo run --example near_far
//! ```
//!
//! It shows a load that runs once for both "processes", a far hit filling
//! the second one's near tier, a remove seen by both, and the counters.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use nearfar::memcached::Client;
use nearfar::{Cache, NearFar};

fn main() -> ExitCode {
    let servers = std::env::var("MEMCACHED_SERVERS").unwrap_or_else(|_| "127.0.0.1:11211".into());
    let servers: Vec<&str> = servers.split(',').map(str::trim).collect();
    let client = match Client::builder()
        .servers(&servers)
        .connect_timeout(Duration::from_millis(300))
        .io_timeout(Duration::from_millis(300))
        .build()
    {
        Ok(client) => client,
        Err(e) => {
            eprintln!("bad MEMCACHED_SERVERS {servers:?}: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = client.version() {
        eprintln!(
            "no memcached answers at {servers:?} ({e}).\n\
             Start one with `memcached -u nobody -p 11211` (`-u` names the user \
             it runs as, which memcached requires when started as root; install it \
             with `apt-get install memcached`), or point MEMCACHED_SERVERS at yours \
             (comma-separated host:port list)."
        );
        return ExitCode::FAILURE;
    }

    let build = || -> NearFar<u64, String> {
        NearFar::builder()
            .near(Cache::builder().max_entries(10_000))
            .far(client.clone())
            .namespace("example:users:v1")
            .far_ttl(Duration::from_secs(300))
            .near_ttl(Duration::from_secs(30))
            .revalidate_after(Duration::from_secs(5))
            .build()
            .expect("valid settings")
    };
    let (web1, web2) = (build(), build());
    // Start clean, in case an earlier run left the key behind.
    web1.remove(&42);

    let slow_lookup = |id: u64| {
        std::thread::sleep(Duration::from_millis(50)); // the database
        format!("user #{id}")
    };
    let t = Instant::now();
    let a = web1.get_with(42, || slow_lookup(42));
    println!("web1: {a:?} loaded in {:?}", t.elapsed());
    let t = Instant::now();
    let b = web2.get_with(42, || slow_lookup(42));
    println!("web2: {b:?} from memcached in {:?}", t.elapsed());
    let t = Instant::now();
    let c = web2.get(&42);
    println!("web2: {c:?} from its near tier in {:?}", t.elapsed());

    web1.remove(&42);
    println!("web1 after remove: {:?}", web1.get(&42));
    web2.remove_near(&42); // or wait for near_ttl / revalidate_after
    println!("web2 after remove: {:?}", web2.get(&42));

    for (name, nf) in [("web1", &web1), ("web2", &web2)] {
        let s = nf.stats();
        println!(
            "{name}: near hits {}, far hits {}, far misses {}, loader calls {}, far errors {}",
            s.near_hits, s.far_hits, s.far_misses, s.loader_calls, s.far_errors
        );
    }
    ExitCode::SUCCESS
}
