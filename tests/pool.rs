//! The worker pool on its own: results, panics, honest cancellation, bounded queues and
//! their overflow policies, deadlines, shutdown in its three forms, dead workers, and
//! thread creation failing.
//! (Long because it is the pool's whole behaviour spec, one test per promise.)

mod util;

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use oneloop_pool::{
    Executor, JobBuilder, JobError, Overflow, RayonExecutor, ThreadPool, TrySpawnError,
};
use util::{
    Gate, PoisonedPayload, assert_send, hang_guard, threads_named, unique_prefix, wait_until,
};

/// A pool of one worker whose worker is held busy until the returned gate opens.
fn busy_single_worker(builder: oneloop_pool::Builder) -> (ThreadPool, Gate) {
    let pool = builder.workers(1).build().unwrap();
    let gate = Gate::new();
    let started = Arc::new(AtomicBool::new(false));
    pool.spawn({
        let gate = gate.clone();
        let started = started.clone();
        move || {
            started.store(true, Ordering::SeqCst);
            gate.wait();
        }
    })
    .detach();
    wait_until(|| started.load(Ordering::SeqCst));
    (pool, gate)
}

#[test]
fn job_handles_are_send_futures_for_any_executor() {
    assert_send::<oneloop_pool::JobHandle<Vec<u8>>>();
    assert_send::<ThreadPool>();
    let pool = ThreadPool::new(2).unwrap();
    let value = futures::executor::block_on(pool.spawn(|| "from futures' executor"));
    assert_eq!(value, Ok("from futures' executor"));
    assert_eq!(pool.spawn(|| 3).join(), Ok(3));
}

#[test]
fn a_panicking_job_returns_an_error_and_the_pool_keeps_working() {
    let pool = ThreadPool::new(2).unwrap();
    let failed = pool.spawn(|| -> u8 { panic!("bad checksum") }).join();
    assert_eq!(failed, Err(JobError::Panicked("bad checksum".into())));
    for i in 0..10 {
        assert_eq!(pool.spawn(move || i).join(), Ok(i));
    }
    let stats = pool.stats();
    assert_eq!((stats.panicked, stats.completed, stats.workers), (1, 10, 2));
}

#[test]
fn cancelling_a_queued_job_means_it_never_runs() {
    hang_guard(|| {
        let (pool, gate) = busy_single_worker(ThreadPool::builder());
        let ran = Arc::new(AtomicBool::new(false));
        let queued = pool.spawn({
            let ran = ran.clone();
            move || ran.store(true, Ordering::SeqCst)
        });
        assert!(queued.cancel(), "it had not started");
        assert!(!queued.cancel(), "cancelling twice reports nothing new");
        gate.open();
        assert_eq!(queued.join(), Err(JobError::Cancelled));
        pool.shutdown();
        assert!(!ran.load(Ordering::SeqCst), "a cancelled job ran");
        assert_eq!(pool.stats().cancelled, 1);
    });
}

#[test]
fn dropping_the_handle_of_a_queued_job_cancels_it() {
    hang_guard(|| {
        let (pool, gate) = busy_single_worker(ThreadPool::builder());
        let ran = Arc::new(AtomicBool::new(false));
        drop(pool.spawn({
            let ran = ran.clone();
            move || ran.store(true, Ordering::SeqCst)
        }));
        gate.open();
        pool.shutdown();
        assert!(!ran.load(Ordering::SeqCst));
    });
}

#[test]
fn a_running_job_cannot_be_cancelled_but_its_token_is_set() {
    hang_guard(|| {
        let pool = ThreadPool::new(1).unwrap();
        let started = Arc::new(AtomicBool::new(false));
        let stopped_early = Arc::new(AtomicBool::new(false));
        let job = pool.spawn_with_token({
            let started = started.clone();
            let stopped_early = stopped_early.clone();
            move |token| {
                started.store(true, Ordering::SeqCst);
                while !token.is_cancelled() {
                    thread::sleep(Duration::from_millis(1));
                }
                stopped_early.store(true, Ordering::SeqCst);
                "partial"
            }
        });
        wait_until(|| started.load(Ordering::SeqCst));
        assert!(!job.cancel(), "running: too late to cancel");
        pool.shutdown(); // waits for it: it stops because its token was set
        assert!(stopped_early.load(Ordering::SeqCst));
        assert_eq!(
            job.join(),
            Ok("partial"),
            "the handle still gets what it returned"
        );
    });
}

