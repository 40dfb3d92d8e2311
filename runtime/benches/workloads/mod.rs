//! The benchmark workloads, each written twice with the same shape: once on oneloop, once
//! on tokio (a current-thread runtime, `spawn_blocking` for offloading, `LocalSet` for local
//! tasks; W7 also on tokio's multi-thread runtime). Shared by `compare.rs` (the table of
//! ratios) and `criterion.rs`; smol's versions are in `smol.rs`.
//! (Long because every workload is written twice, once per runtime, side by side.)
//!
//! - W1 offload round trip: sequential `await`s of a trivial offloaded closure.
//! - W2 offload throughput: many tiny jobs, at most 1,024 in flight.
//! - W3 CPU scaling: 64 jobs of a ~2 ms kernel on a pool of one worker per core.
//! - W4 responsiveness: a 1 ms heartbeat's lateness while kernels are offloaded (or inline).
//! - W5 spawn/poll: local tasks that yield once.
//! - W6 timers: 100,000 concurrent sleeps, uniform in 0-100 ms (each task sleeps until
//!   its first poll + its delay; lateness is measured against that deadline, so the time
//!   to spawn 100,000 tasks counts in the wall time only).
//! - W7 TCP echo: 50 connections, 64-byte request/response, from a separate client process.
//! - W8 debug mode's cost: W5 with debug on.
//! - The floor of W1: a raw `mio::Waker` ping-pong between two threads.

#![allow(dead_code)] // each bench target uses a subset

use std::collections::VecDeque;
use std::hint::black_box;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use oneloop::pool::ThreadPool;

/// The machine's cores.
pub fn cores() -> usize {
    thread::available_parallelism().map_or(1, usize::from)
}

fn tokio_rt(blocking_threads: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(blocking_threads)
        .build()
        .expect("tokio runtime")
}

fn oneloop_rt() -> oneloop::Runtime {
    oneloop::Runtime::builder()
        .debug(false)
        .build()
        .expect("runtime")
}

/// A CPU kernel (xorshift rounds) calibrated to take about a given time.
#[derive(Clone, Copy, Debug)]
pub struct Kernel {
    rounds: u64,
}

impl Kernel {
    /// Calibrated so one run takes about `target` on one core.
    pub fn calibrated(target: Duration) -> Kernel {
        let probe = Kernel { rounds: 100_000 };
        probe.run();
        let start = Instant::now();
        let mut runs = 0u64;
        while start.elapsed() < Duration::from_millis(50) {
            probe.run();
            runs += 1;
        }
        let per_round = start.elapsed().as_secs_f64() / (runs * probe.rounds) as f64;
        Kernel {
            rounds: (target.as_secs_f64() / per_round) as u64,
        }
    }

    pub fn run(&self) -> u64 {
        let mut x = black_box(0x9E37_79B9_7F4A_7C15u64);
        for _ in 0..self.rounds {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
        }
        black_box(x)
    }

    /// One run's time, the median of `samples` (single-threaded).
    pub fn time(&self, samples: usize) -> Duration {
        let mut times: Vec<Duration> = (0..samples)
            .map(|_| {
                let start = Instant::now();
                self.run();
                start.elapsed()
            })
            .collect();
        times.sort();
        times[samples / 2]
    }
}

// ------------------------------------------------------------------------------------
// W1: offload round trip.
// ------------------------------------------------------------------------------------

pub fn w1_oneloop(round_trips: usize) -> Vec<Duration> {
    let pool = ThreadPool::new(cores()).expect("pool");
    oneloop_rt().block_on(async {
        for _ in 0..200 {
            oneloop::run_in_executor(&pool, || 1).await.expect("job");
        }
        let mut latencies = Vec::with_capacity(round_trips);
        for _ in 0..round_trips {
            let start = Instant::now();
            black_box(
                oneloop::run_in_executor(&pool, || black_box(1))
                    .await
                    .expect("job"),
            );
            latencies.push(start.elapsed());
        }
        latencies
    })
}

pub fn w1_tokio(round_trips: usize) -> Vec<Duration> {
    tokio_rt(cores()).block_on(async {
        for _ in 0..200 {
            tokio::task::spawn_blocking(|| 1).await.expect("job");
        }
        let mut latencies = Vec::with_capacity(round_trips);
        for _ in 0..round_trips {
            let start = Instant::now();
            black_box(
                tokio::task::spawn_blocking(|| black_box(1))
                    .await
                    .expect("job"),
            );
            latencies.push(start.elapsed());
        }
        latencies
    })
}

