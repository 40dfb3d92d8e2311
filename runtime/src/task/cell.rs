//! One task's allocation: its waker, its header, and the loop's part: its future, which
//! becomes its output, and what it waits on.
//!
//! A task is one `Arc` ([`TaskCell`]), and that `Arc` is also its `Waker` (futures-task's
//! `ArcWake`), so a spawn allocates once. Three parts share it:
//! - the waker's state (`TaskWaker`: which task, whether it is queued, the way back from
//!   other threads), `Send + Sync`, touched by every clone of the waker on any thread;
//! - the header (name, spawn site), read-only after the spawn;
//! - the loop's part (the future or its output, and what the task waits on), which need
//!   not be `Send`.
//!
//! The task table holds the one [`TaskBox`] of each task, and the loop's part is reached
//! through it only. A `TaskBox` is `!Send` and never cloned, so only the loop thread ever
//! touches that part, and only while it holds the box (`&mut` to change it). When the box
//! goes, it first empties the loop's part (drops the future, or the output, on the loop
//! thread), so whichever thread drops the last waker frees an allocation that holds nothing
//! of the task's any more. That is why `TaskCell` may be `Send + Sync` although its future
//! is neither.
//!
//! The output comes back out through `&mut dyn Any`, which the typed `JoinHandle<T>`
//! downcasts. Every call into user code here (poll, drop of the future, drop of the output)
//! is wrapped in `catch_unwind`: a panicking task becomes `JoinError::Panicked`, and the
//! loop carries on.

use std::any::Any;
use std::cell::UnsafeCell;
use std::future::Future;
use std::marker::PhantomData;
use std::mem::ManuallyDrop;
use std::panic::{AssertUnwindSafe, Location, catch_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_task::{ArcWake, waker_ref};
use oneloop_pool::wake;
use pin_project_lite::pin_project;

use super::JoinError;
use super::waiting::Waiting;
use crate::waker::TaskWaker;

/// What the debug reports know about a task without knowing its type.
pub(crate) struct Header {
    /// Boxed twice: one word in every task, a second allocation for named tasks only.
    name: Option<Box<Box<str>>>,
    /// Where `spawn` was called (`#[track_caller]`).
    pub(crate) location: &'static Location<'static>,
}

impl Header {
    pub(crate) fn new(name: Option<Box<str>>, location: &'static Location<'static>) -> Self {
        Header {
            name: name.map(Box::new),
            location,
        }
    }

    pub(crate) fn name(&self) -> Option<&str> {
        self.name.as_deref().map(|name| &**name)
    }
}

/// A task's allocation (see the module's docs).
struct TaskCell<F: Future> {
    waker: TaskWaker,
    header: Header,
    /// Reached through the task's `TaskBox` only (see `TaskBox`).
    loop_part: UnsafeCell<LoopPart<F>>,
}

/// The part of a task only the loop thread touches.
struct LoopPart<F: Future> {
    stage: Stage<F>,
    /// What the task waited on when its last poll returned `Pending` (read by the deadlock
    /// check, `debug/deadlock.rs`).
    waiting: Waiting,
}

// Why a `TaskCell` may cross threads although its future need not: the only part that is
// not `Send + Sync` is `loop_part` (the future and its output), touched only through the
// cell's one `TaskBox`, which is `!Send` (so: on the loop thread), never cloned, and used
// as its borrow allows (shared to read, exclusive to change). Other threads hold wakers,
// which reach `waker` (atomics, an `Arc<Remote>`) and `header` (immutable data) only. The
// box's `Drop` empties `loop_part` (`Stage::Consumed`) on the loop thread before it lets go
// of its reference, so the last reference, dropped anywhere, drops no future and no output.

// SAFETY: other threads never touch `loop_part`, and a last drop there finds it empty
// (`Stage::Consumed` and a plain-data `Waiting`): see the paragraph above.
unsafe impl<F: Future> Send for TaskCell<F> {}
// SAFETY: shared references on other threads reach `waker` and `header` only, both `Sync`
// (see the paragraph above).
unsafe impl<F: Future> Sync for TaskCell<F> {}

impl<F: Future + 'static> ArcWake for TaskCell<F> {
    fn wake_by_ref(arc_self: &Arc<Self>) {
        arc_self.waker.schedule();
    }
}

