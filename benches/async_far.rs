//! Far tier, async: throughput of single gets, single sets and `get_many`
//! with 1, 16 and 256 concurrent tasks against one memcached, for
//! nearfar's `AsyncClient` and its peers, side by side in one run.
//!
//! ```text
//! cargo bench --bench async_far
//! ```
//!
//! The bench starts its own memcached (`-t 1`: one worker thread) on a free
//! loopback port, pins it to core 0 and itself to core 1 (`taskset`; skipped
//! with a note where there are fewer than two cores or no `taskset`). The
//! async clients run on a tokio runtime of one worker thread
//! (`NEARFAR_ABENCH_RUNTIME=current` for a current-thread runtime).
//!
//! Clients (each on keys of its own, filled before measuring; values are
//! 100-byte strings; `get_many` reads 10 keys, all hits):
//!
//! * `nearfar/1`, `nearfar/4`: `nearfar::memcached::AsyncClient` with
//!   `pool_size` 1 and 4 (multiplexed, pipelined connections); typed
//!   `get::<String>`, `set`, `get_many::<String>`.
//! * `memcache`: the memcache crate's `exp::AsyncMemcache` (meta protocol;
//!   a pool of connections that each carry one request at a time, kept up
//!   to `max_idle`, set to the task count so none is redialed).
//! * `async-mc`: async-memcached's `Client` (one connection, one request at
//!   a time, `&mut self`): one client per task, each behind an uncontended
//!   tokio mutex, so each task has its own connection, its best case.
//! * `blocking`: nearfar's blocking `Client`, driven from one OS thread per
//!   task (`pool_size` = thread count, so no thread waits for a
//!   connection): how a blocking client serves concurrent callers.
//! * `minimal`: a pipelined client written here (`common/pipelined.rs`):
//!   one connection, a writer task coalescing queued requests into one
//!   write, a reader task completing them in order; `mg <key> v`,
//!   `ms <key> <len>`, `get k1 .. k10`. The ceiling on one connection.
//!
//! Each row (operation × tasks) runs every client for a slice of time, in
//! rotating order, several rounds (after one warm-up slice each): the
//! clients see the same machine within a few hundred milliseconds, which
//! matters on a VM whose speed drifts between runs. Reported: operations
//! (calls) per second, summed over the rounds, and nearfar's ratios.
//! `NEARFAR_ABENCH_SLICE_MS` (default 200) and `NEARFAR_ABENCH_ROUNDS`
//! (default 5) change the slices.
//!
//! `one <client> <get|set|get_many> <tasks> <seconds>` runs one client
//! alone and prints its operation count (for `strace -c -f`, `perf stat`):
//!
//! ```text
//! cargo bench --bench async_far --no-run   # prints the binary's path
//! strace -c -f target/release/deps/async_far-HASH one nearfar/1 get 1 3
//! ```
//!
//! Under `cargo test --benches` (no `--bench` argument) it runs a small
//! smoke version: short slices, 1 and 16 tasks, no pinning.
//!
//! Measured runs, and what `strace` and `perf` showed: `RESULTS_ASYNC.md`.
#![allow(missing_docs)]

#[path = "../tests/common/memcached.rs"]
mod server;

#[path = "common/pipelined.rs"]
mod pipelined;

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use memcache::exp::{AsyncMemcache, Ttl};
use nearfar::memcached::{AsyncClient, Client};
use pipelined::Pipelined;

const VALUE_LEN: usize = 100;
/// Keys per client: tasks cycle through them.
const KEYS: usize = 1000;
/// Keys per `get_many`.
const BATCH: usize = 10;
const TASKS: [usize; 3] = [1, 16, 256];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Get,
    Set,
    GetMany,
}

impl Op {
    const ALL: [Op; 3] = [Op::Get, Op::Set, Op::GetMany];

    fn name(self) -> &'static str {
        match self {
            Op::Get => "get",
            Op::Set => "set",
            Op::GetMany => "get_many(10)",
        }
    }

    fn from_name(name: &str) -> Option<Op> {
        match name {
            "get" => Some(Op::Get),
            "set" => Some(Op::Set),
            "get_many" => Some(Op::GetMany),
            _ => None,
        }
    }
}