/// The physical floor of W1: two threads, each asleep in its own `mio::Poll`, waking each
/// other in turn through `mio::Waker` (an eventfd on Linux).
pub fn ping_pong(round_trips: usize) -> Vec<Duration> {
    let mut a = mio::Poll::new().expect("poll");
    let mut b = mio::Poll::new().expect("poll");
    let wake_a = Arc::new(mio::Waker::new(a.registry(), mio::Token(0)).expect("waker"));
    let wake_b = mio::Waker::new(b.registry(), mio::Token(0)).expect("waker");
    let total = round_trips + 200;
    let echo = {
        let wake_a = wake_a.clone();
        thread::spawn(move || {
            let mut events = mio::Events::with_capacity(8);
            for _ in 0..total {
                b.poll(&mut events, None).expect("poll");
                wake_a.wake().expect("wake");
            }
        })
    };
    let mut events = mio::Events::with_capacity(8);
    let mut latencies = Vec::with_capacity(round_trips);
    for i in 0..total {
        let start = Instant::now();
        wake_b.wake().expect("wake");
        a.poll(&mut events, None).expect("poll");
        if i >= 200 {
            latencies.push(start.elapsed());
        }
    }
    echo.join().expect("echo thread");
    latencies
}

// ------------------------------------------------------------------------------------
// W2: offload throughput.
// ------------------------------------------------------------------------------------

/// Jobs per second.
pub fn w2_oneloop(jobs: usize, window: usize) -> f64 {
    let pool = ThreadPool::new(cores()).expect("pool");
    let start = Instant::now();
    oneloop_rt().block_on(async {
        let mut in_flight = VecDeque::with_capacity(window);
        for i in 0..jobs {
            if in_flight.len() == window {
                let job: oneloop::Offload<usize> = in_flight.pop_front().expect("window");
                black_box(job.await.expect("job"));
            }
            in_flight.push_back(oneloop::run_in_executor(&pool, move || black_box(i)));
        }
        for job in in_flight {
            black_box(job.await.expect("job"));
        }
    });
    jobs as f64 / start.elapsed().as_secs_f64()
}

pub fn w2_tokio(jobs: usize, window: usize) -> f64 {
    let rt = tokio_rt(cores());
    let start = Instant::now();
    rt.block_on(async {
        let mut in_flight = VecDeque::with_capacity(window);
        for i in 0..jobs {
            if in_flight.len() == window {
                let job: tokio::task::JoinHandle<usize> = in_flight.pop_front().expect("window");
                black_box(job.await.expect("job"));
            }
            in_flight.push_back(tokio::task::spawn_blocking(move || black_box(i)));
        }
        for job in in_flight {
            black_box(job.await.expect("job"));
        }
    });
    jobs as f64 / start.elapsed().as_secs_f64()
}

// ------------------------------------------------------------------------------------
// W3: CPU scaling.
// ------------------------------------------------------------------------------------

/// Wall time for `jobs` kernels on `workers` threads.
pub fn w3_oneloop(jobs: usize, workers: usize, kernel: Kernel) -> Duration {
    let pool = ThreadPool::new(workers).expect("pool");
    let rt = oneloop_rt();
    let start = Instant::now();
    rt.block_on(async {
        let all: Vec<_> = (0..jobs)
            .map(|_| oneloop::run_in_executor(&pool, move || kernel.run()))
            .collect();
        for job in all {
            black_box(job.await.expect("job"));
        }
    });
    start.elapsed()
}

pub fn w3_tokio(jobs: usize, workers: usize, kernel: Kernel) -> Duration {
    let rt = tokio_rt(workers);
    // tokio starts blocking threads on demand: warm them up, as oneloop's are started by
    // the pool's builder.
    rt.block_on(async {
        let warm: Vec<_> = (0..workers)
            .map(|_| tokio::task::spawn_blocking(|| thread::sleep(Duration::from_millis(2))))
            .collect();
        for w in warm {
            w.await.expect("warm");
        }
    });
    let start = Instant::now();
    rt.block_on(async {
        let all: Vec<_> = (0..jobs)
            .map(|_| tokio::task::spawn_blocking(move || kernel.run()))
            .collect();
        for job in all {
            black_box(job.await.expect("job"));
        }
    });
    start.elapsed()
}

