//! Debug mode: slow polls reported with task name and spawn site, the watchdog naming a
//! poll that is still blocking (with a backtrace on Linux), and deadlock detection.

mod util;

use std::future::{Future, poll_fn};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Poll;
use std::thread;
use std::time::Duration;

use oneloop::Runtime;
use oneloop::debug::{Code, Report};
use oneloop::task::{self, yield_now};
use oneloop::time::sleep;
use util::{debug_runtime, expect_panic, hang_guard, quiet_runtime};

/// Blocks the calling thread (the loop, when called from a task). Not inlined, so it shows
/// up by name in the watchdog's backtrace.
#[inline(never)]
fn block_the_loop_for(ms: u64) {
    thread::sleep(Duration::from_millis(ms));
}

/// Blocks the loop for at least `ms`, and then until `reported` says the watchdog has
/// spoken (or a minute has passed): the test waits for the event, not for a clock.
#[inline(never)]
fn block_the_loop_until(ms: u64, reported: impl Fn() -> bool) {
    block_the_loop_for(ms);
    let give_up = std::time::Instant::now() + Duration::from_secs(60);
    while !reported() && std::time::Instant::now() < give_up {
        block_the_loop_for(5);
    }
}

#[test]
fn a_slow_poll_is_reported_with_the_task_s_id_name_and_spawn_site() {
    let (rt, reports) = debug_runtime(20);
    let line = line!() + 4;
    let id = rt.block_on(async {
        let handle = task::Builder::new()
            .name("handler")
            .spawn(async { block_the_loop_for(60) });
        let id = handle.id();
        handle.await.unwrap();
        id
    });
    let slow = reports.with_code(Code::SlowPoll);
    assert_eq!(slow.len(), 1, "{:?}", reports.all());
    let report = &slow[0];
    let task = report.task.as_ref().expect("a task report");
    assert_eq!(task.id, id);
    assert_eq!(task.name.as_deref(), Some("handler"));
    assert!(task.location.file().ends_with("debug_mode.rs"));
    assert_eq!(task.location.line(), line);
    assert!(report.duration.unwrap() >= Duration::from_millis(60));
    assert_eq!(report.threshold, Some(Duration::from_millis(20)));
    let text = report.to_string();
    let site = format!(
        "{}:{}:{}",
        task.location.file(),
        line,
        task.location.column()
    );
    assert!(
        text.starts_with(&format!(
            "oneloop: OL001 slow task {id} \"handler\" spawned at {site} "
        )),
        "{text}"
    );
    // "blocked the loop for 60.2 ms (threshold 20 ms)", or, when the watchdog already
    // reported it while it ran, "unblocked after 60.2 ms (threshold 20 ms; reported 2 times ...)".
    assert!(
        text.contains("blocked the loop for") || text.contains("unblocked after"),
        "{text}"
    );
    assert!(text.contains("(threshold 20 ms"), "{text}");
    assert!(
        text.contains("to_thread or run_in_executor"),
        "says what to do: {text}"
    );
    assert_eq!(rt.metrics().slow_polls, 1);
}

#[test]
fn a_slow_poll_among_thousands_of_quick_ones_is_named_alone() {
    // Debug mode reads the clock once per window of up to 64 quick polls; the watchdog's
    // look into the slow poll makes the loop time that one alone.
    let (rt, reports) = debug_runtime(30);
    rt.block_on(async {
        let mut handles = Vec::new();
        for round in 0..3 {
            for _ in 0..2_000 {
                handles.push(oneloop::spawn(async { yield_now().await }));
            }
            if round == 1 {
                handles.push(
                    task::Builder::new()
                        .name("blocker")
                        .spawn(async { block_the_loop_for(90) }),
                );
            }
        }
        for handle in handles {
            handle.await.unwrap();
        }
    });
    let slow = reports.with_code(Code::SlowPoll);
    assert_eq!(slow.len(), 1, "{:?}", reports.all());
    let task = slow[0]
        .task
        .as_ref()
        .expect("named alone, not with the quick polls");
    assert_eq!(task.name.as_deref(), Some("blocker"));
    assert!(slow[0].duration.unwrap() >= Duration::from_millis(90));
    assert_eq!(rt.metrics().slow_polls, 1);
}

