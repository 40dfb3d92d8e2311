//! A job's slot: one allocation holding the closure, then its result, under one small
//! mutex, shared by the executor's side ([`Job`](super::Job), through `RawJob`) and the
//! caller's ([`JobHandle`](super::JobHandle), through `TypedJob`). The types that share it
//! are in `mod.rs`; `builder.rs` builds one.
//!
//! The slot's state machine:
//!
//! ```text
//!   Queued(f) ──worker takes it──▶ Running ──f returns/panics──▶ Done(result) ──handle──▶ Taken
//!       │                                                          ▲
//!       └── cancel / handle dropped / shutdown_now / deadline ─────┘ (f dropped, never run)
//! ```
//!
//! A job can be cancelled only while `Queued`; then it never runs. Once `Running` it runs to
//! completion (threads cannot be killed): cancelling or dropping the handle sets its
//! [`CancelToken`](super::CancelToken) and the result is discarded.
//!
//! Closures, results, permits and wakers are dropped and called outside the mutex (wakers
//! are cloned outside it too: `wake.rs`), once the state is final, and every piece of user
//! code that runs on a worker or a shutdown path (a waker, a closure's destructor, the
//! waker of a submitter woken by a freed slot) is contained: a panic there cannot take
//! the worker down or leave a job unresolved.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use parking_lot::Mutex;

use super::info::{DefaultObserver, JobInfo, JobObserver};
use super::{Job, JobHeader, Outcome, RawJob, TokenSource, TypedJob};
use crate::JobError;
use crate::panic::panic_message;
use crate::semaphore::OwnedSemaphorePermit;
use crate::wake;

