//! Time: [`sleep`], [`timeout`] and [`interval`], driven by the loop's timer queue.
//!
//! A timer is a deadline plus a waker in the runtime's queue (`timers.rs`). The loop sleeps
//! in the reactor until the nearest deadline, then fires every timer that is due
//! (`Core::react` and `Core::fire_timers` in `runtime.rs`).
//!
//! **Timers never fire early**: a timer fires only once `Instant::now()` has reached its
//! deadline. They may fire late: by the time the loop takes to come round (a slow task
//! delays every timer, which is what debug mode reports), plus the OS's wake-up latency;
//! `epoll_wait` counts whole milliseconds, so a sleep is rounded up to the next one.
//!
//! Timers belong to the runtime that first polls them and must be polled on its thread.

mod interval;
mod sleep;
mod timeout;
pub(crate) mod timers;

pub use interval::{Interval, MissedTickBehavior, interval, interval_at};
pub use sleep::{Sleep, sleep, sleep_until};
/// The clock timers use: `std::time::Instant`, re-exported so `oneloop::time` is complete.
pub use std::time::Instant;
pub use timeout::{Elapsed, Timeout, timeout, timeout_at};
