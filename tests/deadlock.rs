//! The deadlock check: what it proves (a `JoinHandle` cycle whatever else is going on; a
//! waker nobody holds while nothing else can run), what it names (what each pending task
//! waits on), and what it must never call a deadlock (work that another thread, a timer or
//! a live task can still finish).
//!
//! The check once hung on a `JoinHandle` cycle while a timer was armed elsewhere or a
//! `Handle` was alive: those two tests are in `regressions.rs`.

mod util;

use std::future::pending;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use oneloop::Runtime;
use oneloop::sync::{Semaphore, mpsc, oneshot};
use oneloop::task;
use util::{expect_panic, hang_guard, spawn_join_cycle, wait_until};

#[test]
fn the_deadlock_panic_says_what_each_pending_task_waits_on() {
    hang_guard(|| {
        let rt = Runtime::new();
        let message = expect_panic(|| {
            rt.block_on(async {
                // A bystander waiting on a oneshot whose sender it holds itself, and one
                // waiting for a permit of a semaphore whose only permit it holds.
                let (tx, rx) = oneshot::channel::<()>();
                task::Builder::new()
                    .name("self-sender")
                    .spawn(async move {
                        let _tx = tx;
                        let _ = rx.await;
                    })
                    .detach();
                let sem = Arc::new(Semaphore::new(1));
                task::Builder::new()
                    .name("self-permit")
                    .spawn(async move {
                        let _held = sem.clone().acquire_owned().await.unwrap();
                        let _again = sem.acquire().await;
                    })
                    .detach();
                let (_tx, mut rx) = mpsc::unbounded_channel::<()>();
                task::Builder::new()
                    .name("self-receiver")
                    .spawn(async move {
                        let _ = rx.recv().await;
                    })
                    .detach();
                spawn_join_cycle();
                pending::<()>().await
            })
        });
        assert!(message.contains("in a cycle"), "{message}");
        let sender_line = message
            .lines()
            .find(|line| line.contains("\"self-sender\""))
            .unwrap_or_else(|| panic!("the bystander is listed: {message}"));
        assert!(
            sender_line.contains("waits on the oneshot channel made at tests/deadlock.rs:"),
            "{message}"
        );
        assert!(
            message.contains("waits on 1 permit of a Semaphore"),
            "{message}"
        );
        assert!(
            message.contains("waits on a value from the mpsc channel made at"),
            "{message}"
        );
        assert!(
            message.contains("waits on the JoinHandle of task #"),
            "{message}"
        );
        assert!(
            message.contains("#0 \"main\" (the block_on future) waits on"),
            "{message}"
        );
    });
}

#[test]
fn block_on_pending_runs_a_program_of_live_tasks_for_ever() {
    // `block_on(pending())` is how a program of tasks runs for ever: its waker is held by
    // nobody, but a task with a timer keeps working, so this is no deadlock.
    let ticks = Arc::new(AtomicUsize::new(0));
    let counter = ticks.clone();
    let runner = thread::spawn(move || {
        Runtime::new().block_on(async move {
            oneloop::spawn(async move {
                loop {
                    let ticks = counter.fetch_add(1, Ordering::SeqCst);
                    let period = if ticks < 20 { 1 } else { 1000 };
                    oneloop::time::sleep(Duration::from_millis(period)).await;
                }
            })
            .detach();
            pending::<()>().await
        })
    });
    hang_guard(move || wait_until(|| ticks.load(Ordering::SeqCst) >= 20));
    // (Then it slows down: the thread ticks on, once a second, until the process exits.)
    assert!(!runner.is_finished(), "the loop is still running, no panic");
    // The thread runs on until the test process exits.
}

#[test]
fn a_chain_of_handles_ending_at_another_thread_is_not_a_deadlock() {
    hang_guard(|| {
        let rt = Runtime::new();
        let value = rt.block_on(async {
            let (tx, rx) = oneshot::channel::<u32>();
            let inner = oneloop::spawn(async move { rx.await.unwrap() });
            let outer = oneloop::spawn(async move { inner.await.unwrap() + 1 });
            thread::spawn(move || {
                thread::sleep(Duration::from_millis(30));
                tx.send(41).unwrap();
            });
            outer.await.unwrap()
        });
        assert_eq!(value, 42);
    });
}

// ---------------------------------------------------------------------------------------
// Deadlocks through channels and semaphores: reported (OL010), never panicked on.
// ---------------------------------------------------------------------------------------

/// Runs `body` as the `block_on` future of a runtime that reports a stall after 50 ms;
/// the loop is released when the report arrives (a thread sends on a oneshot the
/// `block_on` future awaits after `body`'s tasks are spawned). Returns the stall reports.
fn until_stall_reported(body: impl FnOnce()) -> Vec<oneloop::debug::Report> {
    until_stall_reported_with(true, body)
}

