//! Watching offloaded jobs, for debug mode and for the trace.
//!
//! `run_in_executor` and `to_thread` attach one shared [`JobWatch`] to every job when debug
//! mode or tracing is on (`offload/`). The pool calls it on the worker thread when the
//! job starts and when it finishes.
//!
//! In debug mode every job sits in a registry from submission to its end, which the
//! watchdog thread (`watch/watchdog.rs`) scans every half threshold: a job still waiting for a
//! worker past the threshold is reported (`OL004`), one still running past the slow-job
//! limit too (`OL005`), each again at doubling intervals. A long wait not reported yet is
//! reported when the job starts, or when it is cancelled unrun. A panic nobody awaits, or
//! a panic in the `Drop` of a result nobody reads, is reported (`OL006`). Queue waits and
//! run times are also kept per submit site for the exit summary. With tracing on, each
//! start and finish is drawn, and the scan flushes the trace file once a second.
//!
//! Jobs of `run_in_executor` and `to_thread` carry this observer; so do jobs spawned
//! directly on a `ThreadPool` that a debug-mode runtime has used (`offload/` registers it
//! with the pool, weakly: a dropped runtime detaches).

use std::collections::HashMap;
use std::panic::Location;
use std::sync::Arc;
use std::time::Duration;

use oneloop_pool::{JobInfo, JobObserver, WorkerDeath};
use parking_lot::Mutex;

use super::trace::Tracer;
use super::{Code, Report, Reporter, TaskInfo};

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
    /// Jobs waiting for a worker by id, with the wait at which each is next reported and
    /// how often it was. Written by the submitter (insert), a worker or a canceller
    /// (remove), read by the watchdog (debug mode only).
    queued: Mutex<HashMap<u64, Waiting>>,
    /// Running jobs by id, with the running time at which each is next reported. Written by
    /// workers at start and finish, read by the watchdog (debug mode only).
    running: Mutex<HashMap<u64, (JobInfo, Duration)>>,
    /// Per submit site: jobs, longest queue wait, longest run (debug mode only).
    by_site: Mutex<HashMap<SiteKey, JobSiteStats>>,
    /// The task that submitted each job still queued or running (debug mode): its reports
    /// name it. Written at submission, read by reports, removed when the job ends.
    submitters: Mutex<HashMap<u64, TaskInfo>>,
}

/// A job waiting for a worker.
struct Waiting {
    info: JobInfo,
    /// The wait at which the watchdog reports it next (the threshold, then doubling).
    next: Duration,
    /// Reported while waiting: its start or cancellation says nothing more.
    reported: bool,
}

/// A submit site, by address (locations are `'static`, so the address identifies one).
type SiteKey = usize;

/// The jobs of one submit site, for the exit summary.
#[derive(Clone, Copy, Debug)]
pub(crate) struct JobSiteStats {
    pub(crate) location: &'static Location<'static>,
    pub(crate) jobs: u64,
    pub(crate) longest_wait: Duration,
    /// The longest run of the jobs that finished (`finished` of them).
    pub(crate) longest_run: Duration,
    pub(crate) finished: u64,
    /// The longest running time so far of the site's jobs still running.
    pub(crate) still_running: Option<Duration>,
    /// Jobs whose worker process died under them (crashed), and those killed by the
    /// pool (a timeout, a cancellation): process pools only.
    pub(crate) crashed: u64,
    pub(crate) killed: u64,
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
            queued: Mutex::new(HashMap::new()),
            running: Mutex::new(HashMap::new()),
            by_site: Mutex::new(HashMap::new()),
            submitters: Mutex::new(HashMap::new()),
        }
    }

    /// Reports every job waiting or running past its next report time, and flushes the
    /// trace if a second has passed since it was last flushed (called by the watchdog).
    pub(crate) fn scan(&self) {
        if let Some(trace) = &self.trace {
            trace.flush_if_due();
            // A SIGINT or SIGTERM whose default action waits for this flush.
            #[cfg(unix)]
            if let Some(signal) = super::signals::take_pending() {
                trace.flush();
                super::signals::raise_default(signal);
            }
        }
        let Some(limits) = self.limits else {
            return;
        };
        let mut waited = Vec::new();
        {
            let mut queued = self.queued.lock();
            for job in queued.values_mut() {
                let so_far = job.info.waited();
                if so_far >= job.next {
                    job.reported = true;
                    waited.push((job.info.clone(), so_far));
                    while job.next <= so_far {
                        job.next = job.next.saturating_mul(2);
                    }
                }
            }
        }
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
        // Outside the locks: the sink is user code.
        for (info, so_far) in waited {
            self.report_wait(info, so_far, limits);
        }
        for (info, ran) in due {
            let mut report = self.job_report(Code::JobStillRunning, info);
            report.duration = Some(ran);
            report.threshold = Some(limits.limit);
            self.reporter.emit(&report);
        }
    }

    fn report_wait(&self, info: JobInfo, waited: Duration, limits: JobLimits) {
        let mut report = self.job_report(Code::JobWaited, info);
        report.duration = Some(waited);
        report.threshold = Some(limits.threshold);
        self.reporter.emit(&report);
    }

    /// Job `job` was submitted by `task` (debug mode; see `Instruments::submitted`).
    pub(crate) fn note_submitter(&self, job: u64, task: TaskInfo) {
        if self.limits.is_some() {
            self.submitters.lock().insert(job, task);
        }
    }

    /// A report about job `info`, naming the task that submitted it when known.
    fn job_report(&self, code: Code, info: JobInfo) -> Report {
        let task = self.submitters.lock().get(&info.id).cloned();
        Report {
            task,
            ..Report::for_job(code, info)
        }
    }

    /// The job left the queue (started or cancelled): whether it was reported waiting.
    fn dequeued(&self, id: u64) -> bool {
        self.queued
            .lock()
            .remove(&id)
            .is_some_and(|job| job.reported)
    }

    /// Per-site job statistics, for the exit summary, with the jobs still running.
    pub(crate) fn site_stats(&self) -> Vec<JobSiteStats> {
        let mut sites = self.by_site.lock().clone();
        for (info, _) in self.running.lock().values() {
            let key = info.location as *const Location<'static> as usize;
            if let Some(stats) = sites.get_mut(&key) {
                let so_far = info.running_for();
                stats.still_running = Some(stats.still_running.unwrap_or_default().max(so_far));
            }
        }
        sites.into_values().collect()
    }
}

