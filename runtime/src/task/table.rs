//! The task table: every live task in a slab slot, found by a generation-checked key.
//!
//! A slot lives from `spawn` until the task has finished *and* its `JoinHandle` is gone
//! (dropped, or its output taken). While the loop polls a task, the task's cell is taken
//! out of its slot, so no borrow of the table is held while user code runs; the slot stays,
//! so a `JoinHandle` or an `abort` arriving meanwhile still finds it.
//!
//! This file only moves state. The life cycle (`lifecycle.rs`) decides when, and runs the
//! user code (wakers, destructors) that the transitions hand back, outside every borrow.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::Waker;

use slab::Slab;

use super::cell::TaskBox;
use crate::task::id::TaskRef;
use crate::task::waiting::Waiting;

pub(crate) struct Slot {
    /// The id the task got at spawn; a `TaskRef` with another id is stale.
    id: u64,
    /// The task itself (`cell.rs`); `None` only while the loop is polling it.
    pub(crate) cell: Option<TaskBox>,
    /// True once the output (or the panic, or the cancellation) is stored in the cell.
    pub(crate) finished: bool,
    /// True while a `JoinHandle` exists (the slot outlives the task for it).
    has_handle: bool,
    /// The task (or foreign waker) waiting on the `JoinHandle`.
    pub(crate) join_waker: Option<Waker>,
    /// `abort()` was called while the task was being polled: cancel it when the poll ends.
    abort_requested: bool,
    /// The debug-mode spawn-site index (`debug/watch/windows.rs`); 0 when debug is off. Kept here,
    /// beside the cell, so a poll reads it without a call into the task.
    site: u32,
    /// The deadlock check's mark: the number of the check that last stepped on this task
    /// (so a check that steps on it again has found a cycle).
    pub(crate) visited: u64,
}

/// What the caller must do after a task finished, outside the table's borrow.
pub(crate) struct Finished {
    /// Wake this `JoinHandle` waiter.
    pub(crate) join_waker: Option<Waker>,
    /// Nobody holds a handle: the slot is freed and this cell must be dropped (it may hold
    /// an output with a destructor). If it panicked, nobody will ever know unless reported.
    pub(crate) orphan: Option<TaskBox>,
}

#[derive(Default)]
pub(crate) struct TaskTable {
    slab: Slab<Slot>,
    next_id: u64,
    /// In debug mode, where the number of slots is published after every change, for the
    /// exit report of a runtime that is never dropped (`debug/leaks.rs`), which reads it
    /// on the exiting thread.
    published_len: Option<Arc<AtomicUsize>>,
}

impl TaskTable {
    /// An empty table that publishes its length to `len`, if given.
    pub(crate) fn new(len: Option<Arc<AtomicUsize>>) -> Self {
        TaskTable {
            published_len: len,
            ..TaskTable::default()
        }
    }

    /// Publishes the number of slots (debug mode; the loop calls it once per batch of polls
    /// and at shutdown, not per change: a count read at process exit may be a batch old).
    pub(crate) fn publish_len(&self) {
        if let Some(len) = &self.published_len {
            len.store(self.slab.len(), Ordering::Release);
        }
    }

    /// Inserts a task; `make` builds its cell from the `TaskRef` it will have.
    pub(crate) fn insert(&mut self, site: u32, make: impl FnOnce(TaskRef) -> TaskBox) -> TaskRef {
        // Id 0 is the `block_on` future's, so tasks count from 1.
        self.next_id += 1;
        let entry = self.slab.vacant_entry();
        // A task's waker keeps its key in 32 bits (`waker.rs`).
        assert!(
            entry.key() < u32::MAX as usize,
            "oneloop: more than 4 billion live tasks"
        );
        let task = TaskRef {
            key: entry.key(),
            id: self.next_id,
        };
        entry.insert(Slot {
            id: task.id,
            cell: Some(make(task)),
            finished: false,
            has_handle: true,
            join_waker: None,
            abort_requested: false,
            site,
            visited: 0,
        });
        task
    }

    pub(crate) fn get(&self, task: TaskRef) -> Option<&Slot> {
        self.slab.get(task.key).filter(|slot| slot.id == task.id)
    }

    pub(crate) fn get_mut(&mut self, task: TaskRef) -> Option<&mut Slot> {
        self.slab
            .get_mut(task.key)
            .filter(|slot| slot.id == task.id)
    }

