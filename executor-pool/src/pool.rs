//! `ThreadPool`: submission, the bounded queue's admission control, shutdown, statistics.
//!
//! Jobs submitted from outside go to a global injector; jobs submitted from inside a job go
//! to that worker's own deque (`worker.rs`), where idle workers steal them. A bounded queue
//! is a [`Semaphore`] with one permit per free slot: a submission takes a permit, a worker
//! gives it back when it takes the job off the queue. When there is no permit, the
//! overflow policy decides: refuse, wait (FIFO, asynchronously through
//! [`Executor::admission`], or blocking in `spawn`), or run the job on the caller.
//!
//! Shutdown closes a gate that every submission passes through: `close` waits for the
//! submissions already inside to finish, so after it no job can slip in behind the
//! workers' backs, and every job is either run or resolved.

use std::fmt;
use std::io;
use std::panic::Location;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering, fence};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_deque::{Injector, Steal, Stealer, Worker};
use crossbeam_utils::CachePadded;
use parking_lot::{Condvar, Mutex};

use crate::config::{Config, Overflow};
use crate::executor::Executor;
use crate::job::{CancelToken, Job, JobBuilder, JobHandle, JobInfo, JobObserver, JobRef, Outcome};
use crate::observers::Observers;
use crate::semaphore::{Semaphore, TryAcquireError};
use crate::wake;
use crate::worker;
use crate::{JobError, RejectReason, Rejected, TrySpawnError};

/// Hands out pool ids, so a worker thread knows which pool it belongs to.
static NEXT_POOL_ID: AtomicU64 = AtomicU64::new(1);

/// The gate's "closed" bit; the rest of the word counts submissions in progress, in twos.
const CLOSED: usize = 1;
const SUBMISSION: usize = 2;

/// How long a pool missing workers waits between attempts to start replacements.
const RETRY_SPAWN_EVERY: Duration = Duration::from_millis(100);

/// A function that starts the thread of worker slot `index` on `deque`: the spawn handler,
/// handed a `WorkerThread` (`builder.rs` makes it).
pub(crate) type StartThread =
    Box<dyn Fn(&Arc<Shared>, usize, Worker<Job>) -> io::Result<JoinHandle<()>> + Send + Sync>;

/// A pool of worker threads running closures: the answer to "this would block the loop".
///
/// Cloning gives another handle to the same pool. When the last handle is dropped, the
/// pool shuts down gracefully: it finishes the queued jobs and joins its threads.
///
/// # Examples
///
/// ```
/// use oneloop_pool::ThreadPool;
///
/// let pool = ThreadPool::new(4)?;
/// let handles: Vec<_> = (0..8u64).map(|i| pool.spawn(move || i * i)).collect();
/// let squares: Vec<u64> = handles.into_iter().map(|h| h.join().unwrap()).collect();
/// assert_eq!(squares, [0, 1, 4, 9, 16, 25, 36, 49]);
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// A panic in a job comes back as an error, and the pool carries on:
///
/// ```
/// use oneloop_pool::{JobError, ThreadPool};
///
/// let pool = ThreadPool::new(1)?;
/// let failed = pool.spawn(|| -> u32 { panic!("bad input") }).join();
/// assert_eq!(failed, Err(JobError::Panicked("bad input".into())));
/// assert_eq!(pool.spawn(|| 1).join(), Ok(1));
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// # Implementation notes
///
/// Dropping the last handle while the thread is already panicking does not wait: queued
/// jobs are cancelled, running ones get their token set, and the threads finish on their
/// own. Waiting there could turn a panic into a hang.
#[derive(Clone)]
pub struct ThreadPool {
    owner: Arc<Owner>,
}

/// Shuts the pool down when the last `ThreadPool` handle goes (workers hold `Shared`, not
/// this, so they do not keep the pool alive).
struct Owner {
    shared: Arc<Shared>,
}

impl Drop for Owner {
    fn drop(&mut self) {
        let mode = if thread::panicking() {
            Mode::Abandon
        } else {
            Mode::Graceful
        };
        self.shared.shutdown(mode);
    }
}

impl ThreadPool {
    /// The handle that owns a pool just built (`builder.rs`).
    pub(crate) fn from_shared(shared: Arc<Shared>) -> ThreadPool {
        ThreadPool {
            owner: Arc::new(Owner { shared }),
        }
    }

