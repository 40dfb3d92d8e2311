//! 03: A CPU pool sized to the cores.
//!
//! Rust has no GIL: threads run CPU work truly in parallel, so a pool of W workers runs N
//! equal jobs in about ceil(N / W) times one job. A *dedicated* CPU pool, sized to the
//! cores, still matters: the default pool behind `to_thread` is sized for blocking I/O
//! (`min(32, cores + 4)` threads, mostly waiting), and CPU jobs there would compete with
//! those waits and oversubscribe the cores. Give CPU work its own pool and pass it to
//! `run_in_executor` (asyncio's `loop.run_in_executor(executor, f)`).
//!
//! Run with: cargo run --example 03_cpu_pool

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use oneloop::pool::ThreadPool;
use oneloop_examples::{Checksum, ms};

/// One measurement: `jobs` checksums on a pool of `workers`.
#[derive(Clone, Copy, Debug)]
pub struct Run {
    /// Workers in the pool.
    pub workers: usize,
    /// Wall time for all the jobs.
    pub wall: Duration,
    /// The most jobs seen running at the same moment.
    pub peak_parallel: usize,
}

/// Runs `jobs` copies of `job` on a pool of `workers` threads, from the loop.
pub fn run(workers: usize, jobs: usize, job: &Checksum) -> Run {
    let pool = ThreadPool::builder()
        .workers(workers)
        .thread_name("cpu")
        .build()
        .expect("pool");
    let rt = oneloop::Runtime::new();
    let running = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    rt.block_on(async {
        // Step 1: submit every job at once; step 2: wait for all the results.
        let offloaded: Vec<_> = (0..jobs)
            .map(|_| {
                let (job, running, peak) = (job.clone(), running.clone(), peak.clone());
                oneloop::run_in_executor(&pool, move || {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    let sum = job.run();
                    running.fetch_sub(1, Ordering::SeqCst);
                    sum
                })
            })
            .collect();
        for result in oneloop::task::join_all(offloaded).await {
            result.expect("checksum");
        }
    });
    Run {
        workers,
        wall: start.elapsed(),
        peak_parallel: peak.load(Ordering::SeqCst),
    }
}

fn main() {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let job = Checksum::calibrated(256, Duration::from_millis(100));
    let jobs = 4 * cores;
    // One worker runs them one after another: that gives one job's time, pool included.
    let serial = run(1, jobs, &job);
    let one = serial.wall / jobs as u32;
    println!(
        "{jobs} checksums of {:.0} ms each; this machine has {cores} cores",
        ms(one)
    );
    println!();
    println!(
        "{:>8} {:>10} {:>30} {:>11}",
        "workers", "wall (ms)", "ceil(jobs/workers) x job (ms)", "efficiency"
    );
    for workers in [1, cores, 4 * cores] {
        let r = if workers == 1 {
            serial
        } else {
            run(workers, jobs, &job)
        };
        // More workers than cores cannot beat the cores: the ideal counts the cores.
        let ideal = one * jobs.div_ceil(workers.min(cores)) as u32;
        println!(
            "{:>8} {:>10.0} {:>30.0} {:>10.0}%",
            r.workers,
            ms(r.wall),
            ms(ideal),
            100.0 * ideal.as_secs_f64() / r.wall.as_secs_f64()
        );
    }
    println!();
    println!(
        "Notice: with workers = cores, {jobs} jobs take about ceil(jobs / workers) x one job:"
    );
    println!("the threads really run in parallel (no GIL). More workers than cores buys");
    println!("nothing for CPU work, which is why CPU jobs get their own pool sized to the");
    println!("cores instead of sharing to_thread's pool, which is sized for blocking I/O.");
}
