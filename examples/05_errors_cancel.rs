//! 05: Errors and cancellation are values, and cancellation is honest.
//!
//! A panic in an offloaded job comes back as `Err(JobError::Panicked)`; the worker and the
//! pool carry on. A timeout around a job that is still queued cancels it: it never runs.
//! A job already running cannot be killed (no thread can be): it runs to completion and
//! its result is discarded, but its `CancelToken` is set, so a job that checks it between
//! chunks of work stops early.
//!
//! Run with: cargo run --example 05_errors_cancel

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use oneloop::pool::{JobError, ThreadPool};
use oneloop::time::timeout;

/// What the lesson shows, as values a test can check.
#[derive(Debug)]
pub struct Evidence {
    /// The panicking job's result.
    pub panicked: Result<u32, JobError>,
    /// A job submitted after the panic still ran, on the same pool.
    pub pool_survived: bool,
    /// The queued job whose timeout expired ran anyway (it must not).
    pub cancelled_job_ran: bool,
    /// Chunks the long job did before its token told it to stop (of 1000).
    pub chunks_done: u32,
}

/// Runs the three scenes on a one-worker pool.
pub fn run() -> Evidence {
    let pool = ThreadPool::builder()
        .workers(1)
        .thread_name("lesson5")
        .build()
        .expect("pool");
    let rt = oneloop::Runtime::new();
    let evidence = rt.block_on(async {
        // Scene 1: a job panics; its future returns the panic as an error.
        let panicked =
            oneloop::run_in_executor(&pool, || -> u32 { panic!("corrupt record 17") }).await;
        let pool_survived = oneloop::run_in_executor(&pool, || 40 + 2).await == Ok(42);

        // Scene 2: the worker is busy, a second job waits in the queue, and a 20 ms
        // timeout expires first: the queued job is cancelled and never runs.
        let busy =
            oneloop::run_in_executor(&pool, || std::thread::sleep(Duration::from_millis(100)));
        let ran = Arc::new(AtomicBool::new(false));
        let queued = oneloop::run_in_executor(&pool, {
            let ran = ran.clone();
            move || ran.store(true, Ordering::SeqCst)
        });
        assert!(timeout(Duration::from_millis(20), queued).await.is_err());
        busy.await.expect("busy job");

        // Scene 3: a long job is running when its timeout expires. It cannot be stopped
        // from outside, but its token is set, and it checks the token between chunks.
        let chunks = Arc::new(AtomicU32::new(0));
        let long = oneloop::run_in_executor_with_token(&pool, {
            let chunks = chunks.clone();
            move |token| {
                for _ in 0..1000 {
                    if token.is_cancelled() {
                        break; // asked to stop: return early, leaving things consistent
                    }
                    std::thread::sleep(Duration::from_millis(1)); // one chunk of work
                    chunks.fetch_add(1, Ordering::SeqCst);
                }
            }
        });
        assert!(timeout(Duration::from_millis(30), long).await.is_err());
        (panicked, pool_survived, ran, chunks)
    });
    let (panicked, pool_survived, ran, chunks) = evidence;
    pool.shutdown(); // waits for the long job, which stops early: its token is set
    Evidence {
        panicked,
        pool_survived,
        cancelled_job_ran: ran.load(Ordering::SeqCst),
        chunks_done: chunks.load(Ordering::SeqCst),
    }
}

fn main() {
    let e = run();
    println!("scene 1: the panicking job returned {:?}", e.panicked);
    println!(
        "         and the pool still works afterwards: {}",
        e.pool_survived
    );
    println!(
        "scene 2: the queued job whose timeout expired ran: {}",
        e.cancelled_job_ran
    );
    println!(
        "scene 3: the running job did {} of 1000 chunks, then saw its token and stopped",
        e.chunks_done
    );
    println!();
    println!("Notice: failures are values, not crashes (the \"panicked at\" lines above are");
    println!("Rust's panic hook reporting as it happens; the job's future carried the error");
    println!("back). A cancelled job that had not started never runs; a running one cannot");
    println!("be killed, so it is told, and a well-written job listens.");
}
