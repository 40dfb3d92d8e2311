//! Timing polls on the loop, and the watchdog thread that reports a poll still running.
//!
//! The loop side ([`Debug`]) is given each poll's start and end (clock ticks, read by the
//! instruments, `clock.rs`) and reports `OL001` when a poll ran past the threshold. Before each poll it also publishes, in a few atomics of
//! [`Watch`], which task is running and since when. The watchdog thread reads them: a poll
//! whose sequence number has not moved for longer than the threshold is reported (`OL002`)
//! while it is still running, then again at doubling intervals, the first time with a
//! backtrace of the loop thread (`stack.rs`). When that poll finally returns, the loop's
//! `OL001` says "unblocked after ..." and how many times it was reported.
//!
//! Publishing costs the loop a few plain stores per poll and no lock: task names and spawn
//! sites are interned once per site (`SiteTable`), so a poll publishes only two numbers.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::panic::Location;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::thread;
use std::time::Duration;

use parking_lot::{Condvar, Mutex, MutexGuard};

use super::clock::Clock;
use super::jobs::JobWatch;
use super::{Backtrace, Code, DebugConfig, Report, Reporter, TaskInfo, stack};
use crate::task::Id;

/// A task name and spawn site, shared with the watchdog.
#[derive(Clone)]
struct Site {
    name: Option<String>,
    location: &'static Location<'static>,
}

/// State shared between the loop and its watchdog thread.
pub(crate) struct Watch {
    /// The clock polls are timed with (ticks; see `clock.rs`).
    clock: Clock,
    /// Poll sequence: odd while a poll runs, even between polls. Written only by the loop
    /// (Release, publishing the fields below); read by the watchdog (Acquire).
    seq: AtomicU64,
    /// When the running poll started, in clock ticks; which task; which site.
    start_ticks: AtomicU64,
    task_id: AtomicU64,
    site: AtomicU32,
    /// The `seq` of the last poll the watchdog reported, and how many times it did:
    /// written by the watchdog, read by the loop when that poll returns.
    flagged_seq: AtomicU64,
    flagged_count: AtomicU32,
    /// Interned sites; appended by the loop once per new site, read by the watchdog.
    sites: Mutex<Vec<Site>>,
    threshold: Duration,
    backtraces: bool,
    reporter: Arc<Reporter>,
    /// The loop thread, for the backtrace signal.
    #[cfg(target_os = "linux")]
    loop_thread: libc::pthread_t,
    /// Offloaded jobs being watched (scanned on every wake-up of the watchdog).
    jobs: Arc<JobWatch>,
    /// Set when the runtime drops; the watchdog exits.
    stop: Mutex<bool>,
    stop_signal: Condvar,
}

impl Watch {
    /// The running poll, if one is running: its seq, start, task id and site. A
    /// seqlock-style read: the fields are trusted only if `seq` did not move meanwhile.
    fn running_poll(&self) -> Option<(u64, Duration, u64, u32)> {
        let seq = self.seq.load(Ordering::Acquire);
        if seq.is_multiple_of(2) {
            return None;
        }
        let start = self
            .clock
            .duration(self.start_ticks.load(Ordering::Acquire));
        let task = self.task_id.load(Ordering::Acquire);
        let site = self.site.load(Ordering::Acquire);
        (self.seq.load(Ordering::Acquire) == seq).then_some((seq, start, task, site))
    }

    fn task_info(&self, id: u64, site: u32) -> TaskInfo {
        let site = self.sites.lock()[site as usize].clone();
        TaskInfo {
            id: Id(id),
            name: site.name,
            location: site.location,
        }
    }

    /// The name and location of every interned site, by index.
    fn sites(&self) -> Vec<Site> {
        self.sites.lock().clone()
    }
}

/// A spawn site as the loop interns it: the location's address and the task name.
type SiteKey = (usize, Option<Box<str>>);

/// The loop's half of debug mode, owned by the runtime's core.
pub(crate) struct Debug {
    pub(crate) threshold: Duration,
    /// `threshold` in clock ticks.
    threshold_ticks: u64,
    watch: Arc<Watch>,
    watchdog: RefCell<Option<thread::JoinHandle<()>>>,
    /// Site -> index; loop-only, so interning takes no lock.
    site_index: RefCell<HashMap<SiteKey, u32>>,
    /// The last unnamed site interned (its location's address and index): tasks spawned
    /// in a loop skip the hash lookup.
    last_site: Cell<(usize, u32)>,
    /// The loop's own copy of `Watch::seq`.
    seq: Cell<u64>,
    /// Slow polls seen so far (for `Metrics`).
    pub(crate) slow_polls: Cell<u64>,
    /// Per-site poll statistics for the exit summary, indexed by site (loop-only).
    site_stats: RefCell<Vec<SiteCounts>>,
}

