//! Waiting for a future from a plain thread (not a task): `oneloop_pool::block_on`, with a
//! guard against doing it on a loop thread.
//!
//! Used by the blocking calls meant for worker threads (`mpsc::Sender::blocking_send`,
//! `RemoteJoinHandle::join`), so they reuse the async code paths, fairness included.

use std::future::Future;

/// Runs `future` to completion on this thread, parking between polls.
///
/// # Panics
///
/// On a thread running a oneloop runtime: parking it would stop the loop. `what` names the
/// caller in the message.
pub(crate) fn block_thread_on<F: Future>(what: &str, future: F) -> F::Output {
    assert!(
        crate::context::current_id().is_none(),
        "oneloop: {what} was called on a loop thread, where blocking would stop the loop; \
         `.await` it instead"
    );
    oneloop_pool::block_on(future)
}