    /// The most workers a pool may have. Each worker is a thread, which reserves a stack
    /// (2 MiB of address space by default) and a queue: 4096 of them already reserve 8 GiB.
    /// A pool asked for more is a mistake (a count computed wrongly, `usize::MAX` for "as
    /// many as possible"), which `build` reports instead of starting threads until the OS
    /// refuses or memory runs out. Work that needs more concurrent waits than this wants
    /// non-blocking I/O on the loop, not more threads.
    pub const MAX_WORKERS: usize = 4096;

    /// Runs `f` on a worker and returns a handle to its result.
    ///
    /// If the queue is full, the overflow policy decides: with `Wait` this blocks the
    /// calling thread until there is room (use oneloop's `run_in_executor` to wait without
    /// blocking a loop); with `Reject` the handle resolves to [`JobError::Rejected`]; with
    /// `CallerRuns` `f` runs here and now. A pool that is shut down or broken resolves the
    /// handle to `Shutdown` or `Broken`. Use [`try_spawn`](Self::try_spawn) to get the
    /// closure back instead.
    #[track_caller]
    pub fn spawn<F, T>(&self, f: F) -> JobHandle<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let (job, handle) = self.job_builder(Location::caller()).build(f);
        self.submit_or_wait(job);
        handle
    }

    /// Like [`spawn`](Self::spawn), handing `f` a [`CancelToken`] that is set when the
    /// handle is cancelled or dropped, or the pool shuts down with `shutdown_now`: a long
    /// job checks it and stops early.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let pool = oneloop_pool::ThreadPool::new(1)?;
    /// let job = pool.spawn_with_token(|token| {
    ///     let mut chunks = 0;
    ///     while !token.is_cancelled() {
    ///         std::thread::sleep(Duration::from_millis(1)); // one chunk of work
    ///         chunks += 1;
    ///     }
    ///     chunks
    /// });
    /// std::thread::sleep(Duration::from_millis(20));
    /// assert!(!job.cancel()); // already running: it cannot be stopped, only told
    /// drop(job); // ... and its result is discarded when it returns
    /// # Ok::<(), std::io::Error>(())
    /// ```
    #[track_caller]
    pub fn spawn_with_token<F, T>(&self, f: F) -> JobHandle<T>
    where
        F: FnOnce(CancelToken) -> T + Send + 'static,
        T: Send + 'static,
    {
        let (job, handle) = self.job_builder(Location::caller()).build_with_token(f);
        self.submit_or_wait(job);
        handle
    }

    /// Like [`spawn`](Self::spawn), with a deadline: if no worker has started the job by
    /// `deadline`, it fails with [`JobError::DeadlineExpired`] and never runs.
    #[track_caller]
    pub fn spawn_before<F, T>(&self, deadline: Instant, f: F) -> JobHandle<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let (job, handle) = self
            .job_builder(Location::caller())
            .deadline(deadline)
            .build(f);
        self.submit_or_wait(job);
        handle
    }

    /// Runs `f` on a worker if the pool can take it right now; otherwise hands `f` back
    /// (a full queue, whatever the overflow policy; a pool shut down or broken). Never
    /// blocks, never drops the closure.
    #[track_caller]
    pub fn try_spawn<F, T>(&self, f: F) -> Result<JobHandle<T>, TrySpawnError<F>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let shared = &self.owner.shared;
        let Some(_inside) = shared.enter() else {
            return Err(TrySpawnError::Shutdown(f));
        };
        (|| {
            if shared.broken.load(Ordering::Acquire) {
                return Err(TrySpawnError::Broken(f));
            }
            let permit = match &shared.admission {
                None => None,
                Some(slots) => match slots.clone().try_acquire_owned() {
                    Ok(permit) => Some(permit),
                    Err(TryAcquireError::NoPermits) => {
                        shared.counters.rejected.fetch_add(1, Ordering::Relaxed);
                        return Err(TrySpawnError::Full(f));
                    }
                    Err(TryAcquireError::Closed) => return Err(TrySpawnError::Shutdown(f)),
                },
            };
            let (job, handle) = self.job_builder(Location::caller()).build(f);
            if let Some(permit) = permit {
                job.attach_permit(permit);
            }
            shared.push(job);
            Ok(handle)
        })()
    }

    /// A builder for a job this pool builds itself, with its registered observers.
    fn job_builder(&self, location: &'static Location<'static>) -> JobBuilder {
        let builder = JobBuilder::new().location(location);
        match self.owner.shared.observers.current() {
            Some(observer) => builder.observer(observer),
            None => builder,
        }
    }

    /// Submits `job`, blocking for room if the policy says wait; resolves it if refused.
    ///
    /// A job of this pool that submits to it while the queue is full runs the new job
    /// itself, at once (as [`Overflow::CallerRuns`] would): waiting there would wait for
    /// room that only a worker can free, and with every worker doing the same, the pool
    /// would deadlock.
    fn submit_or_wait(&self, job: Job) {
        let shared = &self.owner.shared;
        match shared.submit(job) {
            Ok(()) => {}
            Err(Rejected {
                job,
                reason: RejectReason::Busy,
            }) if worker::is_worker_of(shared.id) => {
                job.run_recorded(&|outcome| shared.count(outcome));
            }
            Err(Rejected {
                job,
                reason: RejectReason::Busy,
            }) => {
                let slots = shared
                    .admission
                    .clone()
                    .expect("oneloop-pool bug: busy without a bounded queue");
                match crate::block_on(slots.acquire_owned()) {
                    Ok(permit) => {
                        job.attach_permit(permit);
                        self.submit_or_wait(job);
                    }
                    Err(_) => job.resolve(JobError::Shutdown),
                }
            }
            Err(Rejected { job, reason }) => job.resolve(reason.into_job_error()),
        }
    }

    /// Stops accepting jobs, finishes every queued job, and joins the threads. Jobs
    /// submitted afterwards resolve to [`JobError::Shutdown`] (or come back from
    /// `try_spawn`). Called from one of this pool's own jobs, it does not wait (a thread
    /// cannot join itself): the workers finish the queue and stop on their own.
    pub fn shutdown(&self) {
        self.owner.shared.shutdown(Mode::Graceful);
    }

    /// Like [`shutdown`](Self::shutdown), but every queued job is resolved as
    /// [`JobError::Cancelled`] instead of run, and running jobs get their token set. It
    /// still waits for running jobs to return (threads cannot be killed).
    pub fn shutdown_now(&self) {
        self.owner.shared.shutdown(Mode::Now);
    }

    /// Shuts down gracefully, waiting at most `timeout`. What is still queued then is
    /// cancelled; what is still running gets its token set, is left to finish on its own
    /// (its handle still resolves when it does), and is named in the report. A timeout too
    /// long to add to the clock (`Duration::MAX`) waits for everything, as
    /// [`shutdown`](Self::shutdown) does.
    pub fn shutdown_timeout(&self, timeout: Duration) -> ShutdownReport {
        self.owner.shared.shutdown(Mode::Timeout(timeout))
    }

    /// True once a shutdown has begun.
    pub fn is_shutdown(&self) -> bool {
        self.owner.shared.gate.load(Ordering::Acquire) & CLOSED != 0
    }

    /// True once the pool lost its workers and could not replace them.
    pub fn is_broken(&self) -> bool {
        self.owner.shared.broken.load(Ordering::Acquire)
    }

    /// The number of worker threads the pool was built with.
    pub fn workers(&self) -> usize {
        self.owner.shared.stealers.len()
    }

    /// Counters describing the pool right now.
    pub fn stats(&self) -> Stats {
        self.owner.shared.stats()
    }
}

