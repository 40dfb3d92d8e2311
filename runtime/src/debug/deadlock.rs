//! Deadlock detection: what each task waits on, and the proof that the `block_on` future
//! can never complete.
//!
//! Every oneloop future that returns `Pending` tells the loop what it waits on
//! ([`Waiting`], through `context::note_wait`; `oneloop-pool`'s semaphore and job handles
//! through its `waiting` hook). The loop keeps the last such wait of each task beside it in
//! the task table (`task/table.rs`). Before it sleeps, the loop asks [`DeadlockCheck`]
//! (`before_sleep`) to follow the chain of waits from the `block_on` future: a task that waits
//! on a `JoinHandle` can only be woken when that task finishes, so it moves on to that
//! task, for as long as no waker along the chain is held anywhere else. Each step is a few
//! loads; a live chain usually ends at its first or second step, so the common path is
//! O(1) and allocates nothing.
//!
//! A task that goes pending on a `JoinHandle` also follows its own chain (`spot_join_cycle`):
//! if it leads back into itself or loops, the tasks on the loop wait on each other's
//! `JoinHandle`s and none can ever finish. The next idle check confirms that no waker on the
//! cycle is held elsewhere, then:
//! - if the `block_on` future's own chain is held elsewhere (a timer, a socket, a thread),
//!   the program may still complete: the cycle is reported once (`OL011`);
//! - otherwise nothing but a channel or semaphore (or nobody) holds the `block_on` future's
//!   waker, and an unrelated timer or `Handle` changes nothing for it: `block_on` panics,
//!   naming the cycle, rather than leave the program waiting beside tasks that are stuck.
//!
//! The chain from the `block_on` future proves a deadlock on its own when
//! it ends at a task (or the `block_on` future itself) whose waker nobody holds. That is
//! also how `block_on(std::future::pending())` runs a program of tasks for ever, so it is a
//! deadlock only if, besides, *no* task can make progress: no timer is armed, no `Handle`
//! exists, and no pending task's waker is held outside the runtime (an O(n) scan, made only
//! in that case).
//!
//! A chain that ends at a waker held elsewhere (a channel, a semaphore, a socket, another
//! thread) is not a proof: a channel's sender may be on any thread, and nothing tells the
//! runtime where a `Send` value went. When every pending task waits on oneloop channels
//! and semaphores and nothing else can wake the loop, it is most likely a deadlock through
//! them (two tasks awaiting each other's oneshot, a task awaiting a permit it holds): in
//! debug mode the loop reports it (`OL010`, `StallWatch`) after a grace period in which
//! another thread would have used its sender, and keeps waiting.

use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{self, Ordering};
use std::time::{Duration, Instant};

use super::{Code, Report, Reporter};
use crate::task::cell::TaskBox;
use crate::task::id::TaskRef;
use crate::task::lifecycle::{Tasks, task_info};
use crate::task::waiting::Waiting;
use crate::waker::{Remote, TaskWaker};

/// The most steps the chain is followed. Past it, the check gives up (no proof): a chain
/// of `JoinHandle`s that long is a program's design, and the check must stay cheap.
const MAX_CHAIN: usize = 1024;

/// How following the chain of waits from the `block_on` future ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Chain {
    /// Somewhere along it, a waker is held where the runtime cannot see (or the chain was
    /// too long): no proof.
    Live,
    /// It ended at a waiter on a channel or semaphore whose waker is held once more than
    /// the runtime accounts for: most likely by that channel or semaphore. No proof alone;
    /// the rest of the loop decides (`StallWatch`).
    Primitive,
    /// It came back to a task already on it: the tasks from there wait on each other's
    /// `JoinHandle`s.
    Cycle,
    /// It ended at a task (or the `block_on` future) whose waker nobody holds.
    Lost,
}

/// What a scan of every pending task found, when nothing else (no timer, no `Handle`)
/// can wake the loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Quiet {
    /// Every waker is held by nobody but the runtime: nothing can ever run again.
    Stuck,
    /// Every waker is held by the runtime or by oneloop channels and semaphores: a deadlock
    /// if their other sides are held by these same tasks, or a wait on another thread.
    OnPrimitives,
}

