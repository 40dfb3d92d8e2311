//! A task's life: spawn, poll, finish, cancel, and the `JoinHandle`'s side of it.
//!
//! [`Tasks`] owns the task table (`table.rs`) and everything that happens to a task between
//! `spawn` and the moment nobody can read its result any more. The loop (`runtime.rs`)
//! decides *when* (it pops a task off the run queue and calls [`Tasks::run`]); `JoinHandle`
//! (`join.rs`) reaches this type, never the loop, through a `Weak`. What a transition of
//! the table hands back (a waker, a finished future, an output) is user code: it runs here,
//! after the table's borrow ends, and a panic in it is contained or handed to whoever
//! triggered it.
//!
//! Debug mode times polls and destructors through the loop's instruments
//! (`debug/instruments.rs`); the deadlock check (`debug/deadlock.rs`) reads the table and
//! the waits noted here.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::panic::{AssertUnwindSafe, Location, catch_unwind, resume_unwind};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use futures_task::waker_ref;
use oneloop_pool::wake::{self, Panic, WakeList};

use super::cell::{Header, TaskBox};
use super::id::{Id, TaskRef};
use super::run_queue::RunQueue;
use super::table::TaskTable;
use super::waiting::Waiting;
use crate::debug::instruments::{Activity, Instruments, Probe};
use crate::debug::{Code, Report, Reporter, TaskInfo};
use crate::waker::{Remote, TaskWaker};

/// The tasks of one runtime, used on its loop thread only. Shared (an `Rc`) by the loop and,
/// weakly, by every `JoinHandle`.
pub(crate) struct Tasks {
    /// Every task, by generation-checked key (`table.rs`).
    table: RefCell<TaskTable>,
    /// Where `spawn` queues a new task (the loop pops it).
    run_queue: Rc<RunQueue>,
    /// Handed to every task's waker: the way back from other threads.
    remote: Arc<Remote>,
    /// Debug mode and tracing; `None` when both are off (`debug/instruments.rs`).
    instruments: Option<Rc<Instruments>>,
    /// Where a panic nobody retrieved is reported (`OL003`).
    reporter: Arc<Reporter>,
    /// The task being polled right now (`Some(0)` for the `block_on` future). Set around
    /// each poll; read by `task::try_id`, the job hooks and `between_polls`.
    current: Cell<Option<u64>>,
    /// The debug-mode spawn site of the task being polled (0 when debug is off), set with
    /// `current`: job reports name the task that submitted them (`current_task`).
    current_site: Cell<u32>,
    /// What the task being polled waits on, as the last oneloop future that returned
    /// `Pending` in this poll said (`note_wait`); stored with the task when its poll ends.
    waiting: Cell<Waiting>,
    /// The same for the `block_on` future, after its last poll.
    main_waiting: Cell<Waiting>,
    /// Set while the runtime is dropping: a task spawned now is cancelled at once, and a
    /// panic of a handle's waker has nobody to go to.
    shutting_down: Cell<bool>,
    /// Tasks spawned and polls made so far (`Metrics`).
    spawned: Cell<u64>,
    polls: Cell<u64>,
}

/// What became of a task the loop ran.
pub(crate) enum Polled {
    /// Nothing to poll: a stale wake, or the task finished (aborted) while queued.
    Gone,
    /// It returned `Pending`, waiting on this.
    Pending(Waiting),
    /// It finished, or aborted itself; `Err` if the waker of its `JoinHandle` panicked (for
    /// the loop to raise once its step is complete).
    Finished(Result<(), Panic>),
}

impl Tasks {
    pub(crate) fn new(
        run_queue: Rc<RunQueue>,
        remote: Arc<Remote>,
        instruments: Option<Rc<Instruments>>,
        reporter: Arc<Reporter>,
    ) -> Self {
        Tasks {
            table: RefCell::new(TaskTable::new(
                instruments.as_deref().and_then(Instruments::task_count),
            )),
            run_queue,
            remote,
            instruments,
            reporter,
            current: Cell::new(None),
            current_site: Cell::new(0),
            waiting: Cell::new(Waiting::Unknown),
            main_waiting: Cell::new(Waiting::Unknown),
            shutting_down: Cell::new(false),
            spawned: Cell::new(0),
            polls: Cell::new(0),
        }
    }

