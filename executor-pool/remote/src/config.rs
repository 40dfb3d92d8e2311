//! The settings of an executor (made by `executor.rs`'s builder, read by its threads).

use std::time::Duration;

use oneloop_pool::Overflow;
use oneloop_process::CancelRunning;

/// The settings of an executor.
#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub(crate) url: String,
    pub(crate) queue: String,
    /// Calls queued or running at once, at most (`None`: unbounded).
    pub(crate) max_in_flight: Option<usize>,
    pub(crate) overflow: Overflow,
    /// The default limit on a call, from its submission.
    pub(crate) timeout: Option<Duration>,
    pub(crate) max_attempts: u32,
    pub(crate) max_payload: usize,
    pub(crate) reply_ttl: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) cancel_running: CancelRunning,
}
