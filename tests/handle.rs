//! `Handle`: other threads run futures on the loop and get their results back (asyncio's
//! `run_coroutine_threadsafe`); every handle resolves, even when the runtime goes away.

mod util;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use oneloop::debug::Code;
use oneloop::time::sleep;
use oneloop::{JoinError, Runtime};
use util::{hang_guard, quiet_runtime};

#[test]
fn threads_spawn_onto_the_loop_and_join_their_results() {
    hang_guard(|| {
        let rt = Runtime::new();
        let finished = Arc::new(AtomicUsize::new(0));
        let workers: Vec<_> = (0..4u64)
            .map(|w| {
                let handle = rt.handle();
                let finished = finished.clone();
                thread::spawn(move || {
                    let sum = (0..50u64)
                        .map(|i| {
                            handle
                                .spawn(async move {
                                    sleep(Duration::from_micros(100)).await;
                                    w * 100 + i
                                })
                                .join()
                                .unwrap()
                        })
                        .sum::<u64>();
                    finished.fetch_add(1, Ordering::SeqCst);
                    sum
                })
            })
            .collect();
        // The loop must run for the workers' futures to run.
        rt.block_on(async {
            while finished.load(Ordering::SeqCst) < 4 {
                sleep(Duration::from_millis(1)).await;
            }
        });
        let sums: Vec<u64> = workers.into_iter().map(|w| w.join().unwrap()).collect();
        let expected: Vec<u64> = (0..4u64)
            .map(|w| (0..50).map(|i| w * 100 + i).sum())
            .collect();
        assert_eq!(sums, expected);
    });
}

#[test]
fn a_remote_spawn_made_before_the_loop_runs_waits_for_it() {
    let rt = Runtime::new();
    let remote = rt.handle().spawn(async { "ran on the loop" });
    assert!(!remote.is_finished());
    assert_eq!(rt.block_on(remote), Ok("ran on the loop"));
}

#[test]
fn a_remote_handle_is_a_future_too() {
    hang_guard(|| {
        let rt = Runtime::new();
        let handle = rt.handle();
        let value = rt.block_on(async move { handle.spawn(async { 40 + 2 }).await });
        assert_eq!(value, Ok(42));
    });
}

#[test]
fn a_panic_in_a_remote_task_comes_back_as_an_error() {
    hang_guard(|| {
        let rt = Runtime::new();
        let handle = rt.handle();
        let result = rt.block_on(async move {
            handle
                .spawn(async {
                    panic!("remote boom");
                })
                .await
        });
        assert_eq!(result, Err(JoinError::Panicked("remote boom".into())));
    });
}

#[test]
fn a_dropped_remote_handle_whose_task_panics_is_reported() {
    hang_guard(|| {
        let (rt, reports) = quiet_runtime();
        let handle = rt.handle();
        rt.block_on(async move {
            drop(handle.spawn(async { panic!("unseen remote panic") }));
            sleep(Duration::from_millis(5)).await;
        });
        let found = reports.with_code(Code::PanicNotRetrieved);
        assert_eq!(found.len(), 1, "{:?}", reports.all());
        assert_eq!(found[0].message.as_deref(), Some("unseen remote panic"));
    });
}

#[test]
fn aborting_a_remote_task_cancels_it() {
    hang_guard(|| {
        let rt = Runtime::new();
        let handle = rt.handle();
        let result = rt.block_on(async move {
            let remote = handle.spawn(async { sleep(Duration::from_secs(3600)).await });
            sleep(Duration::from_millis(2)).await; // spawned on the loop by now
            remote.abort();
            remote.await
        });
        assert_eq!(result, Err(JoinError::Cancelled));
    });
}

#[test]
fn remote_handles_resolve_as_cancelled_when_the_runtime_is_dropped() {
    hang_guard(|| {
        let rt = Runtime::new();
        let handle = rt.handle();
        // `ran` completes while the loop runs; `running` is still running when the
        // runtime goes away.
        let ran = handle.spawn(async { 1 });
        let running = handle.spawn(async {
            sleep(Duration::from_secs(3600)).await;
            2
        });
        rt.block_on(sleep(Duration::from_millis(5)));
        drop(rt);
        assert_eq!(running.join(), Err(JoinError::Cancelled));
        assert_eq!(ran.join(), Ok(1), "it ran during the block_on above");
        // After the runtime is gone, a spawn resolves at once as cancelled.
        assert_eq!(handle.spawn(async { 3 }).join(), Err(JoinError::Cancelled));
    });
}
