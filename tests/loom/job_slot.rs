//! A job's slot (`executor-pool/src/job/cell.rs`, `JobCell`): its stage (`Queued` with the
//! closure, `Running`, `Done` with the answer, `Taken`), its handle's state (`Attached`,
//! `Detached`, `Dropped`), the handle's waker and the bounded queue's permit, under one
//! lock, with every thread that can end the job racing.
//!
//! Mirrored: `RawJob::run` (claim: take the permit and swap the stage for `Running` in one
//! critical section; a job resolved meanwhile is a tombstone; then free the permit, check
//! the deadline, run the closure and `finish`), `finish` (the answer goes to an attached
//! handle, or is discarded), `resolve` (a queued job ends without running; a shutdown
//! drain and `Job::drop` call it, and so does the handle's `cancel`), and the handle's
//! `release` (drop: cancels a queued job; detach: lets it run) and `poll_result`. The pool
//! hands each `Job` to one party: a worker pops it and runs it, or `Shared::drain` pops it
//! at `shutdown_now` and resolves it; the model's queue is that race.
//!
//! Simplified: the closure, the permit and the waker are counters of what happened to
//! them, the deadline is decided before the model starts (passed or not), and the
//! cancellation token and observer hooks are left out. A waker "wakes its task", which
//! polls: it takes the slot's lock, so a wake made under the lock would deadlock the
//! model. Containing panics in those side effects (`wake::contain`) is not modelled: each
//! is one call, and what the model checks is when it runs and that it runs once.
//!
//! Checked for every fate of the handle (awaited, cancelled, dropped, detached, polled then
//! dropped), with and without a passed deadline: the job ends exactly once, in a final
//! stage; its closure is called or dropped exactly once, is never called after the job was
//! resolved, and is called when nobody cancelled it (a detached job too); the queue slot
//! goes back exactly once, before the closure runs; the waker is woken at most once, after
//! the answer is in; and a handle still attached gets exactly one answer, the right one.

use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::{Arc, Mutex};
use loom::thread;

use super::{breaks, holds};

/// The code under test, or a negative control's change to it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Shape {
    /// The code as it is.
    Real,
    /// The worker checks the stage, unlocks, then claims it in a second critical section.
    LookThenClaim,
    /// Only `run` gives the permit back; `resolve` and the handle's drop leave it.
    PermitOnlyInRun,
}

/// What the handle does, racing the worker and the drain.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Fate {
    /// Polls once, then (after everyone is done) until it has the answer.
    Await,
    /// `cancel()`, then awaits the answer.
    Cancel,
    /// Dropped unawaited.
    Drop,
    /// `detach()`.
    Detach,
    /// Polls once, then is dropped.
    PollThenDrop,
}

/// The job's answer, as its handle sees it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Answer {
    Ran,
    Cancelled,
    DeadlineExpired,
}

/// What happened to the job's parts.
#[derive(Debug, Default)]
struct Seen {
    /// The closure was called.
    ran: AtomicUsize,
    /// The closure was dropped without being called.
    dropped_unrun: AtomicUsize,
    /// The job's answer was decided (by `finish`, `resolve` or a dropping handle).
    ended: AtomicUsize,
    /// The queue slot went back.
    permits_released: AtomicUsize,
    woken: AtomicUsize,
}

impl Seen {
    fn count(counter: &AtomicUsize) -> usize {
        counter.load(Ordering::SeqCst)
    }
}

/// The job's closure: calling it or dropping it is counted.
struct Closure {
    seen: Arc<Seen>,
    called: bool,
}

impl Closure {
    fn call(mut self) {
        // The job left the queue when it was claimed: its slot is free while it runs.
        assert_eq!(
            self.seen.permits_released.load(Ordering::SeqCst),
            1,
            "the queue slot is still held while the job runs"
        );
        self.called = true;
        self.seen.ran.fetch_add(1, Ordering::SeqCst);
    }
}

