//! Long because each of the thirteen codes has its own headline and fix, which read best side
//! by side in one `match`.
//!
//! What debug mode finds, as the user receives it: a [`Report`] with its stable [`Code`],
//! the task it is about ([`TaskInfo`]), and the loop thread's [`Backtrace`] when there is
//! one; and the one line each report prints as (`Headline`, durations as `Millis`).
//!
//! Everything here is data and text. Who makes reports: the loop (`instruments.rs`), the
//! watchdog (`watch/`), the job watch (`jobs.rs`), the exit report of leaked runtimes
//! (`leaks.rs`) and the runtime itself (`runtime.rs`); where they go: `reporter.rs`. A
//! backtrace's symbols are resolved by `stack/` the first time it is displayed.

use std::fmt;
use std::panic::Location;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use oneloop_pool::JobInfo;

use crate::task::Id;

/// A stable code for each kind of [`Report`]. The README lists every code with its fix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Code {
    /// `OL001`: one poll of a task ran longer than the slow-task threshold, blocking every
    /// other task meanwhile. Reported when the poll returns. If the watchdog thread could
    /// not run for half a threshold, the polls of that gap could not be timed one by one:
    /// they are reported together, with no [`Report::task`] and the tasks and spawn sites
    /// listed in [`Report::message`].
    SlowPoll,
    /// `OL002`: a poll is *still* running past the threshold (reported by the watchdog while
    /// it runs, again at doubling intervals, with a backtrace of the loop thread on Linux).
    StillBlocking,
    /// `OL003`: a task panicked and nobody retrieved the panic (its `JoinHandle` was
    /// dropped or detached), like asyncio's "Task exception was never retrieved".
    PanicNotRetrieved,
    /// `OL004`: an offloaded job has waited in the pool's queue longer than the threshold
    /// for a worker: the pool is too small for its load. Reported by the watchdog while it
    /// still waits (again at doubling waits), else when it starts, or when it is cancelled
    /// after waiting that long; [`JobInfo::started`] and [`JobInfo::token_set`] in
    /// [`Report::job`] say which.
    JobWaited,
    /// `OL005`: an offloaded job has been running longer than the slow-job limit (the
    /// watchdog, while it runs; again at doubling intervals).
    JobStillRunning,
    /// `OL006`: an offloaded job panicked and nobody awaited its result, or the `Drop` of
    /// a result nobody awaited panicked on the worker ([`Report::message`] says which).
    JobPanicNotRetrieved,
    /// `OL007`: the runtime's default pool still had jobs running when the runtime was
    /// dropped and its shutdown timeout ran out; their threads are left to finish alone.
    PoolShutdownIncomplete,
    /// `OL008`: the exit summary of debug mode, printed when the runtime drops: the
    /// slowest polls by task, the longest job waits and runs by submit site, and the count
    /// of each report. Nothing to fix: a map of where the time went.
    Summary,
    /// `OL009`: the process exited and a debug-mode runtime was never dropped (nor
    /// running): its tasks, its watchdog thread and its default pool's threads leaked. The
    /// usual cause is a task holding an `Rc` of its own runtime (a cycle: the runtime owns
    /// the task, the task owns the runtime), or `mem::forget`; give tasks a
    /// [`Handle`](crate::Handle) or a `Weak` instead. [`Report::message`] names the
    /// runtime, its loop thread and its task count.
    RuntimeLeaked,
    /// `OL010`: for a while ([`Builder::stall_report_after`](crate::Builder::stall_report_after),
    /// 10 s by default) nothing ran, no timer or socket could wake the loop, and every
    /// pending task waited on oneloop channels and semaphores: most likely a deadlock
    /// through them (two tasks awaiting each other's oneshot, a task awaiting a permit it
    /// holds itself, a receiver whose only sender its own task holds). Not a panic: a
    /// sender or a permit may be on another thread that has just not used it yet.
    /// [`Report::message`] lists every task with what it waits on. Debug mode only: a
    /// program fed by a thread (a daemon waiting for its next message) can be quiet the
    /// same way.
    Stalled,
    /// `OL011`: tasks wait on each other's `JoinHandle`s in a cycle, so none of them can
    /// ever finish, while the `block_on` future can still complete (a timer, a socket or a
    /// thread can wake it); when it cannot, `block_on` panics instead. Always on (it costs
    /// nothing until it happens). [`Report::message`] lists every task with what it waits
    /// on.
    JoinCycle,
    /// `OL012`: the runtime's default pool could not start its threads (the OS refused
    /// them: a thread or memory limit), so `to_thread` resolves its jobs to
    /// [`JobError::Broken`](oneloop_pool::JobError::Broken). The runtime tries to build
    /// the pool again on a later `to_thread`, at most once a second, and reports each
    /// failed attempt.
    DefaultPoolUnavailable,
    /// `OL013` (debug mode): a worker process of a process pool (`oneloop-process`) died
    /// under a call made from this runtime, or was killed at its timeout or cancellation.
    /// The call fails alone (`JobError::WorkerDied`, `TimedOut` or `Cancelled`) and the
    /// worker is replaced; [`Report::message`] describes the death (pid, signal or exit
    /// code, who killed it and why, the last lines of its stderr).
    WorkerDied,
}

