//! Structured concurrency: `TaskGroup` (asyncio's `TaskGroup`) and `join_all` /
//! `try_join_all` (asyncio's `gather`).
//!
//! `TaskGroup` runs each child as a task (in a `JoinSet`) so children make progress while
//! the parent does other work; `join_all` polls its futures inside the awaiting task, which
//! costs no spawn. Both return results in the order the work was given, not the order it
//! finished.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::panic::Location;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use super::ready::ReadyList;
use super::{Id, JoinError, JoinHandle, JoinSet};
use crate::context;

/// Why a [`TaskGroup`] failed: its first failing child, by index in spawn order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupError<E> {
    /// Child `index` returned `Err(error)`.
    Failed {
        /// The child's position in spawn order.
        index: usize,
        /// The error it returned.
        error: E,
    },
    /// Child `index` panicked with `message`.
    Panicked {
        /// The child's position in spawn order.
        index: usize,
        /// The panic message.
        message: String,
    },
    /// Child `index` was cancelled from outside the group (its runtime shut down).
    Cancelled {
        /// The child's position in spawn order.
        index: usize,
    },
}

impl<E: fmt::Display> fmt::Display for GroupError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GroupError::Failed { index, error } => {
                write!(f, "task {index} of the group failed: {error}")
            }
            GroupError::Panicked { index, message } => {
                write!(f, "task {index} of the group panicked: {message}")
            }
            GroupError::Cancelled { index } => write!(f, "task {index} of the group was cancelled"),
        }
    }
}

impl<E: fmt::Debug + fmt::Display> std::error::Error for GroupError<E> {}

/// Runs fallible tasks together; the first failure cancels the rest, as in asyncio's
/// `TaskGroup`.
///
/// Spawn children with [`spawn`](Self::spawn), then [`join`](Self::join): it returns every
/// child's value in spawn order, or, as soon as one child returns `Err` or panics, aborts
/// all the others and returns that failure. Dropping the group without joining aborts its
/// children too, so no child outlives the group.
///
/// # Examples
///
/// ```
/// use oneloop::task::{GroupError, TaskGroup};
///
/// oneloop::Runtime::new().block_on(async {
///     let mut group = TaskGroup::new();
///     group.spawn(async { Ok::<_, String>(1) });
///     group.spawn(async { Err("disk full".to_string()) });
///     group.spawn(async {
///         oneloop::time::sleep(std::time::Duration::from_secs(3600)).await;
///         Ok(3) // never reached: cancelled when its sibling failed
///     });
///     let failure = group.join().await.unwrap_err();
///     assert_eq!(failure, GroupError::Failed { index: 1, error: "disk full".into() });
/// });
/// ```
pub struct TaskGroup<T, E> {
    set: JoinSet<Result<T, E>>,
    /// Task id -> position in spawn order.
    order: HashMap<Id, usize>,
}

impl<T: 'static, E: 'static> TaskGroup<T, E> {
    /// An empty group.
    pub fn new() -> Self {
        TaskGroup {
            set: JoinSet::new(),
            order: HashMap::new(),
        }
    }

    /// Spawns a child on the current runtime; returns its id.
    ///
    /// # Panics
    ///
    /// Outside a runtime.
    #[track_caller]
    pub fn spawn<F>(&mut self, future: F) -> Id
    where
        F: Future<Output = Result<T, E>> + 'static,
    {
        let core = context::current("TaskGroup::spawn");
        self.insert(core.spawn(future, None, Location::caller()))
    }

    /// Adds an already spawned task (for instance a named one) as the next child.
    pub fn insert(&mut self, handle: JoinHandle<Result<T, E>>) -> Id {
        let index = self.order.len();
        let id = self.set.insert(handle);
        self.order.insert(id, index);
        id
    }

    /// The number of children spawned.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// True when no child was spawned.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// Waits for every child. Returns their values in spawn order, or the first failure
    /// (in the order failures happen), after aborting every other child.
    pub async fn join(mut self) -> Result<Vec<T>, GroupError<E>> {
        let mut values: Vec<Option<T>> = (0..self.order.len()).map(|_| None).collect();
        while let Some((id, result)) = self.set.join_next_with_id().await {
            let index = self.order[&id];
            let failure = match result {
                Ok(Ok(value)) => {
                    values[index] = Some(value);
                    continue;
                }
                Ok(Err(error)) => GroupError::Failed { index, error },
                Err(JoinError::Panicked(message)) => GroupError::Panicked { index, message },
                Err(JoinError::Cancelled) => GroupError::Cancelled { index },
            };
            self.set.abort_all();
            return Err(failure);
        }
        Ok(values
            .into_iter()
            .map(|value| value.expect("oneloop bug: a group child finished without a value"))
            .collect())
    }
}

impl<T: 'static, E: 'static> Default for TaskGroup<T, E> {
    fn default() -> Self {
        TaskGroup::new()
    }
}

impl<T, E> fmt::Debug for TaskGroup<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskGroup")
            .field("children", &self.order.len())
            .field("running", &self.set.len())
            .finish()
    }
}

/// Polls many futures at once, inside the calling task, and returns their outputs in the
/// order given (asyncio's `gather`). Total time is that of the slowest, not the sum.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use oneloop::time::sleep;
///
/// oneloop::Runtime::new().block_on(async {
///     let outputs = oneloop::task::join_all([30u64, 10, 20].map(|ms| async move {
///         sleep(Duration::from_millis(ms)).await;
///         ms
///     }))
///     .await;
///     assert_eq!(outputs, [30, 10, 20]); // call order, whatever the finishing order
/// });
/// ```
pub fn join_all<I>(futures: I) -> JoinAll<I::Item>
where
    I: IntoIterator,
    I::Item: Future,
{
    let children = Children::new(futures);
    let outputs = (0..children.futures.len()).map(|_| None).collect();
    JoinAll { children, outputs }
}

