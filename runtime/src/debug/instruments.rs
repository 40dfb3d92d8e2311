//! The loop's instruments: what debug mode and tracing do around each poll.
//!
//! The core holds one `Option<Instruments>`: with neither debug mode nor tracing on, a poll
//! costs the loop one branch more, nothing else.
//!
//! Debug mode times polls in windows (`watch/`): most polls cost it no clock reading at
//! all. Tracing reads the clock at both ends of every poll, as the trace draws exact
//! slices.

use std::io;
use std::panic::Location;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Instant;

use oneloop_pool::JobObserver;

use super::clock::Clock;
use super::jobs::{JobLimits, JobWatch, PoolWatch};
use super::leaks::{self, Registration, Running};
use super::trace::Tracer;
pub(crate) use super::watch::Activity;
use super::watch::{Finding, PollTimer, PollWatch, UnseenSite};
use super::{Code, DebugConfig, Report, Reporter, summary};

pub(crate) struct Instruments {
    debug: Option<PollWatch>,
    /// In debug mode, the runtime's entry in the registry of runtimes not dropped yet
    /// (`leaks.rs`); leaves it when the runtime drops.
    registration: Option<Registration>,
    trace: Option<Arc<Tracer>>,
    reporter: Arc<Reporter>,
    /// Attached to offloaded jobs (debug mode and/or the trace).
    jobs: Arc<JobWatch>,
    /// `jobs` as registered with pools (`PoolWatch`): the only strong reference.
    pool_watch: Arc<dyn JobObserver>,
    /// With debug mode and a trace: while this is held, the watchdog's job scan takes the
    /// default action of a SIGINT/SIGTERM after flushing the trace (`signals.rs`). Given
    /// up by `finish`, once the watchdog has stopped and the trace is closed.
    #[cfg(unix)]
    signal_watch: parking_lot::Mutex<Option<super::signals::Watching>>,
}

/// A poll in progress.
pub(crate) struct Probe {
    /// With tracing on: the start as an `Instant` (the trace's other events use it).
    traced: Option<Instant>,
    timer: Option<PollTimer>,
}

impl Instruments {
    /// The instruments for `debug` and `trace`, or `None` when neither is on.
    /// The instruments of runtime `id`, if debug mode or tracing is on.
    pub(crate) fn start(
        id: u64,
        debug: Option<DebugConfig>,
        trace: Option<Arc<Tracer>>,
        reporter: Arc<Reporter>,
    ) -> io::Result<Option<Instruments>> {
        if debug.is_none() && trace.is_none() {
            return Ok(None);
        }
        let limits = debug.map(|config| JobLimits {
            threshold: config.threshold,
            limit: config.job_limit,
        });
        let jobs = Arc::new(JobWatch::new(limits, trace.clone(), reporter.clone()));
        let clock = Clock::new();
        let debug = match debug {
            Some(config) => Some(PollWatch::start(
                config,
                clock,
                reporter.clone(),
                jobs.clone(),
            )?),
            None => None,
        };
        let registration = debug
            .is_some()
            .then(|| leaks::register(id, reporter.clone()));
        #[cfg(unix)]
        let signal_watch = match (&debug, &trace, limits) {
            (Some(_), Some(_), Some(limits))
                if limits.threshold <= super::signals::MAX_DEFERRAL =>
            {
                Some(super::signals::watching())
            }
            _ => None,
        };
        Ok(Some(Instruments {
            #[cfg(unix)]
            signal_watch: parking_lot::Mutex::new(signal_watch),
            debug,
            registration,
            trace,
            reporter,
            pool_watch: Arc::new(PoolWatch(jobs.clone())),
            jobs,
        }))
    }

    /// Opens the trace file for `path`.
    /// In debug mode, the counter of task slots the task table keeps up to date, for the
    /// exit report of a runtime never dropped.
    /// Debug mode is on (not only tracing).
    pub(crate) fn debugging(&self) -> bool {
        self.debug.is_some()
    }

    pub(crate) fn task_count(&self) -> Option<Arc<AtomicUsize>> {
        self.registration.as_ref().map(Registration::task_count)
    }

    /// In debug mode, marks the runtime as running (inside `block_on`) until the guard
    /// drops: a process that exits under a running loop has not leaked it.
    pub(crate) fn running(&self) -> Option<Running> {
        self.registration.as_ref().map(Registration::running)
    }

    pub(crate) fn open_trace(path: &Path) -> io::Result<Arc<Tracer>> {
        Tracer::create(path).map(Arc::new)
    }

    /// The debug-mode site of a task spawned at `location` with `name` (0 without debug).
    #[inline]
    pub(crate) fn intern(&self, location: &'static Location<'static>, name: Option<&str>) -> u32 {
        self.debug
            .as_ref()
            .map_or(0, |debug| debug.intern(location, name))
    }

    /// A batch of polls begins (the loop may have slept since the last one), or user code
    /// ran between two polls (a destructor): a window of polls starts here.
    #[inline]
    pub(crate) fn mark(&self) {
        if let Some(debug) = &self.debug {
            debug.restart_window();
        }
    }