pin_project! {
    #[project = StageProj]
    enum Stage<F: Future> {
        Running { #[pin] future: F },
        Finished { output: Result<F::Output, JoinError> },
        Consumed,
    }
}

/// Replaces the stage, dropping the old one (a running future, or an unretrieved output)
/// under `catch_unwind`. If that destructor panics, the new stage is in place all the same
/// (assignment writes the new value even when dropping the old one unwinds), and the
/// panic's message is returned.
fn set_stage<F: Future>(stage: Pin<&mut Stage<F>>, new: Stage<F>) -> Option<String> {
    let mut stage = stage;
    catch_unwind(AssertUnwindSafe(|| stage.as_mut().set(new)))
        .err()
        .map(wake::into_message)
}

/// A task with its type erased. Every method but `header` touches the loop's part: the
/// caller must be the task's `TaskBox`, with a shared borrow of it to read and an exclusive
/// one to change (see `TaskCell`'s `Send` impl).
trait RawTask {
    fn header(&self) -> &Header;

    /// Polls the future once. Returns true when the task has finished (its output, or the
    /// panic it raised, is stored).
    ///
    /// # Safety
    /// Called by the task's `TaskBox`, borrowed exclusively, with `this` the
    /// `Arc::as_ptr` of its `Arc` (the task's own allocation, with that allocation's
    /// provenance: the waker is made from it).
    unsafe fn poll(&self, this: *const ()) -> bool;

    /// Drops the future, if it is still running, and stores `JoinError::Cancelled` (or
    /// `Panicked` if the future's destructor panics).
    ///
    /// # Safety
    /// Called by the task's `TaskBox`, borrowed exclusively.
    unsafe fn cancel(&self);

    /// Drops whatever the stage holds (a future or an output); the stage is empty after it,
    /// even if that destructor panics (the panic then goes on to the caller).
    ///
    /// # Safety
    /// Called by the task's `TaskBox`, borrowed exclusively.
    unsafe fn clear(&self);

    /// Moves the output into `dst`, which must be `&mut Option<Result<T, JoinError>>` for the
    /// task's output type `T`.
    ///
    /// # Safety
    /// Called by the task's `TaskBox`, borrowed exclusively.
    unsafe fn take_output(&self, dst: &mut dyn Any);

    /// # Safety
    /// Called by the task's `TaskBox`, borrowed exclusively.
    unsafe fn set_waiting(&self, waiting: Waiting);

    /// The loop's part, to read.
    ///
    /// # Safety
    /// Called by the task's `TaskBox`, borrowed (shared) for as long as the result lives.
    unsafe fn read(&self) -> Read<'_>;
}

/// What can be read of a task's loop part without knowing its type.
struct Read<'a> {
    panic_message: Option<&'a str>,
    drop_runs_user_code: bool,
    waiting: Waiting,
}

impl<F: Future + 'static> TaskCell<F> {
    /// The loop's part, to change.
    ///
    /// # Safety
    /// The caller is the task's `TaskBox`, borrowed exclusively: no other reference to the
    /// loop's part exists while the result lives.
    #[allow(clippy::mut_from_ref)] // the `UnsafeCell`'s very purpose; see `TaskBox`
    unsafe fn loop_part(&self) -> &mut LoopPart<F> {
        // SAFETY: the caller's contract (above): this is the only reference to it.
        unsafe { &mut *self.loop_part.get() }
    }

    /// The stage, pinned.
    ///
    /// # Safety
    /// As `loop_part`.
    #[allow(clippy::mut_from_ref)] // as `loop_part`
    unsafe fn stage(&self) -> Pin<&mut Stage<F>> {
        // SAFETY: the caller's contract is `loop_part`'s. Pinning: the stage lives inside an
        // `Arc`'s allocation, which never moves, and is only ever replaced in place
        // (`Pin::set`), never moved out.
        unsafe { Pin::new_unchecked(&mut self.loop_part().stage) }
    }
}

