//! Regressions: each test here reproduces one bug that was found and fixed, and its doc
//! comment says what broke and which commit fixed it, so a failure here names the bug that
//! came back. A bug's test lives here; the promise it belonged to is stated and tested in
//! its own file (`teardown.rs`, `extremes.rs`, `deadlock.rs`, `panicking_wakers.rs`...).
//! (Long because every reproduced bug is kept here, by design.)
//!
//! Each test failed on the code before its fix: it aborted the process, panicked where it
//! should have saturated, spun forever inside one poll, hung, panicked out of `block_on`,
//! or held a runtime's drop for a whole watchdog interval. Every waiting test runs under
//! the hang guard (`ONELOOP_TEST_HANG_SECS=5` shows a hang quickly on the old code).
//! Tests are in the order of their fixes, oldest first.

mod util;

use std::future::pending;
use std::io;
use std::panic::{AssertUnwindSafe, catch_unwind, panic_any};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use oneloop::debug::Code;
use oneloop::net::UdpSocket;
use oneloop::sync::mpsc;
use oneloop::task;
use oneloop::time::{MissedTickBehavior, interval, interval_at, timeout};
use oneloop::{JoinError, Runtime};
use oneloop_pool::{JobError, Overflow, ThreadPool};
use util::child::Child;
use util::{
    GLIMPSE, Gate, MISSED_TICK_BEHAVIORS, PoisonedPayload, Reports, build_pool, debug_workload,
    expect_panic, hang_guard, in_child, panic_text, run_test_in_child, spawn_join_cycle,
    wait_until,
};

/// Every combination of pending tasks, debug mode and the default pool, for a runtime in a
/// thread-local of a thread at `place`.
fn runtime_in_a_thread_local(place: &str) {
    for tasks in [false, true] {
        for debug in [false, true] {
            for to_thread in [false, true] {
                let mut args = vec!["tls", place, "runtime"];
                args.extend(tasks.then_some("tasks"));
                args.extend(debug.then_some("debug"));
                args.extend(to_thread.then_some("to_thread"));
                let child = Child::run(&args);
                child.assert_clean_exit();
                if tasks {
                    // The runtime really was dropped: its tasks were cancelled.
                    child.assert_dropped("pending task");
                    child.assert_dropped("awaited task");
                }
                if tasks && to_thread {
                    child.assert_dropped("task awaiting to_thread");
                }
                if debug {
                    // Debug mode's exit summary is printed by the runtime's drop.
                    assert_eq!(child.count("OL008"), 1, "{}", child.stderr);
                }
            }
        }
    }
}

/// A task that keeps a timer armed for ever.
fn heartbeat() {
    task::Builder::new()
        .name("heartbeat")
        .spawn(async {
            let mut beat = oneloop::time::interval(Duration::from_millis(5));
            loop {
                beat.tick().await;
            }
        })
        .detach();
}

/// Broke: a runtime in a spawned thread's `thread_local!` aborted the process when the thread
/// exited: its drop entered the runtime context with `LocalKey::with`, which panics once
/// the context's own thread-local is gone, and a panic in a thread-local's destructor aborts.
/// Fixed in e158af3 (Runtime drop tolerates its thread-local context being gone).
#[test]
fn a_runtime_in_a_thread_local_of_a_spawned_thread_is_dropped_when_it_exits() {
    runtime_in_a_thread_local("thread");
}

/// Broke: the same abort for a runtime in `main`'s thread-locals, destroyed inside `exit`.
/// Fixed in e158af3 (Runtime drop tolerates its thread-local context being gone).
#[test]
fn a_runtime_in_a_thread_local_of_the_main_thread_is_dropped_at_exit() {
    runtime_in_a_thread_local("main");
}

/// Broke: the same abort for a runtime in a pool worker's thread-locals, when the worker
/// exited.
/// Fixed in e158af3 (Runtime drop tolerates its thread-local context being gone).
#[test]
fn a_runtime_in_a_thread_local_of_a_pool_worker_is_dropped_when_the_worker_exits() {
    runtime_in_a_thread_local("worker");
}

