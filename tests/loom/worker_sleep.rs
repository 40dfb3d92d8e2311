//! A pool worker going to sleep versus a submit (`sleep` in
//! `executor-pool/src/worker.rs`, `push` in `executor-pool/src/pool.rs`): the worker
//! announces itself idle, then takes its last look; the submitter pushes, then checks for
//! idle workers. Simplified: one worker, one job, and the condvar wait is a flag (see
//! `Sleep::lock`).

use loom::sync::atomic::{AtomicUsize, Ordering, fence};
use loom::sync::{Arc, Mutex};
use loom::thread;

use super::{breaks, holds};

struct Sleep {
    jobs: AtomicUsize,
    idle: AtomicUsize,
    /// The pool's sleep lock, guarding whether the worker is asleep and whether it was
    /// signalled. (The condvar wait itself is the `asleep` flag: loom reports a wait
    /// nobody ends as a deadlock by aborting, which a negative control cannot observe.)
    lock: Mutex<(bool, bool)>,
}

fn sleep_model(announce_first: bool) {
    let pool = Arc::new(Sleep {
        jobs: AtomicUsize::new(0),
        idle: AtomicUsize::new(0),
        lock: Mutex::new((false, false)),
    });
    let worker = {
        let pool = pool.clone();
        thread::spawn(move || {
            if pool.jobs.load(Ordering::SeqCst) > 0 {
                return true; // found the job
            }
            // Park.
            let mut sleep = pool.lock.lock().unwrap();
            let has_work = if announce_first {
                pool.idle.fetch_add(1, Ordering::SeqCst);
                fence(Ordering::SeqCst);
                pool.jobs.load(Ordering::SeqCst) > 0
            } else {
                let has_work = pool.jobs.load(Ordering::SeqCst) > 0;
                pool.idle.fetch_add(1, Ordering::SeqCst);
                has_work
            };
            if has_work {
                pool.idle.fetch_sub(1, Ordering::SeqCst);
                return true;
            }
            sleep.0 = true; // waits on the condvar, releasing the lock
            false
        })
    };
    // Submit one job.
    pool.jobs.fetch_add(1, Ordering::SeqCst);
    fence(Ordering::SeqCst);
    if pool.idle.load(Ordering::SeqCst) > 0 {
        let mut sleep = pool.lock.lock().unwrap();
        if sleep.0 {
            sleep.1 = true; // notify_one
        }
    }
    let found = worker.join().unwrap();
    let (asleep, signalled) = *pool.lock.lock().unwrap();
    assert!(
        found || (asleep && signalled),
        "the worker sleeps with a job queued and nobody will wake it"
    );
}

#[test]
fn a_submit_always_reaches_a_parking_worker() {
    holds(|| sleep_model(true));
}

#[test]
fn negative_control_looking_before_announcing_strands_the_job() {
    breaks(|| sleep_model(false));
}
