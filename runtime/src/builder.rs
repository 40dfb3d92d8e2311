//! `Builder`: configures a runtime (debug mode, the report sink) before it starts.
//!
//! `Builder::resolve` combines the settings with the environment (`ONELOOP_DEBUG`,
//! `ONELOOP_SLOW_MS`, `ONELOOP_TRACE`) and the defaults, and checks them: debug mode
//! (`debug/`) receives a finished `DebugConfig` and never reads the environment itself.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

use oneloop_pool::ThreadPool;

use crate::debug::{DebugConfig, Report, Sink, stderr_sink};

/// Configures and builds a [`Runtime`](crate::Runtime).
///
/// Settings made here win over the environment (`ONELOOP_DEBUG`, `ONELOOP_SLOW_MS`), which
/// only supplies defaults, as `PYTHONASYNCIODEBUG` does for asyncio.
///
/// # Examples
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use std::time::Duration;
///
/// let reports = Arc::new(Mutex::new(Vec::new()));
/// let sink = reports.clone();
/// let rt = oneloop::Runtime::builder()
///     .debug(true)
///     .slow_task_threshold(Duration::from_millis(20))
///     .on_report(move |report| sink.lock().unwrap().push(report.code))
///     .build()?;
/// rt.block_on(async {
///     std::thread::sleep(Duration::from_millis(30)); // blocks the loop: reported
/// });
/// // OL001 when the poll returned (the watchdog may have sent OL002 while it ran).
/// assert!(reports.lock().unwrap().contains(&oneloop::debug::Code::SlowPoll));
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone, Default)]
pub struct Builder {
    debug: Option<bool>,
    slow_threshold: Option<Duration>,
    slow_job_limit: Option<Duration>,
    backtraces: Option<bool>,
    sink: Option<Sink>,
    default_pool_workers: Option<usize>,
    default_pool_shutdown: Option<Duration>,
    trace: Option<PathBuf>,
    stall_report_after: Option<Duration>,
}

/// A builder's settings, resolved against the environment.
pub(crate) struct Config {
    pub(crate) debug: Option<DebugConfig>,
    pub(crate) trace: Option<PathBuf>,
    pub(crate) sink: Sink,
    pub(crate) default_pool_workers: usize,
    pub(crate) default_pool_shutdown: Duration,
    pub(crate) stall_report_after: Duration,
}

/// The default slow-job limit: offloaded jobs are expected to take long (that is why they
/// are offloaded), so only one that runs for ten seconds is reported as possibly stuck.
pub(crate) const DEFAULT_SLOW_JOB_LIMIT: Duration = Duration::from_secs(10);

/// asyncio's `slow_callback_duration` default.
const DEFAULT_SLOW_THRESHOLD: Duration = Duration::from_millis(100);

/// Parses `ONELOOP_DEBUG`: `1`/`true`/`yes`/`on` enable, `0`/`false`/`no`/`off`/empty
/// disable, anything else is an error that says what is accepted.
fn parse_debug_env(value: &str) -> Result<bool, String> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "" | "0" | "false" | "no" | "off" => Ok(false),
        other => Err(format!(
            "ONELOOP_DEBUG must be 1 or 0 (or true/false), got {other:?}"
        )),
    }
}

/// Parses `ONELOOP_SLOW_MS`: a positive number of milliseconds, fractions allowed; one too
/// large for a `Duration` (`1e300`) is `Duration::MAX`, which never reports anything.
fn parse_slow_ms_env(value: &str) -> Result<Duration, String> {
    let ms: f64 = value.trim().parse().map_err(|_| {
        format!("ONELOOP_SLOW_MS must be a number of milliseconds such as 50, got {value:?}")
    })?;
    if !(ms > 0.0 && ms.is_finite()) {
        return Err(format!(
            "ONELOOP_SLOW_MS must be a positive number of milliseconds, got {value:?}"
        ));
    }
    // Finite and positive, so the only possible error is "too large".
    Ok(Duration::try_from_secs_f64(ms / 1e3).unwrap_or(Duration::MAX))
}

/// How long the loop stays quiet with every task waiting on channels and semaphores before
/// it reports a likely deadlock (`OL010`): far longer than another thread takes to use a
/// sender it was handed, short enough that a stuck service says so while someone looks.
const STALL_REPORT_AFTER: Duration = Duration::from_secs(10);

/// How long a dropping runtime waits for its default pool's running jobs (asyncio waits
/// in `shutdown_default_executor` too). Long enough for any well-behaved blocking call to
/// return; short enough that a stuck one does not hang the program's exit for long: it is
/// reported and its thread left behind.
const DEFAULT_POOL_SHUTDOWN: Duration = Duration::from_secs(10);

/// The default pool's size, as asyncio's default `ThreadPoolExecutor`: `to_thread` is
/// mostly for blocking I/O (files, blocking clients), which waits rather than computes, so
/// a few more threads than cores keep throughput up; 32 caps the memory of idle threads.
/// CPU-heavy work belongs on a pool sized to the cores (see `03_cpu_pool`).
pub(crate) fn default_pool_size() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    (cores + 4).min(32)
}

