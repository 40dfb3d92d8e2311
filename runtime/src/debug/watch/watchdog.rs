//! The watchdog thread: looks at the loop every eighth of the threshold, reports a poll
//! that is still running past it (`OL002`, with a backtrace of the loop thread from
//! `stack/`), and scans the offloaded jobs (`jobs.rs`) every half threshold.
//!
//! It reads and writes only the record it shares with the loop (`shared.rs`); the loop's
//! side (`windows.rs`) starts it and stops it when the runtime drops.

use std::sync::atomic::Ordering;
use std::time::Duration;

use parking_lot::MutexGuard;

use super::shared::{RunningPoll, Shared};
use crate::debug::{Backtrace, Code, Report, stack};

/// How often the watchdog looks: an eighth of the threshold (so a poll it did not look
/// into is shorter than that), but not more than 20,000 times a second.
fn look_interval(threshold: Duration) -> Duration {
    (threshold / 8).max(Duration::from_micros(50))
}

/// The poll the watchdog is watching, from the first look that saw it running until a
/// look finds it gone.
#[derive(Clone, Copy)]
struct Watched {
    /// The poll's sequence number (see `Shared::seq`).
    seq: u64,
    /// When the poll began at the earliest (clock ticks): the later of its window's start
    /// and the look before the first one that saw it.
    began: u64,
    /// When the next `OL002` is due, as time since `began`: the threshold, then doubling.
    due: Duration,
    /// `OL002` reports made so far about this poll.
    reports: u32,
}

/// The watchdog thread.
///
/// It looks every eighth of the threshold (`look_interval`); once it sees a poll running,
/// it also wakes on that poll's own deadline (start + threshold, then doubling), so reports
/// come on time rather than on a tick. Every half threshold, a look also scans the running
/// offloaded jobs.
pub(super) fn run(shared: &Shared) {
    let every = look_interval(shared.threshold);
    let half = shared.clock.ticks(shared.threshold) / 2;
    let mut last_look = shared.looked_at.load(Ordering::Relaxed);
    let mut last_scan = last_look;
    let mut watching: Option<Watched> = None;
    let mut stop = shared.stop.lock();
    loop {
        // Check before waiting, not only after: `stop` may have been set while this thread
        // was not waiting (before its first look, or while the lock was released for a
        // scan or a report), and that notification is gone; waiting first would hold the
        // runtime's drop for up to a whole look interval.
        if *stop {
            return;
        }
        let wait = match watching {
            Some(watched) => {
                let running = shared
                    .clock
                    .duration(shared.clock.now().saturating_sub(watched.began));
                watched.due.saturating_sub(running).min(every)
            }
            None => every,
        };
        if !wait.is_zero() {
            shared.stop_signal.wait_for(&mut stop, wait);
        }
        if *stop {
            return;
        }
        // The look: publish its time (a gap of half a threshold first, so a loop that sees
        // the new look also sees the gap), then see what is running.
        let now = shared.clock.now().max(last_look + 1);
        if now - last_look >= half {
            shared.blind_until.store(now, Ordering::Release);
        }
        // Which poll the loop is in, read after the look's time: a poll that began later
        // sees a smaller `seq` here and knows it began after this look.
        let seen_seq = shared.seq.load(Ordering::Acquire);
        shared.looked_seq.store(seen_seq, Ordering::Relaxed);
        shared.looked_at.store(now, Ordering::Release);
        let previous_look = std::mem::replace(&mut last_look, now);
        // Jobs are reported after seconds, not milliseconds: every half threshold will do
        // (the scan takes the lock the workers take per job).
        if now.saturating_sub(last_scan) >= half {
            last_scan = now;
            MutexGuard::unlocked(&mut stop, || shared.jobs.scan());
        }
        let Some(poll) = shared.running_poll() else {
            watching = None;
            continue;
        };
        let Watched {
            seq,
            began,
            due,
            reports,
        } = match watching {
            Some(watched) if watched.seq == poll.seq => watched,
            // First seen now: it began after the previous look (which saw another poll or
            // none) and after its window started. The loop times it from there too.
            _ => {
                shared
                    .first_seen_bound
                    .store(previous_look, Ordering::Relaxed);
                shared.first_seen_seq.store(poll.seq, Ordering::Release);
                Watched {
                    seq: poll.seq,
                    began: poll.window_start.max(previous_look),
                    due: shared.threshold,
                    reports: 0,
                }
            }
        };
        let running_for = shared
            .clock
            .duration(shared.clock.now().saturating_sub(began));
        if running_for < due {
            watching = Some(Watched {
                seq,
                began,
                due,
                reports,
            });
            continue;
        }
        // Report outside the stop lock: the sink is user code and may take its time.
        let reported = MutexGuard::unlocked(&mut stop, || {
            report_still_blocking(shared, &poll, running_for, reports == 0)
        });
        let reports = reports + u32::from(reported);
        // Backoff: the next report is due at the first doubling of the threshold past the
        // time already spent, so a report that took a while never triggers a burst.
        let mut next = due.saturating_mul(2);
        let so_far = shared
            .clock
            .duration(shared.clock.now().saturating_sub(began));
        while next <= so_far {
            next = next.saturating_mul(2);
        }
        watching = Some(Watched {
            seq,
            began,
            due: next,
            reports,
        });
    }
}

/// Reports `poll` as still blocking; returns false if it returned meanwhile.
fn report_still_blocking(
    shared: &Shared,
    poll: &RunningPoll,
    running_for: Duration,
    first: bool,
) -> bool {
    let RunningPoll {
        seq, task, site, ..
    } = *poll;
    let still_running = || shared.seq.load(Ordering::Acquire) == seq;
    // Only the raw stack is captured here (microseconds); symbols are resolved when the
    // report is displayed, so the report itself is never late. A loop thread sleeping in a
    // system call is not interrupted: the capture names the call instead.
    #[cfg(target_os = "linux")]
    let (ips, note) = match (&shared.loop_thread, first && shared.backtraces) {
        (Some(thread), true) => {
            let capture = stack::capture(thread, still_running);
            (capture.ips, capture.note)
        }
        _ => (None, None),
    };
    #[cfg(not(target_os = "linux"))]
    let (ips, note): (Option<Vec<usize>>, Option<String>) = (None, None);
    if !still_running() {
        return false; // it returned while we looked: the loop's OL001 tells the rest
    }
    // Flag before emitting, so the loop's closing OL001 counts this report.
    let count = if first {
        1
    } else {
        shared.flagged_count.load(Ordering::Relaxed) + 1
    };
    shared.flagged_count.store(count, Ordering::Release);
    shared.flagged_seq.store(seq, Ordering::Release);
    let mut report = Report::new(Code::StillBlocking, shared.task_info(task, site));
    report.duration = Some(running_for);
    report.threshold = Some(shared.threshold);
    report.backtrace = ips.map(Backtrace::new);
    report.message = note;
    shared.reporter.emit(&report);
    true
}
