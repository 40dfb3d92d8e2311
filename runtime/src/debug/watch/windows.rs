//! The loop's side of debug mode: timing polls in windows that share a clock reading,
//! interning spawn sites, and counting each site's polls for the exit summary.
//!
//! `instruments.rs` calls it around every poll (`begin_poll`, `end_poll`) and batch
//! (`restart_window`, `end_batch`); what a closed window found (`Finding`) goes back there
//! to be reported. It publishes through the record it shares with the watchdog
//! (`shared.rs`), and starts and stops the watchdog thread (`watchdog.rs`). How windows
//! are sized and closed, and why, is in `watch/mod.rs`.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::panic::Location;
use std::sync::Arc;
use std::sync::atomic::{Ordering, fence};
use std::thread;
use std::time::Duration;

use super::shared::{Shared, Site};
use super::watchdog;
use crate::debug::clock::Clock;
use crate::debug::jobs::JobWatch;
use crate::debug::{DebugConfig, Reporter, TaskInfo};

/// The most polls one window holds: the loop reads the clock at least once per this many.
const MAX_WINDOW: usize = 64;

/// A spawn site as the loop interns it (the key of `PollWatch::site_index`): two tasks
/// share a site when they were spawned at the same place with the same name.
#[derive(PartialEq, Eq, Hash)]
struct SiteKey {
    /// The spawn location's address: `Location`s of one call site are one static.
    address: usize,
    /// The task's name, if it was given one.
    name: Option<Box<str>>,
}

/// The last unnamed site the loop interned, remembered so that tasks spawned in a loop
/// skip the hash lookup.
#[derive(Clone, Copy)]
struct LastSite {
    /// The spawn location's address (0 before the first one).
    address: usize,
    /// Its index in `Shared::sites`.
    site: u32,
}

/// The watchdog's latest look, as the loop saw it when a poll returned: it looked since the
/// previous poll ended, so perhaps during this one.
#[derive(Clone, Copy)]
struct RecentLook {
    /// When the watchdog looked (`Shared::looked_at`, clock ticks).
    at: u64,
    /// The sequence number of the poll that just returned (odd: as it ran).
    poll_seq: u64,
}

/// The loop's half of debug mode: times the loop's polls in windows, interns their spawn
/// sites, counts each site's polls, and owns the watchdog thread that looks at them. Held
/// by the runtime's `Instruments`; used on the loop thread only.
pub(crate) struct PollWatch {
    /// The slow-task threshold (read by `Instruments` for the reports it makes).
    pub(crate) threshold: Duration,
    /// `threshold` in clock ticks.
    threshold_ticks: u64,
    /// What the loop publishes for the watchdog, and the watchdog for the loop.
    shared: Arc<Shared>,
    /// The watchdog thread: set by `start`, taken and joined by `stop`.
    watchdog: RefCell<Option<thread::JoinHandle<()>>>,
    /// Site -> index; loop-only, so interning takes no lock.
    site_index: RefCell<HashMap<SiteKey, u32>>,
    /// The last unnamed site interned: tasks spawned in a loop skip the hash lookup.
    last_site: Cell<LastSite>,
    /// The loop's own copy of `Shared::seq`.
    seq: Cell<u64>,
    /// `Shared::looked_at` as the loop last read it, after a poll.
    last_look: Cell<u64>,
    /// What the current (or last) timed run is: a poll, or a destructor between polls.
    activity: Cell<Activity>,
    window: Window,
    /// Slow polls seen so far (for `Metrics`).
    pub(crate) slow_polls: Cell<u64>,
    /// Per-site poll statistics for the exit summary, indexed by site (loop-only).
    site_stats: RefCell<Vec<SiteCounts>>,
}

/// The polls timed together since the last clock reading.
struct Window {
    /// Polls in the window so far, and the most it may hold before it closes.
    polls: Cell<usize>,
    limit: Cell<usize>,
    /// The site of each poll in the window.
    sites: [Cell<u32>; MAX_WINDOW],
}

