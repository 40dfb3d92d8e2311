//! smol, the second peer: the same workloads on smol's parts (`async-executor`'s
//! `LocalExecutor` for local tasks, `async-io` for the reactor and `block_on`, `blocking`
//! for offloading), shaped as `mod.rs` shapes them on oneloop and tokio. W1, W5 and W11
//! so far.

use std::cell::RefCell;
use std::hint::black_box;
use std::rc::Rc;
use std::time::{Duration, Instant};

use async_executor::LocalExecutor;

/// W1: sequential awaits of a trivial offloaded closure (`blocking::unblock`).
pub fn w1(round_trips: usize) -> Vec<Duration> {
    async_io::block_on(async {
        for _ in 0..200 {
            blocking::unblock(|| 1).await;
        }
        let mut latencies = Vec::with_capacity(round_trips);
        for _ in 0..round_trips {
            let start = Instant::now();
            black_box(blocking::unblock(|| black_box(1)).await);
            latencies.push(start.elapsed());
        }
        latencies
    })
}

/// W5: `tasks` local tasks that yield once, spawned, then awaited.
pub fn w5(tasks: usize) -> Duration {
    let executor = LocalExecutor::new();
    let start = Instant::now();
    async_io::block_on(executor.run(async {
        let handles: Vec<_> = (0..tasks)
            .map(|_| executor.spawn(async { futures_lite::future::yield_now().await }))
            .collect();
        for handle in handles {
            handle.await;
        }
    }));
    start.elapsed()
}

/// W11: 100 tasks each offloading 100 jobs of `job` one after another (`blocking` sizes
/// its own pool; it is not capped at two threads as the others are).
pub fn w11(job: fn() -> u64) -> (Duration, Vec<Duration>) {
    let executor = LocalExecutor::new();
    async_io::block_on(executor.run(async {
        blocking::unblock(job).await;
        let start = Instant::now();
        let times = Rc::new(RefCell::new(Vec::with_capacity(10_000)));
        let tasks: Vec<_> = (0..100)
            .map(|_| {
                let times = times.clone();
                executor.spawn(async move {
                    for _ in 0..100 {
                        let submitted = Instant::now();
                        blocking::unblock(job).await;
                        times.borrow_mut().push(submitted.elapsed());
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await;
        }
        let wall = start.elapsed();
        let mut completions = times.take();
        completions.sort();
        (wall, completions)
    }))
}
