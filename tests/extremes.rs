//! Extreme values: every API taking a `Duration`, an `Instant` or a count saturates or
//! returns a clear error. The bugs found here (`interval(Duration::MAX)`, `Skip` after
//! more than `u32::MAX` missed periods, `shutdown_timeout(Duration::MAX)`,
//! `workers(usize::MAX)`, `ONELOOP_SLOW_MS=1e300`, `acquire_many` beyond `MAX_PERMITS`)
//! each have their test in `regressions.rs`.
//!
//! Property tests draw from the extremes (`Duration::ZERO`, one nanosecond,
//! `Duration::MAX`, instants as far in the past or future as `Instant` can hold) and from
//! ordinary values; waits that cannot end are cut short with a `timeout` and checked only
//! for what they must never do.

mod util;

use std::io;
use std::panic::catch_unwind;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use oneloop::debug::Code;
use oneloop::time::{MissedTickBehavior, interval_at, sleep, sleep_until, timeout, timeout_at};
use oneloop::{JobError, Runtime, ThreadPool};
use oneloop_pool::{Executor, JobBuilder, JobInfo, JobObserver, Overflow};
use proptest::prelude::*;
use util::{
    GLIMPSE, MISSED_TICK_BEHAVIORS, Reports, build_pool, debug_workload, hang_guard, panic_text,
};

/// Durations from the edges and from everyday use.
fn duration() -> impl Strategy<Value = Duration> {
    prop_oneof![
        Just(Duration::ZERO),
        Just(Duration::from_nanos(1)),
        Just(Duration::MAX),
        Just(Duration::MAX - Duration::from_nanos(1)),
        Just(Duration::from_secs(u64::MAX)),
        Just(Duration::from_secs(i64::MAX as u64)),
        any::<u64>().prop_map(Duration::from_nanos),
        any::<u64>().prop_map(Duration::from_secs),
        (any::<u64>(), 0u32..1_000_000_000).prop_map(|(secs, nanos)| Duration::new(secs, nanos)),
        (0u64..5).prop_map(Duration::from_millis),
    ]
}

/// An instant `duration()` before or after now, when `Instant` can hold it.
fn instant() -> impl Strategy<Value = Instant> {
    (any::<bool>(), duration()).prop_filter_map("not representable", |(later, offset)| {
        let now = Instant::now();
        if later {
            now.checked_add(offset)
        } else {
            now.checked_sub(offset)
        }
    })
}

fn behavior() -> impl Strategy<Value = MissedTickBehavior> {
    prop_oneof![
        Just(MissedTickBehavior::Burst),
        Just(MissedTickBehavior::Delay),
        Just(MissedTickBehavior::Skip),
    ]
}

// -------------------------------------------------------------------------------------
// Timers.
// -------------------------------------------------------------------------------------

