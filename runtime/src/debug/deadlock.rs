//! Deadlock detection: what each task waits on, and the proof that the `block_on` future
//! can never complete.
//!
//! Every oneloop future that returns `Pending` tells the loop what it waits on
//! ([`Waiting`], through `context::note_wait`; `oneloop-pool`'s semaphore and job handles
//! through its `waiting` hook). The loop keeps the last such wait of each task beside it in
//! the task table (`task/table.rs`). Before it sleeps, the loop (`Core::check_deadlock` in
//! `runtime.rs`) follows the chain of waits from the `block_on` future: a task that waits
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
use std::time::{Duration, Instant};

/// The most steps the chain is followed. Past it, the check gives up (no proof): a chain
/// of `JoinHandle`s that long is a program's design, and the check must stay cheap.
pub(crate) const MAX_CHAIN: usize = 1024;

/// How following the chain of waits from the `block_on` future ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Chain {
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
pub(crate) enum Quiet {
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
pub(crate) struct StallWatch {
    after: Duration,
    /// When the current quiet spell began, and the loop's poll count then (a poll since
    /// means the spell ended and another began).
    since: Cell<Option<(Instant, u64)>>,
    /// This spell was reported.
    reported: Cell<bool>,
}

impl StallWatch {
    pub(crate) fn new(after: Duration) -> Self {
        StallWatch {
            after,
            since: Cell::new(None),
            reported: Cell::new(false),
        }
    }

    /// The loop is quiet on primitives, having polled `polls` times so far. Returns how
    /// long it may sleep at most, and, once the spell has lasted `after`, `Some(after)`:
    /// report it now.
    pub(crate) fn quiet(&self, polls: u64) -> (Option<Duration>, Option<Duration>) {
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
    pub(crate) fn forget(&self) {
        self.since.set(None);
    }
}

/// The first lines of the panic for each proof.
pub(crate) fn headline(chain: Chain) -> &'static str {
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
