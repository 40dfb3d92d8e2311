//! [`Builder`]: how many worker processes, how long a call may run, what cancelling a
//! running call does, the queue's bound and overflow policy, the memory limit, and when a
//! worker is recycled. What it builds is a `Config` (`config.rs`) for the pool (`pool.rs`)
//! and its supervisor (`supervisor.rs`).

use std::fmt;
use std::io;
use std::time::Duration;

use oneloop_pool::Overflow;

use crate::config::{CancelRunning, Config};
use crate::pool::ProcessPool;

/// Configures and builds a [`ProcessPool`].
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use oneloop_process::{CancelRunning, ProcessPool};
///
/// let pool = ProcessPool::builder()
///     .workers(4)
///     .timeout(Duration::from_secs(5))
///     .cancel_running(CancelRunning::Kill)
///     .memory_limit(512 << 20)
///     .build()?;
/// assert_eq!(pool.workers(), 4);
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone)]
pub struct Builder {
    config: Config,
}

impl Builder {
    /// The defaults: as many workers as CPUs, an unbounded queue, no timeout, cancelling
    /// a running call kills its worker (after a 200 ms grace), no memory limit, workers
    /// never recycled, a call quarantined after crashing its worker 3 times in a row, 60 s
    /// for a worker to start.
    pub fn new() -> Self {
        Builder {
            config: Config {
                workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
                queue_capacity: None,
                overflow: Overflow::Wait,
                timeout: None,
                cancel_running: CancelRunning::Kill,
                kill_grace: Duration::from_millis(200),
                memory_limit: None,
                max_calls_per_worker: None,
                quarantine_after: 3,
                initializer: None,
                start_timeout: Duration::from_secs(60),
                forward_stderr: true,
            },
        }
    }

    /// The number of worker processes (at least 1).
    pub fn workers(mut self, workers: usize) -> Self {
        self.config.workers = workers;
        self
    }

    /// Bounds the queue of calls waiting for a worker; what a call beyond it does is the
    /// [`overflow`](Self::overflow) policy's (default: `Wait`).
    pub fn queue_capacity(mut self, capacity: usize) -> Self {
        self.config.queue_capacity = Some(capacity);
        self
    }

    /// What a call does when the bounded queue is full: wait for room (`Wait`), fail as
    /// [`JobError::Rejected`](oneloop_pool::JobError::Rejected) (`Reject`), or run in the
    /// caller, in this process (`CallerRuns`).
    pub fn overflow(mut self, overflow: Overflow) -> Self {
        self.config.overflow = overflow;
        self
    }

    /// How long a call may run before its worker is killed and the call fails as
    /// [`JobError::TimedOut`](oneloop_pool::JobError::TimedOut) (default: no limit).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.config.timeout = Some(timeout);
        self
    }

    /// What cancelling (or dropping) a running call does (default:
    /// [`CancelRunning::Kill`]).
    pub fn cancel_running(mut self, policy: CancelRunning) -> Self {
        self.config.cancel_running = policy;
        self
    }

    /// How long a worker being killed gets between SIGTERM and SIGKILL (default 200 ms).
    pub fn kill_grace(mut self, grace: Duration) -> Self {
        self.config.kill_grace = grace;
        self
    }

    /// Limits each worker's address space to `bytes` (`setrlimit(RLIMIT_AS)`); a call
    /// that needs more kills its worker, and fails as a worker death that says "memory
    /// limit".
    pub fn memory_limit(mut self, bytes: u64) -> Self {
        self.config.memory_limit = Some(bytes);
        self
    }

    /// Replaces a worker after it has served `calls` calls (CPython's
    /// `max_tasks_per_child`); the replacement starts before the old worker retires.
    pub fn max_calls_per_worker(mut self, calls: u32) -> Self {
        self.config.max_calls_per_worker = Some(calls);
        self
    }

    /// How many times in a row the same call (function and arguments) may crash its
    /// worker before it is refused at once as
    /// [`JobError::Quarantined`](oneloop_pool::JobError::Quarantined) (default 3).
    pub fn quarantine_after(mut self, crashes: u32) -> Self {
        self.config.quarantine_after = crashes;
        self
    }

    /// Runs `initializer` in each worker once, before it takes any call (asyncio's
    /// `initializer`): set up what every call needs (a logger, a model loaded once). A
    /// worker whose initializer panics or exits never serves; when workers keep failing
    /// that way, the pool is broken, and [`ProcessPool::broken`] says why.
    ///
    /// ```
    /// oneloop_process::process_fn! {
    ///     fn warm_up() {
    ///         // Runs once in every worker process, before its first call.
    ///     }
    /// }
    ///
    /// let pool = oneloop_process::ProcessPool::builder()
    ///     .workers(1)
    ///     .initializer(warm_up)
    ///     .build()?;
    /// assert!(pool.broken().is_none());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn initializer(mut self, initializer: crate::ProcessFn<(), ()>) -> Self {
        self.config.initializer = Some(initializer.key());
        self
    }

    /// How long a worker may take to start, its initializer included, before it is killed
    /// and counted as a start failure (default 60 s): an initializer that hangs breaks the
    /// pool after three tries instead of hanging every call.
    pub fn start_timeout(mut self, timeout: Duration) -> Self {
        self.config.start_timeout = timeout;
        self
    }

    /// Whether what workers write to stderr is written to this process's stderr, whole
    /// lines at a time (default `true`, as a thread pool's closures would write it). Either
    /// way the last lines of a worker that dies are kept for its error
    /// ([`WorkerDeath`](crate::WorkerDeath)). The passing on never holds the pool up: if
    /// this process's stderr does not keep up, lines are dropped, and a line says how many
    /// bytes.
    pub fn forward_stderr(mut self, forward: bool) -> Self {
        self.config.forward_stderr = forward;
        self
    }

    /// Starts the workers and their supervisor thread.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for zero workers, a zero queue capacity or a zero limit; the OS's
    /// error if the supervisor thread or the first worker process cannot be started.
    pub fn build(self) -> io::Result<ProcessPool> {
        let invalid = |message: &str| io::Error::new(io::ErrorKind::InvalidInput, message);
        let config = &self.config;
        if config.workers == 0 {
            return Err(invalid("a process pool needs at least one worker"));
        }
        if config.queue_capacity == Some(0) {
            return Err(invalid("a bounded queue needs room for at least one call"));
        }
        if config.max_calls_per_worker == Some(0) || config.quarantine_after == 0 {
            return Err(invalid(
                "max_calls_per_worker and quarantine_after must be at least 1",
            ));
        }
        if config.memory_limit == Some(0) {
            return Err(invalid(
                "a memory limit of zero bytes leaves no room to start",
            ));
        }
        ProcessPool::start(self.config)
    }
}

impl ProcessPool {
    /// A pool of `workers` processes with the default settings ([`Builder::new`]).
    ///
    /// # Errors
    ///
    /// See [`Builder::build`].
    pub fn new(workers: usize) -> io::Result<ProcessPool> {
        Builder::new().workers(workers).build()
    }

    /// A [`Builder`] to configure a pool.
    pub fn builder() -> Builder {
        Builder::new()
    }
}

impl Default for Builder {
    fn default() -> Self {
        Builder::new()
    }
}

impl fmt::Debug for Builder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("config", &self.config)
            .finish()
    }
}
