//! A throwaway `redis-server` for tests, demos and benchmarks: started on a free loopback
//! port in a folder of its own, with no persistence, checked to be the very process that
//! was started (a test never talks to a server it did not start), killed and restarted on
//! the same port for fault tests, and killed, reaped and removed when dropped. Where
//! `redis-server` is not installed, [`RedisServer::start`] prints a SKIPPED line and returns
//! `None`.

use std::fs::OpenOptions;
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// How long a server may take to answer its first PING. Generous (it starts in a few
/// milliseconds), so a slow CI machine is not a failure; it only turns a hang into one.
const READY_LIMIT: Duration = Duration::from_secs(10);

/// How many times a start is tried when the port turns out to be taken (another process
/// bound the port between our look and the server's bind).
const START_ATTEMPTS: usize = 5;

/// How long one probe waits for an answer: a server that is up answers at once, and
/// something else on the port (that never speaks RESP) must not hold the start for long.
const PROBE_LIMIT: Duration = Duration::from_millis(500);

/// What `start` prints when it cannot run: `.ci/run` fails in CI on this line.
const SKIPPED: &str =
    "SKIPPED: redis-server not found (run tests/setup, or apt-get install redis-server)";

/// A `redis-server` started by this process, listening on `127.0.0.1:port`, with no
/// persistence.
///
/// # Examples
///
/// ```no_run
/// use oneloop_remote::testing::RedisServer;
///
/// // `None` where redis-server is not installed (SKIPPED is printed).
/// if let Some(server) = RedisServer::start() {
///     let remote = oneloop_remote::RedisExecutor::connect(&server.url(), "jobs")?;
/// }
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct RedisServer {
    /// The server process; `None` between `kill` and `restart`.
    child: Option<Child>,
    port: u16,
    /// The `redis-server` binary found on `PATH`, for `restart`.
    binary: PathBuf,
    /// The server's working folder (`--dir`) and its log; removed on drop.
    dir: PathBuf,
}

impl RedisServer {
    /// Starts a server on a free loopback port and waits until it answers PING; `None`
    /// (after printing SKIPPED) when `redis-server` is not installed.
    ///
    /// # Panics
    ///
    /// When the server is installed but does not come up within 10 s, with its
    /// log in the message.
    pub fn start() -> Option<RedisServer> {
        let Some(binary) = find_on_path("redis-server") else {
            // Straight to the descriptor: libtest captures `eprintln!` of a passing test,
            // and this line must reach the output for `.ci/run` to see it.
            let _ = writeln!(std::io::stderr(), "{SKIPPED}");
            return None;
        };
        let mut server = RedisServer {
            child: None,
            port: 0,
            binary,
            dir: unique_dir(),
        };
        for _ in 0..START_ATTEMPTS {
            server.port = free_port();
            if server.launch() {
                return Some(server);
            }
        }
        panic!(
            "redis-server did not start in {START_ATTEMPTS} attempts; last log:\n{}",
            server.log()
        );
    }

    /// `redis://127.0.0.1:port/`, for `redis::Client::open`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// The loopback port it listens on (the same after a `restart`).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's pid, or `None` after `kill`.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills the server with SIGKILL (no shutdown, no goodbye to its clients: a crash) and
    /// reaps it. Its port is free again once this returns.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port after a `kill` (empty: nothing was saved),
    /// and waits until it answers PING.
    ///
    /// # Panics
    ///
    /// When it does not come up within 10 s in any of five tries
    /// (another process took the port meanwhile).
    pub fn restart(&mut self) {
        self.kill();
        for _ in 0..START_ATTEMPTS {
            if self.launch() {
                return;
            }
            // Someone else holds the port: give them a moment to let it go.
            thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "redis-server did not restart on port {} in {START_ATTEMPTS} attempts; log:\n{}",
            self.port,
            self.log()
        );
    }

    /// The server's working folder: its log, and nothing else (no persistence).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Everything the server wrote (all its starts), for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("redis.log")).unwrap_or_default()
    }

    /// One try at starting the server on `self.port`: true once it answers PING as the
    /// process we started; false (and nothing left running) when it exited first, which
    /// is how a taken port shows.
    fn launch(&mut self) -> bool {
        std::fs::create_dir_all(&self.dir).expect("create the redis-server folder");
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("redis.log"))
            .expect("open the redis-server log");
        let mut command = Command::new(&self.binary);
        command
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            // No persistence: a restart starts empty, and nothing is written but the log.
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .args(["--daemonize", "no"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log handle"))
            .stderr(log);
        die_with_this_thread(&mut command);
        let mut child = command.spawn().expect("spawn redis-server");
        let deadline = Instant::now() + READY_LIMIT;
        loop {
            if child.try_wait().expect("poll redis-server").is_some() {
                return false;
            }
            // Answered by our process, not by one that got the port first.
            if answering_pid(self.port, deadline) == Some(child.id()) {
                self.child = Some(child);
                return true;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "redis-server on port {} did not answer PING within {READY_LIMIT:?}; log:\n{}",
                    self.port,
                    self.log()
                );
            }
            thread::sleep(Duration::from_millis(5));
        }
    }
}

impl std::fmt::Debug for RedisServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisServer")
            .field("port", &self.port)
            .field("pid", &self.pid())
            .finish_non_exhaustive()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The pid of the server answering PONG on `port` (from `INFO server`), or `None` when
/// nothing answers yet. Every step is bounded by [`PROBE_LIMIT`] and by `deadline`.
fn answering_pid(port: u16, deadline: Instant) -> Option<u32> {
    let left = deadline
        .checked_duration_since(Instant::now())
        .filter(|left| !left.is_zero())?
        .min(PROBE_LIMIT);
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).ok()?;
    let mut con = client.get_connection_with_timeout(left).ok()?;
    con.set_read_timeout(Some(left)).ok()?;
    con.set_write_timeout(Some(left)).ok()?;
    let pong: String = redis::cmd("PING").query(&mut con).ok()?;
    if pong != "PONG" {
        return None;
    }
    let info: String = redis::cmd("INFO").arg("server").query(&mut con).ok()?;
    info.lines()
        .find_map(|line| line.strip_prefix("process_id:"))
        .and_then(|pid| pid.trim().parse().ok())
}

/// A loopback port nobody listens on right now. The kernel hands out a free one; it may be
/// taken again before the server binds it, which `launch` notices and `start` retries.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    listener.local_addr().expect("local address").port()
}

/// `name` in the first `PATH` folder that holds it as an executable file.
fn find_on_path(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;

    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|folder| folder.join(name))
        .find(|file| {
            std::fs::metadata(file)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// A fresh folder name under the temp folder, unique per process and per server.
fn unique_dir() -> PathBuf {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    std::env::temp_dir().join(format!(
        "oneloop-redis-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ))
}

/// Makes the child die (SIGKILL) when the thread that starts it ends, whatever the reason:
/// a test that hangs, or a process that is killed, leaves no server behind. (A server must
/// therefore be started on a thread that outlives its use, as a test's own thread does.)
#[allow(unsafe_code)]
fn die_with_this_thread(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the child between `fork` and `exec`, where only
    // async-signal-safe calls are allowed: it makes one `prctl` system call, allocates
    // nothing and takes no lock.
    unsafe {
        command.pre_exec(|| {
            rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
                .map_err(std::io::Error::from)
        });
    }
}