impl Builder {
    /// A builder with default settings.
    pub fn new() -> Self {
        Builder::default()
    }

    /// Turns debug mode on or off (default: off, unless `ONELOOP_DEBUG=1`). In debug mode
    /// the loop times polls and reports slow ones (`OL001`), and a watchdog thread reports
    /// a poll that is still blocking (`OL002`). Quick polls are timed in groups that share
    /// one clock reading, so debug mode costs a program of tiny tasks about 2 %; a poll the
    /// watchdog finds running is always timed alone (`debug/watch/`).
    pub fn debug(mut self, on: bool) -> Self {
        self.debug = Some(on);
        self
    }

    /// The slow-task threshold of debug mode (default: `ONELOOP_SLOW_MS`, else 100 ms, as
    /// asyncio's `slow_callback_duration`).
    pub fn slow_task_threshold(mut self, threshold: Duration) -> Self {
        self.slow_threshold = Some(threshold);
        self
    }

    /// How long an offloaded job may run before debug mode reports it as possibly stuck
    /// (`OL005`; default 10 s).
    pub fn slow_job_threshold(mut self, limit: Duration) -> Self {
        self.slow_job_limit = Some(limit);
        self
    }

    /// The number of threads of the default pool, which serves [`to_thread`](crate::to_thread)
    /// and is created on its first use (default: `min(32, cores + 4)`, as asyncio: it mostly
    /// waits on blocking I/O, so a few more threads than cores pay off). From 1 to
    /// [`ThreadPool::MAX_WORKERS`]; `build` refuses any other number.
    pub fn default_pool_workers(mut self, workers: usize) -> Self {
        self.default_pool_workers = Some(workers);
        self
    }

    /// How long dropping the runtime waits for the default pool's running jobs before it
    /// reports them and leaves their threads behind (default 10 s; `Duration::MAX` waits
    /// for them however long they take).
    pub fn default_pool_shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.default_pool_shutdown = Some(timeout);
        self
    }

    /// How long the loop must stay quiet, with every pending task waiting on oneloop
    /// channels and semaphores and nothing else able to wake it, before debug mode reports
    /// a likely deadlock (`OL010`; default 10 s). Such a wait cannot be proven stuck (a
    /// sender may be on another thread), so it is reported, never panicked on.
    pub fn stall_report_after(mut self, after: Duration) -> Self {
        self.stall_report_after = Some(after);
        self
    }

    /// Writes a timeline of the run to `path` (default: `ONELOOP_TRACE`, else none): every
    /// task poll on the loop's track, every offloaded job on its worker's track, reports as
    /// markers, and arrows from each submit to the task's resume. A Chrome trace-event file:
    /// open it at ui.perfetto.dev or chrome://tracing. Streamed as it happens (memory stays
    /// bounded; the file grows by ~150 bytes per event) and completed when the runtime drops.
    pub fn trace_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.trace = Some(path.into());
        self
    }

    /// Whether the watchdog captures a backtrace of the blocked loop thread (Linux, x86_64
    /// and aarch64; on by default in debug mode). A loop thread asleep in a system call is
    /// never interrupted: the report's `message` names the call and its file descriptor.
    /// One running user code is sent a real-time signal (`SIGRTMIN+7`) whose handler only
    /// copies its registers and stack; turn this off if the application uses that signal
    /// or must never be interrupted. Backtraces follow frame pointers: build with
    /// `-C force-frame-pointers=yes` for complete ones.
    pub fn debug_backtraces(mut self, on: bool) -> Self {
        self.backtraces = Some(on);
        self
    }

    /// Where reports go (default: one line each on stderr). Called on the loop thread, or
    /// on the watchdog thread for `OL002`; a panic in it is contained.
    pub fn on_report(mut self, sink: impl Fn(&Report) + Send + Sync + 'static) -> Self {
        self.sink = Some(std::sync::Arc::new(sink));
        self
    }

    /// Combines the settings with the environment (read through `env`, for tests).
    pub(crate) fn resolve(self, env: impl Fn(&str) -> Option<String>) -> io::Result<Config> {
        let invalid = |message: String| io::Error::new(io::ErrorKind::InvalidInput, message);
        let debug = match self.debug {
            Some(on) => on,
            None => match env("ONELOOP_DEBUG") {
                Some(value) => parse_debug_env(&value).map_err(invalid)?,
                None => false,
            },
        };
        let threshold = match self.slow_threshold {
            Some(threshold) => threshold,
            None => match env("ONELOOP_SLOW_MS") {
                Some(value) => parse_slow_ms_env(&value).map_err(invalid)?,
                None => DEFAULT_SLOW_THRESHOLD,
            },
        };
        if threshold.is_zero() {
            return Err(invalid(
                "the slow-task threshold must be longer than zero".to_owned(),
            ));
        }
        let job_limit = self.slow_job_limit.unwrap_or(DEFAULT_SLOW_JOB_LIMIT);
        if job_limit.is_zero() {
            return Err(invalid(
                "the slow-job threshold must be longer than zero".to_owned(),
            ));
        }
        let default_pool_workers = self.default_pool_workers.unwrap_or_else(default_pool_size);
        if default_pool_workers == 0 {
            return Err(invalid(
                "the default pool needs at least one worker".to_owned(),
            ));
        }
        if default_pool_workers > ThreadPool::MAX_WORKERS {
            return Err(invalid(format!(
                "the default pool can have at most {} workers (ThreadPool::MAX_WORKERS), got \
                 {default_pool_workers}",
                ThreadPool::MAX_WORKERS
            )));
        }
        let trace = self.trace.or_else(|| {
            env("ONELOOP_TRACE")
                .filter(|path| !path.is_empty())
                .map(PathBuf::from)
        });
        Ok(Config {
            trace,
            debug: debug.then_some(DebugConfig {
                threshold,
                backtraces: self.backtraces.unwrap_or(true),
                job_limit,
            }),
            sink: self.sink.unwrap_or_else(stderr_sink),
            default_pool_workers,
            default_pool_shutdown: self.default_pool_shutdown.unwrap_or(DEFAULT_POOL_SHUTDOWN),
            stall_report_after: self
                .stall_report_after
                .unwrap_or(STALL_REPORT_AFTER)
                .max(Duration::from_millis(1)),
        })
    }
}

