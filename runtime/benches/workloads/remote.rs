//! W10, beyond one machine: calls through Redis Streams to remote workers
//! (`oneloop-remote`), on a `redis-server` this run starts on a loopback port, beside:
//!
//! - the floor: a raw ping-pong through the same streams with the same client crate, no
//!   executor (a thread `XADD`s a request and blocks in `XREAD` for the reply; another
//!   blocks in `XREADGROUP`, then `XACK`s and `XADD`s the reply);
//! - Celery on the same Redis (broker and result backend), when `celery` can be had: from
//!   the `python3` found, or installed into `target/celery-venv` from PyPI
//!   (`python/celery_bench.py`). SKIPPED otherwise.
//!
//! Rows: a trivial call's round trip (one worker, one call at a time), and the throughput
//! of 5,000 trivial calls submitted at once through 1, 2 and 4 worker processes. oneloop's
//! workers are this bench binary started again ([`maybe_serve`]); every side's workers are
//! started and warmed before the clock starts. The whole of W10 prints SKIPPED without
//! `redis-server`.

use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::process_pools::value;
use oneloop_remote::testing::RedisServer;
use oneloop_remote::{RedisExecutor, Worker};

/// The argument that makes the bench binary a remote worker.
const WORKER_ARG: &str = "--oneloop-remote-worker";

oneloop_process::process_fn! {
    /// The trivial call: what it costs is the executor's and the broker's.
    fn echo(x: u64) -> u64 {
        x
    }
}

/// First in `main`: in a worker process W10 started, serves its queue until killed.
pub fn maybe_serve() {
    let args: Vec<String> = std::env::args().collect();
    if let [_, flag, url, queue] = &args[..]
        && flag == WORKER_ARG
    {
        let worker = Worker::builder(url, queue)
            .processes(1)
            .build()
            .expect("remote worker");
        worker.run().expect("remote worker");
        std::process::exit(0);
    }
}

/// Worker processes, killed when dropped.
struct Fleet(Vec<Child>);