/// Reports (`OL010`) a loop that stays [`Quiet::OnPrimitives`] for a while.
///
/// Tasks waiting on each other's channels, a task waiting for a permit it holds itself, a
/// receiver whose only sender its own task holds: these are deadlocks, but no check can
/// prove them, because a sender or a permit is `Send` and may as well be on another
/// thread that will use it in a moment. So the loop does not panic. It notes when it went
/// quiet, sleeps at most until `after` has passed, and if no task was polled meanwhile, it
/// reports every task with what it waits on, once per quiet spell. The extra wake-up is
/// the only cost, and only while quiet this way; the program does not see it.
struct StallWatch {
    after: Duration,
    /// When the current quiet spell began, and the loop's poll count then (a poll since
    /// means the spell ended and another began).
    since: Cell<Option<(Instant, u64)>>,
    /// This spell was reported.
    reported: Cell<bool>,
}

impl StallWatch {
    fn new(after: Duration) -> Self {
        StallWatch {
            after,
            since: Cell::new(None),
            reported: Cell::new(false),
        }
    }

    /// The loop is quiet on primitives, having polled `polls` times so far. Returns how
    /// long it may sleep at most, and, once the spell has lasted `after`, `Some(after)`:
    /// report it now.
    fn quiet(&self, polls: u64) -> (Option<Duration>, Option<Duration>) {
        let now = Instant::now();
        match self.since.get() {
            Some((since, at)) if at == polls => {
                if self.reported.get() {
                    return (None, None);
                }
                let quiet_for = now.saturating_duration_since(since);
                match self.after.checked_sub(quiet_for) {
                    Some(left) if !left.is_zero() => (Some(left), None),
                    _ => {
                        self.reported.set(true);
                        (None, Some(self.after))
                    }
                }
            }
            _ => {
                self.since.set(Some((now, polls)));
                self.reported.set(false);
                (Some(self.after), None)
            }
        }
    }

    /// The loop is not quiet that way (any more).
    fn forget(&self) {
        self.since.set(None);
    }
}

/// The first lines of the panic for each proof.
fn headline(chain: Chain) -> &'static str {
    match chain {
        Chain::Cycle => {
            "oneloop: deadlock: tasks wait on each other's JoinHandles in a cycle: none of them \
             can finish before the others, and nothing else can wake them. Break the cycle (a \
             task must not await, directly or through others, a task that awaits it). \
             Pending:"
        }
        Chain::Lost | Chain::Live | Chain::Primitive => {
            "oneloop: deadlock: the block_on future can never complete. No task is ready, no \
             timer is armed, and no waker of a pending task is held anywhere outside the \
             runtime, so nothing can wake them again (a future returned Pending without \
             keeping its waker, or the tasks wait on each other). Pending:"
        }
    }
}

/// The loop's deadlock detection: the checks it makes before each sleep, and what they
/// remember from one to the next. Used on the loop thread only; no user code runs here.
pub(crate) struct DeadlockCheck {
    /// Checks so far: each marks the tasks it steps on with its number.
    checks: Cell<u64>,
    /// A task whose `JoinHandle` waits lead back to itself, as seen when it last went
    /// pending (`spot_join_cycle`); the next idle check confirms or forgets it.
    cycle_candidate: Cell<Option<TaskRef>>,
    /// The cycle last reported as `OL011` (once per cycle).
    cycle_reported: Cell<Option<TaskRef>>,
    /// Reports (`OL010`) a loop that stays quiet with every task waiting on channels and
    /// semaphores nothing else can reach.
    stall: StallWatch,
}

/// What the check needs to know about the rest of the loop as it is about to sleep.
pub(crate) struct BeforeSleep<'a> {
    /// The `block_on` future's waker: where every chain of waits starts.
    pub(crate) main_waker: &'a Arc<TaskWaker>,
    /// A timer is armed: the loop will wake by itself.
    pub(crate) timer_armed: bool,
    /// Outside owners (`Handle`s) and the remote queue: other threads may still hand the
    /// loop work.
    pub(crate) remote: &'a Remote,
    /// Debug mode is on: a quiet loop on channels and semaphores is reported (`OL010`).
    pub(crate) debugging: bool,
    pub(crate) reporter: &'a Reporter,
}

impl DeadlockCheck {
    pub(crate) fn new(stall_report_after: Duration) -> Self {
        DeadlockCheck {
            checks: Cell::new(0),
            cycle_candidate: Cell::new(None),
            cycle_reported: Cell::new(None),
            stall: StallWatch::new(stall_report_after),
        }
    }