/// Like [`join_all`] for fallible futures: the first `Err` drops every other future and is
/// returned at once; otherwise all the values, in order.
///
/// # Examples
///
/// ```
/// use oneloop::task::try_join_all;
///
/// async fn parse(text: &str) -> Result<u32, String> {
///     text.parse().map_err(|_| format!("not a number: {text}"))
/// }
///
/// oneloop::Runtime::new().block_on(async {
///     assert_eq!(try_join_all(["1", "2"].map(parse)).await, Ok(vec![1, 2]));
///     assert_eq!(
///         try_join_all(["1", "x"].map(parse)).await,
///         Err("not a number: x".to_string())
///     );
/// });
/// ```
pub fn try_join_all<I, T, E>(futures: I) -> TryJoinAll<I::Item>
where
    I: IntoIterator,
    I::Item: Future<Output = Result<T, E>>,
{
    let children = Children::new(futures);
    let outputs = (0..children.futures.len()).map(|_| None).collect();
    TryJoinAll { children, outputs }
}

/// Child futures, each boxed (so the parent is `Unpin`) with its own waker, so a wake
/// re-polls only that child.
struct Children<F> {
    futures: Vec<Option<Pin<Box<F>>>>,
    wakers: Vec<Waker>,
    ready: Arc<ReadyList>,
    remaining: usize,
}

impl<F: Future> Children<F> {
    fn new(futures: impl IntoIterator<Item = F>) -> Self {
        let futures: Vec<_> = futures.into_iter().map(|f| Some(Box::pin(f))).collect();
        let ready = Arc::new(ReadyList::default());
        // Every child starts "woken", polled first to last.
        for index in 0..futures.len() {
            ready.push(index);
        }
        let wakers = (0..futures.len()).map(|i| ready.child_waker(i)).collect();
        Children {
            remaining: futures.len(),
            futures,
            wakers,
            ready,
        }
    }

    /// Polls the children that woke; calls `done` for each that finished, stopping early if
    /// `done` says so. Ready when every child finished.
    fn poll(
        &mut self,
        cx: &mut Context<'_>,
        mut done: impl FnMut(usize, F::Output) -> bool,
    ) -> Poll<()> {
        while self.remaining > 0 {
            // A child that yields for the budget wakes itself, so it would be popped and
            // polled again at once, for ever: once the budget is spent, the group yields.
            if super::coop::poll_proceed(cx).is_pending() {
                return Poll::Pending;
            }
            let Some(index) = self.ready.pop_or_register(cx.waker()) else {
                return Poll::Pending;
            };
            let Some(future) = self.futures[index].as_mut() else {
                continue;
            };
            let mut child_cx = Context::from_waker(&self.wakers[index]);
            if let Poll::Ready(output) = future.as_mut().poll(&mut child_cx) {
                self.futures[index] = None;
                self.remaining -= 1;
                if !done(index, output) {
                    self.futures.clear();
                    self.remaining = 0;
                }
            }
        }
        Poll::Ready(())
    }
}

/// The future returned by [`join_all`].
#[must_use = "futures do nothing unless awaited"]
pub struct JoinAll<F: Future> {
    children: Children<F>,
    outputs: Vec<Option<F::Output>>,
}

// The children are boxed and the outputs are never pinned, so moving the whole is fine.
impl<F: Future> Unpin for JoinAll<F> {}

impl<F: Future> Future for JoinAll<F> {
    type Output = Vec<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let outputs = &mut this.outputs;
        if this
            .children
            .poll(cx, |index, output| {
                outputs[index] = Some(output);
                true
            })
            .is_pending()
        {
            return Poll::Pending;
        }
        Poll::Ready(
            std::mem::take(outputs)
                .into_iter()
                .map(|o| o.expect("oneloop bug: join_all child without output"))
                .collect(),
        )
    }
}

/// The future returned by [`try_join_all`].
#[must_use = "futures do nothing unless awaited"]
pub struct TryJoinAll<F: Future> {
    children: Children<F>,
    outputs: Vec<Option<F::Output>>,
}

impl<F: Future> Unpin for TryJoinAll<F> {}

impl<F, T, E> Future for TryJoinAll<F>
where
    F: Future<Output = Result<T, E>>,
{
    type Output = Result<Vec<T>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let outputs = &mut this.outputs;
        let mut failure = None;
        if this
            .children
            .poll(cx, |index, output| match output {
                Ok(value) => {
                    outputs[index] = Some(Ok(value));
                    true
                }
                Err(error) => {
                    failure = Some(error);
                    false
                }
            })
            .is_pending()
        {
            return Poll::Pending;
        }
        if let Some(error) = failure {
            return Poll::Ready(Err(error));
        }
        Poll::Ready(Ok(std::mem::take(outputs)
            .into_iter()
            .map(|o| match o {
                Some(Ok(value)) => value,
                _ => unreachable!("oneloop bug: try_join_all child without output"),
            })
            .collect()))
    }
}

impl<F: Future> fmt::Debug for JoinAll<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinAll")
            .field("remaining", &self.children.remaining)
            .finish()
    }
}

impl<F: Future> fmt::Debug for TryJoinAll<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TryJoinAll")
            .field("remaining", &self.children.remaining)
            .finish()
    }
}
