//! 11: A native call that can crash or hang: the service on a process pool.
//!
//! The service of lesson 08 now calls a native library with two bugs: now and then it
//! segfaults, now and then it never returns. On threads, the segfault ends the whole
//! service, and a hung call can only be abandoned (its thread stays stuck). On a process
//! pool, a crash fails its call alone (`JobError::WorkerDied`, saying how), a hung call is
//! killed at its timeout (`JobError::TimedOut`), the worker is replaced, and `/health`
//! never notices.
//!
//! The library's stand-in is in `lib/native.rs`; the HTTP plumbing and the load are
//! lesson 08's (`lib/http.rs`, `lib/loadgen.rs`).
//!
//! Run with: cargo run --example 11_process_pool

use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::io;
use std::process::Command;
use std::rc::Rc;
use std::time::Duration;

use oneloop::pool::{JobError, ShutdownReport, ThreadPool};
use oneloop_examples::http::{self, Response};
use oneloop_examples::loadgen::{Load, percentile};
use oneloop_examples::native::{self, Fault, fault_of};
use oneloop_examples::{Ended, ms};
use oneloop_process::ProcessPool;

/// How long a call may run before the process pool kills its worker (and how long the
/// thread pool's caller waits before giving up).
const CALL_TIMEOUT: Duration = Duration::from_millis(250);
/// The argument that makes this program the child that serves on threads until it dies.
const CHILD_ARG: &str = "serve-on-threads";

oneloop_process::process_fn! {
    /// The native call, in a worker process; the worker's pid comes back with the answer.
    pub fn checksum_in_worker(request: u64, fault: Fault) -> (u32, u32) {
        (native::checksum(request, fault), std::process::id())
    }
}

/// Where `/native` runs the native call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pool {
    /// On `to_thread`'s threads, in the service's process.
    Threads,
    /// On a process pool of two workers, with `CALL_TIMEOUT`.
    Processes,
}

/// What the service counted of its native calls.
#[derive(Clone, Debug, Default)]
pub struct Counts {
    /// Calls that returned their checksum.
    pub ok: u64,
    /// Crashing calls that failed alone, as `WorkerDied`.
    pub crashes: u64,
    /// Hung calls whose worker was killed at the timeout (`TimedOut`).
    pub kills: u64,
    /// Calls whose outcome was not their fault's (none, when the pool does its job).
    pub surprises: u64,
    /// The worker processes that answered, by pid.
    pub workers: HashSet<u32>,
    /// The first crash, as its caller saw it.
    pub first_crash: Option<String>,
}

/// What one run measured.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// `/health` latencies, sorted.
    pub health: Vec<Duration>,
    /// What the service counted.
    pub counts: Counts,
}

/// The service's state: where calls run, how many were made, what came of them.
struct Service {
    processes: Option<ProcessPool>,
    calls: Cell<u64>,
    counts: RefCell<Counts>,
}

/// Answers one request: `/health` at once, `/native` with a call into the library.
async fn route(service: &Service, path: &str) -> io::Result<Response> {
    if path != "/native" {
        return Ok((200, "ok\n".into())); // `/health`
    }
    let n = service.calls.replace(service.calls.get() + 1);
    let fault = fault_of(n);
    let outcome = match &service.processes {
        // On threads the call runs in this process: so do its bugs.
        None => oneloop::to_thread(move || (native::checksum(n, fault), std::process::id())).await,
        // On the process pool it runs in a worker: what kills it fails this call only.
        Some(pool) => pool.call(checksum_in_worker, (n, fault)).await,
    };
    let mut counts = service.counts.borrow_mut();
    match (&outcome, fault) {
        (Ok((_, pid)), Fault::None) => {
            counts.ok += 1;
            counts.workers.insert(*pid);
        }
        (Err(JobError::WorkerDied(death)), Fault::Crash) => {
            counts.crashes += 1;
            counts.first_crash.get_or_insert_with(|| death.to_string());
        }
        (Err(JobError::TimedOut), Fault::Hang) => counts.kills += 1,
        _ => counts.surprises += 1,
    }
    Ok(match outcome {
        Ok((crc, pid)) => (200, format!("{crc:08x} (worker {pid})\n")),
        Err(error) => (500, format!("{error}\n")),
    })
}

