//! [`JobBuilder`]: how a job is made, with its submit site, deadline and observer, for any
//! [`Executor`](crate::Executor). It fills in the header (`mod.rs`), makes the slot
//! (`cell.rs`) and hands back both sides: the [`Job`] and its [`JobHandle`] (`handle.rs`).

use std::fmt;
use std::panic::Location;
use std::sync::Arc;
use std::time::Instant;

use super::{CancelToken, Job, JobHandle, JobHeader, JobObserver, TokenSource, cell};

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
    /// turn), which saves a clock read per job. `at` is what [`JobInfo::submitted`](super::JobInfo::submitted) says
    /// and what the queue wait is measured from.
    pub fn submitted_at(mut self, at: Instant) -> Self {
        self.submitted = Some(at);
        self
    }

    /// If no worker has started the job by `deadline`, it fails with
    /// [`JobError::DeadlineExpired`](crate::JobError::DeadlineExpired) and never runs.
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
        let header = JobHeader::new(
            self.location,
            self.submitted.unwrap_or_else(Instant::now),
            self.deadline,
            self.observer,
        );
        let (job, typed) = cell::new(header, f);
        (job, JobHandle::new(typed))
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
