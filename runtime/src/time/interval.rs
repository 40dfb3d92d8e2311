//! `Interval`: ticks at a fixed period, with a stated policy for ticks it missed.

use std::future::Future;
use std::future::poll_fn;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use super::sleep::{Sleep, sleep_until};

/// What an [`Interval`] does when the loop was too busy to tick on time and one or more
/// whole periods went by.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MissedTickBehavior {
    /// Tick immediately for every missed tick, until caught up with the original schedule
    /// (the default, as in tokio): the count of ticks over a long run is exact.
    #[default]
    Burst,
    /// Start a fresh schedule: the next tick is one period after the late one. Ticks are
    /// never closer than one period.
    Delay,
    /// Drop the missed ticks and wait for the next tick of the original schedule. Ticks
    /// stay on the original grid, but some are skipped.
    Skip,
}

/// Ticks every `period`, the first tick at once.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// oneloop::Runtime::new().block_on(async {
///     let mut heartbeat = oneloop::time::interval(Duration::from_millis(5));
///     for _ in 0..3 {
///         heartbeat.tick().await; // at 0, 5 and 10 ms
///     }
/// });
/// ```
///
/// # Panics
///
/// If `period` is zero.
pub fn interval(period: Duration) -> Interval {
    interval_at(Instant::now(), period)
}

/// Ticks every `period`, the first tick at `start`.
///
/// # Panics
///
/// If `period` is zero.
pub fn interval_at(start: Instant, period: Duration) -> Interval {
    assert!(
        !period.is_zero(),
        "oneloop::time::interval: the period must be longer than zero"
    );
    Interval {
        period,
        missed: MissedTickBehavior::default(),
        sleep: sleep_until(start),
    }
}

/// A stream of ticks returned by [`interval`]; see [`MissedTickBehavior`] for what happens
/// to ticks the loop was too busy to deliver on time.
#[derive(Debug)]
pub struct Interval {
    period: Duration,
    missed: MissedTickBehavior,
    /// Armed for the next tick.
    sleep: Sleep,
}

impl Interval {
    /// Waits for the next tick and returns the instant it was scheduled for.
    pub async fn tick(&mut self) -> Instant {
        poll_fn(|cx| self.poll_tick(cx)).await
    }

    /// Polls for the next tick (for use in hand-written futures).
    pub fn poll_tick(&mut self, cx: &mut Context<'_>) -> Poll<Instant> {
        if Pin::new(&mut self.sleep).poll(cx).is_pending() {
            return Poll::Pending;
        }
        let scheduled = self.sleep.deadline();
        let now = Instant::now();
        let on_time = scheduled + self.period;
        let next = if now < on_time {
            on_time
        } else {
            match self.missed {
                MissedTickBehavior::Burst => on_time,
                MissedTickBehavior::Delay => now + self.period,
                MissedTickBehavior::Skip => {
                    let periods = (now - scheduled).as_nanos() / self.period.as_nanos() + 1;
                    let periods = u32::try_from(periods).unwrap_or(u32::MAX);
                    scheduled + self.period.saturating_mul(periods)
                }
            }
        };
        self.sleep.reset(next);
        Poll::Ready(scheduled)
    }

    /// Restarts the schedule: the next tick is one period from now.
    pub fn reset(&mut self) {
        self.sleep.reset(Instant::now() + self.period);
    }

    /// The period.
    pub fn period(&self) -> Duration {
        self.period
    }

    /// The policy for missed ticks.
    pub fn missed_tick_behavior(&self) -> MissedTickBehavior {
        self.missed
    }

    /// Sets the policy for missed ticks.
    pub fn set_missed_tick_behavior(&mut self, behavior: MissedTickBehavior) {
        self.missed = behavior;
    }
}
