//! Spinning briefly before the loop sleeps, when a remote wake is likely to be close.
//!
//! A loop that offloads small jobs sleeps in `epoll_wait` and is woken by the eventfd a few
//! microseconds later. The sleep and the wake-up cost more than the wait itself: the
//! scheduler, and on a virtual machine an idle virtual CPU that must be woken by an
//! interrupt (tens of µs). So before a sleep the loop may watch the remote queue's
//! `notified` flag for a short while, and skip the sleep when a wake arrives.
//!
//! How long it watches is learned from the spins themselves, never from the sleep after a
//! spin (on a busy or single CPU that sleep is short *because* the spin gave up: the thread
//! that would wake the loop only got the CPU then):
//! - a spin that caught the wake paid for itself: the budget stays at least twice what that
//!   wake took (up to `MAX`);
//! - a spin that ran out cost CPU and caught nothing: the budget halves, and under `MIN` it
//!   drops to zero;
//! - with a zero budget the loop sleeps at once; a sleep that a remote wake ended within
//!   `PROBE_WITHIN` (the measured sleep includes the wake-up itself, tens of µs on a VM) is
//!   the one hint that a spin might catch the next one: the budget becomes twice that sleep,
//!   and the next spin says whether it pays.
//!
//! A loop whose wakes come from far away (sockets, timers, long jobs) therefore never spins;
//! one that awaits a stream of short jobs spins at most `MAX` per sleep, and only while
//! that pays. After its first `YIELD_AFTER` a spin yields the CPU on every round, so a
//! thread that is runnable on this CPU (a worker with queued jobs, often the very one that
//! will wake the loop) runs instead of waiting for the spin to end. A yield that hands the
//! CPU over may keep the loop off it for a scheduler time slice (milliseconds), where a
//! sleeping loop would have been woken at once; so a spin yields only while no timer is
//! due within `YIELD_HORIZON`, and a loop with a timer that close spins without yielding
//! (at most its budget, tens of µs). A process allowed one
//! CPU (by its affinity or a container's quota) never spins: the thread that would wake the
//! loop needs that very CPU. Benchmark W1 (`benches/`) measures the latency and the CPU
//! per round trip, W11 a burst where spinning would take CPU from the workers.

use std::cell::Cell;
use std::time::{Duration, Instant};

use crate::waker::Remote;

