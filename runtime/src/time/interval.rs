//! `Interval`: ticks at a fixed period, with a stated policy for ticks it missed.

use std::future::Future;
use std::future::poll_fn;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use super::sleep::{Sleep, far_or, sleep_until};

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
/// A tick that would fall past the farthest instant the clock can hold is put off for good
/// (some 30 years, as `sleep(Duration::MAX)` is): `interval(Duration::MAX)` ticks once, at
/// once, and not again, nor after `reset`.
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
        // A tick that would fall past the end of what `Instant` can hold never comes.
        let next = match scheduled.checked_add(self.period) {
            None => far_or(None),
            Some(on_time) if now < on_time => on_time,
            Some(on_time) => match self.missed {
                MissedTickBehavior::Burst => on_time,
                MissedTickBehavior::Delay => far_or(now.checked_add(self.period)),
                MissedTickBehavior::Skip => far_or(next_on_schedule(scheduled, self.period, now)),
            },
        };
        self.sleep.reset(next);
        Poll::Ready(scheduled)
    }

    /// Restarts the schedule: the next tick is one period from now (never, for a period
    /// too long to add to the clock).
    pub fn reset(&mut self) {
        self.sleep
            .reset(far_or(Instant::now().checked_add(self.period)));
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

/// The first tick of the schedule `scheduled + k * period` (k >= 1) after `now`, or `None`
/// past the end of `Instant`. Counted in `u128` nanoseconds: however many periods were
/// missed (10^10 of a microsecond in three hours), the count neither overflows nor is
/// capped, so the tick lands after `now`, never in the past.
fn next_on_schedule(scheduled: Instant, period: Duration, now: Instant) -> Option<Instant> {
    let period = period.as_nanos(); // at most ~2^94: the product below fits a u128
    let periods = now.saturating_duration_since(scheduled).as_nanos() / period + 1;
    let offset = periods * period;
    let secs = u64::try_from(offset / 1_000_000_000).ok()?;
    // Below 10^9: fits a u32.
    let nanos = (offset % 1_000_000_000) as u32;
    scheduled.checked_add(Duration::new(secs, nanos))
}