impl Executor for ThreadPool {
    fn execute(&self, job: Job) -> Result<(), Rejected> {
        self.owner.shared.submit(job)
    }

    fn admission(&self) -> Option<&Arc<Semaphore>> {
        self.owner.shared.admission.as_ref()
    }

    fn observe(&self, observer: &Arc<dyn JobObserver>) {
        self.owner.shared.observers.add(observer);
    }
}

impl fmt::Debug for ThreadPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThreadPool")
            .field("name", &self.owner.shared.config.thread_name)
            .field("stats", &self.stats())
            .finish()
    }
}

/// Counters from [`ThreadPool::stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Worker threads alive.
    pub workers: usize,
    /// Jobs waiting for a worker (a job cancelled while queued counts until a worker
    /// reaches it and skips it).
    pub queued: usize,
    /// Jobs running now.
    pub running: usize,
    /// Jobs that ran and returned.
    pub completed: u64,
    /// Jobs that ran and panicked.
    pub panicked: u64,
    /// Jobs that never ran because they were cancelled (by their handle, or by
    /// `shutdown_now` / `shutdown_timeout`).
    pub cancelled: u64,
    /// Jobs that never ran because their deadline passed first.
    pub expired: u64,
    /// Submissions refused because the queue was full.
    pub rejected: u64,
}

