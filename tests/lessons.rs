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

#[path = "../examples/06_gather.rs"]
#[allow(dead_code)]
mod gather;

#[path = "../examples/07_blocking_io.rs"]
#[allow(dead_code)]
mod blocking_io;

#[path = "../examples/08_service.rs"]
#[allow(dead_code)]
mod service;

#[test]
fn lesson_06_gather_returns_results_in_call_order_from_concurrent_calls() {
    hang_guard(|| {
        let waits = [120, 40, 80, 20].map(Duration::from_millis);
        let gathered = gather::gather(&waits);
        let order: Vec<usize> = gathered.results.iter().map(|(i, _)| *i).collect();
        assert_eq!(order, [0, 1, 2, 3], "call order, not finishing order");
        assert_eq!(gathered.peak_running, 4, "all four ran at once");
    });
}

#[test]
fn lesson_07_a_blocking_client_is_capped_by_the_pool_and_the_native_one_is_not() {
    hang_guard(|| {
        let blocking = blocking_io::run(blocking_io::Client::BlockingInToThread, 40);
        let native = blocking_io::run(blocking_io::Client::NativeAsync, 40);
        let pool = (std::thread::available_parallelism().map_or(1, usize::from) + 4).min(32);
        assert!(blocking.peak_concurrent <= pool, "{blocking:?}");
        assert_eq!(
            native.peak_concurrent, 40,
            "every native request was in flight at once"
        );
    });
}

#[test]
fn lesson_08_the_service_blocks_its_loop_inline_and_not_when_offloaded() {
    hang_guard(|| {
        // Wide margins: a checksum three times the threshold, so the outcome does not
        // depend on how busy the machine is.
        let settings = service::Settings {
            duration: Duration::from_millis(1500),
            checksum_takes: Duration::from_millis(150),
            slow_threshold: Duration::from_millis(50),
        };
        let inline = service::run(service::Mode::Inline, settings);
        let offload = service::run(service::Mode::Offload, settings);
        assert!(inline.slow_reports >= 1, "inline checksums block the loop");
        assert_eq!(offload.slow_reports, 0, "offloaded ones never do");
        assert!(inline.checksum_rps > 0.0 && offload.checksum_rps > 0.0);
        assert!(!offload.health.is_empty());
    });
}

#[path = "../examples/09_timeline.rs"]
#[allow(dead_code)]
mod timeline;

#[path = "../examples/10_offload_cost.rs"]
#[allow(dead_code)]
mod offload_cost;

#[test]
fn lesson_09_the_trace_shows_jobs_on_workers_and_arrows_back_to_the_loop() {
    hang_guard(|| {
        let dir = std::env::temp_dir();
        let id = std::process::id();
        let (inline_trace, offloaded_trace) = (
            dir.join(format!("lesson09-inline-{id}.json")),
            dir.join(format!("lesson09-offloaded-{id}.json")),
        );
        let job = Checksum::calibrated(32, Duration::from_millis(20));
        timeline::run(timeline::Mode::Inline, &inline_trace, &job);
        timeline::run(timeline::Mode::Offloaded, &offloaded_trace, &job);
        let (inline, offloaded) = (
            oneloop_examples::trace::read(&inline_trace),
            oneloop_examples::trace::read(&offloaded_trace),
        );
        assert_eq!(inline.tracks[0].0, "loop", "the loop's track comes first");
        assert_eq!(inline.count_jobs(), 0, "inline: nothing on the workers");
        assert_eq!(offloaded.count_jobs(), 4, "offloaded: four checksum jobs");
        // Each job: an arrow from the submitting poll to a worker, and one back to the loop.
        assert_eq!(offloaded.arrows.len(), 8);
        assert!(
            offloaded
                .arrows
                .iter()
                .all(|((from, _), (to, _))| from != to)
        );
        let picture = dir.join(format!("lesson09-{id}.svg"));
        timeline::draw(&inline, &offloaded, &picture);
        let svg = std::fs::read_to_string(&picture).unwrap();
        assert!(svg.contains("offloaded: the workers compute") && svg.contains("job #"));
        for file in [inline_trace, offloaded_trace, picture] {
            let _ = std::fs::remove_file(file);
        }
    });
}

#[test]
fn lesson_10_a_trivial_function_costs_more_offloaded_than_inline() {
    hang_guard(|| {
        let pool = oneloop::pool::ThreadPool::new(1).unwrap();
        let costs = offload_cost::trivial(&pool, 2_000);
        // A thread hop against a few instructions: orders of magnitude apart.
        assert!(costs.offloaded > costs.inline, "{costs:?}");
    });
}

