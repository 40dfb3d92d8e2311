//! `Handle`: how other threads hand work to the loop (asyncio's
//! `run_coroutine_threadsafe`), and `RemoteJoinHandle`, how they get the result back.
//!
//! A `Handle` holds only the runtime's `Arc<Remote>` (`waker.rs`): it pushes a closure onto
//! the remote queue, which the loop runs on its own thread during its next tick. The result
//! travels back in a oneshot channel (`sync/oneshot.rs`) that any executor, or a plain
//! thread, can wait on.

use std::fmt;
use std::future::Future;
use std::panic::Location;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use parking_lot::Mutex;

use crate::context;
use crate::debug::TaskInfo;
use crate::sync::oneshot;
use crate::task::id::TaskRef;
use crate::task::waiting::Waiting;
use crate::task::{Id, JoinError};
use crate::waker::{Remote, RemoteOp};

/// A `Send + Sync + Clone` way to reach a runtime from any thread.
///
/// # Examples
///
/// ```
/// let rt = oneloop::Runtime::new();
/// let handle = rt.handle();
/// let worker = std::thread::spawn(move || {
///     // On another thread: run a future on the loop and wait for its result.
///     handle.spawn(async { 6 * 7 }).join()
/// });
/// rt.block_on(async {
///     // The loop must be running for the work to happen.
///     oneloop::time::sleep(std::time::Duration::from_millis(50)).await;
/// });
/// assert_eq!(worker.join().unwrap(), Ok(42));
/// ```
///
/// # Implementation notes
///
/// While any `Handle` exists, the loop never declares a deadlock: work may still arrive
/// through it.
pub struct Handle {
    remote: Arc<Remote>,
}

impl crate::Runtime {
    /// A [`Handle`] for other threads to send work to this loop.
    pub fn handle(&self) -> Handle {
        Handle::new(self.core().remote.clone())
    }
}

impl Handle {
    pub(crate) fn new(remote: Arc<Remote>) -> Handle {
        remote.handles.fetch_add(1, Ordering::AcqRel);
        Handle { remote }
    }

    /// The handle of the runtime running on this thread.
    ///
    /// # Panics
    ///
    /// Outside a runtime.
    #[track_caller]
    pub fn current() -> Handle {
        let core = context::current("oneloop::Handle::current");
        Handle::new(core.remote.clone())
    }

    /// Spawns `future` on the loop from any thread, and returns a handle to its result.
    ///
    /// The future must be `Send` because it crosses to the loop thread; once there, it runs
    /// like any task. If the runtime is gone, the handle resolves to
    /// [`JoinError::Cancelled`].
    #[track_caller]
    pub fn spawn<F>(&self, future: F) -> RemoteJoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let location = Location::caller();
        let (sender, result) = oneshot::channel();
        let control = Arc::new(Mutex::new(Control::default()));
        let completer = Completer {
            sender,
            control: control.clone(),
        };
        let run = move || {
            let core = context::current("oneloop::Handle::spawn");
            let task = core.spawn(future, None, location);
            let id = task.id();
            if completer.register(task.task_ref()) {
                task.abort();
            }
            // A second, detached task carries the result across; the first stays a normal
            // task (debug reports, abort, panics) whose handle it awaits.
            core.spawn(
                async move {
                    let outcome = task.await;
                    completer.complete(outcome, id, location);
                },
                None,
                location,
            )
            .detach();
        };
        // If the runtime is gone the closure comes back and is dropped, and with it the
        // `Completer`'s sender: the handle resolves as cancelled.
        let _ = self.remote.push(RemoteOp::Run(Box::new(run)));
        RemoteJoinHandle {
            result,
            control,
            remote: self.remote.clone(),
            done: false,
        }
    }
}

impl Clone for Handle {
    fn clone(&self) -> Self {
        Handle::new(self.remote.clone())
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.remote.handles.fetch_sub(1, Ordering::AcqRel);
    }
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handle")
            .field("runtime", &self.remote.runtime_id)
            .finish()
    }
}