impl Code {
    /// The code as printed: `"OL001"`, `"OL002"`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            Code::SlowPoll => "OL001",
            Code::StillBlocking => "OL002",
            Code::PanicNotRetrieved => "OL003",
            Code::JobWaited => "OL004",
            Code::JobStillRunning => "OL005",
            Code::JobPanicNotRetrieved => "OL006",
            Code::PoolShutdownIncomplete => "OL007",
            Code::Summary => "OL008",
            Code::RuntimeLeaked => "OL009",
            Code::Stalled => "OL010",
            Code::JoinCycle => "OL011",
            Code::DefaultPoolUnavailable => "OL012",
            Code::WorkerDied => "OL013",
        }
    }

    /// Every code, in order.
    pub const ALL: [Code; 13] = [
        Code::SlowPoll,
        Code::StillBlocking,
        Code::PanicNotRetrieved,
        Code::JobWaited,
        Code::JobStillRunning,
        Code::JobPanicNotRetrieved,
        Code::PoolShutdownIncomplete,
        Code::Summary,
        Code::RuntimeLeaked,
        Code::Stalled,
        Code::JoinCycle,
        Code::DefaultPoolUnavailable,
        Code::WorkerDied,
    ];

    /// Its position in [`Code::ALL`] (the reporter counts reports by it).
    pub(super) fn index(self) -> usize {
        Code::ALL.iter().position(|&c| c == self).unwrap_or(0)
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which task a [`Report`] is about.
#[derive(Clone, Debug)]
pub struct TaskInfo {
    /// The task's id (`#0` is the `block_on` future).
    pub id: Id,
    /// The name given with [`task::Builder::name`](crate::task::Builder::name); the
    /// `block_on` future is named `main`.
    pub name: Option<String>,
    /// Where the task was spawned (or where `block_on` was called).
    pub location: &'static Location<'static>,
}

impl fmt::Display for TaskInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "task {}", self.id)?;
        if let Some(name) = &self.name {
            write!(f, " \"{name}\"")?;
        }
        write!(f, " spawned at {}", self.location)
    }
}

impl TaskInfo {
    pub(crate) fn new(id: u64, name: Option<&str>, location: &'static Location<'static>) -> Self {
        TaskInfo {
            id: Id(id),
            name: name.map(str::to_owned),
            location,
        }
    }
}

/// One finding of debug mode, handed to the report sink.
///
/// Its `Display` is the line printed by the default sink: it starts with `oneloop:` and the
/// code, and holds the task's id, name, spawn site and the time involved, so it can be
/// grepped. A backtrace, when there is one, follows on the next lines.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Report {
    /// What kind of report this is.
    pub code: Code,
    /// The task concerned (`OL001` to `OL003`; `None` for polls reported together).
    pub task: Option<TaskInfo>,
    /// The offloaded job concerned (`OL004` to `OL006`).
    pub job: Option<JobInfo>,
    /// How long the poll ran (`OL001`), or has run so far (`OL002`); how long the job
    /// waited (`OL004`) or has run so far (`OL005`).
    pub duration: Option<Duration>,
    /// The threshold in force (the slow-task threshold, or the slow-job limit for `OL005`).
    pub threshold: Option<Duration>,
    /// For `OL001`: how many `OL002` reports the watchdog made while this poll ran (so the
    /// report closes them: "unblocked after ..."). Zero otherwise.
    pub times_reported: u32,
    /// For `OL003`: the panic message. For `OL001` about polls timed together: how many
    /// polls of which tasks. For `OL009`: which runtime, on which thread, with how many
    /// tasks. For `OL002` (Linux): the system call the loop thread is blocked in (`blocked
    /// in recvfrom on fd 7 (socket:[1234])`), or why there is no backtrace.
    pub message: Option<String>,
    /// For `OL002`: the loop thread's stack at the moment of the report (Linux only, first
    /// report of each blocking poll).
    pub backtrace: Option<Backtrace>,
}