    /// Called when the loop is about to sleep: panics, naming what each pending task waits
    /// on, if the `block_on` future can provably never complete (the module docs say what
    /// counts as a proof and why). The common path follows one or two links of the chain
    /// of waits from the `block_on` future and allocates nothing.
    ///
    /// Returns how long the loop may sleep at most when it is quiet in the way a deadlock
    /// through channels or semaphores would be (see `StallWatch`): it comes back then to
    /// report it.
    pub(crate) fn before_sleep(&self, tasks: &Tasks, now: BeforeSleep<'_>) -> Option<Duration> {
        // A cycle of JoinHandles spotted when one of its tasks last went pending: confirm
        // it (its tasks may have been woken by something else since).
        let cycle = self.cycle_candidate.take().and_then(|task| {
            let table = tasks.table().borrow();
            let cell = table.get(task)?.cell.as_ref()?;
            let start = (Holders::of_task(cell), cell.waiting());
            drop(table);
            (self.follow_waits(tasks, start, Some(task)) == Chain::Cycle).then_some(task)
        });
        let main = (Holders::of_main(now.main_waker), tasks.main_waiting());
        let main_chain = self.follow_waits(tasks, main, None);
        let chain = match cycle {
            // The block_on future may still complete (a timer, a socket or a thread holds
            // its waker): the cycle's tasks are stuck for good, but the program is not. Say
            // so once, and keep watching in case the block_on future comes to depend on it.
            Some(task) if main_chain == Chain::Live => {
                self.cycle_candidate.set(Some(task));
                if self.cycle_reported.replace(Some(task)) != Some(task) {
                    let mut report = Report::empty(Code::JoinCycle);
                    report.message = Some(waits_listed(tasks));
                    now.reporter.emit(&report);
                }
                Chain::Live
            }
            Some(_) => Chain::Cycle,
            None => main_chain,
        };
        let quiet = match chain {
            Chain::Live => None,
            Chain::Cycle => Some(Quiet::Stuck),
            // Nobody holds the end's waker, or only a channel or semaphore does. Either way
            // the rest of the loop decides: `block_on(pending())` runs a program of tasks
            // for ever, and a channel's sender may be on any thread.
            Chain::Lost | Chain::Primitive
                if !now.timer_armed && now.remote.handles.load(Ordering::Acquire) == 0 =>
            {
                scan_quiet(tasks, now.main_waker)
            }
            Chain::Lost | Chain::Primitive => None,
        };
        let Some(quiet) = quiet else {
            self.stall.forget();
            return None;
        };
        // Pair with the Release of the last outside owner's drop: anything it queued
        // before letting go is visible below.
        atomic::fence(Ordering::Acquire);
        if now.remote.has_pending() {
            return None;
        }
        match quiet {
            Quiet::Stuck => panic!("{}", deadlock_message(tasks, chain)),
            // Debug mode only: a program fed by a thread that is quiet for a while (a
            // daemon waiting for its next message) looks the same, and must not be told
            // off for it in production.
            Quiet::OnPrimitives if !now.debugging => None,
            Quiet::OnPrimitives => {
                let (sleep_at_most, report) = self.stall.quiet(tasks.polls());
                if let Some(after) = report {
                    let mut report = Report::empty(Code::Stalled);
                    report.duration = Some(after);
                    report.message = Some(waits_listed(tasks));
                    now.reporter.emit(&report);
                }
                sleep_at_most
            }
        }
    }

    /// A task's poll returned `Pending` waiting on a `JoinHandle`: if the tasks it waits on
    /// lead back to it, or into a loop of their own, remember a task of that cycle for the
    /// next idle check to confirm. A few table lookups, only for tasks that wait on a
    /// `JoinHandle`.
    pub(crate) fn spot_join_cycle(&self, tasks: &Tasks, task: TaskRef, waiting: Waiting) {
        let table = tasks.table().borrow();
        // Each task waits on one handle at most, so a walk longer than there are tasks is
        // going round a cycle: where it stands then is on it.
        let steps = table.len().min(MAX_CHAIN);
        let mut next = waiting;
        let mut at = task;
        for _ in 0..=steps {
            let Waiting::Join(target) = next else {
                return;
            };
            if target == task {
                self.cycle_candidate.set(Some(task));
                return;
            }
            let Some(cell) = table
                .get(target)
                .filter(|slot| !slot.finished)
                .and_then(|slot| slot.cell.as_ref())
            else {
                return;
            };
            next = cell.waiting();
            at = target;
        }
        if steps < MAX_CHAIN {
            self.cycle_candidate.set(Some(at));
        }
    }

