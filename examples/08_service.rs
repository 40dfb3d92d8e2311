//! 08: The whole story: a small HTTP service, its CPU endpoint inline, then offloaded.
//!
//! The production symptom of the asyncio guides, reproduced and cured in one screen. A
//! service answers `GET /health` (instantly) and `GET /checksum?kb=N` (a real CRC-32 over
//! N KiB, looped to take tens of milliseconds). A load generator keeps 8 connections
//! polling `/health` while 2 connections keep asking for checksums. Inline, every checksum
//! blocks the loop, so `/health`'s tail latency *is* the checksum's duration and debug mode
//! reports every request; offloaded to a CPU pool, `/health` stays fast and debug mode is
//! silent. Same code, same work: only where the checksum runs changed.
//!
//! The HTTP plumbing and the load generator are in `lib/http.rs` and `lib/loadgen.rs`.
//!
//! Run with: cargo run --release --example 08_service

use std::io;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use oneloop::pool::ThreadPool;
use oneloop_examples::http::{self, Response, Serving};
use oneloop_examples::loadgen::{Load, percentile};
use oneloop_examples::{crc_rate, crc32, ms};

/// Connections polling `/health`, each every `HEALTH_EVERY`.
const HEALTH_CONNECTIONS: usize = 8;
const HEALTH_EVERY: Duration = Duration::from_millis(5);
/// Connections asking for checksums back to back.
const CHECKSUM_CONNECTIONS: usize = 2;
/// What a checksum request asks for.
const CHECKSUM_KIB: usize = 256;

/// How a run is set up.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    /// How long the load runs.
    pub duration: Duration,
    /// How long one checksum request takes to compute.
    pub checksum_takes: Duration,
    /// Debug mode's slow-task threshold on the server.
    pub slow_threshold: Duration,
}

/// The demo's settings: 5 s per mode, 40 ms checksums, a 20 ms threshold.
const DEMO: Settings = Settings {
    duration: Duration::from_secs(5),
    checksum_takes: Duration::from_millis(40),
    slow_threshold: Duration::from_millis(20),
};

/// Where `/checksum` computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// On the loop, in the request's task.
    Inline,
    /// On a CPU pool, with `run_in_executor`.
    Offload,
}

/// What one run measured.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// `/health` latencies, sorted.
    pub health: Vec<Duration>,
    /// Requests per second, `/health` and `/checksum`.
    pub health_rps: f64,
    /// Checksums served per second.
    pub checksum_rps: f64,
    /// Slow-task reports debug mode made on the server.
    pub slow_reports: u64,
}

impl Outcome {
    /// The `p`-th percentile of `/health` latency.
    pub fn health_percentile(&self, p: f64) -> Duration {
        percentile(&self.health, p)
    }
}

/// Shared by the server's tasks: how to compute, and the data to checksum.
struct Service {
    mode: Mode,
    pool: ThreadPool,
    data: Arc<Vec<u8>>,
    /// Passes of CRC-32 per KiB requested, so a request takes about `checksum_takes`.
    passes_per_kib: f64,
}

/// Serves in `mode` until told to stop; returns the slow-task reports debug mode made.
fn serve(mode: Mode, settings: Settings, crc_rate: f64, serving: Serving) -> u64 {
    // Debug mode on, counting its slow-task reports: the evidence of a blocked loop.
    let slow = Arc::new(AtomicU64::new(0));
    let counter = slow.clone();
    let rt = oneloop::Runtime::builder()
        .debug(true)
        .slow_task_threshold(settings.slow_threshold)
        .on_report(move |report| {
            if report.code == oneloop::debug::Code::SlowPoll {
                counter.fetch_add(1, Ordering::Relaxed);
            }
        })
        .build()
        .expect("runtime");
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let service = Rc::new(Service {
        mode,
        // A CPU pool sized to the cores, less one for the loop (and, here, the load
        // generator running on the same machine).
        pool: ThreadPool::builder()
            .workers(cores.saturating_sub(1).max(1))
            .thread_name("checksum")
            .build()
            .expect("pool"),
        data: Arc::new((0..8 << 20).map(|i: usize| (i >> 3) as u8).collect()),
        // Passes over a KiB-sized request so that CHECKSUM_KIB takes `checksum_takes`.
        passes_per_kib: settings.checksum_takes.as_secs_f64() * crc_rate
            / (CHECKSUM_KIB * 1024 * CHECKSUM_KIB) as f64,
    });
    rt.block_on(serving.serve(async move |path: &str| route(&service, path).await));
    slow.load(Ordering::Relaxed)
}