    /// Takes the cell out for a poll, with the task's debug-mode site, unless the task is
    /// stale, finished or already out.
    pub(crate) fn take_for_poll(&mut self, task: TaskRef) -> Option<(TaskBox, u32)> {
        let slot = self.get_mut(task)?;
        if slot.finished {
            return None;
        }
        Some((slot.cell.take()?, slot.site))
    }

    /// The task a waiter waits on through its `JoinHandle` (`waiting`), if that task is
    /// pending and its join slot holds the waiter's waker (`waker`, the data pointer of the
    /// waiter's `TaskWaker`): that task's finishing is then what will wake it.
    pub(crate) fn joined_by(&self, waiting: Waiting, waker: *const ()) -> Option<TaskRef> {
        let Waiting::Join(target) = waiting else {
            return None;
        };
        let slot = self.get(target).filter(|slot| !slot.finished)?;
        (slot.join_waker.as_ref()?.data() == waker).then_some(target)
    }

    /// Puts a polled, still-pending cell back, with what it now waits on (kept in the cell,
    /// for the deadlock check, `debug/deadlock.rs`). Hands it back
    /// instead if `abort()` was called during the poll: the caller cancels it and calls
    /// `finish`.
    pub(crate) fn put_back(
        &mut self,
        task: TaskRef,
        cell: TaskBox,
        waiting: Waiting,
    ) -> Option<TaskBox> {
        let slot = self
            .get_mut(task)
            .expect("oneloop bug: polled task lost its slot");
        if slot.abort_requested {
            return Some(cell);
        }
        let mut cell = cell;
        cell.set_waiting(waiting);
        slot.cell = Some(cell);
        None
    }

    /// Records that the task in `cell` has finished.
    pub(crate) fn finish(&mut self, task: TaskRef, cell: TaskBox) -> Finished {
        let slot = self
            .get_mut(task)
            .expect("oneloop bug: finished task lost its slot");
        slot.finished = true;
        let join_waker = slot.join_waker.take();
        if slot.has_handle {
            slot.cell = Some(cell);
            Finished {
                join_waker,
                orphan: None,
            }
        } else {
            self.slab.remove(task.key);
            Finished {
                join_waker,
                orphan: Some(cell),
            }
        }
    }

    /// The `JoinHandle` is going away without having taken the output. Returns the cell
    /// when the task had finished (the slot is freed), and the handle's waker, for the
    /// caller to drop after the borrow.
    pub(crate) fn release_handle(&mut self, task: TaskRef) -> (Option<TaskBox>, Option<Waker>) {
        let Some(slot) = self.get_mut(task) else {
            return (None, None);
        };
        slot.has_handle = false;
        let waker = slot.join_waker.take();
        let cell = if slot.finished {
            self.slab.remove(task.key).cell
        } else {
            None
        };
        (cell, waker)
    }

    /// The `JoinHandle` took the output: free the slot, handing back the emptied cell and
    /// any waker left in it (to drop after the borrow).
    pub(crate) fn remove(&mut self, task: TaskRef) -> (Option<TaskBox>, Option<Waker>) {
        if self.get(task).is_none() {
            return (None, None);
        }
        let slot = self.slab.remove(task.key);
        (slot.cell, slot.join_waker)
    }

    /// Starts an abort. Returns the cell to cancel now, or `None` when the task has finished
    /// or is being polled (then it is cancelled when the poll returns).
    pub(crate) fn begin_abort(&mut self, task: TaskRef) -> Option<TaskBox> {
        let slot = self.get_mut(task)?;
        if slot.finished {
            return None;
        }
        let cell = slot.cell.take();
        if cell.is_none() {
            slot.abort_requested = true;
        }
        cell
    }

    /// Every task that has not finished and can be cancelled now (its cell is in place).
    pub(crate) fn cancellable(&self) -> Vec<TaskRef> {
        self.iter()
            .filter(|(_, slot)| !slot.finished && slot.cell.is_some())
            .map(|(task, _)| task)
            .collect()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (TaskRef, &Slot)> {
        self.slab
            .iter()
            .map(|(key, slot)| (TaskRef { key, id: slot.id }, slot))
    }

    /// Live slots (unfinished tasks plus finished ones whose handle has not read them).
    pub(crate) fn len(&self) -> usize {
        self.slab.len()
    }

    /// Empties the table (runtime shutdown), handing every cell and waker back to be
    /// dropped after the borrow.
    pub(crate) fn drain(&mut self) -> (Vec<TaskBox>, Vec<Waker>) {
        let mut cells = Vec::new();
        let mut wakers = Vec::new();
        for slot in self.slab.drain() {
            cells.extend(slot.cell);
            wakers.extend(slot.join_waker);
        }
        (cells, wakers)
    }
}
