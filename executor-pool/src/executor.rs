//! The `Executor` trait: anything that can run a [`Job`] on some thread.
//!
//! `ThreadPool` implements it; so can any other pool (a rayon pool behind the `rayon`
//! feature, in `rayon.rs`). A runtime submits jobs through it without knowing which pool
//! serves them: oneloop's `run_in_executor` takes any `Executor`. An executor that does not
//! take a job hands it back in a [`Rejected`], with the [`RejectReason`] a submitter
//! branches on (wait for room, give up). Jobs themselves are in `job/`.

use std::sync::Arc;

use crate::JobError;
use crate::job::{Job, JobObserver};
use crate::semaphore::Semaphore;

/// Runs jobs on other threads.
///
/// # Contract
///
/// - `execute` never blocks. It either takes the job, and then runs it exactly once (or
///   resolves it, for instance at shutdown), or hands it back in [`Rejected`].
/// - A bounded executor that wants submitters to wait for room returns
///   [`RejectReason::Busy`] and exposes the semaphore that
///   counts its free slots in [`admission`](Executor::admission). A submitter takes an owned
///   permit from it (waiting as long as it likes, asynchronously or not), attaches it to
///   the job with [`Job::attach_permit`], and submits again: a job carrying a permit is
///   never refused as full. The executor frees the slot when the job leaves its queue.
///
/// # Examples
///
/// An executor that runs every job on a new thread:
///
/// ```
/// use oneloop_pool::{Executor, Job, JobBuilder, Rejected};
///
/// struct ThreadPerJob;
///
/// impl Executor for ThreadPerJob {
///     fn execute(&self, job: Job) -> Result<(), Rejected> {
///         std::thread::spawn(move || job.run());
///         Ok(())
///     }
/// }
///
/// let (job, handle) = JobBuilder::new().build(|| 2 + 2);
/// ThreadPerJob.execute(job).unwrap();
/// assert_eq!(handle.join(), Ok(4));
/// ```
pub trait Executor: Send + Sync {
    /// Takes `job` to run on some thread, or hands it back.
    fn execute(&self, job: Job) -> Result<(), Rejected>;

    /// The semaphore counting the free slots of a bounded queue, for submitters told
    /// `Busy`. `None` (the default) for executors that never say `Busy`.
    fn admission(&self) -> Option<&Arc<Semaphore>> {
        None
    }

    /// Attaches `observer` to the jobs this executor builds itself from now on (a
    /// `ThreadPool`'s `spawn`), held weakly: it stops when the last other `Arc` of it
    /// drops. Registering one twice registers it once. The default does nothing: jobs
    /// submitted through [`execute`](Executor::execute) carry their own observer.
    fn observe(&self, observer: &Arc<dyn JobObserver>) {
        let _ = observer;
    }
}

/// A reference or a smart pointer to an executor is an executor: each call goes to the
/// executor it points to.
macro_rules! forward_executor {
    ($($pointer:ty),*) => {$(
        impl<E: Executor + ?Sized> Executor for $pointer {
            fn execute(&self, job: Job) -> Result<(), Rejected> {
                (**self).execute(job)
            }

            fn admission(&self) -> Option<&Arc<Semaphore>> {
                (**self).admission()
            }

            fn observe(&self, observer: &Arc<dyn JobObserver>) {
                (**self).observe(observer);
            }
        }
    )*};
}

forward_executor!(&E, Arc<E>, Box<E>);

/// Why an [`Executor`] did not take a job; the job comes back inside.
#[derive(Debug)]
pub struct Rejected {
    /// The job, untouched: resubmit it, run it, or resolve it with [`Job::resolve`].
    pub job: Job,
    /// Why.
    pub reason: RejectReason,
}

/// Why an executor did not take a job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RejectReason {
    /// Full, and the policy is to refuse (`Overflow::Reject`).
    Full,
    /// Full, and the policy is to wait: take a permit from the executor's
    /// [`admission`](crate::Executor::admission) semaphore, then submit again.
    Busy,
    /// Shut down.
    Shutdown,
    /// Broken.
    Broken,
}

/// Why a thread pool is broken: the only way it gets there.
pub(crate) const BROKEN: &str = "every worker thread died and none could be started again";

impl RejectReason {
    /// The error a job's handle gets when the rejection is final.
    pub fn into_job_error(self) -> JobError {
        match self {
            RejectReason::Full | RejectReason::Busy => JobError::Rejected,
            RejectReason::Shutdown => JobError::Shutdown,
            RejectReason::Broken => JobError::Broken(BROKEN.to_owned()),
        }
    }
}