// ------------------------------------------------------------------------------------
// W4: responsiveness while offloading.
// ------------------------------------------------------------------------------------

/// A 1 ms heartbeat's lateness for `run_for`, while another task keeps `in_flight` kernels
/// offloaded (or, when `inline`, runs them on the loop, yielding between kernels).
pub fn w4_oneloop(
    inline: bool,
    run_for: Duration,
    kernel: Kernel,
    in_flight: usize,
) -> Vec<Duration> {
    let pool = ThreadPool::new(cores()).expect("pool");
    let stop = std::rc::Rc::new(std::cell::Cell::new(false));
    oneloop_rt().block_on(async {
        let load = oneloop::spawn({
            let stop = stop.clone();
            async move {
                let mut window = VecDeque::new();
                while !stop.get() {
                    if inline {
                        kernel.run();
                        oneloop::task::yield_now().await;
                        continue;
                    }
                    while window.len() < in_flight {
                        window.push_back(oneloop::run_in_executor(&pool, move || kernel.run()));
                    }
                    let job: oneloop::Offload<u64> = window.pop_front().expect("window");
                    black_box(job.await.expect("job"));
                }
            }
        });
        let lateness = heartbeat_oneloop(run_for).await;
        stop.set(true);
        load.await.expect("load");
        lateness
    })
}

async fn heartbeat_oneloop(run_for: Duration) -> Vec<Duration> {
    let beat = Duration::from_millis(1);
    let mut lateness = Vec::new();
    let end = Instant::now() + run_for;
    while Instant::now() < end {
        let start = Instant::now();
        oneloop::time::sleep(beat).await;
        lateness.push(start.elapsed().saturating_sub(beat));
    }
    lateness
}

pub fn w4_tokio(
    inline: bool,
    run_for: Duration,
    kernel: Kernel,
    in_flight: usize,
) -> Vec<Duration> {
    let rt = tokio_rt(cores());
    let stop = Arc::new(AtomicBool::new(false));
    rt.block_on(async {
        let load = tokio::spawn({
            let stop = stop.clone();
            async move {
                let mut window = VecDeque::new();
                while !stop.load(Ordering::Relaxed) {
                    if inline {
                        kernel.run();
                        tokio::task::yield_now().await;
                        continue;
                    }
                    while window.len() < in_flight {
                        window.push_back(tokio::task::spawn_blocking(move || kernel.run()));
                    }
                    let job: tokio::task::JoinHandle<u64> = window.pop_front().expect("window");
                    black_box(job.await.expect("job"));
                }
            }
        });
        let beat = Duration::from_millis(1);
        let mut lateness = Vec::new();
        let end = Instant::now() + run_for;
        while Instant::now() < end {
            let start = Instant::now();
            tokio::time::sleep(beat).await;
            lateness.push(start.elapsed().saturating_sub(beat));
        }
        stop.store(true, Ordering::Relaxed);
        load.await.expect("load");
        lateness
    })
}

// ------------------------------------------------------------------------------------
// W5 and W8: spawn and poll.
// ------------------------------------------------------------------------------------

/// Time to spawn `tasks` local tasks that yield once, and await them all.
pub fn w5_oneloop(tasks: usize, debug: bool) -> Duration {
    let rt = oneloop::Runtime::builder()
        .debug(debug)
        .debug_backtraces(false)
        .on_report(|_| {})
        .build()
        .expect("runtime");
    let start = Instant::now();
    rt.block_on(async {
        let handles: Vec<_> = (0..tasks)
            .map(|_| oneloop::spawn(async { oneloop::task::yield_now().await }))
            .collect();
        for handle in handles {
            handle.await.expect("task");
        }
    });
    start.elapsed()
}

pub fn w5_tokio(tasks: usize) -> Duration {
    let rt = tokio_rt(1);
    let local = tokio::task::LocalSet::new();
    let start = Instant::now();
    local.block_on(&rt, async {
        let handles: Vec<_> = (0..tasks)
            .map(|_| tokio::task::spawn_local(async { tokio::task::yield_now().await }))
            .collect();
        for handle in handles {
            handle.await.expect("task");
        }
    });
    start.elapsed()
}