/// Broke: `interval(Duration::MAX)` panicked on its second tick and on `reset()` (and the
/// `Delay` policy likewise): the next tick added a period to an `Instant`, which overflowed.
/// Fixed in 8d1beb4 (Durations, instants and counts saturate or fail clearly).
#[test]
fn an_interval_of_duration_max_ticks_once_then_never_under_every_policy() {
    hang_guard(|| {
        for behavior in MISSED_TICK_BEHAVIORS {
            Runtime::new().block_on(async {
                let mut ticks = interval(Duration::MAX);
                ticks.set_missed_tick_behavior(behavior);
                ticks.tick().await; // the first tick is at once
                assert!(timeout(GLIMPSE, ticks.tick()).await.is_err());
                ticks.reset();
                assert!(timeout(GLIMPSE, ticks.tick()).await.is_err());
            });
        }
    });
}

/// Broke: `MissedTickBehavior::Skip` capped the missed periods at `u32::MAX`, so after a long
/// stall with a short period it ticked in the past.
/// Fixed in 8d1beb4 (Durations, instants and counts saturate or fail clearly).
#[test]
fn skip_lands_on_the_first_tick_of_the_schedule_after_now_however_many_were_missed() {
    hang_guard(|| {
        Runtime::new().block_on(async {
            // 10^10 periods missed: more than fit in a u32.
            let start = Instant::now()
                .checked_sub(Duration::from_secs(10_000))
                .expect("an instant 3 hours ago");
            let period = Duration::from_micros(1);
            let mut ticks = interval_at(start, period);
            ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
            let before = Instant::now();
            assert_eq!(ticks.tick().await, start);
            let next = ticks.tick().await;
            assert!(
                next > before,
                "Skip ticked in the past: {:?} early",
                before - next
            );
            let offset = (next - start).as_nanos();
            assert_eq!(offset % period.as_nanos(), 0, "off the schedule");
        });
    });
}

/// Broke: `Builder::workers(usize::MAX)` panicked allocating the worker queues (and a huge
/// count would start threads until the OS refused).
/// Fixed in 8d1beb4 (Durations, instants and counts saturate or fail clearly).
#[test]
fn a_pool_of_usize_max_workers_is_a_clear_error() {
    hang_guard(|| {
        for workers in [usize::MAX, ThreadPool::MAX_WORKERS + 1] {
            let error = build_pool(ThreadPool::builder().workers(workers)).unwrap();
            assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
            assert!(
                error.to_string().contains("at most 4096 workers"),
                "{error}"
            );
            assert!(error.to_string().contains("MAX_WORKERS"), "{error}");
            let error = ThreadPool::new(workers).unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
        }
    });
}

/// Broke: `ThreadPool::shutdown_timeout(Duration::MAX)` panicked on `Instant + Duration`.
/// Fixed in 8d1beb4 (Durations, instants and counts saturate or fail clearly).
#[test]
fn shutdown_timeout_of_duration_max_waits_for_the_running_job() {
    hang_guard(|| {
        let pool = ThreadPool::new(1).unwrap();
        let gate = Gate::new();
        let job = pool.spawn({
            let gate = gate.clone();
            move || gate.wait()
        });
        // Opens the gate once the shutdown has begun.
        let opener = std::thread::spawn({
            let pool = pool.clone();
            move || {
                wait_until(|| pool.is_shutdown());
                gate.open();
            }
        });
        let report = pool.shutdown_timeout(Duration::MAX);
        assert!(report.is_clean(), "{report}");
        assert_eq!(job.join(), Ok(()));
        opener.join().unwrap();
    });
}

