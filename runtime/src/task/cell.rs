//! One task's allocation: its header, then its future, which becomes its output.
//!
//! The loop stores tasks as `Pin<Box<dyn RawTask>>` (one allocation per task) in the task
//! table (`table.rs`). `RawTask` erases the future's type; the output comes back out
//! through `&mut dyn Any`, which the typed `JoinHandle<T>` downcasts, so no `unsafe` is
//! needed. Every call into user code here (poll, drop of the future, drop of the output)
//! is wrapped in `catch_unwind`: a panicking task becomes `JoinError::Panicked`, and the
//! loop carries on.

use std::any::Any;
use std::future::Future;
use std::panic::{AssertUnwindSafe, Location, catch_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_task::waker_ref;
use oneloop_pool::wake;
use pin_project_lite::pin_project;

use super::JoinError;
use crate::waker::TaskWaker;

/// What the loop and the debug reports know about a task without knowing its type.
pub(crate) struct Header {
    /// The task's waker; clones of it are what the outside world holds. When only this one
    /// is left, nothing outside the runtime can wake the task (see the deadlock check).
    pub(crate) waker: Arc<TaskWaker>,
    pub(crate) name: Option<Box<str>>,
    /// Where `spawn` was called (`#[track_caller]`).
    pub(crate) location: &'static Location<'static>,
}

/// A task with its type erased.
pub(crate) trait RawTask {
    fn header(&self) -> &Header;

    /// Polls the future once. Returns true when the task has finished (its output, or the
    /// panic it raised, is stored).
    fn poll(self: Pin<&mut Self>) -> bool;

    /// Drops the future, if it is still running, and stores `JoinError::Cancelled` (or
    /// `Panicked` if the future's destructor panics).
    fn cancel(self: Pin<&mut Self>);

    /// The panic message when the task finished by panicking.
    fn panic_message(&self) -> Option<&str>;

    /// Whether dropping what the cell holds now (its future, or its output) may run user
    /// code: debug mode times such a drop (`Tasks::between_polls`, `lifecycle.rs`).
    fn drop_runs_user_code(&self) -> bool;

    /// Moves the output into `dst`, which must be `&mut Option<Result<T, JoinError>>` for the
    /// task's output type `T`.
    fn take_output(self: Pin<&mut Self>, dst: &mut dyn Any);
}

pin_project! {
    pub(crate) struct TaskCell<F: Future> {
        header: Header,
        #[pin]
        stage: Stage<F>,
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

impl<F: Future> TaskCell<F> {
    pub(crate) fn new(header: Header, future: F) -> Self {
        TaskCell {
            header,
            stage: Stage::Running { future },
        }
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

impl<F: Future + 'static> RawTask for TaskCell<F> {
    fn header(&self) -> &Header {
        &self.header
    }

    fn poll(self: Pin<&mut Self>) -> bool {
        let this = self.project();
        let header: &Header = this.header;
        let mut stage = this.stage;
        let StageProj::Running { future } = stage.as_mut().project() else {
            return true;
        };
        header.waker.begin_poll();
        let waker = waker_ref(&header.waker);
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

    fn cancel(self: Pin<&mut Self>) {
        let mut stage = self.project().stage;
        if !matches!(*stage, Stage::Running { .. }) {
            return;
        }
        let output = match set_stage(stage.as_mut(), Stage::Consumed) {
            None => Err(JoinError::Cancelled),
            Some(message) => Err(JoinError::Panicked(message)),
        };
        stage.set(Stage::Finished { output });
    }

    fn drop_runs_user_code(&self) -> bool {
        match &self.stage {
            Stage::Running { .. } => std::mem::needs_drop::<F>(),
            Stage::Finished { output: Ok(_) } => std::mem::needs_drop::<F::Output>(),
            Stage::Finished { output: Err(_) } | Stage::Consumed => false,
        }
    }

    fn panic_message(&self) -> Option<&str> {
        match &self.stage {
            Stage::Finished {
                output: Err(JoinError::Panicked(message)),
            } => Some(message),
            _ => None,
        }
    }

    fn take_output(self: Pin<&mut Self>, dst: &mut dyn Any) {
        let mut stage = self.project().stage;
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
}
