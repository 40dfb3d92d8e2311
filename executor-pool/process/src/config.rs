//! The settings a pool runs with (`Config`, made by `builder.rs`), and [`CancelRunning`].
//! Below the pool, its shared state and its supervisor, which all read them.

use std::time::Duration;

use oneloop_pool::Overflow;

/// What cancelling a *running* call does (a queued call never runs, either way).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum CancelRunning {
    /// Kill its worker process (SIGTERM, a grace period, then SIGKILL) and start a
    /// replacement: the work stops now. What a thread pool cannot do.
    #[default]
    Kill,
    /// Let it finish and discard its result (a thread pool's semantics).
    Finish,
}

/// The settings a pool runs with.
#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub(crate) workers: usize,
    /// `None`: unbounded.
    pub(crate) queue_capacity: Option<usize>,
    pub(crate) overflow: Overflow,
    /// The default time a call may run before its worker is killed.
    pub(crate) timeout: Option<Duration>,
    pub(crate) cancel_running: CancelRunning,
    /// Between SIGTERM and SIGKILL.
    pub(crate) kill_grace: Duration,
    /// Bytes of address space per worker (`RLIMIT_AS`).
    pub(crate) memory_limit: Option<u64>,
    /// Calls a worker serves before it is replaced.
    pub(crate) max_calls_per_worker: Option<u32>,
    /// Crashes in a row of the same call (function and arguments) before it is refused.
    pub(crate) quarantine_after: u32,
    /// The key of the function each worker runs once before it takes calls.
    pub(crate) initializer: Option<&'static str>,
    /// How long a worker may take to start (its initializer included) before it is
    /// killed as a start failure.
    pub(crate) start_timeout: Duration,
    /// Pass what workers write to stderr on to this process's stderr.
    pub(crate) forward_stderr: bool,
}