#[test]
fn an_interval_of_duration_max_that_missed_its_ticks_waits_forever_under_every_policy() {
    hang_guard(|| {
        for behavior in MISSED_TICK_BEHAVIORS {
            Runtime::new().block_on(async {
                // Started long ago: the second tick is overdue if the period were short.
                let start = Instant::now()
                    .checked_sub(Duration::from_secs(1 << 40))
                    .expect("an instant 35,000 years ago");
                let mut ticks = interval_at(start, Duration::MAX);
                ticks.set_missed_tick_behavior(behavior);
                assert_eq!(ticks.tick().await, start);
                assert!(timeout(GLIMPSE, ticks.tick()).await.is_err());
            });
        }
    });
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any start, any period, any policy: no panic, ticks move forward by at least a
    /// period (exactly one for `Burst`), and `Skip` never ticks in the past.
    #[test]
    fn intervals_saturate_instead_of_overflowing(
        start in instant(),
        period in duration().prop_filter("a zero period is refused", |p| !p.is_zero()),
        behavior in behavior(),
    ) {
        hang_guard(move || {
            Runtime::new().block_on(async move {
                let mut ticks = interval_at(start, period);
                ticks.set_missed_tick_behavior(behavior);
                let before = Instant::now();
                if let Ok(first) = timeout(GLIMPSE, ticks.tick()).await {
                    assert_eq!(first, start);
                    let next = timeout(GLIMPSE, ticks.tick()).await;
                    match (start.checked_add(period), next) {
                        (None, Ok(next)) => panic!("ticked at {next:?}, past the end of time"),
                        (_, Err(_)) => {}
                        (Some(on_time), Ok(next)) => {
                            assert!(next >= on_time, "{behavior:?} ticked early");
                            if behavior == MissedTickBehavior::Burst {
                                assert_eq!(next, on_time);
                            }
                            if behavior == MissedTickBehavior::Skip {
                                assert!(next > before, "Skip ticked in the past");
                            }
                        }
                    }
                }
                ticks.reset();
                let _ = timeout(GLIMPSE, ticks.tick()).await;
            });
        });
    }

    /// Sleeps and timeouts of any length, at any instant: no panic, never early.
    #[test]
    fn sleeps_and_timeouts_saturate_instead_of_overflowing(
        length in duration(),
        at in instant(),
    ) {
        hang_guard(move || {
            Runtime::new().block_on(async move {
                let begun = Instant::now();
                if timeout(GLIMPSE, sleep(length)).await.is_ok() {
                    assert!(begun.elapsed() >= length);
                }
                if timeout(GLIMPSE, sleep_until(at)).await.is_ok() {
                    assert!(Instant::now() >= at);
                }
                assert_eq!(timeout(length, async { 7 }).await, Ok(7));
                assert_eq!(timeout_at(at, async { 7 }).await, Ok(7));
                let mut moved = sleep(length);
                moved.reset(at);
                assert_eq!(moved.deadline(), at);
                let _ = timeout(GLIMPSE, moved).await;
            });
        });
    }
}

// -------------------------------------------------------------------------------------
// Pools.
// -------------------------------------------------------------------------------------

#[test]
fn a_stack_size_of_usize_max_is_the_os_error() {
    hang_guard(|| {
        let error = build_pool(ThreadPool::builder().workers(1).stack_size(usize::MAX)).unwrap();
        assert_ne!(error.kind(), io::ErrorKind::Other, "{error}");
    });
}

#[test]
fn a_queue_capacity_of_usize_max_works_under_every_overflow_policy() {
    hang_guard(|| {
        for overflow in [Overflow::Reject, Overflow::Wait, Overflow::CallerRuns] {
            let pool = ThreadPool::builder()
                .workers(2)
                .queue_capacity(usize::MAX)
                .overflow(overflow)
                .build()
                .unwrap();
            let jobs: Vec<_> = (0..100u64).map(|i| pool.spawn(move || i)).collect();
            let sum: u64 = jobs.into_iter().map(|job| job.join().unwrap()).sum();
            assert_eq!(sum, 4950);
            assert!(pool.try_spawn(|| ()).is_ok());
            pool.shutdown();
        }
    });
}

/// Calls every `JobInfo` method an observer may call, at start and at finish.
#[derive(Default)]
struct Inspect(Mutex<Vec<String>>);

impl JobObserver for Inspect {
    fn started(&self, info: &JobInfo) {
        let line = format!(
            "{info} waited {:?} ran {:?}",
            info.waited(),
            info.running_for()
        );
        self.0.lock().unwrap().push(line);
    }

    fn finished(&self, info: &JobInfo) {
        self.started(info);
    }
}

