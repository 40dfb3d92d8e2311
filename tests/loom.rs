//! Model checks of the five cross-thread hand-offs, with loom: every interleaving of the
//! threads (up to `LOOM_MAX_PREEMPTIONS` preemptions) is run.
//!
//! Each model is the protocol of the production code, written with loom's primitives and
//! only the state the protocol touches (a comment names the file it mirrors). Each has a
//! negative control: the same model with two steps in the other order, which loom must
//! find a failing interleaving for. A control that passed would mean the model cannot see
//! the bug its protocol exists to prevent.
//!
//! Run (the CI step does this):
//! `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=3 cargo test -p oneloop-tests --test loom --release`
#![cfg(loom)]

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};

use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering, fence};
use loom::sync::{Arc, Mutex};
use loom::thread;

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

// -------------------------------------------------------------------------------------
// 1. The remote wake queue and its coalesced `notified` flag (runtime/src/waker.rs,
//    `Remote::push`, `notify`, `drain`). The loop clears the flag, then drains.
// -------------------------------------------------------------------------------------

struct Remote {
    queue: Mutex<Vec<u32>>,
    notified: AtomicBool,
    /// The eventfd: writes not yet consumed by the loop's `epoll_wait`.
    eventfd: AtomicUsize,
}

impl Remote {
    fn push(&self, op: u32) {
        self.queue.lock().unwrap().push(op);
        if !self.notified.swap(true, Ordering::AcqRel) {
            self.eventfd.fetch_add(1, Ordering::Release);
        }
    }

    fn drain(&self, clear_first: bool) -> Vec<u32> {
        if clear_first {
            self.notified.store(false, Ordering::Release);
            std::mem::take(&mut *self.queue.lock().unwrap())
        } else {
            let ops = std::mem::take(&mut *self.queue.lock().unwrap());
            self.notified.store(false, Ordering::Release);
            ops
        }
    }
}

fn remote_wake_model(clear_first: bool) {
    let remote = Arc::new(Remote {
        queue: Mutex::new(Vec::new()),
        notified: AtomicBool::new(false),
        eventfd: AtomicUsize::new(0),
    });
    let waker = {
        let remote = remote.clone();
        thread::spawn(move || {
            remote.push(1);
            remote.push(2);
        })
    };
    // One turn of the loop: woken by the eventfd, it drains.
    if remote.eventfd.load(Ordering::Acquire) > 0 {
        remote.eventfd.fetch_sub(1, Ordering::AcqRel);
        remote.drain(clear_first);
    }
    waker.join().unwrap();
    // No op may be left queued with no eventfd write to wake the loop for it.
    let stranded = !remote.queue.lock().unwrap().is_empty();
    assert!(
        !stranded || remote.eventfd.load(Ordering::Acquire) > 0,
        "a wake was queued and the loop will never be told"
    );
}

#[test]
fn remote_wakes_are_never_stranded() {
    holds(|| remote_wake_model(true));
}

#[test]
fn negative_control_draining_before_clearing_strands_a_wake() {
    breaks(|| remote_wake_model(false));
}

// -------------------------------------------------------------------------------------
// 2. A worker going to sleep versus a submit (executor-pool/src/pool.rs, `Shared::park`
//    and `Shared::push`): the worker announces itself idle, then takes its last look;
//    the submitter pushes, then checks for idle workers.
// -------------------------------------------------------------------------------------

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

// -------------------------------------------------------------------------------------
// 3. The job slot's state machine (executor-pool/src/job.rs, `JobCell::run`, `resolve`,
//    the handle's drop): queued → running → done, racing cancel and a dropped handle.
//    The worker claims the job (queued → running) in the same critical section that
//    checks it is still queued.
// -------------------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Debug)]
enum Stage {
    Queued,
    Running,
    Done,
    Cancelled,
}

struct Slot {
    stage: Mutex<(Stage, bool)>, // (stage, handle attached)
    ran: AtomicUsize,
    resolutions: AtomicUsize,
    /// Results dropped because nobody could read them.
    discarded: AtomicUsize,
}