/// Polls of one spawn site, for the exit summary.
#[derive(Clone, Copy, Default)]
pub(crate) struct SiteStats {
    pub(crate) polls: u64,
    pub(crate) slow: u64,
    pub(crate) longest: Duration,
}

/// `SiteStats` as the loop keeps them, with the longest poll in clock ticks.
#[derive(Clone, Copy, Default)]
struct SiteCounts {
    polls: u64,
    slow: u64,
    longest: u64,
}

/// A poll in progress, from `begin_poll` to `end_poll`.
pub(crate) struct PollTimer {
    start: u64,
    seq: u64,
}

/// A poll that ran past the threshold.
pub(crate) struct SlowPoll {
    pub(crate) elapsed: Duration,
    pub(crate) times_reported: u32,
}

impl Debug {
    /// Starts debug mode for a loop running on the current thread, with its watchdog.
    pub(crate) fn start(
        config: DebugConfig,
        clock: Clock,
        reporter: Arc<Reporter>,
        jobs: Arc<JobWatch>,
    ) -> std::io::Result<Self> {
        let watch = Arc::new(Watch {
            clock,
            seq: AtomicU64::new(0),
            start_ticks: AtomicU64::new(0),
            task_id: AtomicU64::new(0),
            site: AtomicU32::new(0),
            flagged_seq: AtomicU64::new(0),
            flagged_count: AtomicU32::new(0),
            sites: Mutex::new(Vec::new()),
            threshold: config.threshold,
            backtraces: config.backtraces && stack::install(),
            jobs,
            reporter,
            #[cfg(target_os = "linux")]
            // SAFETY: pthread_self has no preconditions and always succeeds.
            loop_thread: unsafe { libc::pthread_self() },
            stop: Mutex::new(false),
            stop_signal: Condvar::new(),
        });
        let watchdog = {
            let watch = watch.clone();
            thread::Builder::new()
                .name("oneloop-watchdog".into())
                .spawn(move || run_watchdog(&watch))?
        };
        Ok(Debug {
            threshold: config.threshold,
            threshold_ticks: clock.ticks(config.threshold),
            watch,
            watchdog: RefCell::new(Some(watchdog)),
            site_index: RefCell::new(HashMap::new()),
            last_site: Cell::new((0, 0)),
            seq: Cell::new(0),
            slow_polls: Cell::new(0),
            site_stats: RefCell::new(Vec::new()),
        })
    }

    /// The site index for a task spawned at `location` with `name`.
    pub(crate) fn intern(&self, location: &'static Location<'static>, name: Option<&str>) -> u32 {
        let address = location as *const Location<'static> as usize;
        let (last_address, last_site) = self.last_site.get();
        if name.is_none() && address == last_address {
            return last_site;
        }
        let key = (address, name.map(Box::from));
        let mut index = self.site_index.borrow_mut();
        let site = match index.get(&key) {
            Some(&site) => site,
            None => {
                let mut sites = self.watch.sites.lock();
                let site =
                    u32::try_from(sites.len()).expect("oneloop: more than 4 billion spawn sites");
                sites.push(Site {
                    name: name.map(str::to_owned),
                    location,
                });
                self.site_stats
                    .borrow_mut()
                    .resize(site as usize + 1, SiteCounts::default());
                index.insert(key, site);
                site
            }
        };
        if name.is_none() {
            self.last_site.set((address, site));
        }
        site
    }

    /// Publishes that the loop, at `start` (clock ticks), is about to poll task `task_id`
    /// (spawned at `site`).
    #[inline]
    pub(crate) fn begin_poll(&self, task_id: u64, site: u32, start: u64) -> PollTimer {
        let seq = self.seq.get() + 1;
        self.seq.set(seq);
        let watch = &self.watch;
        watch.start_ticks.store(start, Ordering::Release);
        watch.task_id.store(task_id, Ordering::Release);
        watch.site.store(site, Ordering::Release);
        watch.seq.store(seq, Ordering::Release);
        PollTimer { start, seq }
    }

    /// Publishes that the poll of a task from `site` has returned, at `end` (clock ticks);
    /// says whether it was slow.
    #[inline]
    pub(crate) fn end_poll(&self, timer: PollTimer, site: u32, end: u64) -> Option<SlowPoll> {
        let elapsed = end.saturating_sub(timer.start);
        let seq = timer.seq + 1;
        self.seq.set(seq);
        self.watch.seq.store(seq, Ordering::Release);
        let slow = elapsed >= self.threshold_ticks;
        if let Some(entry) = self.site_stats.borrow_mut().get_mut(site as usize) {
            entry.polls += 1;
            entry.slow += u64::from(slow);
            entry.longest = entry.longest.max(elapsed);
        }
        if !slow {
            return None;
        }
        self.slow_polls.set(self.slow_polls.get() + 1);
        let times_reported = if self.watch.flagged_seq.load(Ordering::Acquire) == timer.seq {
            self.watch.flagged_count.load(Ordering::Acquire)
        } else {
            0
        };
        Some(SlowPoll {
            elapsed: self.watch.clock.duration(elapsed),
            times_reported,
        })
    }

