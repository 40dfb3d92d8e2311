//! Synchronization: the fair Semaphore, oneshot and mpsc (including senders on worker
//! threads, whose wakes cross to the loop through the remote path).

mod util;

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use futures::poll;
use oneloop::Runtime;
use oneloop::sync::{Semaphore, TryAcquireError, mpsc, oneshot};
use oneloop::task::yield_now;
use oneloop::time::sleep;
use util::{assert_send, assert_sync, hang_guard};

#[test]
fn runtime_agnostic_sync_types_cross_threads() {
    assert_send::<Semaphore>();
    assert_sync::<Semaphore>();
    assert_send::<oneloop::sync::OwnedSemaphorePermit>();
    assert_send::<mpsc::Sender<u8>>();
    assert_sync::<mpsc::Sender<u8>>();
    assert_send::<mpsc::UnboundedSender<u8>>();
    assert_send::<oneshot::Sender<u8>>();
    assert_send::<oneloop::time::Sleep>();
    assert_send::<oneloop::Handle>();
    assert_sync::<oneloop::Handle>();
    assert_send::<oneloop::RemoteJoinHandle<u8>>();
}

#[test]
fn semaphore_grants_in_request_order_and_a_big_request_is_not_overtaken() {
    let rt = Runtime::new();
    let order = rt.block_on(async {
        let sem = Rc::new(Semaphore::new(0));
        let order = Rc::new(RefCell::new(Vec::new()));
        let tasks: Vec<_> = [(1, "a"), (3, "big"), (1, "c"), (1, "d")]
            .into_iter()
            .map(|(n, name)| {
                let sem = sem.clone();
                let order = order.clone();
                oneloop::spawn(async move {
                    let permit = sem.acquire_many(n).await.unwrap();
                    order.borrow_mut().push(name);
                    permit.forget(); // keep them, so grants stay visible in order
                })
            })
            .collect();
        yield_now().await; // all four queue, in spawn order
        for _ in 0..6 {
            sem.add_permits(1);
            yield_now().await;
        }
        for task in tasks {
            task.await.unwrap();
        }
        Rc::try_unwrap(order).unwrap().into_inner()
    });
    // With 1 permit at a time: a gets 1, big waits for 3 (c and d must not jump it).
    assert_eq!(order, ["a", "big", "c", "d"]);
}

#[test]
fn try_acquire_does_not_jump_the_queue() {
    let rt = Runtime::new();
    rt.block_on(async {
        let sem = Semaphore::new(1);
        let first = sem.acquire_many(2); // needs 2, only 1 free: waits
        let mut first = Box::pin(first);
        assert!(poll!(first.as_mut()).is_pending());
        assert_eq!(sem.available_permits(), 1);
        assert_eq!(sem.try_acquire().err(), Some(TryAcquireError::NoPermits));
        sem.add_permits(1);
        let permit = first.await.unwrap();
        assert_eq!(permit.num_permits(), 2);
        drop(permit);
        assert_eq!(sem.available_permits(), 2);
    });
}

#[test]
fn a_waiter_cancelled_right_after_being_granted_hands_its_permits_on() {
    let rt = Runtime::new();
    rt.block_on(async {
        let sem = Semaphore::new(0);
        let mut a = Box::pin(sem.acquire());
        let mut b = Box::pin(sem.acquire());
        assert!(poll!(a.as_mut()).is_pending());
        assert!(poll!(b.as_mut()).is_pending());
        sem.add_permits(1); // granted to `a`, which has not seen it yet
        drop(a); // ... and is cancelled: the permit must move on to `b`
        let permit = b.await.unwrap();
        drop(permit);
        assert_eq!(sem.available_permits(), 1, "no permit lost or duplicated");
    });
}

#[test]
fn a_cancelled_head_waiter_lets_the_next_one_through() {
    let rt = Runtime::new();
    rt.block_on(async {
        let sem = Semaphore::new(1);
        let mut big = Box::pin(sem.acquire_many(5));
        let mut small = Box::pin(sem.acquire());
        assert!(poll!(big.as_mut()).is_pending());
        assert!(poll!(small.as_mut()).is_pending(), "queued behind big");
        drop(big);
        assert!(
            poll!(small.as_mut()).is_ready(),
            "big left the head: small fits now"
        );
    });
}

#[test]
fn closing_a_semaphore_fails_waiters_and_later_acquires() {
    let rt = Runtime::new();
    rt.block_on(async {
        let sem = Rc::new(Semaphore::new(0));
        let waiter = oneloop::spawn({
            let sem = sem.clone();
            async move { sem.acquire().await.map(|p| p.forget()) }
        });
        yield_now().await;
        sem.close();
        assert!(waiter.await.unwrap().is_err());
        assert!(sem.acquire().await.is_err());
        assert_eq!(sem.try_acquire().err(), Some(TryAcquireError::Closed));
        assert!(sem.is_closed());
    });
}