/// Polls of one spawn site, for the exit summary.
#[derive(Clone, Copy, Default)]
pub(crate) struct SiteStats {
    pub(crate) polls: u64,
    pub(crate) slow: u64,
    /// The longest poll timed alone.
    pub(crate) longest: Duration,
    /// The longest window this site's polls were timed in together: each of them took
    /// at most that long.
    pub(crate) longest_group: Duration,
}

/// One spawn site's polls, for the exit summary (`PollWatch::site_stats`).
pub(crate) struct SitePolls {
    /// The site: its task name and spawn location (the id is 0: many tasks share a site).
    pub(crate) site: TaskInfo,
    /// Its polls.
    pub(crate) stats: SiteStats,
}

/// `SiteStats` as the loop keeps them, in clock ticks.
#[derive(Clone, Copy, Default)]
struct SiteCounts {
    polls: u64,
    slow: u64,
    longest: u64,
    longest_group: u64,
}

/// A poll in progress, from `begin_poll` to `end_poll`.
pub(crate) struct PollTimer {
    seq: u64,
}

/// What the loop runs for a task: its poll, or, between polls, a destructor of its
/// (`Core::between_polls`), timed like a poll so that it is blamed on that task and never
/// on the next poll.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Activity {
    #[default]
    Poll,
    /// Dropping the output of a task nobody awaits.
    DropOutput,
    /// Dropping the future of a cancelled task.
    DropFuture,
}

impl Activity {
    /// How a report says it, after the task (`None` for a poll).
    pub(crate) fn describe(self) -> Option<&'static str> {
        match self {
            Activity::Poll => None,
            Activity::DropOutput => Some("while its output was dropped (its destructor ran)"),
            Activity::DropFuture => {
                Some("while its future was dropped on cancellation (its destructor ran)")
            }
        }
    }
}

/// What closing a window found.
pub(crate) enum Finding {
    /// The window's last poll, timed alone, ran past the threshold.
    Slow(SlowPoll),
    /// Polls timed together, in a window that lasted past the threshold while the watchdog
    /// could not look: one of them may have been slow, which one is unknown.
    Unseen(UnseenPolls),
}

/// Polls of one spawn site among `UnseenPolls`.
pub(crate) struct UnseenSite {
    /// The site: its task name and spawn location (the id is 0).
    pub(crate) site: TaskInfo,
    /// How many of the polls timed together were of this site.
    pub(crate) polls: usize,
}

/// A poll that ran past the threshold.
pub(crate) struct SlowPoll {
    pub(crate) task: TaskInfo,
    pub(crate) elapsed: Duration,
    pub(crate) times_reported: u32,
    /// A poll, or a destructor the loop ran for the task between polls.
    pub(crate) activity: Activity,
}

/// Polls that may have blocked the loop, timed together.
pub(crate) struct UnseenPolls {
    /// How long the polls (and the loop's work between them) took together.
    pub(crate) elapsed: Duration,
    /// Each site among them and its number of polls.
    pub(crate) sites: Vec<UnseenSite>,
}

impl PollWatch {
    /// Starts debug mode for a loop running on the current thread, with its watchdog.
    pub(crate) fn start(
        config: DebugConfig,
        clock: Clock,
        reporter: Arc<Reporter>,
        jobs: Arc<JobWatch>,
    ) -> std::io::Result<Self> {
        let debug = PollWatch::without_watchdog(config, clock, reporter, jobs);
        let watchdog = {
            let shared = debug.shared.clone();
            thread::Builder::new()
                .name("oneloop-watchdog".into())
                .spawn(move || watchdog::run(&shared))?
        };
        *debug.watchdog.borrow_mut() = Some(watchdog);
        Ok(debug)
    }

    /// The loop's side alone (its tests play the watchdog's part).
    fn without_watchdog(
        config: DebugConfig,
        clock: Clock,
        reporter: Arc<Reporter>,
        jobs: Arc<JobWatch>,
    ) -> Self {
        let shared = Arc::new(Shared::new(config, clock, reporter, jobs));
        let shared_look = shared.looked_at.load(Ordering::Relaxed);
        PollWatch {
            threshold: config.threshold,
            threshold_ticks: clock.ticks(config.threshold),
            window: Window {
                polls: Cell::new(0),
                limit: Cell::new(1),
                sites: std::array::from_fn(|_| Cell::new(0)),
            },
            shared,
            watchdog: RefCell::new(None),
            site_index: RefCell::new(HashMap::new()),
            last_site: Cell::new(LastSite {
                address: 0,
                site: 0,
            }),
            seq: Cell::new(0),
            last_look: Cell::new(shared_look),
            activity: Cell::new(Activity::Poll),
            slow_polls: Cell::new(0),
            site_stats: RefCell::new(Vec::new()),
        }
    }