/// Broke: a runtime whose `default_pool_shutdown_timeout` was `Duration::MAX` panicked when
/// dropped (the same overflow, in the default pool's shutdown).
/// Fixed in 8d1beb4 (Durations, instants and counts saturate or fail clearly).
#[test]
fn a_default_pool_shutdown_timeout_of_duration_max_waits_for_its_jobs() {
    hang_guard(|| {
        let reports = Reports::default();
        let rt = Runtime::builder()
            .default_pool_shutdown_timeout(Duration::MAX)
            .on_report(reports.sink())
            .build()
            .unwrap();
        let job = rt.block_on(async { oneloop::to_thread(|| 6 * 7).await });
        assert_eq!(job, Ok(42));
        drop(rt);
        assert!(reports.with_code(Code::PoolShutdownIncomplete).is_empty());
    });
}

/// Broke: `ONELOOP_SLOW_MS=1e300` panicked in `Duration::from_secs_f64` when the runtime was
/// built.
/// Fixed in 8d1beb4 (Durations, instants and counts saturate or fail clearly).
#[test]
fn oneloop_slow_ms_saturates_at_huge_values() {
    // The child reads the variable set for it below.
    if in_child() {
        hang_guard(|| {
            let reports = Reports::default();
            let rt = Runtime::builder()
                .on_report(reports.sink())
                .build()
                .expect("a huge threshold is a valid threshold");
            debug_workload(&rt);
            drop(rt);
            let codes: Vec<Code> = reports.all().iter().map(|report| report.code).collect();
            assert_eq!(codes, [Code::Summary]);
        });
        return;
    }
    hang_guard(|| {
        for value in ["18446744073709551615", "1e300", "1.7976931348623157e308"] {
            assert!(
                run_test_in_child(
                    "oneloop_slow_ms_saturates_at_huge_values",
                    &[("ONELOOP_DEBUG", "1"), ("ONELOOP_SLOW_MS", value)],
                ),
                "ONELOOP_SLOW_MS={value}"
            );
        }
    });
}

/// Broke: a connected UDP socket that got an ICMP error spun: `WouldBlock` left the error bit
/// of the readiness it consumed set, so each receive found the socket ready again, without
/// end.
/// Fixed in 79558e6 (Wakers: collect under the lock, wake after it, each panic contained;
/// primitives that terminate).
#[test]
fn a_connected_udp_socket_that_got_an_icmp_error_waits_instead_of_spinning() {
    hang_guard(|| {
        let rt = Runtime::new();
        rt.block_on(async {
            // A port nobody listens on: bind one, note it, close it.
            let closed = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let target = closed.local_addr().unwrap();
            drop(closed);
            let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            socket.connect(target).await.unwrap();
            let refused = |e: &io::Error| e.kind() == io::ErrorKind::ConnectionRefused;
            for _ in 0..3 {
                // Each datagram to the closed port earns an ICMP "port unreachable",
                // which the kernel reports on the next operation (and in EPOLLERR): on
                // this receive, or (when it comes late) on the next send.
                if let Err(e) = socket.send(b"anyone?").await {
                    assert!(refused(&e), "unexpected send error: {e}");
                }
                let mut buf = [0u8; 16];
                match timeout(Duration::from_millis(50), socket.recv(&mut buf)).await {
                    Ok(Err(e)) => assert!(refused(&e), "unexpected receive error: {e}"),
                    Ok(Ok(n)) => panic!("nothing was sent to us, got {n} bytes"),
                    Err(_elapsed) => {}
                }
                // Now nothing is pending: a receive must wait, polled once or twice, not
                // spin (inside one poll, or by waking itself poll after poll).
                let polls = rt.metrics().polls;
                let waited = timeout(Duration::from_millis(20), socket.recv(&mut buf)).await;
                let spent = rt.metrics().polls - polls;
                assert!(
                    waited.is_err() || waited.as_ref().is_ok_and(|r| r.is_err()),
                    "nothing was sent to us: {waited:?}"
                );
                assert!(spent < 20, "the wait took {spent} polls: it spun");
            }
        });
    });
}