#[test]
fn the_block_on_future_is_reported_as_main() {
    let (rt, reports) = debug_runtime(20);
    let line = line!() + 1;
    rt.block_on(async { block_the_loop_for(40) });
    let slow = reports.with_code(Code::SlowPoll);
    assert_eq!(slow.len(), 1);
    let main = slow[0].task.as_ref().expect("a task report");
    assert_eq!(main.id.as_u64(), 0);
    assert_eq!(main.name.as_deref(), Some("main"));
    assert_eq!(main.location.line(), line);
}

#[test]
fn quick_polls_are_not_reported() {
    let (rt, reports) = debug_runtime(1_000);
    rt.block_on(async {
        for _ in 0..100 {
            oneloop::spawn(async { yield_now().await }).await.unwrap();
        }
        sleep(Duration::from_millis(5)).await;
    });
    assert!(reports.all().is_empty(), "{:?}", reports.all());
}

#[test]
fn with_debug_off_nothing_is_timed_or_reported() {
    let (rt, reports) = quiet_runtime();
    rt.block_on(async {
        oneloop::spawn(async { block_the_loop_for(30) })
            .await
            .unwrap()
    });
    assert!(reports.all().is_empty());
    assert_eq!(rt.metrics().slow_polls, 0);
}

#[test]
fn the_watchdog_names_a_blocking_task_before_its_poll_returns() {
    hang_guard(|| {
        let returned = Arc::new(AtomicBool::new(false));
        let seen: Arc<Mutex<Vec<(Report, bool)>>> = Arc::default();
        let rt = Runtime::builder()
            .debug(true)
            .slow_task_threshold(Duration::from_millis(50))
            .on_report({
                let returned = returned.clone();
                let seen = seen.clone();
                move |report| {
                    // Record, with each report, whether the blocking poll had returned yet.
                    let done = returned.load(Ordering::SeqCst);
                    seen.lock().unwrap().push((report.clone(), done));
                }
            })
            .build()
            .unwrap();
        rt.block_on(async {
            task::Builder::new()
                .name("stuck")
                .spawn({
                    let returned = returned.clone();
                    let seen = seen.clone();
                    async move {
                        block_the_loop_until(300, || {
                            seen.lock()
                                .unwrap()
                                .iter()
                                .any(|(r, _)| r.code == Code::StillBlocking)
                        });
                        returned.store(true, Ordering::SeqCst);
                    }
                })
                .await
                .unwrap();
        });
        let seen = seen.lock().unwrap().clone();
        let still: Vec<_> = seen
            .iter()
            .filter(|(r, _)| r.code == Code::StillBlocking)
            .collect();
        assert!(!still.is_empty(), "no OL002 report: {seen:?}");
        let (first, poll_had_returned) = still[0];
        assert!(!poll_had_returned, "OL002 came after the poll returned");
        assert_eq!(
            first.task.as_ref().and_then(|t| t.name.as_deref()),
            Some("stuck")
        );
        assert!(first.duration.unwrap() >= Duration::from_millis(50));
        let text = first.to_string();
        assert!(text.starts_with("oneloop: OL002 task #"), "{text}");
        assert!(text.contains("\"stuck\" spawned at"), "{text}");
        assert!(text.contains("has been blocking the loop for"), "{text}");
        assert!(text.contains("so far (threshold 50 ms)"), "{text}");
        // Reported again at growing intervals (threshold, 2x, 4x...: 50, 100, 200 ms).
        for pair in still.windows(2) {
            assert!(pair[1].0.duration.unwrap() > pair[0].0.duration.unwrap());
        }
        // The poll's own OL001 closes the story.
        let closing: Vec<_> = seen
            .iter()
            .filter(|(r, _)| r.code == Code::SlowPoll)
            .collect();
        assert_eq!(closing.len(), 1);
        let closing = &closing[0].0;
        // (A report racing the poll's end may be counted or not, never more than were sent.)
        assert!(closing.times_reported >= 1 && closing.times_reported as usize <= still.len());
        assert!(
            closing.to_string().contains("unblocked after"),
            "{}",
            closing
        );
        if cfg!(target_os = "linux") {
            let backtrace = first
                .backtrace
                .as_ref()
                .expect("a backtrace on Linux")
                .to_string();
            assert!(
                backtrace.contains("block_the_loop_"),
                "the backtrace shows where the loop is stuck:\n{backtrace}"
            );
        }
    });
}

