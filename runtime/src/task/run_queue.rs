//! The run queue: the tasks the loop polls next, and the one place a task's waker pushes
//! onto when it is called on the loop thread.
//!
//! smol's `async-executor` is the model: the waker holds the queue, not the executor. A
//! `Waker` must be `Send`, and this queue is not (it is the loop's, lock-free), so the
//! waker reaches it through the thread: while a runtime runs, its queue is installed in a
//! thread-local here ([`enter`]), and a wake on that thread ([`push_local`], called by
//! `waker.rs`) pushes straight onto it. Any other wake takes the remote path
//! (`waker.rs`'s `Remote`) and is moved onto this queue when the loop drains it.
//!
//! Nothing here knows the loop: the queue is filled by wakes and `spawn`
//! (`task/lifecycle.rs`) and emptied by the tick (`runtime.rs`, `run_ready`).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;

use super::id::{MAIN_KEY, TaskRef};

/// Tasks to poll, each at most once (their waker's `scheduled` flag sees to that), and
/// whether the `block_on` future was woken.
#[derive(Default)]
pub(crate) struct RunQueue {
    /// Pushed by local wakes, by the remote drain and by `spawn`; popped by `run_ready`.
    tasks: RefCell<VecDeque<TaskRef>>,
    /// The `block_on` future was woken and must be polled this tick (it has no slot in the
    /// task table, so it is never queued; `MAIN_KEY` wakes set this instead).
    main_woken: Cell<bool>,
}

impl RunQueue {
    /// Queues a woken task (or marks the `block_on` future woken).
    #[inline]
    pub(crate) fn push(&self, task: TaskRef) {
        if task.key == MAIN_KEY {
            self.main_woken.set(true);
        } else {
            self.tasks.borrow_mut().push_back(task);
        }
    }

    /// The next task to poll.
    #[inline]
    pub(crate) fn pop(&self) -> Option<TaskRef> {
        self.tasks.borrow_mut().pop_front()
    }

    pub(crate) fn len(&self) -> usize {
        self.tasks.borrow().len()
    }

    /// True when something must be polled this tick: the loop must not sleep.
    pub(crate) fn is_busy(&self) -> bool {
        self.main_woken.get() || !self.tasks.borrow().is_empty()
    }

    /// Marks the `block_on` future as woken (it is polled once when `block_on` starts).
    pub(crate) fn wake_main(&self) {
        self.main_woken.set(true);
    }

    /// Whether the `block_on` future was woken since the last call; clears the mark.
    pub(crate) fn take_main_woken(&self) -> bool {
        self.main_woken.replace(false)
    }

    /// Forgets every queued task (the runtime is shutting down; their slots are gone).
    pub(crate) fn clear(&self) {
        self.tasks.borrow_mut().clear();
    }
}

thread_local! {
    /// The queue of the runtime running on this thread, with that runtime's id: set by
    /// `enter` for as long as the runtime is current (`context.rs`), read by every wake on
    /// this thread. Never borrowed while user code runs.
    static LOCAL: RefCell<Option<(u64, Rc<RunQueue>)>> = const { RefCell::new(None) };
}

/// Makes `queue` the one local wakes of runtime `runtime_id` push onto, until the guard
/// drops (which restores the previous one: runtimes may nest while one drops its tasks).
pub(crate) fn enter(runtime_id: u64, queue: &Rc<RunQueue>) -> LocalGuard {
    let new = Some((runtime_id, queue.clone()));
    // While the thread's locals are being destroyed there is no local queue: wakes go
    // through the remote path, which is always correct, only slower.
    let previous = LOCAL.try_with(|local| local.replace(new)).ok().flatten();
    LocalGuard { previous }
}

/// Restores the previous local queue (see [`enter`]).
pub(crate) struct LocalGuard {
    previous: Option<(u64, Rc<RunQueue>)>,
}

impl Drop for LocalGuard {
    fn drop(&mut self) {
        let previous = self.previous.take();
        // Dropped after the borrow: the last `Rc` of a queue frees only `TaskRef`s.
        let _ours = LOCAL.try_with(|local| local.replace(previous));
    }
}

/// Pushes `task` onto its runtime's queue if that runtime runs on this thread; returns
/// false otherwise (the caller then takes the remote path).
#[inline]
pub(crate) fn push_local(runtime_id: u64, task: TaskRef) -> bool {
    LOCAL
        .try_with(|local| match &*local.borrow() {
            Some((id, queue)) if *id == runtime_id => {
                queue.push(task);
                true
            }
            _ => false,
        })
        .unwrap_or(false)
}
