//! 01: Detect a blocked loop.
//!
//! One event loop runs every task, one at a time. A task that computes for 300 ms without
//! reaching an `.await` stops every other task, timer and socket for those 300 ms. Debug
//! mode finds it: each poll over the threshold is reported (`OL001`) with the task's name
//! and the line that spawned it, and a watchdog reports it while it is still blocking
//! (`OL002`), with a backtrace of where the loop is stuck.
//!
//! Run with: cargo run --example 01_detect_block

use std::time::Duration;

use oneloop::time::sleep;
use oneloop_examples::{Checksum, Gaps, Heartbeat, ms};

const HEARTBEAT: Duration = Duration::from_millis(10);

/// Runs a heartbeat next to a handler that computes a checksum inline; returns what the
/// heartbeat saw and how many slow polls debug mode reported.
pub fn measure(job: Checksum) -> (Gaps, u64) {
    // Debug mode with a 50 ms threshold: asyncio's loop.set_debug(True) with
    // slow_callback_duration = 0.05. (ONELOOP_DEBUG=1 and ONELOOP_SLOW_MS=50 do the same.)
    let rt = oneloop::Runtime::builder()
        .debug(true)
        .slow_task_threshold(Duration::from_millis(50))
        .build()
        .expect("runtime");

    let gaps = rt.block_on(async {
        // A heartbeat that should tick every 10 ms.
        let heartbeat = Heartbeat::start(HEARTBEAT);
        sleep(Duration::from_millis(50)).await;

        // A request handler that computes a checksum inline, on the loop: the bug.
        let handler = oneloop::task::Builder::new()
            .name("handler")
            .spawn(async move { job.run() });
        let sum = handler.await.expect("handler");
        println!("handler: checksum {sum:08x}");

        sleep(Duration::from_millis(50)).await;
        heartbeat.stop().await
    });
    (gaps, rt.metrics().slow_polls)
}

fn main() {
    let job = Checksum::calibrated(256, Duration::from_millis(300));
    println!("handler: computing a ~300 ms checksum inline on the loop...");
    let (gaps, slow) = measure(job);
    println!();
    println!(
        "heartbeat every {} ms: worst gap {:.1} ms",
        ms(HEARTBEAT),
        ms(gaps.worst)
    );
    println!("slow-task reports (OL001): {slow}");
    println!();
    println!("Notice: the OL001/OL002 lines above name task \"handler\" and the line that");
    println!("spawned it, and the heartbeat stalled for the checksum's whole duration.");
    println!("The fix is to offload the checksum: see 02_to_thread.");
}
