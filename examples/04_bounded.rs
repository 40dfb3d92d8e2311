//! 04: Bound the work in flight.
//!
//! Offloading does not make work free: each item held while it waits costs memory. A
//! producer that submits everything at once holds every item at once. A `Semaphore`
//! (asyncio's `asyncio.Semaphore`) caps how many items are in flight: a task takes a
//! permit before making its item and gives it back when the result is in. In-flight work
//! and memory then stay flat however long the input is. (A pool with a bounded queue,
//! `queue_capacity(n)`, gives the same backpressure: see `Offload::submitted`.)
//!
//! Run with: cargo run --example 04_bounded

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use oneloop::pool::ThreadPool;
use oneloop::sync::Semaphore;
use oneloop::task::JoinSet;

const ITEM_BYTES: usize = 256 << 10; // 256 KiB per item

/// What a run saw at its peak.
#[derive(Clone, Copy, Debug)]
pub struct Peak {
    /// The most items alive at once (made, not yet processed).
    pub items_alive: usize,
    /// The most jobs in flight at once.
    pub in_flight: usize,
}

/// Processes `items` items on `pool`, at most `limit` in flight (`None`: no limit).
pub fn process(pool: &ThreadPool, items: usize, limit: Option<usize>) -> Peak {
    let alive = Arc::new(AtomicUsize::new(0));
    let peak_alive = Arc::new(AtomicUsize::new(0));
    let rt = oneloop::Runtime::new();
    let peak_in_flight = rt.block_on(async {
        let permits = Arc::new(Semaphore::new(limit.unwrap_or(Semaphore::MAX_PERMITS)));
        let in_flight = Rc::new(Cell::new(0usize));
        let peak_in_flight = Rc::new(Cell::new(0usize));
        let mut tasks = JoinSet::new();
        for _ in 0..items {
            // Step 1: wait for a permit before making the item (no permit, no memory).
            let permit = permits.clone().acquire_owned().await.expect("open");
            // Step 2: make the item (256 KiB) and offload its processing.
            let now = alive.fetch_add(1, Ordering::SeqCst) + 1;
            peak_alive.fetch_max(now, Ordering::SeqCst);
            let item = vec![1u8; ITEM_BYTES];
            let alive = alive.clone();
            let job = oneloop::run_in_executor(pool, move || {
                // The work: a 2 ms blocking upload of the item, standing for any blocking
                // call slower than the producer.
                std::thread::sleep(Duration::from_millis(2));
                let sum: u64 = item.iter().step_by(1024).map(|&b| u64::from(b)).sum();
                drop(item);
                alive.fetch_sub(1, Ordering::SeqCst);
                sum
            });
            in_flight.set(in_flight.get() + 1);
            peak_in_flight.set(peak_in_flight.get().max(in_flight.get()));
            // Step 3: a task awaits the result and gives the permit back.
            let in_flight = in_flight.clone();
            tasks.spawn(async move {
                let sum = job.await.expect("job");
                in_flight.set(in_flight.get() - 1);
                drop(permit);
                sum
            });
        }
        while let Some(sum) = tasks.join_next().await {
            assert_eq!(sum.expect("task"), (ITEM_BYTES / 1024) as u64);
        }
        peak_in_flight.get()
    });
    Peak {
        items_alive: peak_alive.load(Ordering::SeqCst),
        in_flight: peak_in_flight,
    }
}

fn main() {
    let pool = ThreadPool::builder()
        .workers(2)
        .thread_name("work")
        .build()
        .expect("pool");
    println!(
        "{:<18} {:>6} {:>16} {:>14}",
        "limit", "items", "peak in flight", "peak memory"
    );
    for limit in [None, Some(4)] {
        for items in [100, 1000] {
            let peak = process(&pool, items, limit);
            let label = limit.map_or("none".to_owned(), |n| format!("Semaphore({n})"));
            println!(
                "{label:<18} {items:>6} {:>16} {:>11.1} MiB",
                peak.in_flight,
                (peak.items_alive * ITEM_BYTES) as f64 / f64::from(1 << 20)
            );
        }
    }
    println!();
    println!("Notice: without a limit, in-flight work and memory grow with the input (more");
    println!("items, more memory held at once); with Semaphore(4) both stay flat, whatever");
    println!("the input's length, and the pool is kept just as busy.");
}
