//! A `Waker` is user code: its `wake`, `clone` and `drop` may panic or call back into the
//! structure that stored it. The rule every oneloop structure follows
//! (`oneloop_pool::wake`): wakers are collected under the lock and woken after it, all of
//! them even if one panics; counts are decided under the lock, so they stay conserved; and
//! no waker code (wake, clone, drop) runs under a oneloop lock or `RefCell` borrow.
//! (Long because every structure that stores a waker is tried, one test each.)
//!
//! Each test here failed before that rule was implemented: a panicking waker stranded the
//! waiters behind it (semaphore, close, timers), killed a pool worker half-way through a
//! job, or a re-entrant waker deadlocked on a lock / hit a `RefCell` borrow.

mod util;

use std::cell::RefCell;
use std::future::{Future, poll_fn};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::{Pin, pin};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::thread;
use std::time::{Duration, Instant};

use oneloop::Runtime;
use oneloop::sync::{mpsc, oneshot};
use oneloop_pool::{Executor, JobBuilder, JobError, Overflow, Semaphore, ThreadPool};
use util::{Gate, Hooks, counting_waker, hang_guard, hook_waker, panicking_waker, wait_until};

/// Polls `future` once with `waker`.
fn poll_with<F: Future + Unpin>(future: &mut F, waker: &Waker) -> Poll<F::Output> {
    Pin::new(future).poll(&mut Context::from_waker(waker))
}

#[test]
fn add_permits_grants_every_waiter_it_fits_even_if_the_first_waker_panics() {
    let sem = Semaphore::new(0);
    let bad_wakes = Arc::new(AtomicUsize::new(0));
    let good_wakes = Arc::new(AtomicUsize::new(0));
    let bad = panicking_waker(bad_wakes.clone());
    let good = counting_waker(good_wakes.clone());
    let mut first = sem.acquire();
    let mut second = sem.acquire();
    let mut third = sem.acquire();
    assert!(poll_with(&mut first, &bad).is_pending());
    assert!(poll_with(&mut second, &good).is_pending());
    assert!(poll_with(&mut third, &good).is_pending());

    let raised = catch_unwind(AssertUnwindSafe(|| sem.add_permits(3)));
    assert!(
        raised.is_err(),
        "the waker's panic is re-raised to the caller"
    );
    assert_eq!(bad_wakes.load(Ordering::SeqCst), 1);
    assert_eq!(
        good_wakes.load(Ordering::SeqCst),
        2,
        "the waiters behind the panicking waker were woken too"
    );
    // All three were granted: no permit is left free while a waiter it fits is queued.
    assert_eq!(sem.available_permits(), 0);
    for acquire in [&mut first, &mut second, &mut third] {
        match poll_with(acquire, Waker::noop()) {
            Poll::Ready(Ok(permit)) => permit.forget(),
            other => panic!("a granted waiter must be ready, got {other:?}"),
        }
    }
}

#[test]
fn close_wakes_every_waiter_even_if_one_waker_panics() {
    let sem = Semaphore::new(0);
    let good_wakes = Arc::new(AtomicUsize::new(0));
    let bad = panicking_waker(Arc::default());
    let good = counting_waker(good_wakes.clone());
    let mut first = sem.acquire();
    let mut rest: Vec<_> = (0..3).map(|_| sem.acquire()).collect();
    assert!(poll_with(&mut first, &bad).is_pending());
    for acquire in &mut rest {
        assert!(poll_with(acquire, &good).is_pending());
    }
    assert!(catch_unwind(AssertUnwindSafe(|| sem.close())).is_err());
    assert_eq!(
        good_wakes.load(Ordering::SeqCst),
        3,
        "every waiter learns it is closed"
    );
    for acquire in &mut rest {
        assert!(matches!(
            poll_with(acquire, Waker::noop()),
            Poll::Ready(Err(_))
        ));
    }
}

#[test]
fn a_dropped_permit_hands_on_to_every_waiter_it_fits_across_a_panicking_waker() {
    // The bounded mpsc channel's capacity is a semaphore: a sender waiting for room with a
    // panicking waker must not strand the senders queued behind it.
    hang_guard(|| {
        Runtime::new().block_on(async {
            let (tx, mut rx) = mpsc::channel::<u32>(2);
            tx.send(0).await.unwrap();
            tx.send(1).await.unwrap();
            let bad_wakes = Arc::new(AtomicUsize::new(0));
            let bad = panicking_waker(bad_wakes.clone());
            let mut stuck = Box::pin(tx.send(2));
            assert!(poll_with(&mut stuck, &bad).is_pending());
            let behind = {
                let tx = tx.clone();
                oneloop::spawn(async move { tx.send(3).await })
            };
            oneloop::task::yield_now().await; // `behind` queues for room
            // Taking both values frees two slots: the first goes to the panicking waiter
            // (whose panic is contained: the receiver holds a value), the second to
            // `behind`.
            assert_eq!(rx.recv().await, Some(0));
            assert_eq!(rx.recv().await, Some(1));
            assert_eq!(bad_wakes.load(Ordering::SeqCst), 1);
            assert_eq!(behind.await.unwrap(), Ok(()));
            assert!(matches!(
                poll_with(&mut stuck, Waker::noop()),
                Poll::Ready(Ok(()))
            ));
            let mut got = vec![rx.recv().await.unwrap(), rx.recv().await.unwrap()];
            got.sort();
            assert_eq!(got, [2, 3]);
        });
    });
}

