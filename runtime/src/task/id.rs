//! How tasks are named: [`Id`] for people (reports, `JoinHandle::id`), [`TaskRef`] for the
//! loop (a task-table slot plus the id it was given).
//!
//! The lowest room of the runtime: it imports nothing from the crate, so the run queue,
//! wakers, the task table and debug mode can all name tasks without importing the code that
//! spawns and polls them (`task/lifecycle.rs`).

use std::fmt;

/// A task's id, unique within its runtime: `#1`, `#2`, ... in spawn order; `#0` is the
/// future given to `block_on`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Id(pub(crate) u64);

impl Id {
    /// The id as a number.
    pub fn as_u64(self) -> u64 {
        self.0
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// The slab key used for the `block_on` future, which lives on `block_on`'s stack rather
/// than in the task slab.
pub(crate) const MAIN_KEY: usize = usize::MAX;

/// Names one task: its slot in the task slab plus the id that slot was given when the task
/// was spawned. Slots are reused; ids never are, so a stale `TaskRef` (held by the waker of
/// a task that has finished) no longer matches the slot and is ignored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TaskRef {
    pub(crate) key: usize,
    pub(crate) id: u64,
}
