//! `JoinHandle`: the awaitable result of a spawned task (why it may carry none is
//! `JoinError`, in `error.rs`).
//!
//! A handle names its task by `TaskRef` and reaches the task's life cycle
//! (`lifecycle.rs`) through a `Weak`, never the loop, so a handle that outlives its runtime resolves to `Cancelled` instead of touching freed
//! state. Every operation is one short visit to the task table (`table.rs`).

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::rc::Weak;
use std::task::{Context, Poll, Waker};

use super::lifecycle::Tasks;
use super::{Id, JoinError};
use crate::task::id::{MAIN_KEY, TaskRef};

/// An owned permission to await a task's result, returned by [`spawn`](crate::spawn).
///
/// Awaiting it gives `Ok(value)`, or a [`JoinError`] if the task panicked or was
/// cancelled. Dropping it *detaches* the task: it keeps running, and its result is dropped
/// when it finishes (a panic nobody retrieved is reported as `OL003`).
///
/// # Examples
///
/// ```
/// let rt = oneloop::Runtime::new();
/// let answer = rt.block_on(async {
///     let handle = oneloop::spawn(async { 6 * 7 });
///     handle.await
/// });
/// assert_eq!(answer, Ok(42));
/// ```
///
/// # Panics
///
/// Polling it again after it returned `Ready` panics.
#[must_use = "dropping a JoinHandle detaches the task; await it to get its result"]
pub struct JoinHandle<T> {
    tasks: Weak<Tasks>,
    /// The task; once the result has been returned, its key is `MAIN_KEY` (no task a handle
    /// can name has that key: it is the `block_on` future's), which marks the handle done
    /// without a field of its own, so a handle is three words.
    task: TaskRef,
    _output: PhantomData<fn() -> T>,
}

impl<T> JoinHandle<T> {
    pub(crate) fn new(tasks: Weak<Tasks>, task: TaskRef) -> Self {
        debug_assert_ne!(task.key, MAIN_KEY);
        JoinHandle {
            tasks,
            task,
            _output: PhantomData,
        }
    }

    /// True once the handle has returned the result.
    fn done(&self) -> bool {
        self.task.key == MAIN_KEY
    }

    fn set_done(&mut self) {
        self.task.key = MAIN_KEY;
    }

    /// The task's id (as printed in debug reports: `#7`).
    pub fn id(&self) -> Id {
        Id(self.task.id)
    }

    pub(crate) fn task_ref(&self) -> TaskRef {
        self.task
    }

    /// Cancels the task: its future is dropped right away (or, if the task is aborting
    /// itself from inside its own poll, as soon as that poll returns), and the handle
    /// resolves to [`JoinError::Cancelled`]. Does nothing if the task has finished.
    pub fn abort(&self) {
        if let Some(tasks) = self.tasks.upgrade() {
            tasks.abort(self.task);
        }
    }

    /// True once the task has finished (with a value, a panic or a cancellation).
    pub fn is_finished(&self) -> bool {
        match self.tasks.upgrade() {
            Some(tasks) => tasks.is_finished(self.task),
            None => true,
        }
    }

    /// Lets the task run to completion unobserved (the same as dropping the handle, said
    /// out loud).
    pub fn detach(self) {}

    /// Has `waker` woken when the task finishes, without polling the handle. `JoinSet`
    /// uses it to learn which of many tasks finished.
    pub(crate) fn set_join_waker(&self, waker: &Waker) {
        match self.tasks.upgrade() {
            Some(tasks) => tasks.set_join_waker(self.task, waker),
            None => waker.wake_by_ref(),
        }
    }
}

impl<T: 'static> Future for JoinHandle<T> {
    type Output = Result<T, JoinError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        assert!(
            !self.done(),
            "oneloop: JoinHandle polled after it returned its result"
        );
        let Some(tasks) = self.tasks.upgrade() else {
            self.set_done();
            return Poll::Ready(Err(JoinError::Cancelled)); // the runtime is gone
        };
        // Awaiting handles of finished tasks one after another yields after the budget.
        if crate::task::coop::poll_proceed(cx).is_pending() {
            return Poll::Pending;
        }
        let mut output: Option<Result<T, JoinError>> = None;
        match tasks.poll_join(self.task, cx.waker(), &mut output as &mut dyn Any) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(()) => {
                crate::task::coop::spend();
                self.set_done();
                Poll::Ready(output.unwrap_or(Err(JoinError::Cancelled)))
            }
        }
    }
}

impl<T> Drop for JoinHandle<T> {
    fn drop(&mut self) {
        if !self.done()
            && let Some(tasks) = self.tasks.upgrade()
        {
            tasks.release_handle(self.task);
        }
    }
}

impl<T> fmt::Debug for JoinHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinHandle")
            .field("id", &Id(self.task.id))
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_handle_is_three_words() {
        // A million handles in a `Vec` (W5) are a million of these.
        assert_eq!(size_of::<super::JoinHandle<u64>>(), 3 * size_of::<usize>());
    }
}
