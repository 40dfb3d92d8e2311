//! Tasks: spawning, ordering, abort, panics, JoinSet, TaskGroup and join_all.
//! (Long because it is the task API's whole behaviour spec.)

mod util;

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use oneloop::debug::Code;
use oneloop::task::{self, GroupError, JoinSet, TaskGroup, join_all, try_join_all, yield_now};
use oneloop::time::sleep;
use oneloop::{JoinError, Runtime};
use util::{DropCounter, expect_panic, hang_guard, quiet_runtime};

const FOREVER: Duration = Duration::from_secs(3600);

#[test]
fn tasks_run_in_spawn_order_and_take_turns_when_they_yield() {
    let rt = Runtime::new();
    let log = rt.block_on(async {
        let log = Rc::new(RefCell::new(Vec::new()));
        let tasks: Vec<_> = ["a", "b", "c"]
            .into_iter()
            .map(|name| {
                let log = log.clone();
                oneloop::spawn(async move {
                    for round in 0..3 {
                        log.borrow_mut().push(format!("{name}{round}"));
                        yield_now().await;
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        Rc::try_unwrap(log).unwrap().into_inner()
    });
    assert_eq!(
        log,
        ["a0", "b0", "c0", "a1", "b1", "c1", "a2", "b2", "c2"],
        "round-robin in FIFO order"
    );
}

#[test]
fn a_task_that_keeps_waking_itself_does_not_starve_timers() {
    hang_guard(|| {
        let rt = Runtime::new();
        let spins = rt.block_on(async {
            let spins = Rc::new(AtomicUsize::new(0));
            let spinner = oneloop::spawn({
                let spins = spins.clone();
                async move {
                    loop {
                        spins.fetch_add(1, Ordering::Relaxed);
                        yield_now().await;
                    }
                }
            });
            sleep(Duration::from_millis(20)).await; // must fire although the spinner never rests
            spinner.abort();
            spins.load(Ordering::Relaxed)
        });
        assert!(spins > 0, "the spinner ran too");
    });
}

#[test]
fn spawned_tasks_need_not_be_send() {
    let rt = Runtime::new();
    let value = rt.block_on(async {
        let shared = Rc::new(RefCell::new(1));
        let task = oneloop::spawn({
            let shared = shared.clone();
            async move {
                *shared.borrow_mut() += 1;
                Rc::strong_count(&shared)
            }
        });
        task.await.unwrap();
        *shared.borrow()
    });
    assert_eq!(value, 2);
}

#[test]
fn tasks_spawned_before_block_on_run_inside_it() {
    let rt = Runtime::new();
    let early = rt.spawn(async { 5 });
    assert!(!early.is_finished());
    assert_eq!(rt.block_on(early), Ok(5));
}

#[test]
fn a_detached_task_keeps_running_after_its_handle_is_dropped() {
    let rt = Runtime::new();
    rt.block_on(async {
        let (done, finished) = oneloop::sync::oneshot::channel();
        let handle = oneloop::spawn(async move {
            sleep(Duration::from_millis(1)).await;
            done.send("finished unobserved").unwrap();
        });
        handle.detach();
        assert_eq!(finished.await, Ok("finished unobserved"));
        yield_now().await;
    });
    assert_eq!(
        rt.metrics().live_tasks,
        0,
        "the finished detached task freed its slot"
    );
}

#[test]
fn abort_drops_the_future_once_and_the_handle_reports_cancelled() {
    let rt = Runtime::new();
    let drops = DropCounter::new();
    rt.block_on(async {
        let guard = drops.track();
        let task = oneloop::spawn(async move {
            let _guard = guard;
            sleep(FOREVER).await;
        });
        yield_now().await; // let it start and park on its timer
        assert!(!task.is_finished());
        task.abort();
        assert_eq!(drops.dropped(), 1, "the future is dropped at once");
        assert!(task.is_finished());
        assert_eq!(task.await, Err(JoinError::Cancelled));
    });
    assert_eq!(drops.dropped(), 1);
}

#[test]
fn abort_before_the_first_poll_means_the_task_never_runs() {
    let rt = Runtime::new();
    let ran = Rc::new(AtomicUsize::new(0));
    rt.block_on(async {
        let task = oneloop::spawn({
            let ran = ran.clone();
            async move {
                ran.fetch_add(1, Ordering::SeqCst);
            }
        });
        task.abort();
        assert!(task.await.unwrap_err().is_cancelled());
    });
    assert_eq!(ran.load(Ordering::SeqCst), 0);
}

#[test]
fn abort_after_finishing_keeps_the_value() {
    let rt = Runtime::new();
    rt.block_on(async {
        let task = oneloop::spawn(async { 9 });
        while !task.is_finished() {
            yield_now().await;
        }
        task.abort();
        assert_eq!(task.await, Ok(9));
    });
}

#[test]
fn a_task_can_abort_itself_from_inside_its_poll() {
    let rt = Runtime::new();
    let drops = DropCounter::new();
    rt.block_on(async {
        let slot: Rc<RefCell<Option<oneloop::JoinHandle<()>>>> = Rc::default();
        let guard = drops.track();
        let task = oneloop::spawn({
            let slot = slot.clone();
            async move {
                let _guard = guard;
                yield_now().await;
                if let Some(me) = slot.borrow().as_ref() {
                    me.abort(); // takes effect when this poll returns
                }
                yield_now().await;
                unreachable!("an aborted task is not polled again");
            }
        });
        let id = task.id();
        *slot.borrow_mut() = Some(task);
        sleep(Duration::from_millis(5)).await;
        let task = slot.borrow_mut().take().unwrap();
        assert_eq!(task.id(), id);
        assert_eq!(task.await, Err(JoinError::Cancelled));
    });
    assert_eq!(drops.dropped(), 1);
}

#[test]
fn a_panic_in_a_task_reaches_its_handle_and_the_loop_carries_on() {
    let rt = Runtime::new();
    rt.block_on(async {
        let bad = oneloop::spawn(async {
            yield_now().await;
            panic!("boom in task");
        });
        let good = oneloop::spawn(async { "still fine" });
        assert_eq!(bad.await, Err(JoinError::Panicked("boom in task".into())));
        assert_eq!(good.await, Ok("still fine"));
    });
    assert_eq!(rt.block_on(async { 1 }), 1, "the runtime stays usable");
}

#[test]
fn a_panic_in_the_block_on_future_propagates_and_the_runtime_survives_it() {
    let rt = Runtime::new();
    let message = expect_panic(|| {
        rt.block_on(async {
            yield_now().await;
            panic!("main failed");
        })
    });
    assert_eq!(message, "main failed");
    assert_eq!(rt.block_on(async { 2 }), 2);
}

#[test]
fn a_panic_in_a_future_s_destructor_is_contained() {
    struct PanicOnDrop;
    impl Drop for PanicOnDrop {
        fn drop(&mut self) {
            panic!("drop exploded");
        }
    }
    let rt = Runtime::new();
    rt.block_on(async {
        let task = oneloop::spawn(async {
            let _bomb = PanicOnDrop;
            sleep(FOREVER).await;
        });
        yield_now().await;
        task.abort();
        assert_eq!(task.await, Err(JoinError::Panicked("drop exploded".into())));
    });
}

#[test]
fn a_panic_nobody_retrieves_is_reported_with_the_task_s_name_and_site() {
    let (rt, reports) = quiet_runtime();
    let line = line!() + 4; // the line of `.spawn(`, where the location points
    rt.block_on(async {
        task::Builder::new()
            .name("fire-and-forget")
            .spawn(async { panic!("lost panic") })
            .detach();
        sleep(Duration::from_millis(5)).await;
    });
    let found = reports.with_code(Code::PanicNotRetrieved);
    assert_eq!(found.len(), 1, "{:?}", reports.all());
    let report = &found[0];
    let task = report.task.as_ref().expect("a task report");
    assert_eq!(task.name.as_deref(), Some("fire-and-forget"));
    assert_eq!(task.location.line(), line);
    assert!(task.location.file().ends_with("tasks.rs"));
    assert_eq!(report.message.as_deref(), Some("lost panic"));
    let line_text = report.to_string();
    assert!(
        line_text.starts_with("oneloop: OL003 task #"),
        "{line_text}"
    );
    assert!(
        line_text.contains("\"fire-and-forget\" spawned at"),
        "{line_text}"
    );
}

#[test]
fn dropping_the_handle_of_a_task_that_already_panicked_reports_it() {
    let (rt, reports) = quiet_runtime();
    rt.block_on(async {
        let task = oneloop::spawn(async { panic!("nobody looked") });
        while !task.is_finished() {
            yield_now().await;
        }
        assert!(
            reports.all().is_empty(),
            "not yet: the handle could still read it"
        );
        drop(task);
    });
    assert_eq!(reports.with_code(Code::PanicNotRetrieved).len(), 1);
}

#[test]
fn a_panic_that_was_awaited_is_not_reported() {
    let (rt, reports) = quiet_runtime();
    rt.block_on(async {
        let task = oneloop::spawn(async { panic!("seen") });
        assert!(task.await.unwrap_err().is_panic());
    });
    assert!(reports.all().is_empty());
}

#[test]
fn join_set_returns_results_in_completion_order() {
    let rt = Runtime::new();
    let order = rt.block_on(async {
        let mut set = JoinSet::new();
        let base = std::time::Instant::now();
        for (i, ms) in [30u64, 5, 15].into_iter().enumerate() {
            set.spawn(async move {
                oneloop::time::sleep_until(base + Duration::from_millis(ms)).await;
                i
            });
        }
        assert_eq!(set.len(), 3);
        let mut order = Vec::new();
        while let Some(result) = set.join_next().await {
            order.push(result.unwrap());
        }
        assert!(set.join_next().await.is_none());
        order
    });
    assert_eq!(order, [1, 2, 0]);
}

#[test]
fn dropping_a_join_set_aborts_what_is_left() {
    let rt = Runtime::new();
    let drops = DropCounter::new();
    rt.block_on(async {
        let mut set = JoinSet::new();
        for _ in 0..10 {
            let guard = drops.track();
            set.spawn(async move {
                let _guard = guard;
                sleep(FOREVER).await;
            });
        }
        yield_now().await;
        drop(set);
        assert_eq!(drops.dropped(), 10);
    });
}

#[test]
fn join_set_shutdown_cancels_and_empties_the_set() {
    let rt = Runtime::new();
    rt.block_on(async {
        let mut set = JoinSet::new();
        set.spawn(async { sleep(FOREVER).await });
        set.spawn(async {});
        set.shutdown().await;
        assert!(set.is_empty());
    });
}

#[test]
fn a_join_set_with_many_tasks_joins_them_all() {
    let rt = Runtime::new();
    let total = rt.block_on(async {
        let mut set = JoinSet::new();
        for i in 0..10_000u64 {
            set.spawn(async move {
                yield_now().await;
                i
            });
        }
        let mut total = 0;
        while let Some(result) = set.join_next().await {
            total += result.unwrap();
        }
        total
    });
    assert_eq!(total, (0..10_000u64).sum::<u64>());
}

#[test]
fn task_group_returns_values_in_spawn_order() {
    let rt = Runtime::new();
    let values = rt.block_on(async {
        let mut group: TaskGroup<u64, String> = TaskGroup::new();
        for ms in [20u64, 1, 10] {
            group.spawn(async move {
                sleep(Duration::from_millis(ms)).await;
                Ok(ms)
            });
        }
        group.join().await
    });
    assert_eq!(values, Ok(vec![20, 1, 10]));
}

#[test]
fn task_group_first_failure_cancels_the_siblings_and_is_returned() {
    let rt = Runtime::new();
    let drops = DropCounter::new();
    let result = rt.block_on(async {
        let mut group = TaskGroup::new();
        for _ in 0..3 {
            let guard = drops.track();
            group.spawn(async move {
                let _guard = guard;
                sleep(FOREVER).await;
                Ok(0)
            });
        }
        group.spawn(async {
            sleep(Duration::from_millis(2)).await;
            Err("broken")
        });
        group.join().await
    });
    assert_eq!(
        result,
        Err(GroupError::Failed {
            index: 3,
            error: "broken"
        })
    );
    assert_eq!(drops.dropped(), 3, "every sibling was cancelled");
}

#[test]
fn task_group_reports_a_panicking_child() {
    let rt = Runtime::new();
    let result = rt.block_on(async {
        let mut group: TaskGroup<(), ()> = TaskGroup::new();
        group.spawn(async { Ok(()) });
        group.spawn(async { panic!("child blew up") });
        group.join().await
    });
    assert_eq!(
        result,
        Err(GroupError::Panicked {
            index: 1,
            message: "child blew up".into()
        })
    );
}

#[test]
fn join_all_keeps_call_order_and_runs_concurrently() {
    let rt = Runtime::new();
    let outputs = rt.block_on(async {
        join_all([40u64, 10, 20, 30].map(|ms| async move {
            sleep(Duration::from_millis(ms)).await;
            ms
        }))
        .await
    });
    assert_eq!(outputs, [40, 10, 20, 30]);
    // Concurrent: all four timers were armed together and fired once each.
    assert_eq!(rt.metrics().timers_fired, 4);
}

#[test]
fn join_all_polls_only_the_children_that_woke() {
    let rt = Runtime::new();
    let polls = Rc::new(AtomicUsize::new(0));
    rt.block_on({
        let polls = polls.clone();
        async move {
            join_all((0..100u64).map(|i| {
                let polls = polls.clone();
                async move {
                    polls.fetch_add(1, Ordering::Relaxed);
                    sleep(Duration::from_millis(i % 10)).await;
                    polls.fetch_add(1, Ordering::Relaxed);
                }
            }))
            .await;
        }
    });
    // Each child: one poll to arm its timer, one when it fires (a zero-length sleep may
    // finish on its first poll). Polling every child on every wake would be ~100x more.
    assert!(
        polls.load(Ordering::Relaxed) <= 200,
        "{}",
        polls.load(Ordering::Relaxed)
    );
}

#[test]
fn try_join_all_stops_at_the_first_error_and_drops_the_rest() {
    let rt = Runtime::new();
    let drops = DropCounter::new();
    let result = rt.block_on(async {
        let futures = (0..5u64).map(|i| {
            let guard = drops.track();
            async move {
                let _guard = guard;
                if i == 2 {
                    return Err(format!("item {i} failed"));
                }
                sleep(FOREVER).await;
                Ok(i)
            }
        });
        try_join_all(futures).await
    });
    assert_eq!(result, Err("item 2 failed".to_string()));
    assert_eq!(drops.dropped(), 5);
}

#[test]
fn the_current_task_id_is_visible_inside_tasks() {
    let rt = Runtime::new();
    rt.block_on(async {
        assert_eq!(
            task::try_id().map(|id| id.as_u64()),
            Some(0),
            "block_on's future is #0"
        );
        let handle = oneloop::spawn(async { task::try_id() });
        let id = handle.id();
        assert_eq!(handle.await.unwrap(), Some(id));
    });
    assert_eq!(task::try_id(), None);
}

#[test]
fn dropping_the_runtime_cancels_pending_tasks_and_drops_their_futures() {
    let drops = DropCounter::new();
    let rt = Runtime::new();
    let mut handles = Vec::new();
    for _ in 0..5 {
        let guard = drops.track();
        handles.push(rt.spawn(async move {
            let _guard = guard;
            sleep(FOREVER).await;
        }));
    }
    rt.block_on(yield_now());
    drop(rt);
    assert_eq!(drops.dropped(), 5);
    let check = Runtime::new();
    for handle in handles {
        assert_eq!(check.block_on(handle), Err(JoinError::Cancelled));
    }
}
