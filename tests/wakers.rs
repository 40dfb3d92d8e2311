//! Wakers: de-duplication, stale wakers, and wakes from other threads (none lost, and
//! coalesced into few eventfd writes).

mod util;

use std::cell::{Cell, RefCell};
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::task::{Context, Poll, Waker};
use std::thread;
use std::time::Duration;

use oneloop::Runtime;
use oneloop::task::yield_now;
use oneloop::time::sleep;
use util::hang_guard;

/// Gives back the waker of the task that polls it, then completes.
fn grab_waker() -> impl Future<Output = Waker> {
    poll_fn(|cx| Poll::Ready(cx.waker().clone()))
}

#[test]
fn a_task_woken_many_times_before_it_runs_is_polled_once() {
    let rt = Runtime::new();
    let polls = Rc::new(Cell::new(0));
    rt.block_on({
        let polls = polls.clone();
        async move {
            let task = oneloop::spawn({
                let polls = polls.clone();
                poll_fn(move |cx| {
                    polls.set(polls.get() + 1);
                    if polls.get() == 1 {
                        for _ in 0..1000 {
                            cx.waker().wake_by_ref();
                        }
                        Poll::Pending
                    } else {
                        Poll::Ready(())
                    }
                })
            });
            task.await.unwrap();
        }
    });
    assert_eq!(polls.get(), 2, "1000 wakes queue the task once");
}

#[test]
fn a_stale_waker_for_a_reused_slot_wakes_nobody() {
    let rt = Runtime::new();
    rt.block_on(async {
        // Task A finishes and its handle is read, freeing its slot; we keep its waker.
        let stale = oneloop::spawn(grab_waker()).await.unwrap();
        // Task B takes the freed slot and waits on a timer.
        let polls = Rc::new(Cell::new(0));
        let b = oneloop::spawn({
            let polls = polls.clone();
            async move {
                let mut sleep = std::pin::pin!(sleep(Duration::from_secs(3600)));
                poll_fn(|cx| {
                    polls.set(polls.get() + 1);
                    sleep.as_mut().poll(cx)
                })
                .await
            }
        });
        yield_now().await;
        assert_eq!(polls.get(), 1);
        // Waking A's waker, here and from another thread, must not poll B.
        stale.wake_by_ref();
        let remote = stale.clone();
        thread::spawn(move || remote.wake()).join().unwrap();
        for _ in 0..10 {
            yield_now().await;
        }
        sleep(Duration::from_millis(5)).await;
        assert_eq!(polls.get(), 1, "the stale waker polled the slot's new task");
        b.abort();
    });
}

#[test]
fn a_waker_used_after_its_runtime_is_dropped_does_nothing() {
    let rt = Runtime::new();
    let waker = rt.block_on(rt.spawn(grab_waker())).unwrap();
    drop(rt);
    waker.wake_by_ref();
    thread::spawn(move || waker.wake()).join().unwrap();
}

#[test]
fn eight_threads_waking_a_thousand_tasks_a_hundred_thousand_times_each_lose_no_wake() {
    const THREADS: usize = 8;
    const TASKS: usize = 1_000;
    const WAKES: u64 = 100_000; // per thread, spread over its share of the tasks
    const SHARE: usize = TASKS / THREADS;
    const PER_TASK: u64 = WAKES / SHARE as u64;
    hang_guard(|| {
        let rt = Runtime::new();
        let progress: Arc<Vec<AtomicU64>> =
            Arc::new((0..TASKS).map(|_| AtomicU64::new(0)).collect());
        let wakers: Rc<RefCell<Vec<Option<Waker>>>> = Rc::new(RefCell::new(vec![None; TASKS]));
        let polls = Rc::new(Cell::new(0u64));
        rt.block_on(async {
            // Each task finishes only once it has seen the last of its wakes, so a lost
            // final wake would leave it (and this test) stuck: every wake is followed by
            // a poll that sees it.
            let tasks: Vec<_> = (0..TASKS)
                .map(|i| {
                    let progress = progress.clone();
                    let wakers = wakers.clone();
                    let polls = polls.clone();
                    oneloop::spawn(poll_fn(move |cx| {
                        polls.set(polls.get() + 1);
                        wakers.borrow_mut()[i] = Some(cx.waker().clone());
                        if progress[i].load(Ordering::Acquire) == PER_TASK {
                            Poll::Ready(())
                        } else {
                            Poll::Pending
                        }
                    }))
                })
                .collect();
            // Until every task has run once and published its waker.
            while wakers.borrow().iter().any(Option::is_none) {
                yield_now().await;
            }
            let start = Arc::new(Barrier::new(THREADS));
            let threads: Vec<_> = (0..THREADS)
                .map(|t| {
                    let mine: Vec<Waker> = (t * SHARE..(t + 1) * SHARE)
                        .map(|i| wakers.borrow()[i].clone().expect("task ran"))
                        .collect();
                    let progress = progress.clone();
                    let start = start.clone();
                    thread::spawn(move || {
                        start.wait();
                        for n in 0..WAKES as usize {
                            let k = n % SHARE;
                            progress[t * SHARE + k].fetch_add(1, Ordering::AcqRel);
                            mine[k].wake_by_ref();
                        }
                    })
                })
                .collect();
            for task in tasks {
                task.await.unwrap();
            }
            for thread in threads {
                thread.join().unwrap();
            }
        });
        let metrics = rt.metrics();
        let total = THREADS as u64 * WAKES;
        assert!(
            polls.get() <= total + TASKS as u64 * 2,
            "at most one poll per wake"
        );
        // Coalescing: one eventfd write per batch the loop drains, not one per wake.
        assert!(
            metrics.eventfd_writes * 10 <= total,
            "{} eventfd writes for {total} wakes",
            metrics.eventfd_writes
        );
        println!(
            "{total} wakes, {} polls, {} eventfd writes",
            polls.get(),
            metrics.eventfd_writes
        );
    });
}