    /// Puts `future` in the table and queues it (or, while the runtime shuts down, cancels
    /// it at once so its handle resolves as cancelled).
    pub(crate) fn spawn<F>(
        &self,
        future: F,
        name: Option<Box<str>>,
        location: &'static Location<'static>,
    ) -> TaskRef
    where
        F: Future + 'static,
        F::Output: 'static,
    {
        let site = self
            .instruments
            .as_ref()
            .map_or(0, |ins| ins.intern(location, name.as_deref()));
        let remote = &self.remote;
        let task = self.table.borrow_mut().insert(site, |task| {
            let waker = TaskWaker::for_task(task, remote.clone());
            TaskBox::new(waker, Header::new(name, location), future)
        });
        self.spawned.set(self.spawned.get() + 1);
        if self.shutting_down.get() {
            self.abort(task); // too late to run: resolve its handle as cancelled
        } else {
            self.run_queue.push(task);
        }
        task
    }

    // ---------------------------------------------------------------------------------
    // Polling (called by the loop's tick).
    // ---------------------------------------------------------------------------------

    /// Polls the `block_on` future (task `#0`, on `block_on`'s stack). A panic in it is
    /// carried out of `block_on` (after debug mode has seen the poll end).
    pub(crate) fn poll_main<F: Future>(
        &self,
        future: Pin<&mut F>,
        waker: &Arc<TaskWaker>,
        site: u32,
    ) -> Poll<F::Output> {
        waker.begin_poll();
        let waker_ref = waker_ref(waker);
        let mut cx = Context::from_waker(&waker_ref);
        self.polls.set(self.polls.get() + 1);
        self.current.set(Some(0));
        self.current_site.set(site);
        self.waiting.set(Waiting::Unknown);
        let probe = self.instruments.as_ref().map(|ins| {
            ins.mark();
            ins.begin_poll(0, site)
        });
        let result = catch_unwind(AssertUnwindSafe(|| {
            let _budget = super::coop::PollBudget::start();
            future.poll(&mut cx)
        }));
        self.current.set(None);
        self.main_waiting.set(self.waiting.get());
        if let (Some(ins), Some(probe)) = (&self.instruments, probe) {
            ins.end_poll(probe, 0, site, || Some("main"));
            ins.end_batch();
        }
        result.unwrap_or_else(|payload| resume_unwind(payload))
    }

    /// Polls one task, with no borrow of the table held while its code runs.
    pub(crate) fn run(&self, task: TaskRef) -> Polled {
        let Some((mut cell, site)) = self.table.borrow_mut().take_for_poll(task) else {
            return Polled::Gone;
        };
        self.polls.set(self.polls.get() + 1);
        let _budget = super::coop::PollBudget::start();
        self.current.set(Some(task.id));
        self.current_site.set(site);
        self.waiting.set(Waiting::Unknown);
        let finished = match &self.instruments {
            None => {
                let _end = PollEnd {
                    tasks: self,
                    probe: None,
                    task: task.id,
                    site,
                };
                cell.poll()
            }
            Some(ins) => {
                let mut poll = PollEnd {
                    tasks: self,
                    probe: Some(ins.begin_poll(task.id, site)),
                    task: task.id,
                    site,
                };
                let finished = cell.poll();
                poll.end(|| cell.header().name());
                finished
            }
        };
        if finished {
            return Polled::Finished(self.finish(task, cell));
        }
        // Bind first: a temporary borrow in the `if let` would live through its body.
        let waiting = self.waiting.get();
        let aborted = self.table.borrow_mut().put_back(task, cell, waiting);
        match aborted {
            // It aborted itself during the poll.
            Some(cell) => Polled::Finished(self.cancel(task, cell)),
            None => Polled::Pending(waiting),
        }
    }

    pub(crate) fn current_task_id(&self) -> Option<Id> {
        self.current.get().map(Id)
    }

    /// The task being polled and its spawn site (see `current_site`).
    pub(crate) fn current_task(&self) -> Option<(u64, u32)> {
        self.current.get().map(|id| (id, self.current_site.get()))
    }

    /// A oneloop future polled by the current task returned `Pending`, waiting on
    /// `waiting` (the deadlock check names it, `debug/deadlock.rs`).
    pub(crate) fn note_wait(&self, waiting: Waiting) {
        self.waiting.set(waiting);
    }

    // ---------------------------------------------------------------------------------
    // The end of a task: finish, cancel, and what nobody will read.
    // ---------------------------------------------------------------------------------