/// The runtime's observer as pools hold it (`Executor::observe`): a handle of its own,
/// owned by the runtime's instruments alone, so that the pools' weak references die with
/// the runtime even while jobs submitted with `run_in_executor` still hold the `JobWatch`.
pub(crate) struct PoolWatch(pub(crate) Arc<JobWatch>);

impl JobObserver for PoolWatch {
    fn submitted(&self, info: &JobInfo) {
        self.0.submitted(info);
    }

    fn cancelled(&self, info: &JobInfo) {
        self.0.cancelled(info);
    }

    fn started(&self, info: &JobInfo) {
        self.0.started(info);
    }

    fn finished(&self, info: &JobInfo) {
        self.0.finished(info);
    }

    fn unobserved_panic(&self, info: &JobInfo, message: &str) {
        self.0.unobserved_panic(info, message);
    }

    fn discarded_result_panicked(&self, info: &JobInfo, message: &str) {
        self.0.discarded_result_panicked(info, message);
    }

    fn worker_died(&self, info: &JobInfo, death: &WorkerDeath) {
        self.0.worker_died(info, death);
    }
}

impl JobObserver for JobWatch {
    fn submitted(&self, info: &JobInfo) {
        let Some(limits) = self.limits else {
            return;
        };
        let job = Waiting {
            info: info.clone(),
            next: limits.threshold,
            reported: false,
        };
        self.queued.lock().insert(info.id, job);
    }

    fn cancelled(&self, info: &JobInfo) {
        let Some(limits) = self.limits else {
            return;
        };
        let reported = self.dequeued(info.id);
        let waited = info.waited();
        if !reported && waited >= limits.threshold {
            self.report_wait(info.clone(), waited, limits);
        }
        self.submitters.lock().remove(&info.id);
    }

    fn started(&self, info: &JobInfo) {
        if let Some(trace) = &self.trace {
            trace.job_started(info);
        }
        let Some(limits) = self.limits else {
            return;
        };
        let waited = info.waited();
        let reported = self.dequeued(info.id);
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
                finished: 0,
                still_running: None,
                crashed: 0,
                killed: 0,
            });
            stats.jobs += 1;
            stats.longest_wait = stats.longest_wait.max(waited);
        }
        // Reported while it waited: that report said it all.
        if !reported && waited >= limits.threshold {
            self.report_wait(info.clone(), waited, limits);
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
        self.submitters.lock().remove(&info.id);
        let key = info.location as *const Location<'static> as usize;
        if let Some(stats) = self.by_site.lock().get_mut(&key) {
            stats.longest_run = stats.longest_run.max(info.running_for());
            stats.finished += 1;
        }
    }

    fn unobserved_panic(&self, info: &JobInfo, message: &str) {
        let mut report = self.job_report(Code::JobPanicNotRetrieved, info.clone());
        report.message = Some(message.to_owned());
        self.reporter.emit(&report);
    }

    fn discarded_result_panicked(&self, info: &JobInfo, message: &str) {
        let mut report = self.job_report(Code::JobPanicNotRetrieved, info.clone());
        report.message = Some(format!(
            "the Drop of its result, discarded on the worker, panicked: {message}"
        ));
        self.reporter.emit(&report);
    }

    fn worker_died(&self, info: &JobInfo, death: &WorkerDeath) {
        if self.limits.is_none() {
            return; // tracing alone: the call's error says it all
        }
        let key = info.location as *const Location<'static> as usize;
        if let Some(stats) = self.by_site.lock().get_mut(&key) {
            match death.killed_because {
                Some(_) => stats.killed += 1,
                None => stats.crashed += 1,
            }
        }
        let mut report = self.job_report(Code::WorkerDied, info.clone());
        report.message = Some(death.to_string());
        self.reporter.emit(&report);
    }
}
