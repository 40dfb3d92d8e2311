//! 10: When not to offload.
//!
//! Offloading is not free: the job travels to a worker, the worker wakes, runs it, stores
//! the result, and wakes the loop, which resumes the task. That round trip costs a few
//! microseconds while both threads are awake (both spin briefly before they sleep), and
//! tens when one must be woken from sleep. Work shorter than that is cheaper inline: it blocks the loop for less
//! time than the offload would make the request wait. This lesson measures the round trip
//! of a trivial function and the crossover, so the threshold is a number, not a guess.
//!
//! Run with: cargo run --release --example 10_offload_cost

use std::hint::black_box;
use std::time::{Duration, Instant};

use oneloop::pool::ThreadPool;
use oneloop_examples::{crc_rate, crc32};

/// The cost of a trivial function, called inline and offloaded.
#[derive(Clone, Copy, Debug)]
pub struct Costs {
    /// One inline call.
    pub inline: Duration,
    /// One offload round trip: submit, run on a worker, resume with the result.
    pub offloaded: Duration,
}

/// Measures `calls` calls of a trivial function both ways (one after another, as a task
/// that awaits each result would).
pub fn trivial(pool: &ThreadPool, calls: u32) -> Costs {
    let rt = oneloop::Runtime::new();
    rt.block_on(async {
        let start = Instant::now();
        for i in 0..calls {
            black_box(black_box(i) + 1);
        }
        let inline = start.elapsed() / calls;
        let start = Instant::now();
        for i in 0..calls {
            let result = oneloop::run_in_executor(pool, move || black_box(i) + 1).await;
            black_box(result.expect("job"));
        }
        let offloaded = start.elapsed() / calls;
        Costs { inline, offloaded }
    })
}

/// The latency of one request whose work checksums `bytes`, computed inline and offloaded
/// (the mean of `reps`).
pub fn with_work(pool: &ThreadPool, bytes: usize, reps: u32) -> (Duration, Duration) {
    let data = std::sync::Arc::new(vec![0x42u8; bytes.max(1)]);
    let rt = oneloop::Runtime::new();
    rt.block_on(async {
        let start = Instant::now();
        for _ in 0..reps {
            black_box(crc32(black_box(&data)));
        }
        let inline = start.elapsed() / reps;
        let start = Instant::now();
        for _ in 0..reps {
            let data = data.clone();
            let crc = oneloop::run_in_executor(pool, move || crc32(black_box(&data))).await;
            black_box(crc.expect("job"));
        }
        (inline, start.elapsed() / reps)
    })
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn main() {
    let pool = ThreadPool::builder()
        .workers(1)
        .thread_name("offload")
        .build()
        .expect("pool");
    let costs = trivial(&pool, 20_000);
    println!(
        "a trivial function: {:.3} µs inline, {:.1} µs offloaded (the round trip)",
        micros(costs.inline),
        micros(costs.offloaded)
    );
    println!();
    let rate = crc_rate();
    println!(
        "{:>12} {:>14} {:>16} {:>22}",
        "work", "inline (µs)", "offloaded (µs)", "loop blocked, inline"
    );
    for work_us in [1.0, 10.0, 30.0, 100.0, 1000.0] {
        let bytes = (rate * work_us / 1e6) as usize;
        let reps = (200_000.0 / work_us.max(1.0)) as u32;
        let (inline, offloaded) = with_work(&pool, bytes, reps.clamp(20, 20_000));
        println!(
            "{:>9.0} µs {:>14.1} {:>16.1} {:>19.1} µs",
            work_us,
            micros(inline),
            micros(offloaded),
            micros(inline)
        );
    }
    println!();
    println!("Notice: below a few tens of µs of work, offloading makes each request slower");
    println!("than doing the work inline (the round trip dominates) and saves the loop almost");
    println!("nothing. Offload what would block the loop longer than your latency budget for");
    println!("the other requests (debug mode's threshold is a good start); keep the rest inline.");
}
