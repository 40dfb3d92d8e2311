//! Spinning briefly before the loop sleeps, when a remote wake is likely to be close.
//!
//! A loop that offloads small jobs sleeps in `epoll_wait` and is woken by the eventfd a few
//! microseconds later. The sleep and the wake-up cost more than the wait itself: the
//! scheduler, and on a virtual machine an idle virtual CPU that must be woken by an
//! interrupt (tens of µs). So before a sleep the loop may watch the remote queue's
//! `notified` flag for a short while, and skip the sleep when a wake arrives.
//!
//! How long it watches is learned, like the kernel's halt polling: after a sleep that a
//! remote wake ended within `GROW_WITHIN`, the budget doubles (from `MIN`, up to `MAX`);
//! after a longer sleep, or one ended by something else (I/O, a timer), it halves, and
//! under `MIN` it drops to zero. `GROW_WITHIN` is twice `MAX` because a measured sleep
//! includes the wake-up itself (tens of µs on a VM): a job of 10 µs shows up as a sleep
//! of ~55 µs there, and spinning would have caught it. A loop whose wakes come from far away (sockets, timers, long jobs)
//! therefore never spins; one that awaits a stream of short jobs spins at most `MAX` per
//! sleep, and only while that pays. Benchmark W1 (`benches/`) measures it. A process
//! allowed one CPU (by its affinity or a container's quota) never spins: the thread that
//! would wake the loop needs that very CPU.

use std::cell::Cell;
use std::time::{Duration, Instant};

use crate::waker::Remote;

/// The longest spin before a sleep.
const MAX: Duration = Duration::from_micros(50);
/// The shortest non-zero spin.
const MIN: Duration = Duration::from_micros(4);
/// Sleeps that a remote wake ended within this make the budget grow.
const GROW_WITHIN: Duration = Duration::from_micros(100);

/// The loop's spin budget (loop thread only).
pub(crate) struct Spin {
    budget: Cell<Duration>,
    /// This process may use one CPU only (an affinity mask or a container's CPU quota):
    /// whatever would wake the loop needs that CPU, so spinning only delays it. Never spin.
    one_cpu: bool,
}

impl Default for Spin {
    fn default() -> Self {
        Spin {
            budget: Cell::new(Duration::ZERO),
            one_cpu: std::thread::available_parallelism().is_ok_and(|n| n.get() == 1),
        }
    }
}

impl Spin {
    /// Called before a sleep of at most `timeout` (`None`: no limit): watches for a remote
    /// wake for up to the budget. True if one came, so the loop need not sleep.
    pub(crate) fn wait_for(&self, remote: &Remote, timeout: Option<Duration>) -> bool {
        let budget = timeout.map_or(self.budget.get(), |t| t.min(self.budget.get()));
        if budget.is_zero() {
            return false;
        }
        let start = Instant::now();
        loop {
            for _ in 0..16 {
                if remote.is_notified() {
                    return true;
                }
                std::hint::spin_loop();
            }
            if start.elapsed() >= budget {
                return false;
            }
        }
    }

    /// Called after a sleep of `slept`, which a remote wake ended (`remote`) or not.
    pub(crate) fn learn(&self, remote: bool, slept: Duration) {
        if self.one_cpu {
            return; // the budget stays zero
        }
        let budget = self.budget.get();
        self.budget.set(if remote && slept <= GROW_WITHIN {
            (budget * 2).clamp(MIN, MAX)
        } else if budget / 2 < MIN {
            Duration::ZERO
        } else {
            budget / 2
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spin(one_cpu: bool) -> Spin {
        Spin {
            budget: Cell::new(Duration::ZERO),
            one_cpu,
        }
    }

    #[test]
    fn the_budget_grows_on_quick_remote_wakes_and_falls_to_zero_otherwise() {
        let spin = spin(false);
        assert_eq!(spin.budget.get(), Duration::ZERO);
        spin.learn(true, Duration::from_micros(3));
        assert_eq!(spin.budget.get(), MIN);
        for _ in 0..10 {
            spin.learn(true, Duration::from_micros(10));
        }
        assert_eq!(spin.budget.get(), MAX);
        spin.learn(true, Duration::from_millis(2)); // a long job
        assert_eq!(spin.budget.get(), MAX / 2);
        spin.learn(false, Duration::from_micros(5)); // I/O, not a remote wake
        assert_eq!(spin.budget.get(), MAX / 4);
        for _ in 0..4 {
            spin.learn(false, Duration::from_secs(1));
        }
        assert_eq!(spin.budget.get(), Duration::ZERO);
    }

    #[test]
    fn a_process_with_one_cpu_never_spins() {
        let spin = spin(true);
        for _ in 0..10 {
            spin.learn(true, Duration::from_micros(3));
        }
        assert_eq!(spin.budget.get(), Duration::ZERO);
    }
}