impl Fleet {
    fn start(url: &str, queue: &str, count: usize) -> Fleet {
        let exe = std::env::current_exe().expect("the bench binary");
        Fleet(
            (0..count)
                .map(|_| {
                    Command::new(&exe)
                        .args([WORKER_ARG, url, queue])
                        .stdout(Stdio::null())
                        .spawn()
                        .expect("start a remote worker")
                })
                .collect(),
        )
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn runtime() -> oneloop::Runtime {
    oneloop::Runtime::builder()
        .debug(false)
        .build()
        .expect("runtime")
}

/// Warms an executor and its workers: 50 batches of four calls per worker.
async fn warm(remote: &RedisExecutor, workers: usize) {
    for _ in 0..50 {
        let batch: Vec<_> = (0..4 * workers as u64)
            .map(|i| remote.call(echo, i))
            .collect();
        for call in batch {
            call.await.expect("warm-up call");
        }
    }
}

/// `calls` sequential calls through one worker: each one's latency.
pub fn round_trip(url: &str, calls: usize) -> Vec<Duration> {
    let queue = format!("w10-rt-{}", unique());
    let _fleet = Fleet::start(url, &queue, 1);
    let remote = RedisExecutor::connect(url, &queue).expect("executor");
    runtime().block_on(async {
        warm(&remote, 1).await;
        let mut times = Vec::with_capacity(calls);
        for i in 0..calls as u64 {
            let start = Instant::now();
            assert_eq!(remote.call(echo, i).await, Ok(i));
            times.push(start.elapsed());
        }
        times
    })
}

/// Calls per second: `calls` trivial calls submitted at once through `workers` workers.
pub fn throughput(url: &str, workers: usize, calls: usize) -> f64 {
    let queue = format!("w10-tp-{}", unique());
    let _fleet = Fleet::start(url, &queue, workers);
    let remote = RedisExecutor::connect(url, &queue).expect("executor");
    runtime().block_on(async {
        warm(&remote, workers).await;
        let start = Instant::now();
        let all: Vec<_> = (0..calls as u64).map(|i| remote.call(echo, i)).collect();
        for (i, call) in all.into_iter().enumerate() {
            assert_eq!(call.await, Ok(i as u64));
        }
        calls as f64 / start.elapsed().as_secs_f64()
    })
}

/// The floor: `calls` raw round trips through a request stream and a reply stream.
pub fn floor(url: &str, calls: usize) -> Vec<Duration> {
    let queue = format!("w10-floor-{}", unique());
    let (requests, replies) = (format!("{queue}:requests"), format!("{queue}:replies"));
    let client = redis::Client::open(url).expect("url");
    let mut con = client.get_connection().expect("connect");
    redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(&requests)
        .arg("g")
        .arg("0")
        .arg("MKSTREAM")
        .query::<()>(&mut con)
        .expect("group");
    let echo_thread = {
        let mut con = client.get_connection().expect("connect");
        let (requests, replies) = (requests.clone(), replies.clone());
        std::thread::spawn(move || {
            loop {
                let read: redis::Value = redis::cmd("XREADGROUP")
                    .arg("GROUP")
                    .arg("g")
                    .arg("c")
                    .arg("COUNT")
                    .arg(1)
                    .arg("BLOCK")
                    .arg(0)
                    .arg("STREAMS")
                    .arg(&requests)
                    .arg(">")
                    .query(&mut con)
                    .expect("XREADGROUP");
                let (id, value) = first_entry(&read);
                redis::pipe()
                    .cmd("XACK")
                    .arg(&requests)
                    .arg("g")
                    .arg(&id)
                    .ignore()
                    .cmd("XADD")
                    .arg(&replies)
                    .arg("*")
                    .arg("v")
                    .arg(&value)
                    .ignore()
                    .query::<()>(&mut con)
                    .expect("reply");
                if value == b"stop" {
                    return;
                }
            }
        })
    };
    let mut last = "0-0".to_owned();
    let mut one = |value: &[u8]| {
        let start = Instant::now();
        redis::cmd("XADD")
            .arg(&requests)
            .arg("*")
            .arg("v")
            .arg(value)
            .query::<String>(&mut con)
            .expect("XADD");
        let read: redis::Value = redis::cmd("XREAD")
            .arg("BLOCK")
            .arg(0)
            .arg("STREAMS")
            .arg(&replies)
            .arg(&last)
            .query(&mut con)
            .expect("XREAD");
        last = first_entry(&read).0;
        start.elapsed()
    };
    for i in 0..200u64 {
        one(&i.to_le_bytes());
    }
    let times = (0..calls as u64).map(|i| one(&i.to_le_bytes())).collect();
    one(b"stop");
    echo_thread.join().expect("echo thread");
    times
}

/// The id and the `v` field of the first entry of an `XREAD`/`XREADGROUP` reply.
fn first_entry(reply: &redis::Value) -> (String, Vec<u8>) {
    let text = |v: &redis::Value| match v {
        redis::Value::BulkString(b) => b.clone(),
        redis::Value::SimpleString(s) => s.clone().into_bytes(),
        _ => Vec::new(),
    };
    let array = |v: &redis::Value| match v {
        redis::Value::Array(items) => items.clone(),
        redis::Value::Map(pairs) => pairs
            .iter()
            .flat_map(|(k, v)| [k.clone(), v.clone()])
            .collect(),
        _ => Vec::new(),
    };
    let streams = array(reply);
    let stream = array(&streams[0]);
    let entries = array(&stream[1]);
    let entry = array(&entries[0]);
    let fields = array(&entry[1]);
    (
        String::from_utf8(text(&entry[0])).expect("an id"),
        text(&fields[1]),
    )
}

fn unique() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

// ------------------------------------------------------------------------------------
// Celery.
// ------------------------------------------------------------------------------------

/// A Python with `celery` and `redis` importable.
pub struct Celery {
    python: PathBuf,
    /// What the script reported: `celery=5.x python=3.11.x`.
    pub about: String,
}

const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/benches/python/celery_bench.py"
);

impl Celery {
    /// Celery from the `python3` on `PATH`, else from `target/celery-venv` (made and
    /// filled from PyPI if it is not there); or why W10's Celery side is skipped.
    pub fn find() -> Result<Celery, String> {
        let system = PathBuf::from("python3");
        if let Ok(about) = run(&system, &["version"], None) {
            return Ok(Celery {
                python: system,
                about,
            });
        }
        let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/celery-venv");
        let python = venv.join("bin/python");
        if !python.exists() {
            println!(
                "  W10: installing celery into {} (from PyPI)",
                venv.display()
            );
            let made = Command::new("python3")
                .args(["-m", "venv"])
                .arg(&venv)
                .status()
                .map_err(|e| format!("SKIPPED (python3: {e})"))?;
            if !made.success() {
                return Err("SKIPPED (python3 -m venv failed)".into());
            }
            let installed = Command::new(&python)
                .args(["-m", "pip", "install", "-q", "celery", "redis", "packaging"])
                .status()
                .map_err(|e| format!("SKIPPED (pip: {e})"))?;
            if !installed.success() {
                let _ = std::fs::remove_dir_all(&venv);
                return Err("SKIPPED (pip install celery redis failed)".into());
            }
        }
        match run(&python, &["version"], None) {
            Ok(about) => Ok(Celery { python, about }),
            Err(e) => Err(format!("SKIPPED (celery cannot run: {e})")),
        }
    }