#[test]
fn dropping_the_handle_of_a_running_job_sets_its_token_and_discards_the_result() {
    hang_guard(|| {
        let pool = ThreadPool::new(1).unwrap();
        let started = Arc::new(AtomicBool::new(false));
        let saw_token = Arc::new(AtomicBool::new(false));
        let job = pool.spawn_with_token({
            let started = started.clone();
            let saw_token = saw_token.clone();
            move |token| {
                started.store(true, Ordering::SeqCst);
                wait_until(|| token.is_cancelled());
                saw_token.store(true, Ordering::SeqCst);
            }
        });
        wait_until(|| started.load(Ordering::SeqCst));
        drop(job);
        pool.shutdown();
        assert!(saw_token.load(Ordering::SeqCst));
    });
}

#[test]
fn a_detached_job_runs_unobserved() {
    let pool = ThreadPool::new(1).unwrap();
    let ran = Arc::new(AtomicBool::new(false));
    pool.spawn({
        let ran = ran.clone();
        move || ran.store(true, Ordering::SeqCst)
    })
    .detach();
    pool.shutdown();
    assert!(ran.load(Ordering::SeqCst));
}

#[test]
fn try_spawn_hands_the_closure_back_when_full_or_shut_down() {
    hang_guard(|| {
        let (pool, gate) = busy_single_worker(ThreadPool::builder().queue_capacity(1));
        let first = pool.try_spawn(|| 1).expect("one slot free");
        let refused = pool.try_spawn(|| 2).expect_err("the queue is full");
        assert!(matches!(refused, TrySpawnError::Full(_)));
        assert_eq!(refused.into_inner()(), 2, "the closure came back intact");
        assert_eq!(pool.stats().rejected, 1);
        gate.open();
        assert_eq!(first.join(), Ok(1));
        pool.shutdown();
        let refused = pool.try_spawn(|| 3).expect_err("shut down");
        assert!(matches!(refused, TrySpawnError::Shutdown(_)));
        assert_eq!(refused.into_inner()(), 3);
    });
}

#[test]
fn a_full_reject_pool_resolves_spawn_as_rejected() {
    hang_guard(|| {
        let (pool, gate) = busy_single_worker(
            ThreadPool::builder()
                .queue_capacity(1)
                .overflow(Overflow::Reject),
        );
        let queued = pool.spawn(|| "queued");
        let refused = pool.spawn(|| "refused");
        assert_eq!(refused.join(), Err(JobError::Rejected));
        gate.open();
        assert_eq!(queued.join(), Ok("queued"));
    });
}

#[test]
fn a_full_wait_pool_blocks_spawn_until_there_is_room() {
    hang_guard(|| {
        let (pool, gate) = busy_single_worker(ThreadPool::builder().queue_capacity(1));
        let queued = pool.spawn(|| 1);
        let returned = Arc::new(AtomicBool::new(false));
        let spawner = thread::spawn({
            let pool = pool.clone();
            let returned = returned.clone();
            move || {
                let handle = pool.spawn(|| 2); // full: blocks until the queue has room
                returned.store(true, Ordering::SeqCst);
                handle.join()
            }
        });
        // (A wrong, non-blocking spawn would show up here; a right one never can.)
        thread::sleep(Duration::from_millis(30));
        assert!(
            !returned.load(Ordering::SeqCst),
            "spawn did not wait for room"
        );
        gate.open();
        assert_eq!(queued.join(), Ok(1));
        assert_eq!(spawner.join().unwrap(), Ok(2));
        assert!(returned.load(Ordering::SeqCst));
    });
}

#[test]
fn a_full_caller_runs_pool_runs_the_job_on_the_submitting_thread() {
    hang_guard(|| {
        let (pool, gate) = busy_single_worker(
            ThreadPool::builder()
                .queue_capacity(1)
                .overflow(Overflow::CallerRuns),
        );
        let queued = pool.spawn(|| thread::current().id());
        let here = pool.spawn(|| thread::current().id());
        assert!(here.is_finished(), "it ran during spawn");
        assert_eq!(here.join(), Ok(thread::current().id()));
        gate.open();
        assert_ne!(queued.join().unwrap(), thread::current().id());
    });
}