    /// The site index for a task spawned at `location` with `name`.
    #[inline]
    pub(crate) fn intern(&self, location: &'static Location<'static>, name: Option<&str>) -> u32 {
        let address = location as *const Location<'static> as usize;
        let last = self.last_site.get();
        if name.is_none() && address == last.address {
            return last.site;
        }
        self.intern_new(address, location, name)
    }

    #[inline(never)]
    fn intern_new(
        &self,
        address: usize,
        location: &'static Location<'static>,
        name: Option<&str>,
    ) -> u32 {
        let key = SiteKey {
            address,
            name: name.map(Box::from),
        };
        let mut index = self.site_index.borrow_mut();
        let site = match index.get(&key) {
            Some(&site) => site,
            None => {
                let mut sites = self.shared.sites.lock();
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
            self.last_site.set(LastSite { address, site });
        }
        site
    }

    /// Starts a window with a fresh clock reading, if none is open: before a batch of
    /// polls (the loop may have slept since the last one), and after user code that ran
    /// between polls (a destructor), so a poll timed alone is timed alone.
    #[inline]
    pub(crate) fn restart_window(&self) {
        if self.window.polls.get() == 0 {
            let now = self.shared.clock.now();
            self.shared.window_start.store(now, Ordering::Release);
        }
    }

    /// Publishes that the loop is about to run a destructor of task `task_id` between its
    /// polls; timed as a poll of that task (end it with `end_poll`).
    pub(crate) fn begin_activity(&self, task_id: u64, site: u32, activity: Activity) -> PollTimer {
        self.activity.set(activity);
        self.begin_poll(task_id, site)
    }

    /// Publishes that the loop is about to poll task `task_id` (spawned at `site`).
    #[inline]
    pub(crate) fn begin_poll(&self, task_id: u64, site: u32) -> PollTimer {
        let seq = self.seq.get() + 1;
        self.seq.set(seq);
        let shared = &self.shared;
        // A seqlock: the fields below are rewritten while `seq` is even. The fence orders
        // the store of that even `seq` (the previous `end_poll`) before them, for a reader
        // that sees them and then fences (`Shared::running_poll`): it sees `seq` has moved.
        // (On x86 a compiler barrier; on weakly ordered CPUs it is what keeps a reader from
        // pairing this poll's task with the previous poll's `seq`.)
        fence(Ordering::Release);
        shared.task_id.store(task_id, Ordering::Relaxed);
        shared.site.store(site, Ordering::Relaxed);
        shared.seq.store(seq, Ordering::Release);
        PollTimer { seq }
    }

    /// Publishes that the poll of a task spawned at `site` has returned; closes the window
    /// if it is full or the watchdog looked during the poll.
    #[inline]
    pub(crate) fn end_poll(&self, timer: PollTimer, site: u32) -> Option<Finding> {
        let seq = timer.seq + 1;
        self.seq.set(seq);
        self.shared.seq.store(seq, Ordering::Release);
        let window = &self.window;
        let polls = window.polls.get();
        window.sites[polls].set(site);
        let polls = polls + 1;
        // One load tells whether the watchdog looked since the previous poll ended, so
        // perhaps during this one.
        let look = self.shared.looked_at.load(Ordering::Acquire);
        let seen = self.last_look.get();
        if look == seen && polls < window.limit.get() {
            window.polls.set(polls);
            return None;
        }
        self.last_look.set(look);
        let looked = (look != seen).then_some(RecentLook {
            at: look,
            poll_seq: timer.seq,
        });
        self.close_window(polls, looked)
    }

    /// The destructor begun with `begin_activity` returned.
    pub(crate) fn end_activity(&self, timer: PollTimer, site: u32) -> Option<Finding> {
        let finding = self.end_poll(timer, site);
        self.activity.set(Activity::Poll);
        finding
    }

    /// The batch of polls is over: closes the open window, if any.
    pub(crate) fn end_batch(&self) -> Option<Finding> {
        match self.window.polls.get() {
            0 => None,
            polls => self.close_window(polls, None),
        }
    }

    /// Reads the clock and accounts for the window's `polls`. `looked` is set when the
    /// watchdog looked since the previous poll ended (before or during the last one).
    ///
    /// A task is named only for its own poll's time. The last poll is timed alone from a
    /// moment known to be before it began and after anything the loop did before it (a
    /// destructor, being preempted): a look that saw the loop not yet in it, or the
    /// window's start. What lies between polls is never added to the next one beyond the
    /// gap between two looks.
    #[inline(never)]
    fn close_window(&self, polls: usize, looked: Option<RecentLook>) -> Option<Finding> {
        let now = self.shared.clock.now();
        let window = &self.window;
        // Only the loop writes it: a plain load and store, no read-modify-write.
        let start = self.shared.window_start.load(Ordering::Relaxed);
        self.shared.window_start.store(now, Ordering::Release);
        window.polls.set(0);
        let elapsed = now.saturating_sub(start);
        let last_alone = match looked {
            Some(look) => self.began_after(look).map(|bound| {
                // The poll began after `bound` and after the window's start.
                now.saturating_sub(start.max(bound))
            }),
            // Alone in its window, which started right before it: exact, unless the
            // watchdog was away meanwhile (the loop thread may not have run either; the
            // window is then reported as what it is below, not blamed on the task).
            None if polls == 1 && !self.watchdog_was_away(start, now) => Some(elapsed),
            None => None,
        };
        let together = polls - usize::from(last_alone.is_some());
        let mut finding = None;
        {
            let mut stats = self.site_stats.borrow_mut();
            // Runs of one site are the common case (tasks spawned in a loop).
            let mut rest = &window.sites[..together];
            while let Some(first) = rest.first() {
                let site = first.get();
                let run = rest.iter().take_while(|cell| cell.get() == site).count();
                if let Some(entry) = stats.get_mut(site as usize) {
                    entry.polls += run as u64;
                    entry.longest_group = entry.longest_group.max(elapsed);
                }
                rest = &rest[run..];
            }
            if let Some(alone) = last_alone {
                let site = window.sites[polls - 1].get();
                let slow = alone >= self.threshold_ticks;
                if let Some(entry) = stats.get_mut(site as usize) {
                    entry.polls += 1;
                    entry.slow += u64::from(slow);
                    entry.longest = entry.longest.max(alone);
                }
                if slow {
                    self.slow_polls.set(self.slow_polls.get() + 1);
                    let seq = looked.map_or(self.seq.get() - 1, |look| look.poll_seq);
                    let times_reported = if self.shared.flagged_seq.load(Ordering::Acquire) == seq {
                        self.shared.flagged_count.load(Ordering::Acquire)
                    } else {
                        0
                    };
                    finding = Some(Finding::Slow(SlowPoll {
                        // The last poll's task is still published (`begin_poll`).
                        task: self
                            .shared
                            .task_info(self.shared.task_id.load(Ordering::Relaxed), site),
                        elapsed: self.shared.clock.duration(alone),
                        times_reported,
                        activity: self.activity.get(),
                    }));
                }
            }
        }
        if together > 0 && elapsed >= self.threshold_ticks && self.watchdog_was_away(start, now) {
            // The watchdog could not look into these polls, so they cannot be told apart;
            // time the next ones alone (the limit grows back while windows stay short).
            window.limit.set(1);
            return finding.or_else(|| Some(self.unseen(together, elapsed)));
        }
        self.adapt_limit(polls, elapsed);
        finding
    }

    /// A time before the poll `look.poll_seq` began, known from the watchdog's looks, when
    /// one of them tells: the latest look saw the loop before this poll (`look.at` is then
    /// before it), or
    /// a look saw the poll running (it began after the look before that one). `None` when
    /// the looks since the previous poll all fell outside this one: it was shorter than
    /// the gap between two looks, and is timed with the polls before it.
    fn began_after(&self, look: RecentLook) -> Option<u64> {
        let shared = &self.shared;
        if shared.looked_seq.load(Ordering::Relaxed) < look.poll_seq {
            return Some(look.at);
        }
        if shared.first_seen_seq.load(Ordering::Acquire) == look.poll_seq {
            return Some(shared.first_seen_bound.load(Ordering::Relaxed));
        }
        None
    }

    /// Whether the watchdog went half a threshold or more without looking at some time
    /// between `start` and `now`.
    fn watchdog_was_away(&self, start: u64, now: u64) -> bool {
        let half = self.threshold_ticks / 2;
        self.shared.blind_until.load(Ordering::Acquire) >= start
            || now.saturating_sub(self.shared.looked_at.load(Ordering::Acquire)) >= half
    }

    /// Doubles the window while windows of polls take under 1/64 of the threshold; halves
    /// it when one takes over 1/16.
    fn adapt_limit(&self, polls: usize, elapsed: u64) {
        let limit = self.window.limit.get();
        if elapsed.saturating_mul(16) > self.threshold_ticks {
            self.window.limit.set((limit / 2).max(1));
        } else if polls == limit && elapsed.saturating_mul(64) < self.threshold_ticks {
            self.window.limit.set((limit * 2).min(MAX_WINDOW));
        }
    }

    fn unseen(&self, together: usize, elapsed: u64) -> Finding {
        let mut counts: Vec<(u32, usize)> = Vec::new();
        for cell in &self.window.sites[..together] {
            match counts.iter_mut().find(|(site, _)| *site == cell.get()) {
                Some((_, n)) => *n += 1,
                None => counts.push((cell.get(), 1)),
            }
        }
        let sites = self.shared.sites();
        Finding::Unseen(UnseenPolls {
            elapsed: self.shared.clock.duration(elapsed),
            sites: counts
                .into_iter()
                .filter_map(|(site, polls)| {
                    let site = sites.get(site as usize)?;
                    Some(UnseenSite {
                        site: TaskInfo::new(0, site.name.as_deref(), site.location),
                        polls,
                    })
                })
                .collect(),
        })
    }

    /// Per-site poll statistics, with each site's name and location.
    pub(crate) fn site_stats(&self) -> Vec<SitePolls> {
        let sites = self.shared.sites();
        self.site_stats
            .borrow()
            .iter()
            .enumerate()
            .filter_map(|(i, stats)| {
                let site = sites.get(i)?;
                let stats = SiteStats {
                    polls: stats.polls,
                    slow: stats.slow,
                    longest: self.shared.clock.duration(stats.longest),
                    longest_group: self.shared.clock.duration(stats.longest_group),
                };
                Some(SitePolls {
                    site: TaskInfo::new(0, site.name.as_deref(), site.location),
                    stats,
                })
            })
            .collect()
    }

    /// Stops the watchdog and waits for it (the runtime is dropping).
    pub(crate) fn stop(&self) {
        *self.shared.stop.lock() = true;
        self.shared.stop_signal.notify_all();
        if let Some(watchdog) = self.watchdog.borrow_mut().take() {
            let _ = watchdog.join();
        }
    }
}

#[cfg(test)]
mod tests {
    //! The loop's side of poll timing, with the test playing the watchdog: it stores
    //! `looked_at` when a look should land, or never looks at all (a starved watchdog).

