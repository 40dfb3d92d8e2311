//! Waiting for a future from a plain thread (not a task): the thread parks until woken.
//!
//! Used by the blocking calls meant for worker threads (`mpsc::Sender::blocking_send`,
//! `RemoteJoinHandle::join`), so they reuse the async code paths, fairness included,
//! instead of keeping a second, condvar-based protocol that could drift from the first.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::thread::{self, Thread};

use futures_task::ArcWake;

struct Unparker(Thread);

impl ArcWake for Unparker {
    fn wake_by_ref(arc_self: &Arc<Self>) {
        arc_self.0.unpark();
    }
}

/// Runs `future` to completion on this thread, parking between polls.
///
/// # Panics
///
/// On a thread running a oneloop runtime: parking it would stop the loop. `what` names the
/// caller in the message.
pub(crate) fn wait<F: Future>(what: &str, future: F) -> F::Output {
    assert!(
        crate::context::current_id().is_none(),
        "oneloop: {what} was called on a loop thread, where blocking would stop the loop; \
         `.await` it instead"
    );
    let waker = futures_task::waker(Arc::new(Unparker(thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut future = pin!(future);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
        // A wake between the poll and here leaves the unpark token set, so this returns at
        // once: no wake-up is lost. Spurious returns just poll again.
        thread::park();
    }
}