enum Peer {
    Nearfar(AsyncClient),
    Memcache(AsyncMemcache),
    /// One connection per task.
    AsyncMc(Arc<Vec<tokio::sync::Mutex<async_memcached::Client>>>),
    Minimal(Pipelined),
    /// Driven from threads, not tasks.
    Blocking(Client),
}

/// A client under test, with its own keys.
struct Entry {
    name: &'static str,
    peer: Peer,
    keys: Vec<String>,
}

/// What every task shares: the value stored.
fn value() -> String {
    "x".repeat(VALUE_LEN)
}

impl Entry {
    fn key(&self, task: usize, n: usize) -> &str {
        &self.keys[(task * 7919 + n) % KEYS]
    }

    fn batch(&self, task: usize, n: usize) -> &[String] {
        let start = ((task * 7919 + n) * BATCH) % (KEYS - BATCH);
        &self.keys[start..start + BATCH]
    }

    /// One operation, checked (a miss or a short batch is a bench bug).
    async fn op(&self, op: Op, task: usize, n: usize, value: &str) {
        match (&self.peer, op) {
            (Peer::Nearfar(c), Op::Get) => {
                let got: Option<String> = c.get(self.key(task, n)).await.expect("nearfar get");
                assert!(got.is_some_and(|v| v.len() == VALUE_LEN));
            }
            (Peer::Nearfar(c), Op::Set) => c
                .set(self.key(task, n), value, Duration::ZERO)
                .await
                .expect("nearfar set"),
            (Peer::Nearfar(c), Op::GetMany) => {
                let got = c
                    .get_many::<String>(self.batch(task, n))
                    .await
                    .expect("nearfar get_many");
                assert_eq!(got.len(), BATCH);
            }
            (Peer::Memcache(c), Op::Get) => {
                let got: Option<String> = c.get(self.key(task, n)).await.expect("memcache get");
                assert!(got.is_some_and(|v| v.len() == VALUE_LEN));
            }
            (Peer::Memcache(c), Op::Set) => c
                .set(self.key(task, n), value, Ttl::NEVER)
                .await
                .expect("memcache set"),
            (Peer::Memcache(c), Op::GetMany) => {
                let keys = self.batch(task, n).iter().map(String::as_str);
                let got = c
                    .get_many::<String, &str>(keys)
                    .await
                    .expect("memcache get_many");
                assert_eq!(got.len(), BATCH);
            }
            (Peer::AsyncMc(conns), op) => {
                use async_memcached::AsciiProtocol;
                let mut conn = conns[task % conns.len()].lock().await;
                match op {
                    Op::Get => {
                        let got = conn.get(self.key(task, n)).await.expect("async-mc get");
                        assert!(
                            got.and_then(|v| v.data)
                                .is_some_and(|v| v.len() == VALUE_LEN)
                        );
                    }
                    Op::Set => conn
                        .set(self.key(task, n), value, None, None)
                        .await
                        .expect("async-mc set"),
                    Op::GetMany => {
                        let got = conn
                            .get_multi(self.batch(task, n))
                            .await
                            .expect("async-mc get_multi");
                        assert_eq!(got.len(), BATCH);
                    }
                }
            }
            (Peer::Minimal(c), Op::Get) => {
                let got = c.get(self.key(task, n)).await;
                assert!(got.is_some_and(|v| v.len() == VALUE_LEN));
            }
            (Peer::Minimal(c), Op::Set) => {
                assert!(c.set(self.key(task, n), value.as_bytes()).await);
            }
            (Peer::Minimal(c), Op::GetMany) => {
                assert_eq!(c.get_multi(self.batch(task, n)).await.len(), BATCH);
            }
            (Peer::Blocking(_), _) => unreachable!("the blocking client runs on threads"),
        }
    }

    /// One blocking operation (the `blocking` client only).
    fn op_blocking(&self, op: Op, task: usize, n: usize, value: &str) {
        let Peer::Blocking(c) = &self.peer else {
            unreachable!("only the blocking client runs on threads");
        };
        match op {
            Op::Get => {
                let got: Option<String> = c.get(self.key(task, n)).expect("blocking get");
                assert!(got.is_some_and(|v| v.len() == VALUE_LEN));
            }
            Op::Set => c
                .set(self.key(task, n), value, Duration::ZERO)
                .expect("blocking set"),
            Op::GetMany => {
                let got = c
                    .get_many::<String>(self.batch(task, n))
                    .expect("blocking get_many");
                assert_eq!(got.len(), BATCH);
            }
        }
    }
}

