//! `ThreadPool`: submission, the bounded queue's admission control, statistics. The pool is
//! built in `builder.rs`, its workers live in `worker.rs`, the state both see is in
//! `shared.rs`, and shutting it down is `shutdown.rs`.
//!
//! Jobs submitted from outside go to a global injector; jobs submitted from inside a job go
//! to that worker's own deque (`worker.rs`), where idle workers steal them. A bounded queue
//! is a [`Semaphore`] with one permit per free slot: a submission takes a permit, a worker
//! gives it back when it takes the job off the queue. When there is no permit, the
//! overflow policy decides: refuse, wait (FIFO, asynchronously through
//! [`Executor::admission`], or blocking in `spawn`), or run the job on the caller.
//!
//! Every submission passes through a gate (`gate.rs`) that shutdown closes: closing waits
//! for the submissions already inside to finish, so after it no job can slip in behind the
//! workers' backs, and every job is either run or resolved.

use std::fmt;
use std::panic::Location;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering, fence};
use std::thread;
use std::time::{Duration, Instant};

use crate::config::Overflow;
use crate::executor::Executor;
use crate::job::{CancelToken, Job, JobBuilder, JobHandle, JobObserver};
use crate::semaphore::{Semaphore, TryAcquireError};
use crate::shared::{Shared, Slot};
use crate::shutdown::{Mode, ShutdownReport, shutdown};
use crate::worker;
use crate::{JobError, RejectReason, Rejected, TrySpawnError};

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
        shutdown(&self.shared, mode);
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
        let Some(_inside) = shared.gate.enter() else {
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
            push(shared, job);
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
        match submit(shared, job) {
            Ok(()) => {}
            Err(Rejected {
                job,
                reason: RejectReason::Busy,
            }) if worker::is_worker_of(shared.id) => {
                job.run_recorded(&|outcome| shared.counters.count(outcome));
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
        shutdown(&self.owner.shared, Mode::Graceful);
    }

    /// Like [`shutdown`](Self::shutdown), but every queued job is resolved as
    /// [`JobError::Cancelled`] instead of run, and running jobs get their token set. It
    /// still waits for running jobs to return (threads cannot be killed).
    pub fn shutdown_now(&self) {
        shutdown(&self.owner.shared, Mode::Now);
    }

    /// Shuts down gracefully, waiting at most `timeout`. What is still queued then is
    /// cancelled; what is still running gets its token set, is left to finish on its own
    /// (its handle still resolves when it does), and is named in the report. A timeout too
    /// long to add to the clock (`Duration::MAX`) waits for everything, as
    /// [`shutdown`](Self::shutdown) does.
    pub fn shutdown_timeout(&self, timeout: Duration) -> ShutdownReport {
        shutdown(&self.owner.shared, Mode::Timeout(timeout))
    }

    /// True once a shutdown has begun.
    pub fn is_shutdown(&self) -> bool {
        self.owner.shared.gate.is_closed()
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
        stats(&self.owner.shared)
    }
}

impl Executor for ThreadPool {
    fn execute(&self, job: Job) -> Result<(), Rejected> {
        submit(&self.owner.shared, job)
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

/// What `admit` decided for a submission.
enum Admission {
    Queued,
    Refused(Rejected),
    RunHere(Job),
}

// -------------------------------------------------------------------------------------
// Submitting.
// -------------------------------------------------------------------------------------

/// Submits `job` through the gate: queued, refused (handed back), or run here
/// ([`Overflow::CallerRuns`]).
fn submit(shared: &Arc<Shared>, job: Job) -> Result<(), Rejected> {
    let Some(inside) = shared.gate.enter() else {
        return Err(Rejected {
            job,
            reason: RejectReason::Shutdown,
        });
    };
    let admission = admit(shared, job);
    drop(inside);
    match admission {
        Admission::Queued => Ok(()),
        Admission::Refused(rejected) => Err(rejected),
        Admission::RunHere(job) => {
            // Overflow::CallerRuns, outside the gate so a shutdown need not wait.
            job.run_recorded(&|outcome| shared.counters.count(outcome));
            Ok(())
        }
    }
}

/// Decides a submission, inside the gate.
fn admit(shared: &Arc<Shared>, job: Job) -> Admission {
    let refuse = |job, reason| Admission::Refused(Rejected { job, reason });
    if shared.broken.load(Ordering::Acquire) {
        return refuse(job, RejectReason::Broken);
    }
    if shared.orphaned.load(Ordering::Acquire) {
        worker::retry_orphans(shared);
    }
    if let Some(slots) = &shared.admission
        && !job.has_permit()
    {
        match slots.clone().try_acquire_owned() {
            Ok(permit) => job.attach_permit(permit),
            Err(TryAcquireError::Closed) => return refuse(job, RejectReason::Shutdown),
            Err(TryAcquireError::NoPermits) => match shared.config.overflow {
                Overflow::Reject => {
                    shared.counters.rejected.fetch_add(1, Ordering::Relaxed);
                    return refuse(job, RejectReason::Full);
                }
                Overflow::Wait => return refuse(job, RejectReason::Busy),
                Overflow::CallerRuns => return Admission::RunHere(job),
            },
        }
    }
    push(shared, job);
    Admission::Queued
}

/// Queues an admitted job: on this worker's own deque when a job submits from inside
/// the pool, else on the injector; then wakes a worker if one sleeps.
fn push(shared: &Shared, job: Job) {
    shared.pushed.fetch_add(1, Ordering::Relaxed);
    if let Some(job) = worker::push_local(shared.id, job) {
        shared.injector.push(job);
    }
    // Pairs with the fence in `worker::sleep`: either that worker's last look sees this
    // job, or this load sees the worker idle.
    fence(Ordering::SeqCst);
    if shared.idle.load(Ordering::SeqCst) > 0 {
        let _sleep = shared.sleep.lock();
        shared.wake.notify_one();
    }
}

/// The counters of [`ThreadPool::stats`]: the pool's own, plus every worker's slot.
fn stats(shared: &Shared) -> Stats {
    let counters = &shared.counters;
    let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
    let sum = |field: fn(&Slot) -> &AtomicU64| -> u64 {
        shared.slots.iter().map(|slot| load(field(slot))).sum()
    };
    // Read what was taken before what was pushed, so that a job pushed and taken
    // meanwhile never makes the difference negative.
    let taken = sum(|slot| &slot.taken) + load(&shared.drained);
    let pushed = load(&shared.pushed);
    Stats {
        workers: shared.life.lock().live,
        queued: usize::try_from(pushed.saturating_sub(taken)).unwrap_or(usize::MAX),
        running: shared
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gate::{CLOSED, SUBMISSION};

    #[test]
    fn a_submission_that_panics_inside_the_gate_still_leaves_it() {
        let pool = ThreadPool::new(1).unwrap();
        let shared = &pool.owner.shared;
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _inside = shared.gate.enter().expect("the pool is open");
            assert_eq!(shared.gate.word(), SUBMISSION);
            panic!("user code inside the gate");
        }));
        assert!(panicked.is_err());
        assert_eq!(shared.gate.word(), 0, "the guard left the gate");
        pool.shutdown(); // waits for the gate to empty: returns
        assert!(shared.gate.enter().is_none(), "closed after shutdown");
        assert_eq!(shared.gate.word(), CLOSED, "a refused entry backs out");
    }
}
