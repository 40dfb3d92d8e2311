//! Offloading from the loop: `run_in_executor`, `to_thread`, the default pool, waiting for
//! room without blocking the loop, honest cancellation through timeouts, and debug mode's
//! job reports.

mod util;

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use oneloop::Runtime;
use oneloop::debug::Code;
use oneloop::pool::{JobError, Overflow, RayonExecutor, ThreadPool};
use oneloop::task::{join_all, yield_now};
use oneloop::time::{interval, sleep, timeout};
use util::{Gate, Reports, assert_send, hang_guard, threads_named, wait_until};

#[test]
fn run_in_executor_returns_the_closure_s_value() {
    hang_guard(|| {
        let pool = ThreadPool::new(2).unwrap();
        let rt = Runtime::new();
        let value = rt.block_on(async {
            oneloop::run_in_executor(&pool, || (1..=10u32).product::<u32>()).await
        });
        assert_eq!(value, Ok(3_628_800));
        assert_send::<oneloop::Offload<u8>>();
    });
}

#[test]
fn the_job_is_submitted_at_the_call_not_at_the_first_poll() {
    hang_guard(|| {
        let pool = ThreadPool::new(1).unwrap();
        let rt = Runtime::new();
        rt.block_on(async {
            let (started_tx, started_rx) = mpsc::channel();
            let pending = oneloop::run_in_executor(&pool, move || started_tx.send(()).unwrap());
            // Not awaited yet, and the loop is held here: the worker runs it anyway.
            started_rx.recv().unwrap();
            pending.await.unwrap();
        });
    });
}

#[test]
fn the_loop_keeps_ticking_while_a_job_runs() {
    hang_guard(|| {
        let pool = ThreadPool::new(1).unwrap();
        let rt = Runtime::new();
        let ticks = rt.block_on(async {
            let ticks = Rc::new(Cell::new(0u32));
            let heartbeat = oneloop::spawn({
                let ticks = ticks.clone();
                async move {
                    let mut every = interval(Duration::from_millis(2));
                    loop {
                        every.tick().await;
                        ticks.set(ticks.get() + 1);
                    }
                }
            });
            let gate = Gate::new();
            let job = oneloop::run_in_executor(&pool, {
                let gate = gate.clone();
                move || gate.wait()
            });
            // The job holds its worker until the heartbeat has ticked 5 times on the loop:
            // possible only because the loop is free while the job runs.
            while ticks.get() < 5 {
                sleep(Duration::from_millis(1)).await;
            }
            gate.open();
            job.await.unwrap();
            heartbeat.abort();
            ticks.get()
        });
        assert!(ticks >= 5);
    });
}

#[test]
fn to_thread_uses_the_runtime_s_default_pool_sized_by_the_builder() {
    hang_guard(|| {
        let rt = Runtime::builder().default_pool_workers(3).build().unwrap();
        let names = rt.block_on(async {
            let gate = Gate::new();
            // Three jobs that each wait for the others: only possible with 3 workers.
            let arrived = Arc::new(AtomicUsize::new(0));
            let jobs: Vec<_> = (0..3)
                .map(|_| {
                    let arrived = arrived.clone();
                    let gate = gate.clone();
                    oneloop::to_thread(move || {
                        if arrived.fetch_add(1, Ordering::SeqCst) == 2 {
                            gate.open();
                        }
                        gate.wait();
                        thread::current().name().unwrap_or_default().to_owned()
                    })
                })
                .collect();
            join_all(jobs).await
        });
        for name in names {
            assert!(name.unwrap().starts_with("to_thread-"));
        }
    });
}

#[test]
fn dropping_the_runtime_shuts_its_default_pool_down() {
    hang_guard(|| {
        let rt = Runtime::new();
        let before = threads_named("to_thread-");
        rt.block_on(async { oneloop::to_thread(|| ()).await.unwrap() });
        drop(rt);
        // Other tests' runtimes may own "to_thread-" threads too: ours are gone, so the
        // count is back to (at most) what it was.
        wait_until(|| threads_named("to_thread-") <= before);
    });
}

