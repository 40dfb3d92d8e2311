//! The loop's side of debug mode: timing polls in windows that share a clock reading,
//! interning spawn sites, and counting each site's polls for the exit summary.
//!
//! `instruments.rs` calls it around every poll (`begin_poll`, `end_poll`) and batch
//! (`restart_window`, `end_batch`); what a closed window found (`Finding`, `finding.rs`)
//! goes back there to be reported. Its tests, which play the watchdog, are in
//! `windows/tests.rs`. It publishes through the record it shares with the watchdog
//! (`shared.rs`), and starts and stops the watchdog thread (`watchdog.rs`). How windows
//! are sized and closed, and why, is in `watch/mod.rs`.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::panic::Location;
use std::sync::Arc;
use std::sync::atomic::{Ordering, fence};
use std::thread;
use std::time::Duration;

use super::finding::{Activity, Finding, SlowPoll, UnseenPolls, UnseenSite};
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

impl PollWatch {
    /// Who task `id`, spawned at interned `site`, is (for reports that name it).
    pub(crate) fn task_info(&self, id: u64, site: u32) -> TaskInfo {
        self.shared.task_info(id, site)
    }

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
mod tests;
