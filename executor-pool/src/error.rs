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
    /// The pool cannot run jobs any more, for the reason given (asyncio's
    /// `BrokenExecutor`): a thread pool lost every worker and could not start one again;
    /// a process pool's workers cannot start, or crash in a loop. The job never ran.
    Broken(String),
    /// The job's deadline passed before a worker could start it: it never ran.
    DeadlineExpired,
    /// The queue was full and the pool's overflow policy is `Reject`: the job never ran.
    /// (`try_spawn` hands the closure back instead.)
    Rejected,
    /// The job ran in a worker process that died before it replied: it crashed (a signal,
    /// an `exit`, an abort) or was killed. The rest of the pool carries on; the worker is
    /// replaced.
    WorkerDied(WorkerDeath),
    /// The job ran past its timeout: its worker process was killed (and replaced).
    TimedOut,
    /// The job's arguments could not be encoded for its worker process (found at submit
    /// time: it never ran), or were refused by the worker; this is the codec's message.
    Arguments(String),
    /// The job ran, but its result could not be encoded in the worker or decoded here;
    /// this is the codec's message.
    Result(String),
    /// The job crashed its worker process this many times in a row and is refused from
    /// now on (quarantined), so that one poisonous input cannot kill workers forever.
    Quarantined(u32),
    /// The executor's broker could not be reached, for the reason given (a remote
    /// executor's Redis server is down, or refused the request): the job was not queued.
    Unreachable(String),
    /// The job was started this many times by remote workers that died (or lost it)
    /// before answering, and the retry limit was reached: it is not tried again. `workers`
    /// names those that took it and did not answer, as `host:pid`.
    AttemptsExhausted {
        /// How many times it was started.
        attempts: u32,
        /// The workers that started it and never answered.
        workers: Vec<String>,
    },
}

/// How a worker process died under a job ([`JobError::WorkerDied`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct WorkerDeath {
    /// The worker's process id.
    pub pid: u32,
    /// Its exit code, if it exited.
    pub exit_code: Option<i32>,
    /// The signal that ended it, if one did (`SIGSEGV`, `SIGKILL`...).
    pub signal: Option<&'static str>,
    /// Why oneloop killed it, if oneloop did (`None`: something else did: a crash, the OOM
    /// killer, an `exit` in the function).
    pub killed_because: Option<&'static str>,
    /// The job: its function and where it was submitted.
    pub job: String,
    /// The last lines the worker wrote to its stderr.
    pub stderr_tail: String,
}

impl WorkerDeath {
    /// A worker death, as an executor of worker processes describes it.
    pub fn new(
        pid: u32,
        exit_code: Option<i32>,
        signal: Option<&'static str>,
        killed_because: Option<&'static str>,
        job: String,
        stderr_tail: String,
    ) -> Self {
        WorkerDeath {
            pid,
            exit_code,
            signal,
            killed_because,
            job,
            stderr_tail,
        }
    }

    /// The same death, while running `job`.
    pub fn running(mut self, job: String) -> Self {
        self.job = job;
        self
    }
}

impl fmt::Display for WorkerDeath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "worker process {} ", self.pid)?;
        match (self.signal, self.exit_code) {
            (Some(signal), _) => write!(f, "was killed by {signal}")?,
            (None, Some(code)) => write!(f, "exited with code {code}")?,
            (None, None) => f.write_str("ended")?,
        }
        match self.killed_because {
            Some(why) => write!(f, " (killed by oneloop: {why})")?,
            None => f.write_str(" (not by oneloop)")?,
        }
        write!(f, " while running {}", self.job)?;
        if !self.stderr_tail.is_empty() {
            write!(
                f,
                "; its last stderr lines:\n{}",
                self.stderr_tail.trim_end()
            )?;
        }
        Ok(())
    }
}

impl fmt::Display for JobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JobError::Panicked(message) => write!(f, "job panicked: {message}"),
            JobError::Cancelled => f.write_str("job was cancelled before it started"),
            JobError::Shutdown => f.write_str("the pool was shut down before the job could run"),
            JobError::Broken(reason) => write!(f, "the pool is broken: {reason}"),
            JobError::DeadlineExpired => f.write_str("the job's deadline passed before it started"),
            JobError::Rejected => {
                f.write_str("the pool's queue was full (overflow policy: Reject)")
            }
            JobError::WorkerDied(death) => write!(f, "{death}"),
            JobError::TimedOut => {
                f.write_str("the job ran past its timeout: its worker process was killed")
            }
            JobError::Arguments(message) => write!(f, "the job's arguments: {message}"),
            JobError::Result(message) => write!(f, "the job's result: {message}"),
            JobError::Quarantined(crashes) => write!(
                f,
                "the job crashed its worker {crashes} times in a row and is quarantined"
            ),
            JobError::Unreachable(reason) => {
                write!(f, "the executor's broker could not be reached: {reason}")
            }
            JobError::AttemptsExhausted { attempts, workers } => write!(
                f,
                "the job was started {attempts} times and never answered (the retry limit); \
                 the workers that took it: {}",
                workers.join(", ")
            ),
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