fn until_stall_reported_with(debug: bool, body: impl FnOnce()) -> Vec<oneloop::debug::Report> {
    let reports = util::Reports::default();
    let (seen_tx, seen_rx) = std::sync::mpsc::channel::<()>();
    let sink = {
        let log = reports.sink();
        let seen_tx = std::sync::Mutex::new(seen_tx);
        move |report: &oneloop::debug::Report| {
            log(report);
            if report.code == oneloop::debug::Code::Stalled {
                let _ = seen_tx.lock().unwrap().send(());
            }
        }
    };
    let rt = Runtime::builder()
        .debug(debug)
        .stall_report_after(Duration::from_millis(50))
        .on_report(sink)
        .build()
        .unwrap();
    let (release, released) = oneshot::channel::<()>();
    let releaser = thread::spawn(move || {
        // Without debug mode nothing is reported: release the loop after a while anyway.
        let _ = seen_rx.recv_timeout(Duration::from_millis(if debug { 120_000 } else { 300 }));
        release.send(()).unwrap();
    });
    rt.block_on(async move {
        body();
        released.await.unwrap();
    });
    releaser.join().unwrap();
    reports.with_code(oneloop::debug::Code::Stalled)
}

#[test]
fn two_tasks_awaiting_each_other_s_oneshot_are_reported_as_a_likely_deadlock() {
    let stalls = hang_guard(|| {
        until_stall_reported(|| {
            let (to_a, a_rx) = oneshot::channel::<()>();
            let (to_b, b_rx) = oneshot::channel::<()>();
            task::Builder::new()
                .name("a")
                .spawn(async move {
                    let _ = a_rx.await;
                    let _ = to_b.send(());
                })
                .detach();
            task::Builder::new()
                .name("b")
                .spawn(async move {
                    let _ = b_rx.await;
                    let _ = to_a.send(());
                })
                .detach();
        })
    });
    assert_eq!(stalls.len(), 1, "one report per quiet spell");
    let text = stalls[0].to_string();
    assert!(text.contains("OL010"), "{text}");
    assert!(text.contains("\"a\"") && text.contains("\"b\""), "{text}");
    assert!(
        text.contains("waits on the oneshot channel made at"),
        "{text}"
    );
}

#[test]
fn a_task_awaiting_a_permit_it_holds_is_reported_as_a_likely_deadlock() {
    let stalls = hang_guard(|| {
        until_stall_reported(|| {
            let sem = Arc::new(Semaphore::new(1));
            task::Builder::new()
                .name("greedy")
                .spawn(async move {
                    let _held = sem.clone().acquire_owned().await.unwrap();
                    let _again = sem.acquire().await;
                })
                .detach();
        })
    });
    let text = stalls[0].to_string();
    assert!(text.contains("\"greedy\""), "{text}");
    assert!(text.contains("1 permit of a Semaphore"), "{text}");
}

#[test]
fn a_receiver_whose_only_sender_its_task_holds_is_reported_as_a_likely_deadlock() {
    let stalls = hang_guard(|| {
        until_stall_reported(|| {
            let (tx, mut rx) = mpsc::channel::<u32>(1);
            task::Builder::new()
                .name("lonely")
                .spawn(async move {
                    let _tx = tx;
                    let _ = rx.recv().await;
                })
                .detach();
        })
    });
    let text = stalls[0].to_string();
    assert!(text.contains("\"lonely\""), "{text}");
    assert!(
        text.contains("a value from the mpsc channel made at"),
        "{text}"
    );
}

#[test]
fn a_sender_on_another_thread_that_sends_within_the_grace_period_is_not_reported() {
    hang_guard(|| {
        let (rt, reports) = util::quiet_runtime();
        let value = rt.block_on(async {
            let (tx, rx) = oneshot::channel::<u32>();
            thread::spawn(move || {
                thread::sleep(Duration::from_millis(30));
                tx.send(7).unwrap();
            });
            rx.await.unwrap()
        });
        assert_eq!(value, 7);
        assert!(reports.with_code(oneloop::debug::Code::Stalled).is_empty());
    });
}

#[test]
fn without_debug_mode_a_quiet_loop_is_not_reported() {
    // A program fed by another thread can be quiet the same way: only debug mode says so.
    let stalls = hang_guard(|| {
        until_stall_reported_with(false, || {
            let (_tx, rx) = oneshot::channel::<()>();
            task::Builder::new()
                .name("waiting")
                .spawn(async move {
                    let _ = rx.await;
                })
                .detach();
        })
    });
    assert!(stalls.is_empty());
}

#[test]
fn a_cycle_beside_a_block_on_future_that_completes_is_reported_not_panicked_on() {
    hang_guard(|| {
        let (rt, reports) = util::quiet_runtime();
        let value = rt.block_on(async {
            spawn_join_cycle();
            // The block_on future waits on a timer: it can still complete.
            oneloop::time::sleep(Duration::from_millis(30)).await;
            42
        });
        assert_eq!(value, 42);
        let cycles = reports.with_code(oneloop::debug::Code::JoinCycle);
        assert_eq!(cycles.len(), 1, "reported once: {:?}", reports.all());
        let text = cycles[0].to_string();
        assert!(
            text.contains("OL011") && text.contains("\"a\"") && text.contains("\"b\""),
            "{text}"
        );
    });
}
