//! Pool stress, sized for a 2-core machine: a million jobs from the loop, jobs that panic
//! and handles cancelled or dropped at random, shutdown racing submitters, pools created
//! and dropped, and a bounded queue keeping memory flat. Counters, not clocks.
//!
//! This file's jobs panic on purpose by the hundred thousand; a panic hook keeps their
//! messages (which start with "stress:") off stderr.

mod util;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Once};
use std::thread;

use oneloop::Runtime;
use oneloop::pool::{Executor, JobBuilder, JobError, JobObserver, Overflow, ThreadPool};
use util::{Lcg, hang_guard, threads_named, unique_prefix, wait_until};

fn quiet_stress_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let message = util::panic_text(info.payload());
            if !message.starts_with("stress:") {
                default(info);
            }
        }));
    });
}

#[test]
fn a_million_tiny_jobs_from_the_loop_all_resolve() {
    hang_guard(|| {
        let pool = ThreadPool::new(2).unwrap();
        let rt = Runtime::new();
        let total = rt.block_on(async {
            let mut total = 0u64;
            for batch in 0..100u64 {
                let jobs: Vec<_> = (0..10_000u64)
                    .map(|i| oneloop::run_in_executor(&pool, move || batch * 10_000 + i))
                    .collect();
                for job in jobs {
                    total += job.await.unwrap();
                }
            }
            total
        });
        assert_eq!(total, (0..1_000_000u64).sum::<u64>());
        let stats = pool.stats();
        assert_eq!(stats.completed, 1_000_000);
        assert_eq!((stats.queued, stats.running), (0, 0));
        // Results reach the loop through coalesced wakes, far fewer than one per job.
        let metrics = rt.metrics();
        assert!(metrics.eventfd_writes < 1_000_000, "{metrics:?}");
    });
}

#[test]
fn panics_cancellations_and_drops_at_random_lose_nothing() {
    quiet_stress_panics();
    hang_guard(|| {
        const JOBS: usize = 1_000_000;
        let pool = ThreadPool::new(2).unwrap();
        let unseen = Arc::new(UnseenPanics::default());
        let ran: Arc<Vec<AtomicU8>> = Arc::new((0..JOBS).map(|_| AtomicU8::new(0)).collect());
        let mut rng = Lcg(2024);
        let mut kept = Vec::new();
        let mut cancelled = Vec::new();
        let mut dropped = Vec::new();
        for i in 0..JOBS {
            let ran = ran.clone();
            let (job, handle) = JobBuilder::new().observer(unseen.clone()).build(move || {
                ran[i].fetch_add(1, Ordering::SeqCst);
                if i % 10 == 0 {
                    panic!("stress: job {i} panics");
                }
                i
            });
            pool.execute(job).unwrap();
            // 30% of the handles: half cancelled, half dropped.
            if rng.next(10) >= 3 {
                kept.push((i, handle));
            } else if rng.next(2) == 0 {
                if handle.cancel() {
                    cancelled.push(i); // had not started: must never run
                } else {
                    dropped.push(i); // too late to cancel: the handle is dropped here
                }
            } else {
                drop(handle);
                dropped.push(i);
            }
        }
        for (i, handle) in kept {
            match handle.join() {
                Ok(value) => assert_eq!(value, i),
                Err(JobError::Panicked(message)) => {
                    assert_eq!(i % 10, 0);
                    assert_eq!(message, format!("stress: job {i} panics"));
                }
                Err(other) => panic!("job {i} resolved as {other:?}"),
            }
        }
        assert_eq!(pool.stats().workers, 2, "panics never cost a worker");
        pool.shutdown();
        for &i in &cancelled {
            assert_eq!(ran[i].load(Ordering::SeqCst), 0, "cancelled job {i} ran");
        }
        let runs: usize = ran
            .iter()
            .map(|r| usize::from(r.load(Ordering::SeqCst)))
            .sum();
        assert!(
            ran.iter().all(|r| r.load(Ordering::SeqCst) <= 1),
            "a job ran twice"
        );
        let stats = pool.stats();
        assert_eq!(stats.completed + stats.panicked, runs as u64);
        assert_eq!(
            stats.cancelled,
            (JOBS - runs) as u64,
            "every job ran or was cancelled"
        );
        assert!(stats.cancelled >= cancelled.len() as u64);
        assert!(stats.panicked > 0 && !dropped.is_empty());
        // Every panic whose handle was dropped before the job ran is reported, not lost.
        let unobserved = dropped
            .iter()
            .filter(|&&i| i % 10 == 0 && ran[i].load(Ordering::SeqCst) == 1)
            .count();
        assert_eq!(unseen.count.load(Ordering::SeqCst), unobserved);
    });
}

/// Counts panics nobody awaited (instead of printing them).
#[derive(Default)]
struct UnseenPanics {
    count: AtomicUsize,
}

