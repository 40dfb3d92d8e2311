//! `Sleep`: a future that completes at a deadline.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use super::timers::TimerKey;
use crate::context;
use crate::task::waiting::Waiting;

/// How the misuse messages name this future.
const WHAT: &str = "a oneloop::time::Sleep";

/// Waits until `duration` has passed.
///
/// The deadline is fixed when `sleep` is called; the timer is registered when the future is
/// first polled, in the runtime that polls it. `sleep(Duration::ZERO)` yields once.
///
/// # Examples
///
/// ```
/// use std::time::{Duration, Instant};
///
/// oneloop::Runtime::new().block_on(async {
///     let start = Instant::now();
///     oneloop::time::sleep(Duration::from_millis(20)).await;
///     assert!(start.elapsed() >= Duration::from_millis(20)); // never early
/// });
/// ```
///
/// # Panics
///
/// Polling it outside a runtime, or in a runtime other than the one that first polled it.
pub fn sleep(duration: Duration) -> Sleep {
    sleep_until(far_or(Instant::now().checked_add(duration)))
}

/// Waits until `deadline`. A deadline in the past completes on the next turn of the loop.
pub fn sleep_until(deadline: Instant) -> Sleep {
    Sleep {
        deadline,
        registration: None,
    }
}

/// An instant so far away it stands for "never" (about 30 years), for durations too large
/// to add to `now` (`Duration::MAX`).
pub(crate) fn far_or(instant: Option<Instant>) -> Instant {
    instant.unwrap_or_else(|| {
        let now = Instant::now();
        now.checked_add(Duration::from_secs(86_400 * 365 * 30))
            .unwrap_or(now)
    })
}

/// The future returned by [`sleep`] and [`sleep_until`].
///
/// # Implementation notes
///
/// The timer is removed from the runtime's queue when the `Sleep` is dropped on the loop
/// thread. Dropped on another thread, its entry stays until its deadline and then fires
/// harmlessly (the task it wakes simply finds nothing to do).
#[derive(Debug)]
#[must_use = "futures do nothing unless awaited"]
pub struct Sleep {
    deadline: Instant,
    /// The runtime that registered the timer, and the timer's key there.
    registration: Option<(u64, TimerKey)>,
}

impl Sleep {
    /// The instant this sleep completes at.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// True once the deadline has passed.
    pub fn is_elapsed(&self) -> bool {
        Instant::now() >= self.deadline
    }

    /// Moves the deadline (earlier or later); the sleep can be awaited again.
    pub fn reset(&mut self, deadline: Instant) {
        self.deregister();
        self.deadline = deadline;
    }

    fn deregister(&mut self) {
        if let Some((owner, key)) = self.registration.take() {
            context::with_current(|core| {
                if core.id() == owner {
                    core.timers().cancel(key);
                }
            });
        }
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        // A chain of timers already due yields after the task's budget.
        if crate::task::coop::poll_proceed(cx).is_pending() {
            return Poll::Pending;
        }
        let core = match this.registration {
            Some((owner, _)) => context::current_for(WHAT, owner),
            None => context::current(WHAT),
        };
        let mut key = this.registration.map(|(_, key)| key);
        let poll = core.timers().poll(this.deadline, &mut key, cx.waker());
        this.registration = key.map(|key| (core.id(), key));
        if poll.is_pending() {
            core.note_wait(Waiting::Sleep(this.deadline));
        } else {
            crate::task::coop::spend();
        }
        poll
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        self.deregister();
    }
}