#[test]
fn a_job_whose_deadline_passes_in_the_queue_never_runs() {
    hang_guard(|| {
        let (pool, gate) = busy_single_worker(ThreadPool::builder());
        let ran = Arc::new(AtomicBool::new(false));
        let deadline = Instant::now() + Duration::from_millis(5);
        let late = pool.spawn_before(deadline, {
            let ran = ran.clone();
            move || ran.store(true, Ordering::SeqCst)
        });
        wait_until(|| Instant::now() > deadline);
        gate.open();
        assert_eq!(late.join(), Err(JobError::DeadlineExpired));
        assert!(!ran.load(Ordering::SeqCst));
        assert_eq!(pool.stats().expired, 1);
        let in_time = pool.spawn_before(Instant::now() + Duration::from_secs(60), || "ran");
        assert_eq!(in_time.join(), Ok("ran"));
    });
}

#[test]
fn jobs_record_their_submit_site() {
    let pool = ThreadPool::new(1).unwrap();
    let line = line!() + 1;
    let handle = pool.spawn(|| ());
    let info = handle.info();
    assert_eq!(info.location.line(), line);
    assert!(info.location.file().ends_with("pool.rs"));
    assert!(info.to_string().contains("submitted at tests/pool.rs:"));
    handle.join().unwrap();
}

#[test]
fn graceful_shutdown_finishes_the_queue_and_then_refuses_work() {
    hang_guard(|| {
        let pool = ThreadPool::new(2).unwrap();
        let done = Arc::new(AtomicUsize::new(0));
        let handles: Vec<_> = (0..200)
            .map(|_| {
                let done = done.clone();
                pool.spawn(move || {
                    thread::sleep(Duration::from_micros(100));
                    done.fetch_add(1, Ordering::SeqCst);
                })
            })
            .collect();
        pool.shutdown();
        assert_eq!(done.load(Ordering::SeqCst), 200, "every queued job ran");
        assert!(handles.into_iter().all(|h| h.join().is_ok()));
        assert_eq!(pool.spawn(|| ()).join(), Err(JobError::Shutdown));
        assert!(pool.is_shutdown());
        pool.shutdown(); // idempotent
    });
}

#[test]
fn shutdown_now_cancels_the_queue_and_lets_the_running_job_finish() {
    hang_guard(|| {
        let pool = ThreadPool::new(1).unwrap();
        let started = Arc::new(AtomicBool::new(false));
        let running = pool.spawn_with_token({
            let started = started.clone();
            move |token| {
                started.store(true, Ordering::SeqCst);
                wait_until(|| token.is_cancelled());
                "stopped on request"
            }
        });
        wait_until(|| started.load(Ordering::SeqCst));
        let ran = Arc::new(AtomicUsize::new(0));
        let queued: Vec<_> = (0..1000)
            .map(|_| {
                let ran = ran.clone();
                pool.spawn(move || ran.fetch_add(1, Ordering::SeqCst))
            })
            .collect();
        pool.shutdown_now();
        assert_eq!(running.join(), Ok("stopped on request"));
        for handle in queued {
            assert_eq!(handle.join(), Err(JobError::Cancelled));
        }
        assert_eq!(ran.load(Ordering::SeqCst), 0);
        assert_eq!(pool.stats().cancelled, 1000);
    });
}

#[test]
fn shutdown_timeout_names_the_job_that_does_not_return() {
    hang_guard(|| {
        let pool = ThreadPool::new(1).unwrap();
        let gate = Gate::new();
        let started = Arc::new(AtomicBool::new(false));
        let line = line!() + 1;
        let stuck = pool.spawn({
            let gate = gate.clone();
            let started = started.clone();
            move || {
                started.store(true, Ordering::SeqCst);
                gate.wait(); // ignores its token: only the test lets it go
                "finally"
            }
        });
        wait_until(|| started.load(Ordering::SeqCst));
        let queued = pool.spawn(|| "never");
        let report = pool.shutdown_timeout(Duration::from_millis(50));
        assert!(!report.is_clean());
        assert_eq!(report.cancelled, 1);
        assert_eq!(report.still_running.len(), 1);
        let job = &report.still_running[0];
        assert_eq!(job.location.line(), line);
        assert!(job.token_set, "its token was set");
        assert!(job.running_for() >= Duration::from_millis(50));
        let text = report.to_string();
        assert!(text.contains("1 job still running"), "{text}");
        assert!(text.contains(&format!("tests/pool.rs:{line}")), "{text}");
        assert!(text.contains("token set"), "{text}");
        assert_eq!(queued.join(), Err(JobError::Cancelled));
        gate.open();
        assert_eq!(
            stuck.join(),
            Ok("finally"),
            "it still resolves when it returns"
        );
    });
}