#[path = "../examples/11_process_pool.rs"]
#[allow(dead_code)]
mod process_pool;

/// Set in the child process that lesson 11's test starts (this test binary again): there,
/// `lesson_11_child_serves_on_threads_until_its_first_crash` runs the service.
const LESSON_11_CHILD: &str = "ONELOOP_LESSON_11_CHILD";

/// Lesson 11's child: the service with its native calls on threads, until the first crash
/// ends the process. Does nothing unless lesson 11's test started it.
#[test]
fn lesson_11_child_serves_on_threads_until_its_first_crash() {
    if std::env::var_os(LESSON_11_CHILD).is_some() {
        process_pool::run(process_pool::Pool::Threads, Duration::from_secs(5));
        println!("the service survived");
    }
}

#[test]
fn lesson_11_a_crash_ends_a_service_on_threads_and_fails_only_its_call_on_processes() {
    use std::os::unix::process::ExitStatusExt;

    hang_guard(|| {
        // On threads, the crash: the whole service (a child process) dies of SIGSEGV.
        let mut child = std::process::Command::new(std::env::current_exe().unwrap());
        child.env(LESSON_11_CHILD, "1").args([
            "lesson_11_child_serves_on_threads_until_its_first_crash",
            "--exact",
            "--nocapture", // the native library's last words reach the pipe at once
        ]);
        let ended = oneloop_examples::Ended::run(child);
        assert_eq!(ended.status.signal(), Some(libc::SIGSEGV), "{ended:?}");
        assert!(ended.last_words.contains("bad pointer"), "{ended:?}");

        // On threads, the hang: the caller gives up; the thread stays stuck.
        let (gave_up, report) = process_pool::abandon_on_threads();
        assert!(gave_up, "the hung call never returns");
        assert_eq!(report.still_running.len(), 1, "{report}");

        // On processes: every crash and every hang fails its own call, and nothing else.
        let outcome = process_pool::run(process_pool::Pool::Processes, Duration::from_secs(2));
        let counts = &outcome.counts;
        assert!(
            counts.ok >= 1 && counts.crashes >= 1 && counts.kills >= 1,
            "{counts:?}"
        );
        assert_eq!(counts.surprises, 0, "{counts:?}");
        // Crashed and killed workers were replaced (the replacements answered), one each.
        let workers = counts.workers.len() as u64;
        assert!(workers >= 3, "{counts:?}");
        assert!(workers <= 2 + counts.crashes + counts.kills, "{counts:?}");
        assert!(!outcome.health.is_empty(), "/health answered throughout");
        let first = counts.first_crash.as_deref().unwrap_or_default();
        for says in [
            "SIGSEGV",
            "not by oneloop",
            "11_process_pool.rs",
            "bad pointer",
        ] {
            assert!(
                first.contains(says),
                "the crash report says {says:?}: {first}"
            );
        }
    });
}

#[path = "../examples/12_scale_out.rs"]
#[allow(dead_code)]
mod scale_out;

/// Lesson 12's workers: this test binary started again with `scale_out::WORKER_ENV` set
/// (by the test below); it serves until killed. Does nothing otherwise.
#[test]
fn lesson_12_worker() {
    if let Ok(url) = std::env::var(scale_out::WORKER_ENV) {
        scale_out::worker(&url).expect("worker");
    }
}

#[test]
fn lesson_12_two_workers_share_the_calls_and_a_killed_one_loses_none() {
    hang_guard(|| {
        let Some(server) = oneloop_remote::testing::RedisServer::start() else {
            return;
        };
        let worker_args = ["lesson_12_worker", "--exact", "--quiet"];
        let settings = |workers, kill_after| scale_out::Settings {
            duration: Duration::from_millis(2500),
            passes: scale_out::passes_for(Duration::from_millis(20)),
            workers,
            kill_after,
        };
        // Two workers: both answer.
        let two = scale_out::run(&server, settings(2, None), &worker_args);
        assert_eq!(two.counts.failed, 0, "{:?}", two.counts);
        assert_eq!(two.counts.workers.len(), 2, "{:?}", two.counts);
        assert!(!two.health.is_empty(), "/health answered throughout");
        // One killed mid-run: what it held is taken over, and no request fails.
        let killed = scale_out::run(
            &server,
            settings(2, Some(Duration::from_millis(700))),
            &worker_args,
        );
        assert_eq!(killed.counts.failed, 0, "{:?}", killed.counts);
        assert!(killed.counts.taken_over >= 1, "{:?}", killed.counts);
        assert!(killed.killed.is_some());
    });
}
