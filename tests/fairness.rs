//! Cooperative scheduling: a task whose operations never have to wait (a client that
//! pipelines requests, a channel that is never empty, joins of finished tasks) still lets every
//! other task run, because each poll has a budget of operations (`task/coop.rs`); and
//! `unconstrained` lifts it. Each test would hang without the budget: it runs under the
//! hang guard.

mod util;

use std::io::{Read, Write};
use std::net::Shutdown;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use oneloop::Runtime;
use oneloop::net::{TcpListener, TcpStream};
use util::hang_guard;

/// The echo server of the test: each connection's task echoes 64-byte messages for as
/// long as they come, never waiting while its socket has data and room.
async fn echo(mut conn: TcpStream) {
    let mut message = [0u8; 64];
    while conn.read_exact(&mut message).await.is_ok() {
        if conn.write_all(&message).await.is_err() {
            return;
        }
    }
}

#[test]
fn a_pipelining_client_does_not_starve_another_connection() {
    hang_guard(|| {
        Runtime::new().block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            oneloop::spawn(async move {
                loop {
                    let (conn, _) = listener.accept().await.unwrap();
                    oneloop::spawn(echo(conn)).detach();
                }
            })
            .detach();
            // The pipelining client: two threads of its own, one writing requests without
            // pause, one reading the answers without pause. The server's task for it always
            // finds a request to read and room to write.
            let stop = Arc::new(AtomicBool::new(false));
            let flood = std::net::TcpStream::connect(addr).unwrap();
            let writer = {
                let (mut flood, stop) = (flood.try_clone().unwrap(), stop.clone());
                std::thread::spawn(move || {
                    let requests = vec![7u8; 64 * 1024];
                    while !stop.load(Ordering::Relaxed) && flood.write_all(&requests).is_ok() {}
                })
            };
            let reader = {
                let (mut flood, stop) = (flood.try_clone().unwrap(), stop.clone());
                std::thread::spawn(move || {
                    let mut answers = vec![0u8; 64 * 1024];
                    while !stop.load(Ordering::Relaxed)
                        && flood.read(&mut answers).is_ok_and(|n| n > 0)
                    {}
                })
            };
            // Let the flood get going, then ask once on another connection: it is answered.
            oneloop::time::sleep(Duration::from_millis(50)).await;
            let mut other = TcpStream::connect(addr).await.unwrap();
            for round in 0..10u8 {
                other.write_all(&[round; 64]).await.unwrap();
                let mut back = [0u8; 64];
                other.read_exact(&mut back).await.unwrap();
                assert_eq!(back, [round; 64]);
            }
            stop.store(true, Ordering::Relaxed);
            let _ = flood.shutdown(Shutdown::Both);
            writer.join().unwrap();
            reader.join().unwrap();
        });
    });
}

#[test]
fn a_receiver_that_always_finds_a_value_lets_the_other_tasks_run() {
    hang_guard(|| {
        Runtime::new().block_on(async {
            let (tx, mut rx) = oneloop::sync::mpsc::unbounded_channel::<u64>();
            tx.send(0).unwrap();
            // Each value it takes, it sends back: its channel is never empty.
            oneloop::spawn(async move {
                while let Some(value) = rx.recv().await {
                    tx.send(value + 1).unwrap();
                }
            })
            .detach();
            // The main task, and a timer, still run.
            oneloop::time::sleep(Duration::from_millis(10)).await;
            let other = oneloop::spawn(async { 42 });
            assert_eq!(other.await.unwrap(), 42);
        });
    });
}

#[test]
fn an_unconstrained_future_runs_its_operations_without_yielding() {
    hang_guard(|| {
        Runtime::new().block_on(async {
            let (tx, mut rx) = oneloop::sync::mpsc::unbounded_channel();
            let n = 10 * oneloop::task::BUDGET as u64;
            for i in 0..n {
                tx.send(i).unwrap();
            }
            let ran_between = Arc::new(AtomicBool::new(false));
            let flag = ran_between.clone();
            oneloop::spawn(async move { flag.store(true, Ordering::Relaxed) }).detach();
            // The spawned task is queued: with a budget, draining would let it run; without,
            // the whole drain is one poll.
            let sum = oneloop::task::unconstrained(async move {
                let mut sum = 0;
                for _ in 0..n {
                    sum += rx.recv().await.unwrap();
                }
                sum
            })
            .await;
            assert_eq!(sum, n * (n - 1) / 2);
            assert!(
                !ran_between.load(Ordering::Relaxed),
                "nothing ran in between"
            );
            // With the budget, the same drain lets it run.
            let (tx, mut rx) = oneloop::sync::mpsc::unbounded_channel();
            for i in 0..n {
                tx.send(i).unwrap();
            }
            let ran_between = Arc::new(AtomicBool::new(false));
            let flag = ran_between.clone();
            oneloop::spawn(async move { flag.store(true, Ordering::Relaxed) }).detach();
            for _ in 0..n {
                rx.recv().await.unwrap();
            }
            assert!(ran_between.load(Ordering::Relaxed), "the budget let it run");
        });
    });
}

#[test]
fn joining_more_finished_tasks_than_the_budget_in_one_go_completes() {
    // A child yielding for the budget wakes itself: a set or group that polled it again
    // at once would spin for ever. They yield instead once the budget is spent.
    hang_guard(|| {
        Runtime::new().block_on(async {
            let n = 4 * oneloop::task::BUDGET as usize;
            let mut set = oneloop::task::JoinSet::new();
            for i in 0..n {
                set.spawn(async move { i });
            }
            oneloop::time::sleep(Duration::from_millis(5)).await; // all finished
            let mut joined = 0;
            while let Some(result) = set.join_next().await {
                result.unwrap();
                joined += 1;
            }
            assert_eq!(joined, n);
            let handles: Vec<_> = (0..n).map(|i| oneloop::spawn(async move { i })).collect();
            oneloop::time::sleep(Duration::from_millis(5)).await;
            let all = oneloop::task::join_all(handles).await;
            assert_eq!(all.len(), n);
        });
    });
}