fn shared_pool() -> &'static ThreadPool {
    static POOL: OnceLock<ThreadPool> = OnceLock::new();
    POOL.get_or_init(|| ThreadPool::new(2).unwrap())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// A job submitted at any instant with any deadline: no panic; it runs unless its
    /// deadline had passed when a worker reached it.
    #[test]
    fn job_deadlines_and_submit_instants_saturate(deadline in instant(), submitted in instant()) {
        hang_guard(move || {
            let pool = shared_pool();
            let observer = Arc::new(Inspect::default());
            let before = Instant::now();
            let (job, handle) = JobBuilder::new()
                .submitted_at(submitted)
                .deadline(deadline)
                .observer(observer.clone())
                .build(|| 1);
            let _ = handle.info().to_string();
            pool.execute(job).unwrap();
            match handle.join() {
                Ok(1) => assert!(deadline > before, "ran past its deadline"),
                Err(JobError::DeadlineExpired) => assert!(deadline <= Instant::now()),
                other => panic!("{other:?}"),
            }
            match pool.spawn_before(deadline, || 2).join() {
                Ok(2) => assert!(deadline > before, "ran past its deadline"),
                Err(JobError::DeadlineExpired) => assert!(deadline <= Instant::now()),
                other => panic!("{other:?}"),
            }
        });
    }

    /// Any shutdown timeout, on a pool with a job running: no panic, and a clean report
    /// whenever the timeout let the job finish.
    #[test]
    fn shutdown_timeouts_saturate(limit in duration()) {
        hang_guard(move || {
            let pool = ThreadPool::new(1).unwrap();
            let job = pool.spawn(|| ());
            let report = pool.shutdown_timeout(limit);
            let _ = report.to_string();
            // The job ran, or the timeout ran out while it was queued and cancelled it, or
            // while it ran and left it running (its handle resolves when it returns).
            match job.join() {
                Ok(()) => assert_eq!(report.cancelled, 0),
                Err(JobError::Cancelled) => assert_eq!(report.cancelled, 1),
                other => panic!("{other:?}"),
            }
        });
    }
}

// -------------------------------------------------------------------------------------
// The runtime's settings.
// -------------------------------------------------------------------------------------

#[test]
fn a_default_pool_of_zero_or_usize_max_workers_is_a_clear_error() {
    for workers in [0, usize::MAX, ThreadPool::MAX_WORKERS + 1] {
        let error = match catch_unwind(|| Runtime::builder().default_pool_workers(workers).build())
        {
            Ok(Ok(_rt)) => panic!("{workers} default pool workers were accepted"),
            Ok(Err(error)) => error,
            Err(panic) => panic!("{workers} workers: {}", panic_text(&*panic)),
        };
        assert_eq!(
            error.kind(),
            io::ErrorKind::InvalidInput,
            "{workers}: {error}"
        );
        assert!(error.to_string().contains("default pool"), "{error}");
    }
    // The most is accepted (the pool starts on the first `to_thread`).
    Runtime::builder()
        .default_pool_workers(ThreadPool::MAX_WORKERS)
        .build()
        .unwrap();
}

#[test]
fn debug_thresholds_of_duration_max_report_nothing_slow() {
    hang_guard(|| {
        let reports = Reports::default();
        let rt = Runtime::builder()
            .debug(true)
            .slow_task_threshold(Duration::MAX)
            .slow_job_threshold(Duration::MAX)
            .on_report(reports.sink())
            .build()
            .unwrap();
        debug_workload(&rt);
        drop(rt);
        let codes: Vec<Code> = reports.all().iter().map(|report| report.code).collect();
        assert_eq!(codes, [Code::Summary]);
    });
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Any thresholds: the runtime builds (or refuses zero, clearly), runs and drops.
    #[test]
    fn debug_thresholds_saturate(task in duration(), job in duration()) {
        hang_guard(move || {
            let reports = Reports::default();
            let built = Runtime::builder()
                .debug(true)
                .slow_task_threshold(task)
                .slow_job_threshold(job)
                .on_report(reports.sink())
                .build();
            match built {
                Err(error) => {
                    assert!(task.is_zero() || job.is_zero(), "{error}");
                    assert!(error.to_string().contains("longer than zero"), "{error}");
                }
                Ok(rt) => {
                    debug_workload(&rt);
                    drop(rt);
                    assert_eq!(reports.with_code(Code::Summary).len(), 1);
                }
            }
        });
    }
}