/// The loop thread's stack, captured by the watchdog while a poll was blocking (Linux).
///
/// Capturing takes microseconds, so reports are never delayed by it. Symbols are resolved
/// the first time the backtrace is displayed and then cached; the first resolution in a
/// process loads the program's debug info and can take a moment. Frames are listed
/// innermost first, from the interrupted code up to the task's poll.
#[derive(Clone)]
pub struct Backtrace {
    inner: Arc<BacktraceInner>,
}

struct BacktraceInner {
    ips: Vec<usize>,
    rendered: OnceLock<String>,
}

impl Backtrace {
    pub(crate) fn new(ips: Vec<usize>) -> Self {
        Backtrace {
            inner: Arc::new(BacktraceInner {
                ips,
                rendered: OnceLock::new(),
            }),
        }
    }

    /// The number of raw frames captured.
    pub fn frame_count(&self) -> usize {
        self.inner.ips.len()
    }
}

impl fmt::Display for Backtrace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &self.inner;
        f.write_str(
            inner
                .rendered
                .get_or_init(|| super::stack::render(&inner.ips)),
        )
    }
}

impl fmt::Debug for Backtrace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Backtrace({} frames)", self.inner.ips.len())
    }
}

impl Report {
    pub(crate) fn new(code: Code, task: TaskInfo) -> Self {
        Report {
            task: Some(task),
            ..Report::empty(code)
        }
    }

    pub(crate) fn about_pool(code: Code, message: String, timeout: Duration) -> Self {
        Report {
            message: Some(message),
            threshold: Some(timeout),
            ..Report::empty(code)
        }
    }

    pub(crate) fn for_job(code: Code, job: JobInfo) -> Self {
        Report {
            job: Some(job),
            ..Report::empty(code)
        }
    }

    pub(crate) fn empty(code: Code) -> Self {
        Report {
            code,
            task: None,
            job: None,
            duration: None,
            threshold: None,
            times_reported: 0,
            message: None,
            backtrace: None,
        }
    }
}

impl Report {
    /// The report's one line, without the backtrace.
    pub fn headline(&self) -> impl fmt::Display + '_ {
        Headline(self)
    }
}

struct Headline<'a>(&'a Report);

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", Headline(self))?;
        if let Some(backtrace) = &self.backtrace {
            write!(
                f,
                "\n  loop thread backtrace (innermost first):\n{backtrace}"
            )?;
        }
        Ok(())
    }
}

