//! Debug mode and tracing: find the code that blocks the loop, say what to do about it, and
//! draw the timeline.
//!
//! Turned on by [`Builder::debug`](crate::Builder::debug) or `ONELOOP_DEBUG=1`. The loop
//! then times polls, quick ones in groups that share a clock reading (`watch.rs`, loop
//! side), and a watchdog thread (`watch.rs`, thread side) looks at them: any poll it finds
//! running is timed alone, and one *still* running past the threshold is reported, with a
//! backtrace of the loop thread on Linux (`stack.rs`); offloaded jobs are watched too
//! (`jobs.rs`). The runtime prints a profile when it drops (`summary.rs`), and one that
//! never drops is reported when the process exits (`leaks.rs`). Tracing
//! ([`Builder::trace_file`](crate::Builder::trace_file), `ONELOOP_TRACE`) writes every poll
//! and job to a timeline file (`trace.rs`), flushed on SIGINT and SIGTERM too
//! (`signals.rs`). Which frames of a backtrace are the user's is `frames.rs`. Both hang
//! off one `Instruments` value (`instruments.rs`): with neither on, a poll costs the loop
//! one branch more.
//!
//! Everything found is a [`Report`] with a stable [`Code`], handed to the sink set by
//! [`Builder::on_report`](crate::Builder::on_report) (one line on stderr by default).
//! Some reports do not need debug mode, because they cost nothing until they happen: a
//! task that panicked with nobody left to retrieve the panic (`OL003`), tasks stuck in a
//! `JoinHandle` cycle (`OL011`), a default pool that cannot start (`OL012`), and a loop
//! that can never make progress again (a panic, see `Core::check_deadlock` and
//! `deadlock.rs`).

mod clock;
mod config;
pub(crate) mod deadlock;
pub(crate) mod frames;
pub(crate) mod instruments;
pub(crate) mod jobs;
pub(crate) mod leaks;
mod report;
#[cfg(unix)]
pub(crate) mod signals;
pub(crate) mod stack;
mod summary;
pub(crate) mod trace;
pub(crate) mod watch;

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

pub(crate) use config::DebugConfig;
pub use oneloop_pool::JobInfo;
pub(crate) use report::Millis;
pub use report::{Backtrace, Code, Report, TaskInfo};

/// Where reports go.
pub(crate) type Sink = Arc<dyn Fn(&Report) + Send + Sync>;

/// The default sink: the report on stderr. A closed stderr is ignored (there is nowhere
/// else to say it).
pub(crate) fn stderr_sink() -> Sink {
    Arc::new(|report: &Report| {
        // The line first: resolving a backtrace's symbols may take a moment, and it is done
        // before taking stderr's lock, which the loop may need for its own reports.
        let _ = writeln!(std::io::stderr().lock(), "{}", report.headline());
        if let Some(backtrace) = &report.backtrace {
            let text = backtrace.to_string();
            let about = report
                .task
                .as_ref()
                .map(|task| task.to_string())
                .unwrap_or_default();
            let _ = writeln!(
                std::io::stderr().lock(),
                "  loop thread backtrace for the {} above, {about} (innermost first):\n{text}",
                report.code
            );
        }
    })
}

/// Where every report goes: counted (for the exit summary), drawn in the trace if there is
/// one, then handed to the sink. Shared by the loop, the watchdog and the job observer.
pub(crate) struct Reporter {
    sink: Sink,
    counts: [AtomicU64; Code::ALL.len()],
    pub(crate) trace: Option<Arc<trace::Tracer>>,
}

impl Reporter {
    pub(crate) fn new(sink: Sink, trace: Option<Arc<trace::Tracer>>) -> Self {
        Reporter {
            sink,
            counts: Default::default(),
            trace,
        }
    }

    pub(crate) fn emit(&self, report: &Report) {
        self.counts[report.code.index()].fetch_add(1, Ordering::Relaxed);
        if let Some(trace) = &self.trace {
            trace.report(report);
        }
        emit(&self.sink, report);
    }

    /// How many reports of each code were made so far.
    pub(crate) fn counts(&self) -> Vec<(Code, u64)> {
        Code::ALL
            .iter()
            .map(|&code| (code, self.counts[code.index()].load(Ordering::Relaxed)))
            .filter(|&(_, n)| n > 0)
            .collect()
    }
}

/// Hands `report` to `sink`, containing a panic in the sink: a broken sink must not take
/// the loop or the watchdog down with it.
fn emit(sink: &Sink, report: &Report) {
    let result = oneloop_pool::wake::catch(|| sink(report));
    if oneloop_pool::wake::contain(result).is_none() {
        let _ = writeln!(
            std::io::stderr().lock(),
            "oneloop: the report sink panicked while handling {}",
            report.code
        );
    }
}