    use super::*;
    use crate::builder::DEFAULT_SLOW_JOB_LIMIT;
    use crate::debug::stderr_sink;
    use crate::task::Id;

    const THRESHOLD: Duration = Duration::from_millis(40);

    fn debug() -> PollWatch {
        let reporter = Arc::new(Reporter::new(stderr_sink(), None));
        let jobs = Arc::new(JobWatch::new(None, None, reporter.clone()));
        let config = DebugConfig {
            threshold: THRESHOLD,
            backtraces: false,
            job_limit: DEFAULT_SLOW_JOB_LIMIT,
        };
        PollWatch::without_watchdog(config, Clock::new(), reporter, jobs)
    }

    /// One poll of task `task` from `site`, running `body`.
    fn poll(debug: &PollWatch, task: u64, site: u32, body: impl FnOnce()) -> Option<Finding> {
        let timer = debug.begin_poll(task, site);
        body();
        debug.end_poll(timer, site)
    }

    /// What the watchdog does when it looks: publish the look, and if a poll is running
    /// that no look saw before, that it saw it (the previous look is its bound).
    fn look(debug: &PollWatch) {
        let shared = &debug.shared;
        let previous = shared.looked_at.load(Ordering::Relaxed);
        let now = shared.clock.now().max(previous + 1);
        let seq = shared.seq.load(Ordering::Acquire);
        shared.looked_seq.store(seq, Ordering::Relaxed);
        shared.looked_at.store(now, Ordering::Release);
        if seq % 2 == 1 && shared.first_seen_seq.load(Ordering::Relaxed) != seq {
            shared.first_seen_bound.store(previous, Ordering::Relaxed);
            shared.first_seen_seq.store(seq, Ordering::Release);
        }
    }

