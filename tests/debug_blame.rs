//! Exact blame: a slow-poll report names a task only for its own poll's time. What the
//! loop runs between polls (a destructor of another task's output or future) is timed as
//! what it is and blamed on the task it belongs to, never on the next, innocent poll.
//! (The loop's side with the time between polls spent elsewhere, the loop thread
//! preempted, is tested in `runtime/src/debug/watch/windows/tests.rs`.)

mod util;

use std::thread;
use std::time::Duration;

use oneloop::debug::Code;
use oneloop::task;
use util::{debug_runtime, hang_guard};

/// A value whose destructor blocks the thread that drops it.
struct SlowToDrop;

impl Drop for SlowToDrop {
    fn drop(&mut self) {
        thread::sleep(Duration::from_millis(120));
    }
}

fn blamed(reports: &util::Reports, name: &str) -> Vec<String> {
    reports
        .with_code(Code::SlowPoll)
        .into_iter()
        .filter(|r| r.task.as_ref().and_then(|t| t.name.as_deref()) == Some(name))
        .map(|r| r.to_string())
        .collect()
}

#[test]
fn a_slow_destructor_of_a_detached_output_is_blamed_on_its_task_not_the_next() {
    hang_guard(|| {
        let (rt, reports) = debug_runtime(30);
        rt.block_on(async {
            for _ in 0..3 {
                // Nobody awaits "producer": its output is dropped by the loop, between
                // polls, right after it finishes; "victim" is polled next.
                task::Builder::new()
                    .name("producer")
                    .spawn(async { SlowToDrop })
                    .detach();
                let victim = task::Builder::new().name("victim").spawn(async {});
                victim.await.unwrap();
            }
        });
        drop(rt);
        assert!(
            blamed(&reports, "victim").is_empty(),
            "an empty task was blamed: {:?}",
            blamed(&reports, "victim")
        );
        let producer = blamed(&reports, "producer");
        assert!(!producer.is_empty(), "the slow destructor went unreported");
        assert!(
            producer[0].contains("while its output was dropped"),
            "{producer:?}"
        );
    });
}

#[test]
fn a_slow_destructor_of_a_future_cancelled_between_polls_is_blamed_on_its_task() {
    hang_guard(|| {
        let (rt, reports) = debug_runtime(30);
        let handle = rt.handle();
        rt.block_on(async {
            let doomed = handle.spawn(async {
                let _guard = SlowToDrop;
                std::future::pending::<()>().await;
            });
            task::yield_now().await; // it runs and holds the guard
            // Aborted from another thread: the loop drops its future between polls.
            thread::spawn(move || doomed.abort()).join().unwrap();
            for _ in 0..3 {
                let next = task::Builder::new().name("next").spawn(async {});
                next.await.unwrap();
            }
        });
        drop(rt);
        assert!(
            blamed(&reports, "next").is_empty(),
            "{:?}",
            blamed(&reports, "next")
        );
        let doomed: Vec<String> = reports
            .with_code(Code::SlowPoll)
            .into_iter()
            .map(|r| r.to_string())
            .filter(|r| r.contains("while its future was dropped"))
            .collect();
        assert_eq!(doomed.len(), 1, "{:?}", reports.all());
    });
}
