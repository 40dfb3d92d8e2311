//! `JoinSet`: many tasks, their results in the order they finish, the rest aborted on drop.

use std::fmt;
use std::future::{Future, poll_fn};
use std::panic::Location;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use slab::Slab;

use super::ready::ReadyList;
use super::{Id, JoinError, JoinHandle};
use crate::context;

/// A set of tasks whose results are collected as they finish.
///
/// Dropping the set aborts every task still in it: a `JoinSet` owns its tasks, so none
/// outlives the code that started it.
///
/// # Examples
///
/// ```
/// use oneloop::task::JoinSet;
///
/// oneloop::Runtime::new().block_on(async {
///     let mut set = JoinSet::new();
///     for i in 0..3u64 {
///         set.spawn(async move {
///             oneloop::time::sleep(std::time::Duration::from_millis(30 - 10 * i)).await;
///             i
///         });
///     }
///     let mut order = Vec::new();
///     while let Some(result) = set.join_next().await {
///         order.push(result.unwrap());
///     }
///     assert_eq!(order, [2, 1, 0]); // completion order, not spawn order
/// });
/// ```
pub struct JoinSet<T> {
    /// Each task's handle, with the waker that reports it to `ready` when it finishes.
    tasks: Slab<(JoinHandle<T>, Waker)>,
    ready: Arc<ReadyList>,
}

impl<T: 'static> JoinSet<T> {
    /// An empty set.
    pub fn new() -> Self {
        JoinSet {
            tasks: Slab::new(),
            ready: Arc::default(),
        }
    }

    /// Spawns `future` on the current runtime into this set.
    ///
    /// # Panics
    ///
    /// Outside a runtime.
    #[track_caller]
    pub fn spawn<F>(&mut self, future: F) -> Id
    where
        F: Future<Output = T> + 'static,
    {
        let core = context::current("JoinSet::spawn");
        self.insert(core.spawn(future, None, Location::caller()))
    }

    /// Adds an already spawned task (for instance one named with
    /// [`task::Builder`](crate::task::Builder)). The set now owns it.
    pub fn insert(&mut self, handle: JoinHandle<T>) -> Id {
        let id = handle.id();
        let entry = self.tasks.vacant_entry();
        let waker = self.ready.child_waker(entry.key());
        handle.set_join_waker(&waker);
        entry.insert((handle, waker));
        id
    }

    /// Waits for the next task to finish and returns its result, or `None` when the set is
    /// empty.
    pub async fn join_next(&mut self) -> Option<Result<T, JoinError>> {
        self.join_next_with_id().await.map(|(_, result)| result)
    }

    /// Like [`join_next`](Self::join_next), with the id of the task that finished.
    pub async fn join_next_with_id(&mut self) -> Option<(Id, Result<T, JoinError>)> {
        poll_fn(|cx| self.poll_join_next(cx)).await
    }

    fn poll_join_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<(Id, Result<T, JoinError>)>> {
        if self.tasks.is_empty() {
            return Poll::Ready(None);
        }
        loop {
            // A child that yields for the budget wakes itself, so it would be popped and
            // polled again at once, for ever: once the budget is spent, the set yields.
            if super::coop::poll_proceed(cx).is_pending() {
                return Poll::Pending;
            }
            let Some(key) = self.ready.pop_or_register(cx.waker()) else {
                return Poll::Pending;
            };
            let Some((handle, waker)) = self.tasks.get_mut(key) else {
                continue; // a stale notice for a slot already joined
            };
            let mut child_cx = Context::from_waker(waker);
            if let Poll::Ready(result) = std::pin::Pin::new(&mut *handle).poll(&mut child_cx) {
                let (handle, _) = self.tasks.remove(key);
                return Poll::Ready(Some((handle.id(), result)));
            }
        }
    }

    /// Aborts every task in the set; they stay in it, and `join_next` returns their
    /// `Cancelled` results (or the values of those that had already finished).
    pub fn abort_all(&mut self) {
        for (_, (handle, _)) in &self.tasks {
            handle.abort();
        }
    }

    /// Aborts every task and waits until the set is empty.
    pub async fn shutdown(&mut self) {
        self.abort_all();
        while self.join_next().await.is_some() {}
    }
}

impl<T> JoinSet<T> {
    /// The number of tasks not yet joined.
    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    /// True when no task is left to join.
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }
}

impl<T: 'static> Default for JoinSet<T> {
    fn default() -> Self {
        JoinSet::new()
    }
}

impl<T> Drop for JoinSet<T> {
    fn drop(&mut self) {
        for (handle, _) in self.tasks.drain() {
            handle.abort();
        }
    }
}

impl<T> fmt::Debug for JoinSet<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinSet")
            .field("len", &self.tasks.len())
            .finish()
    }
}