impl fmt::Debug for Builder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("debug", &self.debug)
            .field("slow_threshold", &self.slow_threshold)
            .field("slow_job_limit", &self.slow_job_limit)
            .field("backtraces", &self.backtraces)
            .field("custom_sink", &self.sink.is_some())
            .field("default_pool_workers", &self.default_pool_workers)
            .field("default_pool_shutdown", &self.default_pool_shutdown)
            .field("trace", &self.trace)
            .field("stall_report_after", &self.stall_report_after)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn environment_turns_debug_on_and_sets_the_threshold() {
        let config = Builder::new()
            .resolve(env(&[("ONELOOP_DEBUG", "1"), ("ONELOOP_SLOW_MS", "25")]))
            .unwrap();
        let debug = config.debug.expect("debug on");
        assert_eq!(debug.threshold, Duration::from_millis(25));
    }

    #[test]
    fn builder_settings_win_over_the_environment() {
        let config = Builder::new()
            .debug(false)
            .resolve(env(&[("ONELOOP_DEBUG", "1")]))
            .unwrap();
        assert!(config.debug.is_none());
        let config = Builder::new()
            .debug(true)
            .slow_task_threshold(Duration::from_millis(7))
            .resolve(env(&[("ONELOOP_SLOW_MS", "500")]))
            .unwrap();
        assert_eq!(config.debug.unwrap().threshold, Duration::from_millis(7));
    }

    #[test]
    fn malformed_environment_is_an_error_that_says_what_is_accepted() {
        let error = Builder::new()
            .resolve(env(&[("ONELOOP_SLOW_MS", "soon")]))
            .err()
            .unwrap();
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
        assert!(error.to_string().contains("ONELOOP_SLOW_MS"));
        let zero = Builder::new()
            .debug(true)
            .slow_task_threshold(Duration::ZERO)
            .resolve(env(&[]))
            .err()
            .unwrap();
        assert!(zero.to_string().contains("longer than zero"));
    }

    #[test]
    fn debug_is_off_by_default_with_asyncio_s_threshold() {
        let config = Builder::new().resolve(env(&[])).unwrap();
        assert!(config.debug.is_none());
        let config = Builder::new().debug(true).resolve(env(&[])).unwrap();
        assert_eq!(config.debug.unwrap().threshold, Duration::from_millis(100));
    }

    #[test]
    fn env_values_parse_or_say_what_is_accepted() {
        assert_eq!(parse_debug_env("1"), Ok(true));
        assert_eq!(parse_debug_env("off"), Ok(false));
        assert!(
            parse_debug_env("maybe")
                .unwrap_err()
                .contains("ONELOOP_DEBUG")
        );
        assert_eq!(parse_slow_ms_env("50"), Ok(Duration::from_millis(50)));
        assert_eq!(parse_slow_ms_env("0.5"), Ok(Duration::from_micros(500)));
        assert!(
            parse_slow_ms_env("fast")
                .unwrap_err()
                .contains("ONELOOP_SLOW_MS")
        );
        assert!(parse_slow_ms_env("-3").is_err());
        assert!(parse_slow_ms_env("inf").is_err());
        // u64::MAX milliseconds, give or take the rounding of an f64.
        let huge = parse_slow_ms_env("18446744073709551615").unwrap();
        assert_eq!(huge.as_secs() / 1_000_000, 18_446_744_073);
        assert_eq!(parse_slow_ms_env("1e300"), Ok(Duration::MAX));
    }
}
