//! W11, an offload burst: 100 tasks on the loop each offload 100 jobs of ~20 µs of CPU one
//! after another, on a pool of two workers: 10,000 jobs, 200 ms of work for two workers at
//! the least. Measured: the wall time, each job's completion time (from its submission),
//! and the efficiency against plain threads doing the same work with no loop at all (the
//! floor: the work divided between two threads). What it catches: a loop or workers that
//! spin while there is work the spinner's CPU could have run.

use std::rc::Rc;
use std::time::{Duration, Instant};

/// Tasks, jobs per task, workers, and the work of one job.
const TASKS: usize = 100;
const JOBS: usize = 100;
pub const WORKERS: usize = 2;
const WORK: Duration = Duration::from_micros(20);

/// ~20 µs of CPU (a busy wait on the clock: the same work on every side).
fn job() -> u64 {
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < WORK {
        n = std::hint::black_box(n.wrapping_add(1));
    }
    n
}

/// What one burst measured.
pub struct Burst {
    pub wall: Duration,
    /// Each job's time from submission to result, sorted.
    pub completions: Vec<Duration>,
}

pub fn oneloop() -> Burst {
    let pool = oneloop::pool::ThreadPool::new(WORKERS).expect("pool");
    let rt = oneloop::Runtime::builder()
        .debug(false)
        .build()
        .expect("runtime");
    rt.block_on(async {
        oneloop::run_in_executor(&pool, job).await.expect("warm-up");
        let start = Instant::now();
        let times = Rc::new(std::cell::RefCell::new(Vec::with_capacity(TASKS * JOBS)));
        let tasks: Vec<_> = (0..TASKS)
            .map(|_| {
                let (pool, times) = (pool.clone(), times.clone());
                oneloop::spawn(async move {
                    for _ in 0..JOBS {
                        let submitted = Instant::now();
                        oneloop::run_in_executor(&pool, job).await.expect("job");
                        times.borrow_mut().push(submitted.elapsed());
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("task");
        }
        let wall = start.elapsed();
        let mut completions = times.take();
        completions.sort();
        Burst { wall, completions }
    })
}

pub fn tokio() -> Burst {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(WORKERS)
        .build()
        .expect("runtime");
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async {
        tokio::task::spawn_blocking(job).await.expect("warm-up");
        let start = Instant::now();
        let times = Rc::new(std::cell::RefCell::new(Vec::with_capacity(TASKS * JOBS)));
        let tasks: Vec<_> = (0..TASKS)
            .map(|_| {
                let times = times.clone();
                tokio::task::spawn_local(async move {
                    for _ in 0..JOBS {
                        let submitted = Instant::now();
                        tokio::task::spawn_blocking(job).await.expect("job");
                        times.borrow_mut().push(submitted.elapsed());
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("task");
        }
        let wall = start.elapsed();
        let mut completions = times.take();
        completions.sort();
        Burst { wall, completions }
    })
}

/// The floor: the same 10,000 jobs on `WORKERS` plain threads, no loop, no queue.
pub fn threads() -> Duration {
    let start = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..WORKERS {
            scope.spawn(|| {
                for _ in 0..TASKS * JOBS / WORKERS {
                    std::hint::black_box(job());
                }
            });
        }
    });
    start.elapsed()
}

/// The same on smol (`blocking::unblock`): two threads only where `BLOCKING_MAX_THREADS`
/// says 2 (`compare.rs` sets it to the cores, the one-CPU child to `WORKERS`).
pub fn smol() -> Burst {
    let (wall, completions) = crate::smol::w11(job);
    Burst { wall, completions }
}
