//! Every primitive terminates: no poll loops without bound, no wait that nothing can end,
//! no gate that stays entered after a panic, no panic that escapes the loop's bookkeeping,
//! no thread that waits longer than it was asked to.
//!
//! Each test here failed before its fix: it spun forever inside one poll, hung, panicked
//! out of `block_on`, or held a runtime's drop for a whole watchdog interval.

mod util;

use std::io;
use std::panic::panic_any;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use oneloop::net::UdpSocket;
use oneloop::sync::mpsc;
use oneloop::time::timeout;
use oneloop::{JoinError, Runtime};
use oneloop_pool::{JobError, Overflow, ThreadPool};
use util::{hang_guard, wait_until};

#[test]
fn a_connected_udp_socket_that_got_an_icmp_error_waits_instead_of_spinning() {
    hang_guard(|| {
        let rt = Runtime::new();
        rt.block_on(async {
            // A port nobody listens on: bind one, note it, close it.
            let closed = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let target = closed.local_addr().unwrap();
            drop(closed);
            let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            socket.connect(target).await.unwrap();
            let refused = |e: &io::Error| e.kind() == io::ErrorKind::ConnectionRefused;
            for _ in 0..3 {
                // Each datagram to the closed port earns an ICMP "port unreachable",
                // which the kernel reports on the next operation (and in EPOLLERR): on
                // this receive, or (when it comes late) on the next send.
                if let Err(e) = socket.send(b"anyone?").await {
                    assert!(refused(&e), "unexpected send error: {e}");
                }
                let mut buf = [0u8; 16];
                match timeout(Duration::from_millis(50), socket.recv(&mut buf)).await {
                    Ok(Err(e)) => assert!(refused(&e), "unexpected receive error: {e}"),
                    Ok(Ok(n)) => panic!("nothing was sent to us, got {n} bytes"),
                    Err(_elapsed) => {}
                }
                // Now nothing is pending: a receive must wait, polled once or twice, not
                // spin (inside one poll, or by waking itself poll after poll).
                let polls = rt.metrics().polls;
                let waited = timeout(Duration::from_millis(20), socket.recv(&mut buf)).await;
                let spent = rt.metrics().polls - polls;
                assert!(
                    waited.is_err() || waited.as_ref().is_ok_and(|r| r.is_err()),
                    "nothing was sent to us: {waited:?}"
                );
                assert!(spent < 20, "the wait took {spent} polls: it spun");
            }
        });
    });
}

#[test]
fn recv_returns_none_once_the_receiver_closed_and_the_queue_is_drained() {
    hang_guard(|| {
        Runtime::new().block_on(async {
            let (tx, mut rx) = mpsc::channel::<u32>(4);
            tx.send(1).await.unwrap();
            rx.close();
            assert!(tx.send(2).await.is_err(), "nothing can be sent after close");
            assert_eq!(
                rx.recv().await,
                Some(1),
                "what was queued is still received"
            );
            assert_eq!(rx.recv().await, None, "then the channel is over, tx or not");
            assert_eq!(rx.try_recv(), Err(mpsc::TryRecvError::Disconnected));
            drop(tx);

            let (utx, mut urx) = mpsc::unbounded_channel::<u32>();
            urx.close();
            assert!(utx.send(1).is_err());
            assert_eq!(urx.recv().await, None);
        });
    });
}

