//! Stampede protection across "processes": several NearFar instances (each
//! with its own near tier) sharing one memcached, many threads each, all
//! asking for one missing key at once.
#![cfg(feature = "memcached")]

#[path = "common/memcached.rs"]
mod server;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use nearfar::NearFar;
use nearfar::memcached::Client;
use server::Memcached;

const INSTANCES: usize = 4;
const THREADS: usize = 16;

fn instance(mc: &Memcached) -> NearFar<String, String> {
    let client = Client::builder()
        .servers([mc.addr()])
        .io_timeout(Duration::from_millis(500))
        .connect_timeout(Duration::from_millis(500))
        .build()
        .expect("client");
    NearFar::builder()
        .far(client)
        .namespace("stampede")
        .lease_wait(Duration::from_secs(10))
        .lease_ttl(Duration::from_secs(30))
        .build()
        .expect("NearFar")
}

#[test]
fn four_instances_of_sixteen_threads_run_the_loader_once() {
    let mc = Memcached::start();
    for round in 0..3 {
        let key = format!("hot-{round}");
        let calls = Arc::new(AtomicUsize::new(0));
        let barrier = Arc::new(Barrier::new(INSTANCES * THREADS));
        let instances: Vec<_> = (0..INSTANCES).map(|_| instance(&mc)).collect();
        let mut handles = Vec::new();
        for nf in &instances {
            for _ in 0..THREADS {
                let (nf, calls, barrier, key) =
                    (nf.clone(), calls.clone(), barrier.clone(), key.clone());
                handles.push(thread::spawn(move || {
                    barrier.wait();
                    nf.get_with(key, || {
                        calls.fetch_add(1, Ordering::SeqCst);
                        thread::sleep(Duration::from_millis(200));
                        "computed once".to_string()
                    })
                }));
            }
        }
        for h in handles {
            assert_eq!(h.join().unwrap(), "computed once");
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1, "round {round}");
        let waits: u64 = instances.iter().map(|i| i.stats().coalesced_waits).sum();
        let lease_waits: u64 = instances.iter().map(|i| i.stats().lease_waits).sum();
        let timeouts: u64 = instances.iter().map(|i| i.stats().lease_timeouts).sum();
        assert_eq!(timeouts, 0);
        // Every caller but the one loader waited, in-process or on the lease
        // (a caller arriving after the value landed hits instead).
        assert!(waits <= (INSTANCES * THREADS - 1) as u64, "{waits}");
        assert!(lease_waits <= (INSTANCES - 1) as u64, "{lease_waits}");
    }
}
