//! The loop's instruments: what debug mode and tracing do around each poll.
//!
//! The core holds one `Option<Instruments>`: with neither debug mode nor tracing on, a poll
//! costs the loop one branch more, nothing else. With either on, each poll is timed once
//! and the result serves both.
//!
//! Timing costs one clock read per poll, not two: within a batch of polls the end of one
//! poll is the start of the next (the loop's work between them, taking the next task off
//! the queue, is a few nanoseconds). `mark` starts a chain with a fresh reading; the loop
//! calls it before each batch and after anything between polls that runs user code (the
//! drop of an unretrieved output). With tracing on, every poll reads the clock at both
//! ends, as the trace draws exact slices.

use std::cell::Cell;
use std::io;
use std::panic::Location;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use oneloop_pool::JobObserver;

use super::clock::Clock;
use super::jobs::{JobLimits, JobWatch};
use super::trace::Tracer;
use super::watch::{Debug, PollTimer};
use super::{Code, DebugConfig, Report, Reporter, TaskInfo, summary};

pub(crate) struct Instruments {
    debug: Option<Debug>,
    trace: Option<Arc<Tracer>>,
    reporter: Arc<Reporter>,
    /// Attached to offloaded jobs (debug mode and/or the trace).
    jobs: Arc<JobWatch>,
    clock: Clock,
    /// The latest clock reading: the start of the next poll.
    last: Cell<u64>,
}

/// A poll in progress.
pub(crate) struct Probe {
    /// With tracing on: the start as an `Instant` (the trace's other events use it).
    traced: Option<Instant>,
    timer: Option<PollTimer>,
}

impl Instruments {
    /// The instruments for `debug` and `trace`, or `None` when neither is on.
    pub(crate) fn start(
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
            Some(config) => Some(Debug::start(config, clock, reporter.clone(), jobs.clone())?),
            None => None,
        };
        Ok(Some(Instruments {
            debug,
            trace,
            reporter,
            jobs,
            clock,
            last: Cell::new(clock.now()),
        }))
    }

    /// Opens the trace file for `path`.
    pub(crate) fn open_trace(path: &Path) -> io::Result<Arc<Tracer>> {
        Tracer::create(path).map(Arc::new)
    }

    /// The debug-mode site of a task spawned at `location` with `name` (0 without debug).
    pub(crate) fn intern(&self, location: &'static Location<'static>, name: Option<&str>) -> u32 {
        self.debug
            .as_ref()
            .map_or(0, |debug| debug.intern(location, name))
    }

    /// Starts a chain of polls with a fresh clock reading.
    #[inline]
    pub(crate) fn mark(&self) {
        self.last.set(self.clock.now());
    }

    /// The loop is about to poll `task` (spawned at `site`).
    #[inline]
    pub(crate) fn begin_poll(&self, task: u64, site: u32) -> Probe {
        let (start, traced) = match &self.trace {
            None => (self.last.get(), None),
            Some(trace) => {
                let at = Instant::now();
                trace.resuming(task, at, false);
                (self.clock.now(), Some(at))
            }
        };
        Probe {
            traced,
            timer: self
                .debug
                .as_ref()
                .map(|debug| debug.begin_poll(task, site, start)),
        }
    }

    /// The poll returned: draw it, and report it if it was slow.
    pub(crate) fn end_poll(
        &self,
        probe: Probe,
        task: u64,
        site: u32,
        name: Option<&str>,
        location: &'static Location<'static>,
    ) {
        let end = self.clock.now();
        self.last.set(end);
        if let (Some(trace), Some(start)) = (&self.trace, probe.traced) {
            // A job that finished during this poll may have been awaited in it already
            // (the task then has no later poll to draw the arrow's end on).
            let end = Instant::now();
            trace.resuming(task, end, true);
            trace.poll(task, name, start, end);
        }
        let (Some(debug), Some(timer)) = (&self.debug, probe.timer) else {
            return;
        };
        if let Some(slow) = debug.end_poll(timer, site, end) {
            let mut report = Report::new(Code::SlowPoll, TaskInfo::new(task, name, location));
            report.duration = Some(slow.elapsed);
            report.threshold = Some(debug.threshold);
            report.times_reported = slow.times_reported;
            self.reporter.emit(&report);
        }
    }

    /// The observer for offloaded jobs.
    pub(crate) fn job_observer(&self) -> Arc<dyn JobObserver> {
        self.jobs.clone()
    }

    /// Task `task` (if known) submitted job `job`: the start of its arrow in the trace.
    pub(crate) fn submitted(&self, task: Option<u64>, job: u64) {
        if let (Some(trace), Some(task)) = (&self.trace, task) {
            trace.submitted(task, job);
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
            let mut report = Report::empty(Code::Summary);
            report.message = Some(summary::render(debug, &self.jobs, &self.reporter));
            self.reporter.emit(&report);
        }
        if let Some(trace) = &self.trace
            && let Some(error) = trace.close()
        {
            eprintln!("oneloop: the trace file could not be written: {error}");
        }
    }
}