/// Which task on the loop a `RemoteJoinHandle` stands for, shared by the handle (any
/// thread) and the loop's side, so an `abort` that races the spawn is never lost.
#[derive(Default)]
struct Control {
    /// The task on the loop, once spawned (for `abort`).
    task: Option<TaskRef>,
    /// `abort` was called before the task was spawned.
    abort: bool,
}

/// The loop's side of a `RemoteJoinHandle`: the result travels in a oneshot channel
/// (`sync/oneshot.rs`). Dropped without completing (the runtime shut down before running
/// or finishing the task), its sender goes, and the handle resolves as cancelled.
struct Completer<T> {
    sender: oneshot::Sender<Result<T, JoinError>>,
    control: Arc<Mutex<Control>>,
}

impl<T> Completer<T> {
    /// Records the task's id; returns true if an abort is already pending.
    fn register(&self, task: TaskRef) -> bool {
        let mut control = self.control.lock();
        control.task = Some(task);
        control.abort
    }

    fn complete(self, outcome: Result<T, JoinError>, id: Id, location: &'static Location<'static>) {
        // Nobody will read a panic whose handle was dropped: report it (`OL003`).
        if let Err(JoinError::Panicked(message)) = &outcome
            && self.sender.is_closed()
        {
            let info = TaskInfo {
                id,
                name: None,
                location,
            };
            let message = message.clone();
            context::with_current(|core| core.tasks().report_panic_not_retrieved(info, message));
        }
        // A value refused (the handle is gone) is dropped here, on the loop thread.
        let _ = self.sender.send(outcome);
    }
}

/// The result of [`Handle::spawn`]: a `Send` future (await it on any executor) that can
/// also be waited on by a plain thread with [`join`](Self::join).
#[must_use = "dropping the handle detaches the task; await or join it to get its result"]
pub struct RemoteJoinHandle<T> {
    /// Where the task's outcome arrives; closed by the loop's side when the runtime drops
    /// before the task finished (read as `Cancelled`).
    result: oneshot::Receiver<Result<T, JoinError>>,
    control: Arc<Mutex<Control>>,
    remote: Arc<Remote>,
    done: bool,
}

impl<T: Send + 'static> RemoteJoinHandle<T> {
    /// Blocks this thread until the task finishes, and returns its result.
    ///
    /// # Panics
    ///
    /// On a thread running a oneloop runtime, where blocking would stop the loop (and
    /// with it the task being waited for).
    pub fn join(self) -> Result<T, JoinError> {
        crate::block::block_thread_on("RemoteJoinHandle::join", self)
    }

    /// True once the result is in.
    pub fn is_finished(&self) -> bool {
        self.result.is_terminated()
    }

    /// Cancels the task (on the loop's next tick); the handle resolves to
    /// [`JoinError::Cancelled`] unless the task finished first.
    pub fn abort(&self) {
        let task = {
            let mut control = self.control.lock();
            control.abort = true;
            control.task
        };
        if let Some(task) = task {
            let _ = self.remote.push(RemoteOp::Run(Box::new(move || {
                context::with_current(|core| core.tasks().abort(task));
            })));
        }
    }
}

impl<T> Future for RemoteJoinHandle<T> {
    type Output = Result<T, JoinError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        assert!(
            !this.done,
            "oneloop: RemoteJoinHandle polled after it returned its result"
        );
        match Pin::new(&mut this.result).poll(cx) {
            Poll::Ready(outcome) => {
                this.done = true;
                // No outcome sent: the runtime dropped before the task finished.
                Poll::Ready(outcome.unwrap_or(Err(JoinError::Cancelled)))
            }
            Poll::Pending => {
                // What the deadlock check names: this wait, not the channel beneath it.
                context::note_wait(Waiting::RemoteJoin);
                Poll::Pending
            }
        }
    }
}

impl<T> fmt::Debug for RemoteJoinHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteJoinHandle")
            .field("task", &self.control.lock().task.map(|task| Id(task.id)))
            .finish_non_exhaustive()
    }
}
