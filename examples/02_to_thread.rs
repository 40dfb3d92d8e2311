//! 02: Offload blocking work with `to_thread`.
//!
//! The same checksum as in 01, computed two ways while a heartbeat ticks every 10 ms: inline
//! on the loop, and offloaded with `oneloop::to_thread` (asyncio's `asyncio.to_thread`).
//! Offloaded, the checksum runs on a worker thread and the handler simply awaits its
//! result, so the loop stays free: the heartbeat keeps its rhythm and debug mode has
//! nothing to report.
//!
//! Run with: cargo run --example 02_to_thread

use std::time::Duration;

use oneloop::time::sleep;
use oneloop_examples::{Checksum, Gaps, Heartbeat, ms};

const HEARTBEAT: Duration = Duration::from_millis(10);
const REQUESTS: usize = 3;

/// Where the handler computes its checksum.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// On the loop thread (blocks it).
    Inline,
    /// On the runtime's default pool, via `to_thread`.
    Offloaded,
}

/// Handles `REQUESTS` requests in `mode` with debug mode's threshold at `threshold`;
/// returns the heartbeat's gaps and the number of slow-task reports.
pub fn measure(mode: Mode, job: &Checksum, threshold: Duration) -> (Gaps, u64) {
    let rt = oneloop::Runtime::builder()
        .debug(true)
        .slow_task_threshold(threshold)
        .on_report(|_| {}) // counted through metrics below; keep the output to the table
        .build()
        .expect("runtime");
    let gaps = rt.block_on(async {
        let heartbeat = Heartbeat::start(HEARTBEAT);
        for _ in 0..REQUESTS {
            let job = job.clone();
            let _checksum = match mode {
                // Step 1, the bug: the checksum runs on the loop.
                Mode::Inline => job.run(),
                // Step 2, the fix: it runs on a worker; the task awaits the result.
                Mode::Offloaded => oneloop::to_thread(move || job.run()).await.expect("job"),
            };
            sleep(Duration::from_millis(20)).await; // think time between requests
        }
        heartbeat.stop().await
    });
    (gaps, rt.metrics().slow_polls)
}

fn main() {
    let job = Checksum::calibrated(256, Duration::from_millis(150));
    println!(
        "{REQUESTS} requests, each a ~150 ms checksum; a heartbeat every {} ms.",
        ms(HEARTBEAT)
    );
    println!();
    println!(
        "{:<10} {:>16} {:>18}",
        "mode", "worst gap (ms)", "slow-task reports"
    );
    for mode in [Mode::Inline, Mode::Offloaded] {
        let (gaps, slow) = measure(mode, &job, Duration::from_millis(50));
        let name = if mode == Mode::Inline {
            "inline"
        } else {
            "to_thread"
        };
        println!("{name:<10} {:>16.1} {slow:>18}", ms(gaps.worst));
    }
    println!();
    println!("Notice: inline, the heartbeat's worst gap is the checksum's whole duration and");
    println!("every request is a slow-task report; offloaded, the gap stays near 10 ms and");
    println!("there are none. The work is the same: only the thread that does it changed.");
}
