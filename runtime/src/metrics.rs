//! [`Metrics`]: the loop's counters, as `Runtime::metrics` reads them from its subsystems
//! (`runtime.rs`).

/// Counters from [`Runtime::metrics`](crate::Runtime::metrics); cheap to read, for tests, tuning and teaching.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Metrics {
    /// Turns of the loop (looks at the reactor).
    pub ticks: u64,
    /// Task polls (the `block_on` future's included).
    pub polls: u64,
    /// Tasks spawned.
    pub spawned: u64,
    /// Task slots in use: running tasks plus finished ones whose `JoinHandle` has not read
    /// them.
    pub live_tasks: usize,
    /// Wakes that came from other threads.
    pub remote_wakes: u64,
    /// Times another thread interrupted the loop's sleep (an eventfd write on Linux). Far
    /// fewer than `remote_wakes` under load: wakes are coalesced.
    pub eventfd_writes: u64,
    /// Timers armed right now.
    pub timers: usize,
    /// Timers fired so far.
    pub timers_fired: u64,
    /// I/O sources registered right now.
    pub io_sources: usize,
    /// Polls that ran past the slow-task threshold (debug mode only).
    pub slow_polls: u64,
}