impl Slot {
    fn run(&self, claim_atomically: bool) {
        if claim_atomically {
            let mut state = self.stage.lock().unwrap();
            if state.0 != Stage::Queued {
                return; // cancelled while queued: a tombstone
            }
            state.0 = Stage::Running;
        } else {
            // Look, then claim, in two steps.
            if self.stage.lock().unwrap().0 != Stage::Queued {
                return;
            }
            self.stage.lock().unwrap().0 = Stage::Running;
        }
        self.ran.fetch_add(1, Ordering::SeqCst); // the closure
        let mut state = self.stage.lock().unwrap();
        state.0 = Stage::Done;
        self.resolutions.fetch_add(1, Ordering::SeqCst);
        if !state.1 {
            self.discarded.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// True if the job will never run.
    fn cancel(&self) -> bool {
        let mut state = self.stage.lock().unwrap();
        if state.0 == Stage::Queued {
            state.0 = Stage::Cancelled;
            self.resolutions.fetch_add(1, Ordering::SeqCst);
            return true;
        }
        false
    }

    fn drop_handle(&self) {
        let mut state = self.stage.lock().unwrap();
        state.1 = false;
        match state.0 {
            Stage::Queued => {
                state.0 = Stage::Cancelled; // dropping the handle cancels a queued job
                self.resolutions.fetch_add(1, Ordering::SeqCst);
            }
            // The handle held the result: it goes with the handle.
            Stage::Done => {
                self.discarded.fetch_add(1, Ordering::SeqCst);
            }
            Stage::Running | Stage::Cancelled => {}
        }
    }
}

fn job_slot_model(claim_atomically: bool) {
    let slot = Arc::new(Slot {
        stage: Mutex::new((Stage::Queued, true)),
        ran: AtomicUsize::new(0),
        resolutions: AtomicUsize::new(0),
        discarded: AtomicUsize::new(0),
    });
    let worker = {
        let slot = slot.clone();
        thread::spawn(move || slot.run(claim_atomically))
    };
    let canceller = {
        let slot = slot.clone();
        thread::spawn(move || slot.cancel())
    };
    slot.drop_handle();
    worker.join().unwrap();
    let cancelled = canceller.join().unwrap();
    let ran = slot.ran.load(Ordering::SeqCst);
    assert_eq!(
        slot.resolutions.load(Ordering::SeqCst),
        1,
        "resolved exactly once"
    );
    assert!(ran <= 1, "ran at most once");
    if cancelled {
        assert_eq!(ran, 0, "cancel said the job would never run, and it ran");
    }
    let stage = slot.stage.lock().unwrap().0;
    assert_eq!(stage == Stage::Done, ran == 1);
    // The handle was dropped: a result produced is discarded, not kept forever.
    assert_eq!(slot.discarded.load(Ordering::SeqCst), ran);
}

#[test]
fn a_job_resolves_once_and_a_cancelled_job_never_runs() {
    holds(|| job_slot_model(true));
}

#[test]
fn negative_control_claiming_after_a_separate_look_runs_a_cancelled_job() {
    breaks(|| job_slot_model(false));
}

// -------------------------------------------------------------------------------------
// 4. Shutdown versus submit (executor-pool/src/pool.rs, `enter`, `leave`, `shutdown`,
//    `sealed`): a submitter enters the gate, pushes, then leaves; shutdown closes the
//    gate, waits for it to empty, then seals; a worker that sees the seal takes one last
//    look at the queue and exits, so nothing may be pushed after the seal.
// -------------------------------------------------------------------------------------

const CLOSED: usize = 1;
const SUBMISSION: usize = 2;

struct Gate {
    gate: AtomicUsize,
    sealed: AtomicBool,
    queue: Mutex<VecDeque<u32>>,
    accepted: AtomicUsize,
    ran: AtomicUsize,
}

impl Gate {
    fn submit(&self, push_inside: bool) {
        let before = self.gate.fetch_add(SUBMISSION, Ordering::AcqRel);
        if before & CLOSED != 0 {
            self.gate.fetch_sub(SUBMISSION, Ordering::AcqRel);
            return; // refused: the caller gets its job back
        }
        self.accepted.fetch_add(1, Ordering::SeqCst);
        if push_inside {
            self.queue.lock().unwrap().push_back(1);
            self.gate.fetch_sub(SUBMISSION, Ordering::AcqRel);
        } else {
            self.gate.fetch_sub(SUBMISSION, Ordering::AcqRel);
            self.queue.lock().unwrap().push_back(1);
        }
    }

    fn shutdown(&self) {
        self.gate.fetch_or(CLOSED, Ordering::AcqRel);
        while self.gate.load(Ordering::Acquire) != CLOSED {
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

fn shutdown_model(push_inside: bool) {
    let pool = Arc::new(Gate {
        gate: AtomicUsize::new(0),
        sealed: AtomicBool::new(false),
        queue: Mutex::new(VecDeque::new()),
        accepted: AtomicUsize::new(0),
        ran: AtomicUsize::new(0),
    });
    let submitter = {
        let pool = pool.clone();
        thread::spawn(move || pool.submit(push_inside))
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
    holds(|| shutdown_model(true));
}

#[test]
fn negative_control_leaving_the_gate_before_pushing_loses_a_job() {
    breaks(|| shutdown_model(false));
}

// -------------------------------------------------------------------------------------
// 5. The Semaphore's hand-off to a waiter cancelled at the same moment
//    (executor-pool/src/semaphore.rs, `add_permits`/`grant_head` and `cancel_request`):
//    the cancelled waiter checks whether it was granted and leaves the queue in one
//    critical section, and hands granted permits on.
// -------------------------------------------------------------------------------------

struct Sem {
    /// (free permits, queued tickets, granted tickets)
    state: Mutex<(usize, VecDeque<u32>, Vec<u32>)>,
}

impl Sem {
    fn add_permits(&self, n: usize) {
        let mut state = self.state.lock().unwrap();
        state.0 += n;
        while state.0 > 0 {
            let Some(ticket) = state.1.pop_front() else {
                break;
            };
            state.0 -= 1;
            state.2.push(ticket);
        }
    }

    fn cancel(&self, ticket: u32, one_step: bool) {
        if one_step {
            let mut state = self.state.lock().unwrap();
            if let Some(i) = state.2.iter().position(|&t| t == ticket) {
                state.2.remove(i);
                drop(state);
                self.add_permits(1); // granted meanwhile: hand the permit on
            } else {
                state.1.retain(|&t| t != ticket);
            }
        } else {
            // Check, then leave the queue, in two steps.
            let granted = self.state.lock().unwrap().2.contains(&ticket);
            if granted {
                self.state.lock().unwrap().2.retain(|&t| t != ticket);
                self.add_permits(1);
            } else {
                self.state.lock().unwrap().1.retain(|&t| t != ticket);
            }
        }
    }
}

fn semaphore_model(one_step: bool) {
    // No free permit; waiter 1 (to be cancelled) heads the queue, waiter 2 follows.
    let sem = Arc::new(Sem {
        state: Mutex::new((0, VecDeque::from([1, 2]), Vec::new())),
    });
    let releaser = {
        let sem = sem.clone();
        thread::spawn(move || sem.add_permits(1)) // a permit is returned
    };
    sem.cancel(1, one_step);
    releaser.join().unwrap();
    let state = sem.state.lock().unwrap();
    // The one permit is free or granted to waiter 2: never lost with waiter 1.
    assert_eq!(
        state.0 + state.2.len(),
        1,
        "a permit was lost: {:?}",
        *state
    );
    assert!(!state.2.contains(&1) && !state.1.contains(&1));
}

#[test]
fn a_permit_granted_to_a_cancelled_waiter_is_handed_on() {
    holds(|| semaphore_model(true));
}

#[test]
fn negative_control_checking_then_leaving_in_two_steps_loses_a_permit() {
    breaks(|| semaphore_model(false));
}
