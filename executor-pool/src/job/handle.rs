//! [`JobHandle`]: the caller's side of a job, a future (or a blocking `join`) for its
//! result. It reads the slot (`cell.rs`) through `TypedJob`; built with its [`Job`]
//! (`mod.rs`) by `builder.rs`.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use super::{JobInfo, TypedJob};
use crate::JobError;
use crate::waiting::{self, WaitingOn};

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

impl<T> JobHandle<T> {
    /// The handle of a job just built (`builder.rs`).
    pub(super) fn new(job: Arc<dyn TypedJob<T>>) -> Self {
        JobHandle { job: Some(job) }
    }
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
