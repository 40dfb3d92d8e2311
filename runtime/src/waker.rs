//! Wakers: how a `Waker::wake` finds its way back to the run queue.
//!
//! Every task's allocation holds a [`TaskWaker`], and that allocation is the task's `Waker`
//! (`task/cell.rs`; the `block_on` future's is an `Arc<TaskWaker>` of its own), turned into
//! a `std::task::Waker` by `futures-task`'s `ArcWake`. A wake on the loop thread pushes
//! the task onto the local run queue (`task/run_queue.rs`); a wake from any other thread goes
//! through [`Remote`]: a locked queue plus one coalesced `mio::Waker::wake()` (an eventfd
//! write on Linux) per drain. The loop drains that queue in `Core::react` (`runtime.rs`).
//!
//! The remote side only ever touches what it owns through an `Arc<Remote>`, never the
//! runtime itself, so a wake that arrives after the runtime is gone is a harmless no-op.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use futures_task::ArcWake;
use parking_lot::Mutex;

use crate::task::id::{MAIN_KEY, TaskRef};
use crate::task::run_queue;

/// The data behind a task's `Waker`. It holds only `Send + Sync` state, so the last clone
/// may be dropped on any thread without touching the (`!Send`) future.
pub(crate) struct TaskWaker {
    /// The task (`TaskRef`, kept in two fields so the whole is three words: a million tasks
    /// carry one each; `task` puts it together).
    id: u64,
    /// The task's slab key, or `u32::MAX` for `MAIN_KEY` (the table's keys stay below it).
    key: u32,
    /// True from the moment the task is queued until the loop starts polling it. Written by
    /// every wake (`swap(true)`: only the first wake queues the task) and by the loop just
    /// before each poll (`swap(false)`: a wake during the poll queues it again).
    scheduled: AtomicBool,
    pub(crate) remote: Arc<Remote>,
}

impl TaskWaker {
    /// The waker of the `block_on` future, which is queued at first (so `scheduled` starts
    /// true).
    pub(crate) fn new(task: TaskRef, remote: Arc<Remote>) -> Arc<Self> {
        Arc::new(Self::for_task(task, remote))
    }

    /// The waker state of a task about to be queued (so `scheduled` starts true), for its
    /// allocation (`task/cell.rs`).
    pub(crate) fn for_task(task: TaskRef, remote: Arc<Remote>) -> Self {
        let key = if task.key == MAIN_KEY {
            u32::MAX
        } else {
            // The table keeps its keys below u32::MAX (`TaskTable::insert` asserts it).
            debug_assert!(task.key < u32::MAX as usize);
            task.key as u32
        };
        TaskWaker {
            id: task.id,
            key,
            scheduled: AtomicBool::new(true),
            remote,
        }
    }

    pub(crate) fn task(&self) -> TaskRef {
        TaskRef {
            key: if self.key == u32::MAX {
                MAIN_KEY
            } else {
                self.key as usize
            },
            id: self.id,
        }
    }

    /// Called by the loop right before it polls the task. Acquire pairs with the release in
    /// `schedule`, so a poll sees everything the waking thread wrote before it woke us, even when
    /// that wake was coalesced into an earlier one.
    pub(crate) fn begin_poll(&self) {
        self.scheduled.swap(false, Ordering::AcqRel);
    }

    /// Queues the task, unless it is queued already: on the local run queue on the loop
    /// thread, through the remote queue from anywhere else.
    #[inline]
    pub(crate) fn schedule(&self) {
        if self.scheduled.swap(true, Ordering::AcqRel) {
            return; // already queued: one entry in the run queue however many wakes
        }
        let task = self.task();
        if !run_queue::push_local(self.remote.runtime_id, task) {
            self.remote.wake(task);
        }
    }
}

impl ArcWake for TaskWaker {
    fn wake_by_ref(arc_self: &Arc<Self>) {
        arc_self.schedule();
    }
}

/// Something another thread asks the loop to do.
pub(crate) enum RemoteOp {
    /// Queue this task (its waker was called on a foreign thread).
    Wake(TaskRef),
    /// Run this closure on the loop thread, inside the runtime (used by `Handle::spawn`).
    Run(Box<dyn FnOnce() + Send>),
}

