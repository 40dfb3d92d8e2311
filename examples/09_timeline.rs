//! 09: The timeline: inline vs offloaded, drawn from the runtime's own trace.
//!
//! The asyncio guides draw the "inline vs offloaded" diagram by hand; here it is measured.
//! The same small workload (two request handlers computing checksums, and a heartbeat)
//! runs twice with tracing on (`Builder::trace_file`): once inline, once offloaded to a
//! CPU pool (one worker per core but one, so the loop keeps a core of its own). Both traces are read back and drawn one above the other as an SVG:
//! inline, the handlers' long polls fill the loop's track and the heartbeat has gaps;
//! offloaded, the loop's track is all short polls, the checksums sit on the worker tracks,
//! and arrows link each submit to the worker and back to the handler's resume. The trace
//! files open in Perfetto (ui.perfetto.dev) too. Reading a trace back is `lib/trace.rs`;
//! drawing it, `lib/picture.rs`.
//!
//! Run with: cargo run --example 09_timeline   (writes target/timeline.svg; give a path
//! to write it elsewhere: `cargo run --example 09_timeline -- examples/timeline.svg`
//! refreshes the picture the README shows)

use std::path::{Path, PathBuf};
use std::time::Duration;

use oneloop::pool::ThreadPool;
use oneloop::time::sleep;
use oneloop_examples::trace::{Timeline, read};
use oneloop_examples::{Checksum, Heartbeat, picture};

/// Where the checksums run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// In the handlers, on the loop.
    Inline,
    /// On a CPU pool, with `run_in_executor`.
    Offloaded,
}

/// Runs the workload in `mode`, tracing it to `trace`.
pub fn run(mode: Mode, trace: &Path, job: &Checksum) {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let pool = ThreadPool::builder()
        .workers(cores.saturating_sub(1).max(1))
        .thread_name("worker")
        .build()
        .expect("pool");
    let rt = oneloop::Runtime::builder()
        .trace_file(trace)
        .build()
        .expect("runtime");
    rt.block_on(async {
        let heartbeat = Heartbeat::start(Duration::from_millis(5));
        sleep(Duration::from_millis(20)).await;
        // Two handlers, each serving two requests that compute a checksum.
        let handlers: Vec<_> = (0..2)
            .map(|_| {
                let (job, pool) = (job.clone(), pool.clone());
                oneloop::task::Builder::new()
                    .name("handler")
                    .spawn(async move {
                        for _ in 0..2 {
                            let job = job.clone();
                            match mode {
                                Mode::Inline => job.run(),
                                Mode::Offloaded => {
                                    oneloop::run_in_executor(&pool, move || job.run())
                                        .await
                                        .expect("checksum")
                                }
                            };
                            sleep(Duration::from_millis(10)).await;
                        }
                    })
            })
            .collect();
        for handler in handlers {
            handler.await.expect("handler");
        }
        sleep(Duration::from_millis(20)).await;
        heartbeat.stop().await;
    });
    // Dropping the runtime completes the trace file.
}

/// Draws both timelines, inline above offloaded, on one time scale, into `out`.
pub fn draw(inline: &Timeline, offloaded: &Timeline, out: &Path) {
    picture::draw(
        &[
            ("inline: the handlers compute on the loop", inline),
            (
                "offloaded: the workers compute, the loop stays free",
                offloaded,
            ),
        ],
        out,
    );
}

fn main() {
    let dir = std::env::temp_dir();
    let (inline_trace, offloaded_trace) = (
        dir.join("oneloop-inline.json"),
        dir.join("oneloop-offloaded.json"),
    );
    let job = Checksum::calibrated(128, Duration::from_millis(40));
    run(Mode::Inline, &inline_trace, &job);
    run(Mode::Offloaded, &offloaded_trace, &job);
    let (inline, offloaded) = (read(&inline_trace), read(&offloaded_trace));
    // Never into the source tree unless asked: the path given, else the build's target dir.
    let picture = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"))
                .join("timeline.svg")
        });
    if let Some(dir) = picture.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).expect("create the picture's directory");
    }
    draw(&inline, &offloaded, &picture);
    println!(
        "traces: {} and {}",
        inline_trace.display(),
        offloaded_trace.display()
    );
    println!("picture: {}", picture.display());
    println!();
    println!(
        "longest poll on the loop: inline {:.1} ms, offloaded {:.1} ms",
        inline.longest_loop_poll(),
        offloaded.longest_loop_poll()
    );
    println!(
        "jobs on worker tracks: inline {}, offloaded {}",
        inline.count_jobs(),
        offloaded.count_jobs()
    );
    println!();
    println!("Notice: inline, the loop's track is a few long red polls (the handlers) and the");
    println!("heartbeat's green ticks stop under them; offloaded, the long orange slices moved");
    println!("to the worker tracks, arrows go from each submit to a worker and back, and the");
    println!("loop's track stays a row of short polls.");
}