impl fmt::Display for Headline<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let report = self.0;
        let duration = Millis(report.duration.unwrap_or_default());
        let threshold = Millis(report.threshold.unwrap_or_default());
        let offload = "offload blocking or CPU-heavy work with to_thread or run_in_executor";
        write!(f, "oneloop: {} ", report.code)?;
        let task = match &report.task {
            Some(task) => task.to_string(),
            None => "task <unknown>".to_owned(),
        };
        // A job report names the task that submitted the job, when debug mode saw it.
        let job = match (&report.job, &report.task) {
            (Some(job), Some(by)) => format!("{job} by {by}"),
            (Some(job), None) => job.to_string(),
            (None, _) => "job <unknown>".to_owned(),
        };
        let times = report.times_reported;
        match report.code {
            Code::SlowPoll if times > 0 => write!(
                f,
                "slow {task} unblocked after {duration}{}{} (threshold {threshold}; reported \
                 {times} time{} while blocking): {offload}",
                if report.message.is_some() { " " } else { "" },
                report.message.as_deref().unwrap_or(""),
                if times == 1 { "" } else { "s" },
            ),
            Code::SlowPoll if report.task.is_none() => write!(
                f,
                "slow polls blocked the loop for up to {duration} (threshold {threshold}) while \
                 the watchdog thread could not run, so they were timed together and which one \
                 was slow is unknown; they were {}: {offload}",
                report.message.as_deref().unwrap_or("<no details>"),
            ),
            Code::SlowPoll => write!(
                f,
                "slow {task} blocked the loop for {duration}{}{} (threshold {threshold}): \
                 {offload}",
                if report.message.is_some() { " " } else { "" },
                report.message.as_deref().unwrap_or(""),
            ),
            Code::StillBlocking => write!(
                f,
                "{task} has been blocking the loop for {duration} so far (threshold \
                 {threshold}){}{}: {offload}",
                // What the loop thread is doing: "blocked in recvfrom on fd 7 (socket:[..])"
                if report.message.is_some() { ", " } else { "" },
                report.message.as_deref().unwrap_or(""),
            ),
            Code::PanicNotRetrieved => write!(
                f,
                "{task} panicked and nobody retrieved it: {}; await its JoinHandle (or use a \
                 JoinSet or TaskGroup) to handle the panic",
                report.message.as_deref().unwrap_or("<no message>"),
            ),
            Code::JobWaited => {
                // The same code while the job waits, when it starts, and when it is cancelled
                // after waiting: the job's snapshot says which.
                let waited = match &report.job {
                    Some(job) if job.started.is_none() && job.token_set => {
                        format!("was cancelled after waiting {duration} for a worker")
                    }
                    Some(job) if job.started.is_none() => {
                        format!("has been waiting {duration} for a worker so far")
                    }
                    _ => format!("waited {duration} for a worker"),
                };
                write!(
                    f,
                    "{job} {waited} (threshold {threshold}): the pool is too small for its \
                     load; give it more workers, or bound the work submitted to it"
                )
            }
            Code::JobStillRunning
                if report.job.as_ref().is_some_and(|job| job.worker.is_some()) =>
            {
                write!(
                    f,
                    "{job} has been running for {duration} so far (limit {threshold}): a stuck \
                     call holds a worker process; give it a timeout (call_with_timeout, or \
                     the pool's timeout) so its worker is killed, or cancel it"
                )
            }
            Code::JobStillRunning => write!(
                f,
                "{job} has been running for {duration} so far (limit {threshold}): a stuck job \
                 holds a worker; let it check a CancelToken between chunks of work"
            ),
            Code::JobPanicNotRetrieved => write!(
                f,
                "{job} panicked and nobody awaited its result: {}; await its handle (or \
                 join it) to handle the panic, or catch it inside the job",
                report.message.as_deref().unwrap_or("<no message>"),
            ),
            Code::PoolShutdownIncomplete => write!(
                f,
                "the default pool did not finish within {threshold} of the runtime's drop: {}; \
                 let long jobs check a CancelToken (run_in_executor_with_token), or raise \
                 Builder::default_pool_shutdown_timeout",
                report.message.as_deref().unwrap_or("<no details>"),
            ),
            Code::DefaultPoolUnavailable => write!(
                f,
                "the default pool could not start its threads: {}; to_thread fails with \
                 JobError::Broken (with this reason) until a retry (at most once a second) \
                 succeeds. Lower \
                 Builder::default_pool_workers, or raise the process's thread or memory \
                 limits",
                report.message.as_deref().unwrap_or("<no details>"),
            ),
            Code::WorkerDied => write!(
                f,
                "{job}: {}; only this call failed, and the worker was replaced. If it keeps \
                 happening, read the worker's stderr above, bound the call with a timeout \
                 (call_with_timeout) or the worker with a memory_limit",
                report
                    .message
                    .as_deref()
                    .unwrap_or("its worker process died"),
            ),
            Code::Summary => write!(
                f,
                "exit summary (debug mode):\n{}",
                report.message.as_deref().unwrap_or("  nothing recorded"),
            ),
            Code::RuntimeLeaked => write!(
                f,
                "{} was never dropped: its tasks, its watchdog thread and its default pool's \
                 threads leaked until the process exit. A task holding an `Rc` of its own \
                 runtime keeps it alive forever (the runtime owns the task, the task owns the \
                 runtime), as does `mem::forget`; give tasks a `Handle` (`rt.handle()`) or a \
                 `Weak` instead",
                report.message.as_deref().unwrap_or("a runtime"),
            ),
            Code::Stalled => write!(
                f,
                "nothing has run for {duration}, no timer or socket can wake the loop, and \
                 every task waits on a oneloop channel or semaphore: most likely a deadlock \
                 (tasks awaiting each other's channels, a task awaiting a permit or a sender \
                 it holds itself) unless another thread holds what they wait for. Waiting:{}",
                report.message.as_deref().unwrap_or(""),
            ),
            Code::JoinCycle => write!(
                f,
                "tasks wait on each other's JoinHandles in a cycle: none of them can ever \
                 finish. A task must not await, directly or through others, a task that \
                 awaits it. Waiting:{}",
                report.message.as_deref().unwrap_or(""),
            ),
        }
    }
}

