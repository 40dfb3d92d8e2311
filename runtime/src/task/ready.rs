//! A list of "which child woke": the wake mechanism behind `JoinSet` and `join_all`.
//!
//! Each child (a task in a `JoinSet`, a future in `join_all`) gets its own waker that
//! pushes the child's index here and wakes the parent. The parent then polls only the
//! children that woke, so n children cost O(n) polls in all rather than O(n²).

use std::collections::VecDeque;
use std::sync::Arc;
use std::task::{Poll, Waker};

use futures_task::ArcWake;
use oneloop_pool::wake;
use parking_lot::Mutex;

#[derive(Default)]
pub(crate) struct ReadyList {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// First woken, first polled: children woken together (timers firing in deadline
    /// order, say) are polled in the order they woke.
    ready: VecDeque<usize>,
    parent: Option<Waker>,
}

impl ReadyList {
    /// The waker to give child `index`.
    pub(crate) fn child_waker(self: &Arc<Self>, index: usize) -> Waker {
        futures_task::waker(Arc::new(ChildWaker {
            index,
            list: self.clone(),
        }))
    }

    /// Marks child `index` as worth polling (children start that way).
    pub(crate) fn push(&self, index: usize) {
        self.state.lock().ready.push_back(index);
    }

    /// The next child to poll; when there is none, remembers `parent` to wake later. The
    /// parent's waker is cloned, and the one it replaces dropped, outside the lock
    /// (`oneloop_pool::wake`).
    pub(crate) fn pop_or_register(&self, parent: &Waker) -> Option<usize> {
        let polled = wake::poll_waker_slot(
            parent,
            || self.state.lock(),
            |state| state.ready.pop_front().ok_or(&mut state.parent),
        );
        match polled {
            Poll::Ready(index) => Some(index),
            Poll::Pending => None,
        }
    }
}

struct ChildWaker {
    index: usize,
    list: Arc<ReadyList>,
}

impl ArcWake for ChildWaker {
    fn wake_by_ref(arc_self: &Arc<Self>) {
        let parent = {
            let mut state = arc_self.list.state.lock();
            state.ready.push_back(arc_self.index);
            state.parent.take()
        };
        // Wake outside the lock: the parent's waker is arbitrary code.
        if let Some(parent) = parent {
            parent.wake();
        }
    }
}
