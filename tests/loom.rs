//! Model checks of the cross-thread hand-offs, with loom: every interleaving of the
//! threads (up to `LOOM_MAX_PREEMPTIONS` preemptions) is run.
//!
//! Each model is the protocol of the production code, written with loom's primitives and
//! only the state the protocol touches; its file's `//!` names the code it mirrors and
//! says where it simplifies. Each has negative controls: the same model with one step
//! done the way the code once did it, or the way it is tempting to write it, which loom
//! must find a failing interleaving for. A control that passed would mean the model cannot
//! see the bug its protocol exists to prevent.
//!
//! Run (the CI step does this):
//! `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=3 cargo test -p oneloop-tests --test loom --release`
//!
//! # Layout
//!
//! - `remote_wake`: the event loop's remote wake queue and its coalesced eventfd write.
//! - `worker_sleep`: a pool worker going to sleep versus a submit.
//! - `job_slot`: a job's state machine: a worker's claim, the deadline, a shutdown drain,
//!   the handle's cancel, drop and detach, the queue-slot permit and the waker.
//! - `submission_gate`: the pool's submission gate (an RAII guard) versus shutdown, with a
//!   submission that panics inside it.
//! - `semaphore`: the fair semaphore: grants at the head, a waker that panics, close, and
//!   a waiter dropped as it is granted.
//! - `capture`: the debug watchdog's backtrace capture slot (generations, a late signal
//!   handler, a watchdog that gives up).
#![cfg(loom)]

use std::panic::{AssertUnwindSafe, catch_unwind};

#[path = "loom/capture.rs"]
mod capture;
#[path = "loom/job_slot.rs"]
mod job_slot;
#[path = "loom/remote_wake.rs"]
mod remote_wake;
#[path = "loom/semaphore.rs"]
mod semaphore;
#[path = "loom/submission_gate.rs"]
mod submission_gate;
#[path = "loom/worker_sleep.rs"]
mod worker_sleep;

/// Runs `model` under loom and expects it to hold.
fn holds(model: impl Fn() + Sync + Send + 'static) {
    loom::model(model);
}

/// Runs `model` under loom and expects loom to find an interleaving that breaks it.
fn breaks(model: impl Fn() + Sync + Send + 'static) {
    let found = catch_unwind(AssertUnwindSafe(|| loom::model(model))).is_err();
    assert!(
        found,
        "loom found no failing interleaving in the negative control"
    );
}