/// Builds `builder`'s pool with a spawn handler that counts the worker threads it starts:
/// a worker that died would be replaced, and counted again.
fn counted(builder: oneloop_pool::Builder) -> (ThreadPool, Arc<AtomicUsize>) {
    let started = Arc::new(AtomicUsize::new(0));
    let counter = started.clone();
    let pool = builder
        .spawn_handler(move |worker| {
            counter.fetch_add(1, Ordering::SeqCst);
            thread::Builder::new()
                .name(worker.name())
                .spawn(move || worker.run())
        })
        .build()
        .unwrap();
    (pool, started)
}

/// A pool with one worker held on `gate` and a queue of one slot, already taken by
/// `queued`; and the count of worker threads it has started.
fn full_pool(
    gate: &Gate,
) -> (
    ThreadPool,
    oneloop_pool::JobHandle<()>,
    oneloop_pool::JobHandle<&'static str>,
    Arc<AtomicUsize>,
) {
    let (pool, threads) = counted(
        ThreadPool::builder()
            .workers(1)
            .queue_capacity(1)
            .overflow(Overflow::Wait),
    );
    let started = Arc::new(AtomicUsize::new(0));
    let blocker = {
        let (gate, started) = (gate.clone(), started.clone());
        pool.spawn(move || {
            started.fetch_add(1, Ordering::SeqCst);
            gate.wait();
        })
    };
    wait_until(|| started.load(Ordering::SeqCst) == 1);
    let queued = pool.spawn(|| "queued job ran");
    (pool, blocker, queued, threads)
}

#[test]
fn a_panicking_waker_of_a_submitter_waiting_for_room_cannot_take_a_worker_down() {
    hang_guard(|| {
        let gate = Gate::new();
        let (pool, blocker, queued, threads) = full_pool(&gate);
        // A submitter waits for room with a waker that panics.
        let slots = pool.admission().unwrap().clone();
        let bad_wakes = Arc::new(AtomicUsize::new(0));
        let mut waiting = Box::pin(slots.clone().acquire_owned());
        assert!(poll_with(&mut waiting, &panicking_waker(bad_wakes.clone())).is_pending());
        // The worker finishes the blocker, takes `queued` off the queue (freeing its slot
        // for the waiting submitter, whose waker panics) and must still run it.
        gate.open();
        blocker.join().unwrap();
        assert_eq!(queued.join(), Ok("queued job ran"));
        assert_eq!(bad_wakes.load(Ordering::SeqCst), 1);
        assert_eq!(
            threads.load(Ordering::SeqCst),
            1,
            "the worker survived (no replacement)"
        );
        // The slot was granted to the waiting submitter; giving it up hands it on.
        drop(waiting);
        assert_eq!(pool.spawn(|| 7).join(), Ok(7));
        pool.shutdown();
    });
}

#[test]
fn shutdown_now_wakes_every_blocked_submitter_even_if_one_waker_panics() {
    hang_guard(|| {
        let gate = Gate::new();
        let (pool, blocker, queued, _threads) = full_pool(&gate);
        let slots = pool.admission().unwrap().clone();
        let mut waiting = Box::pin(slots.clone().acquire_owned());
        assert!(poll_with(&mut waiting, &panicking_waker(Arc::default())).is_pending());
        // A thread blocks in `spawn`, behind the panicking waiter.
        let spawner = {
            let pool = pool.clone();
            thread::spawn(move || pool.spawn(|| "ran").join())
        };
        wait_until(|| {
            // The spawner is queued once the semaphore's debug shows two waiters.
            format!("{slots:?}").contains("waiters: 2")
        });
        let stopper = {
            let pool = pool.clone();
            thread::spawn(move || pool.shutdown_now())
        };
        // The worker is held, so only shutdown_now's drain can resolve the queued job: once
        // it has, let the worker finish (shutdown_now waits for it).
        wait_until(|| queued.is_finished());
        gate.open();
        stopper.join().expect("shutdown_now must not panic");
        assert_eq!(blocker.join(), Ok(()));
        assert_eq!(queued.join(), Err(JobError::Cancelled));
        assert_eq!(spawner.join().unwrap(), Err(JobError::Shutdown));
        drop(waiting);
    });
}