    fn sites(debug: &PollWatch) -> (u32, u32) {
        let quick = debug.intern(Location::caller(), Some("quick"));
        let slow = debug.intern(Location::caller(), Some("slow"));
        (quick, slow)
    }

    /// Quick polls until the window holds the most it can; returns how many. (Windows of
    /// quick polls double the limit; a preemption of this thread may halve it again, so
    /// this polls until the limit is reached rather than a fixed number of times.)
    fn grow_window(debug: &PollWatch, site: u32) -> u64 {
        let mut polls = 0;
        while debug.window.limit.get() < MAX_WINDOW {
            assert!(polls < 10_000_000, "the window never grew");
            debug.restart_window();
            for task in 0..1_000 {
                poll(debug, task, site, || ());
            }
            debug.end_batch();
            polls += 1_000;
        }
        polls
    }

    /// A window that may hold 64 polls, opened with three quick ones; returns the number
    /// of quick polls made.
    fn three_quick_polls_in_a_full_window(debug: &PollWatch, site: u32) -> u64 {
        let grown = grow_window(debug, site);
        debug.restart_window();
        for task in 0..3 {
            assert!(poll(debug, task, site, || ()).is_none());
        }
        grown + 3
    }

    #[test]
    fn tiny_polls_share_a_clock_reading_and_long_windows_shrink_the_window() {
        let debug = debug();
        let (quick, slow) = sites(&debug);
        let grown = grow_window(&debug, quick);
        debug.restart_window();
        // 5 ms is over 1/16 of the threshold: the next windows hold fewer polls.
        assert!(poll(&debug, 1, slow, || thread::sleep(Duration::from_millis(5))).is_none());
        assert!(debug.end_batch().is_none());
        assert_eq!(debug.window.limit.get(), MAX_WINDOW / 2);
        let stats = debug.site_stats();
        assert_eq!(stats[quick as usize].stats.polls, grown);
        assert_eq!(stats[slow as usize].stats.polls, 1);
        assert!(stats[slow as usize].stats.longest >= Duration::from_millis(5));
    }