#[test]
fn a_thousand_remote_wakes_while_the_loop_is_busy_cost_one_eventfd_write() {
    hang_guard(|| {
        let rt = Runtime::new();
        rt.block_on(async {
            // 1,000 tasks, each waiting on a flag that a worker thread sets and wakes.
            let flags: Arc<Vec<AtomicBool>> =
                Arc::new((0..1000).map(|_| AtomicBool::new(false)).collect());
            let wakers = Arc::new(Mutex::new(Vec::new()));
            let tasks: Vec<_> = (0..1000)
                .map(|i| {
                    let flags = flags.clone();
                    let wakers = wakers.clone();
                    oneloop::spawn(poll_fn(move |cx| {
                        if flags[i].load(Ordering::Acquire) {
                            return Poll::Ready(());
                        }
                        wakers.lock().unwrap().push((i, cx.waker().clone()));
                        Poll::Pending
                    }))
                })
                .collect();
            // Tasks run in batches: wait until all of them have parked with their waker.
            while wakers.lock().unwrap().len() < 1000 {
                yield_now().await;
            }
            // Hold the loop inside this poll while the worker wakes every task, so no
            // drain can happen in between: every wake after the first finds the loop
            // already notified.
            let before = rt.metrics();
            let worker = {
                let flags = flags.clone();
                let wakers = std::mem::take(&mut *wakers.lock().unwrap());
                thread::spawn(move || {
                    for (i, waker) in wakers {
                        flags[i].store(true, Ordering::Release);
                        waker.wake();
                    }
                })
            };
            worker.join().unwrap(); // blocks the loop on purpose
            for task in tasks {
                task.await.unwrap();
            }
            let after = rt.metrics();
            assert_eq!(after.remote_wakes - before.remote_wakes, 1000);
            assert_eq!(
                after.eventfd_writes - before.eventfd_writes,
                1,
                "1,000 wakes queued during one poll need one eventfd write"
            );
        });
    });
}

#[test]
fn a_waker_can_cross_to_another_thread_and_back() {
    hang_guard(|| {
        let rt = Runtime::new();
        let value = rt.block_on(async {
            let (tx, rx) = oneloop::sync::oneshot::channel();
            thread::spawn(move || {
                thread::sleep(Duration::from_millis(10));
                tx.send(7).unwrap();
            });
            rx.await.unwrap()
        });
        assert_eq!(value, 7);
        assert!(rt.metrics().eventfd_writes >= 1);
    });
}

/// A future whose waker is woken from inside its own poll, to check the loop re-polls it
/// later rather than inside the same poll.
struct WakesItselfOnce(bool);

impl Future for WakesItselfOnce {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            return Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

#[test]
fn a_wake_during_a_poll_requeues_the_task() {
    let rt = Runtime::new();
    rt.block_on(async {
        oneloop::spawn(WakesItselfOnce(false)).await.unwrap();
    });
}

/// Notes the thread it is dropped on.
struct DropsOn(Arc<Mutex<Vec<thread::ThreadId>>>);

impl Drop for DropsOn {
    fn drop(&mut self) {
        self.0.lock().unwrap().push(thread::current().id());
    }
}

#[test]
fn what_a_task_holds_is_dropped_on_the_loop_thread_while_other_threads_keep_its_waker() {
    // A task's waker and the task are one allocation: whichever thread drops the last
    // waker frees it, but the future and the output (which need not be `Send`) are
    // dropped on the loop thread, when the task finishes and when its output goes.
    hang_guard(|| {
        let drops = Arc::new(Mutex::new(Vec::new()));
        let loop_thread = thread::current().id();
        let (sender, receiver) = std::sync::mpsc::channel::<Waker>();
        let rt = Runtime::new();
        rt.block_on({
            let drops = drops.clone();
            async move {
                // A task whose future (`_held`) is dropped when it finishes, and whose
                // output is never read (it is detached).
                oneloop::spawn({
                    let (drops, sender) = (drops.clone(), sender.clone());
                    async move {
                        let _held = (DropsOn(drops.clone()), Rc::new(()));
                        sender.send(grab_waker().await).unwrap();
                        DropsOn(drops)
                    }
                })
                .detach();
                // A task left pending, cancelled when the runtime drops.
                oneloop::spawn({
                    let drops = drops.clone();
                    async move {
                        let _held = (DropsOn(drops), Rc::new(()));
                        sender.send(grab_waker().await).unwrap();
                        std::future::pending::<()>().await;
                    }
                })
                .detach();
                sleep(Duration::from_millis(10)).await;
            }
        });
        assert_eq!(
            drops.lock().unwrap().len(),
            2,
            "the finished task's future and output"
        );
        drop(rt);
        let dropped = drops.lock().unwrap().clone();
        assert_eq!(dropped, vec![loop_thread; 3]);
        let wakers: Vec<Waker> = receiver.try_iter().collect();
        assert_eq!(wakers.len(), 2);
        // The last references go on another thread, after the runtime: a wake is a no-op
        // and the drop frees an allocation with nothing of the task's left in it.
        thread::spawn(move || {
            for waker in wakers {
                waker.wake_by_ref();
                drop(waker);
            }
        })
        .join()
        .unwrap();
        assert_eq!(drops.lock().unwrap().len(), 3);
    });
}
