//! The pool's submission gate versus shutdown (`executor-pool/src/`: `Gate::enter` with its
//! `Inside` guard and `Gate::close` in `gate.rs`, `submit` in `pool.rs`, `shutdown` in
//! `shutdown.rs`, `may_exit` in `worker.rs`). A submitter enters the gate (one
//! `SUBMISSION` added to the count), pushes, and leaves when its guard drops, however the
//! submission ends; shutdown sets the `CLOSED` bit, waits for the count to drain, then
//! seals; a worker that sees the seal takes one last look at the queue and exits, so
//! nothing may be pushed after the seal.
//!
//! Simplified: one submitter makes two submissions, the first panicking inside the gate
//! before it pushes (in the pool that is a spawn handler, user code, called by
//! `retry_orphans` from `admit`), the second pushing one job; the worker is reduced to its
//! last look. Shutdown's wait (`yield_now` until the count drains) is bounded: once the
//! submitter has finished, a count still above `CLOSED` can never drain, and the model
//! fails there instead of spinning forever.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};

use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use loom::sync::{Arc, Mutex};
use loom::thread;

use super::{breaks, holds};

const CLOSED: usize = 1;
const SUBMISSION: usize = 2;

/// The code under test, or a negative control's change to it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Shape {
    /// The code as it is: the `Inside` guard leaves the gate after the push.
    Guard,
    /// The guard is dropped before the push.
    LeaveBeforePush,
    /// Enter and leave by hand: a panic between them skips the leave.
    ManualLeave,
}

struct Pool {
    gate: AtomicUsize,
    sealed: AtomicBool,
    queue: Mutex<VecDeque<u32>>,
    accepted: AtomicUsize,
    ran: AtomicUsize,
    /// The submitter's thread has finished (the model's, not the pool's).
    submitter_done: AtomicBool,
}

/// `Inside`: one submission inside the gate; leaves it when dropped.
struct Inside<'a>(&'a Pool);

impl Drop for Inside<'_> {
    fn drop(&mut self) {
        self.0.gate.fetch_sub(SUBMISSION, Ordering::AcqRel);
    }
}

impl Pool {
    /// `Gate::enter`: `None` once the pool is closed.
    fn enter(&self) -> Option<Inside<'_>> {
        let inside = Inside(self);
        let before = self.gate.fetch_add(SUBMISSION, Ordering::AcqRel);
        if before & CLOSED != 0 {
            return None; // `inside` drops here and backs out
        }
        Some(inside)
    }

    /// `pool::submit`; `panics` makes it panic inside the gate, before it pushes.
    fn submit(&self, shape: Shape, panics: bool) {
        if shape == Shape::ManualLeave {
            let before = self.gate.fetch_add(SUBMISSION, Ordering::AcqRel);
            if before & CLOSED == 0 {
                if panics {
                    panic!("a spawn handler panicked");
                }
                self.push();
            }
            self.gate.fetch_sub(SUBMISSION, Ordering::AcqRel);
            return;
        }
        let Some(inside) = self.enter() else {
            return; // refused: the caller gets its job back
        };
        if panics {
            panic!("a spawn handler panicked");
        }
        if shape == Shape::LeaveBeforePush {
            drop(inside);
        }
        self.push();
    }

    fn push(&self) {
        self.accepted.fetch_add(1, Ordering::SeqCst);
        self.queue.lock().unwrap().push_back(1);
    }

    /// `Gate::close`, called by `shutdown`: close, wait for the submissions inside, seal.
    fn shutdown(&self) {
        self.gate.fetch_or(CLOSED, Ordering::AcqRel);
        loop {
            let finished = self.submitter_done.load(Ordering::Acquire);
            if self.gate.load(Ordering::Acquire) == CLOSED {
                break;
            }
            assert!(
                !finished,
                "shutdown waits forever: a submission that ended is still counted in the gate"
            );
            thread::yield_now();
        }
        self.sealed.store(true, Ordering::Release);
    }

    /// A worker with nothing left to do, seeing the seal: its last look, then it exits.
    fn last_look(&self) {
        if self.sealed.load(Ordering::Acquire) {
            while self.queue.lock().unwrap().pop_front().is_some() {
                self.ran.fetch_add(1, Ordering::SeqCst);
            }
        }
    }
}

fn shutdown_model(shape: Shape) {
    let pool = Arc::new(Pool {
        gate: AtomicUsize::new(0),
        sealed: AtomicBool::new(false),
        queue: Mutex::new(VecDeque::new()),
        accepted: AtomicUsize::new(0),
        ran: AtomicUsize::new(0),
        submitter_done: AtomicBool::new(false),
    });
    let submitter = {
        let pool = pool.clone();
        thread::spawn(move || {
            // The first submission panics inside the gate; the caller carries on.
            let _ = catch_unwind(AssertUnwindSafe(|| pool.submit(shape, true)));
            pool.submit(shape, false);
            pool.submitter_done.store(true, Ordering::Release);
        })
    };
    pool.shutdown();
    pool.last_look(); // the worker exits after this: nothing may arrive later
    submitter.join().unwrap();
    assert_eq!(
        pool.ran.load(Ordering::SeqCst),
        pool.accepted.load(Ordering::SeqCst),
        "an accepted job was left behind by shutdown"
    );
}

#[test]
fn shutdown_runs_every_accepted_job() {
    holds(|| shutdown_model(Shape::Guard));
}

#[test]
fn negative_control_leaving_the_gate_before_pushing_loses_a_job() {
    breaks(|| shutdown_model(Shape::LeaveBeforePush));
}

#[test]
fn negative_control_a_panic_that_skips_a_manual_leave_hangs_shutdown() {
    breaks(|| shutdown_model(Shape::ManualLeave));
}