/// Runs `entry` with `tasks` concurrent callers for about `slice`; the
/// operations done and the time from the first start to the last finish.
fn slice(
    rt: &tokio::runtime::Runtime,
    entry: &Arc<Entry>,
    op: Op,
    tasks: usize,
    slice: Duration,
) -> (u64, Duration) {
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    if matches!(entry.peer, Peer::Blocking(_)) {
        let threads: Vec<_> = (0..tasks)
            .map(|task| {
                let (entry, stop) = (Arc::clone(entry), Arc::clone(&stop));
                thread::spawn(move || {
                    let value = value();
                    let mut n = 0;
                    while !stop.load(Ordering::Relaxed) {
                        entry.op_blocking(op, task, n, &value);
                        n += 1;
                    }
                    n as u64
                })
            })
            .collect();
        thread::sleep(slice);
        stop.store(true, Ordering::Relaxed);
        let done = threads
            .into_iter()
            .map(|t| t.join().expect("bench thread"))
            .sum();
        return (done, start.elapsed());
    }
    rt.block_on(async {
        let handles: Vec<_> = (0..tasks)
            .map(|task| {
                let (entry, stop) = (Arc::clone(entry), Arc::clone(&stop));
                tokio::spawn(async move {
                    let value = value();
                    let mut n = 0;
                    while !stop.load(Ordering::Relaxed) {
                        entry.op(op, task, n, &value).await;
                        n += 1;
                    }
                    n as u64
                })
            })
            .collect();
        tokio::time::sleep(slice).await;
        stop.store(true, Ordering::Relaxed);
        let mut done = 0;
        for handle in handles {
            done += handle.await.expect("bench task");
        }
        (done, start.elapsed())
    })
}

