//! The record the loop and its watchdog thread publish to each other through, with no
//! lock on the loop's side.
//!
//! The loop (`windows.rs`) publishes which poll is running: a sequence number, odd while a
//! poll runs, and the task and site it polls, written seqlock-style so that the watchdog
//! (`watchdog.rs`) reads them consistently or not at all (`running_poll`). The watchdog
//! publishes when it looks and what it saw (`looked_at`, `looked_seq`, `first_seen_*`),
//! whether it was away (`blind_until`), and which poll it reported (`flagged_*`): the loop
//! reads these when a poll returns, to time it. The sites' names live here too, interned
//! by the loop and read by the watchdog for its reports.

use std::panic::Location;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

use crate::debug::clock::Clock;
use crate::debug::jobs::JobWatch;
use crate::debug::{DebugConfig, Reporter, TaskInfo, stack};
use crate::task::Id;

/// A task name and spawn site, shared with the watchdog.
#[derive(Clone)]
pub(super) struct Site {
    pub(super) name: Option<String>,
    pub(super) location: &'static Location<'static>,
}

/// A poll the loop is running, as the watchdog reads it from `Shared` (`running_poll`):
/// a consistent snapshot of what the loop published in `begin_poll`.
#[derive(Clone, Copy)]
pub(super) struct RunningPoll {
    /// The poll's sequence number (odd): it is still running while `Shared::seq` holds it.
    pub(super) seq: u64,
    /// When the window this poll runs in started (clock ticks): the poll began after it.
    pub(super) window_start: u64,
    /// The polled task's id.
    pub(super) task: u64,
    /// The polled task's interned spawn site (an index into `Shared::sites`).
    pub(super) site: u32,
}

/// State shared between the loop and its watchdog thread.
pub(super) struct Shared {
    /// The clock polls are timed with (ticks; see `clock.rs`).
    pub(super) clock: Clock,
    /// Poll sequence: odd while a poll runs, even between polls. Written only by the loop
    /// (Release, publishing the fields below); read by the watchdog (Acquire).
    pub(super) seq: AtomicU64,
    /// When the loop's current window of polls started, in clock ticks (the loop's own
    /// record too: it alone writes it); which task is being polled; its site.
    pub(super) window_start: AtomicU64,
    pub(super) task_id: AtomicU64,
    pub(super) site: AtomicU32,
    /// When the watchdog last looked (clock ticks, strictly increasing). The loop loads it
    /// after each poll: a change means the watchdog looked since the previous poll ended.
    pub(super) looked_at: AtomicU64,
    /// The `seq` the watchdog saw at its latest look: stored before `looked_at` (which
    /// publishes it), so a loop that read a look's time reads this look's `seq` or a later
    /// one's. A look that saw a `seq` below a poll's happened before that poll began.
    pub(super) looked_seq: AtomicU64,
    /// The first look that saw a poll running: that poll's `seq`, and the time of the look
    /// before (which had not seen it, so the poll began after it). Written by the watchdog
    /// (the bound, then the `seq` with Release); read by the loop when the poll returns.
    pub(super) first_seen_seq: AtomicU64,
    pub(super) first_seen_bound: AtomicU64,
    /// The end of the latest gap of half a threshold or more between two looks (the
    /// watchdog was not scheduled in time): polls in such a gap were not looked into.
    pub(super) blind_until: AtomicU64,
    /// The `seq` of the last poll the watchdog reported, and how many times it did:
    /// written by the watchdog, read by the loop when that poll returns.
    pub(super) flagged_seq: AtomicU64,
    pub(super) flagged_count: AtomicU32,
    /// Interned sites; appended by the loop once per new site, read by the watchdog.
    pub(super) sites: Mutex<Vec<Site>>,
    pub(super) threshold: Duration,
    pub(super) backtraces: bool,
    pub(super) reporter: Arc<Reporter>,
    /// The loop thread, recorded when the runtime is built on it: looked at through
    /// `/proc`, and signalled for a backtrace only while it runs user code (`stack/`).
    #[cfg(target_os = "linux")]
    pub(super) loop_thread: Option<stack::LoopThread>,
    /// Offloaded jobs being watched (scanned by the watchdog every half threshold).
    pub(super) jobs: Arc<JobWatch>,
    /// Set when the runtime drops; the watchdog exits.
    pub(super) stop: Mutex<bool>,
    pub(super) stop_signal: Condvar,
}

impl Shared {
    pub(super) fn new(
        config: DebugConfig,
        clock: Clock,
        reporter: Arc<Reporter>,
        jobs: Arc<JobWatch>,
    ) -> Shared {
        let now = clock.now();
        Shared {
            clock,
            seq: AtomicU64::new(0),
            window_start: AtomicU64::new(now),
            task_id: AtomicU64::new(0),
            site: AtomicU32::new(0),
            looked_at: AtomicU64::new(now),
            looked_seq: AtomicU64::new(0),
            first_seen_seq: AtomicU64::new(0),
            first_seen_bound: AtomicU64::new(0),
            blind_until: AtomicU64::new(0),
            flagged_seq: AtomicU64::new(0),
            flagged_count: AtomicU32::new(0),
            sites: Mutex::new(Vec::new()),
            threshold: config.threshold,
            backtraces: config.backtraces && stack::install() && {
                stack::warm_up_symbols();
                true
            },
            jobs,
            reporter,
            #[cfg(target_os = "linux")]
            loop_thread: stack::LoopThread::current(),
            stop: Mutex::new(false),
            stop_signal: Condvar::new(),
        }
    }

    /// The running poll, if one is running. A seqlock-style read: the fields are trusted
    /// only if `seq` did not move meanwhile.
    pub(super) fn running_poll(&self) -> Option<RunningPoll> {
        let seq = self.seq.load(Ordering::Acquire);
        if seq.is_multiple_of(2) {
            return None;
        }
        let window_start = self.window_start.load(Ordering::Relaxed);
        let task = self.task_id.load(Ordering::Relaxed);
        let site = self.site.load(Ordering::Relaxed);
        // Pairs with the Release fence in `begin_poll`: if a load above saw a value written
        // for a later poll, the load below sees that the sequence moved on.
        fence(Ordering::Acquire);
        (self.seq.load(Ordering::Relaxed) == seq).then_some(RunningPoll {
            seq,
            window_start,
            task,
            site,
        })
    }

    pub(super) fn task_info(&self, id: u64, site: u32) -> TaskInfo {
        let site = self.sites.lock()[site as usize].clone();
        TaskInfo {
            id: Id(id),
            name: site.name,
            location: site.location,
        }
    }

    /// The name and location of every interned site, by index.
    pub(super) fn sites(&self) -> Vec<Site> {
        self.sites.lock().clone()
    }
}