#[test]
fn a_job_that_submits_to_its_own_full_pool_never_blocks_on_it() {
    hang_guard(|| {
        let pool = ThreadPool::builder()
            .workers(1)
            .queue_capacity(1)
            .overflow(Overflow::Wait)
            .build()
            .unwrap();
        let inner = pool.clone();
        let outer = pool.spawn(move || {
            // The first fills the queue; the second finds it full. Waiting for room here
            // would wait for this very worker.
            let a = inner.spawn(|| "a");
            let b = inner.spawn(|| "b");
            (a, b)
        });
        let (a, b) = outer.join().unwrap();
        assert_eq!((a.join(), b.join()), (Ok("a"), Ok("b")));
        // Many, from both workers of a pool at once: none blocks, every job runs once.
        let pool = ThreadPool::builder()
            .workers(2)
            .queue_capacity(1)
            .build()
            .unwrap();
        let ran = Arc::new(AtomicUsize::new(0));
        let parents: Vec<_> = (0..2)
            .map(|_| {
                let (inner, ran) = (pool.clone(), ran.clone());
                pool.spawn(move || {
                    (0..50)
                        .map(|_| {
                            let ran = ran.clone();
                            inner.spawn(move || ran.fetch_add(1, Ordering::SeqCst))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for parent in parents {
            for child in parent.join().unwrap() {
                child.join().unwrap();
            }
        }
        assert_eq!(ran.load(Ordering::SeqCst), 100);
    });
}

/// A panic payload whose destructor panics.
struct PoisonedPayload;

impl Drop for PoisonedPayload {
    fn drop(&mut self) {
        panic!("the panic payload's destructor panicked too");
    }
}

#[test]
fn a_spawn_handler_that_panics_inside_a_submission_never_wedges_shutdown() {
    hang_guard(|| {
        // 0: start threads; 1: fail (an orphaned worker slot); 2: panic.
        let mode = Arc::new(AtomicUsize::new(0));
        let handler = {
            let mode = mode.clone();
            move |worker: oneloop_pool::WorkerThread| match mode.load(Ordering::SeqCst) {
                0 => thread::Builder::new()
                    .name(worker.name())
                    .spawn(move || worker.run()),
                1 => Err(io::Error::other("no threads now")),
                _ => panic!("the spawn handler panicked"),
            }
        };
        let pool = ThreadPool::builder()
            .workers(2)
            .spawn_handler(handler)
            .build()
            .unwrap();
        // Kill a worker while its replacement cannot start: its slot is orphaned, and the
        // next submissions retry it, calling the handler inside the submission gate.
        mode.store(1, Ordering::SeqCst);
        let killer = pool.spawn(|| panic_any(PoisonedPayload));
        assert!(killer.join().is_err());
        wait_until(|| pool.stats().workers == 1);
        mode.store(2, Ordering::SeqCst);
        // The retry panics inside the gate; the submission still completes.
        assert_eq!(pool.spawn(|| 3).join(), Ok(3));
        assert!(!pool.is_broken());
        pool.shutdown(); // must not wait forever for a submission that left by panicking
        assert_eq!(pool.spawn(|| 4).join(), Err(JobError::Shutdown));
    });
}

#[test]
fn a_task_whose_panic_payload_panics_when_dropped_still_resolves_its_handle() {
    hang_guard(|| {
        for debug in [false, true] {
            let rt = Runtime::builder().debug(debug).build().unwrap();
            let result =
                rt.block_on(async { oneloop::spawn(async { panic_any(PoisonedPayload) }).await });
            assert!(
                matches!(result, Err(JoinError::Panicked(_))),
                "the handle resolves as panicked: {result:?}"
            );
            // The loop and debug mode are still consistent: tasks run and finish.
            let sum = rt.block_on(async {
                let a = oneloop::spawn(async { 1 });
                oneloop::task::yield_now().await;
                a.await.unwrap() + 1
            });
            assert_eq!(sum, 2);
            // A detached one, nobody awaiting: reported, not raised.
            rt.block_on(async {
                drop(oneloop::spawn(async { panic_any(PoisonedPayload) }));
                oneloop::task::yield_now().await;
                oneloop::task::yield_now().await;
            });
        }
    });
}

#[test]
fn dropping_a_debug_runtime_does_not_wait_for_the_watchdogs_next_look() {
    // With an hour's threshold the watchdog looks every 7.5 minutes: a stop notification
    // it misses (sent before it first waited) would hold each drop that long, past the
    // hang guard.
    hang_guard(|| {
        for _ in 0..20 {
            let rt = Runtime::builder()
                .debug(true)
                .slow_task_threshold(Duration::from_secs(3600))
                .build()
                .unwrap();
            drop(rt);
        }
    });
}

#[test]
fn a_spawn_handler_that_says_ok_but_never_runs_its_worker_cannot_wedge_shutdown() {
    hang_guard(|| {
        // The first worker starts; the second's handler reports success, but its thread
        // drops the `WorkerThread` without running it.
        let calls = Arc::new(AtomicUsize::new(0));
        let handler = {
            let calls = calls.clone();
            move |worker: oneloop_pool::WorkerThread| {
                if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                    thread::Builder::new()
                        .name(worker.name())
                        .spawn(move || worker.run())
                } else {
                    thread::Builder::new().spawn(move || drop(worker))
                }
            }
        };
        let pool = ThreadPool::builder()
            .workers(2)
            .spawn_handler(handler)
            .build()
            .unwrap();
        wait_until(|| pool.stats().workers == 1);
        let results: Vec<_> = (0..20).map(|i| pool.spawn(move || i)).collect();
        let sum: i32 = results.into_iter().map(|r| r.join().unwrap()).sum();
        assert_eq!(sum, (0..20).sum());
        pool.shutdown(); // must not wait for the worker that never ran
        assert!(!pool.is_broken());
    });
}
