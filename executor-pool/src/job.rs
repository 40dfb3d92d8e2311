//! A job: one allocation holding a closure, then its result, shared by the executor that
//! runs it ([`Job`]) and the caller who waits for it ([`JobHandle`]).
//!
//! The slot's state machine, under one small mutex:
//!
//! ```text
//!   Queued(f) ──worker takes it──▶ Running ──f returns/panics──▶ Done(result) ──handle──▶ Taken
//!       │                                                          ▲
//!       └── cancel / handle dropped / shutdown_now / deadline ─────┘ (f dropped, never run)
//! ```
//!
//! A job can be cancelled only while `Queued`; then it never runs. Once `Running` it runs to
//! completion (threads cannot be killed): cancelling or dropping the handle sets its
//! [`CancelToken`] and the result is discarded.
//!
//! Closures, results, permits and wakers are dropped and called outside the mutex (wakers
//! are cloned outside it too: `wake.rs`), once the state is final, and every piece of user
//! code that runs on a worker or a shutdown path (a waker, a closure's destructor, the
//! waker of a submitter woken by a freed slot) is contained: a panic there cannot take
//! the worker down or leave a job unresolved.

use std::fmt;
use std::future::Future;
use std::panic::{AssertUnwindSafe, Location, catch_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::JobError;
use crate::panic::panic_message;
use crate::semaphore::OwnedSemaphorePermit;
use crate::waiting::{self, WaitingOn};
use crate::wake;

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
    fn info(&self) -> JobInfo {
        let started = self.started.load(Ordering::Acquire);
        JobInfo {
            id: self.id,
            location: self.location,
            submitted: self.submitted,
            started: (started > 0).then(|| self.submitted + Duration::from_nanos(started - 1)),
            token_set: self.cancelled.load(Ordering::Acquire),
        }
    }
}

/// A snapshot of a job, for reports and observers.
#[derive(Clone, Debug)]
pub struct JobInfo {
    /// Unique per process, in submission order.
    pub id: u64,
    /// Where it was submitted (`#[track_caller]`).
    pub location: &'static Location<'static>,
    /// When it was submitted.
    pub submitted: Instant,
    /// When a worker started it, if one has.
    pub started: Option<Instant>,
    /// Whether its cancellation token has been set.
    pub token_set: bool,
}

impl JobInfo {
    /// How long it waited in the queue (so far, if it has not started).
    pub fn waited(&self) -> Duration {
        self.started.unwrap_or_else(Instant::now) - self.submitted
    }

    /// How long it has been running (zero if it has not started).
    pub fn running_for(&self) -> Duration {
        self.started
            .map_or(Duration::ZERO, |started| started.elapsed())
    }
}

impl fmt::Display for JobInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "job #{} submitted at {}", self.id, self.location)
    }
}

/// Hooks a runtime attaches to a job to watch it (oneloop's debug mode does). Called on the
/// worker thread; they must be quick.
pub trait JobObserver: Send + Sync {
    /// The job was built and is about to be submitted (on the submitting thread).
    fn submitted(&self, info: &JobInfo) {
        let _ = info;
    }

    /// The job was resolved without running: cancelled, its handle dropped, its pool shut
    /// down, its deadline passed, or refused (`info.waited()` is how long it waited).
    fn cancelled(&self, info: &JobInfo) {
        let _ = info;
    }

    /// A worker is about to run the job (`info.waited()` is its queue wait).
    fn started(&self, info: &JobInfo) {
        let _ = info;
    }

    /// The job returned or panicked.
    fn finished(&self, info: &JobInfo) {
        let _ = info;
    }

    /// The job panicked and nobody awaits its handle (it was dropped or detached), so the
    /// panic would otherwise go unseen. Without an observer it is printed on stderr.
    fn unobserved_panic(&self, info: &JobInfo, message: &str) {
        eprintln!("oneloop-pool: {info} panicked and nobody awaited it: {message}");
    }

    /// Nobody awaits the job's result, so the worker dropped it, and its `Drop` panicked
    /// (contained: the worker carries on). Without an observer it is printed on stderr.
    fn discarded_result_panicked(&self, info: &JobInfo, message: &str) {
        eprintln!(
            "oneloop-pool: the result of {info}, which nobody awaited, panicked when dropped: \
             {message}"
        );
    }
}

/// The stderr fallback for jobs without an observer.
struct DefaultObserver;

impl JobObserver for DefaultObserver {}

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

/// The caller's side of a job: a `Send` future resolving to the job's result.
///
/// Usable from any executor (oneloop, tokio, `futures::executor`, or a plain thread with
/// [`join`](Self::join)). [`cancel`](Self::cancel) it, or drop it, before the job starts and
/// the job never runs; once it runs, it runs to completion, its token is set and its
/// result is discarded. [`detach`](Self::detach) lets it run unobserved.
#[must_use = "dropping a JobHandle cancels its job if it has not started; await it, or detach it"]
pub struct JobHandle<T> {
    job: Option<Arc<dyn TypedJob<T>>>,
}