    #[test]
    fn a_poll_the_watchdog_looked_into_is_timed_alone_and_named() {
        let debug = debug();
        let (quick, slow) = sites(&debug);
        let quick_polls = three_quick_polls_in_a_full_window(&debug, quick);
        let finding = poll(&debug, 7, slow, || {
            thread::sleep(Duration::from_millis(30));
            look(&debug);
            thread::sleep(Duration::from_millis(30));
        });
        let Some(Finding::Slow(slow_poll)) = finding else {
            panic!("the slow poll was not reported alone");
        };
        assert_eq!(slow_poll.task.id, Id(7));
        assert_eq!(slow_poll.task.name.as_deref(), Some("slow"));
        assert!(slow_poll.elapsed >= Duration::from_millis(60));
        assert_eq!(debug.slow_polls.get(), 1);
        // The quick polls before it were accounted for together, not reported.
        assert!(debug.end_batch().is_none());
        assert_eq!(debug.site_stats()[quick as usize].stats.polls, quick_polls);
    }

    #[test]
    fn short_polls_the_watchdog_keeps_looking_into_are_never_reported() {
        let debug = debug();
        let (_, slow) = sites(&debug);
        debug.restart_window();
        // 20 polls of 4 ms: 80 ms in all, twice the threshold, but none of them slow. (A
        // poll this thread's scheduler stretched past the threshold may be reported: only
        // a report of a poll that was really shorter is a failure.)
        for task in 0..20 {
            let began = std::time::Instant::now();
            let finding = poll(&debug, task, slow, || {
                look(&debug);
                thread::sleep(Duration::from_millis(4));
            });
            let real = began.elapsed();
            assert!(finding.is_none() || real >= THRESHOLD, "{real:?} reported");
        }
        assert!(debug.end_batch().is_none());
    }