#[test]
fn a_full_bounded_pool_makes_the_async_submit_wait_without_blocking_the_loop() {
    hang_guard(|| {
        let pool = ThreadPool::builder()
            .workers(1)
            .queue_capacity(1)
            .overflow(Overflow::Wait)
            .build()
            .unwrap();
        let rt = Runtime::new();
        let (results, ticks) = rt.block_on(async {
            let ticks = Rc::new(Cell::new(0u32));
            let heartbeat = oneloop::spawn({
                let ticks = ticks.clone();
                async move {
                    loop {
                        yield_now().await;
                        ticks.set(ticks.get() + 1);
                    }
                }
            });
            let gate = Gate::new();
            let first = oneloop::run_in_executor(&pool, {
                let gate = gate.clone();
                move || {
                    gate.wait();
                    0
                }
            });
            // The worker is busy and the one queue slot is about to be taken: the rest wait
            // for room, asynchronously, in order.
            let rest: Vec<_> = (1..=5)
                .map(|i| oneloop::run_in_executor(&pool, move || i))
                .collect();
            let before = ticks.get();
            while ticks.get() < before + 10 {
                yield_now().await; // the loop runs on while submissions wait
            }
            gate.open();
            let mut results = vec![first.await.unwrap()];
            results.extend(join_all(rest).await.into_iter().map(Result::unwrap));
            heartbeat.abort();
            (results, ticks.get())
        });
        assert_eq!(results, [0, 1, 2, 3, 4, 5]);
        assert!(ticks >= 10);
    });
}

#[test]
fn a_timeout_cancels_a_queued_job_so_it_never_runs() {
    hang_guard(|| {
        let pool = ThreadPool::new(1).unwrap();
        let rt = Runtime::new();
        let ran = Arc::new(AtomicBool::new(false));
        rt.block_on(async {
            let gate = Gate::new();
            let busy = oneloop::run_in_executor(&pool, {
                let gate = gate.clone();
                move || gate.wait()
            });
            let late = timeout(
                Duration::from_millis(10),
                oneloop::run_in_executor(&pool, {
                    let ran = ran.clone();
                    move || ran.store(true, Ordering::SeqCst)
                }),
            )
            .await;
            assert!(late.is_err(), "timed out while queued");
            gate.open();
            busy.await.unwrap();
        });
        pool.shutdown();
        assert!(!ran.load(Ordering::SeqCst), "the cancelled job ran");
        assert_eq!(pool.stats().cancelled, 1);
    });
}

#[test]
fn a_running_job_outlives_its_timeout_but_is_told_to_stop() {
    hang_guard(|| {
        let pool = ThreadPool::new(1).unwrap();
        let rt = Runtime::new();
        let stopped = Arc::new(AtomicBool::new(false));
        rt.block_on(async {
            let started = Arc::new(AtomicBool::new(false));
            let job = oneloop::run_in_executor_with_token(&pool, {
                let started = started.clone();
                let stopped = stopped.clone();
                move |token| {
                    started.store(true, Ordering::SeqCst);
                    wait_until(|| token.is_cancelled());
                    stopped.store(true, Ordering::SeqCst);
                }
            });
            while !started.load(Ordering::SeqCst) {
                sleep(Duration::from_millis(1)).await;
            }
            assert!(timeout(Duration::from_millis(5), job).await.is_err());
        });
        pool.shutdown(); // waits for the job, which stops because its token was set
        assert!(stopped.load(Ordering::SeqCst));
    });
}

#[test]
fn offload_cancel_reports_whether_the_job_will_never_run() {
    hang_guard(|| {
        let pool = ThreadPool::new(1).unwrap();
        let rt = Runtime::new();
        rt.block_on(async {
            let gate = Gate::new();
            let started = Arc::new(AtomicBool::new(false));
            let mut busy = oneloop::run_in_executor(&pool, {
                let gate = gate.clone();
                let started = started.clone();
                move || {
                    started.store(true, Ordering::SeqCst);
                    gate.wait()
                }
            });
            while !started.load(Ordering::SeqCst) {
                sleep(Duration::from_millis(1)).await;
            }
            let mut queued = oneloop::run_in_executor(&pool, || ());
            assert!(queued.cancel());
            assert_eq!(queued.await, Err(JobError::Cancelled));
            assert!(!busy.cancel(), "already running");
            gate.open();
            busy.await.unwrap();
        });
    });
}

#[test]
fn a_panicking_offloaded_job_comes_back_as_an_error() {
    let pool = ThreadPool::new(1).unwrap();
    let rt = Runtime::new();
    let result = rt.block_on(async {
        oneloop::run_in_executor(&pool, || -> u8 { panic!("corrupt input") }).await
    });
    assert_eq!(result, Err(JobError::Panicked("corrupt input".into())));
    assert_eq!(pool.stats().workers, 1);
}

#[test]
fn offloading_to_a_shut_down_pool_resolves_as_shutdown() {
    let pool = ThreadPool::new(1).unwrap();
    pool.shutdown();
    let rt = Runtime::new();
    let result = rt.block_on(oneloop::run_in_executor(&pool, || ()));
    assert_eq!(result, Err(JobError::Shutdown));
}