impl<T: Send + 'static> JobHandle<T> {
    /// Cancels the job if it has not started. Returns true when it had not, and now never
    /// will; false when it is running or done (a running job's token is set).
    pub fn cancel(&self) -> bool {
        self.job().cancel()
    }

    /// Lets the job run to completion unobserved; its result is dropped (a panic is still
    /// reported).
    pub fn detach(mut self) {
        if let Some(job) = self.job.take() {
            job.release(true);
        }
    }

    /// True once the result is in (or the job was resolved without running).
    pub fn is_finished(&self) -> bool {
        self.job().is_finished()
    }

    /// The job's identity and timing.
    pub fn info(&self) -> JobInfo {
        self.job().info()
    }

    /// Blocks this thread until the job is done, and returns its result.
    ///
    /// For plain threads; in async code, `.await` the handle instead.
    pub fn join(self) -> Result<T, JobError> {
        crate::block_on(self)
    }

    fn job(&self) -> &Arc<dyn TypedJob<T>> {
        self.job
            .as_ref()
            .expect("oneloop-pool: JobHandle used after it returned its result")
    }
}

impl<T: Send + 'static> Future for JobHandle<T> {
    type Output = Result<T, JobError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let job = self
            .job
            .as_ref()
            .expect("oneloop-pool: JobHandle polled after it returned its result");
        let Poll::Ready(result) = job.poll_result(cx) else {
            waiting::note(WaitingOn::Job { id: job.id() });
            return Poll::Pending;
        };
        self.job = None;
        Poll::Ready(result)
    }
}

impl<T> Drop for JobHandle<T> {
    fn drop(&mut self) {
        if let Some(job) = self.job.take() {
            job.release(false);
        }
    }
}

impl<T> fmt::Debug for JobHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.job {
            Some(job) => write!(f, "JobHandle({})", job.info()),
            None => f.write_str("JobHandle(<done>)"),
        }
    }
}

/// Builds a [`Job`] and its [`JobHandle`], for submitting to any [`Executor`](crate::Executor).
///
/// `ThreadPool::spawn` does this for you; runtimes (oneloop's `run_in_executor`) use it to
/// attach a submit site, a deadline or an observer.
///
/// # Examples
///
/// ```
/// use oneloop_pool::{Executor, JobBuilder, ThreadPool};
///
/// let pool = ThreadPool::new(1)?;
/// let (job, handle) = JobBuilder::new().build(|| "ran");
/// pool.execute(job).unwrap();
/// assert_eq!(handle.join(), Ok("ran"));
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone)]
pub struct JobBuilder {
    location: &'static Location<'static>,
    submitted: Option<Instant>,
    deadline: Option<Instant>,
    observer: Option<Arc<dyn JobObserver>>,
}

impl JobBuilder {
    /// A builder whose job records the caller as its submit site.
    #[track_caller]
    pub fn new() -> Self {
        JobBuilder {
            location: Location::caller(),
            submitted: None,
            deadline: None,
            observer: None,
        }
    }

    /// Records `location` as the submit site (for wrappers that are `#[track_caller]`).
    pub fn location(mut self, location: &'static Location<'static>) -> Self {
        self.location = location;
        self
    }

    /// Records the job as submitted at `at` instead of reading the clock when it is built:
    /// for a caller that holds a fresh reading anyway (an event loop's time of its current
    /// turn), which saves a clock read per job. `at` is what [`JobInfo::submitted`] says
    /// and what the queue wait is measured from.
    pub fn submitted_at(mut self, at: Instant) -> Self {
        self.submitted = Some(at);
        self
    }

    /// If no worker has started the job by `deadline`, it fails with
    /// [`JobError::DeadlineExpired`] and never runs.
    pub fn deadline(mut self, deadline: Instant) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// Watches the job with `observer`.
    pub fn observer(mut self, observer: Arc<dyn JobObserver>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Builds a job that runs `f`.
    pub fn build<F, T>(self, f: F) -> (Job, JobHandle<T>)
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.build_raw(move |_: TokenSource<'_>| f())
    }

    /// Builds a job that runs `f` with its cancellation token.
    pub fn build_with_token<F, T>(self, f: F) -> (Job, JobHandle<T>)
    where
        F: FnOnce(CancelToken) -> T + Send + 'static,
        T: Send + 'static,
    {
        self.build_raw(move |source: TokenSource<'_>| f(source.token()))
    }

    fn build_raw<F, T>(self, f: F) -> (Job, JobHandle<T>)
    where
        F: FnOnce(TokenSource<'_>) -> T + Send + 'static,
        T: Send + 'static,
    {
        let cell = Arc::new(JobCell {
            header: JobHeader {
                id: NEXT_JOB_ID.fetch_add(1, Ordering::Relaxed),
                location: self.location,
                submitted: self.submitted.unwrap_or_else(Instant::now),
                deadline: self.deadline,
                cancelled: AtomicBool::new(false),
                started: AtomicU64::new(0),
                observer: self.observer,
            },
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
        (Job { raw: Some(cell) }, JobHandle { job: Some(typed) })
    }
}

impl Default for JobBuilder {
    #[track_caller]
    fn default() -> Self {
        JobBuilder::new()
    }
}

impl fmt::Debug for JobBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobBuilder")
            .field("location", &self.location)
            .field("deadline", &self.deadline)
            .field("observed", &self.observer.is_some())
            .finish()
    }
}
