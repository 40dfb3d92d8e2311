//! 12: Beyond one machine: the checksums of lesson 08, run by workers through Redis.
//!
//! Lesson 08 moved the checksum off the loop onto a pool of this process; lesson 11 onto
//! processes of this machine. When one machine is not enough, the same registered function
//! goes to worker processes anywhere, through a Redis stream: the service's route changes
//! from `pool.call(checksum, ..)` to `remote.call(checksum, ..)`, nothing else. Here the
//! workers are this program started again (`worker` mode), on this machine, against a
//! `redis-server` the lesson starts on a free loopback port; on a real fleet they are the
//! same binary on other machines.
//!
//! Three runs, the same load: one worker; two workers; two workers, one of which is killed
//! (SIGKILL, a machine lost) a second into the run. The calls it held are taken over by the
//! other worker once the visibility timeout has passed (delivery is at least once), and
//! every request is still answered.
//!
//! Run with: cargo run --release --example 12_scale_out (needs `redis-server`:
//! `tests/setup` installs it).

use std::cell::RefCell;
use std::io;
use std::process::{Child, Command, Stdio};
use std::rc::Rc;
use std::sync::LazyLock;
use std::time::Duration;

use oneloop_examples::crc32;
use oneloop_examples::http::{self, Response};
use oneloop_examples::loadgen::{Load, percentile};
use oneloop_examples::ms;
use oneloop_remote::testing::RedisServer;
use oneloop_remote::{RedisExecutor, Worker};

/// The queue the service and its workers share.
const QUEUE: &str = "checksums";
/// How long a worker may go silent before its calls are taken for lost.
const VISIBILITY: Duration = Duration::from_secs(1);
/// The data every checksum reads: 256 KiB, as lesson 08's requests.
const KIB: usize = 256;

/// Lesson 08's data, built once per worker process.
static DATA: LazyLock<Vec<u8>> =
    LazyLock::new(|| (0..KIB * 1024).map(|i| (i >> 3) as u8).collect());

oneloop_process::process_fn! {
    /// `passes` CRC-32s over 256 KiB (tens of ms of CPU), on a remote worker.
    pub fn checksum(passes: u32) -> u32 {
        let mut crc = 0;
        for _ in 0..passes {
            crc = std::hint::black_box(crc32(&DATA));
        }
        crc
    }
}

/// How a run is set up.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    pub duration: Duration,
    /// CRC passes per request (about 40 ms of CPU in the demo).
    pub passes: u32,
    /// Workers started.
    pub workers: usize,
    /// Kill one worker this long into the run.
    pub kill_after: Option<Duration>,
}

/// What the service counted.
#[derive(Clone, Debug, Default)]
pub struct Counts {
    pub ok: u64,
    /// Answered by a second (or later) start: taken over from a lost worker.
    pub taken_over: u64,
    pub failed: u64,
    pub first_failure: Option<String>,
    /// The workers that answered (`host:pid`).
    pub workers: Vec<String>,
}

/// What one run measured.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub health: Vec<Duration>,
    pub checksum_rps: f64,
    pub counts: Counts,
    /// The pid of the worker killed mid-run, if one was.
    pub killed: Option<u32>,
}

/// Set (to the Redis URL) in a worker process: this program started again.
pub const WORKER_ENV: &str = "ONELOOP_LESSON_12_WORKER";

/// Worker processes: this program again, in worker mode; killed when dropped.
#[derive(Debug)]
pub struct Workers(Vec<Child>);

impl Workers {
    /// `count` workers: this program run with `args` and [`WORKER_ENV`] set.
    pub fn start(url: &str, count: usize, args: &[&str]) -> Workers {
        let exe = std::env::current_exe().expect("this program");
        Workers(
            (0..count)
                .map(|_| {
                    Command::new(&exe)
                        .args(args)
                        .env(WORKER_ENV, url)
                        .stdout(Stdio::null())
                        .spawn()
                        .expect("start a worker")
                })
                .collect(),
        )
    }

