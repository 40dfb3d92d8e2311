//! A call's life on the parent's side: the slot the supervisor resolves. The future the
//! caller awaits is in `future.rs`.
//!
//! A call is queued, then running (sent to a worker), then done, exactly once: the
//! supervisor (`supervisor.rs`) moves it from queued to running when it hands it to a
//! worker, and resolves it when the worker answers or dies; a cancellation moves a queued
//! call straight to done (it never runs), and asks the supervisor to kill the worker of a
//! running one when the pool says so (`CancelRunning::Kill`). Every waker runs after the
//! slot's lock (`oneloop_pool::wake`).

use std::panic::Location;
use std::sync::Arc;
use std::task::Waker;
use std::time::Instant;

use oneloop_pool::semaphore::OwnedSemaphorePermit;
use oneloop_pool::wake;
use oneloop_pool::{JobError, JobInfo, JobObserver, WorkerDeath};
use parking_lot::{Mutex, MutexGuard};

use crate::payload::Encoded;

/// One call, shared by its future and the supervisor.
pub(crate) struct Call {
    /// The pool's number for it (`JobInfo`-style; what the deadlock check names).
    pub(crate) id: u64,
    /// The function's key.
    pub(crate) key: &'static str,
    /// Where the call was made (reports name it).
    pub(crate) site: &'static Location<'static>,
    submitted: Instant,
    /// The runtime watching the call (debug mode, tracing), found where it was made
    /// (`oneloop_pool::observing`); told of each step, outside the lock.
    observer: Option<Arc<dyn JobObserver>>,
    state: Mutex<State>,
}

pub(crate) struct State {
    phase: Phase,
    /// The caller gave up on a running call (dropped or cancelled its future).
    abandoned: bool,
    /// The caller's waker, while it waits.
    waker: Option<Waker>,
    /// When a worker took it, and which (its pid).
    started: Option<(Instant, u32)>,
    /// Its room in a bounded queue, while it is queued: given back when a worker takes
    /// it, or at once when it is cancelled or resolved without running.
    room: Option<OwnedSemaphorePermit>,
}

enum Phase {
    Queued,
    Running,
    Done(Result<Encoded, JobError>),
    /// The result was taken by the future.
    Taken,
}

impl Call {
    /// A call made now, at `site`; the runtime on this thread, if it watches jobs, is told.
    pub(crate) fn new(id: u64, key: &'static str, site: &'static Location<'static>) -> Self {
        let call = Call {
            id,
            key,
            site,
            submitted: Instant::now(),
            observer: oneloop_pool::observing::observer_for(id),
            state: Mutex::new(State {
                phase: Phase::Queued,
                abandoned: false,
                waker: None,
                started: None,
                room: None,
            }),
        };
        call.observe(|observer, info| observer.submitted(info));
        call
    }

    /// How reports name the call: its function and where it was made.
    pub(crate) fn describe(&self) -> String {
        format!("{} (called at {})", self.key, self.site)
    }

    /// The call as observers see it.
    fn info(&self) -> JobInfo {
        let mut info = JobInfo::new(self.id, self.site, self.submitted);
        if let Some((started, pid)) = self.state.lock().started {
            info.started = Some(started);
            info.worker = Some(format!("worker process {pid}"));
        }
        info
    }

    /// Tells the observer, if any (never under the lock). Its code is the runtime's, but
    /// runs on the supervisor's thread here: a panic in it is contained.
    fn observe(&self, tell: impl FnOnce(&dyn JobObserver, &JobInfo)) {
        if let Some(observer) = &self.observer {
            let info = self.info();
            wake::contain(wake::catch(|| tell(&**observer, &info)));
        }
    }

    /// The call holds `room` while it is queued (see `State::room`).
    pub(crate) fn hold_room(&self, room: OwnedSemaphorePermit) {
        let refused = {
            let mut state = self.state.lock();
            match state.phase {
                Phase::Queued => state.room.replace(room),
                _ => Some(room), // already resolved: nothing to hold it for
            }
        };
        give_back(refused);
    }