/// Pins process `pid` (every thread of it) to `core`; false if it could not.
fn pin(pid: u32, core: usize) -> bool {
    Command::new("taskset")
        .args(["-a", "-p", "-c", &core.to_string(), &pid.to_string()])
        .stdout(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn runtime() -> tokio::runtime::Runtime {
    let current = std::env::var("NEARFAR_ABENCH_RUNTIME").is_ok_and(|v| v == "current");
    let mut builder = if current {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(1);
        b
    };
    builder.enable_all().build().expect("tokio runtime")
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Builds every client (or only the one named `only`) and fills its keys.
fn clients(
    rt: &tokio::runtime::Runtime,
    addr: &str,
    max_tasks: usize,
    only: Option<&str>,
) -> Vec<Arc<Entry>> {
    let wanted = |name: &str| only.is_none_or(|only| only == name);
    let keys = |prefix: &str| -> Vec<String> {
        (0..KEYS).map(|i| format!("abench:{prefix}:{i}")).collect()
    };
    let nearfar = |pool| {
        Client::builder()
            .servers([addr])
            .pool_size(pool)
            .build_async()
            .expect("nearfar async client")
    };
    let entries = rt.block_on(async {
        let memcache = AsyncMemcache::builder()
            .max_idle(max_tasks)
            .connect_async([addr])
            .await
            .expect("memcache client");
        let mut async_mc = Vec::new();
        for _ in 0..if wanted("async-mc") { max_tasks } else { 1 } {
            let conn = async_memcached::Client::new(format!("tcp://{addr}"))
                .await
                .expect("async-memcached client");
            async_mc.push(tokio::sync::Mutex::new(conn));
        }
        let minimal = Pipelined::connect(addr).await.expect("minimal client");
        vec![
            Entry {
                name: "nearfar/1",
                peer: Peer::Nearfar(nearfar(1)),
                keys: keys("nf1"),
            },
            Entry {
                name: "nearfar/4",
                peer: Peer::Nearfar(nearfar(4)),
                keys: keys("nf4"),
            },
            Entry {
                name: "memcache",
                peer: Peer::Memcache(memcache),
                keys: keys("mc"),
            },
            Entry {
                name: "async-mc",
                peer: Peer::AsyncMc(Arc::new(async_mc)),
                keys: keys("amc"),
            },
            Entry {
                name: "blocking",
                peer: Peer::Blocking(
                    Client::builder()
                        .servers([addr])
                        .pool_size(max_tasks)
                        .build()
                        .expect("nearfar blocking client"),
                ),
                keys: keys("blk"),
            },
            Entry {
                name: "minimal",
                peer: Peer::Minimal(minimal),
                keys: keys("min"),
            },
        ]
    });
    // Every client stores its own keys with its own encoding, so each reads
    // back what it wrote.
    let entries: Vec<Arc<Entry>> = entries
        .into_iter()
        .filter(|e| wanted(e.name))
        .map(Arc::new)
        .collect();
    let value = value();
    for entry in &entries {
        for n in 0..KEYS {
            if matches!(entry.peer, Peer::Blocking(_)) {
                entry.op_blocking(Op::Set, 0, n, &value);
            } else {
                rt.block_on(entry.op(Op::Set, 0, n, &value));
            }
        }
    }
    entries
}

/// The measured rate of each client for one row, by name.
struct Row {
    op: Op,
    tasks: usize,
    rates: Vec<(&'static str, f64)>,
}

impl Row {
    fn rate(&self, name: &str) -> f64 {
        self.rates
            .iter()
            .find(|(n, _)| *n == name)
            .map_or(f64::NAN, |(_, r)| *r)
    }
}

fn measure(
    rt: &tokio::runtime::Runtime,
    entries: &[Arc<Entry>],
    op: Op,
    tasks: usize,
    slice_len: Duration,
    rounds: usize,
) -> Row {
    for entry in entries {
        slice(rt, entry, op, tasks, slice_len / 2);
    }
    let mut totals = vec![(0u64, Duration::ZERO); entries.len()];
    for round in 0..rounds {
        for k in 0..entries.len() {
            let i = (k + round) % entries.len();
            let (done, took) = slice(rt, &entries[i], op, tasks, slice_len);
            totals[i].0 += done;
            totals[i].1 += took;
        }
    }
    let rates = entries
        .iter()
        .zip(&totals)
        .map(|(e, (done, took))| (e.name, *done as f64 / took.as_secs_f64()))
        .collect();
    Row { op, tasks, rates }
}

fn print_tables(rows: &[Row], names: &[&'static str]) {
    println!("\n### Throughput, operations per second (thousands)\n");
    print!("| op | tasks |");
    for name in names {
        print!(" {name} |");
    }
    println!();
    print!("|---|---|");
    for _ in names {
        print!("---|");
    }
    println!();
    for row in rows {
        print!("| {} | {} |", row.op.name(), row.tasks);
        for name in names {
            print!(" {:.1} |", row.rate(name) / 1000.0);
        }
        println!();
    }
    println!("\n### Ratios (nearfar's rate ÷ the other's)\n");
    println!(
        "| op | tasks | nearfar/4 ÷ minimal | nearfar/1 ÷ minimal | nearfar/4 ÷ memcache | nearfar/4 ÷ async-mc | nearfar/1 ÷ blocking | nearfar/4 ÷ blocking |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for row in rows {
        let nf4 = row.rate("nearfar/4");
        let nf1 = row.rate("nearfar/1");
        println!(
            "| {} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |",
            row.op.name(),
            row.tasks,
            nf4 / row.rate("minimal"),
            nf1 / row.rate("minimal"),
            nf4 / row.rate("memcache"),
            nf4 / row.rate("async-mc"),
            nf1 / row.rate("blocking"),
            nf4 / row.rate("blocking"),
        );
    }
    println!("\n### The issue's targets\n");
    for row in rows {
        let nf4 = row.rate("nearfar/4");
        let nf1 = row.rate("nearfar/1");
        let check = |what: &str, ratio: f64, target: f64| {
            let verdict = if ratio >= target { "met" } else { "MISSED" };
            println!(
                "- {} at {} tasks: {what} = {ratio:.2} (target >= {target}): {verdict}",
                row.op.name(),
                row.tasks,
            );
        };
        if row.tasks == 256 && row.op != Op::GetMany {
            check("nearfar/4 ÷ minimal", nf4 / row.rate("minimal"), 0.8);
        }
        if row.tasks == 1 {
            check("nearfar/1 ÷ blocking", nf1 / row.rate("blocking"), 0.9);
            check("nearfar/4 ÷ blocking", nf4 / row.rate("blocking"), 0.9);
        }
    }
}

/// `one <client> <op> <tasks> <seconds>`.
fn one(args: &[String], rt: &tokio::runtime::Runtime, entries: &[Arc<Entry>]) {
    let usage = "usage: one <nearfar/1|nearfar/4|memcache|async-mc|blocking|minimal> \
                 <get|set|get_many> <tasks> <seconds>";
    let [name, op, tasks, secs] = args else {
        panic!("{usage}");
    };
    let entry = entries
        .iter()
        .find(|e| e.name == name)
        .unwrap_or_else(|| panic!("{usage}"));
    let op = Op::from_name(op).expect(usage);
    let tasks: usize = tasks.parse().expect(usage);
    let secs: f64 = secs.parse().expect(usage);
    let (done, took) = slice(rt, entry, op, tasks, Duration::from_secs_f64(secs));
    println!(
        "{name} {} x{tasks}: {done} operations in {:.3} s, {:.0} ops/s",
        op.name(),
        took.as_secs_f64(),
        done as f64 / took.as_secs_f64()
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let one_at = args.iter().position(|a| a == "one");
    // `cargo bench` passes `--bench`; `cargo test --benches` does not.
    let full = one_at.is_some() || args.iter().any(|a| a == "--bench");
    let started = Instant::now();

    // NEARFAR_ABENCH_SERVER=host:port: a memcached started by hand (so
    // `strace -f` sees the bench alone), neither started nor pinned here.
    let external = std::env::var("NEARFAR_ABENCH_SERVER").ok();
    let server = match external {
        Some(_) => None,
        None => Some(server::Memcached::start_with(&["-t", "1", "-c", "4096"])),
    };
    let addr = match (&external, &server) {
        (Some(addr), _) => addr.clone(),
        (None, Some(server)) => server.addr(),
        (None, None) => unreachable!(),
    };
    let two_cores = thread::available_parallelism().is_ok_and(|n| n.get() >= 2);
    // Pinned before the runtime and the clients start threads: they
    // inherit core 1.
    let pinned = full
        && two_cores
        && server
            .as_ref()
            .is_none_or(|s| s.pid().is_some_and(|pid| pin(pid, 0)))
        && pin(std::process::id(), 1);
    let rt = runtime();
    let max_tasks = if full { 256 } else { 16 };
    let only = one_at.and_then(|at| args.get(at + 1)).map(String::as_str);
    let entries = clients(&rt, &addr, max_tasks, only);

    if let Some(at) = one_at {
        one(&args[at + 1..], &rt, &entries);
        return;
    }

    let (slice_len, rounds, tasks): (_, _, &[usize]) = if full {
        (
            Duration::from_millis(env_or("NEARFAR_ABENCH_SLICE_MS", 200)),
            env_or("NEARFAR_ABENCH_ROUNDS", 5) as usize,
            &TASKS,
        )
    } else {
        (Duration::from_millis(20), 1, &TASKS[..2])
    };
    println!(
        "memcached -t 1 at {addr}; {}; runtime: {}; {} rounds of {} ms slices per client",
        if pinned {
            "server on core 0, bench on core 1"
        } else {
            "not pinned"
        },
        if std::env::var("NEARFAR_ABENCH_RUNTIME").is_ok_and(|v| v == "current") {
            "tokio current-thread"
        } else {
            "tokio multi-thread, 1 worker"
        },
        rounds,
        slice_len.as_millis()
    );
    let names: Vec<&'static str> = entries.iter().map(|e| e.name).collect();
    let mut rows = Vec::new();
    for op in Op::ALL {
        for &t in tasks {
            let row = measure(&rt, &entries, op, t, slice_len, rounds);
            eprintln!("  measured {} x{t}", op.name());
            rows.push(row);
        }
    }
    print_tables(&rows, &names);
    println!("\n(took {:.1} s)", started.elapsed().as_secs_f64());
}