    /// Follows a chain of waits (from the `block_on` future, or from the task `start`) for
    /// as long as each waiter can only be woken by the `JoinHandle` it waits on: its waker
    /// is held by nobody but that task's join slot.
    fn follow_waits(
        &self,
        tasks: &Tasks,
        start: (Holders, Waiting),
        first: Option<TaskRef>,
    ) -> Chain {
        let (mut holders, mut waiting) = start;
        let mut table = tasks.table().borrow_mut();
        let epoch = self.checks.get() + 1;
        self.checks.set(epoch);
        if let Some(slot) = first.and_then(|task| table.get_mut(task)) {
            slot.visited = epoch;
        }
        for _ in 0..MAX_CHAIN {
            let joined = table.joined_by(waiting, holders.ptr);
            // Our own references: the task's box (or block_on's stack), and the join slot
            // of the task it waits on.
            let ours = 1 + usize::from(joined.is_some());
            if holders.count == ours + 1 && waiting.is_primitive() {
                return Chain::Primitive; // most likely held by that channel or semaphore
            }
            if holders.count > ours {
                return Chain::Live; // held elsewhere: a timer, a socket, a thread
            }
            let Some(next) = joined else {
                return Chain::Lost;
            };
            let Some(slot) = table.get_mut(next) else {
                return Chain::Live;
            };
            if slot.visited == epoch {
                return Chain::Cycle;
            }
            slot.visited = epoch;
            let Some(cell) = &slot.cell else {
                return Chain::Live; // being polled or aborted right now: not idle
            };
            holders = Holders::of_task(cell);
            waiting = cell.waiting();
        }
        Chain::Live
    }
}

/// Who holds a waiter's waker: how many references it has, and its data pointer (to find
/// it in a join slot).
#[derive(Clone, Copy)]
struct Holders {
    count: usize,
    ptr: *const (),
}

impl Holders {
    fn of_task(cell: &TaskBox) -> Self {
        Holders {
            count: cell.waker_refs(),
            ptr: cell.waker_ptr(),
        }
    }

    fn of_main(waker: &Arc<TaskWaker>) -> Self {
        Holders {
            count: Arc::strong_count(waker),
            ptr: Arc::as_ptr(waker).cast(),
        }
    }
}

/// Looks at every pending task (O(n); only when the chain of waits from the `block_on`
/// future ended at a waker held by nobody, or only by a channel or semaphore, with no
/// timer armed and no `Handle`). `None` if some task's waker is held outside the
/// runtime (a socket, a job, another thread): it may still run. Otherwise every waker is
/// held by nobody but the runtime's join slots (`Stuck`: nothing can ever run again),
/// or also by oneloop channels and semaphores (`OnPrimitives`).
fn scan_quiet(tasks: &Tasks, main_waker: &Arc<TaskWaker>) -> Option<Quiet> {
    let table = tasks.table().borrow();
    let mut on_primitive = false;
    // How a waker's owners add up: the task's header (or block_on's stack), the join
    // slot of the task it waits on, and the channel or semaphore it waits on.
    let mut accounted = |holders: Holders, waiting: Waiting| {
        let joined = table.joined_by(waiting, holders.ptr);
        let count = holders.count;
        let base = 1 + usize::from(joined.is_some());
        if waiting.is_primitive() && count == base + 1 {
            on_primitive = true;
            return true;
        }
        count <= base
    };
    if !accounted(Holders::of_main(main_waker), tasks.main_waiting()) {
        return None;
    }
    for (_, slot) in table.iter().filter(|(_, slot)| !slot.finished) {
        let Some(cell) = &slot.cell else {
            return None;
        };
        if !accounted(Holders::of_task(cell), cell.waiting()) {
            return None;
        }
    }
    Some(if on_primitive {
        Quiet::OnPrimitives
    } else {
        Quiet::Stuck
    })
}

/// The `block_on` future and every pending task, each with what it waits on.
fn waits_listed(tasks: &Tasks) -> String {
    let mut message = format!(
        "\n    #0 \"main\" (the block_on future) waits on {}",
        tasks.main_waiting()
    );
    let table = tasks.table().borrow();
    let pending: Vec<_> = table
        .iter()
        .filter(|(_, slot)| !slot.finished)
        .filter_map(|(task, slot)| {
            let cell = slot.cell.as_ref()?;
            Some((task, cell, cell.waiting()))
        })
        .collect();
    for (task, cell, waiting) in pending.iter().take(20) {
        let info = task_info(task.id, cell.header());
        message.push_str(&format!("\n    {info} waits on {waiting}"));
    }
    if pending.len() > 20 {
        message.push_str(&format!("\n    ... and {} more", pending.len() - 20));
    }
    message
}

/// The deadlock panic: the proof, then every pending task and what it waits on.
#[cold]
fn deadlock_message(tasks: &Tasks, chain: Chain) -> String {
    format!("{}{}", headline(chain), waits_listed(tasks))
}