// ------------------------------------------------------------------------------------
// W6: timers.
// ------------------------------------------------------------------------------------

/// What W6 measured.
#[derive(Clone, Copy, Debug)]
pub struct Timers {
    pub wall: Duration,
    pub mean_lateness: Duration,
    /// The 99th percentile of the sleeps' lateness: the tail a mean hides.
    pub p99_lateness: Duration,
    pub early: usize,
}

/// Deadlines uniform in 0-100 ms (a fixed pseudo-random sequence).
pub fn deadlines(n: usize) -> Vec<Duration> {
    let mut x = 88172645463325252u64;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            Duration::from_micros(x % 100_000)
        })
        .collect()
}

/// W6's figures from the time the run started and each sleep's (early, lateness).
pub fn summarize(start: Instant, results: Vec<(bool, Duration)>) -> Timers {
    let wall = start.elapsed();
    let early = results.iter().filter(|(early, _)| *early).count();
    let mut lateness: Vec<Duration> = results.iter().map(|(_, late)| *late).collect();
    let total: Duration = lateness.iter().sum();
    Timers {
        wall,
        mean_lateness: total / lateness.len().max(1) as u32,
        p99_lateness: percentile(&mut lateness, 0.99),
        early,
    }
}

pub fn w6_oneloop(n: usize) -> Timers {
    let rt = oneloop_rt();
    let delays = deadlines(n);
    let start = Instant::now();
    let results = rt.block_on(async {
        let handles: Vec<_> = delays
            .into_iter()
            .map(|delay| {
                oneloop::spawn(async move {
                    let deadline = Instant::now() + delay;
                    oneloop::time::sleep_until(deadline).await;
                    let now = Instant::now();
                    (now < deadline, now.saturating_duration_since(deadline))
                })
            })
            .collect();
        let mut results = Vec::with_capacity(handles.len());
        for handle in handles {
            results.push(handle.await.expect("timer"));
        }
        results
    });
    summarize(start, results)
}

pub fn w6_tokio(n: usize) -> Timers {
    let rt = tokio_rt(1);
    let local = tokio::task::LocalSet::new();
    let delays = deadlines(n);
    let start = Instant::now();
    let results = local.block_on(&rt, async {
        let handles: Vec<_> = delays
            .into_iter()
            .map(|delay| {
                tokio::task::spawn_local(async move {
                    let deadline = Instant::now() + delay;
                    tokio::time::sleep_until(deadline.into()).await;
                    let now = Instant::now();
                    (now < deadline, now.saturating_duration_since(deadline))
                })
            })
            .collect();
        let mut results = Vec::with_capacity(handles.len());
        for handle in handles {
            results.push(handle.await.expect("timer"));
        }
        results
    });
    summarize(start, results)
}

// ------------------------------------------------------------------------------------
// W7: TCP echo.
// ------------------------------------------------------------------------------------

/// The request and response size.
pub const ECHO_BYTES: usize = 64;

/// Serves echo on `listener` with oneloop until `stop` fires.
pub fn echo_server_oneloop(
    listener: std::net::TcpListener,
    stop: oneloop::sync::oneshot::Receiver<()>,
) {
    oneloop_rt().block_on(async move {
        let listener = oneloop::net::TcpListener::from_std(listener).expect("listener");
        let acceptor = oneloop::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                conn.set_nodelay(true).expect("nodelay");
                oneloop::spawn(async move {
                    let mut buf = [0u8; ECHO_BYTES];
                    while conn.read_exact(&mut buf).await.is_ok() {
                        if conn.write_all(&buf).await.is_err() {
                            break;
                        }
                    }
                })
                .detach();
            }
        });
        let _ = stop.await;
        acceptor.abort();
    });
}

/// Serves echo on `listener` with tokio until `stop` fires.
pub fn echo_server_tokio(
    listener: std::net::TcpListener,
    stop: oneloop::sync::oneshot::Receiver<()>,
) {
    serve_echo_tokio(tokio_rt(1), listener, stop);
}

/// Serves echo on `listener` with tokio's multi-thread runtime, one worker thread per core,
/// until `stop` fires: the peer that may use every core for W7.
pub fn echo_server_tokio_mt(
    listener: std::net::TcpListener,
    stop: oneloop::sync::oneshot::Receiver<()>,
) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores())
        .enable_all()
        .build()
        .expect("tokio multi-thread runtime");
    serve_echo_tokio(rt, listener, stop);
}