#[test]
fn dropping_the_pool_joins_every_thread() {
    hang_guard(|| {
        let prefix = unique_prefix("drop");
        let pool = ThreadPool::builder()
            .workers(3)
            .thread_name(&prefix)
            .build()
            .unwrap();
        let results: Vec<_> = (0..30).map(|i| pool.spawn(move || i)).collect();
        if cfg!(target_os = "linux") {
            // Threads name themselves as they start.
            wait_until(|| threads_named(&prefix) == 3);
        }
        let clone = pool.clone();
        drop(pool);
        assert_eq!(
            threads_named(&prefix) > 0,
            cfg!(target_os = "linux"),
            "a clone keeps it"
        );
        drop(clone);
        // No thread left after the last handle. (A joined thread can stay listed in /proc
        // for an instant after the join returns; one left running would stay listed, and
        // the hang guard would say so.)
        wait_until(|| threads_named(&prefix) == 0);
        assert!(
            results.into_iter().all(|r| r.join().is_ok()),
            "the queue was finished"
        );
    });
}

#[test]
fn jobs_spawned_from_inside_jobs_all_run_once() {
    hang_guard(|| {
        let pool = ThreadPool::new(4).unwrap();
        let runs = Arc::new(AtomicUsize::new(0));
        let parents: Vec<_> = (0..100)
            .map(|_| {
                let inner_pool = pool.clone();
                let runs = runs.clone();
                pool.spawn(move || {
                    // Children go to this worker's own deque; idle workers steal them.
                    let children: Vec<_> = (0..20)
                        .map(|_| {
                            let runs = runs.clone();
                            inner_pool.spawn(move || runs.fetch_add(1, Ordering::SeqCst))
                        })
                        .collect();
                    children
                })
            })
            .collect();
        let children: Vec<_> = parents
            .into_iter()
            .flat_map(|p| p.join().unwrap())
            .collect();
        for child in children {
            child.join().unwrap();
        }
        assert_eq!(runs.load(Ordering::SeqCst), 2000);
        pool.shutdown();
        assert_eq!(pool.stats().completed, 2100);
    });
}

#[test]
fn a_worker_that_dies_is_replaced() {
    hang_guard(|| {
        let prefix = unique_prefix("die");
        let pool = ThreadPool::builder()
            .workers(2)
            .thread_name(&prefix)
            .build()
            .unwrap();
        let killer = pool.spawn(|| std::panic::panic_any(PoisonedPayload));
        assert!(matches!(killer.join(), Err(JobError::Panicked(_))));
        wait_until(|| pool.stats().workers == 2 && threads_named(&prefix) <= 2);
        let results: Vec<_> = (0..100).map(|i| pool.spawn(move || i)).collect();
        let sum: i32 = results.into_iter().map(|r| r.join().unwrap()).sum();
        assert_eq!(sum, (0..100).sum::<i32>());
        assert_eq!(pool.stats().workers, 2, "the dead worker was replaced");
    });
}

/// A spawn handler that fails once `fail` is set.
fn flaky_threads(
    fail: Arc<AtomicBool>,
) -> impl Fn(oneloop_pool::WorkerThread) -> io::Result<thread::JoinHandle<()>> {
    move |worker| {
        if fail.load(Ordering::SeqCst) {
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                "no more threads (EAGAIN)",
            ));
        }
        thread::Builder::new()
            .name(worker.name())
            .spawn(move || worker.run())
    }
}

#[test]
fn a_pool_whose_threads_cannot_start_reports_the_os_error() {
    let fail = Arc::new(AtomicBool::new(true));
    let error = ThreadPool::builder()
        .workers(2)
        .spawn_handler(flaky_threads(fail))
        .build()
        .expect_err("no thread could start");
    assert_eq!(error.kind(), io::ErrorKind::WouldBlock);
}

