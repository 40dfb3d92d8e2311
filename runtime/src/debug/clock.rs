//! The clock debug mode times polls with.
//!
//! Debug mode reads a clock once per window of polls (`watch/windows.rs`), and on every look of its
//! watchdog, so the clock's cost still matters (benchmark W8). `Instant::now()` costs 25-30 ns
//! where the kernel's clock source is the CPU's time-stamp counter (it reads the counter
//! and then scales it); reading the counter directly costs about half that. So on x86_64,
//! when the kernel itself trusts the counter (its clock source is `tsc`, which Linux
//! selects only when the counter runs at a constant rate and is synchronised across
//! cores), polls are timed in raw counter ticks, converted to time only when a poll turns
//! out slow or a summary is printed. Everywhere else ticks are nanoseconds of `Instant`.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A monotonic clock counting in ticks since its creation.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Clock {
    base: Instant,
    /// Nanoseconds per counter tick, and the counter at `base`, when the counter is used.
    tsc: Option<(f64, u64)>,
}

impl Clock {
    /// A clock starting now.
    pub(crate) fn new() -> Clock {
        let tsc = ns_per_tick().map(|ns| (ns, read_tsc()));
        Clock {
            base: Instant::now(),
            tsc,
        }
    }

    /// Ticks since the clock was created.
    #[inline]
    pub(crate) fn now(&self) -> u64 {
        match self.tsc {
            Some((_, base)) => read_tsc().saturating_sub(base),
            None => nanos(self.base.elapsed()),
        }
    }

    /// The time `ticks` stand for.
    pub(crate) fn duration(&self, ticks: u64) -> Duration {
        match self.tsc {
            Some((ns_per_tick, _)) => Duration::from_nanos((ticks as f64 * ns_per_tick) as u64),
            None => Duration::from_nanos(ticks),
        }
    }

    /// The ticks that make up `duration` (rounded up, so a comparison against a threshold
    /// never reports a poll shorter than it).
    pub(crate) fn ticks(&self, duration: Duration) -> u64 {
        match self.tsc {
            Some((ns_per_tick, _)) => (duration.as_nanos() as f64 / ns_per_tick).ceil() as u64,
            None => nanos(duration),
        }
    }
}

fn nanos(duration: Duration) -> u64 {
    duration.as_nanos().try_into().unwrap_or(u64::MAX)
}

/// The counter's period, measured once per process; `None` where it is not used.
fn ns_per_tick() -> Option<f64> {
    static PERIOD: OnceLock<Option<f64>> = OnceLock::new();
    *PERIOD.get_or_init(|| {
        if !cfg!(target_arch = "x86_64") || std::env::var_os("ONELOOP_DEBUG_CLOCK_STD").is_some() {
            return None;
        }
        let source = std::fs::read_to_string(
            "/sys/devices/system/clocksource/clocksource0/current_clocksource",
        )
        .ok()?;
        if source.trim() != "tsc" {
            return None;
        }
        // Count ticks over 2 ms of `Instant`: its ~30 ns of jitter is 0.002% of that.
        let (start, ticks_at_start) = (Instant::now(), read_tsc());
        let mut elapsed = start.elapsed();
        while elapsed < Duration::from_millis(2) {
            std::hint::spin_loop();
            elapsed = start.elapsed();
        }
        let ticks = read_tsc().saturating_sub(ticks_at_start);
        (ticks > 0).then(|| elapsed.as_nanos() as f64 / ticks as f64)
    })
}

#[cfg(target_arch = "x86_64")]
#[inline]
fn read_tsc() -> u64 {
    // SAFETY: `rdtsc` exists on every x86_64 CPU and has no preconditions: it only reads
    // the time-stamp counter (the intrinsic is `unsafe` because it is a raw instruction).
    unsafe { core::arch::x86_64::_rdtsc() }
}

#[cfg(not(target_arch = "x86_64"))]
#[inline]
fn read_tsc() -> u64 {
    0 // never called: `ns_per_tick` is `None` off x86_64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_and_durations_agree_with_instant() {
        let clock = Clock::new();
        let start = Instant::now();
        let begin = clock.now();
        std::thread::sleep(Duration::from_millis(20));
        let measured = clock.duration(clock.now() - begin);
        let real = start.elapsed();
        // The clock's reading lies within the `Instant` reading taken around it.
        assert!(
            measured <= real + Duration::from_micros(50),
            "{measured:?} vs {real:?}"
        );
        assert!(measured >= Duration::from_millis(20), "{measured:?}");
        let threshold = Duration::from_millis(7);
        assert!(clock.duration(clock.ticks(threshold)) >= threshold - Duration::from_nanos(1));
    }
}
