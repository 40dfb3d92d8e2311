//! Errors: why a job produced no value (`JobError`), and why `try_spawn` refused a closure
//! (`TrySpawnError`, which hands the closure back). Why an `Executor` refused a job
//! (`Rejected`, which hands the job back) is the executor's contract, in `executor.rs`.

use std::fmt;

/// Why a job produced no value.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum JobError {
    /// The job panicked; this is the panic's message. The worker and the pool carry on.
    Panicked(String),
    /// The job was cancelled before it started (its handle was cancelled or dropped, or
    /// the pool was shut down with `shutdown_now`): it never ran.
    Cancelled,
    /// The pool had been shut down when the job was submitted: it never ran.
    Shutdown,
    /// The pool lost its workers and could not replace them (asyncio's
    /// `BrokenExecutor`): the job never ran, or its worker died under it.
    Broken,
    /// The job's deadline passed before a worker could start it: it never ran.
    DeadlineExpired,
    /// The queue was full and the pool's overflow policy is `Reject`: the job never ran.
    /// (`try_spawn` hands the closure back instead.)
    Rejected,
}

impl fmt::Display for JobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JobError::Panicked(message) => write!(f, "job panicked: {message}"),
            JobError::Cancelled => f.write_str("job was cancelled before it started"),
            JobError::Shutdown => f.write_str("the pool was shut down before the job could run"),
            JobError::Broken => {
                f.write_str("the pool is broken: its workers died and could not be replaced")
            }
            JobError::DeadlineExpired => f.write_str("the job's deadline passed before it started"),
            JobError::Rejected => {
                f.write_str("the pool's queue was full (overflow policy: Reject)")
            }
        }
    }
}

impl std::error::Error for JobError {}

/// Why [`ThreadPool::try_spawn`](crate::ThreadPool::try_spawn) refused a closure; the
/// closure comes back inside, never dropped.
#[derive(PartialEq, Eq)]
pub enum TrySpawnError<F> {
    /// The queue is at capacity.
    Full(F),
    /// The pool has been shut down.
    Shutdown(F),
    /// The pool is broken.
    Broken(F),
}

impl<F> TrySpawnError<F> {
    /// The closure that was not submitted.
    pub fn into_inner(self) -> F {
        match self {
            TrySpawnError::Full(f) | TrySpawnError::Shutdown(f) | TrySpawnError::Broken(f) => f,
        }
    }
}

impl<F> fmt::Debug for TrySpawnError<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrySpawnError::Full(_) => f.write_str("Full(..)"),
            TrySpawnError::Shutdown(_) => f.write_str("Shutdown(..)"),
            TrySpawnError::Broken(_) => f.write_str("Broken(..)"),
        }
    }
}

impl<F> fmt::Display for TrySpawnError<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrySpawnError::Full(_) => f.write_str("the pool's queue is full"),
            TrySpawnError::Shutdown(_) => f.write_str("the pool has been shut down"),
            TrySpawnError::Broken(_) => f.write_str("the pool is broken"),
        }
    }
}

impl<F> std::error::Error for TrySpawnError<F> {}