    /// The supervisor hands the call to worker `pid`; false if it was cancelled meanwhile
    /// (it must not run).
    pub(crate) fn start(&self, pid: u32) -> bool {
        let room = {
            let mut state = self.state.lock();
            if !matches!(state.phase, Phase::Queued) {
                return false;
            }
            state.phase = Phase::Running;
            state.started = Some((Instant::now(), pid));
            state.room.take()
        };
        give_back(room);
        self.observe(|observer, info| observer.started(info));
        true
    }

    /// True once the caller gave up on this running call.
    pub(crate) fn is_abandoned(&self) -> bool {
        self.state.lock().abandoned
    }

    /// The worker running the call died, or was killed: tells the observer (the call is
    /// resolved separately).
    pub(crate) fn worker_died(&self, death: &WorkerDeath) {
        self.observe(|observer, info| observer.worker_died(info, death));
    }

    /// Resolves the call (once: a later resolution is ignored) and wakes its caller.
    pub(crate) fn resolve(&self, result: Result<Encoded, JobError>) {
        let unseen_panic = match &result {
            Err(JobError::Panicked(message)) => Some(message.clone()),
            _ => None,
        };
        let (waker, ran, abandoned, room) = {
            let mut state = self.state.lock();
            if matches!(state.phase, Phase::Done(_) | Phase::Taken) {
                return;
            }
            let ran = matches!(state.phase, Phase::Running);
            state.phase = Phase::Done(result);
            (state.waker.take(), ran, state.abandoned, state.room.take())
        };
        give_back(room);
        match (ran, unseen_panic) {
            (true, Some(message)) if abandoned => {
                self.observe(|observer, info| observer.unobserved_panic(info, &message));
                self.observe(|observer, info| observer.finished(info));
            }
            (true, _) => self.observe(|observer, info| observer.finished(info)),
            (false, _) => self.observe(|observer, info| observer.cancelled(info)),
        }
        if let Some(waker) = waker {
            // The supervisor's thread must survive a panicking waker.
            wake::contain(wake::wake(waker));
        }
    }

    /// The caller cancels: a queued call is resolved `Cancelled` at once (it never runs);
    /// a running one is marked abandoned (the supervisor kills its worker if the pool says
    /// so). Returns whether the call was still queued.
    pub(crate) fn cancel(&self) -> bool {
        let (queued, room) = {
            let mut state = self.state.lock();
            match state.phase {
                Phase::Queued => {
                    state.phase = Phase::Done(Err(JobError::Cancelled));
                    (true, state.room.take())
                }
                Phase::Running => {
                    state.abandoned = true;
                    (false, None)
                }
                Phase::Done(_) | Phase::Taken => (false, None),
            }
        };
        // Its room goes back now: the next call finds it.
        give_back(room);
        if queued {
            self.observe(|observer, info| observer.cancelled(info));
        }
        queued
    }

    /// True once resolved.
    pub(crate) fn is_done(&self) -> bool {
        matches!(self.state.lock().phase, Phase::Done(_) | Phase::Taken)
    }

    /// The slot, locked (for `wake::poll_waker_slot`).
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock()
    }
}

impl State {
    /// Takes the result if the call is done, else hands back the waker slot.
    pub(crate) fn take_result(&mut self) -> Result<Result<Encoded, JobError>, &mut Option<Waker>> {
        match std::mem::replace(&mut self.phase, Phase::Taken) {
            Phase::Done(result) => Ok(result),
            phase => {
                self.phase = phase;
                Err(&mut self.waker)
            }
        }
    }
}

/// Gives a call's room in a bounded queue back (outside the call's lock). That wakes a
/// caller waiting for room, whose waker is user code: a panic there is contained, since
/// whoever gives it back (a supervisor, a canceller) must carry on.
fn give_back(room: Option<OwnedSemaphorePermit>) {
    if let Some(room) = room {
        wake::contain(wake::catch(|| drop(room)));
    }
}