/// What [`ThreadPool::shutdown_timeout`] left behind.
#[derive(Clone, Debug, Default)]
pub struct ShutdownReport {
    /// Queued jobs cancelled because time ran out.
    pub cancelled: usize,
    /// Jobs still running when time ran out: submit site, how long they had run, whether
    /// their token was set. Their threads finish on their own.
    pub still_running: Vec<JobInfo>,
}

impl ShutdownReport {
    /// True when every worker finished in time.
    pub fn is_clean(&self) -> bool {
        self.still_running.is_empty()
    }
}

impl fmt::Display for ShutdownReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_clean() {
            return write!(
                f,
                "pool shut down cleanly ({} queued jobs cancelled)",
                self.cancelled
            );
        }
        write!(
            f,
            "pool shut down with {} job{} still running ({} queued jobs cancelled):",
            self.still_running.len(),
            if self.still_running.len() == 1 {
                ""
            } else {
                "s"
            },
            self.cancelled
        )?;
        for job in &self.still_running {
            write!(
                f,
                "\n  {job}: running for {:.1?}, token {}",
                job.running_for(),
                if job.token_set { "set" } else { "not set" }
            )?;
        }
        Ok(())
    }
}

/// How to shut down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Finish the queue, join.
    Graceful,
    /// Cancel the queue, set tokens, join.
    Now,
    /// Finish the queue for at most this long, then cancel the rest and leave stragglers.
    Timeout(Duration),
    /// Dropped while panicking: cancel the queue, set tokens, wait for nothing.
    Abandon,
}

/// The pool's state, shared by its handles and its worker threads.
pub(crate) struct Shared {
    pub(crate) id: u64,
    pub(crate) config: Config,
    /// Starts a worker thread: at build, for a dead worker's replacement, for a retry.
    pub(crate) start_thread: StartThread,
    /// Observers attached to the jobs `spawn` builds (`observers.rs`).
    observers: Observers,
    /// Jobs submitted from outside the pool.
    pub(crate) injector: Injector<Job>,
    /// One per worker, in worker order: how others steal from its deque.
    pub(crate) stealers: Box<[Stealer<Job>]>,
    /// Jobs pushed so far. Jobs queued = pushed - taken by workers - drained. Each side
    /// counts on its own cache line: a counter that submitters increment and workers
    /// decrement would bounce between their cores on every job.
    pushed: CachePadded<AtomicU64>,
    /// Per worker: the job it runs and its counters (`Slot`).
    slots: Box<[CachePadded<Slot>]>,
    /// Free slots of a bounded queue.
    admission: Option<Arc<Semaphore>>,
    /// `CLOSED` bit + submissions in progress (see `enter`).
    gate: CachePadded<AtomicUsize>,
    /// Set by shutdown once the gate is closed *and* empty: from then on no job can
    /// arrive, so a worker with nothing to do may leave. (The gate's count alone cannot
    /// say so: a refused submitter counts itself in for an instant before backing out.)
    sealed: AtomicBool,
    /// Workers parked or about to park; written under `sleep`, read by submitters.
    idle: CachePadded<AtomicUsize>,
    sleep: Mutex<()>,
    wake: Condvar,
    broken: AtomicBool,
    /// Some worker slot has no thread (its start failed); submissions retry now and then.
    orphaned: AtomicBool,
    pub(crate) life: Mutex<Life>,
    /// Signalled when a worker thread leaves its loop.
    exited: Condvar,
    /// Outcomes not counted by a worker (jobs run by the caller, jobs drained at
    /// shutdown), and rejections.
    counters: Counters,
    /// Jobs taken off the queues by shutdown (`drain`).
    drained: AtomicU64,
}

/// One worker's own state. Only that worker writes its counters (with a plain load and
/// store, no locked instruction), and the slot has a cache line to itself.
#[derive(Default)]
struct Slot {
    /// The job it is running, so shutdown can set its token and name it.
    running: Mutex<Option<JobRef>>,
    /// Jobs it took off a queue.
    taken: AtomicU64,
    completed: AtomicU64,
    panicked: AtomicU64,
    cancelled: AtomicU64,
    expired: AtomicU64,
}