    /// Drops the task's future (catching a panic in its destructor) and finishes it.
    fn cancel(&self, task: TaskRef, cell: TaskBox) -> Result<(), Panic> {
        let cell = self.between_polls(task, cell, Activity::DropFuture, |mut cell| {
            cell.cancel();
            cell
        });
        let woken = self.finish(task, cell);
        self.restart_poll_timing();
        woken
    }

    /// User code (a destructor) ran between two polls: the next poll's timing starts
    /// after it, not before (`debug/instruments.rs`).
    fn restart_poll_timing(&self) {
        if let Some(ins) = &self.instruments {
            ins.mark();
        }
    }

    /// The task is done: wake whoever awaits its handle; if nobody can ever read its
    /// result, drop it now (and report a panic nobody will see otherwise). Returns the
    /// panic of the handle's waker, if it panicked, for the caller to raise where it
    /// belongs: after the loop's step, or to whoever called `abort`.
    fn finish(&self, task: TaskRef, cell: TaskBox) -> Result<(), Panic> {
        let finished = self.table.borrow_mut().finish(task, cell);
        let woken = finished.join_waker.map_or(Ok(()), wake::wake);
        if let Some(cell) = finished.orphan {
            self.drop_unobserved(task, cell);
            self.restart_poll_timing();
        }
        woken
    }

    /// Drops a finished task whose result nobody will read. A panic in it is reported
    /// (`OL003`), like asyncio's "Task exception was never retrieved".
    fn drop_unobserved(&self, task: TaskRef, cell: TaskBox) {
        let info = task_info(task.id, cell.header());
        let mut panic = cell.panic_message().map(str::to_owned);
        // The output's destructor is user code: contain a panic there too.
        let dropped = self.between_polls(task, cell, Activity::DropOutput, |cell| {
            wake::catch(|| drop(cell))
        });
        if let Err(payload) = dropped {
            let message = wake::into_message(payload);
            panic.get_or_insert(format!("(while dropping its output) {message}"));
        }
        if let Some(message) = panic {
            self.report_panic_not_retrieved(info, message);
        }
    }

    /// Runs `f` on `cell`: a destructor of the task's the loop runs between polls (its
    /// output's, its future's). In debug mode, when that may run user code, it is timed as
    /// a poll of that task, so a slow destructor is reported for what it is and never
    /// blamed on the next poll (`debug/watch/`).
    fn between_polls<R>(
        &self,
        task: TaskRef,
        cell: TaskBox,
        activity: Activity,
        f: impl FnOnce(TaskBox) -> R,
    ) -> R {
        match &self.instruments {
            // Inside a poll (a task aborted another, or dropped a finished task's handle)
            // the destructor is part of that poll, and timed with it.
            Some(ins) if self.current.get().is_none() && cell.drop_runs_user_code() => {
                let header = cell.header();
                let site = ins.intern(header.location, header.name());
                ins.between_polls(task.id, site, activity, || f(cell))
            }
            _ => f(cell),
        }
    }

    pub(crate) fn report_panic_not_retrieved(&self, task: TaskInfo, message: String) {
        let mut report = Report::new(Code::PanicNotRetrieved, task);
        report.message = Some(message);
        self.reporter.emit(&report);
    }

    // ---------------------------------------------------------------------------------
    // The JoinHandle's side.
    // ---------------------------------------------------------------------------------

    /// `JoinHandle::poll`: moves the output into `out` (an `Option<Result<T, JoinError>>`)
    /// once the task has finished. A missing slot (the runtime shut down) leaves `out`
    /// empty, which the handle reads as `Cancelled`.
    pub(crate) fn poll_join(&self, task: TaskRef, waker: &Waker, out: &mut dyn Any) -> Poll<()> {
        // A foreign waker's clone and destructor are user code: never under the borrow.
        let mut fresh = None;
        loop {
            let mut table = self.table.borrow_mut();
            let Some(slot) = table.get_mut(task) else {
                return Poll::Ready(());
            };
            if slot.finished {
                break;
            }
            match wake::store_waker(&mut slot.join_waker, waker, &mut fresh) {
                Ok(old) => {
                    drop(table);
                    wake::discard((old, fresh));
                    self.note_wait(Waiting::Join(task));
                    return Poll::Pending;
                }
                Err(_) => {
                    drop(table);
                    fresh = Some(waker.clone());
                }
            }
        }
        let (cell, old) = self.table.borrow_mut().remove(task);
        wake::discard((old, fresh));
        if let Some(mut cell) = cell {
            cell.take_output(out);
        }
        Poll::Ready(())
    }