#[test]
fn owned_permits_bound_work_spread_over_tasks() {
    let rt = Runtime::new();
    let peak = rt.block_on(async {
        let sem = Arc::new(Semaphore::new(3));
        let running = Rc::new(RefCell::new((0usize, 0usize))); // (now, peak)
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let permit = sem.clone().acquire_owned().await.unwrap();
            let running = running.clone();
            tasks.push(oneloop::spawn(async move {
                {
                    let mut r = running.borrow_mut();
                    r.0 += 1;
                    r.1 = r.1.max(r.0);
                }
                sleep(Duration::from_millis(1)).await;
                running.borrow_mut().0 -= 1;
                drop(permit);
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(sem.available_permits(), 3);
        running.borrow().1
    });
    assert_eq!(peak, 3, "never more than 3 at once, and the limit was used");
}

#[test]
#[should_panic(expected = "MAX_PERMITS")]
fn adding_permits_beyond_the_maximum_is_refused() {
    Semaphore::new(Semaphore::MAX_PERMITS).add_permits(1);
}

#[test]
fn oneshot_delivers_from_a_worker_thread() {
    hang_guard(|| {
        let rt = Runtime::new();
        let got = rt.block_on(async {
            let (tx, rx) = oneshot::channel();
            thread::spawn(move || {
                thread::sleep(Duration::from_millis(5));
                tx.send(String::from("from a thread")).unwrap();
            });
            rx.await
        });
        assert_eq!(got.as_deref(), Ok("from a thread"));
    });
}

#[test]
fn oneshot_reports_a_dropped_sender_and_hands_back_to_a_gone_receiver() {
    let rt = Runtime::new();
    rt.block_on(async {
        let (tx, rx) = oneshot::channel::<u8>();
        drop(tx);
        assert!(rx.await.is_err());

        let (tx, rx) = oneshot::channel();
        drop(rx);
        assert!(tx.is_closed());
        assert_eq!(tx.send(5), Err(5));

        let (mut tx, rx) = oneshot::channel::<u8>();
        let watcher = oneloop::spawn(async move {
            tx.closed().await;
            "receiver went away"
        });
        yield_now().await;
        drop(rx);
        assert_eq!(watcher.await.unwrap(), "receiver went away");
    });
}

#[test]
fn oneshot_try_recv_says_empty_then_delivers() {
    let (tx, mut rx) = oneshot::channel();
    assert_eq!(rx.try_recv(), Err(oneshot::TryRecvError::Empty));
    tx.send(3).unwrap();
    assert_eq!(rx.try_recv(), Ok(3));
    assert_eq!(rx.try_recv(), Err(oneshot::TryRecvError::Closed));
}

#[test]
fn bounded_mpsc_holds_at_most_its_capacity_and_keeps_order() {
    let rt = Runtime::new();
    rt.block_on(async {
        let (tx, mut rx) = mpsc::channel(2);
        tx.try_send(1).unwrap();
        tx.try_send(2).unwrap();
        assert!(matches!(tx.try_send(3), Err(mpsc::TrySendError::Full(3))));
        let mut third = Box::pin(tx.send(3));
        assert!(poll!(third.as_mut()).is_pending(), "full: send waits");
        assert_eq!(rx.recv().await, Some(1));
        assert!(poll!(third.as_mut()).is_ready(), "a slot freed up");
        drop(third);
        assert_eq!(rx.recv().await, Some(2));
        assert_eq!(rx.recv().await, Some(3));
        drop(tx);
        assert_eq!(
            rx.recv().await,
            None,
            "every sender gone and the queue empty"
        );
    });
}

#[test]
fn mpsc_senders_fail_with_their_value_once_the_receiver_is_gone() {
    let rt = Runtime::new();
    rt.block_on(async {
        let (tx, rx) = mpsc::channel(1);
        let mut waiting = Box::pin(tx.send("queued"));
        tx.try_send("first").unwrap();
        assert!(poll!(waiting.as_mut()).is_pending());
        drop(rx);
        assert_eq!(waiting.await.unwrap_err().0, "queued");
        assert!(tx.is_closed());
        let (utx, urx) = mpsc::unbounded_channel();
        drop(urx);
        assert_eq!(utx.send(9).unwrap_err().0, 9);
    });
}

#[test]
fn worker_threads_feed_a_task_through_mpsc() {
    hang_guard(|| {
        let rt = Runtime::new();
        let total = rt.block_on(async {
            let (tx, mut rx) = mpsc::channel(16);
            let workers: Vec<_> = (0..4u64)
                .map(|w| {
                    let tx = tx.clone();
                    thread::spawn(move || {
                        for i in 0..10_000u64 {
                            tx.blocking_send(w * 10_000 + i).unwrap();
                        }
                    })
                })
                .collect();
            drop(tx);
            let mut total = 0u64;
            let mut count = 0;
            while let Some(v) = rx.recv().await {
                total += v;
                count += 1;
            }
            for w in workers {
                w.join().unwrap();
            }
            assert_eq!(count, 40_000);
            total
        });
        assert_eq!(total, (0..40_000u64).sum::<u64>());
    });
}

#[test]
fn unbounded_mpsc_and_blocking_recv_on_a_plain_thread() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let consumer = thread::spawn(move || {
        let mut got = Vec::new();
        while let Some(v) = rx.blocking_recv() {
            got.push(v);
        }
        got
    });
    let rt = Runtime::new();
    rt.block_on(async move {
        for i in 0..100 {
            tx.send(i).unwrap();
            if i % 10 == 0 {
                yield_now().await;
            }
        }
    });
    assert_eq!(consumer.join().unwrap(), (0..100).collect::<Vec<_>>());
}