/// Adds one to a counter only the calling thread writes.
fn bump(counter: &AtomicU64) {
    counter.store(counter.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
}

/// Worker threads' lives, under `Shared::life`.
#[derive(Default)]
pub(crate) struct Life {
    /// Threads in their loop (counted before a start attempt, uncounted if it fails).
    pub(crate) live: usize,
    pub(crate) threads: Vec<JoinHandle<()>>,
    /// Deques whose thread could not be started, by worker slot.
    orphans: Vec<(usize, Worker<Job>)>,
    last_retry: Option<Instant>,
    /// A shutdown gave up on running jobs: their threads are not joined.
    detached: bool,
}

#[derive(Default)]
struct Counters {
    completed: AtomicU64,
    panicked: AtomicU64,
    cancelled: AtomicU64,
    expired: AtomicU64,
    rejected: AtomicU64,
}

/// One submission inside the gate (see `Shared::enter`); leaves it when dropped.
pub(crate) struct Inside<'a> {
    shared: &'a Shared,
}

impl Drop for Inside<'_> {
    fn drop(&mut self) {
        self.shared.gate.fetch_sub(SUBMISSION, Ordering::AcqRel);
    }
}

/// What `admit` decided for a submission.
enum Admission {
    Queued,
    Refused(Rejected),
    RunHere(Job),
}

impl Shared {
    /// A pool's state, and the deques of its workers (one each, in worker order) for the
    /// threads about to start.
    pub(crate) fn new(
        config: Config,
        start_thread: StartThread,
        workers: usize,
        capacity: Option<usize>,
    ) -> (Arc<Shared>, Vec<Worker<Job>>) {
        let deques: Vec<Worker<Job>> = (0..workers).map(|_| Worker::new_fifo()).collect();
        let shared = Arc::new(Shared {
            id: NEXT_POOL_ID.fetch_add(1, Ordering::Relaxed),
            observers: Observers::default(),
            config,
            start_thread,
            injector: Injector::new(),
            stealers: deques.iter().map(Worker::stealer).collect(),
            pushed: CachePadded::new(AtomicU64::new(0)),
            slots: (0..workers).map(|_| CachePadded::default()).collect(),
            admission: capacity
                .map(|capacity| Arc::new(Semaphore::new(capacity.min(Semaphore::MAX_PERMITS)))),
            gate: CachePadded::new(AtomicUsize::new(0)),
            sealed: AtomicBool::new(false),
            idle: CachePadded::new(AtomicUsize::new(0)),
            sleep: Mutex::new(()),
            wake: Condvar::new(),
            broken: AtomicBool::new(false),
            orphaned: AtomicBool::new(false),
            life: Mutex::new(Life::default()),
            exited: Condvar::new(),
            counters: Counters::default(),
            drained: AtomicU64::new(0),
        });
        (shared, deques)
    }

    // ---------------------------------------------------------------------------------
    // Submitting.
    // ---------------------------------------------------------------------------------

