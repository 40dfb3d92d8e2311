//! A job, and the types that share it: [`Job`] (the executor's side, type-erased),
//! `JobRef` (the pool's bookkeeping reference), [`CancelToken`] (the closure's view) and
//! [`JobHandle`] (the caller's side, typed, in `handle.rs`). What they share is one slot
//! holding the closure, then its result: its state machine is in `cell.rs`. A job is
//! built by [`JobBuilder`] (`builder.rs`) and described by [`JobInfo`] to the
//! [`JobObserver`]s that watch it (`info.rs`).

use std::fmt;
use std::panic::Location;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crate::JobError;
use crate::semaphore::OwnedSemaphorePermit;

mod builder;
mod cell;
mod handle;
mod info;

pub use builder::JobBuilder;
pub use handle::JobHandle;
pub(crate) use info::DefaultObserver;
pub use info::{JobInfo, JobObserver};

/// Numbers jobs across all pools, for reports.
static NEXT_JOB_ID: AtomicU64 = AtomicU64::new(1);

/// What is known about a job without knowing its types.
pub(crate) struct JobHeader {
    id: u64,
    location: &'static Location<'static>,
    submitted: Instant,
    deadline: Option<Instant>,
    /// The cooperative cancellation flag its `CancelToken` reads; set by cancel, handle
    /// drop and `shutdown_now`.
    cancelled: AtomicBool,
    /// When it started, in ns after `submitted`, plus one (0 = not started). Written once by
    /// the worker; read by reports on other threads.
    started: AtomicU64,
    observer: Option<Arc<dyn JobObserver>>,
}

impl JobHeader {
    /// The header of a job submitted at `submitted` from `location`, numbered now.
    fn new(
        location: &'static Location<'static>,
        submitted: Instant,
        deadline: Option<Instant>,
        observer: Option<Arc<dyn JobObserver>>,
    ) -> Self {
        JobHeader {
            id: NEXT_JOB_ID.fetch_add(1, Ordering::Relaxed),
            location,
            submitted,
            deadline,
            cancelled: AtomicBool::new(false),
            started: AtomicU64::new(0),
            observer,
        }
    }

    fn info(&self) -> JobInfo {
        let started = self.started.load(Ordering::Acquire);
        JobInfo {
            id: self.id,
            location: self.location,
            submitted: self.submitted,
            started: (started > 0).then(|| self.submitted + Duration::from_nanos(started - 1)),
            token_set: self.cancelled.load(Ordering::Acquire),
            worker: None,
        }
    }
}

/// The type-erased side of a job, as executors and the pool see it.
pub(crate) trait RawJob: Send + Sync {
    fn header(&self) -> &JobHeader;
    /// Runs the job unless it was resolved meanwhile. `record` learns the outcome before
    /// the handle does, so whoever counts outcomes is never behind a resolved handle.
    fn run(self: Arc<Self>, record: &dyn Fn(Outcome));
    /// Resolves a job that has not started with `error`; it never runs. False if it had
    /// already started or been resolved.
    fn resolve(&self, error: JobError) -> bool;
    fn attach_permit(&self, permit: OwnedSemaphorePermit);
    fn has_permit(&self) -> bool;
}

/// What happened when a worker took a job, for the pool's counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Completed,
    Panicked,
    /// It had been resolved already (cancelled while queued): nothing ran.
    Skipped,
    /// Its deadline had passed: resolved as `DeadlineExpired` without running.
    Expired,
}

/// The typed side, as the handle sees it.
trait TypedJob<T>: Send + Sync {
    fn poll_result(&self, cx: &mut Context<'_>) -> Poll<Result<T, JobError>>;
    fn cancel(&self) -> bool;
    fn release(&self, detach: bool);
    fn is_finished(&self) -> bool;
    fn info(&self) -> JobInfo;
    fn id(&self) -> u64;
}

/// Hands the closure its cancellation token, created only if the closure asks for it.
pub(crate) struct TokenSource<'a>(&'a Arc<dyn RawJob>);

impl TokenSource<'_> {
    fn token(self) -> CancelToken {
        CancelToken {
            job: self.0.clone(),
        }
    }
}

