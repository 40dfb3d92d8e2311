//! Where reports go: the [`Reporter`] that every part of debug mode hands its findings to,
//! and the sink at its end.
//!
//! The loop (`instruments.rs`), the watchdog thread (`watch/`), the pool's workers through
//! the job watch (`jobs.rs`), the exit report of leaked runtimes (`leaks.rs`) and the runtime
//! itself share one `Reporter`. It counts each report for the exit summary (`summary.rs`),
//! draws it in the trace (`trace.rs`) when there is one, and calls the sink, containing a
//! panic there. The reports themselves are `report.rs`.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::report::{Code, Report};
use super::trace::Tracer;

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
    /// The user's sink (`Builder::on_report`) or `stderr_sink`: set when the runtime is
    /// built, called by `emit` on whichever thread reports.
    sink: Sink,
    /// Reports made so far, by `Code::index`: bumped by `emit` (any thread, relaxed: they
    /// are tallies, nothing is published through them), read by the exit summary.
    counts: [AtomicU64; Code::ALL.len()],
    /// The trace file, when tracing is on: every report is drawn in it as a marker.
    pub(crate) trace: Option<Arc<Tracer>>,
}

impl Reporter {
    pub(crate) fn new(sink: Sink, trace: Option<Arc<Tracer>>) -> Self {
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
