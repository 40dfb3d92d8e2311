//! Offloading: run a closure on a worker thread and await its result without blocking the
//! loop (asyncio's `run_in_executor` and `to_thread`).
//!
//! The job is submitted *at the call*, as in asyncio: the worker may start before the
//! returned future is first polled. The future is the job's `JobHandle` (from
//! `oneloop-pool`), which the worker completes by waking the awaiting task: that wake comes
//! from another thread, so it reaches the loop through the remote queue and the coalesced
//! eventfd (`waker.rs`). Nothing here runs on a worker; nothing here blocks the loop.
//!
//! A bounded pool that is full and says "wait" hands out permits through its admission
//! semaphore: the future waits for one (FIFO, cancel-safe), then submits.
//!
//! The default pool behind `to_thread` is the loop's, in `default_pool.rs`.

use std::fmt;
use std::future::Future;
use std::panic::Location;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, ready};

use oneloop_pool::semaphore::AcquireOwned;
use oneloop_pool::{
    CancelToken, Executor, Job, JobBuilder, JobError, JobHandle, RejectReason, Rejected,
};

use crate::context;
use crate::runtime::Core;

pub(crate) mod default_pool;

/// The future of an offloaded closure: resolves to its value, or to a [`JobError`] (it
/// panicked, was cancelled, the pool shut down...).
///
/// Dropping it before the job starts cancels the job (it never runs); dropping it while the
/// job runs sets the job's token and discards its result. That makes timeouts honest:
/// `timeout(d, to_thread(f))` that expires while `f` is still queued means `f` never runs.
#[must_use = "the job is already submitted; dropping this cancels it if it has not started"]
pub struct Offload<T> {
    handle: JobHandle<T>,
    /// The job, while it waits for room in a full bounded pool.
    waiting: Option<WaitingForRoom>,
}

struct WaitingForRoom {
    job: Job,
    executor: Box<dyn Executor>,
    permit: AcquireOwned,
}

impl<T: Send + 'static> Offload<T> {
    /// Cancels the job if it has not started; true when it now never will. A running job
    /// gets its token set (see `spawn_with_token`) and runs to completion.
    pub fn cancel(&mut self) -> bool {
        if let Some(waiting) = self.waiting.take() {
            waiting.job.resolve(JobError::Cancelled);
            return true;
        }
        self.handle.cancel()
    }

    /// True once the result is in.
    pub fn is_finished(&self) -> bool {
        self.handle.is_finished()
    }

    /// Waits until the job has been handed to the executor: at once, unless a full
    /// bounded pool made it wait for room. A producer that awaits this before making its
    /// next item never runs ahead of the pool, so its memory stays flat (see
    /// `04_bounded`).
    pub async fn submitted(&mut self) {
        std::future::poll_fn(|cx| self.poll_submitted(cx)).await
    }

    fn poll_submitted(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if let Some(waiting) = &mut self.waiting {
            let permit = ready!(Pin::new(&mut waiting.permit).poll(cx));
            let WaitingForRoom { job, executor, .. } =
                self.waiting.take().expect("checked just above");
            match permit {
                Ok(permit) => {
                    job.attach_permit(permit); // a job with a slot is never refused as full
                    if let Err(rejected) = executor.execute(job) {
                        resolve(rejected);
                    }
                }
                Err(_closed) => job.resolve(JobError::Shutdown),
            }
        }
        Poll::Ready(())
    }
}

impl<T: Send + 'static> Future for Offload<T> {
    type Output = Result<T, JobError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        ready!(this.poll_submitted(cx));
        Pin::new(&mut this.handle).poll(cx)
    }
}

impl<T> fmt::Debug for Offload<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Offload")
            .field("handle", &self.handle)
            .field("waiting_for_room", &self.waiting.is_some())
            .finish()
    }
}

fn resolve(rejected: Rejected) {
    rejected.job.resolve(rejected.reason.into_job_error());
}

/// Submits `job` to `executor`; if the executor is full and asks submitters to wait, the
/// returned future waits for room.
fn submit<E, T>(executor: &E, job: Job, handle: JobHandle<T>) -> Offload<T>
where
    E: Executor + Clone + 'static,
{
    let waiting = match executor.execute(job) {
        Ok(()) => None,
        Err(Rejected {
            job,
            reason: RejectReason::Busy,
        }) => match executor.admission() {
            Some(slots) => Some(WaitingForRoom {
                job,
                executor: Box::new(executor.clone()),
                permit: slots.clone().acquire_owned(),
            }),
            // An executor that says "wait" without saying for what cannot be waited on.
            None => {
                job.resolve(JobError::Rejected);
                None
            }
        },
        Err(rejected) => {
            resolve(rejected);
            None
        }
    };
    Offload { handle, waiting }
}

fn builder(location: &'static Location<'static>, core: Option<&Core>) -> JobBuilder {
    let builder = JobBuilder::new().location(location);
    let Some(core) = core else {
        return builder;
    };
    match core.job_observer() {
        // Debug mode measures queue waits: a clock reading of its own.
        Some(observer) => builder.observer(observer),
        // Otherwise the time of the loop's current turn will do (it was read when the
        // turn began), which spares a clock read per job.
        None => builder.submitted_at(core.timers().now()),
    }
}

/// In debug mode or with tracing, registers the runtime's job observer with `executor`,
/// so the jobs spawned on it directly (`ThreadPool::spawn`) are watched too. The pool holds
/// it weakly: once the runtime drops, its jobs are no longer watched.
fn watch_executor<E: Executor>(executor: &E, core: Option<&Core>) {
    if let Some(observer) = core.and_then(Core::pool_observer) {
        executor.observe(observer);
    }
}