#[test]
fn every_due_timer_is_woken_even_if_one_waker_panics() {
    hang_guard(|| {
        let rt = Runtime::new();
        let deadline = Instant::now() + Duration::from_millis(500);
        let first = rt.block_on(async {
            // Armed first, so it is first in the batch that fires.
            let mut bad = Box::pin(oneloop::time::sleep_until(deadline));
            assert!(poll_with(&mut bad, &panicking_waker(Arc::default())).is_pending());
            let others: Vec<_> = (0..3)
                .map(|i| {
                    oneloop::spawn(async move {
                        oneloop::time::sleep_until(deadline).await;
                        i
                    })
                })
                .collect();
            // Let the three arm their timers, behind the panicking one.
            while rt.metrics().timers < 4 {
                oneloop::task::yield_now().await;
            }
            (bad, others)
        });
        assert!(
            Instant::now() < deadline,
            "the machine was too slow to arm the batch before it was due; nothing was tested"
        );
        let (bad, others) = first;
        // The batch fires: the panicking waker's panic comes out of `block_on`, after the
        // whole batch was woken.
        let raised = catch_unwind(AssertUnwindSafe(|| {
            rt.block_on(oneloop::time::sleep(Duration::from_secs(3600)))
        }));
        assert!(raised.is_err(), "the waker's panic leaves block_on");
        let results = rt.block_on(async {
            let mut results = Vec::new();
            for task in others {
                results.push(task.await.unwrap());
            }
            results
        });
        assert_eq!(results, [0, 1, 2], "the other timers of the batch fired");
        drop(bad);
    });
}

#[test]
fn a_panicking_job_handle_waker_is_contained_on_the_worker() {
    hang_guard(|| {
        let (pool, threads) = counted(ThreadPool::builder().workers(1));
        let gate = Gate::new();
        let mut handle = {
            let gate = gate.clone();
            pool.spawn(move || gate.wait())
        };
        assert!(poll_with(&mut handle, &panicking_waker(Arc::default())).is_pending());
        gate.open();
        wait_until(|| handle.is_finished());
        assert_eq!(pool.spawn(|| 1).join(), Ok(1));
        assert_eq!(
            threads.load(Ordering::SeqCst),
            1,
            "the worker survived (no replacement)"
        );
        assert!(matches!(
            poll_with(&mut handle, Waker::noop()),
            Poll::Ready(Ok(()))
        ));
    });
}

// ---------------------------------------------------------------------------------------
// Waker code never runs under a oneloop lock or borrow: wakers that call back in.
// ---------------------------------------------------------------------------------------

/// A waker whose `clone` and `drop` run `hook` (and whose wake wakes `inner`).
fn reentrant_waker(hook: impl Fn() + Send + Sync + Clone + 'static, inner: Waker) -> Waker {
    hook_waker(Hooks {
        clone: Some(Box::new(hook.clone())),
        drop: Some(Box::new(hook)),
        inner: Some(inner),
        ..Hooks::default()
    })
}

/// Runs `f` on another thread and waits for it: takes any lock `f` needs from outside,
/// so a lock held by this thread deadlocks (and the hang guard reports it).
fn on_another_thread(f: impl FnOnce() + Send + 'static) {
    thread::spawn(f).join().unwrap();
}

#[test]
fn a_semaphore_waiter_whose_waker_reenters_the_semaphore_does_not_deadlock() {
    hang_guard(|| {
        let sem = Arc::new(Semaphore::new(0));
        let hook = {
            let sem = sem.clone();
            move || {
                let sem = sem.clone();
                on_another_thread(move || {
                    let _ = sem.available_permits();
                });
            }
        };
        let waker = reentrant_waker(hook, Waker::noop().clone());
        let mut acquire = Box::pin(sem.clone().acquire_owned());
        assert!(poll_with(&mut acquire, &waker).is_pending());
        let other = reentrant_waker(|| {}, Waker::noop().clone());
        assert!(poll_with(&mut acquire, &other).is_pending()); // replaces (drops) it
        sem.add_permits(1);
        assert!(matches!(
            poll_with(&mut acquire, &waker),
            Poll::Ready(Ok(_))
        ));
    });
}

#[test]
fn a_job_handle_whose_waker_reenters_the_job_does_not_deadlock() {
    hang_guard(|| {
        let (job, mut handle) = JobBuilder::new().build(|| 5);
        let job = Arc::new(Mutex::new(Some(job)));
        // Cloning the waker resolves the job from another thread: that takes the job's
        // lock, which must not be held while the waker is cloned.
        let hook = {
            let job = job.clone();
            move || {
                if let Some(job) = job.lock().unwrap().take() {
                    on_another_thread(move || job.resolve(JobError::Cancelled));
                }
            }
        };
        let waker = reentrant_waker(hook, Waker::noop().clone());
        let polled = poll_with(&mut handle, &waker);
        let result = match polled {
            Poll::Ready(result) => result,
            Poll::Pending => handle.join(),
        };
        assert_eq!(result, Err(JobError::Cancelled));
    });
}