/// The part of the runtime that other threads may touch: the remote queue and the
/// `mio::Waker` that interrupts the loop's `epoll_wait`.
pub(crate) struct Remote {
    /// Which runtime this is; lets a wake on the loop thread recognise its own runtime.
    pub(crate) runtime_id: u64,
    /// Pushed by any thread, drained by the loop (`drain`). Closed when the runtime drops.
    queue: Mutex<RemoteQueue>,
    /// Set by the first push since the loop's last drain; that push alone writes the eventfd.
    /// The loop clears it BEFORE draining: clearing after would let a push land between the
    /// drain and the clear, see the flag still set, skip the write, and sleep forever.
    notified: AtomicBool,
    waker: mio::Waker,
    /// How many times the eventfd was written: tests compare it with the number of wakes.
    eventfd_writes: AtomicU64,
    /// Live `Handle`s: while any exists, a quiet loop may still be handed work, so it is
    /// never declared deadlocked.
    pub(crate) handles: AtomicUsize,
}

struct RemoteQueue {
    ops: Vec<RemoteOp>,
    closed: bool,
    /// Wakes pushed so far (counted under the lock, so it costs no extra atomic).
    wakes: u64,
}

impl Remote {
    pub(crate) fn new(runtime_id: u64, waker: mio::Waker) -> Self {
        Remote {
            runtime_id,
            queue: Mutex::new(RemoteQueue {
                ops: Vec::new(),
                closed: false,
                wakes: 0,
            }),
            notified: AtomicBool::new(false),
            waker,
            eventfd_writes: AtomicU64::new(0),
            handles: AtomicUsize::new(0),
        }
    }

    /// Queues a foreign-thread wake. After the runtime is gone this does nothing.
    pub(crate) fn wake(&self, task: TaskRef) {
        let _ = self.push(RemoteOp::Wake(task));
    }

    /// Queues `op` for the loop and makes sure the loop will look. Hands `op` back when the
    /// runtime has shut down, so the caller decides what "too late" means for it.
    pub(crate) fn push(&self, op: RemoteOp) -> Result<(), RemoteOp> {
        {
            let mut queue = self.queue.lock();
            if queue.closed {
                return Err(op);
            }
            if matches!(op, RemoteOp::Wake(_)) {
                queue.wakes += 1;
            }
            queue.ops.push(op);
        }
        self.notify();
        Ok(())
    }

    /// Interrupts the loop's sleep unless it has already been interrupted since its last
    /// drain (coalescing: a million completions must not cost a million eventfd writes).
    fn notify(&self) {
        if !self.notified.swap(true, Ordering::AcqRel) {
            self.eventfd_writes.fetch_add(1, Ordering::Relaxed);
            // The only documented failure is an eventfd counter overflow, which mio handles
            // by resetting it; nothing useful can be done with any other error here.
            let _ = self.waker.wake();
        }
    }

    /// Moves every queued op into `into` (which must be empty; its capacity is reused).
    pub(crate) fn drain(&self, into: &mut Vec<RemoteOp>) {
        debug_assert!(into.is_empty());
        // Clear first, then take: see `notified`.
        self.notified.store(false, Ordering::Release);
        std::mem::swap(&mut self.queue.lock().ops, into);
    }

    /// Refuses all later pushes and returns what was queued, so shutdown can drop it.
    pub(crate) fn close(&self) -> Vec<RemoteOp> {
        let mut queue = self.queue.lock();
        queue.closed = true;
        std::mem::take(&mut queue.ops)
    }

    /// True when a push since the loop's last drain has written (or is writing) the
    /// eventfd: what the loop watches while it spins before sleeping.
    pub(crate) fn is_notified(&self) -> bool {
        self.notified.load(Ordering::Acquire)
    }

    /// True when ops are queued that the loop has not drained yet.
    pub(crate) fn has_pending(&self) -> bool {
        !self.queue.lock().ops.is_empty()
    }

    pub(crate) fn eventfd_writes(&self) -> u64 {
        self.eventfd_writes.load(Ordering::Relaxed)
    }

    pub(crate) fn remote_wakes(&self) -> u64 {
        self.queue.lock().wakes
    }
}