#[test]
fn the_watchdog_can_run_without_backtraces() {
    let reports = util::Reports::default();
    let rt = Runtime::builder()
        .debug(true)
        .debug_backtraces(false)
        .slow_task_threshold(Duration::from_millis(20))
        .on_report(reports.sink())
        .build()
        .unwrap();
    rt.block_on(async {
        block_the_loop_until(100, || !reports.with_code(Code::StillBlocking).is_empty())
    });
    let still = reports.with_code(Code::StillBlocking);
    assert!(!still.is_empty());
    assert!(still.iter().all(|r| r.backtrace.is_none()));
}

#[test]
fn a_panicking_report_sink_does_not_take_the_loop_down() {
    let rt = Runtime::builder()
        .debug(true)
        .slow_task_threshold(Duration::from_millis(10))
        .on_report(|_| panic!("sink is broken"))
        .build()
        .unwrap();
    assert_eq!(
        rt.block_on(async {
            block_the_loop_for(30);
            5
        }),
        5
    );
}

#[test]
fn a_loop_that_can_never_progress_panics_naming_the_pending_tasks() {
    let rt = Runtime::new();
    let line = line!() + 6; // the `.spawn(` line
    let message = expect_panic(|| {
        rt.block_on(async {
            // A future that returns Pending without keeping its waker: nothing can wake it.
            let lost = task::Builder::new()
                .name("lost-waker")
                .spawn(poll_fn(|_| Poll::<()>::Pending));
            lost.await.unwrap();
        })
    });
    assert!(message.contains("deadlock"), "{message}");
    assert!(message.contains("#0 \"main\""), "{message}");
    assert!(
        message.contains(&format!(
            "\"lost-waker\" spawned at tests/debug_mode.rs:{line}"
        )),
        "{message}"
    );
}

#[test]
fn a_task_waiting_on_another_thread_is_not_a_deadlock() {
    hang_guard(|| {
        let rt = Runtime::new();
        let value = rt.block_on(async {
            let (tx, rx) = oneloop::sync::oneshot::channel();
            let waker_holder = thread::spawn(move || {
                thread::sleep(Duration::from_millis(30));
                tx.send(1).unwrap();
            });
            let value = rx.await.unwrap();
            waker_holder.join().unwrap();
            value
        });
        assert_eq!(value, 1);
    });
}

#[test]
fn a_main_future_pending_forever_without_a_waker_is_a_deadlock() {
    let rt = Runtime::new();
    let message = expect_panic(|| rt.block_on(std::future::pending::<()>()));
    assert!(message.contains("deadlock"), "{message}");
}

#[test]
fn tasks_awaiting_each_other_s_handles_in_a_cycle_are_a_deadlock() {
    let rt = Runtime::new();
    let message = expect_panic(|| {
        rt.block_on(async {
            let (tx, rx) = oneloop::sync::oneshot::channel::<oneloop::JoinHandle<()>>();
            let first = oneloop::spawn(async move {
                let second = rx.await.unwrap();
                second.await.unwrap(); // waits for `second`, which waits for us
            });
            let second = oneloop::spawn(async move {
                first.await.unwrap();
            });
            tx.send(second).unwrap();
            sleep(Duration::from_millis(1)).await;
            std::future::pending::<()>().await
        })
    });
    assert!(message.contains("deadlock"), "{message}");
}

/// Keeps a future pending while holding its waker where the runtime cannot see it.
fn held_elsewhere(slot: Arc<Mutex<Option<std::task::Waker>>>) -> impl Future<Output = ()> {
    poll_fn(move |cx| {
        *slot.lock().unwrap() = Some(cx.waker().clone());
        Poll::Pending
    })
}

#[test]
fn a_waker_held_outside_the_runtime_keeps_the_loop_waiting() {
    hang_guard(|| {
        let rt = Runtime::new();
        let slot = Arc::new(Mutex::new(None));
        rt.block_on(async {
            let task = oneloop::spawn(held_elsewhere(slot.clone()));
            yield_now().await;
            let waker = slot.lock().unwrap().take().unwrap();
            thread::spawn(move || {
                thread::sleep(Duration::from_millis(30));
                waker.wake();
            });
            // The task is pending with its waker on another thread: not a deadlock. After the
            // wake it parks again, this time keeping the waker in `slot`; abort it then.
            while slot.lock().unwrap().is_none() {
                sleep(Duration::from_millis(1)).await;
            }
            task.abort();
        });
    });
}
