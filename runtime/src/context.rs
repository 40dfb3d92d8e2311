//! The thread-local "current runtime", and the messages for using the runtime wrongly.
//!
//! `Runtime::block_on` (in `runtime.rs`) enters the context for as long as it runs; free
//! functions such as `oneloop::spawn`, and runtime-bound futures such as `Sleep`, find the
//! loop through it. Entering also installs the runtime's run queue for the wakers of its
//! tasks (`task/run_queue.rs`), which never need the rest of the runtime.
//!
//! Every access uses `LocalKey::try_with`, because wakes and drops can run while the
//! thread's locals are being destroyed; there the answer is simply "no runtime here".

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use oneloop_pool::{JobObserver, observing, waiting};

use crate::debug::leaks::{Running, thread_label};
use crate::runtime::Core;
use crate::task::run_queue::{self, LocalGuard};
use crate::task::waiting::Waiting;

thread_local! {
    /// Set by `enter` for the duration of `block_on` (and of the runtime's `Drop`); read by
    /// everything below. Only `enter` and its guard borrow it mutably, and they never run
    /// user code while doing so.
    static CURRENT: RefCell<Option<Rc<Core>>> = const { RefCell::new(None) };
}

/// Makes `core` the current runtime until dropped.
pub(crate) struct EnterGuard {
    previous: Option<Rc<Core>>,
    /// The thread's `oneloop_pool::waiting` hook before this runtime installed its own.
    previous_hook: Option<waiting::Hook>,
    /// The thread's `oneloop_pool::observing` hook before this runtime installed its own.
    previous_observer: Option<observing::Hook>,
    /// For `block_on` in debug mode: the runtime counts as running meanwhile.
    running: Option<Running>,
    /// Local wakes push onto this runtime's run queue meanwhile (`task/run_queue.rs`).
    _run_queue: LocalGuard,
}

/// Enters `core` for a `block_on`.
///
/// # Panics
///
/// If this thread is already inside a runtime: blocking inside the loop would stop it. And
/// from a thread-local's destructor that runs after this module's own thread-local is gone:
/// the loop could not find itself there (every task, timer and socket looks it up here).
pub(crate) fn enter(core: &Rc<Core>) -> EnterGuard {
    match CURRENT.try_with(|current| current.borrow().is_some()) {
        Ok(false) => {
            let mut guard = replace(core);
            guard.running = core.running();
            guard
        }
        Ok(true) => panic!(
            "oneloop: Runtime::block_on was called inside a running oneloop runtime; \
             a nested block_on would stop the loop it runs on. `.await` the future instead, \
             or `oneloop::spawn` it"
        ),
        Err(_) => panic!(
            "oneloop: Runtime::block_on was called from a thread-local's destructor on thread \
             {}, after oneloop's own thread-locals were destroyed: the loop cannot run while \
             its thread exits. Finish the runtime's work before the thread ends (at the end \
             of its closure, or of `main`); dropping a runtime there is fine",
            thread_label()
        ),
    }
}

/// Enters `core` even if another runtime is current (used while a runtime drops its
/// tasks, which may happen inside another runtime's `block_on`); the previous runtime is
/// restored when the guard drops.
///
/// A runtime kept in a thread-local is dropped while the thread's locals are destroyed,
/// perhaps after `CURRENT`: then nothing is entered, and the tasks are dropped outside any
/// runtime (a destructor that spawns finds none; one that cancels a timer or deregisters a
/// socket finds nothing to do, as the runtime frees those itself).
pub(crate) fn enter_for_drop(core: &Rc<Core>) -> EnterGuard {
    replace(core)
}

fn replace(core: &Rc<Core>) -> EnterGuard {
    let mut new = Some(core.clone());
    // If `CURRENT` is gone, `new` is dropped unused and the guard restores nothing.
    let previous = CURRENT
        .try_with(|current| current.replace(new.take()))
        .ok()
        .flatten();
    // The pool's futures (semaphores, job handles) tell this runtime what they wait on.
    let previous_hook = waiting::set_hook(Some(note_pool_wait));
    // Executors that build no pool `Job` (process pools) find this runtime's observer.
    let previous_observer = observing::set_hook(Some(observe_job));
    EnterGuard {
        previous,
        previous_hook,
        previous_observer,
        running: None,
        _run_queue: run_queue::enter(core.id(), core.run_queue()),
    }
}

impl Drop for EnterGuard {
    fn drop(&mut self) {
        let previous = self.previous.take();
        // Take the value out first and drop it after the borrow ends: dropping a runtime's
        // core runs user code (futures' destructors), which may look at CURRENT again.
        let ours = CURRENT
            .try_with(|current| current.replace(previous))
            .ok()
            .flatten();
        waiting::set_hook(self.previous_hook);
        observing::set_hook(self.previous_observer);
        drop(ours);
    }
}

/// A future of the current task returned `Pending` waiting on `waiting`: tell the runtime
/// polling it, if any (the deadlock check names it).
pub(crate) fn note_wait(waiting: Waiting) {
    let _ = CURRENT.try_with(|current| {
        if let Some(core) = &*current.borrow() {
            core.note_wait(waiting);
        }
    });
}

/// The `oneloop_pool::waiting` hook of a thread running a runtime.
fn note_pool_wait(on: waiting::WaitingOn) {
    note_wait(on.into());
}

/// The `oneloop_pool::observing` hook of a thread running a runtime: the current task
/// submitted job `id` (the trace draws the arrow from it), and debug mode or tracing, if
/// on, watch it.
fn observe_job(id: u64) -> Option<Arc<dyn JobObserver>> {
    with_current(|core| {
        core.job_submitted(|| id);
        core.job_observer()
    })
    .flatten()
}

/// Runs `f` with the current runtime, or returns `None` outside any runtime.
pub(crate) fn with_current<R>(f: impl FnOnce(&Rc<Core>) -> R) -> Option<R> {
    let core = CURRENT
        .try_with(|current| current.borrow().clone())
        .ok()
        .flatten()?;
    Some(f(&core))
}

/// The current runtime, or a panic that says which call needed one and what to do.
#[track_caller]
pub(crate) fn current(what: &str) -> Rc<Core> {
    match CURRENT.try_with(|current| current.borrow().clone()) {
        Ok(Some(core)) => core,
        _ => panic!(
            "oneloop: {what} was called outside a oneloop runtime (thread {}). Call it from \
             code that runs inside `Runtime::block_on`; from another thread, use a \
             `oneloop::Handle` (`rt.handle()`) to send work to the loop",
            thread_label()
        ),
    }
}

/// The current runtime for a runtime-bound object (a timer, an I/O source) created in the
/// runtime numbered `owner`, or a panic that names the misuse.
#[track_caller]
pub(crate) fn current_for(what: &str, owner: u64) -> Rc<Core> {
    let core = current(what);
    if core.id() != owner {
        panic!(
            "oneloop: {what} belongs to runtime #{owner} but was polled inside runtime #{} \
             (thread {}). Runtime objects live on the loop that created them: keep them in \
             tasks of that runtime",
            core.id(),
            thread_label()
        );
    }
    core
}

/// The id of the runtime running on this thread, if any.
pub(crate) fn current_id() -> Option<u64> {
    CURRENT
        .try_with(|current| current.borrow().as_ref().map(|core| core.id()))
        .ok()
        .flatten()
}