/// Broke: after `Receiver::close`, `recv` waited for ever once the queue was drained, as
/// long as a sender was alive.
/// Fixed in 79558e6 (Wakers: collect under the lock, wake after it, each panic contained;
/// primitives that terminate).
#[test]
fn recv_returns_none_once_the_receiver_closed_and_the_queue_is_drained() {
    hang_guard(|| {
        Runtime::new().block_on(async {
            let (tx, mut rx) = mpsc::channel::<u32>(4);
            tx.send(1).await.unwrap();
            rx.close();
            assert!(tx.send(2).await.is_err(), "nothing can be sent after close");
            assert_eq!(
                rx.recv().await,
                Some(1),
                "what was queued is still received"
            );
            assert_eq!(rx.recv().await, None, "then the channel is over, tx or not");
            assert_eq!(rx.try_recv(), Err(mpsc::TryRecvError::Disconnected));
            drop(tx);

            let (utx, mut urx) = mpsc::unbounded_channel::<u32>();
            urx.close();
            assert!(utx.send(1).is_err());
            assert_eq!(urx.recv().await, None);
        });
    });
}

/// Broke: a job that submitted to its own full pool (`Overflow::Wait`) waited for room only
/// its own worker could free: the pool deadlocked.
/// Fixed in 79558e6 (Wakers: collect under the lock, wake after it, each panic contained;
/// primitives that terminate).
#[test]
fn a_job_that_submits_to_its_own_full_pool_never_blocks_on_it() {
    hang_guard(|| {
        let pool = ThreadPool::builder()
            .workers(1)
            .queue_capacity(1)
            .overflow(Overflow::Wait)
            .build()
            .unwrap();
        let inner = pool.clone();
        let outer = pool.spawn(move || {
            // The first fills the queue; the second finds it full. Waiting for room here
            // would wait for this very worker.
            let a = inner.spawn(|| "a");
            let b = inner.spawn(|| "b");
            (a, b)
        });
        let (a, b) = outer.join().unwrap();
        assert_eq!((a.join(), b.join()), (Ok("a"), Ok("b")));
        // Many, from both workers of a pool at once: none blocks, every job runs once.
        let pool = ThreadPool::builder()
            .workers(2)
            .queue_capacity(1)
            .build()
            .unwrap();
        let ran = Arc::new(AtomicUsize::new(0));
        let parents: Vec<_> = (0..2)
            .map(|_| {
                let (inner, ran) = (pool.clone(), ran.clone());
                pool.spawn(move || {
                    (0..50)
                        .map(|_| {
                            let ran = ran.clone();
                            inner.spawn(move || ran.fetch_add(1, Ordering::SeqCst))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for parent in parents {
            for child in parent.join().unwrap() {
                child.join().unwrap();
            }
        }
        assert_eq!(ran.load(Ordering::SeqCst), 100);
    });
}

/// Broke: a spawn handler that panicked inside a submission left the submission gate
/// entered, and `shutdown` waited for that submission for ever.
/// Fixed in 79558e6 (Wakers: collect under the lock, wake after it, each panic contained;
/// primitives that terminate).
#[test]
fn a_spawn_handler_that_panics_inside_a_submission_never_wedges_shutdown() {
    hang_guard(|| {
        // 0: start threads; 1: fail (an orphaned worker slot); 2: panic.
        let mode = Arc::new(AtomicUsize::new(0));
        let handler = {
            let mode = mode.clone();
            move |worker: oneloop_pool::WorkerThread| match mode.load(Ordering::SeqCst) {
                0 => thread::Builder::new()
                    .name(worker.name())
                    .spawn(move || worker.run()),
                1 => Err(io::Error::other("no threads now")),
                _ => panic!("the spawn handler panicked"),
            }
        };
        let pool = ThreadPool::builder()
            .workers(2)
            .spawn_handler(handler)
            .build()
            .unwrap();
        // Kill a worker while its replacement cannot start: its slot is orphaned, and the
        // next submissions retry it, calling the handler inside the submission gate.
        mode.store(1, Ordering::SeqCst);
        let killer = pool.spawn(|| panic_any(PoisonedPayload));
        assert!(killer.join().is_err());
        wait_until(|| pool.stats().workers == 1);
        mode.store(2, Ordering::SeqCst);
        // The retry panics inside the gate; the submission still completes.
        assert_eq!(pool.spawn(|| 3).join(), Ok(3));
        assert!(!pool.is_broken());
        pool.shutdown(); // must not wait forever for a submission that left by panicking
        assert_eq!(pool.spawn(|| 4).join(), Err(JobError::Shutdown));
    });
}

/// Broke: a task's panic payload whose destructor panicked escaped the loop's bookkeeping:
/// the panic came out of `block_on` and left the loop (and debug mode) inconsistent.
/// Fixed in 79558e6 (Wakers: collect under the lock, wake after it, each panic contained;
/// primitives that terminate).
#[test]
fn a_task_whose_panic_payload_panics_when_dropped_still_resolves_its_handle() {
    hang_guard(|| {
        for debug in [false, true] {
            let rt = Runtime::builder().debug(debug).build().unwrap();
            let result =
                rt.block_on(async { oneloop::spawn(async { panic_any(PoisonedPayload) }).await });
            assert!(
                matches!(result, Err(JoinError::Panicked(_))),
                "the handle resolves as panicked: {result:?}"
            );
            // The loop and debug mode are still consistent: tasks run and finish.
            let sum = rt.block_on(async {
                let a = oneloop::spawn(async { 1 });
                oneloop::task::yield_now().await;
                a.await.unwrap() + 1
            });
            assert_eq!(sum, 2);
            // A detached one, nobody awaiting: reported, not raised.
            rt.block_on(async {
                drop(oneloop::spawn(async { panic_any(PoisonedPayload) }));
                oneloop::task::yield_now().await;
                oneloop::task::yield_now().await;
            });
        }
    });
}

/// Broke: a stop notification sent before the watchdog first waited was missed, so dropping
/// a debug-mode runtime waited for the watchdog's next look (minutes, with a long
/// threshold).
/// Fixed in 79558e6 (Wakers: collect under the lock, wake after it, each panic contained;
/// primitives that terminate).
#[test]
fn dropping_a_debug_runtime_does_not_wait_for_the_watchdogs_next_look() {
    // With an hour's threshold the watchdog looks every 7.5 minutes: a stop notification
    // it misses (sent before it first waited) would hold each drop that long, past the
    // hang guard.
    hang_guard(|| {
        for _ in 0..20 {
            let rt = Runtime::builder()
                .debug(true)
                .slow_task_threshold(Duration::from_secs(3600))
                .build()
                .unwrap();
            drop(rt);
        }
    });
}

/// Broke: `acquire_many(n)` beyond `Semaphore::MAX_PERMITS` queued a waiter that could never
/// be granted, and first-in-first-out order made every later waiter wait behind it for
/// ever.
/// Fixed in 79558e6 (Wakers: collect under the lock, wake after it, each panic contained;
/// primitives that terminate); the test came with fd5fb46.
#[test]
fn acquiring_more_permits_than_a_semaphore_can_hold_is_a_clear_error() {
    // It could never be granted, and FIFO order would have every later waiter queue behind
    // it for ever: a panic that says so, at the call.
    let sem = oneloop::sync::Semaphore::new(1);
    for n in [oneloop::sync::Semaphore::MAX_PERMITS + 1, usize::MAX] {
        let message =
            panic_text(&*catch_unwind(AssertUnwindSafe(|| drop(sem.acquire_many(n)))).unwrap_err());
        assert!(message.contains("MAX_PERMITS"), "{message}");
        let owned = Arc::new(oneloop::sync::Semaphore::new(1));
        assert!(catch_unwind(AssertUnwindSafe(|| drop(owned.acquire_many_owned(n)))).is_err());
        assert_eq!(
            sem.try_acquire_many(n).unwrap_err(),
            oneloop::sync::TryAcquireError::NoPermits
        );
    }
    // The most a semaphore can hold still works.
    let full = oneloop::sync::Semaphore::new(oneloop::sync::Semaphore::MAX_PERMITS);
    let all = oneloop_pool::block_on(full.acquire_many(oneloop::sync::Semaphore::MAX_PERMITS));
    assert_eq!(
        all.unwrap().num_permits(),
        oneloop::sync::Semaphore::MAX_PERMITS
    );
}

/// Broke: two tasks awaiting each other's `JoinHandle` hung the program instead of being
/// reported, as soon as any timer was armed elsewhere: an armed timer turned the deadlock
/// check off.
/// Fixed in 7b61394 (Deadlock check: follow the chain of waits, prove JoinHandle cycles
/// whatever else runs, name what each task waits on).
#[test]
fn a_join_handle_cycle_is_a_deadlock_even_while_an_unrelated_timer_is_armed() {
    hang_guard(|| {
        let rt = Runtime::new();
        let message = expect_panic(|| {
            rt.block_on(async {
                heartbeat();
                spawn_join_cycle();
                pending::<()>().await
            })
        });
        assert!(message.contains("deadlock"), "{message}");
        assert!(message.contains("in a cycle"), "{message}");
        assert!(message.contains("\"a\""), "{message}");
        assert!(message.contains("\"b\""), "{message}");
        assert!(
            message.contains("\"heartbeat\"") && message.contains("waits on a timer"),
            "the heartbeat is listed with its wait: {message}"
        );
    });
}

/// Broke: the same hang while a `Handle` to the runtime was alive: a live `Handle` turned the
/// deadlock check off.
/// Fixed in 7b61394 (Deadlock check: follow the chain of waits, prove JoinHandle cycles
/// whatever else runs, name what each task waits on).
#[test]
fn a_join_handle_cycle_is_a_deadlock_even_while_a_handle_exists() {
    hang_guard(|| {
        let rt = Runtime::new();
        let handle = rt.handle();
        let message = expect_panic(|| {
            rt.block_on(async {
                spawn_join_cycle();
                pending::<()>().await
            })
        });
        drop(handle);
        assert!(message.contains("in a cycle"), "{message}");
    });
}

/// Broke: a spawn handler that reported success but dropped its `WorkerThread` unrun left
/// the worker counted as live, and `shutdown` waited for it for ever.
/// Fixed in fd5fb46 (Pool: a worker the spawn handler never runs is uncounted, whatever the
/// handler returned; docs: the new promises, OL010, where to look).
#[test]
fn a_spawn_handler_that_says_ok_but_never_runs_its_worker_cannot_wedge_shutdown() {
    hang_guard(|| {
        // The first worker starts; the second's handler reports success, but its thread
        // drops the `WorkerThread` without running it.
        let calls = Arc::new(AtomicUsize::new(0));
        let handler = {
            let calls = calls.clone();
            move |worker: oneloop_pool::WorkerThread| {
                if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                    thread::Builder::new()
                        .name(worker.name())
                        .spawn(move || worker.run())
                } else {
                    thread::Builder::new().spawn(move || drop(worker))
                }
            }
        };
        let pool = ThreadPool::builder()
            .workers(2)
            .spawn_handler(handler)
            .build()
            .unwrap();
        wait_until(|| pool.stats().workers == 1);
        let results: Vec<_> = (0..20).map(|i| pool.spawn(move || i)).collect();
        let sum: i32 = results.into_iter().map(|r| r.join().unwrap()).sum();
        assert_eq!(sum, (0..20).sum::<i32>());
        pool.shutdown(); // must not wait for the worker that never ran
        assert!(!pool.is_broken());
    });
}