    /// The loop is about to poll `task` (spawned at `site`).
    #[inline]
    pub(crate) fn begin_poll(&self, task: u64, site: u32) -> Probe {
        let traced = self.trace.as_ref().map(|trace| {
            let at = Instant::now();
            trace.resuming(task, at, false);
            at
        });
        Probe {
            traced,
            timer: self
                .debug
                .as_ref()
                .map(|debug| debug.begin_poll(task, site)),
        }
    }

    /// The poll returned: draw it (with the task's `name`, asked only when tracing), and
    /// report it if it was slow.
    #[inline]
    pub(crate) fn end_poll<'a>(
        &self,
        probe: Probe,
        task: u64,
        site: u32,
        name: impl FnOnce() -> Option<&'a str>,
    ) {
        if let (Some(trace), Some(start)) = (&self.trace, probe.traced) {
            let name = name();
            // A job that finished during this poll may have been awaited in it already
            // (the task then has no later poll to draw the arrow's end on).
            let end = Instant::now();
            trace.resuming(task, end, true);
            trace.poll(task, name, start, end);
        }
        if let (Some(debug), Some(timer)) = (&self.debug, probe.timer)
            && let Some(finding) = debug.end_poll(timer, site)
        {
            self.report(debug, finding);
        }
    }

    /// Runs `f`, a destructor of task `task` (spawned at `site`) that the loop runs between
    /// polls, timed as a poll of that task in debug mode: a slow one is reported for that
    /// task and what it was doing, and never counted into the next task's poll.
    pub(crate) fn between_polls<R>(
        &self,
        task: u64,
        site: u32,
        activity: Activity,
        f: impl FnOnce() -> R,
    ) -> R {
        let Some(debug) = &self.debug else {
            return f();
        };
        let timer = debug.begin_activity(task, site, activity);
        let result = f();
        if let Some(finding) = debug.end_activity(timer, site) {
            self.report(debug, finding);
        }
        result
    }

    /// The batch of polls is over.
    #[inline]
    pub(crate) fn end_batch(&self) {
        if let Some(debug) = &self.debug
            && let Some(finding) = debug.end_batch()
        {
            self.report(debug, finding);
        }
    }

    #[cold]
    fn report(&self, debug: &PollWatch, finding: Finding) {
        let mut report = match finding {
            Finding::Slow(slow) => {
                let mut report = Report::new(Code::SlowPoll, slow.task);
                report.duration = Some(slow.elapsed);
                report.times_reported = slow.times_reported;
                report.message = slow.activity.describe().map(str::to_owned);
                report
            }
            Finding::Unseen(unseen) => {
                let mut report = Report::empty(Code::SlowPoll);
                let polls: usize = unseen.sites.iter().map(|site| site.polls).sum();
                let sites: Vec<String> = unseen
                    .sites
                    .iter()
                    .map(|UnseenSite { site, polls: n }| match &site.name {
                        Some(name) => format!("{n} of \"{name}\" spawned at {}", site.location),
                        None => format!("{n} of tasks spawned at {}", site.location),
                    })
                    .collect();
                report.message = Some(format!("{polls} polls: {}", sites.join(", ")));
                report.duration = Some(unseen.elapsed);
                report
            }
        };
        report.threshold = Some(debug.threshold);
        self.reporter.emit(&report);
    }

    /// The observer for offloaded jobs.
    pub(crate) fn job_observer(&self) -> Arc<dyn JobObserver> {
        self.jobs.clone()
    }

    /// The observer to register with the pools this runtime uses (`offload/`): only
    /// this runtime holds it, so it goes when the runtime does.
    pub(crate) fn pool_observer(&self) -> &Arc<dyn JobObserver> {
        &self.pool_watch
    }

    /// Task `task` (if known) submitted job `job`: the start of its arrow in the trace.
    /// The task `task` (its id and spawn site) submitted job `job`: the trace draws the
    /// arrow from it, and debug mode's job reports name it.
    pub(crate) fn submitted(&self, task: Option<(u64, u32)>, job: u64) {
        let Some((task, site)) = task else {
            return;
        };
        if let Some(trace) = &self.trace {
            trace.submitted(task, job);
        }
        if let Some(debug) = &self.debug {
            self.jobs.note_submitter(job, debug.task_info(task, site));
        }
    }

    /// Polls that ran past the threshold so far.
    pub(crate) fn slow_polls(&self) -> u64 {
        self.debug
            .as_ref()
            .map_or(0, |debug| debug.slow_polls.get())
    }

    /// The runtime is dropping: stop the watchdog, print the exit summary, close the trace.
    pub(crate) fn finish(&self) {
        if let Some(debug) = &self.debug {
            debug.stop();
            // Nothing polled, offloaded or reported: nothing to summarise.
            if let Some(text) = summary::render(debug, &self.jobs, &self.reporter) {
                let mut report = Report::empty(Code::Summary);
                report.message = Some(text);
                self.reporter.emit(&report);
            }
        }
        if let Some(trace) = &self.trace
            && let Some(error) = trace.close()
        {
            eprintln!("oneloop: the trace file could not be written: {error}");
        }
        // Last: a signal deferred meanwhile takes its default action now.
        #[cfg(unix)]
        drop(self.signal_watch.lock().take());
    }
}
