//! What a job looks like from outside: [`JobInfo`], a snapshot for reports, and the
//! [`JobObserver`] hooks a runtime attaches to watch jobs (oneloop's debug mode does). The
//! slot that fills them in is `cell.rs`; the pool's registered observers are
//! `observers.rs`.

use std::fmt;
use std::panic::Location;
use std::time::{Duration, Instant};

use crate::error::WorkerDeath;

/// A snapshot of a job, for reports and observers.
#[derive(Clone, Debug)]
#[non_exhaustive]
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
    /// The worker running it, when the executor names one (a process pool: the worker's
    /// pid).
    pub worker: Option<String>,
}

impl JobInfo {
    /// A job submitted at `location` at `submitted`, not started yet (for executors
    /// outside this crate, which describe their jobs to observers too).
    pub fn new(id: u64, location: &'static Location<'static>, submitted: Instant) -> Self {
        JobInfo {
            id,
            location,
            submitted,
            started: None,
            token_set: false,
            worker: None,
        }
    }

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
        write!(f, "job #{} submitted at {}", self.id, self.location)?;
        match &self.worker {
            Some(worker) => write!(f, " ({worker})"),
            None => Ok(()),
        }
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

    /// The worker process running the job died under it, or was killed (a timeout, a
    /// cancellation): the job resolves as `WorkerDied`, `TimedOut` or `Cancelled`, and the
    /// death is described here. (Process pools only.)
    fn worker_died(&self, info: &JobInfo, death: &WorkerDeath) {
        let _ = (info, death);
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

/// The stderr fallback for jobs without an observer, and for a pool's forward whose
/// observer is gone (`observers.rs`): the trait's own defaults.
pub(crate) struct DefaultObserver;

impl JobObserver for DefaultObserver {}