/// A new job's slot, queued with `f`: the executor's side of it and the handle's. Tells
/// the job's observer it was submitted.
pub(super) fn new<F, T>(header: JobHeader, f: F) -> (Job, Arc<dyn TypedJob<T>>)
where
    F: FnOnce(TokenSource<'_>) -> T + Send + 'static,
    T: Send + 'static,
{
    let cell = Arc::new(JobCell {
        header,
        state: Mutex::new(State {
            stage: Stage::Queued(f),
            waker: None,
            handle: HandleState::Attached,
            permit: None,
        }),
    });
    if let Some(observer) = &cell.header.observer {
        observer.submitted(&cell.header.info());
    }
    let typed: Arc<dyn TypedJob<T>> = cell.clone();
    (Job { raw: Some(cell) }, typed)
}

struct JobCell<F, T> {
    header: JobHeader,
    state: Mutex<State<F, T>>,
}

struct State<F, T> {
    stage: Stage<F, T>,
    waker: Option<Waker>,
    handle: HandleState,
    /// The queue slot it holds in a bounded pool; given back when it leaves the queue.
    permit: Option<OwnedSemaphorePermit>,
}

enum Stage<F, T> {
    Queued(F),
    Running,
    Done(Result<T, JobError>),
    Taken,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum HandleState {
    /// Someone may await the result.
    Attached,
    /// `detach()`: the job runs unobserved.
    Detached,
    /// The handle was dropped (a queued job is cancelled by that).
    Dropped,
}

impl<F, T> JobCell<F, T>
where
    F: FnOnce(TokenSource<'_>) -> T + Send + 'static,
    T: Send + 'static,
{
    /// Stores the outcome of a run and wakes the waiter. Returns the result when nobody
    /// will read it, for the caller to drop (its destructor is user code).
    fn finish(&self, result: Result<T, JobError>) -> Option<Result<T, JobError>> {
        let (waker, unread) = {
            let mut state = self.state.lock();
            if state.handle == HandleState::Attached {
                state.stage = Stage::Done(result);
                (state.waker.take(), None)
            } else {
                state.stage = Stage::Taken;
                (None, Some(result))
            }
        };
        if let Some(waker) = waker {
            // A user waker may panic; whoever runs the job (a worker) must survive it.
            wake::contain(wake::wake(waker));
        }
        unread
    }

    fn observer(&self) -> &dyn JobObserver {
        self.header.observer.as_deref().unwrap_or(&DefaultObserver)
    }
}

impl<F, T> RawJob for JobCell<F, T>
where
    F: FnOnce(TokenSource<'_>) -> T + Send + 'static,
    T: Send + 'static,
{
    fn header(&self) -> &JobHeader {
        &self.header
    }

    fn run(self: Arc<Self>, record: &dyn Fn(Outcome)) {
        let (job, permit) = {
            let mut state = self.state.lock();
            let permit = state.permit.take();
            match std::mem::replace(&mut state.stage, Stage::Running) {
                Stage::Queued(job) => (job, permit),
                other => {
                    state.stage = other; // resolved while queued: a tombstone
                    drop(state);
                    release_permit(permit);
                    record(Outcome::Skipped);
                    return;
                }
            }
        };
        // It has left the queue: make room for the next submission. That wakes a waiting
        // submitter, whose waker may panic: contained, or this worker would die with the
        // job half-way through its state machine (`Running`, never resolved).
        release_permit(permit);
        let header = &self.header;
        if header
            .deadline
            .is_some_and(|deadline| Instant::now() >= deadline)
        {
            record(Outcome::Expired);
            if let Some(observer) = &header.observer {
                observer.cancelled(&header.info());
            }
            drop(self.finish(Err(JobError::DeadlineExpired)));
            wake::contain(wake::catch(|| drop(job)));
            return;
        }
        let waited = header.submitted.elapsed();
        header.started.store(
            u64::try_from(waited.as_nanos()).unwrap_or(u64::MAX - 1) + 1,
            Ordering::Release,
        );
        if let Some(observer) = &header.observer {
            observer.started(&header.info());
        }
        let erased: Arc<dyn RawJob> = self.clone();
        let result = catch_unwind(AssertUnwindSafe(|| job(TokenSource(&erased))));
        drop(erased);
        if let Some(observer) = &header.observer {
            observer.finished(&header.info());
        }
        let (result, payload) = match result {
            Ok(value) => (Ok(value), None),
            Err(payload) => (
                Err(JobError::Panicked(panic_message(&*payload))),
                Some(payload),
            ),
        };
        record(if payload.is_some() {
            Outcome::Panicked
        } else {
            Outcome::Completed
        });
        if let Some(unread) = self.finish(result) {
            if let Err(JobError::Panicked(message)) = &unread {
                self.observer().unobserved_panic(&header.info(), message);
            }
            // Nobody reads it: drop it here, containing a panic in its destructor, which
            // nobody would see otherwise: tell the observer.
            if let Err(panic) = wake::catch(|| drop(unread)) {
                let message = panic_message(&*panic);
                self.observer()
                    .discarded_result_panicked(&header.info(), &message);
                wake::drop_panic(panic);
            }
        }
        // The panic payload is dropped last, after the handle has its answer. Its destructor
        // is user code too; if *that* panics, this worker thread dies and the pool replaces
        // it (`worker.rs`).
        drop(payload);
    }

    fn resolve(&self, error: JobError) -> bool {
        let (job, permit, waker) = {
            let mut state = self.state.lock();
            if !matches!(state.stage, Stage::Queued(_)) {
                return false;
            }
            let stage = if state.handle == HandleState::Attached {
                Stage::Done(Err(error))
            } else {
                Stage::Taken
            };
            let Stage::Queued(job) = std::mem::replace(&mut state.stage, stage) else {
                unreachable!()
            };
            (job, state.permit.take(), state.waker.take())
        };
        self.header.cancelled.store(true, Ordering::Release);
        if let Some(observer) = &self.header.observer {
            observer.cancelled(&self.header.info());
        }
        // The job is resolved; what follows is user code (the closure's destructor, the
        // wakers of a submitter waiting for the freed slot and of the handle's task). It
        // runs on whoever resolves: a shutdown, a worker, an executor. None of it may stop
        // the others, or that caller.
        wake::contain(wake::catch(|| drop(job)));
        release_permit(permit);
        if let Some(waker) = waker {
            wake::contain(wake::wake(waker));
        }
        true
    }

    fn attach_permit(&self, permit: OwnedSemaphorePermit) {
        let stale = self.state.lock().permit.replace(permit);
        release_permit(stale);
    }

    fn has_permit(&self) -> bool {
        self.state.lock().permit.is_some()
    }
}

impl<F, T> TypedJob<T> for JobCell<F, T>
where
    F: FnOnce(TokenSource<'_>) -> T + Send + 'static,
    T: Send + 'static,
{
    fn poll_result(&self, cx: &mut Context<'_>) -> Poll<Result<T, JobError>> {
        // The waker is cloned, and the one it replaces dropped, outside the lock.
        wake::poll_waker_slot(
            cx.waker(),
            || self.state.lock(),
            |state| match std::mem::replace(&mut state.stage, Stage::Taken) {
                Stage::Done(result) => Ok(result),
                Stage::Taken => {
                    panic!("oneloop-pool: JobHandle polled after it returned its result")
                }
                pending => {
                    state.stage = pending;
                    Err(&mut state.waker)
                }
            },
        )
    }

    fn cancel(&self) -> bool {
        self.header.cancelled.store(true, Ordering::Release);
        self.resolve(JobError::Cancelled)
    }

    fn release(&self, detach: bool) {
        let (job, permit, result, waker) = {
            let mut state = self.state.lock();
            let waker = state.waker.take();
            state.handle = if detach {
                HandleState::Detached
            } else {
                HandleState::Dropped
            };
            let (job, permit, result) = match &state.stage {
                // Dropping the handle of a job that has not started cancels it.
                Stage::Queued(_) if !detach => {
                    let Stage::Queued(job) = std::mem::replace(&mut state.stage, Stage::Taken)
                    else {
                        unreachable!()
                    };
                    (Some(job), state.permit.take(), None)
                }
                Stage::Done(_) => {
                    let Stage::Done(result) = std::mem::replace(&mut state.stage, Stage::Taken)
                    else {
                        unreachable!()
                    };
                    (None, None, Some(result))
                }
                _ => (None, None, None),
            };
            (job, permit, result, waker)
        };
        if !detach {
            // A running job is told nobody wants its result any more.
            self.header.cancelled.store(true, Ordering::Release);
        }
        if job.is_some()
            && let Some(observer) = &self.header.observer
        {
            observer.cancelled(&self.header.info());
        }
        // The handle's owner drops it, so its own user code (the closure, the result) may
        // panic back at it, unless it is already unwinding; another task's waker (woken by
        // the freed slot) is contained.
        wake::contain(wake::catch(|| drop(waker)));
        release_permit(permit);
        // A panic stored for a handle that goes away unread was never seen by anyone.
        if let Some(Err(JobError::Panicked(message))) = &result {
            self.observer()
                .unobserved_panic(&self.header.info(), message);
        }
        let dropped = wake::catch(|| drop(job));
        wake::resume(wake::catch(|| drop(result)));
        wake::resume(dropped);
    }

    fn is_finished(&self) -> bool {
        matches!(self.state.lock().stage, Stage::Done(_) | Stage::Taken)
    }

    fn info(&self) -> JobInfo {
        self.header.info()
    }

    fn id(&self) -> u64 {
        self.header.id
    }
}

/// Gives a bounded queue's slot back. That wakes whoever waits for room, and their wakers
/// are user code: a panic there is contained, since the caller (a worker, a shutdown) must
/// finish what it is doing. The permits are returned either way.
fn release_permit(permit: Option<OwnedSemaphorePermit>) {
    if let Some(permit) = permit {
        wake::contain(wake::catch(|| drop(permit)));
    }
}