    #[test]
    fn polls_a_starved_watchdog_never_looked_into_are_reported_together() {
        let debug = debug();
        let (quick, slow) = sites(&debug);
        three_quick_polls_in_a_full_window(&debug, quick);
        // Nobody looks during this one: which of the four polls was slow is unknown.
        assert!(poll(&debug, 9, slow, || thread::sleep(Duration::from_millis(60))).is_none());
        let Some(Finding::Unseen(unseen)) = debug.end_batch() else {
            panic!("a window past the threshold went unreported");
        };
        assert!(unseen.elapsed >= Duration::from_millis(60));
        let named: Vec<_> = unseen
            .sites
            .iter()
            .map(|unseen| (unseen.site.name.clone().unwrap(), unseen.polls))
            .collect();
        assert_eq!(named, [("quick".to_owned(), 3), ("slow".to_owned(), 1)]);
        // The next polls are timed alone until windows are short again.
        assert_eq!(debug.window.limit.get(), 1);
        assert_eq!(debug.slow_polls.get(), 0, "nothing was proven slow");
    }

    #[test]
    fn a_slow_poll_alone_in_its_window_is_timed_exactly() {
        let debug = debug();
        let (_, slow) = sites(&debug);
        debug.restart_window();
        // The window holds one poll (the limit starts at 1), and the watchdog keeps time
        // (it looked just now, before the poll): no look is needed during it.
        look(&debug);
        let Some(Finding::Slow(slow_poll)) =
            poll(&debug, 4, slow, || thread::sleep(Duration::from_millis(50)))
        else {
            panic!("a poll timed alone went unreported");
        };
        assert!(slow_poll.elapsed >= Duration::from_millis(50));
        assert_eq!(slow_poll.task.id, Id(4));
    }

    #[test]
    fn time_between_polls_is_never_blamed_on_the_next_poll() {
        let debug = debug();
        let (quick, _) = sites(&debug);
        // The loop is away between two polls (preempted, or running a destructor) for
        // longer than the threshold, while the watchdog keeps looking; then a quick poll.
        for (alone_in_window, gap) in [(false, 60), (true, 60)] {
            if alone_in_window {
                debug.window.limit.set(1);
            } else {
                three_quick_polls_in_a_full_window(&debug, quick);
            }
            for _ in 0..6 {
                thread::sleep(Duration::from_millis(gap / 6));
                look(&debug);
            }
            let finding = poll(&debug, 3, quick, || ());
            assert!(
                !matches!(finding, Some(Finding::Slow(_))),
                "the quick poll was blamed for the gap before it"
            );
            assert!(!matches!(debug.end_batch(), Some(Finding::Slow(_))));
        }
        assert_eq!(debug.slow_polls.get(), 0);
    }

    #[test]
    fn a_slow_poll_after_a_gap_is_named_for_its_own_time() {
        let debug = debug();
        let (quick, slow) = sites(&debug);
        three_quick_polls_in_a_full_window(&debug, quick);
        thread::sleep(Duration::from_millis(30));
        look(&debug); // during the gap: the poll below begins after this look
        let Some(Finding::Slow(slow_poll)) = poll(&debug, 5, slow, || {
            thread::sleep(Duration::from_millis(30));
            look(&debug); // sees it running
            thread::sleep(Duration::from_millis(30));
        }) else {
            panic!("the slow poll was not named");
        };
        assert_eq!(slow_poll.task.id, Id(5));
        assert!(slow_poll.elapsed >= Duration::from_millis(60));
    }
}