impl<F: Future + 'static> RawTask for TaskCell<F> {
    fn header(&self) -> &Header {
        &self.header
    }

    unsafe fn poll(&self, this: *const ()) -> bool {
        // SAFETY: forwarded from this method's contract.
        let mut stage = unsafe { self.stage() };
        let StageProj::Running { future } = stage.as_mut().project() else {
            return true;
        };
        self.waker.begin_poll();
        // The task's waker is its own `Arc`, borrowed here without touching the count: by
        // this method's contract `this` is `Arc::as_ptr` of the `Arc` this cell lives in
        // (`TaskBox::new` makes every `TaskCell` inside one), with the whole allocation's
        // provenance, counts included.
        // SAFETY: `this` is the pointer `Arc::into_raw` would give for this cell's `Arc`;
        // `ManuallyDrop` keeps this borrowed `Arc` from releasing a count it never took.
        let this = ManuallyDrop::new(unsafe { Arc::from_raw(this.cast::<Self>()) });
        let waker = waker_ref(&this);
        let mut cx = Context::from_waker(&waker);
        let output = match catch_unwind(AssertUnwindSafe(|| future.poll(&mut cx))) {
            Ok(Poll::Pending) => return false,
            Ok(Poll::Ready(value)) => Ok(value),
            // The payload's own destructor may panic: it is dropped contained, or that
            // panic would escape the runtime in the middle of the loop's bookkeeping.
            Err(payload) => Err(JoinError::Panicked(wake::into_message(payload))),
        };
        // The future is done: drop it now (not when the handle is read) so its resources
        // go back at once. A panic in its destructor makes the task a panicked one.
        if let Some(message) = set_stage(stage.as_mut(), Stage::Finished { output }) {
            set_stage(
                stage,
                Stage::Finished {
                    output: Err(JoinError::Panicked(message)),
                },
            );
        }
        true
    }

    unsafe fn cancel(&self) {
        // SAFETY: forwarded from this method's contract.
        let mut stage = unsafe { self.stage() };
        if !matches!(*stage, Stage::Running { .. }) {
            return;
        }
        let output = match set_stage(stage.as_mut(), Stage::Consumed) {
            None => Err(JoinError::Cancelled),
            Some(message) => Err(JoinError::Panicked(message)),
        };
        stage.set(Stage::Finished { output });
    }

    unsafe fn clear(&self) {
        // SAFETY: forwarded from this method's contract.
        unsafe { self.stage() }.set(Stage::Consumed);
    }

    unsafe fn take_output(&self, dst: &mut dyn Any) {
        // SAFETY: forwarded from this method's contract.
        let mut stage = unsafe { self.stage() };
        let dst = dst
            .downcast_mut::<Option<Result<F::Output, JoinError>>>()
            .expect("oneloop bug: JoinHandle type does not match its task");
        // Moving the output out is fine: `Finished` holds no pinned data.
        if let StageProj::Finished { output } = stage.as_mut().project() {
            let output = std::mem::replace(output, Err(JoinError::Cancelled));
            *dst = Some(output);
            stage.set(Stage::Consumed);
        }
    }

    unsafe fn set_waiting(&self, waiting: Waiting) {
        // SAFETY: forwarded from this method's contract.
        unsafe { self.loop_part() }.waiting = waiting;
    }

    unsafe fn read(&self) -> Read<'_> {
        // SAFETY: forwarded from this method's contract: nothing changes the loop's part
        // while the caller's shared borrow (and so the result) lives.
        let part = unsafe { &*self.loop_part.get() };
        let (panic_message, drop_runs_user_code) = match &part.stage {
            Stage::Running { .. } => (None, std::mem::needs_drop::<F>()),
            Stage::Finished { output: Ok(_) } => (None, std::mem::needs_drop::<F::Output>()),
            Stage::Finished {
                output: Err(JoinError::Panicked(message)),
            } => (Some(message.as_str()), false),
            Stage::Finished { output: Err(_) } | Stage::Consumed => (None, false),
        };
        Read {
            panic_message,
            drop_runs_user_code,
            waiting: part.waiting,
        }
    }
}

