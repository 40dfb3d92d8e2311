//! The finished settings debug mode starts from.
//!
//! The builder (`builder.rs`) combines the user's settings with the environment
//! (`ONELOOP_DEBUG`, `ONELOOP_SLOW_MS`) and the defaults, and checks them; `debug/` only
//! ever sees the result. `instruments.rs` receives it, and hands it to the poll watch
//! (`watch/`) and the job watch (`jobs.rs`).

use std::time::Duration;

/// Debug settings after the builder and the environment have been combined.
///
/// Written once, by `Builder::resolve`; read when the runtime starts its instruments.
#[derive(Clone, Copy, Debug)]
pub(crate) struct DebugConfig {
    /// The slow-task threshold, never zero: a poll timed alone past it is `OL001`, one
    /// still running past it `OL002`; the watchdog looks every eighth of it, and scans
    /// jobs every half of it (`OL004` uses it for queue waits).
    pub(crate) threshold: Duration,
    /// Whether the watchdog may capture the loop thread's stack for `OL002` (`stack/`).
    pub(crate) backtraces: bool,
    /// The slow-job limit, never zero: an offloaded job running past it is `OL005`.
    pub(crate) job_limit: Duration,
}