#[test]
fn a_oneshot_receiver_whose_waker_reenters_the_channel_does_not_deadlock() {
    hang_guard(|| {
        Runtime::new().block_on(async {
            let (tx, mut rx) = oneshot::channel::<u32>();
            let tx = Arc::new(Mutex::new(Some(tx)));
            let real = poll_fn(|cx| Poll::Ready(cx.waker().clone())).await;
            let hook = {
                let tx = tx.clone();
                move || {
                    if let Some(tx) = tx.lock().unwrap().take() {
                        on_another_thread(move || tx.send(9).unwrap());
                    }
                }
            };
            let waker = reentrant_waker(hook, real);
            let first = poll_with(&mut rx, &waker);
            let value = match first {
                Poll::Ready(value) => value,
                Poll::Pending => rx.await,
            };
            assert_eq!(value, Ok(9));
        });
    });
}

#[test]
fn an_mpsc_receiver_whose_waker_reenters_the_channel_does_not_deadlock() {
    hang_guard(|| {
        Runtime::new().block_on(async {
            let (tx, mut rx) = mpsc::unbounded_channel::<u32>();
            let real = poll_fn(|cx| Poll::Ready(cx.waker().clone())).await;
            let sends = Arc::new(AtomicUsize::new(0));
            let hook = {
                let (tx, sends) = (tx.clone(), sends.clone());
                move || {
                    let (tx, n) = (tx.clone(), sends.fetch_add(1, Ordering::SeqCst));
                    on_another_thread(move || tx.send(n as u32).unwrap());
                }
            };
            drop(tx);
            let waker = reentrant_waker(hook, real);
            let mut recv = Box::pin(poll_fn(|cx| rx.poll_recv(cx)));
            let first = {
                let mut cx = Context::from_waker(&waker);
                recv.as_mut().poll(&mut cx)
            };
            drop(waker);
            let value = match first {
                Poll::Ready(value) => value,
                Poll::Pending => recv.await,
            };
            assert!(value.is_some());
        });
    });
}

thread_local! {
    /// The runtime a re-entrant waker looks into (`Runtime::metrics` borrows the task
    /// table, the timer queue and the reactor's slots).
    static RUNTIME: RefCell<Option<Rc<Runtime>>> = const { RefCell::new(None) };
}

fn look_into_the_runtime() {
    RUNTIME.with(|rt| {
        if let Some(rt) = &*rt.borrow() {
            let _ = rt.metrics();
        }
    });
}

/// A waker for the current task that looks into the runtime whenever it is cloned or
/// dropped (on the loop thread; on another thread it does nothing).
async fn runtime_reentrant_waker() -> Waker {
    let real = poll_fn(|cx| Poll::Ready(cx.waker().clone())).await;
    let loop_thread = thread::current().id();
    let hook = move || {
        if thread::current().id() == loop_thread {
            look_into_the_runtime();
        }
    };
    reentrant_waker(hook, real)
}

#[test]
fn wakers_that_look_into_the_runtime_are_never_cloned_or_dropped_under_its_borrows() {
    hang_guard(|| {
        let rt = Rc::new(Runtime::new());
        RUNTIME.with(|slot| *slot.borrow_mut() = Some(rt.clone()));
        rt.block_on(async {
            // The timer queue.
            let waker = runtime_reentrant_waker().await;
            let mut sleep = pin!(oneloop::time::sleep(Duration::from_millis(5)));
            let mut cx = Context::from_waker(&waker);
            assert!(sleep.as_mut().poll(&mut cx).is_pending());
            assert!(
                sleep
                    .as_mut()
                    .poll(&mut Context::from_waker(Waker::noop()))
                    .is_pending()
            );
            assert!(sleep.as_mut().poll(&mut cx).is_pending());
            sleep.await;

            // The task table (a JoinHandle's waiter).
            let task = oneloop::spawn(async { oneloop::task::yield_now().await });
            let mut task = pin!(task);
            assert!(task.as_mut().poll(&mut cx).is_pending());
            assert!(
                task.as_mut()
                    .poll(&mut Context::from_waker(Waker::noop()))
                    .is_pending()
            );
            task.await.unwrap();

            // The reactor's slots (a socket's reader).
            let socket = oneloop::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let mut buf = [0u8; 8];
            {
                let mut recv = pin!(socket.recv_from(&mut buf));
                assert!(recv.as_mut().poll(&mut cx).is_pending());
            }
            drop(waker);
        });
        RUNTIME.with(|slot| slot.borrow_mut().take());
    });
}