/// Formats a duration the way reports print it: `850 µs`, `312.4 ms`, `1.2 s`.
#[derive(Clone, Copy)]
pub(crate) struct Millis(pub(crate) Duration);

impl fmt::Display for Millis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0.as_secs_f64();
        if secs >= 1.0 {
            write!(f, "{secs:.1} s")
        } else if secs >= 0.001 {
            let ms = secs * 1e3;
            if ms.fract() == 0.0 {
                write!(f, "{ms:.0} ms")
            } else {
                write!(f, "{ms:.1} ms")
            }
        } else {
            write!(f, "{:.0} µs", secs * 1e6)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_in_the_unit_a_reader_expects() {
        assert_eq!(Millis(Duration::from_micros(850)).to_string(), "850 µs");
        assert_eq!(
            Millis(Duration::from_micros(312_400)).to_string(),
            "312.4 ms"
        );
        assert_eq!(Millis(Duration::from_millis(50)).to_string(), "50 ms");
        assert_eq!(Millis(Duration::from_millis(1_200)).to_string(), "1.2 s");
    }

    #[test]
    fn polls_reported_together_say_so_and_list_their_tasks() {
        let mut report = Report::empty(Code::SlowPoll);
        report.duration = Some(Duration::from_millis(130));
        report.threshold = Some(Duration::from_millis(100));
        report.message = Some("4 polls: 3 of \"a\" spawned at a.rs:1:1".to_owned());
        let text = report.to_string();
        assert!(
            text.starts_with("oneloop: OL001 slow polls blocked the loop for up to 130 ms"),
            "{text}"
        );
        assert!(text.contains("could not run"), "{text}");
        assert!(
            text.contains("4 polls: 3 of \"a\" spawned at a.rs:1:1"),
            "{text}"
        );
        assert!(text.contains("to_thread or run_in_executor"), "{text}");
    }

    #[test]
    fn every_printed_report_says_what_to_do() {
        // The hint each code's line ends with (the summary is a map, not a finding).
        let hints = [
            (Code::SlowPoll, "to_thread or run_in_executor"),
            (Code::StillBlocking, "to_thread or run_in_executor"),
            (Code::PanicNotRetrieved, "await its JoinHandle"),
            (Code::JobWaited, "give it more workers"),
            (Code::JobStillRunning, "CancelToken"),
            (Code::JobPanicNotRetrieved, "await its handle"),
            (Code::PoolShutdownIncomplete, "CancelToken"),
            (Code::RuntimeLeaked, "give tasks a `Handle`"),
            (Code::Stalled, "most likely a deadlock"),
            (Code::JoinCycle, "must not await"),
            (Code::DefaultPoolUnavailable, "default_pool_workers"),
            (Code::WorkerDied, "bound the call with a timeout"),
        ];
        for code in Code::ALL {
            if code == Code::Summary {
                continue;
            }
            let (_, hint) = hints
                .iter()
                .find(|(c, _)| *c == code)
                .unwrap_or_else(|| panic!("no hint listed for {code}"));
            let text = Report::empty(code).to_string();
            assert!(text.contains(hint), "{code}: {text}");
        }
        assert_eq!(Code::DefaultPoolUnavailable.as_str(), "OL012");
        assert_eq!(Code::WorkerDied.as_str(), "OL013");
    }
}