    /// Median and p99 of `calls` sequential round trips, in µs.
    pub fn round_trip(&self, url: &str, calls: usize) -> (f64, f64) {
        let line = self.run(url, &["round-trip", &calls.to_string()]);
        (value(&line, "median_us"), value(&line, "p99_us"))
    }

    /// Calls per second through `workers` worker processes.
    pub fn throughput(&self, url: &str, workers: usize, calls: usize) -> f64 {
        let line = self.run(
            url,
            &["throughput", &workers.to_string(), &calls.to_string()],
        );
        value(&line, "calls_per_s")
    }

    fn run(&self, url: &str, args: &[&str]) -> String {
        run(&self.python, args, Some(url)).unwrap_or_else(|e| panic!("{SCRIPT} {args:?}: {e}"))
    }
}

/// Runs the script with `args` (and the Redis URL); its last line of output.
fn run(python: &Path, args: &[&str], url: Option<&str>) -> io::Result<String> {
    let mut command = Command::new(python);
    command.arg(SCRIPT).args(args);
    if let Some(url) = url {
        command.env("ONELOOP_BENCH_REDIS", url);
    }
    crate::process_pools::last_line(&mut command)
}

// ------------------------------------------------------------------------------------
// The table.
// ------------------------------------------------------------------------------------

fn percentile_us(times: &mut [Duration], p: f64) -> f64 {
    times.sort();
    let i = ((times.len() as f64 - 1.0) * p).round() as usize;
    times[i].as_secs_f64() * 1e6
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// W10's rounds and its table (markdown), or why it was skipped.
pub fn w10(rounds: usize) -> String {
    let Some(server) = RedisServer::start() else {
        return "W10: SKIPPED (redis-server not found; tests/setup installs it)\n".into();
    };
    let url = server.url();
    let celery = Celery::find();
    let about = match &celery {
        Ok(celery) => format!("Celery ({})", celery.about),
        Err(why) => format!("Celery: {why}"),
    };
    println!("  W10 against {about}");
    let celery = celery.ok();
    let calls = 2_000;
    let (mut o50, mut o99, mut f50, mut f99, mut c50, mut c99) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    for _ in 0..rounds {
        let mut o = round_trip(&url, calls);
        o50.push(percentile_us(&mut o, 0.5));
        o99.push(percentile_us(&mut o, 0.99));
        let mut f = floor(&url, calls);
        f50.push(percentile_us(&mut f, 0.5));
        f99.push(percentile_us(&mut f, 0.99));
        let (m, p) = celery
            .as_ref()
            .map_or((f64::NAN, f64::NAN), |c| c.round_trip(&url, calls / 4));
        c50.push(m);
        c99.push(p);
    }
    let mut table = String::from(
        "| workload | measure | oneloop | floor: raw XADD + XREADGROUP + reply | Celery | ratio | target | met |\n\
         |---|---|---:|---:|---:|---:|---|:-:|\n",
    );
    let (o, f, c) = (median(&mut o50), median(&mut f50), median(&mut c50));
    table += &format!(
        "| W10 remote call round trip (u64) | median µs | {o:.1} | {f:.1} | {c:.1} | {:.2} (vs floor) | ≤ 2 | {} |\n",
        o / f,
        if o / f <= 2.0 { "yes" } else { "**no**" }
    );
    let (o, f, c) = (median(&mut o99), median(&mut f99), median(&mut c99));
    table += &format!(
        "| W10 remote call round trip (u64) | p99 µs | {o:.1} | {f:.1} | {c:.1} | {:.2} (vs floor) | - | - |\n",
        o / f
    );
    for workers in [1, 2, 4] {
        let calls = 5_000;
        let (mut o, mut c) = (vec![], vec![]);
        for _ in 0..rounds {
            o.push(throughput(&url, workers, calls));
            c.push(celery.as_ref().map_or(f64::NAN, |celery| {
                celery.throughput(&url, workers, calls / 5)
            }));
        }
        let (o, c) = (median(&mut o), median(&mut c));
        let met = if c.is_nan() {
            "skipped"
        } else if o >= c {
            "yes"
        } else {
            "**no**"
        };
        table += &format!(
            "| W10 throughput, {workers} worker process{} (5k u64) | calls/s | {o:.0} | - | {c:.0} | {:.2} (vs Celery) | ≥ 1 | {met} |\n",
            if workers == 1 { "" } else { "es" },
            o / c
        );
    }
    format!("W10 against {about}, redis-server on loopback\n\n{table}")
}
