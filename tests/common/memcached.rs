//! Test helper: a private `memcached` process on a free loopback port.
//!
//! Include it with `#[path = "common/memcached.rs"] mod server;`. Each
//! [`Memcached`] runs its own server (`-l 127.0.0.1 -p PORT -U 0 -m 64`),
//! killed when the value is dropped; [`Memcached::stop`] and
//! [`Memcached::restart`] keep the port, for fail-over tests;
//! [`Memcached::restart_graceful`] stops it with `SIGUSR1` first, for
//! memcached's own warm restart (`-e <memory file>`).
//!
//! A missing `memcached` binary fails the test with instructions: these
//! tests never skip silently.
#![allow(dead_code)]

use std::io::ErrorKind;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

/// How long a fresh server may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// A running (or stopped) private memcached server.
pub struct Memcached {
    port: u16,
    extra_args: Vec<String>,
    child: Option<Child>,
}

impl Memcached {
    /// Starts a server on a free loopback port.
    pub fn start() -> Memcached {
        Memcached::start_with(&[])
    }

    /// Starts a server with extra command-line arguments (e.g. `["-I", "2m"]`).
    pub fn start_with(extra_args: &[&str]) -> Memcached {
        let extra_args: Vec<String> = extra_args.iter().map(|s| s.to_string()).collect();
        let mut last_error = String::new();
        // Another process may take the port between the pick and the
        // server's bind: pick another one then.
        for _ in 0..5 {
            let port = free_port();
            let deadline = Instant::now() + START_TIMEOUT;
            let mut child = spawn(port, &extra_args);
            match wait_until_accepting(&mut child, port, deadline) {
                Ok(()) => {
                    return Memcached {
                        port,
                        extra_args,
                        child: Some(child),
                    };
                }
                Err(why) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    last_error = why;
                }
            }
        }
        panic!("memcached did not start: {last_error}");
    }

    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's process id, while it runs (to pin it to a core, say).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// `127.0.0.1:PORT`, as the client's builder takes it.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Kills the server (its data is lost); the port stays reserved for
    /// [`Memcached::restart`].
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes the server (`SIGSTOP`): it keeps its data and its sockets
    /// (the kernel still accepts connections for it) but answers nothing
    /// until [`Memcached::resume`], as a stalled or swapping server does.
    pub fn pause(&self) {
        self.signal("-STOP");
        // `kill` returns once the signal is sent; wait until every thread
        // of the server has stopped, or a request sent at once may still be
        // served. Bounded: 5 s.
        let pid = self.child.as_ref().expect("the server is running").id();
        let deadline = Instant::now() + Duration::from_secs(5);
        while !all_threads_stopped(pid) {
            assert!(Instant::now() < deadline, "memcached {pid} did not stop");
            thread::sleep(Duration::from_millis(1));
        }
    }

    /// Lets a paused server run again (`SIGCONT`).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("the server is running").id();
        let status = Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {signal} {pid} failed");
    }

    /// Starts the server again on the same port (after [`Memcached::stop`]).
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    /// Stops the server gracefully and starts it again with the same
    /// arguments on the same port. `SIGUSR1` makes memcached finish its
    /// requests and exit; started with `-e <file>` (its memory in a file),
    /// it first writes `<file>.meta`, and the new process started with the
    /// same `-e` and memory settings takes the items back. memcached
    /// refuses a restart in the wall-clock second it stopped in (it checks
    /// that time went forward), so this waits for the next second.
    pub fn restart_graceful(&mut self) {
        let mut child = self.child.take().expect("the server is running");
        let status = Command::new("kill")
            .args(["-USR1", &child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -USR1 {} failed", child.id());
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(10)),
                other => {
                    let _ = child.kill();
                    panic!("memcached did not stop on SIGUSR1 in time: {other:?}");
                }
            }
        }
        let since_epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("a clock after 1970");
        let into_second = Duration::from_nanos(u64::from(since_epoch.subsec_nanos()));
        thread::sleep(Duration::from_secs(1) - into_second + Duration::from_millis(20));
        self.launch();
    }

    fn launch(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let mut child = spawn(self.port, &self.extra_args);
            match wait_until_accepting(&mut child, self.port, deadline) {
                Ok(()) => {
                    self.child = Some(child);
                    return;
                }
                // The port can still be held by the previous process's
                // sockets for a moment after a stop: try again.
                Err(why) if Instant::now() < deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    eprintln!(
                        "memcached on port {} did not start ({why}); retrying",
                        self.port
                    );
                    thread::sleep(Duration::from_millis(100));
                }
                Err(why) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("memcached on port {} did not start: {why}", self.port);
                }
            }
        }
    }
}

impl Drop for Memcached {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Whether every thread of process `pid` is stopped (state `T` in
/// `/proc/<pid>/task/*/stat`). Where /proc cannot be read, a short pause
/// stands in for the check.
fn all_threads_stopped(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        thread::sleep(Duration::from_millis(50));
        return true;
    };
    tasks.flatten().all(|task| {
        std::fs::read_to_string(task.path().join("stat")).is_ok_and(|stat| {
            // The state follows the command name, which is in parentheses.
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .is_some_and(|state| state == "T" || state == "t")
        })
    })
}

/// A loopback port nothing listens on right now, and never handed out
/// before in this process (tests run in parallel threads: two servers must
/// not race for one port).
pub fn free_port() -> u16 {
    static GIVEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral loopback port");
        let port = listener.local_addr().expect("local address").port();
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

fn spawn(port: u16, extra_args: &[String]) -> Child {
    let mut command = Command::new("memcached");
    // `-u root` is needed (and only used) when the tests run as root.
    command
        .args([
            "-l",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            "0",
            "-m",
            "64",
        ])
        .args(["-u", "root"])
        .args(extra_args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    match command.spawn() {
        Ok(child) => child,
        Err(e) if e.kind() == ErrorKind::NotFound => panic!(
            "memcached not found: install it with `apt-get install -y memcached` \
             (these tests need a real memcached binary on PATH)"
        ),
        Err(e) => panic!("cannot start memcached: {e}"),
    }
}

fn wait_until_accepting(child: &mut Child, port: u16, deadline: Instant) -> Result<(), String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let mut message = String::new();
            if let Some(stderr) = child.stderr.as_mut() {
                use std::io::Read;
                let _ = stderr.read_to_string(&mut message);
            }
            return Err(format!("exited with {status}: {}", message.trim()));
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
            // Someone answered; make sure it is our child, not a server of
            // another process on the same port (ours would exit on its
            // failed bind within moments).
            thread::sleep(Duration::from_millis(30));
            return match child.try_wait() {
                Ok(None) => Ok(()),
                Ok(Some(status)) => Err(format!("exited with {status}: port taken")),
                Err(e) => Err(e.to_string()),
            };
        }
        if Instant::now() >= deadline {
            return Err("not accepting connections in time".into());
        }
        thread::sleep(Duration::from_millis(10));
    }
}
