//! Tasks: spawning, joining, and structured concurrency.
//!
//! A task is a future the loop polls until it finishes. It need not be `Send`: it never
//! leaves the loop thread. `spawn` puts it in the task table (`table.rs`) as one allocation
//! (`cell.rs`) and queues it on the run queue (`run_queue.rs`), where its waker puts it
//! again whenever it is called; the loop (`runtime.rs`) pops it and has its life cycle
//! (`lifecycle.rs`: poll, finish, cancel, the `JoinHandle`'s side) run it.
//!
//! The low rooms every other part of the runtime may name tasks with: `id.rs` ([`Id`],
//! `TaskRef`), `waiting.rs` (what a pending task waits on), `error.rs` ([`JoinError`]).
//!
//! - [`JoinHandle`] (`join.rs`): await one task's result; `abort` it.
//! - [`JoinSet`] (`join_set.rs`): many tasks, results in completion order, the rest aborted
//!   on drop.
//! - [`TaskGroup`] (`group.rs`): asyncio's `TaskGroup`, where the first failure cancels the
//!   siblings; and [`join_all`]/[`try_join_all`], asyncio's `gather`.
//! - [`Builder`] (`builder.rs`): spawn with a name, for debug reports.
//! - [`unconstrained`] (`coop.rs`): each poll of a task has a budget of [`BUDGET`]
//!   operations (socket, channel, timer, join), so a task that never has to wait still
//!   lets the others run; `unconstrained` lifts it.

mod builder;
pub(crate) mod cell;
pub(crate) mod coop;
mod error;
mod group;
pub(crate) mod id;
mod join;
mod join_set;
pub(crate) mod lifecycle;
mod ready;
pub(crate) mod run_queue;
pub(crate) mod table;
pub(crate) mod waiting;

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

pub use builder::Builder;
pub use coop::{BUDGET, Unconstrained, unconstrained};
pub use error::JoinError;
pub use group::{GroupError, JoinAll, TaskGroup, TryJoinAll, join_all, try_join_all};
pub use id::Id;
pub use join::JoinHandle;
pub use join_set::JoinSet;

use crate::context;

/// Spawns `future` as a new task on the current runtime and returns its [`JoinHandle`].
///
/// The task starts on a later turn of the loop, never inside this call. It need not be
/// `Send`. Its spawn location is recorded for debug reports.
///
/// # Examples
///
/// ```
/// use std::rc::Rc;
///
/// oneloop::Runtime::new().block_on(async {
///     let shared = Rc::new(5); // not Send: fine, tasks stay on the loop thread
///     let task = oneloop::spawn({
///         let shared = shared.clone();
///         async move { *shared * 2 }
///     });
///     assert_eq!(task.await, Ok(10));
/// });
/// ```
///
/// # Panics
///
/// Outside a runtime (use [`Runtime::spawn`](crate::Runtime::spawn), or a
/// [`Handle`](crate::Handle) from another thread).
#[track_caller]
pub fn spawn<F>(future: F) -> JoinHandle<F::Output>
where
    F: Future + 'static,
    F::Output: 'static,
{
    let core = context::current("oneloop::spawn");
    core.spawn(future, None, std::panic::Location::caller())
}

/// The id of the task being polled right now (`#0` inside `block_on`'s future), or `None`
/// outside a runtime.
pub fn try_id() -> Option<Id> {
    context::with_current(|core| core.tasks().current_task_id()).flatten()
}

/// Yields once: the task goes to the back of the run queue, so every other ready task,
/// and the reactor and timers, get a turn before it resumes.
///
/// # Examples
///
/// ```
/// oneloop::Runtime::new().block_on(async {
///     for _ in 0..3 {
///         oneloop::task::yield_now().await; // let others run between chunks of work
///     }
/// });
/// ```
pub fn yield_now() -> YieldNow {
    YieldNow { yielded: false }
}

/// The future returned by [`yield_now`].
#[derive(Debug)]
#[must_use = "futures do nothing unless awaited"]
pub struct YieldNow {
    yielded: bool,
}

impl Future for YieldNow {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.yielded {
            return Poll::Ready(());
        }
        self.yielded = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}