/// The one path of every entry point: the job is built with what the loop's instruments
/// attach to it (`builder`), the submitting task is noted for the trace's arrows, and the
/// job goes to `executor`. With no executor (the OS refused the default pool's threads,
/// reported as `OL012`) it resolves as `Broken` with the reason, a broken pool's answer.
fn offload<E, T>(
    executor: Result<&E, String>,
    core: Option<&Core>,
    location: &'static Location<'static>,
    make: impl FnOnce(JobBuilder) -> (Job, JobHandle<T>),
) -> Offload<T>
where
    E: Executor + Clone + 'static,
    T: Send + 'static,
{
    let (job, handle) = make(builder(location, core));
    if let Some(core) = core {
        core.job_submitted(|| handle.info().id);
    }
    match executor {
        Ok(executor) => submit(executor, job, handle),
        Err(reason) => {
            job.resolve(JobError::Broken(reason));
            Offload {
                handle,
                waiting: None,
            }
        }
    }
}

/// Runs `f` on `executor` (a [`ThreadPool`](oneloop_pool::ThreadPool), or any
/// [`Executor`]) and returns a future of its result: asyncio's `loop.run_in_executor`.
///
/// Called inside a runtime in debug mode, the job is watched (queue wait, running time,
/// unobserved panics), and so are the jobs spawned on `executor` directly from then on,
/// while the runtime lives; anywhere else it simply runs.
///
/// # Examples
///
/// ```
/// use oneloop_pool::ThreadPool;
///
/// let pool = ThreadPool::new(2)?;
/// oneloop::Runtime::new().block_on(async {
///     let sum = oneloop::run_in_executor(&pool, || (1..=100u32).sum::<u32>()).await;
///     assert_eq!(sum, Ok(5050));
/// });
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// The closure must be `Send + 'static`: it runs on another thread, possibly after the
/// caller's stack frame is gone. Rust checks at compile time what asyncio finds out at run
/// time (a `PicklingError` for process pools):
///
/// ```compile_fail
/// use std::rc::Rc;
/// let pool = oneloop_pool::ThreadPool::new(1).unwrap();
/// let counter = Rc::new(5); // Rc is not Send: it cannot cross to a worker
/// let _ = oneloop::run_in_executor(&pool, move || *counter + 1);
/// ```
///
/// ```compile_fail
/// let pool = oneloop_pool::ThreadPool::new(1).unwrap();
/// let data = vec![1, 2, 3];
/// let borrowed = &data; // a borrow is not 'static: `data` may be gone when the job runs
/// let _ = oneloop::run_in_executor(&pool, move || borrowed.len());
/// ```
#[track_caller]
pub fn run_in_executor<E, F, T>(executor: &E, f: F) -> Offload<T>
where
    E: Executor + Clone + 'static,
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let core = context::with_current(Rc::clone);
    watch_executor(executor, core.as_deref());
    offload(Ok(executor), core.as_deref(), Location::caller(), |b| {
        b.build(f)
    })
}

/// Like [`run_in_executor`], handing `f` a [`CancelToken`] that is set when the future is
/// dropped or cancelled while the job runs (or the pool shuts down with `shutdown_now`).
#[track_caller]
pub fn run_in_executor_with_token<E, F, T>(executor: &E, f: F) -> Offload<T>
where
    E: Executor + Clone + 'static,
    F: FnOnce(CancelToken) -> T + Send + 'static,
    T: Send + 'static,
{
    let core = context::with_current(Rc::clone);
    watch_executor(executor, core.as_deref());
    let location = Location::caller();
    offload(Ok(executor), core.as_deref(), location, |b| {
        b.build_with_token(f)
    })
}

/// Runs `f` on the runtime's default pool and returns a future of its result: asyncio's
/// `asyncio.to_thread`. The default pool is created on first use, with
/// [`Builder::default_pool_workers`](crate::Builder::default_pool_workers) threads
/// (default `min(32, cores + 4)`, like asyncio's: it is meant for blocking I/O).
///
/// # Examples
///
/// ```
/// oneloop::Runtime::new().block_on(async {
///     let text = oneloop::to_thread(|| std::fs::read_to_string("Cargo.toml")).await;
///     assert!(text.unwrap().unwrap().contains("[package]"));
/// });
/// ```
///
/// # Panics
///
/// Outside a runtime (use [`run_in_executor`] with a pool of your own there).
#[track_caller]
pub fn to_thread<F, T>(f: F) -> Offload<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let core = context::current("oneloop::to_thread");
    // An error when the OS refused the pool's threads, now or less than a second ago
    // (`offload/default_pool.rs`): the job resolves as a broken pool's would.
    let pool = core.default_pool();
    let pool = pool.as_ref().map_err(Clone::clone);
    offload(pool, Some(&core), Location::caller(), |b| b.build(f))
}

impl crate::Runtime {
    /// [`run_in_executor`] on this runtime (usable before `block_on` runs).
    #[track_caller]
    pub fn run_in_executor<E, F, T>(&self, executor: &E, f: F) -> Offload<T>
    where
        E: Executor + Clone + 'static,
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        watch_executor(executor, Some(self.core()));
        offload(Ok(executor), Some(self.core()), Location::caller(), |b| {
            b.build(f)
        })
    }
}