/// The echo server of both tokio runtimes.
fn serve_echo_tokio(
    rt: tokio::runtime::Runtime,
    listener: std::net::TcpListener,
    stop: oneloop::sync::oneshot::Receiver<()>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    listener.set_nonblocking(true).expect("nonblocking");
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
        let acceptor = tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                conn.set_nodelay(true).expect("nodelay");
                tokio::spawn(async move {
                    let mut buf = [0u8; ECHO_BYTES];
                    while conn.read_exact(&mut buf).await.is_ok() {
                        if conn.write_all(&buf).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        let _ = stop.await;
        acceptor.abort();
    });
}

/// The echo client (run in its own process): `connections` connections each sending a
/// request and waiting for its echo, for `run_for`; returns the round trips completed. A
/// single-threaded mio loop, so the client costs the same whoever serves.
pub fn echo_client(addr: SocketAddr, connections: usize, run_for: Duration) -> io::Result<u64> {
    let mut poll = mio::Poll::new()?;
    let mut events = mio::Events::with_capacity(1024);
    let mut streams = Vec::with_capacity(connections);
    // Per connection: bytes of the echo received so far.
    let mut received = vec![0usize; connections];
    let request = [7u8; ECHO_BYTES];
    for i in 0..connections {
        let std_stream = std::net::TcpStream::connect(addr)?;
        std_stream.set_nodelay(true)?;
        std_stream.set_nonblocking(true)?;
        let mut stream = mio::net::TcpStream::from_std(std_stream);
        poll.registry()
            .register(&mut stream, mio::Token(i), mio::Interest::READABLE)?;
        stream.write_all(&request)?;
        streams.push(stream);
    }
    let end = Instant::now() + run_for;
    let mut round_trips = 0u64;
    let mut buf = [0u8; 4096];
    while Instant::now() < end {
        poll.poll(&mut events, Some(Duration::from_millis(10)))?;
        for event in events.iter() {
            let i = event.token().0;
            loop {
                match streams[i].read(&mut buf) {
                    Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                    Ok(n) => {
                        received[i] += n;
                        while received[i] >= ECHO_BYTES {
                            received[i] -= ECHO_BYTES;
                            round_trips += 1;
                            streams[i].write_all(&request)?; // 64 bytes always fit
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e),
                }
            }
        }
    }
    Ok(round_trips)
}

/// Runs one echo server (`serve`) on a thread and the client in a separate process (this
/// program again, with `--echo-client`); returns round trips per second.
pub fn w7(
    serve: fn(std::net::TcpListener, oneloop::sync::oneshot::Receiver<()>),
    run_for: Duration,
) -> f64 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("address");
    let (stop, stopped) = oneloop::sync::oneshot::channel();
    let server = thread::spawn(move || serve(listener, stopped));
    let output = std::process::Command::new(std::env::current_exe().expect("this program"))
        .args([
            "--echo-client",
            &addr.to_string(),
            &run_for.as_millis().to_string(),
        ])
        .output()
        .expect("the client process");
    let _ = stop.send(());
    server.join().expect("server");
    let text = String::from_utf8_lossy(&output.stdout);
    let round_trips: f64 = text.trim().parse().unwrap_or_else(|_| {
        panic!(
            "the echo client said {text:?} / {:?}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    round_trips / run_for.as_secs_f64()
}

/// If this process was started as the echo client, runs it and exits.
pub fn maybe_run_echo_client() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--echo-client") {
        let addr: SocketAddr = args[i + 1].parse().expect("address");
        let millis: u64 = args[i + 2].parse().expect("duration");
        let round_trips =
            echo_client(addr, 50, Duration::from_millis(millis)).expect("echo client");
        println!("{round_trips}");
        std::process::exit(0);
    }
}

// ------------------------------------------------------------------------------------
// Statistics.
// ------------------------------------------------------------------------------------

/// The `p`-th percentile of `values` (sorted here).
pub fn percentile(values: &mut [Duration], p: f64) -> Duration {
    values.sort();
    let i = ((values.len() as f64 - 1.0) * p).round() as usize;
    values.get(i).copied().unwrap_or_default()
}

/// The median of `values`.
pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}