/// A job ready to run, type-erased: what an [`Executor`](crate::Executor) receives.
///
/// Run it once, on any thread, with [`run`](Job::run); or, if it cannot be run, resolve it
/// with [`resolve`](Job::resolve) so its handle learns why. Dropping a `Job` without doing
/// either resolves its handle as [`JobError::Cancelled`]: a job is never lost silently.
pub struct Job {
    raw: Option<Arc<dyn RawJob>>,
}

impl Job {
    /// Runs the job on the current thread: its closure (under `catch_unwind`), then its
    /// result goes to the handle and the waiter is woken. A job whose handle cancelled it
    /// while it was queued does nothing.
    pub fn run(self) {
        self.run_recorded(&|_| {});
    }

    /// Runs the job, telling `record` the outcome before the handle learns it.
    pub(crate) fn run_recorded(mut self, record: &dyn Fn(Outcome)) {
        let raw = self.raw.take().expect("oneloop-pool bug: job ran twice");
        raw.run(record);
    }

    /// Resolves the job without running it (an executor that cannot run it: shutting
    /// down, broken, full). Its handle gets `error`; the closure is dropped.
    pub fn resolve(mut self, error: JobError) {
        if let Some(raw) = self.raw.take() {
            raw.resolve(error);
        }
    }

    /// Like [`resolve`](Job::resolve), reporting whether the job was still queued (false:
    /// it had been cancelled already).
    pub(crate) fn resolve_counted(mut self, error: JobError) -> bool {
        self.raw.take().is_some_and(|raw| raw.resolve(error))
    }

    /// A snapshot of the job's identity and timing.
    pub fn info(&self) -> JobInfo {
        self.raw().header().info()
    }

    /// Sets the job's cancellation token (for a job already running, say at shutdown).
    pub fn set_token(&self) {
        self.raw().header().cancelled.store(true, Ordering::Release);
    }

    /// Gives the job a slot of a bounded queue; the slot is freed when it leaves the queue.
    pub fn attach_permit(&self, permit: OwnedSemaphorePermit) {
        self.raw().attach_permit(permit);
    }

    pub(crate) fn has_permit(&self) -> bool {
        self.raw().has_permit()
    }

    /// Another reference to the same job, for bookkeeping (the pool keeps one per running
    /// job so `shutdown_timeout` can name it).
    pub(crate) fn share(&self) -> JobRef {
        JobRef(self.raw().clone())
    }

    fn raw(&self) -> &Arc<dyn RawJob> {
        self.raw
            .as_ref()
            .expect("oneloop-pool bug: job used after it ran")
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        if let Some(raw) = self.raw.take() {
            raw.resolve(JobError::Cancelled);
        }
    }
}

impl fmt::Debug for Job {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.raw {
            Some(raw) => write!(f, "Job({})", raw.header().info()),
            None => f.write_str("Job(<done>)"),
        }
    }
}

/// A reference to a job that neither runs nor resolves it: for reports.
#[derive(Clone)]
pub(crate) struct JobRef(Arc<dyn RawJob>);

impl JobRef {
    pub(crate) fn info(&self) -> JobInfo {
        self.0.header().info()
    }

    pub(crate) fn set_token(&self) {
        self.0.header().cancelled.store(true, Ordering::Release);
    }
}

/// A cooperative cancellation flag handed to jobs spawned with `spawn_with_token`.
///
/// It is set when the job's handle is cancelled or dropped, or the pool is shut down with
/// `shutdown_now` or times out in `shutdown_timeout`. A long job checks it between chunks
/// and returns early: threads cannot be killed, so this is how a running job is stopped.
#[derive(Clone)]
pub struct CancelToken {
    job: Arc<dyn RawJob>,
}

impl CancelToken {
    /// True once the job has been asked to stop.
    pub fn is_cancelled(&self) -> bool {
        self.job.header().cancelled.load(Ordering::Acquire)
    }
}

impl fmt::Debug for CancelToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CancelToken")
            .field("cancelled", &self.is_cancelled())
            .finish()
    }
}