#[test]
fn a_pool_that_loses_every_worker_and_cannot_replace_it_is_broken() {
    hang_guard(|| {
        let fail = Arc::new(AtomicBool::new(false));
        let pool = ThreadPool::builder()
            .workers(1)
            .spawn_handler(flaky_threads(fail.clone()))
            .build()
            .unwrap();
        fail.store(true, Ordering::SeqCst); // from now on, no thread can be started
        let (pool_gate, release) = (Gate::new(), Gate::new());
        let waiting = {
            let release = release.clone();
            pool.spawn(move || release.wait())
        };
        // Queue a job behind the one that kills the worker.
        let killer = pool.spawn({
            let pool_gate = pool_gate.clone();
            move || {
                pool_gate.wait();
                std::panic::panic_any(PoisonedPayload)
            }
        });
        let behind = pool.spawn(|| "never runs");
        release.open();
        waiting.join().unwrap();
        pool_gate.open();
        assert!(matches!(killer.join(), Err(JobError::Panicked(_))));
        assert!(
            matches!(behind.join(), Err(JobError::Broken(why)) if why.contains("worker thread")),
            "queued work learns the pool broke, and why"
        );
        assert!(pool.is_broken());
        assert!(matches!(pool.spawn(|| ()).join(), Err(JobError::Broken(_))));
        assert!(matches!(
            pool.try_spawn(|| ()),
            Err(TrySpawnError::Broken(_))
        ));
    });
}

#[test]
fn a_failed_replacement_is_retried_and_the_pool_recovers() {
    hang_guard(|| {
        let fail = Arc::new(AtomicBool::new(false));
        let pool = ThreadPool::builder()
            .workers(2)
            .spawn_handler(flaky_threads(fail.clone()))
            .build()
            .unwrap();
        fail.store(true, Ordering::SeqCst);
        let killer = pool.spawn(|| std::panic::panic_any(PoisonedPayload));
        assert!(killer.join().is_err());
        wait_until(|| pool.stats().workers == 1); // the replacement could not start
        assert!(
            !pool.is_broken(),
            "one worker is left: degraded, not broken"
        );
        fail.store(false, Ordering::SeqCst);
        // Submissions retry the missing worker (at most every 100 ms).
        wait_until(|| {
            pool.spawn(|| ()).join().unwrap();
            pool.stats().workers == 2
        });
    });
}

#[test]
fn stats_add_up() {
    hang_guard(|| {
        let pool = ThreadPool::new(2).unwrap();
        let handles: Vec<_> = (0..100)
            .map(|i| {
                pool.spawn(move || {
                    if i % 10 == 0 {
                        panic!("every tenth")
                    } else {
                        i
                    }
                })
            })
            .collect();
        for handle in handles {
            let _ = handle.join();
        }
        let stats = pool.stats();
        assert_eq!(stats.completed + stats.panicked, 100);
        assert_eq!(stats.panicked, 10);
        assert_eq!((stats.queued, stats.running), (0, 0));
    });
}

#[test]
fn a_job_built_by_hand_runs_on_any_executor() {
    let pool = ThreadPool::new(1).unwrap();
    let (job, handle) = JobBuilder::new().build(|| "by hand");
    pool.execute(job).unwrap();
    assert_eq!(handle.join(), Ok("by hand"));
    // A job dropped by an executor without running resolves as cancelled, never hangs.
    let (job, handle) = JobBuilder::new().build(|| "dropped");
    drop(job);
    assert_eq!(handle.join(), Err(JobError::Cancelled));
}

#[test]
fn a_rayon_pool_serves_as_an_executor() {
    let rayon = Arc::new(
        rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap(),
    );
    let executor = RayonExecutor::new(rayon);
    let handles: Vec<_> = (0..10u64)
        .map(|i| {
            let (job, handle) = JobBuilder::new().build(move || i * 2);
            executor.execute(job).unwrap();
            handle
        })
        .collect();
    let doubled: Vec<u64> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(doubled, (0..10).map(|i| i * 2).collect::<Vec<_>>());
    let (job, handle) = JobBuilder::new().build(|| -> u8 { panic!("inside rayon") });
    executor.execute(job).unwrap();
    assert_eq!(
        handle.join(),
        Err(JobError::Panicked("inside rayon".into()))
    );
}

#[test]
fn zero_workers_or_zero_capacity_are_refused_with_a_reason() {
    let error = ThreadPool::new(0).expect_err("zero workers");
    assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
    assert!(error.to_string().contains("at least one worker"));
    let error = ThreadPool::builder()
        .queue_capacity(0)
        .build()
        .expect_err("zero capacity");
    assert!(error.to_string().contains("capacity of at least 1"));
}
