//! `block_on`: waiting for a future on a plain thread, by parking it between polls.
//!
//! Used by the blocking calls (`JobHandle::join`, a blocking submit that waits for room),
//! so they share the async code paths instead of keeping a second protocol.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake};
use std::thread::{self, Thread};

struct Unparker(Thread);

impl Wake for Unparker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

/// Runs `future` to completion on the current thread, parking it while the future waits.
///
/// For plain threads (workers, `main`, tests). Do not call it on an event loop's thread:
/// it blocks that thread, and with it every task of the loop.
///
/// # Examples
///
/// ```
/// let pool = oneloop_pool::ThreadPool::new(2)?;
/// let handle = pool.spawn(|| 6 * 7);
/// assert_eq!(oneloop_pool::block_on(handle), Ok(42));
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn block_on<F: Future>(future: F) -> F::Output {
    let waker = Arc::new(Unparker(thread::current())).into();
    let mut cx = Context::from_waker(&waker);
    let mut future = pin!(future);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
        // A wake between the poll and here leaves the unpark token set, so this returns at
        // once: no wake-up is lost. A spurious return just polls again.
        thread::park();
    }
}
