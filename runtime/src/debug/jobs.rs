//! Watching offloaded jobs, for debug mode and for the trace.
//!
//! `run_in_executor` and `to_thread` attach one shared [`JobWatch`] to every job when debug
//! mode or tracing is on (`offload.rs`). The pool calls it on the worker thread when the
//! job starts and when it finishes.
//!
//! In debug mode a long queue wait is reported at start (`OL004`), a panic nobody awaits
//! is reported (`OL006`), and the job sits in a registry of running jobs that the watchdog
//! thread (`watch.rs`) scans, reporting one still running past the slow-job limit
//! (`OL005`), again at doubling intervals. Queue waits and run times are also kept per
//! submit site for the exit summary. With tracing on, each start and finish is drawn.

use std::collections::HashMap;
use std::panic::Location;
use std::sync::Arc;
use std::time::Duration;

use oneloop_pool::{JobInfo, JobObserver};
use parking_lot::Mutex;

use super::trace::Tracer;
use super::{Code, Report, Reporter};

/// Debug mode's limits for jobs.
#[derive(Clone, Copy, Debug)]
pub(crate) struct JobLimits {
    /// Queue waits longer than this are reported (the slow-task threshold).
    pub(crate) threshold: Duration,
    /// Jobs running longer than this are reported while they run.
    pub(crate) limit: Duration,
}

pub(crate) struct JobWatch {
    /// `Some` in debug mode.
    limits: Option<JobLimits>,
    trace: Option<Arc<Tracer>>,
    reporter: Arc<Reporter>,
    /// Running jobs by id, with the running time at which each is next reported. Written by
    /// workers at start and finish, read by the watchdog (debug mode only).
    running: Mutex<HashMap<u64, (JobInfo, Duration)>>,
    /// Per submit site: jobs, longest queue wait, longest run (debug mode only).
    by_site: Mutex<HashMap<SiteKey, JobSiteStats>>,
}

/// A submit site, by address (locations are `'static`, so the address identifies one).
type SiteKey = usize;

/// The jobs of one submit site, for the exit summary.
#[derive(Clone, Copy, Debug)]
pub(crate) struct JobSiteStats {
    pub(crate) location: &'static Location<'static>,
    pub(crate) jobs: u64,
    pub(crate) longest_wait: Duration,
    pub(crate) longest_run: Duration,
}

impl JobWatch {
    pub(crate) fn new(
        limits: Option<JobLimits>,
        trace: Option<Arc<Tracer>>,
        reporter: Arc<Reporter>,
    ) -> Self {
        JobWatch {
            limits,
            trace,
            reporter,
            running: Mutex::new(HashMap::new()),
            by_site: Mutex::new(HashMap::new()),
        }
    }

    /// Reports every job running past its next report time (called by the watchdog).
    pub(crate) fn scan(&self) {
        let Some(limits) = self.limits else {
            return;
        };
        let mut due = Vec::new();
        {
            let mut running = self.running.lock();
            for (info, next) in running.values_mut() {
                let ran = info.running_for();
                if ran >= *next {
                    due.push((info.clone(), ran));
                    while *next <= ran {
                        *next = next.saturating_mul(2);
                    }
                }
            }
        }
        // Outside the lock: the sink is user code.
        for (info, ran) in due {
            let mut report = Report::for_job(Code::JobStillRunning, info);
            report.duration = Some(ran);
            report.threshold = Some(limits.limit);
            self.reporter.emit(&report);
        }
    }

    /// Per-site job statistics, for the exit summary.
    pub(crate) fn site_stats(&self) -> Vec<JobSiteStats> {
        self.by_site.lock().values().copied().collect()
    }
}

impl JobObserver for JobWatch {
    fn started(&self, info: &JobInfo) {
        if let Some(trace) = &self.trace {
            trace.job_started(info);
        }
        let Some(limits) = self.limits else {
            return;
        };
        let waited = info.waited();
        self.running
            .lock()
            .insert(info.id, (info.clone(), limits.limit));
        {
            let mut by_site = self.by_site.lock();
            let key = info.location as *const Location<'static> as usize;
            let stats = by_site.entry(key).or_insert(JobSiteStats {
                location: info.location,
                jobs: 0,
                longest_wait: Duration::ZERO,
                longest_run: Duration::ZERO,
            });
            stats.jobs += 1;
            stats.longest_wait = stats.longest_wait.max(waited);
        }
        if waited >= limits.threshold {
            let mut report = Report::for_job(Code::JobWaited, info.clone());
            report.duration = Some(waited);
            report.threshold = Some(limits.threshold);
            self.reporter.emit(&report);
        }
    }

    fn finished(&self, info: &JobInfo) {
        if let Some(trace) = &self.trace {
            trace.job_finished(info);
        }
        if self.limits.is_none() {
            return;
        }
        self.running.lock().remove(&info.id);
        let key = info.location as *const Location<'static> as usize;
        if let Some(stats) = self.by_site.lock().get_mut(&key) {
            stats.longest_run = stats.longest_run.max(info.running_for());
        }
    }

    fn unobserved_panic(&self, info: &JobInfo, message: &str) {
        let mut report = Report::for_job(Code::JobPanicNotRetrieved, info.clone());
        report.message = Some(message.to_owned());
        self.reporter.emit(&report);
    }
}
