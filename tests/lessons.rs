//! The lessons' claims, checked by running the lessons' own code (each example file is
//! included here as a module). Outcomes, not timings: reports present or absent, limits
//! held, jobs that never ran.

mod util;

use std::time::Duration;

use oneloop::pool::JobError;
use oneloop_examples::Checksum;
use util::hang_guard;

#[path = "../examples/01_detect_block.rs"]
#[allow(dead_code)]
mod detect_block;

#[path = "../examples/02_to_thread.rs"]
#[allow(dead_code)]
mod to_thread;

#[path = "../examples/03_cpu_pool.rs"]
#[allow(dead_code)]
mod cpu_pool;

#[path = "../examples/04_bounded.rs"]
#[allow(dead_code)]
mod bounded;

#[path = "../examples/05_errors_cancel.rs"]
#[allow(dead_code)]
mod errors_cancel;

#[test]
fn lesson_01_an_inline_checksum_is_reported_as_a_slow_task() {
    hang_guard(|| {
        let job = Checksum::calibrated(64, Duration::from_millis(150));
        let (_gaps, slow) = detect_block::measure(job);
        assert!(slow >= 1, "the blocking handler was not reported");
    });
}

#[test]
fn lesson_02_reports_appear_inline_and_vanish_when_offloaded() {
    hang_guard(|| {
        // A generous threshold, a job three times longer: the outcome does not depend on
        // how busy the machine is.
        let threshold = Duration::from_millis(100);
        let job = Checksum::calibrated(64, 3 * threshold);
        let (_, inline) = to_thread::measure(to_thread::Mode::Inline, &job, threshold);
        let (_, offloaded) = to_thread::measure(to_thread::Mode::Offloaded, &job, threshold);
        assert_eq!(inline, 3, "every inline request blocked the loop");
        assert_eq!(offloaded, 0, "offloaded requests never did");
    });
}

#[test]
fn lesson_03_a_pool_runs_as_many_jobs_at_once_as_it_has_workers() {
    hang_guard(|| {
        let job = Checksum::calibrated(64, Duration::from_millis(30));
        assert_eq!(cpu_pool::run(1, 4, &job).peak_parallel, 1);
        assert_eq!(
            cpu_pool::run(2, 8, &job).peak_parallel,
            2,
            "two jobs ran at once"
        );
    });
}

#[test]
fn lesson_04_the_semaphore_holds_in_flight_work_to_its_limit() {
    hang_guard(|| {
        let pool = oneloop::pool::ThreadPool::new(2).unwrap();
        let bounded = bounded::process(&pool, 200, Some(4));
        assert_eq!(bounded.in_flight, 4);
        assert!(bounded.items_alive <= 4);
        let unbounded = bounded::process(&pool, 200, None);
        assert!(
            unbounded.in_flight > 4,
            "without a limit the producer runs ahead"
        );
    });
}

#[test]
fn lesson_05_errors_are_values_and_cancellation_is_honest() {
    hang_guard(|| {
        let evidence = errors_cancel::run();
        assert_eq!(
            evidence.panicked,
            Err(JobError::Panicked("corrupt record 17".into()))
        );
        assert!(evidence.pool_survived);
        assert!(
            !evidence.cancelled_job_ran,
            "a job cancelled while queued ran"
        );
        assert!(
            evidence.chunks_done < 1000,
            "the running job did not stop early"
        );
    });
}
