//! Shutting a pool down: the modes ([`ThreadPool::shutdown`](crate::ThreadPool::shutdown),
//! `shutdown_now`, `shutdown_timeout`, and dropping the last handle while panicking) and
//! what [`ShutdownReport`] says was left behind. Shutdown closes and seals the submission
//! gate (`gate.rs`), so after it no job can arrive; then it runs or resolves every queued
//! job, wakes the workers so they see the seal and leave (`worker.rs`), and joins them.
//! The pool's handles call it (`pool.rs`); it works on the shared state (`shared.rs`).

use std::fmt;
use std::time::{Duration, Instant};

use crate::JobError;
use crate::job::{JobInfo, JobRef};
use crate::shared::Shared;
use crate::worker;

/// How to shut down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Finish the queue, join.
    Graceful,
    /// Cancel the queue, set tokens, join.
    Now,
    /// Finish the queue for at most this long, then cancel the rest and leave stragglers.
    Timeout(Duration),
    /// Dropped while panicking: cancel the queue, set tokens, wait for nothing.
    Abandon,
}

/// What [`ThreadPool::shutdown_timeout`](crate::ThreadPool::shutdown_timeout) left behind.
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

/// Shuts the pool down as `mode` says: closes the gate, resolves or finishes what is
/// queued, and waits for the workers (or not).
pub(crate) fn shutdown(shared: &Shared, mode: Mode) -> ShutdownReport {
    // Close the gate, wait for the submissions already inside it, and seal it, before
    // waking the workers: a worker that looked before the seal sleeps and is woken below;
    // one that looks after sees the seal, and every job pushed before it.
    shared.gate.close();
    // Submitters waiting for room learn it is over.
    shared.close_admission();
    let mut report = ShutdownReport::default();
    if matches!(mode, Mode::Now | Mode::Abandon) {
        report.cancelled = shared.drain(JobError::Cancelled);
        set_running_tokens(shared);
    }
    shared.wake_all_workers();
    if mode == Mode::Abandon || worker::is_worker_of(shared.id) {
        // Do not wait: while panicking that could hang; on a worker, it would wait
        // for itself. The workers finish and stop on their own.
        shared.life.lock().detached = true;
        return report;
    }
    // A timeout too long to add to the clock (`Duration::MAX`) waits as long as it takes.
    let deadline = match mode {
        Mode::Timeout(timeout) => Instant::now().checked_add(timeout),
        _ => None,
    };
    let mut life = shared.life.lock();
    if life.detached {
        return report; // an earlier shutdown gave up on the stragglers
    }
    while life.live > 0 {
        match deadline {
            None => shared.exited.wait(&mut life),
            Some(deadline) => {
                if shared.exited.wait_until(&mut life, deadline).timed_out() && life.live > 0 {
                    drop(life);
                    report.cancelled += shared.drain(JobError::Cancelled);
                    set_running_tokens(shared);
                    report.still_running = running_jobs(shared);
                    shared.life.lock().detached = true;
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

/// Tells every running job to stop, through its token.
fn set_running_tokens(shared: &Shared) {
    for slot in shared.slots.iter() {
        if let Some(job) = &*slot.running.lock() {
            job.set_token();
        }
    }
}

/// The jobs running now, for the report of a shutdown that stopped waiting for them.
fn running_jobs(shared: &Shared) -> Vec<JobInfo> {
    shared
        .slots
        .iter()
        .filter_map(|slot| slot.running.lock().as_ref().map(JobRef::info))
        .collect()
}