/// Answers one request: `/health` at once, `/checksum` where the mode says.
async fn route(service: &Service, path: &str) -> io::Result<Response> {
    if path == "/health" {
        return Ok((200, "ok\n".into()));
    }
    let Some(kib) = path
        .strip_prefix("/checksum?kb=")
        .and_then(|kib| kib.parse::<usize>().ok())
        .filter(|kib| (1..=8192).contains(kib))
    else {
        return Ok((404, "try /health or /checksum?kb=256\n".into()));
    };
    let data = service.data.clone();
    let passes = (service.passes_per_kib * kib as f64).ceil().max(1.0) as u32;
    let checksum = move || {
        let mut crc = 0;
        for _ in 0..passes {
            crc = std::hint::black_box(crc32(&data[..kib * 1024]));
        }
        crc
    };
    let crc = match service.mode {
        // The bug: the loop computes, and every other connection waits.
        Mode::Inline => checksum(),
        // The cure: a worker computes; this task waits without holding the loop.
        Mode::Offload => oneloop::run_in_executor(&service.pool, checksum)
            .await
            .map_err(io::Error::other)?,
    };
    Ok((200, format!("{crc:08x}\n")))
}

/// Runs the service in `mode` on a thread of its own, under load from this one.
pub fn run(mode: Mode, settings: Settings) -> Outcome {
    let load = Load {
        pollers: HEALTH_CONNECTIONS,
        poll_path: "/health".into(),
        poll_every: HEALTH_EVERY,
        busy: CHECKSUM_CONNECTIONS,
        busy_path: format!("/checksum?kb={CHECKSUM_KIB}"),
    };
    let crc_rate = crc_rate();
    let (slow_reports, measured) = http::run_against(
        move |serving| serve(mode, settings, crc_rate, serving),
        |addr| load.run(addr, settings.duration),
    );
    let elapsed = measured.elapsed.as_secs_f64();
    Outcome {
        health_rps: measured.latencies.len() as f64 / elapsed,
        checksum_rps: measured.busy_answers as f64 / elapsed,
        health: measured.latencies,
        slow_reports,
    }
}

fn main() {
    let settings = DEMO;
    println!(
        "{HEALTH_CONNECTIONS} connections poll /health every {} ms; {CHECKSUM_CONNECTIONS} ask for checksums",
        ms(HEALTH_EVERY)
    );
    println!(
        "of {CHECKSUM_KIB} KiB (~{} ms of CPU each) back to back; {} s per mode.",
        ms(settings.checksum_takes),
        settings.duration.as_secs()
    );
    println!();
    println!(
        "{:<8} {:>16} {:>16} {:>16} {:>13} {:>15} {:>13}",
        "mode",
        "/health p50 ms",
        "/health p99 ms",
        "/health max ms",
        "/health req/s",
        "checksum req/s",
        "slow reports"
    );
    for mode in [Mode::Inline, Mode::Offload] {
        let outcome = run(mode, settings);
        println!(
            "{:<8} {:>16.2} {:>16.2} {:>16.2} {:>13.0} {:>15.1} {:>13}",
            if mode == Mode::Inline {
                "inline"
            } else {
                "offload"
            },
            ms(outcome.health_percentile(0.50)),
            ms(outcome.health_percentile(0.99)),
            ms(outcome.health.last().copied().unwrap_or_default()),
            outcome.health_rps,
            outcome.checksum_rps,
            outcome.slow_reports,
        );
    }
    println!();
    println!("Notice: inline, a /health request waits for every checksum queued ahead of it");
    println!("on the loop (p99 is two or three checksums' worth), and every checksum is a");
    println!("slow-task report. Offloaded, /health stays fast, debug mode has nothing to");
    println!("report, and the checksums still get done: by a worker thread, not the loop.");
}