/// Runs the service with `/native` on `pool`, under lesson 08's load, for `duration`.
pub fn run(pool: Pool, duration: Duration) -> Outcome {
    let load = Load {
        pollers: 8,
        poll_path: "/health".into(),
        poll_every: Duration::from_millis(5),
        busy: 2,
        busy_path: "/native".into(),
    };
    let serve = move |serving: http::Serving| {
        let processes = (pool == Pool::Processes).then(|| {
            let builder = ProcessPool::builder().workers(2).timeout(CALL_TIMEOUT);
            builder.build().expect("process pool")
        });
        let service = Rc::new(Service {
            processes,
            calls: Cell::new(0),
            counts: RefCell::default(),
        });
        let state = service.clone();
        let rt = oneloop::Runtime::new();
        rt.block_on(serving.serve(async move |path: &str| route(&state, path).await));
        drop(rt); // the connections' tasks, and the calls they still wait for, go first
        service.counts.take()
    };
    let (counts, measured) = http::run_against(serve, |addr| load.run(addr, duration));
    Outcome {
        health: measured.latencies,
        counts,
    }
}

/// Calls the hanging function on a thread pool under a timeout; returns whether the
/// caller gave up, and what a shutdown then found still running.
pub fn abandon_on_threads() -> (bool, ShutdownReport) {
    let pool = ThreadPool::new(2).expect("thread pool");
    let gave_up = oneloop::Runtime::new().block_on(async {
        let call = oneloop::run_in_executor(&pool, || native::checksum(5, Fault::Hang));
        oneloop::time::timeout(CALL_TIMEOUT, call).await.is_err()
    });
    (gave_up, pool.shutdown_timeout(Duration::from_millis(100)))
}

fn main() {
    let duration = Duration::from_secs(3);
    // The child: the service on threads, until its first crash ends it.
    if std::env::args().nth(1).as_deref() == Some(CHILD_ARG) {
        run(Pool::Threads, duration);
        return println!("the service survived"); // never printed
    }
    println!("/native calls a native library: of every 6 calls, one segfaults, one hangs.");
    println!("8 connections poll /health every 5 ms, 2 call /native back to back.\n");

    // Threads, the crash: run the service in a child process, and watch it die.
    let mut child = Command::new(std::env::current_exe().expect("this program"));
    child.arg(CHILD_ARG);
    let Ended {
        pid,
        status,
        last_words,
    } = Ended::run(child);
    println!("on threads: the whole service (pid {pid}) died at its first crash: {status}");
    println!("  every connection and task went with it; its last words: {last_words:?}");

    // Threads, the hang: the caller can give up; the thread cannot.
    let (gave_up, report) = abandon_on_threads();
    let caller = if gave_up { "gave up" } else { "got an answer" };
    println!("on threads: a hung call's caller {caller} at {CALL_TIMEOUT:?},");
    println!("  but its thread is stuck for good: {report}\n");

    // Processes: the same service, the same bugs, for the whole run.
    let Outcome { health, counts, .. } = run(Pool::Processes, duration);
    println!("on a process pool (2 workers, {CALL_TIMEOUT:?} timeout), {duration:?}:");
    println!(
        "  /native: {} ok, {} crashes (WorkerDied), {} hung calls killed (TimedOut), {} surprises",
        counts.ok, counts.crashes, counts.kills, counts.surprises
    );
    println!(
        "  /health: {} served; latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        health.len(),
        ms(percentile(&health, 0.50)),
        ms(percentile(&health, 0.99)),
        ms(health.last().copied().unwrap_or_default())
    );
    let workers = counts.workers.len();
    println!("  worker processes that answered: {workers} (each crash and kill replaced one)");
    let first = counts.first_crash.unwrap_or_default();
    let first = first.replace('\n', "\n    ");
    println!("  the first crash, as its caller saw it:\n    {first}");
}
