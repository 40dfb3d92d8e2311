//! Debug mode and tracing: find the code that blocks the loop, say what to do about it, and
//! draw the timeline.
//!
//! Turned on by [`Builder::debug`](crate::Builder::debug) or `ONELOOP_DEBUG=1`; the builder
//! reads the environment and hands this module a finished `DebugConfig`. The loop then
//! times polls, quick ones in groups that share a clock reading, and a watchdog thread
//! looks at them: any poll it finds running is timed alone, and one *still* running past
//! the threshold is reported, with a backtrace of the loop thread on Linux; offloaded jobs
//! are watched too. The runtime prints a profile when it drops, and one that never drops is
//! reported when the process exits. Tracing
//! ([`Builder::trace_file`](crate::Builder::trace_file), `ONELOOP_TRACE`) writes every poll
//! and job to a timeline file, flushed on SIGINT and SIGTERM too. Both hang off one
//! `Instruments` value: with neither on, a poll costs the loop one branch more.
//!
//! Everything found is a [`Report`] with a stable [`Code`], handed through the `Reporter`
//! to the sink set by [`Builder::on_report`](crate::Builder::on_report) (one line on
//! stderr by default). Some reports do not need debug mode, because they cost nothing
//! until they happen: a task that panicked with nobody left to retrieve the panic
//! (`OL003`), tasks stuck in a `JoinHandle` cycle (`OL011`), a default pool that cannot
//! start (`OL012`), and a loop that can never make progress again (a panic, see
//! `DeadlockCheck` in `deadlock.rs`).
//!
//! # Layout
//!
//! - `config.rs`: the finished settings debug mode starts from.
//! - `instruments.rs`: what the loop calls around each poll; owns everything below.
//! - `watch/`: the poll watch. `windows.rs` times polls in windows and counts sites,
//!   `finding.rs` is what a closed window hands back, `watchdog.rs` is the watchdog thread,
//!   `shared.rs` the record the two publish to each other through.
//! - `clock.rs`: the cheap clock polls are timed with.
//! - `stack/`: the loop thread's backtrace. `capture.rs` looks at the thread (`/proc`
//!   first), `signal.rs` is the handler that copies its stack, `blocked.rs` names a system
//!   call, `unwind.rs` walks the copy; `frames.rs` trims it to the user's frames.
//! - `jobs.rs`: offloaded jobs watched from submission to their end.
//! - `deadlock.rs`: `DeadlockCheck`, the proof that nothing can progress (what each task
//!   waits on is noted in `task/waiting.rs`).
//! - `leaks.rs`: runtimes never dropped, reported at exit.
//! - `summary.rs`: the exit summary.
//! - `trace.rs`: the timeline file; `signals.rs` flushes it on SIGINT and SIGTERM.
//! - `report.rs`: the reports and how they print; `reporter.rs`: where they go.

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
