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

/// One call, shared by its future and whoever runs it: a process pool's supervisor, or
/// a remote executor's threads (`oneloop-remote`), which resolve it with their own kind of
/// encoded result `T`.
#[doc(hidden)]
pub struct Slot<T> {
    /// The pool's number for it (`JobInfo`-style; what the deadlock check names).
    pub id: u64,
    /// The function's key.
    pub key: &'static str,
    /// Where the call was made (reports name it).
    pub site: &'static Location<'static>,
    submitted: Instant,
    /// The runtime watching the call (debug mode, tracing), found where it was made
    /// (`oneloop_pool::observing`); told of each step, outside the lock.
    observer: Option<Arc<dyn JobObserver>>,
    state: Mutex<State<T>>,
}

/// A call's mutable part.
#[doc(hidden)]
pub struct State<T> {
    phase: Phase<T>,
    /// The caller gave up on a running call (dropped or cancelled its future).
    abandoned: bool,
    /// The caller's waker, while it waits.
    waker: Option<Waker>,
    /// When a worker took it, and which.
    started: Option<(Instant, String)>,
    /// Its room in a bounded queue, while it is queued: given back when a worker takes
    /// it, or at once when it is cancelled or resolved without running.
    room: Option<OwnedSemaphorePermit>,
}

enum Phase<T> {
    Queued,
    Running,
    Done(Result<T, JobError>),
    /// The result was taken by the future.
    Taken,
}

/// A process pool's call: its result is encoded, in a buffer or a region.
pub(crate) type Call = Slot<Encoded>;

impl<T> Slot<T> {
    /// A call made now, at `site`; the runtime on this thread, if it watches jobs, is told.
    pub fn new(id: u64, key: &'static str, site: &'static Location<'static>) -> Self {
        let call = Slot {
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
    pub fn describe(&self) -> String {
        format!("{} (called at {})", self.key, self.site)
    }

    /// The call as observers see it.
    fn info(&self) -> JobInfo {
        let mut info = JobInfo::new(self.id, self.site, self.submitted);
        if let Some((started, worker)) = &self.state.lock().started {
            info.started = Some(*started);
            info.worker = Some(worker.clone());
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
    pub fn hold_room(&self, room: OwnedSemaphorePermit) {
        let refused = {
            let mut state = self.state.lock();
            match state.phase {
                Phase::Queued => state.room.replace(room),
                _ => Some(room), // already resolved: nothing to hold it for
            }
        };
        give_back(refused);
    }

    /// The supervisor hands the call to worker process `pid`; false if it was cancelled
    /// meanwhile (it must not run).
    pub(crate) fn start(&self, pid: u32) -> bool {
        self.start_on(Instant::now(), format!("worker process {pid}"))
    }

    /// The call started at `at` on `worker` (how reports name it); false if it was
    /// cancelled meanwhile.
    pub fn start_on(&self, at: Instant, worker: String) -> bool {
        let room = {
            let mut state = self.state.lock();
            if !matches!(state.phase, Phase::Queued) {
                return false;
            }
            state.phase = Phase::Running;
            state.started = Some((at, worker));
            state.room.take()
        };
        give_back(room);
        self.observe(|observer, info| observer.started(info));
        true
    }

    /// True once the caller gave up on this running call.
    pub fn is_abandoned(&self) -> bool {
        self.state.lock().abandoned
    }

    /// The worker running the call died, or was killed: tells the observer (the call is
    /// resolved separately).
    pub fn worker_died(&self, death: &WorkerDeath) {
        self.observe(|observer, info| observer.worker_died(info, death));
    }

    /// Resolves the call (once: a later resolution is ignored) and wakes its caller.
    pub fn resolve(&self, result: Result<T, JobError>) {
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
    pub fn cancel(&self) -> bool {
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
    pub fn is_done(&self) -> bool {
        matches!(self.state.lock().phase, Phase::Done(_) | Phase::Taken)
    }

    /// The slot, locked (for `wake::poll_waker_slot`).
    pub fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock()
    }
}

impl<T> std::fmt::Debug for Slot<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slot")
            .field("id", &self.id)
            .field("key", &self.key)
            .field("state", &*self.state.lock())
            .finish_non_exhaustive()
    }
}

impl<T> std::fmt::Debug for State<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let phase = match &self.phase {
            Phase::Queued => "queued",
            Phase::Running => "running",
            Phase::Done(_) => "done",
            Phase::Taken => "taken",
        };
        f.debug_struct("State")
            .field("phase", &phase)
            .field("abandoned", &self.abandoned)
            .finish_non_exhaustive()
    }
}

impl<T> State<T> {
    /// Takes the result if the call is done, else hands back the waker slot.
    pub fn take_result(&mut self) -> Result<Result<T, JobError>, &mut Option<Waker>> {
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
