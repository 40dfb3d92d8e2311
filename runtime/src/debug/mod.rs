//! Debug mode and tracing: find the code that blocks the loop, say what to do about it, and
//! draw the timeline.
//!
//! Turned on by [`Builder::debug`](crate::Builder::debug) or `ONELOOP_DEBUG=1`. The loop
//! then times polls, quick ones in groups that share a clock reading (`watch/windows.rs`, loop
//! side), and a watchdog thread (`watch/watchdog.rs`) looks at them: any poll it finds
//! running is timed alone, and one *still* running past the threshold is reported, with a
//! backtrace of the loop thread on Linux (`stack/`); offloaded jobs are watched too
//! (`jobs.rs`). The runtime prints a profile when it drops (`summary.rs`), and one that
//! never drops is reported when the process exits (`leaks.rs`). Tracing
//! ([`Builder::trace_file`](crate::Builder::trace_file), `ONELOOP_TRACE`) writes every poll
//! and job to a timeline file (`trace.rs`), flushed on SIGINT and SIGTERM too
//! (`signals.rs`). Which frames of a backtrace are the user's is `frames.rs`. Both hang
//! off one `Instruments` value (`instruments.rs`): with neither on, a poll costs the loop
//! one branch more.
//!
//! Everything found is a [`Report`] with a stable [`Code`] (`report.rs`), handed through
//! the `Reporter` (`reporter.rs`) to the sink set by
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
mod reporter;
#[cfg(unix)]
pub(crate) mod signals;
pub(crate) mod stack;
mod summary;
pub(crate) mod trace;
pub(crate) mod watch;

pub(crate) use config::DebugConfig;
pub use oneloop_pool::JobInfo;
pub(crate) use report::Millis;
pub use report::{Backtrace, Code, Report, TaskInfo};
pub(crate) use reporter::{Reporter, Sink, stderr_sink};