#[test]
fn run_in_executor_works_outside_a_runtime_and_on_rayon() {
    let rayon = RayonExecutor::global();
    let value = futures::executor::block_on(oneloop::run_in_executor(&rayon, || 7));
    assert_eq!(value, Ok(7));
    let rt = Runtime::new();
    let prepared = rt.run_in_executor(&rayon, || 8); // before block_on runs
    assert_eq!(rt.block_on(prepared), Ok(8));
}

#[test]
fn to_thread_outside_a_runtime_says_so() {
    let message = util::expect_panic(|| drop(oneloop::to_thread(|| ())));
    assert!(message.contains("oneloop::to_thread"), "{message}");
}

#[test]
fn debug_mode_reports_a_job_that_waited_too_long_for_a_worker() {
    hang_guard(|| {
        let (rt, reports) = util::debug_runtime(20);
        let pool = ThreadPool::new(1).unwrap();
        pool.spawn(|| ()).join().unwrap(); // the worker is up before the clock matters
        let line = line!() + 7; // the second run_in_executor
        rt.block_on(async {
            let gate = Gate::new();
            let busy = oneloop::run_in_executor(&pool, {
                let gate = gate.clone();
                move || gate.wait()
            });
            let waiting = oneloop::run_in_executor(&pool, || ());
            sleep(Duration::from_millis(40)).await; // `waiting` sits in the queue meanwhile
            gate.open();
            busy.await.unwrap();
            waiting.await.unwrap();
        });
        // Only the queued job must be reported (on a loaded machine the first one may
        // also wait past 20 ms for the worker to be scheduled: that report is true too).
        let waited: Vec<_> = reports
            .with_code(Code::JobWaited)
            .into_iter()
            .filter(|r| {
                r.job
                    .as_ref()
                    .is_some_and(|job| job.location.line() == line)
            })
            .collect();
        // Reported while it waits (again at each doubling of the wait, which a slow
        // machine may reach before the gate opens), not again when it starts.
        assert!(!waited.is_empty(), "{:?}", reports.all());
        let job = waited[0].job.as_ref().unwrap();
        assert_eq!(job.location.line(), line);
        assert!(waited[0].duration.unwrap() >= Duration::from_millis(20));
        let text = waited[0].to_string();
        assert!(text.starts_with("oneloop: OL004 job #"), "{text}");
        assert!(
            text.contains(&format!("submitted at tests/offload.rs:{line}")),
            "{text}"
        );
        assert!(text.contains("for a worker"), "{text}");
        assert!(
            text.contains("the pool is too small for its load"),
            "{text}"
        );
    });
}

#[test]
fn debug_mode_reports_a_job_still_running_past_the_limit() {
    hang_guard(|| {
        let reports = Reports::default();
        let rt = Runtime::builder()
            .debug(true)
            .slow_job_threshold(Duration::from_millis(20))
            .on_report(reports.sink())
            .build()
            .unwrap();
        let pool = ThreadPool::new(1).unwrap();
        rt.block_on(async {
            let seen = reports.clone();
            // The job runs until the watchdog has reported it: the report comes while it
            // is still running, by construction.
            oneloop::run_in_executor(&pool, move || {
                wait_until(|| !seen.with_code(Code::JobStillRunning).is_empty())
            })
            .await
            .unwrap();
        });
        let running = reports.with_code(Code::JobStillRunning);
        assert!(!running.is_empty());
        assert!(running[0].duration.unwrap() >= Duration::from_millis(20));
        assert!(running[0].to_string().contains("has been running for"));
    });
}

#[test]
fn debug_mode_reports_a_panicked_job_nobody_awaited() {
    hang_guard(|| {
        let (rt, reports) = util::debug_runtime(1_000);
        let pool = ThreadPool::new(1).unwrap();
        rt.block_on(async {
            let gate = Gate::new();
            let job = oneloop::run_in_executor(&pool, {
                let gate = gate.clone();
                move || -> u8 {
                    gate.wait();
                    panic!("nobody is listening")
                }
            });
            // Detach the job (its handle goes once it runs), then let it panic.
            while pool.stats().running == 0 {
                sleep(Duration::from_millis(1)).await;
            }
            drop(job);
            gate.open();
        });
        pool.shutdown();
        let found = reports.with_code(Code::JobPanicNotRetrieved);
        assert_eq!(found.len(), 1, "{:?}", reports.all());
        assert_eq!(found[0].message.as_deref(), Some("nobody is listening"));
    });
}