/// The task table's handle on one task (its only one): the way to the loop's part of the
/// task's allocation. `!Send` (it stays on the loop thread) and not `Clone`; `&mut` to change
/// the task, `&` to read it. Dropping it drops whatever the task still holds (its future or
/// its output: user code, which the caller contains), then its reference.
pub(crate) struct TaskBox {
    cell: Arc<dyn RawTask>,
    _loop_thread: PhantomData<*const ()>,
}

impl TaskBox {
    /// A new task, queued already as far as its waker knows (see `TaskWaker::for_task`).
    pub(crate) fn new<F>(waker: TaskWaker, header: Header, future: F) -> Self
    where
        F: Future + 'static,
    {
        TaskBox {
            cell: Arc::new(TaskCell {
                waker,
                header,
                loop_part: UnsafeCell::new(LoopPart {
                    stage: Stage::Running { future },
                    waiting: Waiting::Unknown,
                }),
            }),
            _loop_thread: PhantomData,
        }
    }

    pub(crate) fn header(&self) -> &Header {
        self.cell.header()
    }

    /// Polls the future once; true when the task has finished.
    pub(crate) fn poll(&mut self) -> bool {
        let this = Arc::as_ptr(&self.cell).cast::<()>();
        // SAFETY: the task's box, borrowed exclusively (`&mut self`), and `this` is its
        // `Arc`'s pointer.
        unsafe { self.cell.poll(this) }
    }

    /// See `RawTask::cancel`.
    pub(crate) fn cancel(&mut self) {
        // SAFETY: the task's box, borrowed exclusively (`&mut self`).
        unsafe { self.cell.cancel() }
    }

    /// See `RawTask::take_output`.
    pub(crate) fn take_output(&mut self, dst: &mut dyn Any) {
        // SAFETY: the task's box, borrowed exclusively (`&mut self`).
        unsafe { self.cell.take_output(dst) }
    }

    pub(crate) fn set_waiting(&mut self, waiting: Waiting) {
        // SAFETY: the task's box, borrowed exclusively (`&mut self`).
        unsafe { self.cell.set_waiting(waiting) }
    }

    fn read(&self) -> Read<'_> {
        // SAFETY: the task's box, borrowed (`&self`) for as long as the result lives.
        unsafe { self.cell.read() }
    }

    /// The panic message when the task finished by panicking.
    pub(crate) fn panic_message(&self) -> Option<&str> {
        self.read().panic_message
    }

    /// Whether dropping what the task holds now (its future, or its output) may run user
    /// code: debug mode times such a drop (`Tasks::between_polls`, `lifecycle.rs`).
    pub(crate) fn drop_runs_user_code(&self) -> bool {
        self.read().drop_runs_user_code
    }

    /// What the task waited on when its last poll returned `Pending`.
    pub(crate) fn waiting(&self) -> Waiting {
        self.read().waiting
    }

    /// How many references the task's allocation has: this box, plus every clone of its
    /// waker (the deadlock check counts who could still wake it).
    pub(crate) fn waker_refs(&self) -> usize {
        Arc::strong_count(&self.cell)
    }

    /// The data pointer of the task's `Waker` (to recognise it in a join slot).
    pub(crate) fn waker_ptr(&self) -> *const () {
        Arc::as_ptr(&self.cell).cast()
    }
}

impl Drop for TaskBox {
    fn drop(&mut self) {
        // SAFETY: the task's box, borrowed exclusively (`&mut self`). If the destructor of
        // what the stage held panics, the stage is empty all the same (`set_stage`'s note),
        // and the `Arc` field is still released while that panic unwinds.
        unsafe { self.cell.clear() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_is_one_allocation_of_modest_size() {
        // The waker, the header and the loop's part of a small future, in one `Arc`: a
        // size that W5 (a million tasks at once) feels in page faults.
        let size = size_of::<TaskCell<std::future::Ready<()>>>();
        assert!(size <= 88, "TaskCell of a trivial future: {size} bytes");
        assert_eq!(size_of::<TaskBox>(), 16);
    }
}
