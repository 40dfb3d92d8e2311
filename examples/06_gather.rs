//! 06: Gather: several offloads at once, results in call order.
//!
//! asyncio's `gather` starts many awaitables and returns their results in the order they
//! were given, not the order they finished. `oneloop::task::join_all` does the same: here
//! four blocking calls (a 300, 100, 200 and 50 ms wait, standing for slow I/O) run at once on
//! the default pool, so the whole takes about as long as the longest call, not the sum of
//! all four, and the results still come back in call order.
//!
//! Run with: cargo run --example 06_gather

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use oneloop::task::join_all;
use oneloop_examples::ms;

/// What the lesson measured.
#[derive(Debug)]
pub struct Gathered {
    /// The results, as returned: `(call index, how long that call took)`.
    pub results: Vec<(usize, Duration)>,
    /// Wall time for all of them.
    pub total: Duration,
    /// The most calls that were running at the same moment.
    pub peak_running: usize,
}

/// Runs one blocking call per entry of `waits`, all at once, and gathers the results.
pub fn gather(waits: &[Duration]) -> Gathered {
    let rt = oneloop::Runtime::new();
    let running = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let results = rt.block_on(async {
        // Step 1: start every call; each is submitted to the pool right away.
        let calls = waits.iter().enumerate().map(|(i, &wait)| {
            let (running, peak) = (running.clone(), peak.clone());
            oneloop::to_thread(move || {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                let began = Instant::now();
                std::thread::sleep(wait); // a blocking call
                running.fetch_sub(1, Ordering::SeqCst);
                (i, began.elapsed())
            })
        });
        // Step 2: wait for all of them; results come back in call order.
        join_all(calls).await
    });
    Gathered {
        results: results.into_iter().map(|r| r.expect("call")).collect(),
        total: start.elapsed(),
        peak_running: peak.load(Ordering::SeqCst),
    }
}

fn main() {
    let waits = [300, 100, 200, 50].map(Duration::from_millis);
    let gathered = gather(&waits);
    for (i, took) in &gathered.results {
        println!("call {i}: took {:>5.1} ms", ms(*took));
    }
    let sum: Duration = waits.iter().sum();
    let longest = waits.iter().max().copied().unwrap_or_default();
    println!();
    println!(
        "all four together: {:.1} ms (longest call {:.0} ms, sum of calls {:.0} ms)",
        ms(gathered.total),
        ms(longest),
        ms(sum)
    );
    println!("calls running at once, at most: {}", gathered.peak_running);
    println!();
    println!("Notice: the results are in call order (0, 1, 2, 3) although call 3 finished");
    println!("first, and the total is about the longest call, not the sum: the calls ran");
    println!("at the same time, on four worker threads, while the loop waited for all.");
}
