//! smol, the second peer: the same workloads on smol's parts (`async-executor`'s
//! `LocalExecutor` for local tasks, `async-io` for the reactor, its timers and `block_on`,
//! `blocking` for offloading), shaped as `mod.rs` shapes them on oneloop and tokio. W1–W7
//! and W11 (`burst.rs` calls `w11`); idle CPU is in `cpu.rs`.
//!
//! `blocking` has one pool per process, sized once, when it first starts, by the
//! `BLOCKING_MAX_THREADS` environment variable: `compare.rs` sets it first thing in `main`
//! to the machine's cores (what the other runtimes' pools get in W1–W4), and the one-CPU
//! child (`one_cpu.rs`) to W11's two workers.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::hint::black_box;
use std::rc::Rc;
use std::time::{Duration, Instant};

use async_executor::LocalExecutor;
use async_io::{Async, Timer};
use futures_lite::io::{AsyncReadExt, AsyncWriteExt};

use crate::workloads::{ECHO_BYTES, Kernel, Timers, deadlines, summarize};

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

/// W2: jobs per second, `jobs` tiny jobs with at most `window` in flight.
pub fn w2(jobs: usize, window: usize) -> f64 {
    let start = Instant::now();
    async_io::block_on(async {
        let mut in_flight = VecDeque::with_capacity(window);
        for i in 0..jobs {
            if in_flight.len() == window {
                let job: blocking::Task<usize> = in_flight.pop_front().expect("window");
                black_box(job.await);
            }
            in_flight.push_back(blocking::unblock(move || black_box(i)));
        }
        for job in in_flight {
            black_box(job.await);
        }
    });
    jobs as f64 / start.elapsed().as_secs_f64()
}

/// W3: wall time for `jobs` kernels on `blocking`'s pool, whose size `BLOCKING_MAX_THREADS`
/// set to the machine's cores (`workers` is there for the same signature as the others').
pub fn w3(jobs: usize, workers: usize, kernel: Kernel) -> Duration {
    // `blocking` starts threads on demand and lets them go after 500 ms idle: warm them
    // up, as oneloop's are started by the pool's builder and tokio's are warmed.
    async_io::block_on(async {
        let warm: Vec<_> = (0..workers)
            .map(|_| blocking::unblock(|| std::thread::sleep(Duration::from_millis(2))))
            .collect();
        for w in warm {
            w.await;
        }
    });
    let start = Instant::now();
    async_io::block_on(async {
        let all: Vec<_> = (0..jobs)
            .map(|_| blocking::unblock(move || kernel.run()))
            .collect();
        for job in all {
            black_box(job.await);
        }
    });
    start.elapsed()
}

/// W4: a 1 ms heartbeat's lateness (async-io's `Timer`) for `run_for`, while another task
/// keeps `in_flight` kernels offloaded (or, when `inline`, runs them on the loop). The
/// heartbeat is `executor.run`'s own future, as it is `block_on`'s on the others; the
/// executor polls that future between batches of up to 200 task runs, so with kernels
/// inline it waits for up to 200 of them.
pub fn w4(inline: bool, run_for: Duration, kernel: Kernel, in_flight: usize) -> Vec<Duration> {
    let executor = LocalExecutor::new();
    let stop = Rc::new(Cell::new(false));
    async_io::block_on(executor.run(async {
        let load = executor.spawn({
            let stop = stop.clone();
            async move {
                let mut window = VecDeque::new();
                while !stop.get() {
                    if inline {
                        kernel.run();
                        futures_lite::future::yield_now().await;
                        continue;
                    }
                    while window.len() < in_flight {
                        window.push_back(blocking::unblock(move || kernel.run()));
                    }
                    let job: blocking::Task<u64> = window.pop_front().expect("window");
                    black_box(job.await);
                }
            }
        });
        let beat = Duration::from_millis(1);
        let mut lateness = Vec::new();
        let end = Instant::now() + run_for;
        while Instant::now() < end {
            let start = Instant::now();
            Timer::after(beat).await;
            lateness.push(start.elapsed().saturating_sub(beat));
        }
        stop.set(true);
        load.await;
        lateness
    }))
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

/// W6: `n` concurrent sleeps on async-io's `Timer`, each until its task's first poll plus
/// its delay, as on the other runtimes.
pub fn w6(n: usize) -> Timers {
    let executor = LocalExecutor::new();
    let delays = deadlines(n);
    let start = Instant::now();
    let results = async_io::block_on(executor.run(async {
        let handles: Vec<_> = delays
            .into_iter()
            .map(|delay| {
                executor.spawn(async move {
                    let deadline = Instant::now() + delay;
                    Timer::at(deadline).await;
                    let now = Instant::now();
                    (now < deadline, now.saturating_duration_since(deadline))
                })
            })
            .collect();
        let mut results = Vec::with_capacity(handles.len());
        for handle in handles {
            results.push(handle.await);
        }
        results
    }));
    summarize(start, results)
}

/// W7: serves echo on `listener` with a `LocalExecutor` on async-io until `stop` fires.
pub fn echo_server(listener: std::net::TcpListener, stop: oneloop::sync::oneshot::Receiver<()>) {
    let executor = LocalExecutor::new();
    async_io::block_on(executor.run(async {
        let listener = Async::new(listener).expect("listener");
        let accept = async {
            while let Ok((mut conn, _)) = listener.accept().await {
                conn.get_ref().set_nodelay(true).expect("nodelay");
                executor
                    .spawn(async move {
                        let mut buf = [0u8; ECHO_BYTES];
                        while conn.read_exact(&mut buf).await.is_ok() {
                            if conn.write_all(&buf).await.is_err() {
                                break;
                            }
                        }
                    })
                    .detach();
            }
        };
        // Accept until told to stop; the connections' tasks go with the executor.
        futures_lite::future::or(accept, async {
            let _ = stop.await;
        })
        .await;
    }));
}

/// W11: 100 tasks each offloading 100 jobs of `job` one after another, on `blocking`'s
/// pool (two threads when `BLOCKING_MAX_THREADS` says 2, as the others' pools have).
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