    fn kill_one(&mut self) -> u32 {
        let child = &mut self.0[0];
        let _ = child.kill();
        let _ = child.wait();
        child.id()
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The worker's `main`: serve the queue, one call at a time, until killed.
pub fn worker(url: &str) -> io::Result<()> {
    Worker::builder(url, QUEUE)
        .processes(1)
        .visibility_timeout(VISIBILITY)
        .build()?
        .run()
}

async fn route(
    remote: &RedisExecutor,
    passes: u32,
    counts: &RefCell<Counts>,
    path: &str,
) -> io::Result<Response> {
    if path == "/health" {
        return Ok((200, "ok\n".into()));
    }
    // Lesson 08's offload, with a remote executor where the pool was.
    let mut call = remote.call(checksum, passes);
    let result = (&mut call).await;
    let mut counts = counts.borrow_mut();
    Ok(match result {
        Ok(crc) => {
            counts.ok += 1;
            if call.attempt() > Some(1) {
                counts.taken_over += 1;
            }
            let worker = call.worker().unwrap_or_default().to_owned();
            if !counts.workers.contains(&worker) {
                counts.workers.push(worker);
            }
            (200, format!("{crc:08x}\n"))
        }
        Err(error) => {
            counts.failed += 1;
            counts
                .first_failure
                .get_or_insert_with(|| error.to_string());
            (500, format!("{error}\n"))
        }
    })
}

/// One run: `settings.workers` workers (this program run with `worker_args`), the
/// service, lesson 08's load.
pub fn run(server: &RedisServer, settings: Settings, worker_args: &[&str]) -> Outcome {
    let url = server.url();
    let mut workers = Workers::start(&url, settings.workers, worker_args);
    let load = Load {
        pollers: 8,
        poll_path: "/health".into(),
        poll_every: Duration::from_millis(5),
        busy: 4,
        busy_path: "/checksum".into(),
    };
    let service_url = url.clone();
    let serve = move |serving: http::Serving| {
        let remote = RedisExecutor::connect(&service_url, QUEUE).expect("Redis");
        let counts = Rc::new(RefCell::new(Counts::default()));
        let state = counts.clone();
        let rt = oneloop::Runtime::new();
        rt.block_on(
            serving
                .serve(async move |path: &str| route(&remote, settings.passes, &state, path).await),
        );
        drop(rt);
        counts.take()
    };
    let (counts, measured, killed) = std::thread::scope(|scope| {
        let killer = settings.kill_after.map(|after| {
            let workers = &mut workers;
            scope.spawn(move || {
                std::thread::sleep(after);
                workers.kill_one()
            })
        });
        let (counts, measured) = http::run_against(serve, |addr| load.run(addr, settings.duration));
        (counts, measured, killer.map(|k| k.join().expect("killer")))
    });
    Outcome {
        health: measured.latencies,
        checksum_rps: measured.busy_answers as f64 / measured.elapsed.as_secs_f64(),
        counts,
        killed,
    }
}

/// CRC passes that take about `target` on this machine.
pub fn passes_for(target: Duration) -> u32 {
    let rate = oneloop_examples::crc_rate(); // bytes per second
    ((target.as_secs_f64() * rate) / (KIB * 1024) as f64)
        .ceil()
        .max(1.0) as u32
}

fn main() {
    if let Ok(url) = std::env::var(WORKER_ENV) {
        if let Err(error) = worker(&url) {
            eprintln!("worker: {error}");
            std::process::exit(1);
        }
        return;
    }
    let Some(server) = RedisServer::start() else {
        return; // SKIPPED, and why, is printed
    };
    let passes = passes_for(Duration::from_millis(40));
    let duration = Duration::from_secs(3);
    println!("8 connections poll /health every 5 ms; 4 ask for checksums (~40 ms of CPU each)");
    println!(
        "back to back, run by worker processes through Redis ({}).\n",
        server.url()
    );
    println!(
        "{:<24} {:>15} {:>15} {:>15} {:>12}",
        "workers", "/health p99 ms", "checksum req/s", "taken over", "failed"
    );
    let runs = [
        ("1", 1, None),
        ("2", 2, None),
        ("2, one killed at 1 s", 2, Some(Duration::from_secs(1))),
    ];
    let mut killed_run = None;
    for (name, workers, kill_after) in runs {
        let outcome = run(
            &server,
            Settings {
                duration,
                passes,
                workers,
                kill_after,
            },
            &[],
        );
        println!(
            "{:<24} {:>15.2} {:>15.1} {:>15} {:>12}",
            name,
            ms(percentile(&outcome.health, 0.99)),
            outcome.checksum_rps,
            outcome.counts.taken_over,
            outcome.counts.failed
        );
        if kill_after.is_some() {
            killed_run = Some(outcome);
        }
    }
    if let Some(outcome) = killed_run {
        let killed = outcome.killed.unwrap_or_default();
        println!(
            "\nworker {killed} was killed mid-run: the calls it held ({}) were run again by",
            outcome.counts.taken_over
        );
        println!(
            "another worker after the {VISIBILITY:?} visibility timeout; {} requests failed.",
            outcome.counts.failed
        );
        if let Some(failure) = outcome.counts.first_failure {
            println!("the first failure: {failure}");
        }
    }
}