impl JobObserver for UnseenPanics {
    fn unobserved_panic(&self, _: &oneloop::pool::JobInfo, _: &str) {
        self.count.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn shutdown_racing_four_submitting_threads_loses_nothing() {
    hang_guard(|| {
        for round in 0..20 {
            let pool = ThreadPool::new(2).unwrap();
            let ran = Arc::new(AtomicUsize::new(0));
            let submitters: Vec<_> = (0..4)
                .map(|_| {
                    let pool = pool.clone();
                    let ran = ran.clone();
                    thread::spawn(move || {
                        let mut handles = Vec::new();
                        for _ in 0..2_000 {
                            let ran = ran.clone();
                            handles.push(pool.spawn(move || {
                                ran.fetch_add(1, Ordering::SeqCst);
                            }));
                        }
                        handles
                    })
                })
                .collect();
            // Shut down part-way through (how far depends on the round).
            wait_until(|| pool.stats().completed >= round * 100);
            pool.shutdown();
            let mut ok = 0;
            for submitter in submitters {
                for handle in submitter.join().unwrap() {
                    match handle.join() {
                        Ok(()) => ok += 1,
                        Err(JobError::Shutdown) => {}
                        Err(other) => panic!("unexpected {other:?}"),
                    }
                }
            }
            assert_eq!(
                ok,
                ran.load(Ordering::SeqCst),
                "every accepted job ran, once"
            );
        }
    });
}

#[test]
fn submitting_from_inside_a_job_while_the_pool_shuts_down_loses_nothing() {
    hang_guard(|| {
        for _ in 0..50 {
            let pool = ThreadPool::new(2).unwrap();
            let inner = pool.clone();
            let parent =
                pool.spawn(move || (0..200).map(|i| inner.spawn(move || i)).collect::<Vec<_>>());
            pool.shutdown();
            let children = parent.join().unwrap();
            for (i, child) in children.into_iter().enumerate() {
                match child.join() {
                    Ok(value) => assert_eq!(value, i),
                    Err(error) => assert_eq!(error, JobError::Shutdown),
                }
            }
        }
    });
}

#[test]
fn pools_created_and_dropped_leave_no_thread_behind() {
    hang_guard(|| {
        let prefix = unique_prefix("churn");
        for _ in 0..50 {
            let pool = ThreadPool::builder()
                .workers(4)
                .thread_name(&prefix)
                .build()
                .unwrap();
            let jobs: Vec<_> = (0..20).map(|i| pool.spawn(move || i)).collect();
            drop(pool); // graceful: finishes the queue, joins the threads
            assert!(jobs.into_iter().all(|job| job.join().is_ok()));
        }
        // A joined thread can still be listed in /proc for an instant: the kernel wakes the
        // joiner (clearing the thread's tid) a little before it unlists the thread. A thread
        // left behind would stay listed, and the hang guard would say so.
        wait_until(|| threads_named(&prefix) == 0);
    });
}

/// A big item whose live instances are counted.
struct Item {
    bytes: Vec<u8>,
    live: Arc<AtomicUsize>,
}

impl Item {
    fn new(live: &Arc<AtomicUsize>, peak: &AtomicUsize) -> Item {
        let now = live.fetch_add(1, Ordering::SeqCst) + 1;
        peak.fetch_max(now, Ordering::SeqCst);
        Item {
            bytes: vec![7; 16 * 1024],
            live: live.clone(),
        }
    }
}

impl Drop for Item {
    fn drop(&mut self) {
        self.live.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Streams `items` through a bounded pool from a producer task that waits for room before
/// making the next item; returns the most items alive at once.
fn peak_items_alive(items: usize) -> usize {
    const CAPACITY: usize = 8;
    const WORKERS: usize = 2;
    let pool = ThreadPool::builder()
        .workers(WORKERS)
        .queue_capacity(CAPACITY)
        .overflow(Overflow::Wait)
        .build()
        .unwrap();
    let live = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let rt = Runtime::new();
    let sum = rt.block_on(async {
        let mut pending = VecDeque::new();
        let mut sum = 0u64;
        for _ in 0..items {
            let item = Item::new(&live, &peak);
            let mut job = oneloop::run_in_executor(&pool, move || {
                item.bytes.iter().map(|&b| u64::from(b)).sum::<u64>()
            });
            job.submitted().await; // backpressure: wait for a queue slot
            pending.push_back(job);
            while pending.front().is_some_and(|job| job.is_finished()) {
                sum += pending.pop_front().unwrap().await.unwrap();
            }
        }
        for job in pending {
            sum += job.await.unwrap();
        }
        sum
    });
    assert_eq!(sum, items as u64 * 7 * 16 * 1024);
    assert_eq!(live.load(Ordering::SeqCst), 0);
    let peak = peak.load(Ordering::SeqCst);
    // Queued (at most CAPACITY) + running (at most WORKERS) + the one being made.
    assert!(peak <= CAPACITY + WORKERS + 1, "peak {peak}");
    peak
}

#[test]
fn a_bounded_queue_keeps_memory_flat_as_the_input_grows_tenfold() {
    hang_guard(|| {
        let small = peak_items_alive(2_000);
        let large = peak_items_alive(20_000);
        assert!(
            large <= small.max(11),
            "memory grew with the input: {small} -> {large}"
        );
    });
}
