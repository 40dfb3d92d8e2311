//! Cooperative scheduling: each poll of a task gets a budget of operations, so a task that
//! always finds its socket ready (a client that pipelines requests), or its channel full,
//! still lets the rest of the loop run.
//!
//! Readiness stays set until an operation would block, so such a task would otherwise go
//! from read to write to read inside one poll for as long as its peer keeps up, and every
//! other connection, timer and task would wait (tokio calls this the budget, and does the
//! same). Each socket operation, channel receive, `JoinHandle` and timer that completes
//! inside a task's poll spends one unit of [`BUDGET`]; once it is spent, those operations
//! return `Pending` (having woken their task, which goes to the back of the run queue)
//! until the task's next poll, which starts with a full budget. An operation that would
//! have returned `Pending` anyway costs nothing.
//!
//! [`unconstrained`] lifts the budget for a future that must not be interrupted so; code
//! outside any task poll (another thread, a hand-rolled executor) has no budget at all.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;

/// Operations per poll of a task before its operations start yielding.
pub const BUDGET: u32 = 128;

thread_local! {
    /// The units left in the current poll; `None`: unconstrained (no task poll runs here,
    /// or it runs under [`unconstrained`]).
    static LEFT: Cell<Option<u32>> = const { Cell::new(None) };
}

/// Sets the budget for the poll that runs while it lives, and puts back what was there
/// when it is dropped (a panic included).
pub(crate) struct PollBudget(Option<u32>);

impl PollBudget {
    /// A full budget for a task's poll.
    pub(crate) fn start() -> PollBudget {
        PollBudget(LEFT.with(|left| left.replace(Some(BUDGET))))
    }
}

impl Drop for PollBudget {
    fn drop(&mut self) {
        let previous = self.0;
        let _ = LEFT.try_with(|left| left.set(previous));
    }
}

/// Whether an operation may complete in this poll: `Pending` (its task woken, to run again
/// after the others) once the budget is spent.
#[inline]
pub(crate) fn poll_proceed(cx: &mut Context<'_>) -> Poll<()> {
    let spent = LEFT.try_with(|left| left.get() == Some(0)).unwrap_or(false);
    if spent {
        cx.waker().wake_by_ref();
        Poll::Pending
    } else {
        Poll::Ready(())
    }
}

/// An operation completed: one unit spent.
#[inline]
pub(crate) fn spend() {
    let _ = LEFT.try_with(|left| {
        if let Some(units) = left.get() {
            left.set(Some(units.saturating_sub(1)));
        }
    });
}

/// Runs `future` with no budget: its socket, channel and timer operations never yield for
/// the budget's sake (they still yield when they must wait). For a short critical section
/// that must not be interleaved with other tasks; a loop that never waits inside it blocks
/// the whole loop, as it would without the budget.
///
/// # Examples
///
/// ```
/// oneloop::Runtime::new().block_on(async {
///     let (tx, mut rx) = oneloop::sync::mpsc::unbounded_channel();
///     for i in 0..1_000 {
///         tx.send(i).unwrap();
///     }
///     // Drains all 1,000 in one poll, never yielding in between.
///     let sum = oneloop::task::unconstrained(async move {
///         let mut sum = 0;
///         for _ in 0..1_000 {
///             sum += rx.recv().await.unwrap();
///         }
///         sum
///     })
///     .await;
///     assert_eq!(sum, 499_500);
/// });
/// ```
pub fn unconstrained<F: Future>(future: F) -> Unconstrained<F> {
    Unconstrained { future }
}

pin_project! {
    /// The future of [`unconstrained`].
    #[derive(Debug)]
    #[must_use = "futures do nothing unless awaited"]
    pub struct Unconstrained<F> {
        #[pin]
        future: F,
    }
}

impl<F: Future> Future for Unconstrained<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let previous = LEFT.with(|left| left.replace(None));
        let _restore = PollBudget(previous);
        self.project().future.poll(cx)
    }
}