    /// `JoinSet`: wake `waker` when the task finishes (at once if it has).
    pub(crate) fn set_join_waker(&self, task: TaskRef, waker: &Waker) {
        let fresh = waker.clone(); // user code: before the borrow
        let mut table = self.table.borrow_mut();
        match table.get_mut(task) {
            Some(slot) if !slot.finished => {
                let old = slot.join_waker.replace(fresh);
                drop(table);
                wake::discard(old);
            }
            _ => {
                drop(table);
                fresh.wake();
            }
        }
    }

    /// The `JoinHandle` was dropped: the task runs on detached.
    pub(crate) fn release_handle(&self, task: TaskRef) {
        let (cell, waker) = self.table.borrow_mut().release_handle(task);
        wake::discard(waker);
        if let Some(cell) = cell {
            self.drop_unobserved(task, cell);
        }
    }

    /// Cancels `task` now (or when its running poll returns). A panic of its handle's
    /// waker goes to the caller (contained while the runtime shuts down).
    pub(crate) fn abort(&self, task: TaskRef) {
        let cell = self.table.borrow_mut().begin_abort(task);
        if let Some(cell) = cell {
            let woken = self.cancel(task, cell);
            if self.shutting_down.get() {
                wake::contain(woken);
            } else {
                wake::resume(woken);
            }
        }
    }

    pub(crate) fn is_finished(&self, task: TaskRef) -> bool {
        self.table
            .borrow()
            .get(task)
            .is_none_or(|slot| slot.finished)
    }

    // ---------------------------------------------------------------------------------
    // Shutdown, and what the loop and the deadlock check read.
    // ---------------------------------------------------------------------------------

    /// The runtime is dropping: from now on a spawned task is cancelled at once.
    pub(crate) fn begin_shutdown(&self) {
        self.shutting_down.set(true);
    }

    /// Cancels every task and drops every result nobody read yet, on the loop thread, one
    /// by one (each destructor and waker contained: the shutdown must complete).
    pub(crate) fn cancel_all(&self) {
        // Dropping a future may spawn (cancelled at once) or abort others: repeat until
        // every task has finished.
        loop {
            let unfinished = self.table.borrow().cancellable();
            if unfinished.is_empty() {
                break;
            }
            for task in unfinished {
                self.abort(task);
            }
        }
        let (cells, wakers) = self.table.borrow_mut().drain();
        self.table.borrow().publish_len();
        for cell in cells {
            wake::contain(wake::catch(|| drop(cell)));
        }
        drop(WakeList::from_iter(wakers)); // each dropped, contained
    }

    /// The table, for the deadlock check's walks (`debug/deadlock.rs`) and the loop's
    /// bookkeeping. Never held while user code runs.
    pub(crate) fn table(&self) -> &RefCell<TaskTable> {
        &self.table
    }

    /// What the `block_on` future waited on after its last poll.
    pub(crate) fn main_waiting(&self) -> Waiting {
        self.main_waiting.get()
    }

    pub(crate) fn len(&self) -> usize {
        self.table.borrow().len()
    }

    pub(crate) fn spawned(&self) -> u64 {
        self.spawned.get()
    }

    pub(crate) fn polls(&self) -> u64 {
        self.polls.get()
    }
}

/// The end of a task's poll: nothing is current any more, and debug mode closes the poll
/// it opened. Normally `end` does it, with the task's name for the report; if anything
/// unwinds out of the poll instead, the drop does it all the same, so the loop's and debug
/// mode's bookkeeping never stay inside a poll that is over.
struct PollEnd<'a> {
    tasks: &'a Tasks,
    /// `None` without instruments, and once ended.
    probe: Option<Probe>,
    task: u64,
    site: u32,
}

impl<'a> PollEnd<'a> {
    fn end<'n>(&mut self, name: impl FnOnce() -> Option<&'n str>) {
        self.tasks.current.set(None);
        if let (Some(ins), Some(probe)) = (&self.tasks.instruments, self.probe.take()) {
            ins.end_poll(probe, self.task, self.site, name);
        }
    }
}

impl Drop for PollEnd<'_> {
    fn drop(&mut self) {
        self.end(|| None);
    }
}

/// How reports name a task.
pub(crate) fn task_info(id: u64, header: &Header) -> TaskInfo {
    TaskInfo {
        id: Id(id),
        name: header.name().map(str::to_owned),
        location: header.location,
    }
}