    /// Enters the submission gate; `None` once the pool is closed. The submission is inside
    /// until the returned guard drops, however it ends: a panic inside the gate (a spawn
    /// handler retrying a worker is user code) must not leave it counted in, or shutdown
    /// would wait for it forever.
    pub(crate) fn enter(&self) -> Option<Inside<'_>> {
        let inside = Inside { shared: self };
        let before = self.gate.fetch_add(SUBMISSION, Ordering::AcqRel);
        if before & CLOSED != 0 {
            return None; // `inside` drops here and backs out
        }
        Some(inside)
    }

    pub(crate) fn submit(self: &Arc<Self>, job: Job) -> Result<(), Rejected> {
        let Some(inside) = self.enter() else {
            return Err(Rejected {
                job,
                reason: RejectReason::Shutdown,
            });
        };
        let admission = self.admit(job);
        drop(inside);
        match admission {
            Admission::Queued => Ok(()),
            Admission::Refused(rejected) => Err(rejected),
            Admission::RunHere(job) => {
                // Overflow::CallerRuns, outside the gate so a shutdown need not wait.
                job.run_recorded(&|outcome| self.count(outcome));
                Ok(())
            }
        }
    }

    /// Decides a submission, inside the gate.
    fn admit(self: &Arc<Self>, job: Job) -> Admission {
        let refuse = |job, reason| Admission::Refused(Rejected { job, reason });
        if self.broken.load(Ordering::Acquire) {
            return refuse(job, RejectReason::Broken);
        }
        if self.orphaned.load(Ordering::Acquire) {
            self.retry_orphans();
        }
        if let Some(slots) = &self.admission
            && !job.has_permit()
        {
            match slots.clone().try_acquire_owned() {
                Ok(permit) => job.attach_permit(permit),
                Err(TryAcquireError::Closed) => return refuse(job, RejectReason::Shutdown),
                Err(TryAcquireError::NoPermits) => match self.config.overflow {
                    Overflow::Reject => {
                        self.counters.rejected.fetch_add(1, Ordering::Relaxed);
                        return refuse(job, RejectReason::Full);
                    }
                    Overflow::Wait => return refuse(job, RejectReason::Busy),
                    Overflow::CallerRuns => return Admission::RunHere(job),
                },
            }
        }
        self.push(job);
        Admission::Queued
    }

    /// Queues an admitted job: on this worker's own deque when a job submits from inside
    /// the pool, else on the injector; then wakes a worker if one sleeps.
    pub(crate) fn push(&self, job: Job) {
        self.pushed.fetch_add(1, Ordering::Relaxed);
        if let Some(job) = worker::push_local(self.id, job) {
            self.injector.push(job);
        }
        // Pairs with the fence in `park`: either that worker's last look sees this job, or
        // this load sees the worker idle.
        fence(Ordering::SeqCst);
        if self.idle.load(Ordering::SeqCst) > 0 {
            let _sleep = self.sleep.lock();
            self.wake.notify_one();
        }
    }

    // ---------------------------------------------------------------------------------
    // The workers' side.
    // ---------------------------------------------------------------------------------

    /// Parks the calling worker until a job may be available or the pool is closing.
    pub(crate) fn park(&self) {
        let mut sleep = self.sleep.lock();
        // This worker is about to sleep: announce it before the last look at the queues,
        // or a submit could slip between the look and the sleep and wake nobody.
        self.idle.fetch_add(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        if !self.has_work() && !self.may_exit() {
            self.wake.wait(&mut sleep);
        }
        self.idle.fetch_sub(1, Ordering::SeqCst);
    }

    pub(crate) fn has_work(&self) -> bool {
        !self.injector.is_empty() || self.stealers.iter().any(|s| !s.is_empty())
    }

    /// True once a worker with nothing to do may leave: no job can arrive any more (the
    /// pool is sealed), or the pool is broken.
    pub(crate) fn may_exit(&self) -> bool {
        self.sealed.load(Ordering::Acquire) || self.broken.load(Ordering::Acquire)
    }

    /// Runs a job on worker `index`. The counters are updated before the job's handle
    /// resolves (so a caller who joined sees its job counted), and kept right even if the
    /// worker dies on the way.
    pub(crate) fn run_job(&self, index: usize, job: Job) {
        /// Marks the worker idle again exactly once: when the outcome is known, or when
        /// the worker unwinds before that.
        struct Running<'a> {
            shared: &'a Shared,
            index: usize,
            ended: std::cell::Cell<bool>,
        }
        impl Running<'_> {
            fn end(&self) {
                if !self.ended.replace(true) {
                    *self.shared.slots[self.index].running.lock() = None;
                }
            }
        }
        impl Drop for Running<'_> {
            fn drop(&mut self) {
                self.end();
            }
        }
        let slot = &self.slots[index];
        *slot.running.lock() = Some(job.share());
        let running = Running {
            shared: self,
            index,
            ended: std::cell::Cell::new(false),
        };
        job.run_recorded(&|outcome| {
            running.end();
            bump(match outcome {
                Outcome::Completed => &slot.completed,
                Outcome::Panicked => &slot.panicked,
                Outcome::Skipped => &slot.cancelled,
                Outcome::Expired => &slot.expired,
            });
        });
    }

    /// Worker `index` took a job off a queue.
    pub(crate) fn took_job(&self, index: usize) {
        bump(&self.slots[index].taken);
    }

    fn count(&self, outcome: Outcome) {
        let counter = match outcome {
            Outcome::Completed => &self.counters.completed,
            Outcome::Panicked => &self.counters.panicked,
            Outcome::Skipped => &self.counters.cancelled,
            Outcome::Expired => &self.counters.expired,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// A worker left its loop normally.
    pub(crate) fn worker_exited(&self) {
        self.life.lock().live -= 1;
        self.exited.notify_all();
    }

    /// A worker thread is dying (unwinding): start another on its deque. If none can be
    /// started and no worker is left, the pool is broken. Runs during unwinding, so it
    /// must not panic.
    pub(crate) fn replace_worker(self: &Arc<Self>, index: usize, deque: Worker<Job>) {
        // The spawn handler is user code: `worker::spawn` turns a panic in it (here, during
        // unwinding, it would abort the process) into a failed start, and the deque goes
        // back to the pool through `WorkerThread`'s drop.
        if let Ok(handle) = worker::spawn(self, index, deque) {
            self.life.lock().threads.push(handle);
        }
    }

    /// A worker counted in `live` will never run: its thread could not be started, or the
    /// spawn handler dropped its `WorkerThread` without running it (even after reporting
    /// success). Uncount it, keep its deque for a later attempt, and put its jobs where the
    /// other workers will find them. With no worker left (and the pool not shutting down),
    /// the pool is broken.
    pub(crate) fn never_started(&self, index: usize, deque: Worker<Job>) {
        let mut moved = false;
        while let Some(job) = deque.pop() {
            self.injector.push(job);
            moved = true;
        }
        if moved {
            // Parked workers would not look until the next submission.
            let _sleep = self.sleep.lock();
            self.wake.notify_all();
        }
        let live = {
            let mut life = self.life.lock();
            life.orphans.push((index, deque));
            life.live -= 1;
            life.live
        };
        self.orphaned.store(true, Ordering::Release);
        self.exited.notify_all();
        // (Once sealed, the pool is shutting down: no worker left is how that ends.)
        if live == 0 && !self.sealed.load(Ordering::Acquire) {
            self.break_pool();
        }
    }

    /// Tries again to start threads for orphaned slots, at most every `RETRY_SPAWN_EVERY`.
    fn retry_orphans(self: &Arc<Self>) {
        let orphans = {
            let mut life = self.life.lock();
            if life
                .last_retry
                .is_some_and(|last| last.elapsed() < RETRY_SPAWN_EVERY)
            {
                return;
            }
            life.last_retry = Some(Instant::now());
            let orphans = std::mem::take(&mut life.orphans);
            life.live += orphans.len();
            orphans
        };
        self.orphaned.store(false, Ordering::Release);
        for (index, deque) in orphans {
            // A failure is orphaned and uncounted again by the `WorkerThread`'s drop.
            if let Ok(handle) = worker::spawn(self, index, deque) {
                self.life.lock().threads.push(handle);
            }
        }
    }

    /// No worker is left and none can be started: resolve everything as `Broken`.
    fn break_pool(&self) {
        self.broken.store(true, Ordering::Release);
        if let Some(slots) = &self.admission {
            // Every waiting submitter is woken even if one's waker panics; the panic is
            // contained (this runs on a dying worker, or inside a submission).
            wake::contain(wake::catch(|| slots.close()));
        }
        self.drain(JobError::Broken);
        let _sleep = self.sleep.lock();
        self.wake.notify_all();
    }

    /// Takes every queued job off every queue and resolves it with `error`; returns how
    /// many there were.
    fn drain(&self, error: JobError) -> usize {
        let mut drained = 0;
        let mut resolve = |job: Job| {
            self.drained.fetch_add(1, Ordering::Relaxed);
            job.resolve_counted(error.clone());
            drained += 1;
        };
        loop {
            match self.injector.steal() {
                Steal::Success(job) => resolve(job),
                Steal::Retry => continue,
                Steal::Empty => break,
            }
        }
        for stealer in self.stealers.iter() {
            loop {
                match stealer.steal() {
                    Steal::Success(job) => resolve(job),
                    Steal::Retry => continue,
                    Steal::Empty => break,
                }
            }
        }
        if error == JobError::Cancelled {
            self.counters
                .cancelled
                .fetch_add(drained as u64, Ordering::Relaxed);
        }
        drained
    }

    // ---------------------------------------------------------------------------------
    // Shutting down.
    // ---------------------------------------------------------------------------------

    fn shutdown(&self, mode: Mode) -> ShutdownReport {
        // Close the gate, and wait for the submissions already inside it (each is a few
        // pushes long) so that no job can arrive after this point.
        self.gate.fetch_or(CLOSED, Ordering::AcqRel);
        while self.gate.load(Ordering::Acquire) != CLOSED {
            thread::yield_now();
        }
        // Seal before waking the workers: a worker that looked before this sleeps and is
        // woken below; one that looks after sees the seal. Every job pushed by the
        // submissions drained above is visible to it (their exit happened-before this).
        self.sealed.store(true, Ordering::Release);
        if let Some(slots) = &self.admission {
            // Submitters waiting for room learn it is over (idempotent). Their wakers are
            // user code: a panic in one is contained so the shutdown completes.
            wake::contain(wake::catch(|| slots.close()));
        }
        let mut report = ShutdownReport::default();
        if matches!(mode, Mode::Now | Mode::Abandon) {
            report.cancelled = self.drain(JobError::Cancelled);
            self.set_running_tokens();
        }
        {
            let _sleep = self.sleep.lock();
            self.wake.notify_all();
        }
        if mode == Mode::Abandon || worker::is_worker_of(self.id) {
            // Do not wait: while panicking that could hang; on a worker, it would wait
            // for itself. The workers finish and stop on their own.
            self.life.lock().detached = true;
            return report;
        }
        // A timeout too long to add to the clock (`Duration::MAX`) waits as long as it takes.
        let deadline = match mode {
            Mode::Timeout(timeout) => Instant::now().checked_add(timeout),
            _ => None,
        };
        let mut life = self.life.lock();
        if life.detached {
            return report; // an earlier shutdown gave up on the stragglers
        }
        while life.live > 0 {
            match deadline {
                None => self.exited.wait(&mut life),
                Some(deadline) => {
                    if self.exited.wait_until(&mut life, deadline).timed_out() && life.live > 0 {
                        drop(life);
                        report.cancelled += self.drain(JobError::Cancelled);
                        self.set_running_tokens();
                        report.still_running = self.running_jobs();
                        self.life.lock().detached = true;
                        return report;
                    }
                }
            }
        }
        let threads = if life.detached {
            Vec::new()
        } else {
            std::mem::take(&mut life.threads)
        };
        drop(life);
        for thread in threads {
            let _ = thread.join(); // every worker has left its loop: this returns promptly
        }
        report
    }

    fn set_running_tokens(&self) {
        for slot in self.slots.iter() {
            if let Some(job) = &*slot.running.lock() {
                job.set_token();
            }
        }
    }

    fn running_jobs(&self) -> Vec<JobInfo> {
        self.slots
            .iter()
            .filter_map(|slot| slot.running.lock().as_ref().map(JobRef::info))
            .collect()
    }

    fn stats(&self) -> Stats {
        let counters = &self.counters;
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let sum = |field: fn(&Slot) -> &AtomicU64| -> u64 {
            self.slots.iter().map(|slot| load(field(slot))).sum()
        };
        // Read what was taken before what was pushed, so that a job pushed and taken
        // meanwhile never makes the difference negative.
        let taken = sum(|slot| &slot.taken) + load(&self.drained);
        let pushed = load(&self.pushed);
        Stats {
            workers: self.life.lock().live,
            queued: usize::try_from(pushed.saturating_sub(taken)).unwrap_or(usize::MAX),
            running: self
                .slots
                .iter()
                .filter(|slot| slot.running.lock().is_some())
                .count(),
            completed: load(&counters.completed) + sum(|slot| &slot.completed),
            panicked: load(&counters.panicked) + sum(|slot| &slot.panicked),
            cancelled: load(&counters.cancelled) + sum(|slot| &slot.cancelled),
            expired: load(&counters.expired) + sum(|slot| &slot.expired),
            rejected: load(&counters.rejected),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_submission_that_panics_inside_the_gate_still_leaves_it() {
        let pool = ThreadPool::new(1).unwrap();
        let shared = &pool.owner.shared;
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _inside = shared.enter().expect("the pool is open");
            assert_eq!(shared.gate.load(Ordering::Acquire), SUBMISSION);
            panic!("user code inside the gate");
        }));
        assert!(panicked.is_err());
        assert_eq!(
            shared.gate.load(Ordering::Acquire),
            0,
            "the guard left the gate"
        );
        pool.shutdown(); // waits for the gate to empty: returns
        assert!(shared.enter().is_none(), "closed after shutdown");
        assert_eq!(
            shared.gate.load(Ordering::Acquire),
            CLOSED,
            "a refused entry backs out"
        );
    }
}