    /// Per-site poll statistics, with each site's name and location.
    pub(crate) fn site_stats(&self) -> Vec<(TaskInfo, SiteStats)> {
        let sites = self.watch.sites();
        self.site_stats
            .borrow()
            .iter()
            .enumerate()
            .filter_map(|(i, stats)| {
                let site = sites.get(i)?;
                let stats = SiteStats {
                    polls: stats.polls,
                    slow: stats.slow,
                    longest: self.watch.clock.duration(stats.longest),
                };
                Some((TaskInfo::new(0, site.name.as_deref(), site.location), stats))
            })
            .collect()
    }

    /// Stops the watchdog and waits for it (the runtime is dropping).
    pub(crate) fn stop(&self) {
        *self.watch.stop.lock() = true;
        self.watch.stop_signal.notify_all();
        if let Some(watchdog) = self.watchdog.borrow_mut().take() {
            let _ = watchdog.join();
        }
    }
}

/// The watchdog thread.
///
/// Between polls it looks every half threshold, so any poll that lasts a whole threshold
/// is seen while it runs; once it sees a poll it sleeps until that poll's own deadline
/// (start + threshold, then doubling), so reports come on time rather than on a tick. Each
/// look also scans the running offloaded jobs.
fn run_watchdog(watch: &Watch) {
    let idle_wait = watch.threshold / 2;
    // The poll being watched: (its seq, when the next report is due, reports so far).
    let mut watching: Option<(u64, Duration, u32)> = None;
    let mut stop = watch.stop.lock();
    loop {
        let now = watch.clock.elapsed();
        let wait = match (watching, watch.running_poll()) {
            (Some((seq, due, _)), Some((running, start, ..))) if seq == running => {
                (start + due).saturating_sub(now).min(idle_wait)
            }
            _ => idle_wait,
        };
        if !wait.is_zero() {
            watch.stop_signal.wait_for(&mut stop, wait);
        }
        if *stop {
            return;
        }
        MutexGuard::unlocked(&mut stop, || watch.jobs.scan());
        let Some((seq, start, task, site)) = watch.running_poll() else {
            watching = None;
            continue;
        };
        let (due, reports) = match watching {
            Some((watched, due, reports)) if watched == seq => (due, reports),
            _ => (watch.threshold, 0),
        };
        let running_for = watch.clock.elapsed().saturating_sub(start);
        if running_for < due {
            watching = Some((seq, due, reports));
            continue;
        }
        // Report outside the stop lock: the sink is user code and may take its time.
        let reported = MutexGuard::unlocked(&mut stop, || {
            report_still_blocking(watch, seq, task, site, running_for, reports == 0)
        });
        let reports = reports + u32::from(reported);
        // Backoff: the next report is due at the first doubling of the threshold past the
        // time already spent, so a report that took a while never triggers a burst.
        let mut next = due.saturating_mul(2);
        let so_far = watch.clock.elapsed().saturating_sub(start);
        while next <= so_far {
            next = next.saturating_mul(2);
        }
        watching = Some((seq, next, reports));
    }
}

/// Reports poll `seq` as still blocking; returns false if it returned meanwhile.
fn report_still_blocking(
    watch: &Watch,
    seq: u64,
    task: u64,
    site: u32,
    running_for: Duration,
    first: bool,
) -> bool {
    let still_running = || watch.seq.load(Ordering::Acquire) == seq;
    // Only the raw stack is captured here (microseconds); symbols are resolved when the
    // report is displayed, so the report itself is never late.
    #[cfg(target_os = "linux")]
    let ips = (first && watch.backtraces)
        .then(|| stack::capture(watch.loop_thread, still_running))
        .flatten();
    #[cfg(not(target_os = "linux"))]
    let ips: Option<Vec<usize>> = None;
    if !still_running() {
        return false; // it returned while we looked: the loop's OL001 tells the rest
    }
    // Flag before emitting, so the loop's closing OL001 counts this report.
    let count = if first {
        1
    } else {
        watch.flagged_count.load(Ordering::Relaxed) + 1
    };
    watch.flagged_count.store(count, Ordering::Release);
    watch.flagged_seq.store(seq, Ordering::Release);
    let mut report = Report::new(Code::StillBlocking, watch.task_info(task, site));
    report.duration = Some(running_for);
    report.threshold = Some(watch.threshold);
    report.backtrace = ips.map(Backtrace::new);
    watch.reporter.emit(&report);
    true
}
