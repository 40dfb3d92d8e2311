//! The default pool: the `ThreadPool` behind `to_thread`, one per runtime, started on its
//! first use and shut down with the runtime.
//!
//! Kept apart from the offload entry points (`offload/mod.rs`) so the loop (`runtime.rs`)
//! owns it without importing the code that looks the loop up.

use std::cell::RefCell;
use std::time::{Duration, Instant};

use oneloop_pool::ThreadPool;

use crate::debug::{Code, Report, Reporter};

/// How long after a failed attempt to start the default pool the next one may be made.
/// Each attempt starts threads until the OS refuses one, then stops them all: retrying on
/// every `to_thread` would spend that much per call, on the loop. A second is rare enough
/// to cost nothing, and soon enough to recover once threads are available again.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// The lazily started default pool of one runtime, used on its loop thread only.
pub(crate) struct DefaultPool {
    /// Written by the first `get` that builds it; taken by `shutdown`.
    pool: RefCell<Option<ThreadPool>>,
    /// When building the pool last failed, and why (written and read by `get`): the next
    /// attempt waits `RETRY_AFTER` after it, so a burst of `to_thread` calls against an OS
    /// that refuses threads does not start and stop a pool each.
    failed: RefCell<Option<(Instant, String)>>,
    /// `Builder::default_pool_workers`.
    workers: usize,
    /// `Builder::default_pool_shutdown_timeout`: how long the runtime's drop waits for
    /// running jobs.
    shutdown_timeout: Duration,
}

impl DefaultPool {
    pub(crate) fn new(workers: usize, shutdown_timeout: Duration) -> Self {
        DefaultPool {
            pool: RefCell::new(None),
            failed: RefCell::new(None),
            workers,
            shutdown_timeout,
        }
    }

    /// The pool, started on first use; or why it is not there: the OS refused its threads
    /// (reported as `OL012`, and tried again on a later call, at most once per
    /// `RETRY_AFTER`; until then the same reason at once, with no report).
    pub(crate) fn get(&self, reporter: &Reporter) -> Result<ThreadPool, String> {
        if let Some(pool) = &*self.pool.borrow() {
            return Ok(pool.clone());
        }
        if let Some((at, why)) = &*self.failed.borrow()
            && at.elapsed() < RETRY_AFTER
        {
            return Err(why.clone());
        }
        let built = ThreadPool::builder()
            .workers(self.workers)
            .thread_name("to_thread")
            .build();
        match built {
            Ok(pool) => {
                *self.failed.borrow_mut() = None;
                *self.pool.borrow_mut() = Some(pool.clone());
                Ok(pool)
            }
            Err(error) => {
                let why = format!(
                    "the default pool could not start its threads: {error} (asked for {} \
                     workers)",
                    self.workers
                );
                *self.failed.borrow_mut() = Some((Instant::now(), why.clone()));
                let mut report = Report::empty(Code::DefaultPoolUnavailable);
                report.message = Some(format!("{error} (asked for {} workers)", self.workers));
                reporter.emit(&report);
                Err(why)
            }
        }
    }

    /// The runtime is dropping and its tasks are gone, and with them every handle to a job
    /// that had not started (those jobs are cancelled). Waits a while for the running ones
    /// (while panicking, not at all); reports `OL007` if some were still running.
    pub(crate) fn shutdown(&self, reporter: &Reporter) {
        let Some(pool) = self.pool.borrow_mut().take() else {
            return;
        };
        let timeout = if std::thread::panicking() {
            Duration::ZERO
        } else {
            self.shutdown_timeout
        };
        let report = pool.shutdown_timeout(timeout);
        if !report.is_clean() {
            let report =
                Report::about_pool(Code::PoolShutdownIncomplete, report.to_string(), timeout);
            reporter.emit(&report);
        }
    }
}
