//! Misuse gets a clear panic that says what to do, never a hang.

mod util;

use std::thread;
use std::time::Duration;

use oneloop::Runtime;
use oneloop::sync::mpsc;
use oneloop::time::sleep;
use util::expect_panic;

#[test]
fn spawn_outside_a_runtime_says_where_to_call_it() {
    let message = expect_panic(|| {
        drop(oneloop::spawn(async {}));
    });
    assert!(message.contains("oneloop::spawn"), "{message}");
    assert!(message.contains("outside a oneloop runtime"), "{message}");
    assert!(message.contains("Runtime::block_on"), "{message}");
    assert!(message.contains("Handle"), "{message}");
}

#[test]
fn a_sleep_polled_outside_a_runtime_names_the_problem() {
    let message = expect_panic(|| futures::executor::block_on(sleep(Duration::from_millis(1))));
    assert!(message.contains("oneloop::time::Sleep"), "{message}");
    assert!(message.contains("outside a oneloop runtime"), "{message}");
}

#[test]
fn creating_a_timeout_outside_the_runtime_is_fine_until_it_is_polled() {
    // The deadline is fixed at creation; the runtime is needed only once it is awaited.
    let rt = Runtime::new();
    let slow = oneloop::time::timeout(Duration::from_millis(5), sleep(Duration::from_secs(60)));
    assert!(rt.block_on(slow).is_err());
}

#[test]
fn a_nested_block_on_is_refused_with_an_explanation() {
    let rt = Runtime::new();
    let message = expect_panic(|| {
        rt.block_on(async {
            let inner = Runtime::new();
            inner.block_on(async {});
        })
    });
    assert!(
        message.contains("inside a running oneloop runtime"),
        "{message}"
    );
    assert!(message.contains(".await"), "{message}");
}

#[test]
fn a_timer_moved_to_another_runtime_s_thread_is_refused() {
    let rt = Runtime::new();
    let mut nap = Box::pin(sleep(Duration::from_secs(60)));
    rt.block_on(async {
        assert!(futures::poll!(nap.as_mut()).is_pending()); // registered with `rt`
    });
    let message = thread::spawn(move || {
        let other = Runtime::new();
        expect_panic(move || other.block_on(nap))
    })
    .join()
    .unwrap();
    assert!(message.contains("belongs to runtime #"), "{message}");
    assert!(
        message.contains("Runtime objects live on the loop that created them"),
        "{message}"
    );
}

#[test]
fn blocking_calls_on_the_loop_thread_are_refused() {
    let rt = Runtime::new();
    let (tx, mut rx) = mpsc::channel::<u8>(1);
    let message = expect_panic(|| {
        rt.block_on(async {
            let _ = tx.blocking_send(1);
        })
    });
    assert!(message.contains("blocking_send"), "{message}");
    assert!(message.contains("would stop the loop"), "{message}");
    let message = expect_panic(|| {
        rt.block_on(async {
            let _ = rx.blocking_recv();
        })
    });
    assert!(message.contains("blocking_recv"), "{message}");
    let handle = rt.handle();
    let message = expect_panic(|| {
        rt.block_on(async {
            let _ = handle.spawn(async {}).join();
        })
    });
    assert!(message.contains("RemoteJoinHandle::join"), "{message}");
}

#[test]
fn polling_a_join_handle_after_it_finished_is_refused() {
    let rt = Runtime::new();
    let message = expect_panic(|| {
        rt.block_on(async {
            let mut handle = Box::pin(oneloop::spawn(async { 1 }));
            let _ = (&mut handle).await;
            let _ = futures::poll!(handle.as_mut());
        })
    });
    assert!(
        message.contains("JoinHandle polled after it returned"),
        "{message}"
    );
}

#[test]
fn a_zero_capacity_channel_is_refused() {
    let message = expect_panic(|| {
        let _ = mpsc::channel::<u8>(0);
    });
    assert!(message.contains("capacity must be at least 1"), "{message}");
}

#[test]
fn a_malformed_environment_is_an_error_not_a_surprise() {
    // The child re-runs this test with a bad ONELOOP_SLOW_MS.
    if util::in_child() {
        let error = Runtime::builder()
            .build()
            .expect_err("a bad variable is an error");
        assert!(error.to_string().contains("ONELOOP_SLOW_MS"));
        let message = expect_panic(|| drop(Runtime::new()));
        assert!(message.contains("cannot create a runtime"), "{message}");
        return;
    }
    assert!(util::run_test_in_child(
        "a_malformed_environment_is_an_error_not_a_surprise",
        &[("ONELOOP_SLOW_MS", "soon")],
    ));
}

#[test]
fn debug_mode_can_be_turned_on_from_the_environment() {
    if util::in_child() {
        let reports = util::Reports::default();
        let rt = Runtime::builder()
            .on_report(reports.sink())
            .build()
            .unwrap();
        rt.block_on(async { thread::sleep(Duration::from_millis(20)) });
        assert_eq!(reports.with_code(oneloop::debug::Code::SlowPoll).len(), 1);
        return;
    }
    assert!(util::run_test_in_child(
        "debug_mode_can_be_turned_on_from_the_environment",
        &[("ONELOOP_DEBUG", "1"), ("ONELOOP_SLOW_MS", "5")],
    ));
}