/// The longest spin before a sleep.
const MAX: Duration = Duration::from_micros(50);
/// The shortest non-zero spin.
const MIN: Duration = Duration::from_micros(4);
/// A sleep (without a spin before it) that a remote wake ended within this suggests a spin.
const PROBE_WITHIN: Duration = Duration::from_micros(100);
/// How long a spin only watches before it also yields the CPU on every round.
const YIELD_AFTER: Duration = Duration::from_micros(2);
/// A spin yields only if no timer is due sooner than this (a scheduler time slice and more).
const YIELD_HORIZON: Duration = Duration::from_millis(5);

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
    /// wake for up to the budget, and learns from what the spin caught. True if a wake came,
    /// so the loop need not sleep.
    pub(crate) fn wait_for(&self, remote: &Remote, timeout: Option<Duration>) -> bool {
        let budget = timeout.map_or(self.budget.get(), |t| t.min(self.budget.get()));
        if budget.is_zero() {
            return false;
        }
        let may_yield = timeout.is_none_or(|t| t >= YIELD_HORIZON);
        let start = Instant::now();
        loop {
            for _ in 0..16 {
                if remote.is_notified() {
                    self.caught(start.elapsed());
                    return true;
                }
                std::hint::spin_loop();
            }
            let spun = start.elapsed();
            if spun >= budget {
                // A spin cut short by the timer's deadline says nothing about the wakes.
                if budget == self.budget.get() {
                    self.missed();
                }
                return false;
            }
            if may_yield && spun >= YIELD_AFTER {
                std::thread::yield_now();
            }
        }
    }

    /// The spin caught a wake after `took`: keep room for wakes like it.
    fn caught(&self, took: Duration) {
        self.budget
            .set(self.budget.get().max(took * 2).clamp(MIN, MAX));
    }

    /// The spin ran out: it cost CPU and caught nothing.
    fn missed(&self) {
        let half = self.budget.get() / 2;
        self.budget
            .set(if half < MIN { Duration::ZERO } else { half });
    }

    /// Called after a sleep of `slept`, which a remote wake ended (`remote`) or not. Only a
    /// sleep with no spin before it teaches anything (see the module's docs).
    pub(crate) fn learn(&self, remote: bool, slept: Duration) {
        if self.one_cpu || !self.budget.get().is_zero() {
            return;
        }
        if remote && slept <= PROBE_WITHIN {
            self.budget.set((slept * 2).clamp(MIN, MAX));
        }
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

    fn remote() -> (mio::Poll, Remote) {
        let poll = mio::Poll::new().expect("poll");
        let waker = mio::Waker::new(poll.registry(), mio::Token(0)).expect("waker");
        (poll, Remote::new(1, waker))
    }

    #[test]
    fn only_a_quick_remote_wake_after_a_sleep_without_a_spin_starts_one() {
        let spin = spin(false);
        spin.learn(false, Duration::from_micros(5)); // I/O or a timer, not a remote wake
        assert_eq!(spin.budget.get(), Duration::ZERO);
        spin.learn(true, Duration::from_millis(2)); // a long job
        assert_eq!(spin.budget.get(), Duration::ZERO);
        spin.learn(true, Duration::from_micros(1));
        assert_eq!(spin.budget.get(), MIN);
        let spin = self::spin(false);
        spin.learn(true, Duration::from_micros(10));
        assert_eq!(spin.budget.get(), Duration::from_micros(20));
    }

    #[test]
    fn a_short_sleep_after_a_spin_that_ran_out_never_grows_the_budget() {
        // On one busy CPU the sleep after a spin is short because the spin gave up: the
        // thread that wakes the loop only ran then. That must not look like a reason to
        // spin longer.
        let spin = spin(false);
        spin.budget.set(MAX);
        spin.missed();
        for _ in 0..10 {
            spin.learn(true, Duration::from_micros(3));
        }
        assert_eq!(spin.budget.get(), MAX / 2);
    }

    #[test]
    fn a_spin_that_runs_out_halves_the_budget_down_to_zero() {
        let (_poll, remote) = remote();
        let spin = spin(false);
        spin.budget.set(Duration::from_micros(16));
        assert!(!spin.wait_for(&remote, None));
        assert_eq!(spin.budget.get(), Duration::from_micros(8));
        assert!(!spin.wait_for(&remote, None));
        assert!(!spin.wait_for(&remote, None));
        assert_eq!(spin.budget.get(), Duration::ZERO);
        // A spin cut short by a timer due sooner teaches nothing.
        spin.budget.set(Duration::from_micros(16));
        assert!(!spin.wait_for(&remote, Some(Duration::from_micros(1))));
        assert_eq!(spin.budget.get(), Duration::from_micros(16));
    }

    #[test]
    fn a_spin_that_catches_a_wake_keeps_room_for_the_next() {
        let (_poll, remote) = remote();
        let spin = spin(false);
        spin.budget.set(MIN);
        remote.wake(crate::task::id::TaskRef { key: 0, id: 1 });
        assert!(spin.wait_for(&remote, None));
        assert_eq!(
            spin.budget.get(),
            MIN,
            "a wake caught at once keeps the budget"
        );
        spin.caught(Duration::from_micros(10));
        assert_eq!(spin.budget.get(), Duration::from_micros(20));
        spin.caught(Duration::from_millis(1));
        assert_eq!(spin.budget.get(), MAX);
    }

    #[test]
    fn a_process_with_one_cpu_never_spins() {
        let spin = spin(true);
        for _ in 0..10 {
            spin.learn(true, Duration::from_micros(3));
        }
        assert_eq!(spin.budget.get(), Duration::ZERO);
        let (_poll, remote) = remote();
        remote.wake(crate::task::id::TaskRef { key: 0, id: 1 });
        assert!(!spin.wait_for(&remote, None), "no spin, so the loop sleeps");
    }
}
