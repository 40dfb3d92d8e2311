//! Adversarial tests of the promises in the crate docs ("What oneloop promises"): the task
//! matrix, starvation, and timer precision without spinning.
//! Each waiting test runs under a hang guard.

mod util;

use std::cell::Cell;
use std::future::Future;
use std::io::{self, Read, Write};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::thread::{self, ThreadId};
use std::time::{Duration, Instant};

use oneloop::task::{JoinError, yield_now};
use oneloop::time::sleep;
use oneloop::{JoinHandle, Runtime};
use util::{Reports, hang_guard};

// -------------------------------------------------------------------------------------
// The task matrix.
// -------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq)]
enum Ends {
    Finishes,
    PanicsOnPoll,
    PanicsInDrop,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum HandleFate {
    DroppedAtSpawn,
    DroppedAfterAPoll,
    DroppedAfterFinish,
    Awaited,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Abort {
    Never,
    BeforeFirstPoll,
    AfterFinish,
}

/// A future that yields once, then ends as `ends` says; it records its drops and the
/// thread they happen on.
struct Subject {
    ends: Ends,
    polls: u32,
    drops: Rc<Cell<u32>>,
    dropped_on: Rc<Cell<Option<ThreadId>>>,
}

impl Future for Subject {
    type Output = u32;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<u32> {
        self.polls += 1;
        if self.polls == 1 {
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        if self.ends == Ends::PanicsOnPoll {
            panic!("subject panics on poll");
        }
        Poll::Ready(7)
    }
}

impl Drop for Subject {
    fn drop(&mut self) {
        self.drops.set(self.drops.get() + 1);
        self.dropped_on.set(Some(thread::current().id()));
        if self.ends == Ends::PanicsInDrop {
            panic!("subject panics in drop");
        }
    }
}

/// Yields until `handle` says it finished.
async fn until_finished<T>(handle: &JoinHandle<T>) {
    while !handle.is_finished() {
        yield_now().await;
    }
}

fn one_case(ends: Ends, fate: HandleFate, abort: Abort) {
    let reports = Reports::default();
    let rt = Runtime::builder()
        .on_report(reports.sink())
        .build()
        .expect("runtime");
    let drops = Rc::new(Cell::new(0));
    let dropped_on = Rc::new(Cell::new(None));
    let case = format!("{ends:?} / handle {fate:?} / abort {abort:?}");
    let outcome: Option<Result<u32, JoinError>> = rt.block_on(async {
        let handle = oneloop::spawn(Subject {
            ends,
            polls: 0,
            drops: drops.clone(),
            dropped_on: dropped_on.clone(),
        });
        if abort == Abort::BeforeFirstPoll {
            handle.abort();
        }
        match fate {
            HandleFate::DroppedAtSpawn => {
                drop(handle);
                None
            }
            HandleFate::DroppedAfterAPoll => {
                yield_now().await; // the subject has been polled once (it is ahead of us)
                drop(handle);
                None
            }
            HandleFate::DroppedAfterFinish => {
                until_finished(&handle).await;
                if abort == Abort::AfterFinish {
                    handle.abort();
                }
                drop(handle);
                None
            }
            HandleFate::Awaited => {
                until_finished(&handle).await;
                if abort == Abort::AfterFinish {
                    handle.abort();
                }
                Some(handle.await)
            }
        }
    });
    drop(rt); // anything still pending is dropped here, on this (the loop's) thread
    assert_eq!(
        drops.get(),
        1,
        "{case}: the future must be dropped exactly once"
    );
    assert_eq!(
        dropped_on.get(),
        Some(thread::current().id()),
        "{case}: dropped on the loop thread"
    );
    let Some(outcome) = outcome else {
        return;
    };
    let expected_panic = ends != Ends::Finishes;
    match (abort, outcome) {
        // Aborted before it ran: cancelled, unless dropping it panicked.
        (Abort::BeforeFirstPoll, Err(JoinError::Cancelled)) => {
            assert_ne!(ends, Ends::PanicsInDrop, "{case}")
        }
        (Abort::BeforeFirstPoll, Err(JoinError::Panicked(message))) => {
            assert_eq!(ends, Ends::PanicsInDrop, "{case}");
            assert!(
                message.contains("subject panics in drop"),
                "{case}: {message}"
            );
        }
        // Ran to its end (an abort after finishing changes nothing).
        (_, Ok(7)) => assert!(!expected_panic, "{case}"),
        (_, Err(JoinError::Panicked(message))) => {
            assert!(expected_panic, "{case}: {message}");
            assert!(message.contains("subject panics"), "{case}: {message}");
        }
        (_, other) => panic!("{case}: unexpected {other:?}"),
    }
}

#[test]
fn every_task_ending_meets_every_handle_fate_and_abort() {
    hang_guard(|| {
        for ends in [Ends::Finishes, Ends::PanicsOnPoll, Ends::PanicsInDrop] {
            for fate in [
                HandleFate::DroppedAtSpawn,
                HandleFate::DroppedAfterAPoll,
                HandleFate::DroppedAfterFinish,
                HandleFate::Awaited,
            ] {
                for abort in [Abort::Never, Abort::BeforeFirstPoll, Abort::AfterFinish] {
                    // A handle dropped before the end cannot abort after it.
                    let impossible = abort == Abort::AfterFinish
                        && matches!(
                            fate,
                            HandleFate::DroppedAtSpawn | HandleFate::DroppedAfterAPoll
                        );
                    if !impossible {
                        one_case(ends, fate, abort);
                    }
                }
            }
        }
    });
}

// -------------------------------------------------------------------------------------
// Starvation.
// -------------------------------------------------------------------------------------

#[test]
fn a_busy_self_waking_task_starves_neither_a_socket_nor_a_timer() {
    hang_guard(|| {
        Runtime::new().block_on(async {
            let stop = Rc::new(Cell::new(false));
            let spins = Rc::new(Cell::new(0u64));
            let spinner = oneloop::spawn({
                let (stop, spins) = (stop.clone(), spins.clone());
                async move {
                    while !stop.get() {
                        spins.set(spins.get() + 1);
                        yield_now().await;
                    }
                }
            });
            // A socket task: echo 20 round trips with a plain thread as the peer.
            let listener = oneloop::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let addr = listener.local_addr().expect("addr");
            let peer = thread::spawn(move || -> io::Result<()> {
                let mut stream = std::net::TcpStream::connect(addr)?;
                let mut buf = [0u8; 4];
                for i in 0u32..20 {
                    stream.write_all(&i.to_le_bytes())?;
                    stream.read_exact(&mut buf)?;
                    assert_eq!(u32::from_le_bytes(buf), i);
                }
                Ok(())
            });
            let socket = oneloop::spawn(async move {
                let (mut conn, _) = listener.accept().await.expect("accept");
                let mut buf = [0u8; 4];
                for _ in 0..20 {
                    conn.read_exact(&mut buf).await.expect("read");
                    conn.write_all(&buf).await.expect("write");
                }
            });
            let timer = oneloop::spawn(async {
                for _ in 0..5 {
                    sleep(Duration::from_millis(5)).await;
                }
            });
            socket.await.expect("the socket task finished");
            timer.await.expect("the timer task finished");
            stop.set(true);
            spinner.await.expect("spinner");
            peer.join().expect("peer").expect("peer io");
            assert!(spins.get() > 20, "the spinner ran all along");
        });
    });
}

// -------------------------------------------------------------------------------------
// Timers: never early, in deadline order, and no spinning before a deadline.
// -------------------------------------------------------------------------------------

#[test]
fn a_hundred_thousand_timers_fire_in_order_never_early_and_the_loop_does_not_spin() {
    hang_guard(|| {
        let rt = Runtime::new();
        let fired = rt.block_on(async {
            let order = Rc::new(std::cell::RefCell::new(Vec::with_capacity(100_000)));
            // The deadlines start once every task has had time to arm its timer: `base`
            // is set after spawning, from how long spawning took (debug builds are slow).
            let base = Rc::new(Cell::new(None::<Instant>));
            let spawning = Instant::now();
            let mut x = 0x2545_F491_4F6C_DD1Du64;
            let handles: Vec<_> = (0..100_000u32)
                .map(|i| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    // 200 distinct deadlines over 200 ms: many ties, resolved in spawn order.
                    let offset = Duration::from_millis(x % 200);
                    let (order, base) = (order.clone(), base.clone());
                    oneloop::spawn(async move {
                        let deadline = base.get().expect("set before any task runs") + offset;
                        // A timer armed after its deadline fires at once: it is checked
                        // for earliness but left out of the order.
                        let in_time = Instant::now() < deadline;
                        oneloop::time::sleep_until(deadline).await;
                        let now = Instant::now();
                        assert!(now >= deadline, "timer {i} fired early");
                        if in_time {
                            order.borrow_mut().push((deadline, i));
                        }
                    })
                })
                .collect();
            base.set(Some(
                Instant::now() + Duration::from_millis(50) + spawning.elapsed() * 2,
            ));
            for handle in handles {
                handle.await.expect("timer task");
            }
            Rc::try_unwrap(order).expect("all done").into_inner()
        });
        assert!(
            fired.len() > 50_000,
            "most timers were armed before their deadline"
        );
        // Fired (and so resumed) in deadline order; ties in the order they were armed.
        assert!(
            fired.windows(2).all(|w| w[0] <= w[1]),
            "timers resumed out of deadline order"
        );
        // No spinning: 200 distinct deadlines over ~200 ms need a few hundred turns to
        // fire (plus the turns that run the 100,000 tasks in batches), not a busy loop's
        // hundreds of thousands.
        let ticks = rt.metrics().ticks;
        assert!(ticks < 20_000, "the loop turned {ticks} times: it spun");
    });
}

// -------------------------------------------------------------------------------------
// Jobs from jobs at shutdown.
// -------------------------------------------------------------------------------------

#[test]
fn jobs_submitted_from_jobs_are_never_stranded_on_a_worker_deque_at_shutdown() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use oneloop_pool::{JobError, ThreadPool};

    hang_guard(|| {
        for round in 0..20 {
            let pool = ThreadPool::new(2).expect("pool");
            let (parents_ran, children_ran) =
                (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
            let parents: Vec<_> = (0..50)
                .map(|_| {
                    let (inner, parents_ran, children_ran) =
                        (pool.clone(), parents_ran.clone(), children_ran.clone());
                    pool.spawn(move || {
                        parents_ran.fetch_add(1, Ordering::SeqCst);
                        // Children go on this worker's own deque; whoever runs them (this
                        // worker, or one that steals them), shutdown must wait for them.
                        (0..20)
                            .map(|_| {
                                let children_ran = children_ran.clone();
                                inner.spawn(move || {
                                    children_ran.fetch_add(1, Ordering::SeqCst);
                                })
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            // Shut down while parents are submitting children.
            util::wait_until(|| parents_ran.load(Ordering::SeqCst) > 5);
            pool.shutdown();
            let ran_by_shutdown = children_ran.load(Ordering::SeqCst);
            let (mut accepted, mut refused) = (0, 0);
            for parent in parents {
                for child in parent.join().expect("parents run: they were queued") {
                    match child.join() {
                        Ok(()) => accepted += 1,
                        Err(JobError::Shutdown) => refused += 1,
                        Err(other) => panic!("round {round}: {other:?}"),
                    }
                }
            }
            assert_eq!(
                accepted + refused,
                50 * 20,
                "round {round}: every child resolved"
            );
            assert!(
                accepted > 0,
                "round {round}: some children got in before shutdown"
            );
            assert_eq!(
                ran_by_shutdown, accepted,
                "round {round}: an accepted child was still queued when shutdown returned"
            );
        }
    });
}