impl Drop for Closure {
    fn drop(&mut self) {
        if !self.called {
            self.seen.dropped_unrun.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// The bounded queue's slot (`OwnedSemaphorePermit`): given back when dropped.
struct Permit(Arc<Seen>);

impl Drop for Permit {
    fn drop(&mut self) {
        self.0.permits_released.fetch_add(1, Ordering::SeqCst);
    }
}

/// The handle's task's waker.
struct Waker;

enum Stage {
    Queued(Closure),
    Running,
    Done(Answer),
    Taken,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Handle {
    Attached,
    Detached,
    Dropped,
}

struct State {
    stage: Stage,
    waker: Option<Waker>,
    handle: Handle,
    permit: Option<Permit>,
}

struct Slot {
    state: Mutex<State>,
    seen: Arc<Seen>,
    deadline_passed: bool,
    shape: Shape,
}

impl Slot {
    /// The handle's task, woken: it polls, so it takes the lock (a wake under the lock
    /// would deadlock here), and it must find the job over.
    fn wake(&self, _waker: Waker) {
        self.seen.woken.fetch_add(1, Ordering::SeqCst);
        let state = self.state.lock().unwrap();
        assert!(
            matches!(state.stage, Stage::Done(_) | Stage::Taken),
            "the handle was woken before its answer was in"
        );
    }

    /// `RawJob::run`, on the worker that popped the job.
    fn run(&self) {
        let (job, permit) = {
            let mut state = self.state.lock().unwrap();
            if self.shape == Shape::LookThenClaim {
                let queued = matches!(state.stage, Stage::Queued(_));
                drop(state);
                if !queued {
                    let permit = self.state.lock().unwrap().permit.take();
                    drop(permit);
                    return;
                }
                state = self.state.lock().unwrap();
            }
            let permit = state.permit.take();
            match std::mem::replace(&mut state.stage, Stage::Running) {
                Stage::Queued(job) => (job, permit),
                _ if self.shape == Shape::LookThenClaim => return, // it was queued a moment ago
                other => {
                    state.stage = other; // resolved while queued: a tombstone
                    drop(state);
                    drop(permit);
                    return;
                }
            }
        };
        // Claimed: it has left the queue, so its slot goes back, outside the lock.
        drop(permit);
        if self.deadline_passed {
            self.finish(Answer::DeadlineExpired);
            drop(job);
            return;
        }
        job.call();
        self.finish(Answer::Ran);
    }

    /// `JobCell::finish`.
    fn finish(&self, answer: Answer) {
        let waker = {
            let mut state = self.state.lock().unwrap();
            self.seen.ended.fetch_add(1, Ordering::SeqCst);
            if state.handle == Handle::Attached {
                state.stage = Stage::Done(answer);
                state.waker.take()
            } else {
                state.stage = Stage::Taken; // nobody reads it
                None
            }
        };
        if let Some(waker) = waker {
            self.wake(waker);
        }
    }

    /// `RawJob::resolve`: true if the job was queued and now never runs.
    fn resolve(&self, answer: Answer) -> bool {
        let (job, permit, waker) = {
            let mut state = self.state.lock().unwrap();
            if !matches!(state.stage, Stage::Queued(_)) {
                return false;
            }
            let stage = if state.handle == Handle::Attached {
                Stage::Done(answer)
            } else {
                Stage::Taken
            };
            let Stage::Queued(job) = std::mem::replace(&mut state.stage, stage) else {
                unreachable!()
            };
            self.seen.ended.fetch_add(1, Ordering::SeqCst);
            let permit = if self.shape == Shape::PermitOnlyInRun {
                None
            } else {
                state.permit.take()
            };
            (job, permit, state.waker.take())
        };
        drop(job);
        drop(permit);
        if let Some(waker) = waker {
            self.wake(waker);
        }
        true
    }

    /// The handle's `release`: dropped (`detach` false) or detached.
    fn release(&self, detach: bool) {
        let (job, permit, _waker) = {
            let mut state = self.state.lock().unwrap();
            // Its waker goes too, dropped (after the lock), not woken: nobody waits now.
            let waker = state.waker.take();
            state.handle = if detach {
                Handle::Detached
            } else {
                Handle::Dropped
            };
            let (job, permit) = match state.stage {
                // Dropping the handle of a job that has not started cancels it.
                Stage::Queued(_) if !detach => {
                    let Stage::Queued(job) = std::mem::replace(&mut state.stage, Stage::Taken)
                    else {
                        unreachable!()
                    };
                    self.seen.ended.fetch_add(1, Ordering::SeqCst);
                    let permit = if self.shape == Shape::PermitOnlyInRun {
                        None
                    } else {
                        state.permit.take()
                    };
                    (Some(job), permit)
                }
                Stage::Done(_) => {
                    state.stage = Stage::Taken; // the answer goes with the handle
                    (None, None)
                }
                _ => (None, None),
            };
            (job, permit, waker)
        };
        drop(permit);
        drop(job);
    }

    /// The handle's `poll_result`: the answer, or `None` with the waker stored.
    fn poll(&self) -> Option<Answer> {
        let mut state = self.state.lock().unwrap();
        match std::mem::replace(&mut state.stage, Stage::Taken) {
            Stage::Done(answer) => Some(answer),
            Stage::Taken => panic!("polled after it returned its answer"),
            pending => {
                state.stage = pending;
                state.waker = Some(Waker);
                None
            }
        }
    }
}

fn job_model(fate: Fate, deadline_passed: bool, shape: Shape) {
    let seen = Arc::new(Seen::default());
    let slot = Arc::new(Slot {
        state: Mutex::new(State {
            stage: Stage::Queued(Closure {
                seen: seen.clone(),
                called: false,
            }),
            waker: None,
            handle: Handle::Attached,
            permit: Some(Permit(seen.clone())),
        }),
        seen: seen.clone(),
        deadline_passed,
        shape,
    });
    // The pool's queue: whoever pops the job owns it.
    let queue = Arc::new(Mutex::new(Some(slot.clone())));
    let worker = {
        let queue = queue.clone();
        thread::spawn(move || {
            let Some(job) = queue.lock().unwrap().take() else {
                return false;
            };
            job.run();
            true
        })
    };
    let drain = {
        let queue = queue.clone();
        thread::spawn(move || {
            let job = queue.lock().unwrap().take();
            if let Some(job) = job {
                job.resolve(Answer::Cancelled);
            }
        })
    };
    // The handle's fate.
    let mut cancelled = false;
    let mut answer = None;
    let attached = match fate {
        Fate::Await => {
            answer = slot.poll();
            true
        }
        Fate::Cancel => {
            cancelled = slot.resolve(Answer::Cancelled);
            true
        }
        Fate::Drop => {
            slot.release(false);
            false
        }
        Fate::Detach => {
            slot.release(true);
            false
        }
        Fate::PollThenDrop => {
            answer = slot.poll();
            if answer.is_none() {
                slot.release(false);
            }
            false
        }
    };
    let worker_popped = worker.join().unwrap();
    drain.join().unwrap();

    let ran = Seen::count(&seen.ran);
    assert_eq!(
        Seen::count(&seen.ended),
        1,
        "the job ended more or less than once"
    );
    assert!(
        matches!(
            slot.state.lock().unwrap().stage,
            Stage::Done(_) | Stage::Taken
        ),
        "the job never reached a final stage"
    );
    assert_eq!(
        ran + Seen::count(&seen.dropped_unrun),
        1,
        "the closure was not called or dropped exactly once"
    );
    if cancelled || deadline_passed || !worker_popped {
        assert_eq!(ran, 0, "a job resolved without running ran anyway");
    }
    if worker_popped && !deadline_passed && matches!(fate, Fate::Await | Fate::Detach) {
        assert_eq!(ran, 1, "a job nobody cancelled did not run");
    }
    assert_eq!(
        Seen::count(&seen.permits_released),
        1,
        "the queue slot was not given back exactly once"
    );
    let woken = Seen::count(&seen.woken);
    assert!(woken <= 1, "woken {woken} times");
    let expected = if ran == 1 {
        Answer::Ran
    } else if deadline_passed && worker_popped && !cancelled {
        Answer::DeadlineExpired
    } else {
        Answer::Cancelled
    };
    if attached {
        // A handle still waiting was woken, and now has exactly one answer.
        if answer.is_none() && fate == Fate::Await {
            assert_eq!(woken, 1, "the waiting handle was never woken");
        }
        answer = answer.or_else(|| slot.poll());
        assert!(answer.is_some(), "no answer for the handle");
        slot.release(false); // the handle drops after its answer: nothing changes
        assert_eq!(Seen::count(&seen.ended), 1);
    }
    if let Some(answer) = answer {
        assert_eq!(answer, expected, "the handle got the wrong answer");
    }
}

const FATES: [Fate; 5] = [
    Fate::Await,
    Fate::Cancel,
    Fate::Drop,
    Fate::Detach,
    Fate::PollThenDrop,
];

#[test]
fn a_job_resolves_once_and_a_cancelled_job_never_runs() {
    for fate in FATES {
        for deadline_passed in [false, true] {
            holds(move || job_model(fate, deadline_passed, Shape::Real));
        }
    }
}

#[test]
fn negative_control_claiming_after_a_separate_look_loses_the_answer() {
    breaks(|| job_model(Fate::Cancel, false, Shape::LookThenClaim));
}

#[test]
fn negative_control_a_permit_given_back_only_by_run_leaks_when_the_job_is_drained() {
    breaks(|| job_model(Fate::Await, false, Shape::PermitOnlyInRun));
}
